//! OpenAI Chat Completions streams: the usage, the end and the reassembled `chat.completion` of
//! a relayed stream of `chat.completion.chunk`s, accumulated as the official SDK does
//! (`ChatCompletionStreamState` in openai-python's `lib/streaming/chat/_completions.py`, with
//! `accumulate_delta` from `lib/streaming/_deltas.py`).
//!
//! The first chunk gives the completion's fields (`id`, `created`, `model`, ...); each choice's
//! deltas accumulate into its message (strings concatenate, `tool_calls` entries merge by their
//! `index`), its `finish_reason` is set when one comes and its `logprobs` lists grow; the usage
//! and `system_fingerprint` are the last chunk's that has them (the usage chunk, whose
//! `choices` is usually empty). `data: [DONE]` ends the stream; a chunk with an `error` object
//! is an error (the SDK raises it); an object that is not a `chat.completion.chunk` is skipped,
//! as the SDK skips Azure's filter events.

use serde_json::{json, Map, Number, Value};

use super::{SseEvent, StreamEnd, StreamError, MAX_REASSEMBLED_BYTES};
use crate::api::dropin::{usage, Dialect};
use crate::providers::completion::Tokens;

#[derive(Debug, Clone)]
struct Choice {
    /// The choice's own fields from its first chunk (besides `delta`).
    fields: Map<String, Value>,
    message: Map<String, Value>,
    logprobs: Value,
    finish_reason: Value,
}

#[derive(Debug, Clone, Default)]
pub(super) struct Watcher {
    /// The completion's fields from the first chunk; `None` before it.
    head: Option<Map<String, Value>>,
    choices: Vec<Choice>,
    /// Choices seen, and how many have their finish reason (kept when the body is dropped).
    choices_seen: usize,
    finished: Vec<bool>,
    usage: Option<Value>,
    system_fingerprint: Option<Value>,
    done: bool,
    error: bool,
    unreadable: bool,
    /// The body can no longer be reassembled (unreadable, or too large).
    no_body: bool,
    data_bytes: usize,
}

fn bad(ev: &SseEvent, reason: impl Into<String>) -> StreamError {
    StreamError::BadEvent {
        event: ev.event.clone(),
        reason: reason.into(),
    }
}

impl Watcher {
    pub(super) fn spoil(&mut self) {
        self.unreadable = true;
        self.drop_body();
    }

    fn drop_body(&mut self) {
        self.no_body = true;
        self.choices = Vec::new();
    }

    fn refuse(&mut self, e: StreamError) -> Result<(), StreamError> {
        self.spoil();
        Err(e)
    }

    pub(super) fn observe(&mut self, ev: &SseEvent) -> Result<(), StreamError> {
        if self.done {
            return Ok(());
        }
        if ev.data.starts_with("[DONE]") {
            self.done = true;
            return Ok(());
        }
        let data: Value = match serde_json::from_str(&ev.data) {
            Ok(v) => v,
            Err(e) => return self.refuse(bad(ev, e.to_string())),
        };
        if data.get("error").is_some_and(|e| !e.is_null()) {
            self.error = true;
            return Ok(());
        }
        if data.get("object").and_then(Value::as_str) != Some("chat.completion.chunk") {
            return Ok(());
        }
        let Some(Value::Array(choices)) = data.get("choices") else {
            return self.refuse(bad(ev, "chunk without choices"));
        };
        if self.head.is_none() {
            let mut head = data.as_object().cloned().unwrap_or_default();
            for k in ["choices", "obfuscation", "usage", "system_fingerprint"] {
                head.remove(k);
            }
            head.insert("object".into(), json!("chat.completion"));
            self.head = Some(head);
        }
        for c in choices {
            if let Err(e) = self.choice(ev, c) {
                return self.refuse(e);
            }
        }
        if let Some(u) = data.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(u.clone());
        }
        if let Some(f) = data.get("system_fingerprint").filter(|f| !f.is_null()) {
            self.system_fingerprint = Some(f.clone());
        }
        Ok(())
    }

    fn choice(&mut self, ev: &SseEvent, c: &Value) -> Result<(), StreamError> {
        let Some(i) = c
            .get("index")
            .and_then(Value::as_u64)
            .and_then(|i| usize::try_from(i).ok())
        else {
            return Err(bad(ev, "choice without an index"));
        };
        let delta = match c.get("delta") {
            Some(Value::Object(d)) => d.clone(),
            None | Some(Value::Null) => Map::new(),
            Some(_) => return Err(bad(ev, "delta is not an object")),
        };
        // What the answer keeps of the chunk: the choice's text and logprobs, not the fields
        // every chunk repeats (`id`, `model`, `usage: null`, padding), several times larger.
        let kept = delta.values().map(weight).sum::<usize>() + c.get("logprobs").map_or(0, weight);
        self.data_bytes = self.data_bytes.saturating_add(kept);
        if self.data_bytes > MAX_REASSEMBLED_BYTES {
            self.drop_body();
        }
        let finish = c.get("finish_reason").cloned().unwrap_or(Value::Null);
        let finishes = truthy(&finish);
        if i == self.choices_seen {
            self.choices_seen += 1;
            self.finished.push(finishes);
            if !self.no_body {
                let mut fields = c.as_object().cloned().unwrap_or_default();
                fields.remove("delta");
                self.choices.push(Choice {
                    fields,
                    message: delta,
                    logprobs: c.get("logprobs").cloned().unwrap_or(Value::Null),
                    finish_reason: finish,
                });
            }
            return Ok(());
        }
        if i > self.choices_seen {
            return Err(StreamError::OutOfOrder("choice index"));
        }
        self.finished[i] |= finishes;
        let Some(choice) = self.choices.get_mut(i) else {
            return Ok(());
        };
        accumulate_delta(&mut choice.message, &delta).map_err(|r| bad(ev, r))?;
        if finishes {
            choice.finish_reason = finish;
        }
        if let Some(lp) = c.get("logprobs").filter(|l| !l.is_null()) {
            if choice.logprobs.is_null() {
                choice.logprobs = json!({
                    "content": lp.get("content").cloned().unwrap_or(Value::Null),
                    "refusal": lp.get("refusal").cloned().unwrap_or(Value::Null),
                });
            } else if let Some(acc) = choice.logprobs.as_object_mut() {
                for k in ["content", "refusal"] {
                    if let Some(Value::Array(more)) = lp.get(k).filter(|v| truthy(v)) {
                        match acc.get_mut(k) {
                            Some(Value::Array(list)) => list.extend(more.iter().cloned()),
                            _ => {
                                acc.insert(k.into(), Value::Array(more.clone()));
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn usage(&self) -> Option<Tokens> {
        let u = self.usage.as_ref()?;
        usage(Dialect::OpenAiChat, &json!({ "usage": u }))
    }

    pub(super) fn outcome(&self) -> StreamEnd {
        if self.error {
            StreamEnd::Error
        } else if self.done
            && !self.unreadable
            && !self.finished.is_empty()
            && self.finished.iter().all(|f| *f)
        {
            StreamEnd::Clean
        } else {
            StreamEnd::Truncated
        }
    }

    /// The `chat.completion` the chunks reassemble into: each message with `content` and
    /// `refusal` (null when none came) and its tool calls without their stream `index`.
    pub(super) fn final_message(&self) -> Option<Value> {
        if self.no_body {
            return None;
        }
        let mut m = self.head.clone()?;
        let choices = self
            .choices
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut fields = c.fields.clone();
                let mut message = c.message.clone();
                for k in ["content", "refusal"] {
                    message.entry(k).or_insert(Value::Null);
                }
                if let Some(Value::Array(calls)) = message.get_mut("tool_calls") {
                    for call in calls.iter_mut().filter_map(Value::as_object_mut) {
                        call.remove("index");
                    }
                }
                fields.insert("index".into(), json!(i));
                fields.insert("message".into(), Value::Object(message));
                fields.insert("logprobs".into(), c.logprobs.clone());
                fields.insert("finish_reason".into(), c.finish_reason.clone());
                Value::Object(fields)
            })
            .collect();
        m.insert("choices".into(), Value::Array(choices));
        if let Some(u) = &self.usage {
            m.insert("usage".into(), u.clone());
        }
        if let Some(f) = &self.system_fingerprint {
            m.insert("system_fingerprint".into(), f.clone());
        }
        Some(Value::Object(m))
    }
}

/// Python's truth value of a JSON value, as the SDK tests `if choice.finish_reason:`.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// The SDK's `accumulate_delta`: a new key is taken; a null is replaced; `index` and `type`
/// are replaced; strings concatenate, numbers add, objects merge, lists of scalars extend,
/// lists of objects merge entry by entry on their `index` (a new one inserted there); any other
/// pair keeps the accumulated value.
pub(super) fn accumulate_delta(
    acc: &mut Map<String, Value>,
    delta: &Map<String, Value>,
) -> Result<(), String> {
    for (key, dv) in delta {
        let Some(av) = acc.get_mut(key) else {
            acc.insert(key.clone(), dv.clone());
            continue;
        };
        if av.is_null() || key == "index" || key == "type" {
            *av = dv.clone();
            continue;
        }
        match (av, dv) {
            (Value::String(a), Value::String(d)) => a.push_str(d),
            (Value::Number(a), Value::Number(d)) => *a = add(a, d),
            (Value::Object(a), Value::Object(d)) => accumulate_delta(a, d)?,
            (Value::Array(a), Value::Array(d)) => {
                if a.iter().all(|x| x.is_string() || x.is_number()) {
                    a.extend(d.iter().cloned());
                    continue;
                }
                for entry in d {
                    let Value::Object(e) = entry else {
                        return Err(format!("list delta entry is not an object in {key}"));
                    };
                    let Some(i) = e.get("index").and_then(Value::as_u64) else {
                        return Err(format!(
                            "list delta entry without an integer index in {key}"
                        ));
                    };
                    let i = usize::try_from(i).unwrap_or(usize::MAX);
                    match a.get_mut(i) {
                        Some(Value::Object(acc_entry)) => accumulate_delta(acc_entry, e)?,
                        Some(_) => return Err(format!("list entry is not an object in {key}")),
                        None => a.insert(i.min(a.len()), entry.clone()),
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn add(a: &Number, d: &Number) -> Number {
    if let (Some(x), Some(y)) = (a.as_u64(), d.as_u64()) {
        if let Some(s) = x.checked_add(y) {
            return s.into();
        }
    }
    if let (Some(x), Some(y)) = (a.as_i64(), d.as_i64()) {
        if let Some(s) = x.checked_add(y) {
            return s.into();
        }
    }
    let sum = a.as_f64().unwrap_or(0.0) + d.as_f64().unwrap_or(0.0);
    Number::from_f64(sum).unwrap_or_else(|| a.clone())
}

/// About the bytes of `v`'s strings and numbers: what a delta adds to the reassembled answer.
fn weight(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::Number(_) => 8,
        Value::Array(items) => items.iter().map(weight).sum(),
        Value::Object(fields) => fields.values().map(weight).sum(),
        Value::Null | Value::Bool(_) => 0,
    }
}
