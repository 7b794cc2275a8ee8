//! Security and billing hardening (issue 14): each test fails without its fix.

use std::time::Duration;

use integration_tests::{
    json, nonce, reqwest::Method, send, stack, stack_alone, Stack, LIVE_CREDITS,
};

/// The `keys` row of `prefix`, as `GET /v1/keys` lists it to `reader`.
async fn key_row(s: &Stack, reader: &str, prefix: &str) -> serde_json::Value {
    let r = s.get("/v1/keys", Some(reader)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["prefix"] == prefix)
        .cloned()
        .unwrap_or_else(|| panic!("no key {prefix} in {}", r.text))
}

/// A token with `key`'s prefix and another secret of the same shape.
fn forge(key: &str) -> String {
    let filler = if key.ends_with('A') { "B" } else { "A" };
    format!("{}{}", &key[..12], filler.repeat(key.len() - 12))
}

#[tokio::test]
async fn a_forged_token_with_a_real_keys_prefix_leaves_that_key_unused() {
    let s = &stack();
    let account = s.account("pro", 100_000).await;
    let victim = s.key(&account, "live").await;
    let watcher = s.key(&account, "live").await;
    let forged = forge(&victim);
    assert_eq!(forged.len(), victim.len());
    assert_ne!(forged, victim);
    for _ in 0..3 {
        let r = s.get("/v1/account", Some(&forged)).await;
        assert_eq!(r.status, 401, "{}", r.text);
    }
    // Whatever a call writes, it writes off the response path within a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let row = key_row(s, &watcher, &victim[..12]).await;
    assert!(
        row["last_used_at"].is_null(),
        "forged token touched the key: {row}"
    );
    // The real key still works, and its use is recorded.
    assert_eq!(s.get("/v1/account", Some(&victim)).await.status, 200);
    let mut used = false;
    for _ in 0..30 {
        if key_row(s, &watcher, &victim[..12]).await["last_used_at"].is_string() {
            used = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(used, "the real key's use was not recorded");
}

#[tokio::test]
async fn a_walk_over_unknown_prefixes_is_throttled_per_isolate() {
    let s = &stack_alone();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let mut statuses = Vec::new();
    // Well-formed tokens on prefixes no key has, as fast as one client sends them.
    for i in 0..120 {
        let secret: String = format!("{i:03}{n}{}", "x".repeat(60))
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { 'z' })
            .take(43)
            .collect();
        let token = format!("lvk_live_{secret}");
        statuses.push(s.get("/v1/account", Some(&token)).await.status);
    }
    assert!(
        statuses.iter().all(|st| *st == 401 || *st == 429),
        "{statuses:?}"
    );
    let throttled = statuses.iter().filter(|st| **st == 429).count();
    assert!(throttled > 0, "no lookup was throttled: {statuses:?}");
    // A second later the isolate reads D1 again: a real key authenticates.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(s.get("/v1/account", Some(&key)).await.status, 200);
}

/// Issue 14.3: a key revoked elsewhere (D1 says revoked, this isolate's caches still say
/// active) reads no data: every data route checks D1, as the paid path checks the bucket.
#[tokio::test]
async fn a_key_revoked_elsewhere_reads_no_account_data_while_caches_lag() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let r = s
        .ask(
            &key,
            &json!({"prompt": format!("archived {}", nonce()), "providers": ["openai"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = r.json()["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        s.get(&format!("/v1/ask/{id}"), Some(&key)).await.status,
        200
    );
    s.revoke_elsewhere(&key).await;
    for path in [
        format!("/v1/ask/{id}"),
        "/v1/usage".into(),
        "/v1/keys".into(),
        "/v1/account".into(),
        "/v1/provider-keys".into(),
        "/v1/provider-keys/access-log".into(),
    ] {
        let r = s.get(&path, Some(&key)).await;
        assert_eq!(r.status, 401, "{path}: {}", r.text);
    }
}

/// Issue 14.4: usage rows name a route from a fixed list, and 404s and 405s leave no row.
#[tokio::test]
async fn unknown_routes_leave_no_usage_row_and_endpoints_are_a_fixed_list() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let long = "x".repeat(16_000);
    assert_eq!(s.get(&format!("/v1/{long}"), Some(&key)).await.status, 404);
    assert_eq!(s.get("/v1/messages", Some(&key)).await.status, 405);
    assert_eq!(s.get("/v1/ask/not-an-id", Some(&key)).await.status, 404);
    let bad = s.post("/v1/ask", Some(&key), &json!({"prompt": 5})).await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let u = s.get("/v1/usage", Some(&key)).await;
    assert_eq!(u.status, 200, "{}", u.text);
    let events = u.json()["events"].as_array().unwrap().clone();
    let endpoints: Vec<&str> = events
        .iter()
        .map(|e| e["endpoint"].as_str().unwrap())
        .collect();
    assert!(!u.text.contains(&long[..100]), "a raw path was stored");
    assert!(
        !events.iter().any(|e| e["status"] == 405),
        "a 405 left a row: {endpoints:?}"
    );
    assert!(
        endpoints.contains(&"GET /v1/ask/:id") && endpoints.contains(&"POST /v1/ask"),
        "{endpoints:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| e["status"] == 404 && e["endpoint"] == "other"),
        "{endpoints:?}"
    );
    assert!(
        !s.d1_dump().contains(&long[..1000]),
        "the raw path reached D1"
    );
}

/// Issue 14.4: calls that reach neither the cache nor a provider pass a bucket too.
#[tokio::test]
async fn calls_that_reach_no_provider_are_rate_limited() {
    let s = &stack();
    // Free tier: 10 calls burst, so 100 for the unmetered calls.
    let account = s.account("free", 100_000).await;
    let key = s.key(&account, "live").await;
    let mut statuses = Vec::new();
    for _ in 0..110 {
        let r = s.post("/v1/ask", Some(&key), &json!({"prompt": 5})).await;
        statuses.push(r.status);
        if r.status == 429 {
            let v = r.json();
            assert_eq!(v["error"]["code"], "rate_limited", "{}", r.text);
            assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
            break;
        }
    }
    assert_eq!(
        statuses.last(),
        Some(&429),
        "never limited: {} calls",
        statuses.len()
    );
    assert!(statuses.len() > 90, "limited too early: {statuses:?}");
}

/// Found by review (2026-12-08): the isolate's limiter of unmetered calls refuses a data call
/// before it does anything. It used to run after the route, so a key mint it refused had
/// minted the key (whose plaintext, shown once, was then lost) and a refused account deletion
/// had deleted the account.
#[tokio::test]
async fn a_data_call_refused_by_the_limiter_changes_nothing() {
    let s = &stack();
    let account = s.account("free", 100_000).await;
    let key = s.key(&account, "live").await;
    // Each key has its own bucket there: this one reads what the other's calls did.
    let reader = s.key(&account, "live").await;
    let mut calls = 0;
    loop {
        let r = s.get("/v1/account", Some(&key)).await;
        calls += 1;
        if r.status == 429 {
            break;
        }
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(calls < 130, "never limited after {calls} calls");
    }
    let name = format!("refused-{}", nonce());
    let r = s
        .post("/v1/keys", Some(&key), &json!({ "name": name }))
        .await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "rate_limited", "{}", r.text);
    let listed = s.get("/v1/keys", Some(&reader)).await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert!(
        !listed.text.contains(&name),
        "a refused mint minted a key: {}",
        listed.text
    );
    // Once the bucket has refilled, the same call is served and mints it.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let r = s
        .post("/v1/keys", Some(&key), &json!({ "name": name }))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let listed = s.get("/v1/keys", Some(&reader)).await;
    assert!(listed.text.contains(&name), "{}", listed.text);
}

/// Issue 14.8: nosniff everywhere; no-store on everything that carries keys or account data.
#[tokio::test]
async fn account_responses_are_never_stored_and_never_sniffed() {
    let s = &stack();
    let (account, key) = s.live_key().await;
    let minted = s.post("/v1/keys", Some(&key), &json!({})).await;
    assert_eq!(minted.status, 201);
    let admin_minted = s
        .admin(
            Method::POST,
            &format!("/admin/accounts/{account}/keys"),
            &json!({"name": "x", "mode": "live"}),
        )
        .await;
    assert_eq!(admin_minted.status, 201);
    let r = s
        .ask(
            &key,
            &json!({"prompt": format!("headers {}", nonce()), "providers": ["gemini"]}),
        )
        .await;
    let id = r.json()["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut private = vec![minted, admin_minted];
    for path in [
        format!("/v1/ask/{id}"),
        "/v1/usage".into(),
        "/v1/account".into(),
        "/v1/keys".into(),
        "/v1/provider-keys".into(),
        "/v1/provider-keys/access-log".into(),
    ] {
        private.push(s.get(&path, Some(&key)).await);
    }
    for r in &private {
        assert_eq!(r.status / 100, 2, "{}", r.text);
        assert_eq!(
            r.header("cache-control").as_deref(),
            Some("no-store"),
            "{:?}",
            r.headers
        );
    }
    let public = [
        r,
        s.get("/healthz", None).await,
        s.get("/version", None).await,
        s.get("/v1/account", Some("lvk_live_nope")).await,
    ];
    for r in private.iter().chain(public.iter()) {
        assert_eq!(
            r.header("x-content-type-options").as_deref(),
            Some("nosniff")
        );
        assert!(
            !r.headers
                .keys()
                .any(|h| h.as_str().starts_with("access-control-")),
            "{:?}",
            r.headers
        );
    }
}

/// Issue 14.10: the id a `POST /v1/ask` just returned is readable at once.
#[tokio::test]
async fn an_answer_is_readable_right_after_it_was_given() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    for _ in 0..3 {
        let r = s
            .ask(
                &key,
                &json!({"prompt": format!("at once {}", nonce()), "providers": ["openai"]}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let body = r.json();
        let id = body["id"].as_str().unwrap();
        let read = s.get(&format!("/v1/ask/{id}"), Some(&key)).await;
        assert_eq!(read.status, 200, "{}", read.text);
        assert_eq!(read.json(), body);
    }
}

/// Issue 14.11: a test key reads its own calls only, never the live keys' usage or answers.
#[tokio::test]
async fn a_test_key_reads_only_its_own_calls() {
    let s = &stack();
    let (account, live) = s.live_key().await;
    let test = s.key(&account, "test").await;
    let live_answer = s
        .ask(
            &live,
            &json!({"prompt": format!("live {}", nonce()), "providers": ["openai"]}),
        )
        .await;
    let live_id = live_answer.json()["id"].as_str().unwrap().to_string();
    let test_answer = s
        .ask(
            &test,
            &json!({"prompt": format!("test {}", nonce()), "providers": ["openai"]}),
        )
        .await;
    assert_eq!(test_answer.status, 200, "{}", test_answer.text);
    let test_id = test_answer.json()["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        s.get(&format!("/v1/ask/{live_id}"), Some(&test))
            .await
            .status,
        404
    );
    assert_eq!(
        s.get(&format!("/v1/ask/{test_id}"), Some(&test))
            .await
            .status,
        200
    );
    // The live key reads both.
    assert_eq!(
        s.get(&format!("/v1/ask/{live_id}"), Some(&live))
            .await
            .status,
        200
    );
    assert_eq!(
        s.get(&format!("/v1/ask/{test_id}"), Some(&live))
            .await
            .status,
        200
    );
    let u = s.get("/v1/usage", Some(&test)).await.json();
    let prefixes: Vec<&str> = u["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key_prefix"].as_str().unwrap())
        .collect();
    assert!(!prefixes.is_empty());
    assert!(prefixes.iter().all(|p| *p == &test[..12]), "{prefixes:?}");
    assert_eq!(
        u["totals"]["calls"].as_u64().unwrap(),
        prefixes.len() as u64
    );
    let all = s.get("/v1/usage", Some(&live)).await.json();
    assert!(all["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["key_prefix"] == live[..12]));
}

/// The account's balance once its settlements have landed (it stops changing).
async fn settled_balance(s: &Stack, key: &str, start: u64) -> u64 {
    let mut last = start;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let b = s.get("/v1/account", Some(key)).await.json()["credits_balance"]
            .as_u64()
            .unwrap();
        if b != start && b == last {
            return b;
        }
        last = b;
    }
    last
}

/// Issue 14.1: a drop-in call the upstream was still answering when the timeout fired is
/// charged its reserved worst case, not released (the provider bills what it generated).
#[tokio::test]
async fn a_drop_in_call_that_times_out_is_charged_its_worst_case() {
    let s = &stack();
    let credits = 1_000_000;
    let account = s.account("pro", credits).await;
    let key = s.key(&account, "live").await;
    let body = json!({"model": "claude-haiku-4-5", "max_tokens": 64, "messages": [
        {"role": "user", "content": format!("slow [[mock:anthropic=delay:8000]] {}", nonce())}]});
    let worst = s.reserved_for("/v1/messages", &body).await;
    let r = s.post("/v1/messages", Some(&key), &body).await;
    assert_eq!(r.status, 504, "{}", r.text);
    // The SDKs retry a 5xx twice, each retry charged the worst case again: they are told not
    // to, and the message says how to get a long answer (found by review, 2026-12-08).
    assert_eq!(
        r.header("x-should-retry").as_deref(),
        Some("false"),
        "{:?}",
        r.headers
    );
    assert!(r.text.contains("stream"), "{}", r.text);
    let after = settled_balance(s, &key, credits).await;
    assert_eq!(
        credits - after,
        worst,
        "a timed-out call is charged its reservation"
    );
    // Its usage row says so, as one refused by the provider says it cost nothing.
    let refused = json!({"model": "claude-haiku-4-5", "max_tokens": 64, "messages": [
        {"role": "user", "content": format!("refused [[mock:anthropic=529]] {}", nonce())}]});
    let refused = s.post("/v1/messages", Some(&key), &refused).await;
    assert_eq!(refused.status, 529);
    // A refusal that cost nothing may be retried, as the provider's own would be.
    assert!(
        refused.header("x-should-retry").is_none(),
        "{:?}",
        refused.headers
    );
    assert_eq!(s.assert_rows_add_up(&key, credits).await, worst);
}

/// A broker that refuses the gateway itself (its shared secret, as after a rotation done out of
/// order) never called its provider: the caller gets a 503 and is charged nothing, on a
/// drop-in call as on `/v1/ask`.
#[tokio::test]
async fn a_call_the_broker_refused_before_its_provider_costs_nothing() {
    let s = &stack();
    let credits = LIVE_CREDITS;
    let (_, key) = s.live_key().await;
    let wrong = [("x-dev-fail", "broker-secret")];
    let n = nonce();
    let body = json!({"model": "claude-haiku-4-5", "max_tokens": 64, "stream": false,
        "messages": [{"role": "user", "content": format!("refused by the broker {n}")}]});
    for stream in [false, true] {
        let mut body = body.clone();
        body["stream"] = json!(stream);
        let mut rb = s.client.post(s.url("/v1/messages")).bearer_auth(&key);
        for (k, v) in wrong {
            rb = rb.header(k, v);
        }
        let r = send(rb.json(&body)).await;
        assert_eq!(r.status, 503, "{}", r.text);
        assert_eq!(
            r.json()["error"]["code"],
            "broker_unavailable",
            "{}",
            r.text
        );
    }
    let ask = json!({"prompt": format!("refused by the broker {n}"), "providers": ["openai"]});
    let mut rb = s.client.post(s.url("/v1/ask")).bearer_auth(&key);
    for (k, v) in wrong {
        rb = rb.header(k, v);
    }
    let r = send(rb.json(&ask)).await;
    assert_eq!(r.json()["usage"]["credits"], 0, "{}", r.text);
    assert_eq!(s.mock_calls(&n).await["total"], 0);
    // Settled at nothing: the rows and the balance agree on zero.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(s.assert_rows_add_up(&key, credits).await, 0);
}

/// A caller that goes away during a whole (not streamed) miss: the call still ends, is settled
/// at its usage and has its usage row. `no-store`, so that no flight's leader task keeps the
/// request alive: the runtime cancels a request whose client left unless it has work pending
/// in `wait_until`.
#[tokio::test]
async fn a_whole_miss_whose_caller_left_is_settled_at_its_usage() {
    let s = &stack();
    let credits = LIVE_CREDITS;
    let (_, key) = s.live_key().await;
    let n = nonce();
    let body = json!({"prompt": format!("walk away [[mock:*=delay:1500]] {n}"),
        "providers": ["openai"], "params": {"max_tokens": 64}});
    let worst = s.reserved_for("/v1/ask", &body).await;
    let gone = s
        .client
        .post(s.url("/v1/ask"))
        .bearer_auth(&key)
        .header("Cache-Control", "no-store")
        .json(&body)
        .timeout(Duration::from_millis(400))
        .send()
        .await;
    assert!(gone.is_err(), "the client left at 400 ms");
    // The call reached the provider and was answered after the client left.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(s.mock_calls(&n).await["total"], 1);
    let spent = s.assert_rows_add_up(&key, credits).await;
    assert!(
        spent > 0 && spent < worst,
        "settled at its usage, not left to expire at its worst case: {spent} of {worst}"
    );
}

/// Issue 14.1: the same for one provider of a `/v1/ask` fanout: its worst case is part of
/// the call's credits.
#[tokio::test]
async fn a_fanout_provider_that_times_out_is_charged_its_worst_case() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let slow = json!({"prompt": format!("slow [[mock:gemini=delay:20000]] {n}"), "providers": ["gemini"], "params": {"max_tokens": 32}});
    let worst = s.reserved_for("/v1/ask", &slow).await;
    let r = s.ask(&key, &slow).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json();
    assert_eq!(
        body["results"][0]["error"]["code"], "upstream_timeout",
        "{body}"
    );
    assert_eq!(body["usage"]["credits"], worst, "{body}");
    // A provider that refused with its own error is not charged.
    let refused =
        json!({"prompt": format!("refused [[mock:gemini=500]] {n}"), "providers": ["gemini"]});
    let r = s.ask(&key, &refused).await;
    assert_eq!(r.json()["usage"]["credits"], 0, "{}", r.text);
}

/// Issue 14.1: an OpenAI drop-in call with no output cap is forwarded with the tier's cap,
/// the bound its reservation was made for.
#[tokio::test]
async fn an_uncapped_openai_call_is_forwarded_with_the_tier_cap() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": format!("uncapped {n}")}]});
    let r = s.post("/v1/chat/completions", Some(&key), &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let got = integration_tests::send(
        s.client
            .get(format!("{}/__mock/last", s.mock))
            .query(&[("contains", n.as_str())]),
    )
    .await
    .json();
    // The suite's accounts are pro: a 4,096-token cap.
    assert_eq!(got["body"]["max_completion_tokens"], 4096, "{got}");
    assert_eq!(got["body"]["messages"], body["messages"]);
}

/// Issue 14.1: an account has at most its tier's calls in flight (free: 4), so one small
/// balance cannot hold many reservations open at once.
#[tokio::test]
async fn an_account_has_at_most_its_tiers_calls_in_flight() {
    let s = &stack();
    let account = s.account("free", 1_000_000).await;
    let key = s.key(&account, "live").await;
    let n = nonce();
    let calls = (0..8).map(|i| {
        let key = key.clone();
        let body = json!({"prompt": format!("in flight {n} #{i} [[mock:openai=delay:1500]]"), "providers": ["openai"], "params": {"max_tokens": 16}});
        async move { s.ask(&key, &body).await }
    });
    let replies = futures::future::join_all(calls).await;
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let refused: Vec<_> = replies.iter().filter(|r| r.status == 429).collect();
    assert_eq!(
        ok,
        4,
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(refused.len(), 4);
    for r in refused {
        assert_eq!(
            r.json()["error"]["code"],
            "too_many_in_flight",
            "{}",
            r.text
        );
        assert_eq!(r.header("retry-after").as_deref(), Some("1"));
    }
    // Once they have ended, the account calls again.
    let r = s
        .ask(&key, &json!({"prompt": format!("after {n}"), "providers": ["openai"], "params": {"max_tokens": 16}}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

/// Issue 14.2: on the platform's provider keys, only the features the gateway checks and
/// bills: a field, tool, content part or beta outside the allowlists is a 400 naming it, and
/// never reaches the provider.
#[tokio::test]
async fn provider_features_outside_the_allowlist_are_refused_before_the_provider() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let user = |tag: &str| json!([{"role": "user", "content": format!("{tag} {n}")}]);
    let chat = |extra: serde_json::Value, tag: &str| {
        let mut b = json!({"model": "gpt-4o-mini", "max_tokens": 16, "messages": user(tag)});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let msgs = |extra: serde_json::Value, tag: &str| {
        let mut b = json!({"model": "claude-haiku-4-5", "max_tokens": 16, "messages": user(tag)});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let cases = [
        (
            "/v1/chat/completions",
            chat(json!({"store": true}), "store"),
            "store",
        ),
        (
            "/v1/chat/completions",
            chat(json!({"service_tier": "priority"}), "tier"),
            "service_tier",
        ),
        (
            "/v1/chat/completions",
            chat(json!({"web_search_options": {}}), "search"),
            "web_search_options",
        ),
        (
            "/v1/messages",
            msgs(
                json!({"mcp_servers": [{"type": "url", "url": "https://mcp.invalid", "name": "x"}]}),
                "mcp",
            ),
            "mcp_servers",
        ),
        (
            "/v1/messages",
            msgs(
                json!({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
                "tool",
            ),
            "tools",
        ),
        (
            "/v1/messages",
            msgs(json!({"container": "cntr_1"}), "container"),
            "container",
        ),
    ];
    for (path, body, field) in cases {
        let r = s.post(path, Some(&key), &body).await;
        assert_eq!(r.status, 400, "{path} {field}: {}", r.text);
        let v = r.json();
        assert_eq!(v["error"]["code"], "unsupported_feature", "{}", r.text);
        assert_eq!(v["error"]["field"], field, "{}", r.text);
        assert_eq!(v["error"]["type"], "invalid_request_error", "{}", r.text);
    }
    let beta = integration_tests::send(
        s.client
            .post(s.url("/v1/messages"))
            .bearer_auth(&key)
            .header("anthropic-beta", "code-execution-2025-05-22")
            .json(&msgs(json!({}), "beta")),
    )
    .await;
    assert_eq!(beta.status, 400, "{}", beta.text);
    assert_eq!(beta.json()["error"]["field"], "anthropic-beta");
    assert_eq!(
        s.mock_calls(&n).await["total"],
        0,
        "a refused call reached upstream"
    );
    // A listed beta and ordinary fields pass.
    let ok = integration_tests::send(
        s.client
            .post(s.url("/v1/messages"))
            .bearer_auth(&key)
            .header("anthropic-beta", "prompt-caching-2024-07-31")
            .json(&msgs(json!({"metadata": {"user_id": "u1"}}), "ok")),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
}

/// Issue 14.2: the 20 KB prompt cap counts the tool definitions too.
#[tokio::test]
async fn tool_definitions_count_toward_the_prompt_cap() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let body = json!({"model": "gpt-4o-mini", "max_tokens": 16,
        "messages": [{"role": "user", "content": format!("tools {}", nonce())}],
        "tools": [{"type": "function", "function": {"name": "f", "description": "d".repeat(21_000)}}]});
    let r = s.post("/v1/chat/completions", Some(&key), &body).await;
    assert_eq!(r.status, 413, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "prompt_too_large");
}
