//! Client of the `TokenBucket` Durable Object (one per API key). Any failure to reach it is a
//! 503: rate limiting fails closed.

use gateway_core::limits::tier::Limits;
use worker::Env;

use crate::durable_objects::{self, TakeReply, TakeRequest};
use crate::edge::{dependency, Outcome};

async fn call(env: &Env, prefix: &str, path: &str, body: String) -> Outcome<String> {
    durable_objects::post(env, "TOKEN_BUCKET", prefix, path, body).await
}

/// Takes `cost` tokens from the key's bucket.
pub async fn take(env: &Env, prefix: &str, cost: u32, limits: Limits) -> Outcome<TakeReply> {
    let body =
        serde_json::to_string(&TakeRequest { cost, limits }).map_err(dependency("encode"))?;
    let text = call(env, prefix, "/take", body).await?;
    serde_json::from_str(&text).map_err(dependency("TokenBucket reply"))
}

/// Test hook behind the dev-only route: makes the key's bucket fail every decision.
pub async fn break_for_tests(env: &Env, prefix: &str) -> Outcome<()> {
    call(env, prefix, "/break", "{}".into()).await.map(|_| ())
}

/// Clears the bucket of a prefix a new key has just taken: a prefix is free again only once
/// its previous key's account was deleted, which left that bucket revoked.
pub async fn reset(env: &Env, prefix: &str) -> Outcome<()> {
    call(env, prefix, "/reset", "{}".into()).await.map(|_| ())
}

/// Marks the key revoked in its bucket: refused from the next call on.
pub async fn revoke(env: &Env, prefix: &str) -> Outcome<()> {
    call(env, prefix, "/revoke", "{}".into()).await.map(|_| ())
}

/// A bare round trip to the bucket instance named `name`, which does nothing (no storage):
/// the baseline of the rate-limit load benchmark (dev-only route).
pub async fn ping(env: &Env, name: &str) -> Outcome<()> {
    call(env, name, "/ping", "{}".into()).await.map(|_| ())
}
