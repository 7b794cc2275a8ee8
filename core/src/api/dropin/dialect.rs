//! Which provider API a drop-in endpoint speaks, and what each dialect is called where it
//! matters: its provider, its cache key namespace, its gateway endpoint and its upstream path.

use crate::cache::key::Namespace;
use crate::providers::Provider;

/// Which provider API a drop-in endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// OpenAI Chat Completions, `POST /v1/chat/completions`.
    OpenAiChat,
    /// Anthropic Messages, `POST /v1/messages`.
    AnthropicMessages,
}

impl Dialect {
    /// The dialect of a gateway path below `/v1/` (`["chat", "completions"]`, `["messages"]`).
    pub fn for_path(segs: &[&str]) -> Option<Dialect> {
        match segs {
            ["chat", "completions"] => Some(Dialect::OpenAiChat),
            ["messages"] => Some(Dialect::AnthropicMessages),
            _ => None,
        }
    }

    /// The dialect an answer below `/v1/` is given in: the drop-in endpoints' own
    /// ([`Dialect::for_path`]), the other paths of either SDK (`messages/...` is Anthropic's;
    /// `models` is Anthropic's when the request names an `anthropic-version`, as its SDK does,
    /// else OpenAI's; `responses`, `completions`, `embeddings` and `chat/...` are OpenAI's),
    /// so that an SDK reads even a 404 as its own error. `None`: the gateway's own routes.
    /// `anthropic_version` is asked only for a `models` path (a header read the answering
    /// endpoints do not pay for).
    pub fn of_request(segs: &[&str], anthropic_version: impl FnOnce() -> bool) -> Option<Dialect> {
        if let Some(d) = Dialect::for_path(segs) {
            return Some(d);
        }
        match segs {
            ["messages", ..] => Some(Dialect::AnthropicMessages),
            ["models"] | ["models", _] => Some(match anthropic_version() {
                true => Dialect::AnthropicMessages,
                false => Dialect::OpenAiChat,
            }),
            ["models", ..]
            | ["responses", ..]
            | ["completions"]
            | ["embeddings"]
            | ["chat", ..] => Some(Dialect::OpenAiChat),
            _ => None,
        }
    }

    /// The dialect a provider's broker forwards (only OpenAI and Anthropic have one).
    pub fn for_provider(provider: Provider) -> Option<Dialect> {
        match provider {
            Provider::OpenAi => Some(Dialect::OpenAiChat),
            Provider::Anthropic => Some(Dialect::AnthropicMessages),
            Provider::Gemini | Provider::Perplexity => None,
        }
    }

    /// The rate-limit header family its provider sends (and so its SDKs read).
    pub fn rate_headers(self) -> crate::limits::headers::Dialect {
        match self {
            Dialect::OpenAiChat => crate::limits::headers::Dialect::OpenAi,
            Dialect::AnthropicMessages => crate::limits::headers::Dialect::Anthropic,
        }
    }

    pub fn provider(self) -> Provider {
        match self {
            Dialect::OpenAiChat => Provider::OpenAi,
            Dialect::AnthropicMessages => Provider::Anthropic,
        }
    }

    /// The cache key namespace of the dialect's endpoint.
    pub fn namespace(self) -> Namespace {
        match self {
            Dialect::OpenAiChat => Namespace::Chat,
            Dialect::AnthropicMessages => Namespace::Messages,
        }
    }

    /// The gateway endpoint, as usage events and the key access log name it.
    pub fn endpoint(self) -> &'static str {
        match self {
            Dialect::OpenAiChat => "POST /v1/chat/completions",
            Dialect::AnthropicMessages => "POST /v1/messages",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_sdks_other_paths_are_answered_in_its_dialect() {
        let d = |path: &str, anthropic: bool| {
            let segs: Vec<&str> = path.split('/').collect();
            Dialect::of_request(&segs, || anthropic)
        };
        assert_eq!(d("messages", false), Some(Dialect::AnthropicMessages));
        assert_eq!(
            d("messages/count_tokens", false),
            Some(Dialect::AnthropicMessages)
        );
        assert_eq!(d("models", true), Some(Dialect::AnthropicMessages));
        assert_eq!(
            d("models/claude-haiku-4-5", true),
            Some(Dialect::AnthropicMessages)
        );
        assert_eq!(d("models", false), Some(Dialect::OpenAiChat));
        assert_eq!(d("responses", true), Some(Dialect::OpenAiChat));
        assert_eq!(d("embeddings", false), Some(Dialect::OpenAiChat));
        assert_eq!(d("usage", true), None);
        assert_eq!(d("ask", false), None);
    }

    #[test]
    fn paths_map_to_dialects() {
        assert_eq!(
            Dialect::for_path(&["chat", "completions"]),
            Some(Dialect::OpenAiChat)
        );
        assert_eq!(
            Dialect::for_path(&["messages"]),
            Some(Dialect::AnthropicMessages)
        );
        assert_eq!(Dialect::for_path(&["ask"]), None);
        assert_eq!(Dialect::for_path(&["chat"]), None);
        assert_eq!(Dialect::for_provider(Provider::Gemini), None);
        assert_eq!(Dialect::OpenAiChat.namespace().as_str(), "chat/v1");
        assert_eq!(
            Dialect::AnthropicMessages.namespace().as_str(),
            "messages/v1"
        );
    }
}
