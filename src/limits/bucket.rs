//! Typed client of the `TokenBucket` Durable Object (one per API key): encodes a `BucketOp`,
//! decodes its typed reply. Any failure to reach it is a 503: rate limiting fails closed.

use gateway_core::limits::bucket_ops::{BucketOp, ReserveReply, SettleReply, TakeReply};
use gateway_core::limits::tier::{Limits, MinuteLimits};
use serde::de::DeserializeOwned;
use worker::Env;

use crate::objects;
use crate::runtime::dependency;
use gateway_core::error::ApiResult;

/// Sends `op` to the bucket named `name` (a key prefix) and decodes its reply.
async fn call<R: DeserializeOwned>(env: &Env, name: &str, op: BucketOp) -> ApiResult<R> {
    let op = serde_json::to_string(&op).map_err(dependency("encode"))?;
    objects::call(env, "TOKEN_BUCKET", name, &op, "TokenBucket reply").await
}

/// Takes `cost` tokens from the key's bucket: its decision (admitted or denied), or its
/// refusal (revoked key, a cost the bucket can never hold). The miss path reserves instead
/// ([`reserve`]); the dashboard's login throttle and the dev-only routes take.
pub async fn take(env: &Env, prefix: &str, cost: u32, limits: Limits) -> ApiResult<TakeReply> {
    call(env, prefix, BucketOp::Take { cost, limits }).await
}

/// Takes a call token and reserves the call's worst-case tokens as reservation `id`, in one
/// round trip: the key's admission, or its refusal (revoked, too large, not yet).
pub async fn reserve(
    env: &Env,
    prefix: &str,
    id: &str,
    limits: Limits,
    tokens: MinuteLimits,
    input_tokens: u64,
    output_tokens: u64,
) -> ApiResult<ReserveReply> {
    let op = BucketOp::Reserve {
        id: id.to_string(),
        limits,
        tokens,
        input_tokens,
        output_tokens,
    };
    call(env, prefix, op).await
}

/// Settles reservation `id` with the tokens the call used (`None`: it was not open).
pub async fn settle(
    env: &Env,
    prefix: &str,
    id: &str,
    tokens: MinuteLimits,
    input_tokens: u64,
    output_tokens: u64,
) -> ApiResult<SettleReply> {
    let op = BucketOp::Settle {
        id: id.to_string(),
        tokens,
        input_tokens,
        output_tokens,
    };
    call(env, prefix, op).await
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
    call(env, prefix, op).await
}

/// Clears the bucket of a prefix a new key has just taken: a prefix is free again only once
/// its previous key's account was deleted, which left that bucket revoked.
pub async fn reset(env: &Env, prefix: &str) -> ApiResult<()> {
    call(env, prefix, BucketOp::Reset).await
}

/// Marks the key revoked in its bucket: refused from the next call on.
pub async fn revoke(env: &Env, prefix: &str) -> ApiResult<()> {
    call(env, prefix, BucketOp::Revoke).await
}

/// Test hook behind the dev-only route: makes the key's bucket fail every decision.
#[cfg(feature = "dev-hooks")]
pub async fn break_for_tests(env: &Env, prefix: &str) -> ApiResult<()> {
    call(env, prefix, BucketOp::Break).await
}

/// A bare round trip to the bucket instance named `name`, which does nothing (no storage):
/// the baseline of the rate-limit load benchmark (dev-only route).
#[cfg(feature = "dev-hooks")]
pub async fn ping(env: &Env, name: &str) -> ApiResult<()> {
    call(env, name, BucketOp::Ping).await
}
