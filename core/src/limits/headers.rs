//! Rate-limit response headers (IETF httpapi draft `RateLimit-Policy`/`RateLimit`, the common
//! `X-RateLimit-*`, and on denial `Retry-After`/`retry-after-ms`) and the 429 JSON body.

use serde_json::{json, Value};

use crate::limits::bucket::Decision;
use crate::limits::tier::{Limits, Tier};

/// Whole seconds covering `ms`, rounded up, so a client that waits this long never comes
/// back too early.
pub fn ceil_secs(ms: u64) -> u64 {
    ms.div_ceil(1000)
}

/// The headers for a response that went through the bucket.
///
/// The draft's quota policy is named after the tier (`"free"`, `"pro"`, ...):
/// `RateLimit-Policy: "free";q=10;w=60` (q = burst, w = seconds to refill from empty) and
/// `RateLimit: "free";r=3;t=42` (r = tokens left, t = whole seconds until full, rounded up).
/// `X-RateLimit-Limit` is the burst, `X-RateLimit-Remaining` the tokens left and
/// `X-RateLimit-Reset` the seconds until full. A denial adds `Retry-After` (whole seconds,
/// rounded up) and `retry-after-ms`.
pub fn rate_limit_headers(
    limits: &Limits,
    tier: Tier,
    decision: &Decision,
) -> Vec<(&'static str, String)> {
    let name = tier.as_str();
    let remaining = decision.remaining();
    let reset_s = ceil_secs(decision.reset_ms());
    let mut headers = policy_headers(limits, tier);
    headers.extend([
        ("RateLimit", format!("\"{name}\";r={remaining};t={reset_s}")),
        ("X-RateLimit-Remaining", remaining.to_string()),
        ("X-RateLimit-Reset", reset_s.to_string()),
    ]);
    if let Decision::Denied { retry_after_ms, .. } = decision {
        headers.push(("Retry-After", ceil_secs(*retry_after_ms).to_string()));
        headers.push(("retry-after-ms", retry_after_ms.to_string()));
    }
    headers
}

/// The headers a response carries without asking the bucket, as a cache hit does (it takes no
/// token, so its bucket state is not read): the tier's policy, `RateLimit-Policy` and
/// `X-RateLimit-Limit`.
pub fn policy_headers(limits: &Limits, tier: Tier) -> Vec<(&'static str, String)> {
    vec![
        (
            "RateLimit-Policy",
            format!(
                "\"{}\";q={};w={}",
                tier.as_str(),
                limits.burst,
                limits.window_secs()
            ),
        ),
        ("X-RateLimit-Limit", limits.burst.to_string()),
    ]
}

/// The 429 body: `{"error": {"code": "rate_limited", "message": "...", "tier": "free",
/// "retry_after_ms": 1234}}`.
pub fn rate_limited_body(tier: Tier, retry_after_ms: u64) -> Value {
    json!({
        "error": {
            "code": "rate_limited",
            "message": format!(
                "rate limit of the {tier} tier exceeded; retry in {retry_after_ms} ms"
            ),
            "tier": tier.as_str(),
            "retry_after_ms": retry_after_ms,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::bucket::{decide, BucketState};
    use crate::limits::tier::TierConfig;

    fn header<'a>(headers: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    fn free() -> Limits {
        TierConfig::default().limits_for(Tier::Free, None)
    }

    #[test]
    fn admitted_headers_follow_the_draft_form() {
        let d = Decision::Admitted {
            remaining: 3,
            reset_ms: 41_001,
        };
        let h = rate_limit_headers(&free(), Tier::Free, &d);
        assert_eq!(
            h,
            vec![
                ("RateLimit-Policy", "\"free\";q=10;w=60".to_string()),
                ("X-RateLimit-Limit", "10".to_string()),
                ("RateLimit", "\"free\";r=3;t=42".to_string()),
                ("X-RateLimit-Remaining", "3".to_string()),
                ("X-RateLimit-Reset", "42".to_string()),
            ]
        );
    }

    #[test]
    fn denial_adds_retry_after_rounded_up() {
        let d = Decision::Denied {
            retry_at_ms: 10_001,
            retry_after_ms: 1_001,
            reset_ms: 60_000,
        };
        let h = rate_limit_headers(&free(), Tier::Free, &d);
        assert_eq!(header(&h, "Retry-After"), Some("2"));
        assert_eq!(header(&h, "retry-after-ms"), Some("1001"));
        assert_eq!(header(&h, "X-RateLimit-Remaining"), Some("0"));
        assert_eq!(header(&h, "RateLimit"), Some("\"free\";r=0;t=60"));
        assert_eq!(h.len(), 7);
    }

    #[test]
    fn admitted_has_no_retry_after() {
        let d = Decision::Admitted {
            remaining: 0,
            reset_ms: 0,
        };
        let h = rate_limit_headers(&free(), Tier::Free, &d);
        assert_eq!(header(&h, "Retry-After"), None);
        assert_eq!(header(&h, "retry-after-ms"), None);
        assert_eq!(header(&h, "X-RateLimit-Reset"), Some("0"));
    }

    #[test]
    fn ceil_secs_never_undershoots() {
        assert_eq!(ceil_secs(0), 0);
        assert_eq!(ceil_secs(1), 1);
        assert_eq!(ceil_secs(999), 1);
        assert_eq!(ceil_secs(1_000), 1);
        assert_eq!(ceil_secs(1_001), 2);
        assert_eq!(ceil_secs(u64::MAX), u64::MAX / 1000 + 1);
        for ms in 0..5_000u64 {
            assert!(ceil_secs(ms) * 1000 >= ms);
            assert!(ceil_secs(ms) * 1000 < ms + 1000);
        }
    }

    #[test]
    fn retry_after_from_a_real_denial_is_safe_to_obey() {
        let l = free();
        let (s, _) = decide(&BucketState::full(&l, 0), 0, 10, &l).unwrap();
        let (_, d) = decide(&s, 2_345, 1, &l).unwrap();
        let h = rate_limit_headers(&l, Tier::Free, &d);
        assert_eq!(header(&h, "retry-after-ms"), Some("3655"));
        assert_eq!(header(&h, "Retry-After"), Some("4"));
        // Waiting Retry-After seconds gets the request through.
        assert!(decide(&s, 2_345 + 4_000, 1, &l).unwrap().1.is_admitted());
    }

    #[test]
    fn window_is_time_to_refill_from_empty() {
        let l = Limits::new(5, 2.0).unwrap();
        let d = Decision::Admitted {
            remaining: 5,
            reset_ms: 0,
        };
        let h = rate_limit_headers(&l, Tier::Enterprise, &d);
        assert_eq!(
            header(&h, "RateLimit-Policy"),
            Some("\"enterprise\";q=5;w=3")
        );
    }

    #[test]
    fn body_is_the_contract_envelope() {
        let body = rate_limited_body(Tier::Free, 1234);
        assert_eq!(body["error"]["code"], "rate_limited");
        assert_eq!(body["error"]["tier"], "free");
        assert_eq!(body["error"]["retry_after_ms"], 1234);
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1234 ms"));
        assert_eq!(body["error"].as_object().unwrap().len(), 4);
    }
}
