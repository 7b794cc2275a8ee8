//! The account API (gateway-key auth): the account itself, its keys, and key minting
//! shared with the admin API.

use gateway_core::api::account::key_request;
use gateway_core::api::route::V1Route;
use gateway_core::error::ApiError;
use gateway_core::keys::{self, KeyMode, MintedKey};
use serde_json::{json, Value};
use worker::{Request, Response};

use crate::auth::{invalidate, Caller};
use crate::db::api_keys;
use crate::db::retention::KEY_RETENTION_DAYS;
use crate::http::context::RequestContext;
use crate::http::request::read_optional_json_object;
use crate::http::response::json;
use crate::limits::bucket;
use crate::limits::ledger;
use crate::runtime::random_32;
use gateway_core::error::ApiResult;

const SMALL_BODY: usize = 16 * 1024;

/// Mints a key for the account, drawing a new secret on a prefix collision; with a cap, only
/// while the account holds fewer key rows (409 `key_limit_reached` at it).
pub async fn mint_key(
    cx: &RequestContext,
    account_id: &str,
    name: Option<&str>,
    mode: KeyMode,
    cap: Option<u64>,
) -> ApiResult<MintedKey> {
    mint_key_from(cx, account_id, name, mode, cap, random_32).await
}

/// [`mint_key`] with secrets from `draw` (a dev-only route fixes their first bytes, hence the
/// prefix). Once the key's row holds the prefix, the prefix's bucket is cleared: a prefix is
/// free again only after its previous key's account was deleted, which revoked that bucket.
pub async fn mint_key_from(
    cx: &RequestContext,
    account_id: &str,
    name: Option<&str>,
    mode: KeyMode,
    cap: Option<u64>,
    draw: impl Fn() -> ApiResult<[u8; 32]>,
) -> ApiResult<MintedKey> {
    let db = cx.db()?;
    // Uncapped: above any count (and exact as a JS number).
    let max_keys = cap.unwrap_or(1 << 53);
    for _ in 0..8 {
        let minted = keys::mint(mode, &draw()?);
        let inserted = api_keys::insert_key(
            &db,
            &minted.prefix,
            account_id,
            &minted.hash,
            name,
            mode.as_str(),
            cx.now_ms,
            max_keys,
        )
        .await?;
        if !inserted {
            // At the cap, or the prefix was taken (then draw again).
            let held = api_keys::count_keys(&db, account_id).await?;
            if held >= max_keys {
                return Err(key_limit_reached(held, max_keys));
            }
            continue;
        }
        crate::auth::minted(&minted.prefix);
        if let Err(e) = bucket::reset(&cx.env, &minted.prefix).await {
            // Nobody will hold this key's secret: leave no active row behind.
            api_keys::revoke_key(&db, account_id, &minted.prefix, cx.now_ms).await?;
            return Err(e);
        }
        return Ok(minted);
    }
    Err(ApiError::unavailable(1))
}

fn key_limit_reached(held: u64, limit: u64) -> ApiError {
    ApiError::new(
        409,
        "key_limit_reached",
        format!(
            "this account holds {held} keys (active, or revoked in the last \
             {KEY_RETENTION_DAYS} days); it may hold {limit}"
        ),
    )
    .with("max", limit)
}

/// Most key rows an account may hold through `POST /v1/keys`, revoked keys included (a revoked
/// key keeps its prefix until the daily cron drops it, `KEY_RETENTION_DAYS` after revocation):
/// one account minting and revoking in a loop cannot use up the 262,144 prefixes every
/// account draws from. The admin API is not capped.
pub const MAX_KEYS_PER_ACCOUNT: u64 = 1_000;

/// The cap, lowered only by the local test configuration (`DEV_MAX_KEYS_PER_ACCOUNT`, read in
/// a `dev-hooks` build under `DEV_MODE=1`).
#[cfg(feature = "dev-hooks")]
fn key_limit(cx: &RequestContext) -> u64 {
    let dev = cx
        .dev_mode()
        .then(|| cx.var("DEV_MAX_KEYS_PER_ACCOUNT"))
        .flatten()
        .and_then(|v| v.parse().ok());
    dev.unwrap_or(MAX_KEYS_PER_ACCOUNT)
}

/// The cap (a production build has no override).
#[cfg(not(feature = "dev-hooks"))]
fn key_limit(_gw: &RequestContext) -> u64 {
    MAX_KEYS_PER_ACCOUNT
}

/// Serves `GET /v1/account` and the `/v1/keys...` routes for an authenticated caller.
pub async fn route(
    cx: &RequestContext,
    mut req: Request,
    caller: &Caller,
    route: V1Route<'_>,
) -> ApiResult<Response> {
    match route {
        V1Route::Account => {
            let bal = ledger::balance(cx, &caller.account_id).await?;
            json(
                200,
                &json!({"account_id": caller.account_id, "tier": caller.tier.as_str(),
                    "credits_balance": bal.balance,
                    "store_prompt_prefix": caller.store_prompt_prefix}),
            )
        }
        V1Route::KeysMint => {
            let body = read_optional_json_object(&mut req, SMALL_BODY).await?;
            let (name, mode) = key_request(&body)?;
            let cap = Some(key_limit(cx));
            let minted = mint_key(cx, &caller.account_id, name.as_deref(), mode, cap).await?;
            json(
                201,
                &json!({"key": minted.token, "prefix": minted.prefix, "name": name, "mode": mode.as_str()}),
            )
        }
        V1Route::KeysList => {
            let rows = api_keys::list_keys(&cx.db()?, &caller.account_id).await?;
            let keys: Vec<Value> = rows
                .into_iter()
                .map(|r| {
                    json!({
                        "prefix": r.prefix,
                        "name": r.name,
                        "mode": r.mode,
                        "status": r.status,
                        "created_at": crate::runtime::iso8601(r.created_at as u64),
                        "last_used_at": r.last_used_at.map(|t| crate::runtime::iso8601(t as u64)),
                    })
                })
                .collect();
            json(200, &json!({"keys": keys}))
        }
        V1Route::KeyRevoke { prefix } => revoke(cx, caller, prefix).await,
        _ => Err(ApiError::not_found()),
    }
}

/// Revokes one of the caller's keys: D1 status, KV auth cache, then the key's bucket, so no
/// call that would reach a provider is admitted once this returns.
async fn revoke(cx: &RequestContext, caller: &Caller, prefix: &str) -> ApiResult<Response> {
    if prefix.len() != keys::PREFIX_LEN
        || !api_keys::revoke_key(&cx.db()?, &caller.account_id, prefix, cx.now_ms).await?
    {
        return Err(ApiError::new(
            404,
            "key_not_found",
            "no such key on this account",
        ));
    }
    invalidate(cx, &[prefix.to_string()]).await?;
    bucket::revoke(&cx.env, prefix).await?;
    // Its dashboard sessions are already refused (they join the key's status); drop them.
    crate::db::sessions::close_for_key(&cx.db()?, prefix).await?;
    json(200, &json!({"prefix": prefix, "status": "revoked"}))
}
