//! Typed client of the `TokenBucket` Durable Object (one per API key): encodes a `BucketOp`,
//! decodes its typed reply. Any failure to reach it is a 503: rate limiting fails closed.
//!
//! A call's settlement needs no answer: it waits in an isolate-local queue per key and rides
//! ahead of that key's next reservation from this isolate (one round trip per miss, not two),
//! or goes alone `FLUSH_MS` later when none came. A settlement is idempotent, so one whose
//! send failed is queued again; one never delivered leaves its reservation to expire at its
//! reserved amount (the object's alarm), never free.

use std::cell::RefCell;

use gateway_core::limits::bucket_ops::{
    BucketOp, ReserveReply, SettleReply, Settlement, TakeReply,
};
use gateway_core::limits::tier::{Limits, MinuteLimits};
use serde::de::DeserializeOwned;
use worker::{console_error, Env};

use super::queue::Queued;
use crate::http::context::RequestContext;
use crate::objects;
use crate::runtime::dependency;
use gateway_core::error::ApiResult;

/// Sends `op` to the bucket named `name` (a key prefix) and decodes its reply.
async fn call<R: DeserializeOwned>(env: &Env, name: &str, op: &BucketOp) -> ApiResult<R> {
    let op = serde_json::to_string(op).map_err(dependency("encode"))?;
    objects::call(env, "TOKEN_BUCKET", name, &op, "TokenBucket reply").await
}

/// Takes `cost` tokens from the key's bucket: its decision (admitted or denied), or its
/// refusal (revoked key, a cost the bucket can never hold). The miss path reserves instead
/// ([`reserve`]); the dashboard's login throttle and the dev-only routes take.
pub async fn take(env: &Env, prefix: &str, cost: u32, limits: Limits) -> ApiResult<TakeReply> {
    call(env, prefix, &BucketOp::Take { cost, limits }).await
}

/// A call token taken as [`take`] takes it, answered as a [`reserve`] that reserves no tokens:
/// the gate of the benchmarks' calls-only baseline (`limits::calls_only`).
#[cfg(feature = "dev-hooks")]
pub async fn take_as_reservation(
    env: &Env,
    prefix: &str,
    limits: Limits,
) -> ApiResult<ReserveReply> {
    use gateway_core::limits::bucket::Decision;
    use gateway_core::limits::bucket_ops::{KeyAdmission, ReserveRefusal, TakeRefusal};
    use gateway_core::limits::reservation::LimitName;
    Ok(match take(env, prefix, 1, limits).await? {
        Ok(calls @ Decision::Admitted { .. }) => Ok(KeyAdmission {
            calls,
            tokens: Vec::new(),
        }),
        Ok(
            calls @ Decision::Denied {
                retry_at_ms,
                retry_after_ms,
                ..
            },
        ) => Err(ReserveRefusal::Limited {
            limit: LimitName::Requests,
            retry_at_ms,
            retry_after_ms,
            calls,
            tokens: Vec::new(),
        }),
        Err(TakeRefusal::Revoked) => Err(ReserveRefusal::Revoked),
        Err(TakeRefusal::InsufficientCapacity { burst }) => {
            Err(ReserveRefusal::InsufficientCapacity { burst })
        }
    })
}

/// How long a queued settlement waits for its key's next reservation before going alone.
const FLUSH_MS: u64 = 100;

thread_local! {
    /// Settlements queued per key prefix.
    static QUEUE: RefCell<Queued<Settlement>> = const { RefCell::new(Queued::new()) };
}

/// Takes a call token and reserves the call's worst-case tokens as reservation `id`, in one
/// round trip that first applies the settlements queued for the key: the key's admission (its
/// readings after those settlements), or its refusal (revoked, too large, not yet).
pub async fn reserve(
    cx: &RequestContext,
    prefix: &str,
    limits: Limits,
    tokens: MinuteLimits,
    input_tokens: u64,
    output_tokens: u64,
) -> ApiResult<ReserveReply> {
    let settled = take_queued(prefix);
    let op = BucketOp::Reserve {
        id: cx.request_id.clone(),
        limits,
        tokens,
        input_tokens,
        output_tokens,
        settled,
    };
    let result = call(&cx.env, prefix, &op).await;
    if result.is_err() {
        // They may have been applied; applying them again changes nothing.
        if let BucketOp::Reserve { settled, .. } = op {
            queue(cx, prefix, settled);
        }
    }
    result
}

/// Queues the settlement of reservation `id` with the tokens the call used (see the module).
pub fn settle_later(
    cx: &RequestContext,
    prefix: &str,
    id: &str,
    tokens: MinuteLimits,
    input_tokens: u64,
    output_tokens: u64,
) {
    let s = Settlement {
        id: id.to_string(),
        tokens,
        input_tokens,
        output_tokens,
    };
    queue(cx, prefix, vec![s]);
}

fn queue(cx: &RequestContext, prefix: &str, settled: Vec<Settlement>) {
    if settled.is_empty() {
        return;
    }
    let schedule = QUEUE.with(|q| {
        let mut q = q.borrow_mut();
        q.slot(prefix).extend(settled);
        q.schedule()
    });
    if schedule {
        cx.after(flush_later(cx.env.clone()));
    }
}

fn take_queued(prefix: &str) -> Vec<Settlement> {
    QUEUE.with(|q| q.borrow_mut().take(prefix))
}

/// Sends, `FLUSH_MS` from now, every key's settlements that no reservation carried meanwhile,
/// each key's in one call. A failed send is logged and left to the reservations' expiry (a
/// flush retrying forever would keep the isolate busy for a bucket that may be gone).
async fn flush_later(env: Env) {
    worker::Delay::from(std::time::Duration::from_millis(FLUSH_MS)).await;
    let due = QUEUE.with(|q| q.borrow_mut().drain());
    let sends = due.into_iter().map(|(prefix, settled)| {
        let env = env.clone();
        async move {
            let n = settled.len();
            let op = BucketOp::SettleAll { settled };
            if let Err(e) = call::<()>(&env, &prefix, &op).await {
                console_error!(
                    "bucket settlements not sent ({n}): {}; their reservations expire at their reserved amount",
                    e.code
                );
            }
        }
    });
    futures::future::join_all(sends).await;
}

/// Gives reservation `id`'s tokens back (another limiter refused the call).
pub async fn release(
    env: &Env,
    prefix: &str,
    id: &str,
    tokens: MinuteLimits,
) -> ApiResult<SettleReply> {
    let op = BucketOp::Release {
        id: id.to_string(),
        tokens,
    };
    call(env, prefix, &op).await
}

/// Clears the bucket of a prefix a new key has just taken: a prefix is free again only once
/// its previous key's account was deleted, which left that bucket revoked.
pub async fn reset(env: &Env, prefix: &str) -> ApiResult<()> {
    call(env, prefix, &BucketOp::Reset).await
}

/// Marks the key revoked in its bucket: refused from the next call on.
pub async fn revoke(env: &Env, prefix: &str) -> ApiResult<()> {
    call(env, prefix, &BucketOp::Revoke).await
}

/// Test hook behind the dev-only route: makes the key's bucket fail every decision.
#[cfg(feature = "dev-hooks")]
pub async fn break_for_tests(env: &Env, prefix: &str) -> ApiResult<()> {
    call(env, prefix, &BucketOp::Break).await
}

/// Test hook: the key's bucket read again from storage by its next operation, first stored in
/// its older form when `old_form` (dev-only route).
#[cfg(feature = "dev-hooks")]
pub async fn reread(env: &Env, prefix: &str, old_form: bool) -> ApiResult<()> {
    call(env, prefix, &BucketOp::Reread { old_form }).await
}

/// A bare round trip to the bucket instance named `name`, which does nothing (no storage):
/// the baseline of the rate-limit load benchmark (dev-only route).
#[cfg(feature = "dev-hooks")]
pub async fn ping(env: &Env, name: &str) -> ApiResult<()> {
    call(env, name, &BucketOp::Ping).await
}
