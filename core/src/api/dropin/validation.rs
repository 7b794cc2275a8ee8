//! The checks a drop-in request passes before it is forwarded verbatim (the gateway and the
//! broker run the same ones): a JSON object with no field named twice, well-formed stream flags,
//! a model on the allowlist, messages, output tokens within the tier's cap and a prompt within 20 KB.

use serde_json::{Map, Value};

use super::{Dialect, MAX_CHOICES};
use crate::api::ask::PROMPT_LIMIT;
use crate::api::strict_json::parse_strict;
use crate::error::ApiError;
use crate::providers::models::{check_model, MODEL_NAME_LIMIT};

/// A checked drop-in request. `value` is the body as forwarded (and keyed); the bytes forwarded
/// upstream are the caller's own, untouched, except that an OpenAI request naming no output cap
/// gets the tier's cap as `max_completion_tokens` (`capped_body`), so a call can never generate
/// more than was reserved.
#[derive(Debug, Clone, PartialEq)]
pub struct DropinRequest {
    pub dialect: Dialect,
    pub model: String,
    /// The most output tokens the request can use: its own cap (times `n` for OpenAI), or the
    /// tier cap when an OpenAI request names none. What the ledger reserves for.
    pub output_budget: u64,
    /// Bytes of text in the prompt: every string under `messages` (and Anthropic's `system`),
    /// plus the JSON text of `tools`, `functions`, `tool_choice`, `response_format` and
    /// `prediction`.
    pub prompt_bytes: usize,
    /// The text of the last user turn (for the opt-in usage prompt prefix only).
    pub last_user_text: String,
    /// The body as keyed: as parsed, with the tier's cap when it is added, without `stream`
    /// and `stream_options` (one cache entry serves both forms).
    pub value: Value,
    /// The body to forward instead of the caller's, when one is added to: the tier's output
    /// cap on an OpenAI request that named none, and `stream_options.include_usage` on an
    /// OpenAI stream whose caller did not ask for the usage chunk.
    pub forward_body: Option<Vec<u8>>,
    /// `stream: true`: the answer is an event stream.
    pub stream: bool,
    /// The caller asked for OpenAI's usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
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
    // The checks below must see what the provider will see: a field named twice, in any
    // object at any depth, could be read one way here and the other way upstream.
    let value = parse_strict(body)?;
    let Value::Object(obj) = &value else {
        return Err(ApiError::invalid_request("the body must be a JSON object"));
    };
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::invalid_param(
                "stream",
                "`stream` must be a boolean",
            ))
        }
    };
    let include_usage = stream_options(obj)?;
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
    check_model(dialect.provider(), &model, allowlist)
        .map_err(|r| ApiError::model_not_allowed(dialect.provider(), &model, r))?;
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
    let uncapped = dialect == Dialect::OpenAiChat
        && ["max_completion_tokens", "max_tokens"]
            .iter()
            .all(|f| matches!(obj.get(*f), None | Some(Value::Null)));

    // Every text the provider reads counts: the turns, Anthropic's system blocks, and the
    // tool definitions, schemas and predicted output (as their JSON text: names and keys are
    // read too).
    let mut prompt_bytes = messages.iter().map(text_bytes).sum::<usize>();
    if dialect == Dialect::AnthropicMessages {
        prompt_bytes += obj.get("system").map_or(0, text_bytes);
    }
    for field in [
        "tools",
        "functions",
        "tool_choice",
        "response_format",
        "prediction",
    ] {
        if let Some(v) = obj.get(field).filter(|v| !v.is_null()) {
            prompt_bytes += v.to_string().len();
        }
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
    // What is forwarded beyond the caller's bytes: the tier's cap on an uncapped OpenAI call,
    // and on an OpenAI stream the usage chunk the settlement needs (a client that did not ask
    // for it does not get it: `DropinRequest::include_usage`).
    let mut members: Vec<(&str, Value)> = Vec::new();
    if uncapped {
        members.push((OPENAI_CAP_FIELD, Value::from(max_tokens_cap)));
    }
    if dialect == Dialect::OpenAiChat && stream && !include_usage {
        // The caller's other options (`include_obfuscation`) go on as it set them.
        let mut options = match obj.get("stream_options") {
            Some(Value::Object(o)) => o.clone(),
            _ => Map::new(),
        };
        options.insert("include_usage".into(), Value::Bool(true));
        members.push(("stream_options", Value::Object(options)));
    }
    // A member the caller named already (its `stream_options`, or a cap field sent as `null`)
    // is replaced, so the body is written anew: added in front, it would name the field twice,
    // which the broker's strict parse refuses.
    let replaces = members.iter().any(|(k, _)| obj.contains_key(*k));
    let mut value = value;
    let forward_body = if replaces {
        let mut forwarded = value.clone();
        if let Value::Object(o) = &mut forwarded {
            for (k, v) in &members {
                o.insert((*k).into(), v.clone());
            }
        }
        Some(forwarded.to_string().into_bytes())
    } else {
        (!members.is_empty()).then(|| with_members(body, &members))
    };
    if let Value::Object(o) = &mut value {
        // The cap is part of what the provider reads, hence of the key; the stream flags are
        // not: a streamed and a whole answer share one entry.
        for (k, v) in members.iter().filter(|(k, _)| *k == OPENAI_CAP_FIELD) {
            o.insert((*k).into(), v.clone());
        }
        o.remove("stream");
        o.remove("stream_options");
    }
    Ok(DropinRequest {
        dialect,
        model,
        output_budget,
        prompt_bytes,
        last_user_text,
        value,
        forward_body,
        stream,
        include_usage,
    })
}

/// OpenAI's `stream_options`: absent, or an object with the optional booleans OpenAI documents
/// (`include_usage`, `include_obfuscation`); whether the caller asked for the usage chunk.
fn stream_options(obj: &Map<String, Value>) -> Result<bool, ApiError> {
    let bad = || {
        ApiError::invalid_param(
            "stream_options",
            "`stream_options` must be an object such as {\"include_usage\": true}",
        )
    };
    match obj.get("stream_options") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Object(o)) => {
            let known = |k: &str| k == "include_usage" || k == "include_obfuscation";
            if o.iter()
                .any(|(k, v)| !known(k) || !matches!(v, Value::Null | Value::Bool(_)))
            {
                return Err(bad());
            }
            Ok(o.get("include_usage") == Some(&Value::Bool(true)))
        }
        Some(_) => Err(bad()),
    }
}

/// The output cap set on an OpenAI request that names none.
pub const OPENAI_CAP_FIELD: &str = "max_completion_tokens";

/// `body` (a JSON object's text) with `"field": n` added as its first member, the rest of the
/// bytes as they were. A field already present is not looked for: callers add absent ones only.
#[cfg(test)]
fn with_field(body: &[u8], field: &str, n: u64) -> Vec<u8> {
    with_members(body, &[(field, Value::from(n))])
}

/// `body` (a JSON object's text) with `members` added first, the rest of the bytes as they
/// were. Members already present are not looked for: callers add absent ones only.
fn with_members(body: &[u8], members: &[(&str, Value)]) -> Vec<u8> {
    let open = body.iter().position(|b| *b == b'{').unwrap_or(0);
    let rest = &body[open + 1..];
    let empty = rest
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_none_or(|b| *b == b'}');
    let mut member = members
        .iter()
        .map(|(k, v)| format!("{}:{v}", Value::from(*k)))
        .collect::<Vec<_>>()
        .join(",");
    if !empty {
        member.push(',');
    }
    let mut out = Vec::with_capacity(body.len() + member.len());
    out.extend_from_slice(&body[..=open]);
    out.extend_from_slice(member.as_bytes());
    out.extend_from_slice(rest);
    out
}

/// The 400 of `stream: true`.
pub fn streaming_unsupported() -> ApiError {
    ApiError::new(
        400,
        "streaming_unsupported",
        "stream: true is not supported by this gateway yet; send stream: false",
    )
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
/// The bytes of text in `v` the provider reads as text: every string but an inline image's
/// payload (an Anthropic `base64` source of an `image/*` type, its `data`; an OpenAI
/// `data:image/` URL), which it reads as an image, billed by its own measure (a bounded number
/// of tokens per image) and bounded by the body cap. A document's payload (a PDF, whose text
/// the provider reads) counts.
fn text_bytes(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::Array(items) => items.iter().map(text_bytes).sum(),
        Value::Object(m) => {
            let inline_image = m.get("type").and_then(Value::as_str) == Some("base64")
                && m.get("media_type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.starts_with("image/"));
            m.iter()
                .filter(|(k, v)| {
                    let payload = (inline_image && *k == "data")
                        || (*k == "url"
                            && v.as_str().is_some_and(|u| u.starts_with("data:image/")));
                    !payload
                })
                .map(|(_, v)| text_bytes(v))
                .sum()
        }
        _ => 0,
    }
}

/// The text of a `content` value: a string, or the `text` of its parts.
pub(super) fn content_text(v: Option<&Value>) -> String {
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

#[cfg(test)]
mod cap_tests {
    use super::*;
    use crate::providers::models::default_allowlist;
    use crate::providers::Provider;

    #[test]
    fn a_field_is_added_first_and_the_rest_is_untouched() {
        assert_eq!(with_field(b" {\"a\":1}", "m", 5), b" {\"m\":5,\"a\":1}");
        assert_eq!(with_field(b"{ }", "m", 5), b"{\"m\":5 }");
        let v: Value = serde_json::from_slice(&with_field(b"{\"a\" : [1]}", "m", 7)).unwrap();
        assert_eq!(v, serde_json::json!({"m": 7, "a": [1]}));
    }

    #[test]
    fn tool_definitions_and_schemas_count_toward_the_prompt_cap() {
        let allow = default_allowlist(Provider::OpenAi);
        let big = "d".repeat(PROMPT_LIMIT);
        for extra in [
            serde_json::json!({"tools": [{"type": "function", "function": {"name": "f", "description": big}}]}),
            serde_json::json!({"response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {"description": big}}}}),
            serde_json::json!({"prediction": {"type": "content", "content": big}}),
        ] {
            let mut body = serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            let e = parse_request(Dialect::OpenAiChat, body.to_string().as_bytes(), allow, 64)
                .unwrap_err();
            assert_eq!((e.status, e.code), (413, "prompt_too_large"), "{extra}");
        }
        let anthropic = default_allowlist(Provider::Anthropic);
        let body = serde_json::json!({"model": "claude-haiku-4-5", "max_tokens": 5,
            "system": [{"type": "text", "text": big}], "messages": [{"role": "user", "content": "hi"}]});
        let e = parse_request(
            Dialect::AnthropicMessages,
            body.to_string().as_bytes(),
            anthropic,
            64,
        )
        .unwrap_err();
        assert_eq!(e.status, 413);
    }

    #[test]
    fn an_openai_request_without_a_cap_is_forwarded_with_the_tier_cap() {
        let body = br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
        let allow = default_allowlist(Provider::OpenAi);
        let r = parse_request(Dialect::OpenAiChat, body, allow, 512).unwrap();
        assert_eq!(r.output_budget, 512);
        let forwarded: Value = serde_json::from_slice(r.forward_body.as_ref().unwrap()).unwrap();
        assert_eq!(forwarded[OPENAI_CAP_FIELD], 512);
        assert_eq!(forwarded, r.value, "the key names what is forwarded");
        let capped = br#"{"model":"gpt-4o-mini","max_tokens":9,"messages":[{"role":"user","content":"hi"}]}"#;
        let r = parse_request(Dialect::OpenAiChat, capped, allow, 512).unwrap();
        assert_eq!((r.forward_body, r.output_budget), (None, 9));
    }
}

#[cfg(test)]
pub(super) mod tests {
    use serde_json::json;

    use super::*;
    use crate::providers::models::default_allowlist;
    use crate::providers::Provider;

    pub(in crate::api::dropin) fn parse(
        d: Dialect,
        body: Value,
        cap: u32,
    ) -> Result<DropinRequest, ApiError> {
        let bytes = serde_json::to_vec(&body).unwrap();
        parse_request(d, &bytes, default_allowlist(d.provider()), cap)
    }

    pub(in crate::api::dropin) fn chat(extra: Value) -> Value {
        let mut v =
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    }

    pub(in crate::api::dropin) fn messages(extra: Value) -> Value {
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
    fn accepts_a_plain_request_and_keeps_the_body() {
        let body = chat(json!({"temperature": 0.2, "user": "u1", "seed": 7}));
        let r = parse(Dialect::OpenAiChat, body.clone(), 4096).unwrap();
        assert_eq!(r.model, "gpt-4o-mini");
        // Kept as sent, plus the tier cap it is forwarded with (it named none).
        let mut forwarded = body.clone();
        forwarded[OPENAI_CAP_FIELD] = json!(4096);
        assert_eq!(r.value, forwarded);
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
        // Inside a nested object too: the provider may read either one.
        let nested =
            r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"a","content":"b"}]}"#;
        let e = parse_request(Dialect::OpenAiChat, nested.as_bytes(), list, 100).unwrap_err();
        assert_eq!((e.status, e.code), (400, "invalid_request"));
        assert_eq!(e.extra["field"], json!("messages[0].content"));
    }

    #[test]
    fn a_stream_shares_the_whole_answers_key_and_asks_for_usage() {
        let whole = parse(Dialect::OpenAiChat, chat(json!({})), 100).unwrap();
        let streamed = parse(Dialect::OpenAiChat, chat(json!({"stream": true})), 100).unwrap();
        assert!(streamed.stream && !whole.stream);
        assert_eq!(streamed.value, whole.value, "one key for both forms");
        assert!(!streamed.include_usage);
        // The settlement needs the usage chunk: it is asked for, the caller's bytes kept.
        let forwarded: Value =
            serde_json::from_slice(streamed.forward_body.as_ref().unwrap()).unwrap();
        assert_eq!(forwarded["stream_options"], json!({"include_usage": true}));
        assert_eq!(forwarded["stream"], json!(true));
        let asked = parse(
            Dialect::OpenAiChat,
            chat(json!({"stream": true, "stream_options": {"include_usage": true}})),
            100,
        )
        .unwrap();
        assert!(asked.include_usage);
        assert_eq!(asked.value, whole.value);
        let off = parse(
            Dialect::OpenAiChat,
            chat(json!({"stream": true, "stream_options": {"include_usage": false}})),
            100,
        )
        .unwrap();
        let forwarded: Value = serde_json::from_slice(off.forward_body.as_ref().unwrap()).unwrap();
        assert_eq!(forwarded["stream_options"]["include_usage"], json!(true));
        // OpenAI's other documented option is taken and goes on as the caller set it, beside
        // the usage the settlement asks for.
        let plain = parse(
            Dialect::OpenAiChat,
            chat(json!({"stream": true, "stream_options": {"include_obfuscation": false}})),
            100,
        )
        .unwrap();
        assert!(!plain.include_usage);
        assert_eq!(plain.value, whole.value);
        let forwarded: Value =
            serde_json::from_slice(plain.forward_body.as_ref().unwrap()).unwrap();
        assert_eq!(
            forwarded["stream_options"],
            json!({"include_obfuscation": false, "include_usage": true})
        );
    }

    #[test]
    fn malformed_stream_flags_are_400s_naming_them() {
        assert_eq!(
            code(parse(
                Dialect::AnthropicMessages,
                messages(json!({"stream": "yes"})),
                100
            )),
            (400, "invalid_param")
        );
        for bad in [
            json!({"stream": true, "stream_options": "usage"}),
            json!({"stream": true, "stream_options": {"include_usage": "yes"}}),
            json!({"stream": true, "stream_options": {"chunks": 3}}),
            json!({"stream": true, "stream_options": {"include_obfuscation": 0}}),
        ] {
            let e = parse(Dialect::OpenAiChat, chat(bad.clone()), 100).unwrap_err();
            assert_eq!((e.status, e.code), (400, "invalid_param"), "{bad}");
            assert_eq!(e.extra["param"], json!("stream_options"));
        }
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
        // A cap field sent as `null` is replaced by the cap, never named twice in what is
        // forwarded (the broker's strict parse would refuse the call).
        for body in [
            json!({"max_completion_tokens": null}),
            json!({"max_completion_tokens": null, "max_tokens": null}),
            json!({"max_completion_tokens": null, "stream": true}),
        ] {
            let r = parse(Dialect::OpenAiChat, chat(body.clone()), 100).unwrap();
            let forwarded = r.forward_body.expect("the cap is forwarded");
            let strict = crate::api::strict_json::parse_strict(&forwarded)
                .unwrap_or_else(|e| panic!("{body}: {e:?}"));
            assert_eq!(strict["max_completion_tokens"], 100, "{body}");
        }
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
    fn an_inline_image_is_not_prompt_text_but_an_inline_document_is() {
        // About 40 KB of base64 image, twice the prompt limit, beside a short question.
        let data = "iVBO".repeat(PROMPT_LIMIT / 2);
        let image = json!({"type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": data}});
        let question = json!({"type": "text", "text": "What is in this picture?"});
        let m = messages(json!({"messages": [{"role": "user", "content": [image, question]}]}));
        assert!(parse(Dialect::AnthropicMessages, m, 100).is_ok());
        let part = json!({"type": "image_url",
            "image_url": {"url": format!("data:image/png;base64,{data}"), "detail": "low"}});
        let c = chat(json!({"messages": [{"role": "user", "content": [part, question]}]}));
        assert!(parse(Dialect::OpenAiChat, c, 100).is_ok());
        // A document's text is read by the provider as text: it counts.
        let pdf = json!({"type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": data}});
        let m = messages(json!({"messages": [{"role": "user", "content": [pdf, question]}]}));
        assert_eq!(
            code(parse(Dialect::AnthropicMessages, m, 100)),
            (413, "prompt_too_large")
        );
        // So does text beside the image, past the limit.
        let long = json!({"type": "text", "text": "x".repeat(PROMPT_LIMIT + 1)});
        let image = json!({"type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}});
        let m = messages(json!({"messages": [{"role": "user", "content": [image, long]}]}));
        assert_eq!(
            code(parse(Dialect::AnthropicMessages, m, 100)),
            (413, "prompt_too_large")
        );
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
}
