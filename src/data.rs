//! Data handling routes: the archived answer (`GET /v1/ask/:id`), usage (`GET /v1/usage`),
//! account settings and deletion (`PATCH`/`DELETE /v1/account`), and the retention cron.

use gateway_core::error::ApiError;
use gateway_core::keys;
use serde::Deserialize;
use serde_json::{json, Value};
use worker::{console_error, console_log, D1Database, Request, Response, Url};

use crate::auth::{invalidate, invalidate_account, Caller};
use crate::d1::{self, num as n, opt_text as opt, text as s};
use crate::edge::{dependency, iso8601, json, json_text, read_json_object, Gw, Outcome};
use crate::{bucket, ledger, record, store};

/// Days an archived answer is served.
pub const RETENTION_DAYS: u64 = 30;
const RETENTION_MS: u64 = RETENTION_DAYS * 86_400_000;
/// Rows the cron deletes per statement, and statements per run.
const PURGE_BATCH: u64 = 500;
const PURGE_MAX_BATCHES: u32 = 1000;

/// One 404 for another account's id, an unknown id and a malformed id.
fn archive_not_found() -> ApiError {
    ApiError::new(404, "not_found", "no such request")
}

/// The only key whose calls the caller may read: its own, for a test key; `None` (every key of
/// the account) for a live key.
fn own_key(caller: &Caller) -> Option<&str> {
    caller.is_test().then_some(caller.prefix.as_str())
}

/// `GET /v1/ask/:id`.
pub async fn get_archived(gw: &Gw, caller: &Caller, id: &str) -> Outcome<Response> {
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
    if let Some(body) = record::queued_answer(id, &caller.account_id, own_key(caller)) {
        return json_text(200, body);
    }
    // A test key reads the answers of its own calls only (docs/DECISIONS.md, "Test keys").
    let row = d1::first::<Row>(
        &gw.db()?,
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
        return Err(if answered_before(gw, caller, id, RETENTION_MS).await? {
            expired()
        } else {
            archive_not_found()
        });
    };
    if gw.now_ms.saturating_sub(row.created_at as u64) > RETENTION_MS {
        return Err(expired());
    }
    let body: Value = serde_json::from_str(&row.response).map_err(|_| ApiError::internal())?;
    json(200, &body)
}

/// Whether the caller's account was answered by `POST /v1/ask` (200, the archived kind) under
/// request `id` more than `age_ms` ago, by its usage row (kept after the archive row is gone).
async fn answered_before(gw: &Gw, caller: &Caller, id: &str, age_ms: u64) -> Outcome<bool> {
    #[derive(Deserialize)]
    struct Found {
        created_at: f64,
    }
    let found = d1::first::<Found>(
        &gw.db()?,
        "SELECT created_at FROM usage_events WHERE request_id = ?1 AND account_id = ?2 \
         AND status_code = 200 AND endpoint = 'POST /v1/ask' AND (?3 IS NULL OR key_prefix = ?3)",
        &[s(id), s(&caller.account_id), opt(own_key(caller))],
    )
    .await?;
    Ok(found.is_some_and(|f| gw.now_ms.saturating_sub(f.created_at as u64) > age_ms))
}

/// The latest instant a JavaScript `Date` can hold (epoch ms): bounds past it are refused.
const MAX_TIME_MS: u64 = 8_640_000_000_000_000;

/// Parses a time bound: epoch milliseconds or an ISO-8601 date-time, within `Date`'s range.
fn time_param(name: &str, v: &str) -> Outcome<u64> {
    let ms = match v.parse::<u64>() {
        Ok(ms) => Some(ms),
        Err(_) => {
            let ms = worker::js_sys::Date::parse(v);
            (ms.is_finite() && ms >= 0.0).then_some(ms as u64)
        }
    };
    if let Some(ms) = ms.filter(|ms| *ms <= MAX_TIME_MS) {
        Ok(ms)
    } else {
        Err(ApiError::invalid_param(
            name,
            format!("`{name}` must be epoch milliseconds or an ISO-8601 time"),
        ))
    }
}

/// `GET /v1/usage?from=&to=&limit=&cursor=`: totals over the window and the newest events,
/// paginated by `cursor` (the `next_cursor` of the previous page).
pub async fn get_usage(gw: &Gw, caller: &Caller, url: &Url) -> Outcome<Response> {
    let mut from = 0u64;
    let mut to = gw.now_ms + 1;
    let mut limit = 50u64;
    let mut cursor = i64::MAX as u64;
    for (k, v) in url.query_pairs() {
        match k.as_ref() {
            "from" => from = time_param("from", &v)?,
            "to" => to = time_param("to", &v)?,
            "limit" => {
                limit = v
                    .parse::<u64>()
                    .ok()
                    .filter(|l| (1..=500).contains(l))
                    .ok_or_else(|| ApiError::invalid_param("limit", "`limit` must be 1..=500"))?
            }
            "cursor" => {
                cursor = v
                    .parse::<u64>()
                    .ok()
                    .filter(|c| *c <= i64::MAX as u64)
                    .ok_or_else(|| ApiError::invalid_param("cursor", "`cursor` is not valid"))?
            }
            other => {
                return Err(ApiError::invalid_param(
                    &other.chars().take(40).collect::<String>(),
                    "unknown query parameter; expected from, to, limit, cursor",
                ))
            }
        }
    }
    let db = gw.db()?;
    #[derive(Deserialize)]
    struct Totals {
        calls: f64,
        input_tokens: Option<f64>,
        output_tokens: Option<f64>,
        credits: Option<f64>,
        cache_hits: Option<f64>,
    }
    let totals = d1::first::<Totals>(
        &db,
        "SELECT COUNT(*) AS calls, SUM(input_tokens) AS input_tokens, SUM(output_tokens) AS output_tokens, \
             SUM(credits) AS credits, SUM(cache_status = 'hit') AS cache_hits FROM usage_events \
             WHERE account_id = ?1 AND created_at >= ?2 AND created_at < ?3 \
             AND (?4 IS NULL OR key_prefix = ?4)",
        &[s(&caller.account_id), n(from), n(to), opt(own_key(caller))],
    )
    .await?;
    #[derive(Deserialize)]
    struct Row {
        id: f64,
        key_prefix: String,
        request_id: String,
        endpoint: String,
        providers: String,
        cache_status: Option<String>,
        cache_tier: Option<String>,
        status_code: f64,
        input_tokens: f64,
        output_tokens: f64,
        credits: f64,
        latency_ms: f64,
        prompt_prefix: Option<String>,
        created_at: f64,
    }
    let rows = d1::all::<Row>(
        &db,
        "SELECT id, key_prefix, request_id, endpoint, providers, cache_status, cache_tier, status_code, \
             input_tokens, output_tokens, credits, latency_ms, prompt_prefix, created_at FROM usage_events \
             WHERE account_id = ?1 AND created_at >= ?2 AND created_at < ?3 AND id < ?4 \
             AND (?6 IS NULL OR key_prefix = ?6) ORDER BY id DESC LIMIT ?5",
        &[s(&caller.account_id), n(from), n(to), n(cursor), n(limit), opt(own_key(caller))],
    )
    .await?;
    let next_cursor = (rows.len() as u64 == limit)
        .then(|| rows.last().map(|r| r.id as u64))
        .flatten();
    let events: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut e = json!({
                "request_id": r.request_id,
                "key_prefix": r.key_prefix,
                "endpoint": r.endpoint,
                "providers": r.providers.split(',').filter(|p| !p.is_empty()).collect::<Vec<_>>(),
                "cache": {"status": r.cache_status, "tier": r.cache_tier},
                "status": r.status_code as u64,
                "tokens": {"input": r.input_tokens as u64, "output": r.output_tokens as u64},
                "credits": r.credits as u64,
                "latency_ms": r.latency_ms as u64,
                "created_at": iso8601(r.created_at as u64),
            });
            if let Some(p) = &r.prompt_prefix {
                e["prompt_prefix"] = json!(p);
            }
            e
        })
        .collect();
    let t = totals.unwrap_or(Totals {
        calls: 0.0,
        input_tokens: None,
        output_tokens: None,
        credits: None,
        cache_hits: None,
    });
    json(
        200,
        &json!({
            "account_id": caller.account_id,
            "from": iso8601(from),
            "to": iso8601(to),
            "totals": {
                "calls": t.calls as u64,
                "cache_hits": t.cache_hits.unwrap_or(0.0) as u64,
                "input_tokens": t.input_tokens.unwrap_or(0.0) as u64,
                "output_tokens": t.output_tokens.unwrap_or(0.0) as u64,
                "credits": t.credits.unwrap_or(0.0) as u64,
            },
            "events": events,
            "next_cursor": next_cursor.map(|c| c.to_string()),
        }),
    )
}

/// `PATCH /v1/account {"store_prompt_prefix": bool}`: the prompt-prefix opt-in.
pub async fn patch_account(gw: &Gw, caller: &Caller, req: &mut Request) -> Outcome<Response> {
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
    let db = gw.db()?;
    store::set_store_prompt_prefix(&db, &caller.account_id, on).await?;
    invalidate_account(gw, &db, &caller.account_id).await?;
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
pub async fn delete_account(gw: &Gw, caller: &Caller) -> Outcome<Response> {
    let db = gw.db()?;
    let prefixes = store::key_prefixes(&db, &caller.account_id).await?;
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
        bucket::revoke(&gw.env, p).await?;
    }
    d1::batch(&db, stmts)
        .await
        .map_err(dependency("D1 batch"))?;
    // Rows and fees this isolate still holds for the account are dropped, not written (only
    // now: had the delete failed, the account and its pending charges and rows would stay).
    record::forget_account(&caller.account_id);
    ledger::forget(&caller.account_id);
    // A batch of usage rows already in flight may land after the delete: sweep once more.
    sweep_later(gw, &caller.account_id);
    invalidate(gw, &prefixes).await?;
    ledger::wipe(gw, &caller.account_id).await?;
    json(
        200,
        &json!({"account_id": caller.account_id, "deleted": true}),
    )
}

/// Deletes the account's usage and archive rows again once in-flight batches have landed.
fn sweep_later(gw: &Gw, account_id: &str) {
    let Ok(db) = gw.db() else { return };
    let id = account_id.to_string();
    gw.after(async move {
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

/// The daily cron's other half: deletes the rows of keys revoked more than
/// `KEY_RETENTION_DAYS` ago, freeing their prefixes and their place under the account's key cap
/// (a freed prefix drawn again gets a cleared bucket at minting). Returns the rows deleted.
pub async fn purge_revoked_keys(db: &D1Database, now_ms: u64) -> u64 {
    let cutoff = now_ms.saturating_sub(crate::account::KEY_RETENTION_DAYS * 86_400_000);
    let deleted = d1::run(
        db,
        "DELETE FROM api_keys WHERE status = 'revoked' AND revoked_at < ?1",
        &[n(cutoff)],
    )
    .await
    .unwrap_or(0);
    console_log!("key purge: deleted {deleted} keys revoked before the retention window");
    deleted as u64
}

/// The daily retention cron: deletes archive rows older than 30 days in bounded batches.
pub async fn purge_archive(db: &D1Database, now_ms: u64) -> u64 {
    let cutoff = now_ms.saturating_sub(RETENTION_MS);
    let mut deleted = 0u64;
    for _ in 0..PURGE_MAX_BATCHES {
        let run = d1::run(
            db,
            "DELETE FROM response_archive WHERE rowid IN \
             (SELECT rowid FROM response_archive WHERE created_at < ?1 LIMIT ?2)",
            &[n(cutoff), n(PURGE_BATCH)],
        )
        .await;
        // A failure is logged by `d1::run`; the next night's run resumes.
        let Ok(changes) = run.map(|c| c as u64) else {
            console_error!("archive purge stopped after {deleted} rows");
            break;
        };
        deleted += changes;
        if changes < PURGE_BATCH {
            break;
        }
    }
    console_log!("archive purge: deleted {deleted} rows older than {RETENTION_DAYS} days");
    deleted
}
