//! The relay of a streamed drop-in answer: the provider's events go to the caller as they
//! arrive (nothing waits for the whole answer), watched on the way for the usage, the end and
//! the answer to store. A keep-alive goes out while the upstream is silent; a stream cut after
//! its first event ends with the dialect's own error event, never a clean end. When the relay
//! ends (or the caller goes away and drops it) its [`StreamEnded`] is sent to the settlement.
//! What is done to the events themselves is `gateway_core`'s `EventRelay`; this adds the
//! clock, the bounds and the flight's tap.

use futures::channel::oneshot;
use futures::future::{select, Either};
use futures::{Stream, StreamExt};
use gateway_core::api::dropin::stream::{keepalive, terminal_error, EventRelay, StreamEnd};
use gateway_core::api::dropin::Dialect;
use gateway_core::providers::completion::Tokens;
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
    /// The provider's final usage, if the stream reported it (`StreamWatcher::final_usage`).
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
    /// The caller's bytes of each chunk, and what the events showed (`gateway_core`).
    events: EventRelay,
    /// A flight's leader publishes the provider's events (as they came, before the caller's
    /// own changes) to its followers.
    tap: Option<Tap>,
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
            let watcher = self.events.watcher();
            let final_body = (end == Ended::Clean)
                .then(|| watcher.final_body())
                .flatten();
            let _ = tx.send(StreamEnded {
                end,
                usage: watcher.final_usage(),
                final_body,
            });
        }
    }

    /// The caller's bytes of one upstream chunk (`EventRelay::relay_chunk`), its events
    /// published to the flight's followers as they came.
    fn relay_chunk(&mut self, chunk: &[u8]) -> Vec<u8> {
        match &self.tap {
            Some(tap) => self
                .events
                .relay_chunk(chunk, Some(&mut |event: String| tap.publish(event))),
            None => self.events.relay_chunk(chunk, None),
        }
    }

    /// The upstream stopped: its own end, or else `cut` (a break or a silence). A stream whose
    /// events already ended it (its terminal event, or an error event) ends as they say, with
    /// nothing more sent; any other is cut with the dialect's error event.
    fn stopped(&mut self, cut: (Ended, &str)) -> Option<Vec<u8>> {
        match self.events.watcher().outcome() {
            StreamEnd::Clean => self.finish(Ended::Clean),
            StreamEnd::Error => self.finish(Ended::ProviderError),
            StreamEnd::Truncated => return Some(self.cut(cut.0, cut.1)),
        }
        None
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
        events: EventRelay::new(dialect, strip_usage),
        tap,
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
                    // The terminal event came: the stream is over, whatever the upstream's
                    // connection does next (the next turn ends the body).
                    if r.events.watcher().outcome() == StreamEnd::Clean {
                        r.finish(Ended::Clean);
                    }
                    if !out.is_empty() {
                        return Some((Ok(out), r));
                    }
                }
                Either::Left((Some(Err(_)), _)) => {
                    let out = r.stopped((Ended::Cut, "the upstream stream broke"));
                    return out.map(|out| (Ok(out), r));
                }
                Either::Left((None, _)) => {
                    let out = r.stopped((Ended::Cut, "the upstream stream ended early"));
                    return out.map(|out| (Ok(out), r));
                }
                Either::Right(((), _)) => {
                    r.tick = None;
                    let now = now_ms();
                    if now.saturating_sub(r.last_upstream_ms) >= r.bounds.idle_ms {
                        let out = r.stopped((Ended::Silent, "the upstream stopped sending events"));
                        return out.map(|out| (Ok(out), r));
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
