//! The provider brokers as the gateway reaches them: each over its service binding with the
//! shared secret. `fanout` runs `/v1/ask`'s calls (one per provider, concurrently, each under its
//! timeout), `passthrough` forwards a drop-in body as it is, `seal` seals a key an account brings,
//! `reseal` moves stored keys to the newest master key version (admin API).

mod fanout;
mod passthrough;
pub mod reseal;
mod seal;

pub use fanout::{broker_requests, failed, run, timed_out};
pub use passthrough::{passthrough, Passthrough, Upstream};
pub use seal::seal;

use gateway_core::broker::SECRET_HEADER;
use gateway_core::providers::completion::Completion;
use gateway_core::providers::Provider;
use gateway_core::scrub::scrub;
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use worker::{js_sys, web_sys, Headers, Method, Request, RequestInit};
use worker_shared::fetch::Target;

use crate::http::context::RequestContext;
use crate::runtime::rpc_call;

/// Default per-provider timeout when `PROVIDER_TIMEOUT_MS` is unset.
const DEFAULT_TIMEOUT_MS: u64 = 30_000;

/// One provider's outcome, as it appears in `results[]` (and, without latency, in the cache).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProviderResult {
    pub provider: Provider,
    #[serde(flatten)]
    pub outcome: ResultBody,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ResultBody {
    Ok(Completion),
    Err { error: ResultError },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResultError {
    pub code: String,
    pub message: String,
    /// When the provider said to come back (its `retry-after`, or Gemini's `retryDelay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl ProviderResult {
    pub fn completion(&self) -> Option<&Completion> {
        match &self.outcome {
            ResultBody::Ok(c) => Some(c),
            ResultBody::Err { .. } => None,
        }
    }
    pub(crate) fn error(provider: Provider, code: &str, message: String) -> Self {
        ProviderResult {
            provider,
            outcome: ResultBody::Err {
                error: ResultError {
                    code: code.into(),
                    message,
                    retry_after_ms: None,
                },
            },
        }
    }
}

/// A provider's result with the time its broker took.
pub struct Timed {
    pub result: ProviderResult,
    pub latency_ms: u64,
}

pub(crate) fn timeout_ms(cx: &RequestContext) -> u64 {
    cx.var("PROVIDER_TIMEOUT_MS")
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_TIMEOUT_MS)
}

/// The shared secret the brokers admit the gateway by.
pub(crate) fn secret(cx: &RequestContext) -> String {
    let secret = cx.var("BROKER_SHARED_SECRET").unwrap_or_default();
    // Test hook: a gateway whose secret its brokers do not hold (a rotation done out of order).
    #[cfg(feature = "dev-hooks")]
    if cx.dev_fails("broker-secret") {
        return "not-the-broker-secret".to_string();
    }
    secret
}

/// One POST to a provider's broker over its service binding, with the shared secret.
pub(crate) async fn post_to_broker(
    cx: &RequestContext,
    provider: Provider,
    path: &str,
    headers: Headers,
    body: JsValue,
) -> Result<web_sys::Response, String> {
    let fetcher = cx
        .env
        .service(provider.binding())
        .map_err(|_| "no service binding".to_string())?;
    let _ = headers.set(SECRET_HEADER, &secret(cx));
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(body));
    let req = Request::new_with_init(&format!("https://broker{path}"), &init)
        .map_err(|_| "could not build request".to_string())?;
    // Timed for the request's log line: until the broker's response headers.
    let timer = cx.time_call(provider);
    match Target::service(fetcher).fetch(req.inner()).await {
        Ok(resp) => {
            timer.answered(resp.status(), None);
            Ok(resp)
        }
        Err(e) => {
            timer.unreachable();
            Err(scrub(&e.to_string()).into_owned())
        }
    }
}

/// A broker seen through its Workers RPC method (broker/src/entry.mjs): `complete(secret, body)`
/// answers `[status, body]`, as `POST /v1/complete` with that secret and body would.
#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(extends = js_sys::Object)]
    type BrokerRpc;

    #[wasm_bindgen(method, catch)]
    fn complete(this: &BrokerRpc, secret: &str, body: &str) -> Result<js_sys::Promise, JsValue>;
}

/// The broker's `complete(secret, payload)` over its service binding: the status and body it
/// answered, or why there was no answer.
pub async fn complete_rpc(
    cx: &RequestContext,
    provider: Provider,
    secret: &str,
    payload: &str,
) -> Result<(u16, String), String> {
    let fetcher = cx
        .env
        .service(provider.binding())
        .map_err(|_| "no service binding".to_string())?;
    // Timed for the request's log line (dropped unfinished when the caller's timeout wins).
    let timer = cx.time_call(provider);
    let answer = match rpc_call(fetcher.into_rpc::<BrokerRpc>().complete(secret, payload)).await {
        Ok(answer) => answer,
        Err(e) => {
            timer.unreachable();
            return Err(scrub(&e).into_owned());
        }
    };
    let answer = js_sys::Array::from(&answer);
    match (answer.get(0).as_f64(), answer.get(1).as_string()) {
        (Some(status), Some(text)) => {
            let status = status as u16;
            let code = (status != 200).then(|| crate::http::log::broker_code(&text));
            timer.answered(status, code.flatten());
            Ok((status, text))
        }
        _ => {
            timer.unreachable();
            Err("malformed broker answer".into())
        }
    }
}
