//! Credit prices per (provider, model), per 1,000 input and output tokens, with built-in
//! defaults a JSON config overrides; the cost of a call, and the worst case reserved before it.
//!
//! One credit is US$0.00001 (a thousandth of a cent): the defaults are the providers' list
//! prices per million tokens, in dollars, times 100. Costs round up and are at least 1 credit.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::providers::Provider;

/// What a cache hit costs the account: a small serving fee.
pub const CACHE_HIT_FEE: u64 = 1;

/// Tokens added to every input estimate for the chat framing around the prompt.
pub const INPUT_TOKEN_OVERHEAD: u64 = 16;

/// Credits per 1,000 tokens, and per request where the provider bills one (Perplexity's
/// request fee).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input_per_1k: u64,
    pub output_per_1k: u64,
    #[serde(default)]
    pub per_request: u64,
}

impl Price {
    pub const fn new(input_per_1k: u64, output_per_1k: u64) -> Price {
        Price {
            input_per_1k,
            output_per_1k,
            per_request: 0,
        }
    }

    /// A price with a fee per request on top of the tokens.
    pub const fn with_request_fee(input_per_1k: u64, output_per_1k: u64, fee: u64) -> Price {
        Price {
            input_per_1k,
            output_per_1k,
            per_request: fee,
        }
    }

    /// Credits for one request of this many tokens:
    /// `ceil((in × input + out × output) / 1000) + per_request`, at least 1, saturating at
    /// `u64::MAX`.
    pub fn cost(&self, input_tokens: u64, output_tokens: u64) -> u64 {
        // Each product fits in u128; only their sum can overflow.
        let milli = (u128::from(input_tokens) * u128::from(self.input_per_1k))
            .saturating_add(u128::from(output_tokens) * u128::from(self.output_per_1k));
        u64::try_from(milli.div_ceil(1000))
            .unwrap_or(u64::MAX)
            .saturating_add(self.per_request)
            .max(1)
    }
}

/// (provider, model, price) of the built-in table: every model of the default allowlists
/// (`models::default_allowlist`), at its list price per million tokens in dollars × 100.
const DEFAULT_PRICES: [(Provider, &str, Price); 20] = [
    (Provider::OpenAi, "gpt-4o-mini", Price::new(15, 60)),
    (Provider::OpenAi, "gpt-4o", Price::new(250, 1000)),
    (Provider::OpenAi, "gpt-4.1", Price::new(200, 800)),
    (Provider::OpenAi, "gpt-4.1-mini", Price::new(40, 160)),
    (Provider::OpenAi, "gpt-4.1-nano", Price::new(10, 40)),
    (Provider::OpenAi, "gpt-5", Price::new(125, 1000)),
    (Provider::OpenAi, "gpt-5-mini", Price::new(25, 200)),
    (Provider::OpenAi, "o3-mini", Price::new(110, 440)),
    (Provider::OpenAi, "o4-mini", Price::new(110, 440)),
    (
        Provider::Anthropic,
        "claude-haiku-4-5",
        Price::new(100, 500),
    ),
    (
        Provider::Anthropic,
        "claude-sonnet-4-5",
        Price::new(300, 1500),
    ),
    (
        Provider::Anthropic,
        "claude-opus-4-1",
        Price::new(1500, 7500),
    ),
    (
        Provider::Anthropic,
        "claude-3-5-haiku-latest",
        Price::new(80, 400),
    ),
    (Provider::Gemini, "gemini-2.5-flash", Price::new(30, 250)),
    (Provider::Gemini, "gemini-2.5-pro", Price::new(125, 1000)),
    (Provider::Gemini, "gemini-2.0-flash", Price::new(10, 40)),
    // Perplexity also bills each request (its search), by search context size: the low
    // context's $5 per 1,000 requests (sonar, sonar-reasoning) or $6 (the pro models).
    (
        Provider::Perplexity,
        "sonar",
        Price::with_request_fee(100, 100, 500),
    ),
    (
        Provider::Perplexity,
        "sonar-pro",
        Price::with_request_fee(300, 1500, 600),
    ),
    (
        Provider::Perplexity,
        "sonar-reasoning",
        Price::with_request_fee(100, 500, 500),
    ),
    (
        Provider::Perplexity,
        "sonar-reasoning-pro",
        Price::with_request_fee(200, 800, 600),
    ),
];

/// The price of a model not in the table: the provider's dearest listed model (dearest on
/// both sides), so an unknown model is never undercharged against the defaults.
fn default_fallback(provider: Provider) -> Price {
    match provider {
        Provider::OpenAi => Price::new(250, 1000),
        Provider::Anthropic => Price::new(1500, 7500),
        Provider::Gemini => Price::new(125, 1000),
        Provider::Perplexity => Price::with_request_fee(300, 1500, 600),
    }
}

/// Prices per (provider, model), with a fallback price per provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PriceTable {
    models: BTreeMap<Provider, BTreeMap<String, Price>>,
    fallback: BTreeMap<Provider, Price>,
}

impl Default for PriceTable {
    fn default() -> PriceTable {
        let mut models: BTreeMap<Provider, BTreeMap<String, Price>> = BTreeMap::new();
        for (provider, model, price) in DEFAULT_PRICES {
            models
                .entry(provider)
                .or_default()
                .insert(model.to_string(), price);
        }
        let fallback = Provider::ALL
            .into_iter()
            .map(|p| (p, default_fallback(p)))
            .collect();
        PriceTable { models, fallback }
    }
}

/// A price config that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricingError(pub String);

impl std::fmt::Display for PricingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "price config is not valid: {}", self.0)
    }
}

impl std::error::Error for PricingError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    #[serde(default)]
    models: BTreeMap<Provider, BTreeMap<String, Price>>,
    #[serde(default)]
    fallback: BTreeMap<Provider, Price>,
}

impl PriceTable {
    /// Reads overrides such as
    /// `{"models": {"openai": {"gpt-4o": {"input_per_1k": 250, "output_per_1k": 1000}}},
    ///   "fallback": {"gemini": {"input_per_1k": 125, "output_per_1k": 1000}}}`
    /// on top of the defaults: listed models and fallbacks replace or extend the built-in
    /// ones, everything else keeps its default. Blank input gives the defaults.
    pub fn from_json(json: &str) -> Result<PriceTable, PricingError> {
        let mut table = PriceTable::default();
        if json.trim().is_empty() {
            return Ok(table);
        }
        let raw: RawTable = serde_json::from_str(json).map_err(|e| PricingError(e.to_string()))?;
        for (provider, models) in raw.models {
            table.models.entry(provider).or_default().extend(models);
        }
        table.fallback.extend(raw.fallback);
        Ok(table)
    }

    /// The price of `model` at `provider` (exact model name), else the provider's fallback.
    pub fn price(&self, provider: Provider, model: &str) -> Price {
        self.models
            .get(&provider)
            .and_then(|models| models.get(model))
            .or_else(|| self.fallback.get(&provider))
            .copied()
            .unwrap_or_else(|| default_fallback(provider))
    }

    /// Credits a call used, rounded up, at least 1.
    pub fn cost(
        &self,
        provider: Provider,
        model: &str,
        input_tokens: u64,
        output_tokens: u64,
    ) -> u64 {
        self.price(provider, model)
            .cost(input_tokens, output_tokens)
    }

    /// The most a call can cost: the input estimated from the prompt's size at worst, and
    /// every one of `max_tokens` output tokens used. What the ledger reserves before a call.
    pub fn worst_case(
        &self,
        provider: Provider,
        model: &str,
        prompt_bytes: usize,
        max_tokens: u32,
    ) -> u64 {
        self.cost(
            provider,
            model,
            estimate_input_tokens(prompt_bytes),
            u64::from(max_tokens),
        )
    }
}

/// A worst-case estimate of a prompt's input tokens from its UTF-8 size:
/// `ceil(bytes / 2) + INPUT_TOKEN_OVERHEAD`.
pub fn estimate_input_tokens(prompt_bytes: usize) -> u64 {
    let bytes = u64::try_from(prompt_bytes).unwrap_or(u64::MAX);
    bytes.div_ceil(2).saturating_add(INPUT_TOKEN_OVERHEAD)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A model the gateway lets through but does not price would be charged at the fallback
    /// (gpt-4.1-nano at gpt-4o's price, 25x its list price); the fallback is the dearest.
    #[test]
    fn every_allowlisted_model_is_priced_and_no_price_exceeds_the_fallback() {
        let t = PriceTable::default();
        for p in Provider::ALL {
            for model in crate::providers::models::default_allowlist(p) {
                let listed = t.models.get(&p).and_then(|m| m.get(*model));
                assert!(listed.is_some(), "{p}/{model} has no price");
            }
            let fallback = t.fallback[&p];
            for price in t.models[&p].values() {
                assert!(price.input_per_1k <= fallback.input_per_1k, "{p}");
                assert!(price.output_per_1k <= fallback.output_per_1k, "{p}");
                assert!(price.per_request <= fallback.per_request, "{p}");
            }
        }
    }

    /// Perplexity's documented sonar reply (`usage.cost.request_cost: 0.005` for 34 tokens):
    /// the request fee is most of the cost, and is charged.
    #[test]
    fn perplexity_calls_pay_the_request_fee() {
        let t = PriceTable::default();
        let cost = t.cost(Provider::Perplexity, "sonar", 12, 22);
        assert_eq!(
            cost,
            4 + 500,
            "34 tokens at $1/M (3.4, rounded up) + the $0.005 fee"
        );
        assert_eq!(t.cost(Provider::OpenAi, "gpt-4o-mini", 12, 22), 2);
        let worst = t.worst_case(Provider::Perplexity, "sonar", 100, 16);
        assert!(worst > 500, "the reservation covers the fee: {worst}");
    }

    #[test]
    fn every_provider_default_model_is_priced() {
        let t = PriceTable::default();
        for p in Provider::ALL {
            let listed = t.models.get(&p).and_then(|m| m.get(p.default_model()));
            assert!(listed.is_some(), "{p}");
        }
    }

    #[test]
    fn listed_models_use_their_price() {
        let t = PriceTable::default();
        assert_eq!(t.price(Provider::OpenAi, "gpt-4o-mini"), Price::new(15, 60));
        assert_eq!(
            t.price(Provider::Anthropic, "claude-sonnet-4-5"),
            Price::new(300, 1500)
        );
        assert_eq!(
            t.price(Provider::Perplexity, "sonar"),
            Price::with_request_fee(100, 100, 500)
        );
        // A model is priced at its own provider only.
        assert_eq!(
            t.price(Provider::Gemini, "gpt-4o-mini"),
            t.price(Provider::Gemini, "unlisted")
        );
    }

    #[test]
    fn unlisted_models_fall_back_to_the_dearest_of_the_provider() {
        let t = PriceTable::default();
        for p in Provider::ALL {
            let fallback = t.price(p, "some-future-model");
            for (provider, model, price) in DEFAULT_PRICES {
                if provider == p {
                    assert!(price.input_per_1k <= fallback.input_per_1k, "{model}");
                    assert!(price.output_per_1k <= fallback.output_per_1k, "{model}");
                }
            }
        }
    }

    #[test]
    fn cost_rounds_up_and_is_at_least_one() {
        let t = PriceTable::default();
        // 20 × 15 + 50 × 60 = 3300 milli-credits → 4 credits.
        assert_eq!(t.cost(Provider::OpenAi, "gpt-4o-mini", 20, 50), 4);
        assert_eq!(t.cost(Provider::OpenAi, "gpt-4o-mini", 0, 0), 1);
        assert_eq!(t.cost(Provider::OpenAi, "gpt-4o-mini", 1, 0), 1);
        // Exactly 1000 tokens of 1000 credits per 1k: 1000, no rounding.
        assert_eq!(t.cost(Provider::OpenAi, "gpt-4o", 0, 1000), 1000);
        assert_eq!(t.cost(Provider::OpenAi, "gpt-4o", 0, 1001), 1001);
        assert_eq!(Price::new(0, 0).cost(5, 5), 1);
        assert_eq!(Price::new(1, 0).cost(1001, 0), 2);
    }

    #[test]
    fn cost_saturates_instead_of_overflowing() {
        let p = Price::new(u64::MAX, u64::MAX);
        assert_eq!(p.cost(u64::MAX, u64::MAX), u64::MAX);
    }

    #[test]
    fn input_estimate_is_half_the_bytes_rounded_up_plus_overhead() {
        assert_eq!(estimate_input_tokens(0), INPUT_TOKEN_OVERHEAD);
        assert_eq!(estimate_input_tokens(1), 1 + INPUT_TOKEN_OVERHEAD);
        assert_eq!(estimate_input_tokens(2), 1 + INPUT_TOKEN_OVERHEAD);
        assert_eq!(estimate_input_tokens(3), 2 + INPUT_TOKEN_OVERHEAD);
        assert_eq!(estimate_input_tokens(usize::MAX), u64::MAX / 2 + 1 + 16);
    }

    #[test]
    fn worst_case_prices_estimated_input_and_all_of_max_tokens() {
        let t = PriceTable::default();
        // 100 bytes → 50 + 16 = 66 input tokens; 256 output tokens.
        // 66 × 15 + 256 × 60 = 990 + 15360 = 16350 → 17 credits.
        assert_eq!(t.worst_case(Provider::OpenAi, "gpt-4o-mini", 100, 256), 17);
        assert!(
            t.worst_case(Provider::OpenAi, "gpt-4o-mini", 100, 256)
                >= t.cost(Provider::OpenAi, "gpt-4o-mini", 50, 256)
        );
    }

    #[test]
    fn json_overrides_extend_the_defaults() {
        let t = PriceTable::from_json(
            r#"{"models": {"openai": {"gpt-4o": {"input_per_1k": 1, "output_per_1k": 2},
                                      "gpt-5": {"input_per_1k": 125, "output_per_1k": 1000}}},
                "fallback": {"gemini": {"input_per_1k": 7, "output_per_1k": 8}}}"#,
        )
        .unwrap();
        assert_eq!(t.price(Provider::OpenAi, "gpt-4o"), Price::new(1, 2));
        assert_eq!(t.price(Provider::OpenAi, "gpt-5"), Price::new(125, 1000));
        assert_eq!(t.price(Provider::OpenAi, "gpt-4o-mini"), Price::new(15, 60));
        assert_eq!(t.price(Provider::Gemini, "unknown"), Price::new(7, 8));
        assert_eq!(
            t.price(Provider::Gemini, "gemini-2.5-pro"),
            Price::new(125, 1000)
        );
        assert_eq!(PriceTable::from_json(" ").unwrap(), PriceTable::default());
        assert_eq!(PriceTable::from_json("{}").unwrap(), PriceTable::default());
    }

    #[test]
    fn bad_json_is_refused() {
        for bad in [
            "nope",
            r#"{"models": {"mistral": {}}}"#,
            r#"{"models": {"openai": {"x": {"input_per_1k": -1, "output_per_1k": 1}}}}"#,
            r#"{"models": {"openai": {"x": {"input_per_1k": 1}}}}"#,
            r#"{"prices": {}}"#,
        ] {
            assert!(PriceTable::from_json(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn table_serializes_in_the_config_shape() {
        let t = PriceTable::default();
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(PriceTable::from_json(&json).unwrap(), t);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["models"]["openai"]["gpt-4o-mini"]["input_per_1k"], 15);
    }

    proptest! {
        /// Cost is at least 1, never below the exact price, and less than 1 credit above it;
        /// more tokens never cost less.
        #[test]
        fn cost_is_the_exact_price_rounded_up(
            pin in 0u64..100_000, pout in 0u64..100_000,
            tin in 0u64..10_000_000, tout in 0u64..10_000_000,
        ) {
            let p = Price::new(pin, pout);
            let c = u128::from(p.cost(tin, tout));
            let exact_milli = u128::from(tin) * u128::from(pin) + u128::from(tout) * u128::from(pout);
            prop_assert!(c >= 1);
            prop_assert!(c * 1000 >= exact_milli);
            prop_assert!(c == 1 || (c - 1) * 1000 < exact_milli);
            prop_assert!(p.cost(tin + 1, tout) >= p.cost(tin, tout));
            prop_assert!(p.cost(tin, tout + 1) >= p.cost(tin, tout));
        }
    }
}
