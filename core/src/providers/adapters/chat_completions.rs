//! The Chat Completions wire format OpenAI and Perplexity both speak: `POST
//! {base}/chat/completions`, `Authorization: Bearer`, the system prompt as the first
//! `messages[]` item; the answer's text in `choices[0].message`, its tokens in
//! `usage.prompt_tokens` / `usage.completion_tokens`. Each provider says where its request
//! differs ([`RequestShape`]), how its message holds the text ([`Reply`]), and which top-level
//! fields of its own it reads (Perplexity's citations).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::UpstreamRequest;
use super::{header, is_success, malformed, parse_success, to_json, upstream_error};
use crate::providers::completion::{Completion, CompletionRequest, ProviderError, Tokens};
use crate::providers::Provider;

/// Where one provider's Chat Completions request differs from another's.
pub(crate) struct RequestShape {
    /// The provider spoken to (its URL and auth header).
    pub provider: Provider,
    /// The system prompt's role (`system`; OpenAI's reasoning models take `developer`).
    pub system_role: &'static str,
    /// The name of the output-token cap.
    pub token_cap: TokenCap,
    /// Whether `temperature` and `top_p` are sent at all.
    pub sampling: bool,
}

/// The field a request's output-token cap is sent in.
pub(crate) enum TokenCap {
    /// `max_completion_tokens` (OpenAI).
    MaxCompletionTokens,
    /// `max_tokens` (Perplexity).
    MaxTokens,
}

/// One `{role, content}` item of a `messages` array.
#[derive(Serialize)]
struct ChatMessage<'a> {
    role: &'a str,
    content: &'a str,
}

/// The request body; exactly one of the two token caps is set.
#[derive(Serialize)]
struct RequestBody<'a> {
    model: &'a str,
    messages: Vec<ChatMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
}

/// Builds the request for `req` in `shape`.
pub(crate) fn build_request(
    req: &CompletionRequest,
    base_url: &str,
    api_key: &str,
    shape: RequestShape,
) -> UpstreamRequest {
    let mut messages = Vec::with_capacity(2);
    if let Some(system) = &req.system {
        messages.push(ChatMessage {
            role: shape.system_role,
            content: system,
        });
    }
    messages.push(ChatMessage {
        role: "user",
        content: &req.prompt,
    });
    let (max_completion_tokens, max_tokens) = match shape.token_cap {
        TokenCap::MaxCompletionTokens => (Some(req.max_tokens), None),
        TokenCap::MaxTokens => (None, Some(req.max_tokens)),
    };
    let body = RequestBody {
        model: &req.model,
        messages,
        max_completion_tokens,
        max_tokens,
        temperature: req.temperature.filter(|_| shape.sampling),
        top_p: req.top_p.filter(|_| shape.sampling),
    };
    UpstreamRequest {
        url: shape.provider.completion_url(base_url, &req.model),
        headers: vec![
            shape.provider.auth_header(api_key),
            header("content-type", "application/json"),
        ],
        body: to_json(&body),
    }
}

/// A provider's `choices[].message`, and how the answer's text is read from it.
pub(crate) trait Reply: DeserializeOwned {
    /// The text of the first choice's message (`None`: no choice or no message), or what the
    /// answer lacks.
    fn text(message: Option<Self>) -> Result<String, &'static str>;
}

/// A 2xx body: the fields both providers read, and `X`, the provider's own top-level fields.
#[derive(Deserialize)]
struct ResponseBody<M, X> {
    model: Option<String>,
    choices: Option<Vec<Choice<M>>>,
    usage: Option<Usage>,
    #[serde(flatten)]
    own: X,
}

#[derive(Deserialize)]
struct Choice<M> {
    message: Option<M>,
}

/// A response's `usage`, and also a stream's usage chunk.
#[derive(Deserialize)]
pub(super) struct Usage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
}

impl Usage {
    /// The billed tokens, or what is lacking.
    pub(super) fn tokens(&self) -> Result<Tokens, &'static str> {
        let (Some(input), Some(output)) = (self.prompt_tokens, self.completion_tokens) else {
            return Err("incomplete usage token counts");
        };
        Ok(Tokens { input, output })
    }
}

/// Reads `provider`'s response: the completion (without citations) and the provider's own
/// top-level fields `X` (`()` for none), or the typed error of a non-2xx or malformed answer.
pub(crate) fn parse_response<M: Reply, X: DeserializeOwned>(
    provider: Provider,
    status: u16,
    retry_after_header: Option<&str>,
    body: &str,
) -> Result<(Completion, X), ProviderError> {
    if !is_success(status) {
        return Err(upstream_error(provider, status, retry_after_header, body));
    }
    let r: ResponseBody<M, X> = parse_success(provider, status, body)?;
    let model = r
        .model
        .ok_or_else(|| malformed(provider, status, "no model"))?;
    let message = r
        .choices
        .and_then(|c| c.into_iter().next())
        .and_then(|c| c.message);
    let content = M::text(message).map_err(|what| malformed(provider, status, what))?;
    let usage = r
        .usage
        .ok_or_else(|| malformed(provider, status, "no usage"))?;
    let tokens = usage
        .tokens()
        .map_err(|what| malformed(provider, status, what))?;
    let completion = Completion {
        model,
        content,
        citations: Vec::new(),
        tokens,
    };
    Ok((completion, r.own))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Plain {
        content: Option<String>,
    }

    impl Reply for Plain {
        fn text(message: Option<Self>) -> Result<String, &'static str> {
            message.and_then(|m| m.content).ok_or("no text")
        }
    }

    #[derive(Deserialize, Debug, PartialEq)]
    struct Own {
        note: Option<String>,
    }

    fn req() -> CompletionRequest {
        CompletionRequest {
            model: "m".into(),
            prompt: "Hi".into(),
            system: Some("Be brief.".into()),
            max_tokens: 8,
            temperature: Some(0.5),
            top_p: Some(0.9),
        }
    }

    #[test]
    fn the_shape_picks_the_system_role_the_cap_field_and_the_sampling() {
        let shape = RequestShape {
            provider: Provider::Perplexity,
            system_role: "developer",
            token_cap: TokenCap::MaxTokens,
            sampling: false,
        };
        let r = build_request(&req(), "http://h/", "k", shape);
        assert_eq!(r.url, "http://h/chat/completions");
        assert_eq!(
            r.body,
            r#"{"model":"m","messages":[{"role":"developer","content":"Be brief."},{"role":"user","content":"Hi"}],"max_tokens":8}"#
        );
        let shape = RequestShape {
            provider: Provider::OpenAi,
            system_role: "system",
            token_cap: TokenCap::MaxCompletionTokens,
            sampling: true,
        };
        let body = build_request(&req(), "http://h", "k", shape).body;
        assert!(
            body.ends_with(r#""max_completion_tokens":8,"temperature":0.5,"top_p":0.9}"#),
            "{body}"
        );
    }

    #[test]
    fn the_providers_own_fields_are_read_beside_the_common_ones() {
        let body = r#"{"model":"m","choices":[{"message":{"content":"x"}}],
            "usage":{"prompt_tokens":1,"completion_tokens":2},"note":"n"}"#;
        let (c, own) = parse_response::<Plain, Own>(Provider::OpenAi, 200, None, body).unwrap();
        assert_eq!((c.content.as_str(), c.tokens.output), ("x", 2));
        assert_eq!(own.note.as_deref(), Some("n"));
        let bad = r#"{"model":"m","choices":[{"message":{"content":"x"}}],
            "usage":{"prompt_tokens":1,"completion_tokens":2},"note":5}"#;
        assert!(parse_response::<Plain, Own>(Provider::OpenAi, 200, None, bad).is_err());
    }

    #[test]
    fn a_missing_text_is_malformed_with_the_replys_reason() {
        let body =
            r#"{"model":"m","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#;
        let e = parse_response::<Plain, ()>(Provider::Perplexity, 200, None, body).unwrap_err();
        assert_eq!(e.message, "perplexity returned HTTP 200 with no text");
    }
}
