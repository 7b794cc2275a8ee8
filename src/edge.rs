//! The gateway's edge plumbing: the per-request context (env, clock read once, request id),
//! JSON responses, the error envelope, capped body reading, randomness and dependency failures.

use std::cell::RefCell;
use std::collections::HashMap;

use gateway_core::error::ApiError;
use gateway_core::keys;
use gateway_core::scrub::scrub;
use serde::Serialize;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{console_error, Context, Env, Headers, Request, Response};

/// `Result` of everything the routes do: errors are already contract errors.
pub type Outcome<T> = std::result::Result<T, ApiError>;

thread_local! {
    /// The vars and secrets this isolate has read (`None`: unset or empty).
    static VARS: RefCell<HashMap<&'static str, Option<String>>> = RefCell::new(HashMap::new());
}

/// What one request carries through the gateway: bindings, the clock (read once), its id.
pub struct Gw {
    pub env: Env,
    pub ctx: Context,
    pub now_ms: u64,
    pub request_id: String,
    /// Test hook, `dev-hooks` builds under `DEV_MODE=1` only: the storage tiers this request
    /// must see fail, from its `x-dev-fail` header (`l1`, `l2`, comma-separated). Empty there
    /// otherwise; a production build has no such field.
    #[cfg(feature = "dev-hooks")]
    dev_fail: String,
    /// Test hook, `dev-hooks` builds under `DEV_MODE=1` only: how long this request's KV
    /// auth-cache write waits, from its `x-dev-auth-cache-delay-ms` header (a race with a
    /// revocation, made wide). 0 there otherwise.
    #[cfg(feature = "dev-hooks")]
    pub dev_auth_cache_delay_ms: u64,
}

impl Gw {
    pub fn new(env: Env, ctx: Context, req: &Request) -> Self {
        let gw = Gw {
            env,
            ctx,
            now_ms: worker::Date::now().as_millis(),
            request_id: keys::make_id("req", &random_16()),
            #[cfg(feature = "dev-hooks")]
            dev_fail: String::new(),
            #[cfg(feature = "dev-hooks")]
            dev_auth_cache_delay_ms: 0,
        };
        #[cfg(feature = "dev-hooks")]
        let gw = gw.with_dev_hooks(req);
        // Only the test hooks read the request here.
        #[cfg(not(feature = "dev-hooks"))]
        let _ = req;
        gw
    }

    /// Reads the test hooks of a `dev-hooks` build, under `DEV_MODE=1` only: the `x-dev-*`
    /// headers and the `DEV_D1_VALUE_LIMIT` override.
    #[cfg(feature = "dev-hooks")]
    fn with_dev_hooks(mut self, req: &Request) -> Self {
        if self.dev_mode() {
            self.dev_fail = req
                .headers()
                .get("x-dev-fail")
                .ok()
                .flatten()
                .unwrap_or_default();
            self.dev_auth_cache_delay_ms = req
                .headers()
                .get("x-dev-auth-cache-delay-ms")
                .ok()
                .flatten()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
                .min(10_000);
            if let Some(limit) = self.var("DEV_D1_VALUE_LIMIT").and_then(|v| v.parse().ok()) {
                crate::d1::set_value_limit(limit);
            }
        }
        self
    }

    /// Whether this request must see `tier` fail (the test hook above).
    #[cfg(feature = "dev-hooks")]
    pub fn dev_fails(&self, tier: &str) -> bool {
        !self.dev_fail.is_empty() && self.dev_fail.split(',').any(|t| t.trim() == tier)
    }

    /// A plain-text environment variable or secret, if set and non-empty. Read once per
    /// isolate: a Worker's vars and secrets are fixed for the life of its isolate (a changed
    /// value comes with a new deployment, hence new isolates).
    pub fn var(&self, name: &'static str) -> Option<String> {
        VARS.with(|vars| {
            vars.borrow_mut()
                .entry(name)
                .or_insert_with(|| worker_shared::env::var(&self.env, name))
                .clone()
        })
    }

    /// True only under the project's local dev configuration (never set in wrangler.toml), and
    /// read only by a `dev-hooks` build: the second gate of every test hook.
    #[cfg(feature = "dev-hooks")]
    pub fn dev_mode(&self) -> bool {
        self.var("DEV_MODE").as_deref() == Some("1")
    }

    pub fn db(&self) -> Outcome<worker::D1Database> {
        self.env.d1("DB").map_err(dependency("D1 binding"))
    }

    pub fn kv(&self) -> Outcome<worker::KvStore> {
        self.env.kv("CACHE").map_err(dependency("KV binding"))
    }

    /// Runs a future after the response is sent (`Context::wait_until`).
    pub fn after<F>(&self, fut: F)
    where
        F: std::future::Future<Output = ()> + 'static,
    {
        self.ctx.wait_until(fut);
    }

    /// ISO-8601 UTC form of the request's clock.
    pub fn now_iso(&self) -> String {
        iso8601(self.now_ms)
    }
}

/// Milliseconds since the epoch → `2026-11-22T15:00:00Z`.
pub fn iso8601(ms: u64) -> String {
    // Past `Date`'s range `toISOString` would throw: clamp (callers bound user input first).
    let d = js_date(ms.min(8_640_000_000_000_000));
    let s = d.to_iso_string().as_string().unwrap_or_default();
    // `2026-11-22T15:00:00.123Z` → drop the milliseconds.
    match s.find('.') {
        Some(i) => format!("{}Z", &s[..i]),
        None => s,
    }
}

fn js_date(ms: u64) -> worker::js_sys::Date {
    worker::js_sys::Date::new(&worker::wasm_bindgen::JsValue::from_f64(ms as f64))
}

/// Maps a failure of a binding (D1, KV, Durable Object, broker) to a logged 503.
pub fn dependency<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> ApiError {
    move |e| {
        console_error!("dependency failure: {what}: {}", scrub(&e.to_string()));
        ApiError::unavailable(1)
    }
}

/// 16 random bytes from the runtime's CSPRNG.
pub fn random_16() -> [u8; 16] {
    let mut b = [0u8; 16];
    // getrandom only fails if the runtime has no crypto.getRandomValues; workerd always has it.
    if getrandom::fill(&mut b).is_err() {
        console_error!("getrandom failed");
    }
    b
}

/// 32 random bytes from the runtime's CSPRNG, or an error (never a predictable secret).
pub fn random_32() -> Outcome<[u8; 32]> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(dependency("getrandom"))?;
    Ok(b)
}

/// A JSON response with the given status.
pub fn json<T: Serialize>(status: u16, body: &T) -> Outcome<Response> {
    Response::from_json(body)
        .map(|r| r.with_status(status))
        .map_err(|_| ApiError::internal())
}

/// Awaits a Workers RPC call (a method of a Durable Object stub or a service binding, as bound
/// by `wasm_bindgen`): its value, or what the rejection (or the failed call) said.
pub async fn rpc_call(call: Result<worker::js_sys::Promise, JsValue>) -> Result<JsValue, String> {
    let promise = call.map_err(|e| js_message(&e))?;
    JsFuture::from(promise).await.map_err(|e| js_message(&e))
}

/// What a rejected call says (an `Error`'s message, or the value itself).
fn js_message(e: &JsValue) -> String {
    e.dyn_ref::<worker::js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| "call failed".into())
}

/// A response whose body is already-serialized JSON.
pub fn json_text(status: u16, body: String) -> Outcome<Response> {
    let resp = Response::ok(body)
        .map(|r| r.with_status(status))
        .map_err(|_| ApiError::internal())?;
    set_header(resp.headers(), "Content-Type", "application/json");
    Ok(resp)
}

/// Sets a header, ignoring invalid values (all values here are produced by the gateway).
pub fn set_header(headers: &Headers, name: &str, value: &str) {
    let _ = headers.set(name, value);
}

/// Renders a contract error as a response: envelope, status, extra headers.
pub fn error_response(e: &ApiError, request_id: &str) -> Response {
    let resp = worker_shared::reply::reply_error(e);
    set_header(resp.headers(), "X-Request-Id", request_id);
    resp
}

/// The bearer token of the request, or its `x-api-key` header (drop-in endpoints).
pub fn api_key_header(req: &Request) -> Option<String> {
    let h = req.headers();
    if let Ok(Some(auth)) = h.get("Authorization") {
        return keys::bearer(&auth).map(str::to_string);
    }
    h.get("x-api-key")
        .ok()
        .flatten()
        .map(|v| v.trim().to_string())
}

/// Requires a JSON content type (415 otherwise).
pub fn require_json(req: &Request) -> Outcome<()> {
    let ct = req
        .headers()
        .get("Content-Type")
        .ok()
        .flatten()
        .unwrap_or_default();
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if media == "application/json"
        || (media.starts_with("application/") && media.ends_with("+json"))
    {
        Ok(())
    } else {
        Err(ApiError::unsupported_media_type())
    }
}

/// Reads the body, refusing (413) as soon as it passes `limit` bytes: a declared
/// Content-Length over the limit is refused before anything is read.
pub async fn read_body_capped(req: &mut Request, limit: usize) -> Outcome<Vec<u8>> {
    worker_shared::body::read_capped(req, limit).await
}

/// Reads a small JSON body (admin and account routes) into a JSON object.
/// The body's JSON object, or an empty object when the request's body is empty (a route whose
/// fields are all optional, such as `POST /v1/keys`). A body with bytes in it must be JSON.
pub async fn read_optional_json_object(
    req: &mut Request,
    limit: usize,
) -> Outcome<serde_json::Map<String, serde_json::Value>> {
    let body = read_body_capped(req, limit).await?;
    if body.is_empty() {
        return Ok(serde_json::Map::new());
    }
    require_json(req)?;
    json_object(&body)
}

pub async fn read_json_object(
    req: &mut Request,
    limit: usize,
) -> Outcome<serde_json::Map<String, serde_json::Value>> {
    require_json(req)?;
    let body = read_body_capped(req, limit).await?;
    json_object(&body)
}

/// `body` as a JSON object, or the 400 for what it is instead.
fn json_object(body: &[u8]) -> Outcome<serde_json::Map<String, serde_json::Value>> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::invalid_request("the body must be a JSON object")),
        Err(e) => Err(ApiError::invalid_json(
            &e.to_string().chars().take(120).collect::<String>(),
        )),
    }
}
