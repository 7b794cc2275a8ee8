//! Admission: the shared secret, checked first and in constant time, and this broker's provider.

use gateway_core::broker::errors::secret_refused;
use gateway_core::error::ApiError;
use gateway_core::keys::constant_time_eq;
use gateway_core::providers::Provider;
use worker::Env;
use worker_shared::env::var;

use crate::log;

/// The shared secret (checked first, in constant time) and this broker's provider.
pub fn admit(env: &Env, given: &str) -> Result<Provider, ApiError> {
    let expected = var(env, "BROKER_SHARED_SECRET").ok_or_else(|| {
        log("broker misconfigured: BROKER_SHARED_SECRET is not set");
        secret_refused()
    })?;
    if !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        return Err(secret_refused());
    }
    var(env, "PROVIDER")
        .and_then(|p| Provider::parse(&p))
        .ok_or_else(|| {
            log("broker misconfigured: PROVIDER is not a provider name");
            ApiError::internal()
        })
}
