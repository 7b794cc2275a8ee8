//! The `TokenBucket` Durable Object's protocol and state, as plain types: the operations the
//! gateway sends ([`BucketOp`]), their typed answers ([`TakeReply`]), and what one key's bucket
//! stores ([`KeyBucket`]) with the logic of a `take`. The object is a shell around these.
//!
//! On the wire an operation is its JSON (`{"op":"take","cost":1,"limits":{...}}`), and so is
//! its answer: a `take` answers a [`TakeReply`] (`{"Ok":{"outcome":"admitted",...}}` or
//! `{"Err":{"refusal":"revoked"}}`); every other operation answers `null` once applied.

use serde::{Deserialize, Serialize};

use crate::limits::bucket::{decide, BucketState, Decision};
use crate::limits::tier::Limits;

/// What the gateway asks of a key's `TokenBucket`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum BucketOp {
    /// Take `cost` tokens under `limits` (the caller's tier decides them): a [`TakeReply`].
    Take { cost: u32, limits: Limits },
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
}

/// Why a bucket refuses a `take` whatever its tokens (a denial for want of tokens is a
/// [`Decision::Denied`], not a refusal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "refusal", rename_all = "snake_case")]
pub enum TakeRefusal {
    /// The key was revoked.
    Revoked,
    /// The cost can never fit this bucket: waiting will not help.
    InsufficientCapacity { burst: u32 },
}

/// The answer to [`BucketOp::Take`]: the bucket's decision, or its refusal.
pub type TakeReply = Result<Decision, TakeRefusal>;

/// What one key's `TokenBucket` stores.
///
/// State stored by an older build may carry a `broken` field (the test hook's flag, always
/// stored by builds before the `dev-hooks` feature): a build without the hook ignores it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyBucket {
    /// The bucket, once a first `take` made it.
    pub bucket: Option<BucketState>,
    pub revoked: bool,
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
        let json = serde_json::to_value(take).unwrap();
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
}
