//! Anthropic Messages: `POST {base}/v1/messages`, `x-api-key` plus `anthropic-version:
//! 2023-06-01`, a top-level `system`, required `max_tokens`; the answer is the join of the
//! `text` content blocks.
//!
//! Anthropic takes `temperature` in 0..=1 (others take 0..=2), so it is clamped to that range;
//! and current Claude models refuse `temperature` and `top_p` together, so `top_p` is sent only
//! when no temperature is.

use serde::{Deserialize, Serialize};

use super::UpstreamRequest;
use super::{header, is_success, malformed, parse_success, to_json, upstream_error};
use crate::providers::completion::{Completion, CompletionRequest, ProviderError, Tokens};
use crate::providers::Provider;

/// The API version header value the adapter speaks.
pub const API_VERSION: &str = "2023-06-01";

/// The whole input of an Anthropic answer: its `input_tokens` count only the uncached part, so
/// what was written to (`cache_creation_input_tokens`) and read from (`cache_read_input_tokens`)
/// the prompt cache is added; an absent count is 0. Read the same way from `/v1/ask` answers
/// and from drop-in `/v1/messages` answers.
pub fn input_tokens(uncached: u64, cache_writes: Option<u64>, cache_reads: Option<u64>) -> u64 {
    uncached
        .saturating_add(cache_writes.unwrap_or(0))
        .saturating_add(cache_reads.unwrap_or(0))
}

#[derive(Serialize)]
struct RequestBody<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<&'a str>,
    messages: [UserMessage<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
}

#[derive(Serialize)]
struct UserMessage<'a> {
    role: &'static str,
    content: &'a str,
}

pub fn build_request(req: &CompletionRequest, base_url: &str, api_key: &str) -> UpstreamRequest {
    let temperature = req.temperature.map(|t| t.clamp(0.0, 1.0));
    let body = RequestBody {
        model: &req.model,
        max_tokens: req.max_tokens,
        system: req.system.as_deref(),
        messages: [UserMessage {
            role: "user",
            content: &req.prompt,
        }],
        temperature,
        top_p: req.top_p.filter(|_| temperature.is_none()),
    };
    UpstreamRequest {
        url: Provider::Anthropic.completion_url(base_url, &req.model),
        headers: vec![
            Provider::Anthropic.auth_header(api_key),
            header("anthropic-version", API_VERSION),
            header("content-type", "application/json"),
        ],
        body: to_json(&body),
    }
}

#[derive(Deserialize)]
struct ResponseBody {
    model: Option<String>,
    content: Option<Vec<Block>>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Block {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

/// A response's `usage`, and also a stream's `message_start` and `message_delta` usage.
#[derive(Deserialize, Default)]
pub(super) struct Usage {
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cache_creation_input_tokens: Option<u64>,
    pub cache_read_input_tokens: Option<u64>,
}

impl Usage {
    /// The billed tokens (cached input included, see [`input_tokens`]), or what is lacking.
    pub(super) fn tokens(&self) -> Result<Tokens, &'static str> {
        let (Some(input), Some(output)) = (self.input_tokens, self.output_tokens) else {
            return Err("incomplete usage token counts");
        };
        let input = input_tokens(
            input,
            self.cache_creation_input_tokens,
            self.cache_read_input_tokens,
        );
        Ok(Tokens { input, output })
    }
}

pub fn parse_response(
    status: u16,
    retry_after_header: Option<&str>,
    body: &str,
) -> Result<Completion, ProviderError> {
    const P: Provider = Provider::Anthropic;
    if !is_success(status) {
        return Err(upstream_error(P, status, retry_after_header, body));
    }
    let r: ResponseBody = parse_success(P, status, body)?;
    let model = r.model.ok_or_else(|| malformed(P, status, "no model"))?;
    let blocks = r
        .content
        .ok_or_else(|| malformed(P, status, "no content"))?;
    let content: String = blocks
        .iter()
        .filter(|b| b.kind == "text")
        .filter_map(|b| b.text.as_deref())
        .collect();
    let usage = r.usage.ok_or_else(|| malformed(P, status, "no usage"))?;
    let tokens = usage.tokens().map_err(|what| malformed(P, status, what))?;
    Ok(Completion {
        model,
        content,
        citations: Vec::new(),
        tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::completion::ProviderErrorCode;

    #[test]
    fn builds_messages_request() {
        let req = CompletionRequest {
            model: "claude-haiku-4-5".into(),
            prompt: "Hi".into(),
            system: None,
            max_tokens: 32,
            temperature: Some(1.7),
            top_p: Some(0.5),
        };
        let r = build_request(&req, "http://127.0.0.1:9/anthropic/", "k-1");
        assert_eq!(r.url, "http://127.0.0.1:9/anthropic/v1/messages");
        assert!(r.headers.contains(&("x-api-key".into(), "k-1".into())));
        assert!(r
            .headers
            .contains(&("anthropic-version".into(), "2023-06-01".into())));
        assert!(!r.headers.iter().any(|(n, _)| n == "authorization"));
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"model": "claude-haiku-4-5", "max_tokens": 32,
                "messages": [{"role": "user", "content": "Hi"}], "temperature": 1.0})
        );
    }

    #[test]
    fn top_p_alone_is_sent() {
        let req = CompletionRequest {
            model: "m".into(),
            prompt: "Hi".into(),
            system: None,
            max_tokens: 1,
            temperature: None,
            top_p: Some(0.5),
        };
        let body: serde_json::Value =
            serde_json::from_str(&build_request(&req, "h", "k").body).unwrap();
        assert_eq!(body["top_p"], 0.5);
    }

    #[test]
    fn joins_text_blocks_and_skips_others_and_counts_cached_input() {
        let body = r#"{"model":"claude-haiku-4-5","content":[{"type":"thinking","thinking":"hmm"},
            {"type":"text","text":"Hello, "},{"type":"tool_use","id":"t","name":"n","input":{}},
            {"type":"text","text":"world"}],
            "usage":{"input_tokens":3,"output_tokens":2,"cache_creation_input_tokens":10,"cache_read_input_tokens":5}}"#;
        let c = parse_response(200, None, body).unwrap();
        assert_eq!(c.content, "Hello, world");
        assert_eq!(
            c.tokens,
            Tokens {
                input: 18,
                output: 2
            }
        );
    }

    #[test]
    fn input_adds_cache_writes_and_reads_and_saturates() {
        assert_eq!(input_tokens(3, None, None), 3);
        assert_eq!(input_tokens(3, Some(10), Some(5)), 18);
        assert_eq!(input_tokens(u64::MAX, Some(1), None), u64::MAX);
    }

    #[test]
    fn empty_content_is_an_empty_answer() {
        let body = r#"{"model":"m","content":[],"stop_reason":"refusal","usage":{"input_tokens":3,"output_tokens":0}}"#;
        assert_eq!(parse_response(200, None, body).unwrap().content, "");
    }

    #[test]
    fn missing_fields_are_malformed() {
        for body in [
            r#"{"model":"m","usage":{"input_tokens":1,"output_tokens":1}}"#,
            r#"{"model":"m","content":[{"text":"x"}],"usage":{"input_tokens":1,"output_tokens":1}}"#,
            r#"{"model":"m","content":[]}"#,
            r#"{"content":[],"usage":{"input_tokens":1,"output_tokens":1}}"#,
            "{\"model\":\"m\",\"content\":[{\"type\":\"text\",\"te",
        ] {
            assert_eq!(
                parse_response(200, None, body).unwrap_err().code,
                ProviderErrorCode::UpstreamMalformed,
                "{body}"
            );
        }
    }
}
