//! The pure half of a drop-in call through a broker (`POST /v1/passthrough`): the headers the
//! broker sends upstream, what the upstream's answer becomes, and the headers that carry that
//! answer's marks back to the gateway.

use serde_json::Value;

use crate::api::dropin::{self, Dialect};
use crate::broker::errors::{platform_key_refused, platform_quota_exhausted, upstream_malformed};
use crate::broker::{ORIGIN_HEADER, ORIGIN_UPSTREAM, USAGE_INPUT_HEADER, USAGE_OUTPUT_HEADER};
use crate::error::ApiError;
use crate::providers::adapters::anthropic::API_VERSION;
use crate::providers::completion::Tokens;
use crate::scrub::scrub_secrets;

/// The caller's Anthropic API version, passed along to Anthropic.
pub const VERSION_HEADER: &str = "anthropic-version";
/// The caller's Anthropic beta flags, passed along to Anthropic.
pub const BETA_HEADER: &str = "anthropic-beta";
/// The caller's headers a drop-in call carries to the broker (they change the answer).
pub const FORWARDED_HEADERS: [&str; 2] = [VERSION_HEADER, BETA_HEADER];

/// Longest caller `anthropic-version` passed along.
const VERSION_LIMIT: usize = 32;
/// Longest caller `anthropic-beta` passed along.
const BETA_LIMIT: usize = 256;
/// Longest upstream `retry-after` passed back.
const RETRY_AFTER_LIMIT: usize = 32;

/// A drop-in call's answer from upstream (or a broker's synthetic test answer): the status and
/// body to give the caller as they are, and the tokens used when the call succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamAnswer {
    pub status: u16,
    pub body: String,
    pub tokens: Option<Tokens>,
    /// The upstream's own `retry-after` on an upstream error.
    pub retry_after: Option<String>,
}

/// A caller's header value, if it is a plain token list of 1 to `max` bytes.
fn token_list(v: Option<&str>, max: usize) -> Option<&str> {
    v.filter(|s| {
        !s.is_empty()
            && s.len() <= max
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_,. ".contains(&b))
    })
}

/// The headers of a drop-in call upstream: JSON, the key in the provider's own header, and for
/// Anthropic the caller's `anthropic-version` (the adapter's when the caller's is absent or not
/// a plain token list) and `anthropic-beta` (left out when not). Never log these: they hold
/// the key.
pub fn upstream_headers(
    dialect: Dialect,
    key: &str,
    caller_version: Option<&str>,
    caller_beta: Option<&str>,
) -> Vec<(String, String)> {
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    headers.push(dialect.provider().auth_header(key));
    if dialect == Dialect::AnthropicMessages {
        let version = token_list(caller_version, VERSION_LIMIT).unwrap_or(API_VERSION);
        headers.push((VERSION_HEADER.into(), version.into()));
        if let Some(beta) = token_list(caller_beta, BETA_LIMIT) {
            headers.push((BETA_HEADER.into(), beta.into()));
        }
    }
    headers
}

/// Whose provider key a drop-in call used: how its refusals read depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUsed {
    /// The account's own (BYOK): its refusals are the caller's business, passed on as they are.
    Account,
    /// The platform's. `quota_code`: the gateway reads `upstream_quota_exhausted`
    /// ([`crate::broker::QUOTA_CODE_HEADER`]).
    Platform { quota_code: bool },
}

/// What the upstream's answer (`status`, body `text`, its `retry-after`) to a drop-in call
/// becomes. A 2xx passes with its usage counts, or is a 502 `upstream_malformed` without them.
/// A 401 or 403 to the platform's own key is a 502 `upstream_auth_failed`: the caller's key is
/// fine; its quota or credit exhausted there is a 503 `upstream_quota_exhausted`, for a gateway
/// that reads that code. Any other status passes as it is, the body scrubbed of every key
/// pattern and of `key`, the key used.
pub fn read_upstream_answer(
    dialect: Dialect,
    status: u16,
    text: String,
    retry_after: Option<String>,
    key: &str,
    used: KeyUsed,
) -> Result<UpstreamAnswer, ApiError> {
    let provider = dialect.provider();
    // No provider answers a POST with a status outside 200–599 or a 304, and no `Response`
    // can carry a body with one (the runtime throws): malformed, as a 2xx without usage.
    if !(200..=599).contains(&status) || status == 304 {
        return Err(upstream_malformed(provider, status));
    }
    if (200..300).contains(&status) {
        let tokens = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| dropin::usage(dialect, &v));
        let Some(tokens) = tokens else {
            return Err(upstream_malformed(provider, status));
        };
        return Ok(UpstreamAnswer {
            status,
            body: text,
            tokens: Some(tokens),
            retry_after: None,
        });
    }
    if let KeyUsed::Platform { quota_code } = used {
        if status == 401 || status == 403 {
            return Err(platform_key_refused(provider, status));
        }
        if quota_code && quota_exhausted(dialect, status, &text) {
            return Err(platform_quota_exhausted(provider, status));
        }
    }
    Ok(UpstreamAnswer {
        status,
        body: scrub_secrets(&text, &[key]).into_owned(),
        tokens: None,
        retry_after,
    })
}

/// Whether an upstream refusal says the provider account's quota or credit is exhausted, as
/// each provider documents it: OpenAI's 429 of type or code `insufficient_quota`; Anthropic's
/// 402 `billing_error`, or its 400 about the credit balance being too low.
fn quota_exhausted(dialect: Dialect, status: u16, text: &str) -> bool {
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let error = &v["error"];
    match dialect {
        Dialect::OpenAiChat => {
            status == 429
                && (error["type"] == "insufficient_quota" || error["code"] == "insufficient_quota")
        }
        Dialect::AnthropicMessages => {
            (status == 402 && error["type"] == "billing_error")
                || (status == 400
                    && error["type"] == "invalid_request_error"
                    && error["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("credit balance is too low")))
        }
    }
}

/// The headers of a broker's answer that carries `answer`: JSON, marked as the upstream's,
/// the tokens used, and the upstream's `retry-after` when it is short enough to be one.
pub fn answer_headers(answer: &UpstreamAnswer) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("content-type", "application/json".to_string()),
        (ORIGIN_HEADER, ORIGIN_UPSTREAM.to_string()),
    ];
    if let Some(t) = answer.tokens {
        headers.push((USAGE_INPUT_HEADER, t.input.to_string()));
        headers.push((USAGE_OUTPUT_HEADER, t.output.to_string()));
    }
    if let Some(r) = answer
        .retry_after
        .as_ref()
        .filter(|r| r.len() <= RETRY_AFTER_LIMIT)
    {
        headers.push(("retry-after", r.clone()));
    }
    headers
}

/// The tokens a broker's answer reports in its usage headers (both present and numbers).
pub fn read_usage_headers(input: Option<&str>, output: Option<&str>) -> Option<Tokens> {
    let (input, output) = (input?.parse().ok()?, output?.parse().ok()?);
    Some(Tokens { input, output })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PLATFORM: KeyUsed = KeyUsed::Platform { quota_code: true };

    fn names(headers: &[(String, String)]) -> Vec<&str> {
        headers.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn openai_calls_carry_the_key_as_a_bearer_token_and_nothing_of_anthropics() {
        let h = upstream_headers(Dialect::OpenAiChat, "sk-1", Some("2024-01-01"), Some("b"));
        assert_eq!(
            h,
            vec![
                ("content-type".into(), "application/json".into()),
                ("authorization".into(), "Bearer sk-1".into()),
            ]
        );
    }

    #[test]
    fn anthropic_calls_keep_a_plain_caller_version_and_beta() {
        let h = upstream_headers(
            Dialect::AnthropicMessages,
            "k",
            Some("2023-01-01"),
            Some("tools-2024-04-04, pdfs-2024-09-25"),
        );
        assert_eq!(
            names(&h),
            [
                "content-type",
                "x-api-key",
                "anthropic-version",
                "anthropic-beta"
            ]
        );
        assert_eq!(h[1].1, "k");
        assert_eq!(h[2].1, "2023-01-01");
        assert_eq!(h[3].1, "tools-2024-04-04, pdfs-2024-09-25");
    }

    #[test]
    fn anthropic_version_falls_back_and_a_bad_beta_is_left_out() {
        for version in [None, Some("x\r\ninjected: 1"), Some(&*"9".repeat(33))] {
            let beta = Some("a;b");
            let h = upstream_headers(Dialect::AnthropicMessages, "k", version, beta);
            assert_eq!(
                names(&h),
                ["content-type", "x-api-key", "anthropic-version"]
            );
            assert_eq!(h[2].1, API_VERSION);
        }
        let long_beta = "b".repeat(257);
        let h = upstream_headers(Dialect::AnthropicMessages, "k", None, Some(&long_beta));
        assert_eq!(h.len(), 3);
    }

    #[test]
    fn the_platforms_exhausted_quota_is_its_own_503_and_a_byok_accounts_is_passed_on() {
        let openai = json!({"error": {"message": "You exceeded your current quota, please check your plan and billing details.",
            "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}}).to_string();
        let credit = json!({"type": "error", "error": {"type": "invalid_request_error",
            "message": "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."}}).to_string();
        let billing = json!({"type": "error", "error": {"type": "billing_error", "message": "x"}})
            .to_string();
        for (dialect, status, text) in [
            (Dialect::OpenAiChat, 429, &openai),
            (Dialect::AnthropicMessages, 400, &credit),
            (Dialect::AnthropicMessages, 402, &billing),
        ] {
            let e = read_upstream_answer(dialect, status, text.clone(), None, "k", PLATFORM)
                .unwrap_err();
            assert_eq!(
                (e.status, e.code),
                (503, "upstream_quota_exhausted"),
                "{text}"
            );
            assert!(!e.message.contains("your plan"), "{}", e.message);
            // A gateway that does not read the code (one deployed before it, while the brokers
            // deploy first) gets the provider's answer as before, not a code it would charge
            // its worst case as a lost broker's.
            let old = KeyUsed::Platform { quota_code: false };
            let a = read_upstream_answer(dialect, status, text.clone(), None, "k", old).unwrap();
            assert_eq!(a.status, status);
            // The account's own key: its quota is the caller's business, passed on as it is.
            let a =
                read_upstream_answer(dialect, status, text.clone(), None, "k", KeyUsed::Account)
                    .unwrap();
            assert_eq!(a.status, status);
        }
        // An ordinary rate limit, or another 400, is the provider's own answer.
        let limited = json!({"error": {"message": "Rate limit reached", "type": "requests",
            "code": "rate_limit_exceeded"}})
        .to_string();
        let a =
            read_upstream_answer(Dialect::OpenAiChat, 429, limited, None, "k", PLATFORM).unwrap();
        assert_eq!(a.status, 429);
        let bad = json!({"type": "error", "error": {"type": "invalid_request_error",
            "message": "max_tokens: field required"}})
        .to_string();
        let a = read_upstream_answer(Dialect::AnthropicMessages, 400, bad, None, "k", PLATFORM)
            .unwrap();
        assert_eq!(a.status, 400);
    }

    #[test]
    fn a_success_passes_with_its_usage_and_without_one_is_malformed() {
        let body = json!({"usage": {"prompt_tokens": 3, "completion_tokens": 5}}).to_string();
        let a = read_upstream_answer(
            Dialect::OpenAiChat,
            200,
            body.clone(),
            Some("7".into()),
            "k",
            PLATFORM,
        )
        .unwrap();
        assert_eq!(
            a,
            UpstreamAnswer {
                status: 200,
                body,
                tokens: Some(Tokens {
                    input: 3,
                    output: 5
                }),
                retry_after: None,
            }
        );
        let e = read_upstream_answer(
            Dialect::AnthropicMessages,
            200,
            "{}".into(),
            None,
            "k",
            PLATFORM,
        )
        .unwrap_err();
        assert_eq!((e.status, e.code), (502, "upstream_malformed"));
        assert_eq!(
            e.message,
            "anthropic answered HTTP 200 with a body that is not a anthropic response"
        );
    }

    #[test]
    fn a_status_no_response_can_carry_a_body_with_is_malformed() {
        for status in [0, 101, 199, 304, 600, 999] {
            for byok in [PLATFORM, KeyUsed::Account] {
                let e = read_upstream_answer(
                    Dialect::OpenAiChat,
                    status,
                    String::new(),
                    None,
                    "k",
                    byok,
                )
                .unwrap_err();
                assert_eq!((e.status, e.code), (502, "upstream_malformed"), "{status}");
            }
        }
        for status in [302, 418, 599] {
            let a = read_upstream_answer(
                Dialect::OpenAiChat,
                status,
                "x".into(),
                None,
                "k",
                KeyUsed::Account,
            )
            .unwrap();
            assert_eq!(a.status, status);
        }
    }

    #[test]
    fn the_platform_keys_refusal_is_a_502_but_an_accounts_own_key_refusal_passes() {
        let body = json!({"error": {"message": "bad key"}}).to_string();
        for status in [401, 403] {
            let e = read_upstream_answer(
                Dialect::OpenAiChat,
                status,
                body.clone(),
                None,
                "k",
                PLATFORM,
            )
            .unwrap_err();
            assert_eq!((e.status, e.code), (502, "upstream_auth_failed"));
            let a = read_upstream_answer(
                Dialect::OpenAiChat,
                status,
                body.clone(),
                None,
                "k",
                KeyUsed::Account,
            )
            .unwrap();
            assert_eq!((a.status, a.tokens), (status, None));
        }
    }

    #[test]
    fn an_upstream_error_passes_scrubbed_of_the_key_used_with_its_retry_after() {
        let a = read_upstream_answer(
            Dialect::AnthropicMessages,
            429,
            "slow down, plainkey42 and sk-ant-abcdef".into(),
            Some("12".into()),
            "plainkey42",
            PLATFORM,
        )
        .unwrap();
        assert_eq!(a.status, 429);
        assert_eq!(a.body, "slow down, [REDACTED] and [REDACTED]");
        assert_eq!(a.retry_after.as_deref(), Some("12"));
    }

    #[test]
    fn answer_headers_mark_the_upstreams_answer_and_read_back() {
        let mut a = UpstreamAnswer {
            status: 200,
            body: "{}".into(),
            tokens: Some(Tokens {
                input: 11,
                output: 22,
            }),
            retry_after: None,
        };
        let h = answer_headers(&a);
        let get =
            |h: &[(&str, String)], n: &str| h.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone());
        assert_eq!(get(&h, ORIGIN_HEADER).as_deref(), Some(ORIGIN_UPSTREAM));
        assert_eq!(
            read_usage_headers(
                get(&h, USAGE_INPUT_HEADER).as_deref(),
                get(&h, USAGE_OUTPUT_HEADER).as_deref()
            ),
            a.tokens
        );
        assert_eq!(get(&h, "retry-after"), None);

        a.tokens = None;
        a.retry_after = Some("30".into());
        let h = answer_headers(&a);
        assert_eq!(get(&h, USAGE_INPUT_HEADER), None);
        assert_eq!(get(&h, "retry-after").as_deref(), Some("30"));
        a.retry_after = Some("9".repeat(33));
        assert_eq!(get(&answer_headers(&a), "retry-after"), None);
    }

    #[test]
    fn usage_headers_need_both_counts_as_numbers() {
        assert_eq!(
            read_usage_headers(Some("1"), Some("2")),
            Some(Tokens {
                input: 1,
                output: 2
            })
        );
        assert_eq!(read_usage_headers(Some("1"), None), None);
        assert_eq!(read_usage_headers(None, Some("2")), None);
        assert_eq!(read_usage_headers(Some("x"), Some("2")), None);
    }
}
