//! The four upstream LLM providers the gateway fans out to, by their wire names.

pub mod adapters;
pub mod completion;
pub mod models;

use serde::{Deserialize, Serialize};

/// An upstream LLM provider. Ordering (derive) is the wire name's alphabetical order,
/// so a sorted `Vec<Provider>` is also sorted by name, as the cache key requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Anthropic,
    Gemini,
    #[serde(rename = "openai")]
    OpenAi,
    Perplexity,
}

impl Provider {
    pub const ALL: [Provider; 4] = [
        Provider::Anthropic,
        Provider::Gemini,
        Provider::OpenAi,
        Provider::Perplexity,
    ];

    /// The wire name used in requests, responses, cache keys and binding names.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Anthropic => "anthropic",
            Provider::Gemini => "gemini",
            Provider::OpenAi => "openai",
            Provider::Perplexity => "perplexity",
        }
    }

    /// Parses a wire name exactly (case-sensitive, as the contract spells them).
    pub fn parse(name: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// The model used when the caller names none.
    pub fn default_model(self) -> &'static str {
        match self {
            Provider::Anthropic => "claude-haiku-4-5",
            Provider::Gemini => "gemini-2.5-flash",
            Provider::OpenAi => "gpt-4o-mini",
            Provider::Perplexity => "sonar",
        }
    }

    /// The name of the gateway's service binding to this provider's broker.
    pub fn binding(self) -> &'static str {
        match self {
            Provider::Anthropic => "BROKER_ANTHROPIC",
            Provider::Gemini => "BROKER_GEMINI",
            Provider::OpenAi => "BROKER_OPENAI",
            Provider::Perplexity => "BROKER_PERPLEXITY",
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derive_order_matches_name_order() {
        // A shuffled copy sorted with the derived `Ord` comes out in the names' string order.
        let mut shuffled = Provider::ALL;
        shuffled.reverse();
        shuffled.swap(0, 2);
        let mut by_ord = shuffled;
        by_ord.sort();
        let mut names = shuffled.map(Provider::as_str);
        names.sort();
        assert_eq!(by_ord.map(Provider::as_str), names);
        assert_eq!(
            by_ord,
            Provider::ALL,
            "ALL lists the providers in that order"
        );
        for a in Provider::ALL {
            for b in Provider::ALL {
                assert_eq!(a.cmp(&b), a.as_str().cmp(b.as_str()), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn parse_round_trips_and_is_case_sensitive() {
        for p in Provider::ALL {
            assert_eq!(Provider::parse(p.as_str()), Some(p));
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{p}\""));
        }
        assert_eq!(Provider::parse("OpenAI"), None);
        assert_eq!(Provider::parse("mistral"), None);
    }
}
