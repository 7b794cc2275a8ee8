//! `/v1/ask`'s fanout: one completion per requested provider from its broker, by RPC, all at
//! once, each bounded by its own timeout; per-provider latency kept. An account's sealed keys
//! ride along to the brokers of the providers it brought keys for.

use super::ResultError;
use super::{complete_rpc, timeout_ms, ProviderResult, ResultBody, Timed};
use std::collections::BTreeMap;

use futures::future::{join_all, select, Either};
use gateway_core::broker::errors::{
    broker_unavailable, read_completion_failure, BrokerErrorCode, CompletionFailure,
};
use gateway_core::broker::BrokerRequest;
use gateway_core::keys::byok;
use gateway_core::keys::KeyMode;
use gateway_core::providers::completion::{Completion, CompletionRequest};
use gateway_core::providers::Provider;
use worker::{console_error, Delay};

use crate::auth::Caller;

use crate::db::sealed_keys;
use crate::http::context::RequestContext;

/// Calls every provider's broker concurrently; returns results in `calls` order. A provider
/// for which the account registered its own key gets that (sealed) key; if the account's keys
/// cannot be read, those providers fail rather than silently use the platform's key.
pub async fn run(
    cx: &RequestContext,
    caller: &Caller,
    calls: Vec<(Provider, CompletionRequest)>,
) -> Vec<Timed> {
    let timeout_ms = timeout_ms(cx);
    let futs =
        broker_requests(cx, caller, calls)
            .await
            .into_iter()
            .map(|(provider, body)| async move {
                let started = worker_shared::clock::now_ms();
                let body = match body {
                    Ok(body) => body,
                    Err(result) => {
                        return Timed {
                            result,
                            latency_ms: 0,
                        }
                    }
                };
                let call = call_broker(cx, provider, &body);
                futures::pin_mut!(call);
                let timer = Delay::from(std::time::Duration::from_millis(timeout_ms));
                let result = match select(call, timer).await {
                    Either::Left((r, _)) => r,
                    Either::Right(((), _)) => timed_out(provider, timeout_ms),
                };
                Timed {
                    result,
                    latency_ms: worker_shared::clock::now_ms().saturating_sub(started),
                }
            });
    join_all(futs).await
}

/// The result of a provider whose broker did not answer within `timeout_ms`.
pub fn timed_out(provider: Provider, timeout_ms: u64) -> ProviderResult {
    ProviderResult::error(
        provider,
        BrokerErrorCode::UpstreamTimeout.as_str(),
        format!("{provider} did not answer within {timeout_ms} ms"),
    )
}

/// The broker request of each call, in `calls` order, with the account's sealed key for the
/// providers it brought one for; a provider whose key could not be read fails (`Err`: its
/// result) rather than silently use the platform's key.
pub async fn broker_requests(
    cx: &RequestContext,
    caller: &Caller,
    calls: Vec<(Provider, CompletionRequest)>,
) -> Vec<(Provider, Result<BrokerRequest, ProviderResult>)> {
    let account_id = caller.account_id.as_str();
    let test_mode = caller.mode == KeyMode::Test;
    // Only accounts that registered a key for one of these providers pay the D1 read.
    let sealed = if !test_mode && calls.iter().any(|(p, _)| caller.has_byok(*p)) {
        sealed_keys::sealed_all(cx, account_id).await.ok()
    } else {
        Some(BTreeMap::new())
    };
    calls
        .into_iter()
        .map(|(provider, completion)| {
            // `None`: the account's keys could not be read.
            let byok_ciphertext = sealed.as_ref().map(|m| m.get(&provider).cloned());
            if byok_ciphertext.is_none() && byok::supports(provider) {
                let unreadable = ProviderResult::error(
                    provider,
                    BrokerErrorCode::ServiceUnavailable.as_str(),
                    "the account's provider keys could not be read; retry shortly".into(),
                );
                return (provider, Err(unreadable));
            }
            let body = BrokerRequest {
                request_id: cx.request_id.clone(),
                account_id: account_id.to_string(),
                test_mode,
                completion,
                byok_ciphertext: byok_ciphertext.flatten(),
            };
            (provider, Ok(body))
        })
        .collect()
}

/// One completion from a provider's broker, by RPC over its service binding.
async fn call_broker(
    cx: &RequestContext,
    provider: Provider,
    body: &BrokerRequest,
) -> ProviderResult {
    let unavailable = |what: &str| {
        console_error!("broker {provider}: {what}");
        let e = broker_unavailable(provider);
        ProviderResult::error(provider, e.code, e.message)
    };
    let Ok(payload) = serde_json::to_string(body) else {
        return unavailable("could not encode request");
    };
    let secret = super::secret(cx);
    let (status, text) = match complete_rpc(cx, provider, &secret, &payload).await {
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
    failed(provider, &text)
}

/// A broker's failed completion (`{"error": {"code", "message", ...}}`) as the provider's result.
pub fn failed(provider: Provider, text: &str) -> ProviderResult {
    let CompletionFailure {
        code,
        message,
        retry_after_ms,
    } = read_completion_failure(text);
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
