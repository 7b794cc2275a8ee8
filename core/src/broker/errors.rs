//! The error codes a broker answers, the status each implies, and what a broker's refusal
//! becomes for the gateway's caller.
//!
//! A broker refuses in the contract's `{"error": {...}}` envelope. Most refusals are about the
//! caller's request or account (a model off the allowlist, a key that does not decrypt, an
//! upstream that timed out) and pass on to the caller as they are. The others say the broker
//! refused the gateway itself (its secret, a path, its own configuration) and become a 503
//! `broker_unavailable`: the caller did nothing wrong. A `/v1/ask` completion's upstream
//! failure travels as a [`ProviderError`] instead (its code a `ProviderErrorCode`).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::providers::completion::{ProviderError, ProviderErrorCode};
use crate::providers::Provider;
use crate::scrub::{scrub, scrub_secrets};

/// A code in a broker's error envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BrokerErrorCode {
    // The broker refused the gateway itself: never passed on.
    /// A missing or wrong shared secret.
    Unauthorized,
    /// A path or method the broker does not serve (or a drop-in call to a provider without one).
    NotFound,
    /// The broker is misconfigured (its provider name, its upstream URL).
    InternalError,

    // The caller's request.
    InvalidJson,
    InvalidRequest,
    InvalidParam,
    BodyTooLarge,
    PromptTooLarge,
    ModelNotAllowed,
    StreamingUnsupported,

    // The keys.
    /// The account's own key does not decrypt.
    ProviderKeyUnusable,
    /// The account's key decrypted but its use could not be recorded, so it was not used.
    KeyAuditUnavailable,
    /// The BYOK master secret is not set or not valid.
    ByokUnavailable,
    /// The broker's own key is not set, or its randomness failed.
    ServiceUnavailable,

    // The upstream, on a drop-in call.
    /// The platform's own provider key was refused: not the caller's key.
    UpstreamAuthFailed,
    UpstreamTimeout,
    UpstreamUnreachable,
    UpstreamMalformed,
    /// The platform's own provider account is out of quota or credit: not the caller's
    /// business, and no retry cures it.
    UpstreamQuotaExhausted,
}

impl BrokerErrorCode {
    pub const ALL: [BrokerErrorCode; 19] = [
        BrokerErrorCode::Unauthorized,
        BrokerErrorCode::NotFound,
        BrokerErrorCode::InternalError,
        BrokerErrorCode::InvalidJson,
        BrokerErrorCode::InvalidRequest,
        BrokerErrorCode::InvalidParam,
        BrokerErrorCode::BodyTooLarge,
        BrokerErrorCode::PromptTooLarge,
        BrokerErrorCode::ModelNotAllowed,
        BrokerErrorCode::StreamingUnsupported,
        BrokerErrorCode::ProviderKeyUnusable,
        BrokerErrorCode::KeyAuditUnavailable,
        BrokerErrorCode::ByokUnavailable,
        BrokerErrorCode::ServiceUnavailable,
        BrokerErrorCode::UpstreamAuthFailed,
        BrokerErrorCode::UpstreamTimeout,
        BrokerErrorCode::UpstreamUnreachable,
        BrokerErrorCode::UpstreamMalformed,
        BrokerErrorCode::UpstreamQuotaExhausted,
    ];

    /// The wire code, identical to the serde form.
    pub fn as_str(self) -> &'static str {
        match self {
            BrokerErrorCode::Unauthorized => "unauthorized",
            BrokerErrorCode::NotFound => "not_found",
            BrokerErrorCode::InternalError => "internal_error",
            BrokerErrorCode::InvalidJson => "invalid_json",
            BrokerErrorCode::InvalidRequest => "invalid_request",
            BrokerErrorCode::InvalidParam => "invalid_param",
            BrokerErrorCode::BodyTooLarge => "body_too_large",
            BrokerErrorCode::PromptTooLarge => "prompt_too_large",
            BrokerErrorCode::ModelNotAllowed => "model_not_allowed",
            BrokerErrorCode::StreamingUnsupported => "streaming_unsupported",
            BrokerErrorCode::ProviderKeyUnusable => "provider_key_unusable",
            BrokerErrorCode::KeyAuditUnavailable => "key_audit_unavailable",
            BrokerErrorCode::ByokUnavailable => "byok_unavailable",
            BrokerErrorCode::ServiceUnavailable => "service_unavailable",
            BrokerErrorCode::UpstreamAuthFailed => "upstream_auth_failed",
            BrokerErrorCode::UpstreamTimeout => "upstream_timeout",
            BrokerErrorCode::UpstreamUnreachable => "upstream_unreachable",
            BrokerErrorCode::UpstreamMalformed => "upstream_malformed",
            BrokerErrorCode::UpstreamQuotaExhausted => "upstream_quota_exhausted",
        }
    }

    /// Parses a wire code exactly.
    pub fn parse(code: &str) -> Option<BrokerErrorCode> {
        BrokerErrorCode::ALL
            .into_iter()
            .find(|c| c.as_str() == code)
    }

    /// The HTTP status a broker answers this code with.
    pub fn status(self) -> u16 {
        match self {
            BrokerErrorCode::Unauthorized => 401,
            BrokerErrorCode::NotFound => 404,
            BrokerErrorCode::InternalError => 500,
            BrokerErrorCode::InvalidJson
            | BrokerErrorCode::InvalidRequest
            | BrokerErrorCode::InvalidParam
            | BrokerErrorCode::StreamingUnsupported => 400,
            BrokerErrorCode::BodyTooLarge | BrokerErrorCode::PromptTooLarge => 413,
            BrokerErrorCode::ModelNotAllowed => 403,
            BrokerErrorCode::ProviderKeyUnusable => 424,
            BrokerErrorCode::KeyAuditUnavailable
            | BrokerErrorCode::ByokUnavailable
            | BrokerErrorCode::ServiceUnavailable
            | BrokerErrorCode::UpstreamQuotaExhausted => 503,
            BrokerErrorCode::UpstreamAuthFailed
            | BrokerErrorCode::UpstreamUnreachable
            | BrokerErrorCode::UpstreamMalformed => 502,
            BrokerErrorCode::UpstreamTimeout => 504,
        }
    }

    /// Whether the gateway passes this refusal on to its caller as it is (the others are the
    /// broker refusing the gateway itself).
    pub fn passes_on(self) -> bool {
        !matches!(
            self,
            BrokerErrorCode::Unauthorized
                | BrokerErrorCode::NotFound
                | BrokerErrorCode::InternalError
        )
    }

    /// This code's contract error, with its status.
    pub fn error(self, message: impl Into<String>) -> ApiError {
        ApiError::new(self.status(), self.as_str(), message)
    }
}

impl std::fmt::Display for BrokerErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

// The broker's own refusals, with their fixed texts.

/// A missing or wrong shared secret (one body for both).
pub fn secret_refused() -> ApiError {
    BrokerErrorCode::Unauthorized.error("missing or invalid broker secret")
}

/// The BYOK master secret is missing or invalid: no account key can be sealed or opened.
pub fn byok_unavailable() -> ApiError {
    BrokerErrorCode::ByokUnavailable
        .error("provider keys cannot be used right now, retry shortly")
        .with_header("Retry-After", "5")
}

/// The account's key decrypted, but its access could not be recorded: it was not used.
pub fn key_audit_unavailable() -> ApiError {
    BrokerErrorCode::KeyAuditUnavailable
        .error(
            "the provider key access could not be recorded, so the key was not used; retry shortly",
        )
        .with_header("Retry-After", "2")
}

/// The account's registered key for `provider` does not decrypt.
pub fn provider_key_unusable(provider: Provider) -> ApiError {
    BrokerErrorCode::ProviderKeyUnusable
        .error(format!(
            "the {provider} key registered for this account could not be decrypted; \
             register it again with PUT /v1/provider-keys/{provider}"
        ))
        .with("provider", provider.as_str())
}

/// A drop-in call's 2xx answer whose body is not the provider's response (no usage counts).
pub fn upstream_malformed(provider: Provider, status: u16) -> ApiError {
    BrokerErrorCode::UpstreamMalformed.error(format!(
        "{provider} answered HTTP {status} with a body that is not a {provider} response"
    ))
}

/// The platform's own provider key was refused upstream (HTTP `status`, 401 or 403): the
/// caller's key is fine, so this is not a 401 for them.
pub fn platform_key_refused(provider: Provider, status: u16) -> ApiError {
    BrokerErrorCode::UpstreamAuthFailed.error(format!(
        "{provider} rejected the gateway's provider credentials (HTTP {status}); this is not about your key"
    ))
}

/// The platform's own provider account refused a drop-in call for its quota or credit (HTTP
/// `status`): a 503 about the platform, not the provider's text about "your plan and billing",
/// which the caller could only take for theirs.
pub fn platform_quota_exhausted(provider: Provider, status: u16) -> ApiError {
    BrokerErrorCode::UpstreamQuotaExhausted.error(format!(
        "{provider} refused the call (HTTP {status}): the platform's quota or billing limit there \
         is exhausted; this is not about your key or your credits"
    ))
}

/// A drop-in call that got no answer from upstream: 504 for a timeout, 502 otherwise, the
/// message scrubbed of every key pattern and of `key`, the key actually used.
pub fn upstream_failure(e: &ProviderError, key: &str) -> ApiError {
    let status = if e.code == ProviderErrorCode::UpstreamTimeout {
        504
    } else {
        502
    };
    ApiError::new(
        status,
        e.code.as_str(),
        scrub_secrets(&e.message, &[key]).into_owned(),
    )
}

/// A `/v1/ask` completion's upstream failure as the broker answers it: 502 and
/// `{"error": e}`, the message scrubbed of every key pattern and of `key`.
pub fn completion_failure(e: &ProviderError, key: &str) -> (u16, Value) {
    let mut e = e.clone();
    e.message = scrub_secrets(&e.message, &[key]).into_owned();
    (502, json!({ "error": e }))
}

/// The data of a streamed `/v1/ask` completion's `error` event (`COMPLETE_STREAM_PATH`): the
/// failure as `/v1/complete` answers it ([`completion_failure`]), and whether the provider
/// had begun its answer when it failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamFailure {
    pub status: u16,
    pub body: Value,
    /// The provider's answer had begun (it answered 2xx and some of its text came) when it
    /// failed: it may have generated, and billed, more of it, so the call is charged its worst
    /// case whatever the error (`docs/DECISIONS.md`, "Streams"). Absent (a broker from before
    /// this field): false.
    #[serde(default)]
    pub mid_answer: bool,
}

impl StreamFailure {
    /// `e` as the `error` event tells it, its message scrubbed of every key pattern and `key`.
    pub fn new(e: &ProviderError, key: &str, mid_answer: bool) -> Self {
        let (status, body) = completion_failure(e, key);
        StreamFailure {
            status,
            body,
            mid_answer,
        }
    }
}

// The gateway's reading of a broker's refusals.

/// The 503 of a broker that could not be reached or refused the gateway itself.
pub fn broker_unavailable(provider: Provider) -> ApiError {
    ApiError::new(
        503,
        "broker_unavailable",
        format!("the {provider} broker is unavailable"),
    )
    .with_header("Retry-After", "1")
}

/// A broker's refusal, read for the gateway's caller.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// Passed on as the broker gave it: its status and code, the message scrubbed, the extra
    /// fields, and the `Retry-After` given.
    PassedOn(ApiError),
    /// A code the caller has no business with, or none at all: 503 `broker_unavailable`.
    /// `given` is the code the broker answered (empty when none), for the log only.
    Unavailable { given: String, error: ApiError },
}

impl Refusal {
    /// The contract error for the caller.
    pub fn into_error(self) -> ApiError {
        match self {
            Refusal::PassedOn(e) | Refusal::Unavailable { error: e, .. } => e,
        }
    }
}

/// Reads a broker's refusal (`status`, its reply `text`) of a call for `provider`. A code
/// the broker may answer the caller with passes on with its status, the message scrubbed
/// (or a fixed text when none), every extra field, and `retry_after` as `Retry-After`; any
/// other reply is [`broker_unavailable`].
pub fn read_refusal(
    provider: Provider,
    status: u16,
    text: &str,
    retry_after: Option<String>,
) -> Refusal {
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let given = v["error"]["code"].as_str().unwrap_or("");
    let Some(code) = BrokerErrorCode::parse(given).filter(|c| c.passes_on()) else {
        return Refusal::Unavailable {
            given: given.to_string(),
            error: broker_unavailable(provider),
        };
    };
    let message = scrub(
        v["error"]["message"]
            .as_str()
            .unwrap_or("the broker refused the call"),
    )
    .into_owned();
    let mut e = ApiError::new(status, code.as_str(), message);
    if let Value::Object(extra) = &v["error"] {
        for (k, x) in extra {
            if k != "code" && k != "message" {
                e = e.with(k, x.clone());
            }
        }
    }
    if let Some(r) = retry_after {
        e = e.with_header("Retry-After", r);
    }
    Refusal::PassedOn(e)
}

/// Why a broker gave no completion for a `/v1/ask` call, as `results[]` shows it: its code
/// as given (a broker refusal or an upstream failure), a scrubbed message, and when to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletionFailure {
    pub code: String,
    pub message: String,
    pub retry_after_ms: Option<u64>,
}

/// Reads a broker's non-200 answer to a completion: `{"error": {"code", "message",
/// "retry_after_ms"?}}`, with fixed fallbacks for what is missing. An answer without the
/// broker's error code (the runtime's own error page while the broker's isolate failed or was
/// replaced) is `broker_unavailable`, as a failed call to the broker is: it may have called the
/// provider, so it is charged its worst case (`credits::settlement`).
pub fn read_completion_failure(text: &str) -> CompletionFailure {
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    CompletionFailure {
        code: v["error"]["code"]
            .as_str()
            .unwrap_or("broker_unavailable")
            .to_string(),
        message: scrub(
            v["error"]["message"]
                .as_str()
                .unwrap_or("the broker failed"),
        )
        .into_owned(),
        retry_after_ms: v["error"]["retry_after_ms"].as_u64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::dropin::streaming_unsupported;
    use crate::broker::check_request;
    use crate::providers::completion::CompletionRequest;
    use crate::providers::models::default_allowlist;

    fn refusal(status: u16, body: Value, retry_after: Option<&str>) -> Refusal {
        read_refusal(
            Provider::OpenAi,
            status,
            &body.to_string(),
            retry_after.map(str::to_string),
        )
    }

    #[test]
    fn wire_codes_match_serde_and_parse_back() {
        for c in BrokerErrorCode::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), json!(c.as_str()));
            assert_eq!(BrokerErrorCode::parse(c.as_str()), Some(c));
        }
        assert_eq!(BrokerErrorCode::parse("Unauthorized"), None);
        assert_eq!(BrokerErrorCode::parse("broker_unavailable"), None);
    }

    #[test]
    fn the_codes_passed_on_are_the_callers_business_only() {
        let passed: Vec<&str> = BrokerErrorCode::ALL
            .into_iter()
            .filter(|c| c.passes_on())
            .map(BrokerErrorCode::as_str)
            .collect();
        assert_eq!(
            passed,
            [
                "invalid_json",
                "invalid_request",
                "invalid_param",
                "body_too_large",
                "prompt_too_large",
                "model_not_allowed",
                "streaming_unsupported",
                "provider_key_unusable",
                "key_audit_unavailable",
                "byok_unavailable",
                "service_unavailable",
                "upstream_auth_failed",
                "upstream_timeout",
                "upstream_unreachable",
                "upstream_malformed",
                "upstream_quota_exhausted",
            ]
        );
    }

    /// The statuses the enum states are the ones the errors a broker builds carry.
    #[test]
    fn each_code_implies_the_status_its_errors_carry() {
        let completion = CompletionRequest {
            model: "gpt-9".into(),
            prompt: "hi".into(),
            system: None,
            max_tokens: 10,
            temperature: None,
            top_p: None,
        };
        let allowlist = default_allowlist(Provider::OpenAi);
        let timeout = ProviderError {
            code: ProviderErrorCode::UpstreamTimeout,
            message: "slow".into(),
            upstream_status: None,
            retry_after_ms: None,
        };
        let unreachable = ProviderError {
            code: ProviderErrorCode::UpstreamUnreachable,
            ..timeout.clone()
        };
        let built = [
            secret_refused(),
            ApiError::not_found(),
            ApiError::internal(),
            ApiError::invalid_json("x"),
            ApiError::invalid_request("x"),
            ApiError::invalid_param("key", "x"),
            ApiError::body_too_large(10),
            ApiError::prompt_too_large(10),
            check_request(Provider::OpenAi, &completion, allowlist, 100).unwrap_err(),
            streaming_unsupported(),
            provider_key_unusable(Provider::OpenAi),
            key_audit_unavailable(),
            byok_unavailable(),
            ApiError::unavailable(5),
            platform_key_refused(Provider::OpenAi, 401),
            upstream_failure(&timeout, "k"),
            upstream_failure(&unreachable, "k"),
            upstream_malformed(Provider::OpenAi, 200),
            platform_quota_exhausted(Provider::OpenAi, 429),
        ];
        for e in &built {
            let code = BrokerErrorCode::parse(e.code).unwrap_or_else(|| panic!("{}", e.code));
            assert_eq!(code.status(), e.status, "{code}");
        }
        let mut codes: Vec<&str> = built.iter().map(|e| e.code).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(
            codes.len(),
            BrokerErrorCode::ALL.len(),
            "every code is built"
        );
    }

    #[test]
    fn an_unknown_code_is_a_503_broker_unavailable_retried_after_1s() {
        let r = refusal(
            400,
            json!({"error": {"code": "brand_new", "message": "m"}}),
            Some("9"),
        );
        let Refusal::Unavailable { given, error } = r else {
            panic!("passed on: {r:?}")
        };
        assert_eq!(given, "brand_new");
        assert_eq!((error.status, error.code), (503, "broker_unavailable"));
        assert_eq!(error.message, "the openai broker is unavailable");
        assert_eq!(error.headers, vec![("Retry-After", "1".to_string())]);
    }

    #[test]
    fn a_refusal_of_the_gateway_itself_or_no_envelope_is_broker_unavailable() {
        for body in [
            json!({"error": {"code": "unauthorized", "message": "missing or invalid broker secret"}}),
            json!({"error": {"code": "not_found", "message": "no such resource"}}),
            json!({"error": {"code": "internal_error", "message": "internal error"}}),
            json!({"ok": true}),
        ] {
            let e = refusal(401, body, None).into_error();
            assert_eq!((e.status, e.code), (503, "broker_unavailable"));
        }
        let r = read_refusal(Provider::Anthropic, 502, "<html>bad gateway</html>", None);
        assert!(matches!(&r, Refusal::Unavailable { given, .. } if given.is_empty()));
    }

    #[test]
    fn a_known_code_passes_on_with_its_status_extra_fields_and_retry_after() {
        let r = refusal(
            424,
            json!({"error": {
                "code": "provider_key_unusable",
                "message": "could not be decrypted",
                "provider": "openai",
                "limit_bytes": 10
            }}),
            Some("5"),
        );
        let Refusal::PassedOn(e) = r else {
            panic!("not passed on: {r:?}")
        };
        assert_eq!((e.status, e.code), (424, "provider_key_unusable"));
        assert_eq!(
            e.body(),
            json!({"error": {
                "code": "provider_key_unusable",
                "message": "could not be decrypted",
                "provider": "openai",
                "limit_bytes": 10
            }})
        );
        assert_eq!(e.headers, vec![("Retry-After", "5".to_string())]);
    }

    #[test]
    fn a_passed_on_message_is_scrubbed_and_a_missing_one_is_a_fixed_text() {
        let e = refusal(
            502,
            json!({"error": {"code": "upstream_unreachable", "message": "bad key sk-abcdef123456"}}),
            None,
        )
        .into_error();
        assert_eq!(e.message, "bad key [REDACTED]");
        assert!(e.headers.is_empty());
        let e = refusal(400, json!({"error": {"code": "invalid_request"}}), None).into_error();
        assert_eq!(e.message, "the broker refused the call");
    }

    #[test]
    fn upstream_failures_are_scrubbed_of_the_key_used() {
        let e = ProviderError {
            code: ProviderErrorCode::UpstreamRateLimited,
            message: "slow down, plainkey42".into(),
            upstream_status: Some(429),
            retry_after_ms: Some(1000),
        };
        let (status, body) = completion_failure(&e, "plainkey42");
        assert_eq!(status, 502);
        assert_eq!(
            body,
            json!({"error": {
                "code": "upstream_rate_limited",
                "message": "slow down, [REDACTED]",
                "upstream_status": 429,
                "retry_after_ms": 1000
            }})
        );
        let e = upstream_failure(
            &ProviderError {
                code: ProviderErrorCode::UpstreamTimeout,
                ..e
            },
            "plainkey42",
        );
        assert_eq!((e.status, e.code), (504, "upstream_timeout"));
        assert_eq!(e.message, "slow down, [REDACTED]");
    }

    #[test]
    fn a_completion_failure_keeps_any_code_and_falls_back_when_unreadable() {
        let f = read_completion_failure(
            &json!({"error": {"code": "upstream_overloaded", "message": "token sk-abcdef123456", "retry_after_ms": 250}})
                .to_string(),
        );
        assert_eq!(
            f,
            CompletionFailure {
                code: "upstream_overloaded".into(),
                message: "token [REDACTED]".into(),
                retry_after_ms: Some(250),
            }
        );
        let f = read_completion_failure("not json");
        assert_eq!(
            (f.code.as_str(), f.message.as_str(), f.retry_after_ms),
            ("broker_unavailable", "the broker failed", None)
        );
        assert_eq!(
            crate::credits::settlement::unreported(&f.code),
            crate::credits::settlement::Unreported::WorstCase
        );
    }
}
