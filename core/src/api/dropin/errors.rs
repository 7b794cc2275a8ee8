//! The gateway's errors in the drop-in dialects' own shape, so the OpenAI and Anthropic SDKs
//! read them: the SDKs' error `type` for a status, and the envelope that carries it.

use serde_json::{json, Value};

use super::Dialect;
use crate::error::ApiError;

/// The SDKs' error `type` for a status (Anthropic's names, which OpenAI's SDK shows as is).
pub fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// The gateway's error envelope, readable by the dialect's SDK: `error.type` beside `code` and
/// `message` (OpenAI's SDK reads `error.message`, and `error.param`, set to the field a refusal
/// names); for Anthropic the top-level `"type": "error"` its SDK expects, and the code again as
/// `error.details.error_code`, which its SDK exposes as the exception's `error_code`.
pub fn error_body(dialect: Dialect, e: &ApiError) -> Value {
    let mut body = e.body();
    body["error"]["type"] = json!(error_type(e.status));
    match dialect {
        Dialect::AnthropicMessages => {
            body["error"]["details"] = json!({ "error_code": e.code });
            if let Value::Object(m) = &mut body {
                m.insert("type".into(), json!("error"));
            }
        }
        Dialect::OpenAiChat => {
            let named = ["param", "field"]
                .into_iter()
                .find_map(|k| e.extra.get(k).filter(|v| v.is_string()).cloned());
            body["error"]["param"] = named.unwrap_or(Value::Null);
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_carry_sdk_types_and_keep_code_and_message() {
        let e = ApiError::unauthorized();
        assert_eq!(
            error_body(Dialect::OpenAiChat, &e),
            json!({"error": {"code": "unauthorized", "message": "missing or invalid API key",
                "type": "authentication_error", "param": null}})
        );
        assert_eq!(
            error_body(Dialect::AnthropicMessages, &e),
            json!({"type": "error", "error": {"code": "unauthorized",
                "message": "missing or invalid API key", "type": "authentication_error",
                "details": {"error_code": "unauthorized"}}})
        );
        // The field a refusal names is OpenAI's `param`.
        let refused = ApiError::new(400, "unsupported_feature", "no").with("field", "store");
        assert_eq!(
            error_body(Dialect::OpenAiChat, &refused)["error"]["param"],
            "store"
        );
        let limited = ApiError::new(429, "rate_limited", "slow down").with("retry_after_ms", 900);
        let b = error_body(Dialect::OpenAiChat, &limited);
        assert_eq!(b["error"]["type"], "rate_limit_error");
        assert_eq!(b["error"]["retry_after_ms"], 900);
        for (status, t) in [
            (400, "invalid_request_error"),
            (402, "billing_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (413, "request_too_large"),
            (500, "api_error"),
            (503, "overloaded_error"),
            (504, "timeout_error"),
        ] {
            assert_eq!(error_type(status), t, "{status}");
        }
    }
}
