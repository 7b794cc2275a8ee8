//! The four upstream LLM providers the gateway fans out to, by their wire names, and where each
//! one's API is and how a call to it carries the key: the one definition the adapters
//! (`/v1/ask`) and the brokers' drop-in forwarding share.

pub mod adapters;
pub mod completion;
pub mod models;

use std::borrow::Cow;

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

    /// The path of the provider's text-generation endpoint below its base URL, in the
    /// convention of [`adapters::default_base_url`]: OpenAI's base ends in `/v1`, the others'
    /// do not. Only Gemini's path names the model (percent-encoded).
    pub fn completion_path(self, model: &str) -> Cow<'static, str> {
        match self {
            Provider::OpenAi | Provider::Perplexity => Cow::Borrowed("/chat/completions"),
            Provider::Anthropic => Cow::Borrowed("/v1/messages"),
            Provider::Gemini => Cow::Owned(format!(
                "/v1beta/models/{}:generateContent",
                path_segment(model)
            )),
        }
    }

    /// The endpoint's URL: `base_url` (a trailing `/` ignored) and [`Self::completion_path`].
    pub fn completion_url(self, base_url: &str, model: &str) -> String {
        adapters::join_url(base_url, &self.completion_path(model))
    }

    /// The path of the streamed text-generation endpoint: the same as
    /// [`Self::completion_path`] (the body asks for the stream), except Gemini's, which is
    /// `:streamGenerateContent?alt=sse` (server-sent events, not one JSON array).
    pub fn stream_completion_path(self, model: &str) -> Cow<'static, str> {
        match self {
            Provider::Gemini => Cow::Owned(format!(
                "/v1beta/models/{}:streamGenerateContent?alt=sse",
                path_segment(model)
            )),
            _ => self.completion_path(model),
        }
    }

    /// The streamed endpoint's URL: `base_url` and [`Self::stream_completion_path`].
    pub fn stream_completion_url(self, base_url: &str, model: &str) -> String {
        adapters::join_url(base_url, &self.stream_completion_path(model))
    }

    /// The header that carries the provider key `key` (lowercase name; never log it).
    pub fn auth_header(self, key: &str) -> (String, String) {
        match self {
            Provider::OpenAi | Provider::Perplexity => {
                ("authorization".to_owned(), format!("Bearer {key}"))
            }
            Provider::Anthropic => ("x-api-key".to_owned(), key.to_owned()),
            Provider::Gemini => ("x-goog-api-key".to_owned(), key.to_owned()),
        }
    }
}

/// A model name as a URL path segment: unreserved characters kept, the rest percent-encoded.
fn path_segment(model: &str) -> String {
    let mut out = String::with_capacity(model.len());
    for b in model.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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

    #[test]
    fn each_endpoint_sits_below_its_base_url_with_one_slash() {
        for p in Provider::ALL {
            let url = p.completion_url(adapters::default_base_url(p), "m");
            let path = p.completion_path("m");
            assert!(url.starts_with("https://"), "{url}");
            assert!(url.ends_with(&*path) && !url.contains("//v"), "{url}");
        }
        assert_eq!(
            Provider::OpenAi.completion_url(adapters::default_base_url(Provider::OpenAi), "m"),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(
            Provider::Anthropic.completion_url("http://mock/anthropic/", "m"),
            "http://mock/anthropic/v1/messages"
        );
    }

    #[test]
    fn only_gemini_names_the_model_and_encodes_it() {
        assert_eq!(
            Provider::Gemini.completion_path("a/b?c"),
            "/v1beta/models/a%2Fb%3Fc:generateContent"
        );
        assert_eq!(
            Provider::Gemini.completion_path("gemini-2.5-flash_x.y~z"),
            "/v1beta/models/gemini-2.5-flash_x.y~z:generateContent"
        );
        assert_eq!(Provider::OpenAi.completion_path("a/b"), "/chat/completions");
    }

    #[test]
    fn only_gemini_streams_at_another_path() {
        assert_eq!(
            Provider::Gemini.stream_completion_url("http://h/gemini/", "a/b"),
            "http://h/gemini/v1beta/models/a%2Fb:streamGenerateContent?alt=sse"
        );
        for p in [Provider::Anthropic, Provider::OpenAi, Provider::Perplexity] {
            assert_eq!(p.stream_completion_path("m"), p.completion_path("m"), "{p}");
        }
    }

    #[test]
    fn the_key_travels_in_each_providers_own_header() {
        let headers: Vec<(String, String)> =
            Provider::ALL.iter().map(|p| p.auth_header("k-1")).collect();
        let expected = [
            ("x-api-key", "k-1"),
            ("x-goog-api-key", "k-1"),
            ("authorization", "Bearer k-1"),
            ("authorization", "Bearer k-1"),
        ];
        for ((name, value), (n, v)) in headers.iter().zip(expected) {
            assert_eq!((name.as_str(), value.as_str()), (n, v));
        }
    }
}
