//! Re-sealing the keys accounts brought, after a BYOK master key rotation:
//! `POST /admin/byok/reseal/:provider` (admin token; body `{"after", "limit"}`, both optional)
//! asks that provider's broker, which alone holds the master keys, to move one page of its
//! stored keys to the newest version, and answers the broker's report with the provider named.
//! A caller repeats with `after` set to the report's `next` until `next` is null
//! (`scripts/reseal.sh` does; docs/OPERATIONS.md).

use super::passthrough::broker_error;
use super::post_to_broker;

use gateway_core::api::account::only_fields;
use gateway_core::broker::{ResealReport, ResealRequest, RESEAL_PAGE_MAX, RESEAL_PATH};
use gateway_core::error::{ApiError, ApiResult};
use gateway_core::keys::{self, byok};
use gateway_core::providers::Provider;
use serde_json::{json, Value};
use worker::{Headers, Request, Response};
use worker_shared::fetch;

use crate::auth::require_admin;
use crate::http::context::RequestContext;
use crate::http::request::read_optional_json_object;
use crate::http::response::json;
use crate::runtime::dependency;

/// Largest body of a re-seal call.
const BODY_LIMIT: usize = 4 * 1024;

/// `POST /admin/byok/reseal/:provider`.
pub async fn admin_reseal(
    cx: &RequestContext,
    mut req: Request,
    provider: &str,
) -> ApiResult<Response> {
    require_admin(cx, &req)?;
    let provider = Provider::parse(provider)
        .filter(|p| byok::supports(*p))
        .ok_or_else(ApiError::not_found)?;
    let body = read_optional_json_object(&mut req, BODY_LIMIT).await?;
    only_fields(&body, &["after", "limit"])?;
    let after = match body.get("after") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if keys::is_id("acct", s) => Some(s.clone()),
        Some(_) => {
            return Err(ApiError::invalid_param(
                "after",
                "`after` must be the `next` of the previous report",
            ))
        }
    };
    let limit = match body.get("limit") {
        None => gateway_core::broker::RESEAL_PAGE_DEFAULT,
        Some(v) => v
            .as_u64()
            .filter(|l| (1..=u64::from(RESEAL_PAGE_MAX)).contains(l))
            .map(|l| l as u32)
            .ok_or_else(|| {
                ApiError::invalid_param(
                    "limit",
                    format!("`limit` must be an integer from 1 to {RESEAL_PAGE_MAX}"),
                )
            })?,
    };
    let payload = ResealRequest {
        request_id: cx.request_id.clone(),
        after,
        limit,
    };
    let payload = serde_json::to_string(&payload).map_err(|_| ApiError::internal())?;
    let headers = Headers::new();
    let _ = headers.set("Content-Type", "application/json");
    let resp = post_to_broker(cx, provider, RESEAL_PATH, headers, payload.into())
        .await
        .map_err(dependency("broker re-seal"))?;
    let status = resp.status();
    let text = fetch::text(&resp).await.unwrap_or_default();
    if status != 200 {
        return Err(broker_error(provider, status.max(500), &text, None));
    }
    let report: ResealReport =
        serde_json::from_str(&text).map_err(dependency("broker re-seal report"))?;
    let mut answer = serde_json::to_value(&report).map_err(|_| ApiError::internal())?;
    answer["provider"] = json!(provider.as_str());
    answer["next"] = json!(report.next);
    json(200, &answer)
}
