//! The `dashboard_sessions` rows: a session opened for an API key (its token stored hashed),
//! the key row of a live session, and its end.

use worker::D1Database;

use crate::db::api_keys::KeyAuthRow;
use crate::db::d1;
use crate::db::d1::{num, text};
use gateway_core::error::ApiResult;

/// Opens a session for the key `prefix` of `account_id`.
pub async fn open(
    db: &D1Database,
    token_hash: &str,
    prefix: &str,
    account_id: &str,
    now_ms: u64,
    expires_ms: u64,
) -> ApiResult<()> {
    d1::run(
        db,
        "INSERT INTO dashboard_sessions (token_hash, key_prefix, account_id, created_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        &[text(token_hash), text(prefix), text(account_id), num(now_ms), num(expires_ms)],
    )
    .await
    .map(|_| ())
}

/// The key row of the session whose token hashes to `token_hash`: only while the session has
/// not expired, its key is active and its account exists (all read from D1 now, so a revoked
/// key's session is refused at once).
pub async fn key_of(
    db: &D1Database,
    token_hash: &str,
    now_ms: u64,
) -> ApiResult<Option<KeyAuthRow>> {
    d1::first(
        db,
        "SELECT k.prefix, k.key_hash, k.account_id, k.mode, k.status, a.tier, a.limits_json, a.store_prompt_prefix, \
         (SELECT group_concat(p.provider) FROM provider_keys p WHERE p.account_id = k.account_id) AS byok \
         FROM dashboard_sessions s JOIN api_keys k ON k.prefix = s.key_prefix \
         JOIN accounts a ON a.id = k.account_id AND a.id = s.account_id \
         WHERE s.token_hash = ?1 AND s.expires_at > ?2 AND k.status = 'active'",
        &[text(token_hash), num(now_ms)],
    )
    .await
}

/// Ends a session: how many rows it ended (0 when no session had that token).
pub async fn close(db: &D1Database, token_hash: &str) -> ApiResult<usize> {
    d1::run(
        db,
        "DELETE FROM dashboard_sessions WHERE token_hash = ?1",
        &[text(token_hash)],
    )
    .await
}

/// Ends every session of the key `prefix` (revoked).
pub async fn close_for_key(db: &D1Database, prefix: &str) -> ApiResult<()> {
    d1::run(
        db,
        "DELETE FROM dashboard_sessions WHERE key_prefix = ?1",
        &[text(prefix)],
    )
    .await
    .map(|_| ())
}

/// Drops expired sessions (the retention cron).
pub async fn drop_expired(db: &D1Database, now_ms: u64) -> ApiResult<usize> {
    d1::run(
        db,
        "DELETE FROM dashboard_sessions WHERE expires_at <= ?1",
        &[num(now_ms)],
    )
    .await
}
