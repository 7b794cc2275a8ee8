//! Bring-your-own provider keys (`/v1/provider-keys`): a key is sealed by its provider's broker
//! (the gateway never holds the master secret) and stored as ciphertext plus its last 4
//! characters; listing shows only those; every decryption the brokers make is in the access log.

use std::collections::BTreeMap;

use gateway_core::api::route::V1Route;
use gateway_core::error::ApiError;
use gateway_core::keys::byok;
use gateway_core::providers::Provider;
use serde::Deserialize;
use serde_json::{json, Value};
use worker::{D1Database, Request, Response};

use crate::auth::{invalidate_account, Caller};
use crate::d1::{self, num as n, text as s};
use crate::edge::{iso8601, json, read_json_object, Gw, Outcome};
use crate::fanout;

/// Entries `GET /v1/provider-keys/access-log` returns, newest first.
const ACCESS_LOG_LIMIT: u32 = 100;
const BODY_LIMIT: usize = 4 * 1024;

/// Serves the `/v1/provider-keys...` routes for an authenticated caller.
pub async fn route(
    gw: &Gw,
    mut req: Request,
    caller: &Caller,
    route: V1Route<'_>,
) -> Outcome<Response> {
    match route {
        V1Route::ProviderKeysList => list(gw, caller).await,
        V1Route::ProviderKeysAccessLog => access_log(gw, caller).await,
        V1Route::ProviderKeyPut { provider } => {
            let provider = byok_provider(provider)?;
            put(gw, &mut req, caller, provider).await
        }
        V1Route::ProviderKeyDelete { provider } => {
            delete(gw, caller, byok_provider(provider)?).await
        }
        _ => Err(ApiError::not_found()),
    }
}

fn byok_provider(name: &str) -> Outcome<Provider> {
    Provider::parse(name)
        .filter(|p| byok::supports(*p))
        .ok_or_else(|| {
            ApiError::new(
                404,
                "provider_not_supported",
                "accounts may bring keys for `openai` and `anthropic` only",
            )
        })
}

/// `PUT /v1/provider-keys/:provider {"key": "..."}`: seals and stores (or replaces) the key.
async fn put(gw: &Gw, req: &mut Request, caller: &Caller, provider: Provider) -> Outcome<Response> {
    let body = read_json_object(req, BODY_LIMIT).await?;
    let key = match body.get("key") {
        Some(Value::String(k)) => k,
        _ => return Err(ApiError::invalid_param("key", "`key` must be a string")),
    };
    byok::check_key(key).map_err(|m| ApiError::invalid_param("key", m))?;
    let ciphertext = fanout::seal(gw, provider, &caller.account_id, key).await?;
    let last4 = byok::last4(key);
    let db = gw.db()?;
    // Stored only while the account exists: a deletion that ran while the key was being
    // sealed must not be followed by a row nobody can reach or remove.
    let stored = d1::run(
        &db,
        "INSERT INTO provider_keys (account_id, provider, ciphertext, last4, created_at) \
         SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM accounts WHERE id = ?1) \
         ON CONFLICT(account_id, provider) DO UPDATE SET ciphertext = excluded.ciphertext, \
         last4 = excluded.last4, created_at = excluded.created_at",
        &[
            s(&caller.account_id),
            s(provider.as_str()),
            s(&ciphertext),
            s(&last4),
            n(gw.now_ms),
        ],
    )
    .await?;
    if stored == 0 {
        return Err(ApiError::unauthorized());
    }
    // The auth row carries the account's BYOK providers: the next call must see this key.
    invalidate_account(gw, &db, &caller.account_id).await?;
    json(
        200,
        &json!({"provider": provider.as_str(), "last4": last4, "created_at": gw.now_iso()}),
    )
}

async fn delete(gw: &Gw, caller: &Caller, provider: Provider) -> Outcome<Response> {
    let db = gw.db()?;
    let changes = d1::run(
        &db,
        "DELETE FROM provider_keys WHERE account_id = ?1 AND provider = ?2",
        &[s(&caller.account_id), s(provider.as_str())],
    )
    .await?;
    if changes == 0 {
        return Err(ApiError::new(
            404,
            "provider_key_not_found",
            "this account has no key registered for this provider",
        ));
    }
    invalidate_account(gw, &db, &caller.account_id).await?;
    json(
        200,
        &json!({"provider": provider.as_str(), "deleted": true}),
    )
}

async fn list(gw: &Gw, caller: &Caller) -> Outcome<Response> {
    #[derive(Deserialize)]
    struct Row {
        provider: String,
        last4: String,
        created_at: i64,
    }
    let rows = d1::all::<Row>(
        &gw.db()?,
        "SELECT provider, last4, created_at FROM provider_keys WHERE account_id = ?1 ORDER BY provider",
        &[s(&caller.account_id)],
    )
    .await?;
    let keys: Vec<Value> = rows
        .into_iter()
        .map(|r| json!({"provider": r.provider, "last4": r.last4, "created_at": iso8601(r.created_at as u64)}))
        .collect();
    json(200, &json!({"provider_keys": keys}))
}

async fn access_log(gw: &Gw, caller: &Caller) -> Outcome<Response> {
    #[derive(Deserialize)]
    struct Row {
        provider: String,
        request_id: String,
        purpose: String,
        created_at: i64,
    }
    let rows = d1::all::<Row>(
        &gw.db()?,
        "SELECT provider, request_id, purpose, created_at FROM key_access_log WHERE account_id = ?1 \
         ORDER BY id DESC LIMIT ?2",
        &[s(&caller.account_id), n(u64::from(ACCESS_LOG_LIMIT))],
    )
    .await?;
    let entries: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            json!({
                "provider": r.provider,
                "request_id": r.request_id,
                "purpose": r.purpose,
                "created_at": iso8601(r.created_at as u64),
            })
        })
        .collect();
    json(200, &json!({"entries": entries}))
}

/// The account's sealed key for `provider`, if it registered one.
pub async fn sealed(gw: &Gw, account_id: &str, provider: Provider) -> Outcome<Option<String>> {
    Ok(sealed_all_in(&gw.db()?, account_id)
        .await?
        .remove(&provider))
}

/// Every sealed key of the account, by provider.
pub async fn sealed_all(gw: &Gw, account_id: &str) -> Outcome<BTreeMap<Provider, String>> {
    sealed_all_in(&gw.db()?, account_id).await
}

async fn sealed_all_in(db: &D1Database, account_id: &str) -> Outcome<BTreeMap<Provider, String>> {
    #[derive(Deserialize)]
    struct Row {
        provider: String,
        ciphertext: String,
    }
    let rows = d1::all::<Row>(
        db,
        "SELECT provider, ciphertext FROM provider_keys WHERE account_id = ?1",
        &[s(account_id)],
    )
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| Provider::parse(&r.provider).map(|p| (p, r.ciphertext)))
        .collect())
}
