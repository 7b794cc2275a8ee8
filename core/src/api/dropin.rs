//! The drop-in provider endpoints (`POST /v1/chat/completions` in OpenAI's shape,
//! `POST /v1/messages` in Anthropic's): the checks a request passes before it is forwarded
//! verbatim (the gateway and the broker run the same ones), the SDK-readable error bodies, the
//! token usage read from a provider's answer, and the synthetic answers of `lvk_test_` keys.

use std::collections::BTreeSet;

use serde::de::{Deserialize, Deserializer, Error as _, IgnoredAny, MapAccess, Visitor};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::api::ask::PROMPT_LIMIT;
use crate::cache::canonical_json::write_canonical_json_to;
use crate::error::ApiError;
use crate::providers::completion::Tokens;
use crate::providers::models::{check_model, ModelRejection};
use crate::providers::Provider;

/// Largest drop-in request body read at all (the 20 KB text cap applies inside it).
pub const BODY_LIMIT: usize = 256 * 1024;
/// Request header choosing the cache scope: `shared` (default) or `private`.
pub const SCOPE_HEADER: &str = "x-cache-scope";
/// Largest OpenAI `n` (choices per request) accepted.
pub const MAX_CHOICES: u64 = 8;
/// Longest model name accepted.
const MODEL_NAME_LIMIT: usize = 100;

/// Which provider API a drop-in endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// OpenAI Chat Completions, `POST /v1/chat/completions`.
    OpenAiChat,
    /// Anthropic Messages, `POST /v1/messages`.
    AnthropicMessages,
}

impl Dialect {
    /// The dialect of a gateway path below `/v1/` (`["chat", "completions"]`, `["messages"]`).
    pub fn for_path(segs: &[&str]) -> Option<Dialect> {
        match segs {
            ["chat", "completions"] => Some(Dialect::OpenAiChat),
            ["messages"] => Some(Dialect::AnthropicMessages),
            _ => None,
        }
    }

    /// The dialect a provider's broker forwards (only OpenAI and Anthropic have one).
    pub fn for_provider(provider: Provider) -> Option<Dialect> {
        match provider {
            Provider::OpenAi => Some(Dialect::OpenAiChat),
            Provider::Anthropic => Some(Dialect::AnthropicMessages),
            Provider::Gemini | Provider::Perplexity => None,
        }
    }

    pub fn provider(self) -> Provider {
        match self {
            Dialect::OpenAiChat => Provider::OpenAi,
            Dialect::AnthropicMessages => Provider::Anthropic,
        }
    }

    /// The cache key namespace.
    pub fn namespace(self) -> &'static str {
        match self {
            Dialect::OpenAiChat => "chat/v1",
            Dialect::AnthropicMessages => "messages/v1",
        }
    }

    /// The gateway endpoint, as usage events and the key access log name it.
    pub fn endpoint(self) -> &'static str {
        match self {
            Dialect::OpenAiChat => "POST /v1/chat/completions",
            Dialect::AnthropicMessages => "POST /v1/messages",
        }
    }

    /// The upstream path below the provider's base URL (the adapters' convention: OpenAI's
    /// base ends in `/v1`, Anthropic's does not).
    pub fn upstream_path(self) -> &'static str {
        match self {
            Dialect::OpenAiChat => "/chat/completions",
            Dialect::AnthropicMessages => "/v1/messages",
        }
    }
}

/// A checked drop-in request. `value` is the body as parsed; the bytes forwarded upstream are
/// the caller's own, untouched.
#[derive(Debug, Clone, PartialEq)]
pub struct DropinRequest {
    pub dialect: Dialect,
    pub model: String,
    /// The most output tokens the request can use: its own cap (times `n` for OpenAI), or the
    /// tier cap when an OpenAI request names none. What the ledger reserves for.
    pub output_budget: u64,
    /// Bytes of text in the prompt (every string under `messages`, plus Anthropic's `system`).
    pub prompt_bytes: usize,
    /// The text of the last user turn (for the opt-in usage prompt prefix only).
    pub last_user_text: String,
    pub value: Value,
}

/// Checks a drop-in body: a JSON object; `stream` absent or false; `model` a string on the
/// allowlist (403 otherwise); `messages` a non-empty array; output tokens within `max_tokens_cap`
/// (Anthropic: `max_tokens` required; OpenAI: `max_completion_tokens` / `max_tokens` optional);
/// prompt text at most 20 KB (413).
pub fn parse_request(
    dialect: Dialect,
    body: &[u8],
    allowlist: &[&str],
    max_tokens_cap: u32,
) -> Result<DropinRequest, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid_json(&e.to_string().chars().take(120).collect::<String>())
    })?;
    let Value::Object(obj) = &value else {
        return Err(ApiError::invalid_request("the body must be a JSON object"));
    };
    // The checks below must see what the provider will see: a field named twice could be read
    // one way here and the other way upstream.
    if let Err(e) = serde_json::from_slice::<UniqueFields>(body) {
        return Err(ApiError::invalid_request(format!(
            "the body names a field twice ({})",
            e.to_string().chars().take(80).collect::<String>()
        )));
    }
    match obj.get("stream") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {}
        Some(Value::Bool(true)) => return Err(streaming_unsupported()),
        Some(_) => {
            return Err(ApiError::invalid_param(
                "stream",
                "`stream` must be a boolean",
            ))
        }
    }
    let model = match obj.get("model") {
        Some(Value::String(m)) if !m.is_empty() && m.len() <= MODEL_NAME_LIMIT => m.clone(),
        Some(_) => {
            return Err(ApiError::invalid_param(
                "model",
                format!("`model` must be a non-empty string of at most {MODEL_NAME_LIMIT} bytes"),
            ))
        }
        None => return Err(ApiError::invalid_param("model", "`model` is required")),
    };
    check_model_allowed(dialect.provider(), &model, allowlist)?;
    let messages = match obj.get("messages") {
        Some(Value::Array(items)) if !items.is_empty() => items,
        _ => {
            return Err(ApiError::invalid_param(
                "messages",
                "`messages` must be a non-empty array",
            ))
        }
    };
    let output_budget = output_budget(dialect, obj, max_tokens_cap)?;

    let mut prompt_bytes = messages.iter().map(text_bytes).sum::<usize>();
    if dialect == Dialect::AnthropicMessages {
        prompt_bytes += obj.get("system").map_or(0, text_bytes);
    }
    if prompt_bytes > PROMPT_LIMIT {
        return Err(ApiError::prompt_too_large(PROMPT_LIMIT));
    }
    let last_user_text = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|m| content_text(m.get("content")))
        .unwrap_or_default();
    Ok(DropinRequest {
        dialect,
        model,
        output_budget,
        prompt_bytes,
        last_user_text,
        value,
    })
}

/// A JSON object whose top-level field names are all different (the values are skipped).
struct UniqueFields;

impl<'de> Deserialize<'de> for UniqueFields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(UniqueFieldsVisitor)
    }
}

struct UniqueFieldsVisitor;

impl<'de> Visitor<'de> for UniqueFieldsVisitor {
    type Value = UniqueFields;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UniqueFields, A::Error> {
        let mut seen = BTreeSet::new();
        while let Some(name) = map.next_key::<String>()? {
            if !seen.insert(name.clone()) {
                let shown: String = name.chars().filter(|c| !c.is_control()).take(40).collect();
                return Err(A::Error::custom(format!("`{shown}`")));
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(UniqueFields)
    }
}

/// The 400 of `stream: true`.
pub fn streaming_unsupported() -> ApiError {
    ApiError::new(
        400,
        "streaming_unsupported",
        "stream: true is not supported by this gateway yet; send stream: false",
    )
}

fn check_model_allowed(
    provider: Provider,
    model: &str,
    allowlist: &[&str],
) -> Result<(), ApiError> {
    check_model(provider, model, allowlist).map_err(|r| {
        let why = match r {
            ModelRejection::Forbidden => "is not a text-generation model and is never served",
            ModelRejection::NotAllowed => "is not on the provider's allowlist",
        };
        ApiError::new(403, "model_not_allowed", format!("model `{model}` {why}"))
            .with("provider", provider.as_str())
            .with("model", model)
    })
}

/// One output-token field: absent or null → `None`; else an integer in `1..=cap`.
fn token_field(obj: &Map<String, Value>, name: &str, cap: u32) -> Result<Option<u64>, ApiError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 && n <= u64::from(cap) => Ok(Some(n)),
            _ => Err(ApiError::invalid_param(
                name,
                format!("`{name}` must be an integer between 1 and {cap} (your tier's cap)"),
            )
            .with("max", cap)),
        },
    }
}

fn output_budget(dialect: Dialect, obj: &Map<String, Value>, cap: u32) -> Result<u64, ApiError> {
    match dialect {
        Dialect::AnthropicMessages => token_field(obj, "max_tokens", cap)?
            .ok_or_else(|| ApiError::invalid_param("max_tokens", "`max_tokens` is required")),
        Dialect::OpenAiChat => {
            let a = token_field(obj, "max_completion_tokens", cap)?;
            let b = token_field(obj, "max_tokens", cap)?;
            let per_choice = a.max(b).unwrap_or(u64::from(cap));
            let n = match obj.get("n") {
                None | Some(Value::Null) => 1,
                Some(v) => match v.as_u64() {
                    Some(n) if (1..=MAX_CHOICES).contains(&n) => n,
                    _ => {
                        return Err(ApiError::invalid_param(
                            "n",
                            format!("`n` must be an integer between 1 and {MAX_CHOICES}"),
                        ))
                    }
                },
            };
            Ok(per_choice * n)
        }
    }
}

/// Bytes of every string inside `v` (object keys excluded): the conservative size of a turn,
/// whatever its parts are.
fn text_bytes(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::Array(items) => items.iter().map(text_bytes).sum(),
        Value::Object(m) => m.values().map(text_bytes).sum(),
        _ => 0,
    }
}

/// The text of a `content` value: a string, or the `text` of its parts.
fn content_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// The SDKs' error `type` for a status (Anthropic's names, which OpenAI's SDK shows as is).
pub fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// The gateway's error envelope, readable by the dialect's SDK: `error.type` beside `code` and
/// `message` (OpenAI's SDK reads `error.message`), and for Anthropic the top-level
/// `"type": "error"` its SDK expects.
pub fn error_body(dialect: Dialect, e: &ApiError) -> Value {
    let mut body = e.body();
    body["error"]["type"] = json!(error_type(e.status));
    if dialect == Dialect::AnthropicMessages {
        if let Value::Object(m) = &mut body {
            m.insert("type".into(), json!("error"));
        }
    }
    body
}

/// The tokens a provider's successful answer reports: OpenAI `usage.prompt_tokens` /
/// `completion_tokens`; Anthropic `usage.input_tokens` (plus cache writes and reads) /
/// `output_tokens`. `None` when the answer carries no usable counts.
pub fn usage(dialect: Dialect, body: &Value) -> Option<Tokens> {
    let u = body.get("usage")?;
    let n = |k: &str| u.get(k).and_then(Value::as_u64);
    match dialect {
        Dialect::OpenAiChat => Some(Tokens {
            input: n("prompt_tokens")?,
            output: n("completion_tokens")?,
        }),
        Dialect::AnthropicMessages => Some(Tokens {
            input: n("input_tokens")?
                .saturating_add(n("cache_creation_input_tokens").unwrap_or(0))
                .saturating_add(n("cache_read_input_tokens").unwrap_or(0)),
            output: n("output_tokens")?,
        }),
    }
}

/// The deterministic answer to a test-mode request, in the provider's own shape, and its
/// token counts. No upstream call, no charge. `created_s` is the edge's clock.
pub fn synthetic_response(req: &DropinRequest, created_s: u64) -> (Value, Tokens) {
    let mut canon = String::new();
    write_canonical_json_to(&req.value["messages"], &mut canon);
    let digest = hex::encode(&Sha256::digest(canon.as_bytes())[..8]);
    let provider = req.dialect.provider();
    let content = format!(
        "[test {provider}/{}] synthetic answer {}",
        req.model,
        &digest[..8]
    );
    let words = |s: &str| s.split_whitespace().count() as u64;
    let mut input_text = String::new();
    for m in req.value["messages"].as_array().into_iter().flatten() {
        input_text.push_str(&content_text(m.get("content")));
        input_text.push(' ');
    }
    if req.dialect == Dialect::AnthropicMessages {
        input_text.push_str(&content_text(req.value.get("system")));
    }
    let tokens = Tokens {
        input: words(&input_text).max(1),
        output: words(&content).min(req.output_budget),
    };
    let body = match req.dialect {
        Dialect::OpenAiChat => json!({
            "id": format!("chatcmpl-test{digest}"),
            "object": "chat.completion",
            "created": created_s,
            "model": req.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": null},
                "logprobs": null,
                "finish_reason": "stop",
            }],
            "usage": {
                "prompt_tokens": tokens.input,
                "completion_tokens": tokens.output,
                "total_tokens": tokens.input + tokens.output,
            },
        }),
        Dialect::AnthropicMessages => json!({
            "id": format!("msg_test{digest}"),
            "type": "message",
            "role": "assistant",
            "model": req.model,
            "content": [{"type": "text", "text": content}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": {"input_tokens": tokens.input, "output_tokens": tokens.output},
        }),
    };
    (body, tokens)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::models::default_allowlist;

    fn parse(d: Dialect, body: Value, cap: u32) -> Result<DropinRequest, ApiError> {
        let bytes = serde_json::to_vec(&body).unwrap();
        parse_request(d, &bytes, default_allowlist(d.provider()), cap)
    }

    fn chat(extra: Value) -> Value {
        let mut v =
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    }

    fn messages(extra: Value) -> Value {
        let mut v = json!({"model": "claude-haiku-4-5", "max_tokens": 64,
            "messages": [{"role": "user", "content": "hi"}]});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    }

    fn code(r: Result<DropinRequest, ApiError>) -> (u16, &'static str) {
        let e = r.unwrap_err();
        (e.status, e.code)
    }

    #[test]
    fn paths_map_to_dialects() {
        assert_eq!(
            Dialect::for_path(&["chat", "completions"]),
            Some(Dialect::OpenAiChat)
        );
        assert_eq!(
            Dialect::for_path(&["messages"]),
            Some(Dialect::AnthropicMessages)
        );
        assert_eq!(Dialect::for_path(&["ask"]), None);
        assert_eq!(Dialect::for_path(&["chat"]), None);
        assert_eq!(Dialect::for_provider(Provider::Gemini), None);
        assert_eq!(Dialect::OpenAiChat.namespace(), "chat/v1");
        assert_eq!(Dialect::AnthropicMessages.namespace(), "messages/v1");
    }

    #[test]
    fn accepts_a_plain_request_and_keeps_the_body() {
        let body = chat(json!({"temperature": 0.2, "user": "u1", "seed": 7}));
        let r = parse(Dialect::OpenAiChat, body.clone(), 4096).unwrap();
        assert_eq!(r.model, "gpt-4o-mini");
        assert_eq!(r.value, body);
        assert_eq!(
            r.output_budget, 4096,
            "no cap named: the tier cap is reserved"
        );
        assert_eq!(r.prompt_bytes, "user".len() + "hi".len());
        assert_eq!(r.last_user_text, "hi");
    }

    #[test]
    fn not_json_or_not_an_object_is_400() {
        let list = default_allowlist(Provider::OpenAi);
        let e = parse_request(Dialect::OpenAiChat, b"{", list, 100).unwrap_err();
        assert_eq!((e.status, e.code), (400, "invalid_json"));
        let e = parse_request(Dialect::OpenAiChat, b"[1]", list, 100).unwrap_err();
        assert_eq!((e.status, e.code), (400, "invalid_request"));
    }

    #[test]
    fn a_field_named_twice_is_refused_even_when_escaped() {
        let list = default_allowlist(Provider::OpenAi);
        for body in [
            r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"model":"gpt-9"}"#,
            r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"mo\u0064el":"x"}"#,
        ] {
            let e = parse_request(Dialect::OpenAiChat, body.as_bytes(), list, 100).unwrap_err();
            assert_eq!((e.status, e.code), (400, "invalid_request"), "{body}");
            assert!(e.message.contains("`model`"), "{}", e.message);
        }
        // Repeats inside nested objects are the provider's business.
        let nested =
            r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"a","content":"b"}]}"#;
        assert!(parse_request(Dialect::OpenAiChat, nested.as_bytes(), list, 100).is_ok());
    }

    #[test]
    fn stream_true_is_refused_with_a_clear_400() {
        let e = parse(Dialect::OpenAiChat, chat(json!({"stream": true})), 100).unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(
            e.body(),
            json!({"error": {"code": "streaming_unsupported",
                "message": "stream: true is not supported by this gateway yet; send stream: false"}})
        );
        assert!(parse(Dialect::OpenAiChat, chat(json!({"stream": false})), 100).is_ok());
        assert_eq!(
            code(parse(
                Dialect::AnthropicMessages,
                messages(json!({"stream": "yes"})),
                100
            )),
            (400, "invalid_param")
        );
    }

    #[test]
    fn model_must_be_a_listed_text_model() {
        assert_eq!(
            code(parse(
                Dialect::OpenAiChat,
                chat(json!({"model": "gpt-9"})),
                100
            )),
            (403, "model_not_allowed")
        );
        assert_eq!(
            code(parse(
                Dialect::OpenAiChat,
                chat(json!({"model": "gpt-image-1"})),
                100
            )),
            (403, "model_not_allowed")
        );
        assert_eq!(
            code(parse(
                Dialect::AnthropicMessages,
                messages(json!({"model": "gpt-4o-mini"})),
                100
            )),
            (403, "model_not_allowed")
        );
        assert_eq!(
            code(parse(Dialect::OpenAiChat, chat(json!({"model": 5})), 100)),
            (400, "invalid_param")
        );
        let mut no_model = chat(json!({}));
        no_model.as_object_mut().unwrap().remove("model");
        assert_eq!(
            code(parse(Dialect::OpenAiChat, no_model, 100)),
            (400, "invalid_param")
        );
    }

    #[test]
    fn messages_must_be_a_non_empty_array() {
        for bad in [json!([]), json!("hi"), json!(null)] {
            let e = parse(Dialect::OpenAiChat, chat(json!({"messages": bad})), 100).unwrap_err();
            assert_eq!(
                (e.status, e.extra["param"].as_str()),
                (400, Some("messages"))
            );
        }
    }

    #[test]
    fn anthropic_max_tokens_is_required_and_capped() {
        let mut v = messages(json!({}));
        v.as_object_mut().unwrap().remove("max_tokens");
        let e = parse(Dialect::AnthropicMessages, v, 100).unwrap_err();
        assert_eq!(
            (e.status, e.extra["param"].as_str()),
            (400, Some("max_tokens"))
        );
        assert_eq!(
            code(parse(
                Dialect::AnthropicMessages,
                messages(json!({"max_tokens": 101})),
                100
            )),
            (400, "invalid_param")
        );
        assert_eq!(
            code(parse(
                Dialect::AnthropicMessages,
                messages(json!({"max_tokens": 0})),
                100
            )),
            (400, "invalid_param")
        );
        assert_eq!(
            code(parse(
                Dialect::AnthropicMessages,
                messages(json!({"max_tokens": 1.5})),
                100
            )),
            (400, "invalid_param")
        );
        let r = parse(
            Dialect::AnthropicMessages,
            messages(json!({"max_tokens": 100})),
            100,
        )
        .unwrap();
        assert_eq!(r.output_budget, 100);
    }

    #[test]
    fn openai_token_fields_are_capped_and_multiplied_by_n() {
        for field in ["max_completion_tokens", "max_tokens"] {
            let e = parse(Dialect::OpenAiChat, chat(json!({field: 101})), 100).unwrap_err();
            assert_eq!((e.status, e.extra["param"].as_str()), (400, Some(field)));
        }
        let r = parse(
            Dialect::OpenAiChat,
            chat(json!({"max_completion_tokens": 30, "n": 3})),
            100,
        )
        .unwrap();
        assert_eq!(r.output_budget, 90);
        let r = parse(Dialect::OpenAiChat, chat(json!({"max_tokens": null})), 100).unwrap();
        assert_eq!(r.output_budget, 100);
        assert_eq!(
            code(parse(Dialect::OpenAiChat, chat(json!({"n": 9})), 100)),
            (400, "invalid_param")
        );
    }

    #[test]
    fn prompt_text_over_20_kb_is_413_counting_parts_and_system() {
        let half = "x".repeat(PROMPT_LIMIT / 2);
        let parts = json!([{"role": "user", "content": [
            {"type": "text", "text": half}, {"type": "text", "text": half}, {"type": "text", "text": "y"}]}]);
        assert_eq!(
            code(parse(
                Dialect::OpenAiChat,
                chat(json!({"messages": parts})),
                100
            )),
            (413, "prompt_too_large")
        );
        let m = messages(json!({"system": half, "messages": [{"role": "user", "content": half}]}));
        assert_eq!(
            code(parse(Dialect::AnthropicMessages, m, 100)),
            (413, "prompt_too_large")
        );
        let ok = messages(
            json!({"messages": [{"role": "user", "content": "x".repeat(PROMPT_LIMIT - 4)}]}),
        );
        assert!(parse(Dialect::AnthropicMessages, ok, 100).is_ok());
    }

    #[test]
    fn last_user_text_joins_text_parts() {
        let m = json!([{"role": "user", "content": "first"}, {"role": "assistant", "content": "a"},
            {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]}]);
        let r = parse(
            Dialect::AnthropicMessages,
            messages(json!({"messages": m})),
            100,
        )
        .unwrap();
        assert_eq!(r.last_user_text, "one\ntwo");
    }

    #[test]
    fn error_bodies_carry_sdk_types_and_keep_code_and_message() {
        let e = ApiError::unauthorized();
        assert_eq!(
            error_body(Dialect::OpenAiChat, &e),
            json!({"error": {"code": "unauthorized", "message": "missing or invalid API key",
                "type": "authentication_error"}})
        );
        assert_eq!(
            error_body(Dialect::AnthropicMessages, &e),
            json!({"type": "error", "error": {"code": "unauthorized",
                "message": "missing or invalid API key", "type": "authentication_error"}})
        );
        let limited = ApiError::new(429, "rate_limited", "slow down").with("retry_after_ms", 900);
        let b = error_body(Dialect::OpenAiChat, &limited);
        assert_eq!(b["error"]["type"], "rate_limit_error");
        assert_eq!(b["error"]["retry_after_ms"], 900);
        for (status, t) in [
            (400, "invalid_request_error"),
            (402, "billing_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (413, "request_too_large"),
            (500, "api_error"),
            (503, "overloaded_error"),
            (504, "api_error"),
        ] {
            assert_eq!(error_type(status), t, "{status}");
        }
    }

    #[test]
    fn usage_reads_each_providers_counts() {
        let o = json!({"usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}});
        assert_eq!(
            usage(Dialect::OpenAiChat, &o),
            Some(Tokens {
                input: 12,
                output: 9
            })
        );
        let a = json!({"usage": {"input_tokens": 10, "output_tokens": 4,
            "cache_creation_input_tokens": 2, "cache_read_input_tokens": 3}});
        assert_eq!(
            usage(Dialect::AnthropicMessages, &a),
            Some(Tokens {
                input: 15,
                output: 4
            })
        );
        assert_eq!(usage(Dialect::OpenAiChat, &json!({})), None);
        assert_eq!(usage(Dialect::OpenAiChat, &a), None);
    }

    #[test]
    fn synthetic_answers_have_the_providers_shape_and_are_deterministic() {
        let r = parse(
            Dialect::OpenAiChat,
            chat(json!({"max_completion_tokens": 3})),
            100,
        )
        .unwrap();
        let (b, t) = synthetic_response(&r, 1_700_000_000);
        assert_eq!(b["object"], "chat.completion");
        assert_eq!(b["created"], 1_700_000_000u64);
        let content = b["choices"][0]["message"]["content"].as_str().unwrap();
        assert!(
            content.starts_with("[test openai/gpt-4o-mini]"),
            "{content}"
        );
        assert_eq!(t.output, 3, "capped by the request's max tokens");
        assert_eq!(usage(Dialect::OpenAiChat, &b), Some(t));
        assert_eq!(synthetic_response(&r, 1_700_000_000).0, b);

        let m = parse(Dialect::AnthropicMessages, messages(json!({})), 100).unwrap();
        let (b, t) = synthetic_response(&m, 0);
        assert_eq!(
            (b["type"].as_str(), b["role"].as_str()),
            (Some("message"), Some("assistant"))
        );
        assert_eq!(b["content"][0]["type"], "text");
        assert_eq!(usage(Dialect::AnthropicMessages, &b), Some(t));
        let other = parse(
            Dialect::AnthropicMessages,
            messages(json!({"messages": [{"role": "user", "content": "else"}]})),
            100,
        )
        .unwrap();
        assert_ne!(synthetic_response(&other, 0).0["content"], b["content"]);
    }
}
