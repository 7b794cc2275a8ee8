//! Bring-your-own provider keys (`/v1/provider-keys`): a key is sealed by its provider's broker
//! (the gateway never holds the master secret) and stored as ciphertext plus its last 4
//! characters; listing shows only those; every decryption the brokers make is in the access log.

use gateway_core::api::route::V1Route;
use gateway_core::error::ApiError;
use gateway_core::keys::byok;
use gateway_core::providers::Provider;
use serde::Deserialize;
use serde_json::{json, Value};
use worker::{Request, Response};

use crate::auth::{invalidate_account, Caller};
use crate::brokers;
use crate::db::d1;
use crate::db::d1::{num as n, text as s};
use crate::http::context::RequestContext;
use crate::http::request::read_json_object;
use crate::http::response::json;
use crate::runtime::iso8601;
use gateway_core::error::ApiResult;

/// Entries `GET /v1/provider-keys/access-log` returns, newest first.
const ACCESS_LOG_LIMIT: u32 = 100;
const BODY_LIMIT: usize = 4 * 1024;

/// Serves the `/v1/provider-keys...` routes for an authenticated caller.
pub async fn route(
    cx: &RequestContext,
    mut req: Request,
    caller: &Caller,
    route: V1Route<'_>,
) -> ApiResult<Response> {
    match route {
        V1Route::ProviderKeysList => list(cx, caller).await,
        V1Route::ProviderKeysAccessLog => access_log(cx, caller).await,
        V1Route::ProviderKeyPut { provider } => {
            let provider = byok_provider(provider)?;
            put(cx, &mut req, caller, provider).await
        }
        V1Route::ProviderKeyDelete { provider } => {
            delete(cx, caller, byok_provider(provider)?).await
        }
        _ => Err(ApiError::not_found()),
    }
}

fn byok_provider(name: &str) -> ApiResult<Provider> {
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
async fn put(
    cx: &RequestContext,
    req: &mut Request,
    caller: &Caller,
    provider: Provider,
) -> ApiResult<Response> {
    let body = read_json_object(req, BODY_LIMIT).await?;
    gateway_core::api::account::only_fields(&body, &["key"])?;
    let key = match body.get("key") {
        Some(Value::String(k)) => k,
        _ => return Err(ApiError::invalid_param("key", "`key` must be a string")),
    };
    byok::check_key(key).map_err(|m| ApiError::invalid_param("key", m))?;
    let ciphertext = brokers::seal(cx, provider, &caller.account_id, key).await?;
    let last4 = byok::last4(key);
    let db = cx.db()?;
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
            n(cx.now_ms),
        ],
    )
    .await?;
    if stored == 0 {
        return Err(ApiError::unauthorized());
    }
    // The auth row carries the account's BYOK providers: the next call must see this key.
    invalidate_account(cx, &db, &caller.account_id).await?;
    json(
        200,
        &json!({"provider": provider.as_str(), "last4": last4, "created_at": cx.now_iso()}),
    )
}

async fn delete(cx: &RequestContext, caller: &Caller, provider: Provider) -> ApiResult<Response> {
    let db = cx.db()?;
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
    invalidate_account(cx, &db, &caller.account_id).await?;
    json(
        200,
        &json!({"provider": provider.as_str(), "deleted": true}),
    )
}

async fn list(cx: &RequestContext, caller: &Caller) -> ApiResult<Response> {
    #[derive(Deserialize)]
    struct Row {
        provider: String,
        last4: String,
        created_at: i64,
    }
    let rows = d1::all::<Row>(
        &cx.db()?,
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

async fn access_log(cx: &RequestContext, caller: &Caller) -> ApiResult<Response> {
    #[derive(Deserialize)]
    struct Row {
        provider: String,
        request_id: String,
        purpose: String,
        created_at: i64,
    }
    let rows = d1::all::<Row>(
        &cx.db()?,
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
