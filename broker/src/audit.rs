//! The `key_access_log`: one row, in the D1 database the gateway shares, written before every
//! decryption of a key an account brought (and a second one when that decryption fails).

use gateway_core::providers::Provider;
use worker::Env;
use worker_shared::d1;

/// Why an access could not be recorded.
#[derive(Debug)]
pub enum AuditError {
    /// The database (its binding, the statement or the write) failed.
    Database(worker::Error),
    /// The account was deleted while the call was on its way: no row, and then no key use.
    AccountGone,
}

impl std::fmt::Display for AuditError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuditError::Database(e) => write!(f, "{e}"),
            AuditError::AccountGone => f.write_str("the account no longer exists"),
        }
    }
}

/// Writes one `key_access_log` row.
pub async fn audit(
    env: &Env,
    account_id: &str,
    provider: Provider,
    request_id: &str,
    purpose: &str,
) -> Result<(), AuditError> {
    let db = env.d1("DB").map_err(AuditError::Database)?;
    let now = worker_shared::clock::now_ms();
    // No row for an account deleted while the call was on its way: and then no key use.
    let insert = d1::statement(
        &db,
        "INSERT INTO key_access_log (account_id, provider, request_id, purpose, created_at) \
         SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM accounts WHERE id = ?1)",
        &[
            d1::text(account_id),
            d1::text(provider.as_str()),
            d1::text(request_id),
            d1::text(purpose),
            d1::num(now),
        ],
    )
    .map_err(AuditError::Database)?;
    let written = d1::run(&insert).await.map_err(AuditError::Database)?;
    if written == 0 {
        return Err(AuditError::AccountGone);
    }
    Ok(())
}
