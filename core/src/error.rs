//! The one error type at the HTTP edge: a status, a snake_case code, a human message and
//! optional extra fields, rendered as the contract's `{"error": {...}}` envelope.

use serde_json::{json, Map, Value};

use crate::providers::models::ModelRejection;
use crate::providers::Provider;

/// What every fallible step of the gateway and the brokers returns: errors are already
/// contract errors.
pub type ApiResult<T> = std::result::Result<T, ApiError>;

/// An error the gateway (or a broker) returns to its caller. Never carries secrets:
/// messages are fixed texts or scrubbed excerpts chosen by the code that builds them.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub extra: Map<String, Value>,
    /// Extra response headers (e.g. `Retry-After`).
    pub headers: Vec<(&'static str, String)>,
    /// The call this error ends was certainly never sent to a provider, whatever its code says
    /// (a broker that refused the gateway itself): it costs nothing
    /// (`credits::settlement::of_error`).
    pub unsent: bool,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            extra: Map::new(),
            headers: Vec::new(),
            unsent: false,
        }
    }

    /// Marks the call as never sent to a provider (see [`ApiError::unsent`]).
    pub fn never_sent(mut self) -> Self {
        self.unsent = true;
        self
    }

    /// Adds a field beside `code` and `message` in the envelope.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Tells the official SDKs not to retry: `x-should-retry: false`, which both read before
    /// the status. For an error the same call can never turn into an answer, where their
    /// default (two retries with backoff on a 429 or a 5xx) only delays the caller's error.
    pub fn never_retried(self) -> Self {
        self.with_header("x-should-retry", "false")
    }

    /// The JSON envelope: `{"error": {"code", "message", ...extra}}`.
    pub fn body(&self) -> Value {
        let mut inner = Map::new();
        inner.insert("code".into(), Value::String(self.code.into()));
        inner.insert("message".into(), Value::String(self.message.clone()));
        for (k, v) in &self.extra {
            inner.insert(k.clone(), v.clone());
        }
        json!({ "error": inner })
    }

    // The errors every route can produce, with the contract's codes.

    /// One body for unknown, malformed and revoked keys alike.
    pub fn unauthorized() -> Self {
        ApiError::new(401, "unauthorized", "missing or invalid API key")
    }
    pub fn admin_unauthorized() -> Self {
        ApiError::new(401, "unauthorized", "missing or invalid admin token")
    }
    pub fn admin_disabled() -> Self {
        ApiError::new(
            403,
            "admin_disabled",
            "the admin API is disabled: ADMIN_TOKEN is not set",
        )
    }
    pub fn not_found() -> Self {
        ApiError::new(404, "not_found", "no such resource")
    }
    pub fn method_not_allowed() -> Self {
        ApiError::new(405, "method_not_allowed", "method not allowed on this path")
    }
    pub fn invalid_json(detail: &str) -> Self {
        ApiError::new(
            400,
            "invalid_json",
            format!("request body is not valid JSON: {detail}"),
        )
    }
    pub fn invalid_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "invalid_request", message)
    }
    pub fn invalid_param(param: &str, message: impl Into<String>) -> Self {
        ApiError::new(400, "invalid_param", message).with("param", param)
    }
    pub fn unsupported_media_type() -> Self {
        ApiError::new(
            415,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        )
    }
    pub fn body_too_large(limit: usize) -> Self {
        ApiError::new(
            413,
            "body_too_large",
            format!("request body exceeds {limit} bytes"),
        )
        .with("limit_bytes", limit as u64)
    }
    pub fn prompt_too_large(limit: usize) -> Self {
        ApiError::new(
            413,
            "prompt_too_large",
            format!("prompt exceeds {limit} bytes of UTF-8"),
        )
        .with("limit_bytes", limit as u64)
    }
    /// The 403 of a model the gateway or a broker will not serve, naming the provider and the
    /// model (the one wording of `/v1/ask`, the drop-in endpoints and the brokers).
    pub fn model_not_allowed(provider: Provider, model: &str, rejection: ModelRejection) -> Self {
        let why = match rejection {
            ModelRejection::Forbidden => "is not a text-generation model and is never served",
            ModelRejection::NotAllowed => "is not on the provider's allowlist",
        };
        ApiError::new(403, "model_not_allowed", format!("model `{model}` {why}"))
            .with("provider", provider.as_str())
            .with("model", model)
    }
    pub fn insufficient_credits(needed: u64, available: u64) -> Self {
        ApiError::new(
            402,
            "insufficient_credits",
            "the account's credit balance does not cover this call",
        )
        .with("needed", needed)
        .with("available", available)
    }
    /// A dependency (Durable Object, D1) failed: fail closed, ask the caller to retry.
    pub fn unavailable(retry_after_s: u32) -> Self {
        ApiError::new(
            503,
            "service_unavailable",
            "temporarily unavailable, retry shortly",
        )
        .with_header("Retry-After", retry_after_s.to_string())
    }
    pub fn internal() -> Self {
        ApiError::new(500, "internal_error", "internal error")
    }
    /// `Cache-Control: only-if-cached` and the answer is not in the cache (RFC 9111's 504): no
    /// provider was called and nothing was charged.
    pub fn not_cached() -> Self {
        ApiError::new(
            504,
            "not_cached",
            "only-if-cached: the answer is not in the cache, and no provider was called",
        )
        .never_retried()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_code_message_and_extra_fields() {
        let e = ApiError::invalid_param("temperature", "must be between 0 and 2");
        assert_eq!(e.status, 400);
        assert_eq!(
            e.body(),
            json!({"error": {"code": "invalid_param", "message": "must be between 0 and 2", "param": "temperature"}})
        );
    }

    #[test]
    fn unauthorized_is_one_fixed_body() {
        assert_eq!(
            ApiError::unauthorized().body(),
            ApiError::unauthorized().body()
        );
        assert_eq!(ApiError::unauthorized().status, 401);
    }

    #[test]
    fn model_refusal_names_provider_model_and_reason() {
        let e = ApiError::model_not_allowed(Provider::OpenAi, "gpt-9", ModelRejection::NotAllowed);
        assert_eq!(
            e.body(),
            json!({"error": {"code": "model_not_allowed",
                "message": "model `gpt-9` is not on the provider's allowlist",
                "provider": "openai", "model": "gpt-9"}})
        );
        assert_eq!(e.status, 403);
        let e =
            ApiError::model_not_allowed(Provider::Gemini, "imagen-4", ModelRejection::Forbidden);
        assert_eq!(
            e.message,
            "model `imagen-4` is not a text-generation model and is never served"
        );
    }

    #[test]
    fn unavailable_carries_retry_after() {
        let e = ApiError::unavailable(2);
        assert_eq!(e.status, 503);
        assert_eq!(e.headers, vec![("Retry-After", "2".to_string())]);
    }
}
