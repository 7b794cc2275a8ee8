//! Who is calling: gateway API keys (prefix lookup, 5 s isolate-local memo over a 60 s KV auth
//! cache, constant-time hash check, one 401 for every failure) and the admin bearer token.

use gateway_core::error::ApiError;
use gateway_core::keys::{self, KeyMode};
use gateway_core::providers::Provider;
use std::time::Duration;

use worker::{console_error, D1Database, Delay, Request};

use crate::edge::{api_key_header, Gw, Outcome};
use crate::store::{self, KeyAuthRow};

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

    use crate::store::KeyAuthRow;

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

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub account_id: String,
    pub prefix: String,
    pub mode: KeyMode,
    pub tier: String,
    pub limits_json: Option<String>,
    pub store_prompt_prefix: bool,
    /// Providers for which the account brought its own key.
    pub byok: Vec<Provider>,
}

impl Caller {
    /// True when the account brought its own key for `provider`.
    pub fn has_byok(&self, provider: Provider) -> bool {
        self.byok.contains(&provider)
    }
}

/// Re-reads the caller's key row from D1, past the isolate memo and the KV auth cache: a call
/// that changes the account must come from a key that is active now, not one revoked in the
/// last seconds elsewhere (whose caches there may still say active).
pub async fn confirm_active(gw: &Gw, caller: &Caller) -> Outcome<()> {
    let row = crate::store::key_for_auth(&gw.db()?, &caller.prefix).await?;
    match row {
        Some(r) if r.status == "active" && r.account_id == caller.account_id => Ok(()),
        _ => Err(ApiError::unauthorized()),
    }
}

pub fn auth_cache_key(prefix: &str) -> String {
    format!("auth:{prefix}")
}

/// Authenticates the request's gateway key. Unknown, malformed and revoked keys get the
/// same 401; a storage failure is a 503 (fail closed).
pub async fn authenticate(gw: &Gw, req: &Request) -> Outcome<Caller> {
    let token = api_key_header(req).ok_or_else(ApiError::unauthorized)?;
    let parsed = keys::parse_token(&token).ok_or_else(ApiError::unauthorized)?;
    let row = match memo::get(parsed.prefix, gw.now_ms) {
        Some(row) => row,
        None => {
            let generation = memo::generation();
            let row = load_row(gw, parsed.prefix).await?;
            if row.status == "active" {
                memo::put(&row, gw.now_ms, generation);
            }
            row
        }
    };
    if row.status != "active" || !keys::hash_matches(&row.key_hash, &token) {
        return Err(ApiError::unauthorized());
    }
    Ok(Caller {
        account_id: row.account_id,
        prefix: row.prefix,
        mode: KeyMode::parse(&row.mode).unwrap_or(KeyMode::Live),
        tier: row.tier,
        limits_json: row.limits_json,
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

/// A key's auth row from the KV auth cache, else from D1 (then cached in KV if active).
async fn load_row(gw: &Gw, prefix: &str) -> Outcome<KeyAuthRow> {
    let kv = gw.kv()?;
    let cache_key = auth_cache_key(prefix);

    // A failing KV read is a cache miss, not a failed request.
    let cached = match kv.get(&cache_key).json::<KeyAuthRow>().await {
        Ok(row) => row,
        Err(e) => {
            console_error!("auth cache read failed: {e}");
            None
        }
    };
    if let Some(row) = cached {
        return Ok(row);
    }
    let row = store::key_for_auth(&gw.db()?, prefix)
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    if row.status == "active" {
        // Cache only active keys; a miss also refreshes last_used_at (accurate to 60 s).
        let row2 = row.clone();
        let db = gw.db()?;
        let (prefix, now) = (prefix.to_string(), gw.now_ms);
        // Test hook of a `dev-hooks` build (`x-dev-auth-cache-delay-ms`): the write waits.
        #[cfg(feature = "dev-hooks")]
        let delay_ms = gw.dev_auth_cache_delay_ms;
        gw.after(async move {
            #[cfg(feature = "dev-hooks")]
            if delay_ms > 0 {
                Delay::from(Duration::from_millis(delay_ms)).await;
            }
            if let Ok(put) = kv.put(&auth_cache_key(&prefix), &row2) {
                if let Err(e) = put.expiration_ttl(AUTH_CACHE_TTL_S).execute().await {
                    console_error!("auth cache write failed: {e}");
                }
            }
            let _ = store::touch_key(&db, &prefix, now).await;
        });
    }
    Ok(row)
}

/// How long after an invalidation its KV deletes are made again.
const REINVALIDATE_MS: u64 = 2_000;

/// Drops the memo and KV auth cache entries of these key prefixes (revocation, tier change).
pub async fn invalidate(gw: &Gw, prefixes: &[String]) -> Outcome<()> {
    // Before and after the KV deletes: a row read from KV meanwhile is never memoized.
    memo::forget(prefixes);
    let kv = gw.kv()?;
    for p in prefixes {
        kv.delete(&auth_cache_key(p))
            .await
            .map_err(crate::edge::dependency("KV auth cache delete"))?;
    }
    memo::forget(prefixes);
    // A call that read the old row from D1 just before the change may write it to KV just
    // after these deletes (its write runs after its response): delete once more a little
    // later, so such a row lives 2 s at most instead of the cache's 60 s.
    let again = prefixes.to_vec();
    gw.after(async move {
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
pub async fn invalidate_account(gw: &Gw, db: &D1Database, account_id: &str) -> Outcome<()> {
    invalidate(gw, &store::key_prefixes(db, account_id).await?).await
}

/// The admin API: bearer `ADMIN_TOKEN`, compared in constant time; refused entirely when unset.
pub fn require_admin(gw: &Gw, req: &Request) -> Outcome<()> {
    let Some(expected) = gw.var("ADMIN_TOKEN") else {
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
