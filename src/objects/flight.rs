//! `Flight`: one per cache key (`id_from_name(key)`), the single flight of identical cacheable
//! misses; a thin shell over `gateway_core::cache::flight` (state, operations, frames). It keeps
//! nothing in storage: a flight lives as long as its callers' requests, in memory.
//!
//! Reached by `fetch` (not RPC: a follower's answer is a stream of frames, newline-delimited
//! JSON, that stays open until the leader's outcome). The body of every request is one
//! [`FlightOp`]; `join` answers its first frame (`lead`, `follow`, `overflow`) and, for a
//! follower, the frames that follow; the leader's operations answer `{"ok": bool}`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use futures::channel::mpsc;
use futures::future::{select, Either};
use futures::StreamExt;
use gateway_core::cache::flight::{Delivery, Flight as State, FlightOp, Frame, Joined, RENEW_MS};
use worker::{durable_object, Delay, DurableObject, Env, Request, Response, Result};

#[derive(Default)]
struct Inner {
    flight: State,
    /// Where each waiting follower's frames go.
    followers: HashMap<u64, mpsc::UnboundedSender<Frame>>,
}

impl Inner {
    fn deliver(&mut self, sends: Vec<Delivery>) {
        for send in sends {
            match send {
                Delivery::All(frame) => {
                    let last = matches!(frame, Frame::Done { .. });
                    for tx in self.followers.values() {
                        let _ = tx.unbounded_send(frame.clone());
                    }
                    if last {
                        self.followers.clear();
                    }
                }
                Delivery::One(id, frame) => {
                    // A promoted follower stops following: `lead` is its last frame.
                    if let Some(tx) = self.followers.remove(&id) {
                        let _ = tx.unbounded_send(frame);
                    }
                }
            }
        }
    }
}

#[durable_object]
pub struct Flight {
    inner: Rc<RefCell<Inner>>,
}

impl DurableObject for Flight {
    fn new(_state: worker::State, _env: Env) -> Self {
        Flight {
            inner: Rc::new(RefCell::new(Inner::default())),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let op: FlightOp = match req.text().await.map(|t| serde_json::from_str(&t)) {
            Ok(Ok(op)) => op,
            _ => return Response::error("not a flight operation", 400),
        };
        let now = worker_shared::clock::now_ms();
        let mut inner = self.inner.borrow_mut();
        let ok = match op {
            FlightOp::Join {
                timeout_ms,
                max_followers,
                streams,
            } => {
                let (joined, sends) = inner.flight.join(now, timeout_ms, max_followers, streams);
                inner.deliver(sends);
                return match joined {
                    Joined::Lead { ticket } => Response::ok(Frame::Lead { ticket }.line()),
                    Joined::Overflow => Response::ok(Frame::Overflow.line()),
                    Joined::Follow { id, replay } => {
                        let (tx, rx) = mpsc::unbounded();
                        for frame in std::iter::once(Frame::Follow).chain(replay) {
                            let _ = tx.unbounded_send(frame);
                        }
                        inner.followers.insert(id, tx);
                        drop(inner);
                        Response::from_stream(follow(self.inner.clone(), id, rx))
                    }
                };
            }
            FlightOp::Publish { ticket, chunk } => inner
                .flight
                .publish(ticket, now, chunk)
                .map(|s| inner.deliver(s)),
            FlightOp::Finish { ticket, outcome } => inner
                .flight
                .finish(ticket, outcome)
                .map(|s| inner.deliver(s)),
            FlightOp::Abandon { ticket } => {
                inner.flight.abandon(ticket, now).map(|s| inner.deliver(s))
            }
            FlightOp::Renew { ticket } => inner.flight.renew(ticket, now).then_some(()),
        };
        Response::from_json(&serde_json::json!({ "ok": ok.is_some() }))
    }
}

/// Removes a follower from the flight when its wait ends, however it ends.
struct Leave {
    inner: Rc<RefCell<Inner>>,
    id: u64,
}

impl Drop for Leave {
    fn drop(&mut self) {
        if let Ok(mut inner) = self.inner.try_borrow_mut() {
            inner.flight.leave(self.id);
            inner.followers.remove(&self.id);
        }
    }
}

/// A follower's frames, as lines, until its last (`done`, or `lead` when promoted). While it
/// waits it also keeps the flight's time: a leader past its lease is found lost here.
fn follow(
    inner: Rc<RefCell<Inner>>,
    id: u64,
    rx: mpsc::UnboundedReceiver<Frame>,
) -> impl futures::Stream<Item = Result<Vec<u8>>> + 'static {
    let leave = Leave { inner, id };
    futures::stream::unfold(Some((rx, leave)), |state| async move {
        let (mut rx, leave) = state?;
        loop {
            let tick = Delay::from(std::time::Duration::from_millis(RENEW_MS));
            match select(rx.next(), tick).await {
                Either::Left((Some(frame), _)) => {
                    let last = matches!(frame, Frame::Done { .. } | Frame::Lead { .. });
                    let line = frame.line().into_bytes();
                    return Some((Ok(line), (!last).then_some((rx, leave))));
                }
                Either::Left((None, _)) => return None,
                Either::Right(((), _)) => {
                    let now = worker_shared::clock::now_ms();
                    if let Ok(mut i) = leave.inner.try_borrow_mut() {
                        let sends = i.flight.tick(now);
                        i.deliver(sends);
                    }
                }
            }
        }
    })
}
