//! Brokers through the gateway: the four real wire formats, every fault kind, timeouts that
//! don't hold the other providers back, the allowlist, the shared secret, and scrubbing.

use std::time::{Duration, Instant};

use integration_tests::{json, nonce, send, stack, Stack, Value};

async fn last_request(s: &Stack, contains: &str) -> Value {
    send(
        s.client
            .get(format!("{}/__mock/last", s.mock))
            .query(&[("contains", contains)]),
    )
    .await
    .json()
}

fn result<'a>(body: &'a Value, provider: &str) -> &'a Value {
    body["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["provider"] == provider)
        .unwrap()
}

#[tokio::test]
async fn each_broker_speaks_its_providers_wire_format() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let r = s
        .ask(&key, &json!({"prompt": format!("wire {n}"), "providers": ["openai", "anthropic", "gemini", "perplexity"],
            "params": {"max_tokens": 50, "system": "be brief", "temperature": 0.5}}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json();
    // What each upstream received.
    let wanted = [
        ("openai", "/openai/v1/chat/completions"),
        ("anthropic", "/anthropic/v1/messages"),
        (
            "gemini",
            "/gemini/v1beta/models/gemini-2.5-flash:generateContent",
        ),
        ("perplexity", "/perplexity/chat/completions"),
    ];
    for (p, path) in wanted {
        let c = s.mock_calls(&n).await;
        assert_eq!(c[p], 1, "{c}");
        let res = result(&body, p);
        assert!(
            res["content"]
                .as_str()
                .unwrap()
                .starts_with(&format!("[{p}/")),
            "{res}"
        );
        let r = send(
            s.client
                .get(format!("{}/__mock/last", s.mock))
                .query(&[("contains", format!("wire {n}").as_str()), ("provider", p)]),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json()["path"], path, "{p}: {}", r.text);
    }
    let perplexity = result(&body, "perplexity");
    assert!(
        !perplexity["citations"].as_array().unwrap().is_empty(),
        "perplexity citations pass through"
    );
    for p in ["openai", "anthropic", "gemini"] {
        assert_eq!(result(&body, p)["citations"], json!([]));
    }
    // Only {model, content, citations, tokens} (+ provider, latency) per result.
    for res in body["results"].as_array().unwrap() {
        let mut keys: Vec<&str> = res
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "citations",
                "content",
                "latency_ms",
                "model",
                "provider",
                "tokens"
            ],
            "{res}"
        );
    }
}

#[tokio::test]
async fn upstream_requests_carry_each_providers_auth_and_fields() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    for p in ["openai", "anthropic", "gemini", "perplexity"] {
        let n = nonce();
        let r = s.ask(&key, &json!({"prompt": format!("fields {n}"), "providers": [p], "params": {"max_tokens": 42, "system": "sys"}})).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let last = last_request(s, &n).await;
        let h = &last["headers"];
        let b = &last["body"];
        match p {
            "openai" => {
                assert!(h["authorization"]
                    .as_str()
                    .unwrap()
                    .starts_with("Bearer sk-"));
                assert_eq!(b["max_completion_tokens"], 42);
                assert_eq!(b["messages"][0]["role"], "system");
                assert_eq!(b["model"], "gpt-4o-mini");
            }
            "anthropic" => {
                assert!(h["x-api-key"].as_str().unwrap().starts_with("sk-ant-"));
                assert_eq!(h["anthropic-version"], "2023-06-01");
                assert_eq!(b["max_tokens"], 42);
                assert_eq!(b["system"], "sys");
            }
            "gemini" => {
                assert!(h["x-goog-api-key"].as_str().unwrap().starts_with("AIza"));
                assert_eq!(b["generationConfig"]["maxOutputTokens"], 42);
                assert_eq!(b["systemInstruction"]["parts"][0]["text"], "sys");
            }
            _ => {
                assert!(h["authorization"]
                    .as_str()
                    .unwrap()
                    .starts_with("Bearer pplx-"));
                assert_eq!(b["max_tokens"], 42);
            }
        }
        // No gateway metadata travels upstream.
        let raw = last.to_string();
        for leak in ["lvk_", "acct_", "req_", "x-broker-secret"] {
            assert!(!raw.contains(leak), "{p} upstream saw {leak}: {raw}");
        }
    }
}

#[tokio::test]
async fn every_fault_kind_becomes_a_typed_per_provider_error() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let cases = [
        ("500", "upstream_server_error"),
        ("503", "upstream_overloaded"),
        ("529", "upstream_overloaded"),
        ("429", "upstream_rate_limited"),
        ("401", "upstream_auth_failed"),
        ("malformed", "upstream_malformed"),
        ("drop", "upstream_unreachable"),
        ("html401", "upstream_auth_failed"),
    ];
    for (fault, code) in cases {
        let provider = if fault == "529" {
            "anthropic"
        } else if fault == "html401" {
            "perplexity"
        } else {
            "openai"
        };
        let n = nonce();
        let r = s
            .ask(&key, &json!({"prompt": format!("fault [[mock:{provider}={fault}]] {n}"), "providers": [provider, "gemini"]}))
            .await;
        assert_eq!(r.status, 200, "{fault}: {}", r.text);
        let body = r.json();
        let bad = result(&body, provider);
        assert_eq!(bad["error"]["code"], code, "{fault}: {bad}");
        assert!(bad["error"]["message"].is_string());
        // The provider's own retry hint reaches the caller (the mock's 429: retry-after: 2).
        if fault == "429" {
            assert_eq!(bad["error"]["retry_after_ms"], 2000, "{bad}");
        }
        assert!(
            result(&body, "gemini")["content"].is_string(),
            "the other provider still answers ({fault})"
        );
    }
}

#[tokio::test]
async fn a_slow_provider_times_out_without_holding_back_the_others() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let started = Instant::now();
    let r = s
        .ask(&key, &json!({"prompt": format!("slow [[mock:gemini=delay:20000]] {n}"), "providers": ["gemini", "openai", "anthropic"]}))
        .await;
    let took = started.elapsed();
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json();
    assert_eq!(
        result(&body, "gemini")["error"]["code"],
        "upstream_timeout",
        "{body}"
    );
    assert!(result(&body, "openai")["content"].is_string());
    assert!(result(&body, "anthropic")["content"].is_string());
    // The test stack's timeouts: broker 2.5 s, gateway 3 s.
    assert!(took < Duration::from_secs(6), "took {took:?}");
    assert!(result(&body, "openai")["latency_ms"].as_u64().unwrap() < 2000);
    assert!(result(&body, "gemini")["latency_ms"].as_u64().unwrap() >= 2000);
}

#[tokio::test]
async fn model_allowlist_refuses_unlisted_and_non_text_models() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    for (p, model) in [
        ("openai", "gpt-image-1"),
        ("openai", "whisper-1"),
        ("openai", "text-embedding-3-small"),
        ("gemini", "gemini-9-ultra"),
        ("anthropic", "claude-vision-x"),
    ] {
        let n = nonce();
        let r = s.ask(&key, &json!({"prompt": format!("model {n}"), "providers": [p], "params": {"models": {p: model}}})).await;
        assert_eq!(r.status, 403, "{p}/{model}: {}", r.text);
        assert_eq!(r.json()["error"]["code"], "model_not_allowed");
        assert_eq!(s.mock_calls(&n).await["total"], 0);
    }
}

#[tokio::test]
async fn a_broker_refuses_a_missing_or_wrong_shared_secret() {
    let s = &stack();
    let n = nonce();
    let body = json!({"request_id": "req_x", "account_id": "acct_x", "test_mode": false,
        "completion": {"model": "gpt-4o-mini", "prompt": format!("secret {n}"), "max_tokens": 5}});
    // Over HTTP (`POST /v1/complete`, the secret in a header) and over RPC (`complete(secret,
    // body)`, the way the gateway calls a broker): the same refusal, and no upstream call.
    for path in [
        "/__dev/broker/openai/v1/complete",
        "/__dev/broker-rpc/openai",
    ] {
        for secret in [None, Some("wrong-secret"), Some("")] {
            let mut rb = s.client.post(s.url(path)).json(&body);
            if let Some(sec) = secret {
                rb = rb.header("x-broker-secret", sec);
            }
            let r = send(rb).await;
            assert_eq!(r.status, 401, "{path} {secret:?}: {}", r.text);
            assert_eq!(r.json()["error"]["code"], "unauthorized");
        }
    }
    assert_eq!(s.mock_calls(&n).await["total"], 0);

    // Over RPC an oversized body is refused too, after the secret: 401 without it, 413 with it;
    // and the right secret with a normal body is answered.
    let big = json!({"request_id": "req_x", "account_id": "acct_x", "test_mode": false,
        "completion": {"model": "gpt-4o-mini", "prompt": format!("{n} {}", "x".repeat(400_000)), "max_tokens": 5}});
    for (secret, status) in [("wrong-secret", 401), ("configured", 413)] {
        let rb = s
            .client
            .post(s.url("/__dev/broker-rpc/openai"))
            .header("x-broker-secret", secret)
            .json(&big);
        let r = send(rb).await;
        assert_eq!(r.status, status, "{secret}: {}", r.text);
    }
    let rb = s
        .client
        .post(s.url("/__dev/broker-rpc/openai"))
        .header("x-broker-secret", "configured")
        .json(&body);
    let ok = send(rb).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(s.mock_calls(&n).await["total"], 1);
}

#[tokio::test]
async fn keys_echoed_by_an_upstream_never_reach_the_caller_or_the_logs() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let r = s
        .ask(&key, &json!({"prompt": format!("echo [[mock:*=echo_key]] {n}"), "providers": ["openai", "anthropic", "gemini", "perplexity"]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    for res in r.json()["results"].as_array().unwrap() {
        assert!(res["error"]["code"].is_string(), "{res}");
    }
    // The fake provider keys of the local configs (scripts/devconfig.py).
    let secrets = [
        "sk-mock-openai-local",
        "sk-ant-mock-anthropic",
        "AIzaMockGeminiLocalKey",
        "pplx-mock-perplexity",
    ];
    for sec in secrets {
        assert!(
            !r.text.contains(sec),
            "{sec} leaked to the caller: {}",
            r.text
        );
    }
    assert!(
        r.text.contains("[REDACTED]"),
        "the echo was scrubbed, not dropped: {}",
        r.text
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = std::fs::read_to_string(s.state_dir.join("stack.log")).unwrap();
    assert!(
        log.contains(&n) || log.contains("upstream error"),
        "the broker logged the failures"
    );
    for sec in secrets {
        assert!(!log.contains(sec), "{sec} leaked to the logs");
    }
    assert!(!log.contains(&key), "the caller's key leaked to the logs");
}
