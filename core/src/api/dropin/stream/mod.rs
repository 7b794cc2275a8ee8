//! Streamed drop-in answers (`"stream": true`): watching a provider's `text/event-stream` as it
//! is relayed, and synthesizing one from a stored answer.
//!
//! The provider's bytes go to the caller as they arrive; a [`StreamWatcher`] is fed the same
//! bytes and keeps what the gateway needs once the stream ends:
//! - [`StreamWatcher::usage`]: the tokens to meter, from the provider's own usage in the stream
//!   (OpenAI's usage chunk, sent when `stream_options.include_usage` is set; Anthropic's
//!   `message_start` usage with the last `message_delta` usage over it);
//! - [`StreamWatcher::outcome`]: whether it finished cleanly ([`StreamEnd::Clean`]), carried an
//!   error event ([`StreamEnd::Error`]), or has not (yet) finished ([`StreamEnd::Truncated`]);
//! - [`StreamWatcher::final_body`]: the answer the non-streaming call would have returned,
//!   reassembled as the official SDKs' stream accumulators do, for the cache (one entry serves
//!   both forms).
//!
//! A cache hit asked with `"stream": true` is answered by [`synthesize`]: the stored answer as
//! the provider's own event sequence, which the SDKs reassemble into the same message (and a
//! watcher into the same body). [`keepalive`] is an event that changes nothing for the SDKs;
//! [`terminal_error`] ends a stream that has already begun with an error event the SDKs raise.
//!
//! `sse` parses and encodes server-sent events; `openai` and `anthropic` watch and reassemble
//! each dialect's stream; `relay` turns a provider's chunks into the caller's ([`EventRelay`]);
//! `synthesize` writes one. Nothing here reads a clock or does I/O.

mod anthropic;
mod openai;
mod relay;
pub mod sse;
mod synthesize;

use std::fmt;

use serde_json::{json, Value};

use super::Dialect;
use crate::providers::completion::Tokens;
pub use relay::EventRelay;
pub use sse::{SseError, SseEvent, SseParser, MAX_EVENT_BYTES};
pub use synthesize::{synthesize, SynthesizeError};

/// The most event data a watcher reassembles into a final body; past it the stream is still
/// watched (usage, outcome) but gives no body to store. Far above the largest answer a
/// provider's output limit allows.
pub const MAX_REASSEMBLED_BYTES: usize = 8 * 1024 * 1024;

/// How a watched stream ended, as far as the events fed so far show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// The dialect's terminal event arrived after a stop reason: Anthropic `message_stop`
    /// after a `message_delta` with a `stop_reason`; OpenAI `data: [DONE]` after every choice
    /// had its `finish_reason`. No error event came.
    Clean,
    /// An error event arrived (Anthropic `event: error`; OpenAI a `data:` object with an
    /// `error`), whatever followed.
    Error,
    /// No terminal event yet: the stream was cut, is still going, or could not be read (an
    /// event too large, not JSON, or out of order; `feed` reported it).
    Truncated,
}

/// Why a watcher could not read part of a stream. The bytes are still the caller's to relay;
/// the watcher keeps going, and the stream is not seen as clean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamError {
    /// The SSE parser refused an event.
    Sse(SseError),
    /// An event's data is not the JSON its dialect sends.
    BadEvent {
        event: Option<String>,
        reason: String,
    },
    /// An event came where the dialect never sends it (a delta before `message_start`, a
    /// content block out of sequence).
    OutOfOrder(&'static str),
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::Sse(e) => e.fmt(f),
            StreamError::BadEvent { event, reason } => {
                write!(f, "unreadable stream event {event:?}: {reason}")
            }
            StreamError::OutOfOrder(what) => write!(f, "stream event out of order: {what}"),
        }
    }
}

impl std::error::Error for StreamError {}

impl From<SseError> for StreamError {
    fn from(e: SseError) -> Self {
        StreamError::Sse(e)
    }
}

/// Watches one relayed stream: feed it the provider's bytes as they pass, ask it at the end.
#[derive(Debug, Clone)]
pub struct StreamWatcher {
    parser: SseParser,
    dialect: Watcher,
}

#[derive(Debug, Clone)]
enum Watcher {
    OpenAi(openai::Watcher),
    Anthropic(anthropic::Watcher),
}

impl StreamWatcher {
    pub fn new(dialect: Dialect) -> StreamWatcher {
        StreamWatcher {
            parser: SseParser::new(),
            dialect: match dialect {
                Dialect::OpenAiChat => Watcher::OpenAi(openai::Watcher::default()),
                Dialect::AnthropicMessages => Watcher::Anthropic(anthropic::Watcher::default()),
            },
        }
    }

    /// Feeds the next bytes of the stream, split anywhere. Every complete event in them is
    /// observed; the first one that could not be read is returned (the rest are observed all
    /// the same).
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), StreamError> {
        let mut first = Ok(());
        for item in self.parser.feed(chunk) {
            let r = match item {
                Ok(ev) => self.observe(&ev),
                Err(e) => {
                    self.spoil();
                    Err(e.into())
                }
            };
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    /// Observes one parsed event (for a caller that parses the stream itself).
    pub fn observe(&mut self, ev: &SseEvent) -> Result<(), StreamError> {
        match &mut self.dialect {
            Watcher::OpenAi(w) => w.observe(ev),
            Watcher::Anthropic(w) => w.observe(ev),
        }
    }

    fn spoil(&mut self) {
        match &mut self.dialect {
            Watcher::OpenAi(w) => w.spoil(),
            Watcher::Anthropic(w) => w.spoil(),
        }
    }

    /// The tokens the stream reported so far, as [`super::usage`] reads them from a JSON
    /// answer; `None` before any usage arrived (OpenAI sends it only in the usage chunk asked
    /// with `stream_options.include_usage`).
    pub fn usage(&self) -> Option<Tokens> {
        match &self.dialect {
            Watcher::OpenAi(w) => w.usage(),
            Watcher::Anthropic(w) => w.usage(),
        }
    }

    /// The usage a call is settled at: the provider's final count, `None` when it never came
    /// (the call is then charged its worst case). OpenAI's usage chunk is final; Anthropic's
    /// usage is final once a `message_delta` carried the output count (`message_start`'s is the
    /// count when the answer began, so a stream that failed after it is not settled at it).
    pub fn final_usage(&self) -> Option<Tokens> {
        match &self.dialect {
            Watcher::OpenAi(w) => w.usage(),
            Watcher::Anthropic(w) => w.final_usage(),
        }
    }

    /// How the stream ended, as far as the events fed so far show.
    pub fn outcome(&self) -> StreamEnd {
        match &self.dialect {
            Watcher::OpenAi(w) => w.outcome(),
            Watcher::Anthropic(w) => w.outcome(),
        }
    }

    /// The non-streaming answer the stream reassembles into (a JSON text), only when it ended
    /// [`StreamEnd::Clean`] and every event was read; `None` too when a part cannot be
    /// reassembled (a tool input that is not complete JSON, as at `max_tokens`) or the stream
    /// outgrew [`MAX_REASSEMBLED_BYTES`].
    pub fn final_body(&self) -> Option<String> {
        if self.outcome() != StreamEnd::Clean {
            return None;
        }
        let body = match &self.dialect {
            Watcher::OpenAi(w) => w.final_message(),
            Watcher::Anthropic(w) => w.final_message(),
        }?;
        Some(body.to_string())
    }
}

/// An event that keeps an idle connection open and that the SDKs skip: Anthropic's own `ping`;
/// for OpenAI, an SSE comment.
pub fn keepalive(dialect: Dialect) -> &'static [u8] {
    match dialect {
        Dialect::AnthropicMessages => b"event: ping\ndata: {\"type\": \"ping\"}\n\n",
        Dialect::OpenAiChat => b": keep-alive\n\n",
    }
}

/// The last event of a stream cut after its first event, which the dialect's SDK raises as an
/// API error: Anthropic `event: error` with `{"type": "error", "error": {"type", "message"}}`;
/// OpenAI a `data:` object with `error` (`type` and `code` both `error_type`, `message`). The
/// stream carries no `[DONE]` after it.
pub fn terminal_error(dialect: Dialect, error_type: &str, message: &str) -> Vec<u8> {
    match dialect {
        Dialect::AnthropicMessages => {
            let body = json!({"type": "error", "error": {"type": error_type, "message": message}});
            sse::encode(Some("error"), &body.to_string()).into_bytes()
        }
        Dialect::OpenAiChat => {
            let body = json!({"error": {"message": message, "type": error_type,
                "param": Value::Null, "code": error_type}});
            sse::encode(None, &body.to_string()).into_bytes()
        }
    }
}

#[cfg(test)]
mod tests;
