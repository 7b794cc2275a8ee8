//! Fanout: one call per requested provider, through that provider's broker (service binding +
//! shared secret), all concurrently, each bounded by its own timeout; per-provider latency kept.

use futures::future::{join_all, select, Either};
use gateway_core::broker::{BrokerRequest, COMPLETE_PATH, SECRET_HEADER};
use gateway_core::completion::{Completion, CompletionRequest};
use gateway_core::provider::Provider;
use gateway_core::scrub::scrub;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use worker::{console_error, Delay, Headers, Method, Request, RequestInit};

use crate::edge::Gw;

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
                error: ResultError { code: code.into(), message },
            },
        }
    }
}

/// A provider's result with the time its broker took.
pub struct Timed {
    pub result: ProviderResult,
    pub latency_ms: u64,
}

/// Calls every provider's broker concurrently; returns results in `calls` order.
pub async fn run(gw: &Gw, account_id: &str, test_mode: bool, calls: Vec<(Provider, CompletionRequest)>) -> Vec<Timed> {
    let secret = gw.var("BROKER_SHARED_SECRET").unwrap_or_default();
    let timeout_ms = gw
        .var("PROVIDER_TIMEOUT_MS")
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_TIMEOUT_MS);
    let futs = calls.into_iter().map(|(provider, completion)| {
        let body = BrokerRequest {
            request_id: gw.request_id.clone(),
            account_id: account_id.to_string(),
            test_mode,
            completion,
            byok_ciphertext: None,
        };
        let secret = secret.clone();
        async move {
            let started = worker::Date::now().as_millis();
            let call = call_broker(gw, provider, &secret, &body);
            futures::pin_mut!(call);
            let timer = Delay::from(std::time::Duration::from_millis(timeout_ms));
            let result = match select(call, timer).await {
                Either::Left((r, _)) => r,
                Either::Right(((), _)) => ProviderResult::error(
                    provider,
                    "upstream_timeout",
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

async fn call_broker(gw: &Gw, provider: Provider, secret: &str, body: &BrokerRequest) -> ProviderResult {
    let unavailable = |what: &str| {
        console_error!("broker {provider}: {what}");
        ProviderResult::error(provider, "broker_unavailable", format!("the {provider} broker is unavailable"))
    };
    let Ok(fetcher) = gw.env.service(provider.binding()) else {
        return unavailable("no service binding");
    };
    let headers = Headers::new();
    let _ = headers.set(SECRET_HEADER, secret);
    let _ = headers.set("Content-Type", "application/json");
    let Ok(payload) = serde_json::to_string(body) else {
        return unavailable("could not encode request");
    };
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(headers).with_body(Some(payload.into()));
    let url = format!("https://broker{COMPLETE_PATH}");
    let Ok(req) = Request::new_with_init(&url, &init) else {
        return unavailable("could not build request");
    };
    let mut resp = match fetcher.fetch_request(req).await {
        Ok(r) => r,
        Err(e) => return unavailable(&scrub(&e.to_string())),
    };
    let status = resp.status_code();
    let text = resp.text().await.unwrap_or_default();
    if status == 200 {
        return match serde_json::from_str::<Completion>(&text) {
            Ok(c) => ProviderResult { provider, outcome: ResultBody::Ok(c) },
            Err(_) => unavailable("malformed broker answer"),
        };
    }
    // Broker errors: `{"error": {"code", "message", ...}}`; pass code and a scrubbed message.
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let code = v["error"]["code"].as_str().unwrap_or("broker_error").to_string();
    let message = scrub(v["error"]["message"].as_str().unwrap_or("the broker failed")).into_owned();
    ProviderResult::error(provider, &code, message)
}
