//! The caller's bytes of a relayed provider stream, chunk by chunk: each complete event
//! re-encoded as it was parsed, watched on the way ([`StreamWatcher`]), with error events
//! scrubbed of key material and, when the gateway asked for OpenAI's usage chunk on the
//! caller's behalf, that chunk and the `usage: null` of the others taken out. The Worker's relay
//! (`src/relay.rs`) adds the clock: keep-alives, the silence bound and the stream's end.

use serde_json::Value;

use super::sse::{self, SseEvent};
use super::{SseParser, StreamWatcher};
use crate::api::dropin::Dialect;
use crate::scrub::scrub;

/// One relayed stream's events.
#[derive(Debug, Clone)]
pub struct EventRelay {
    dialect: Dialect,
    parser: SseParser,
    watcher: StreamWatcher,
    /// OpenAI's usage chunk was asked for by the gateway, not the caller: it is taken out.
    strip_usage: bool,
}

impl EventRelay {
    pub fn new(dialect: Dialect, strip_usage: bool) -> EventRelay {
        EventRelay {
            dialect,
            parser: SseParser::new(),
            watcher: StreamWatcher::new(dialect),
            strip_usage,
        }
    }

    /// What the stream showed so far: its usage, its end, the answer it reassembles into.
    pub fn watcher(&self) -> &StreamWatcher {
        &self.watcher
    }

    /// The caller's bytes of the next upstream `chunk` (split anywhere): its complete events.
    /// `tap`, when given, gets each event encoded as the provider sent it, before the caller's
    /// changes (a flight's leader publishes them to its followers).
    pub fn relay_chunk(
        &mut self,
        chunk: &[u8],
        mut tap: Option<&mut dyn FnMut(String)>,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(chunk.len() + 16);
        for item in self.parser.feed(chunk) {
            // An event the parser refused is not relayed (the watcher saw the stream spoilt).
            let Ok(ev) = item else { continue };
            let _ = self.watcher.observe(&ev);
            if let Some(tap) = tap.as_mut() {
                tap(sse::encode(ev.event.as_deref(), &ev.data));
            }
            let data = if self.strip_usage {
                match strip_usage(&ev.data) {
                    Strip::Drop => continue,
                    Strip::Keep => ev.data,
                    Strip::Rewritten(d) => d,
                }
            } else {
                ev.data
            };
            let ev = SseEvent { data, ..ev };
            let text = sse::encode(ev.event.as_deref(), &ev.data);
            if is_error_event(self.dialect, &ev) {
                out.extend_from_slice(scrub(&text).as_bytes());
            } else {
                out.extend_from_slice(text.as_bytes());
            }
        }
        out
    }
}

enum Strip {
    Keep,
    Drop,
    Rewritten(String),
}

/// OpenAI chunks of a stream whose usage chunk the caller did not ask for: the usage chunk
/// (empty `choices`, a `usage`) is left out and the `usage: null` other chunks then carry is
/// removed, so the caller gets the stream it would have got without it.
fn strip_usage(data: &str) -> Strip {
    if !data.contains("\"usage\"") {
        return Strip::Keep;
    }
    let Ok(Value::Object(mut chunk)) = serde_json::from_str::<Value>(data) else {
        return Strip::Keep;
    };
    let no_choices = chunk
        .get("choices")
        .and_then(Value::as_array)
        .is_some_and(|c| c.is_empty());
    match chunk.get("usage") {
        Some(Value::Null) => {
            chunk.remove("usage");
            Strip::Rewritten(Value::Object(chunk).to_string())
        }
        Some(_) if no_choices => Strip::Drop,
        Some(_) => {
            // Usage on a chunk that still has choices: keep the choices, drop the usage.
            chunk.remove("usage");
            Strip::Rewritten(Value::Object(chunk).to_string())
        }
        None => Strip::Keep,
    }
}

/// Whether `ev` is the dialect's error event (Anthropic `event: error`; OpenAI a `data:`
/// object with an `error`).
fn is_error_event(dialect: Dialect, ev: &SseEvent) -> bool {
    match dialect {
        Dialect::AnthropicMessages => ev.event.as_deref() == Some("error"),
        Dialect::OpenAiChat => ev.data.starts_with("{\"error\"") || ev.data.contains("\"error\":{"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::dropin::stream::StreamEnd;
    use crate::providers::completion::Tokens;

    const ROLE: &str = r#"{"choices":[{"delta":{"content":"","role":"assistant"},"finish_reason":null,"index":0}],"created":1,"id":"c1","model":"gpt-4o-mini","object":"chat.completion.chunk","usage":null}"#;
    const TEXT: &str = r#"{"choices":[{"delta":{"content":"Hi"},"finish_reason":"stop","index":0}],"created":1,"id":"c1","model":"gpt-4o-mini","object":"chat.completion.chunk","usage":null}"#;
    const USAGE: &str = r#"{"choices":[],"created":1,"id":"c1","model":"gpt-4o-mini","object":"chat.completion.chunk","usage":{"completion_tokens":1,"prompt_tokens":3,"total_tokens":4}}"#;

    fn stream(datas: &[&str]) -> Vec<u8> {
        let mut s: String = datas.iter().map(|d| sse::encode(None, d)).collect();
        s.push_str("data: [DONE]\n\n");
        s.into_bytes()
    }

    fn relay_all(relay: &mut EventRelay, bytes: &[u8], at: usize) -> String {
        let (a, b) = bytes.split_at(at);
        let mut out = relay.relay_chunk(a, None);
        out.extend(relay.relay_chunk(b, None));
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn the_usage_the_gateway_asked_for_is_taken_out_but_still_metered() {
        let bytes = stream(&[ROLE, TEXT, USAGE]);
        // Split in every place: the answer does not depend on where chunks break.
        for at in 0..=bytes.len() {
            let mut relay = EventRelay::new(Dialect::OpenAiChat, true);
            let out = relay_all(&mut relay, &bytes, at);
            assert!(!out.contains("usage"), "{out}");
            assert!(!out.contains("\"choices\":[]"), "{out}");
            assert_eq!(out.matches("data: ").count(), 3, "{out}");
            assert!(out.ends_with("data: [DONE]\n\n"), "{out}");
            assert!(out.contains(r#""content":"Hi""#), "{out}");
            let w = relay.watcher();
            assert_eq!(
                w.usage(),
                Some(Tokens {
                    input: 3,
                    output: 1
                })
            );
            assert_eq!(w.outcome(), StreamEnd::Clean);
        }
    }

    #[test]
    fn a_caller_who_asked_for_usage_gets_the_provider_events_as_they_were() {
        let bytes = stream(&[ROLE, TEXT, USAGE]);
        let mut relay = EventRelay::new(Dialect::OpenAiChat, false);
        let out = relay.relay_chunk(&bytes, None);
        assert_eq!(out, bytes);
    }

    #[test]
    fn usage_on_a_chunk_with_choices_keeps_the_choices() {
        let both = r#"{"choices":[{"delta":{"content":"Hi"},"finish_reason":"stop","index":0}],"object":"chat.completion.chunk","usage":{"completion_tokens":1,"prompt_tokens":3,"total_tokens":4}}"#;
        let mut relay = EventRelay::new(Dialect::OpenAiChat, true);
        let out = String::from_utf8(relay.relay_chunk(&stream(&[both]), None)).expect("utf-8");
        assert!(out.contains(r#""content":"Hi""#), "{out}");
        assert!(!out.contains("usage"), "{out}");
        assert_eq!(
            relay.watcher().usage(),
            Some(Tokens {
                input: 3,
                output: 1
            })
        );
    }

    #[test]
    fn the_tap_gets_the_provider_events_before_the_callers_changes() {
        let bytes = stream(&[ROLE, USAGE]);
        let mut tapped = Vec::new();
        let mut relay = EventRelay::new(Dialect::OpenAiChat, true);
        let mut tap = |e: String| tapped.push(e);
        let out = relay.relay_chunk(&bytes, Some(&mut tap));
        assert_eq!(tapped.concat().into_bytes(), bytes);
        assert!(!String::from_utf8(out).expect("utf-8").contains("usage"));
    }

    #[test]
    fn error_events_are_scrubbed_of_keys_in_both_dialects() {
        let key = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789";
        let anthropic = format!(
            "event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"api_error\",\"message\":\"bad key {key}\"}}}}\n\n"
        );
        let mut relay = EventRelay::new(Dialect::AnthropicMessages, false);
        let out = String::from_utf8(relay.relay_chunk(anthropic.as_bytes(), None)).expect("utf-8");
        assert!(out.starts_with("event: error\n"), "{out}");
        assert!(!out.contains(key), "{out}");
        assert_eq!(relay.watcher().outcome(), StreamEnd::Error);

        let key = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789";
        let openai = format!(
            "data: {{\"error\":{{\"message\":\"bad key {key}\",\"type\":\"server_error\"}}}}\n\n"
        );
        let mut relay = EventRelay::new(Dialect::OpenAiChat, true);
        let out = String::from_utf8(relay.relay_chunk(openai.as_bytes(), None)).expect("utf-8");
        assert!(out.starts_with("data: {\"error\""), "{out}");
        assert!(!out.contains(key), "{out}");

        // Text that only talks about keys is not an error event and passes as it is.
        let mut relay = EventRelay::new(Dialect::OpenAiChat, false);
        let text = r#"{"choices":[{"delta":{"content":"an error: none"},"index":0}],"object":"chat.completion.chunk"}"#;
        let bytes = stream(&[text]);
        assert_eq!(relay.relay_chunk(&bytes, None), bytes);
    }
}
