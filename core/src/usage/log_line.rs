//! The one structured log line the gateway writes per request: JSON on one line, what an
//! operator needs to follow a call in `wrangler tail` or Workers Logs (its request id, route,
//! status, cache outcome, providers and their latencies, credits, duration), and nothing a
//! caller sent or got: no prompt, no answer, no key, no hash, no raw path (routes are named by
//! their pattern, ids masked). Its fields are ids, fixed names, codes and numbers only.

use serde::Serialize;

use crate::api::route::V1Route;
use crate::providers::Provider;

/// The line's `event` field: tells the request lines apart from the other log lines.
pub const EVENT: &str = "request";

/// One broker call of the request, as the line shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderCall {
    pub provider: Provider,
    /// From the call's start until the broker answered (for a stream: its response headers),
    /// or until the gateway stopped waiting.
    pub latency_ms: u64,
    /// The broker's HTTP status (for a drop-in call: the upstream's, passed on); absent when
    /// there was no answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The broker's error code, or `unreachable` (no answer), or `abandoned` (the gateway
    /// stopped waiting: a timeout, or the caller left).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The request line. Built at the end of the request: when its response is sent, or, for a
/// streamed answer, when the stream ends (its usage row is written then too).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RequestLine<'a> {
    pub event: &'static str,
    pub request_id: &'a str,
    /// The route's pattern (`POST /v1/ask`, `GET /v1/ask/:id`, `POST /admin/accounts/:id/keys`),
    /// `unrouted` for a path with no route.
    pub route: &'a str,
    pub status: u16,
    /// The error code of a refused or failed call (`rate_limited`, `service_unavailable`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    /// The calling account, once authenticated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<&'a str>,
    /// `hit`, `miss`, `refresh`, `bypass` (answering endpoints only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_status: Option<&'a str>,
    /// `l1` or `l2`, on a hit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_tier: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub providers: &'a [ProviderCall],
    /// Credits the call cost (its usage row's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credits: Option<u64>,
    /// Tokens used, input and output (its usage row's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<(u64, u64)>,
    /// How a streamed answer ended (`clean`, `cut`, `client_gone`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_end: Option<&'a str>,
    /// From the request's arrival to the end of its response (of its stream, when streamed).
    pub duration_ms: u64,
}

impl RequestLine<'_> {
    /// The line as one JSON object on one line.
    pub fn to_json(&self) -> String {
        // Ids, fixed names, codes and numbers always serialize.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Whether the line reports a failure of the gateway or what it depends on (a 5xx), to be
    /// logged at error level.
    pub fn is_error(&self) -> bool {
        self.status >= 500
    }
}

/// An error code as the line may show it: a snake_case code (what the brokers and the gateway
/// answer), else `other`. A code comes from a broker's body: this keeps anything but a code out.
pub fn code(code: &str) -> &str {
    let ok = !code.is_empty()
        && code.len() <= 48
        && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    if ok {
        code
    } else {
        "other"
    }
}

/// The route pattern of a request by method and path segments: ids and names in the path are
/// masked, so the line never holds a raw path (a typo'd path could hold anything).
pub fn route_label(method: &str, segs: &[&str]) -> String {
    match segs {
        ["v1", rest @ ..] => match V1Route::parse(method, rest) {
            V1Route::MethodNotAllowed | V1Route::NotFound => "unrouted".into(),
            route => route.endpoint().into(),
        },
        ["admin", rest @ ..] => {
            let masked: Vec<&str> = rest
                .iter()
                .enumerate()
                .map(|(i, s)| match (i, *s) {
                    (_, "accounts" | "keys" | "credits" | "byok" | "reseal") => *s,
                    (1, _) if rest[0] == "accounts" => ":id",
                    (2, p) if rest[..2] == ["byok", "reseal"] && Provider::parse(p).is_some() => p,
                    _ => ":other",
                })
                .collect();
            format!("{method} /admin/{}", masked.join("/"))
        }
        ["version"] | ["healthz"] | [".well-known", "security.txt"] => {
            format!("{method} /{}", segs.join("/"))
        }
        ["dashboard", "api", name @ ("login" | "logout" | "session")] => {
            format!("{method} /dashboard/api/{name}")
        }
        ["dashboard", ..] => format!("{method} /dashboard/:file"),
        ["__dev", ..] => format!("{method} /__dev"),
        _ => "unrouted".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn a_request_line_is_one_json_object_with_its_fields() {
        let calls = [
            ProviderCall {
                provider: Provider::OpenAi,
                latency_ms: 812,
                status: Some(200),
                error: None,
            },
            ProviderCall {
                provider: Provider::Gemini,
                latency_ms: 30_000,
                status: None,
                error: Some("abandoned".into()),
            },
        ];
        let line = RequestLine {
            event: EVENT,
            request_id: "req_0123",
            route: "POST /v1/ask",
            status: 200,
            account_id: Some("acct_01"),
            cache_status: Some("miss"),
            providers: &calls,
            credits: Some(42),
            tokens: Some((12, 9)),
            duration_ms: 30_004,
            ..RequestLine::default()
        };
        let text = line.to_json();
        assert!(!text.contains('\n'));
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            json!({
                "event": "request", "request_id": "req_0123", "route": "POST /v1/ask",
                "status": 200, "account_id": "acct_01", "cache_status": "miss",
                "providers": [
                    {"provider": "openai", "latency_ms": 812, "status": 200},
                    {"provider": "gemini", "latency_ms": 30000, "error": "abandoned"}
                ],
                "credits": 42, "tokens": [12, 9], "duration_ms": 30004
            })
        );
        assert!(!line.is_error());
    }

    #[test]
    fn a_bare_line_has_only_what_is_known() {
        let line = RequestLine {
            event: EVENT,
            request_id: "req_1",
            route: "unrouted",
            status: 503,
            error: Some("service_unavailable"),
            duration_ms: 3,
            ..RequestLine::default()
        };
        let v: Value = serde_json::from_str(&line.to_json()).unwrap();
        assert_eq!(
            v,
            json!({"event": "request", "request_id": "req_1", "route": "unrouted",
                   "status": 503, "error": "service_unavailable", "duration_ms": 3})
        );
        assert!(line.is_error());
    }

    #[test]
    fn only_snake_case_codes_reach_the_line() {
        assert_eq!(code("upstream_timeout"), "upstream_timeout");
        for bad in [
            "",
            "Bearer sk-abc",
            "sk-ant-api03-xyz",
            "UPPER",
            "with space",
            &"a".repeat(49),
        ] {
            assert_eq!(code(bad), "other", "{bad:?}");
        }
    }

    #[test]
    fn routes_are_named_by_pattern_never_by_raw_path() {
        let label = |m: &str, p: &str| {
            let segs: Vec<&str> = p.trim_matches('/').split('/').collect();
            route_label(m, &segs)
        };
        assert_eq!(label("POST", "/v1/ask"), "POST /v1/ask");
        assert_eq!(label("GET", "/v1/ask/req_abc"), "GET /v1/ask/:id");
        assert_eq!(
            label("DELETE", "/v1/keys/lvk_live_abc"),
            "DELETE /v1/keys/:prefix"
        );
        assert_eq!(label("PUT", "/v1/ask"), "unrouted");
        assert_eq!(
            label("GET", "/v1/what is the capital of France"),
            "unrouted"
        );
        assert_eq!(label("POST", "/admin/accounts"), "POST /admin/accounts");
        assert_eq!(
            label("POST", "/admin/accounts/acct_0123/keys"),
            "POST /admin/accounts/:id/keys"
        );
        assert_eq!(
            label("PATCH", "/admin/accounts/acct_0123"),
            "PATCH /admin/accounts/:id"
        );
        assert_eq!(
            label("POST", "/admin/byok/reseal/openai"),
            "POST /admin/byok/reseal/openai"
        );
        assert_eq!(
            label("POST", "/admin/byok/reseal/sk-live-secret"),
            "POST /admin/byok/reseal/:other"
        );
        assert_eq!(label("GET", "/admin/lvk_live_xyz"), "GET /admin/:other");
        assert_eq!(label("GET", "/healthz"), "GET /healthz");
        assert_eq!(
            label("GET", "/.well-known/security.txt"),
            "GET /.well-known/security.txt"
        );
        assert_eq!(
            label("POST", "/__dev/broker/openai/v1/complete"),
            "POST /__dev"
        );
        assert_eq!(
            label("POST", "/dashboard/api/login"),
            "POST /dashboard/api/login"
        );
        assert_eq!(label("GET", "/dashboard/app.js"), "GET /dashboard/:file");
        assert_eq!(
            label("GET", "/dashboard/api/sk-leak"),
            "GET /dashboard/:file"
        );
        assert_eq!(label("GET", "/sk-proj-leaked"), "unrouted");
        assert_eq!(label("GET", "/"), "unrouted");
    }
}
