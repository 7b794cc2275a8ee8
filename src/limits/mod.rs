//! Rate limits and credits on the miss path: the caller's tier policy, the key's bucket (its
//! call token and its input and output tokens per minute, one round trip: 429 with the limit
//! named and exact retry headers, or `request_too_large`), and the account's credit reservation
//! with its account-wide calls and tokens per minute (one round trip), settled after the
//! fanout. Cache hits only pay a serving fee, debited off the response path, and take no tokens.

pub mod bucket;
pub mod ledger;
mod queue;

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use gateway_core::credits::ledger_ops::{LedgerOp, LedgerRefusal, MeterReserve, MeterSettle};
use gateway_core::credits::pricing::{estimate_input_tokens, PriceTable, CACHE_HIT_FEE};
use gateway_core::error::ApiError;
use gateway_core::keys::KeyMode;
use gateway_core::limits::bucket::{decide, BucketState, Decision};
use gateway_core::limits::bucket_ops::{KeyAdmission, ReserveRefusal};
use gateway_core::limits::headers::{
    limited_error, rate_limited_body, response_headers, too_large_error, unmetered_headers, Denial,
    Dialect, LimitState, Scope,
};
use gateway_core::limits::reservation::{per_minute, Amounts, LimitName, Reading};
use gateway_core::limits::tier::{Limits, MinuteLimits, Tier, TierConfig, UNMETERED_FACTOR};
use gateway_core::providers::completion::Tokens;
use gateway_core::providers::Provider;
use worker::console_error;

use crate::auth::Caller;
use crate::http::context::RequestContext;
use gateway_core::error::ApiResult;

/// The caller's limits under the configured tiers.
pub struct Policy {
    pub tier: Tier,
    /// The key's call bucket.
    pub limits: Limits,
    pub max_tokens_cap: u32,
    /// The key's input and output tokens per minute.
    pub key_tokens: MinuteLimits,
    /// The account's calls, input and output tokens per minute, across its keys.
    pub account: MinuteLimits,
    /// The rate-limit header family the endpoint answers in (beside the draft's fields): the
    /// gateway's own, or the provider's its drop-in dialect speaks.
    pub headers: Dialect,
}

impl Policy {
    /// The policy answering in `headers`' rate-limit family.
    pub fn in_dialect(mut self, headers: Dialect) -> Policy {
        self.headers = headers;
        self
    }
}

thread_local! {
    /// The tiers and prices in force, built once per isolate from `TIER_CONFIG` and
    /// `PRICE_TABLE` (or the defaults), like every var (`RequestContext::var`).
    static TIERS: OnceCell<Rc<TierConfig>> = const { OnceCell::new() };
    static PRICES: OnceCell<Rc<PriceTable>> = const { OnceCell::new() };
}

pub fn tier_config(cx: &RequestContext) -> Rc<TierConfig> {
    TIERS.with(|c| {
        c.get_or_init(|| from_var(cx, "TIER_CONFIG", TierConfig::from_json))
            .clone()
    })
}

pub fn price_table(cx: &RequestContext) -> Rc<PriceTable> {
    PRICES.with(|c| {
        c.get_or_init(|| {
            from_var(cx, "PRICE_TABLE", |j| {
                PriceTable::from_json(j).map_err(|e| e.0)
            })
        })
        .clone()
    })
}

/// The table a JSON var overrides, or the defaults when it is unset or invalid (logged).
fn from_var<T: Default, E: std::fmt::Display>(
    cx: &RequestContext,
    name: &'static str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Rc<T> {
    Rc::new(match cx.var(name) {
        Some(json) => parse(&json).unwrap_or_else(|e| {
            console_error!("{name} is invalid, using defaults: {e}");
            T::default()
        }),
        None => T::default(),
    })
}

pub fn policy(cx: &RequestContext, caller: &Caller) -> Policy {
    let config = tier_config(cx);
    let own = caller.account_limits.as_ref();
    Policy {
        tier: caller.tier,
        limits: config.limits_for(caller.tier, own.map(|a| a.calls)),
        max_tokens_cap: config.max_tokens_cap(caller.tier),
        key_tokens: config.key_token_limits(caller.tier, own),
        account: config.account_limits(caller.tier, own),
        headers: Dialect::Gateway,
    }
}

/// An admitted call: the rate-limit headers of every limit it passed, for its response.
pub struct Admission {
    /// The draft's (`RateLimit-Policy`, `RateLimit`) and `X-RateLimit-*`, which every endpoint
    /// carries, and the provider family of the policy's dialect (`/v1/messages`:
    /// `anthropic-ratelimit-*`; `/v1/chat/completions`: `x-ratelimit-*-{requests,tokens}`).
    pub headers: Vec<(&'static str, String)>,
}

impl Admission {
    fn new(dialect: Dialect, tier: Tier, now_ms: u64, states: Vec<LimitState>) -> Admission {
        Admission {
            headers: response_headers(dialect, tier, now_ms, &states, None),
        }
    }

    /// A cache hit's: it takes no token and reads no bucket, so it carries the policies of the
    /// tier's limits only (`RateLimit-Policy`, `X-RateLimit-Limit`, the providers' `-limit`).
    pub fn hit(policy: &Policy) -> Admission {
        let mut states = vec![LimitState::key_calls(&policy.limits, None)];
        for (scope, limits) in [
            (Scope::Key, &policy.key_tokens),
            (Scope::Account, &policy.account),
        ] {
            for limit in LimitName::ALL {
                if let Some(r) = per_minute(limits, limit) {
                    states.push(LimitState::minute_policy(scope, limit, r));
                }
            }
        }
        Admission::new(policy.headers, policy.tier, 0, states)
    }
}

/// Adds the admitted call's rate-limit headers to a later error (402, ...).
pub trait WithRateHeaders {
    fn with_rate_headers(self, a: &Admission) -> Self;
}

impl WithRateHeaders for ApiError {
    fn with_rate_headers(mut self, a: &Admission) -> Self {
        self.headers.extend(a.headers.iter().cloned());
        self
    }
}

/// The key's refusal of a reservation as the contract's error: 401 for a revoked key, 429
/// `request_too_large` (no retry time) for a worst case above a bucket's capacity, else 429
/// `rate_limited` naming the limit with its exact retry time and every limit's headers.
fn key_refusal(cx: &RequestContext, policy: &Policy, refusal: ReserveRefusal) -> ApiError {
    match refusal {
        ReserveRefusal::Revoked => ApiError::unauthorized(),
        ReserveRefusal::InsufficientCapacity { burst } => ApiError::new(
            429,
            "rate_limited",
            format!("this call needs more than the bucket's capacity of {burst}"),
        )
        .never_retried(),
        ReserveRefusal::TooLarge {
            limit,
            capacity,
            needed,
        } => too_large_error(limit, Scope::Key, capacity, needed),
        ReserveRefusal::Limited {
            limit,
            retry_after_ms,
            calls,
            tokens,
            ..
        } => {
            let states = key_states(policy, &calls, &tokens);
            let denial = Denial {
                limit,
                scope: Scope::Key,
                retry_after_ms,
            };
            limited_error(policy.headers, policy.tier, cx.now_ms, &states, &denial)
        }
        ReserveRefusal::DuplicateReservation => {
            console_error!(
                "key bucket refused reservation {}: already open",
                cx.request_id
            );
            ApiError::internal()
        }
    }
}

/// The key's limits as a reservation left them: its call bucket, then its token buckets.
fn key_states(policy: &Policy, calls: &Decision, tokens: &[Reading]) -> Vec<LimitState> {
    let mut states = vec![LimitState::key_calls(&policy.limits, Some(calls))];
    states.extend(tokens.iter().map(|r| LimitState::minute(Scope::Key, r)));
    states
}

/// The worst case of the calls in tokens: the input estimate the ledger reserves (per provider
/// of a fanout) and every provider's `max_tokens`.
fn worst_tokens(worst: &[WorstCase]) -> (u64, u64) {
    worst.iter().fold((0, 0), |(i, o), w| {
        (
            i + estimate_input_tokens(w.prompt_bytes),
            o + u64::from(w.max_tokens),
        )
    })
}

/// What one call holds, to settle after the fanout: its key's token reservation, and (live
/// keys) its credits and account-wide reservation, all under the request id.
pub struct Reservation {
    account_id: String,
    id: String,
    prefix: String,
    key_tokens: MinuteLimits,
    /// The account-wide limits, when the ledger holds a reservation (live keys only: test keys
    /// cost nothing and are not counted account-wide).
    ledger: Option<MinuteLimits>,
    /// Only the credits are held: the key reserved no tokens and the ledger no account-wide
    /// meters ([`calls_only`]; never in a production build).
    credits_only: bool,
}

impl Reservation {
    /// The account-wide limits the ledger's reservation holds meters under, if it does.
    fn meters(&self) -> Option<MinuteLimits> {
        self.ledger.filter(|_| !self.credits_only)
    }
}

/// Whether the gate runs as before token limits, the benchmarks' baseline for what they add to
/// a miss (test hook `x-dev-limits: calls-only`, `RequestContext::dev_calls_only`): the key's
/// call token alone and the worst-case credits alone, settled by the ledger alone (credits
/// are charged as always). False in a production build.
fn calls_only(cx: &RequestContext) -> bool {
    #[cfg(feature = "dev-hooks")]
    return cx.dev_calls_only;
    #[cfg(not(feature = "dev-hooks"))]
    {
        let _ = cx;
        false
    }
}

/// The worst case of one provider call, as the ledger reserves it.
#[derive(Debug, Clone)]
pub struct WorstCase {
    pub provider: Provider,
    pub model: String,
    pub prompt_bytes: usize,
    pub max_tokens: u32,
}

/// The tokens one provider call used, as the ledger settles it.
pub struct Used<'a> {
    pub provider: Provider,
    pub model: &'a str,
    pub tokens: Tokens,
}

/// What one upstream call is charged: the tokens it used, or (when it told no usage but may
/// have been billed: timed out, cut off, unreadable) its reserved worst case
/// (`gateway_core::credits::settlement`).
pub enum Charge<'a> {
    Used(Used<'a>),
    WorstCase(&'a WorstCase),
}

/// The miss path's gate: the key's bucket (a call token and the calls' worst-case tokens) and
/// the account's ledger (the worst-case credits and the account-wide calls and tokens), asked
/// of the two Durable Objects at the same time (one round trip each, concurrently). The bucket
/// decides first in effect: when it refuses (429, revoked, unreachable) the answer is its
/// refusal and what the ledger reserved meanwhile is released off the response path; when it
/// admits and the ledger refuses (402, the account's 429), the key's tokens are released (its
/// call token stays spent) and the error carries the admitted call's rate-limit headers.
pub async fn gate(
    cx: &RequestContext,
    caller: &Caller,
    policy: &Policy,
    worst: &[WorstCase],
) -> ApiResult<(Admission, Option<Reservation>)> {
    let credits_only = calls_only(cx);
    let (input, output) = worst_tokens(worst);
    let key = async {
        #[cfg(feature = "dev-hooks")]
        if credits_only {
            return bucket::take_as_reservation(&cx.env, &caller.prefix, policy.limits).await;
        }
        bucket::reserve(
            cx,
            &caller.prefix,
            policy.limits,
            policy.key_tokens,
            input,
            output,
        )
        .await
    };
    let account_wide = reserve_worst(cx, caller, policy, worst, !credits_only);
    let (key, ledger) = futures::join!(key, account_wide);
    let held = |ledger: Option<MinuteLimits>| Reservation {
        account_id: caller.account_id.clone(),
        id: cx.request_id.clone(),
        prefix: caller.prefix.clone(),
        key_tokens: policy.key_tokens,
        ledger,
        credits_only,
    };
    let key = match key {
        Ok(Ok(admitted)) => admitted,
        refused => {
            if let Ok(Some(account)) = ledger {
                release_ledger_later(cx, &held(Some(account.0)));
            }
            return Err(match refused {
                Ok(Err(refusal)) => key_refusal(cx, policy, refusal),
                Err(e) => e,
                Ok(Ok(_)) => unreachable!("an admission returned above"),
            });
        }
    };
    let KeyAdmission { calls, tokens } = key;
    let mut states = key_states(policy, &calls, &tokens);
    match ledger {
        Ok(account) => {
            if let Some((_, readings)) = &account {
                states.extend(
                    readings
                        .iter()
                        .map(|r| LimitState::minute(Scope::Account, r)),
                );
            }
            let admission = Admission::new(policy.headers, policy.tier, cx.now_ms, states);
            Ok((admission, Some(held(account.map(|a| a.0)))))
        }
        Err(unreserved) => {
            if !credits_only {
                release_key_later(cx, &held(None));
            }
            Err(match unreserved {
                // The headers speak for the account's limit that refused, beside the key's.
                Unreserved::Limited(denial, readings) => {
                    states.extend(
                        readings
                            .iter()
                            .map(|r| LimitState::minute(Scope::Account, r)),
                    );
                    limited_error(policy.headers, policy.tier, cx.now_ms, &states, &denial)
                }
                Unreserved::Failed(e) => {
                    let admission = Admission::new(policy.headers, policy.tier, cx.now_ms, states);
                    e.with_rate_headers(&admission)
                }
            })
        }
    }
}

/// Why the ledger reserved nothing.
enum Unreserved {
    /// An account-wide limit refused the call: the denial, and the account-wide buckets as
    /// they stand.
    Limited(Denial, Vec<Reading>),
    /// Any other refusal or failure, answered as it is (a 402, a 429 of the calls in flight,
    /// a 503 of an unreachable ledger).
    Failed(ApiError),
}

/// Gives the key's token reservation back, off the response path.
fn release_key_later(cx: &RequestContext, r: &Reservation) {
    let (env, prefix, id, tokens) = (cx.env.clone(), r.prefix.clone(), r.id.clone(), r.key_tokens);
    cx.after(async move {
        // A release that fails leaves the reservation to expire at its reserved amount.
        let _ = bucket::release(&env, &prefix, &id, tokens).await;
    });
}

/// Gives the ledger's reservation back whole (credits and account-wide tokens), off the
/// response path (queued for the account's ledger).
fn release_ledger_later(cx: &RequestContext, r: &Reservation) {
    let op = LedgerOp::Release {
        id: r.id.clone(),
        meters: r.meters(),
    };
    ledger::queue(cx, &r.account_id, op);
}

/// Reserves the worst-case cost of the calls and their worst case on the account-wide
/// buckets (test keys are free and not counted: no reservation); 402 when the account cannot
/// cover it, 429 when an account-wide limit refuses. The one reservation path of `/v1/ask`
/// and the drop-in endpoints. An admission answers the account-wide limits and, when the
/// ledger said, their readings.
async fn reserve_worst(
    cx: &RequestContext,
    caller: &Caller,
    policy: &Policy,
    calls: &[WorstCase],
    account_wide: bool,
) -> Result<Option<(MinuteLimits, Vec<Reading>)>, Unreserved> {
    if caller.mode == KeyMode::Test {
        return Ok(None);
    }
    let table = price_table(cx);
    let amount: u64 = calls
        .iter()
        .map(|c| table.worst_case(c.provider, &c.model, c.prompt_bytes, c.max_tokens))
        .sum();
    let (input, output) = worst_tokens(calls);
    let meters = account_wide.then(|| MeterReserve {
        amounts: Amounts::call(input, output),
        limits: policy.account,
    });
    let id = cx.request_id.clone();
    let max_in_flight = tier_config(cx).max_in_flight(caller.tier);
    let reply =
        match ledger::reserve(cx, &caller.account_id, &id, amount, max_in_flight, meters).await {
            Ok(reply) => reply,
            Err(e) => {
                // The ledger may have applied the reservation before the call failed (a lost
                // reply): give it back, so it does not hold the credits for 10 minutes. Releasing
                // an id the ledger does not hold does nothing.
                let op = LedgerOp::Release {
                    id,
                    meters: account_wide.then_some(policy.account),
                };
                ledger::queue(cx, &caller.account_id, op);
                return Err(Unreserved::Failed(e));
            }
        };
    match reply {
        Ok(view) => Ok(Some((policy.account, view.meters))),
        Err(refusal) => {
            // Only a balance that cannot cover the call is a 402, and an account-wide limit
            // (or the calls in flight) a 429. Any other refusal (a reservation id already
            // open, an operation the ledger does not take) is the gateway's own fault: logged,
            // and a 500 `internal_error` (`LedgerRefusal::reservation_error`), not a 402
            // telling the caller to add credits. Nothing was reserved, so nothing is released.
            if !matches!(
                refusal,
                LedgerRefusal::InsufficientCredits { .. }
                    | LedgerRefusal::TooManyInFlight { .. }
                    | LedgerRefusal::Limited { .. }
                    | LedgerRefusal::TooLarge { .. }
            ) {
                console_error!("ledger refused reservation {id}: {refusal}");
            }
            Err(match refusal {
                LedgerRefusal::Limited {
                    limit,
                    retry_after_ms,
                    readings,
                    ..
                } => Unreserved::Limited(
                    Denial {
                        limit,
                        scope: Scope::Account,
                        retry_after_ms,
                    },
                    readings,
                ),
                refusal => Unreserved::Failed(refusal.reservation_error(amount)),
            })
        }
    }
}

/// The actual cost of the calls' charges; settles the reservation with it off the response
/// path (no charge releases it whole).
/// What `charges` cost at `table`'s prices.
pub fn cost(table: &PriceTable, charges: &[Charge]) -> u64 {
    charges
        .iter()
        .map(|c| match c {
            Charge::Used(u) => table.cost(u.provider, u.model, u.tokens.input, u.tokens.output),
            Charge::WorstCase(w) => {
                table.worst_case(w.provider, &w.model, w.prompt_bytes, w.max_tokens)
            }
        })
        .sum()
}

/// The tokens `charges` count against the token limits: what each call used, or its worst
/// case when it told no usage but may have been billed.
fn used_tokens(charges: &[Charge]) -> (u64, u64) {
    charges.iter().fold((0, 0), |(i, o), c| match c {
        Charge::Used(u) => (i + u.tokens.input, o + u.tokens.output),
        Charge::WorstCase(w) => (
            i + estimate_input_tokens(w.prompt_bytes),
            o + u64::from(w.max_tokens),
        ),
    })
}

/// Keeps the call's credit reservation (and its account-wide one) open while it still runs: a
/// stream longer than the ledger's maximum age would otherwise be charged its whole
/// reservation by expiry, as a call whose isolate was lost is (`docs/DECISIONS.md`, "A
/// reservation never settled is charged in full"). Sent alone, not with the queued
/// operations: a ledger object that does not know the operation yet (a deploy under way)
/// refuses it alone, and the reservation is then charged by expiry as before. The key's own
/// token reservation is not renewed: its buckets are per minute, so what its expiry keeps
/// taken has long refilled.
///
/// Answers whether it failed in a way another try may mend (the ledger unreachable, its reply
/// lost); a renewal the ledger refuses (a reservation it no longer holds) is logged, not tried
/// again.
pub async fn renew(cx: &RequestContext, reservation: &Reservation) -> bool {
    if reservation.ledger.is_none() {
        return false;
    }
    let op = LedgerOp::Renew {
        id: reservation.id.clone(),
    };
    match ledger::send_alone(&cx.env, &reservation.account_id, &op).await {
        Ok(Ok(_)) => false,
        Ok(Err(refusal)) => {
            console_error!("ledger: renewal refused: {refusal}");
            false
        }
        Err(e) => {
            console_error!("ledger: renewal failed: {}", e.code);
            true
        }
    }
}

/// Settles the call off the response path: the key's tokens with what the calls used (unused
/// tokens back, extra ones into debt), and for a live key its credits and account-wide tokens
/// (queued for the account's ledger). Returns the credits charged (0 for a test key).
pub fn settle_later(
    cx: &RequestContext,
    reservation: Option<Reservation>,
    charges: &[Charge],
) -> u64 {
    let Some(r) = reservation else { return 0 };
    let (input, output) = used_tokens(charges);
    if !r.credits_only {
        // Carried by the key's next reservation from this isolate, or sent alone soon after.
        bucket::settle_later(cx, &r.prefix, &r.id, r.key_tokens, input, output);
    }
    if r.ledger.is_none() {
        return 0;
    }
    let actual = cost(&price_table(cx), charges);
    let meters = r.meters().map(|limits| MeterSettle {
        input_tokens: input,
        output_tokens: output,
        limits,
    });
    let op = LedgerOp::Settle {
        id: r.id,
        actual,
        meters,
    };
    ledger::queue(cx, &r.account_id, op);
    actual
}

thread_local! {
    /// This isolate's buckets of the calls that reach neither the cache nor a provider, per key.
    static UNMETERED: RefCell<HashMap<String, BucketState>> = RefCell::new(HashMap::new());
}

/// Most keys the isolate keeps an unmetered bucket for; past it, it starts over.
const UNMETERED_KEYS: usize = 4096;

/// One token from the isolate's bucket for calls that reached neither the cache nor a bucket
/// (data reads, refused bodies, unknown routes), at `UNMETERED_FACTOR` times the tier's call
/// limits; a 429 with the contract's body and headers when it is empty. Per isolate, not
/// exact across them: it bounds what one client can make one isolate write to D1.
pub fn admit_unmetered(cx: &RequestContext, caller: &Caller) -> ApiResult<()> {
    let policy = policy(cx, caller);
    let limits = policy.limits.scaled(UNMETERED_FACTOR);
    let now = cx.now_ms;
    let decision = UNMETERED.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() >= UNMETERED_KEYS && !m.contains_key(&caller.prefix) {
            m.clear();
        }
        let state = m
            .entry(caller.prefix.clone())
            .or_insert_with(|| BucketState::full(&limits, now));
        match decide(state, now, 1, &limits) {
            Ok((next, decision)) => {
                if decision.is_admitted() {
                    *state = next;
                }
                Some(decision)
            }
            Err(_) => None,
        }
    });
    match decision {
        Some(d @ Decision::Denied { .. }) => Err(rate_limited(&policy, &limits, &d)),
        _ => Ok(()),
    }
}

/// The contract's 429 for a denied decision under `limits`: body, retry time and headers.
fn rate_limited(policy: &Policy, limits: &Limits, decision: &Decision) -> ApiError {
    let retry_after_ms = match decision {
        Decision::Denied { retry_after_ms, .. } => *retry_after_ms,
        Decision::Admitted { .. } => 0,
    };
    let body = rate_limited_body(policy.tier, retry_after_ms);
    let mut e = ApiError::new(
        429,
        "rate_limited",
        body["error"]["message"]
            .as_str()
            .unwrap_or("rate limited")
            .to_string(),
    )
    .with("tier", policy.tier.as_str())
    .with("retry_after_ms", retry_after_ms);
    e.headers = unmetered_headers(limits, policy.tier, decision);
    e
}

pub fn cache_hit_fee() -> u64 {
    CACHE_HIT_FEE
}

/// Debits the cache-hit serving fee after the response is sent: queued with the account's
/// other ledger operations (fees within one batch are summed), so a hit never waits on the
/// ledger and a burst of hits costs one Durable Object call, not one each.
pub fn debit_fee_later(cx: &RequestContext, account_id: &str, fee: u64) {
    ledger::queue(cx, account_id, LedgerOp::Fee { amount: fee });
}
