//! The `api_keys` rows: minting within the cap, lookup by prefix, listing, revocation, use.

use serde::{Deserialize, Serialize};
use worker::D1Database;

use crate::db::d1;
use crate::db::d1::{num, opt_text, text};
use gateway_core::error::ApiResult;

/// What authenticating a key needs, in one row (also the KV auth cache entry).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyAuthRow {
    pub prefix: String,
    pub key_hash: String,
    pub account_id: String,
    pub mode: String,
    pub status: String,
    pub tier: String,
    pub limits_json: Option<String>,
    pub store_prompt_prefix: i64,
    /// Providers the account registered its own key for, comma-separated.
    #[serde(default)]
    pub byok: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyListRow {
    pub prefix: String,
    pub name: Option<String>,
    pub mode: String,
    pub status: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// How many key rows the account holds, active or revoked.
pub async fn count_keys(db: &D1Database, account_id: &str) -> ApiResult<u64> {
    d1::count(
        db,
        "SELECT COUNT(*) AS n FROM api_keys WHERE account_id = ?1",
        &[text(account_id)],
    )
    .await
}

/// Inserts a key if the account holds fewer than `max_keys` rows (checked in the same
/// statement, so parallel mints cannot pass the cap together); returns false on a prefix
/// collision or at the cap (the caller tells them apart with [`count_keys`]).
#[allow(clippy::too_many_arguments)]
pub async fn insert_key(
    db: &D1Database,
    prefix: &str,
    account_id: &str,
    key_hash: &str,
    name: Option<&str>,
    mode: &str,
    now_ms: u64,
    max_keys: u64,
) -> ApiResult<bool> {
    let changed = d1::run(
        db,
        "INSERT INTO api_keys (prefix, account_id, key_hash, name, mode, status, created_at) \
         SELECT ?1, ?2, ?3, ?4, ?5, 'active', ?6 \
         WHERE (SELECT COUNT(*) FROM api_keys WHERE account_id = ?2) < ?7 \
         ON CONFLICT(prefix) DO NOTHING",
        &[
            text(prefix),
            text(account_id),
            text(key_hash),
            opt_text(name),
            text(mode),
            num(now_ms),
            num(max_keys),
        ],
    )
    .await?;
    Ok(changed > 0)
}

pub async fn key_for_auth(db: &D1Database, prefix: &str) -> ApiResult<Option<KeyAuthRow>> {
    d1::first(
        db,
        "SELECT k.prefix, k.key_hash, k.account_id, k.mode, k.status, a.tier, a.limits_json, a.store_prompt_prefix, \
         (SELECT group_concat(p.provider) FROM provider_keys p WHERE p.account_id = k.account_id) AS byok \
         FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.prefix = ?1",
        &[text(prefix)],
    )
    .await
}

pub async fn list_keys(db: &D1Database, account_id: &str) -> ApiResult<Vec<KeyListRow>> {
    d1::all(
        db,
        "SELECT prefix, name, mode, status, created_at, last_used_at FROM api_keys \
         WHERE account_id = ?1 ORDER BY created_at, prefix",
        &[text(account_id)],
    )
    .await
}

/// How long after its last use or its revocation a key's auth cache entries are still
/// cleared with its account's: well past the KV entry's 60 s, so one a failed delete left is
/// cleared too.
const RECENT_MS: u64 = 10 * 60 * 1000;

/// Prefixes of the account's keys whose auth cache entries may exist (to invalidate them, and
/// to revoke their buckets when the account goes): those used or revoked in the last 10
/// minutes. A KV entry is written only after a call, with the key's `last_used_at` beside it,
/// so a key idle longer has none. Not every key the account has: one KV delete each, twice,
/// for up to the 1,000 keys an account may hold would overrun an invocation's budget of KV
/// operations.
pub async fn key_prefixes(
    db: &D1Database,
    account_id: &str,
    now_ms: u64,
) -> ApiResult<Vec<String>> {
    #[derive(Deserialize)]
    struct P {
        prefix: String,
    }
    let since = now_ms.saturating_sub(RECENT_MS);
    let rows: Vec<P> = d1::all(
        db,
        "SELECT prefix FROM api_keys WHERE account_id = ?1 \
         AND (last_used_at >= ?2 OR revoked_at >= ?2)",
        &[text(account_id), num(since)],
    )
    .await?;
    Ok(rows.into_iter().map(|p| p.prefix).collect())
}

/// Revokes the account's key; returns false when no such key belongs to the account. Revoking
/// it again is answered as the first time (a retry after a failed step of the route) but keeps
/// its first `revoked_at`, which starts its 30 days under the account's key cap.
pub async fn revoke_key(
    db: &D1Database,
    account_id: &str,
    prefix: &str,
    now_ms: u64,
) -> ApiResult<bool> {
    let changed = d1::run(
        db,
        "UPDATE api_keys SET status = 'revoked', revoked_at = COALESCE(revoked_at, ?3) \
         WHERE prefix = ?1 AND account_id = ?2",
        &[text(prefix), text(account_id), num(now_ms)],
    )
    .await?;
    Ok(changed > 0)
}

pub async fn touch_key(db: &D1Database, prefix: &str, now_ms: u64) -> ApiResult<()> {
    d1::run(
        db,
        "UPDATE api_keys SET last_used_at = ?2 WHERE prefix = ?1",
        &[text(prefix), num(now_ms)],
    )
    .await
    .map(|_| ())
}
