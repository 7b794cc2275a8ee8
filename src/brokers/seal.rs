//! Sealing a key an account brings, in its provider's broker (which alone holds the master
//! secret).

use super::passthrough::broker_error;
use super::post_to_broker;

use gateway_core::broker::{SealRequest, SEAL_PATH};
use gateway_core::error::ApiError;
use gateway_core::providers::Provider;
use serde_json::Value;
use worker::Headers;
use worker_shared::fetch;

use crate::http::context::RequestContext;
use gateway_core::error::ApiResult;

/// Seals a key the account brings, in `provider`'s broker (which alone holds the master
/// secret); returns the ciphertext to store. The plaintext is never logged.
pub async fn seal(
    cx: &RequestContext,
    provider: Provider,
    account_id: &str,
    key: &str,
) -> ApiResult<String> {
    let body = SealRequest {
        account_id: account_id.to_string(),
        provider,
        key: key.to_string(),
    };
    let payload = serde_json::to_string(&body).map_err(|_| ApiError::internal())?;
    let headers = Headers::new();
    let _ = headers.set("Content-Type", "application/json");
    let resp = post_to_broker(cx, provider, SEAL_PATH, headers, payload.into())
        .await
        .map_err(crate::runtime::dependency("broker seal"))?;
    let status = resp.status();
    let text = fetch::text(&resp).await.unwrap_or_default();
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    match (status, v["ciphertext"].as_str()) {
        (200, Some(c)) => Ok(c.to_string()),
        (400, _) => Err(broker_error(provider, status, &text, None)),
        _ => Err(broker_error(
            provider,
            status.max(500),
            &text,
            Some("5".into()),
        )),
    }
}
