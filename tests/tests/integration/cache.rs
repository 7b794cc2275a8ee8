//! The two-tier cache through the public API: hits with zero upstream calls, L2 promotion,
//! normalization, what changes the key, scopes, request directives, partial failures.

use std::time::Duration;

use integration_tests::{json, nonce, send, stack, Reply, Stack, Value};

async fn ask_with(s: &Stack, key: &str, body: &Value, cache_control: Option<&str>) -> Reply {
    let mut rb = s.client.post(s.url("/v1/ask")).bearer_auth(key).json(body);
    if let Some(cc) = cache_control {
        rb = rb.header("Cache-Control", cc);
    }
    send(rb).await
}

/// Waits until the entry written off the response path is visible (L1 and L2 writes are
/// `wait_until` work), by polling the raw L2 value through the dev route.
async fn wait_stored(s: &Stack, key: &str) -> Value {
    for _ in 0..50 {
        let r = s.get(&format!("/__dev/l2/ask/v1/{key}"), None).await;
        if let Some(v) = r.json()["value"].as_str() {
            return serde_json::from_str(v).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("entry {key} never reached L2");
}

/// Drops an `ask/v1` entry from L1 only (dev route), so the next lookup reaches L2.
async fn drop_l1(s: &Stack, cache_key: &str) {
    let d = s
        .delete(&format!("/__dev/l1/ask/v1/{cache_key}"), None)
        .await;
    assert_eq!(d.status, 200, "{}", d.text);
}

#[tokio::test]
async fn miss_then_hit_makes_no_new_upstream_call() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let body = json!({"prompt": format!("cache me {n}"), "providers": ["openai", "anthropic"]});
    let first = s.ask(&key, &body).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.json()["cache"]["status"], "miss");
    assert_eq!(
        first.header("cache-status").unwrap(),
        "edge-gateway; fwd=uri-miss; stored"
    );
    let cache_key = first.header("x-cache-key").unwrap();
    assert_eq!(first.json()["cache"]["key"], cache_key.as_str());
    wait_stored(s, &cache_key).await;
    assert_eq!(s.mock_calls(&n).await["total"], 2);

    let second = s.ask(&key, &body).await;
    assert_eq!(second.status, 200);
    let b = second.json();
    assert_eq!(b["cache"]["status"], "hit");
    assert_eq!(b["cache"]["tier"], "l1");
    assert_eq!(
        second.header("cache-status").unwrap(),
        "edge-gateway; hit; detail=l1"
    );
    assert_eq!(second.header("x-cache-key").unwrap(), cache_key);
    // A hit takes no bucket token: it carries the tier's policy, not a bucket reading.
    let (policy, limit) = (
        first
            .header("ratelimit-policy")
            .expect("a miss carries RateLimit-Policy"),
        first.header("x-ratelimit-limit").unwrap(),
    );
    assert_eq!(second.header("ratelimit-policy"), Some(policy));
    assert_eq!(second.header("x-ratelimit-limit"), Some(limit));
    assert_eq!(second.header("ratelimit"), None);
    assert_eq!(
        s.mock_calls(&n).await["total"],
        2,
        "a hit must not call upstream"
    );
    // Same answers, a new request id.
    assert_ne!(b["id"], first.json()["id"]);
    for (a, c) in first.json()["results"]
        .as_array()
        .unwrap()
        .iter()
        .zip(b["results"].as_array().unwrap())
    {
        assert_eq!(a["content"], c["content"]);
    }
}

#[tokio::test]
async fn l2_hit_is_promoted_to_l1() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let body = json!({"prompt": format!("promote me {n}"), "providers": ["gemini"]});
    let first = s.ask(&key, &body).await;
    let cache_key = first.header("x-cache-key").unwrap();
    wait_stored(s, &cache_key).await;
    // Make sure L1 has it, then drop it from L1 only.
    assert_eq!(s.ask(&key, &body).await.json()["cache"]["tier"], "l1");
    drop_l1(s, &cache_key).await;
    let l2 = s.ask(&key, &body).await;
    assert_eq!(l2.json()["cache"]["tier"], "l2", "{}", l2.text);
    assert_eq!(
        l2.header("cache-status").unwrap(),
        "edge-gateway; hit; detail=l2"
    );
    // The promotion runs after the response: the next calls become L1 hits.
    let mut tier = String::new();
    for _ in 0..40 {
        tier = s.ask(&key, &body).await.json()["cache"]["tier"]
            .as_str()
            .unwrap()
            .to_string();
        if tier == "l1" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(tier, "l1");
    assert_eq!(s.mock_calls(&n).await["total"], 1);
}

/// An L2 entry copied into L1 keeps its own expiry: a copy made near the end of the entry's
/// 24 hours lives only what is left of them, so no answer is served past 24 hours.
#[tokio::test]
async fn an_l2_copy_in_l1_expires_with_the_entry() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let body = json!({"prompt": format!("expire with me {n}"), "providers": ["openai"]});
    let first = s.ask(&key, &body).await;
    let cache_key = first.header("x-cache-key").unwrap();
    wait_stored(s, &cache_key).await;
    let fresh = s
        .get(&format!("/__dev/l1/ask/v1/{cache_key}"), None)
        .await
        .json();
    assert_eq!(fresh["cache_control"], "max-age=86400", "{fresh}");
    // The entry is now 2 minutes short of 24 hours old; L1 loses its copy.
    let aged = s
        .post(
            &format!("/__dev/l2/ask/v1/{cache_key}/age"),
            None,
            &json!({"seconds": 86_400 - 120}),
        )
        .await;
    assert_eq!(aged.status, 200, "{}", aged.text);
    drop_l1(s, &cache_key).await;
    let l2 = s.ask(&key, &body).await;
    assert_eq!(l2.json()["cache"]["tier"], "l2", "{}", l2.text);
    let mut cc = Value::Null;
    for _ in 0..40 {
        cc = s
            .get(&format!("/__dev/l1/ask/v1/{cache_key}"), None)
            .await
            .json()["cache_control"]
            .clone();
        if !cc.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let max_age: u64 = cc
        .as_str()
        .and_then(|v| v.strip_prefix("max-age="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no copy in L1: {cc}"));
    assert!((100..=120).contains(&max_age), "the copy lives {max_age} s");
}

#[tokio::test]
async fn normalization_variants_share_an_entry() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let a = s
        .ask(
            &key,
            &json!({"prompt": format!("What is Rust {n}?"), "providers": ["openai"]}),
        )
        .await;
    wait_stored(s, &a.header("x-cache-key").unwrap()).await;
    let b = s
        .ask(
            &key,
            &json!({"prompt": format!("  what IS   rust {n} "), "providers": ["openai"]}),
        )
        .await;
    assert_eq!(b.json()["cache"]["status"], "hit", "{}", b.text);
    assert_eq!(a.header("x-cache-key"), b.header("x-cache-key"));
    assert_eq!(s.mock_calls(&n).await["total"], 1);
}

#[tokio::test]
async fn changed_param_provider_set_or_model_misses() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let base = json!({"prompt": format!("vary {n}"), "providers": ["openai"], "params": {"temperature": 0.2}});
    let first = s.ask(&key, &base).await;
    wait_stored(s, &first.header("x-cache-key").unwrap()).await;
    let same = s
        .ask(&key, &json!({"prompt": format!("vary {n}"), "providers": ["openai"], "params": {"temperature": 0.20}}))
        .await;
    assert_eq!(same.json()["cache"]["status"], "hit");
    let variants = [
        json!({"prompt": format!("vary {n}"), "providers": ["openai"], "params": {"temperature": 0.3}}),
        json!({"prompt": format!("vary {n}"), "providers": ["openai", "gemini"], "params": {"temperature": 0.2}}),
        json!({"prompt": format!("vary {n}"), "providers": ["openai"], "params": {"temperature": 0.2, "models": {"openai": "gpt-4o"}}}),
        json!({"prompt": format!("vary {n}"), "providers": ["openai"], "params": {"temperature": 0.2, "max_tokens": 100}}),
    ];
    let mut keys = vec![first.header("x-cache-key").unwrap()];
    for v in &variants {
        let r = s.ask(&key, v).await;
        assert_eq!(r.json()["cache"]["status"], "miss", "{v}");
        keys.push(r.header("x-cache-key").unwrap());
    }
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 5, "every variant has its own key");
}

#[tokio::test]
async fn private_scope_is_never_served_to_another_account_but_shared_is() {
    let s = &stack();
    let (_, key_a) = s.live_key().await;
    let (_, key_b) = s.live_key().await;
    let n = nonce();
    let private = json!({"prompt": format!("secret plan {n}"), "providers": ["openai"], "cache_scope": "private"});
    let a1 = s.ask(&key_a, &private).await;
    assert_eq!(a1.json()["cache"]["scope"], "private");
    wait_stored(s, &a1.header("x-cache-key").unwrap()).await;
    assert_eq!(
        s.ask(&key_a, &private).await.json()["cache"]["status"],
        "hit"
    );
    let b1 = s.ask(&key_b, &private).await;
    assert_eq!(
        b1.json()["cache"]["status"],
        "miss",
        "B must not see A's private entry"
    );
    assert_ne!(a1.header("x-cache-key"), b1.header("x-cache-key"));

    let shared = json!({"prompt": format!("public fact {n}"), "providers": ["openai"]});
    let a2 = s.ask(&key_a, &shared).await;
    wait_stored(s, &a2.header("x-cache-key").unwrap()).await;
    let b2 = s.ask(&key_b, &shared).await;
    assert_eq!(
        b2.json()["cache"]["status"],
        "hit",
        "shared scope dedupes across accounts"
    );
    // The private key differs from the shared key of the same question.
    assert_ne!(
        a1.header("x-cache-key"),
        s.ask(
            &key_a,
            &json!({"prompt": format!("secret plan {n}"), "providers": ["openai"]})
        )
        .await
        .header("x-cache-key")
    );
}

#[tokio::test]
async fn an_entry_holds_only_provider_results() {
    let s = &stack();
    let (account, key) = s.live_key().await;
    let n = nonce();
    let r = s.ask(&key, &json!({"prompt": format!("what is stored {n}"), "providers": ["openai", "perplexity"], "cache_scope": "private"})).await;
    let entry = wait_stored(s, &r.header("x-cache-key").unwrap()).await;
    let text = entry.to_string();
    assert_eq!(
        entry.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["results"]
    );
    assert_eq!(entry["results"].as_array().unwrap().len(), 2);
    for forbidden in [
        account.as_str(),
        &key[..12],
        &key[12..],
        r.json()["id"].as_str().unwrap(),
        "req_",
        "acct_",
        "lvk_",
    ] {
        assert!(
            !text.contains(forbidden),
            "entry contains {forbidden}: {text}"
        );
    }
}

#[tokio::test]
async fn no_cache_refreshes_and_no_store_bypasses() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let body = json!({"prompt": format!("directives {n}"), "providers": ["anthropic"]});
    // no-store: neither read nor write.
    let ns = ask_with(s, &key, &body, Some("no-store")).await;
    assert_eq!(ns.json()["cache"]["status"], "bypass");
    let k = ns.header("x-cache-key").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(s.get(&format!("/__dev/l2/ask/v1/{k}"), None).await.json()["value"].is_null());
    // Default: miss, stored.
    assert_eq!(s.ask(&key, &body).await.json()["cache"]["status"], "miss");
    wait_stored(s, &k).await;
    assert_eq!(s.ask(&key, &body).await.json()["cache"]["status"], "hit");
    assert_eq!(s.mock_calls(&n).await["total"], 2);
    // no-cache: skips the lookup (a new upstream call), stores the fresh result.
    let nc = ask_with(s, &key, &body, Some("no-cache")).await;
    assert_eq!(nc.json()["cache"]["status"], "refresh");
    assert_eq!(
        nc.header("cache-status").unwrap(),
        "edge-gateway; fwd=request; stored"
    );
    assert_eq!(s.mock_calls(&n).await["total"], 3);
    // no-store even with a stored entry: a new call, nothing read.
    let ns2 = ask_with(s, &key, &body, Some("no-store")).await;
    assert_eq!(ns2.json()["cache"]["status"], "bypass");
    assert_eq!(s.mock_calls(&n).await["total"], 4);
}

#[tokio::test]
async fn a_partial_upstream_failure_is_not_cached() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let body = json!({"prompt": format!("flaky [[mock:gemini=500]] {n}"), "providers": ["openai", "gemini"]});
    let first = s.ask(&key, &body).await;
    assert_eq!(first.status, 200);
    let b = first.json();
    let gem = b["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["provider"] == "gemini")
        .unwrap()
        .clone();
    assert_eq!(gem["error"]["code"], "upstream_server_error", "{gem}");
    assert!(b["results"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["provider"] == "openai" && r["content"].is_string()));
    assert_eq!(
        first.header("cache-status").unwrap(),
        "edge-gateway; fwd=uri-miss"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = s.ask(&key, &body).await;
    assert_eq!(second.json()["cache"]["status"], "miss");
    assert_eq!(s.mock_calls(&n).await["total"], 4);
}

/// A provider can answer 200 with no text (Gemini whose thinking used up `maxOutputTokens`):
/// the caller gets that answer, but it is not stored, so no other call is served it for 24 h.
#[tokio::test]
async fn an_answer_without_text_is_returned_but_not_cached() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let body = json!({"prompt": format!("thinking [[mock:gemini=empty]] {n}"), "providers": ["openai", "gemini"]});
    let first = s.ask(&key, &body).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let b = first.json();
    let gem = b["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["provider"] == "gemini")
        .unwrap()
        .clone();
    assert_eq!(gem["content"], "", "{gem}");
    assert_eq!(
        first.header("cache-status").unwrap(),
        "edge-gateway; fwd=uri-miss"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = s.ask(&key, &body).await;
    assert_eq!(second.json()["cache"]["status"], "miss");
    assert_eq!(s.mock_calls(&n).await["total"], 4);
}

async fn ask_failing(s: &Stack, key: &str, body: &Value, tiers: &str) -> Reply {
    let rb = s
        .client
        .post(s.url("/v1/ask"))
        .bearer_auth(key)
        .header("x-dev-fail", tiers)
        .json(body);
    send(rb).await
}

/// A failing tier (here made to fail by the dev-only `x-dev-fail` hook, at the point where a
/// real Cache API or KV error is handled) is a miss and a log line, never a failed request.
#[tokio::test]
async fn a_failing_tier_is_a_logged_miss_not_a_failed_request() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let body = json!({"prompt": format!("failing tiers {n}"), "providers": ["openai"]});

    // Both tiers fail to write: the answer is served, and nothing is stored.
    let first = ask_failing(s, &key, &body, "l1,l2").await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.json()["cache"]["status"], "miss");
    assert!(first.json()["results"][0]["content"].is_string());
    let cache_key = first.header("x-cache-key").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let l2 = s.get(&format!("/__dev/l2/ask/v1/{cache_key}"), None).await;
    assert!(
        l2.json()["value"].is_null(),
        "the failed L2 write stored nothing"
    );

    // A call that can write stores the entry; then L1 failing falls through to L2.
    let stored = ask_with(s, &key, &body, None).await;
    assert_eq!(stored.json()["cache"]["status"], "miss");
    wait_stored(s, &cache_key).await;
    assert_eq!(s.mock_calls(&n).await["total"], 2);
    let l1_down = ask_failing(s, &key, &body, "l1").await;
    assert_eq!(l1_down.status, 200, "{}", l1_down.text);
    assert_eq!(l1_down.json()["cache"]["status"], "hit");
    assert_eq!(l1_down.json()["cache"]["tier"], "l2");

    // Both failing to read: a fresh fanout answers.
    let both_down = ask_failing(s, &key, &body, "l1,l2").await;
    assert_eq!(both_down.status, 200, "{}", both_down.text);
    assert_eq!(both_down.json()["cache"]["status"], "miss");
    assert_eq!(s.mock_calls(&n).await["total"], 3);

    // Every failure was logged.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = std::fs::read_to_string(s.state_dir.join("stack.log")).unwrap();
    for line in [
        "L1 lookup failed",
        "L2 lookup failed",
        "L1 write failed",
        "L2 write failed",
    ] {
        assert!(log.contains(line), "`{line}` is logged");
    }
}

/// `Cache-Control: only-if-cached` (RFC 9111): a miss is a 504 `not_cached` with no provider
/// call, no charge and nothing stored, in each endpoint's own error shape; once the answer is
/// cached, the same call is served from the cache.
#[tokio::test]
async fn only_if_cached_answers_from_the_cache_or_504_without_a_provider_call() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let body = json!({"prompt": format!("only if cached {n}"), "providers": ["openai"]});
    let before = s.balance(&key).await;
    let miss = ask_with(s, &key, &body, Some("only-if-cached")).await;
    assert_eq!(miss.status, 504, "{}", miss.text);
    assert_eq!(miss.json()["error"]["code"], "not_cached", "{}", miss.text);
    let chat = json!({"model": "gpt-4o-mini", "max_completion_tokens": 16,
        "messages": [{"role": "user", "content": format!("only if cached chat {n}")}]});
    let dropin = send(
        s.client
            .post(s.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .header("Cache-Control", "only-if-cached")
            .json(&chat),
    )
    .await;
    assert_eq!(dropin.status, 504, "{}", dropin.text);
    assert_eq!(
        dropin.json()["error"]["code"],
        "not_cached",
        "{}",
        dropin.text
    );
    assert!(
        dropin.json()["error"]["type"].is_string(),
        "OpenAI's shape: {}",
        dropin.text
    );
    // A retry would be the same miss: the SDKs are told not to retry it.
    for r in [&miss, &dropin] {
        assert_eq!(r.header("x-should-retry").as_deref(), Some("false"));
    }
    assert_eq!(
        s.mock_calls(&format!("only if cached {n}")).await["total"],
        0
    );
    assert_eq!(
        s.mock_calls(&format!("only if cached chat {n}")).await["total"],
        0
    );
    // Nothing was charged (the hit fee is for answers served).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.balance(&key).await, before);
    // Nothing was stored either: the next default call is a miss, which stores.
    let first = ask_with(s, &key, &body, None).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.json()["cache"]["status"], "miss", "{}", first.text);
    let cache_key = first.json()["cache"]["key"].as_str().unwrap().to_string();
    wait_stored(s, &cache_key).await;
    let hit = ask_with(s, &key, &body, Some("only-if-cached")).await;
    assert_eq!(hit.status, 200, "{}", hit.text);
    assert_eq!(hit.json()["cache"]["status"], "hit", "{}", hit.text);
    assert_eq!(
        s.mock_calls(&format!("only if cached {n}")).await["total"],
        1
    );
}
