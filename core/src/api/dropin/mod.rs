//! The drop-in provider endpoints (`POST /v1/chat/completions` in OpenAI's shape,
//! `POST /v1/messages` in Anthropic's): the checks a request passes before it is forwarded
//! verbatim (the gateway and the broker run the same ones), the SDK-readable error bodies, the
//! token usage read from a provider's answer, and the synthetic answers of `lvk_test_` keys.
//!
//! `dialect` names the two dialects, `validation` checks a request, `features` holds what the
//! platform's provider keys serve (fields, tools, content parts, betas), `errors` renders the
//! gateway's errors for the dialects' SDKs; the token usage of an answer and the synthetic
//! answers of test keys are here.

mod dialect;
mod errors;
mod features;
mod models;
pub mod stream;
mod validation;

/// The body cap of `/v1/ask` applies to the drop-in endpoints too (the 20 KB text cap applies
/// inside it).
pub use crate::api::BODY_LIMIT;
pub use dialect::Dialect;
pub use errors::{error_body, error_type};
pub use features::{check_features, ANTHROPIC_BETAS};
pub use models::{model_entry, model_list};
pub use validation::{parse_request, streaming_unsupported, DropinRequest};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::cache::canonical_json::write_canonical_json_to;
use crate::providers::adapters::anthropic;
use crate::providers::completion::Tokens;
use validation::content_text;

/// Request header choosing the cache scope: `shared` (default) or `private`.
pub const SCOPE_HEADER: &str = "x-cache-scope";
/// Largest OpenAI `n` (choices per request) accepted.
pub const MAX_CHOICES: u64 = 8;

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
            input: anthropic::input_tokens(
                n("input_tokens")?,
                n("cache_creation_input_tokens"),
                n("cache_read_input_tokens"),
            ),
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
    use super::validation::tests::{chat, messages, parse};
    use super::*;

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
