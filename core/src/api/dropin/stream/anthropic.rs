//! Anthropic Messages streams: the usage, the end and the reassembled `message` of a relayed
//! stream, accumulated event by event as the official SDK does (`accumulate_event` in
//! anthropic-sdk-python's `lib/streaming/_messages.py` and `_beta_messages.py`).
//!
//! `message_start` gives the message (empty content, usage with the input tokens);
//! `content_block_start` appends a block; `content_block_delta` grows it (`text_delta`,
//! `input_json_delta` into a tool input kept as text and parsed at the end, `citations_delta`,
//! `thinking_delta`, `signature_delta`, `compaction_delta`); `message_delta` sets the stop
//! reason and sequence and the usage (`output_tokens` is cumulative; input and cache counts
//! replace the start's when present); `message_stop` ends it. `ping` changes nothing;
//! `event: error` is an error.

use serde_json::{json, Map, Value};

use super::{SseEvent, StreamEnd, StreamError, MAX_REASSEMBLED_BYTES};
use crate::api::dropin::{usage, Dialect};
use crate::providers::completion::Tokens;

/// The block types whose input arrives as `input_json_delta` (the SDK's `TRACKS_TOOL_INPUT`).
pub(super) const TOOL_INPUT_BLOCKS: [&str; 3] = ["tool_use", "server_tool_use", "mcp_tool_use"];

/// The usage fields a `message_delta` replaces when it carries them (besides `output_tokens`,
/// which it always sets), as the SDK does.
pub(super) const DELTA_USAGE_FIELDS: [&str; 6] = [
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "server_tool_use",
    "iterations",
    "fallback_credit",
];

#[derive(Debug, Clone, Default)]
pub(super) struct Watcher {
    /// `message_start` arrived.
    started: bool,
    /// The message so far; `None` before `message_start` and once it cannot be reassembled.
    message: Option<Map<String, Value>>,
    /// Content blocks started.
    blocks: usize,
    /// Per content block, the tool input's JSON text so far (tool blocks only); kept with
    /// `message`.
    tool_json: Vec<Option<String>>,
    /// The usage so far: `message_start`'s with `message_delta`'s over it.
    usage: Option<Map<String, Value>>,
    /// A `message_delta` carried the output count: `usage` is the final one.
    usage_final: bool,
    /// The last `message_delta` had a stop reason.
    stop_reason: bool,
    /// `message_stop` arrived after a stop reason.
    stopped: bool,
    error: bool,
    /// An event could not be read: never clean.
    unreadable: bool,
    data_bytes: usize,
}

fn bad(ev: &SseEvent, reason: impl Into<String>) -> StreamError {
    StreamError::BadEvent {
        event: ev.event.clone(),
        reason: reason.into(),
    }
}

impl Watcher {
    /// An event could not be read: no body, never clean.
    pub(super) fn spoil(&mut self) {
        self.unreadable = true;
        self.drop_body();
    }

    fn drop_body(&mut self) {
        self.message = None;
        self.tool_json = Vec::new();
    }

    fn refuse(&mut self, e: StreamError) -> Result<(), StreamError> {
        self.spoil();
        Err(e)
    }

    pub(super) fn observe(&mut self, ev: &SseEvent) -> Result<(), StreamError> {
        if ev.event.as_deref() == Some("ping") {
            return Ok(());
        }
        if ev.event.as_deref() == Some("error") {
            self.error = true;
            return Ok(());
        }
        if self.stopped {
            return Ok(());
        }
        self.data_bytes = self.data_bytes.saturating_add(ev.data.len());
        if self.data_bytes > MAX_REASSEMBLED_BYTES {
            self.drop_body();
        }
        let data: Value = match serde_json::from_str(&ev.data) {
            Ok(v) => v,
            Err(e) => return self.refuse(bad(ev, e.to_string())),
        };
        let kind = data
            .get("type")
            .and_then(Value::as_str)
            .or(ev.event.as_deref())
            .unwrap_or("");
        match kind {
            "ping" => Ok(()),
            "error" => {
                self.error = true;
                Ok(())
            }
            "message_start" => self.message_start(ev, &data),
            "content_block_start" => self.block_start(ev, &data),
            "content_block_delta" => self.block_delta(ev, &data),
            "content_block_stop" => {
                if index(&data).is_none_or(|i| i >= self.blocks) {
                    return self.refuse(StreamError::OutOfOrder("content_block_stop"));
                }
                Ok(())
            }
            "message_delta" => self.message_delta(ev, &data),
            "message_stop" => {
                if !self.started {
                    return self.refuse(StreamError::OutOfOrder("message_stop"));
                }
                self.stopped = self.stop_reason;
                Ok(())
            }
            // Events this version does not know change nothing, as in the SDK.
            _ => Ok(()),
        }
    }

    fn message_start(&mut self, ev: &SseEvent, data: &Value) -> Result<(), StreamError> {
        if self.started {
            return self.refuse(StreamError::OutOfOrder("second message_start"));
        }
        let Some(Value::Object(message)) = data.get("message") else {
            return self.refuse(bad(ev, "message_start without a message"));
        };
        self.started = true;
        let mut message = message.clone();
        self.usage = Some(match message.remove("usage") {
            Some(Value::Object(u)) => u,
            _ => Map::new(),
        });
        if !matches!(message.get("content"), Some(Value::Array(_))) {
            message.insert("content".into(), json!([]));
        }
        self.blocks = message["content"].as_array().map_or(0, Vec::len);
        if self.data_bytes <= MAX_REASSEMBLED_BYTES {
            self.tool_json = vec![None; self.blocks];
            self.message = Some(message);
        }
        Ok(())
    }

    fn block_start(&mut self, ev: &SseEvent, data: &Value) -> Result<(), StreamError> {
        if !self.started {
            return self.refuse(StreamError::OutOfOrder(
                "content_block_start before message_start",
            ));
        }
        let Some(Value::Object(block)) = data.get("content_block") else {
            return self.refuse(bad(ev, "content_block_start without a content_block"));
        };
        if index(data) != Some(self.blocks) {
            return self.refuse(StreamError::OutOfOrder("content_block_start index"));
        }
        self.blocks += 1;
        let kind = block.get("type").and_then(Value::as_str).unwrap_or("");
        if let Some(m) = &mut self.message {
            self.tool_json
                .push(TOOL_INPUT_BLOCKS.contains(&kind).then(String::new));
            if kind == "fallback" {
                // The block names the model that served the answer, as the non-streaming
                // message does.
                if let Some(model) = block.get("to").and_then(|t| t.get("model")) {
                    m.insert("model".into(), model.clone());
                }
            }
            if let Some(Value::Array(content)) = m.get_mut("content") {
                content.push(Value::Object(block.clone()));
            }
        }
        Ok(())
    }

    fn block_delta(&mut self, ev: &SseEvent, data: &Value) -> Result<(), StreamError> {
        let Some(i) = index(data).filter(|&i| i < self.blocks) else {
            return self.refuse(StreamError::OutOfOrder("content_block_delta index"));
        };
        let Some(delta) = data.get("delta").and_then(Value::as_object) else {
            return self.refuse(bad(ev, "content_block_delta without a delta"));
        };
        let s = |k: &str| delta.get(k).and_then(Value::as_str).unwrap_or("");
        let delta_kind = s("type");
        if delta_kind == "input_json_delta" {
            if let Some(Some(buf)) = self.tool_json.get_mut(i) {
                buf.push_str(s("partial_json"));
            }
            return Ok(());
        }
        let Some(block) = self
            .message
            .as_mut()
            .and_then(|m| m.get_mut("content"))
            .and_then(|c| c.get_mut(i))
            .and_then(Value::as_object_mut)
        else {
            return Ok(());
        };
        let block_kind = block.get("type").and_then(Value::as_str).unwrap_or("");
        match (delta_kind, block_kind) {
            ("text_delta", "text") => append(block, "text", s("text")),
            ("thinking_delta", "thinking") => append(block, "thinking", s("thinking")),
            ("signature_delta", "thinking") => {
                block.insert("signature".into(), json!(s("signature")));
            }
            ("citations_delta", "text") => {
                let citation = delta.get("citation").cloned().unwrap_or(Value::Null);
                match block.get_mut("citations") {
                    Some(Value::Array(list)) if !list.is_empty() => list.push(citation),
                    _ => {
                        block.insert("citations".into(), json!([citation]));
                    }
                }
            }
            ("compaction_delta", "compaction") => {
                for k in ["content", "encrypted_content"] {
                    block.insert(k.into(), delta.get(k).cloned().unwrap_or(Value::Null));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn message_delta(&mut self, ev: &SseEvent, data: &Value) -> Result<(), StreamError> {
        if !self.started {
            return self.refuse(StreamError::OutOfOrder(
                "message_delta before message_start",
            ));
        }
        let Some(delta) = data.get("delta").and_then(Value::as_object) else {
            return self.refuse(bad(ev, "message_delta without a delta"));
        };
        let stop_reason = delta.get("stop_reason").cloned().unwrap_or(Value::Null);
        self.stop_reason = stop_reason.is_string();
        if let Some(m) = &mut self.message {
            m.insert("stop_reason".into(), stop_reason);
            let seq = delta.get("stop_sequence").cloned().unwrap_or(Value::Null);
            m.insert("stop_sequence".into(), seq);
            if let Some(d) = delta.get("stop_details").filter(|v| !v.is_null()) {
                m.insert("stop_details".into(), d.clone());
            }
            if let Some(c) = delta.get("container") {
                m.insert("container".into(), c.clone());
            }
            if let Some(c) = data.get("context_management") {
                m.insert("context_management".into(), c.clone());
            }
        }
        if let (Some(u), Some(d)) = (&mut self.usage, data.get("usage")) {
            if let Some(out) = d.get("output_tokens") {
                u.insert("output_tokens".into(), out.clone());
                self.usage_final = true;
            }
            for k in DELTA_USAGE_FIELDS {
                if let Some(v) = d.get(k).filter(|v| !v.is_null()) {
                    u.insert(k.into(), v.clone());
                }
            }
        }
        Ok(())
    }

    pub(super) fn usage(&self) -> Option<Tokens> {
        let u = self.usage.as_ref()?;
        usage(
            Dialect::AnthropicMessages,
            &json!({"usage": Value::Object(u.clone())}),
        )
    }

    /// The usage once a `message_delta` gave the output count; `message_start`'s alone is
    /// the count at the start (the input, and an output of 1 or so), not what was generated.
    pub(super) fn final_usage(&self) -> Option<Tokens> {
        self.usage_final.then(|| self.usage()).flatten()
    }

    pub(super) fn outcome(&self) -> StreamEnd {
        if self.error {
            StreamEnd::Error
        } else if self.stopped && !self.unreadable {
            StreamEnd::Clean
        } else {
            StreamEnd::Truncated
        }
    }

    /// The `message` the events reassemble into, with each tool input parsed from its JSON
    /// text; `None` when a tool input is not complete JSON.
    pub(super) fn final_message(&self) -> Option<Value> {
        let mut m = self.message.clone()?;
        if let Some(Value::Array(content)) = m.get_mut("content") {
            for (block, buf) in content.iter_mut().zip(&self.tool_json) {
                if let Some(text) = buf.as_deref().filter(|t| !t.is_empty()) {
                    let input: Value = serde_json::from_str(text).ok()?;
                    block["input"] = input;
                }
            }
        }
        m.insert(
            "usage".into(),
            Value::Object(self.usage.clone().unwrap_or_default()),
        );
        Some(Value::Object(m))
    }
}

fn index(data: &Value) -> Option<usize> {
    data.get("index")
        .and_then(Value::as_u64)
        .and_then(|i| usize::try_from(i).ok())
}

fn append(block: &mut Map<String, Value>, key: &str, piece: &str) {
    match block.get_mut(key) {
        Some(Value::String(s)) => s.push_str(piece),
        _ => {
            block.insert(key.into(), json!(piece));
        }
    }
}
