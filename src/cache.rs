//! The two-tier answer cache: L1 is the Workers Cache API (per colo), L2 is KV (global).
//! Lookups try L1 then L2; an L2 hit is promoted to L1 off the response path. A failing tier
//! is logged and treated as a miss, never as a failed request.

use gateway_core::cache::control::{remaining_ttl_s, CacheTier};
use serde::{Deserialize, Serialize};
use worker::kv::KvStore;
use worker::{console_error, Cache, Headers, Response};

use crate::edge::Gw;
use crate::fanout::ProviderResult;

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

/// L1 address of a key in a namespace (`ask/v1`, `chat/v1`, `messages/v1`).
pub fn l1_url(namespace: &str, key: &str) -> String {
    format!("https://cache.internal/{namespace}/{key}")
}

/// L2 (KV) name of a key: `ask:<key>` for /v1/ask, `<ns>:<key>` for the drop-in endpoints.
pub fn l2_name(namespace: &str, key: &str) -> String {
    match namespace {
        "ask/v1" => format!("ask:{key}"),
        other => format!("{}:{key}", other.split('/').next().unwrap_or(other)),
    }
}

/// Looks the key up in L1 then L2. Returns the raw entry text and the tier that had it.
/// An L2 hit is copied into L1 with `wait_until`.
pub async fn lookup(gw: &Gw, namespace: &str, key: &str) -> Option<(String, CacheTier)> {
    let url = l1_url(namespace, key);
    let found = if gw.dev_fails("l1") {
        Err(injected("L1"))
    } else {
        Cache::default().get(url.as_str(), false).await
    };
    match found {
        Ok(Some(resp)) => match worker_shared::body::text(resp).await {
            Ok(text) => return Some((text, CacheTier::L1)),
            Err(e) => console_error!("L1 read failed: {e}"),
        },
        Ok(None) => {}
        Err(e) => console_error!("L1 lookup failed: {e}"),
    }
    let kv = gw.kv().ok()?;
    let found = if gw.dev_fails("l2") {
        Err(worker::kv::KvError::InvalidKvStore(
            injected("L2").to_string(),
        ))
    } else {
        kv.get(&l2_name(namespace, key))
            .text_with_metadata::<L2Meta>()
            .await
    };
    match found {
        Ok((Some(text), meta)) => {
            // The copy expires with the entry (an entry without a date is not copied).
            let max_age = meta.map_or(0, |m| remaining_ttl_s(m.stored_at, gw.now_ms, TTL_S));
            if max_age > 0 {
                let copy = text.clone();
                let fail = gw.dev_fails("l1");
                gw.after(async move {
                    put_l1(&url, &copy, max_age, fail).await;
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

/// The error a tier failure injected by the test hook (`Gw::dev_fails`) stands for.
fn injected(tier: &str) -> worker::Error {
    worker::Error::RustError(format!("{tier} unavailable (injected by x-dev-fail)"))
}

async fn put_l1(url: &str, text: &str, max_age_s: u64, fail: bool) {
    if fail {
        console_error!("L1 write failed: {}", injected("L1"));
        return;
    }
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
pub fn store(gw: &Gw, namespace: &str, key: &str, text: String) {
    let url = l1_url(namespace, key);
    let name = l2_name(namespace, key);
    let kv = gw.kv().ok();
    let (fail_l1, fail_l2) = (gw.dev_fails("l1"), gw.dev_fails("l2"));
    let meta = L2Meta {
        stored_at: gw.now_ms,
    };
    gw.after(async move {
        put_l1(&url, &text, TTL_S, fail_l1).await;
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
        .put(name, text)
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
pub async fn l1_cache_control(namespace: &str, key: &str) -> Option<String> {
    let found = Cache::default()
        .get(l1_url(namespace, key).as_str(), false)
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
pub async fn drop_l1(namespace: &str, key: &str) -> bool {
    Cache::default()
        .delete(l1_url(namespace, key).as_str(), false)
        .await
        .is_ok()
}
