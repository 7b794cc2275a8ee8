//! This broker's settings, read from its vars and secrets: caps, the upstream timeout and base
//! URL, the platform's provider key.

use gateway_core::broker::DEFAULT_MAX_OUTPUT_TOKENS;
use gateway_core::error::ApiError;
use gateway_core::providers::Provider;
use worker::Env;
use worker_shared::env::var;

use crate::log;

/// Default upstream timeout, when `UPSTREAM_TIMEOUT_MS` is not set.
const DEFAULT_TIMEOUT_MS: u64 = 30_000;

/// The most output tokens a call may ask for (`MAX_OUTPUT_TOKENS`).
pub fn max_output_tokens(env: &Env) -> u32 {
    var(env, "MAX_OUTPUT_TOKENS")
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MAX_OUTPUT_TOKENS)
}

/// How long one upstream call may take (`UPSTREAM_TIMEOUT_MS`).
pub fn timeout_ms(env: &Env) -> u64 {
    var(env, "UPSTREAM_TIMEOUT_MS")
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_TIMEOUT_MS)
}

/// The platform's own key for `provider` (a 503 when it is not set).
pub fn platform_key(env: &Env, provider: Provider) -> Result<String, ApiError> {
    var(env, "PROVIDER_API_KEY").ok_or_else(|| {
        log(&format!("broker {provider}: PROVIDER_API_KEY is not set"));
        ApiError::unavailable(5)
    })
}

/// The provider's API base URL (the published one, or the mock server's).
pub fn upstream_base(env: &Env) -> Result<String, ApiError> {
    var(env, "UPSTREAM_BASE_URL").ok_or_else(|| {
        log("broker misconfigured: UPSTREAM_BASE_URL is not set");
        ApiError::internal()
    })
}
