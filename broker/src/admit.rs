//! Admission: the shared secret, checked first and in constant time, and this broker's provider.

use gateway_core::broker::errors::secret_refused;
use gateway_core::broker::secret::{AcceptedSecrets, Admission, CURRENT_VAR, PREVIOUS_VAR};
use gateway_core::error::ApiError;
use gateway_core::providers::Provider;
use worker::Env;
use worker_shared::env::var;

use crate::log;

/// The shared secret (checked first, in constant time, against the current value and, during a
/// rotation, the previous one: `BROKER_SHARED_SECRET`, `BROKER_SHARED_SECRET_PREVIOUS`) and
/// this broker's provider.
pub fn admit(env: &Env, given: &str) -> Result<Provider, ApiError> {
    let current = var(env, CURRENT_VAR);
    let previous = var(env, PREVIOUS_VAR);
    let accepted =
        AcceptedSecrets::new(current.as_deref(), previous.as_deref()).ok_or_else(|| {
            log("broker misconfigured: BROKER_SHARED_SECRET is not set");
            secret_refused()
        })?;
    let admission = accepted.check(given);
    if admission == Admission::Refused {
        return Err(secret_refused());
    }
    let provider = var(env, "PROVIDER")
        .and_then(|p| Provider::parse(&p))
        .ok_or_else(|| {
            log("broker misconfigured: PROVIDER is not a provider name");
            ApiError::internal()
        })?;
    // During a rotation every admitted call says which slot its secret matched: the rotation's
    // last step waits until one of the two is no longer seen (docs/OPERATIONS.md).
    if accepted.rotating() {
        let slot = match admission {
            Admission::Previous => PREVIOUS_VAR,
            _ => CURRENT_VAR,
        };
        log(&format!(
            "{{\"event\":\"broker_secret_rotation\",\"provider\":\"{provider}\",\"matched\":\"{slot}\"}}"
        ));
    }
    Ok(provider)
}
