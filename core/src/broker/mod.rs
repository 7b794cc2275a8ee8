//! The gateway ↔ broker protocol: the request a broker accepts, the checks it makes before it
//! touches its provider key, and the deterministic synthetic answers for `lvk_test_` keys.
//! [`errors`]: the codes a broker answers and what its refusals become for the caller;
//! [`passthrough`]: the pure half of a drop-in call forwarded through a broker;
//! [`secret`]: the shared secret as a broker checks it (current and, during a rotation, previous).

pub mod errors;
pub mod passthrough;
pub mod secret;

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
/// Moves a page of this broker's provider's stored keys to the newest BYOK master key version:
/// a [`ResealRequest`] in, a [`ResealReport`] out. Reached from the gateway's admin API
/// (`POST /admin/byok/reseal/:provider`).
pub const RESEAL_PATH: &str = "/v1/byok/reseal";
/// Most rows one re-seal call visits (each costs an audit row and an update: two D1 queries).
pub const RESEAL_PAGE_MAX: u32 = 100;
/// Rows one re-seal call visits when the request names no limit.
pub const RESEAL_PAGE_DEFAULT: u32 = 50;
/// The `key_access_log` purpose of a decryption made to re-seal a key (the account sees it in
/// its access log, as every decryption).
pub const RESEAL_PURPOSE: &str = "re-seal (BYOK master key rotation)";
/// Passthrough metadata headers (gateway → broker).
pub const REQUEST_ID_HEADER: &str = "x-gw-request-id";
pub const ACCOUNT_ID_HEADER: &str = "x-gw-account-id";
/// `1` for an `lvk_test_` caller: answer synthetically, never call upstream.
pub const TEST_MODE_HEADER: &str = "x-gw-test-mode";
/// The account's sealed provider key, when it brought one.
pub const BYOK_HEADER: &str = "x-gw-byok-ciphertext";
/// `1` from a gateway that reads `upstream_quota_exhausted`: a broker answers that code only
/// to such a gateway (a gateway deployed before it would read the unknown code as
/// `broker_unavailable`, charged its worst case, while the brokers deploy first), and to
/// another passes the provider's refusal on as before.
pub const QUOTA_CODE_HEADER: &str = "x-gw-reads-quota-code";
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

/// `POST /v1/byok/reseal` body: the rows of the broker's provider after `after` (an account id,
/// exclusive; from the start when absent), at most `limit` of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResealRequest {
    pub request_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    #[serde(default = "default_reseal_limit")]
    pub limit: u32,
}

fn default_reseal_limit() -> u32 {
    RESEAL_PAGE_DEFAULT
}

impl ResealRequest {
    /// The page size used: `limit` within 1 to [`RESEAL_PAGE_MAX`].
    pub fn page(&self) -> u32 {
        self.limit.clamp(1, RESEAL_PAGE_MAX)
    }
}

/// What one re-seal call did. `next` is where the next call starts (`after`), `None` once
/// every row of the provider was visited. Counts only: never a key, ciphertext or account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResealReport {
    /// The version every re-sealed key now has.
    pub newest_version: u32,
    /// Rows of this page not at the newest version.
    pub visited: u32,
    /// Moved to the newest version.
    pub resealed: u32,
    /// Did not open (a dropped version, another owner's ciphertext, tampered): left as they
    /// are; their calls are refused (424) until the account registers its key again.
    pub unusable: u32,
    /// Replaced or deleted by the account while being re-sealed: left to the account's change.
    pub changed_meanwhile: u32,
    /// The access could not be recorded (so the key was not decrypted), or the new ciphertext
    /// could not be written: left as they are; a later pass visits them again.
    pub retry_later: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
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
    fn reseal_requests_default_and_bound_their_page() {
        let r: ResealRequest = serde_json::from_str(r#"{"request_id": "req_1"}"#).unwrap();
        assert_eq!((r.after.as_deref(), r.page()), (None, RESEAL_PAGE_DEFAULT));
        let r: ResealRequest =
            serde_json::from_str(r#"{"request_id": "req_1", "after": "acct_x", "limit": 100000}"#)
                .unwrap();
        assert_eq!(
            (r.after.as_deref(), r.page()),
            (Some("acct_x"), RESEAL_PAGE_MAX)
        );
        let r: ResealRequest =
            serde_json::from_str(r#"{"request_id": "req_1", "limit": 0}"#).unwrap();
        assert_eq!(r.page(), 1);
        assert!(
            serde_json::from_str::<ResealRequest>(r#"{"request_id": "r", "limt": 5}"#).is_err()
        );
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
