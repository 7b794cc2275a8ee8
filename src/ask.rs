//! `POST /v1/ask`: validate, look up the cache, then (on a miss) pass the key's token bucket
//! and the account's ledger, fan out to the brokers, and answer in the contract's shape.

use gateway_core::api::ask::{parse_ask, AskRequest, CacheScopeKind, BODY_LIMIT};
use gateway_core::cache::control::{CacheOutcome, RequestCacheMode};
use gateway_core::cache::key::{ask_cache_key, Scope};
use gateway_core::error::ApiError;
use gateway_core::keys::KeyMode;
use gateway_core::providers::completion::CompletionRequest;
use gateway_core::providers::models::{check_model, default_allowlist};
use serde::Serialize;
use serde_json::{json, Value};
use worker::{Request, Response};

use crate::auth::Caller;
use crate::cache::{self, Entry, RawEntry};
use crate::edge::{json_text, read_body_capped, require_json, set_header, Gw, Outcome};
use crate::fanout::{self, ProviderResult};
use crate::limits::{self, Admission};
use crate::record::{self, Event};

const NAMESPACE: &str = "ask/v1";

pub async fn post(
    gw: &Gw,
    mut req: Request,
    caller: &Caller,
    event: &mut Event,
) -> Outcome<Response> {
    require_json(&req)?;
    let body = read_body_capped(&mut req, BODY_LIMIT).await?;
    let policy = limits::policy(gw, caller);
    let mut ask = parse_ask(&body, policy.max_tokens_cap)?;
    event.providers = ask
        .providers
        .iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(",");
    check_models(&ask)?;
    // Only a prompt that passed validation is kept (`docs/DECISIONS.md`).
    event.set_prompt(caller, &ask.prompt);

    // An answer paid with the account's own provider key is never shared.
    let byok = ask.providers.iter().any(|p| caller.has_byok(*p));
    if byok {
        ask.scope = CacheScopeKind::Private;
    }
    let scope = match ask.scope {
        CacheScopeKind::Shared => Scope::Shared,
        CacheScopeKind::Private => Scope::Private(caller.account_id.clone()),
    };
    let key = ask_cache_key(&scope, &ask.prompt, &ask.providers, &ask.key_params);
    // Test keys neither read nor write the cache: their synthetic answers must never be served
    // to a live key, and they are not served what live keys paid for.
    let mode = if caller.mode == KeyMode::Test {
        RequestCacheMode::Bypass
    } else {
        RequestCacheMode::from_header(req.headers().get("Cache-Control").ok().flatten().as_deref())
    };

    if mode.reads() {
        if let Some((text, tier)) = cache::lookup(gw, NAMESPACE, key.as_str()).await {
            // The stored results are passed through as they were written: no re-encoding.
            if let Ok(entry) = serde_json::from_str::<RawEntry>(&text) {
                let outcome = CacheOutcome::Hit(tier);
                // The serving fee is debited off the response path; a hit never waits on a DO.
                let fee = limits::cache_hit_fee();
                limits::debit_fee_later(gw, &caller.account_id, fee);
                event.cache(outcome);
                event.credits = fee;
                return respond(
                    gw,
                    &ask,
                    outcome,
                    key.as_str(),
                    &entry.results,
                    fee,
                    Some(&Admission::hit(&policy)),
                    event,
                );
            }
        }
    }

    // Miss: the key's bucket and the account's credits, then the providers.
    let calls: Vec<(gateway_core::providers::Provider, CompletionRequest)> = ask
        .providers
        .iter()
        .map(|p| {
            (
                *p,
                CompletionRequest {
                    model: ask.models[p].clone(),
                    prompt: ask.prompt.clone(),
                    system: ask.system.clone(),
                    max_tokens: ask.max_tokens,
                    temperature: ask.temperature,
                    top_p: ask.top_p,
                },
            )
        })
        .collect();
    let (admission, reservation) =
        limits::gate(gw, caller, &policy, &limits::worst_cases(&calls)).await?;
    let timed = fanout::run(gw, caller, calls).await;
    let results: Vec<ProviderResult> = timed.iter().map(|t| t.result.clone()).collect();
    let credits = limits::settle_later(gw, reservation, &results, &ask.models);

    // Stored only if every provider answered, and with text (`Completion::is_cacheable`).
    let cacheable = results
        .iter()
        .all(|r| r.completion().is_some_and(|c| c.is_cacheable()));
    let stored = mode.writes() && cacheable;
    if stored {
        if let Ok(text) = serde_json::to_string(&Entry {
            results: results.clone(),
        }) {
            cache::store(gw, NAMESPACE, key.as_str(), text);
        }
    }
    let outcome = CacheOutcome::fetched(mode, stored);
    event.cache(outcome);
    event.credits = credits;
    event.tokens = results
        .iter()
        .filter_map(|r| r.completion())
        .fold((0, 0), |(i, o), c| {
            (i + c.tokens.input, o + c.tokens.output)
        });
    let body_results: Vec<Value> = timed
        .iter()
        .map(|t| {
            let mut v = result_json(&t.result);
            v["latency_ms"] = json!(t.latency_ms);
            v
        })
        .collect();
    respond(
        gw,
        &ask,
        outcome,
        key.as_str(),
        &body_results,
        credits,
        Some(&admission),
        event,
    )
}

/// A model the gateway already knows it will refuse is a 403 for the whole request.
fn check_models(ask: &AskRequest) -> Outcome<()> {
    for (p, model) in &ask.models {
        if let Err(r) = check_model(*p, model, default_allowlist(*p)) {
            return Err(ApiError::model_not_allowed(*p, model, r));
        }
    }
    Ok(())
}

fn result_json(r: &ProviderResult) -> Value {
    serde_json::to_value(r).unwrap_or(Value::Null)
}

/// The contract's `/v1/ask` answer, serialized once for both the caller and the archive.
#[derive(Serialize)]
struct AskAnswer<'a, R: Serialize> {
    id: &'a str,
    created_at: String,
    cache: Value,
    results: &'a [R],
    usage: Usage,
}

#[derive(Serialize)]
struct Usage {
    credits: u64,
}

#[allow(clippy::too_many_arguments)]
fn respond<R: Serialize>(
    gw: &Gw,
    ask: &AskRequest,
    outcome: CacheOutcome,
    key: &str,
    results: &[R],
    credits: u64,
    admission: Option<&Admission>,
    event: &mut Event,
) -> Outcome<Response> {
    let body = serde_json::to_string(&AskAnswer {
        id: &gw.request_id,
        created_at: gw.now_iso(),
        cache: outcome.body(ask.scope.as_str(), key),
        results,
        usage: Usage { credits },
    })
    .map_err(|_| ApiError::internal())?;
    let resp = json_text(200, body.clone())?;
    record::archive_later(event, body);
    let h = resp.headers();
    set_header(h, "Cache-Status", &outcome.header());
    set_header(h, "X-Cache-Key", key);
    if let Some(a) = admission {
        for (name, value) in &a.headers {
            set_header(h, name, value);
        }
    }
    Ok(resp)
}
