//! Rate-limit response headers and the 429 bodies.
//!
//! - `RateLimit-Policy` and `RateLimit` follow **draft-ietf-httpapi-ratelimit-headers-11**
//!   (23 May 2026, the latest revision; its syntax is that of -09 and -10): each a Structured
//!   Fields List (RFC 9651) of items whose value is a String naming a quota policy, with
//!   Integer parameters: `RateLimit-Policy: "free";q=10;w=60` (`q` the quota, `w` the window in
//!   seconds) and `RateLimit: "free";r=3;t=42` (`r` the available quota, `t` the effective
//!   window in seconds). Every limit a call passes is one policy (see [`policy_name`]). Token
//!   policies carry no `qu` parameter: the draft's registry knows only `requests`,
//!   `content-bytes` and `concurrent-requests`, and an unregistered unit could make a strict
//!   client drop the whole field; their names say their unit.
//! - `X-RateLimit-Limit`/`-Remaining`/`-Reset`: the key's call bucket, as before.
//! - On a denial, `Retry-After` (whole seconds, rounded up) and `retry-after-ms`; the denied
//!   policy's `t` is the same wait, since the draft wants `Retry-After` no earlier than the end
//!   of the effective window (and `r=0` holds exactly that long).
//! - The drop-in endpoints also carry their provider's own family ([`Dialect`]): Anthropic's
//!   `anthropic-ratelimit-{requests,input-tokens,output-tokens,tokens}-{limit,remaining,reset}`
//!   with RFC 3339 resets (the time the bucket is full again, in whole seconds rounded up, as
//!   Anthropic sends them: `2026-05-23T12:00:05Z`), and OpenAI's
//!   `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` with resets in OpenAI's duration
//!   format (Go's: `6m0s`, `1.5s`, `120ms`).

use serde_json::{json, Value};

use crate::error::ApiError;
use crate::limits::bucket::Decision;
use crate::limits::reservation::{LimitName, Reading};
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
/// `RateLimit: "free";r=3;t=42` (r = tokens left, t = whole seconds until full, rounded up;
/// on a denial, until the retry time).
/// `X-RateLimit-Limit` is the burst, `X-RateLimit-Remaining` the tokens left and
/// `X-RateLimit-Reset` the seconds until full. A denial adds `Retry-After` (whole seconds,
/// rounded up) and `retry-after-ms`.
pub fn rate_limit_headers(
    limits: &Limits,
    tier: Tier,
    decision: &Decision,
) -> Vec<(&'static str, String)> {
    named_headers(limits, tier.as_str(), decision)
}

/// [`rate_limit_headers`] of the isolate's limiter of calls that reach no provider, whose quota
/// is a multiple of the tier's: its policy is named `"<tier>-unmetered"`, since one name in
/// the draft's headers stands for one quota.
pub fn unmetered_headers(
    limits: &Limits,
    tier: Tier,
    decision: &Decision,
) -> Vec<(&'static str, String)> {
    named_headers(limits, &format!("{}-unmetered", tier.as_str()), decision)
}

fn named_headers(limits: &Limits, name: &str, decision: &Decision) -> Vec<(&'static str, String)> {
    let remaining = decision.remaining();
    let reset_s = ceil_secs(decision.reset_ms());
    // On a denial the effective window is the wait: `Retry-After` is never earlier than its end.
    let t = match decision {
        Decision::Denied { retry_after_ms, .. } => ceil_secs(*retry_after_ms),
        Decision::Admitted { .. } => reset_s,
    };
    let mut headers = named_policy_headers(limits, name);
    headers.extend([
        ("RateLimit", format!("\"{name}\";r={remaining};t={t}")),
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
    named_policy_headers(limits, tier.as_str())
}

fn named_policy_headers(limits: &Limits, name: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "RateLimit-Policy",
            format!("\"{name}\";q={};w={}", limits.burst, limits.window_secs()),
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

// ---- every limit of a call: the key's and the account's, calls and tokens ----

/// Whose limit a reading is: the key's own, or its account's, shared by all its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    Key,
    Account,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Key => "key",
            Scope::Account => "account",
        }
    }
}

/// One limit as a response reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitState {
    pub limit: LimitName,
    pub scope: Scope,
    /// The quota: the bucket's capacity.
    pub capacity: u64,
    /// Seconds to refill from empty (the draft's `w`).
    pub window_secs: u64,
    /// The bucket as this call left it; `None` when it was not read (a cache hit takes nothing
    /// and reads no bucket): only the policy is then reported.
    pub now: Option<Level>,
}

/// A bucket's level as a response reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    pub remaining: u64,
    /// Milliseconds, rounded up, until the bucket is full.
    pub reset_ms: u64,
}

impl LimitState {
    /// The key's call bucket under `limits`, as `decision` left it.
    pub fn key_calls(limits: &Limits, decision: Option<&Decision>) -> LimitState {
        LimitState {
            limit: LimitName::Requests,
            scope: Scope::Key,
            capacity: u64::from(limits.burst),
            window_secs: limits.window_secs(),
            now: decision.map(|d| Level {
                remaining: u64::from(d.remaining()),
                reset_ms: d.reset_ms(),
            }),
        }
    }

    /// A per-minute bucket of `scope`, as a reservation left it.
    pub fn minute(scope: Scope, reading: &Reading) -> LimitState {
        LimitState {
            limit: reading.limit,
            scope,
            capacity: reading.capacity,
            window_secs: 60,
            now: Some(Level {
                remaining: reading.remaining,
                reset_ms: reading.reset_ms,
            }),
        }
    }

    /// A per-minute limit of `scope` with its policy only (a cache hit).
    pub fn minute_policy(scope: Scope, limit: LimitName, per_minute: u64) -> LimitState {
        LimitState {
            limit,
            scope,
            capacity: per_minute,
            window_secs: 60,
            now: None,
        }
    }

    /// How full the bucket is, compared exactly: `remaining / capacity` as a pair.
    fn fullness(&self) -> Option<(u128, u128)> {
        self.now
            .map(|n| (u128::from(n.remaining), u128::from(self.capacity.max(1))))
    }
}

/// The limit that refused a call and how long to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denial {
    pub limit: LimitName,
    pub scope: Scope,
    pub retry_after_ms: u64,
}

/// The draft's policy name of a limit: the tier's name for the key's calls (as before token
/// limits, so `"free";q=10;w=60` still names the key's call bucket), else the tier, the scope
/// and the unit: `"free-input-tokens"`, `"free-account-requests"`, `"pro-account-output-tokens"`.
pub fn policy_name(tier: Tier, scope: Scope, limit: LimitName) -> String {
    let unit = match limit {
        LimitName::Requests => "requests",
        LimitName::InputTokens => "input-tokens",
        LimitName::OutputTokens => "output-tokens",
    };
    match (scope, limit) {
        (Scope::Key, LimitName::Requests) => tier.as_str().to_string(),
        (Scope::Key, _) => format!("{tier}-{unit}"),
        (Scope::Account, _) => format!("{tier}-account-{unit}"),
    }
}

/// Which family of provider headers a response carries besides the gateway's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `/v1/ask` and everything else: the draft's fields and `X-RateLimit-*` only.
    Gateway,
    /// `/v1/messages`: `anthropic-ratelimit-*`.
    Anthropic,
    /// `/v1/chat/completions`: `x-ratelimit-*-{requests,tokens}`.
    OpenAi,
}

/// Every rate-limit header of a response: `RateLimit-Policy` (every limit in `states`, the
/// key's calls first), `RateLimit` (those that were read), `X-RateLimit-*` (the key's calls),
/// on a denial `Retry-After` and `retry-after-ms`, and `dialect`'s provider family. `now_ms`
/// is the clock the Anthropic resets are dated from.
pub fn response_headers(
    dialect: Dialect,
    tier: Tier,
    now_ms: u64,
    states: &[LimitState],
    denial: Option<&Denial>,
) -> Vec<(&'static str, String)> {
    let mut ordered: Vec<&LimitState> = states.iter().collect();
    ordered.sort_by_key(|s| (s.scope, s.limit));
    let denied = |s: &LimitState| denial.filter(|d| d.limit == s.limit && d.scope == s.scope);
    let policies: Vec<String> = ordered
        .iter()
        .map(|s| {
            format!(
                "\"{}\";q={};w={}",
                policy_name(tier, s.scope, s.limit),
                s.capacity,
                s.window_secs
            )
        })
        .collect();
    let current: Vec<String> = ordered
        .iter()
        .filter_map(|s| {
            let n = s.now?;
            let t = match denied(s) {
                Some(d) => ceil_secs(d.retry_after_ms),
                None => ceil_secs(n.reset_ms),
            };
            Some(format!(
                "\"{}\";r={};t={t}",
                policy_name(tier, s.scope, s.limit),
                n.remaining
            ))
        })
        .collect();
    let mut headers = Vec::new();
    if !policies.is_empty() {
        headers.push(("RateLimit-Policy", policies.join(", ")));
    }
    if !current.is_empty() {
        headers.push(("RateLimit", current.join(", ")));
    }
    if let Some(key) = ordered
        .iter()
        .find(|s| s.scope == Scope::Key && s.limit == LimitName::Requests)
    {
        headers.push(("X-RateLimit-Limit", key.capacity.to_string()));
        if let Some(n) = key.now {
            headers.push(("X-RateLimit-Remaining", n.remaining.to_string()));
            headers.push(("X-RateLimit-Reset", ceil_secs(n.reset_ms).to_string()));
        }
    }
    if let Some(d) = denial {
        headers.push(("Retry-After", ceil_secs(d.retry_after_ms).to_string()));
        headers.push(("retry-after-ms", d.retry_after_ms.to_string()));
    }
    match dialect {
        Dialect::Gateway => {}
        Dialect::Anthropic => headers.extend(anthropic_headers(now_ms, states, denial)),
        Dialect::OpenAi => headers.extend(openai_headers(states, denial)),
    }
    headers
}

/// The state that speaks for `limits` in a provider family: the denied one if a denial names
/// one of them, else the one with the least of its capacity left (the key's on a tie, then
/// input before output); when none was read, the smallest capacity.
fn binding<'a>(
    states: &'a [LimitState],
    limits: &[LimitName],
    denial: Option<&Denial>,
) -> Option<&'a LimitState> {
    let mut candidates: Vec<&LimitState> = states
        .iter()
        .filter(|s| limits.contains(&s.limit))
        .collect();
    candidates.sort_by_key(|s| (s.scope, s.limit));
    if let Some(d) = denial {
        if let Some(s) = candidates
            .iter()
            .find(|s| s.limit == d.limit && s.scope == d.scope)
        {
            return Some(s);
        }
    }
    candidates.into_iter().reduce(|best, s| {
        let better = match (s.fullness(), best.fullness()) {
            // s has less left when s.r / s.c < b.r / b.c.
            (Some((sr, sc)), Some((br, bc))) => sr * bc < br * sc,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => s.capacity < best.capacity,
        };
        if better {
            s
        } else {
            best
        }
    })
}

/// `(limit, (remaining, reset_ms) when read)` of a binding state.
fn family_values(s: &LimitState) -> (u64, Option<(u64, u64)>) {
    (s.capacity, s.now.map(|n| (n.remaining, n.reset_ms)))
}

/// Anthropic's family: `anthropic-ratelimit-requests-*`, `-input-tokens-*`, `-output-tokens-*`
/// and `-tokens-*` (the more constrained of input and output), each `-limit`, and when the
/// bucket was read `-remaining` and `-reset` (RFC 3339, when it is full again).
pub fn anthropic_headers(
    now_ms: u64,
    states: &[LimitState],
    denial: Option<&Denial>,
) -> Vec<(&'static str, String)> {
    const FAMILIES: [(&[LimitName], [&str; 3]); 4] = [
        (
            &[LimitName::Requests],
            [
                "anthropic-ratelimit-requests-limit",
                "anthropic-ratelimit-requests-remaining",
                "anthropic-ratelimit-requests-reset",
            ],
        ),
        (
            &[LimitName::InputTokens],
            [
                "anthropic-ratelimit-input-tokens-limit",
                "anthropic-ratelimit-input-tokens-remaining",
                "anthropic-ratelimit-input-tokens-reset",
            ],
        ),
        (
            &[LimitName::OutputTokens],
            [
                "anthropic-ratelimit-output-tokens-limit",
                "anthropic-ratelimit-output-tokens-remaining",
                "anthropic-ratelimit-output-tokens-reset",
            ],
        ),
        (
            &[LimitName::InputTokens, LimitName::OutputTokens],
            [
                "anthropic-ratelimit-tokens-limit",
                "anthropic-ratelimit-tokens-remaining",
                "anthropic-ratelimit-tokens-reset",
            ],
        ),
    ];
    let mut headers = Vec::new();
    for (limits, [limit_h, remaining_h, reset_h]) in FAMILIES {
        let Some(s) = binding(states, limits, denial) else {
            continue;
        };
        let (limit, now) = family_values(s);
        headers.push((limit_h, limit.to_string()));
        if let Some((remaining, reset_ms)) = now {
            headers.push((remaining_h, remaining.to_string()));
            // The instant the bucket is full, rounded up to its second: never before it.
            let full_at_s = now_ms.saturating_add(reset_ms).div_ceil(1000);
            headers.push((reset_h, rfc3339_secs(full_at_s.saturating_mul(1000))));
        }
    }
    headers
}

/// OpenAI's family: `x-ratelimit-{limit,remaining,reset}-requests` and `-tokens` (the more
/// constrained of input and output), resets as OpenAI's durations ([`openai_duration`]);
/// `-limit-*` only when the bucket was not read.
pub fn openai_headers(
    states: &[LimitState],
    denial: Option<&Denial>,
) -> Vec<(&'static str, String)> {
    const FAMILIES: [(&[LimitName], [&str; 3]); 2] = [
        (
            &[LimitName::Requests],
            [
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
            ],
        ),
        (
            &[LimitName::InputTokens, LimitName::OutputTokens],
            [
                "x-ratelimit-limit-tokens",
                "x-ratelimit-remaining-tokens",
                "x-ratelimit-reset-tokens",
            ],
        ),
    ];
    let mut headers = Vec::new();
    for (limits, [limit_h, remaining_h, reset_h]) in FAMILIES {
        let Some(s) = binding(states, limits, denial) else {
            continue;
        };
        let (limit, now) = family_values(s);
        headers.push((limit_h, limit.to_string()));
        if let Some((remaining, reset_ms)) = now {
            headers.push((remaining_h, remaining.to_string()));
            headers.push((reset_h, openai_duration(reset_ms)));
        }
    }
    headers
}

/// A duration in OpenAI's rate-limit header format, which is Go's `time.Duration` text of a
/// whole number of milliseconds: `0s`, `120ms`, `1s`, `1.5s`, `6m0s`, `1h2m3.004s`. Below a
/// second it is in milliseconds; from a second on, hours and minutes when present, then seconds
/// with the fraction's trailing zeros dropped (what Go's `time.ParseDuration` reads back).
pub fn openai_duration(ms: u64) -> String {
    if ms == 0 {
        return "0s".to_string();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, frac) = (rest / 1000, rest % 1000);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&s.to_string());
    if frac > 0 {
        let digits = format!("{frac:03}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out.push('s');
    out
}

/// Milliseconds since the epoch as RFC 3339 in UTC, to the second (truncated; callers round
/// what they date up first): `2026-05-23T12:00:05Z`.
pub fn rfc3339_secs(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, mo, d) = civil_from_days(days);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days >= 0).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// The 429 for a call a limit refused: `rate_limited`, naming the limit (`requests`,
/// `input_tokens`, `output_tokens`) and whose it is (`key`, `account`), with the exact wait,
/// and every rate-limit header of `dialect`. The body keeps the contract's fields
/// (`code`, `tier`, `retry_after_ms`).
pub fn limited_error(
    dialect: Dialect,
    tier: Tier,
    now_ms: u64,
    states: &[LimitState],
    denial: &Denial,
) -> ApiError {
    let what = match denial.limit {
        LimitName::Requests => "calls",
        LimitName::InputTokens => "input tokens",
        LimitName::OutputTokens => "output tokens",
    };
    let whose = match denial.scope {
        Scope::Key => "this key's",
        Scope::Account => "this account's",
    };
    let mut e = ApiError::new(
        429,
        "rate_limited",
        format!(
            "{whose} {what} per minute of the {tier} tier are used up; retry in {} ms",
            denial.retry_after_ms
        ),
    )
    .with("tier", tier.as_str())
    .with("limit", denial.limit.as_str())
    .with("scope", denial.scope.as_str())
    .with("retry_after_ms", denial.retry_after_ms);
    e.headers = response_headers(dialect, tier, now_ms, states, Some(denial));
    e
}

/// The 429 for a call whose worst case exceeds a bucket's capacity: `request_too_large`,
/// naming the limit, its capacity and what the call needs, with no retry time (waiting will
/// not help: a smaller call, e.g. a lower `max_tokens`, would).
pub fn too_large_error(limit: LimitName, scope: Scope, capacity: u64, needed: u64) -> ApiError {
    let what = match limit {
        LimitName::Requests => "calls",
        LimitName::InputTokens => "input tokens",
        LimitName::OutputTokens => "output tokens",
    };
    ApiError::new(
        429,
        "request_too_large",
        format!(
            "this call needs {needed} {what}, more than the {} limit of {capacity} per minute; \
             it can never be admitted as it is (send less, or lower max_tokens)",
            scope.as_str()
        ),
    )
    .with("limit", limit.as_str())
    .with("scope", scope.as_str())
    .with("capacity", capacity)
    .with("needed", needed)
    .never_retried()
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
    fn the_unmetered_limiter_names_its_own_policy() {
        let limits = Limits {
            burst: 100,
            per_second: 100.0 / 60.0,
        };
        let denied = Decision::Denied {
            retry_at_ms: 600,
            retry_after_ms: 600,
            reset_ms: 60_000,
        };
        let h = unmetered_headers(&limits, Tier::Free, &denied);
        let get = |n: &str| {
            h.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(get("RateLimit-Policy"), "\"free-unmetered\";q=100;w=60");
        assert!(
            get("RateLimit").starts_with("\"free-unmetered\";r=0;"),
            "{h:?}"
        );
        // The metered policy keeps the tier's own name.
        let h = rate_limit_headers(&limits, Tier::Free, &denied);
        assert!(h
            .iter()
            .any(|(k, v)| *k == "RateLimit-Policy" && v.starts_with("\"free\";")));
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
        // r=0 holds until the retry time, which Retry-After is not earlier than (draft -11).
        assert_eq!(header(&h, "RateLimit"), Some("\"free\";r=0;t=2"));
        assert_eq!(header(&h, "X-RateLimit-Reset"), Some("60"));
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

    fn states() -> Vec<LimitState> {
        let key_calls = LimitState::key_calls(
            &free(),
            Some(&Decision::Admitted {
                remaining: 7,
                reset_ms: 18_000,
            }),
        );
        let r = |limit, capacity, remaining, reset_ms| Reading {
            limit,
            capacity,
            remaining,
            reset_ms,
        };
        vec![
            // Out of order on purpose: the headers order them.
            LimitState::minute(Scope::Account, &r(LimitName::Requests, 20, 15, 15_000)),
            LimitState::minute(
                Scope::Key,
                &r(LimitName::OutputTokens, 4_096, 1_024, 45_000),
            ),
            key_calls,
            LimitState::minute(
                Scope::Key,
                &r(LimitName::InputTokens, 20_000, 19_000, 3_000),
            ),
        ]
    }

    #[test]
    fn every_limit_is_one_policy_of_the_draft_lists_the_key_calls_first() {
        let h = response_headers(Dialect::Gateway, Tier::Free, 0, &states(), None);
        assert_eq!(
            header(&h, "RateLimit-Policy"),
            Some(
                "\"free\";q=10;w=60, \"free-input-tokens\";q=20000;w=60, \
                 \"free-output-tokens\";q=4096;w=60, \"free-account-requests\";q=20;w=60"
            )
        );
        assert_eq!(
            header(&h, "RateLimit"),
            Some(
                "\"free\";r=7;t=18, \"free-input-tokens\";r=19000;t=3, \
                 \"free-output-tokens\";r=1024;t=45, \"free-account-requests\";r=15;t=15"
            )
        );
        assert_eq!(header(&h, "X-RateLimit-Limit"), Some("10"));
        assert_eq!(header(&h, "X-RateLimit-Remaining"), Some("7"));
        assert_eq!(header(&h, "X-RateLimit-Reset"), Some("18"));
        assert_eq!(header(&h, "Retry-After"), None);
        assert!(h
            .iter()
            .all(|(n, _)| !n.starts_with("anthropic") && !n.contains("-requests")));
        // The key's call policy alone is what policy_headers always said.
        let only = response_headers(
            Dialect::Gateway,
            Tier::Free,
            0,
            &[LimitState::key_calls(&free(), None)],
            None,
        );
        assert_eq!(only, policy_headers(&free(), Tier::Free));
    }

    #[test]
    fn a_denial_sets_retry_after_and_the_denied_policys_window_to_the_wait() {
        let d = Denial {
            limit: LimitName::InputTokens,
            scope: Scope::Key,
            retry_after_ms: 14_001,
        };
        let h = response_headers(Dialect::Gateway, Tier::Free, 0, &states(), Some(&d));
        assert_eq!(header(&h, "Retry-After"), Some("15"));
        assert_eq!(header(&h, "retry-after-ms"), Some("14001"));
        assert!(header(&h, "RateLimit")
            .unwrap()
            .contains("\"free-input-tokens\";r=19000;t=15,"));
        let e = limited_error(Dialect::Gateway, Tier::Free, 0, &states(), &d);
        assert_eq!(e.status, 429);
        let b = e.body();
        assert_eq!(b["error"]["code"], "rate_limited");
        assert_eq!(b["error"]["tier"], "free");
        assert_eq!(b["error"]["limit"], "input_tokens");
        assert_eq!(b["error"]["scope"], "key");
        assert_eq!(b["error"]["retry_after_ms"], 14_001);
        assert_eq!(header(&e.headers, "Retry-After"), Some("15"));
    }

    #[test]
    fn too_large_says_so_and_carries_no_retry_time() {
        let e = too_large_error(LimitName::OutputTokens, Scope::Key, 4_096, 8_192);
        assert_eq!((e.status, e.code), (429, "request_too_large"));
        let b = e.body();
        assert_eq!(b["error"]["limit"], "output_tokens");
        assert_eq!(b["error"]["capacity"], 4_096);
        assert_eq!(b["error"]["needed"], 8_192);
        assert!(b["error"].get("retry_after_ms").is_none());
        assert_eq!(
            e.headers,
            vec![("x-should-retry", "false".to_string())],
            "no Retry-After: waiting will not help"
        );
        assert!(b["error"]["message"].as_str().unwrap().contains("never"));
    }

    #[test]
    fn an_anthropic_reset_is_never_before_the_bucket_is_full() {
        // 2026-05-23T12:00:00.900Z: a bucket full in 1 s is full at 12:00:01.900, so its reset
        // says 12:00:02, not 12:00:01 (the interval rounded up, then the instant truncated).
        let now = 1_779_537_600_900;
        let key = LimitState::key_calls(
            &free(),
            Some(&Decision::Admitted {
                remaining: 9,
                reset_ms: 1_000,
            }),
        );
        let h = response_headers(
            Dialect::Anthropic,
            Tier::Free,
            now,
            std::slice::from_ref(&key),
            None,
        );
        assert_eq!(
            header(&h, "anthropic-ratelimit-requests-reset"),
            Some("2026-05-23T12:00:02Z")
        );
        // On a whole second it is that second.
        let h = response_headers(
            Dialect::Anthropic,
            Tier::Free,
            now - 900,
            std::slice::from_ref(&key),
            None,
        );
        assert_eq!(
            header(&h, "anthropic-ratelimit-requests-reset"),
            Some("2026-05-23T12:00:01Z")
        );
    }

    #[test]
    fn anthropic_headers_name_each_limit_with_rfc3339_resets() {
        // 2026-05-23T12:00:00Z.
        let now = 1_779_537_600_000;
        let h = response_headers(Dialect::Anthropic, Tier::Free, now, &states(), None);
        // Requests: the account has 15 of 20 left (75 %), the key 7 of 10 (70 %): the key's.
        assert_eq!(header(&h, "anthropic-ratelimit-requests-limit"), Some("10"));
        assert_eq!(
            header(&h, "anthropic-ratelimit-requests-remaining"),
            Some("7")
        );
        assert_eq!(
            header(&h, "anthropic-ratelimit-requests-reset"),
            Some("2026-05-23T12:00:18Z")
        );
        assert_eq!(
            header(&h, "anthropic-ratelimit-input-tokens-limit"),
            Some("20000")
        );
        assert_eq!(
            header(&h, "anthropic-ratelimit-input-tokens-remaining"),
            Some("19000")
        );
        assert_eq!(
            header(&h, "anthropic-ratelimit-input-tokens-reset"),
            Some("2026-05-23T12:00:03Z")
        );
        assert_eq!(
            header(&h, "anthropic-ratelimit-output-tokens-limit"),
            Some("4096")
        );
        assert_eq!(
            header(&h, "anthropic-ratelimit-output-tokens-remaining"),
            Some("1024")
        );
        assert_eq!(
            header(&h, "anthropic-ratelimit-output-tokens-reset"),
            Some("2026-05-23T12:00:45Z")
        );
        // Tokens: output (25 % left) is more constrained than input (95 %).
        assert_eq!(header(&h, "anthropic-ratelimit-tokens-limit"), Some("4096"));
        assert_eq!(
            header(&h, "anthropic-ratelimit-tokens-remaining"),
            Some("1024")
        );
        // The draft's fields are there too.
        assert!(header(&h, "RateLimit-Policy").is_some());
    }

    #[test]
    fn a_denied_limit_speaks_for_its_family() {
        let d = Denial {
            limit: LimitName::Requests,
            scope: Scope::Account,
            retry_after_ms: 3_000,
        };
        let h = response_headers(Dialect::Anthropic, Tier::Free, 0, &states(), Some(&d));
        assert_eq!(header(&h, "anthropic-ratelimit-requests-limit"), Some("20"));
        assert_eq!(
            header(&h, "anthropic-ratelimit-requests-remaining"),
            Some("15")
        );
        assert_eq!(
            header(&h, "retry-after"),
            None,
            "one Retry-After, in its usual case"
        );
        assert_eq!(header(&h, "Retry-After"), Some("3"));
        let h = response_headers(Dialect::OpenAi, Tier::Free, 0, &states(), Some(&d));
        assert_eq!(header(&h, "x-ratelimit-limit-requests"), Some("20"));
    }

    #[test]
    fn openai_headers_use_openais_durations() {
        let h = response_headers(Dialect::OpenAi, Tier::Free, 0, &states(), None);
        assert_eq!(header(&h, "x-ratelimit-limit-requests"), Some("10"));
        assert_eq!(header(&h, "x-ratelimit-remaining-requests"), Some("7"));
        assert_eq!(header(&h, "x-ratelimit-reset-requests"), Some("18s"));
        assert_eq!(header(&h, "x-ratelimit-limit-tokens"), Some("4096"));
        assert_eq!(header(&h, "x-ratelimit-remaining-tokens"), Some("1024"));
        assert_eq!(header(&h, "x-ratelimit-reset-tokens"), Some("45s"));
        assert!(h.iter().all(|(n, _)| !n.starts_with("anthropic")));
    }

    #[test]
    fn a_hit_reports_the_policies_and_limits_only() {
        let hit = vec![
            LimitState::key_calls(&free(), None),
            LimitState::minute_policy(Scope::Key, LimitName::InputTokens, 20_000),
            LimitState::minute_policy(Scope::Key, LimitName::OutputTokens, 4_096),
        ];
        for dialect in [Dialect::Gateway, Dialect::Anthropic, Dialect::OpenAi] {
            let h = response_headers(dialect, Tier::Free, 0, &hit, None);
            assert!(header(&h, "RateLimit-Policy").is_some());
            for (name, _) in &h {
                assert!(
                    !name.contains("emaining") && !name.contains("eset") && *name != "RateLimit",
                    "{name} needs a bucket reading"
                );
            }
        }
        let h = response_headers(Dialect::OpenAi, Tier::Free, 0, &hit, None);
        assert_eq!(header(&h, "x-ratelimit-limit-tokens"), Some("4096"));
        let h = response_headers(Dialect::Anthropic, Tier::Free, 0, &hit, None);
        assert_eq!(
            header(&h, "anthropic-ratelimit-input-tokens-limit"),
            Some("20000")
        );
    }

    #[test]
    fn openai_durations_read_back_as_go_durations() {
        for (ms, text) in [
            (0, "0s"),
            (1, "1ms"),
            (120, "120ms"),
            (999, "999ms"),
            (1_000, "1s"),
            (1_500, "1.5s"),
            (7_660, "7.66s"),
            (8_640, "8.64s"),
            (60_000, "1m0s"),
            (360_000, "6m0s"),
            (86_400, "1m26.4s"),
            (3_600_000, "1h0m0s"),
            (3_723_004, "1h2m3.004s"),
        ] {
            assert_eq!(openai_duration(ms), text, "{ms}");
        }
    }

    #[test]
    fn rfc3339_dates_are_utc_to_the_second() {
        assert_eq!(rfc3339_secs(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_secs(999), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_secs(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_secs(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_secs(4_107_542_399_000), "2100-02-28T23:59:59Z");
        assert_eq!(rfc3339_secs(4_107_542_400_000), "2100-03-01T00:00:00Z");
    }

    #[test]
    fn policy_names_keep_the_tier_for_the_key_calls() {
        assert_eq!(
            policy_name(Tier::Pro, Scope::Key, LimitName::Requests),
            "pro"
        );
        assert_eq!(
            policy_name(Tier::Pro, Scope::Key, LimitName::OutputTokens),
            "pro-output-tokens"
        );
        assert_eq!(
            policy_name(Tier::Scale, Scope::Account, LimitName::InputTokens),
            "scale-account-input-tokens"
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
