//! The `accounts` rows.

use gateway_core::error::ApiError;
use serde::{Deserialize, Serialize};
use worker::D1Database;

use crate::db::d1;
use crate::db::d1::{num, opt_text, text};
use gateway_core::error::ApiResult;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountRow {
    pub id: String,
    pub tier: String,
    pub limits_json: Option<String>,
    pub store_prompt_prefix: i64,
    pub created_at: i64,
}

pub async fn insert_account(
    db: &D1Database,
    id: &str,
    tier: &str,
    limits_json: Option<&str>,
    now_ms: u64,
) -> ApiResult<()> {
    d1::run(
        db,
        "INSERT INTO accounts (id, tier, limits_json, store_prompt_prefix, created_at) VALUES (?1, ?2, ?3, 0, ?4)",
        &[text(id), text(tier), opt_text(limits_json), num(now_ms)],
    )
    .await
    .map(|_| ())
}

pub async fn get_account(db: &D1Database, id: &str) -> ApiResult<Option<AccountRow>> {
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
) -> ApiResult<bool> {
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

pub async fn set_store_prompt_prefix(db: &D1Database, id: &str, on: bool) -> ApiResult<()> {
    d1::run(
        db,
        "UPDATE accounts SET store_prompt_prefix = ?2 WHERE id = ?1",
        &[text(id), num(u64::from(on))],
    )
    .await
    .map(|_| ())
}

/// Maps "no such account" for admin routes.
pub fn account_not_found() -> ApiError {
    ApiError::new(404, "account_not_found", "no such account")
}
