//! The provider broker Worker: one crate deployed once per provider. It alone holds that
//! provider's key (and, with every other broker, the BYOK master secret); it checks the shared
//! secret, the model allowlist and the caps before any key is used, speaks the provider's wire
//! format for `/v1/ask`, forwards drop-in requests verbatim, and seals and opens the keys that
//! accounts bring, writing a `key_access_log` row before a key is decrypted.
//!
//! This file holds the entry points (`fetch`, the RPC method `complete`) and the routes; one
//! module per concern: [`admit`] (the shared secret), [`complete`] (`/v1/ask` completions),
//! [`passthrough`] (drop-in forwarding), [`seal`] (BYOK seal, open and re-seal), [`audit`] (the
//! `key_access_log`), [`upstream`] (the upstream call), [`config`] (vars and secrets),
//! [`reply`] (JSON answers). The pure logic is gateway-core's.

mod admit;
mod audit;
mod complete;
mod complete_stream;
mod config;
mod passthrough;
mod reply;
mod seal;
mod upstream;

use std::panic::AssertUnwindSafe;

use gateway_core::broker::{
    BROKER_BODY_LIMIT, COMPLETE_PATH, COMPLETE_STREAM_PATH, PASSTHROUGH_PATH, RESEAL_PATH,
    SEAL_PATH, SECRET_HEADER,
};
use gateway_core::error::ApiError;
use gateway_core::scrub::scrub;
use worker::wasm_bindgen::prelude::wasm_bindgen;
use worker::wasm_bindgen::JsValue;
use worker::{console_log, event, js_sys, web_sys, Context, Env, Method, Request};
use worker_shared::body::read_capped;
use worker_shared::reply::reply_error;

use reply::Reply;

/// Every log line passes through the scrubber.
fn log(line: &str) {
    console_log!("{}", scrub(line));
}

/// Answers the runtime's own `Response`: a streamed answer's is built around the upstream's
/// body as it is (`passthrough`), the others are converted from worker's.
#[event(fetch)]
pub async fn fetch(req: Request, env: Env, _ctx: Context) -> worker::Result<web_sys::Response> {
    match handle(req, &env).await {
        Ok(resp) => Ok(resp),
        Err(e) => Ok(reply_error(&e).into()),
    }
}

async fn handle(mut req: Request, env: &Env) -> Result<web_sys::Response, ApiError> {
    // 1. The shared secret, before anything else.
    let given = req
        .headers()
        .get(SECRET_HEADER)
        .ok()
        .flatten()
        .unwrap_or_default();
    let provider = admit::admit(env, &given)?;
    if req.method() != Method::Post {
        return Err(ApiError::not_found());
    }
    match req.path().as_str() {
        COMPLETE_PATH => {
            let body = read_capped(&mut req, BROKER_BODY_LIMIT).await?;
            complete::complete(&body, env, provider)
                .await?
                .into_response()
                .map(Into::into)
        }
        COMPLETE_STREAM_PATH => {
            let body = read_capped(&mut req, BROKER_BODY_LIMIT).await?;
            complete_stream::complete_stream(&body, env, provider)
                .await
                .map(Into::into)
        }
        PASSTHROUGH_PATH => passthrough::passthrough(req, env, provider).await,
        SEAL_PATH => seal::seal(req, env, provider).await.map(Into::into),
        RESEAL_PATH => seal::reseal(req, env, provider).await.map(Into::into),
        _ => Err(ApiError::not_found()),
    }
}

/// `POST /v1/complete` as a Workers RPC method, the way the gateway calls it: `complete(secret,
/// body)` answers `[status, body]` exactly as `fetch` would answer that request. Exported to
/// the Worker's entry class by broker/src/entry.mjs, which passes the Worker's `env` and, for a
/// body it did not copy because it is over the limit, `oversized`.
#[wasm_bindgen(
    wasm_bindgen = ::worker::wasm_bindgen,
    wasm_bindgen_futures = ::worker::wasm_bindgen_futures,
    js_sys = ::worker::js_sys
)]
pub async fn broker_complete(
    env: Env,
    secret: String,
    body: String,
    oversized: bool,
) -> Result<JsValue, JsValue> {
    let run = async {
        let provider = admit::admit(&env, &secret)?;
        if oversized || body.len() > BROKER_BODY_LIMIT {
            return Err(ApiError::body_too_large(BROKER_BODY_LIMIT));
        }
        complete::complete(body.as_bytes(), &env, provider).await
    };
    let reply = AssertUnwindSafe(run)
        .await
        .unwrap_or_else(|e| Reply::error(&e));
    Ok(js_sys::Array::of2(&JsValue::from(reply.status), &JsValue::from(reply.body)).into())
}
