//! A field named twice, at any depth, is refused with a 400 before any upstream call: the
//! gateway would key the cache on the last value while a provider may read the first.

use integration_tests::{nonce, send, stack, Reply, Stack, Value};

/// `body` sent as it is (a JSON value could not name a field twice).
async fn post_raw(s: &Stack, path: &str, key: &str, body: String) -> Reply {
    send(
        s.client
            .post(s.url(path))
            .bearer_auth(key)
            .header("Content-Type", "application/json")
            .body(body),
    )
    .await
}

fn mock_total(calls: &Value) -> u64 {
    calls["total"].as_u64().expect("total")
}

#[tokio::test]
async fn an_ask_naming_a_model_twice_inside_params_is_400() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let body = format!(
        r#"{{"prompt":"twice {n}","providers":["openai"],"params":{{"models":{{"openai":"gpt-4o-mini","openai":"gpt-4o"}}}}}}"#
    );
    let r = post_raw(s, "/v1/ask", &key, body).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let v = r.json();
    assert_eq!(v["error"]["code"], "invalid_request", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("names a field twice"),
        "{v}"
    );
    assert_eq!(v["error"]["field"], "params.models.openai", "{v}");
    // Spelled with an escape it is the same name.
    let body = format!(
        r#"{{"prompt":"twice escaped {n}","providers":["openai"],"params":{{"models":{{"openai":"gpt-4o-mini","\u006fpenai":"gpt-4o"}}}}}}"#
    );
    let r = post_raw(s, "/v1/ask", &key, body).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "invalid_request");
    assert_eq!(mock_total(&s.mock_calls(&n).await), 0, "no upstream call");
}

#[tokio::test]
async fn a_chat_completion_naming_content_twice_inside_a_message_is_400_in_openai_shape() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let body = format!(
        r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"a {n}","content":"b {n}"}}]}}"#
    );
    let r = post_raw(s, "/v1/chat/completions", &key, body).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let v = r.json();
    assert_eq!(
        (
            v["error"]["code"].as_str(),
            v["error"]["type"].as_str(),
            v["error"]["field"].as_str()
        ),
        (
            Some("invalid_request"),
            Some("invalid_request_error"),
            Some("messages[0].content")
        ),
        "{v}"
    );
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("names a field twice"));
    assert_eq!(mock_total(&s.mock_calls(&n).await), 0, "no upstream call");
}
