//! Google Gemini generateContent: `POST {base}/v1beta/models/{model}:generateContent`,
//! `x-goog-api-key`, `contents`, `systemInstruction`, `generationConfig`; the answer is the join
//! of the first candidate's text parts (thought parts left out), the model is `modelVersion`.
//!
//! Output tokens are `candidatesTokenCount` plus `thoughtsTokenCount`, as Gemini bills them. A
//! 200 with no candidate and a `promptFeedback.blockReason` is the prompt being blocked, and
//! becomes `upstream_bad_request`.

use serde::{Deserialize, Serialize};

use super::UpstreamRequest;
use super::{header, is_success, malformed, parse_success, to_json, upstream_error};
use crate::providers::completion::{
    Completion, CompletionRequest, ProviderError, ProviderErrorCode, Tokens,
};
use crate::providers::Provider;
use crate::scrub::excerpt;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RequestBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<SystemInstruction<'a>>,
    contents: [Content<'a>; 1],
    generation_config: GenerationConfig,
}

#[derive(Serialize)]
struct SystemInstruction<'a> {
    parts: [TextPart<'a>; 1],
}

#[derive(Serialize)]
struct Content<'a> {
    role: &'static str,
    parts: [TextPart<'a>; 1],
}

#[derive(Serialize)]
struct TextPart<'a> {
    text: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig {
    max_output_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
}

pub fn build_request(req: &CompletionRequest, base_url: &str, api_key: &str) -> UpstreamRequest {
    let body = RequestBody {
        system_instruction: req.system.as_deref().map(|text| SystemInstruction {
            parts: [TextPart { text }],
        }),
        contents: [Content {
            role: "user",
            parts: [TextPart { text: &req.prompt }],
        }],
        generation_config: GenerationConfig {
            max_output_tokens: req.max_tokens,
            temperature: req.temperature,
            top_p: req.top_p,
        },
    };
    UpstreamRequest {
        url: Provider::Gemini.completion_url(base_url, &req.model),
        headers: vec![
            Provider::Gemini.auth_header(api_key),
            header("content-type", "application/json"),
        ],
        body: to_json(&body),
    }
}

/// A `generateContent` body, and also one chunk of a `streamGenerateContent` stream.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ResponseBody {
    pub candidates: Option<Vec<Candidate>>,
    pub usage_metadata: Option<UsageMetadata>,
    pub model_version: Option<String>,
    pub prompt_feedback: Option<PromptFeedback>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Candidate {
    pub content: Option<CandidateContent>,
    pub finish_reason: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct CandidateContent {
    pub parts: Option<Vec<Part>>,
}

#[derive(Deserialize)]
pub(super) struct Part {
    text: Option<String>,
    thought: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UsageMetadata {
    prompt_token_count: Option<u64>,
    candidates_token_count: Option<u64>,
    thoughts_token_count: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PromptFeedback {
    pub block_reason: Option<String>,
}

/// The answer's text in a candidate's `content`: its text parts joined, thought parts left
/// out. A candidate stopped for safety may carry no content: that is no text.
pub(super) fn visible_text(content: Option<CandidateContent>) -> String {
    content
        .and_then(|c| c.parts)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.thought != Some(true))
        .filter_map(|p| p.text)
        .collect()
}

/// The tokens of a `usageMetadata`, or what it lacks.
pub(super) fn usage_tokens(usage: UsageMetadata) -> Result<Tokens, &'static str> {
    let input = usage
        .prompt_token_count
        .ok_or("no usageMetadata.promptTokenCount")?;
    // Gemini leaves a zero count out.
    let output = usage
        .candidates_token_count
        .unwrap_or(0)
        .saturating_add(usage.thoughts_token_count.unwrap_or(0));
    Ok(Tokens { input, output })
}

/// The error of a 200 with no candidate: the prompt blocked, if `promptFeedback` says so.
pub(super) fn blocked(
    status: Option<u16>,
    feedback: Option<PromptFeedback>,
) -> Option<ProviderError> {
    let reason = feedback.and_then(|f| f.block_reason)?;
    Some(ProviderError {
        code: ProviderErrorCode::UpstreamBadRequest,
        message: format!("gemini blocked the prompt ({})", excerpt(&reason, 40)),
        upstream_status: status,
        retry_after_ms: None,
    })
}

pub fn parse_response(
    status: u16,
    retry_after_header: Option<&str>,
    body: &str,
) -> Result<Completion, ProviderError> {
    const P: Provider = Provider::Gemini;
    if !is_success(status) {
        return Err(upstream_error(P, status, retry_after_header, body));
    }
    let r: ResponseBody = parse_success(P, status, body)?;
    let Some(candidate) = r.candidates.and_then(|c| c.into_iter().next()) else {
        return Err(blocked(Some(status), r.prompt_feedback)
            .unwrap_or_else(|| malformed(P, status, "no candidates")));
    };
    let model = r
        .model_version
        .ok_or_else(|| malformed(P, status, "no modelVersion"))?;
    let content = visible_text(candidate.content);
    let usage = r
        .usage_metadata
        .ok_or_else(|| malformed(P, status, "no usageMetadata"))?;
    let tokens = usage_tokens(usage).map_err(|what| malformed(P, status, what))?;
    Ok(Completion {
        model,
        content,
        citations: Vec::new(),
        tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(model: &str) -> CompletionRequest {
        CompletionRequest {
            model: model.into(),
            prompt: "Hi".into(),
            system: Some("Sys".into()),
            max_tokens: 10,
            temperature: None,
            top_p: Some(0.5),
        }
    }

    #[test]
    fn builds_generate_content_request() {
        let r = build_request(
            &req("gemini-2.5-flash"),
            "http://127.0.0.1:9/gemini/",
            "g-key",
        );
        assert_eq!(
            r.url,
            "http://127.0.0.1:9/gemini/v1beta/models/gemini-2.5-flash:generateContent"
        );
        assert!(r
            .headers
            .contains(&("x-goog-api-key".into(), "g-key".into())));
        assert!(!r.url.contains("key="));
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"systemInstruction": {"parts": [{"text": "Sys"}]},
                "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
                "generationConfig": {"maxOutputTokens": 10, "topP": 0.5}})
        );
    }

    #[test]
    fn model_is_percent_encoded_in_the_path() {
        let r = build_request(&req("a/b?c"), "http://h", "k");
        assert_eq!(r.url, "http://h/v1beta/models/a%2Fb%3Fc:generateContent");
    }

    #[test]
    fn joins_parts_skips_thoughts_and_adds_thinking_tokens() {
        let body = r#"{"candidates":[{"content":{"parts":[{"text":"plan","thought":true},{"text":"Hel"},{"text":"lo"}],"role":"model"},"finishReason":"STOP"}],
            "usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":2,"thoughtsTokenCount":30,"totalTokenCount":36},
            "modelVersion":"gemini-2.5-pro"}"#;
        let c = parse_response(200, None, body).unwrap();
        assert_eq!(c.content, "Hello");
        assert_eq!(c.model, "gemini-2.5-pro");
        assert_eq!(
            c.tokens,
            Tokens {
                input: 4,
                output: 32
            }
        );
    }

    #[test]
    fn safety_stop_without_content_is_an_empty_answer() {
        let body = r#"{"candidates":[{"finishReason":"SAFETY"}],"usageMetadata":{"promptTokenCount":4},"modelVersion":"gemini-2.5-flash"}"#;
        let c = parse_response(200, None, body).unwrap();
        assert_eq!(c.content, "");
        assert_eq!(
            c.tokens,
            Tokens {
                input: 4,
                output: 0
            }
        );
    }

    #[test]
    fn blocked_prompt_is_a_bad_request() {
        let body = r#"{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":4},"modelVersion":"gemini-2.5-flash"}"#;
        let e = parse_response(200, None, body).unwrap_err();
        assert_eq!(e.code, ProviderErrorCode::UpstreamBadRequest);
        assert_eq!(e.message, "gemini blocked the prompt (SAFETY)");
    }

    #[test]
    fn missing_fields_are_malformed() {
        for body in [
            r#"{"candidates":[],"usageMetadata":{"promptTokenCount":1},"modelVersion":"m"}"#,
            r#"{"candidates":[{"content":{"parts":[{"text":"x"}]}}],"modelVersion":"m"}"#,
            r#"{"candidates":[{"content":{"parts":[{"text":"x"}]}}],"usageMetadata":{"promptTokenCount":1}}"#,
            r#"{"candidates":[{"content":{"parts":[{"text":"x"}]}}],"usageMetadata":{},"modelVersion":"m"}"#,
        ] {
            assert_eq!(
                parse_response(200, None, body).unwrap_err().code,
                ProviderErrorCode::UpstreamMalformed,
                "{body}"
            );
        }
    }

    #[test]
    fn api_key_invalid_400_is_auth_failed() {
        let body = r#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID"}]}}"#;
        let e = parse_response(400, None, body).unwrap_err();
        assert_eq!(e.code, ProviderErrorCode::UpstreamAuthFailed);
        let other = r#"{"error":{"code":400,"message":"Invalid JSON payload","status":"INVALID_ARGUMENT"}}"#;
        assert_eq!(
            parse_response(400, None, other).unwrap_err().code,
            ProviderErrorCode::UpstreamBadRequest
        );
    }
}
