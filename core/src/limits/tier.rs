//! Account tiers and what each allows: a key's call bucket (burst and refill rate), its input
//! and output tokens per minute, the account-wide calls and tokens per minute, and the
//! `max_tokens` cap, with built-in defaults that a JSON config (e.g. from an env var) overrides.

use serde::{Deserialize, Serialize};

/// An account's tier. The wire names are lowercase (`"free"`, `"pro"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Free,
    Pro,
    Scale,
    Enterprise,
}

impl Tier {
    pub const ALL: [Tier; 4] = [Tier::Free, Tier::Pro, Tier::Scale, Tier::Enterprise];

    /// The wire name used in requests, responses, headers and storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Free => "free",
            Tier::Pro => "pro",
            Tier::Scale => "scale",
            Tier::Enterprise => "enterprise",
        }
    }

    /// Parses a wire name exactly (case-sensitive, like `Provider::parse`).
    pub fn parse(name: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Largest accepted bucket capacity.
pub const MAX_BURST: u32 = 1_000_000;
/// Largest accepted refill rate, tokens per second.
pub const MAX_PER_SECOND: f64 = 100_000.0;
/// Slowest refill: one token a day. A slower one's refill interval in nanoseconds would pass
/// 2^53, which Durable Object storage (JS numbers) cannot hold exactly, and every write of
/// the bucket would fail.
pub const MIN_PER_SECOND: f64 = 1.0 / 86_400.0;
/// Largest accepted per-tier `max_tokens` cap.
pub const MAX_MAX_TOKENS: u32 = 1_000_000;

const NS_PER_S: u128 = 1_000_000_000;

/// Token-bucket limits: `burst` tokens of capacity, refilled at `per_second` tokens a second.
///
/// Build with [`Limits::new`] (or deserialize, which validates the same way). The fields are
/// public for reading; a value built by hand that breaks the bounds is not trusted by the
/// bucket: a bad rate refills never, a zero burst admits nothing that costs anything.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawLimits")]
pub struct Limits {
    pub burst: u32,
    pub per_second: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    burst: u32,
    per_second: f64,
}

impl TryFrom<RawLimits> for Limits {
    type Error = LimitsError;
    fn try_from(raw: RawLimits) -> Result<Limits, LimitsError> {
        Limits::new(raw.burst, raw.per_second)
    }
}

/// Why a pair of limits was refused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LimitsError {
    /// `burst` must be in `1..=MAX_BURST`.
    BurstOutOfRange { burst: u32 },
    /// `per_second` must be finite, above zero and at most `MAX_PER_SECOND`.
    RateOutOfRange { per_second: f64 },
}

impl std::fmt::Display for LimitsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimitsError::BurstOutOfRange { burst } => {
                write!(f, "burst must be between 1 and {MAX_BURST}, got {burst}")
            }
            LimitsError::RateOutOfRange { per_second } => write!(
                f,
                "per_second must be at least one a day ({MIN_PER_SECOND}) and at most \
                 {MAX_PER_SECOND}, got {per_second}"
            ),
        }
    }
}

impl std::error::Error for LimitsError {}

impl Limits {
    /// Validated limits: `burst` in `1..=1_000_000`, `per_second` finite, at least one a day
    /// (`MIN_PER_SECOND`) and `<= 100_000`.
    pub fn new(burst: u32, per_second: f64) -> Result<Limits, LimitsError> {
        if !(1..=MAX_BURST).contains(&burst) {
            return Err(LimitsError::BurstOutOfRange { burst });
        }
        if !(per_second.is_finite() && (MIN_PER_SECOND..=MAX_PER_SECOND).contains(&per_second)) {
            return Err(LimitsError::RateOutOfRange { per_second });
        }
        Ok(Limits { burst, per_second })
    }

    /// These limits `factor` times as wide (burst and rate), within the bounds: the limits of
    /// the calls that reach neither the cache nor a provider (`UNMETERED_FACTOR`).
    pub fn scaled(&self, factor: u32) -> Limits {
        Limits {
            burst: self.burst.saturating_mul(factor).clamp(1, MAX_BURST),
            per_second: (self.per_second * f64::from(factor)).clamp(MIN_PER_SECOND, MAX_PER_SECOND),
        }
    }

    /// Whether these limits are within the bounds [`Limits::new`] enforces.
    pub fn is_valid(&self) -> bool {
        Limits::new(self.burst, self.per_second).is_ok()
    }

    /// Nanoseconds to refill one token: `1e9 / per_second` rounded to the nearest nanosecond,
    /// at least 1. This integer is the rate the bucket enforces exactly (10/min is exactly
    /// 6_000_000_000 ns). A rate that is not finite and positive gives `u64::MAX` (fail closed).
    pub fn refill_interval_ns(&self) -> u64 {
        if !(self.per_second.is_finite() && self.per_second > 0.0) {
            return u64::MAX;
        }
        // `as` saturates: an interval beyond u64::MAX (rates below ~1 per 584 years) clamps.
        let ns = (1e9 / self.per_second).round() as u64;
        ns.max(1)
    }

    /// Seconds for an empty bucket to refill completely (the draft's window `w`), rounded up.
    pub fn window_secs(&self) -> u64 {
        let ns = u128::from(self.burst) * u128::from(self.refill_interval_ns());
        u64::try_from(ns.div_ceil(NS_PER_S)).unwrap_or(u64::MAX)
    }
}

/// Largest accepted per-minute limit (calls or tokens): a bucket's level is kept in units of
/// 1/60,000 token, so a capacity of 10^9 tokens is 6 × 10^13 units, within JavaScript's safe
/// integers (Durable Object storage), with room for as much debt again.
pub const MAX_PER_MINUTE: u64 = 1_000_000_000;

/// Per-minute limits of one scope (a key, or a whole account): each present limit is an exact
/// token bucket whose capacity is one minute's worth, refilled continuously
/// (`limits::bucket::MinuteBucket`). `None`: not limited in this scope (a key's calls are
/// limited by its call bucket, [`Limits`], not here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MinuteLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
}

impl MinuteLimits {
    /// Limits on input and output tokens only.
    pub const fn tokens(input: u64, output: u64) -> MinuteLimits {
        MinuteLimits {
            requests: None,
            input_tokens: Some(input),
            output_tokens: Some(output),
        }
    }

    /// Limits on calls, input and output tokens.
    pub const fn all(requests: u64, input: u64, output: u64) -> MinuteLimits {
        MinuteLimits {
            requests: Some(requests),
            input_tokens: Some(input),
            output_tokens: Some(output),
        }
    }

    /// Whether every present limit is in `1..=MAX_PER_MINUTE`.
    pub fn is_valid(&self) -> bool {
        [self.requests, self.input_tokens, self.output_tokens]
            .into_iter()
            .flatten()
            .all(|n| (1..=MAX_PER_MINUTE).contains(&n))
    }
}

/// An enterprise account's own limits, as the admin API sets them
/// (`PATCH /admin/accounts/:id {"tier": "enterprise", "limits": {...}}`) and the accounts row
/// stores them: the key's call bucket (`burst`, `per_second`, both required, as before) and,
/// optionally, a key's tokens per minute and the account-wide calls and tokens per minute.
/// An absent optional limit is the enterprise default (`TierConfig`), so a row stored before
/// token limits existed (`{"burst": .., "per_second": ..}`) reads as it did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawAccountLimits", into = "RawAccountLimits")]
pub struct AccountLimits {
    pub calls: Limits,
    pub key_input_tokens_per_minute: Option<u64>,
    pub key_output_tokens_per_minute: Option<u64>,
    pub account_calls_per_minute: Option<u64>,
    pub account_input_tokens_per_minute: Option<u64>,
    pub account_output_tokens_per_minute: Option<u64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccountLimits {
    burst: u32,
    per_second: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input_tokens_per_minute: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output_tokens_per_minute: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    account_calls_per_minute: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    account_input_tokens_per_minute: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    account_output_tokens_per_minute: Option<u64>,
}

/// Why an enterprise account's limits were refused.
#[derive(Debug, Clone, PartialEq)]
pub enum AccountLimitsError {
    Calls(LimitsError),
    /// A per-minute limit is outside `1..=MAX_PER_MINUTE`.
    PerMinuteOutOfRange {
        field: &'static str,
        value: u64,
    },
}

impl std::fmt::Display for AccountLimitsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccountLimitsError::Calls(e) => e.fmt(f),
            AccountLimitsError::PerMinuteOutOfRange { field, value } => write!(
                f,
                "{field} must be between 1 and {MAX_PER_MINUTE}, got {value}"
            ),
        }
    }
}

impl std::error::Error for AccountLimitsError {}

impl TryFrom<RawAccountLimits> for AccountLimits {
    type Error = AccountLimitsError;
    fn try_from(raw: RawAccountLimits) -> Result<AccountLimits, AccountLimitsError> {
        let calls = Limits::new(raw.burst, raw.per_second).map_err(AccountLimitsError::Calls)?;
        let check = |field: &'static str, v: Option<u64>| match v {
            Some(value) if !(1..=MAX_PER_MINUTE).contains(&value) => {
                Err(AccountLimitsError::PerMinuteOutOfRange { field, value })
            }
            _ => Ok(v),
        };
        Ok(AccountLimits {
            calls,
            key_input_tokens_per_minute: check(
                "input_tokens_per_minute",
                raw.input_tokens_per_minute,
            )?,
            key_output_tokens_per_minute: check(
                "output_tokens_per_minute",
                raw.output_tokens_per_minute,
            )?,
            account_calls_per_minute: check(
                "account_calls_per_minute",
                raw.account_calls_per_minute,
            )?,
            account_input_tokens_per_minute: check(
                "account_input_tokens_per_minute",
                raw.account_input_tokens_per_minute,
            )?,
            account_output_tokens_per_minute: check(
                "account_output_tokens_per_minute",
                raw.account_output_tokens_per_minute,
            )?,
        })
    }
}

impl From<AccountLimits> for RawAccountLimits {
    fn from(a: AccountLimits) -> RawAccountLimits {
        RawAccountLimits {
            burst: a.calls.burst,
            per_second: a.calls.per_second,
            input_tokens_per_minute: a.key_input_tokens_per_minute,
            output_tokens_per_minute: a.key_output_tokens_per_minute,
            account_calls_per_minute: a.account_calls_per_minute,
            account_input_tokens_per_minute: a.account_input_tokens_per_minute,
            account_output_tokens_per_minute: a.account_output_tokens_per_minute,
        }
    }
}

impl AccountLimits {
    /// Only the call bucket's limits (every per-minute limit the enterprise default).
    pub fn calls_only(calls: Limits) -> AccountLimits {
        AccountLimits {
            calls,
            key_input_tokens_per_minute: None,
            key_output_tokens_per_minute: None,
            account_calls_per_minute: None,
            account_input_tokens_per_minute: None,
            account_output_tokens_per_minute: None,
        }
    }
}

/// What one tier allows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TierSettings {
    pub limits: Limits,
    pub max_tokens: u32,
    /// Calls an account may have in flight at once (open credit reservations).
    pub max_in_flight: u32,
    /// A key's input and output tokens per minute.
    pub key_tokens: KeyTokens,
    /// The whole account's calls, input and output tokens per minute, across its keys.
    pub account: AccountWide,
}

/// A key's tokens per minute: input and output, each its own bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyTokens {
    pub input_per_minute: u64,
    pub output_per_minute: u64,
}

impl KeyTokens {
    pub fn minute_limits(&self) -> MinuteLimits {
        MinuteLimits::tokens(self.input_per_minute, self.output_per_minute)
    }
}

/// An account's calls and tokens per minute, across all its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountWide {
    pub calls_per_minute: u64,
    pub input_per_minute: u64,
    pub output_per_minute: u64,
}

impl AccountWide {
    pub fn minute_limits(&self) -> MinuteLimits {
        MinuteLimits::all(
            self.calls_per_minute,
            self.input_per_minute,
            self.output_per_minute,
        )
    }
}

/// The limits and `max_tokens` caps of every tier.
///
/// Defaults: free 10 burst, 10/min, 1024 tokens, 4 calls in flight; pro 60 burst, 1/s, 4096,
/// 32 in flight; scale 600 burst, 10/s, 8192, 256 in flight; enterprise 16384 tokens, 1024 in
/// flight and no default limits: enterprise accounts carry their own limits, and fall back to
/// scale's when they have none.
///
/// Tokens per minute per key (input / output): free 82,000 / 4,096, pro 400,000 / 80,000,
/// scale 4,000,000 / 800,000 (an input capacity of at least four providers at the largest
/// prompt and system text `/v1/ask` takes, and an output capacity of at least four at the
/// tier's `max_tokens` cap, so a `/v1/ask` fanout the contract accepts always fits).
/// Account-wide, per minute, across all of an account's keys: twice one key's calls and tokens
/// (free 20 calls, 164,000 / 8,192 tokens; pro 120, 800,000 / 160,000; scale 1,200,
/// 8,000,000 / 1,600,000).
/// Enterprise: the account's own (`AccountLimits`), else the configured enterprise values,
/// else scale's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TierConfig {
    pub free: TierSettings,
    pub pro: TierSettings,
    pub scale: TierSettings,
    /// Limits for enterprise accounts that have none of their own; `None` means scale's.
    pub enterprise_limits: Option<Limits>,
    pub enterprise_max_tokens: u32,
    pub enterprise_max_in_flight: u32,
    /// A key's tokens per minute for enterprise accounts without their own; `None`: scale's.
    pub enterprise_key_tokens: Option<KeyTokens>,
    /// Account-wide limits for enterprise accounts without their own; `None`: scale's.
    pub enterprise_account: Option<AccountWide>,
}

/// Most calls in flight a tier may allow.
pub const MAX_IN_FLIGHT: u32 = 100_000;

impl Default for TierConfig {
    fn default() -> TierConfig {
        TierConfig {
            free: TierSettings {
                limits: Limits {
                    burst: 10,
                    per_second: 10.0 / 60.0,
                },
                max_tokens: 1024,
                max_in_flight: 4,
                key_tokens: KeyTokens {
                    input_per_minute: 82_000,
                    output_per_minute: 4_096,
                },
                account: AccountWide {
                    calls_per_minute: 20,
                    input_per_minute: 164_000,
                    output_per_minute: 8_192,
                },
            },
            pro: TierSettings {
                limits: Limits {
                    burst: 60,
                    per_second: 1.0,
                },
                max_tokens: 4096,
                max_in_flight: 32,
                key_tokens: KeyTokens {
                    input_per_minute: 400_000,
                    output_per_minute: 80_000,
                },
                account: AccountWide {
                    calls_per_minute: 120,
                    input_per_minute: 800_000,
                    output_per_minute: 160_000,
                },
            },
            scale: TierSettings {
                limits: Limits {
                    burst: 600,
                    per_second: 10.0,
                },
                max_tokens: 8192,
                max_in_flight: 256,
                key_tokens: KeyTokens {
                    input_per_minute: 4_000_000,
                    output_per_minute: 800_000,
                },
                account: AccountWide {
                    calls_per_minute: 1_200,
                    input_per_minute: 8_000_000,
                    output_per_minute: 1_600_000,
                },
            },
            enterprise_limits: None,
            enterprise_max_tokens: 16384,
            enterprise_max_in_flight: 1024,
            enterprise_key_tokens: None,
            enterprise_account: None,
        }
    }
}

/// Why a tier config was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum TierConfigError {
    /// Not JSON of the expected shape (unknown keys are refused, to catch typos).
    Json(String),
    /// A tier's limits, after filling absent fields from the defaults, are out of bounds.
    Limits { tier: Tier, error: LimitsError },
    /// Enterprise limits need both `burst` and `per_second`, or neither.
    IncompleteLimits { tier: Tier },
    /// `max_tokens` must be in `1..=MAX_MAX_TOKENS`.
    MaxTokensOutOfRange { tier: Tier, max_tokens: u32 },
    /// `max_in_flight` must be in `1..=MAX_IN_FLIGHT`.
    InFlightOutOfRange { tier: Tier, max_in_flight: u32 },
    /// A per-minute limit must be in `1..=MAX_PER_MINUTE`.
    PerMinuteOutOfRange {
        tier: Tier,
        field: &'static str,
        value: u64,
    },
}

impl std::fmt::Display for TierConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TierConfigError::Json(detail) => write!(f, "tier config is not valid: {detail}"),
            TierConfigError::Limits { tier, error } => write!(f, "tier {tier}: {error}"),
            TierConfigError::IncompleteLimits { tier } => {
                write!(f, "tier {tier}: give both burst and per_second, or neither")
            }
            TierConfigError::MaxTokensOutOfRange { tier, max_tokens } => write!(
                f,
                "tier {tier}: max_tokens must be between 1 and {MAX_MAX_TOKENS}, got {max_tokens}"
            ),
            TierConfigError::InFlightOutOfRange {
                tier,
                max_in_flight,
            } => write!(
                f,
                "tier {tier}: max_in_flight must be between 1 and {MAX_IN_FLIGHT}, got {max_in_flight}"
            ),
            TierConfigError::PerMinuteOutOfRange { tier, field, value } => write!(
                f,
                "tier {tier}: {field} must be between 1 and {MAX_PER_MINUTE}, got {value}"
            ),
        }
    }
}

impl std::error::Error for TierConfigError {}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    free: RawTier,
    #[serde(default)]
    pro: RawTier,
    #[serde(default)]
    scale: RawTier,
    #[serde(default)]
    enterprise: RawTier,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTier {
    burst: Option<u32>,
    per_second: Option<f64>,
    max_tokens: Option<u32>,
    max_in_flight: Option<u32>,
    input_tokens_per_minute: Option<u64>,
    output_tokens_per_minute: Option<u64>,
    account_calls_per_minute: Option<u64>,
    account_input_tokens_per_minute: Option<u64>,
    account_output_tokens_per_minute: Option<u64>,
}

impl RawTier {
    fn has_key_tokens(&self) -> bool {
        self.input_tokens_per_minute.is_some() || self.output_tokens_per_minute.is_some()
    }

    fn has_account(&self) -> bool {
        self.account_calls_per_minute.is_some()
            || self.account_input_tokens_per_minute.is_some()
            || self.account_output_tokens_per_minute.is_some()
    }

    fn key_tokens(&self, tier: Tier, default: KeyTokens) -> Result<KeyTokens, TierConfigError> {
        Ok(KeyTokens {
            input_per_minute: per_minute(
                tier,
                "input_tokens_per_minute",
                self.input_tokens_per_minute,
                default.input_per_minute,
            )?,
            output_per_minute: per_minute(
                tier,
                "output_tokens_per_minute",
                self.output_tokens_per_minute,
                default.output_per_minute,
            )?,
        })
    }

    fn account(&self, tier: Tier, default: AccountWide) -> Result<AccountWide, TierConfigError> {
        Ok(AccountWide {
            calls_per_minute: per_minute(
                tier,
                "account_calls_per_minute",
                self.account_calls_per_minute,
                default.calls_per_minute,
            )?,
            input_per_minute: per_minute(
                tier,
                "account_input_tokens_per_minute",
                self.account_input_tokens_per_minute,
                default.input_per_minute,
            )?,
            output_per_minute: per_minute(
                tier,
                "account_output_tokens_per_minute",
                self.account_output_tokens_per_minute,
                default.output_per_minute,
            )?,
        })
    }
}

fn per_minute(
    tier: Tier,
    field: &'static str,
    given: Option<u64>,
    default: u64,
) -> Result<u64, TierConfigError> {
    let value = given.unwrap_or(default);
    if (1..=MAX_PER_MINUTE).contains(&value) {
        Ok(value)
    } else {
        Err(TierConfigError::PerMinuteOutOfRange { tier, field, value })
    }
}

impl TierConfig {
    /// Reads a config such as
    /// `{"free": {"burst": 20}, "enterprise": {"burst": 5000, "per_second": 50, "max_tokens": 32768}}`.
    /// Every absent tier or field keeps its default; blank input gives the defaults.
    pub fn from_json(json: &str) -> Result<TierConfig, TierConfigError> {
        if json.trim().is_empty() {
            return Ok(TierConfig::default());
        }
        let raw: RawConfig =
            serde_json::from_str(json).map_err(|e| TierConfigError::Json(e.to_string()))?;
        let defaults = TierConfig::default();
        let enterprise_limits = match (raw.enterprise.burst, raw.enterprise.per_second) {
            (None, None) => defaults.enterprise_limits,
            (Some(burst), Some(per_second)) => Some(Limits::new(burst, per_second).map_err(
                |error| TierConfigError::Limits {
                    tier: Tier::Enterprise,
                    error,
                },
            )?),
            _ => {
                return Err(TierConfigError::IncompleteLimits {
                    tier: Tier::Enterprise,
                })
            }
        };
        let scale = merge(Tier::Scale, defaults.scale, &raw.scale)?;
        let e = &raw.enterprise;
        let enterprise_key_tokens = if e.has_key_tokens() {
            Some(e.key_tokens(Tier::Enterprise, scale.key_tokens)?)
        } else {
            defaults.enterprise_key_tokens
        };
        let enterprise_account = if e.has_account() {
            Some(e.account(Tier::Enterprise, scale.account)?)
        } else {
            defaults.enterprise_account
        };
        Ok(TierConfig {
            free: merge(Tier::Free, defaults.free, &raw.free)?,
            pro: merge(Tier::Pro, defaults.pro, &raw.pro)?,
            scale,
            enterprise_key_tokens,
            enterprise_account,
            enterprise_limits,
            enterprise_max_tokens: max_tokens(
                Tier::Enterprise,
                raw.enterprise.max_tokens,
                defaults.enterprise_max_tokens,
            )?,
            enterprise_max_in_flight: max_in_flight(
                Tier::Enterprise,
                raw.enterprise.max_in_flight,
                defaults.enterprise_max_in_flight,
            )?,
        })
    }

    /// The limits a key of this tier gets. `account_override` (the account's own limits, set
    /// through the admin API) applies to enterprise only, and only when valid; an enterprise
    /// account without one gets the configured enterprise default, else scale's limits.
    /// Other tiers always get their tier's limits, so a downgraded account loses old overrides.
    pub fn limits_for(&self, tier: Tier, account_override: Option<Limits>) -> Limits {
        match tier {
            Tier::Free => self.free.limits,
            Tier::Pro => self.pro.limits,
            Tier::Scale => self.scale.limits,
            Tier::Enterprise => account_override
                .filter(Limits::is_valid)
                .or(self.enterprise_limits)
                .unwrap_or(self.scale.limits),
        }
    }

    /// A key's tokens per minute (input and output) under this tier. `account_override` (an
    /// enterprise account's own limits) applies to enterprise only, field by field; an absent
    /// field is the configured enterprise value, else scale's.
    pub fn key_token_limits(
        &self,
        tier: Tier,
        account_override: Option<&AccountLimits>,
    ) -> MinuteLimits {
        let base = match tier {
            Tier::Free => self.free.key_tokens,
            Tier::Pro => self.pro.key_tokens,
            Tier::Scale => self.scale.key_tokens,
            Tier::Enterprise => self.enterprise_key_tokens.unwrap_or(self.scale.key_tokens),
        };
        let own = account_override.filter(|_| tier == Tier::Enterprise);
        MinuteLimits::tokens(
            own.and_then(|a| a.key_input_tokens_per_minute)
                .unwrap_or(base.input_per_minute),
            own.and_then(|a| a.key_output_tokens_per_minute)
                .unwrap_or(base.output_per_minute),
        )
    }

    /// The account-wide calls and tokens per minute under this tier (enterprise: as for
    /// [`TierConfig::key_token_limits`]).
    pub fn account_limits(
        &self,
        tier: Tier,
        account_override: Option<&AccountLimits>,
    ) -> MinuteLimits {
        let base = match tier {
            Tier::Free => self.free.account,
            Tier::Pro => self.pro.account,
            Tier::Scale => self.scale.account,
            Tier::Enterprise => self.enterprise_account.unwrap_or(self.scale.account),
        };
        let own = account_override.filter(|_| tier == Tier::Enterprise);
        MinuteLimits::all(
            own.and_then(|a| a.account_calls_per_minute)
                .unwrap_or(base.calls_per_minute),
            own.and_then(|a| a.account_input_tokens_per_minute)
                .unwrap_or(base.input_per_minute),
            own.and_then(|a| a.account_output_tokens_per_minute)
                .unwrap_or(base.output_per_minute),
        )
    }

    /// How many calls an account of this tier may have in flight at once.
    pub fn max_in_flight(&self, tier: Tier) -> u32 {
        match tier {
            Tier::Free => self.free.max_in_flight,
            Tier::Pro => self.pro.max_in_flight,
            Tier::Scale => self.scale.max_in_flight,
            Tier::Enterprise => self.enterprise_max_in_flight,
        }
    }

    /// The largest `max_tokens` a request of this tier may ask for.
    pub fn max_tokens_cap(&self, tier: Tier) -> u32 {
        match tier {
            Tier::Free => self.free.max_tokens,
            Tier::Pro => self.pro.max_tokens,
            Tier::Scale => self.scale.max_tokens,
            Tier::Enterprise => self.enterprise_max_tokens,
        }
    }
}

fn merge(
    tier: Tier,
    default: TierSettings,
    raw: &RawTier,
) -> Result<TierSettings, TierConfigError> {
    let limits = Limits::new(
        raw.burst.unwrap_or(default.limits.burst),
        raw.per_second.unwrap_or(default.limits.per_second),
    )
    .map_err(|error| TierConfigError::Limits { tier, error })?;
    Ok(TierSettings {
        limits,
        max_tokens: max_tokens(tier, raw.max_tokens, default.max_tokens)?,
        max_in_flight: max_in_flight(tier, raw.max_in_flight, default.max_in_flight)?,
        key_tokens: raw.key_tokens(tier, default.key_tokens)?,
        account: raw.account(tier, default.account)?,
    })
}

fn max_in_flight(tier: Tier, given: Option<u32>, default: u32) -> Result<u32, TierConfigError> {
    let max_in_flight = given.unwrap_or(default);
    if (1..=MAX_IN_FLIGHT).contains(&max_in_flight) {
        Ok(max_in_flight)
    } else {
        Err(TierConfigError::InFlightOutOfRange {
            tier,
            max_in_flight,
        })
    }
}

fn max_tokens(tier: Tier, given: Option<u32>, default: u32) -> Result<u32, TierConfigError> {
    let max_tokens = given.unwrap_or(default);
    if (1..=MAX_MAX_TOKENS).contains(&max_tokens) {
        Ok(max_tokens)
    } else {
        Err(TierConfigError::MaxTokensOutOfRange { tier, max_tokens })
    }
}

/// How much wider than a tier's call limits the limits of its other calls are (data reads,
/// refused bodies, unknown routes): they cost no provider, but each still costs a D1 read or
/// row, so they are limited too (docs/DECISIONS.md, "Calls that reach no provider").
pub const UNMETERED_FACTOR: u32 = 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_and_account_defaults_per_tier() {
        let c = TierConfig::default();
        assert_eq!(
            c.key_token_limits(Tier::Free, None),
            MinuteLimits::tokens(82_000, 4_096)
        );
        assert_eq!(
            c.key_token_limits(Tier::Pro, None),
            MinuteLimits::tokens(400_000, 80_000)
        );
        assert_eq!(
            c.key_token_limits(Tier::Scale, None),
            MinuteLimits::tokens(4_000_000, 800_000)
        );
        assert_eq!(
            c.key_token_limits(Tier::Enterprise, None),
            c.key_token_limits(Tier::Scale, None)
        );
        assert_eq!(
            c.account_limits(Tier::Free, None),
            MinuteLimits::all(20, 164_000, 8_192)
        );
        assert_eq!(
            c.account_limits(Tier::Pro, None),
            MinuteLimits::all(120, 800_000, 160_000)
        );
        assert_eq!(
            c.account_limits(Tier::Enterprise, None),
            MinuteLimits::all(1_200, 8_000_000, 1_600_000)
        );
        for tier in Tier::ALL {
            assert!(c.key_token_limits(tier, None).is_valid());
            assert!(c.account_limits(tier, None).is_valid());
            // A fanout to all four providers at the tier's max_tokens cap fits its output bucket.
            let out = c.key_token_limits(tier, None).output_tokens.unwrap();
            assert!(out >= 4 * u64::from(c.max_tokens_cap(tier)), "{tier}");
            // So does its input at the largest prompt and system text `/v1/ask` takes (a
            // prompt the contract accepts is never `request_too_large` on a full bucket).
            let input = c.key_token_limits(tier, None).input_tokens.unwrap();
            let largest =
                crate::credits::pricing::estimate_input_tokens(2 * crate::api::ask::PROMPT_LIMIT);
            assert!(input >= 4 * largest, "{tier}: {input} < 4 × {largest}");
            // The account's limits are at least one key's.
            let key_calls = c.limits_for(tier, None);
            let acct = c.account_limits(tier, None);
            assert!(acct.requests.unwrap() >= u64::from(key_calls.burst));
            assert!(acct.input_tokens >= c.key_token_limits(tier, None).input_tokens);
        }
    }

    #[test]
    fn token_limits_are_configurable_per_tier() {
        let c = TierConfig::from_json(
            r#"{"free": {"input_tokens_per_minute": 1000, "account_calls_per_minute": 3},
                "enterprise": {"output_tokens_per_minute": 9}}"#,
        )
        .unwrap();
        assert_eq!(
            c.key_token_limits(Tier::Free, None),
            MinuteLimits::tokens(1000, 4_096)
        );
        assert_eq!(
            c.account_limits(Tier::Free, None),
            MinuteLimits::all(3, 164_000, 8_192)
        );
        // An enterprise field given: the others are scale's.
        assert_eq!(
            c.key_token_limits(Tier::Enterprise, None),
            MinuteLimits::tokens(4_000_000, 9)
        );
        assert_eq!(c.enterprise_account, None);
        assert_eq!(
            TierConfig::from_json(r#"{"pro": {"output_tokens_per_minute": 0}}"#),
            Err(TierConfigError::PerMinuteOutOfRange {
                tier: Tier::Pro,
                field: "output_tokens_per_minute",
                value: 0
            })
        );
        assert!(matches!(
            TierConfig::from_json(r#"{"scale": {"account_calls_per_minute": 1000000001}}"#),
            Err(TierConfigError::PerMinuteOutOfRange { .. })
        ));
        assert!(matches!(
            TierConfig::from_json(r#"{"scale": {"tokens_per_minute": 5}}"#),
            Err(TierConfigError::Json(_))
        ));
    }

    #[test]
    fn enterprise_account_limits_apply_field_by_field_and_only_to_enterprise() {
        let c = TierConfig::default();
        let own: AccountLimits = serde_json::from_str(
            r#"{"burst": 5000, "per_second": 50, "input_tokens_per_minute": 1000,
                "account_calls_per_minute": 7}"#,
        )
        .unwrap();
        assert_eq!(own.calls, Limits::new(5000, 50.0).unwrap());
        assert_eq!(
            c.key_token_limits(Tier::Enterprise, Some(&own)),
            MinuteLimits::tokens(1000, 800_000)
        );
        assert_eq!(
            c.account_limits(Tier::Enterprise, Some(&own)),
            MinuteLimits::all(7, 8_000_000, 1_600_000)
        );
        assert_eq!(
            c.key_token_limits(Tier::Pro, Some(&own)),
            c.key_token_limits(Tier::Pro, None)
        );
        assert_eq!(
            c.account_limits(Tier::Free, Some(&own)),
            c.account_limits(Tier::Free, None)
        );
    }

    #[test]
    fn account_limits_read_old_rows_and_round_trip() {
        // A row stored before token limits existed.
        let old: AccountLimits =
            serde_json::from_str(r#"{"burst": 5, "per_second": 2.5}"#).unwrap();
        assert_eq!(old, AccountLimits::calls_only(Limits::new(5, 2.5).unwrap()));
        assert_eq!(
            serde_json::to_string(&old).unwrap(),
            r#"{"burst":5,"per_second":2.5}"#
        );
        let full: AccountLimits = serde_json::from_str(
            r#"{"burst": 5, "per_second": 1, "input_tokens_per_minute": 1,
                "output_tokens_per_minute": 2, "account_calls_per_minute": 3,
                "account_input_tokens_per_minute": 4, "account_output_tokens_per_minute": 5}"#,
        )
        .unwrap();
        let text = serde_json::to_string(&full).unwrap();
        assert_eq!(serde_json::from_str::<AccountLimits>(&text).unwrap(), full);
        // The old type still reads only burst and per_second (and refuses the new fields).
        assert!(serde_json::from_str::<Limits>(&text).is_err());
        for bad in [
            r#"{"burst": 5}"#,
            r#"{"burst": 0, "per_second": 1}"#,
            r#"{"burst": 5, "per_second": 1, "input_tokens_per_minute": 0}"#,
            r#"{"burst": 5, "per_second": 1, "account_calls_per_minute": 1000000001}"#,
            r#"{"burst": 5, "per_second": 1, "input_tokens": 10}"#,
        ] {
            assert!(serde_json::from_str::<AccountLimits>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn calls_in_flight_are_bounded_per_tier_and_configurable() {
        let d = TierConfig::default();
        assert_eq!(d.max_in_flight(Tier::Free), 4);
        assert_eq!(d.max_in_flight(Tier::Pro), 32);
        assert_eq!(d.max_in_flight(Tier::Enterprise), 1024);
        let c = TierConfig::from_json(r#"{"pro": {"max_in_flight": 3}}"#).unwrap();
        assert_eq!(c.max_in_flight(Tier::Pro), 3);
        assert_eq!(c.max_in_flight(Tier::Free), 4);
        assert!(matches!(
            TierConfig::from_json(r#"{"free": {"max_in_flight": 0}}"#),
            Err(TierConfigError::InFlightOutOfRange { .. })
        ));
    }

    #[test]
    fn scaled_limits_widen_burst_and_rate_within_bounds() {
        let free = Limits::new(10, 10.0 / 60.0).unwrap();
        let wide = free.scaled(UNMETERED_FACTOR);
        assert_eq!(wide.burst, 100);
        assert!((wide.per_second - 100.0 / 60.0).abs() < 1e-9);
        assert!(wide.is_valid());
        let top = Limits::new(MAX_BURST, MAX_PER_SECOND).unwrap().scaled(10);
        assert_eq!((top.burst, top.per_second), (MAX_BURST, MAX_PER_SECOND));
    }

    /// Slower than one a day is refused: its refill interval would not fit a JS number, and
    /// the bucket's storage write would fail on every call.
    #[test]
    fn the_slowest_refill_is_one_a_day_and_fits_a_js_number() {
        assert!(Limits::new(1000, 0.000_000_1).is_err());
        let slowest = Limits::new(1000, MIN_PER_SECOND).unwrap();
        assert!(slowest.refill_interval_ns() <= 1 << 53);
    }

    #[test]
    fn tier_names_round_trip_and_parse_is_case_sensitive() {
        for tier in Tier::ALL {
            assert_eq!(Tier::parse(tier.as_str()), Some(tier));
            assert_eq!(serde_json::to_string(&tier).unwrap(), format!("\"{tier}\""));
            let back: Tier = serde_json::from_str(&format!("\"{tier}\"")).unwrap();
            assert_eq!(back, tier);
        }
        assert_eq!(Tier::parse("Free"), None);
        assert_eq!(Tier::parse("gold"), None);
        assert!(serde_json::from_str::<Tier>("\"PRO\"").is_err());
    }

    #[test]
    fn limits_new_enforces_bounds() {
        assert!(Limits::new(1, MIN_PER_SECOND).is_ok());
        assert!(Limits::new(MAX_BURST, MAX_PER_SECOND).is_ok());
        assert_eq!(
            Limits::new(0, 1.0),
            Err(LimitsError::BurstOutOfRange { burst: 0 })
        );
        assert_eq!(
            Limits::new(MAX_BURST + 1, 1.0),
            Err(LimitsError::BurstOutOfRange {
                burst: MAX_BURST + 1
            })
        );
        for bad in [0.0, -1.0, 100_000.5, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(Limits::new(10, bad).is_err(), "{bad}");
        }
        assert!(Limits::new(10, f64::NAN).is_err());
    }

    #[test]
    fn limits_deserialize_validates() {
        let ok: Limits = serde_json::from_str(r#"{"burst": 5, "per_second": 2.5}"#).unwrap();
        assert_eq!(ok, Limits::new(5, 2.5).unwrap());
        assert!(serde_json::from_str::<Limits>(r#"{"burst": 0, "per_second": 1}"#).is_err());
        assert!(serde_json::from_str::<Limits>(r#"{"burst": 5, "per_second": 0}"#).is_err());
        assert!(serde_json::from_str::<Limits>(r#"{"burst": 5}"#).is_err());
        assert!(
            serde_json::from_str::<Limits>(r#"{"burst": 5, "per_second": 1, "x": 1}"#).is_err()
        );
        let json = serde_json::to_string(&ok).unwrap();
        assert_eq!(serde_json::from_str::<Limits>(&json).unwrap(), ok);
    }

    #[test]
    fn default_intervals_are_exact() {
        let c = TierConfig::default();
        assert_eq!(c.free.limits.refill_interval_ns(), 6_000_000_000);
        assert_eq!(c.pro.limits.refill_interval_ns(), 1_000_000_000);
        assert_eq!(c.scale.limits.refill_interval_ns(), 100_000_000);
        for tier in [Tier::Free, Tier::Pro, Tier::Scale] {
            assert_eq!(c.limits_for(tier, None).window_secs(), 60);
        }
    }

    #[test]
    fn refill_interval_of_bad_rates_fails_closed() {
        for bad in [0.0, -3.0, f64::NAN, f64::INFINITY, 1e-300] {
            let l = Limits {
                burst: 1,
                per_second: bad,
            };
            assert_eq!(l.refill_interval_ns(), u64::MAX, "{bad}");
        }
        let fast = Limits {
            burst: 1,
            per_second: 1e12,
        };
        assert_eq!(fast.refill_interval_ns(), 1);
        let huge = Limits {
            burst: u32::MAX,
            per_second: 1e-300,
        };
        assert_eq!(huge.window_secs(), u64::MAX);
    }

    #[test]
    fn defaults_match_the_design() {
        let c = TierConfig::default();
        assert_eq!(c.limits_for(Tier::Free, None).burst, 10);
        assert_eq!(c.limits_for(Tier::Pro, None), Limits::new(60, 1.0).unwrap());
        assert_eq!(
            c.limits_for(Tier::Scale, None),
            Limits::new(600, 10.0).unwrap()
        );
        assert_eq!(c.max_tokens_cap(Tier::Free), 1024);
        assert_eq!(c.max_tokens_cap(Tier::Pro), 4096);
        assert_eq!(c.max_tokens_cap(Tier::Scale), 8192);
        assert_eq!(c.max_tokens_cap(Tier::Enterprise), 16384);
        for tier in Tier::ALL {
            assert!(c.limits_for(tier, None).is_valid());
        }
    }

    #[test]
    fn enterprise_uses_account_limits_else_scale() {
        let c = TierConfig::default();
        let own = Limits::new(5000, 50.0).unwrap();
        assert_eq!(c.limits_for(Tier::Enterprise, Some(own)), own);
        assert_eq!(c.limits_for(Tier::Enterprise, None), c.scale.limits);
        let invalid = Limits {
            burst: 0,
            per_second: f64::NAN,
        };
        assert_eq!(
            c.limits_for(Tier::Enterprise, Some(invalid)),
            c.scale.limits
        );
    }

    #[test]
    fn account_override_is_ignored_below_enterprise() {
        let c = TierConfig::default();
        let own = Limits::new(5000, 50.0).unwrap();
        assert_eq!(c.limits_for(Tier::Free, Some(own)), c.free.limits);
        assert_eq!(c.limits_for(Tier::Scale, Some(own)), c.scale.limits);
    }

    #[test]
    fn blank_or_empty_json_gives_defaults() {
        assert_eq!(TierConfig::from_json("").unwrap(), TierConfig::default());
        assert_eq!(
            TierConfig::from_json("  \n").unwrap(),
            TierConfig::default()
        );
        assert_eq!(TierConfig::from_json("{}").unwrap(), TierConfig::default());
    }

    #[test]
    fn json_overrides_only_the_fields_given() {
        let c = TierConfig::from_json(
            r#"{"free": {"burst": 20}, "pro": {"max_tokens": 2048},
                "enterprise": {"burst": 5000, "per_second": 50, "max_tokens": 32768}}"#,
        )
        .unwrap();
        assert_eq!(c.free.limits.burst, 20);
        assert_eq!(c.free.limits.per_second, 10.0 / 60.0);
        assert_eq!(c.free.max_tokens, 1024);
        assert_eq!(c.pro.limits, TierConfig::default().pro.limits);
        assert_eq!(c.pro.max_tokens, 2048);
        assert_eq!(c.scale, TierConfig::default().scale);
        let ent = Limits::new(5000, 50.0).unwrap();
        assert_eq!(c.limits_for(Tier::Enterprise, None), ent);
        assert_eq!(c.max_tokens_cap(Tier::Enterprise), 32768);
    }

    #[test]
    fn bad_json_is_a_typed_error() {
        assert!(matches!(
            TierConfig::from_json("not json"),
            Err(TierConfigError::Json(_))
        ));
        assert!(matches!(
            TierConfig::from_json(r#"{"gold": {}}"#),
            Err(TierConfigError::Json(_))
        ));
        assert!(matches!(
            TierConfig::from_json(r#"{"free": {"brust": 3}}"#),
            Err(TierConfigError::Json(_))
        ));
        assert!(matches!(
            TierConfig::from_json(r#"{"free": {"burst": -1}}"#),
            Err(TierConfigError::Json(_))
        ));
        assert_eq!(
            TierConfig::from_json(r#"{"pro": {"per_second": 0}}"#),
            Err(TierConfigError::Limits {
                tier: Tier::Pro,
                error: LimitsError::RateOutOfRange { per_second: 0.0 }
            })
        );
        assert_eq!(
            TierConfig::from_json(r#"{"enterprise": {"burst": 10}}"#),
            Err(TierConfigError::IncompleteLimits {
                tier: Tier::Enterprise
            })
        );
        assert_eq!(
            TierConfig::from_json(r#"{"scale": {"max_tokens": 0}}"#),
            Err(TierConfigError::MaxTokensOutOfRange {
                tier: Tier::Scale,
                max_tokens: 0
            })
        );
    }
}
