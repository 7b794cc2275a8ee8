//! `/dashboard`: the dashboard's files (Workers static assets, `ASSETS`, served with the
//! dashboard's security headers) and its session routes: log in with an API key (a session
//! cookie in exchange), who is logged in, log out. Its data comes from the `/v1` routes, which
//! accept the session cookie for the account's own routes (`auth::authenticate_v1`).

use gateway_core::api::dashboard::{
    self, cleared_cookie, origin_allowed, session_cookie, SECURITY_HEADERS, SESSION_TTL_MS,
};
use gateway_core::error::{ApiError, ApiResult};
use gateway_core::keys;
use gateway_core::limits::bucket::Decision;
use gateway_core::limits::tier::Limits;
use serde_json::{json, Value};
use worker::{Method, Request, Response};

use crate::auth;
use crate::db::sessions;
use crate::http::context::RequestContext;
use crate::http::request::read_json_object;
use crate::http::response::{json, set_header};
use crate::limits::bucket;
use crate::runtime::{dependency, random_32};

/// Login attempts per client address: 10 at once, then one every 6 s.
const LOGIN_LIMITS: Limits = Limits {
    burst: 10,
    per_second: 1.0 / 6.0,
};

pub async fn route(cx: &RequestContext, req: Request, rest: &[&str]) -> ApiResult<Response> {
    let url = req.inner().url();
    let resp = if let Some(location) = dashboard::https_location(&url) {
        redirect(&location)
    } else {
        serve(cx, req, rest).await
    };
    // The error envelope gets the same headers as everything else under /dashboard.
    let resp = match resp {
        Ok(r) => r,
        Err(e) => crate::http::response::error_response(&e, &cx.request_id),
    };
    let h = resp.headers();
    for (name, value) in SECURITY_HEADERS {
        set_header(h, name, value);
    }
    if url.starts_with("https://") {
        set_header(h, dashboard::HSTS.0, dashboard::HSTS.1);
    }
    Ok(resp)
}

/// A 308 to `location` (the method and body kept).
fn redirect(location: &str) -> ApiResult<Response> {
    let resp = Response::empty()
        .map_err(|_| ApiError::internal())?
        .with_status(308);
    set_header(resp.headers(), "Location", location);
    Ok(resp)
}

/// A dashboard request that may be served: its file, or its session route.
async fn serve(cx: &RequestContext, req: Request, rest: &[&str]) -> ApiResult<Response> {
    match (req.method(), rest) {
        (Method::Get, [] | [""]) => asset(cx, "index.html").await,
        (Method::Post, ["api", "login"]) => login(cx, req).await,
        (Method::Post, ["api", "logout"]) => logout(cx, req).await,
        (Method::Get, ["api", "session"]) => session(cx, &req).await,
        (_, ["api", ..]) => Err(ApiError::not_found()),
        (Method::Get, path) => asset(cx, &path.join("/")).await,
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// A file of the dashboard, from the static assets. Pages and scripts are revalidated on each
/// load (`no-cache`), so a deployment's dashboard is seen at once.
async fn asset(cx: &RequestContext, path: &str) -> ApiResult<Response> {
    if path.split('/').any(|s| s.is_empty() || s.starts_with('.')) {
        return Err(ApiError::not_found());
    }
    let assets = cx
        .env
        .assets("ASSETS")
        .map_err(dependency("ASSETS binding"))?;
    let mut found = assets
        .fetch(format!("https://assets.invalid/dashboard/{path}"), None)
        .await
        .map_err(dependency("ASSETS fetch"))?;
    if found.status_code() != 200 {
        return Err(ApiError::not_found());
    }
    let content_type = found.headers().get("Content-Type").ok().flatten();
    let bytes = found.bytes().await.map_err(dependency("ASSETS body"))?;
    let resp = Response::from_bytes(bytes).map_err(|_| ApiError::internal())?;
    if let Some(ct) = content_type {
        set_header(resp.headers(), "Content-Type", &ct);
    }
    set_header(resp.headers(), "Cache-Control", "no-cache");
    Ok(resp)
}

fn no_store(resp: Response) -> Response {
    set_header(resp.headers(), "Cache-Control", "no-store");
    resp
}

/// The CSRF check of the session routes that change state (see `origin_allowed`).
fn check_origin(req: &Request) -> ApiResult<()> {
    let origin = req.headers().get("Origin").ok().flatten();
    if origin_allowed(
        req.method().as_ref(),
        origin.as_deref(),
        &auth::own_origin(req),
    ) {
        Ok(())
    } else {
        Err(auth::csrf_refused())
    }
}

/// `POST /dashboard/api/login` `{"key": "<API key>"}`: a session for that key (live or test),
/// as a cookie. A wrong key gets the API's one 401; attempts are limited per client address.
async fn login(cx: &RequestContext, mut req: Request) -> ApiResult<Response> {
    check_origin(&req)?;
    let client = req
        .headers()
        .get("CF-Connecting-IP")
        .ok()
        .flatten()
        .unwrap_or_else(|| "local".into());
    let decision = bucket::take(&cx.env, &format!("login:{client}"), 1, LOGIN_LIMITS).await?;
    if let Ok(Decision::Denied { retry_after_ms, .. }) = decision {
        let retry_s = retry_after_ms.div_ceil(1000).max(1);
        return Err(ApiError::new(
            429,
            "rate_limited",
            "too many login attempts from this address; retry later",
        )
        .with_header("Retry-After", retry_s.to_string()));
    }
    let body = read_json_object(&mut req, 4 * 1024).await?;
    let Some(Value::String(key)) = body.get("key") else {
        return Err(ApiError::invalid_param("key", "`key` must be an API key"));
    };
    let caller = auth::authenticate_token(cx, key.trim()).await?;
    // A key revoked elsewhere in the last seconds (whose caches here may still say active)
    // opens no session: its row is read from D1 now, as every use of a session reads it.
    auth::confirm_active(cx, &caller).await?;
    // A secret: no token at all rather than a predictable one if the runtime's CSPRNG fails.
    let raw = random_32()?;
    let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    sessions::open(
        &cx.db()?,
        &keys::hash_token(&token),
        &caller.prefix,
        &caller.account_id,
        cx.now_ms,
        cx.now_ms + SESSION_TTL_MS,
    )
    .await?;
    let resp = json(
        200,
        &json!({"account_id": caller.account_id, "key_prefix": caller.prefix,
            "mode": caller.mode.as_str()}),
    )?;
    set_header(
        resp.headers(),
        "Set-Cookie",
        &session_cookie(&token, auth::cookie_is_secure(&req)),
    );
    Ok(no_store(resp))
}

/// `GET /dashboard/api/session`: who the session is, and the running commit.
async fn session(cx: &RequestContext, req: &Request) -> ApiResult<Response> {
    let caller = auth::session_caller(cx, req).await?;
    let resp = json(
        200,
        &json!({"account_id": caller.account_id, "key_prefix": caller.prefix,
            "mode": caller.mode.as_str(), "commit": crate::GIT_COMMIT}),
    )?;
    Ok(no_store(resp))
}

/// `POST /dashboard/api/logout`: ends the session (whatever state it was in) and clears the
/// cookie.
async fn logout(cx: &RequestContext, req: Request) -> ApiResult<Response> {
    check_origin(&req)?;
    auth::end_session(cx, &req).await?;
    let resp = Response::empty()
        .map_err(|_| ApiError::internal())?
        .with_status(204);
    set_header(
        resp.headers(),
        "Set-Cookie",
        &cleared_cookie(auth::cookie_is_secure(&req)),
    );
    Ok(no_store(resp))
}
