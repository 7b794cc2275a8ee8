//! Provider-neutral completion types: what the gateway asks a broker for, what a broker
//! answers, and the typed upstream failure. They travel as JSON between gateway and broker.

use serde::{Deserialize, Serialize};

/// One text completion to run against one provider: the request the gateway sends a broker,
/// and the input of every wire-format adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionRequest {
    /// The provider's model name, already checked against the broker's allowlist.
    pub model: String,
    /// The user's prompt, sent as one user turn.
    pub prompt: String,
    /// Optional system prompt, placed where each provider expects it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Upper bound on output tokens (each provider's own field name).
    pub max_tokens: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
}

/// A successful answer, normalized. This is the broker's whole output (its field allowlist):
/// nothing else from the upstream body is passed on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// The model that answered, as the upstream reported it (it may carry a date suffix).
    pub model: String,
    pub content: String,
    /// Source URLs, for providers that cite (Perplexity); empty otherwise.
    #[serde(default)]
    pub citations: Vec<String>,
    pub tokens: Tokens,
}

impl Completion {
    /// Whether this answer may be cached and served to other calls: it has text. A provider
    /// can answer 200 with no text at all (Gemini spending its whole `maxOutputTokens` on
    /// thinking, a reasoning model cut at its limit, a refusal with no content); that answer is
    /// still returned to its caller, but never stored for 24 hours.
    pub fn is_cacheable(&self) -> bool {
        !self.content.trim().is_empty()
    }
}

/// Token counts as the provider bills them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
}

/// Why an upstream call gave no completion. Serialized as snake_case wire codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderErrorCode {
    UpstreamRateLimited,
    /// The platform's provider account is out of quota or credit: a 429 that no retry cures.
    UpstreamQuotaExhausted,
    UpstreamAuthFailed,
    UpstreamBadRequest,
    UpstreamOverloaded,
    UpstreamServerError,
    UpstreamTimeout,
    UpstreamMalformed,
    UpstreamUnreachable,
    ModelNotAllowed,
    PromptTooLarge,
}

impl ProviderErrorCode {
    pub const ALL: [ProviderErrorCode; 11] = [
        ProviderErrorCode::UpstreamRateLimited,
        ProviderErrorCode::UpstreamQuotaExhausted,
        ProviderErrorCode::UpstreamAuthFailed,
        ProviderErrorCode::UpstreamBadRequest,
        ProviderErrorCode::UpstreamOverloaded,
        ProviderErrorCode::UpstreamServerError,
        ProviderErrorCode::UpstreamTimeout,
        ProviderErrorCode::UpstreamMalformed,
        ProviderErrorCode::UpstreamUnreachable,
        ProviderErrorCode::ModelNotAllowed,
        ProviderErrorCode::PromptTooLarge,
    ];

    /// The wire code, identical to the serde form.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderErrorCode::UpstreamRateLimited => "upstream_rate_limited",
            ProviderErrorCode::UpstreamQuotaExhausted => "upstream_quota_exhausted",
            ProviderErrorCode::UpstreamAuthFailed => "upstream_auth_failed",
            ProviderErrorCode::UpstreamBadRequest => "upstream_bad_request",
            ProviderErrorCode::UpstreamOverloaded => "upstream_overloaded",
            ProviderErrorCode::UpstreamServerError => "upstream_server_error",
            ProviderErrorCode::UpstreamTimeout => "upstream_timeout",
            ProviderErrorCode::UpstreamMalformed => "upstream_malformed",
            ProviderErrorCode::UpstreamUnreachable => "upstream_unreachable",
            ProviderErrorCode::ModelNotAllowed => "model_not_allowed",
            ProviderErrorCode::PromptTooLarge => "prompt_too_large",
        }
    }

    /// Whether the same call may succeed if tried again later (rate limits, overload,
    /// server errors, timeouts, an unreachable upstream).
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ProviderErrorCode::UpstreamRateLimited
                | ProviderErrorCode::UpstreamOverloaded
                | ProviderErrorCode::UpstreamServerError
                | ProviderErrorCode::UpstreamTimeout
                | ProviderErrorCode::UpstreamUnreachable
        )
    }
}

impl std::fmt::Display for ProviderErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed upstream call. `message` is human text that never holds key material and at most
/// a short, scrubbed excerpt of the upstream body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderError {
    pub code: ProviderErrorCode,
    pub message: String,
    /// The upstream HTTP status, when an HTTP response was received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    /// How long the upstream asked us to wait, when it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl ProviderError {
    /// An error with no upstream status and no retry hint.
    pub fn new(code: ProviderErrorCode, message: impl Into<String>) -> ProviderError {
        ProviderError {
            code,
            message: message.into(),
            upstream_status: None,
            retry_after_ms: None,
        }
    }
}

impl std::fmt::Display for ProviderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ProviderError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_answer_with_text_is_cacheable() {
        let answer = |content: &str| Completion {
            model: "m".into(),
            content: content.into(),
            citations: Vec::new(),
            tokens: Tokens::default(),
        };
        assert!(answer("Paris.").is_cacheable());
        assert!(!answer("").is_cacheable());
        assert!(!answer(" \n\t").is_cacheable());
    }

    #[test]
    fn error_codes_serialize_as_snake_case_wire_names() {
        for code in ProviderErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            let back: ProviderErrorCode = serde_json::from_str(&json).unwrap();
            assert_eq!(back, code);
        }
    }

    #[test]
    fn provider_error_omits_absent_optionals_and_round_trips() {
        let e = ProviderError::new(ProviderErrorCode::UpstreamTimeout, "no answer in 30 s");
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"code": "upstream_timeout", "message": "no answer in 30 s"})
        );
        let full = ProviderError {
            code: ProviderErrorCode::UpstreamRateLimited,
            message: "slow down".into(),
            upstream_status: Some(429),
            retry_after_ms: Some(2000),
        };
        let back: ProviderError =
            serde_json::from_str(&serde_json::to_string(&full).unwrap()).unwrap();
        assert_eq!(back, full);
    }

    #[test]
    fn request_round_trips_with_optional_fields_absent() {
        let req: CompletionRequest =
            serde_json::from_str(r#"{"model":"sonar","prompt":"hi","max_tokens":16}"#).unwrap();
        assert_eq!(req.system, None);
        assert_eq!(req.temperature, None);
        let json = serde_json::to_string(&req).unwrap();
        assert_eq!(json, r#"{"model":"sonar","prompt":"hi","max_tokens":16}"#);
    }

    #[test]
    fn completion_json_has_exactly_the_allowlisted_fields() {
        let c = Completion {
            model: "gpt-4o-mini".into(),
            content: "Paris".into(),
            citations: vec![],
            tokens: Tokens {
                input: 3,
                output: 1,
            },
        };
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            serde_json::json!({"model": "gpt-4o-mini", "content": "Paris", "citations": [],
                "tokens": {"input": 3, "output": 1}})
        );
    }

    #[test]
    fn transient_codes_are_the_retryable_ones() {
        assert!(ProviderErrorCode::UpstreamRateLimited.is_transient());
        assert!(ProviderErrorCode::UpstreamUnreachable.is_transient());
        assert!(!ProviderErrorCode::UpstreamAuthFailed.is_transient());
        assert!(!ProviderErrorCode::ModelNotAllowed.is_transient());
    }
}
