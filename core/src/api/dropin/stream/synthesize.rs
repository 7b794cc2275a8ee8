//! A stored non-streaming answer replayed as the provider's own event stream, for a cache hit
//! asked with `"stream": true`: the events the provider sends, in its order, which the official
//! SDKs' accumulators (and [`super::StreamWatcher`]) reassemble into the stored answer.
//!
//! Anthropic: `message_start` (the message with empty content, no stop reason and at most one
//! output token), `ping` after the first `content_block_start` (as the API sends it), per block
//! `content_block_start` / its deltas / `content_block_stop`, `message_delta` (stop reason and
//! sequence, the final usage), `message_stop`. OpenAI: per choice a first chunk with the role,
//! content (or refusal) chunks, per tool call a chunk with its id, type and name then its
//! arguments, a last chunk with the finish reason (and the logprobs); the usage chunk with empty
//! `choices` only when the caller asked `stream_options.include_usage`; `data: [DONE]`.
//!
//! Long text is cut into a few deltas (at most [`MAX_PIECES`] per text, none under
//! [`MIN_PIECE_BYTES`] but the last), at character boundaries; the same answer always gives
//! the same bytes.

use std::fmt;

use serde_json::{json, Map, Value};

use super::anthropic::{DELTA_USAGE_FIELDS, TOOL_INPUT_BLOCKS};
use crate::api::dropin::Dialect;

/// Most deltas one text (or tool input) is cut into.
pub const MAX_PIECES: usize = 16;
/// Fewest bytes in a delta but the last.
pub const MIN_PIECE_BYTES: usize = 24;

/// Why a stored answer cannot be replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SynthesizeError {
    /// The stored text is not JSON.
    NotJson(String),
    /// The JSON is not the dialect's answer: the field that is missing or of the wrong type.
    NotAnAnswer(&'static str),
}

impl fmt::Display for SynthesizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SynthesizeError::NotJson(e) => write!(f, "stored answer is not JSON: {e}"),
            SynthesizeError::NotAnAnswer(field) => {
                write!(f, "stored answer has no usable `{field}`")
            }
        }
    }
}

impl std::error::Error for SynthesizeError {}

/// The SSE bytes of a stream equivalent to `stored_json`, the dialect's non-streaming answer.
/// `include_usage` (OpenAI only: the request's `stream_options.include_usage`) adds the usage
/// chunk, and `"usage": null` on every other chunk, as OpenAI does.
pub fn synthesize(
    dialect: Dialect,
    stored_json: &str,
    include_usage: bool,
) -> Result<Vec<u8>, SynthesizeError> {
    let v: Value =
        serde_json::from_str(stored_json).map_err(|e| SynthesizeError::NotJson(e.to_string()))?;
    let Value::Object(m) = v else {
        return Err(SynthesizeError::NotAnAnswer("(top level)"));
    };
    match dialect {
        Dialect::AnthropicMessages => anthropic(&m),
        Dialect::OpenAiChat => openai(&m, include_usage),
    }
}

/// `s` cut into at most [`MAX_PIECES`] pieces at character boundaries; none for `""`.
pub(super) fn pieces(s: &str) -> Vec<&str> {
    let target = s.len().div_ceil(MAX_PIECES).max(MIN_PIECE_BYTES);
    let mut out = Vec::new();
    let mut start = 0;
    while start < s.len() {
        let mut end = (start + target).min(s.len());
        while !s.is_char_boundary(end) {
            end += 1;
        }
        out.push(&s[start..end]);
        start = end;
    }
    out
}

fn with(mut m: Map<String, Value>, key: &str, v: Value) -> Map<String, Value> {
    m.insert(key.into(), v);
    m
}

fn anthropic(m: &Map<String, Value>) -> Result<Vec<u8>, SynthesizeError> {
    let Some(Value::Array(content)) = m.get("content") else {
        return Err(SynthesizeError::NotAnAnswer("content"));
    };
    let Some(Value::Object(usage)) = m.get("usage") else {
        return Err(SynthesizeError::NotAnAnswer("usage"));
    };
    let mut out = Vec::with_capacity(1024);
    let mut start = m.clone();
    start.insert("content".into(), json!([]));
    for k in ["stop_reason", "stop_sequence"] {
        start.insert(k.into(), Value::Null);
    }
    if start.contains_key("stop_details") {
        start.insert("stop_details".into(), Value::Null);
    }
    let mut start_usage = usage.clone();
    if let Some(n) = usage.get("output_tokens").and_then(Value::as_u64) {
        start_usage.insert("output_tokens".into(), json!(n.min(1)));
    }
    start.insert("usage".into(), Value::Object(start_usage));
    push_event(
        &mut out,
        "message_start",
        &json!({"type": "message_start", "message": start}),
    );
    if content.is_empty() {
        out.extend_from_slice(PING);
    }
    for (i, block) in content.iter().enumerate() {
        let Value::Object(block) = block else {
            return Err(SynthesizeError::NotAnAnswer("content"));
        };
        let (start_block, deltas) = block_events(block);
        push_event(
            &mut out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": i, "content_block": start_block}),
        );
        if i == 0 {
            out.extend_from_slice(PING);
        }
        for delta in deltas {
            push_event(
                &mut out,
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": i, "delta": delta}),
            );
        }
        push_event(
            &mut out,
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": i}),
        );
    }

    let field = |k: &str| m.get(k).cloned().unwrap_or(Value::Null);
    let mut delta = Map::new();
    delta.insert("stop_reason".into(), field("stop_reason"));
    delta.insert("stop_sequence".into(), field("stop_sequence"));
    if let Some(d) = m.get("stop_details").filter(|d| !d.is_null()) {
        delta.insert("stop_details".into(), d.clone());
    }
    let mut delta_usage = Map::new();
    for k in std::iter::once("output_tokens").chain(DELTA_USAGE_FIELDS) {
        if let Some(v) = usage.get(k).filter(|v| !v.is_null()) {
            delta_usage.insert(k.into(), v.clone());
        }
    }
    push_event(
        &mut out,
        "message_delta",
        &json!({"type": "message_delta", "delta": delta, "usage": delta_usage}),
    );
    push_event(&mut out, "message_stop", &json!({"type": "message_stop"}));
    Ok(out)
}

/// Anthropic's `ping`, spelled as the API sends it.
const PING: &[u8] = b"event: ping\ndata: {\"type\": \"ping\"}\n\n";

/// An event as `sse::encode` writes it, its data written in place: compact JSON has no line
/// break to split on.
fn push_event(out: &mut Vec<u8>, name: &str, data: &Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.push(b'\n');
    push_data(out, data);
}

/// A `data:` line of compact JSON and the event's end.
fn push_data(out: &mut Vec<u8>, data: &Value) {
    out.extend_from_slice(b"data: ");
    write_json(out, data);
    out.extend_from_slice(b"\n\n");
}

fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Writing to a `Vec` cannot fail, and a `Value` or a `str` always serializes.
    let _ = serde_json::to_writer(&mut *out, v);
}

/// An OpenAI chunk's bytes around its one choice: the chunk is the answer's fields with
/// `choices` set, written once as serde_json writes the whole object (keys in the map's
/// order) and cut where the choice goes, so each chunk writes only its choice.
struct ChunkFrame {
    head: Vec<u8>,
    tail: Vec<u8>,
}

impl ChunkFrame {
    fn new(base: &Map<String, Value>) -> Self {
        let frame = with(base.clone(), "choices", Value::Null);
        let (mut head, mut tail) = (b"{".to_vec(), Vec::new());
        let mut after = false;
        for (i, (k, v)) in frame.iter().enumerate() {
            let buf = if after { &mut tail } else { &mut head };
            if i > 0 {
                buf.push(b',');
            }
            write_json(buf, k.as_str());
            buf.push(b':');
            if k == "choices" {
                buf.push(b'[');
                tail.push(b']');
                after = true;
            } else {
                write_json(buf, v);
            }
        }
        tail.push(b'}');
        ChunkFrame { head, tail }
    }

    /// The chunk carrying `choice`, as a `data:` line.
    fn push(&self, out: &mut Vec<u8>, choice: &Value) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&self.head);
        write_json(out, choice);
        out.extend_from_slice(&self.tail);
        out.extend_from_slice(b"\n\n");
    }
}

/// A content block's `content_block_start` block and the deltas that grow it back.
fn block_events(block: &Map<String, Value>) -> (Map<String, Value>, Vec<Value>) {
    let kind = block.get("type").and_then(Value::as_str).unwrap_or("");
    let text = |k: &str| block.get(k).and_then(Value::as_str);
    match kind {
        "text" if text("text").is_some() => {
            let mut start = with(block.clone(), "text", json!(""));
            let mut deltas: Vec<Value> = pieces(text("text").unwrap_or(""))
                .into_iter()
                .map(|p| json!({"type": "text_delta", "text": p}))
                .collect();
            if let Some(Value::Array(cites)) = block.get("citations").filter(|c| c.is_array()) {
                if !cites.is_empty() {
                    start.insert("citations".into(), json!([]));
                    deltas.extend(
                        cites
                            .iter()
                            .map(|c| json!({"type": "citations_delta", "citation": c})),
                    );
                }
            }
            (start, deltas)
        }
        k if TOOL_INPUT_BLOCKS.contains(&k) && block.contains_key("input") => {
            let start = with(block.clone(), "input", json!({}));
            let input = &block["input"];
            if input.as_object().is_some_and(Map::is_empty) {
                return (start, Vec::new());
            }
            let json_text = input.to_string();
            let deltas = pieces(&json_text)
                .into_iter()
                .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
                .collect();
            (start, deltas)
        }
        "thinking" if text("thinking").is_some() => {
            let mut start = with(block.clone(), "thinking", json!(""));
            let mut deltas: Vec<Value> = pieces(text("thinking").unwrap_or(""))
                .into_iter()
                .map(|p| json!({"type": "thinking_delta", "thinking": p}))
                .collect();
            if let Some(sig) = text("signature") {
                start.insert("signature".into(), json!(""));
                if !sig.is_empty() {
                    deltas.push(json!({"type": "signature_delta", "signature": sig}));
                }
            }
            (start, deltas)
        }
        "compaction"
            if block.contains_key("content") && block.contains_key("encrypted_content") =>
        {
            let start = with(
                with(block.clone(), "content", Value::Null),
                "encrypted_content",
                Value::Null,
            );
            let delta = json!({"type": "compaction_delta", "content": block["content"],
                "encrypted_content": block["encrypted_content"]});
            (start, vec![delta])
        }
        // Blocks the API sends whole (`redacted_thinking`, server tool results, ...).
        _ => (block.clone(), Vec::new()),
    }
}

fn openai(m: &Map<String, Value>, include_usage: bool) -> Result<Vec<u8>, SynthesizeError> {
    let Some(Value::Array(choices)) = m.get("choices") else {
        return Err(SynthesizeError::NotAnAnswer("choices"));
    };
    let mut base = m.clone();
    for k in ["choices", "usage"] {
        base.remove(k);
    }
    base.insert("object".into(), json!("chat.completion.chunk"));
    if include_usage {
        base.insert("usage".into(), Value::Null);
    }
    let mut out = Vec::with_capacity(1024);
    let frame = ChunkFrame::new(&base);
    let mut emit = |choice: Value| frame.push(&mut out, &choice);
    let plain = |i: usize, delta: Value| json!({"index": i, "delta": delta, "logprobs": Value::Null, "finish_reason": Value::Null});

    for (i, choice) in choices.iter().enumerate() {
        let Value::Object(choice) = choice else {
            return Err(SynthesizeError::NotAnAnswer("choices"));
        };
        let message = match choice.get("message") {
            Some(Value::Object(msg)) => msg.clone(),
            _ => return Err(SynthesizeError::NotAnAnswer("choices[].message")),
        };
        let content = message.get("content").and_then(Value::as_str);
        let refusal = message.get("refusal").and_then(Value::as_str);

        // The first chunk: the role and the message's other fields, as OpenAI sends them.
        let mut first = message.clone();
        first.remove("tool_calls");
        first.insert("content".into(), content.map_or(Value::Null, |_| json!("")));
        first.insert("refusal".into(), refusal.map_or(Value::Null, |_| json!("")));
        let mut first_choice = choice.clone();
        first_choice.remove("message");
        first_choice.insert("index".into(), json!(i));
        first_choice.insert("delta".into(), Value::Object(first));
        first_choice.insert("logprobs".into(), Value::Null);
        first_choice.insert("finish_reason".into(), Value::Null);
        emit(Value::Object(first_choice));

        for p in pieces(content.unwrap_or("")) {
            emit(plain(i, json!({ "content": p })));
        }
        for p in pieces(refusal.unwrap_or("")) {
            emit(plain(i, json!({ "refusal": p })));
        }
        if let Some(Value::Array(calls)) = message.get("tool_calls") {
            for (k, call) in calls.iter().enumerate() {
                let Value::Object(call) = call else {
                    return Err(SynthesizeError::NotAnAnswer("tool_calls"));
                };
                let mut head = with(call.clone(), "index", json!(k));
                let args = match call.get("function") {
                    Some(Value::Object(f)) => {
                        let args = f.get("arguments").and_then(Value::as_str);
                        if args.is_some() {
                            let f = with(f.clone(), "arguments", json!(""));
                            head.insert("function".into(), Value::Object(f));
                        }
                        args.unwrap_or("")
                    }
                    _ => "",
                };
                emit(plain(i, json!({ "tool_calls": [head] })));
                for p in pieces(args) {
                    emit(plain(
                        i,
                        json!({"tool_calls": [{"index": k, "function": {"arguments": p}}]}),
                    ));
                }
            }
        }
        // The logprobs ride on the finish chunk, not the first: openai-python copies a later
        // choice's first chunk logprobs and then extends them with themselves (doubled).
        emit(json!({
            "index": i,
            "delta": {},
            "logprobs": choice.get("logprobs").cloned().unwrap_or(Value::Null),
            "finish_reason": choice.get("finish_reason").cloned().unwrap_or(Value::Null),
        }));
    }
    if include_usage {
        let mut chunk = with(base.clone(), "choices", json!([]));
        chunk.insert(
            "usage".into(),
            m.get("usage").cloned().unwrap_or(Value::Null),
        );
        push_data(&mut out, &Value::Object(chunk));
    }
    out.extend_from_slice(b"data: [DONE]\n\n");
    Ok(out)
}
