//! The drop-in endpoints (`/v1/chat/completions`, `/v1/messages`) and bring-your-own provider
//! keys, through the public API: verbatim forwarding (checked against what the mock received),
//! the cache and its scopes, SDK-readable errors, test keys, BYOK sealing, audit and isolation,
//! and the official Python SDKs run against the live stack.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use integration_tests::{json, nonce, reqwest::Method, root, send, stack, Reply, Stack, Value};

async fn dropin(s: &Stack, path: &str, key: &str, body: &Value, headers: &[(&str, &str)]) -> Reply {
    let mut rb = s.client.post(s.url(path)).bearer_auth(key).json(body);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    send(rb).await
}

async fn chat(s: &Stack, key: &str, body: &Value) -> Reply {
    dropin(s, "/v1/chat/completions", key, body, &[]).await
}

async fn messages(s: &Stack, key: &str, body: &Value) -> Reply {
    dropin(s, "/v1/messages", key, body, &[]).await
}

fn chat_body(prompt: &str) -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}], "max_completion_tokens": 64})
}

fn messages_body(prompt: &str) -> Value {
    json!({"model": "claude-haiku-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": prompt}]})
}

/// The last raw request the mock received whose text contains `contains`.
async fn mock_last(s: &Stack, contains: &str) -> Option<Value> {
    let r = send(
        s.client
            .get(format!("{}/__mock/last", s.mock))
            .query(&[("contains", contains)]),
    )
    .await;
    (r.status == 200).then(|| r.json())
}

fn total(calls: &Value) -> u64 {
    calls["total"].as_u64().expect("total")
}

/// Headers the gateway must never send upstream: its metadata, the broker secret, our key.
fn assert_no_gateway_metadata(headers: &Value, gateway_key: &str) {
    let h = headers.as_object().expect("headers");
    for name in h.keys() {
        assert!(
            !name.starts_with("x-gw-"),
            "gateway metadata header upstream: {name}"
        );
        assert_ne!(name, "x-broker-secret");
        assert_ne!(name, "x-cache-scope");
    }
    let all = headers.to_string();
    assert!(
        !all.contains(gateway_key) && !all.contains("lvk_"),
        "our key reached the provider: {all}"
    );
}

/// An upstream answering a status no response can carry a body with (a 304, from a proxy in the
/// way: no provider sends one) is a 502 `upstream_malformed`, and the broker stays up for the
/// next call (building its answer with that status panicked it, failing every call in flight).
#[tokio::test]
async fn an_upstream_304_is_malformed_and_the_broker_stays_up() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    for stream in [false, true] {
        let mut body = chat_body(&format!("[[mock:openai=304]] not modified {n} {stream}"));
        body["stream"] = json!(stream);
        let r = chat(s, &key, &body).await;
        assert_eq!(r.status, 502, "stream {stream}: {}", r.text);
        assert_eq!(
            r.json()["error"]["code"],
            "upstream_malformed",
            "{}",
            r.text
        );
        let after = chat(s, &key, &chat_body(&format!("after the 304 {n} {stream}"))).await;
        assert_eq!(after.status, 200, "{}", after.text);
    }
}

/// A token cap sent as `null` (OpenAI takes it as "no cap") is answered, its value replaced by
/// the tier's cap in what is forwarded: added beside it, the field would be named twice, which
/// the broker refuses.
#[tokio::test]
async fn a_null_token_cap_is_replaced_by_the_tiers_cap() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    for stream in [false, true] {
        let n = nonce();
        let body = json!({"model": "gpt-4o-mini", "max_completion_tokens": null, "stream": stream,
            "messages": [{"role": "user", "content": format!("null cap {n}")}]});
        let r = chat(s, &key, &body).await;
        assert_eq!(r.status, 200, "stream {stream}: {}", r.text);
        let sent = mock_last(s, &format!("null cap {n}"))
            .await
            .expect("the mock was called");
        assert!(
            sent["body"]["max_completion_tokens"]
                .as_u64()
                .is_some_and(|c| c > 0),
            "{sent}"
        );
    }
}

#[tokio::test]
async fn chat_completions_are_forwarded_verbatim_and_answered_in_openai_shape() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let body = json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": format!("Capital of France? {n}")}]}
        ],
        "max_completion_tokens": 50,
        "temperature": 0.25,
        "top_p": 0.9,
        "seed": 42,
        "user": "end-user-7",
        "metadata": {"trace": "abc"},
        "stop": ["\n\n"],
        "n": 1,
        "stream": false
    });
    let r = chat(s, &key, &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert!(
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("openai"),
        "{v}"
    );
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    for h in [
        "x-usage-input-tokens",
        "x-usage-output-tokens",
        "x-passthrough-origin",
    ] {
        assert!(r.header(h).is_none(), "internal header {h} leaked");
    }
    assert!(r.header("x-request-id").unwrap().starts_with("req_"));
    assert!(r.header("x-ratelimit-limit").is_some());

    let got = mock_last(s, &n).await.expect("the mock saw the call");
    assert_eq!(got["path"], "/openai/v1/chat/completions");
    assert_eq!(
        got["body"], body,
        "the body reached the provider field for field"
    );
    assert!(got["headers"]["authorization"]
        .as_str()
        .unwrap()
        .starts_with("Bearer sk-mock-openai"));
    assert_no_gateway_metadata(&got["headers"], &key);
    assert_eq!(total(&s.mock_calls(&n).await), 1);
    // Byte for byte: a body with its own key order and spacing arrives as it was sent.
    let n = nonce();
    let raw = format!(
        "{{ \"messages\" : [{{\"content\":\"Verbatim? {n}\",  \"role\":\"user\"}}],\n  \
         \"seed\":7, \"model\":\"gpt-4o-mini\" ,\"max_completion_tokens\": 20 }}"
    );
    let sent = send(
        s.client
            .post(s.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .header("Content-Type", "application/json")
            .body(raw.clone()),
    )
    .await;
    assert_eq!(sent.status, 200, "{}", sent.text);
    let got_raw = mock_last(s, &format!("Verbatim? {n}")).await.expect("seen");
    assert_eq!(got_raw["raw"], raw.as_str(), "the bytes were re-encoded");
}

#[tokio::test]
async fn messages_are_forwarded_verbatim_and_answered_in_anthropic_shape() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let body = json!({
        "model": "claude-haiku-4-5",
        "max_tokens": 40,
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi."},
            {"role": "user", "content": format!("Capital of Italy? {n}")}
        ],
        "temperature": 0.5,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u-1"},
        // Effort and structured outputs (the SDK's `messages.parse`), and the top-level
        // prompt-caching marker: billed as ordinary tokens, so served.
        "output_config": {"effort": "low", "format": {"type": "json_schema",
            "schema": {"type": "object", "properties": {"city": {"type": "string"}}}}},
        "cache_control": {"type": "ephemeral"}
    });
    // The Anthropic SDK sends x-api-key and its API version.
    let rb = s
        .client
        .post(s.url("/v1/messages"))
        .header("x-api-key", &key)
        .header("anthropic-version", "2023-06-01")
        .json(&body);
    let r = send(rb).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(
        (v["type"].as_str(), v["role"].as_str()),
        (Some("message"), Some("assistant"))
    );
    assert_eq!(v["content"][0]["type"], "text");
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0);
    // The id the Anthropic SDK reads (`request-id`) is the gateway's.
    assert_eq!(r.header("request-id"), r.header("x-request-id"));
    assert!(r.header("request-id").unwrap().starts_with("req_"));

    let got = mock_last(s, &n).await.expect("the mock saw the call");
    assert_eq!(got["path"], "/anthropic/v1/messages");
    assert_eq!(got["body"], body);
    assert_eq!(got["headers"]["anthropic-version"], "2023-06-01");
    assert!(got["headers"]["x-api-key"]
        .as_str()
        .unwrap()
        .starts_with("sk-ant-mock"));
    assert_no_gateway_metadata(&got["headers"], &key);
}

#[tokio::test]
async fn an_inline_image_larger_than_the_prompt_limit_is_served() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    // About 40 KB of base64 image (the prompt limit is 20 KB of text) and a question.
    let data = "iVBO".repeat(10_240);
    let question = format!("What is in this picture? {n}");
    let m = json!({"model": "claude-haiku-4-5", "max_tokens": 40, "messages": [{"role": "user",
        "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png",
            "data": data}}, {"type": "text", "text": question}]}]});
    let r = messages(s, &key, &m).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["type"], "message", "{}", r.text);
    let c = json!({"model": "gpt-4o-mini", "max_completion_tokens": 40, "messages": [{"role": "user",
        "content": [{"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{data}")}},
            {"type": "text", "text": question}]}]});
    let r = chat(s, &key, &c).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["object"], "chat.completion", "{}", r.text);
    assert_eq!(s.mock_calls(&n).await["total"], 2);
}

#[tokio::test]
async fn a_repeat_is_a_cache_hit_with_no_new_upstream_call() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    for (path, body) in [
        (
            "/v1/chat/completions",
            chat_body(&format!("repeat me {}", nonce())),
        ),
        (
            "/v1/messages",
            messages_body(&format!("repeat me {}", nonce())),
        ),
    ] {
        let prompt = body["messages"][0]["content"].as_str().unwrap().to_string();
        let first = dropin(s, path, &key, &body, &[]).await;
        assert_eq!(first.status, 200, "{}", first.text);
        assert_eq!(
            first.header("cache-status").unwrap(),
            "edge-gateway; fwd=uri-miss; stored"
        );
        let cache_key = first.header("x-cache-key").unwrap();
        assert_eq!(cache_key.len(), 64);
        assert_eq!(total(&s.mock_calls(&prompt).await), 1);

        // Cache writes happen after the response: give them a moment.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let second = dropin(s, path, &key, &body, &[]).await;
        assert_eq!(second.status, 200, "{}", second.text);
        assert!(
            second
                .header("cache-status")
                .unwrap()
                .contains("; hit; detail=l"),
            "{path}"
        );
        assert_eq!(second.header("x-cache-key").unwrap(), cache_key);
        assert_eq!(
            second.json(),
            first.json(),
            "the provider's body, as it was"
        );
        assert!(
            second.header("x-ratelimit-remaining").is_none(),
            "a hit takes no bucket token"
        );
        assert_eq!(
            total(&s.mock_calls(&prompt).await),
            1,
            "{path}: no new upstream call"
        );

        // no-store: neither read nor written; no-cache: not read, stored again.
        let bypass = dropin(s, path, &key, &body, &[("cache-control", "no-store")]).await;
        assert_eq!(
            bypass.header("cache-status").unwrap(),
            "edge-gateway; fwd=request; detail=no-store"
        );
        let refresh = dropin(s, path, &key, &body, &[("cache-control", "no-cache")]).await;
        assert_eq!(
            refresh.header("cache-status").unwrap(),
            "edge-gateway; fwd=request; stored"
        );
        assert_eq!(total(&s.mock_calls(&prompt).await), 3);
    }
}

#[tokio::test]
async fn drop_in_calls_are_metered_and_charged_like_ask() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let c = chat(s, &key, &chat_body(&format!("metered {n}"))).await;
    assert_eq!(c.status, 200, "{}", c.text);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let hit = chat(s, &key, &chat_body(&format!("metered {n}"))).await;
    assert!(hit.header("cache-status").unwrap().contains("hit"));
    let m = messages(s, &key, &messages_body(&format!("metered {n}"))).await;
    assert_eq!(m.status, 200, "{}", m.text);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let usage = s.get("/v1/usage", Some(&key)).await;
    assert_eq!(usage.status, 200, "{}", usage.text);
    let events = usage.json()["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 3, "{events:?}");
    let (msg, hit_e, miss) = (&events[0], &events[1], &events[2]);
    assert_eq!(miss["endpoint"], "POST /v1/chat/completions");
    assert_eq!(miss["providers"], json!(["openai"]));
    assert_eq!(miss["cache"]["status"], "miss");
    let cv = c.json();
    assert_eq!(miss["tokens"]["input"], cv["usage"]["prompt_tokens"]);
    assert_eq!(miss["tokens"]["output"], cv["usage"]["completion_tokens"]);
    assert!(miss["credits"].as_u64().unwrap() >= 1);
    assert_eq!(
        (hit_e["cache"]["status"].as_str(), hit_e["credits"].as_u64()),
        (Some("hit"), Some(1))
    );
    assert_eq!(msg["endpoint"], "POST /v1/messages");
    assert_eq!(msg["tokens"]["input"], m.json()["usage"]["input_tokens"]);
    assert!(!usage.text.contains(&n), "no prompt text in usage");

    let spent: u64 = events.iter().map(|e| e["credits"].as_u64().unwrap()).sum();
    let balance = s.get("/v1/account", Some(&key)).await.json()["credits_balance"]
        .as_u64()
        .unwrap();
    assert_eq!(balance, 1_000_000 - spent, "settled at the actual cost");
}

#[tokio::test]
async fn the_cache_scope_header_separates_private_from_shared() {
    let s = &stack();
    let (_, a) = s.live_key().await;
    let (_, b) = s.live_key().await;
    let n = nonce();
    let body = chat_body(&format!("scoped {n}"));
    let first = chat(s, &a, &body).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.header("x-cache-scope").unwrap(), "shared");
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Shared (the default): another account is served the same entry.
    let shared = chat(s, &b, &body).await;
    assert!(
        shared.header("cache-status").unwrap().contains("hit"),
        "{:?}",
        shared.header("cache-status")
    );
    assert_eq!(shared.header("x-cache-key"), first.header("x-cache-key"));

    // Private: a different key, a miss, then a hit for that account only.
    let private = dropin(
        s,
        "/v1/chat/completions",
        &b,
        &body,
        &[("x-cache-scope", "private")],
    )
    .await;
    assert_eq!(private.status, 200, "{}", private.text);
    assert!(private.header("cache-status").unwrap().contains("uri-miss"));
    assert_ne!(private.header("x-cache-key"), first.header("x-cache-key"));
    assert_eq!(private.header("x-cache-scope").unwrap(), "private");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = dropin(
        s,
        "/v1/chat/completions",
        &b,
        &body,
        &[("x-cache-scope", "private")],
    )
    .await;
    assert!(again.header("cache-status").unwrap().contains("hit"));
    let other = dropin(
        s,
        "/v1/chat/completions",
        &a,
        &body,
        &[("x-cache-scope", "private")],
    )
    .await;
    assert!(
        other.header("cache-status").unwrap().contains("uri-miss"),
        "a's private entry is a's own"
    );
    assert_eq!(total(&s.mock_calls(&n).await), 3);

    let bad = dropin(
        s,
        "/v1/chat/completions",
        &a,
        &body,
        &[("x-cache-scope", "public")],
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert_eq!(bad.json()["error"]["code"], "invalid_request");
}

#[tokio::test]
async fn bad_keys_get_a_401_both_sdks_can_read() {
    let s = &stack();
    let bad = format!("lvk_live_{}", "Z".repeat(43));
    let r = chat(s, &bad, &chat_body("hi")).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json(),
        json!({"error": {"code": "unauthorized", "message": "missing or invalid API key", "type": "authentication_error", "param": null}})
    );
    let rb = s
        .client
        .post(s.url("/v1/messages"))
        .header("x-api-key", &bad)
        .json(&messages_body("hi"));
    let r = send(rb).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json(),
        json!({"type": "error", "error": {"code": "unauthorized", "message": "missing or invalid API key", "type": "authentication_error",
            "details": {"error_code": "unauthorized"}}})
    );
    let none = send(
        s.client
            .post(s.url("/v1/messages"))
            .json(&messages_body("hi")),
    )
    .await;
    assert_eq!(none.status, 401);
    assert!(none.header("x-request-id").is_some());
}

#[tokio::test]
async fn malformed_stream_flags_and_invalid_requests_are_refused_before_any_upstream_call() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    // Malformed stream flags (streaming itself is served: tests/integration/streaming.rs).
    let mut streaming = chat_body(&format!("stream {n}"));
    streaming["stream"] = json!("yes");
    let r = chat(s, &key, &streaming).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "invalid_param");
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    let mut streaming = chat_body(&format!("stream {n}"));
    streaming["stream"] = json!(true);
    streaming["stream_options"] = json!({"include_usage": "yes"});
    let r = chat(s, &key, &streaming).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "stream_options");
    let mut streaming = messages_body(&format!("stream {n}"));
    streaming["stream"] = json!(1);
    let r = messages(s, &key, &streaming).await;
    assert_eq!((r.status, r.json()["type"].as_str()), (400, Some("error")));
    assert_eq!(r.json()["error"]["code"], "invalid_param");

    let mut image_model = chat_body(&format!("m {n}"));
    image_model["model"] = json!("gpt-image-1");
    let r = chat(s, &key, &image_model).await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (403, Some("model_not_allowed"))
    );
    assert_eq!(r.json()["error"]["type"], "permission_error");

    let mut no_max = messages_body(&format!("m {n}"));
    no_max.as_object_mut().unwrap().remove("max_tokens");
    let r = messages(s, &key, &no_max).await;
    assert_eq!(
        (r.status, r.json()["error"]["param"].as_str()),
        (400, Some("max_tokens"))
    );

    let mut over_cap = chat_body(&format!("m {n}"));
    over_cap["max_completion_tokens"] = json!(10_000_000);
    let r = chat(s, &key, &over_cap).await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (400, Some("invalid_param"))
    );

    let r = chat(
        s,
        &key,
        &chat_body(&format!("{n} {}", "x".repeat(20 * 1024))),
    )
    .await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (413, Some("prompt_too_large"))
    );

    let r = chat(s, &key, &json!({"model": "gpt-4o-mini", "messages": []})).await;
    assert_eq!(
        (r.status, r.json()["error"]["param"].as_str()),
        (400, Some("messages"))
    );

    let r = send(
        s.client
            .get(s.url("/v1/chat/completions"))
            .bearer_auth(&key),
    )
    .await;
    assert_eq!(r.status, 405);
    assert_eq!(
        total(&s.mock_calls(&n).await),
        0,
        "nothing reached a provider"
    );
}

#[tokio::test]
async fn test_keys_get_synthetic_answers_in_the_providers_shape() {
    let s = &stack();
    let a = s.account("pro", 0).await;
    let key = s.key(&a, "test").await;
    let n = nonce();
    let r = chat(s, &key, &chat_body(&format!("synthetic {n}"))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .starts_with("[test openai/gpt-4o-mini]"));
    assert_eq!(
        r.header("cache-status").unwrap(),
        "edge-gateway; fwd=request; detail=no-store"
    );
    let r2 = chat(s, &key, &chat_body(&format!("synthetic {n}"))).await;
    assert_eq!(r2.json()["choices"], v["choices"], "deterministic");
    let m = messages(s, &key, &messages_body(&format!("synthetic {n}"))).await;
    assert_eq!(m.status, 200, "{}", m.text);
    assert_eq!(m.json()["type"], "message");
    assert_eq!(
        total(&s.mock_calls(&n).await),
        0,
        "test keys never reach a provider"
    );
}

#[tokio::test]
async fn upstream_errors_come_back_in_the_providers_shape_and_are_not_cached() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let body = messages_body(&format!("[[mock:anthropic=500]] boom {n}"));
    let r = messages(s, &key, &body).await;
    assert_eq!(r.status, 500, "{}", r.text);
    let v = r.json();
    assert_eq!(v["type"], "error", "Anthropic's own error body: {v}");
    assert!(v["error"]["type"].is_string());
    assert_eq!(
        r.header("cache-status").unwrap(),
        "edge-gateway; fwd=uri-miss"
    );
    let again = messages(s, &key, &body).await;
    assert_eq!(again.status, 500);
    assert_eq!(
        total(&s.mock_calls(&n).await),
        2,
        "an error is never served from cache"
    );

    // The platform's own provider key refused upstream is not the caller's 401.
    let r = chat(
        s,
        &key,
        &chat_body(&format!("[[mock:openai=echo_key]] {n}")),
    )
    .await;
    assert_eq!(r.status, 502, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "upstream_auth_failed");
    assert!(!r.text.contains("sk-mock"), "{}", r.text);
    // No retry of the SDK's would change it.
    assert_eq!(r.header("x-should-retry").as_deref(), Some("false"));

    // Nor the platform's own provider account out of quota or credit: a 503 about the
    // platform, not the provider's "check your plan and billing", which the caller would take
    // for theirs (found by review, 2026-12-08; it was passed on as the provider's 429 / 400).
    let before = s.balance(&key).await;
    let r = chat(s, &key, &chat_body(&format!("[[mock:openai=quota]] {n}"))).await;
    let m = messages(
        s,
        &key,
        &messages_body(&format!("[[mock:anthropic=quota]] {n}")),
    )
    .await;
    for r in [&r, &m] {
        assert_eq!(r.status, 503, "{}", r.text);
        assert!(r.text.contains("upstream_quota_exhausted"), "{}", r.text);
        assert!(!r.text.contains("your current quota") && !r.text.contains("credit balance"));
        assert_eq!(r.header("x-should-retry").as_deref(), Some("false"));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        s.balance(&key).await,
        before,
        "a refused call costs nothing"
    );
}

// ---- bring your own key ----

async fn put_provider_key(s: &Stack, gateway_key: &str, provider: &str, secret: &str) -> Reply {
    send(
        s.client
            .put(s.url(&format!("/v1/provider-keys/{provider}")))
            .bearer_auth(gateway_key)
            .json(&json!({"key": secret})),
    )
    .await
}

async fn access_log(s: &Stack, key: &str) -> Vec<Value> {
    let r = s.get("/v1/provider-keys/access-log", Some(key)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["entries"].as_array().unwrap().clone()
}

#[tokio::test]
async fn byok_register_call_audit_and_delete() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    // No key pattern matches it: only the broker's exact-secret scrubbing can hide it.
    let own = format!("ownkey-{n}-0123456789abcdef");

    let bad = put_provider_key(s, &key, "gemini", &own).await;
    assert_eq!(bad.status, 404, "{}", bad.text);
    let short = put_provider_key(s, &key, "openai", "abc").await;
    assert_eq!(
        (short.status, short.json()["error"]["param"].as_str()),
        (400, Some("key"))
    );

    let r = put_provider_key(s, &key, "openai", &own).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["last4"], "cdef");
    assert!(!r.text.contains(&own));
    let list = s.get("/v1/provider-keys", Some(&key)).await;
    assert_eq!(list.status, 200);
    let keys = list.json()["provider_keys"].clone();
    assert_eq!(keys.as_array().unwrap().len(), 1, "{keys}");
    assert_eq!(
        (keys[0]["provider"].as_str(), keys[0]["last4"].as_str()),
        (Some("openai"), Some("cdef"))
    );
    assert!(keys[0]["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(!list.text.contains(&own) && keys[0].get("ciphertext").is_none());
    assert!(
        access_log(s, &key).await.is_empty(),
        "sealing decrypts nothing"
    );

    // A drop-in call uses the account's own key, privately cached.
    let r1 = chat(s, &key, &chat_body(&format!("byok one {n}"))).await;
    assert_eq!(r1.status, 200, "{}", r1.text);
    assert_eq!(
        r1.header("x-cache-scope").unwrap(),
        "private",
        "BYOK answers are never shared"
    );
    let got = mock_last(s, &format!("byok one {n}")).await.unwrap();
    assert_eq!(got["headers"]["authorization"], format!("Bearer {own}"));
    let r2 = chat(s, &key, &chat_body(&format!("byok two {n}"))).await;
    assert_eq!(r2.status, 200, "{}", r2.text);
    // /v1/ask uses it too.
    let ask = s
        .ask(
            &key,
            // One provider only: with two, the mock's "last" request could be either one.
            &json!({"prompt": format!("byok ask {n}"), "providers": ["openai"]}),
        )
        .await;
    assert_eq!(ask.status, 200, "{}", ask.text);
    let got = mock_last(s, &format!("byok ask {n}")).await.unwrap();
    assert_eq!(got["headers"]["authorization"], format!("Bearer {own}"));

    let log = access_log(s, &key).await;
    assert_eq!(log.len(), 3, "one row per decryption: {log:?}");
    let ids = [&r1, &r2, &ask].map(|r| r.header("x-request-id").unwrap());
    let logged: Vec<&str> = log
        .iter()
        .rev()
        .map(|e| e["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(logged, ids.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(log[2]["purpose"], "POST /v1/chat/completions");
    assert_eq!(log[0]["purpose"], "POST /v1/ask");
    assert!(log.iter().all(|e| e["provider"] == "openai"));

    // A cache hit decrypts nothing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let hit = chat(s, &key, &chat_body(&format!("byok one {n}"))).await;
    assert!(hit.header("cache-status").unwrap().contains("hit"));
    assert_eq!(access_log(s, &key).await.len(), 3);

    // The upstream's error echoes the key: it is scrubbed before it reaches anyone.
    let echo = chat(
        s,
        &key,
        &chat_body(&format!("[[mock:openai=echo_key]] {n}")),
    )
    .await;
    assert_eq!(
        echo.status, 401,
        "the account's own key was refused: {}",
        echo.text
    );
    assert!(!echo.text.contains(&own), "{}", echo.text);
    assert!(echo.text.contains("[REDACTED]"), "{}", echo.text);
    assert!(!s.d1_dump().contains(&own), "the plaintext is never stored");

    let d = s.delete("/v1/provider-keys/openai", Some(&key)).await;
    assert_eq!(d.status, 200, "{}", d.text);
    assert_eq!(
        s.delete("/v1/provider-keys/openai", Some(&key))
            .await
            .status,
        404
    );
    assert_eq!(
        s.get("/v1/provider-keys", Some(&key)).await.json()["provider_keys"],
        json!([])
    );
    let after = chat(s, &key, &chat_body(&format!("byok after {n}"))).await;
    assert_eq!(after.status, 200);
    assert_eq!(after.header("x-cache-scope").unwrap(), "shared");
    let got = mock_last(s, &format!("byok after {n}")).await.unwrap();
    assert!(got["headers"]["authorization"]
        .as_str()
        .unwrap()
        .starts_with("Bearer sk-mock-openai"));
}

/// The local D1 database file (the one holding `provider_keys`).
fn d1_file(s: &Stack) -> PathBuf {
    let dir = s.state_dir.join("persist/v3/d1/miniflare-D1DatabaseObject");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "sqlite") && !p.ends_with("metadata.sqlite"))
        .expect("the D1 sqlite file")
}

/// Runs a Python snippet against the D1 file (python3's sqlite3 module).
fn sqlite(s: &Stack, script: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\n{script}\nc.commit()"
        ))
        .arg(d1_file(s))
        .args(args)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn byok_ciphertext_swapped_between_accounts_does_not_decrypt() {
    let s = &stack();
    let (a, key_a) = s.live_key().await;
    let (b, key_b) = s.live_key().await;
    let n = nonce();
    for (k, who) in [(&key_a, "a"), (&key_b, "b")] {
        let r = put_provider_key(s, k, "anthropic", &format!("ownkey-{who}-{n}-swap")).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let stored = sqlite(
        s,
        "print(c.execute('SELECT count(*) FROM provider_keys WHERE account_id IN (?, ?)', (sys.argv[2], sys.argv[3])).fetchone()[0])",
        &[&a, &b],
    );
    assert_eq!(stored, "2");
    sqlite(
        s,
        "q = 'SELECT ciphertext FROM provider_keys WHERE account_id = ? AND provider = ?'\n\
         ca = c.execute(q, (sys.argv[2], 'anthropic')).fetchone()[0]\n\
         cb = c.execute(q, (sys.argv[3], 'anthropic')).fetchone()[0]\n\
         u = 'UPDATE provider_keys SET ciphertext = ? WHERE account_id = ? AND provider = ?'\n\
         c.execute(u, (cb, sys.argv[2], 'anthropic'))\n\
         c.execute(u, (ca, sys.argv[3], 'anthropic'))",
        &[&a, &b],
    );

    let r = messages(s, &key_a, &messages_body(&format!("swapped {n}"))).await;
    assert_eq!(r.status, 424, "{}", r.text);
    let v = r.json();
    assert_eq!(
        (v["type"].as_str(), v["error"]["code"].as_str()),
        (Some("error"), Some("provider_key_unusable"))
    );
    let ask = s
        .ask(
            &key_b,
            &json!({"prompt": format!("swapped ask {n}"), "providers": ["anthropic"]}),
        )
        .await;
    assert_eq!(ask.status, 200, "{}", ask.text);
    assert_eq!(
        ask.json()["results"][0]["error"]["code"],
        "provider_key_unusable"
    );
    assert_eq!(
        total(&s.mock_calls(&n).await),
        0,
        "no upstream call with a wrong key"
    );
    // The refused attempt is on record: its row, written before the decryption, then one
    // saying it failed (newest first).
    let log = access_log(s, &key_a).await;
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[1]["purpose"], "POST /v1/messages", "{log:?}");
    assert_eq!(
        log[0]["purpose"], "POST /v1/messages (decryption failed)",
        "{log:?}"
    );
    assert_eq!(log[0]["request_id"], log[1]["request_id"], "{log:?}");

    // Registering again repairs it.
    let r = put_provider_key(s, &key_a, "anthropic", &format!("ownkey-a-{n}-fixed")).await;
    assert_eq!(r.status, 200);
    let ok = messages(s, &key_a, &messages_body(&format!("repaired {n}"))).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    let got = mock_last(s, &format!("repaired {n}")).await.unwrap();
    assert_eq!(got["headers"]["x-api-key"], format!("ownkey-a-{n}-fixed"));
}

// ---- the official SDKs ----

/// An enterprise account whose key's bucket holds one token, refilled each second.
async fn one_per_second_key(s: &Stack) -> String {
    let a = s.account("enterprise", 1_000_000).await;
    let r = s
        .admin(
            Method::PATCH,
            &format!("/admin/accounts/{a}"),
            &json!({"tier": "enterprise", "limits": {"burst": 1, "per_second": 1}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    s.key(&a, "live").await
}

/// An enterprise account whose key has 60,000 input tokens a minute (1,000 a second) and a
/// generous call bucket: a 429 on it is a token 429.
async fn token_limited_key(s: &Stack) -> String {
    let a = s.account("enterprise", 1_000_000_000).await;
    let limits = json!({"burst": 1000, "per_second": 100, "input_tokens_per_minute": 60_000});
    let r = s
        .admin(
            Method::PATCH,
            &format!("/admin/accounts/{a}"),
            &json!({"tier": "enterprise", "limits": limits}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    s.key(&a, "live").await
}

/// A fresh live key and two keys whose bucket holds one token (one per dialect's 429 check),
/// as an SDK check script reads them.
async fn sdk_keys(s: &Stack) -> Vec<(&'static str, String)> {
    let (_, key) = s.live_key().await;
    vec![
        ("GATEWAY_KEY", key),
        ("GATEWAY_KEY_LIMITED_OPENAI", one_per_second_key(s).await),
        ("GATEWAY_KEY_LIMITED_ANTHROPIC", one_per_second_key(s).await),
    ]
}

#[tokio::test]
async fn the_official_python_sdks_work_through_the_gateway() {
    let s = &stack();
    let mut env = sdk_keys(s).await;
    env.push(("GATEWAY_KEY_TOKENS_OPENAI", token_limited_key(s).await));
    env.push(("GATEWAY_KEY_TOKENS_ANTHROPIC", token_limited_key(s).await));
    run_sdk_checks(s, "python3", "tests/sdk/test_sdks.py", &env).await;
}

/// The Node SDKs a chat interface or agent streams with (`openai` 6.x, `@anthropic-ai/sdk`),
/// streaming through the drop-in endpoints: live and cached accumulators, errors and cut-off
/// upstreams raised, a 429 before the stream retried.
#[tokio::test]
async fn the_official_node_sdks_stream_through_the_gateway() {
    let s = &stack();
    let env = sdk_keys(s).await;
    run_sdk_checks(s, "node", "tests/sdk/test_sdks.mjs", &env).await;
}

/// LiteLLM, the client library many agents reach providers through, streaming from both
/// drop-in endpoints (its Anthropic stream parser is its own).
#[tokio::test]
async fn litellm_streams_through_the_gateway() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    run_sdk_checks(
        s,
        "python3",
        "tests/sdk/test_litellm.py",
        &[("GATEWAY_KEY", key)],
    )
    .await;
}

/// Runs an SDK check script (`program script`, from the repository's root) against the stack
/// with `env` and its URLs; it passes when the script exits 0 and prints `OK`.
async fn run_sdk_checks(s: &Stack, program: &str, script: &str, env: &[(&str, String)]) {
    let child = tokio::process::Command::new(program)
        .arg(root().join(script))
        .current_dir(root())
        .env("GATEWAY_URL", &s.base)
        .env("MOCK_URL", &s.mock)
        .env("RUN_NONCE", nonce())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    let out = tokio::time::timeout(Duration::from_secs(240), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{script} finishes within 240 s"))
        .expect("the script's output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("--- {script} stdout ---\n{stdout}\n--- stderr ---\n{stderr}");
    assert!(
        out.status.success(),
        "the SDK checks of {script} failed ({}); output above",
        out.status
    );
    assert!(stdout.contains("OK"), "{stdout}");
}

#[tokio::test]
async fn an_ask_paid_with_the_accounts_own_key_is_cached_privately() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let (_, other) = s.live_key().await;
    let n = nonce();
    let ask = json!({"prompt": format!("byok ask {n}"), "providers": ["openai"]});
    let before = s.ask(&key, &ask).await;
    assert_eq!(before.json()["cache"]["scope"], "shared");
    let r = put_provider_key(s, &key, "openai", &format!("ownkey-{n}-0123456789abcdef")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // The next call sees the registered key: it is audited and its answer is private.
    let ask2 = json!({"prompt": format!("byok ask two {n}"), "providers": ["openai"]});
    let mine = s.ask(&key, &ask2).await;
    assert_eq!(mine.status, 200, "{}", mine.text);
    assert_eq!(mine.json()["cache"]["scope"], "private", "{}", mine.text);
    assert_eq!(access_log(s, &key).await.len(), 1);
    // Another account asking the same question does not get the BYOK answer.
    let theirs = s.ask(&other, &ask2).await;
    assert_eq!(theirs.json()["cache"]["status"], "miss");
    assert_ne!(theirs.header("x-cache-key"), mine.header("x-cache-key"));
    // A provider without a registered key stays shared.
    let g = s
        .ask(
            &key,
            &json!({"prompt": format!("byok gemini {n}"), "providers": ["gemini"]}),
        )
        .await;
    assert_eq!(g.json()["cache"]["scope"], "shared");
}

/// The headers forwarded upstream are part of the key: an answer given with `anthropic-beta`
/// is not served to the same body without it (nor with another value), and repeats still hit.
#[tokio::test]
async fn forwarded_headers_are_part_of_the_cache_key() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let prompt = format!("beta {}", nonce());
    let body = messages_body(&prompt);
    let beta = [("anthropic-beta", "interleaved-thinking-2025-05-14")];
    let other = [("anthropic-beta", "token-efficient-tools-2025-02-19")];
    let mut keys = Vec::new();
    for (i, headers) in [&beta[..], &[], &other[..]].into_iter().enumerate() {
        let r = dropin(s, "/v1/messages", &key, &body, headers).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json()["type"], "message");
        assert_eq!(
            r.header("cache-status").unwrap(),
            "edge-gateway; fwd=uri-miss; stored",
            "call {i} must miss"
        );
        keys.push(r.header("x-cache-key").unwrap());
        assert_eq!(total(&s.mock_calls(&prompt).await), i as u64 + 1);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(keys[0] != keys[1] && keys[1] != keys[2] && keys[0] != keys[2]);
    let again = dropin(s, "/v1/messages", &key, &body, &beta).await;
    assert_eq!(again.header("x-cache-key").unwrap(), keys[0]);
    assert_eq!(
        again.header("cache-status").unwrap(),
        "edge-gateway; hit; detail=l1"
    );
    assert_eq!(total(&s.mock_calls(&prompt).await), 3);
}

/// A drop-in call's input is more than its messages (tool definitions are billed as input):
/// its reservation covers the whole body, so the call is charged what it used.
#[tokio::test]
async fn a_drop_in_call_is_charged_for_input_beyond_its_messages() {
    use gateway_core::credits::pricing::PriceTable;
    use gateway_core::providers::Provider;
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let body = json!({"model": "gpt-4o", "max_completion_tokens": 16,
        "messages": [{"role": "user", "content": format!("tools {n}")}],
        "tools": [{"type": "function", "function": {"name": "lookup",
            "description": "word ".repeat(3_500), "parameters": {"type": "object"}}}]});
    let r = chat(s, &key, &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let usage = &r.json()["usage"];
    let (input, output) = (
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
    );
    // (Tools count toward the 20 KB prompt cap too: 17.5 KB of them here.)
    assert!(input > 3_500, "the mock billed the tools as input: {input}");
    let expected = PriceTable::default().cost(Provider::OpenAi, "gpt-4o", input, output);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let balance = s.get("/v1/account", Some(&key)).await.json()["credits_balance"]
        .as_u64()
        .unwrap();
    assert_eq!(balance, 1_000_000 - expected, "charged what the call used");
}
