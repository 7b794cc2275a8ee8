//! The token buckets as pure functions of (state, now, cost, limits): exact integer
//! arithmetic, time passed in as milliseconds, small serde states the Durable Objects persist.
//! [`BucketState`] is a key's call bucket (burst and refill rate, [`Limits`]); [`MinuteBucket`]
//! is a per-minute bucket (tokens, or an account's calls) that settlement can refund or take
//! into debt.
//!
//! The bucket holds whole tokens plus the refill progress toward the next one, in nanoseconds
//! of the limits' refill interval ([`Limits::refill_interval_ns`]). Refill is exact and
//! independent of how often the bucket is looked at: the level at time `t` is the same whether
//! it was computed in one step or in many. So the retry time of a denial is exact: a request
//! at `retry_at_ms` is admitted (if nothing else took the tokens), one at `retry_at_ms - 1`
//! is not. The clock never runs backwards inside the bucket: an earlier `now_ms` than the
//! bucket has already seen is treated as that latest time, so it neither refills nor takes.

use crate::wire::tagged_enum;
use serde::{Deserialize, Serialize};

use crate::limits::tier::Limits;

const NS_PER_MS: u128 = 1_000_000;

/// What the bucket remembers between decisions. Build a new one with [`BucketState::full`].
///
/// All fields fit in JavaScript's safe integers for realistic inputs (`at_ms` is a
/// `Date::now()` reading, `progress_ns` is below one refill interval).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BucketState {
    /// The latest clock reading the bucket has seen, ms.
    at_ms: u64,
    /// Whole tokens in the bucket at `at_ms`.
    tokens: u32,
    /// Refill progress toward the next token at `at_ms`, ns (below `interval_ns`).
    progress_ns: u64,
    /// The refill interval `tokens` and `progress_ns` were computed under, ns per token.
    interval_ns: u64,
}

tagged_enum! {
    tag = "outcome";
    /// The outcome of one request against the bucket.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Decision {
        /// The tokens were taken.
        Admitted {
            /// Whole tokens left.
            remaining: u32,
            /// Milliseconds until the bucket is full again, rounded up.
            reset_ms: u64,
        },
        /// Not enough tokens; nothing was taken. Remaining is 0 for this request's purposes.
        Denied {
            /// The earliest whole millisecond at which this request fits, if nothing else takes
            /// tokens first. Saturates at `u64::MAX` (only for absurd clocks or limits).
            retry_at_ms: u64,
            /// `retry_at_ms - now_ms`: at least 1 (unless `retry_at_ms` saturated).
            retry_after_ms: u64,
            /// Milliseconds until the bucket is full, rounded up.
            reset_ms: u64,
        },
    }
}

impl Decision {
    pub fn is_admitted(&self) -> bool {
        matches!(self, Decision::Admitted { .. })
    }

    /// Whole tokens left (0 on a denial).
    pub fn remaining(&self) -> u32 {
        match self {
            Decision::Admitted { remaining, .. } => *remaining,
            Decision::Denied { .. } => 0,
        }
    }

    /// Milliseconds until the bucket is full.
    pub fn reset_ms(&self) -> u64 {
        match self {
            Decision::Admitted { reset_ms, .. } | Decision::Denied { reset_ms, .. } => *reset_ms,
        }
    }
}

/// The request costs more than the bucket can ever hold: waiting will not help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InsufficientCapacity {
    pub burst: u32,
}

impl std::fmt::Display for InsufficientCapacity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "request cost exceeds the bucket's capacity of {}",
            self.burst
        )
    }
}

impl std::error::Error for InsufficientCapacity {}

/// The bucket brought up to a point in time under given limits, in wide integers.
struct Level {
    at_ms: u64,
    tokens: u128,
    progress_ns: u128,
    interval_ns: u128,
    burst: u128,
}

impl Level {
    fn state(&self) -> BucketState {
        BucketState {
            at_ms: self.at_ms,
            // tokens <= burst <= u32::MAX and progress < interval <= u64::MAX: both fit.
            tokens: u32::try_from(self.tokens).unwrap_or(u32::MAX),
            progress_ns: u64::try_from(self.progress_ns).unwrap_or(u64::MAX),
            interval_ns: u64::try_from(self.interval_ns).unwrap_or(u64::MAX),
        }
    }

    /// Nanoseconds of refill still missing before `want` tokens are in the bucket.
    fn shortfall_ns(&self, want: u128) -> u128 {
        (want.saturating_sub(self.tokens) * self.interval_ns).saturating_sub(self.progress_ns)
    }

    /// Milliseconds (rounded up) until the bucket is full.
    fn reset_ms(&self) -> u64 {
        ms_ceil(self.shortfall_ns(self.burst))
    }
}

fn ms_ceil(ns: u128) -> u64 {
    u64::try_from(ns.div_ceil(NS_PER_MS)).unwrap_or(u64::MAX)
}

impl BucketState {
    /// A bucket holding `limits.burst` tokens at `now_ms`: what a new API key starts with.
    pub fn full(limits: &Limits, now_ms: u64) -> BucketState {
        BucketState {
            at_ms: now_ms,
            tokens: limits.burst,
            progress_ns: 0,
            interval_ns: limits.refill_interval_ns(),
        }
    }

    /// A bucket holding no tokens at `now_ms`.
    pub fn empty(limits: &Limits, now_ms: u64) -> BucketState {
        BucketState {
            at_ms: now_ms,
            tokens: 0,
            progress_ns: 0,
            interval_ns: limits.refill_interval_ns(),
        }
    }

    /// The latest clock reading the bucket has seen, ms.
    pub fn at_ms(&self) -> u64 {
        self.at_ms
    }

    /// Whole tokens available at `now_ms` under `limits` (without taking any).
    pub fn available(&self, now_ms: u64, limits: &Limits) -> u32 {
        self.level(now_ms, limits).state().tokens
    }

    /// Brings the state to `max(now_ms, at_ms)` under `limits`.
    ///
    /// When the limits' refill interval differs from the one the state was computed under
    /// (a tier change), whole tokens carry over and the progress toward the next token is
    /// scaled to the new interval; then tokens are capped at the new burst. Any stored state,
    /// even an inconsistent one, is normalised the same way; nothing here can overflow.
    fn level(&self, now_ms: u64, limits: &Limits) -> Level {
        let interval = u128::from(limits.refill_interval_ns());
        let burst = u128::from(limits.burst);
        let mut progress = u128::from(self.progress_ns);
        if u128::from(self.interval_ns) != interval {
            progress = match self.interval_ns {
                0 => 0,
                old => progress * interval / u128::from(old),
            };
        }
        let at_ms = self.at_ms.max(now_ms);
        // Progress scaled from a hand-edited state can approach u128::MAX: saturate.
        let total = progress.saturating_add(u128::from(at_ms - self.at_ms) * NS_PER_MS);
        let tokens = u128::from(self.tokens).saturating_add(total / interval);
        if tokens >= burst {
            Level {
                at_ms,
                tokens: burst,
                progress_ns: 0,
                interval_ns: interval,
                burst,
            }
        } else {
            Level {
                at_ms,
                tokens,
                progress_ns: total % interval,
                interval_ns: interval,
                burst,
            }
        }
    }
}

/// Decides whether a request costing `cost` tokens may pass at `now_ms` under `limits`.
///
/// Returns the new state to persist and the decision. On a denial the returned state holds the
/// same tokens as the old one (only brought up to date); persisting it is optional.
/// A cost above `limits.burst` can never pass and is an `InsufficientCapacity` error.
/// A cost of 0 is always admitted.
pub fn decide(
    state: &BucketState,
    now_ms: u64,
    cost: u32,
    limits: &Limits,
) -> Result<(BucketState, Decision), InsufficientCapacity> {
    if cost > limits.burst {
        return Err(InsufficientCapacity {
            burst: limits.burst,
        });
    }
    let mut level = state.level(now_ms, limits);
    let cost = u128::from(cost);
    if level.tokens >= cost {
        level.tokens -= cost;
        let decision = Decision::Admitted {
            remaining: level.state().tokens,
            reset_ms: level.reset_ms(),
        };
        Ok((level.state(), decision))
    } else {
        // The shortfall is positive: tokens < cost and progress < interval.
        let retry_at_ms = level
            .at_ms
            .saturating_add(ms_ceil(level.shortfall_ns(cost)));
        let decision = Decision::Denied {
            retry_at_ms,
            retry_after_ms: retry_at_ms.saturating_sub(now_ms),
            reset_ms: level.reset_ms(),
        };
        Ok((level.state(), decision))
    }
}

/// Units of a [`MinuteBucket`]'s level per token. A limit of `R` a minute refills `R` units a
/// millisecond, so refill, retry and reset times are exact integers at every rate.
pub const UNITS_PER_TOKEN: i128 = 60_000;

/// A per-minute bucket: capacity one minute's worth (`per_minute` tokens), refilled
/// continuously at `per_minute` tokens a minute, exactly (its level is kept in
/// [`UNITS_PER_TOKEN`]ths of a token). Unlike the call bucket it can go below zero: tokens a
/// call used beyond what it reserved are taken as debt ([`MinuteBucket::charge`]), at most one
/// capacity deep, and the next admission waits until the bucket has refilled past it.
///
/// The limit is passed to every method (it comes from the caller's tier, which may change
/// between calls): a level above a lowered capacity is capped at it, and a debt below one
/// capacity's depth is raised to it. The clock never runs backwards: an earlier `now_ms` than
/// the bucket has seen counts as that latest time. A `per_minute` of 0 (never valid, see
/// `MinuteLimits::is_valid`) holds nothing and never refills: it fails closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MinuteBucket {
    /// The latest clock reading the bucket has seen, ms.
    at_ms: u64,
    /// The level at `at_ms`, in units (negative: debt).
    level: i64,
}

/// A per-minute bucket cannot hold this much: waiting will not help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge {
    pub capacity: u64,
}

fn capacity_units(per_minute: u64) -> i128 {
    i128::from(per_minute) * UNITS_PER_TOKEN
}

fn to_i64(units: i128) -> i64 {
    i64::try_from(units).unwrap_or(if units < 0 { i64::MIN } else { i64::MAX })
}

/// `ceil(a / b)` for `a >= 0`, `b > 0`, as milliseconds (saturating).
fn ceil_div_ms(a: i128, b: i128) -> u64 {
    if a <= 0 {
        return 0;
    }
    if b <= 0 {
        return u64::MAX;
    }
    u64::try_from((a + b - 1) / b).unwrap_or(u64::MAX)
}

impl MinuteBucket {
    /// A full bucket at `now_ms`: what a new key or account starts with.
    pub fn full(per_minute: u64, now_ms: u64) -> MinuteBucket {
        MinuteBucket {
            at_ms: now_ms,
            level: to_i64(capacity_units(per_minute)),
        }
    }

    /// The latest clock reading the bucket has seen, ms.
    pub fn at_ms(&self) -> u64 {
        self.at_ms
    }

    /// Brings the bucket to `max(now_ms, at_ms)` under `per_minute`: refilled, capped at the
    /// capacity, a debt no deeper than one capacity.
    pub fn advance(&mut self, now_ms: u64, per_minute: u64) {
        let cap = capacity_units(per_minute);
        let at_ms = self.at_ms.max(now_ms);
        let refill = i128::from(per_minute) * i128::from(at_ms - self.at_ms);
        let level = (i128::from(self.level) + refill).clamp(-cap, cap);
        *self = MinuteBucket {
            at_ms,
            level: to_i64(level),
        };
    }

    /// The level in units (call [`MinuteBucket::advance`] first for the level now).
    pub fn units(&self) -> i128 {
        i128::from(self.level)
    }

    /// Whole tokens available (0 in debt).
    pub fn remaining(&self) -> u64 {
        u64::try_from(self.units().max(0) / UNITS_PER_TOKEN).unwrap_or(u64::MAX)
    }

    /// Milliseconds, rounded up, until the bucket is full.
    pub fn reset_ms(&self, per_minute: u64) -> u64 {
        ceil_div_ms(
            capacity_units(per_minute) - self.units(),
            i128::from(per_minute),
        )
    }

    /// The earliest whole millisecond at which `tokens` fit, if nothing else takes any first
    /// (`at_ms` when they fit now).
    pub fn fits_at_ms(&self, tokens: u64, per_minute: u64) -> u64 {
        let need = i128::from(tokens) * UNITS_PER_TOKEN - self.units();
        self.at_ms
            .saturating_add(ceil_div_ms(need, i128::from(per_minute)))
    }

    /// Takes `tokens` if they fit now (after [`MinuteBucket::advance`]): `Ok(true)` taken,
    /// `Ok(false)` not enough yet (nothing taken), or `TooLarge` when they exceed the capacity.
    pub fn take(&mut self, tokens: u64, per_minute: u64) -> Result<bool, TooLarge> {
        if tokens > per_minute {
            return Err(TooLarge {
                capacity: per_minute,
            });
        }
        let cost = i128::from(tokens) * UNITS_PER_TOKEN;
        if self.units() < cost {
            return Ok(false);
        }
        self.level = to_i64(self.units() - cost);
        Ok(true)
    }

    /// Gives `units` back, capped at the capacity.
    pub fn give_back(&mut self, units: i128, per_minute: u64) {
        let cap = capacity_units(per_minute);
        self.level = to_i64((self.units() + units.max(0)).min(cap.max(self.units())));
    }

    /// Takes `tokens` whatever the level, into debt if need be (at most one capacity deep).
    pub fn charge(&mut self, tokens: u64, per_minute: u64) {
        let floor = -capacity_units(per_minute);
        let level = self.units() - i128::from(tokens) * UNITS_PER_TOKEN;
        self.level = to_i64(level.max(floor.min(self.units())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::tier::{Tier, TierConfig};
    use proptest::prelude::*;

    fn limits(burst: u32, per_second: f64) -> Limits {
        Limits::new(burst, per_second).unwrap()
    }

    fn free() -> Limits {
        TierConfig::default().limits_for(Tier::Free, None)
    }

    /// Runs `decide` and returns (new state, decision), panicking on InsufficientCapacity.
    fn run(state: &BucketState, now: u64, cost: u32, l: &Limits) -> (BucketState, Decision) {
        decide(state, now, cost, l).unwrap()
    }

    #[test]
    fn new_bucket_admits_burst_then_denies() {
        let l = free();
        let mut s = BucketState::full(&l, 1_000);
        for i in 0..10 {
            let (next, d) = run(&s, 1_000, 1, &l);
            assert_eq!(d.remaining(), 9 - i);
            assert!(d.is_admitted());
            s = next;
        }
        let (_, d) = run(&s, 1_000, 1, &l);
        assert_eq!(
            d,
            Decision::Denied {
                retry_at_ms: 7_000,
                retry_after_ms: 6_000,
                reset_ms: 60_000
            }
        );
    }

    #[test]
    fn reset_counts_until_full() {
        let l = limits(60, 1.0);
        let (s, d) = run(&BucketState::full(&l, 0), 0, 3, &l);
        assert_eq!(
            d,
            Decision::Admitted {
                remaining: 57,
                reset_ms: 3_000
            }
        );
        // Half a second later, 2.5 tokens' worth is still missing.
        let (_, d) = run(&s, 500, 0, &l);
        assert_eq!(d.reset_ms(), 2_500);
        assert_eq!(d.remaining(), 57);
    }

    #[test]
    fn retry_at_is_exact_to_the_millisecond() {
        // 3 per second: 333_333_333 ns per token, so whole-ms rounding matters.
        let l = limits(2, 3.0);
        let (s, _) = run(&BucketState::full(&l, 0), 0, 2, &l);
        let (_, d) = run(&s, 10, 1, &l);
        let Decision::Denied {
            retry_at_ms,
            retry_after_ms,
            ..
        } = d
        else {
            panic!("expected a denial, got {d:?}");
        };
        assert_eq!(retry_at_ms, 334); // ceil(333.333333 ms)
        assert_eq!(retry_after_ms, 324);
        assert!(!run(&s, retry_at_ms - 1, 1, &l).1.is_admitted());
        assert!(run(&s, retry_at_ms, 1, &l).1.is_admitted());
    }

    #[test]
    fn denial_then_retry_at_advertised_time_is_admitted() {
        let l = limits(2, 3.0);
        let (s, _) = run(&BucketState::full(&l, 0), 0, 2, &l);
        // Several denials in between (each returning a refreshed state) change nothing.
        let (s, d1) = run(&s, 5, 1, &l);
        let (s, d2) = run(&s, 100, 1, &l);
        let (s, d3) = run(&s, 333, 1, &l);
        for d in [d1, d2, d3] {
            assert!(
                matches!(
                    d,
                    Decision::Denied {
                        retry_at_ms: 334,
                        ..
                    }
                ),
                "{d:?}"
            );
        }
        assert!(!run(&s, 333, 1, &l).1.is_admitted());
        assert!(run(&s, 334, 1, &l).1.is_admitted());
    }

    #[test]
    fn cost_above_burst_is_insufficient_capacity() {
        let l = limits(5, 1.0);
        let s = BucketState::full(&l, 0);
        assert_eq!(decide(&s, 0, 6, &l), Err(InsufficientCapacity { burst: 5 }));
        assert!(decide(&s, 0, 5, &l).unwrap().1.is_admitted());
        assert_eq!(
            decide(&s, u64::MAX, u32::MAX, &l),
            Err(InsufficientCapacity { burst: 5 })
        );
    }

    #[test]
    fn zero_cost_is_admitted_and_takes_nothing() {
        let l = limits(5, 1.0);
        let s = BucketState::empty(&l, 0);
        let (next, d) = run(&s, 0, 0, &l);
        assert_eq!(
            d,
            Decision::Admitted {
                remaining: 0,
                reset_ms: 5_000
            }
        );
        assert_eq!(next, s);
    }

    #[test]
    fn clock_going_backwards_neither_refills_nor_panics() {
        let l = free();
        let s = BucketState::empty(&l, 60_000);
        let (s2, d) = run(&s, 0, 1, &l);
        assert_eq!(
            d,
            Decision::Denied {
                retry_at_ms: 66_000,
                retry_after_ms: 66_000,
                reset_ms: 60_000
            }
        );
        assert_eq!(s2.at_ms(), 60_000);
        assert_eq!(s2.available(0, &l), 0);
        // Going back and forth never mints tokens.
        let (s3, _) = run(&s2, 65_999, 1, &l);
        let (s4, d) = run(&s3, 10, 1, &l);
        assert!(!d.is_admitted());
        assert_eq!(s4.at_ms(), 65_999);
        assert!(run(&s4, 66_000, 1, &l).1.is_admitted());
    }

    #[test]
    fn huge_times_and_gaps_do_not_overflow() {
        let l = limits(1_000_000, 100_000.0);
        let s = BucketState::empty(&l, 0);
        let (s, d) = run(&s, u64::MAX, 1_000_000, &l);
        assert_eq!(
            d,
            Decision::Admitted {
                remaining: 0,
                reset_ms: 10_000
            }
        );
        let (_, d) = run(&s, u64::MAX, 1, &l);
        assert_eq!(
            d,
            Decision::Denied {
                retry_at_ms: u64::MAX,
                retry_after_ms: 0,
                reset_ms: 10_000
            }
        );
        // The slowest possible rate with the largest bucket.
        let slow = Limits {
            burst: u32::MAX,
            per_second: 1e-300,
        };
        let s = BucketState::empty(&slow, u64::MAX - 5);
        let (_, d) = run(&s, 0, u32::MAX, &slow);
        assert_eq!(
            d,
            Decision::Denied {
                retry_at_ms: u64::MAX,
                retry_after_ms: u64::MAX,
                reset_ms: u64::MAX
            }
        );
    }

    #[test]
    fn hand_built_invalid_limits_fail_closed() {
        let zero = Limits {
            burst: 0,
            per_second: 1.0,
        };
        let s = BucketState::full(&zero, 0);
        assert_eq!(
            decide(&s, 0, 1, &zero),
            Err(InsufficientCapacity { burst: 0 })
        );
        let nan = Limits {
            burst: 3,
            per_second: f64::NAN,
        };
        let (s, _) = run(&BucketState::full(&nan, 0), 0, 3, &nan);
        assert_eq!(s.available(1_000_000_000, &nan), 0);
    }

    #[test]
    fn inconsistent_stored_state_is_normalised() {
        let l = limits(10, 1.0);
        let s: BucketState = serde_json::from_str(
            r#"{"at_ms": 0, "tokens": 4000000000, "progress_ns": 18446744073709551615, "interval_ns": 0}"#,
        )
        .unwrap();
        assert_eq!(s.available(0, &l), 10);
        let s: BucketState = serde_json::from_str(
            r#"{"at_ms": 0, "tokens": 3, "progress_ns": 5000000000, "interval_ns": 1000000000}"#,
        )
        .unwrap();
        assert_eq!(s.available(0, &l), 8);
        // A huge progress under a tiny old interval, then a huge gap: saturates, no overflow.
        let s: BucketState = serde_json::from_str(
            r#"{"at_ms": 0, "tokens": 4294967295, "progress_ns": 18446744073709551615, "interval_ns": 1}"#,
        )
        .unwrap();
        let slow = Limits {
            burst: u32::MAX,
            per_second: 1e-300,
        };
        assert_eq!(s.available(u64::MAX, &slow), u32::MAX);
        assert!(decide(&s, u64::MAX, u32::MAX, &slow)
            .unwrap()
            .1
            .is_admitted());
    }

    #[test]
    fn downgrade_caps_tokens_at_the_new_burst() {
        let config = TierConfig::default();
        let pro = config.limits_for(Tier::Pro, None);
        let free = config.limits_for(Tier::Free, None);
        let (s, _) = run(&BucketState::full(&pro, 0), 0, 30, &pro); // 30 of 60 left
        let (s, d) = run(&s, 0, 1, &free);
        assert_eq!(d.remaining(), 9); // capped at 10, one taken
        assert_eq!(s.available(0, &free), 9);
        // And it refills at the new rate: one token per 6 s.
        assert_eq!(s.available(5_999, &free), 9);
        assert_eq!(s.available(6_000, &free), 10);
    }

    #[test]
    fn upgrade_keeps_tokens_and_scales_progress() {
        let config = TierConfig::default();
        let free = config.limits_for(Tier::Free, None);
        let pro = config.limits_for(Tier::Pro, None);
        let (s, _) = run(&BucketState::full(&free, 0), 0, 8, &free); // 2 left
        let (s, _) = run(&s, 3_000, 0, &free); // half a token of progress (3 s of 6 s)
        let (s, d) = run(&s, 3_000, 1, &pro);
        assert_eq!(d.remaining(), 1);
        // Half of pro's 1 s interval is already done.
        assert_eq!(s.available(3_499, &pro), 1);
        assert_eq!(s.available(3_500, &pro), 2);
        assert_eq!(s.available(3_500 + 58_000, &pro), 60);
    }

    #[test]
    fn state_round_trips_through_json() {
        let l = limits(7, 0.5);
        let (s, _) = run(&BucketState::full(&l, 123), 999, 3, &l);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<BucketState>(&json).unwrap(), s);
        let d = Decision::Denied {
            retry_at_ms: 5,
            retry_after_ms: 2,
            reset_ms: 9,
        };
        let json = serde_json::to_value(d).unwrap();
        assert_eq!(json["outcome"], "denied");
        assert_eq!(serde_json::from_value::<Decision>(json).unwrap(), d);
    }

    #[test]
    fn scale_tier_sustains_its_rate() {
        let l = TierConfig::default().limits_for(Tier::Scale, None);
        let mut s = BucketState::full(&l, 0);
        let mut admitted = 0u64;
        // One request per ms for 10 s: burst 600 plus 10/s × 10 s = 700.
        for now in 0..10_000 {
            let (next, d) = run(&s, now, 1, &l);
            admitted += u64::from(d.is_admitted());
            s = next;
        }
        assert_eq!(admitted, 600 + 99); // the 100th refill lands at exactly 10_000 ms
    }

    // ---- per-minute buckets ----

    #[test]
    fn a_minute_bucket_refills_its_capacity_in_one_minute_exactly() {
        let mut b = MinuteBucket::full(4_096, 1_000);
        assert_eq!((b.remaining(), b.reset_ms(4_096)), (4_096, 0));
        assert_eq!(b.take(4_096, 4_096), Ok(true));
        assert_eq!((b.remaining(), b.reset_ms(4_096)), (0, 60_000));
        // One token every 60000/4096 = 14.65 ms: the first is there after 15 ms.
        assert_eq!(b.fits_at_ms(1, 4_096), 1_015);
        b.advance(1_014, 4_096);
        assert_eq!(b.take(1, 4_096), Ok(false));
        b.advance(1_015, 4_096);
        assert_eq!(b.take(1, 4_096), Ok(true));
        b.advance(1_000_000, 4_096);
        assert_eq!(b.remaining(), 4_096, "capped at the capacity");
    }

    #[test]
    fn a_minute_bucket_refuses_more_than_its_capacity_and_takes_debt_one_capacity_deep() {
        let mut b = MinuteBucket::full(100, 0);
        assert_eq!(b.take(101, 100), Err(TooLarge { capacity: 100 }));
        assert_eq!(b.remaining(), 100);
        b.charge(150, 100);
        assert_eq!((b.remaining(), b.reset_ms(100)), (0, 90_000));
        assert_eq!(b.fits_at_ms(1, 100), 30_600);
        b.charge(1_000, 100);
        assert_eq!(b.reset_ms(100), 120_000, "at most one capacity of debt");
        b.give_back(1_000 * UNITS_PER_TOKEN, 100);
        assert_eq!(b.remaining(), 100, "a refund is capped at the capacity");
    }

    #[test]
    fn a_minute_bucket_follows_a_changed_limit_and_a_clock_going_back() {
        let mut b = MinuteBucket::full(1_000, 10_000);
        b.advance(10_000, 10);
        assert_eq!(b.remaining(), 10, "a lower capacity caps the level");
        b.advance(0, 10);
        assert_eq!(b.at_ms(), 10_000);
        assert_eq!(b.take(10, 10), Ok(true));
        b.advance(5_000, 1_000);
        assert_eq!(b.remaining(), 0, "an earlier clock refills nothing");
        // A zero limit (never valid) holds nothing and never refills.
        let mut z = MinuteBucket::full(0, 0);
        assert_eq!(z.take(1, 0), Err(TooLarge { capacity: 0 }));
        z.advance(u64::MAX, 0);
        assert_eq!((z.remaining(), z.reset_ms(0)), (0, 0));
        assert_eq!(z.fits_at_ms(1, 0), u64::MAX);
        // Huge gaps and limits do not overflow.
        let mut h = MinuteBucket::full(crate::limits::tier::MAX_PER_MINUTE, 0);
        h.charge(u64::MAX, crate::limits::tier::MAX_PER_MINUTE);
        h.advance(u64::MAX, crate::limits::tier::MAX_PER_MINUTE);
        assert_eq!(h.remaining(), crate::limits::tier::MAX_PER_MINUTE);
    }

    // ---- properties ----

    fn arb_limits() -> impl Strategy<Value = Limits> {
        prop_oneof![
            // Small buckets that the walk drains, so the bound is tight.
            8 => (1u32..=20, 0.01f64..=50.0).prop_map(|(b, r)| limits(b, r)),
            2 => (1u32..=1_000_000, crate::limits::tier::MIN_PER_SECOND..=100_000.0)
                .prop_map(|(b, r)| limits(b, r)),
            1 => Just(limits(10, 10.0 / 60.0)),
            1 => Just(limits(2, 3.0)),
            1 => Just(limits(1, crate::limits::tier::MIN_PER_SECOND)),
        ]
    }

    fn arb_state(l: Limits) -> impl Strategy<Value = BucketState> {
        let interval = l.refill_interval_ns();
        (
            any::<u64>(),
            0..=l.burst,
            0..interval,
            prop_oneof![Just(interval), any::<u64>()],
        )
            .prop_map(|(at_ms, tokens, progress_ns, interval_ns)| BucketState {
                at_ms: at_ms >> 2, // leave room above for the walk
                tokens,
                progress_ns,
                interval_ns,
            })
    }

    fn arb_step(burst: u32) -> impl Strategy<Value = (i64, u32)> {
        let delta = prop_oneof![
            6 => -50i64..500,
            2 => -100_000i64..100_000_000,
            1 => Just(i64::MIN),
            1 => Just(i64::MAX),
        ];
        (delta, 0..=burst.min(50))
    }

    fn scenario() -> impl Strategy<Value = (Limits, BucketState, u64, Vec<(i64, u32)>)> {
        arb_limits().prop_flat_map(|l| {
            (
                Just(l),
                arb_state(l),
                any::<u64>(),
                prop::collection::vec(arb_step(l.burst), 1..200),
            )
        })
    }

    fn step_time(now: u64, delta: i64) -> u64 {
        if delta >= 0 {
            now.saturating_add(delta.unsigned_abs())
        } else {
            now.saturating_sub(delta.unsigned_abs())
        }
    }

    proptest! {
        /// Over every window of decisions i..=j, the tokens admitted never exceed
        /// burst + (elapsed / interval), checked exactly in integers as
        /// admitted × interval <= burst × interval + elapsed_ns, where elapsed runs on the
        /// bucket's clock (the latest time seen; from the first call for i = 0).
        #[test]
        fn never_admits_more_than_burst_plus_refill((l, start, t0, steps) in scenario()) {
            let interval = u128::from(l.refill_interval_ns());
            let burst = u128::from(l.burst);
            let mut state = start;
            let mut now = t0 >> 2;
            // (bucket clock at the decision, tokens admitted by it)
            let mut log: Vec<(u64, u128)> = Vec::new();
            for (delta, cost) in steps {
                now = step_time(now, delta);
                let (next, d) = decide(&state, now, cost, &l).unwrap();
                prop_assert!(next.at_ms >= state.at_ms);
                log.push((next.at_ms, if d.is_admitted() { u128::from(cost) } else { 0 }));
                state = next;
            }
            for i in 0..log.len() {
                let mut admitted = 0u128;
                for &(clock, took) in &log[i..] {
                    admitted += took;
                    let elapsed_ns = u128::from(clock - log[i].0) * NS_PER_MS;
                    prop_assert!(
                        admitted * interval <= burst * interval + elapsed_ns,
                        "window from {i}: admitted {admitted}, elapsed {elapsed_ns} ns"
                    );
                }
            }
        }

        /// A denial's retry time is exact: the same request at `retry_at_ms` is admitted, one
        /// millisecond earlier it is denied, and `retry_after_ms` is the distance from now.
        /// The reported reset time is exact too.
        #[test]
        fn retry_and_reset_times_are_exact((l, start, t0, steps) in scenario()) {
            let mut state = start;
            let mut now = t0 >> 2;
            for (delta, cost) in steps {
                now = step_time(now, delta);
                let (next, d) = decide(&state, now, cost, &l).unwrap();
                match d {
                    Decision::Denied { retry_at_ms, retry_after_ms, reset_ms } => {
                        prop_assert!(retry_at_ms > now.max(state.at_ms) || retry_at_ms == u64::MAX);
                        prop_assert_eq!(retry_after_ms, retry_at_ms - now);
                        if retry_at_ms < u64::MAX {
                            prop_assert!(decide(&state, retry_at_ms, cost, &l).unwrap().1.is_admitted());
                            prop_assert!(decide(&next, retry_at_ms, cost, &l).unwrap().1.is_admitted());
                            prop_assert!(!decide(&state, retry_at_ms - 1, cost, &l).unwrap().1.is_admitted());
                        }
                        prop_assert!(reset_ms > 0);
                    }
                    Decision::Admitted { remaining, reset_ms } => {
                        prop_assert_eq!(remaining, next.available(next.at_ms, &l));
                        let full_at = next.at_ms.checked_add(reset_ms);
                        if let Some(full_at) = full_at {
                            prop_assert_eq!(next.available(full_at, &l), l.burst);
                            if reset_ms > 0 {
                                prop_assert!(next.available(full_at - 1, &l) < l.burst);
                            }
                        }
                    }
                }
                state = next;
            }
        }

        /// No input panics: any stored state, any (even invalid) limits, any time and cost.
        #[test]
        fn never_panics_on_any_input(
            at_ms in any::<u64>(), tokens in any::<u32>(), progress_ns in any::<u64>(),
            interval_ns in any::<u64>(), burst in any::<u32>(), per_second in any::<f64>(),
            now in any::<u64>(), cost in any::<u32>(),
        ) {
            let state = BucketState { at_ms, tokens, progress_ns, interval_ns };
            let l = Limits { burst, per_second };
            if let Ok((next, d)) = decide(&state, now, cost, &l) {
                prop_assert!(next.tokens <= burst);
                prop_assert!(d.remaining() <= burst);
                let _ = next.available(now, &l);
            }
        }

        /// Refill is path independent: looking at the bucket in between changes nothing.
        #[test]
        fn refill_is_path_independent((l, start, t0, steps) in scenario()) {
            let mut state = start;
            let mut now = t0 >> 2;
            for (delta, _) in steps {
                now = step_time(now, delta);
                state = decide(&state, now, 0, &l).unwrap().0;
            }
            prop_assert_eq!(
                start.available(state.at_ms, &l),
                state.available(state.at_ms, &l)
            );
        }
    }
}
