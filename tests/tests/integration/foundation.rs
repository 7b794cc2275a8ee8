//! Accounts, keys, admin auth, body validation and a fanout, through the public API.

use std::time::Duration;

use integration_tests::{json, nonce, reqwest::Method, send, stack, Stack};

/// A new key minted with `key` (`POST /v1/keys`): (token, prefix).
async fn mint(s: &Stack, key: &str, name: &str) -> (String, String) {
    let r = s.post("/v1/keys", Some(key), &json!({"name": name})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let v = r.json();
    let field = |f: &str| v[f].as_str().unwrap().to_string();
    (field("key"), field("prefix"))
}

fn ask_body(prompt: &str) -> serde_json::Value {
    json!({"prompt": prompt, "providers": ["openai", "anthropic", "gemini", "perplexity"]})
}

#[tokio::test]
async fn version_and_security_txt_are_served() {
    let s = &stack();
    let v = s.get("/version", None).await;
    assert_eq!(v.status, 200);
    let commit = v.json()["commit"].as_str().unwrap().to_string();
    // The commit the running build was made from: this checkout's (`-dirty` with changes not
    // committed), never the fallback `unknown`.
    let head = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(integration_tests::root())
        .output()
        .expect("git");
    let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
    assert_eq!(head.len(), 40, "git rev-parse HEAD: {head}");
    assert_eq!(commit.trim_end_matches("-dirty"), head, "commit: {commit}");
    let t = s.get("/.well-known/security.txt", None).await;
    assert_eq!(t.status, 200);
    assert!(t.text.contains("Contact:") && t.text.contains("Expires:"));
}

#[tokio::test]
async fn admin_api_requires_the_admin_token() {
    let s = &stack();
    let none = s
        .post("/admin/accounts", None, &json!({"tier": "free"}))
        .await;
    assert_eq!(none.status, 401);
    assert_eq!(none.json()["error"]["code"], "unauthorized");
    let wrong = s
        .post(
            "/admin/accounts",
            Some("not-the-token"),
            &json!({"tier": "free"}),
        )
        .await;
    assert_eq!(wrong.status, 401);
    let bad_tier = s
        .admin(Method::POST, "/admin/accounts", &json!({"tier": "gold"}))
        .await;
    assert_eq!(bad_tier.status, 400);
    assert_eq!(bad_tier.json()["error"]["param"], "tier");
}

#[tokio::test]
async fn fanout_returns_one_result_per_provider_from_the_mock() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let r = s
        .ask(
            &key,
            &ask_body(&format!("What is the capital of France? {n}")),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json();
    assert!(body["id"].as_str().unwrap().starts_with("req_"));
    assert_eq!(r.header("x-request-id").as_deref(), body["id"].as_str());
    let results = body["results"].as_array().unwrap();
    let providers: Vec<&str> = results
        .iter()
        .map(|x| x["provider"].as_str().unwrap())
        .collect();
    assert_eq!(providers, ["anthropic", "gemini", "openai", "perplexity"]);
    for x in results {
        assert!(x["error"].is_null(), "{x}");
        let content = x["content"].as_str().unwrap();
        assert!(
            content.contains(x["provider"].as_str().unwrap()),
            "mock content names its provider: {content}"
        );
        assert!(x["tokens"]["input"].as_u64().unwrap() > 0);
    }
    let calls = s.mock_calls(&n).await;
    assert_eq!(calls["total"], 4, "{calls}");
    for p in ["openai", "anthropic", "gemini", "perplexity"] {
        assert_eq!(calls[p], 1, "{p}: {calls}");
    }
}

#[tokio::test]
async fn unknown_malformed_and_revoked_keys_get_one_identical_401() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let ok = s.get("/v1/account", Some(&key)).await;
    assert_eq!(ok.status, 200, "{}", ok.text);

    // Unknown: right shape, never minted.
    let unknown = format!("lvk_live_{}", "A".repeat(43));
    // Same prefix as a real key, wrong secret.
    let forged = format!("{}{}", &key[..12], "B".repeat(key.len() - 12));
    let revoked = {
        let r = s
            .post("/v1/keys", Some(&key), &json!({"name": "to-revoke"}))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let v = r.json();
        let (k2, prefix) = (
            v["key"].as_str().unwrap().to_string(),
            v["prefix"].as_str().unwrap().to_string(),
        );
        assert_eq!(s.get("/v1/account", Some(&k2)).await.status, 200);
        let d = s.delete(&format!("/v1/keys/{prefix}"), Some(&key)).await;
        assert_eq!(d.status, 200, "{}", d.text);
        k2
    };
    let mut bodies = Vec::new();
    for bad in [
        unknown.as_str(),
        "lvk_live_short",
        "garbage",
        forged.as_str(),
        revoked.as_str(),
    ] {
        let r = s.get("/v1/account", Some(bad)).await;
        assert_eq!(r.status, 401, "{bad}");
        bodies.push(r.text);
    }
    let none = s.get("/v1/account", None).await;
    assert_eq!(none.status, 401);
    bodies.push(none.text);
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
}

#[tokio::test]
async fn revoked_key_is_refused_on_the_next_ask() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let (k2, prefix) = mint(s, &key, "second").await;
    let n = nonce();
    let body = json!({"prompt": format!("revocation {n}"), "providers": ["openai"]});
    assert_eq!(s.ask(&k2, &body).await.status, 200);
    assert_eq!(
        s.delete(&format!("/v1/keys/{prefix}"), Some(&key))
            .await
            .status,
        200
    );
    let body2 = json!({"prompt": format!("revocation again {n}"), "providers": ["openai"]});
    let after = s.ask(&k2, &body2).await;
    assert_eq!(after.status, 401, "{}", after.text);
    assert_eq!(s.mock_calls(&format!("again {n}")).await["total"], 0);
    // Revoking it again is answered as before but keeps the first revocation's time, which
    // starts its 30 days under the key cap (it was moved to now).
    let revoked_at = || {
        s.sqlite(
            "print(c.execute('SELECT revoked_at FROM api_keys WHERE prefix = ?', (sys.argv[2],)).fetchone()[0])",
            &[&prefix],
        )
    };
    let first = revoked_at();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let again = s.delete(&format!("/v1/keys/{prefix}"), Some(&key)).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(revoked_at(), first);
}

/// A call that read a key's row from D1 just before the key was revoked writes that (active)
/// row to the KV auth cache just after the revocation deleted it (the dev hook widens that
/// window to 500 ms). The revocation deletes the entry again 2 s later, so the key is refused
/// from then on, not for the rest of the cache's 60 s.
#[tokio::test]
async fn a_revocation_racing_an_auth_cache_write_still_takes_effect() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let (k2, prefix) = mint(s, &key, "racing").await;
    // First use of k2: its row comes from D1; its KV write waits 500 ms.
    let first = send(
        s.client
            .get(s.url("/v1/account"))
            .bearer_auth(&k2)
            .header("x-dev-auth-cache-delay-ms", "500"),
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.text);
    let revoked = s.delete(&format!("/v1/keys/{prefix}"), Some(&key)).await;
    assert_eq!(revoked.status, 200, "{}", revoked.text);
    // The stale row lands in KV after the revocation; the second delete removes it.
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    let after = s.get("/v1/account", Some(&k2)).await;
    assert_eq!(after.status, 401, "{}", after.text);
}

/// One account cannot use up the shared prefix space by minting (and revoking) keys in a loop:
/// `POST /v1/keys` stops at the account's cap (1,000; the suite's stack sets 12), revoked keys
/// included, with a 409; the daily cron drops keys revoked over 30 days ago, which frees room.
#[tokio::test]
async fn minting_stops_at_the_key_cap_until_old_revoked_keys_are_purged() {
    use integration_tests::DEV_MAX_KEYS_PER_ACCOUNT;
    let s = &stack();
    let (_, key) = s.live_key().await;
    // Twice the cap's worth of mints at once: the cap holds (checked in the insert itself).
    let bodies: Vec<_> = (0..2 * DEV_MAX_KEYS_PER_ACCOUNT)
        .map(|i| json!({"name": format!("k{i}")}))
        .collect();
    let mints = bodies.iter().map(|b| s.post("/v1/keys", Some(&key), b));
    let replies = futures::future::join_all(mints).await;
    let mut prefixes = Vec::new();
    for r in &replies {
        match r.status {
            201 => prefixes.push(r.json()["prefix"].as_str().unwrap().to_string()),
            409 => assert_eq!(r.json()["error"]["code"], "key_limit_reached"),
            other => panic!("{other}: {}", r.text),
        }
    }
    assert_eq!(
        prefixes.len() as u64,
        DEV_MAX_KEYS_PER_ACCOUNT - 1,
        "the account's first key counts"
    );
    // Revoked keys still count.
    let victim = prefixes.pop().unwrap();
    assert_eq!(
        s.delete(&format!("/v1/keys/{victim}"), Some(&key))
            .await
            .status,
        200
    );
    let full = s
        .post("/v1/keys", Some(&key), &json!({"name": "one too many"}))
        .await;
    assert_eq!(full.status, 409, "{}", full.text);
    assert_eq!(full.json()["error"]["code"], "key_limit_reached");
    assert_eq!(full.json()["error"]["max"], DEV_MAX_KEYS_PER_ACCOUNT);
    // 31 days after its revocation, the cron drops the revoked key: room for one more.
    let aged = s
        .post(
            &format!("/__dev/keys/{victim}/age"),
            None,
            &json!({"days": 31}),
        )
        .await;
    assert_eq!(aged.status, 200, "{}", aged.text);
    let cron = send(
        s.client
            .get(s.url("/__scheduled"))
            .query(&[("cron", "0 4 * * *")]),
    )
    .await;
    assert_eq!(cron.status, 200, "{}", cron.text);
    let again = s
        .post("/v1/keys", Some(&key), &json!({"name": "room again"}))
        .await;
    assert_eq!(again.status, 201, "{}", again.text);
    let listed = s.get("/v1/keys", Some(&key)).await.json();
    assert!(!listed.to_string().contains(&victim), "{listed}");
}

/// `POST /v1/keys` needs no body (its fields are optional); a misspelled field, there or in the
/// admin API, is a 400 naming it, not silently ignored (a stored state the operator did not
/// ask for).
#[tokio::test]
async fn optional_bodies_may_be_absent_and_misspelled_fields_are_refused() {
    let s = &stack();
    let (account, key) = s.live_key().await;
    let bare = send(s.client.post(s.url("/v1/keys")).bearer_auth(&key)).await;
    assert_eq!(bare.status, 201, "{}", bare.text);
    assert_eq!(bare.json()["mode"], "live");
    // A body is never ignored: without a JSON content type it is a 415, not a default key.
    let untyped = send(
        s.client
            .post(s.url("/v1/keys"))
            .bearer_auth(&key)
            .body(r#"{"mode":"test"}"#),
    )
    .await;
    assert_eq!(untyped.status, 415, "{}", untyped.text);
    let typo = s.post("/v1/keys", Some(&key), &json!({"nmae": "x"})).await;
    assert_eq!(
        (typo.status, typo.json()["error"]["field"].clone()),
        (400, json!("nmae")),
        "{}",
        typo.text
    );

    let path = format!("/admin/accounts/{account}");
    let limit = s
        .admin(
            Method::PATCH,
            &path,
            &json!({"tier": "enterprise", "limit": {"burst": 1000, "per_second": 50}}),
        )
        .await;
    assert_eq!(
        (limit.status, limit.json()["error"]["field"].clone()),
        (400, json!("limit")),
        "{}",
        limit.text
    );
    let inner = s
        .admin(
            Method::PATCH,
            &path,
            &json!({"tier": "enterprise", "limits": {"burst": 5, "per_second": 1, "burts": 9}}),
        )
        .await;
    assert_eq!(inner.status, 400, "{}", inner.text);
    let credit = s
        .admin(
            Method::POST,
            "/admin/accounts",
            &json!({"tier": "pro", "credit": 5000}),
        )
        .await;
    assert_eq!(
        (credit.status, credit.json()["error"]["field"].clone()),
        (400, json!("credit")),
        "{}",
        credit.text
    );
    // Nothing was changed by the refused calls.
    assert_eq!(s.get("/v1/account", Some(&key)).await.json()["tier"], "pro");
}

#[tokio::test]
async fn keys_list_shows_prefix_name_and_last_use_never_the_hash() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    assert_eq!(s.get("/v1/account", Some(&key)).await.status, 200);
    let r = s.get("/v1/keys", Some(&key)).await;
    assert_eq!(r.status, 200);
    let keys = r.json()["keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["prefix"], &key[..12]);
    assert_eq!(keys[0]["name"], "test");
    // Exactly these fields: nothing else of the row (its hash, under any name) goes out.
    let mut fields: Vec<&str> = keys[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "created_at",
            "last_used_at",
            "mode",
            "name",
            "prefix",
            "status"
        ],
        "{}",
        r.text
    );
    let hash = gateway_core::keys::hash_token(&key);
    assert!(
        !r.text.contains("hash") && !r.text.contains(&hash) && !r.text.contains(&key[12..]),
        "{}",
        r.text
    );
    // last_used_at is written after the first authenticated call.
    let mut seen = false;
    for _ in 0..20 {
        let r = s.get("/v1/keys", Some(&key)).await;
        if r.json()["keys"][0]["last_used_at"].is_string() {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(seen, "last_used_at never set");
    // A key minted through the account API works and is returned exactly once.
    let m = s
        .post(
            "/v1/keys",
            Some(&key),
            &json!({"name": "ci", "mode": "test"}),
        )
        .await;
    assert_eq!(m.status, 201);
    let token = m.json()["key"].as_str().unwrap().to_string();
    assert!(token.starts_with("lvk_test_") && token.len() == 52);
    assert!(!s
        .get("/v1/keys", Some(&key))
        .await
        .text
        .contains(&token[12..]));
}

#[tokio::test]
async fn ask_validation_errors_use_the_envelope_and_right_status() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let cases = [
        (
            json!({"prompt": "x".repeat(20_481), "providers": ["openai"]}),
            413,
            "prompt_too_large",
        ),
        (
            json!({"prompt": "hi", "providers": []}),
            400,
            "invalid_providers",
        ),
        (
            json!({"prompt": "hi", "providers": ["openai", "openai"]}),
            400,
            "invalid_providers",
        ),
        (
            json!({"prompt": "hi", "providers": ["mistral"]}),
            400,
            "invalid_providers",
        ),
        (
            json!({"prompt": "hi", "providers": ["openai"], "params": {"temperature": 9}}),
            400,
            "invalid_param",
        ),
        (
            json!({"prompt": "hi", "providers": ["openai"], "params": {"max_tokens": 999999}}),
            400,
            "invalid_param",
        ),
        (
            json!({"prompt": "hi", "providers": ["openai"], "params": {"bogus": 1}}),
            400,
            "invalid_param",
        ),
        (
            json!({"prompt": 5, "providers": ["openai"]}),
            400,
            "invalid_request",
        ),
        (
            json!({"prompt": "hi", "providers": ["openai"], "params": {"models": {"openai": "dall-e-3"}}}),
            403,
            "model_not_allowed",
        ),
    ];
    for (body, status, code) in cases {
        let r = s.ask(&key, &body).await;
        assert_eq!(r.status, status, "{body}: {}", r.text);
        assert_eq!(r.json()["error"]["code"], code, "{}", r.text);
        assert!(r.json()["error"]["message"].is_string());
    }
    // Not JSON at all.
    let r = send(
        s.client
            .post(s.url("/v1/ask"))
            .bearer_auth(&key)
            .header("Content-Type", "text/plain")
            .body("hello"),
    )
    .await;
    assert_eq!(r.status, 415);
    assert_eq!(r.json()["error"]["code"], "unsupported_media_type");
    let r = send(
        s.client
            .post(s.url("/v1/ask"))
            .bearer_auth(&key)
            .header("Content-Type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "invalid_json");
    // A body over the cap is refused without being read whole.
    let big = vec![b'a'; 300 * 1024];
    let r = send(
        s.client
            .post(s.url("/v1/ask"))
            .bearer_auth(&key)
            .header("Content-Type", "application/json")
            .body(big),
    )
    .await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"]["code"], "body_too_large");
    // Unknown route and wrong method.
    assert_eq!(s.get("/v1/nope", Some(&key)).await.status, 404);
    assert_eq!(s.get("/v1/ask", Some(&key)).await.status, 405);
}

#[tokio::test]
async fn test_keys_get_synthetic_answers_without_upstream_calls() {
    let s = &stack();
    let a = s.account("free", 0).await;
    let key = s.key(&a, "test").await;
    let n = nonce();
    let r = s
        .ask(
            &key,
            &json!({"prompt": format!("synthetic {n}"), "providers": ["openai", "gemini"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json();
    for x in body["results"].as_array().unwrap() {
        assert!(x["content"].as_str().unwrap().starts_with("[test "), "{x}");
    }
    assert_eq!(body["usage"]["credits"], 0);
    assert_eq!(s.mock_calls(&n).await["total"], 0);
}

/// A test key's synthetic answer never reaches the cache, so a live key asking the same
/// question gets a real answer; and a test key is never served what live keys paid for.
#[tokio::test]
async fn test_keys_neither_read_nor_write_the_cache() {
    let s = &stack();
    let a = s.account("free", 0).await;
    let test_key = s.key(&a, "test").await;
    let (_, live_key) = s.live_key().await;
    let n = nonce();
    let body = json!({"prompt": format!("poison {n}"), "providers": ["openai"]});
    let synthetic = s.ask(&test_key, &body).await;
    assert_eq!(synthetic.status, 200, "{}", synthetic.text);
    assert_eq!(synthetic.json()["cache"]["status"], "bypass");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let live = s.ask(&live_key, &body).await;
    assert_eq!(live.status, 200, "{}", live.text);
    let content = live.json()["results"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        !content.starts_with("[test "),
        "a live key got a test answer: {content}"
    );
    assert_eq!(live.json()["cache"]["status"], "miss");
    assert_eq!(s.mock_calls(&n).await["total"], 1);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    // The live answer is now cached; the test key still gets its synthetic one.
    let again = s.ask(&test_key, &body).await;
    assert_eq!(again.json()["cache"]["status"], "bypass");
    let content = again.json()["results"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(content.starts_with("[test "), "{content}");
    assert_eq!(s.mock_calls(&n).await["total"], 1);
}

/// A test key reads its account but cannot change it: no live key minted with it, no account
/// deleted, no provider key registered.
#[tokio::test]
async fn a_test_key_cannot_change_its_account() {
    let s = &stack();
    let (account, live) = s.live_key().await;
    let test = s.key(&account, "test").await;
    let refused = [
        s.post("/v1/keys", Some(&test), &json!({"mode": "live"}))
            .await,
        s.post("/v1/keys", Some(&test), &json!({"mode": "test"}))
            .await,
        s.delete(&format!("/v1/keys/{}", &live[..12]), Some(&test))
            .await,
        s.delete("/v1/account", Some(&test)).await,
        s.delete("/v1/provider-keys/openai", Some(&test)).await,
    ];
    for r in refused {
        assert_eq!(r.status, 403, "{}", r.text);
        assert_eq!(r.json()["error"]["code"], "live_key_required");
    }
    // Reading works, and the account and its live key are untouched.
    assert_eq!(s.get("/v1/account", Some(&test)).await.status, 200);
    let keys = s.get("/v1/keys", Some(&live)).await.json();
    assert_eq!(keys["keys"].as_array().unwrap().len(), 2, "{keys}");
    assert!(keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["status"] == "active"));
    let minted = s
        .post("/v1/keys", Some(&live), &json!({"mode": "test"}))
        .await;
    assert_eq!(minted.status, 201, "{}", minted.text);
}

/// A key revoked a moment ago, as seen by an isolate whose caches still say active, may still
/// be served reads (the documented window) but cannot change the account.
#[tokio::test]
async fn a_key_revoked_elsewhere_cannot_change_the_account_while_caches_lag() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    assert_eq!(s.get("/v1/account", Some(&key)).await.status, 200);
    s.revoke_elsewhere(&key).await;
    for r in [
        s.post("/v1/keys", Some(&key), &json!({"mode": "live"}))
            .await,
        s.delete("/v1/account", Some(&key)).await,
    ] {
        assert_eq!(r.status, 401, "{}", r.text);
    }
}

/// Found by review (2026-12-08): an admin top-up retried under its `Idempotency-Key` (after a
/// 503 whose credit was applied) is applied once; another key, or none, is a new top-up; a
/// malformed key is a 400 that credits nothing.
#[tokio::test]
async fn a_top_up_retried_under_its_idempotency_key_is_applied_once() {
    let s = &stack();
    let (account, key) = s.live_key().await;
    let before = s.balance(&key).await;
    let top_up = |id: Option<&str>| {
        let mut rb = s
            .client
            .post(s.url(&format!("/admin/accounts/{account}/credits")))
            .bearer_auth(integration_tests::ADMIN_TOKEN)
            .json(&json!({"amount": 1000}));
        if let Some(id) = id {
            rb = rb.header("Idempotency-Key", id);
        }
        send(rb)
    };
    let id = format!("top-up-{}", nonce());
    for _ in 0..3 {
        let r = top_up(Some(&id)).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json()["credits_balance"], before + 1000, "{}", r.text);
    }
    let other = top_up(Some(&format!("{id}-b"))).await;
    assert_eq!(
        other.json()["credits_balance"],
        before + 2000,
        "{}",
        other.text
    );
    let plain = top_up(None).await;
    assert_eq!(
        plain.json()["credits_balance"],
        before + 3000,
        "{}",
        plain.text
    );
    let bad = top_up(Some("has space")).await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert_eq!(s.balance(&key).await, before + 3000);
}
