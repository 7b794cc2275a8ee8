//! The `TokenBucket` Durable Object's protocol and state, as plain types: the operations the
//! gateway sends ([`BucketOp`]), their typed answers ([`TakeReply`], [`ReserveReply`]), and
//! what one key's bucket stores ([`KeyBucket`]: its call bucket, its token buckets and their
//! open reservations) with the logic of each operation. The object is a shell around these.
//!
//! On the wire an operation is its JSON (`{"op":"take","cost":1,"limits":{...}}`), and so is
//! its answer: a `take` answers a [`TakeReply`] (`{"Ok":{"outcome":"admitted",...}}` or
//! `{"Err":{"refusal":"revoked"}}`), a `reserve` a [`ReserveReply`], a `release` a
//! [`SettleReply`]; every other operation answers `null` once applied.
//!
//! A miss makes one round trip here: `reserve` takes the call token and reserves the worst-case
//! input and output tokens at once, all or nothing (`limits::reservation`). After the call, its
//! [`Settlement`] gives the unused tokens back (or takes the extra into debt), carried by the
//! key's next `reserve` or sent in a `settle_all`; a call another limiter
//! refused is `release`d (its tokens come back; its call token stays spent, as a call the
//! ledger refuses spends it). Reservations never settled expire at their reserved amount: the
//! object's alarm runs [`KeyBucket::expire`] at [`KeyBucket::next_expiry`].

use crate::wire::tagged_enum;
use serde::{Deserialize, Serialize};

use crate::limits::bucket::{decide, BucketState, Decision};
use crate::limits::reservation::{
    Amounts, LimitName, MeterRefusal, Meters, Reading, UnknownReservation,
};
use crate::limits::tier::{Limits, MinuteLimits};

tagged_enum! {
    tag = "op";
    /// What the gateway asks of a key's `TokenBucket`.
    #[derive(Debug, Clone, PartialEq)]
    pub enum BucketOp {
        /// Take `cost` tokens under `limits` (the caller's tier decides them): a [`TakeReply`].
        Take { cost: u32, limits: Limits },
        /// Take one call token under `limits` and reserve the call's worst-case tokens under
        /// `tokens` as reservation `id`, all or nothing: a [`ReserveReply`].
        /// Settlements the gateway's isolate queued for this key travel ahead of it (`settled`):
        /// they are applied first, so the reply reads the buckets after them.
        Reserve {
            id: String,
            limits: Limits,
            tokens: MinuteLimits,
            input_tokens: u64,
            output_tokens: u64,
            #[serde(default, skip_serializing_if = "Vec::is_empty")]
            settled: Vec<Settlement>,
        },
        /// Settle each reservation of `settled` with the tokens its call used (settlements that
        /// found no reservation to ride on in time): `null`.
        SettleAll { settled: Vec<Settlement> },
        /// Give reservation `id`'s tokens back (another limiter refused the call): a
        /// [`SettleReply`].
        Release { id: String, tokens: MinuteLimits },
        /// Mark the key revoked: every later `take` is refused, whatever the tokens.
        Revoke,
        /// Start over, as a new bucket (a new key took a prefix whose previous key's account was
        /// deleted, which left the bucket revoked).
        Reset,
        /// Test hook: every later `take` fails, so tests see the gateway fail closed.
        #[cfg(feature = "dev-hooks")]
        Break,
        /// Test hook: a bare round trip touching neither storage nor state (the baseline of the
        /// rate-limit load benchmark).
        #[cfg(feature = "dev-hooks")]
        Ping,
        /// Test hook: the bucket's in-memory copy forgotten, so that its next operation reads
        /// what storage holds, after storing it again in the form written before 2026-12-07
        /// (a JavaScript object, not JSON text) when `old_form` (`src/objects/stored.rs`).
        #[cfg(feature = "dev-hooks")]
        Reread { old_form: bool },
    }
}

/// One call's settlement, queued by the gateway's isolate after the call and sent ahead of the
/// key's next reservation (or alone, [`BucketOp::SettleAll`], when none comes soon). Applying
/// it twice changes nothing: a settled reservation is closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settlement {
    pub id: String,
    pub tokens: MinuteLimits,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

tagged_enum! {
    tag = "refusal";
    /// Why a bucket refuses a `take` whatever its tokens (a denial for want of tokens is a
    /// [`Decision::Denied`], not a refusal).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum TakeRefusal {
        /// The key was revoked.
        Revoked,
        /// The cost can never fit this bucket: waiting will not help.
        InsufficientCapacity { burst: u32 },
    }
}

/// The answer to [`BucketOp::Take`]: the bucket's decision, or its refusal.
pub type TakeReply = Result<Decision, TakeRefusal>;

/// An admitted [`BucketOp::Reserve`]: the call bucket's decision (admitted) and the token
/// buckets after the reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyAdmission {
    pub calls: Decision,
    pub tokens: Vec<Reading>,
}

tagged_enum! {
    tag = "refusal";
    /// Why a [`BucketOp::Reserve`] was refused. A refusal takes nothing.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum ReserveRefusal {
        /// The key was revoked.
        Revoked,
        /// A call can never fit the call bucket (a burst of 0: never valid).
        InsufficientCapacity { burst: u32 },
        /// The worst case exceeds a token bucket's capacity: a 429 `request_too_large`.
        TooLarge {
            limit: LimitName,
            capacity: u64,
            needed: u64,
        },
        /// Not enough yet: at `retry_at_ms` the call token and every token bucket fit, and `limit`
        /// is the last of them to fit. `calls` and `tokens` are the buckets as they stand.
        Limited {
            limit: LimitName,
            retry_at_ms: u64,
            retry_after_ms: u64,
            calls: Decision,
            tokens: Vec<Reading>,
        },
        /// A reservation with this id is already open (the gateway's own fault).
        DuplicateReservation,
    }
}

/// The answer to [`BucketOp::Reserve`].
pub type ReserveReply = Result<KeyAdmission, ReserveRefusal>;

/// The answer to [`KeyBucket::settle`] and [`BucketOp::Release`]: the token buckets after it,
/// or `None` when no such reservation is open (already settled, released or expired: nothing
/// is charged twice).
pub type SettleReply = Option<Vec<Reading>>;

/// What one key's `TokenBucket` stores.
///
/// State stored by an older build may carry a `broken` field (the test hook's flag, always
/// stored by builds before the `dev-hooks` feature): a build without the hook ignores it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyBucket {
    /// The bucket, once a first `take` made it.
    pub bucket: Option<BucketState>,
    pub revoked: bool,
    /// The key's token buckets and their open reservations.
    #[serde(default, skip_serializing_if = "Meters::is_empty")]
    pub tokens: Meters,
    /// Test hook: every `take` fails (set by [`BucketOp::Break`]).
    #[cfg(feature = "dev-hooks")]
    #[serde(default)]
    pub broken: bool,
}

impl KeyBucket {
    /// Takes `cost` tokens at `now_ms` under `limits` (a new bucket starts full). Returns the
    /// answer and whether the record changed and must be stored: an admission changes it, and
    /// so does the first decision of a new bucket; a denial or a refusal leaves it as stored.
    pub fn take(&mut self, cost: u32, limits: &Limits, now_ms: u64) -> (TakeReply, bool) {
        if self.revoked {
            return (Err(TakeRefusal::Revoked), false);
        }
        let current = self
            .bucket
            .unwrap_or_else(|| BucketState::full(limits, now_ms));
        match decide(&current, now_ms, cost, limits) {
            Ok((next, decision)) => {
                let changed = decision.is_admitted() || self.bucket.is_none();
                if changed {
                    self.bucket = Some(next);
                }
                (Ok(decision), changed)
            }
            Err(e) => (
                Err(TakeRefusal::InsufficientCapacity { burst: e.burst }),
                false,
            ),
        }
    }
}

impl KeyBucket {
    /// Reserves one call token under `limits` and the worst case `input_tokens` and
    /// `output_tokens` under `tokens` as reservation `id` at `now_ms`, all or nothing. Returns
    /// the answer and whether the record changed and must be stored (an admission, the first
    /// decision of a new bucket, or reservations that expired on the way).
    pub fn reserve(
        &mut self,
        id: &str,
        limits: &Limits,
        tokens: &MinuteLimits,
        input_tokens: u64,
        output_tokens: u64,
        now_ms: u64,
    ) -> (ReserveReply, bool) {
        if self.revoked {
            return (Err(ReserveRefusal::Revoked), false);
        }
        let mut changed = !self.tokens.expire(now_ms).is_empty();
        let calls_now = self
            .bucket
            .unwrap_or_else(|| BucketState::full(limits, now_ms));
        let (calls_next, calls) = match decide(&calls_now, now_ms, 1, limits) {
            Ok(d) => d,
            Err(e) => {
                return (
                    Err(ReserveRefusal::InsufficientCapacity { burst: e.burst }),
                    changed,
                )
            }
        };
        let amounts = Amounts {
            requests: 0,
            input_tokens,
            output_tokens,
        };
        let mut meters = self.tokens.clone();
        let reserved = meters.reserve(id, amounts, tokens, now_ms);
        let refusal = match (&calls, reserved) {
            (Decision::Admitted { .. }, Ok(readings)) => {
                self.bucket = Some(calls_next);
                self.tokens = meters;
                return (
                    Ok(KeyAdmission {
                        calls,
                        tokens: readings,
                    }),
                    true,
                );
            }
            (_, Err(MeterRefusal::DuplicateReservation)) => ReserveRefusal::DuplicateReservation,
            (_, Err(MeterRefusal::TooLarge { limit, capacity })) => ReserveRefusal::TooLarge {
                limit,
                capacity,
                needed: amounts.get(limit),
            },
            (calls, reserved) => {
                // The later of the call token's and the tokens' retry times.
                let mut short = match reserved {
                    Err(MeterRefusal::Limited {
                        limit, retry_at_ms, ..
                    }) => Some((limit, retry_at_ms)),
                    _ => None,
                };
                if let Decision::Denied { retry_at_ms, .. } = calls {
                    if short.is_none_or(|(_, at)| *retry_at_ms >= at) {
                        short = Some((LimitName::Requests, *retry_at_ms));
                    }
                }
                let (limit, retry_at_ms) = short.unwrap_or((LimitName::Requests, now_ms));
                ReserveRefusal::Limited {
                    limit,
                    retry_at_ms,
                    retry_after_ms: retry_at_ms.saturating_sub(now_ms).max(1),
                    calls: *calls,
                    tokens: self.tokens.readings(tokens, now_ms),
                }
            }
        };
        if self.bucket.is_none() {
            // A new bucket is stored after its first decision, as `take` does.
            self.bucket = Some(calls_now);
            changed = true;
        }
        (Err(refusal), changed)
    }

    /// Settles reservation `id` with the tokens the call used. Returns the answer and whether
    /// the record changed.
    pub fn settle(
        &mut self,
        id: &str,
        tokens: &MinuteLimits,
        input_tokens: u64,
        output_tokens: u64,
        now_ms: u64,
    ) -> (SettleReply, bool) {
        let expired = !self.tokens.expire(now_ms).is_empty();
        match self
            .tokens
            .settle(id, input_tokens, output_tokens, tokens, now_ms)
        {
            Ok(readings) => (Some(readings), true),
            Err(UnknownReservation) => (None, expired),
        }
    }

    /// Applies `settled` in order (see [`KeyBucket::settle`]); whether the record changed.
    pub fn settle_all(&mut self, settled: &[Settlement], now_ms: u64) -> bool {
        settled.iter().fold(false, |changed, s| {
            let (_, c) = self.settle(&s.id, &s.tokens, s.input_tokens, s.output_tokens, now_ms);
            changed | c
        })
    }

    /// Gives reservation `id`'s tokens back. Returns the answer and whether the record changed.
    pub fn release(&mut self, id: &str, tokens: &MinuteLimits, now_ms: u64) -> (SettleReply, bool) {
        let expired = !self.tokens.expire(now_ms).is_empty();
        match self.tokens.release(id, tokens, now_ms) {
            Ok(readings) => (Some(readings), true),
            Err(UnknownReservation) => (None, expired),
        }
    }

    /// Closes the reservations whose deadline has passed at their reserved amount; whether any
    /// did (the object's alarm).
    pub fn expire(&mut self, now_ms: u64) -> bool {
        !self.tokens.expire(now_ms).is_empty()
    }

    /// When the object's alarm should next run [`KeyBucket::expire`].
    pub fn next_expiry(&self) -> Option<u64> {
        self.tokens.next_expiry()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(burst: u32, per_second: f64) -> Limits {
        Limits::new(burst, per_second).unwrap()
    }

    #[test]
    fn ops_travel_as_tagged_json() {
        let take = BucketOp::Take {
            cost: 1,
            limits: limits(5, 1.0),
        };
        let json = serde_json::to_value(&take).unwrap();
        assert_eq!(json["op"], "take");
        assert_eq!(json["cost"], 1);
        assert_eq!(json["limits"]["burst"], 5);
        assert_eq!(serde_json::from_value::<BucketOp>(json).unwrap(), take);
        for (op, name) in [(BucketOp::Revoke, "revoke"), (BucketOp::Reset, "reset")] {
            let text = serde_json::to_string(&op).unwrap();
            assert_eq!(text, format!(r#"{{"op":"{name}"}}"#));
            assert_eq!(serde_json::from_str::<BucketOp>(&text).unwrap(), op);
        }
        assert!(serde_json::from_str::<BucketOp>(r#"{"op":"take"}"#).is_err());
        assert!(serde_json::from_str::<BucketOp>(r#"{"op":"explode"}"#).is_err());
    }

    #[cfg(not(feature = "dev-hooks"))]
    #[test]
    fn a_build_without_the_hooks_knows_no_hook_ops() {
        for op in [r#"{"op":"break"}"#, r#"{"op":"ping"}"#] {
            assert!(serde_json::from_str::<BucketOp>(op).is_err(), "{op}");
        }
    }

    #[test]
    fn replies_round_trip_as_results() {
        let admitted: TakeReply = Ok(Decision::Admitted {
            remaining: 4,
            reset_ms: 1_000,
        });
        let text = serde_json::to_string(&admitted).unwrap();
        assert!(text.contains(r#""outcome":"admitted""#), "{text}");
        assert_eq!(serde_json::from_str::<TakeReply>(&text).unwrap(), admitted);
        for refusal in [
            TakeRefusal::Revoked,
            TakeRefusal::InsufficientCapacity { burst: 3 },
        ] {
            let reply: TakeReply = Err(refusal);
            let text = serde_json::to_string(&reply).unwrap();
            assert_eq!(serde_json::from_str::<TakeReply>(&text).unwrap(), reply);
        }
        let text = serde_json::to_string(&TakeReply::Err(TakeRefusal::Revoked)).unwrap();
        assert_eq!(text, r#"{"Err":{"refusal":"revoked"}}"#);
    }

    #[test]
    fn a_new_bucket_starts_full_and_is_stored_after_its_first_decision() {
        let l = limits(2, 1.0);
        let mut key = KeyBucket::default();
        let (reply, changed) = key.take(1, &l, 1_000);
        assert!(changed);
        assert!(matches!(reply, Ok(Decision::Admitted { remaining: 1, .. })));
        assert!(key.bucket.is_some());
        let (reply, changed) = key.take(1, &l, 1_000);
        assert!(changed);
        assert!(matches!(reply, Ok(Decision::Admitted { remaining: 0, .. })));
        // A denial leaves the stored bucket as it was.
        let before = key.clone();
        let (reply, changed) = key.take(1, &l, 1_000);
        assert!(!changed);
        assert!(matches!(reply, Ok(Decision::Denied { .. })));
        assert_eq!(key, before);
    }

    #[test]
    fn a_free_take_still_stores_a_new_bucket() {
        let mut key = KeyBucket::default();
        assert!(key.take(0, &limits(1, 1.0), 5).1);
        assert!(key.bucket.is_some());
    }

    #[test]
    fn a_revoked_key_and_an_impossible_cost_are_refused_without_a_change() {
        let l = limits(2, 1.0);
        let mut key = KeyBucket::default();
        assert_eq!(
            key.take(3, &l, 0),
            (Err(TakeRefusal::InsufficientCapacity { burst: 2 }), false)
        );
        assert_eq!(key, KeyBucket::default());
        key.revoked = true;
        assert_eq!(key.take(1, &l, 0), (Err(TakeRefusal::Revoked), false));
        assert!(key.bucket.is_none());
    }

    fn tokens(input: u64, output: u64) -> MinuteLimits {
        MinuteLimits::tokens(input, output)
    }

    #[test]
    fn a_reserve_takes_a_call_and_the_worst_case_tokens_in_one_operation() {
        let (l, t) = (limits(10, 1.0), tokens(1_000, 100));
        let mut key = KeyBucket::default();
        let (reply, changed) = key.reserve("a", &l, &t, 250, 64, 0);
        assert!(changed);
        let admitted = reply.unwrap();
        assert_eq!(admitted.calls.remaining(), 9);
        assert_eq!(admitted.tokens[0].remaining, 750);
        assert_eq!(admitted.tokens[1].remaining, 36);
        // Settled with what it used: the unused tokens come back; the call stays taken.
        let (reply, changed) = key.settle("a", &t, 200, 10, 0);
        assert!(changed);
        let readings = reply.unwrap();
        assert_eq!((readings[0].remaining, readings[1].remaining), (800, 90));
        assert_eq!(key.settle("a", &t, 200, 10, 0), (None, false), "once only");
        assert_eq!(key.bucket.unwrap().available(0, &l), 9);
    }

    #[test]
    fn a_refused_reserve_takes_nothing_and_names_the_limit_that_fits_last() {
        let (l, t) = (limits(2, 1.0), tokens(1_000, 100));
        let mut key = KeyBucket::default();
        key.reserve("a", &l, &t, 900, 10, 0).0.unwrap();
        let before = key.clone();
        let (reply, changed) = key.reserve("b", &l, &t, 200, 10, 0);
        assert!(!changed);
        assert_eq!(key, before);
        let Err(ReserveRefusal::Limited {
            limit,
            retry_at_ms,
            retry_after_ms,
            calls,
            tokens: readings,
        }) = reply
        else {
            panic!("expected a refusal: {reply:?}");
        };
        assert_eq!(
            (limit, retry_at_ms, retry_after_ms),
            (LimitName::InputTokens, 6_000, 6_000)
        );
        assert!(calls.is_admitted(), "the call token alone would fit");
        assert_eq!(readings[0].remaining, 100);
        // The call bucket empty and tokens short: the later of the two is named.
        key.reserve("b", &l, &t, 0, 0, 0).0.unwrap();
        let (reply, _) = key.reserve("c", &l, &t, 100, 0, 0);
        assert!(matches!(
            reply,
            Err(ReserveRefusal::Limited {
                limit: LimitName::Requests,
                retry_at_ms: 1_000,
                ..
            })
        ));
        assert!(key.reserve("c", &l, &t, 100, 0, 1_000).0.is_ok());
    }

    #[test]
    fn a_worst_case_above_a_capacity_is_too_large_and_a_revoked_key_is_refused_first() {
        let (l, t) = (limits(10, 1.0), tokens(1_000, 100));
        let mut key = KeyBucket::default();
        let (reply, changed) = key.reserve("a", &l, &t, 10, 101, 0);
        assert_eq!(
            reply,
            Err(ReserveRefusal::TooLarge {
                limit: LimitName::OutputTokens,
                capacity: 100,
                needed: 101
            })
        );
        assert!(changed, "a new bucket is stored after its first decision");
        assert_eq!(key.bucket.unwrap().available(0, &l), 10, "no call taken");
        key.revoked = true;
        assert_eq!(
            key.reserve("b", &l, &t, 1, 1, 0),
            (Err(ReserveRefusal::Revoked), false)
        );
        assert!(matches!(
            key.reserve("a", &l, &t, 1, 1, 0).0,
            Err(ReserveRefusal::Revoked)
        ));
    }

    #[test]
    fn a_release_returns_the_tokens_and_expiry_keeps_them_taken() {
        let (l, t) = (limits(10, 1.0), tokens(1_000, 100));
        let mut key = KeyBucket::default();
        key.reserve("a", &l, &t, 500, 50, 0).0.unwrap();
        key.reserve("b", &l, &t, 400, 40, 0).0.unwrap();
        assert_eq!(key.release("a", &t, 0).0.unwrap()[0].remaining, 600);
        assert_eq!(key.release("a", &t, 0), (None, false));
        let deadline = key.next_expiry().unwrap();
        assert!(!key.expire(deadline - 1));
        assert!(key.expire(deadline));
        assert_eq!(key.next_expiry(), None);
        assert_eq!(key.settle("b", &t, 0, 0, deadline), (None, false));
        // A duplicate id is the gateway's own fault.
        key.reserve("c", &l, &t, 1, 1, deadline).0.unwrap();
        assert_eq!(
            key.reserve("c", &l, &t, 1, 1, deadline).0,
            Err(ReserveRefusal::DuplicateReservation)
        );
    }

    #[test]
    fn reserve_ops_and_replies_travel_as_tagged_json() {
        let op = BucketOp::Reserve {
            id: "req_1".into(),
            limits: limits(10, 1.0),
            tokens: tokens(20_000, 4_096),
            input_tokens: 26,
            output_tokens: 256,
            settled: Vec::new(),
        };
        let json = serde_json::to_value(&op).unwrap();
        assert_eq!(json["op"], "reserve");
        assert!(
            json.get("settled").is_none(),
            "no settlements, no field: {json}"
        );
        assert_eq!(json["tokens"]["input_tokens"], 20_000);
        assert_eq!(serde_json::from_value::<BucketOp>(json).unwrap(), op);
        for op in [
            BucketOp::SettleAll {
                settled: vec![Settlement {
                    id: "x".into(),
                    tokens: tokens(1, 1),
                    input_tokens: 1,
                    output_tokens: 2,
                }],
            },
            BucketOp::Release {
                id: "x".into(),
                tokens: tokens(1, 1),
            },
        ] {
            let text = serde_json::to_string(&op).unwrap();
            assert_eq!(serde_json::from_str::<BucketOp>(&text).unwrap(), op);
        }
        let mut key = KeyBucket::default();
        for reply in [
            key.reserve("a", &limits(1, 1.0), &tokens(9, 9), 1, 1, 0).0,
            key.reserve("b", &limits(1, 1.0), &tokens(9, 9), 1, 1, 0).0,
            key.reserve("c", &limits(1, 1.0), &tokens(9, 9), 10, 1, 0).0,
        ] {
            let text = serde_json::to_string(&reply).unwrap();
            assert_eq!(serde_json::from_str::<ReserveReply>(&text).unwrap(), reply);
        }
        let text = serde_json::to_string(&key).unwrap();
        assert_eq!(serde_json::from_str::<KeyBucket>(&text).unwrap(), key);
    }

    #[test]
    fn stored_state_of_older_builds_still_loads() {
        let old = r#"{"bucket":null,"revoked":true,"broken":false}"#;
        let key: KeyBucket = serde_json::from_str(old).unwrap();
        assert!(key.revoked);
        let older = r#"{"bucket":null,"revoked":false}"#;
        assert_eq!(
            serde_json::from_str::<KeyBucket>(older).unwrap(),
            KeyBucket::default()
        );
    }

    #[test]
    fn settlements_queued_ahead_of_a_reservation_are_applied_first_and_only_once() {
        let (l, t) = (limits(100, 100.0), tokens(1_000, 1_000));
        let mut key = KeyBucket::default();
        key.reserve("a", &l, &t, 100, 900, 0).0.unwrap();
        let used = Settlement {
            id: "a".into(),
            tokens: t,
            input_tokens: 100,
            output_tokens: 10,
        };
        // The next reservation carries the settlement: its reply already has the refund.
        let op = BucketOp::Reserve {
            id: "b".into(),
            limits: l,
            tokens: t,
            input_tokens: 100,
            output_tokens: 900,
            settled: vec![used.clone()],
        };
        let text = serde_json::to_string(&op).unwrap();
        let BucketOp::Reserve { settled, .. } = serde_json::from_str::<BucketOp>(&text).unwrap()
        else {
            panic!("not a reserve: {text}")
        };
        assert!(key.settle_all(&settled, 0));
        let admitted = key.reserve("b", &l, &t, 100, 900, 0).0.unwrap();
        let output = admitted
            .tokens
            .iter()
            .find(|r| r.limit == LimitName::OutputTokens)
            .unwrap();
        // 1,000 - 10 used by a - 900 held by b.
        assert_eq!(output.remaining, 90);
        // Sent again (a retried batch), it finds the reservation closed: nothing changes.
        let before = key.clone();
        assert!(!key.settle_all(&[used], 0));
        assert_eq!(key, before);
        let all = BucketOp::SettleAll { settled };
        let text = serde_json::to_string(&all).unwrap();
        assert_eq!(serde_json::from_str::<BucketOp>(&text).unwrap(), all);
    }
}
