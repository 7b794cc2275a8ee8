//! What a request's `Cache-Control` asks of the gateway cache, and the RFC 9211
//! `Cache-Status` header and body `cache` object that tell the caller what happened.

use serde_json::{json, Value};

/// Name of this cache in `Cache-Status`.
pub const CACHE_NAME: &str = "edge-gateway";

/// What the caller's request directives allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestCacheMode {
    /// Look up, and store a fresh result.
    Default,
    /// `no-cache`: skip the lookup, store the fresh result.
    Refresh,
    /// `no-store`: neither read nor write.
    Bypass,
    /// `only-if-cached` (RFC 9111): answer from the cache or not at all (504 `not_cached`):
    /// never a provider call, so nothing is reserved, charged or written.
    OnlyIfCached,
}

impl RequestCacheMode {
    /// Parses a request `Cache-Control` value: `only-if-cached` wins over everything (the
    /// caller wants no provider call at all), then `no-store` over `no-cache`. Directive names
    /// are case-insensitive; unknown directives are ignored.
    pub fn from_header(value: Option<&str>) -> Self {
        let Some(v) = value else {
            return RequestCacheMode::Default;
        };
        let mut mode = RequestCacheMode::Default;
        for directive in v.split(',') {
            let name = directive.split('=').next().unwrap_or("").trim();
            if name.eq_ignore_ascii_case("only-if-cached") {
                return RequestCacheMode::OnlyIfCached;
            }
            if name.eq_ignore_ascii_case("no-store") {
                mode = RequestCacheMode::Bypass;
            }
            if name.eq_ignore_ascii_case("no-cache") && mode == RequestCacheMode::Default {
                mode = RequestCacheMode::Refresh;
            }
        }
        mode
    }

    pub fn reads(self) -> bool {
        matches!(
            self,
            RequestCacheMode::Default | RequestCacheMode::OnlyIfCached
        )
    }
    pub fn writes(self) -> bool {
        matches!(self, RequestCacheMode::Default | RequestCacheMode::Refresh)
    }
    /// Whether a miss may call the providers.
    pub fn fetches(self) -> bool {
        self != RequestCacheMode::OnlyIfCached
    }
}

/// Which tier answered a hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheTier {
    L1,
    L2,
}

impl CacheTier {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheTier::L1 => "l1",
            CacheTier::L2 => "l2",
        }
    }
}

/// What the cache did for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    Hit(CacheTier),
    /// Looked up, not found; `stored` when the fresh result is being written.
    Miss {
        stored: bool,
    },
    /// `no-cache`: not looked up; `stored` as above.
    Refresh {
        stored: bool,
    },
    /// `no-store`.
    Bypass,
    /// Served the outcome of an identical miss in flight (a follower of its single flight).
    Coalesced,
}

impl CacheOutcome {
    /// What the cache did for a call that went to the providers under `mode`; `stored` when
    /// the fresh answer is being written.
    pub fn fetched(mode: RequestCacheMode, stored: bool) -> Self {
        match mode {
            RequestCacheMode::Default => CacheOutcome::Miss { stored },
            RequestCacheMode::Refresh => CacheOutcome::Refresh { stored },
            // A call that asked for the cache alone never goes to the providers; should one
            // be read as fetched, it wrote nothing.
            RequestCacheMode::Bypass | RequestCacheMode::OnlyIfCached => CacheOutcome::Bypass,
        }
    }

    /// The body's `cache.status`.
    pub fn status(self) -> &'static str {
        match self {
            CacheOutcome::Hit(_) => "hit",
            CacheOutcome::Miss { .. } => "miss",
            CacheOutcome::Refresh { .. } => "refresh",
            CacheOutcome::Bypass => "bypass",
            CacheOutcome::Coalesced => "coalesced",
        }
    }

    pub fn tier(self) -> Option<CacheTier> {
        match self {
            CacheOutcome::Hit(t) => Some(t),
            _ => None,
        }
    }

    /// RFC 9211 `Cache-Status` value.
    pub fn header(self) -> String {
        let stored = |s: bool| if s { "; stored" } else { "" };
        match self {
            CacheOutcome::Hit(t) => format!("{CACHE_NAME}; hit; detail={}", t.as_str()),
            CacheOutcome::Miss { stored: s } => format!("{CACHE_NAME}; fwd=uri-miss{}", stored(s)),
            CacheOutcome::Refresh { stored: s } => {
                format!("{CACHE_NAME}; fwd=request{}", stored(s))
            }
            CacheOutcome::Bypass => format!("{CACHE_NAME}; fwd=request; detail=no-store"),
            CacheOutcome::Coalesced => format!("{CACHE_NAME}; fwd=uri-miss; collapsed"),
        }
    }

    /// The body's `cache` object.
    pub fn body(self, scope: &str, key: &str) -> Value {
        let mut v = json!({"status": self.status(), "scope": scope, "key": key});
        if let Some(t) = self.tier() {
            v["tier"] = json!(t.as_str());
        }
        v
    }
}

/// Whole seconds an entry stored at `stored_at_ms` has left of its `ttl_s` at `now_ms`, rounded
/// down: the `max-age` of an L2 entry copied into L1, so the copy expires with the entry and an
/// answer is never served past its 24 hours (a copy given a fresh `ttl_s` could be).
pub fn remaining_ttl_s(stored_at_ms: u64, now_ms: u64, ttl_s: u64) -> u64 {
    let age_ms = now_ms.saturating_sub(stored_at_ms);
    ttl_s.saturating_mul(1000).saturating_sub(age_ms) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_expires_with_its_entry() {
        let day = 86_400;
        assert_eq!(remaining_ttl_s(1_000, 1_000, day), day);
        // 58.5 s short of 24 h old: 58 whole seconds left.
        assert_eq!(remaining_ttl_s(0, (day - 59) * 1000 + 500, day), 58);
        assert_eq!(remaining_ttl_s(0, day * 1000, day), 0);
        assert_eq!(remaining_ttl_s(0, u64::MAX, day), 0);
        // A clock behind the writer's: no more than the whole TTL.
        assert_eq!(remaining_ttl_s(5_000, 1_000, day), day);
    }

    #[test]
    fn absent_header_is_default() {
        assert_eq!(
            RequestCacheMode::from_header(None),
            RequestCacheMode::Default
        );
        assert_eq!(
            RequestCacheMode::from_header(Some("max-age=0")),
            RequestCacheMode::Default
        );
    }

    #[test]
    fn recognizes_no_cache_case_insensitively() {
        assert_eq!(
            RequestCacheMode::from_header(Some("No-Cache")),
            RequestCacheMode::Refresh
        );
        assert_eq!(
            RequestCacheMode::from_header(Some("max-age=0, no-cache")),
            RequestCacheMode::Refresh
        );
    }

    #[test]
    fn no_store_wins_over_no_cache_in_any_order() {
        assert_eq!(
            RequestCacheMode::from_header(Some("no-store, no-cache")),
            RequestCacheMode::Bypass
        );
        assert_eq!(
            RequestCacheMode::from_header(Some("no-cache,no-store")),
            RequestCacheMode::Bypass
        );
    }

    #[test]
    fn reads_and_writes_follow_the_mode() {
        assert!(RequestCacheMode::Default.reads() && RequestCacheMode::Default.writes());
        assert!(!RequestCacheMode::Refresh.reads() && RequestCacheMode::Refresh.writes());
        assert!(!RequestCacheMode::Bypass.reads() && !RequestCacheMode::Bypass.writes());
        let only = RequestCacheMode::OnlyIfCached;
        assert!(only.reads() && !only.writes() && !only.fetches());
        for m in [
            RequestCacheMode::Default,
            RequestCacheMode::Refresh,
            RequestCacheMode::Bypass,
        ] {
            assert!(m.fetches(), "{m:?}");
        }
    }

    #[test]
    fn only_if_cached_wins_over_every_other_directive() {
        for v in [
            "only-if-cached",
            "Only-If-Cached",
            "no-store, only-if-cached",
            "only-if-cached, no-cache",
            "max-age=0,only-if-cached",
        ] {
            assert_eq!(
                RequestCacheMode::from_header(Some(v)),
                RequestCacheMode::OnlyIfCached,
                "{v}"
            );
        }
    }

    #[test]
    fn cache_status_headers_follow_rfc_9211() {
        assert_eq!(
            CacheOutcome::Hit(CacheTier::L1).header(),
            "edge-gateway; hit; detail=l1"
        );
        assert_eq!(
            CacheOutcome::Hit(CacheTier::L2).header(),
            "edge-gateway; hit; detail=l2"
        );
        assert_eq!(
            CacheOutcome::Miss { stored: true }.header(),
            "edge-gateway; fwd=uri-miss; stored"
        );
        assert_eq!(
            CacheOutcome::Miss { stored: false }.header(),
            "edge-gateway; fwd=uri-miss"
        );
        assert_eq!(
            CacheOutcome::Refresh { stored: true }.header(),
            "edge-gateway; fwd=request; stored"
        );
    }

    #[test]
    fn fetched_outcome_follows_the_request_mode() {
        assert_eq!(
            CacheOutcome::fetched(RequestCacheMode::Default, true),
            CacheOutcome::Miss { stored: true }
        );
        assert_eq!(
            CacheOutcome::fetched(RequestCacheMode::Refresh, false),
            CacheOutcome::Refresh { stored: false }
        );
        assert_eq!(
            CacheOutcome::fetched(RequestCacheMode::Bypass, false),
            CacheOutcome::Bypass
        );
    }

    #[test]
    fn body_names_tier_only_on_hits() {
        let b = CacheOutcome::Hit(CacheTier::L2).body("shared", "ab");
        assert_eq!(
            b,
            json!({"status": "hit", "tier": "l2", "scope": "shared", "key": "ab"})
        );
        let b = CacheOutcome::Miss { stored: true }.body("private", "ab");
        assert!(b.get("tier").is_none());
    }
}
