//! Fanout: one call per requested provider, through that provider's broker (service binding +
//! shared secret), all concurrently, each bounded by its own timeout; per-provider latency kept.
//! Also the drop-in passthrough (one broker call, the body forwarded byte for byte) and the
//! sealing of bring-your-own keys; an account's sealed keys ride along to the brokers.

use std::collections::BTreeMap;

use futures::future::{join_all, select, Either};
use gateway_core::broker::errors::{
    broker_unavailable, read_completion_failure, read_refusal, BrokerErrorCode, CompletionFailure,
    Refusal,
};
use gateway_core::broker::passthrough::read_usage_headers;
use gateway_core::broker::{
    BrokerRequest, SealRequest, ACCOUNT_ID_HEADER, BYOK_HEADER, ORIGIN_HEADER, ORIGIN_UPSTREAM,
    PASSTHROUGH_PATH, REQUEST_ID_HEADER, SEAL_PATH, SECRET_HEADER, TEST_MODE_HEADER,
    USAGE_INPUT_HEADER, USAGE_OUTPUT_HEADER,
};
use gateway_core::error::ApiError;
use gateway_core::keys::byok;
use gateway_core::keys::KeyMode;
use gateway_core::providers::completion::{Completion, CompletionRequest};
use gateway_core::providers::Provider;
use gateway_core::scrub::scrub;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wasm_bindgen::prelude::*;
use worker::{console_error, js_sys, Delay, Headers, Method, Request, RequestInit};
use worker_shared::body;

use crate::auth::Caller;

use crate::edge::{rpc_call, Gw, Outcome};
use crate::provider_keys;

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
    fn error(provider: Provider, code: &str, message: String) -> Self {
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

fn timeout_ms(gw: &Gw) -> u64 {
    gw.var("PROVIDER_TIMEOUT_MS")
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_TIMEOUT_MS)
}

/// Calls every provider's broker concurrently; returns results in `calls` order. A provider
/// for which the account registered its own key gets that (sealed) key; if the account's keys
/// cannot be read, those providers fail rather than silently use the platform's key.
pub async fn run(
    gw: &Gw,
    caller: &Caller,
    calls: Vec<(Provider, CompletionRequest)>,
) -> Vec<Timed> {
    let account_id = caller.account_id.as_str();
    let test_mode = caller.mode == KeyMode::Test;
    let timeout_ms = timeout_ms(gw);
    // Only accounts that registered a key for one of these providers pay the D1 read.
    let sealed = if !test_mode && calls.iter().any(|(p, _)| caller.has_byok(*p)) {
        provider_keys::sealed_all(gw, account_id).await.ok()
    } else {
        Some(BTreeMap::new())
    };
    let futs = calls.into_iter().map(|(provider, completion)| {
        // `None`: the account's keys could not be read.
        let byok_ciphertext = sealed.as_ref().map(|m| m.get(&provider).cloned());
        let body = BrokerRequest {
            request_id: gw.request_id.clone(),
            account_id: account_id.to_string(),
            test_mode,
            completion,
            byok_ciphertext: byok_ciphertext.clone().flatten(),
        };
        async move {
            let started = worker::Date::now().as_millis();
            if byok_ciphertext.is_none() && byok::supports(provider) {
                return Timed {
                    result: ProviderResult::error(
                        provider,
                        BrokerErrorCode::ServiceUnavailable.as_str(),
                        "the account's provider keys could not be read; retry shortly".into(),
                    ),
                    latency_ms: 0,
                };
            }
            let call = call_broker(gw, provider, &body);
            futures::pin_mut!(call);
            let timer = Delay::from(std::time::Duration::from_millis(timeout_ms));
            let result = match select(call, timer).await {
                Either::Left((r, _)) => r,
                Either::Right(((), _)) => ProviderResult::error(
                    provider,
                    BrokerErrorCode::UpstreamTimeout.as_str(),
                    format!("{provider} did not answer within {timeout_ms} ms"),
                ),
            };
            Timed {
                result,
                latency_ms: worker::Date::now().as_millis().saturating_sub(started),
            }
        }
    });
    join_all(futs).await
}

/// One POST to a provider's broker over its service binding, with the shared secret.
async fn post_to_broker(
    gw: &Gw,
    provider: Provider,
    path: &str,
    headers: Headers,
    body: JsValue,
) -> Result<worker::Response, String> {
    let fetcher = gw
        .env
        .service(provider.binding())
        .map_err(|_| "no service binding".to_string())?;
    let secret = gw.var("BROKER_SHARED_SECRET").unwrap_or_default();
    let _ = headers.set(SECRET_HEADER, &secret);
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(body));
    let req = Request::new_with_init(&format!("https://broker{path}"), &init)
        .map_err(|_| "could not build request".to_string())?;
    fetcher
        .fetch_request(req)
        .await
        .map_err(|e| scrub(&e.to_string()).into_owned())
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
    gw: &Gw,
    provider: Provider,
    secret: &str,
    payload: &str,
) -> Result<(u16, String), String> {
    let fetcher = gw
        .env
        .service(provider.binding())
        .map_err(|_| "no service binding".to_string())?;
    let answer = rpc_call(fetcher.into_rpc::<BrokerRpc>().complete(secret, payload))
        .await
        .map_err(|e| scrub(&e).into_owned())?;
    let answer = js_sys::Array::from(&answer);
    match (answer.get(0).as_f64(), answer.get(1).as_string()) {
        (Some(status), Some(text)) => Ok((status as u16, text)),
        _ => Err("malformed broker answer".into()),
    }
}

/// One completion from a provider's broker, by RPC over its service binding.
async fn call_broker(gw: &Gw, provider: Provider, body: &BrokerRequest) -> ProviderResult {
    let unavailable = |what: &str| {
        console_error!("broker {provider}: {what}");
        let e = broker_unavailable(provider);
        ProviderResult::error(provider, e.code, e.message)
    };
    let Ok(payload) = serde_json::to_string(body) else {
        return unavailable("could not encode request");
    };
    let secret = gw.var("BROKER_SHARED_SECRET").unwrap_or_default();
    let (status, text) = match complete_rpc(gw, provider, &secret, &payload).await {
        Ok(answer) => answer,
        Err(e) => return unavailable(&e),
    };
    if status == 200 {
        return match serde_json::from_str::<Completion>(&text) {
            Ok(c) => ProviderResult {
                provider,
                outcome: ResultBody::Ok(c),
            },
            Err(_) => unavailable("malformed broker answer"),
        };
    }
    // Broker errors: `{"error": {"code", "message", ...}}`; pass code and a scrubbed message.
    let CompletionFailure {
        code,
        message,
        retry_after_ms,
    } = read_completion_failure(&text);
    ProviderResult {
        provider,
        outcome: ResultBody::Err {
            error: ResultError {
                code,
                message,
                retry_after_ms,
            },
        },
    }
}

/// A drop-in call's answer from upstream (or the broker's synthetic test answer), as the broker
/// passed it back.
pub use gateway_core::broker::passthrough::UpstreamAnswer as Passthrough;

/// Forwards a drop-in request to `provider`'s broker: `body` byte for byte, the metadata in
/// `x-gw-*` headers, plus the caller's `anthropic-version` / `anthropic-beta` headers. Broker
/// refusals come back as contract errors; the upstream's answer, whatever its status, as a
/// [`Passthrough`].
#[allow(clippy::too_many_arguments)]
pub async fn passthrough(
    gw: &Gw,
    provider: Provider,
    account_id: &str,
    test_mode: bool,
    sealed: Option<&str>,
    forward: &[(&str, String)],
    body: &[u8],
) -> Outcome<Passthrough> {
    let timeout_ms = timeout_ms(gw);
    let headers = Headers::new();
    let _ = headers.set("Content-Type", "application/json");
    let _ = headers.set(REQUEST_ID_HEADER, &gw.request_id);
    let _ = headers.set(ACCOUNT_ID_HEADER, account_id);
    let _ = headers.set(TEST_MODE_HEADER, if test_mode { "1" } else { "0" });
    if let Some(s) = sealed {
        let _ = headers.set(BYOK_HEADER, s);
    }
    for (name, value) in forward {
        let _ = headers.set(name, value);
    }
    let bytes = worker::js_sys::Uint8Array::from(body);
    let call = post_to_broker(gw, provider, PASSTHROUGH_PATH, headers, bytes.into());
    futures::pin_mut!(call);
    let timer = Delay::from(std::time::Duration::from_millis(timeout_ms));
    let resp = match select(call, timer).await {
        Either::Left((Ok(r), _)) => r,
        Either::Left((Err(e), _)) => {
            console_error!("broker {provider}: passthrough: {e}");
            return Err(broker_unavailable(provider));
        }
        Either::Right(((), _)) => {
            return Err(BrokerErrorCode::UpstreamTimeout
                .error(format!("{provider} did not answer within {timeout_ms} ms")))
        }
    };
    let status = resp.status_code();
    let header = |name: &str| resp.headers().get(name).ok().flatten();
    let from_upstream = header(ORIGIN_HEADER).as_deref() == Some(ORIGIN_UPSTREAM);
    let tokens = read_usage_headers(
        header(USAGE_INPUT_HEADER).as_deref(),
        header(USAGE_OUTPUT_HEADER).as_deref(),
    );
    let retry_after = header("retry-after");
    let text = body::text(resp).await.unwrap_or_default();
    if from_upstream {
        return Ok(Passthrough {
            status,
            body: text,
            tokens,
            retry_after,
        });
    }
    Err(broker_error(provider, status, &text, retry_after))
}

/// A broker's own refusal as a contract error for the caller (see [`read_refusal`]); one
/// that rejects the gateway itself (secret, path) is logged and becomes a 503: the caller did
/// nothing wrong.
fn broker_error(
    provider: Provider,
    status: u16,
    text: &str,
    retry_after: Option<String>,
) -> ApiError {
    let refusal = read_refusal(provider, status, text, retry_after);
    if let Refusal::Unavailable { given, .. } = &refusal {
        console_error!(
            "broker {provider}: refused a passthrough with HTTP {status} `{}`",
            scrub(given)
        );
    }
    refusal.into_error()
}

/// Seals a key the account brings, in `provider`'s broker (which alone holds the master
/// secret); returns the ciphertext to store. The plaintext is never logged.
pub async fn seal(gw: &Gw, provider: Provider, account_id: &str, key: &str) -> Outcome<String> {
    let body = SealRequest {
        account_id: account_id.to_string(),
        provider,
        key: key.to_string(),
    };
    let payload = serde_json::to_string(&body).map_err(|_| ApiError::internal())?;
    let headers = Headers::new();
    let _ = headers.set("Content-Type", "application/json");
    let resp = post_to_broker(gw, provider, SEAL_PATH, headers, payload.into())
        .await
        .map_err(crate::edge::dependency("broker seal"))?;
    let status = resp.status_code();
    let text = body::text(resp).await.unwrap_or_default();
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    match (status, v["ciphertext"].as_str()) {
        (200, Some(c)) => Ok(c.to_string()),
        (400, _) => Err(broker_error(provider, status, &text, None)),
        _ => Err(broker_error(
            provider,
            status.max(500),
            &text,
            Some("5".into()),
        )),
    }
}
