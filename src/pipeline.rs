//! The one miss-path pipeline of every answering endpoint (`/v1/ask` and the drop-in
//! endpoints): cache lookup → gate (the key's bucket and the account's credits) → upstream call
//! → settle → store → meter. What differs per endpoint (how it calls upstream, how it answers,
//! what is cacheable) is its [`Endpoint`] implementation; the order and the rules are here once.

use gateway_core::cache::control::{CacheOutcome, RequestCacheMode};
use gateway_core::cache::key::{CacheKey, Namespace};
use gateway_core::credits::ledger_ops::{RENEW_RETRY_MS, RESERVATION_MAX_AGE_MS, STREAM_RENEW_MS};
use gateway_core::credits::settlement::{self, Unreported};
use worker::{Request, Response};

use crate::auth::Caller;
use crate::brokers;
use crate::cache;
use crate::db::usage_log;
use crate::db::usage_log::Event;
use crate::flight::{self, Landed, Leader, Role, Waited};
use crate::http::context::RequestContext;
use crate::limits::{
    self, Admission, Charge, Policy, Reservation, Used, WithRateHeaders, WorstCase,
};
use crate::relay::{self, Bounds, Ended};
use futures::channel::{mpsc, oneshot};
use futures::{Stream, StreamExt};
use gateway_core::api::dropin::Dialect;
use gateway_core::broker::errors::BrokerErrorCode;
use gateway_core::cache::flight::{hint_headers, retry_hints, Outcome};
use gateway_core::error::ApiError;
use gateway_core::error::ApiResult;
use gateway_core::providers::completion::Tokens;
use gateway_core::providers::Provider;
use std::future::Future;
use worker_shared::body::Chunks;
use worker_shared::timer::Timer;

/// What an answer is served with: how the cache took part, the key, what the call cost and the
/// rate-limit headers of its admission.
pub struct Served<'a> {
    pub outcome: CacheOutcome,
    pub key: &'a CacheKey,
    pub credits: u64,
    pub admission: &'a Admission,
}

/// One endpoint's part of the pipeline, for one parsed request.
pub trait Endpoint {
    /// The upstream's answer, as this endpoint receives it.
    type Answer;

    fn namespace(&self) -> Namespace;

    /// The request's cache key (scope included).
    fn key(&self) -> &CacheKey;

    /// The worst case of each upstream call, as the gate reserves it.
    fn worst_cases(&self) -> Vec<WorstCase>;

    /// Serves a stored entry: `None` when the text cannot be served (read as a miss).
    fn answer_hit(
        &self,
        cx: &RequestContext,
        text: String,
        served: Served,
        event: &mut Event,
    ) -> Option<ApiResult<Response>>;

    /// Calls upstream. An `Err` is an answer the caller gets as it is (with the admission's
    /// rate-limit headers), charged by its code (`gateway_core::credits::settlement`): the
    /// reserved worst case when the call may have reached the provider, else nothing.
    async fn call(&self, cx: &RequestContext, caller: &Caller) -> ApiResult<Self::Answer>;

    /// What each upstream call is charged, priced as it was reserved: the tokens it used, or
    /// its worst case (`worst`, as [`Endpoint::worst_cases`] gave them) when it told no usage
    /// but may have been billed.
    fn charges<'a>(&'a self, answer: &'a Self::Answer, worst: &'a [WorstCase]) -> Vec<Charge<'a>>;

    /// The entry to store, when the answer may be served to later callers.
    fn entry(&self, answer: &Self::Answer) -> Option<String>;

    /// The upstream's event stream, when the answer is one: it is relayed as it arrives and
    /// settled, stored and metered when it ends. Endpoints that never stream keep the default.
    fn take_stream(&self, answer: Self::Answer) -> Result<Streamed, Self::Answer> {
        Err(answer)
    }

    /// Adds the endpoint's headers to the response that relays a stream.
    fn answer_stream(&self, resp: Response, served: Served) -> ApiResult<Response> {
        let _ = served;
        Ok(resp)
    }

    /// Answers the caller with a fresh answer.
    fn answer(
        &self,
        cx: &RequestContext,
        answer: Self::Answer,
        served: Served,
        event: &mut Event,
    ) -> ApiResult<Response>;

    /// Whether the caller asked for a stream: as a follower it is given the leader's stream as
    /// it comes (an endpoint whose followers wait for the outcome keeps the default).
    fn follows_stream(&self) -> bool {
        false
    }

    /// What the followers of this call's flight are served: the answer, whatever it is.
    fn shared(&self, answer: &Self::Answer) -> Outcome;

    /// Whether `shared` serves a follower an answer, which costs it the hit fee (a failure
    /// costs nothing): a 2xx, unless the endpoint's 2xx can hold failures only.
    fn serves_answer(&self, shared: &SharedAnswer) -> bool {
        (200..300).contains(&shared.status)
    }

    /// Serves a follower the leader's answer (`status` and `text` as [`Endpoint::shared`] gave
    /// them), in the form the follower asked.
    fn answer_shared(
        &self,
        cx: &RequestContext,
        shared: SharedAnswer,
        served: Served,
        event: &mut Event,
    ) -> ApiResult<Response>;

    /// Serves a follower that streams the leader's stream (see [`Endpoint::follows_stream`]);
    /// the outcome is in `landed` once `body` has ended.
    fn follow_stream(
        &self,
        cx: &RequestContext,
        body: EventBody,
        landed: Landed,
        served: Served,
        event: &mut Event,
    ) -> ApiResult<Response> {
        let _ = (cx, body, landed, served, event);
        Err(ApiError::internal())
    }
}

/// A leader's answer as a follower is served it (an [`Outcome::Answer`]).
pub struct SharedAnswer {
    pub status: u16,
    pub text: String,
    pub retry_after: Option<String>,
}

/// How the request may use the cache: test keys neither read nor write it (their synthetic
/// answers must never reach a live key, and they are not served what live keys paid for);
/// otherwise as the request's `Cache-Control` says.
pub fn cache_mode(caller: &Caller, req: &Request) -> RequestCacheMode {
    if caller.is_test() {
        RequestCacheMode::Bypass
    } else {
        RequestCacheMode::from_header(req.headers().get("Cache-Control").ok().flatten().as_deref())
    }
}

/// Runs one call through the pipeline.
pub async fn run<E: Endpoint>(
    cx: &RequestContext,
    caller: &Caller,
    policy: &Policy,
    endpoint: &E,
    mode: RequestCacheMode,
    event: &mut Event,
) -> ApiResult<Response> {
    let key = endpoint.key();
    event.gated = true;
    if mode.reads() {
        if let Some((text, tier)) = cache::lookup(cx, endpoint.namespace(), key.as_str()).await {
            let outcome = CacheOutcome::Hit(tier);
            // The serving fee is debited off the response path; a hit never waits on a DO.
            let fee = limits::cache_hit_fee();
            let admission = Admission::hit(policy);
            let served = Served {
                outcome,
                key,
                credits: fee,
                admission: &admission,
            };
            if let Some(resp) = endpoint.answer_hit(cx, text, served, event) {
                event.cache(outcome);
                // The fee is for an answer served: a stored entry that could not be answered
                // in the form asked (an internal error) costs nothing.
                if resp.is_ok() {
                    limits::debit_fee_later(cx, &caller.account_id, fee);
                    event.credits = fee;
                }
                return resp;
            }
        }
    }

    // A miss of a call that wants the cache alone (`only-if-cached`): no provider, no gate,
    // no charge.
    if !mode.fetches() {
        event.cache(CacheOutcome::Miss { stored: false });
        return Err(ApiError::not_cached());
    }

    // Miss. One that would write the cache joins the flight of its key: it leads (makes the
    // call and tells the others) or follows (is served the leader's outcome as a hit is).
    let mut leader = None;
    if mode.writes() {
        match flight::join(cx, key.as_str(), endpoint.follows_stream()).await {
            Role::Lead(l) => leader = Some(l),
            Role::Follow(f) => match f.wait(cx, endpoint.follows_stream()).await {
                Waited::Lead(l) => leader = Some(l),
                Waited::Lost => {}
                waited => return follow(cx, caller, policy, endpoint, waited, event),
            },
            Role::Alone => {}
        }
    }

    // The key's bucket and the account's credits, then upstream. A leader refused here
    // drops its handle: a follower is promoted. From the reservation to the settlement the
    // request runs on even if its caller leaves.
    let _held = cx.hold();
    let worst = endpoint.worst_cases();
    let (admission, reservation) = limits::gate(cx, caller, policy, &worst).await?;
    let answer = match endpoint.call(cx, caller).await {
        Ok(a) => a,
        Err(e) => {
            // One charged its worst case tells the SDKs not to retry it: each of their
            // automatic retries (twice, on any 5xx) would be a new call, charged it again.
            let (charges, e): (Vec<Charge>, _) = match settlement::of_error(&e) {
                Unreported::WorstCase => (
                    worst.iter().map(Charge::WorstCase).collect(),
                    e.never_retried(),
                ),
                Unreported::Nothing => (Vec::new(), e),
            };
            // The usage row says what the call was charged, as for an answer.
            event.credits = limits::settle_later(cx, reservation, &charges);
            event.cache(CacheOutcome::fetched(mode, false));
            if let Some(l) = leader {
                // Its retry hints go too (a timeout's `x-should-retry: false`), not yet its
                // key's rate-limit headers, which are added below.
                let outcome = Outcome::Error {
                    status: e.status,
                    code: e.code.to_string(),
                    message: e.message.clone(),
                    hints: retry_hints(&e.headers),
                };
                l.finish(outcome);
            }
            return Err(e.with_rate_headers(&admission));
        }
    };
    let answer = match endpoint.take_stream(answer) {
        Ok(streamed) => {
            let miss = Miss {
                reservation,
                worst,
                admission,
                mode,
                leader,
            };
            return match streamed {
                Streamed::Relay(relay) => relay_stream(cx, endpoint, relay, miss, event),
                Streamed::Events { body, ended } => {
                    event_stream(cx, endpoint, body, ended, miss, event)
                }
            };
        }
        Err(answer) => answer,
    };
    let charges = endpoint.charges(&answer, &worst);
    let credits = limits::settle_later(cx, reservation, &charges);
    event.tokens = charges.iter().fold((0, 0), |(i, o), c| match c {
        Charge::Used(u) => (i + u.tokens.input, o + u.tokens.output),
        Charge::WorstCase(_) => (i, o),
    });
    drop(charges);

    let entry = if mode.writes() {
        endpoint.entry(&answer)
    } else {
        None
    };
    let stored = entry.is_some();
    if let Some(l) = leader {
        l.finish(endpoint.shared(&answer));
    }
    if let Some(text) = entry {
        cache::store(cx, endpoint.namespace(), key.as_str(), text);
    }
    let outcome = CacheOutcome::fetched(mode, stored);
    event.cache(outcome);
    event.credits = credits;
    let served = Served {
        outcome,
        key,
        credits,
        admission: &admission,
    };
    endpoint.answer(cx, answer, served, event)
}

/// A streamed answer (see [`Endpoint::take_stream`]).
pub enum Streamed {
    /// A provider's own event stream, relayed as it arrives (a drop-in call).
    Relay(RelayStream),
    /// Events the endpoint writes as its upstream calls answer (a streamed `/v1/ask`), and
    /// where what they cost is told when they end.
    Events {
        body: EventBody,
        ended: oneshot::Receiver<EventsEnded>,
    },
}

/// The body of [`Streamed::Events`].
pub type EventBody = std::pin::Pin<Box<dyn Stream<Item = Result<Vec<u8>, worker::Error>>>>;

/// What a [`Streamed::Events`] answer settles, stores and records when it ends.
pub struct EventsEnded {
    pub end: Ended,
    /// What each upstream call is charged (those that never finished: their worst case).
    pub charges: Vec<OwnedCharge>,
    /// The entry to store, when every upstream call answered cacheably.
    pub entry: Option<String>,
    /// What a flight's followers are served (status 200), when the stream ended with an answer.
    pub shared: Option<String>,
    /// The answer to archive (the `done` event's body).
    pub archive: Option<String>,
}

/// A [`Charge`] that owns its model name (it outlives the endpoint).
pub enum OwnedCharge {
    Used {
        provider: Provider,
        model: String,
        tokens: Tokens,
    },
    WorstCase(WorstCase),
}

impl OwnedCharge {
    pub fn as_charge(&self) -> Charge<'_> {
        match self {
            OwnedCharge::Used {
                provider,
                model,
                tokens,
            } => Charge::Used(Used {
                provider: *provider,
                model,
                tokens: *tokens,
            }),
            OwnedCharge::WorstCase(w) => Charge::WorstCase(w),
        }
    }
}

/// A provider's event stream to relay (see [`Streamed::Relay`]).
pub struct RelayStream {
    pub status: u16,
    pub body: worker::web_sys::ReadableStream,
    pub dialect: Dialect,
    /// The gateway asked for OpenAI's usage chunk, not the caller: it is taken out.
    pub strip_usage: bool,
    /// What the call is priced at.
    pub provider: Provider,
    pub model: String,
}

/// What a miss holds once its upstream call is made.
struct Miss {
    reservation: Option<Reservation>,
    worst: Vec<WorstCase>,
    admission: Admission,
    mode: RequestCacheMode,
    /// The call leads its key's flight.
    leader: Option<Leader>,
}

/// Serves a follower what its wait ended with, as a hit is served: no bucket token, the hit
/// fee (for an answer; an error costs nothing), `Cache-Status: ...; collapsed`.
fn follow<E: Endpoint>(
    cx: &RequestContext,
    caller: &Caller,
    policy: &Policy,
    endpoint: &E,
    waited: Waited,
    event: &mut Event,
) -> ApiResult<Response> {
    let outcome = CacheOutcome::Coalesced;
    let admission = Admission::hit(policy);
    event.cache(outcome);
    let fee = limits::cache_hit_fee();
    let served = |credits| Served {
        outcome,
        key: endpoint.key(),
        credits,
        admission: &admission,
    };
    let resp = match waited {
        Waited::Outcome(Outcome::Answer {
            status,
            text,
            retry_after,
        }) => {
            let shared = SharedAnswer {
                status,
                text,
                retry_after,
            };
            let fee = if endpoint.serves_answer(&shared) {
                fee
            } else {
                0
            };
            let resp = endpoint.answer_shared(cx, shared, served(fee), event)?;
            (resp, fee)
        }
        Waited::Stream(body, landed) => (
            endpoint.follow_stream(cx, body, landed, served(fee), event)?,
            fee,
        ),
        Waited::Outcome(Outcome::Error {
            status,
            code,
            message,
            hints,
        }) => {
            let mut e = ApiError::new(status, known_code(&code), message);
            e.headers = hint_headers(&hints);
            return Err(e);
        }
        Waited::TimedOut => {
            return Err(ApiError::new(
                504,
                "upstream_timeout",
                "the identical call this one waited on did not answer in time",
            ))
        }
        // Not served here (see `run`).
        Waited::Lead(_) | Waited::Lost => return Err(ApiError::internal()),
    };
    if resp.1 > 0 {
        limits::debit_fee_later(cx, &caller.account_id, resp.1);
    }
    event.credits = resp.1;
    Ok(resp.0)
}

/// An error code a leader passed on, as the gateway's own (an unknown one as `upstream_error`).
fn known_code(code: &str) -> &'static str {
    serde_json::from_value::<BrokerErrorCode>(serde_json::Value::String(code.to_string()))
        .map(BrokerErrorCode::as_str)
        .unwrap_or("upstream_error")
}

/// Keep-alive interval of a silent stream (the contract's 15 s), and the silence after which it
/// is cut (the provider timeout).
const KEEPALIVE_MS: u64 = 15_000;

/// Answers with the relayed stream at once; when it ends, settles the reservation (the usage
/// the provider reported when the stream ended with its own terminal event; its worst case when
/// it was cut, went silent or lost its caller: `docs/DECISIONS.md`, "Streams"), stores the
/// reassembled answer of a clean stream, and writes the usage row (which says how it ended).
fn relay_stream<E: Endpoint>(
    cx: &RequestContext,
    endpoint: &E,
    streamed: RelayStream,
    miss: Miss,
    event: &mut Event,
) -> ApiResult<Response> {
    let (body, ended) = relay::relay(
        streamed.dialect,
        Box::pin(Chunks::new(streamed.body)),
        streamed.strip_usage,
        relay_bounds(cx),
        miss.leader.as_ref().map(Leader::tap),
    );
    let worst = miss.worst.clone();
    // The provider's usage when it ended the stream itself; else the worst case.
    let ended = async move {
        let end = ended.await.ok()?;
        let charges = match (end.end, end.usage) {
            (Ended::Clean | Ended::ProviderError, Some(tokens)) => vec![OwnedCharge::Used {
                provider: streamed.provider,
                model: streamed.model,
                tokens,
            }],
            _ => worst.into_iter().map(OwnedCharge::WorstCase).collect(),
        };
        Some(EventsEnded {
            end: end.end,
            charges,
            shared: end.final_body.clone(),
            entry: end.final_body,
            archive: None,
        })
    };
    let body: EventBody = Box::pin(body);
    answer_streamed(cx, endpoint, body, ended, miss, event, streamed.status)
}

/// Answers with the endpoint's events at once (see [`answer_streamed`]).
fn event_stream<E: Endpoint>(
    cx: &RequestContext,
    endpoint: &E,
    body: EventBody,
    ended: oneshot::Receiver<EventsEnded>,
    miss: Miss,
    event: &mut Event,
) -> ApiResult<Response> {
    // A flight's followers get the events as they pass, all but the leader's own `done`.
    let body: EventBody = match miss.leader.as_ref().map(Leader::tap) {
        Some(tap) => Box::pin(body.inspect(move |chunk| {
            if let Ok(c) = chunk {
                if !c.starts_with(b"event: done") {
                    tap.publish(String::from_utf8_lossy(c).into_owned());
                }
            }
        })),
        None => body,
    };
    answer_streamed(
        cx,
        endpoint,
        body,
        async { ended.await.ok() },
        miss,
        event,
        200,
    )
}

/// Answers with a streamed response at once; when it ends, settles the reservation with what
/// [`EventsEnded`] says, stores its entry and writes its usage row (which says how it ended).
///
/// The body is driven by a task of its own ([`pump`]), not by the caller's reads: its end is
/// always seen (and so settled) whether the caller stays, goes away, or the runtime drops the
/// response without telling.
fn answer_streamed<E: Endpoint>(
    cx: &RequestContext,
    endpoint: &E,
    body: EventBody,
    ended: impl std::future::Future<Output = Option<EventsEnded>> + 'static,
    miss: Miss,
    event: &mut Event,
    status: u16,
) -> ApiResult<Response> {
    let (tx, rx) = mpsc::unbounded::<Result<Vec<u8>, worker::Error>>();
    let resp = Response::from_stream(rx)
        .map_err(|_| ApiError::internal())?
        .with_status(status);
    // Whether the answer is stored is known only at its end: a streamed miss never says so.
    let outcome = CacheOutcome::fetched(miss.mode, false);
    event.cache(outcome);
    let served = Served {
        outcome,
        key: endpoint.key(),
        credits: 0,
        admission: &miss.admission,
    };
    let resp = endpoint.answer_stream(resp, served)?;
    // The usage row is written when the stream ends, not when this response leaves.
    let mut row = std::mem::take(event);
    event.deferred = true;
    let (cx, namespace, key) = (cx.clone(), endpoint.namespace(), endpoint.key().clone());
    cx.clone().after(async move {
        // A leader's call outlives its caller: its followers and the cache wait on it.
        let pumped = pump(body, tx, miss.leader.is_some());
        match &miss.reservation {
            Some(r) => renewing(&cx, r, pumped).await,
            None => pumped.await,
        }
        let Some(end) = ended.await else { return };
        if let Some(l) = miss.leader {
            let outcome = match &end.shared {
                Some(text) => Outcome::Answer {
                    status,
                    text: text.clone(),
                    retry_after: None,
                },
                None => Outcome::Error {
                    status: 502,
                    code: "upstream_error".into(),
                    message: "the upstream stream ended before its answer".into(),
                    hints: Vec::new(),
                },
            };
            l.finish(outcome);
        }
        let charges: Vec<Charge> = end.charges.iter().map(OwnedCharge::as_charge).collect();
        row.credits = limits::settle_later(&cx, miss.reservation, &charges);
        row.tokens = charges.iter().fold((0, 0), |(i, o), c| match c {
            Charge::Used(u) => (i + u.tokens.input, o + u.tokens.output),
            Charge::WorstCase(_) => (i, o),
        });
        row.stream_end = Some(end.end.as_str());
        if let (true, Some(entry)) = (miss.mode.writes(), end.entry) {
            cache::store(&cx, namespace, key.as_str(), entry);
            row.cache(CacheOutcome::fetched(miss.mode, true));
        }
        if let Some(body) = end.archive {
            usage_log::archive_later(&mut row, body);
        }
        usage_log::usage_later(&cx, row, status);
    });
    Ok(resp)
}

/// A response whose `body` is driven to its end by a task of its own ([`pump`]) rather than by
/// its caller's reads: what the body does at its end (a follower's usage row and archive) is
/// done whether the caller stays or goes away.
pub fn driven(cx: &RequestContext, body: EventBody) -> ApiResult<Response> {
    let (tx, rx) = mpsc::unbounded::<Result<Vec<u8>, worker::Error>>();
    let resp = Response::from_stream(rx).map_err(|_| ApiError::internal())?;
    cx.after(pump(body, tx, true));
    Ok(resp)
}

/// Runs `work` (a stream's pump), renewing `reservation` every `STREAM_RENEW_MS` (a quarter of
/// the ledger's maximum age of a reservation; the variable of the same name in tests, where a
/// value of 0 or past that age is ignored) until it is done. A renewal that fails is tried
/// again after each of `RENEW_RETRY_MS`.
async fn renewing(cx: &RequestContext, reservation: &Reservation, work: impl Future<Output = ()>) {
    let every_ms = test_setting(cx, TestSetting::StreamRenew)
        .filter(|ms| (1..RESERVATION_MAX_AGE_MS).contains(ms))
        .unwrap_or(STREAM_RENEW_MS);
    let renew = async {
        loop {
            Timer::after_ms(every_ms).await;
            let mut waits = RENEW_RETRY_MS.into_iter();
            while limits::renew(cx, reservation).await {
                let Some(wait_ms) = waits.next() else { break };
                Timer::after_ms(wait_ms).await;
            }
        }
    };
    futures::pin_mut!(work, renew);
    futures::future::select(work, renew).await;
}

/// Drives `body` to its end, passing each chunk to the caller as it comes. When the caller has
/// gone (its end of the channel dropped) the body is dropped, unless `outlive` (a flight's
/// leader, or a body whose end writes its row: [`driven`]): that cancels its upstream call,
/// and the body's own end (a relay's `ClientGone`) is told to the settlement
/// (`docs/DECISIONS.md`, "Streams").
async fn pump(
    mut body: EventBody,
    tx: mpsc::UnboundedSender<Result<Vec<u8>, worker::Error>>,
    outlive: bool,
) {
    while let Some(chunk) = body.next().await {
        if tx.unbounded_send(chunk).is_err() && !outlive {
            break;
        }
    }
}

/// The relay's bounds: a keep-alive every 15 s (`STREAM_KEEPALIVE_MS` in tests), cut after the
/// provider timeout of silence.
pub fn relay_bounds(cx: &RequestContext) -> Bounds {
    Bounds {
        keepalive_ms: test_setting(cx, TestSetting::StreamKeepalive)
            .filter(|ms| *ms > 0)
            .unwrap_or(KEEPALIVE_MS),
        idle_ms: brokers::timeout_ms(cx),
    }
}

/// A stream timing the test stacks shorten (the contract's values are fixed in production).
#[derive(Clone, Copy)]
enum TestSetting {
    /// `STREAM_KEEPALIVE_MS`: the keep-alive interval.
    StreamKeepalive,
    /// `STREAM_RENEW_MS`: how often a running stream renews its reservation.
    StreamRenew,
}

/// The test stack's value of `setting`, in ms: read in a `dev-hooks` build only, so a
/// production build neither holds the variables' names nor lets a deployment's vars change
/// the contract's timings (`scripts/dev-hooks.txt`).
fn test_setting(cx: &RequestContext, setting: TestSetting) -> Option<u64> {
    #[cfg(feature = "dev-hooks")]
    {
        let name = match setting {
            TestSetting::StreamKeepalive => "STREAM_KEEPALIVE_MS",
            TestSetting::StreamRenew => "STREAM_RENEW_MS",
        };
        cx.var(name).and_then(|v| v.parse().ok())
    }
    #[cfg(not(feature = "dev-hooks"))]
    {
        let _ = (cx, setting);
        None
    }
}
