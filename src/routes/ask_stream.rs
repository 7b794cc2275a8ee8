//! `POST /v1/ask` with `"stream": true`: every provider's broker is called in its streamed mode
//! at once, and the caller gets server-sent events as they answer: `delta` `{"provider",
//! "text"}` as each provider's text arrives, `result` with that provider's `results[]` entry
//! when it finishes or fails, then `done`, whose data is exactly the JSON body the whole call
//! returns. Each provider stays bounded by its timeout. When the events end (or the caller goes
//! away) the pipeline is told what to settle, store and archive.

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};

use futures::channel::oneshot;
use futures::future::{select, Either};
use futures::{Stream, StreamExt};
use gateway_core::api::dropin::stream::{sse, SseParser};
use gateway_core::broker::errors::StreamFailure;
use gateway_core::broker::{BrokerRequest, COMPLETE_STREAM_PATH};
use gateway_core::providers::completion::Completion;
use gateway_core::providers::Provider;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use worker::Headers;
use worker_shared::body::Chunks;
use worker_shared::timer::Timer;

use crate::brokers::{self, ProviderResult, ResultBody, Timed};
use crate::http::context::RequestContext;
use crate::pipeline::{EventBody, EventsEnded, OwnedCharge};
use crate::relay::Ended;

/// One provider's part of the events.
enum ProviderEvent {
    Delta(Provider, String),
    Done(Finished),
}

/// A provider's call, over.
struct Finished {
    timed: Timed,
    /// It failed after its provider began answering (the broker's `StreamFailure`).
    mid_answer: bool,
}

enum Call {
    Start(BrokerRequest),
    Reading { body: Chunks, parser: SseParser },
    Over,
}

struct ProviderCall {
    cx: RequestContext,
    provider: Provider,
    started: u64,
    timeout_ms: u64,
    /// The call's deadline, armed when the call is made: one timer for the whole call, not
    /// one per chunk.
    deadline: Timer,
    call: Call,
    pending: VecDeque<ProviderEvent>,
}

impl ProviderCall {
    fn elapsed(&self) -> u64 {
        worker_shared::clock::now_ms().saturating_sub(self.started)
    }

    fn done(&mut self, result: ProviderResult) {
        self.finished(result, false);
    }

    fn finished(&mut self, result: ProviderResult, mid_answer: bool) {
        self.call = Call::Over;
        let timed = Timed {
            result,
            latency_ms: self.elapsed(),
        };
        self.pending
            .push_back(ProviderEvent::Done(Finished { timed, mid_answer }));
    }

    /// The broker's events in one chunk of its stream.
    fn read(&mut self, chunk: &[u8]) {
        let Call::Reading { parser, .. } = &mut self.call else {
            return;
        };
        let mut finished = None;
        for ev in parser.feed(chunk).into_iter().flatten() {
            match ev.event.as_deref() {
                Some("delta") => {
                    let text = serde_json::from_str::<Value>(&ev.data)
                        .ok()
                        .and_then(|v| v["text"].as_str().map(str::to_string))
                        .unwrap_or_default();
                    if !text.is_empty() {
                        self.pending
                            .push_back(ProviderEvent::Delta(self.provider, text));
                    }
                }
                Some("result") => {
                    let result = match serde_json::from_str::<Completion>(&ev.data) {
                        Ok(c) => ProviderResult {
                            provider: self.provider,
                            outcome: ResultBody::Ok(c),
                        },
                        Err(_) => unavailable(self.provider),
                    };
                    finished = Some((result, false));
                }
                Some("error") => {
                    // Unreadable, it is the broker's failure (charged its worst case).
                    finished = Some(match serde_json::from_str::<StreamFailure>(&ev.data) {
                        Ok(f) => (
                            brokers::failed(self.provider, &f.body.to_string()),
                            f.mid_answer,
                        ),
                        Err(_) => (unavailable(self.provider), false),
                    });
                }
                _ => {}
            }
            if finished.is_some() {
                break;
            }
        }
        if let Some((result, mid_answer)) = finished {
            self.finished(result, mid_answer);
        }
    }
}

fn unavailable(provider: Provider) -> ProviderResult {
    let e = gateway_core::broker::errors::broker_unavailable(provider);
    ProviderResult::error(provider, e.code, e.message)
}

/// One provider's events: its deltas, then its result (within its timeout).
fn provider_events(
    cx: RequestContext,
    provider: Provider,
    body: Result<BrokerRequest, ProviderResult>,
) -> impl Stream<Item = ProviderEvent> + 'static {
    let timeout_ms = brokers::timeout_ms(&cx);
    let mut call = ProviderCall {
        cx,
        provider,
        started: worker_shared::clock::now_ms(),
        timeout_ms,
        deadline: Timer::after_ms(timeout_ms),
        call: Call::Over,
        pending: VecDeque::new(),
    };
    match body {
        Ok(b) => call.call = Call::Start(b),
        Err(result) => call.pending.push_back(ProviderEvent::Done(Finished {
            timed: Timed {
                result,
                latency_ms: 0,
            },
            mid_answer: false,
        })),
    }
    futures::stream::unfold(call, |mut c| async move {
        loop {
            if let Some(ev) = c.pending.pop_front() {
                return Some((ev, c));
            }
            match std::mem::replace(&mut c.call, Call::Over) {
                Call::Over => return None,
                Call::Start(body) => {
                    let Ok(payload) = serde_json::to_string(&body) else {
                        c.done(unavailable(c.provider));
                        continue;
                    };
                    let headers = Headers::new();
                    let _ = headers.set("Content-Type", "application/json");
                    let cx = c.cx.clone();
                    let post = brokers::post_to_broker(
                        &cx,
                        c.provider,
                        COMPLETE_STREAM_PATH,
                        headers,
                        payload.into(),
                    );
                    futures::pin_mut!(post);
                    let answered = match select(post, &mut c.deadline).await {
                        Either::Left((r, _)) => Some(r),
                        Either::Right(((), _)) => None,
                    };
                    match answered {
                        Some(Ok(resp)) if resp.status() == 200 => match Chunks::of(&resp) {
                            Some(body) => {
                                c.call = Call::Reading {
                                    body,
                                    parser: SseParser::new(),
                                }
                            }
                            None => c.done(unavailable(c.provider)),
                        },
                        Some(Ok(resp)) => {
                            let text = worker_shared::fetch::text(&resp).await.unwrap_or_default();
                            c.done(brokers::failed(c.provider, &text));
                        }
                        Some(Err(_)) => c.done(unavailable(c.provider)),
                        None => c.done(brokers::timed_out(c.provider, c.timeout_ms)),
                    }
                }
                Call::Reading { mut body, parser } => {
                    let next = match select(body.next(), &mut c.deadline).await {
                        Either::Left((next, _)) => Some(next),
                        Either::Right(((), _)) => None,
                    };
                    match next {
                        Some(Some(Ok(chunk))) => {
                            c.call = Call::Reading { body, parser };
                            c.read(&chunk);
                        }
                        // The broker's stream ended before its result.
                        Some(_) => c.done(unavailable(c.provider)),
                        None => c.done(brokers::timed_out(c.provider, c.timeout_ms)),
                    }
                }
            }
        }
    })
}

/// What the `done` event (and the archive) need beside the results.
pub struct Done {
    pub request_id: String,
    pub created_at: String,
    /// The body's `cache` object.
    pub cache: Value,
    /// The model asked for each provider (what a call is priced at).
    pub models: BTreeMap<Provider, String>,
    pub worst: Vec<crate::limits::WorstCase>,
    /// Providers in the order of the answer's `results`.
    pub order: Vec<Provider>,
    pub price: std::rc::Rc<gateway_core::credits::pricing::PriceTable>,
    /// A test key's call, which costs nothing: its `usage.credits` is 0.
    pub free: bool,
}

/// What each call is charged: its usage; its worst case when it failed after its provider
/// began answering, or may have reached its provider and told no usage
/// (`gateway_core::credits::settlement`), or never finished.
fn charges(done: &Done, results: &BTreeMap<Provider, Finished>) -> Vec<OwnedCharge> {
    use gateway_core::credits::settlement::{failed_stream, Unreported};
    done.worst
        .iter()
        .filter_map(|w| {
            match results
                .get(&w.provider)
                .map(|f| (&f.timed.result.outcome, f.mid_answer))
            {
                Some((ResultBody::Ok(c), _)) => Some(OwnedCharge::Used {
                    provider: w.provider,
                    model: done
                        .models
                        .get(&w.provider)
                        .cloned()
                        .unwrap_or_else(|| c.model.clone()),
                    tokens: c.tokens,
                }),
                Some((ResultBody::Err { error }, mid_answer)) => {
                    match failed_stream(&error.code, mid_answer) {
                        Unreported::WorstCase => Some(OwnedCharge::WorstCase(w.clone())),
                        Unreported::Nothing => None,
                    }
                }
                None => Some(OwnedCharge::WorstCase(w.clone())),
            }
        })
        .collect()
}

fn cost(done: &Done, charges: &[OwnedCharge]) -> u64 {
    let charges: Vec<_> = charges.iter().map(OwnedCharge::as_charge).collect();
    crate::limits::cost(&done.price, &charges)
}

struct Events {
    merged: futures::stream::SelectAll<std::pin::Pin<Box<dyn Stream<Item = ProviderEvent>>>>,
    results: BTreeMap<Provider, Finished>,
    done: Done,
    ended: Option<oneshot::Sender<EventsEnded>>,
}

impl Drop for Events {
    /// Dropped before `done`: the caller went away; the unfinished calls are cancelled with
    /// their broker streams and charged their worst case.
    fn drop(&mut self) {
        if let Some(tx) = self.ended.take() {
            let charges = charges(&self.done, &self.results);
            let _ = tx.send(EventsEnded {
                end: Ended::ClientGone,
                charges,
                entry: None,
                shared: None,
                archive: None,
            });
        }
    }
}

/// One event of the stream, encoded.
pub fn event(name: &str, data: &str) -> Vec<u8> {
    sse::encode(Some(name), data).into_bytes()
}

/// A result as it appears in the answer's `results[]` (with its latency), streamed or not.
pub fn result_json(t: &Timed) -> Value {
    let mut v = serde_json::to_value(&t.result).unwrap_or(Value::Null);
    v["latency_ms"] = json!(t.latency_ms);
    v
}

/// The events of a streamed fanout over `calls`, and where their end is told.
pub fn events(
    cx: &RequestContext,
    calls: Vec<(Provider, Result<BrokerRequest, ProviderResult>)>,
    done: Done,
) -> (EventBody, oneshot::Receiver<EventsEnded>) {
    let (tx, rx) = oneshot::channel();
    let streams = calls.into_iter().map(|(p, body)| {
        Box::pin(provider_events(cx.clone(), p, body)) as std::pin::Pin<Box<dyn Stream<Item = _>>>
    });
    let state = Events {
        merged: futures::stream::select_all(streams),
        results: BTreeMap::new(),
        done,
        ended: Some(tx),
    };
    let body = futures::stream::unfold(state, |mut s| async move {
        s.ended.as_ref()?;
        match s.merged.next().await {
            Some(ProviderEvent::Delta(p, text)) => {
                let data = delta_data(p, &text);
                Some((Ok(event("delta", &data)), s))
            }
            Some(ProviderEvent::Done(f)) => {
                let out = event("result", &result_json(&f.timed).to_string());
                s.results.insert(f.timed.result.provider, f);
                Some((Ok(out), s))
            }
            None => {
                // Every provider answered: the whole answer, exactly as the JSON call's.
                let charges = charges(&s.done, &s.results);
                let credits = if s.done.free {
                    0
                } else {
                    cost(&s.done, &charges)
                };
                let ordered: Vec<&Timed> = s
                    .done
                    .order
                    .iter()
                    .filter_map(|p| s.results.get(p).map(|f| &f.timed))
                    .collect();
                let results: Vec<Value> = ordered.iter().map(|t| result_json(t)).collect();
                let body = crate::routes::ask::AskAnswer {
                    id: &s.done.request_id,
                    created_at: s.done.created_at.clone(),
                    cache: s.done.cache.clone(),
                    results: &results,
                    usage: crate::routes::ask::Usage { credits },
                }
                .text();
                let cacheable = ordered.len() == s.done.order.len()
                    && ordered
                        .iter()
                        .all(|t| t.result.completion().is_some_and(|c| c.is_cacheable()));
                // What a flight's followers are served, failures included; stored when cacheable.
                let shared = serde_json::to_string(&crate::cache::Entry {
                    results: ordered.iter().map(|t| t.result.clone()).collect(),
                })
                .ok();
                let entry = shared.clone().filter(|_| cacheable);
                let out = event("done", &body);
                if let Some(tx) = s.ended.take() {
                    let _ = tx.send(EventsEnded {
                        end: Ended::Clean,
                        charges,
                        entry,
                        shared,
                        archive: Some(body),
                    });
                }
                Some((Ok(out), s))
            }
        }
    });
    (Box::pin(body), rx)
}

/// The events of a hit: each stored result's text as one delta and its result, then `done`
/// with the body the JSON hit answers. A stored result's text is its `result` event as it is;
/// only the two fields of its delta are read from it.
pub fn hit_events<R: Serialize>(results: &[R], done_body: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for r in results {
        let Ok(text) = serde_json::to_string(r) else {
            continue;
        };
        if let Ok(ResultText {
            provider,
            content: Some(content),
        }) = serde_json::from_str(&text)
        {
            if !content.is_empty() {
                out.extend(event("delta", &delta_data(provider, &content)));
            }
        }
        out.extend(event("result", &text));
    }
    out.extend(event("done", done_body));
    out
}

/// What a hit's delta event reads of a stored result.
#[derive(Deserialize)]
struct ResultText<'a> {
    #[serde(borrow)]
    provider: &'a RawValue,
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
}

/// The data of a `delta` event, live or from a hit: `{"provider", "text"}` (a provider name and
/// a string: serializing them cannot fail).
fn delta_data(provider: impl Serialize, text: &str) -> String {
    #[derive(Serialize)]
    struct Delta<'a, P> {
        provider: P,
        text: &'a str,
    }
    serde_json::to_string(&Delta { provider, text }).unwrap_or_default()
}
