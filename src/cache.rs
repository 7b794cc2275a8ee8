//! The two-tier answer cache: L1 is the Workers Cache API (per colo), L2 is KV (global).
//! Lookups try L1 then L2; an L2 hit is promoted to L1 off the response path. A failing tier
//! is logged and treated as a miss, never as a failed request.

use gateway_core::cache::control::{remaining_ttl_s, CacheTier};
use gateway_core::cache::key::Namespace;
use serde::{Deserialize, Serialize};
use worker::kv::KvStore;
use worker::{console_error, Cache, Headers, Response};

use crate::brokers::ProviderResult;
use crate::http::context::RequestContext;

/// Both tiers keep an entry 24 hours.
pub const TTL_S: u64 = 86_400;

/// What a cache entry holds: the provider results, nothing about who asked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub results: Vec<ProviderResult>,
}

/// What L2 keeps beside an entry (KV metadata): when it was stored, so a copy into L1 lives
/// only as long as the entry has left.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct L2Meta {
    pub stored_at: u64,
}

/// An entry as read back on a hit: each result kept as the JSON text that was stored.
#[derive(Debug, Deserialize)]
pub struct RawEntry {
    pub results: Vec<Box<serde_json::value::RawValue>>,
}

/// Looks the key up in L1 then L2. Returns the raw entry text and the tier that had it.
/// An L2 hit is copied into L1 with `wait_until`.
pub async fn lookup(
    cx: &RequestContext,
    namespace: Namespace,
    key: &str,
) -> Option<(String, CacheTier)> {
    let url = namespace.l1_url(key);
    #[cfg(feature = "dev-hooks")]
    let found = if cx.dev_fails("l1") {
        Err(injected("L1"))
    } else {
        Cache::default().get(url.as_str(), false).await
    };
    #[cfg(not(feature = "dev-hooks"))]
    let found = Cache::default().get(url.as_str(), false).await;
    match found {
        Ok(Some(resp)) => match worker_shared::body::text(resp).await {
            Ok(text) => return Some((text, CacheTier::L1)),
            Err(e) => console_error!("L1 read failed: {e}"),
        },
        Ok(None) => {}
        Err(e) => console_error!("L1 lookup failed: {e}"),
    }
    let kv = cx.kv().ok()?;
    #[cfg(feature = "dev-hooks")]
    let found = if cx.dev_fails("l2") {
        Err(worker::kv::KvError::InvalidKvStore(
            injected("L2").to_string(),
        ))
    } else {
        kv.get(&namespace.l2_name(key))
            .text_with_metadata::<L2Meta>()
            .await
    };
    #[cfg(not(feature = "dev-hooks"))]
    let found = kv
        .get(&namespace.l2_name(key))
        .text_with_metadata::<L2Meta>()
        .await;
    match found {
        Ok((Some(text), meta)) => {
            // The copy expires with the entry (an entry without a date is not copied).
            let max_age = meta.map_or(0, |m| remaining_ttl_s(m.stored_at, cx.now_ms, TTL_S));
            if max_age > 0 {
                let copy = text.clone();
                #[cfg(feature = "dev-hooks")]
                let fail = cx.dev_fails("l1");
                cx.after(async move {
                    #[cfg(feature = "dev-hooks")]
                    if fail {
                        console_error!("L1 write failed: {}", injected("L1"));
                        return;
                    }
                    put_l1(&url, &copy, max_age).await;
                });
            }
            Some((text, CacheTier::L2))
        }
        Ok((None, _)) => None,
        Err(e) => {
            console_error!("L2 lookup failed: {e}");
            None
        }
    }
}

/// The error a tier failure injected by the `x-dev-fail` test hook (`RequestContext::dev_fails`, only in
/// a `dev-hooks` build) stands for, at the point where a real failure of the tier is handled.
#[cfg(feature = "dev-hooks")]
fn injected(tier: &str) -> worker::Error {
    worker::Error::RustError(format!("{tier} unavailable (injected by x-dev-fail)"))
}

async fn put_l1(url: &str, text: &str, max_age_s: u64) {
    let headers = Headers::new();
    let _ = headers.set("Content-Type", "application/json");
    let _ = headers.set("Cache-Control", &format!("max-age={max_age_s}"));
    let resp = match Response::ok(text.to_string()) {
        Ok(r) => r.with_headers(headers),
        Err(_) => return,
    };
    if let Err(e) = Cache::default().put(url, resp).await {
        console_error!("L1 write failed: {e}");
    }
}

/// Writes an entry to both tiers, off the response path.
pub fn store(cx: &RequestContext, namespace: Namespace, key: &str, text: String) {
    let url = namespace.l1_url(key);
    let name = namespace.l2_name(key);
    let kv = cx.kv().ok();
    #[cfg(feature = "dev-hooks")]
    let (fail_l1, fail_l2) = (cx.dev_fails("l1"), cx.dev_fails("l2"));
    let meta = L2Meta {
        stored_at: cx.now_ms,
    };
    cx.after(async move {
        #[cfg(feature = "dev-hooks")]
        if fail_l1 {
            console_error!("L1 write failed: {}", injected("L1"));
        } else {
            put_l1(&url, &text, TTL_S).await;
        }
        #[cfg(not(feature = "dev-hooks"))]
        put_l1(&url, &text, TTL_S).await;
        #[cfg(feature = "dev-hooks")]
        if fail_l2 {
            console_error!("L2 write failed: {}", injected("L2"));
            return;
        }
        if let Some(kv) = kv {
            put_l2(&kv, &name, text, meta, TTL_S).await;
        }
    });
}

/// Writes an L2 entry with its metadata, to expire in `ttl_s`.
pub async fn put_l2(kv: &KvStore, name: &str, text: String, meta: L2Meta, ttl_s: u64) {
    let put = kv
        .put_bytes(name, text.as_bytes())
        .and_then(|p| p.metadata(meta))
        .map(|p| p.expiration_ttl(ttl_s));
    match put {
        Ok(put) => {
            if let Err(e) = put.execute().await {
                console_error!("L2 write failed: {e}");
            }
        }
        Err(e) => console_error!("L2 write failed: {e}"),
    }
}

/// Dev-only: the `Cache-Control` of an L1 entry, if there is one.
#[cfg(feature = "dev-hooks")]
pub async fn l1_cache_control(namespace: Namespace, key: &str) -> Option<String> {
    let found = Cache::default()
        .get(namespace.l1_url(key).as_str(), false)
        .await
        .ok()??;
    Some(
        found
            .headers()
            .get("Cache-Control")
            .ok()
            .flatten()
            .unwrap_or_default(),
    )
}

/// Dev-only: drops an L1 entry so tests can reach L2 (refused outside local dev).
#[cfg(feature = "dev-hooks")]
pub async fn drop_l1(namespace: Namespace, key: &str) -> bool {
    Cache::default()
        .delete(namespace.l1_url(key).as_str(), false)
        .await
        .is_ok()
}
