//! The gateway's side of a single flight (`objects::Flight`, `gateway_core::cache::flight`):
//! a cacheable miss joins the flight of its cache key and leads it (makes the call, publishes
//! its stream and outcome) or follows it (waits for the leader's stream and outcome). Every
//! failure to reach the flight leaves the call alone, as if coalescing were off: a flight can
//! save calls, never lose one.

use futures::channel::mpsc;
use futures::future::{select, Either};
use futures::{Stream, StreamExt};
use gateway_core::cache::flight::{
    FlightOp, Frame, FrameReader, Outcome, FOLLOWER_MARGIN_MS, MAX_FOLLOWERS, RENEW_MS,
};
use std::collections::VecDeque;
use worker::{web_sys, Delay, Method, Request, RequestInit};
use worker_shared::body::Chunks;
use worker_shared::fetch::{self, Target};

use crate::brokers;
use crate::http::context::RequestContext;
use crate::pipeline::EventBody;

/// What a cacheable miss is in its flight.
pub enum Role {
    /// It makes the call and tells the others.
    Lead(Leader),
    /// It waits for the leader.
    Follow(Follower),
    /// It makes its own call, outside any flight (coalescing off, the flight full or
    /// unreachable).
    Alone,
}

/// Whether coalescing is on: the `COALESCE` var (`off` turns it off), or, for one request of a
/// `dev-hooks` build, its `x-dev-flight: off` (the benchmark's baseline, in the same run).
fn enabled(cx: &RequestContext) -> bool {
    #[cfg(feature = "dev-hooks")]
    if cx.dev_flight == "off" {
        return false;
    }
    cx.var("COALESCE").as_deref() != Some("off")
}

fn max_followers(cx: &RequestContext) -> usize {
    #[cfg(feature = "dev-hooks")]
    if let Some(n) = cx
        .dev_flight
        .strip_prefix("max=")
        .and_then(|n| n.parse().ok())
    {
        return n;
    }
    let _ = cx;
    MAX_FOLLOWERS
}

/// The test hook of a leader (see `RequestContext::dev_flight`).
#[derive(Clone, Copy, PartialEq)]
enum Hook {
    None,
    /// Vanishes: never renews, publishes or finishes.
    Lose,
    /// Publishes the first part of its stream, then vanishes.
    LoseMidStream,
    /// Renews, never publishes or finishes.
    Stall,
}

fn hook(cx: &RequestContext) -> Hook {
    #[cfg(feature = "dev-hooks")]
    match cx.dev_flight.as_str() {
        "lose" => return Hook::Lose,
        "lose-mid-stream" => return Hook::LoseMidStream,
        "stall" => return Hook::Stall,
        _ => {}
    }
    let _ = cx;
    Hook::None
}

fn stub(cx: &RequestContext, key: &str) -> Option<Target> {
    let ns = cx.env.durable_object("FLIGHT").ok()?;
    let stub = ns.id_from_name(key).and_then(|id| id.get_stub()).ok()?;
    Some(Target::object(stub))
}

async fn send(stub: &Target, op: &FlightOp) -> Option<web_sys::Response> {
    let body = serde_json::to_string(op).ok()?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(body.into()));
    let req = Request::new_with_init("https://flight/", &init).ok()?;
    let resp = stub.fetch(req.inner()).await.ok()?;
    (resp.status() == 200).then_some(resp)
}

/// Whether the flight took a leader's operation (`{"ok": true}`: the ticket still leads).
async fn accepted(resp: Option<web_sys::Response>) -> bool {
    let Some(resp) = resp else { return false };
    fetch::text(&resp)
        .await
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .is_some_and(|v| v["ok"] == true)
}

/// Joins the flight of cache key `key` (`streams`: as a follower, the call passes the leader's
/// stream on as it comes).
pub async fn join(cx: &RequestContext, key: &str, streams: bool) -> Role {
    if !enabled(cx) {
        return Role::Alone;
    }
    let Some(stub) = stub(cx, key) else {
        return Role::Alone;
    };
    let op = FlightOp::Join {
        timeout_ms: brokers::timeout_ms(cx),
        max_followers: max_followers(cx),
        streams,
    };
    let Some(resp) = send(&stub, &op).await else {
        return Role::Alone;
    };
    let Some(body) = Chunks::of(&resp) else {
        return Role::Alone;
    };
    let mut frames = Frames::new(body);
    match frames.next().await {
        Some(Frame::Lead { ticket }) => Role::Lead(Leader::start(cx, stub, ticket)),
        Some(Frame::Follow) => Role::Follow(Follower {
            frames,
            stub,
            deadline_ms: cx.now_ms + brokers::timeout_ms(cx) + FOLLOWER_MARGIN_MS,
        }),
        _ => Role::Alone,
    }
}

/// The frames of a flight's answer, as they arrive; `None` at its end, or when a line is not a
/// frame (the flight is then read as lost).
struct Frames {
    body: Chunks,
    reader: FrameReader,
    ready: VecDeque<Frame>,
}

impl Frames {
    fn new(body: Chunks) -> Self {
        Frames {
            body,
            reader: FrameReader::default(),
            ready: VecDeque::new(),
        }
    }

    async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = self.ready.pop_front() {
                return Some(f);
            }
            let bytes = self.body.next().await?.ok()?;
            for frame in self.reader.feed(&bytes) {
                self.ready.push_back(frame.ok()?);
            }
        }
    }
}

enum LeaderOp {
    Publish(String),
    Finish(Outcome),
    Abandon,
}

/// The leader's handle. Its operations go, in order, through a task of its own (which also
/// renews the lease while the call runs), so they never hold up the leader's caller. A handle
/// dropped without [`Leader::finish`] abandons the flight (the leader's own limits refused
/// it, or it failed): a follower is promoted.
pub struct Leader {
    tx: mpsc::UnboundedSender<LeaderOp>,
}

/// What a leader's stream is published through (see [`Leader::tap`]).
#[derive(Clone)]
pub struct Tap {
    tx: mpsc::UnboundedSender<LeaderOp>,
}

impl Tap {
    /// A complete part of the leader's stream (whole events).
    pub fn publish(&self, chunk: String) {
        let _ = self.tx.unbounded_send(LeaderOp::Publish(chunk));
    }
}

impl Leader {
    fn start(cx: &RequestContext, stub: Target, ticket: u64) -> Leader {
        let (tx, rx) = mpsc::unbounded();
        cx.after(lead(stub, ticket, rx, hook(cx)));
        Leader { tx }
    }

    /// Where the leader's stream is published as it passes.
    pub fn tap(&self) -> Tap {
        Tap {
            tx: self.tx.clone(),
        }
    }

    /// The outcome followers are served; the flight ends.
    pub fn finish(self, outcome: Outcome) {
        let _ = self.tx.unbounded_send(LeaderOp::Finish(outcome));
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        // After `finish` the task has already ended on it and this is not read.
        let _ = self.tx.unbounded_send(LeaderOp::Abandon);
    }
}

/// The leader's task: its operations in order, consecutive stream parts sent as one, a renewal
/// whenever it has been quiet for [`RENEW_MS`].
async fn lead(stub: Target, ticket: u64, mut rx: mpsc::UnboundedReceiver<LeaderOp>, hook: Hook) {
    if hook == Hook::Lose {
        while rx.next().await.is_some() {}
        return;
    }
    let mut pending: Option<LeaderOp> = None;
    loop {
        let op = match pending.take() {
            Some(op) => Some(op),
            None => {
                let tick = Delay::from(std::time::Duration::from_millis(RENEW_MS));
                match select(rx.next(), tick).await {
                    Either::Left((op, _)) => Some(op.unwrap_or(LeaderOp::Abandon)),
                    Either::Right(((), _)) => None,
                }
            }
        };
        let op = match op {
            None => FlightOp::Renew { ticket },
            Some(_) if hook == Hook::Stall => {
                // Alive, never answering: renews until the flight is abandoned for its age.
                loop {
                    Delay::from(std::time::Duration::from_millis(RENEW_MS)).await;
                    if !accepted(send(&stub, &FlightOp::Renew { ticket }).await).await {
                        return;
                    }
                }
            }
            Some(LeaderOp::Publish(mut chunk)) => {
                while let Ok(next) = rx.try_recv() {
                    match next {
                        LeaderOp::Publish(more) => chunk.push_str(&more),
                        other => {
                            pending = Some(other);
                            break;
                        }
                    }
                }
                FlightOp::Publish { ticket, chunk }
            }
            Some(LeaderOp::Finish(outcome)) => FlightOp::Finish { ticket, outcome },
            Some(LeaderOp::Abandon) => FlightOp::Abandon { ticket },
        };
        let last = matches!(op, FlightOp::Finish { .. } | FlightOp::Abandon { .. });
        let published = matches!(op, FlightOp::Publish { .. });
        let _ = send(&stub, &op).await;
        if last {
            return;
        }
        if published && hook == Hook::LoseMidStream {
            while rx.next().await.is_some() {}
            return;
        }
    }
}

/// Where a followed stream's outcome is put when it comes (after its last event).
pub type Landed = std::rc::Rc<std::cell::RefCell<Option<Outcome>>>;

/// A follower's wait.
pub struct Follower {
    frames: Frames,
    stub: Target,
    deadline_ms: u64,
}

/// How a follower's wait ended.
pub enum Waited {
    /// The leader's outcome.
    Outcome(Outcome),
    /// The leader's stream (from its first event), for a follower that streams; it ends after
    /// the leader's last event, when the outcome is put in the [`Landed`] cell.
    Stream(EventBody, Landed),
    /// Promoted: this call now leads the flight.
    Lead(Leader),
    /// The flight was lost (its object went away): the call makes its own.
    Lost,
    /// Past the wait bound (the provider timeout and a margin).
    TimedOut,
}

impl Follower {
    /// Waits for the leader. A follower that `streams` is given the leader's stream as soon as
    /// its first part comes; one that does not waits for the outcome.
    pub async fn wait(mut self, cx: &RequestContext, streams: bool) -> Waited {
        let left_ms = self
            .deadline_ms
            .saturating_sub(worker_shared::clock::now_ms());
        let mut deadline = Delay::from(std::time::Duration::from_millis(left_ms));
        loop {
            let frame = match select(Box::pin(self.frames.next()), &mut deadline).await {
                Either::Left((frame, _)) => frame,
                Either::Right(((), _)) => return Waited::TimedOut,
            };
            match frame {
                Some(Frame::Done { outcome }) => return Waited::Outcome(outcome),
                Some(Frame::Lead { ticket }) => {
                    return Waited::Lead(Leader::start(cx, self.stub, ticket))
                }
                Some(Frame::Chunk { data }) if streams => {
                    let landed = Landed::default();
                    let body = Box::pin(chunks(data, self.frames, landed.clone()));
                    return Waited::Stream(body, landed);
                }
                Some(_) => {}
                None => return Waited::Lost,
            }
        }
    }
}

/// The leader's stream from `first` on, as bytes, until its last part; the outcome then goes
/// to `landed`.
fn chunks(
    first: String,
    frames: Frames,
    landed: Landed,
) -> impl Stream<Item = Result<Vec<u8>, worker::Error>> {
    futures::stream::unfold(
        (Some(first), Some(frames), landed),
        |(first, frames, landed)| async move {
            if let Some(first) = first {
                return Some((Ok(first.into_bytes()), (None, frames, landed)));
            }
            let mut frames = frames?;
            loop {
                match frames.next().await? {
                    Frame::Chunk { data } => {
                        return Some((Ok(data.into_bytes()), (None, Some(frames), landed)))
                    }
                    Frame::Done { outcome } => {
                        *landed.borrow_mut() = Some(outcome);
                        return None;
                    }
                    Frame::Lead { .. } => return None,
                    _ => {}
                }
            }
        },
    )
}
