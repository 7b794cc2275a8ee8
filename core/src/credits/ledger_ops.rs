//! The `AccountLedger` Durable Object's protocol and logic, as plain types: the operations the
//! gateway sends ([`LedgerOp`]), their typed answer ([`LedgerReply`]: the ledger as it now
//! stands, or why the operation was refused), and [`apply`], which runs one call's operation
//! on the stored [`Ledger`] and says what the object must write. The object is a shell around
//! these: it reads the clock, loads, applies, writes, replies.
//!
//! The ledger also holds the account-wide calls and token buckets (`limits::reservation`): a
//! reservation that names them (`meters`) reserves the call's worst case there too, in the same
//! call and all or nothing with its credits, and its settlement or release closes both.
//!
//! On the wire an operation is its JSON (`{"op":"reserve","id":"req_...","amount":120}`) and
//! so is its answer (`{"Ok":{"balance":...,"available":...,"charged":0}}` or
//! `{"Err":{"refusal":"insufficient_credits","available":40}}`).

use crate::wire::tagged_enum;
use serde::{Deserialize, Serialize};

use crate::credits::ledger::{Ledger, LedgerError};
use crate::error::ApiError;
use crate::limits::headers::{too_large_error, Scope};
use crate::limits::reservation::{Amounts, LimitName, MeterRefusal, Reading};
use crate::limits::tier::MinuteLimits;

/// A reservation not settled within this long is charged in full (its call surely ended, and
/// its provider may have billed all of it: `Ledger::expire`).
pub const RESERVATION_MAX_AGE_MS: u64 = 10 * 60 * 1000;

/// How often a running stream renews its reservation (`LedgerOp::Renew`): a quarter of the
/// maximum age, so that when one renewal fails with all its retries, the next one still comes
/// before the reservation would expire.
pub const STREAM_RENEW_MS: u64 = RESERVATION_MAX_AGE_MS / 4;

/// The waits before each new try of a renewal that failed (the ledger unreachable, its reply
/// lost); a renewal the ledger refuses is not tried again.
pub const RENEW_RETRY_MS: [u64; 3] = [1_000, 5_000, 30_000];

// A renewal that fails with all its tries is followed by the next (`STREAM_RENEW_MS` after
// its last try) before the reservation expires, and its tries end before that next one.
const _: () = {
    let retries = RENEW_RETRY_MS[0] + RENEW_RETRY_MS[1] + RENEW_RETRY_MS[2];
    assert!(2 * STREAM_RENEW_MS + retries < RESERVATION_MAX_AGE_MS);
    assert!(retries < STREAM_RENEW_MS);
};

fn no_bound() -> u32 {
    u32::MAX
}

fn is_no_bound(n: &u32) -> bool {
    *n == u32::MAX
}

tagged_enum! {
    tag = "op";
    /// What the gateway asks of an account's `AccountLedger`.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum LedgerOp {
        /// Read the balance.
        Balance,
        /// Add credits (admin top-up). With `id` (the request's `Idempotency-Key`), a top-up
        /// the ledger applied under the same id in the last day is not applied again.
        Credit {
            amount: u64,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            id: Option<String>,
        },
        /// Hold back `amount` credits for call `id` (the request id).
        Reserve {
            id: String,
            amount: u64,
            /// Refused while the account has this many reservations open (its tier's calls in
            /// flight); absent: no bound.
            #[serde(default = "no_bound", skip_serializing_if = "is_no_bound")]
            max_in_flight: u32,
            /// The call's worst case on the account-wide buckets, reserved with the credits, all
            /// or nothing; absent: those buckets are not touched.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            meters: Option<MeterReserve>,
        },
        /// Close reservation `id`, charging `actual`.
        Settle {
            id: String,
            actual: u64,
            /// The tokens the call used, settled on the account-wide buckets.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            meters: Option<MeterSettle>,
        },
        /// Keep reservation `id` open: its call is still running (a stream longer than
        /// [`RESERVATION_MAX_AGE_MS`]). Its credits' age and its account-wide reservation's
        /// deadline start again from now, so only a call whose isolate was lost is charged in
        /// full by expiry. Sent alone, never in a batch: an object that does not know it yet
        /// (a deploy under way) refuses it alone.
        Renew { id: String },
        /// Close reservation `id` without charging.
        Release {
            id: String,
            /// The account-wide limits: what the call reserved there comes back too.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            meters: Option<MinuteLimits>,
        },
        /// Charge a fee without a reservation (the cache-hit serving fee).
        Fee { amount: u64 },
        /// Delete everything the ledger stores (account deletion).
        Wipe,
        /// These operations in order, saved once; the reply is the last one's (a batch inside a
        /// batch is refused: [`LedgerRefusal::UnsupportedOperation`]).
        Batch { ops: Vec<LedgerOp> },
        /// Test hook: the next `count` batches fail before touching the ledger, so tests see
        /// queued operations retried.
        #[cfg(feature = "dev-hooks")]
        FailBatches { count: u32 },
        /// Test hook: the ledger's in-memory copy forgotten, so that its next operation reads
        /// what storage holds, after storing it again in the form written before 2026-12-07
        /// (a JavaScript object, not JSON text) when `old_form` (`src/objects/stored.rs`).
        #[cfg(feature = "dev-hooks")]
        Reread { old_form: bool },
        /// Test hook: the object's clock runs `ms` ahead of the runtime's from now on (one
        /// instance's, in memory), so tests see reservations age by minutes in a moment.
        #[cfg(feature = "dev-hooks")]
        ShiftClock { ms: u64 },
    }
}

impl LedgerOp {
    /// Whether applying the operation twice has the effect of applying it once: a reservation
    /// is settled or released at most once (a repeat is refused as `unknown_reservation`). Only
    /// such operations are sent again after a call whose outcome is unknown.
    pub fn is_retry_safe(&self) -> bool {
        matches!(self, LedgerOp::Settle { .. } | LedgerOp::Release { .. })
    }
}

/// A call's worst case on the account-wide buckets, under the account's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeterReserve {
    pub amounts: Amounts,
    pub limits: MinuteLimits,
}

/// What a call used, for the account-wide buckets, under the account's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeterSettle {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub limits: MinuteLimits,
}

/// `LedgerOp::Batch` over borrowed operations, so a batch is encoded without copying them.
#[derive(Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum BatchRef<'a> {
    Batch { ops: Vec<&'a LedgerOp> },
}

/// The JSON of `LedgerOp::Batch { ops }`, built from borrowed operations.
pub fn encode_batch<'a>(ops: impl IntoIterator<Item = &'a LedgerOp>) -> serde_json::Result<String> {
    serde_json::to_string(&BatchRef::Batch {
        ops: ops.into_iter().collect(),
    })
}

/// The ledger after an applied operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerView {
    /// Credits held, reserved ones included.
    pub balance: u64,
    /// Credits free to reserve or spend.
    pub available: u64,
    /// Credits charged by a `settle` or a `fee` (0 for the other operations).
    #[serde(default)]
    pub charged: u64,
    /// The account-wide buckets after an operation that named them (empty otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub meters: Vec<Reading>,
}

impl LedgerView {
    /// `ledger` as it stands, after an operation that charged `charged`.
    pub fn of(ledger: &Ledger, charged: u64) -> LedgerView {
        LedgerView {
            balance: ledger.balance(),
            available: ledger.available(),
            charged,
            meters: Vec::new(),
        }
    }
}

tagged_enum! {
    tag = "refusal";
    /// Why the ledger refused an operation. A refused operation changes nothing.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum LedgerRefusal {
        /// The balance less what is reserved does not cover the amount.
        InsufficientCredits { available: u64 },
        /// No open reservation has this id (never made, or already settled, released or expired).
        UnknownReservation,
        /// A reservation with this id is already open.
        DuplicateReservation,
        /// The account already has its tier's most calls in flight.
        TooManyInFlight { limit: u32 },
        /// Not an operation the ledger applies here (a batch inside a batch, a test hook).
        UnsupportedOperation,
        /// An account-wide limit has not enough yet: at `retry_at_ms` every account-wide bucket
        /// fits the call, and `limit` is the last to fit.
        Limited {
            limit: LimitName,
            retry_at_ms: u64,
            retry_after_ms: u64,
            /// The account-wide buckets as they stand (the refused call took nothing), for the
            /// 429's rate-limit headers; absent from a ledger of before 2026-12-07.
            #[serde(default, skip_serializing_if = "Vec::is_empty")]
            readings: Vec<Reading>,
        },
        /// The call's worst case exceeds an account-wide bucket's capacity: it can never fit.
        TooLarge {
            limit: LimitName,
            capacity: u64,
            needed: u64,
        },
    }
}

impl LedgerRefusal {
    /// The refusal of the account-wide buckets for a reservation of `amounts`; `readings`, the
    /// buckets as they stand.
    fn of_meters(
        refusal: MeterRefusal,
        amounts: &Amounts,
        readings: Vec<Reading>,
    ) -> LedgerRefusal {
        match refusal {
            MeterRefusal::Limited {
                limit,
                retry_at_ms,
                retry_after_ms,
            } => LedgerRefusal::Limited {
                limit,
                retry_at_ms,
                retry_after_ms,
                readings,
            },
            MeterRefusal::TooLarge { limit, capacity } => LedgerRefusal::TooLarge {
                limit,
                capacity,
                needed: amounts.get(limit),
            },
            MeterRefusal::DuplicateReservation => LedgerRefusal::DuplicateReservation,
        }
    }
}

impl From<LedgerError> for LedgerRefusal {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::InsufficientCredits { available } => {
                LedgerRefusal::InsufficientCredits { available }
            }
            LedgerError::UnknownReservation => LedgerRefusal::UnknownReservation,
            LedgerError::DuplicateReservation => LedgerRefusal::DuplicateReservation,
            LedgerError::TooManyInFlight { limit } => LedgerRefusal::TooManyInFlight { limit },
        }
    }
}

impl std::fmt::Display for LedgerRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            LedgerRefusal::InsufficientCredits { available } => {
                LedgerError::InsufficientCredits { available }.fmt(f)
            }
            LedgerRefusal::UnknownReservation => LedgerError::UnknownReservation.fmt(f),
            LedgerRefusal::DuplicateReservation => LedgerError::DuplicateReservation.fmt(f),
            LedgerRefusal::TooManyInFlight { limit } => {
                LedgerError::TooManyInFlight { limit }.fmt(f)
            }
            LedgerRefusal::UnsupportedOperation => f.write_str("unsupported ledger operation"),
            LedgerRefusal::Limited {
                limit,
                retry_after_ms,
                ..
            } => write!(
                f,
                "the account's {limit} per minute are used up; retry in {retry_after_ms} ms"
            ),
            LedgerRefusal::TooLarge {
                limit,
                capacity,
                needed,
            } => write!(
                f,
                "the call needs {needed} {limit}, above the account's {capacity} per minute"
            ),
        }
    }
}

impl std::error::Error for LedgerRefusal {}

impl LedgerRefusal {
    /// The contract error for a reservation of `needed` credits the ledger refused. Only a
    /// balance that cannot cover it is the caller's to fix: a 402 `insufficient_credits`. Any
    /// other refusal (a reservation id already open, an operation the ledger does not take)
    /// is the gateway's own fault, which neither more credits nor a retry of the same
    /// request would cure: a 500 `internal_error`, never a 402 (the caller logs the detail).
    pub fn reservation_error(&self, needed: u64) -> ApiError {
        match *self {
            LedgerRefusal::InsufficientCredits { available } => {
                ApiError::insufficient_credits(needed, available)
            }
            // Retry once one of the account's calls has ended.
            LedgerRefusal::TooManyInFlight { limit } => ApiError::new(
                429,
                "too_many_in_flight",
                format!("this account already has {limit} calls in flight; retry when one ends"),
            )
            .with("limit", limit)
            .with("retry_after_ms", 1000)
            .with_header("Retry-After", "1"),
            // The gateway adds the account's rate-limit headers (`limits::headers`); this is
            // the body and the wait.
            LedgerRefusal::Limited {
                limit,
                retry_after_ms,
                ..
            } => ApiError::new(429, "rate_limited", self.to_string())
                .with("limit", limit.as_str())
                .with("scope", Scope::Account.as_str())
                .with("retry_after_ms", retry_after_ms)
                .with_header(
                    "Retry-After",
                    crate::limits::headers::ceil_secs(retry_after_ms).to_string(),
                )
                .with_header("retry-after-ms", retry_after_ms.to_string()),
            LedgerRefusal::TooLarge {
                limit,
                capacity,
                needed,
            } => too_large_error(limit, Scope::Account, capacity, needed),
            LedgerRefusal::UnknownReservation
            | LedgerRefusal::DuplicateReservation
            | LedgerRefusal::UnsupportedOperation => ApiError::internal(),
        }
    }
}

/// The ledger's answer to every operation: the ledger as it now stands, or why the (last)
/// operation was refused.
pub type LedgerReply = Result<LedgerView, LedgerRefusal>;

/// What one call did: its answer, and what the object must write, in this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub reply: LedgerReply,
    /// A `wipe` was applied: everything stored goes first (the ledger is then empty).
    pub wiped: bool,
    /// The ledger differs from what is stored (after the wipe, if any): it must be written.
    pub changed: bool,
}

/// Applies one call's operation to the stored `ledger` at `now_ms`: first charges in full the
/// reservations older than [`RESERVATION_MAX_AGE_MS`], then runs the operation (a batch's in
/// order, a `wipe` among them starting over from an empty ledger). The reply is the last
/// operation's; an earlier refusal in a batch changes nothing and is not reported.
pub fn apply(ledger: &mut Ledger, op: LedgerOp, now_ms: u64) -> Applied {
    let mut changed = !ledger.expire(now_ms, RESERVATION_MAX_AGE_MS).is_empty();
    changed |= !ledger.meters.expire(now_ms).is_empty();
    let mut wiped = false;
    let ops = match op {
        LedgerOp::Batch { ops } => ops,
        op => vec![op],
    };
    let mut reply = Ok(LedgerView::of(ledger, 0));
    for op in ops {
        if let LedgerOp::Wipe = op {
            *ledger = Ledger::default();
            (wiped, changed) = (true, false);
            reply = Ok(LedgerView::of(ledger, 0));
            continue;
        }
        reply = match apply_one(ledger, op, now_ms) {
            Ok((c, charged, meters)) => {
                changed |= c;
                Ok(LedgerView {
                    meters,
                    ..LedgerView::of(ledger, charged)
                })
            }
            Err(refusal) => Err(refusal),
        };
    }
    Applied {
        reply,
        wiped,
        changed,
    }
}

/// When the ledger next has something to expire (an open credit reservation past
/// [`RESERVATION_MAX_AGE_MS`], or an account-wide reservation past its deadline): when the
/// object's alarm should run. `None` when nothing is open.
pub fn next_expiry(ledger: &Ledger) -> Option<u64> {
    let credits = ledger
        .oldest_reservation_ms()
        .map(|at| at.saturating_add(RESERVATION_MAX_AGE_MS).saturating_add(1));
    match (credits, ledger.meters.next_expiry()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What one applied operation did: whether the ledger changed, what it charged, and the
/// account-wide buckets after it when it named them.
type AppliedOne = (bool, u64, Vec<Reading>);

/// Applies one operation other than `wipe`, or says why it was refused.
fn apply_one(ledger: &mut Ledger, op: LedgerOp, now_ms: u64) -> Result<AppliedOne, LedgerRefusal> {
    match op {
        LedgerOp::Balance => Ok((false, 0, Vec::new())),
        LedgerOp::Credit { amount, id: None } => {
            ledger.credit(amount);
            Ok((true, 0, Vec::new()))
        }
        LedgerOp::Credit {
            amount,
            id: Some(id),
        } => Ok((ledger.credit_once(&id, amount, now_ms), 0, Vec::new())),
        LedgerOp::Reserve {
            id,
            amount,
            max_in_flight,
            meters,
        } => {
            // The rate limits first (as the key's bucket's answer comes before the ledger's),
            // then the credits; a refusal of either leaves both as they were.
            let before = meters.map(|_| ledger.meters.clone());
            let readings = match meters {
                Some(m) => ledger
                    .meters
                    .reserve(&id, m.amounts, &m.limits, now_ms)
                    .map_err(|r| {
                        let readings = ledger.meters.readings(&m.limits, now_ms);
                        LedgerRefusal::of_meters(r, &m.amounts, readings)
                    })?,
                None => Vec::new(),
            };
            if let Err(e) = ledger.reserve_within(&id, amount, now_ms, max_in_flight) {
                if let Some(before) = before {
                    ledger.meters = before;
                }
                return Err(e.into());
            }
            Ok((true, 0, readings))
        }
        LedgerOp::Settle { id, actual, meters } => {
            // Each side is closed at most once, whatever the other's state.
            let readings = meters.and_then(|m| {
                ledger
                    .meters
                    .settle(&id, m.input_tokens, m.output_tokens, &m.limits, now_ms)
                    .ok()
            });
            let metered = readings.is_some();
            match ledger.settle(&id, actual) {
                Ok(charged) => Ok((true, charged, readings.unwrap_or_default())),
                // The credits were closed already (or never reserved); the meters' change
                // still has to be stored.
                Err(_) if metered => Ok((true, 0, readings.unwrap_or_default())),
                Err(e) => Err(e.into()),
            }
        }
        LedgerOp::Renew { id } => {
            let metered = ledger.meters.renew(&id, now_ms);
            match ledger.renew(&id, now_ms) {
                Ok(()) => Ok((true, 0, Vec::new())),
                Err(_) if metered => Ok((true, 0, Vec::new())),
                Err(e) => Err(e.into()),
            }
        }
        LedgerOp::Release { id, meters } => {
            let readings = meters.and_then(|l| ledger.meters.release(&id, &l, now_ms).ok());
            match ledger.release(&id) {
                Ok(_) => Ok((true, 0, readings.unwrap_or_default())),
                Err(_) if readings.is_some() => Ok((true, 0, readings.unwrap_or_default())),
                Err(e) => Err(e.into()),
            }
        }
        LedgerOp::Fee { amount } => Ok((true, ledger.debit_fee(amount), Vec::new())),
        // `wipe` is applied by `apply`; a batch inside a batch (and the test hook, which the
        // object itself answers) are not operations on the ledger.
        LedgerOp::Wipe | LedgerOp::Batch { .. } => Err(LedgerRefusal::UnsupportedOperation),
        #[cfg(feature = "dev-hooks")]
        LedgerOp::FailBatches { .. } | LedgerOp::Reread { .. } | LedgerOp::ShiftClock { .. } => {
            Err(LedgerRefusal::UnsupportedOperation)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reserve(id: &str, amount: u64) -> LedgerOp {
        LedgerOp::Reserve {
            id: id.into(),
            amount,
            max_in_flight: u32::MAX,
            meters: None,
        }
    }

    #[test]
    fn a_reservation_past_the_accounts_calls_in_flight_is_a_429_and_changes_nothing() {
        let mut l = Ledger::new(100);
        let bounded = |id: &str| LedgerOp::Reserve {
            id: id.into(),
            amount: 10,
            max_in_flight: 1,
            meters: None,
        };
        assert!(apply(&mut l, bounded("a"), 0).reply.is_ok());
        let refused = apply(&mut l, bounded("b"), 0);
        assert_eq!(
            refused.reply,
            Err(LedgerRefusal::TooManyInFlight { limit: 1 })
        );
        assert!(!refused.changed);
        let e = LedgerRefusal::TooManyInFlight { limit: 1 }.reservation_error(10);
        assert_eq!((e.status, e.code), (429, "too_many_in_flight"));
        assert!(e
            .headers
            .iter()
            .any(|(h, v)| *h == "Retry-After" && v == "1"));
        // The bound is optional on the wire (older callers send none).
        let op: LedgerOp = serde_json::from_str(r#"{"op":"reserve","id":"x","amount":1}"#).unwrap();
        assert!(matches!(
            op,
            LedgerOp::Reserve {
                max_in_flight: u32::MAX,
                ..
            }
        ));
    }

    fn settle(id: &str, actual: u64) -> LedgerOp {
        LedgerOp::Settle {
            id: id.into(),
            actual,
            meters: None,
        }
    }

    fn view(balance: u64, available: u64, charged: u64) -> LedgerReply {
        Ok(LedgerView {
            balance,
            available,
            charged,
            meters: Vec::new(),
        })
    }

    fn metered(id: &str, amount: u64, input: u64, output: u64, l: MinuteLimits) -> LedgerOp {
        LedgerOp::Reserve {
            id: id.into(),
            amount,
            max_in_flight: u32::MAX,
            meters: Some(MeterReserve {
                amounts: Amounts::call(input, output),
                limits: l,
            }),
        }
    }

    #[test]
    fn calls_of_all_the_accounts_keys_share_the_account_wide_buckets() {
        let l = MinuteLimits::all(3, 1_000, 1_000);
        let mut ledger = Ledger::new(1_000_000);
        // Three calls from any keys: the account's three calls a minute.
        for id in ["key1-a", "key2-a", "key1-b"] {
            let a = apply(&mut ledger, metered(id, 10, 10, 10, l), 0);
            assert!(a.reply.is_ok(), "{id}: {:?}", a.reply);
        }
        let a = apply(&mut ledger, metered("key2-b", 10, 10, 10, l), 0);
        let Err(LedgerRefusal::Limited {
            limit,
            retry_at_ms,
            retry_after_ms,
            readings,
        }) = &a.reply
        else {
            panic!("{:?}", a.reply)
        };
        assert_eq!(
            (*limit, *retry_at_ms, *retry_after_ms),
            (LimitName::Requests, 20_000, 20_000)
        );
        // The account's buckets as they stand, for the 429's headers: no call left.
        let calls = readings
            .iter()
            .find(|r| r.limit == LimitName::Requests)
            .unwrap();
        assert_eq!((calls.capacity, calls.remaining), (3, 0));
        assert_eq!(readings, &ledger.meters.readings(&l, 0));
        // A refusal from a ledger of before (no readings) still reads.
        let old: LedgerRefusal = serde_json::from_str(
            r#"{"refusal":"limited","limit":"requests","retry_at_ms":5,"retry_after_ms":5}"#,
        )
        .unwrap();
        assert!(matches!(old, LedgerRefusal::Limited { readings, .. } if readings.is_empty()));
        assert!(!a.changed);
        assert_eq!(
            ledger.open_reservations(),
            3,
            "no credits held for the refused call"
        );
        let e = LedgerRefusal::Limited {
            limit: LimitName::Requests,
            retry_at_ms: 20_000,
            retry_after_ms: 20_000,
            readings: Vec::new(),
        }
        .reservation_error(10);
        assert_eq!((e.status, e.code), (429, "rate_limited"));
        assert_eq!(e.body()["error"]["scope"], "account");
        assert_eq!(e.body()["error"]["limit"], "requests");
        assert!(e.headers.contains(&("Retry-After", "20".to_string())));
    }

    #[test]
    fn a_metered_reservation_is_all_or_nothing_with_its_credits() {
        let l = MinuteLimits::all(10, 1_000, 1_000);
        let mut ledger = Ledger::new(100);
        let before = ledger.clone();
        // Not enough credits: the account-wide buckets are left as they were.
        let a = apply(&mut ledger, metered("a", 101, 500, 500, l), 0);
        assert_eq!(
            a.reply,
            Err(LedgerRefusal::InsufficientCredits { available: 100 })
        );
        assert_eq!(ledger, before);
        // Too large for a bucket: no credits held, no retry time.
        let a = apply(&mut ledger, metered("a", 1, 1_001, 0, l), 0);
        let refusal = LedgerRefusal::TooLarge {
            limit: LimitName::InputTokens,
            capacity: 1_000,
            needed: 1_001,
        };
        assert_eq!(a.reply, Err(refusal.clone()));
        assert_eq!(ledger, before);
        let e = refusal.reservation_error(1);
        assert_eq!((e.status, e.code), (429, "request_too_large"));
        assert_eq!(e.headers, vec![("x-should-retry", "false".to_string())]);
        // Admitted: the reply carries the buckets.
        let a = apply(&mut ledger, metered("a", 50, 500, 200, l), 0);
        let view = a.reply.unwrap();
        assert_eq!(view.available, 50);
        assert_eq!(view.meters.len(), 3);
        assert_eq!(view.meters[1].remaining, 500);
    }

    #[test]
    fn settling_or_releasing_closes_both_sides_once() {
        let l = MinuteLimits::all(10, 1_000, 1_000);
        let mut ledger = Ledger::new(100);
        apply(&mut ledger, metered("a", 50, 500, 200, l), 0);
        let settle = LedgerOp::Settle {
            id: "a".into(),
            actual: 20,
            meters: Some(MeterSettle {
                input_tokens: 100,
                output_tokens: 300,
                limits: l,
            }),
        };
        let view = apply(&mut ledger, settle.clone(), 0).reply.unwrap();
        assert_eq!((view.balance, view.charged), (80, 20));
        let input = view.meters[1];
        let output = view.meters[2];
        assert_eq!((input.remaining, output.remaining), (900, 700));
        let once = ledger.clone();
        assert_eq!(
            apply(&mut ledger, settle, 0).reply,
            Err(LedgerRefusal::UnknownReservation)
        );
        assert_eq!(ledger, once);
        // A release gives the call back too.
        apply(&mut ledger, metered("b", 10, 100, 100, l), 0);
        let release = LedgerOp::Release {
            id: "b".into(),
            meters: Some(l),
        };
        let view = apply(&mut ledger, release.clone(), 0).reply.unwrap();
        assert_eq!(view.meters[0].remaining, 9);
        assert_eq!(
            apply(&mut ledger, release, 0).reply,
            Err(LedgerRefusal::UnknownReservation)
        );
    }

    #[test]
    fn unsettled_account_wide_reservations_expire_and_the_alarm_time_is_known() {
        let l = MinuteLimits::all(10, 1_000, 1_000);
        let mut ledger = Ledger::new(100);
        assert_eq!(next_expiry(&ledger), None);
        apply(&mut ledger, metered("a", 10, 100, 100, l), 1_000);
        let meters_due = 1_000 + crate::limits::reservation::RESERVATION_TTL_MS;
        assert_eq!(next_expiry(&ledger), Some(meters_due));
        let a = apply(&mut ledger, LedgerOp::Balance, meters_due);
        assert!(a.changed, "the account-wide reservation expired");
        assert_eq!(ledger.meters.open_reservations(), 0);
        // The credits expire one millisecond later (age strictly above the maximum).
        assert_eq!(next_expiry(&ledger), Some(meters_due + 1));
        let a = apply(&mut ledger, LedgerOp::Balance, meters_due + 1);
        assert_eq!(a.reply.unwrap().balance, 90, "charged in full");
        assert_eq!(next_expiry(&ledger), None);
    }

    #[test]
    fn a_renewed_reservation_outlives_the_maximum_age_and_settles_at_its_usage() {
        let l = MinuteLimits::all(10, 1_000, 1_000);
        let ttl = crate::limits::reservation::RESERVATION_TTL_MS;
        let mut ledger = Ledger::new(100);
        apply(&mut ledger, metered("long", 50, 500, 200, l), 0);
        apply(&mut ledger, metered("lost", 10, 100, 100, l), 0);
        let renew = LedgerOp::Renew { id: "long".into() };
        // Renewed twice while it runs, each time before its deadline.
        for at in [ttl / 2, ttl - 1] {
            let a = apply(&mut ledger, renew.clone(), at);
            assert!(a.reply.is_ok() && a.changed, "{a:?}");
        }
        assert_eq!(
            next_expiry(&ledger),
            Some(ttl),
            "the unrenewed one is due first"
        );
        // Past the first deadline: the unrenewed reservation is charged in full, the renewed
        // one is still open on both sides.
        let view = apply(&mut ledger, LedgerOp::Balance, ttl + ttl / 2)
            .reply
            .unwrap();
        assert_eq!((view.balance, view.available), (90, 40));
        assert_eq!(ledger.meters.open_reservations(), 1);
        assert_eq!(next_expiry(&ledger), Some(2 * ttl - 1));
        let settle = LedgerOp::Settle {
            id: "long".into(),
            actual: 20,
            meters: Some(MeterSettle {
                input_tokens: 100,
                output_tokens: 300,
                limits: l,
            }),
        };
        let view = apply(&mut ledger, settle, ttl + ttl / 2).reply.unwrap();
        assert_eq!((view.balance, view.charged), (70, 20), "charged its usage");
        assert_eq!(next_expiry(&ledger), None);
        // Renewing what is closed is refused and changes nothing.
        let before = ledger.clone();
        let a = apply(&mut ledger, renew, 2 * ttl);
        assert_eq!(a.reply, Err(LedgerRefusal::UnknownReservation));
        assert_eq!(ledger, before);
        // A clock that went back does not shorten a reservation's life.
        apply(&mut ledger, reserve("back", 5), 1_000);
        apply(&mut ledger, LedgerOp::Renew { id: "back".into() }, 10);
        let a = apply(
            &mut ledger,
            LedgerOp::Balance,
            1_000 + RESERVATION_MAX_AGE_MS,
        );
        assert_eq!(a.reply.unwrap().available, 65, "still open");
    }

    #[test]
    fn operations_without_meters_keep_their_old_wire_form() {
        for text in [
            r#"{"op":"reserve","id":"x","amount":1}"#,
            r#"{"op":"settle","id":"x","actual":1}"#,
            r#"{"op":"release","id":"x"}"#,
        ] {
            let op: LedgerOp = serde_json::from_str(text).unwrap();
            assert_eq!(serde_json::to_string(&op).unwrap(), text);
        }
        let op = metered("x", 1, 2, 3, MinuteLimits::all(4, 5, 6));
        let text = serde_json::to_string(&op).unwrap();
        assert_eq!(serde_json::from_str::<LedgerOp>(&text).unwrap(), op);
        // A ledger stored before the account-wide buckets loads, and stores as it was.
        let old = r#"{"balance":3,"reservations":{}}"#;
        let l: Ledger = serde_json::from_str(old).unwrap();
        assert_eq!(serde_json::to_string(&l).unwrap(), old);
        let view = r#"{"balance":1,"available":1,"charged":0}"#;
        let v: LedgerView = serde_json::from_str(view).unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), view);
    }

    #[test]
    fn a_balance_read_changes_nothing() {
        let mut l = Ledger::new(70);
        let a = apply(&mut l, LedgerOp::Balance, 0);
        assert_eq!(
            a,
            Applied {
                reply: view(70, 70, 0),
                wiped: false,
                changed: false
            }
        );
    }

    #[test]
    fn reserve_settle_and_fee_report_the_ledger_and_the_charge() {
        let mut l = Ledger::default();
        assert!(
            apply(
                &mut l,
                LedgerOp::Credit {
                    amount: 100,
                    id: None
                },
                0
            )
            .changed
        );
        let a = apply(&mut l, reserve("r", 60), 0);
        assert_eq!((a.reply, a.changed), (view(100, 40, 0), true));
        let a = apply(&mut l, settle("r", 25), 1);
        assert_eq!((a.reply, a.changed), (view(75, 75, 25), true));
        let a = apply(&mut l, LedgerOp::Fee { amount: 5 }, 2);
        assert_eq!(a.reply, view(70, 70, 5));
        let a = apply(
            &mut l,
            LedgerOp::Release {
                id: "r".into(),
                meters: None,
            },
            3,
        );
        assert_eq!(
            (a.reply, a.changed),
            (Err(LedgerRefusal::UnknownReservation), false)
        );
    }

    #[test]
    fn refusals_are_typed_and_change_nothing() {
        let mut l = Ledger::new(50);
        apply(&mut l, reserve("a", 20), 0);
        let before = l.clone();
        let a = apply(&mut l, reserve("b", 31), 0);
        assert_eq!(
            a.reply,
            Err(LedgerRefusal::InsufficientCredits { available: 30 })
        );
        assert!(!a.changed);
        let a = apply(&mut l, reserve("a", 1), 0);
        assert_eq!(a.reply, Err(LedgerRefusal::DuplicateReservation));
        assert_eq!(
            apply(&mut l, settle("x", 1), 0).reply,
            Err(LedgerRefusal::UnknownReservation)
        );
        assert_eq!(l, before);
    }

    #[test]
    fn a_batch_applies_in_order_and_answers_for_its_last_operation() {
        let mut l = Ledger::new(100);
        apply(&mut l, reserve("a", 10), 0);
        let batch = LedgerOp::Batch {
            ops: vec![
                settle("a", 4),
                // An earlier refusal is not the batch's answer.
                settle("a", 4),
                LedgerOp::Fee { amount: 1 },
                LedgerOp::Fee { amount: 2 },
            ],
        };
        let a = apply(&mut l, batch, 1);
        assert_eq!(
            (a.reply, a.changed, a.wiped),
            (view(93, 93, 2), true, false)
        );
        // A batch ending in a refusal answers the refusal, but keeps what came before it.
        let batch = LedgerOp::Batch {
            ops: vec![LedgerOp::Fee { amount: 3 }, reserve("b", 1_000)],
        };
        let a = apply(&mut l, batch, 2);
        assert_eq!(
            a.reply,
            Err(LedgerRefusal::InsufficientCredits { available: 90 })
        );
        assert!(a.changed);
        assert_eq!(l.balance(), 90);
        let empty = apply(&mut l, LedgerOp::Batch { ops: vec![] }, 3);
        assert_eq!((empty.reply, empty.changed), (view(90, 90, 0), false));
    }

    #[test]
    fn a_batch_inside_a_batch_is_unsupported() {
        let mut l = Ledger::new(10);
        let inner = LedgerOp::Batch {
            ops: vec![LedgerOp::Credit {
                amount: 5,
                id: None,
            }],
        };
        let a = apply(&mut l, LedgerOp::Batch { ops: vec![inner] }, 0);
        assert_eq!(a.reply, Err(LedgerRefusal::UnsupportedOperation));
        assert_eq!(l, Ledger::new(10));
    }

    #[test]
    fn a_wipe_starts_over_from_an_empty_ledger() {
        let mut l = Ledger::new(10);
        let a = apply(&mut l, LedgerOp::Wipe, 0);
        assert_eq!(
            a,
            Applied {
                reply: view(0, 0, 0),
                wiped: true,
                changed: false
            }
        );
        let mut l = Ledger::new(10);
        let batch = LedgerOp::Batch {
            ops: vec![
                LedgerOp::Credit {
                    amount: 5,
                    id: None,
                },
                LedgerOp::Wipe,
                LedgerOp::Credit {
                    amount: 3,
                    id: None,
                },
            ],
        };
        let a = apply(&mut l, batch, 0);
        assert_eq!((a.reply, a.wiped, a.changed), (view(3, 3, 0), true, true));
        assert_eq!(l, Ledger::new(3));
    }

    #[test]
    fn old_reservations_are_charged_in_full_first_and_that_is_a_change() {
        let mut l = Ledger::new(100);
        apply(&mut l, reserve("old", 40), 0);
        let a = apply(&mut l, LedgerOp::Balance, RESERVATION_MAX_AGE_MS);
        assert_eq!((a.reply, a.changed), (view(100, 60, 0), false));
        let a = apply(&mut l, LedgerOp::Balance, RESERVATION_MAX_AGE_MS + 1);
        assert_eq!((a.reply, a.changed), (view(60, 60, 0), true));
        assert_eq!(l.open_reservations(), 0);
    }

    #[test]
    fn only_settlements_and_releases_are_retry_safe() {
        assert!(settle("a", 1).is_retry_safe());
        assert!(LedgerOp::Release {
            id: "a".into(),
            meters: None
        }
        .is_retry_safe());
        for op in [
            LedgerOp::Balance,
            LedgerOp::Credit {
                amount: 1,
                id: None,
            },
            reserve("a", 1),
            // Sent alone, never queued: not retried.
            LedgerOp::Renew { id: "a".into() },
            LedgerOp::Fee { amount: 1 },
            LedgerOp::Wipe,
            LedgerOp::Batch { ops: vec![] },
        ] {
            assert!(!op.is_retry_safe(), "{op:?}");
        }
    }

    #[test]
    fn ops_and_replies_travel_as_tagged_json() {
        let op = reserve("req_1", 120);
        let text = serde_json::to_string(&op).unwrap();
        assert_eq!(text, r#"{"op":"reserve","id":"req_1","amount":120}"#);
        assert_eq!(serde_json::from_str::<LedgerOp>(&text).unwrap(), op);
        let queued = [settle("a", 3), LedgerOp::Fee { amount: 2 }];
        let text = encode_batch(queued.iter().chain([&op])).unwrap();
        assert_eq!(
            serde_json::from_str::<LedgerOp>(&text).unwrap(),
            LedgerOp::Batch {
                ops: vec![queued[0].clone(), queued[1].clone(), op]
            }
        );
        for reply in [
            view(5, 4, 1),
            Err(LedgerRefusal::InsufficientCredits { available: 4 }),
            Err(LedgerRefusal::UnknownReservation),
            Err(LedgerRefusal::DuplicateReservation),
            Err(LedgerRefusal::UnsupportedOperation),
        ] {
            let text = serde_json::to_string(&reply).unwrap();
            assert_eq!(serde_json::from_str::<LedgerReply>(&text).unwrap(), reply);
        }
        let refused: LedgerReply = Err(LedgerRefusal::InsufficientCredits { available: 4 });
        assert_eq!(
            serde_json::to_string(&refused).unwrap(),
            r#"{"Err":{"refusal":"insufficient_credits","available":4}}"#
        );
    }

    #[cfg(not(feature = "dev-hooks"))]
    #[test]
    fn a_build_without_the_hooks_knows_no_hook_op() {
        assert!(serde_json::from_str::<LedgerOp>(r#"{"op":"fail_batches","count":2}"#).is_err());
    }

    #[test]
    fn only_insufficient_credits_is_a_402() {
        let e = LedgerRefusal::InsufficientCredits { available: 7 }.reservation_error(30);
        assert_eq!(e.status, 402);
        assert_eq!(e.body()["error"]["code"], "insufficient_credits");
        assert_eq!(e.body()["error"]["needed"], 30);
        assert_eq!(e.body()["error"]["available"], 7);
        for refusal in [
            LedgerRefusal::DuplicateReservation,
            LedgerRefusal::UnknownReservation,
            LedgerRefusal::UnsupportedOperation,
        ] {
            let e = refusal.reservation_error(30);
            assert_eq!(e.status, 500, "{refusal}");
            assert_eq!(e.body()["error"]["code"], "internal_error");
        }
    }
}
