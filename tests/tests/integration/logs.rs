//! The gateway's log: one JSON line per request (`"event":"request"`), with its request id,
//! route, status, cache outcome, providers and their latencies, credits and duration; a
//! streamed answer's line written at its end; and nothing of what the caller sent or got (no
//! prompt, answer, key or key hash) anywhere in the stack's log.

use std::time::Duration;

use gateway_core::keys::hash_token;
use integration_tests::{json, nonce, send, stack, Reply, Stack, Value};

fn request_id(r: &Reply) -> String {
    r.header("x-request-id").expect("X-Request-Id")
}

/// The request lines of the log written for `id` (each line's JSON object).
fn request_lines(log: &str, id: &str) -> Vec<Value> {
    let needle = format!("\"request_id\":\"{id}\"");
    log.lines()
        .filter(|l| l.contains("\"event\":\"request\"") && l.contains(&needle))
        .map(|l| {
            let start = l.find('{').expect("a JSON object");
            let end = l.rfind('}').expect("a JSON object");
            serde_json::from_str(&l[start..=end]).unwrap_or_else(|e| panic!("{e}: {l}"))
        })
        .collect()
}

/// The one request line of `id`, waiting a little for lines written after the response.
async fn line(s: &Stack, id: &str) -> Value {
    for _ in 0..40 {
        let lines = request_lines(&s.log(), id);
        if !lines.is_empty() {
            assert_eq!(lines.len(), 1, "one line per request: {lines:?}");
            return lines[0].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no request line for {id}");
}

#[tokio::test]
async fn every_request_has_one_json_line_with_what_an_operator_needs() {
    let s = &stack();
    let (account, key) = s.live_key().await;
    let n = nonce();
    let body = json!({"prompt": format!("log line {n}"), "providers": ["openai", "anthropic"]});

    let miss = s.ask(&key, &body).await;
    assert_eq!(miss.status, 200, "{}", miss.text);
    let l = line(s, &request_id(&miss)).await;
    assert_eq!(l["route"], "POST /v1/ask");
    assert_eq!(l["status"], 200);
    assert_eq!(l["account_id"], account.as_str());
    assert_eq!(l["cache_status"], "miss");
    assert_eq!(l["credits"], miss.json()["usage"]["credits"]);
    assert!(l["duration_ms"].as_u64().is_some(), "{l}");
    let providers: Vec<&str> = l["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["status"], 200, "{p}");
            assert!(p["latency_ms"].as_u64().is_some(), "{p}");
            p["provider"].as_str().unwrap()
        })
        .collect();
    assert_eq!(providers.len(), 2, "{l}");
    assert!(providers.contains(&"openai") && providers.contains(&"anthropic"));

    // Wait for the entry to be stored, then a hit: its tier, no provider.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let hit = s.ask(&key, &body).await;
    assert_eq!(hit.status, 200, "{}", hit.text);
    let l = line(s, &request_id(&hit)).await;
    assert_eq!(l["cache_status"], hit.json()["cache"]["status"]);
    if l["cache_status"] == "hit" {
        assert_eq!(l["cache_tier"], hit.json()["cache"]["tier"]);
    }
    assert!(l.get("providers").is_none(), "{l}");

    // A refused call: its status and error code, no account.
    let refused = s.ask(&format!("lvk_live_{}", "A".repeat(43)), &body).await;
    assert_eq!(refused.status, 401);
    let l = line(s, &request_id(&refused)).await;
    assert_eq!(
        (l["status"].clone(), l["error"].clone()),
        (json!(401), json!("unauthorized"))
    );
    assert!(l.get("account_id").is_none(), "{l}");

    // Routes without a usage row have their line too, named by pattern.
    let health = s.get("/healthz", None).await;
    assert_eq!(line(s, &request_id(&health)).await["route"], "GET /healthz");
    let lost = s.get(&format!("/v1/no such route {n}"), Some(&key)).await;
    assert_eq!(lost.status, 404);
    let l = line(s, &request_id(&lost)).await;
    assert_eq!(l["route"], "unrouted");
    assert!(!l.to_string().contains(&n), "{l}");
}

#[tokio::test]
async fn a_streamed_answer_has_its_line_at_its_end() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let r = send(
        s.client
            .post(s.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(
                &json!({"model": "gpt-4o-mini", "max_completion_tokens": 32, "stream": true,
                "messages": [{"role": "user", "content": format!("streamed log line {n}")}]}),
            ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let l = line(s, &request_id(&r)).await;
    assert_eq!(l["route"], "POST /v1/chat/completions");
    assert_eq!(l["stream_end"], "clean", "{l}");
    assert_eq!(l["providers"][0]["provider"], "openai", "{l}");
    assert!(l["tokens"][1].as_u64().unwrap() > 0, "{l}");
}

#[tokio::test]
async fn the_log_holds_no_prompt_answer_key_or_hash() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let prompt = format!("private question {n}");
    let r = s
        .ask(
            &key,
            &json!({"prompt": prompt, "providers": ["openai", "gemini"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let answers: Vec<String> = r.json()["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x["content"].as_str().map(str::to_string))
        .collect();
    assert!(!answers.is_empty());
    let chat = send(
        s.client
            .post(s.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&json!({"model": "gpt-4o-mini", "max_completion_tokens": 16,
                "messages": [{"role": "user", "content": prompt}]})),
    )
    .await;
    assert_eq!(chat.status, 200, "{}", chat.text);
    line(s, &request_id(&r)).await;
    line(s, &request_id(&chat)).await;

    let log = s.log();
    assert!(!log.contains(&n), "the prompt's marker is in the log");
    for answer in &answers {
        assert!(!log.contains(answer.as_str()), "an answer is in the log");
    }
    assert!(!log.contains(&key), "the caller's key is in the log");
    assert!(
        !log.contains(&key[12..]),
        "the key's secret part is in the log"
    );
    assert!(
        !log.contains(&hash_token(&key)),
        "the key's hash is in the log"
    );
    for worker in ["broker-openai", "broker-gemini"] {
        for secret in [
            "BROKER_SHARED_SECRET",
            "BROKER_SHARED_SECRET_PREVIOUS",
            "BYOK_MASTER_KEY",
            "BYOK_MASTER_KEY_V2",
            "PROVIDER_API_KEY",
        ] {
            let value = s.dev_secret(worker, secret);
            assert!(!log.contains(&value), "{worker}'s {secret} is in the log");
        }
    }
}
