//! Who is calling: gateway API keys (prefix lookup, 5 s isolate-local memo over a 60 s KV auth
//! cache, constant-time hash check, one 401 for every failure) and the admin bearer token.

use gateway_core::api::request_url;
use gateway_core::error::ApiError;
use gateway_core::keys::{self, KeyMode};
use gateway_core::limits::tier::{AccountLimits, Tier};
use gateway_core::providers::Provider;
use std::time::Duration;

use worker::{console_error, D1Database, Delay, Request};

use crate::db::api_keys;
use crate::db::api_keys::KeyAuthRow;
use crate::http::context::RequestContext;
use crate::http::request::api_key_header;
use gateway_core::api::dashboard;
use gateway_core::api::route::V1Route;
use gateway_core::error::ApiResult;

/// Seconds a key's auth row is cached in KV.
const AUTH_CACHE_TTL_S: u64 = 60;

/// The isolate-local memo of active keys' auth rows, in front of the KV auth cache: a hit skips
/// the KV read (the hash check still runs on every call). Entries live `TTL_MS`; revocation,
/// tier changes and the other invalidations drop them in this isolate at once, and the key's
/// TokenBucket refuses a revoked key on every call that would reach a provider, so a memo entry
/// elsewhere can at most serve cache hits for `TTL_MS` more (docs/DECISIONS.md, "Auth cache").
mod memo {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use crate::db::api_keys::KeyAuthRow;

    pub const TTL_MS: u64 = 5_000;
    /// Bound on the memo's size: past it, the memo starts over.
    const MAX_ENTRIES: usize = 4096;

    #[derive(Default)]
    struct Memo {
        /// Bumped by every invalidation: a row read before it is not memoized after it.
        generation: u64,
        rows: HashMap<String, (KeyAuthRow, u64)>,
    }

    thread_local! {
        static MEMO: RefCell<Memo> = RefCell::new(Memo::default());
    }

    pub fn get(prefix: &str, now_ms: u64) -> Option<KeyAuthRow> {
        MEMO.with(|m| {
            let m = m.borrow();
            m.rows
                .get(prefix)
                .filter(|(_, expires)| now_ms < *expires)
                .map(|(row, _)| row.clone())
        })
    }

    pub fn generation() -> u64 {
        MEMO.with(|m| m.borrow().generation)
    }

    /// Memoizes an active row read at `generation`, unless an invalidation came since.
    pub fn put(row: &KeyAuthRow, now_ms: u64, generation: u64) {
        MEMO.with(|m| {
            let mut m = m.borrow_mut();
            if m.generation != generation {
                return;
            }
            if m.rows.len() >= MAX_ENTRIES {
                m.rows.clear();
            }
            m.rows.insert(
                row.prefix.clone(),
                (row.clone(), now_ms.saturating_add(TTL_MS)),
            );
        })
    }

    pub fn forget(prefixes: &[String]) {
        MEMO.with(|m| {
            let mut m = m.borrow_mut();
            m.generation += 1;
            for p in prefixes {
                m.rows.remove(p);
            }
        })
    }
}

/// An authenticated caller: its key row parsed once, at authentication, into typed fields.
#[derive(Debug, Clone)]
pub struct Caller {
    pub account_id: String,
    pub prefix: String,
    pub mode: KeyMode,
    pub tier: Tier,
    /// The account's own limits (enterprise accounts), as the admin API set them: the call
    /// bucket's, and any per-minute limits (a row without them reads as the defaults).
    pub account_limits: Option<AccountLimits>,
    pub store_prompt_prefix: bool,
    /// Providers for which the account brought its own key.
    pub byok: Vec<Provider>,
}

impl Caller {
    /// True when the account brought its own key for `provider`.
    pub fn has_byok(&self, provider: Provider) -> bool {
        self.byok.contains(&provider)
    }

    pub fn is_test(&self) -> bool {
        self.mode == KeyMode::Test
    }

    /// The caller of an active key row whose hash matched. A row whose mode or tier this
    /// gateway does not know fails closed (401, logged): it is never taken for a live key.
    fn from_row(row: KeyAuthRow) -> ApiResult<Caller> {
        let (Some(mode), Some(tier)) = (KeyMode::parse(&row.mode), Tier::parse(&row.tier)) else {
            console_error!("key row with unknown mode or tier refused");
            return Err(ApiError::unauthorized());
        };
        Ok(Caller {
            account_id: row.account_id,
            prefix: row.prefix,
            mode,
            tier,
            account_limits: row
                .limits_json
                .as_deref()
                .and_then(|j| serde_json::from_str::<AccountLimits>(j).ok()),
            store_prompt_prefix: row.store_prompt_prefix != 0,
            byok: row
                .byok
                .as_deref()
                .unwrap_or("")
                .split(',')
                .filter_map(Provider::parse)
                .collect(),
        })
    }
}

/// Re-reads the caller's key row from D1, past the isolate memo and the KV auth cache: a call
/// that changes the account must come from a key that is active now, not one revoked in the
/// last seconds elsewhere (whose caches there may still say active).
pub async fn confirm_active(cx: &RequestContext, caller: &Caller) -> ApiResult<()> {
    let row = crate::db::api_keys::key_for_auth(&cx.db()?, &caller.prefix).await?;
    match row {
        Some(r) if r.status == "active" && r.account_id == caller.account_id => Ok(()),
        _ => Err(ApiError::unauthorized()),
    }
}

pub fn auth_cache_key(prefix: &str) -> String {
    format!("auth:{prefix}")
}

/// Authenticates the request's gateway key. Unknown, malformed and revoked keys get the
/// same 401; a storage failure is a 503 (fail closed). Nothing is written for a token whose
/// hash did not match (its key's `last_used_at`, the KV auth cache), so a forged token that
/// borrows a real key's prefix leaves no trace on that key. Prefixes that have no key are
/// remembered briefly in the isolate, and an isolate that sees many failed lookups answers
/// 429 for a while, so a walk over prefixes costs no D1 read per request.
pub async fn authenticate(cx: &RequestContext, req: &Request) -> ApiResult<Caller> {
    let token = api_key_header(req).ok_or_else(ApiError::unauthorized)?;
    authenticate_token(cx, &token).await
}

/// Authenticates a `/v1` call: by its API key, or, on the account's own routes only
/// (`session_may_call`), by a dashboard session cookie, whose state-changing calls must come
/// from the gateway's own origin (CSRF; `docs/DECISIONS.md`, "Dashboard").
pub async fn authenticate_v1(
    cx: &RequestContext,
    req: &Request,
    route: V1Route<'_>,
) -> ApiResult<Caller> {
    if api_key_header(req).is_some() || session_token(req).is_none() {
        return authenticate(cx, req).await;
    }
    if !dashboard::session_may_call(route) {
        return Err(ApiError::unauthorized());
    }
    let origin = req.headers().get("Origin").ok().flatten();
    if !dashboard::origin_allowed(req.method().as_ref(), origin.as_deref(), &own_origin(req)) {
        return Err(csrf_refused());
    }
    session_caller(cx, req).await
}

/// The session token of the request's cookie, if it carries exactly one, well formed, under
/// the name the cookie has where the request was sent (`dashboard::session_token`).
pub fn session_token(req: &Request) -> Option<String> {
    let cookie = req.headers().get("Cookie").ok().flatten()?;
    dashboard::session_token(&cookie, cookie_is_secure(req)).map(str::to_string)
}

/// Whether the session cookie is `Secure` where this request was sent (see
/// `dashboard::secure_cookie`).
pub fn cookie_is_secure(req: &Request) -> bool {
    match request_url::scheme_and_host(&req.inner().url()) {
        Some((scheme, host)) => dashboard::secure_cookie(scheme, host),
        None => true,
    }
}

/// The caller of the request's dashboard session: its key's, while the session is unexpired,
/// the key active and the account there (read from D1 now); else the one 401.
/// A token that opens no session counts as a failed lookup, and an isolate past its budget of
/// them answers 429 before reading D1, as for API keys: a walk over made-up tokens costs no D1
/// read per request.
pub async fn session_caller(cx: &RequestContext, req: &Request) -> ApiResult<Caller> {
    let token = session_token(req).ok_or_else(ApiError::unauthorized)?;
    failures::check(cx.now_ms)?;
    let row = crate::db::sessions::key_of(&cx.db()?, &keys::hash_token(&token), cx.now_ms).await?;
    let Some(row) = row else {
        failures::count(cx.now_ms);
        return Err(ApiError::unauthorized());
    };
    Caller::from_row(row)
}

/// Ends the session of the request's cookie, if any: a token that ended none counts as a
/// failed lookup, and past the budget the D1 write is not made (429), as for
/// [`session_caller`].
pub async fn end_session(cx: &RequestContext, req: &Request) -> ApiResult<()> {
    let Some(token) = session_token(req) else {
        return Ok(());
    };
    failures::check(cx.now_ms)?;
    if crate::db::sessions::close(&cx.db()?, &keys::hash_token(&token)).await? == 0 {
        failures::count(cx.now_ms);
    }
    Ok(())
}

/// The origin the request was sent to (`scheme://host[:port]`).
pub fn own_origin(req: &Request) -> String {
    request_url::origin(&req.inner().url()).unwrap_or_default()
}

/// A state-changing cookie call from another origin.
pub fn csrf_refused() -> ApiError {
    ApiError::new(
        403,
        "csrf_refused",
        "a dashboard session's changes must come from the dashboard's own origin",
    )
}

/// Authenticates an API key given as text (a request's header, or the dashboard's login).
pub async fn authenticate_token(cx: &RequestContext, token: &str) -> ApiResult<Caller> {
    let token = token.to_string();
    let parsed = keys::parse_token(&token).ok_or_else(ApiError::unauthorized)?;
    let (row, read) = match memo::get(parsed.prefix, cx.now_ms) {
        Some(row) => (row, Read::Memo),
        None => {
            if failures::unknown(parsed.prefix, cx.now_ms) {
                return Err(ApiError::unauthorized());
            }
            failures::check(cx.now_ms)?;
            let generation = memo::generation();
            let (row, read) = match load_row(cx, parsed.prefix).await? {
                Some(found) => found,
                None => {
                    failures::remember_unknown(parsed.prefix, cx.now_ms);
                    return Err(ApiError::unauthorized());
                }
            };
            if row.status == "active" && keys::hash_matches(&row.key_hash, &token) {
                memo::put(&row, cx.now_ms, generation);
            }
            (row, read)
        }
    };
    if row.status != "active" || !keys::hash_matches(&row.key_hash, &token) {
        failures::count(cx.now_ms);
        return Err(ApiError::unauthorized());
    }
    if read == Read::Database {
        cache_row_later(cx, &row);
    }
    Caller::from_row(row)
}

/// Where an auth row came from.
#[derive(PartialEq, Eq)]
enum Read {
    Memo,
    AuthCache,
    Database,
}

/// A key's auth row from the KV auth cache, else from D1; `None` when no key has the prefix.
async fn load_row(cx: &RequestContext, prefix: &str) -> ApiResult<Option<(KeyAuthRow, Read)>> {
    let kv = cx.kv()?;
    // A failing KV read is a cache miss, not a failed request.
    let cached = match kv.get(&auth_cache_key(prefix)).json::<KeyAuthRow>().await {
        Ok(row) => row,
        Err(e) => {
            console_error!("auth cache read failed: {e}");
            None
        }
    };
    if let Some(row) = cached {
        return Ok(Some((row, Read::AuthCache)));
    }
    let row = api_keys::key_for_auth(&cx.db()?, prefix).await?;
    Ok(row.map(|r| (r, Read::Database)))
}

/// After a verified call whose row came from D1: caches the row in KV (active keys only) and
/// refreshes the key's `last_used_at` (accurate to the cache's 60 s), off the response path.
fn cache_row_later(cx: &RequestContext, row: &KeyAuthRow) {
    let (Ok(kv), Ok(db)) = (cx.kv(), cx.db()) else {
        return;
    };
    let row = row.clone();
    let now = cx.now_ms;
    // Test hook of a `dev-hooks` build (`x-dev-auth-cache-delay-ms`): the write waits.
    #[cfg(feature = "dev-hooks")]
    let delay_ms = cx.dev_auth_cache_delay_ms;
    cx.after(async move {
        #[cfg(feature = "dev-hooks")]
        if delay_ms > 0 {
            Delay::from(Duration::from_millis(delay_ms)).await;
        }
        // As JSON text, which `json()` reads back; the bytes go in as they are (worker's
        // generic `put` would convert the row to a JS object and stringify it there).
        let put = serde_json::to_vec(&row)
            .ok()
            .and_then(|text| kv.put_bytes(&auth_cache_key(&row.prefix), &text).ok());
        if let Some(put) = put {
            if let Err(e) = put.expiration_ttl(AUTH_CACHE_TTL_S).execute().await {
                console_error!("auth cache write failed: {e}");
            }
        }
        let _ = api_keys::touch_key(&db, &row.prefix, now).await;
    });
}

/// Failed authentications seen by this isolate: prefixes that have no key (remembered
/// `UNKNOWN_TTL_MS`), and a budget of failed lookups per second past which the isolate
/// answers 429 instead of reading D1 (docs/DECISIONS.md, "Failed authentications").
mod failures {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use gateway_core::error::ApiError;

    /// How long a prefix with no key is answered 401 without a lookup.
    pub const UNKNOWN_TTL_MS: u64 = 5_000;
    /// Failed lookups one isolate allows per second before it throttles.
    pub const FAILURES_PER_SECOND: u32 = 50;
    const MAX_UNKNOWN: usize = 4096;

    #[derive(Default)]
    struct Failures {
        unknown: HashMap<String, u64>,
        /// The current second and the failures counted in it.
        window: (u64, u32),
    }

    thread_local! {
        static FAILURES: RefCell<Failures> = RefCell::new(Failures::default());
    }

    pub fn unknown(prefix: &str, now_ms: u64) -> bool {
        FAILURES.with(|f| {
            f.borrow()
                .unknown
                .get(prefix)
                .is_some_and(|until| now_ms < *until)
        })
    }

    pub fn remember_unknown(prefix: &str, now_ms: u64) {
        count(now_ms);
        FAILURES.with(|f| {
            let mut f = f.borrow_mut();
            if f.unknown.len() >= MAX_UNKNOWN {
                f.unknown.retain(|_, until| now_ms < *until);
                if f.unknown.len() >= MAX_UNKNOWN {
                    f.unknown.clear();
                }
            }
            f.unknown
                .insert(prefix.to_string(), now_ms + UNKNOWN_TTL_MS);
        })
    }

    /// A new key took `prefix` (minted in this isolate): forget that it had none.
    pub fn forget_unknown(prefix: &str) {
        FAILURES.with(|f| f.borrow_mut().unknown.remove(prefix));
    }

    pub fn count(now_ms: u64) {
        FAILURES.with(|f| {
            let mut f = f.borrow_mut();
            let second = now_ms / 1000;
            if f.window.0 != second {
                f.window = (second, 0);
            }
            f.window.1 = f.window.1.saturating_add(1);
        })
    }

    /// The 429 of an isolate past its budget of failed lookups this second, before any lookup
    /// is made.
    pub fn check(now_ms: u64) -> Result<(), ApiError> {
        let throttled = FAILURES.with(|f| {
            let f = f.borrow();
            f.window.0 == now_ms / 1000 && f.window.1 >= FAILURES_PER_SECOND
        });
        if !throttled {
            return Ok(());
        }
        Err(ApiError::new(
            429,
            "auth_throttled",
            "too many failed authentications; retry in a second",
        )
        .with("retry_after_ms", 1000)
        .with_header("Retry-After", "1"))
    }
}

/// A key was just minted on `prefix` in this isolate: it is no longer unknown here.
pub fn minted(prefix: &str) {
    failures::forget_unknown(prefix);
}

/// How long after an invalidation its KV deletes are made again.
const REINVALIDATE_MS: u64 = 2_000;

/// Drops the memo and KV auth cache entries of these key prefixes (revocation, tier change).
pub async fn invalidate(cx: &RequestContext, prefixes: &[String]) -> ApiResult<()> {
    // Before and after the KV deletes: a row read from KV meanwhile is never memoized.
    memo::forget(prefixes);
    let kv = cx.kv()?;
    for p in prefixes {
        kv.delete(&auth_cache_key(p))
            .await
            .map_err(crate::runtime::dependency("KV auth cache delete"))?;
    }
    memo::forget(prefixes);
    // A call that read the old row from D1 just before the change may write it to KV just
    // after these deletes (its write runs after its response): delete once more a little
    // later, so such a row lives 2 s at most instead of the cache's 60 s.
    let again = prefixes.to_vec();
    cx.after(async move {
        Delay::from(Duration::from_millis(REINVALIDATE_MS)).await;
        for p in &again {
            if let Err(e) = kv.delete(&auth_cache_key(p)).await {
                console_error!("auth cache re-delete failed: {e}");
            }
        }
    });
    Ok(())
}

/// Drops the memo and KV auth cache entries of every key of the account (tier, BYOK or
/// prompt-prefix change: the next call of any of its keys must read the new row).
pub async fn invalidate_account(
    cx: &RequestContext,
    db: &D1Database,
    account_id: &str,
) -> ApiResult<()> {
    invalidate(
        cx,
        &api_keys::key_prefixes(db, account_id, cx.now_ms).await?,
    )
    .await
}

/// The admin API: bearer `ADMIN_TOKEN`, compared in constant time; refused entirely when unset.
pub fn require_admin(cx: &RequestContext, req: &Request) -> ApiResult<()> {
    let Some(expected) = cx.var("ADMIN_TOKEN") else {
        return Err(ApiError::admin_disabled());
    };
    let given = req
        .headers()
        .get("Authorization")
        .ok()
        .flatten()
        .and_then(|h| keys::bearer(&h).map(str::to_string))
        .ok_or_else(ApiError::admin_unauthorized)?;
    if keys::constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::admin_unauthorized())
    }
}
