//! The drop-in provider endpoints, `POST /v1/chat/completions` (OpenAI) and `POST /v1/messages`
//! (Anthropic): the official SDKs work by changing only their base URL. The body is forwarded
//! to the provider's broker byte for byte and the provider's answer comes back as it is, with
//! the same cache, rate limits, credits and metering as `/v1/ask`, and errors in a shape both
//! SDKs read.

use gateway_core::api::dropin::{self, Dialect, SCOPE_HEADER};
use gateway_core::cache::control::{CacheOutcome, RequestCacheMode};
use gateway_core::cache::key::{request_cache_key, ScopeKind};
use gateway_core::error::ApiError;
use gateway_core::keys::KeyMode;
use gateway_core::providers::models::default_allowlist;
use serde_json::Value;
use worker::{Request, Response};

use crate::auth::Caller;
use crate::cache;
use crate::edge::{read_body_capped, require_json, set_header, Gw, Outcome};
use crate::fanout;
use crate::limits::{self, Admission, Used, WithRateHeaders, WorstCase};
use crate::provider_keys;
use crate::record::Event;

/// Caller headers the Anthropic broker passes on (the API version the SDK speaks, betas).
const FORWARDED_HEADERS: [&str; 2] = ["anthropic-version", "anthropic-beta"];

/// One drop-in call. Order as `/v1/ask`: validate, look up the cache (a hit takes no bucket
/// token), then the key's bucket, the account's credits, the broker; settle and meter.
///
/// Scope: the `x-cache-scope` header (`shared` by default). An account that brought its own
/// key for this provider is always served from its private scope: that answer was paid with
/// its own key. Test keys neither read nor write the cache, so a synthetic answer is never
/// served to a live key.
pub async fn post(
    gw: &Gw,
    mut req: Request,
    caller: &Caller,
    event: &mut Event,
    dialect: Dialect,
) -> Outcome<Response> {
    event.endpoint = dialect.endpoint().to_string();
    require_json(&req)?;
    let body = read_body_capped(&mut req, dropin::BODY_LIMIT).await?;
    let policy = limits::policy(gw, caller);
    let provider = dialect.provider();
    let parsed = dropin::parse_request(
        dialect,
        &body,
        default_allowlist(provider),
        policy.max_tokens_cap,
    )?;
    event.providers = provider.as_str().to_string();
    let asked = scope_header(&req)?;
    // Only a prompt that passed validation is kept (`docs/DECISIONS.md`).
    event.set_prompt(caller, &parsed.last_user_text);
    let test_mode = caller.mode == KeyMode::Test;
    let mode = if test_mode {
        RequestCacheMode::Bypass
    } else {
        RequestCacheMode::from_header(req.headers().get("Cache-Control").ok().flatten().as_deref())
    };
    let sealed = if test_mode || !caller.has_byok(provider) {
        None
    } else {
        provider_keys::sealed(gw, &caller.account_id, provider).await?
    };
    let kind = if sealed.is_some() {
        ScopeKind::Private
    } else {
        asked
    };
    // The headers forwarded upstream change the answer (`anthropic-beta` turns features on),
    // so they are part of the key: `[body, {header: value}]` when there are any (a body is a
    // JSON object, so the two shapes never meet), the body alone otherwise.
    let forward: Vec<(&str, String)> = FORWARDED_HEADERS
        .iter()
        .filter_map(|name| req.headers().get(name).ok().flatten().map(|v| (*name, v)))
        .collect();
    let keyed = if forward.is_empty() {
        parsed.value
    } else {
        let headers: serde_json::Map<String, Value> = forward
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.clone())))
            .collect();
        Value::Array(vec![parsed.value, Value::Object(headers)])
    };
    let key = request_cache_key(
        dialect.namespace(),
        &kind.for_account(&caller.account_id),
        &keyed,
    );
    let ns = dialect.namespace();

    if mode.reads() {
        if let Some((text, tier)) = cache::lookup(gw, ns, key.as_str()).await {
            let outcome = CacheOutcome::Hit(tier);
            let fee = limits::cache_hit_fee();
            limits::debit_fee_later(gw, &caller.account_id, fee);
            event.cache(outcome);
            event.credits = fee;
            let admission = Admission::hit(&policy);
            return respond(
                200,
                text,
                outcome,
                key.as_str(),
                kind,
                Some(&admission),
                None,
            );
        }
    }

    // Miss: the key's bucket and the account's credits, then the provider.
    let worst = [WorstCase {
        provider,
        model: parsed.model.clone(),
        // The whole body, not only the messages' text: tool definitions, response formats and
        // the like are billed as input too (a cost past the reservation is still charged, from
        // what the balance has beyond other calls' reservations).
        prompt_bytes: body.len(),
        max_tokens: u32::try_from(parsed.output_budget).unwrap_or(u32::MAX),
    }];
    let (admission, reservation) = limits::gate(gw, caller, &policy, &worst).await?;
    let reply = fanout::passthrough(
        gw,
        provider,
        &caller.account_id,
        test_mode,
        sealed.as_deref(),
        &forward,
        &body,
    )
    .await;
    let reply = match reply {
        Ok(r) => r,
        Err(e) => {
            // Nothing was used: the reservation is released whole.
            limits::settle_used_later(gw, reservation, &[]);
            return Err(e.with_rate_headers(&admission));
        }
    };
    let used: Vec<Used> = reply
        .tokens
        .iter()
        .map(|t| Used {
            provider,
            model: &parsed.model,
            tokens: *t,
        })
        .collect();
    let credits = limits::settle_used_later(gw, reservation, &used);

    let ok = (200..300).contains(&reply.status) && reply.tokens.is_some();
    let stored = mode.writes() && ok;
    if stored {
        cache::store(gw, ns, key.as_str(), reply.body.clone());
    }
    let outcome = CacheOutcome::fetched(mode, stored);
    event.cache(outcome);
    event.credits = credits;
    if let Some(t) = reply.tokens {
        event.tokens = (t.input, t.output);
    }
    let retry_after = reply.retry_after.filter(|_| !ok);
    respond(
        reply.status,
        reply.body,
        outcome,
        key.as_str(),
        kind,
        Some(&admission),
        retry_after,
    )
}

/// The `x-cache-scope` request header: `shared` (default) or `private`; anything else is a 400.
fn scope_header(req: &Request) -> Outcome<ScopeKind> {
    match req.headers().get(SCOPE_HEADER).ok().flatten() {
        None => Ok(ScopeKind::Shared),
        Some(v) => ScopeKind::parse(v.trim()).ok_or_else(|| {
            ApiError::invalid_request("the x-cache-scope header must be `shared` or `private`")
                .with("header", SCOPE_HEADER)
        }),
    }
}

/// The provider's answer as it is, with the gateway's cache and rate-limit headers.
fn respond(
    status: u16,
    body: String,
    outcome: CacheOutcome,
    key: &str,
    scope: ScopeKind,
    admission: Option<&Admission>,
    retry_after: Option<String>,
) -> Outcome<Response> {
    let resp = Response::ok(body)
        .map_err(|_| ApiError::internal())?
        .with_status(status);
    let h = resp.headers();
    set_header(h, "Content-Type", "application/json");
    set_header(h, "Cache-Status", &outcome.header());
    set_header(h, "X-Cache-Key", key);
    set_header(h, "X-Cache-Scope", scope.as_str());
    if let Some(a) = admission {
        for (name, value) in &a.headers {
            set_header(h, name, value);
        }
    }
    if let Some(r) = retry_after {
        set_header(h, "Retry-After", &r);
    }
    Ok(resp)
}

/// On the drop-in paths, errors use the body both SDKs read (see [`dropin::error_body`]):
/// `error.type` beside `code` and `message`, and Anthropic's top-level `"type": "error"`.
pub fn in_dialect(segs: &[&str], result: Outcome<Response>, request_id: &str) -> Outcome<Response> {
    let (Some(dialect), Err(e)) = (Dialect::for_path(segs), &result) else {
        return result;
    };
    let resp = Response::from_json(&dropin::error_body(dialect, e))
        .map_err(|_| ApiError::internal())?
        .with_status(e.status);
    let h = resp.headers();
    set_header(h, "X-Request-Id", request_id);
    for (name, value) in &e.headers {
        set_header(h, name, value);
    }
    Ok(resp)
}
