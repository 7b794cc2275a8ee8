//! Account tiers and what each allows: token-bucket limits (burst and refill rate) and the
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

/// What one tier allows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TierSettings {
    pub limits: Limits,
    pub max_tokens: u32,
    /// Calls an account may have in flight at once (open credit reservations).
    pub max_in_flight: u32,
}

/// The limits and `max_tokens` caps of every tier.
///
/// Defaults: free 10 burst, 10/min, 1024 tokens, 4 calls in flight; pro 60 burst, 1/s, 4096,
/// 32 in flight; scale 600 burst, 10/s, 8192, 256 in flight; enterprise 16384 tokens, 1024 in
/// flight and no default limits: enterprise accounts carry their own limits, and fall back to
/// scale's when they have none.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TierConfig {
    pub free: TierSettings,
    pub pro: TierSettings,
    pub scale: TierSettings,
    /// Limits for enterprise accounts that have none of their own; `None` means scale's.
    pub enterprise_limits: Option<Limits>,
    pub enterprise_max_tokens: u32,
    pub enterprise_max_in_flight: u32,
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
            },
            pro: TierSettings {
                limits: Limits {
                    burst: 60,
                    per_second: 1.0,
                },
                max_tokens: 4096,
                max_in_flight: 32,
            },
            scale: TierSettings {
                limits: Limits {
                    burst: 600,
                    per_second: 10.0,
                },
                max_tokens: 8192,
                max_in_flight: 256,
            },
            enterprise_limits: None,
            enterprise_max_tokens: 16384,
            enterprise_max_in_flight: 1024,
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
        Ok(TierConfig {
            free: merge(Tier::Free, defaults.free, &raw.free)?,
            pro: merge(Tier::Pro, defaults.pro, &raw.pro)?,
            scale: merge(Tier::Scale, defaults.scale, &raw.scale)?,
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
