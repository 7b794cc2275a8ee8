//! The gateway Worker: entry points (fetch, scheduled) and the route table. Routes are thin:
//! parse, call the logic, map the outcome to a response.
//!
//! The tree: `http` (request context, reading requests, responses), `auth` (who is calling),
//! `routes` (one module per route group), `pipeline` (the one miss path of the answering
//! endpoints), `cache` (L1 and L2), `limits` (tiers, the bucket and ledger clients, the gate),
//! `brokers` (fanout, passthrough, sealing), `db` (D1 rows, the usage log, retention), `objects`
//! (the Durable Object classes), `runtime` (clock, randomness, RPC, binding failures).

mod auth;
mod brokers;
mod cache;
mod db;
mod flight;
mod http;
mod limits;
mod objects;
mod pipeline;
mod relay;
mod routes;
mod runtime;

pub use objects::{AccountLedger, Flight, TokenBucket};

use gateway_core::api::dropin::Dialect;
use gateway_core::api::request_url;
use gateway_core::api::route::V1Route;
use gateway_core::error::ApiError;
use serde_json::json;
use worker::{event, Context, Env, Method, Request, Response, ScheduleContext, ScheduledEvent};

use db::{retention, usage_log};
use gateway_core::error::ApiResult;
use http::context::RequestContext;
use http::response::{error_response, json, set_header};
use routes::{account, account_data, admin, archive, ask, dropin, provider_keys, usage};
use usage_log::Event;

/// The commit this Worker was built from (set by scripts/build.sh).
pub(crate) const GIT_COMMIT: &str = match option_env!("GIT_COMMIT") {
    Some(c) => c,
    None => "unknown",
};

const SECURITY_TXT: &str = "Contact: mailto:security@edge-gateway.invalid\n\
Expires: 2027-11-22T00:00:00Z\n\
Preferred-Languages: en\n\
Policy: https://edge-gateway.invalid/security-policy\n";

#[event(fetch)]
pub async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let cx = RequestContext::new(env, ctx, &req);
    // Test hook of a `dev-hooks` build: the suite lowers D1's value limit (`DEV_D1_VALUE_LIMIT`).
    #[cfg(feature = "dev-hooks")]
    if cx.dev_mode() {
        if let Some(limit) = cx.var("DEV_D1_VALUE_LIMIT").and_then(|v| v.parse().ok()) {
            db::d1::set_value_limit(limit);
        }
    }
    // Responses that hold secrets or account data must not be stored by any cache on the way.
    let private = holds_account_data(&req);
    cx.log_route(route_label(&req));
    let resp = match route(&cx, req).await {
        Ok(r) => r,
        Err(e) => {
            cx.log_error(e.code);
            error_response(&e, &cx.request_id)
        }
    };
    let h = resp.headers();
    set_header(h, "X-Request-Id", &cx.request_id);
    set_header(h, "X-Content-Type-Options", "nosniff");
    if private {
        set_header(h, "Cache-Control", "no-store");
    }
    // The request's log line, unless its usage row writes it (`http::log`).
    http::log::at_response(&cx, resp.status_code());
    Ok(resp)
}

/// The request's route as its log line names it: the pattern, never the raw path.
fn route_label(req: &Request) -> String {
    let path = req.path();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    gateway_core::usage::log_line::route_label(req.method().as_ref(), &segs)
}

/// Whether the request is for the admin API or an account route of `/v1` (everything there
/// but the answering endpoints): their responses carry keys, account data or both.
fn holds_account_data(req: &Request) -> bool {
    let path = req.path();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["admin", ..] => true,
        ["v1", rest @ ..] => !matches!(
            V1Route::parse(req.method().as_ref(), rest),
            V1Route::Ask | V1Route::ChatCompletions | V1Route::Messages
        ),
        _ => false,
    }
}

#[event(scheduled)]
pub async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let now_ms = worker_shared::clock::now_ms();
    match env.d1("DB") {
        Ok(db) => {
            // The one-statement purges first: the archive's batches may use up the invocation's
            // D1 query limit (1,000 paid, 50 free).
            retention::purge_revoked_keys(&db, now_ms).await;
            if let Err(e) = db::sessions::drop_expired(&db, now_ms).await {
                worker::console_error!("cron: expired sessions not dropped: {}", e.code);
            }
            retention::purge_archive(&db, now_ms).await;
        }
        Err(e) => worker::console_error!("cron: no D1 binding: {e}"),
    }
}

async fn route(cx: &RequestContext, req: Request) -> ApiResult<Response> {
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
        // After a BYOK master key rotation (docs/OPERATIONS.md); the broker does the work.
        (Method::Post, ["admin", "byok", "reseal", provider]) => {
            brokers::reseal::admin_reseal(cx, req, provider).await
        }
        (_, ["admin", rest @ ..]) => admin::route(cx, req, rest).await,
        (_, ["dashboard", rest @ ..]) => routes::dashboard::route(cx, req, rest).await,
        // Test routes: only in a `dev-hooks` build (never deployed), and there under
        // `DEV_MODE=1` only. A production build answers them 404 like any unknown path.
        #[cfg(feature = "dev-hooks")]
        (_, ["__dev", rest @ ..]) => routes::dev::route(cx, req, rest).await,
        (_, ["v1", rest @ ..]) => {
            let route = V1Route::parse(method.as_ref(), rest);
            // The dialect its answer is given in, when it is a path of either SDK's.
            let dialect = Dialect::of_request(rest, || has_header(&req, "anthropic-version"));
            let caller = match auth::authenticate_v1(cx, &req, route).await {
                Ok(c) => c,
                Err(e) => {
                    cx.log_error(e.code);
                    return dropin::in_dialect(dialect, Err(e), &cx.request_id);
                }
            };
            cx.log_account(&caller.account_id);
            let mut event = Event::new(route.endpoint(), &caller.account_id, &caller.prefix);
            // A call that reaches neither the cache nor a bucket (a data read or change, an
            // unknown route, a refused body) passes the isolate's limiter; refused there, it
            // leaves no row. It passes it before it does anything, except at an answering
            // endpoint, whose call is known to reach no bucket only once its body is refused.
            let unmetered = |event: &mut Event| {
                let admitted = limits::admit_unmetered(cx, &caller);
                if admitted.is_err() {
                    event.discard = true;
                }
                admitted
            };
            let mut result = match route.answers() {
                false => match unmetered(&mut event) {
                    Ok(()) => v1(cx, req, &caller, route, dialect, &mut event).await,
                    Err(e) => Err(e),
                },
                true => v1(cx, req, &caller, route, dialect, &mut event).await,
            };
            if route.answers() && !event.gated {
                if let Err(e) = unmetered(&mut event) {
                    result = Err(e);
                }
            }
            let status = match &result {
                Ok(r) => r.status_code(),
                Err(e) => {
                    cx.log_error(e.code);
                    e.status
                }
            };
            if !route.records_usage() {
                usage_log::count_unrouted(status);
            } else if !event.deferred {
                usage_log::usage_later(cx, event, status);
            } else {
                // Its usage row, and with it its log line, is written when the stream ends.
                cx.log_deferred();
            }
            dropin::in_dialect(dialect, result, &cx.request_id)
        }
        _ => Err(ApiError::not_found()),
    }
}

async fn v1(
    cx: &RequestContext,
    mut req: Request,
    caller: &auth::Caller,
    route: V1Route<'_>,
    dialect: Option<Dialect>,
    event: &mut Event,
) -> ApiResult<Response> {
    // A test key reads the account but never changes it (`docs/DECISIONS.md`).
    if route.changes_account() && caller.is_test() {
        return Err(ApiError::new(
            403,
            "live_key_required",
            "a test key can read the account but not change it: use a live key",
        ));
    }
    // Calls that change the account or read its data must come from a key that is active
    // now, not one revoked in the last seconds elsewhere (whose caches may still say active).
    if route.changes_account() || route.reads_account_data() {
        auth::confirm_active(cx, caller).await?;
    }
    match route {
        V1Route::Ask => ask::post(cx, req, caller, event).await,
        V1Route::ChatCompletions => dropin::post(cx, req, caller, event, Dialect::OpenAiChat).await,
        V1Route::Messages => dropin::post(cx, req, caller, event, Dialect::AnthropicMessages).await,
        V1Route::ProviderKeysList
        | V1Route::ProviderKeysAccessLog
        | V1Route::ProviderKeyPut { .. }
        | V1Route::ProviderKeyDelete { .. } => provider_keys::route(cx, req, caller, route).await,
        V1Route::AskArchived { id } => archive::get_archived(cx, caller, id).await,
        V1Route::Usage => {
            let query = request_url::query_pairs(&req.inner().url());
            usage::get_usage(cx, caller, &query).await
        }
        V1Route::AccountPatch => account_data::patch_account(cx, caller, &mut req).await,
        V1Route::AccountDelete => {
            let resp = account_data::delete_account(cx, caller).await?;
            event.discard = true;
            Ok(resp)
        }
        V1Route::Account | V1Route::KeysList | V1Route::KeysMint | V1Route::KeyRevoke { .. } => {
            account::route(cx, req, caller, route).await
        }
        // Either SDK's `models.list()` / `models.retrieve()`; `/v1/ask` callers get OpenAI's.
        V1Route::Models => json(
            200,
            &gateway_core::api::dropin::model_list(dialect.unwrap_or(Dialect::OpenAiChat)),
        ),
        V1Route::Model { id } => json(
            200,
            &gateway_core::api::dropin::model_entry(dialect.unwrap_or(Dialect::OpenAiChat), id)?,
        ),
        V1Route::MethodNotAllowed => Err(ApiError::method_not_allowed()),
        // An SDK's call the gateway does not serve (`responses`, `messages/count_tokens`, ...)
        // is told what it does serve.
        V1Route::NotFound => Err(ApiError::new(
            404,
            "not_found",
            "no such endpoint: the gateway serves POST /v1/chat/completions, POST /v1/messages, \
             GET /v1/models and POST /v1/ask",
        )),
    }
}

/// Whether `req` carries header `name`.
fn has_header(req: &Request, name: &str) -> bool {
    req.headers().has(name).unwrap_or(false)
}
