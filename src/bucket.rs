//! Client of the `TokenBucket` Durable Object (one per API key). Any failure to reach it is a
//! 503: rate limiting fails closed.

use gateway_core::tier::Limits;
use worker::{Env, Headers, Method, Request, RequestInit};

use crate::durable_objects::{TakeReply, TakeRequest};
use crate::edge::{dependency, Outcome};

async fn call(env: &Env, prefix: &str, path: &str, body: String) -> Outcome<String> {
    let ns = env
        .durable_object("TOKEN_BUCKET")
        .map_err(dependency("TokenBucket binding"))?;
    let stub = ns
        .id_from_name(prefix)
        .and_then(|id| id.get_stub())
        .map_err(dependency("TokenBucket stub"))?;
    let headers = Headers::new();
    let _ = headers.set("Content-Type", "application/json");
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(body.into()));
    let req = Request::new_with_init(&format!("https://bucket{path}"), &init)
        .map_err(dependency("TokenBucket request"))?;
    let mut resp = stub
        .fetch_with_request(req)
        .await
        .map_err(dependency("TokenBucket fetch"))?;
    if resp.status_code() != 200 {
        return Err(dependency("TokenBucket status")(resp.status_code()));
    }
    resp.text().await.map_err(dependency("TokenBucket body"))
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

/// Marks the key revoked in its bucket: refused from the next call on.
pub async fn revoke(env: &Env, prefix: &str) -> Outcome<()> {
    call(env, prefix, "/revoke", "{}".into()).await.map(|_| ())
}

/// A bare round trip to the bucket instance named `name`, which does nothing (no storage):
/// the baseline of the rate-limit load benchmark (dev-only route).
pub async fn ping(env: &Env, name: &str) -> Outcome<()> {
    call(env, name, "/ping", "{}".into()).await.map(|_| ())
}
