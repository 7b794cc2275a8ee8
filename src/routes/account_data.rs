//! `PATCH /v1/account` (the prompt-prefix opt-in) and `DELETE /v1/account` (every row of the
//! account, then its caches and objects).

use gateway_core::error::ApiError;
use serde_json::{json, Value};
use worker::{console_error, Request, Response};

use crate::auth::{invalidate, invalidate_account, Caller};
use crate::db::d1;
use crate::db::d1::text as s;
use crate::db::usage_log;
use crate::db::{accounts, api_keys};
use crate::http::context::RequestContext;
use crate::http::request::read_json_object;
use crate::http::response::json;
use crate::limits::bucket;
use crate::limits::ledger;
use crate::runtime::dependency;
use gateway_core::error::ApiResult;

/// `PATCH /v1/account {"store_prompt_prefix": bool}`: the prompt-prefix opt-in.
pub async fn patch_account(
    cx: &RequestContext,
    caller: &Caller,
    req: &mut Request,
) -> ApiResult<Response> {
    let body = read_json_object(req, 4096).await?;
    let on = body
        .get("store_prompt_prefix")
        .and_then(Value::as_bool)
        .ok_or_else(|| {
            ApiError::invalid_param(
                "store_prompt_prefix",
                "`store_prompt_prefix` must be a boolean",
            )
        })?;
    if body.len() != 1 {
        return Err(ApiError::invalid_request(
            "only `store_prompt_prefix` can be changed here",
        ));
    }
    let db = cx.db()?;
    accounts::set_store_prompt_prefix(&db, &caller.account_id, on).await?;
    invalidate_account(cx, &db, &caller.account_id).await?;
    json(
        200,
        &json!({"account_id": caller.account_id, "store_prompt_prefix": on}),
    )
}

/// `DELETE /v1/account`: its keys' buckets are revoked, then every row of the account in every
/// table goes in one D1 batch (a transaction); then its keys' auth cache entries and its
/// ledger are cleared.
/// Private cache entries become unreachable: their scope names an account id no key can
/// authenticate as again (ids are random and never reused).
pub async fn delete_account(cx: &RequestContext, caller: &Caller) -> ApiResult<Response> {
    let db = cx.db()?;
    let prefixes = api_keys::key_prefixes(&db, &caller.account_id, cx.now_ms).await?;
    let id = s(&caller.account_id);
    let mut stmts = Vec::new();
    for sql in [
        "DELETE FROM usage_events WHERE account_id = ?1",
        "DELETE FROM response_archive WHERE account_id = ?1",
        "DELETE FROM key_access_log WHERE account_id = ?1",
        "DELETE FROM provider_keys WHERE account_id = ?1",
        "DELETE FROM api_keys WHERE account_id = ?1",
        "DELETE FROM accounts WHERE id = ?1",
    ] {
        stmts.push(d1::statement(&db, sql, std::slice::from_ref(&id))?);
    }
    // The buckets are revoked while the rows still hold their prefixes: a key minted later
    // on a freed prefix clears its bucket after this (account::mint_key_from), never before.
    for p in &prefixes {
        bucket::revoke(&cx.env, p).await?;
    }
    d1::batch(&db, stmts)
        .await
        .map_err(dependency("D1 batch"))?;
    // Rows and fees this isolate still holds for the account are dropped, not written (only
    // now: had the delete failed, the account and its pending charges and rows would stay).
    usage_log::forget_account(&caller.account_id);
    ledger::forget(&caller.account_id);
    // A batch of usage rows already in flight may land after the delete: sweep once more.
    sweep_later(cx, &caller.account_id);
    invalidate(cx, &prefixes).await?;
    ledger::wipe(cx, &caller.account_id).await?;
    json(
        200,
        &json!({"account_id": caller.account_id, "deleted": true}),
    )
}

/// Deletes the account's usage and archive rows again once in-flight batches have landed.
fn sweep_later(cx: &RequestContext, account_id: &str) {
    let Ok(db) = cx.db() else { return };
    let id = account_id.to_string();
    cx.after(async move {
        worker::Delay::from(std::time::Duration::from_millis(500)).await;
        let mut stmts = Vec::new();
        for sql in [
            "DELETE FROM usage_events WHERE account_id = ?1",
            "DELETE FROM response_archive WHERE account_id = ?1",
        ] {
            // A statement that cannot be bound is logged by `d1::statement` and left out.
            if let Ok(st) = d1::statement(&db, sql, &[s(&id)]) {
                stmts.push(st);
            }
        }
        if let Err(e) = d1::batch(&db, stmts).await {
            console_error!("account sweep failed: {e}");
        }
    });
}
