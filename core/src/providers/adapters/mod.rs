//! The four providers' HTTP wire formats: each adapter turns a [`CompletionRequest`] into the
//! provider's request (URL, headers, JSON body) and the provider's response (status, body)
//! into a [`Completion`] or a typed [`ProviderError`]. Pure functions: the broker does the I/O.
//! OpenAI and Perplexity both speak Chat Completions: one `chat_completions` module builds and
//! reads that format, and each of the two says where it differs.
//!
//! Error mapping, shared by all four (the bodies' shapes differ, the rules do not):
//! - 429 → `upstream_rate_limited`, with `retry_after_ms` from the `retry-after` header (whole
//!   or decimal seconds) or, failing that, Gemini's `details[].retryDelay` (`"41s"`);
//! - 401, 403, and a 400 whose details say `API_KEY_INVALID` (Gemini) → `upstream_auth_failed`;
//! - 408 and 504 → `upstream_timeout`; 413 → `prompt_too_large`; other 4xx → `upstream_bad_request`;
//! - 503, 529, or an Anthropic `overloaded_error` body → `upstream_overloaded`;
//!   other 5xx → `upstream_server_error`;
//! - any other non-2xx status, and a 2xx body that is not JSON or lacks a required field →
//!   `upstream_malformed`.
//!
//! A message holds at most a short, scrubbed excerpt of the upstream's own error message (or of
//! an HTML page's title), never the raw body. The broker should still pass it through
//! [`crate::scrub::scrub_secrets`] with its own key, which may match no key pattern.

pub mod anthropic;
mod chat_completions;
pub mod gemini;
pub mod openai;
pub mod perplexity;
pub mod stream;

use serde::Serialize;

use crate::providers::completion::{
    Completion, CompletionRequest, ProviderError, ProviderErrorCode,
};
use crate::providers::Provider;
use crate::scrub::excerpt;

/// One upstream HTTP call, ready for the broker to send. The method is always POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamRequest {
    pub url: String,
    /// Header names are lowercase. Includes the auth header: never log these.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// Builds `provider`'s request for `req`. `base_url` is the provider's published base URL (see
/// [`default_base_url`]) or the mock server's; a trailing `/` is ignored.
pub fn build_request(
    provider: Provider,
    req: &CompletionRequest,
    base_url: &str,
    api_key: &str,
) -> UpstreamRequest {
    match provider {
        Provider::OpenAi => openai::build_request(req, base_url, api_key),
        Provider::Anthropic => anthropic::build_request(req, base_url, api_key),
        Provider::Gemini => gemini::build_request(req, base_url, api_key),
        Provider::Perplexity => perplexity::build_request(req, base_url, api_key),
    }
}

/// Reads `provider`'s response. `retry_after_header` is the raw `retry-after` header value.
pub fn parse_response(
    provider: Provider,
    status: u16,
    retry_after_header: Option<&str>,
    body: &str,
) -> Result<Completion, ProviderError> {
    match provider {
        Provider::OpenAi => openai::parse_response(status, retry_after_header, body),
        Provider::Anthropic => anthropic::parse_response(status, retry_after_header, body),
        Provider::Gemini => gemini::parse_response(status, retry_after_header, body),
        Provider::Perplexity => perplexity::parse_response(status, retry_after_header, body),
    }
}

/// The provider's published API base URL, as the adapters expect it.
pub fn default_base_url(provider: Provider) -> &'static str {
    match provider {
        Provider::OpenAi => "https://api.openai.com/v1",
        Provider::Anthropic => "https://api.anthropic.com",
        Provider::Gemini => "https://generativelanguage.googleapis.com",
        Provider::Perplexity => "https://api.perplexity.ai",
    }
}

/// Longest excerpt of upstream text kept in an error message, in characters.
const EXCERPT_CHARS: usize = 200;

/// `base` + `path`, with one `/` between them whatever `base` ends with.
pub(crate) fn join_url(base: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
    let mut url = String::with_capacity(base.len() + path.len());
    url.push_str(base);
    url.push_str(path);
    url
}

pub(crate) fn header(name: &str, value: &str) -> (String, String) {
    (name.to_owned(), value.to_owned())
}

/// Serializes a request body. The bodies are plain structs of strings and numbers, which
/// `serde_json` cannot fail on (a non-finite float becomes `null`).
pub(crate) fn to_json<T: Serialize>(body: &T) -> String {
    serde_json::to_string(body).unwrap_or_default()
}

pub(crate) fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

/// A 2xx whose body could not be read as the provider's response.
pub(crate) fn malformed(provider: Provider, status: u16, what: &str) -> ProviderError {
    ProviderError {
        code: ProviderErrorCode::UpstreamMalformed,
        message: format!("{} returned HTTP {status} with {what}", provider.as_str()),
        upstream_status: Some(status),
        retry_after_ms: None,
    }
}

/// Parses a 2xx body as `T`, or says why not without quoting the body.
pub(crate) fn parse_success<'de, T: serde::Deserialize<'de>>(
    provider: Provider,
    status: u16,
    body: &'de str,
) -> Result<T, ProviderError> {
    serde_json::from_str(body).map_err(|e| {
        let what = if e.is_syntax() || e.is_eof() {
            "a body that is not valid JSON"
        } else {
            "a body that does not match its response schema"
        };
        malformed(provider, status, what)
    })
}

/// What can be read from an error body of any of the four shapes.
#[derive(Debug, Default, PartialEq)]
struct ErrorBody {
    message: Option<String>,
    /// `error.type` (OpenAI, Anthropic, Perplexity) or `error.status` (Gemini).
    kind: Option<String>,
    key_invalid: bool,
    retry_delay_ms: Option<u64>,
}

fn read_error_body(body: &str) -> Option<ErrorBody> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let mut out = ErrorBody::default();
    let Some(error) = value.get("error") else {
        // Not a provider's shape (a proxy's or framework's): a top-level text, if any.
        out.message = ["message", "detail"]
            .iter()
            .find_map(|k| value.get(k).and_then(|m| m.as_str()))
            .map(str::to_owned);
        return Some(out);
    };
    if let Some(m) = error.as_str() {
        // Some gateways answer `{"error": "text"}`.
        out.message = Some(m.to_owned());
        return Some(out);
    }
    out.message = error
        .get("message")
        .and_then(|m| m.as_str())
        .map(str::to_owned);
    out.kind = error
        .get("type")
        .or_else(|| error.get("status"))
        .and_then(|k| k.as_str())
        .map(str::to_owned);
    if let Some(details) = error.get("details").and_then(|d| d.as_array()) {
        for d in details {
            if d.get("reason").and_then(|r| r.as_str()) == Some("API_KEY_INVALID") {
                out.key_invalid = true;
            }
            if let Some(delay) = d.get("retryDelay").and_then(|r| r.as_str()) {
                out.retry_delay_ms = out.retry_delay_ms.or(parse_seconds_ms(delay));
            }
        }
    }
    Some(out)
}

/// `"2"`, `"1.5"`, `"41s"`, `"0.25s"` → milliseconds, rounded up. Anything else (an HTTP date,
/// a negative or absurd number) → `None`.
pub(crate) fn parse_seconds_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s.strip_suffix('s').unwrap_or(s);
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
        return None;
    }
    let secs: f64 = s.parse().ok()?;
    let ms = (secs * 1000.0).ceil();
    (ms.is_finite() && (0.0..=86_400_000.0).contains(&ms)).then_some(ms as u64)
}

/// The visible text of an HTML page, roughly: its `<title>` if it has one, else the text
/// between tags.
fn html_text(body: &str) -> String {
    let lower = body.to_ascii_lowercase();
    if let (Some(open), Some(close)) = (lower.find("<title>"), lower.find("</title>")) {
        let start = open + "<title>".len();
        if start <= close {
            return body[start..close].to_owned();
        }
    }
    let mut out = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// Maps a non-2xx response (any provider's body shape, or a non-JSON page) to a typed error.
pub(crate) fn upstream_error(
    provider: Provider,
    status: u16,
    retry_after_header: Option<&str>,
    body: &str,
) -> ProviderError {
    error_from_body(
        provider,
        status,
        retry_after_header,
        body,
        &format!("(HTTP {status})"),
    )
}

/// [`upstream_error`], with `context` in its message where the status would be: an error
/// event in a stream is classified as if it had come with `status`.
pub(crate) fn error_from_body(
    provider: Provider,
    status: u16,
    retry_after_header: Option<&str>,
    body: &str,
    context: &str,
) -> ProviderError {
    let parsed = read_error_body(body);
    let detail = parsed.as_ref();
    let overloaded_kind = detail.and_then(|d| d.kind.as_deref()) == Some("overloaded_error");
    // OpenAI answers an exhausted quota or billing limit with a 429 too (`insufficient_quota`).
    let quota_kind = detail.and_then(|d| d.kind.as_deref()) == Some("insufficient_quota");
    let code = match status {
        429 if quota_kind => ProviderErrorCode::UpstreamQuotaExhausted,
        429 => ProviderErrorCode::UpstreamRateLimited,
        401 | 403 => ProviderErrorCode::UpstreamAuthFailed,
        _ if detail.is_some_and(|d| d.key_invalid) => ProviderErrorCode::UpstreamAuthFailed,
        408 | 504 => ProviderErrorCode::UpstreamTimeout,
        413 => ProviderErrorCode::PromptTooLarge,
        400..=499 => ProviderErrorCode::UpstreamBadRequest,
        503 | 529 => ProviderErrorCode::UpstreamOverloaded,
        500..=599 if overloaded_kind => ProviderErrorCode::UpstreamOverloaded,
        500..=599 => ProviderErrorCode::UpstreamServerError,
        _ => ProviderErrorCode::UpstreamMalformed,
    };
    let what = match code {
        ProviderErrorCode::UpstreamRateLimited => "rate limited the request",
        ProviderErrorCode::UpstreamQuotaExhausted => {
            "refused the request: the platform's quota or billing limit there is exhausted"
        }
        ProviderErrorCode::UpstreamAuthFailed => "rejected the broker's credentials",
        ProviderErrorCode::UpstreamTimeout => "timed out",
        ProviderErrorCode::PromptTooLarge => "refused the request as too large",
        ProviderErrorCode::UpstreamBadRequest => "rejected the request",
        ProviderErrorCode::UpstreamOverloaded => "is overloaded",
        ProviderErrorCode::UpstreamServerError => "had a server error",
        _ => "answered with an unexpected status",
    };
    let upstream_text = match detail.and_then(|d| d.message.as_deref()) {
        Some(m) => excerpt(m, EXCERPT_CHARS),
        None if parsed.is_none() && body.trim_start().starts_with('<') => {
            excerpt(&html_text(body), EXCERPT_CHARS)
        }
        None if parsed.is_none() => excerpt(body, EXCERPT_CHARS / 2),
        None => String::new(),
    };
    let mut message = format!("{} {what} {context}", provider.as_str());
    if !upstream_text.is_empty() {
        message.push_str(": ");
        message.push_str(&upstream_text);
    }
    let retry_after_ms = retry_after_header
        .and_then(parse_seconds_ms)
        .or_else(|| detail.and_then(|d| d.retry_delay_ms));
    ProviderError {
        code,
        message,
        upstream_status: Some(status),
        retry_after_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(status: u16, body: &str) -> ProviderError {
        upstream_error(Provider::OpenAi, status, None, body)
    }

    /// OpenAI's quota and billing 429 (documented: `type`/`code` `insufficient_quota`) is not
    /// a rate limit: no retry cures it, so it is told apart; the documented rate-limit 429 is
    /// still a rate limit.
    #[test]
    fn an_exhausted_quota_is_not_reported_as_a_rate_limit() {
        let quota = r#"{"error": {"message": "You exceeded your current quota, please check your plan and billing details.", "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}}"#;
        assert_eq!(
            err(429, quota).code,
            ProviderErrorCode::UpstreamQuotaExhausted
        );
        let documented = include_str!("../../../../fixtures/providers/openai/error_429.json");
        assert_eq!(
            err(429, documented).code,
            ProviderErrorCode::UpstreamRateLimited
        );
    }

    #[test]
    fn joins_base_and_path_with_one_slash() {
        assert_eq!(
            join_url("http://h/openai/v1/", "/chat/completions"),
            "http://h/openai/v1/chat/completions"
        );
        assert_eq!(join_url("http://h", "/v1/messages"), "http://h/v1/messages");
    }

    #[test]
    fn parses_retry_after_seconds_forms() {
        assert_eq!(parse_seconds_ms("2"), Some(2000));
        assert_eq!(parse_seconds_ms(" 1.5 "), Some(1500));
        assert_eq!(parse_seconds_ms("41s"), Some(41_000));
        assert_eq!(parse_seconds_ms("0.0001s"), Some(1));
        assert_eq!(parse_seconds_ms("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_seconds_ms("-3"), None);
        assert_eq!(parse_seconds_ms(""), None);
        assert_eq!(parse_seconds_ms("s"), None);
        assert_eq!(parse_seconds_ms("1e9"), None);
        assert_eq!(parse_seconds_ms("99999999999"), None);
    }

    #[test]
    fn maps_statuses_to_codes() {
        let cases = [
            (429, ProviderErrorCode::UpstreamRateLimited),
            (401, ProviderErrorCode::UpstreamAuthFailed),
            (403, ProviderErrorCode::UpstreamAuthFailed),
            (400, ProviderErrorCode::UpstreamBadRequest),
            (404, ProviderErrorCode::UpstreamBadRequest),
            (422, ProviderErrorCode::UpstreamBadRequest),
            (408, ProviderErrorCode::UpstreamTimeout),
            (504, ProviderErrorCode::UpstreamTimeout),
            (413, ProviderErrorCode::PromptTooLarge),
            (503, ProviderErrorCode::UpstreamOverloaded),
            (529, ProviderErrorCode::UpstreamOverloaded),
            (500, ProviderErrorCode::UpstreamServerError),
            (502, ProviderErrorCode::UpstreamServerError),
            (302, ProviderErrorCode::UpstreamMalformed),
            (100, ProviderErrorCode::UpstreamMalformed),
        ];
        for (status, code) in cases {
            let e = err(status, "");
            assert_eq!(e.code, code, "{status}");
            assert_eq!(e.upstream_status, Some(status));
        }
    }

    #[test]
    fn anthropic_overloaded_body_on_a_500_is_overloaded() {
        let body = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(err(500, body).code, ProviderErrorCode::UpstreamOverloaded);
    }

    #[test]
    fn plain_text_error_body_is_excerpted_and_scrubbed() {
        let body = format!(
            "upstream connect error: key sk-abcdefgh1234 {}",
            "x".repeat(500)
        );
        let e = err(502, &body);
        assert!(e.message.contains("[REDACTED]"), "{}", e.message);
        assert!(!e.message.contains("sk-abcdefgh1234"));
        assert!(e.message.chars().count() < 200, "{}", e.message);
    }

    #[test]
    fn html_body_gives_its_title_only() {
        let e = err(502, "<html><head><title>502 Bad Gateway</title></head><body><script>x</script></body></html>");
        assert_eq!(
            e.message,
            "openai had a server error (HTTP 502): 502 Bad Gateway"
        );
        let e = err(500, "<h1>Oops</h1><p>try later</p>");
        assert_eq!(
            e.message,
            "openai had a server error (HTTP 500): Oops try later"
        );
    }

    #[test]
    fn string_error_field_is_read() {
        let e = err(400, r#"{"error":"bad thing"}"#);
        assert_eq!(
            e.message,
            "openai rejected the request (HTTP 400): bad thing"
        );
    }

    #[test]
    fn empty_and_unrecognized_json_bodies_give_a_bare_message() {
        assert_eq!(err(500, "").message, "openai had a server error (HTTP 500)");
        assert_eq!(
            err(500, r#"{"status":500,"id":[1]}"#).message,
            "openai had a server error (HTTP 500)"
        );
        assert_eq!(
            err(502, r#"{"detail":"Bad gateway"}"#).message,
            "openai had a server error (HTTP 502): Bad gateway"
        );
    }

    #[test]
    fn header_retry_wins_over_body_retry_delay() {
        let body = r#"{"error":{"code":429,"message":"m","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"41s"}]}}"#;
        assert_eq!(
            upstream_error(Provider::Gemini, 429, None, body).retry_after_ms,
            Some(41_000)
        );
        assert_eq!(
            upstream_error(Provider::Gemini, 429, Some("3"), body).retry_after_ms,
            Some(3000)
        );
    }

    #[test]
    fn dispatcher_builds_each_providers_endpoint() {
        let req = CompletionRequest {
            model: "m".into(),
            prompt: "p".into(),
            system: None,
            max_tokens: 8,
            temperature: None,
            top_p: None,
        };
        let urls: Vec<String> = Provider::ALL
            .iter()
            .map(|p| build_request(*p, &req, "http://x/", "k").url)
            .collect();
        assert_eq!(
            urls,
            [
                "http://x/v1/messages",
                "http://x/v1beta/models/m:generateContent",
                "http://x/chat/completions",
                "http://x/chat/completions"
            ]
        );
    }
}
