//! OpenAI Chat Completions, in the shared `chat_completions` format: `POST
//! {base}/chat/completions`, `Authorization: Bearer`, the system prompt as the first
//! `messages[]` item, `max_completion_tokens`; a refusal's text is the answer when the content
//! is null.
//!
//! Reasoning models (`o1`, `o3`, `o4` and `gpt-5` families) take the system prompt as a
//! `developer` message and refuse `temperature` / `top_p` other than the default, so both are
//! left out for them: a fan-out with one temperature for every provider still gets an answer.

use serde::Deserialize;

use super::chat_completions::{self, Reply, RequestShape, TokenCap};
use super::UpstreamRequest;
use crate::providers::completion::{Completion, CompletionRequest, ProviderError};
use crate::providers::Provider;

/// Whether `model` is a reasoning model (developer role, no sampling parameters).
pub fn is_reasoning_model(model: &str) -> bool {
    ["o1", "o3", "o4"]
        .iter()
        .any(|f| model == *f || model.strip_prefix(f).is_some_and(|r| r.starts_with('-')))
        || model == "gpt-5"
        || model.starts_with("gpt-5-")
        || model.starts_with("gpt-5.")
}

pub fn build_request(req: &CompletionRequest, base_url: &str, api_key: &str) -> UpstreamRequest {
    let reasoning = is_reasoning_model(&req.model);
    let shape = RequestShape {
        provider: Provider::OpenAi,
        system_role: if reasoning { "developer" } else { "system" },
        token_cap: TokenCap::MaxCompletionTokens,
        sampling: !reasoning,
    };
    chat_completions::build_request(req, base_url, api_key, shape)
}

#[derive(Deserialize)]
struct Message {
    content: Option<String>,
    refusal: Option<String>,
}

impl Reply for Message {
    fn text(message: Option<Self>) -> Result<String, &'static str> {
        let message = message.ok_or("no choices[0].message")?;
        // A refusal comes with a null content and the refusal text beside it.
        message
            .content
            .or(message.refusal)
            .ok_or("no choices[0].message.content")
    }
}

pub fn parse_response(
    status: u16,
    retry_after_header: Option<&str>,
    body: &str,
) -> Result<Completion, ProviderError> {
    chat_completions::parse_response::<Message, ()>(
        Provider::OpenAi,
        status,
        retry_after_header,
        body,
    )
    .map(|(completion, ())| completion)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::completion::ProviderErrorCode;

    fn req(model: &str) -> CompletionRequest {
        CompletionRequest {
            model: model.into(),
            prompt: "Hi".into(),
            system: Some("Be brief.".into()),
            max_tokens: 64,
            temperature: Some(0.2),
            top_p: Some(0.9),
        }
    }

    #[test]
    fn builds_chat_completions_request() {
        let r = build_request(
            &req("gpt-4o-mini"),
            "http://127.0.0.1:9/openai/v1",
            "sk-test",
        );
        assert_eq!(r.url, "http://127.0.0.1:9/openai/v1/chat/completions");
        assert!(r
            .headers
            .contains(&("authorization".into(), "Bearer sk-test".into())));
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"model": "gpt-4o-mini", "messages": [
                {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
                "max_completion_tokens": 64, "temperature": 0.2, "top_p": 0.9})
        );
    }

    #[test]
    fn reasoning_models_get_developer_role_and_no_sampling_params() {
        for model in ["o3-mini", "o4-mini", "gpt-5", "gpt-5-mini"] {
            let r = build_request(&req(model), "http://h", "k");
            let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
            assert_eq!(body["messages"][0]["role"], "developer", "{model}");
            assert!(body.get("temperature").is_none() && body.get("top_p").is_none());
        }
        assert!(!is_reasoning_model("gpt-4o"));
        assert!(!is_reasoning_model("o3x"));
    }

    #[test]
    fn no_system_means_one_user_message() {
        let mut q = req("gpt-4o");
        q.system = None;
        q.temperature = None;
        q.top_p = None;
        let body: serde_json::Value =
            serde_json::from_str(&build_request(&q, "http://h", "k").body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}],
                "max_completion_tokens": 64})
        );
    }

    #[test]
    fn refusal_is_returned_as_content() {
        let body = r#"{"model":"gpt-4o","choices":[{"message":{"content":null,"refusal":"I can't help with that."}}],"usage":{"prompt_tokens":5,"completion_tokens":6}}"#;
        assert_eq!(
            parse_response(200, None, body).unwrap().content,
            "I can't help with that."
        );
    }

    #[test]
    fn missing_fields_are_malformed() {
        for body in [
            "",
            "{",
            "[]",
            r#"{"model":"m","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#,
            r#"{"model":"m","choices":[{"message":{"content":"x"}}]}"#,
            r#"{"choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#,
            r#"{"model":"m","choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":1}}"#,
            r#"{"model":"m","choices":[{"message":{"content":7}}],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#,
        ] {
            let e = parse_response(200, None, body).unwrap_err();
            assert_eq!(e.code, ProviderErrorCode::UpstreamMalformed, "{body}");
            assert_eq!(e.upstream_status, Some(200));
        }
    }
}
