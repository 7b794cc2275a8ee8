//! The relay of a streamed drop-in answer: the provider's events go to the caller as they
//! arrive (nothing waits for the whole answer), watched on the way for the usage, the end and
//! the answer to store. A keep-alive goes out while the upstream is silent; a stream cut after
//! its first event ends with the dialect's own error event, never a clean end. When the relay
//! ends (or the caller goes away and drops it) its [`StreamEnded`] is sent to the settlement.

use futures::channel::oneshot;
use futures::future::{select, Either};
use futures::{Stream, StreamExt};
use gateway_core::api::dropin::stream::{
    keepalive, sse, terminal_error, SseParser, StreamEnd, StreamWatcher,
};
use gateway_core::api::dropin::Dialect;
use gateway_core::providers::completion::Tokens;
use gateway_core::scrub::scrub;
use serde_json::Value;
use worker_shared::clock::now_ms;
use worker_shared::timer::Timer;

use crate::flight::Tap;
use crate::pipeline::EventBody;

/// How a relayed stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The provider's terminal event after a stop reason.
    Clean,
    /// The provider sent an error event.
    ProviderError,
    /// The upstream stream broke or ended without its terminal event.
    Cut,
    /// The upstream was silent past the idle bound.
    Silent,
    /// The caller went away before the end.
    ClientGone,
}

impl Ended {
    /// The name a usage row records.
    pub fn as_str(self) -> &'static str {
        match self {
            Ended::Clean => "clean",
            Ended::ProviderError => "provider_error",
            Ended::Cut => "cut",
            Ended::Silent => "silent",
            Ended::ClientGone => "client_gone",
        }
    }
}

/// What the settlement learns when a relay ends.
#[derive(Debug, Clone)]
pub struct StreamEnded {
    pub end: Ended,
    /// The usage the provider reported in the stream, if it did.
    pub usage: Option<Tokens>,
    /// The answer the whole call would have returned, when the stream finished cleanly.
    pub final_body: Option<String>,
}

/// The relay's bounds.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// A keep-alive after this long without an upstream event.
    pub keepalive_ms: u64,
    /// The stream is cut after this long without one.
    pub idle_ms: u64,
}

struct Relay {
    dialect: Dialect,
    upstream: EventBody,
    parser: SseParser,
    /// A flight's leader publishes the provider's events (as they came, before the caller's
    /// own changes) to its followers.
    tap: Option<Tap>,
    watcher: StreamWatcher,
    /// OpenAI's usage chunk was asked for by the gateway, not the caller: it is taken out.
    strip_usage: bool,
    bounds: Bounds,
    /// When the upstream last sent something, and the last keep-alive went out (ms).
    last_upstream_ms: u64,
    last_keepalive_ms: u64,
    /// The timer of the next bound (a keep-alive or the cut): one per silence, not one per
    /// chunk; a chunk arriving first leaves it running, and when it fires the bounds are
    /// checked against the clock.
    tick: Option<Timer>,
    ended: Option<oneshot::Sender<StreamEnded>>,
}

impl Relay {
    fn finish(&mut self, end: Ended) {
        if let Some(tx) = self.ended.take() {
            let final_body = (end == Ended::Clean)
                .then(|| self.watcher.final_body())
                .flatten();
            let _ = tx.send(StreamEnded {
                end,
                usage: self.watcher.usage(),
                final_body,
            });
        }
    }

    /// The caller's bytes of one upstream chunk: its complete events, re-encoded as they were
    /// (error events scrubbed of key material; the gateway's own usage chunk left out).
    fn relay_chunk(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(chunk.len() + 16);
        for item in self.parser.feed(chunk) {
            let Ok(ev) = item else { continue };
            let _ = self.watcher.observe(&ev);
            if let Some(tap) = &self.tap {
                tap.publish(sse::encode(ev.event.as_deref(), &ev.data));
            }
            let data = if self.strip_usage {
                match strip_usage(&ev.data) {
                    Strip::Drop => continue,
                    Strip::Keep => ev.data.clone(),
                    Strip::Rewritten(d) => d,
                }
            } else {
                ev.data.clone()
            };
            let text = sse::encode(ev.event.as_deref(), &data);
            if is_error_event(self.dialect, ev.event.as_deref(), &data) {
                out.extend_from_slice(scrub(&text).as_bytes());
            } else {
                out.extend_from_slice(text.as_bytes());
            }
        }
        out
    }

    /// The terminal error event of a stream cut after it began.
    fn cut(&mut self, end: Ended, message: &str) -> Vec<u8> {
        self.finish(end);
        let error_type = match self.dialect {
            Dialect::AnthropicMessages => "api_error",
            Dialect::OpenAiChat => "server_error",
        };
        terminal_error(self.dialect, error_type, message)
    }
}

impl Drop for Relay {
    /// A relay dropped before its end: the caller went away (its upstream call is cancelled
    /// with it, which stops the provider generating).
    fn drop(&mut self) {
        self.finish(Ended::ClientGone);
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

fn is_error_event(dialect: Dialect, event: Option<&str>, data: &str) -> bool {
    match dialect {
        Dialect::AnthropicMessages => event == Some("error"),
        Dialect::OpenAiChat => data.starts_with("{\"error\"") || data.contains("\"error\":{"),
    }
}

/// Relays `upstream` (the provider's event stream, or a flight leader's as its follower
/// receives it) for a caller of `dialect`: the caller's body, and where its end is told.
pub fn relay(
    dialect: Dialect,
    upstream: EventBody,
    strip_usage: bool,
    bounds: Bounds,
    tap: Option<Tap>,
) -> (
    impl Stream<Item = Result<Vec<u8>, worker::Error>> + 'static,
    oneshot::Receiver<StreamEnded>,
) {
    let (tx, rx) = oneshot::channel();
    let now = now_ms();
    let relay = Relay {
        dialect,
        upstream,
        parser: SseParser::new(),
        tap,
        watcher: StreamWatcher::new(dialect),
        strip_usage,
        bounds,
        last_upstream_ms: now,
        last_keepalive_ms: now,
        tick: None,
        ended: Some(tx),
    };
    let body = futures::stream::unfold(relay, |mut r| async move {
        loop {
            // Ended: the terminal bytes already went out.
            r.ended.as_ref()?;
            let tick = r.tick.get_or_insert_with(|| {
                let due_ms = (r.last_keepalive_ms + r.bounds.keepalive_ms)
                    .min(r.last_upstream_ms + r.bounds.idle_ms);
                Timer::after_ms(due_ms.saturating_sub(now_ms()))
            });
            match select(r.upstream.next(), tick).await {
                Either::Left((Some(Ok(chunk)), _)) => {
                    r.last_upstream_ms = now_ms();
                    r.last_keepalive_ms = r.last_upstream_ms;
                    let out = r.relay_chunk(&chunk);
                    if !out.is_empty() {
                        return Some((Ok(out), r));
                    }
                }
                Either::Left((Some(Err(_)), _)) => {
                    let out = r.cut(Ended::Cut, "the upstream stream broke");
                    return Some((Ok(out), r));
                }
                Either::Left((None, _)) => {
                    return match r.watcher.outcome() {
                        StreamEnd::Clean => {
                            r.finish(Ended::Clean);
                            None
                        }
                        StreamEnd::Error => {
                            r.finish(Ended::ProviderError);
                            None
                        }
                        StreamEnd::Truncated => {
                            let out = r.cut(Ended::Cut, "the upstream stream ended early");
                            Some((Ok(out), r))
                        }
                    };
                }
                Either::Right(((), _)) => {
                    r.tick = None;
                    let now = now_ms();
                    if now.saturating_sub(r.last_upstream_ms) >= r.bounds.idle_ms {
                        let out = r.cut(Ended::Silent, "the upstream stopped sending events");
                        return Some((Ok(out), r));
                    }
                    if now.saturating_sub(r.last_keepalive_ms) >= r.bounds.keepalive_ms {
                        r.last_keepalive_ms = now;
                        return Some((Ok(keepalive(r.dialect).to_vec()), r));
                    }
                }
            }
        }
    });
    (body, rx)
}
