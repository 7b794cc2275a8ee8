//! Bring-your-own keys: `POST /v1/byok/seal` encrypts a key an account brings, for this broker's
//! provider only; [`open_byok`] records the access to one, then decrypts it for a call.

use gateway_core::broker::errors::{
    byok_unavailable, key_audit_unavailable, provider_key_unusable,
};
use gateway_core::broker::SealRequest;
use gateway_core::error::ApiError;
use gateway_core::keys::byok::{self, AuditedOpenError, MasterKey};
use gateway_core::providers::Provider;
use worker::{Env, Request, Response};
use worker_shared::body::read_capped;
use worker_shared::env::var;

use crate::audit::audit;
use crate::log;
use crate::reply::Reply;

/// Largest seal request body.
const SEAL_BODY_LIMIT: usize = 4 * 1024;

fn master_key(env: &Env) -> Result<MasterKey, ApiError> {
    var(env, "BYOK_MASTER_KEY")
        .and_then(|h| MasterKey::from_hex(&h).ok())
        .ok_or_else(|| {
            log("broker misconfigured: BYOK_MASTER_KEY is not set or not 32 hex-encoded bytes");
            byok_unavailable()
        })
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
    let master = master_key(env)?;
    let mut nonce = [0u8; byok::NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|_| {
        log("broker: getrandom failed");
        ApiError::unavailable(1)
    })?;
    let ciphertext = byok::seal(&master, &r.account_id, provider, &r.key, nonce)
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
    let master = master_key(env)?;
    let opened =
        byok::open_audited(
            purpose,
            |purpose: String| async move {
                audit(env, account_id, provider, request_id, &purpose).await
            },
            || byok::open(&master, account_id, provider, sealed),
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
