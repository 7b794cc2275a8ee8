//! What one request carries through the gateway: its bindings, the clock (read once), its id,
//! the isolate's vars, and (in a `dev-hooks` build) the test hooks it asked for.

use crate::runtime::dependency;
use crate::runtime::iso8601;
use crate::runtime::random_16;
use gateway_core::error::ApiResult;
use std::rc::Rc;

use gateway_core::keys;
use worker::{Context, Env, Request};

/// What one request carries through the gateway: bindings, the clock (read once), its id.
/// Cloned into the work that outlives the response (a streamed answer's settlement), which
/// still runs inside the request's `wait_until`.
#[derive(Clone)]
pub struct RequestContext {
    pub env: Env,
    ctx: Rc<Context>,
    pub now_ms: u64,
    pub request_id: String,
    /// What the request's log line gathers (`crate::http::log`), shared with the clones.
    pub log: crate::http::log::SharedLog,
    /// Test hook, `dev-hooks` builds under `DEV_MODE=1` only: the storage tiers this request
    /// must see fail, from its `x-dev-fail` header (`l1`, `l2`, comma-separated; and
    /// `broker-secret`: its broker calls carry a secret the brokers do not hold). Empty there
    /// otherwise; a production build has no such field.
    #[cfg(feature = "dev-hooks")]
    dev_fail: String,
    /// Test hook, `dev-hooks` builds under `DEV_MODE=1` only: how long this request's KV
    /// auth-cache write waits, from its `x-dev-auth-cache-delay-ms` header (a race with a
    /// revocation, made wide). 0 there otherwise.
    #[cfg(feature = "dev-hooks")]
    pub dev_auth_cache_delay_ms: u64,
    /// Test hook, `dev-hooks` builds under `DEV_MODE=1` only: what this request does in a single
    /// flight, from its `x-dev-flight` header (`lose`: a leader that vanishes as a lost isolate
    /// would; `lose-mid-stream`: one that vanishes once it published the first part of its
    /// stream; `stall`: a leader that stays alive and never answers; `max=N`: a flight bound of
    /// N followers; `off`: no flight, as under `COALESCE=off`). Empty there otherwise.
    #[cfg(feature = "dev-hooks")]
    pub dev_flight: String,
    /// Test hook, `dev-hooks` builds under `DEV_MODE=1` only: the gate takes the key's call
    /// token alone and reserves credits alone (no token limits, key or account-wide), as before
    /// token limits, from an `x-dev-limits: calls-only` header: the benchmark's baseline for
    /// what token limits add to a miss, in the same run. Credits are reserved and settled as
    /// always. False there otherwise.
    #[cfg(feature = "dev-hooks")]
    pub dev_calls_only: bool,
}

impl RequestContext {
    pub fn new(env: Env, ctx: Context, req: &Request) -> Self {
        let now_ms = worker_shared::clock::now_ms();
        let request_id = keys::make_id("req", &random_16());
        let cx = RequestContext {
            env,
            ctx: Rc::new(ctx),
            now_ms,
            log: crate::http::log::new_log(&request_id, now_ms),
            request_id,
            #[cfg(feature = "dev-hooks")]
            dev_fail: String::new(),
            #[cfg(feature = "dev-hooks")]
            dev_auth_cache_delay_ms: 0,
            #[cfg(feature = "dev-hooks")]
            dev_flight: String::new(),
            #[cfg(feature = "dev-hooks")]
            dev_calls_only: false,
        };
        #[cfg(feature = "dev-hooks")]
        let cx = cx.with_dev_hooks(req);
        // Only the test hooks read the request here.
        #[cfg(not(feature = "dev-hooks"))]
        let _ = req;
        cx
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
            self.dev_flight = req
                .headers()
                .get("x-dev-flight")
                .ok()
                .flatten()
                .unwrap_or_default();
            self.dev_calls_only =
                req.headers().get("x-dev-limits").ok().flatten().as_deref() == Some("calls-only");
        }
        self
    }

    /// Whether this request must see `tier` fail (the test hook above).
    #[cfg(feature = "dev-hooks")]
    pub fn dev_fails(&self, tier: &str) -> bool {
        !self.dev_fail.is_empty() && self.dev_fail.split(',').any(|t| t.trim() == tier)
    }

    /// A plain-text environment variable or secret, if set and non-empty (read once per
    /// isolate: `worker_shared::env::var`).
    pub fn var(&self, name: &'static str) -> Option<String> {
        worker_shared::env::var(&self.env, name)
    }

    /// True only under the project's local dev configuration (never set in wrangler.toml), and
    /// read only by a `dev-hooks` build: the second gate of every test hook.
    #[cfg(feature = "dev-hooks")]
    pub fn dev_mode(&self) -> bool {
        self.var("DEV_MODE").as_deref() == Some("1")
    }

    pub fn db(&self) -> ApiResult<worker::D1Database> {
        self.env.d1("DB").map_err(dependency("D1 binding"))
    }

    pub fn kv(&self) -> ApiResult<worker::KvStore> {
        self.env.kv("CACHE").map_err(dependency("KV binding"))
    }

    /// Runs a future after the response is sent (`Context::wait_until`).
    pub fn after<F>(&self, fut: F)
    where
        F: std::future::Future<Output = ()> + 'static,
    {
        self.ctx.wait_until(fut);
    }

    /// Keeps the request running until the returned guard is dropped, even if its client goes
    /// away: the runtime cancels a request whose client left unless it has work pending in
    /// `wait_until` (then lets it run up to 30 s more). A miss holds it from its reservation
    /// to its settlement, so a caller that leaves does not leave a reservation to expire.
    pub fn hold(&self) -> Hold {
        let (tx, rx) = futures::channel::oneshot::channel::<()>();
        self.after(async move {
            let _ = rx.await;
        });
        Hold { _release: tx }
    }

    /// ISO-8601 UTC form of the request's clock.
    pub fn now_iso(&self) -> String {
        iso8601(self.now_ms)
    }
}

/// See [`RequestContext::hold`]: the request may end once this is dropped.
pub struct Hold {
    /// Dropped with the guard: the held `wait_until` ends.
    _release: futures::channel::oneshot::Sender<()>,
}
