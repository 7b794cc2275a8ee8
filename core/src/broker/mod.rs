//! The gateway ↔ broker protocol: the request a broker accepts, the checks it makes before it
//! touches its provider key, and the deterministic synthetic answers for `lvk_test_` keys.
//! [`errors`]: the codes a broker answers and what its refusals become for the caller;
//! [`passthrough`]: the pure half of a drop-in call forwarded through a broker.

pub mod errors;
pub mod passthrough;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::api::ask::PROMPT_LIMIT;
use crate::error::ApiError;
use crate::providers::completion::{Completion, CompletionRequest, Tokens};
use crate::providers::models::check_model;
use crate::providers::Provider;

/// Header carrying the gateway ↔ broker shared secret.
pub const SECRET_HEADER: &str = "x-broker-secret";
/// The broker path of `/v1/ask` calls: a [`BrokerRequest`] in, a `Completion` out.
pub const COMPLETE_PATH: &str = "/v1/complete";
/// The broker's streamed `/v1/ask` completion: the provider called in its streaming mode, the
/// answer told as `delta` events and a final `result` or `error` event.
pub const COMPLETE_STREAM_PATH: &str = "/v1/complete-stream";
/// The broker path of the drop-in endpoints. The body is the caller's provider request, byte
/// for byte; the metadata travels in the `x-gw-*` headers below. The broker answers with the
/// upstream's status and body (error bodies scrubbed), marked [`ORIGIN_HEADER`]` = upstream`,
/// and the tokens used in [`USAGE_INPUT_HEADER`] / [`USAGE_OUTPUT_HEADER`]; its own refusals
/// are the usual `{"error": {...}}` envelope without the mark.
pub const PASSTHROUGH_PATH: &str = "/v1/passthrough";
/// Seals a bring-your-own provider key: `{account_id, provider, key}` in, `{ciphertext}` out.
pub const SEAL_PATH: &str = "/v1/byok/seal";
/// Passthrough metadata headers (gateway → broker).
pub const REQUEST_ID_HEADER: &str = "x-gw-request-id";
pub const ACCOUNT_ID_HEADER: &str = "x-gw-account-id";
/// `1` for an `lvk_test_` caller: answer synthetically, never call upstream.
pub const TEST_MODE_HEADER: &str = "x-gw-test-mode";
/// The account's sealed provider key, when it brought one.
pub const BYOK_HEADER: &str = "x-gw-byok-ciphertext";
/// Passthrough answer headers (broker → gateway; the gateway strips them).
pub const ORIGIN_HEADER: &str = "x-passthrough-origin";
/// The [`ORIGIN_HEADER`] value of an answer that is the upstream's.
pub const ORIGIN_UPSTREAM: &str = "upstream";
/// Set (`1`) on a passthrough answer that is the upstream's event stream, relayed as it
/// arrives: it carries no usage headers (the usage is in its events).
pub const STREAM_HEADER: &str = "x-passthrough-stream";
pub const USAGE_INPUT_HEADER: &str = "x-usage-input-tokens";
pub const USAGE_OUTPUT_HEADER: &str = "x-usage-output-tokens";
/// Largest body a broker reads: above the largest `/v1/ask` completion the gateway can send,
/// a 20,480-byte prompt and a 20,480-byte system prompt of control characters, each written
/// as a 6-byte `\u00XX` escape in JSON (about 246 KB with the ids and the BYOK ciphertext).
pub const BROKER_BODY_LIMIT: usize = 320 * 1024;
/// Default cap on output tokens a broker lets through.
pub const DEFAULT_MAX_OUTPUT_TOKENS: u32 = 16_384;

/// What the gateway asks of a broker. Only ids travel, never the caller's key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrokerRequest {
    pub request_id: String,
    pub account_id: String,
    /// `lvk_test_` caller: answer synthetically, never call upstream.
    #[serde(default)]
    pub test_mode: bool,
    pub completion: CompletionRequest,
    /// The account's sealed key for this provider (BYOK): the broker decrypts it, logs the
    /// access, and uses it instead of its own key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub byok_ciphertext: Option<String>,
}

/// `POST /v1/byok/seal` body. The plaintext key crosses only the service binding.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SealRequest {
    pub account_id: String,
    pub provider: Provider,
    pub key: String,
}

impl std::fmt::Debug for SealRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealRequest")
            .field("account_id", &self.account_id)
            .field("provider", &self.provider)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// The checks a broker makes before its key is used; each failure is a contract error.
pub fn check_request(
    provider: Provider,
    req: &CompletionRequest,
    allowlist: &[&str],
    max_output_tokens: u32,
) -> Result<(), ApiError> {
    check_model(provider, &req.model, allowlist)
        .map_err(|r| ApiError::model_not_allowed(provider, &req.model, r))?;
    if req.prompt.len() > PROMPT_LIMIT
        || req.system.as_ref().is_some_and(|s| s.len() > PROMPT_LIMIT)
    {
        return Err(ApiError::prompt_too_large(PROMPT_LIMIT));
    }
    if req.max_tokens == 0 || req.max_tokens > max_output_tokens {
        return Err(ApiError::invalid_param(
            "max_tokens",
            format!("max_tokens must be between 1 and {max_output_tokens}"),
        ));
    }
    Ok(())
}

/// The deterministic answer a broker gives a test-mode call: no upstream, no charge.
pub fn synthetic_completion(provider: Provider, req: &CompletionRequest) -> Completion {
    let digest = hex::encode(&Sha256::digest(req.prompt.as_bytes())[..4]);
    let content = format!("[test {provider}/{}] synthetic answer {digest}", req.model);
    let words = |s: &str| s.split_whitespace().count() as u64;
    let output = words(&content).min(u64::from(req.max_tokens));
    Completion {
        model: req.model.clone(),
        citations: Vec::new(),
        tokens: Tokens {
            input: words(&req.prompt) + req.system.as_deref().map_or(0, words),
            output,
        },
        content,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::models::default_allowlist;

    fn req(model: &str) -> CompletionRequest {
        CompletionRequest {
            model: model.into(),
            prompt: "what is rust".into(),
            system: None,
            max_tokens: 100,
            temperature: None,
            top_p: None,
        }
    }

    /// The largest request `/v1/ask` accepts must reach the broker whole, JSON escapes and all.
    #[test]
    fn the_largest_valid_completion_fits_the_broker_limit() {
        let worst = "\u{1}".repeat(crate::api::ask::PROMPT_LIMIT);
        let request = BrokerRequest {
            request_id: format!("req_{}", "0".repeat(32)),
            account_id: format!("acct_{}", "0".repeat(32)),
            test_mode: false,
            completion: CompletionRequest {
                model: "claude-3-5-haiku-latest".into(),
                prompt: worst.clone(),
                system: Some(worst),
                max_tokens: u32::MAX,
                temperature: Some(0.123_456_789),
                top_p: Some(0.987_654_321),
            },
            byok_ciphertext: Some("A".repeat(4096)),
        };
        let body = serde_json::to_string(&request).unwrap();
        assert!(body.len() > 128 * 1024, "the case this limit is for");
        assert!(body.len() <= BROKER_BODY_LIMIT, "{} bytes", body.len());
    }

    #[test]
    fn allowlisted_model_passes_and_unlisted_is_403() {
        let list = default_allowlist(Provider::OpenAi);
        assert!(check_request(Provider::OpenAi, &req("gpt-4o-mini"), list, 1000).is_ok());
        let e = check_request(Provider::OpenAi, &req("gpt-9"), list, 1000).unwrap_err();
        assert_eq!((e.status, e.code), (403, "model_not_allowed"));
    }

    #[test]
    fn image_model_is_403_even_when_listed() {
        let e = check_request(
            Provider::OpenAi,
            &req("gpt-image-1"),
            &["gpt-image-1"],
            1000,
        )
        .unwrap_err();
        assert_eq!((e.status, e.code), (403, "model_not_allowed"));
    }

    #[test]
    fn caps_prompt_and_output_tokens() {
        let list = default_allowlist(Provider::Gemini);
        let mut r = req("gemini-2.5-flash");
        r.prompt = "x".repeat(PROMPT_LIMIT + 1);
        assert_eq!(
            check_request(Provider::Gemini, &r, list, 1000)
                .unwrap_err()
                .status,
            413
        );
        let mut r = req("gemini-2.5-flash");
        r.max_tokens = 1001;
        assert_eq!(
            check_request(Provider::Gemini, &r, list, 1000)
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn synthetic_answers_are_deterministic_and_prompt_dependent() {
        let a = synthetic_completion(Provider::Anthropic, &req("claude-haiku-4-5"));
        assert_eq!(
            a,
            synthetic_completion(Provider::Anthropic, &req("claude-haiku-4-5"))
        );
        let mut other = req("claude-haiku-4-5");
        other.prompt = "something else".into();
        assert_ne!(
            a.content,
            synthetic_completion(Provider::Anthropic, &other).content
        );
        assert!(a.content.starts_with("[test anthropic/claude-haiku-4-5]"));
    }
}
