//! D1 access for accounts and API keys: the only place the gateway writes SQL for them.

use gateway_core::error::ApiError;
use serde::{Deserialize, Serialize};
use worker::D1Database;

use crate::d1::{self, num, opt_text, text};
use crate::edge::Outcome;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountRow {
    pub id: String,
    pub tier: String,
    pub limits_json: Option<String>,
    pub store_prompt_prefix: i64,
    pub created_at: i64,
}

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

pub async fn insert_account(
    db: &D1Database,
    id: &str,
    tier: &str,
    limits_json: Option<&str>,
    now_ms: u64,
) -> Outcome<()> {
    d1::run(
        db,
        "INSERT INTO accounts (id, tier, limits_json, store_prompt_prefix, created_at) VALUES (?1, ?2, ?3, 0, ?4)",
        &[text(id), text(tier), opt_text(limits_json), num(now_ms)],
    )
    .await
    .map(|_| ())
}

pub async fn get_account(db: &D1Database, id: &str) -> Outcome<Option<AccountRow>> {
    d1::first(
        db,
        "SELECT id, tier, limits_json, store_prompt_prefix, created_at FROM accounts WHERE id = ?1",
        &[text(id)],
    )
    .await
}

/// Changes tier (and enterprise limits); returns false when the account does not exist.
pub async fn update_tier(
    db: &D1Database,
    id: &str,
    tier: &str,
    limits_json: Option<&str>,
) -> Outcome<bool> {
    let changed = d1::run(
        db,
        // Limits given replace the stored ones; none given keep them while the account stays
        // enterprise (the only tier they apply to), and drop them otherwise.
        "UPDATE accounts SET tier = ?2, limits_json = CASE WHEN ?3 IS NOT NULL THEN ?3 \
         WHEN ?2 = 'enterprise' THEN limits_json ELSE NULL END WHERE id = ?1",
        &[text(id), text(tier), opt_text(limits_json)],
    )
    .await?;
    Ok(changed > 0)
}

pub async fn set_store_prompt_prefix(db: &D1Database, id: &str, on: bool) -> Outcome<()> {
    d1::run(
        db,
        "UPDATE accounts SET store_prompt_prefix = ?2 WHERE id = ?1",
        &[text(id), num(u64::from(on))],
    )
    .await
    .map(|_| ())
}

/// How many key rows the account holds, active or revoked.
pub async fn count_keys(db: &D1Database, account_id: &str) -> Outcome<u64> {
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
) -> Outcome<bool> {
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

pub async fn key_for_auth(db: &D1Database, prefix: &str) -> Outcome<Option<KeyAuthRow>> {
    d1::first(
        db,
        "SELECT k.prefix, k.key_hash, k.account_id, k.mode, k.status, a.tier, a.limits_json, a.store_prompt_prefix, \
         (SELECT group_concat(p.provider) FROM provider_keys p WHERE p.account_id = k.account_id) AS byok \
         FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.prefix = ?1",
        &[text(prefix)],
    )
    .await
}

pub async fn list_keys(db: &D1Database, account_id: &str) -> Outcome<Vec<KeyListRow>> {
    d1::all(
        db,
        "SELECT prefix, name, mode, status, created_at, last_used_at FROM api_keys \
         WHERE account_id = ?1 ORDER BY created_at, prefix",
        &[text(account_id)],
    )
    .await
}

/// Prefixes of all the account's keys (to invalidate their auth cache entries).
pub async fn key_prefixes(db: &D1Database, account_id: &str) -> Outcome<Vec<String>> {
    #[derive(Deserialize)]
    struct P {
        prefix: String,
    }
    let rows: Vec<P> = d1::all(
        db,
        "SELECT prefix FROM api_keys WHERE account_id = ?1",
        &[text(account_id)],
    )
    .await?;
    Ok(rows.into_iter().map(|p| p.prefix).collect())
}

/// Revokes the account's key; returns false when no such key belongs to the account.
pub async fn revoke_key(
    db: &D1Database,
    account_id: &str,
    prefix: &str,
    now_ms: u64,
) -> Outcome<bool> {
    let changed = d1::run(
        db,
        "UPDATE api_keys SET status = 'revoked', revoked_at = ?3 WHERE prefix = ?1 AND account_id = ?2",
        &[text(prefix), text(account_id), num(now_ms)],
    )
    .await?;
    Ok(changed > 0)
}

pub async fn touch_key(db: &D1Database, prefix: &str, now_ms: u64) -> Outcome<()> {
    d1::run(
        db,
        "UPDATE api_keys SET last_used_at = ?2 WHERE prefix = ?1",
        &[text(prefix), num(now_ms)],
    )
    .await
    .map(|_| ())
}

/// Maps "no such account" for admin routes.
pub fn account_not_found() -> ApiError {
    ApiError::new(404, "account_not_found", "no such account")
}
