//! Perplexity Sonar, in the shared `chat_completions` format: `POST {base}/chat/completions`
//! (no `/v1`), `Authorization: Bearer`, the system prompt as a `messages[]` item, `max_tokens`;
//! citations from the top-level `citations` (or, failing that, the URLs of `search_results`).

use serde::Deserialize;

use super::chat_completions::{self, Reply, RequestShape, TokenCap};
use super::UpstreamRequest;
use crate::providers::completion::{Completion, CompletionRequest, ProviderError};
use crate::providers::Provider;

pub fn build_request(req: &CompletionRequest, base_url: &str, api_key: &str) -> UpstreamRequest {
    let shape = RequestShape {
        provider: Provider::Perplexity,
        system_role: "system",
        token_cap: TokenCap::MaxTokens,
        sampling: true,
    };
    chat_completions::build_request(req, base_url, api_key, shape)
}

#[derive(Deserialize)]
struct Message {
    content: Option<String>,
}

impl Reply for Message {
    fn text(message: Option<Self>) -> Result<String, &'static str> {
        message
            .and_then(|m| m.content)
            .ok_or("no choices[0].message.content")
    }
}

/// Perplexity's own top-level fields: the sources of the answer (in a response, and in every
/// chunk of a stream).
#[derive(Deserialize, Default)]
pub(super) struct Sources {
    pub citations: Option<Vec<String>>,
    pub search_results: Option<Vec<SearchResult>>,
}

#[derive(Deserialize)]
pub(super) struct SearchResult {
    url: Option<String>,
}

impl Sources {
    /// The citations: `citations` if present, else the URLs of `search_results`.
    pub(super) fn into_citations(self) -> Vec<String> {
        match self.citations {
            Some(c) => c,
            None => self
                .search_results
                .unwrap_or_default()
                .into_iter()
                .filter_map(|s| s.url)
                .collect(),
        }
    }
}

pub fn parse_response(
    status: u16,
    retry_after_header: Option<&str>,
    body: &str,
) -> Result<Completion, ProviderError> {
    let (mut completion, sources) = chat_completions::parse_response::<Message, Sources>(
        Provider::Perplexity,
        status,
        retry_after_header,
        body,
    )?;
    completion.citations = sources.into_citations();
    Ok(completion)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::completion::ProviderErrorCode;

    #[test]
    fn builds_chat_completions_request_without_v1() {
        let req = CompletionRequest {
            model: "sonar".into(),
            prompt: "Hi".into(),
            system: None,
            max_tokens: 16,
            temperature: None,
            top_p: Some(0.8),
        };
        let r = build_request(&req, "http://127.0.0.1:9/perplexity", "pplx-k");
        assert_eq!(r.url, "http://127.0.0.1:9/perplexity/chat/completions");
        assert!(r
            .headers
            .contains(&("authorization".into(), "Bearer pplx-k".into())));
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"model": "sonar", "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 16, "top_p": 0.8})
        );
    }

    #[test]
    fn citations_fall_back_to_search_result_urls() {
        let body = r#"{"model":"sonar","choices":[{"message":{"content":"x [1]"}}],
            "usage":{"prompt_tokens":1,"completion_tokens":2},
            "search_results":[{"title":"t","url":"https://a.example/"},{"title":"no url"}]}"#;
        let c = parse_response(200, None, body).unwrap();
        assert_eq!(c.citations, vec!["https://a.example/".to_owned()]);
    }

    #[test]
    fn no_citations_at_all_is_empty() {
        let body = r#"{"model":"sonar","choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#;
        assert!(parse_response(200, None, body)
            .unwrap()
            .citations
            .is_empty());
    }

    #[test]
    fn missing_content_is_malformed() {
        let body = r#"{"model":"sonar","choices":[{"delta":{"content":""}}],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#;
        assert_eq!(
            parse_response(200, None, body).unwrap_err().code,
            ProviderErrorCode::UpstreamMalformed
        );
    }
}
