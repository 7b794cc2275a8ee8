//! What a drop-in call may ask of the platform's provider accounts: each dialect's allowlist of
//! top-level fields, tool types, content parts and `anthropic-beta` values. Anything else would
//! use a provider feature the gateway neither checks nor bills (server tools, MCP connectors,
//! containers, the files API, priority processing, data kept in the platform's provider org),
//! so it is a 400 naming the field or value. A call on the account's own provider key (BYOK)
//! is not checked here: that account pays its provider itself (docs/DECISIONS.md).

use serde_json::{Map, Value};

use super::Dialect;
use crate::error::ApiError;

/// Top-level fields of an OpenAI Chat Completions request the platform's key serves.
const OPENAI_FIELDS: &[&str] = &[
    "model",
    "messages",
    "max_completion_tokens",
    "max_tokens",
    "temperature",
    "top_p",
    "n",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "seed",
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "functions",
    "function_call",
    "reasoning_effort",
    "verbosity",
    "prediction",
    "metadata",
    "store",
    "service_tier",
    "stream",
    "stream_options",
];

/// Top-level fields of an Anthropic Messages request the platform's key serves.
const ANTHROPIC_FIELDS: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "system",
    "metadata",
    "stop_sequences",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "thinking",
    "service_tier",
    "stream",
    // Structured outputs and effort (`output_config`, sent by the SDK's `messages.parse`), and
    // the top-level prompt-caching marker: billed as ordinary tokens.
    "output_config",
    "cache_control",
    // Structured outputs as the beta sent them (`output_format`, with the
    // `structured-outputs-2025-11-13` beta; LiteLLM's `response_format` for Claude).
    "output_format",
];

/// `anthropic-beta` values the platform's key serves: features billed as ordinary tokens.
pub const ANTHROPIC_BETAS: &[&str] = &[
    "prompt-caching-2024-07-31",
    "token-efficient-tools-2025-02-19",
    "interleaved-thinking-2025-05-14",
    "fine-grained-tool-streaming-2025-05-14",
    "output-128k-2025-02-19",
    "extended-cache-ttl-2025-04-11",
    "structured-outputs-2025-11-13",
];

/// Content part (OpenAI) and content block (Anthropic) types a message may hold. File and
/// container references (`file`, `container_upload`, a `source` of type `file`) point at the
/// platform's provider-side resources and are refused.
const OPENAI_PARTS: &[&str] = &["text", "image_url", "refusal"];
const ANTHROPIC_BLOCKS: &[&str] = &[
    "text",
    "image",
    "document",
    "tool_use",
    "tool_result",
    "thinking",
    "redacted_thinking",
];

fn refused(field: &str, why: String) -> ApiError {
    let field: String = field.chars().take(60).collect();
    ApiError::new(400, "unsupported_feature", why).with("field", field)
}

/// Checks a drop-in body (a JSON object) and its `anthropic-beta` header against the
/// dialect's allowlists.
pub fn check_features(
    dialect: Dialect,
    body: &Map<String, Value>,
    anthropic_beta: Option<&str>,
) -> Result<(), ApiError> {
    let fields = match dialect {
        Dialect::OpenAiChat => OPENAI_FIELDS,
        Dialect::AnthropicMessages => ANTHROPIC_FIELDS,
    };
    if let Some(k) = body.keys().find(|k| !fields.contains(&k.as_str())) {
        let shown: String = k.chars().take(60).collect();
        return Err(refused(
            k,
            format!("`{shown}` is not served on the platform's provider key"),
        ));
    }
    match dialect {
        Dialect::OpenAiChat => check_openai(body)?,
        Dialect::AnthropicMessages => check_anthropic(body)?,
    }
    if let Some(beta) = anthropic_beta {
        for value in beta.split(',').map(str::trim).filter(|v| !v.is_empty()) {
            if !ANTHROPIC_BETAS.contains(&value) {
                let shown: String = value.chars().take(60).collect();
                return Err(refused(
                    "anthropic-beta",
                    format!("the beta `{shown}` is not served on the platform's provider key"),
                ));
            }
        }
    }
    Ok(())
}

fn check_openai(body: &Map<String, Value>) -> Result<(), ApiError> {
    // Data kept in the platform's OpenAI org, and processing billed above list prices.
    if !matches!(
        body.get("store"),
        None | Some(Value::Null) | Some(Value::Bool(false))
    ) {
        return Err(refused(
            "store",
            "`store` must be false: stored completions would stay in the platform's account".into(),
        ));
    }
    if let Some(t) = body.get("service_tier").filter(|v| !v.is_null()) {
        if !matches!(t.as_str(), Some("auto") | Some("default")) {
            return Err(refused(
                "service_tier",
                "`service_tier` may be `auto` or `default` only".into(),
            ));
        }
    }
    if let Some(Value::Array(tools)) = body.get("tools") {
        for t in tools {
            let kind = t.get("type").and_then(Value::as_str).unwrap_or("");
            if !matches!(kind, "function" | "custom") {
                return Err(refused(
                    "tools",
                    format!(
                        "tools of type `{}` are not served; use `function` or `custom`",
                        short(kind)
                    ),
                ));
            }
        }
    }
    for m in messages(body) {
        if let Some(Value::Array(parts)) = m.get("content") {
            for p in parts {
                let kind = p.get("type").and_then(Value::as_str).unwrap_or("");
                if !OPENAI_PARTS.contains(&kind) {
                    return Err(refused(
                        "messages",
                        format!("content parts of type `{}` are not served", short(kind)),
                    ));
                }
            }
        }
    }
    Ok(())
}

fn check_anthropic(body: &Map<String, Value>) -> Result<(), ApiError> {
    if let Some(t) = body.get("service_tier").filter(|v| !v.is_null()) {
        if !matches!(t.as_str(), Some("auto") | Some("standard_only")) {
            return Err(refused(
                "service_tier",
                "`service_tier` may be `auto` or `standard_only` only".into(),
            ));
        }
    }
    if let Some(m) = body.get("metadata").and_then(Value::as_object) {
        if let Some(k) = m.keys().find(|k| k.as_str() != "user_id") {
            return Err(refused(
                "metadata",
                format!("`metadata.{}` is not served; only `user_id` is", short(k)),
            ));
        }
    }
    if let Some(Value::Array(tools)) = body.get("tools") {
        for t in tools {
            // A client tool has no type or `custom`; every other type names a server tool
            // (web search, web fetch, code execution, ...) or an Anthropic-defined one.
            match t.get("type") {
                None | Some(Value::Null) => {}
                Some(Value::String(k)) if k == "custom" => {}
                Some(other) => {
                    let k = other.as_str().unwrap_or("");
                    return Err(refused(
                        "tools",
                        format!(
                            "tools of type `{}` are not served; use custom tools",
                            short(k)
                        ),
                    ));
                }
            }
        }
    }
    let system_blocks = match body.get("system") {
        Some(Value::Array(blocks)) => blocks.as_slice(),
        _ => &[],
    };
    let message_blocks = messages(body).filter_map(|m| match m.get("content") {
        Some(Value::Array(blocks)) => Some(blocks.as_slice()),
        _ => None,
    });
    for blocks in std::iter::once(system_blocks).chain(message_blocks) {
        for b in blocks {
            let kind = b.get("type").and_then(Value::as_str).unwrap_or("");
            if !ANTHROPIC_BLOCKS.contains(&kind) {
                return Err(refused(
                    "messages",
                    format!("content blocks of type `{}` are not served", short(kind)),
                ));
            }
            let source = b
                .get("source")
                .and_then(|s| s.get("type"))
                .and_then(Value::as_str);
            if source == Some("file") {
                return Err(refused(
                    "messages",
                    "a `source` of type `file` refers to the platform's files: send the content"
                        .into(),
                ));
            }
        }
    }
    Ok(())
}

fn messages(body: &Map<String, Value>) -> impl Iterator<Item = &Value> {
    body.get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn short(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(dialect: Dialect, body: Value) -> Result<(), ApiError> {
        check_features(dialect, body.as_object().unwrap(), None)
    }

    fn field(r: Result<(), ApiError>) -> String {
        let e = r.unwrap_err();
        assert_eq!((e.status, e.code), (400, "unsupported_feature"));
        e.extra["field"].as_str().unwrap().to_string()
    }

    fn chat(extra: Value) -> Value {
        let mut b =
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    }

    fn msgs(extra: Value) -> Value {
        let mut b = json!({"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    }

    #[test]
    fn ordinary_requests_pass() {
        let c = chat(
            json!({"temperature": 0.2, "seed": 1, "user": "u", "metadata": {"t": "a"},
            "stop": ["x"], "n": 1, "store": false, "service_tier": "auto",
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
            "response_format": {"type": "json_object"}}),
        );
        assert!(check(Dialect::OpenAiChat, c).is_ok());
        let m = msgs(
            json!({"system": [{"type": "text", "text": "s"}], "metadata": {"user_id": "u"},
            "tools": [{"name": "f", "input_schema": {"type": "object"}}],
            "thinking": {"type": "enabled", "budget_tokens": 1024}}),
        );
        assert!(check(Dialect::AnthropicMessages, m).is_ok());
        // What the SDK's `messages.parse` and `create(output_config=, cache_control=)` send.
        let m = msgs(json!({"cache_control": {"type": "ephemeral"},
            "output_config": {"effort": "low", "format": {"type": "json_schema",
                "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}}}));
        assert!(check(Dialect::AnthropicMessages, m).is_ok());
        // What LiteLLM sends for a `response_format` to Claude: the beta's `output_format`.
        let m = msgs(json!({"output_format": {"type": "json_schema",
            "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}}));
        let o = m.as_object().unwrap();
        assert!(check_features(
            Dialect::AnthropicMessages,
            o,
            Some("structured-outputs-2025-11-13")
        )
        .is_ok());
    }

    #[test]
    fn openai_features_billed_or_kept_elsewhere_are_refused() {
        assert_eq!(
            field(check(Dialect::OpenAiChat, chat(json!({"store": true})))),
            "store"
        );
        assert_eq!(
            field(check(
                Dialect::OpenAiChat,
                chat(json!({"service_tier": "priority"}))
            )),
            "service_tier"
        );
        assert_eq!(
            field(check(
                Dialect::OpenAiChat,
                chat(json!({"service_tier": "flex"}))
            )),
            "service_tier"
        );
        assert_eq!(
            field(check(
                Dialect::OpenAiChat,
                chat(json!({"web_search_options": {}}))
            )),
            "web_search_options"
        );
        assert_eq!(
            field(check(Dialect::OpenAiChat, chat(json!({"audio": {}})))),
            "audio"
        );
        let file = json!({"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}]});
        assert_eq!(field(check(Dialect::OpenAiChat, chat(file))), "messages");
        let tool = json!({"tools": [{"type": "web_search"}]});
        assert_eq!(field(check(Dialect::OpenAiChat, chat(tool))), "tools");
    }

    #[test]
    fn anthropic_server_tools_connectors_and_files_are_refused() {
        for extra in [
            json!({"mcp_servers": [{"type": "url", "url": "https://x"}]}),
            json!({"container": "c1"}),
        ] {
            let k = extra.as_object().unwrap().keys().next().unwrap().clone();
            assert_eq!(field(check(Dialect::AnthropicMessages, msgs(extra))), k);
        }
        for kind in [
            "web_search_20250305",
            "web_fetch_20250910",
            "code_execution_20250522",
        ] {
            let tools = json!({"tools": [{"type": kind, "name": "t"}]});
            assert_eq!(
                field(check(Dialect::AnthropicMessages, msgs(tools))),
                "tools"
            );
        }
        let file = json!({"messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "file", "file_id": "f"}}]}]});
        assert_eq!(
            field(check(Dialect::AnthropicMessages, msgs(file))),
            "messages"
        );
        let upload = json!({"messages": [{"role": "user", "content": [{"type": "container_upload", "file_id": "f"}]}]});
        assert_eq!(
            field(check(Dialect::AnthropicMessages, msgs(upload))),
            "messages"
        );
        let meta = json!({"metadata": {"user_id": "u", "other": 1}});
        assert_eq!(
            field(check(Dialect::AnthropicMessages, msgs(meta))),
            "metadata"
        );
    }

    #[test]
    fn only_listed_betas_are_served() {
        let b = msgs(json!({}));
        let o = b.as_object().unwrap();
        assert!(check_features(
            Dialect::AnthropicMessages,
            o,
            Some("interleaved-thinking-2025-05-14")
        )
        .is_ok());
        assert!(check_features(
            Dialect::AnthropicMessages,
            o,
            Some("prompt-caching-2024-07-31, token-efficient-tools-2025-02-19")
        )
        .is_ok());
        for beta in [
            "code-execution-2025-05-22",
            "files-api-2025-04-14",
            "mcp-client-2025-04-04",
            "web-fetch-2025-09-10",
        ] {
            let e = check_features(Dialect::AnthropicMessages, o, Some(beta)).unwrap_err();
            assert_eq!(e.extra["field"], "anthropic-beta", "{beta}");
        }
    }
}
