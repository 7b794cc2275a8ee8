//! Perplexity Sonar: `POST {base}/chat/completions` (no `/v1`), `Authorization: Bearer`, the
//! system prompt as a `messages[]` item, `max_tokens`; citations from the top-level `citations`
//! (or, failing that, the URLs of `search_results`).

use serde::{Deserialize, Serialize};

use super::{header, is_success, malformed, parse_success, to_json, upstream_error};
use super::{ChatMessage, UpstreamRequest};
use crate::providers::completion::{Completion, CompletionRequest, ProviderError, Tokens};
use crate::providers::Provider;

#[derive(Serialize)]
struct RequestBody<'a> {
    model: &'a str,
    messages: Vec<ChatMessage<'a>>,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
}

pub fn build_request(req: &CompletionRequest, base_url: &str, api_key: &str) -> UpstreamRequest {
    let mut messages = Vec::with_capacity(2);
    if let Some(system) = &req.system {
        messages.push(ChatMessage {
            role: "system",
            content: system,
        });
    }
    messages.push(ChatMessage {
        role: "user",
        content: &req.prompt,
    });
    let body = RequestBody {
        model: &req.model,
        messages,
        max_tokens: req.max_tokens,
        temperature: req.temperature,
        top_p: req.top_p,
    };
    UpstreamRequest {
        url: Provider::Perplexity.completion_url(base_url, &req.model),
        headers: vec![
            Provider::Perplexity.auth_header(api_key),
            header("content-type", "application/json"),
        ],
        body: to_json(&body),
    }
}

#[derive(Deserialize)]
struct ResponseBody {
    model: Option<String>,
    choices: Option<Vec<Choice>>,
    usage: Option<Usage>,
    citations: Option<Vec<String>>,
    search_results: Option<Vec<SearchResult>>,
}

#[derive(Deserialize)]
struct Choice {
    message: Option<Message>,
}

#[derive(Deserialize)]
struct Message {
    content: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct SearchResult {
    url: Option<String>,
}

pub fn parse_response(
    status: u16,
    retry_after_header: Option<&str>,
    body: &str,
) -> Result<Completion, ProviderError> {
    const P: Provider = Provider::Perplexity;
    if !is_success(status) {
        return Err(upstream_error(P, status, retry_after_header, body));
    }
    let r: ResponseBody = parse_success(P, status, body)?;
    let model = r.model.ok_or_else(|| malformed(P, status, "no model"))?;
    let content = r
        .choices
        .and_then(|c| c.into_iter().next())
        .and_then(|c| c.message)
        .and_then(|m| m.content)
        .ok_or_else(|| malformed(P, status, "no choices[0].message.content"))?;
    let usage = r.usage.ok_or_else(|| malformed(P, status, "no usage"))?;
    let (Some(input), Some(output)) = (usage.prompt_tokens, usage.completion_tokens) else {
        return Err(malformed(P, status, "incomplete usage token counts"));
    };
    let citations = match r.citations {
        Some(c) => c,
        None => r
            .search_results
            .unwrap_or_default()
            .into_iter()
            .filter_map(|s| s.url)
            .collect(),
    };
    Ok(Completion {
        model,
        content,
        citations,
        tokens: Tokens { input, output },
    })
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
