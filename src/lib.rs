//! The gateway Worker: entry points (fetch, scheduled) and the route table. Routes are thin:
//! parse, call the logic, map the outcome to a response.

mod account;
mod admin;
mod ask;
mod auth;
mod bucket;
mod cache;
mod d1;
mod data;
mod dev;
mod dropin;
mod edge;
mod fanout;
mod ledger;
mod limits;
mod provider_keys;
mod record;
mod store;

#[path = "../durable_objects/mod.rs"]
mod durable_objects;

pub use durable_objects::{AccountLedger, TokenBucket};

use gateway_core::api::dropin::Dialect;
use gateway_core::error::ApiError;
use gateway_core::keys::KeyMode;
use serde_json::json;
use worker::{event, Context, Env, Method, Request, Response, ScheduleContext, ScheduledEvent};

use edge::{error_response, json, set_header, Gw, Outcome};
use record::Event;

/// The commit this Worker was built from (set by scripts/build.sh).
const GIT_COMMIT: &str = match option_env!("GIT_COMMIT") {
    Some(c) => c,
    None => "unknown",
};

const SECURITY_TXT: &str = "Contact: mailto:security@edge-gateway.invalid\n\
Expires: 2027-11-22T00:00:00Z\n\
Preferred-Languages: en\n\
Policy: https://edge-gateway.invalid/security-policy\n";

#[event(fetch)]
pub async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let gw = Gw::new(env, ctx, &req);
    let resp = match route(&gw, req).await {
        Ok(r) => r,
        Err(e) => error_response(&e, &gw.request_id),
    };
    set_header(resp.headers(), "X-Request-Id", &gw.request_id);
    Ok(resp)
}

#[event(scheduled)]
pub async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let now_ms = worker::Date::now().as_millis();
    match env.d1("DB") {
        Ok(db) => {
            data::purge_archive(&db, now_ms).await;
            data::purge_revoked_keys(&db, now_ms).await;
        }
        Err(e) => worker::console_error!("cron: no D1 binding: {e}"),
    }
}

async fn route(gw: &Gw, req: Request) -> Outcome<Response> {
    let path = req.path();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method();
    match (method.clone(), segs.as_slice()) {
        (Method::Get, ["version"]) => json(200, &json!({"commit": GIT_COMMIT})),
        (Method::Get, [".well-known", "security.txt"]) => {
            let resp = Response::ok(SECURITY_TXT).map_err(|_| ApiError::internal())?;
            set_header(resp.headers(), "Content-Type", "text/plain; charset=utf-8");
            Ok(resp)
        }
        // The bare route: no auth, no storage. The baseline of the load benchmarks.
        (Method::Get, ["healthz"]) => json(200, &json!({"ok": true})),
        (_, ["admin", rest @ ..]) => admin::route(gw, req, rest).await,
        (_, ["__dev", rest @ ..]) => dev::route(gw, req, rest).await,
        (_, ["v1", rest @ ..]) => {
            let caller = match auth::authenticate(gw, &req).await {
                Ok(c) => c,
                Err(e) => return dropin::in_dialect(rest, Err(e), &gw.request_id),
            };
            let endpoint = format!(
                "{} /v1/{}",
                method.as_ref(),
                rest.first().copied().unwrap_or("")
            );
            let mut event = Event::new(&endpoint, &caller);
            let result = v1(gw, req, &caller, rest, &mut event).await;
            let status = match &result {
                Ok(r) => r.status_code(),
                Err(e) => e.status,
            };
            record::usage_later(gw, event, status);
            dropin::in_dialect(rest, result, &gw.request_id)
        }
        _ => Err(ApiError::not_found()),
    }
}

async fn v1(
    gw: &Gw,
    mut req: Request,
    caller: &auth::Caller,
    segs: &[&str],
    event: &mut Event,
) -> Outcome<Response> {
    let method = req.method();
    // A test key reads the account but never changes it (`docs/DECISIONS.md`).
    let changes_account = matches!(
        (&method, segs),
        (Method::Post, ["keys"])
            | (Method::Delete, ["keys", _])
            | (Method::Patch, ["account"])
            | (Method::Delete, ["account"])
            | (Method::Put, ["provider-keys", _])
            | (Method::Delete, ["provider-keys", _])
    );
    if changes_account && caller.mode == KeyMode::Test {
        return Err(ApiError::new(
            403,
            "live_key_required",
            "a test key can read the account but not change it: use a live key",
        ));
    }
    if changes_account {
        auth::confirm_active(gw, caller).await?;
    }
    match (method, segs) {
        (Method::Post, ["ask"]) => ask::post(gw, req, caller, event).await,
        (Method::Post, ["chat", "completions"]) => {
            dropin::post(gw, req, caller, event, Dialect::OpenAiChat).await
        }
        (Method::Post, ["messages"]) => {
            dropin::post(gw, req, caller, event, Dialect::AnthropicMessages).await
        }
        (_, ["chat", "completions"]) | (_, ["messages"]) => Err(ApiError::method_not_allowed()),
        (_, ["provider-keys", ..]) => provider_keys::route(gw, req, caller, segs).await,
        (Method::Get, ["ask", id]) => data::get_archived(gw, caller, id).await,
        (Method::Get, ["usage"]) => {
            let url = req
                .url()
                .map_err(|_| ApiError::invalid_request("bad URL"))?;
            data::get_usage(gw, caller, &url).await
        }
        (Method::Patch, ["account"]) => data::patch_account(gw, caller, &mut req).await,
        (Method::Delete, ["account"]) => {
            let resp = data::delete_account(gw, caller).await?;
            event.discard = true;
            Ok(resp)
        }
        (_, ["ask"]) | (_, ["ask", _]) | (_, ["usage"]) => Err(ApiError::method_not_allowed()),
        (_, ["account"]) | (_, ["keys", ..]) => account::route(gw, req, caller, segs).await,
        _ => Err(ApiError::not_found()),
    }
}
