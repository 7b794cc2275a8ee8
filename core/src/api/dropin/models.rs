//! `GET /v1/models` and `GET /v1/models/{id}`: the models a drop-in dialect serves (its
//! provider's allowlist), in the shape its SDK's `models.list()` / `models.retrieve()` read:
//! OpenAI's `{"object": "list", "data": [{"id", "object": "model", "created", "owned_by"}]}`,
//! Anthropic's `{"data": [{"type": "model", "id", "display_name", "created_at"}], "has_more",
//! "first_id", "last_id"}`. Chat interfaces and agent tools list them to offer a model, and
//! check a key with them.

use serde_json::{json, Value};

use super::Dialect;
use crate::error::ApiError;
use crate::providers::models::default_allowlist;

/// When a model was made is not the gateway's to know: the epoch, in each dialect's form.
const UNKNOWN_CREATED_S: u64 = 0;
const UNKNOWN_CREATED_AT: &str = "1970-01-01T00:00:00Z";

fn model(dialect: Dialect, id: &str) -> Value {
    match dialect {
        Dialect::OpenAiChat => json!({
            "id": id,
            "object": "model",
            "created": UNKNOWN_CREATED_S,
            "owned_by": "openai",
        }),
        Dialect::AnthropicMessages => json!({
            "type": "model",
            "id": id,
            "display_name": id,
            "created_at": UNKNOWN_CREATED_AT,
        }),
    }
}

/// Every model `dialect` serves, in its list's shape (one page: the allowlists are short).
pub fn model_list(dialect: Dialect) -> Value {
    let ids = default_allowlist(dialect.provider());
    let data: Vec<Value> = ids.iter().map(|id| model(dialect, id)).collect();
    match dialect {
        Dialect::OpenAiChat => json!({"object": "list", "data": data}),
        Dialect::AnthropicMessages => json!({
            "data": data,
            "has_more": false,
            "first_id": ids.first(),
            "last_id": ids.last(),
        }),
    }
}

/// Model `id` as `dialect` serves it; 404 `model_not_found` when it does not.
pub fn model_entry(dialect: Dialect, id: &str) -> Result<Value, ApiError> {
    if default_allowlist(dialect.provider()).contains(&id) {
        Ok(model(dialect, id))
    } else {
        let id: String = id.chars().take(100).collect();
        Err(ApiError::new(
            404,
            "model_not_found",
            format!("the gateway does not serve the model `{id}` here: GET /v1/models lists those it does"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_dialect_lists_its_providers_allowlist_in_its_sdks_shape() {
        let o = model_list(Dialect::OpenAiChat);
        assert_eq!(o["object"], "list");
        let ids: Vec<&str> = o["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, default_allowlist(Dialect::OpenAiChat.provider()));
        assert_eq!(o["data"][0]["object"], "model");
        assert!(o["data"][0]["created"].is_u64());
        let a = model_list(Dialect::AnthropicMessages);
        assert_eq!(a["has_more"], false);
        let data = a["data"].as_array().unwrap();
        assert_eq!(
            data.len(),
            default_allowlist(Dialect::AnthropicMessages.provider()).len()
        );
        assert_eq!(a["first_id"], data[0]["id"]);
        assert_eq!(a["last_id"], data[data.len() - 1]["id"]);
        assert_eq!(data[0]["type"], "model");
        assert!(data[0]["created_at"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn a_model_is_retrieved_only_where_it_is_served() {
        let id = default_allowlist(Dialect::AnthropicMessages.provider())[0];
        assert_eq!(
            model_entry(Dialect::AnthropicMessages, id).unwrap()["id"],
            id
        );
        // An Anthropic model is not an OpenAI-dialect one, and a made-up one is no one's.
        let e = model_entry(Dialect::OpenAiChat, id).unwrap_err();
        assert_eq!((e.status, e.code), (404, "model_not_found"));
        assert!(model_entry(Dialect::OpenAiChat, "gpt-made-up").is_err());
    }
}
