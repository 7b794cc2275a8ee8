//! Bring-your-own keys: `POST /v1/byok/seal` encrypts a key an account brings, for this broker's
//! provider only, with the newest master key version; [`open_byok`] records the access to one,
//! then decrypts it for a call; `POST /v1/byok/reseal` moves stored keys to the newest version.

use gateway_core::broker::errors::{
    byok_unavailable, key_audit_unavailable, provider_key_unusable,
};
use gateway_core::broker::{ResealReport, ResealRequest, SealRequest, RESEAL_PURPOSE};
use gateway_core::error::ApiError;
use gateway_core::keys::byok::{self, AuditedOpenError, MasterKeys, Resealed};
use gateway_core::providers::Provider;
use serde::Deserialize;
use worker::{Env, Request, Response};
use worker_shared::body::read_capped;
use worker_shared::d1;
use worker_shared::env::var;

use crate::audit::{audit, AuditError};
use crate::log;
use crate::reply::Reply;

/// Largest seal (and re-seal) request body.
const SEAL_BODY_LIMIT: usize = 4 * 1024;

/// This broker's master keys: `BYOK_MASTER_KEY` (version 1, the name from before versioning)
/// and each `BYOK_MASTER_KEY_V<N>` that is set (N from 1 to 64).
fn master_keys(env: &Env) -> Result<MasterKeys, ApiError> {
    let legacy = var(env, byok::LEGACY_VAR);
    let numbered: Vec<(u32, String)> = (byok::FIRST_VERSION..=byok::MAX_VERSION)
        .filter_map(|v| var(env, &byok::version_var(v)).map(|k| (v, k)))
        .collect();
    let numbered: Vec<(u32, &str)> = numbered.iter().map(|(v, k)| (*v, k.as_str())).collect();
    MasterKeys::from_secrets(legacy.as_deref(), &numbered).map_err(|e| {
        log(&format!(
            "broker misconfigured: {e} (BYOK_MASTER_KEY, BYOK_MASTER_KEY_V<N>)"
        ));
        byok_unavailable()
    })
}

fn fresh_nonce() -> Result<[u8; byok::NONCE_LEN], ApiError> {
    let mut nonce = [0u8; byok::NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|_| {
        log("broker: getrandom failed");
        ApiError::unavailable(1)
    })?;
    Ok(nonce)
}

/// `POST /v1/byok/seal`: `{account_id, provider, key}` in, `{ciphertext}` out.
pub async fn seal(mut req: Request, env: &Env, provider: Provider) -> Result<Response, ApiError> {
    let body = read_capped(&mut req, SEAL_BODY_LIMIT).await?;
    let r: SealRequest = serde_json::from_slice(&body)
        .map_err(|_| ApiError::invalid_request("body is not a seal request"))?;
    if r.provider != provider || !byok::supports(provider) {
        return Err(ApiError::invalid_request(
            "this broker seals only its own provider's keys",
        ));
    }
    byok::check_key(&r.key).map_err(|m| ApiError::invalid_param("key", m))?;
    let keys = master_keys(env)?;
    let nonce = fresh_nonce()?;
    let ciphertext = byok::seal(&keys, &r.account_id, provider, &r.key, nonce)
        .map_err(|_| ApiError::internal())?;
    Reply::json(200, &serde_json::json!({ "ciphertext": ciphertext }))?.into_response()
}

/// Records the access, then decrypts the account's key ([`byok::open_audited`] owns that
/// order). An access that cannot be recorded decrypts nothing (503); a key that does not decrypt
/// is refused (424), its attempt recorded a second time as `… (decryption failed)`.
pub async fn open_byok(
    env: &Env,
    provider: Provider,
    account_id: &str,
    request_id: &str,
    purpose: &str,
    sealed: &str,
) -> Result<String, ApiError> {
    let keys = master_keys(env)?;
    let opened =
        byok::open_audited(
            purpose,
            |purpose: String| async move {
                audit(env, account_id, provider, request_id, &purpose).await
            },
            || byok::open(&keys, account_id, provider, sealed),
        )
        .await;
    opened.map_err(|e| match e {
        AuditedOpenError::NotRecorded(e) => {
            log(&format!(
                "broker {provider}: key access log write failed, key not decrypted: {e}"
            ));
            key_audit_unavailable()
        }
        AuditedOpenError::Unusable {
            error,
            failure_recorded,
        } => {
            log(&format!(
                "broker {provider}: request {request_id}: account key refused: {error}"
            ));
            if let Err(e) = failure_recorded {
                log(&format!(
                    "broker {provider}: request {request_id}: the failed decryption's row was not written: {e}"
                ));
            }
            provider_key_unusable(provider)
        }
    })
}

/// `POST /v1/byok/reseal`: moves one page of this broker's provider's stored keys (those not at
/// the newest master key version, in account order after `after`) to the newest version. Each
/// key's access is recorded before it is decrypted, as for a call (purpose
/// [`RESEAL_PURPOSE`]); the new ciphertext replaces the old one only if the row still holds the
/// old one (an account that changed or deleted its key meanwhile keeps its change).
pub async fn reseal(mut req: Request, env: &Env, provider: Provider) -> Result<Response, ApiError> {
    if !byok::supports(provider) {
        return Err(ApiError::not_found());
    }
    let body = read_capped(&mut req, SEAL_BODY_LIMIT).await?;
    let r: ResealRequest = serde_json::from_slice(&body)
        .map_err(|_| ApiError::invalid_request("body is not a re-seal request"))?;
    let keys = master_keys(env)?;
    let mut report = ResealReport {
        newest_version: keys.newest(),
        ..ResealReport::default()
    };
    // The newest version is 1: no key can be at an older one.
    let Some(prefix) = keys.newest_prefix() else {
        return Reply::json(200, &report)?.into_response();
    };
    let unavailable = |what: &str, e: worker::Error| {
        log(&format!(
            "broker {provider}: re-seal {}: {what}: {e}",
            r.request_id
        ));
        ApiError::unavailable(1)
    };
    let db = env.d1("DB").map_err(|e| unavailable("no D1 binding", e))?;
    #[derive(Deserialize)]
    struct Row {
        account_id: String,
        ciphertext: String,
    }
    let page = r.page();
    let select = d1::statement(
        &db,
        "SELECT account_id, ciphertext FROM provider_keys WHERE provider = ?1 AND account_id > ?2 \
         AND substr(ciphertext, 1, ?3) <> ?4 ORDER BY account_id LIMIT ?5",
        &[
            d1::text(provider.as_str()),
            d1::text(r.after.as_deref().unwrap_or("")),
            d1::num(prefix.len() as u64),
            d1::text(&prefix),
            d1::num(u64::from(page)),
        ],
    )
    .map_err(|e| unavailable("select not bound", e))?;
    let rows: Vec<Row> = d1::retry_busy(|| select.all())
        .await
        .and_then(|r| r.results::<Row>())
        .map_err(|e| unavailable("select failed", e))?;
    if rows.len() == page as usize {
        report.next = rows.last().map(|r| r.account_id.clone());
    }
    let request_id = r.request_id.as_str();
    for row in &rows {
        report.visited += 1;
        let nonce = fresh_nonce()?;
        let account_id = row.account_id.as_str();
        let opened = byok::open_audited(
            RESEAL_PURPOSE,
            |purpose: String| async move {
                audit(env, account_id, provider, request_id, &purpose).await
            },
            || match byok::reseal(&keys, account_id, provider, &row.ciphertext, nonce)? {
                Resealed::Moved { ciphertext, .. } => Ok(ciphertext),
                Resealed::Current => Ok(row.ciphertext.clone()),
            },
        )
        .await;
        let resealed = match opened {
            Ok(resealed) => resealed,
            Err(AuditedOpenError::NotRecorded(AuditError::AccountGone)) => {
                report.changed_meanwhile += 1;
                continue;
            }
            Err(AuditedOpenError::NotRecorded(e)) => {
                log(&format!(
                    "broker {provider}: re-seal {}: key access log write failed, key not decrypted: {e}",
                    r.request_id
                ));
                report.retry_later += 1;
                continue;
            }
            Err(AuditedOpenError::Unusable { error, .. }) => {
                log(&format!(
                    "broker {provider}: re-seal {}: a stored key of account {account_id} does not open: {error}",
                    r.request_id
                ));
                report.unusable += 1;
                continue;
            }
        };
        let update = d1::statement(
            &db,
            "UPDATE provider_keys SET ciphertext = ?4 WHERE account_id = ?1 AND provider = ?2 \
             AND ciphertext = ?3",
            &[
                d1::text(account_id),
                d1::text(provider.as_str()),
                d1::text(&row.ciphertext),
                d1::text(&resealed),
            ],
        );
        match update {
            Ok(st) => match d1::run(&st).await {
                Ok(1) => report.resealed += 1,
                Ok(_) => report.changed_meanwhile += 1,
                Err(e) => {
                    log(&format!(
                        "broker {provider}: re-seal {}: update failed: {e}",
                        r.request_id
                    ));
                    report.retry_later += 1;
                }
            },
            Err(e) => {
                log(&format!(
                    "broker {provider}: re-seal {}: update not bound: {e}",
                    r.request_id
                ));
                report.retry_later += 1;
            }
        }
    }
    log(&format!(
        "{{\"byok_reseal\":{{\"provider\":\"{provider}\",\"request_id\":\"{}\",\"report\":{}}}}}",
        r.request_id,
        serde_json::to_string(&report).unwrap_or_default()
    ));
    Reply::json(200, &report)?.into_response()
}
