//! The admin API (bearer ADMIN_TOKEN): create accounts, mint their keys, change tiers,
//! add credits.

use gateway_core::api::account::{key_request, only_fields, tier_change};
use gateway_core::error::ApiError;
use gateway_core::keys;
use gateway_core::limits::tier::AccountLimits;
use serde_json::{json, Map, Value};
use worker::{Request, Response};

use crate::auth::{invalidate_account, require_admin};
use crate::db::accounts;
use crate::http::context::RequestContext;
use crate::http::request::{read_json_object, read_optional_json_object};
use crate::http::response::json;
use crate::limits::ledger;
use crate::routes::account;
use crate::runtime::random_16;
use gateway_core::error::ApiResult;

const SMALL_BODY: usize = 16 * 1024;

/// Routes `/admin/...`.
pub async fn route(cx: &RequestContext, mut req: Request, segs: &[&str]) -> ApiResult<Response> {
    require_admin(cx, &req)?;
    let method = req.method();
    match (method.as_ref(), segs) {
        ("POST", ["accounts"]) => create_account(cx, &mut req).await,
        ("POST", ["accounts", id, "keys"]) => {
            let id = existing_account(cx, id).await?;
            let body = read_optional_json_object(&mut req, SMALL_BODY).await?;
            let (name, mode) = key_request(&body)?;
            let minted = account::mint_key(cx, &id, name.as_deref(), mode, None).await?;
            json(
                201,
                &json!({"key": minted.token, "prefix": minted.prefix, "mode": mode.as_str()}),
            )
        }
        ("PATCH", ["accounts", id]) => {
            let id = existing_account(cx, id).await?;
            let body = read_json_object(&mut req, SMALL_BODY).await?;
            patch_account(cx, &id, &body).await
        }
        ("POST", ["accounts", id, "credits"]) => {
            let id = existing_account(cx, id).await?;
            let body = read_json_object(&mut req, SMALL_BODY).await?;
            only_fields(&body, &["amount"])?;
            let amount = body
                .get("amount")
                .and_then(Value::as_u64)
                .filter(|a| *a >= 1 && *a <= 1_000_000_000_000)
                .ok_or_else(|| {
                    ApiError::invalid_param("amount", "`amount` must be a positive integer")
                })?;
            // A top-up retried after a lost answer (a 503 whose credit was applied) under the
            // same `Idempotency-Key` is applied once.
            let once = idempotency_key(&req)?;
            let bal = ledger::credit(cx, &id, amount, once).await?;
            json(
                200,
                &json!({"account_id": id, "credits_balance": bal.balance}),
            )
        }
        (_, ["accounts"]) | (_, ["accounts", _]) | (_, ["accounts", _, "keys" | "credits"]) => {
            Err(ApiError::method_not_allowed())
        }
        _ => Err(ApiError::not_found()),
    }
}

async fn existing_account(cx: &RequestContext, id: &str) -> ApiResult<String> {
    if !keys::is_id("acct", id) {
        return Err(accounts::account_not_found());
    }
    accounts::get_account(&cx.db()?, id)
        .await?
        .map(|a| a.id)
        .ok_or_else(accounts::account_not_found)
}

/// Enterprise limits as the accounts row stores them (JSON text).
fn stored_limits(limits: Option<AccountLimits>) -> ApiResult<Option<String>> {
    limits
        .map(|l| serde_json::to_string(&l).map_err(|_| ApiError::internal()))
        .transpose()
}

async fn create_account(cx: &RequestContext, req: &mut Request) -> ApiResult<Response> {
    let body = read_json_object(req, SMALL_BODY).await?;
    only_fields(&body, &["tier", "limits", "credits"])?;
    let (tier, limits) = tier_change(&body)?;
    let limits = stored_limits(limits)?;
    let credits = match body.get("credits") {
        None => 0,
        Some(v) => v
            .as_u64()
            .filter(|c| *c <= 1_000_000_000_000)
            .ok_or_else(|| {
                ApiError::invalid_param("credits", "`credits` must be a non-negative integer")
            })?,
    };
    let id = keys::make_id("acct", &random_16());
    // Credit the ledger first: a failure leaves no account row behind.
    if credits > 0 {
        ledger::credit(cx, &id, credits, None).await?;
    }
    accounts::insert_account(&cx.db()?, &id, tier.as_str(), limits.as_deref(), cx.now_ms).await?;
    json(
        201,
        &json!({"account_id": id, "tier": tier.as_str(), "credits_balance": credits}),
    )
}

async fn patch_account(
    cx: &RequestContext,
    id: &str,
    body: &Map<String, Value>,
) -> ApiResult<Response> {
    only_fields(body, &["tier", "limits"])?;
    let (tier, limits) = tier_change(body)?;
    let limits = stored_limits(limits)?;
    let db = cx.db()?;
    if !accounts::update_tier(&db, id, tier.as_str(), limits.as_deref()).await? {
        return Err(accounts::account_not_found());
    }
    // The next call of any of the account's keys must see the new tier.
    invalidate_account(cx, &db, id).await?;
    json(200, &json!({"account_id": id, "tier": tier.as_str()}))
}

/// The request's `Idempotency-Key` header: 1 to 128 visible ASCII characters (400 otherwise).
fn idempotency_key(req: &Request) -> ApiResult<Option<String>> {
    let Some(key) = req.headers().get("Idempotency-Key").ok().flatten() else {
        return Ok(None);
    };
    if key.is_empty() || key.len() > 128 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::invalid_request(
            "`Idempotency-Key` must be 1 to 128 visible ASCII characters",
        ));
    }
    Ok(Some(key))
}
