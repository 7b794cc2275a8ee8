//! Who is calling: gateway API keys (prefix lookup, 60 s KV auth cache, constant-time hash
//! check, one 401 for every failure) and the admin bearer token.

use gateway_core::error::ApiError;
use gateway_core::keys::{self, KeyMode};
use gateway_core::provider::Provider;
use worker::{console_error, Request};

use crate::edge::{api_key_header, Gw, Outcome};
use crate::store::{self, KeyAuthRow};

/// Seconds a key's auth row is cached in KV.
const AUTH_CACHE_TTL_S: u64 = 60;

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

pub fn auth_cache_key(prefix: &str) -> String {
    format!("auth:{prefix}")
}

/// Authenticates the request's gateway key. Unknown, malformed and revoked keys get the
/// same 401; a storage failure is a 503 (fail closed).
pub async fn authenticate(gw: &Gw, req: &Request) -> Outcome<Caller> {
    let token = api_key_header(req).ok_or_else(ApiError::unauthorized)?;
    let parsed = keys::parse_token(&token).ok_or_else(ApiError::unauthorized)?;
    let kv = gw.kv()?;
    let cache_key = auth_cache_key(parsed.prefix);

    // A failing KV read is a cache miss, not a failed request.
    let cached = match kv.get(&cache_key).json::<KeyAuthRow>().await {
        Ok(row) => row,
        Err(e) => {
            console_error!("auth cache read failed: {e}");
            None
        }
    };
    let row = match cached {
        Some(row) => row,
        None => {
            let row = store::key_for_auth(&gw.db()?, parsed.prefix)
                .await?
                .ok_or_else(ApiError::unauthorized)?;
            if row.status == "active" {
                // Cache only active keys; a miss also refreshes last_used_at (accurate to 60 s).
                let kv = kv.clone();
                let row2 = row.clone();
                let db = gw.db()?;
                let (prefix, now) = (parsed.prefix.to_string(), gw.now_ms);
                gw.after(async move {
                    if let Ok(put) = kv.put(&auth_cache_key(&prefix), &row2) {
                        if let Err(e) = put.expiration_ttl(AUTH_CACHE_TTL_S).execute().await {
                            console_error!("auth cache write failed: {e}");
                        }
                    }
                    let _ = store::touch_key(&db, &prefix, now).await;
                });
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

/// Drops the KV auth cache entries of these key prefixes (revocation, tier change).
pub async fn invalidate(gw: &Gw, prefixes: &[String]) -> Outcome<()> {
    let kv = gw.kv()?;
    for p in prefixes {
        kv.delete(&auth_cache_key(p))
            .await
            .map_err(crate::edge::dependency("KV auth cache delete"))?;
    }
    Ok(())
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
