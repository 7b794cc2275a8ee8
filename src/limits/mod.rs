//! Rate limits and credits on the miss path: the caller's tier policy, the key's token bucket
//! (429 with exact retry headers), and the account's credit reservation, settled after the
//! fanout. Cache hits only pay a serving fee, debited off the response path.

pub mod bucket;
pub mod ledger;

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use gateway_core::credits::ledger_ops::{LedgerOp, LedgerRefusal};
use gateway_core::credits::pricing::{PriceTable, CACHE_HIT_FEE};
use gateway_core::error::ApiError;
use gateway_core::keys::KeyMode;
use gateway_core::limits::bucket::{decide, BucketState, Decision};
use gateway_core::limits::bucket_ops::TakeRefusal;
use gateway_core::limits::headers::{policy_headers, rate_limit_headers, rate_limited_body};
use gateway_core::limits::tier::{Limits, Tier, TierConfig, UNMETERED_FACTOR};
use gateway_core::providers::completion::Tokens;
use gateway_core::providers::Provider;
use worker::console_error;

use crate::auth::Caller;
use crate::http::context::RequestContext;
use gateway_core::error::ApiResult;

/// The caller's limits under the configured tiers.
pub struct Policy {
    pub tier: Tier,
    pub limits: Limits,
    pub max_tokens_cap: u32,
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
    Policy {
        tier: caller.tier,
        limits: config.limits_for(caller.tier, caller.account_limits),
        max_tokens_cap: config.max_tokens_cap(caller.tier),
    }
}

/// An admitted call: the rate-limit headers for its response.
pub struct Admission {
    pub headers: Vec<(&'static str, String)>,
}

impl Admission {
    /// A cache hit's: it takes no bucket token, so it carries the tier's policy headers only.
    pub fn hit(policy: &Policy) -> Admission {
        Admission {
            headers: policy_headers(&policy.limits, policy.tier),
        }
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

/// One token from the key's bucket, or a 429 with the contract's body and headers.
async fn admit(cx: &RequestContext, caller: &Caller, policy: &Policy) -> ApiResult<Admission> {
    match bucket::take(&cx.env, &caller.prefix, 1, policy.limits).await? {
        Err(TakeRefusal::Revoked) => Err(ApiError::unauthorized()),
        Err(TakeRefusal::InsufficientCapacity { burst }) => Err(ApiError::new(
            429,
            "rate_limited",
            format!("this call needs more than the bucket's capacity of {burst}"),
        )),
        Ok(decision @ Decision::Admitted { .. }) => Ok(Admission {
            headers: rate_limit_headers(&policy.limits, policy.tier, &decision),
        }),
        Ok(decision) => Err(rate_limited(policy, &policy.limits, &decision)),
    }
}

/// Credits held for one call, to settle after the fanout.
pub struct Reservation {
    account_id: String,
    id: String,
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

/// The miss path's gate: one token from the key's bucket and the calls' worst-case credits,
/// asked of the two Durable Objects at the same time (one round trip instead of two). The
/// bucket decides first in effect: when it refuses (429, revoked, unreachable) the answer is
/// its refusal and a reservation made meanwhile is released off the response path; when it
/// admits and the ledger refuses, the 402 carries the admitted call's rate-limit headers.
pub async fn gate(
    cx: &RequestContext,
    caller: &Caller,
    policy: &Policy,
    worst: &[WorstCase],
) -> ApiResult<(Admission, Option<Reservation>)> {
    let (admission, reservation) =
        futures::join!(admit(cx, caller, policy), reserve_worst(cx, caller, worst));
    match (admission, reservation) {
        (Ok(a), Ok(r)) => Ok((a, r)),
        (Ok(a), Err(e)) => Err(e.with_rate_headers(&a)),
        (Err(e), r) => {
            if let Ok(Some(r)) = r {
                release_later(cx, r);
            }
            Err(e)
        }
    }
}

/// Gives a reservation back whole, off the response path (queued for the account's ledger).
fn release_later(cx: &RequestContext, r: Reservation) {
    ledger::queue(cx, &r.account_id, LedgerOp::Release { id: r.id });
}

/// Reserves the worst-case cost of the calls (test keys are free: no reservation); 402 when
/// the account cannot cover it. The one reservation path of `/v1/ask` and the drop-in endpoints.
async fn reserve_worst(
    cx: &RequestContext,
    caller: &Caller,
    calls: &[WorstCase],
) -> ApiResult<Option<Reservation>> {
    if caller.mode == KeyMode::Test {
        return Ok(None);
    }
    let table = price_table(cx);
    let amount: u64 = calls
        .iter()
        .map(|c| table.worst_case(c.provider, &c.model, c.prompt_bytes, c.max_tokens))
        .sum();
    let id = cx.request_id.clone();
    let max_in_flight = tier_config(cx).max_in_flight(caller.tier);
    let reply = match ledger::reserve(cx, &caller.account_id, &id, amount, max_in_flight).await {
        Ok(reply) => reply,
        Err(e) => {
            // The ledger may have applied the reservation before the call failed (a lost
            // reply): give it back, so it does not hold the credits for 10 minutes. Releasing
            // an id the ledger does not hold does nothing.
            ledger::queue(cx, &caller.account_id, LedgerOp::Release { id });
            return Err(e);
        }
    };
    if let Err(refusal) = reply {
        // Only a balance that cannot cover the call is a 402. Any other refusal (a reservation
        // id already open, an operation the ledger does not take) is the gateway's own fault:
        // logged, and a 500 `internal_error` (`LedgerRefusal::reservation_error`), not a 402
        // telling the caller to add credits. Nothing was reserved, so nothing is released.
        if !matches!(
            refusal,
            LedgerRefusal::InsufficientCredits { .. } | LedgerRefusal::TooManyInFlight { .. }
        ) {
            console_error!("ledger refused reservation {id}: {refusal}");
        }
        return Err(refusal.reservation_error(amount));
    }
    Ok(Some(Reservation {
        account_id: caller.account_id.clone(),
        id,
    }))
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

pub fn settle_later(
    cx: &RequestContext,
    reservation: Option<Reservation>,
    charges: &[Charge],
) -> u64 {
    let Some(r) = reservation else { return 0 };
    let actual = cost(&price_table(cx), charges);
    ledger::queue(cx, &r.account_id, LedgerOp::Settle { id: r.id, actual });
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
    e.headers = rate_limit_headers(limits, policy.tier, decision);
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
