//! `GET /v1/ask/:id`: an archived answer, for the account (and key) that was given it, within
//! the 30-day window; 410 past it, one 404 for every other id.

use crate::db::retention::RETENTION_DAYS;
use crate::db::retention::RETENTION_MS;
use gateway_core::error::ApiError;
use gateway_core::keys;
use serde::Deserialize;
use serde_json::Value;
use worker::Response;

use crate::auth::Caller;
use crate::db::d1;
use crate::db::d1::{opt_text as opt, text as s};
use crate::db::usage_log;
use crate::http::context::RequestContext;
use crate::http::response::{json, json_text};
use gateway_core::error::ApiResult;

/// One 404 for another account's id, an unknown id and a malformed id.
fn archive_not_found() -> ApiError {
    ApiError::new(404, "not_found", "no such request")
}

/// The only key whose calls the caller may read: its own, for a test key; `None` (every key of
/// the account) for a live key.
pub(crate) fn own_key(caller: &Caller) -> Option<&str> {
    caller.is_test().then_some(caller.prefix.as_str())
}

/// `GET /v1/ask/:id`.
pub async fn get_archived(cx: &RequestContext, caller: &Caller, id: &str) -> ApiResult<Response> {
    if !keys::is_id("req", id) {
        return Err(archive_not_found());
    }
    #[derive(Deserialize)]
    struct Row {
        account_id: String,
        created_at: f64,
        response: String,
    }
    // Answered a moment ago by this isolate: the row may still wait in its write queue.
    if let Some(body) = usage_log::queued_answer(id, &caller.account_id, own_key(caller)) {
        return json_text(200, body);
    }
    // A test key reads the answers of its own calls only (docs/DECISIONS.md, "Test keys").
    let row = d1::first::<Row>(
        &cx.db()?,
        "SELECT account_id, created_at, response FROM response_archive WHERE request_id = ?1 \
         AND (?2 IS NULL OR EXISTS (SELECT 1 FROM usage_events WHERE request_id = ?1 AND key_prefix = ?2))",
        &[s(id), opt(own_key(caller))],
    )
    .await?;
    let expired = || {
        ApiError::new(410, "expired", "this answer is past the retention window")
            .with("retention_days", RETENTION_DAYS)
    };
    let Some(row) = row
        .filter(|r| keys::constant_time_eq(r.account_id.as_bytes(), caller.account_id.as_bytes()))
    else {
        // Gone from the archive: if it was this account's answer and is past the window (the
        // cron deleted it), still 410; otherwise the one 404.
        return Err(if answered_before(cx, caller, id, RETENTION_MS).await? {
            expired()
        } else {
            archive_not_found()
        });
    };
    if cx.now_ms.saturating_sub(row.created_at as u64) > RETENTION_MS {
        return Err(expired());
    }
    let body: Value = serde_json::from_str(&row.response).map_err(|_| ApiError::internal())?;
    json(200, &body)
}

/// Whether the caller's account was answered by `POST /v1/ask` (200, the archived kind) under
/// request `id` more than `age_ms` ago, by its usage row (kept after the archive row is gone).
async fn answered_before(
    cx: &RequestContext,
    caller: &Caller,
    id: &str,
    age_ms: u64,
) -> ApiResult<bool> {
    #[derive(Deserialize)]
    struct Found {
        created_at: f64,
    }
    let found = d1::first::<Found>(
        &cx.db()?,
        "SELECT created_at FROM usage_events WHERE request_id = ?1 AND account_id = ?2 \
         AND status_code = 200 AND endpoint = 'POST /v1/ask' AND (?3 IS NULL OR key_prefix = ?3)",
        &[s(id), s(&caller.account_id), opt(own_key(caller))],
    )
    .await?;
    Ok(found.is_some_and(|f| cx.now_ms.saturating_sub(f.created_at as u64) > age_ms))
}
