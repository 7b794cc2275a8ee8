//! Data handling through the public API: the response archive and its 30-day window, the
//! retention cron, usage events for every outcome without prompt text, and account deletion.

use std::time::Duration;

use integration_tests::{json, nonce, reqwest::Method, send, stack, Reply, Stack, Value};

async fn archived(s: &Stack, key: &str, id: &str) -> Reply {
    let mut last = None;
    for _ in 0..50 {
        let r = s.get(&format!("/v1/ask/{id}"), Some(key)).await;
        if r.status != 404 {
            return r;
        }
        last = Some(r);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    last.unwrap()
}

async fn age(s: &Stack, id: &str, days: u64) {
    let r = s
        .post(
            &format!("/__dev/archive/{id}/age"),
            None,
            &json!({"days": days}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn archive_round_trip_for_the_owner_only() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let r = s
        .ask(
            &key,
            &json!({"prompt": format!("archive me {n}"), "providers": ["openai"]}),
        )
        .await;
    let body = r.json();
    let id = body["id"].as_str().unwrap();
    let got = archived(s, &key, id).await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(got.json(), body);
    // A cache hit is archived too, under its own id.
    let hit = {
        let mut hit = s
            .ask(
                &key,
                &json!({"prompt": format!("archive me {n}"), "providers": ["openai"]}),
            )
            .await;
        for _ in 0..20 {
            if hit.json()["cache"]["status"] == "hit" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            hit = s
                .ask(
                    &key,
                    &json!({"prompt": format!("archive me {n}"), "providers": ["openai"]}),
                )
                .await;
        }
        hit.json()
    };
    assert_eq!(hit["cache"]["status"], "hit");
    assert_eq!(
        archived(s, &key, hit["id"].as_str().unwrap()).await.json(),
        hit
    );
}

#[tokio::test]
async fn other_accounts_unknown_and_malformed_ids_get_identical_404s() {
    let s = &stack();
    let (_, owner) = s.live_key().await;
    let (_, other) = s.live_key().await;
    let r = s
        .ask(
            &owner,
            &json!({"prompt": format!("mine {}", nonce()), "providers": ["gemini"]}),
        )
        .await;
    let id = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(archived(s, &owner, &id).await.status, 200);
    let replies = [
        s.get(&format!("/v1/ask/{id}"), Some(&other)).await,
        s.get(&format!("/v1/ask/req_{}", "0".repeat(32)), Some(&owner))
            .await,
        s.get("/v1/ask/req_nothex", Some(&owner)).await,
        s.get("/v1/ask/%27%20OR%201%3D1", Some(&owner)).await,
    ];
    for r in &replies {
        assert_eq!(r.status, 404, "{}", r.text);
        assert_eq!(r.text, replies[0].text);
        assert_eq!(r.header("content-type"), replies[0].header("content-type"));
        assert_eq!(r.header("cache-status"), None);
    }
}

#[tokio::test]
async fn past_30_days_the_owner_gets_410_and_the_cron_deletes_old_rows() {
    let s = &stack();
    let (account, key) = s.live_key().await;
    let old = s
        .ask(
            &key,
            &json!({"prompt": format!("old {}", nonce()), "providers": ["openai"]}),
        )
        .await
        .json();
    let new = s
        .ask(
            &key,
            &json!({"prompt": format!("new {}", nonce()), "providers": ["openai"]}),
        )
        .await
        .json();
    let (old_id, new_id) = (old["id"].as_str().unwrap(), new["id"].as_str().unwrap());
    assert_eq!(archived(s, &key, old_id).await.status, 200);
    assert_eq!(archived(s, &key, new_id).await.status, 200);
    age(s, old_id, 29).await;
    assert_eq!(
        s.get(&format!("/v1/ask/{old_id}"), Some(&key)).await.status,
        200,
        "29 days is inside the window"
    );
    age(s, old_id, 2).await;
    let expired = s.get(&format!("/v1/ask/{old_id}"), Some(&key)).await;
    assert_eq!(expired.status, 410);
    assert_eq!(
        expired.json(),
        json!({"error": {"code": "expired", "message": "this answer is past the retention window", "retention_days": 30}})
    );
    // The daily cron (04:00 UTC) deletes it; the new row stays.
    let cron = send(
        s.client
            .get(s.url("/__scheduled"))
            .query(&[("cron", "0 4 * * *")]),
    )
    .await;
    assert_eq!(cron.status, 200, "{}", cron.text);
    // Deleted by the cron (the account's archive holds only the new row), and still a 410 for
    // its owner; another account still gets the one 404.
    let rows = s.get(&format!("/__dev/rows/{account}"), None).await.json();
    assert_eq!(rows["response_archive"], 1, "{rows}");
    assert_eq!(
        s.get(&format!("/v1/ask/{old_id}"), Some(&key)).await.status,
        410,
        "deleted by the cron, still expired for its owner"
    );
    let (_, other) = s.live_key().await;
    assert_eq!(
        s.get(&format!("/v1/ask/{old_id}"), Some(&other))
            .await
            .status,
        404
    );
    // A 200 that was never an archived answer (GET /v1/account) stays a 404 when old.
    let acct = s.get("/v1/account", Some(&key)).await;
    let acct_id = acct.header("x-request-id").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    age(s, &acct_id, 31).await;
    assert_eq!(
        s.get(&format!("/v1/ask/{acct_id}"), Some(&key))
            .await
            .status,
        404
    );
    assert_eq!(
        s.get(&format!("/v1/ask/{new_id}"), Some(&key)).await.status,
        200
    );
}

#[tokio::test]
async fn usage_rows_for_every_outcome_without_prompt_text() {
    let s = &stack();
    let account = s.account("enterprise", 10_000_000).await;
    s.admin(
        Method::PATCH,
        &format!("/admin/accounts/{account}"),
        &json!({"tier": "enterprise", "limits": {"burst": 2, "per_second": 0.001}}),
    )
    .await;
    let key = s.key(&account, "live").await;
    let n = nonce();
    // The marker sits past the first 60 characters, which the mock echoes in its answers.
    let marker = format!("ZEBRA{n}MARKER");
    let prompt = format!("{} {marker}", "padding words before the marker ".repeat(3));
    let ask = json!({"prompt": prompt, "providers": ["openai"]});
    assert_eq!(s.ask(&key, &ask).await.status, 200);
    let mut hit = s.ask(&key, &ask).await;
    for _ in 0..20 {
        if hit.json()["cache"]["status"] == "hit" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        hit = s.ask(&key, &ask).await;
    }
    assert_eq!(
        s.ask(&key, &json!({"prompt": marker, "providers": ["nope"]}))
            .await
            .status,
        400
    );
    let mut statuses = vec![];
    for i in 0..3 {
        statuses.push(
            s.ask(
                &key,
                &json!({"prompt": format!("{prompt} {i}"), "providers": ["openai"]}),
            )
            .await
            .status,
        );
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let usage = s.get("/v1/usage", Some(&key)).await;
    assert_eq!(usage.status, 200, "{}", usage.text);
    let u = usage.json();
    let events = u["events"].as_array().unwrap();
    let codes: Vec<u64> = events
        .iter()
        .map(|e| e["status"].as_u64().unwrap())
        .collect();
    for code in [200, 400, 429] {
        assert!(codes.contains(&code), "{code} missing from {codes:?}");
    }
    assert!(events
        .iter()
        .any(|e| e["cache"]["status"] == "hit" && e["cache"]["tier"].is_string()));
    let e = events
        .iter()
        .find(|e| e["status"] == 200 && e["cache"]["status"] == "miss")
        .unwrap();
    for field in [
        "request_id",
        "key_prefix",
        "endpoint",
        "providers",
        "tokens",
        "credits",
        "latency_ms",
        "created_at",
    ] {
        assert!(!e[field].is_null(), "{field} in {e}");
    }
    assert_eq!(u["totals"]["calls"].as_u64().unwrap(), events.len() as u64);
    assert!(!usage.text.contains(&marker));
    // Nowhere in the whole D1 database (opt-in off), which the dump does read: a usage row's
    // request id is in it.
    let d1 = s.d1_dump();
    let id = e["request_id"].as_str().unwrap();
    assert!(d1.contains(id), "the dump holds none of the usage rows");
    assert!(!d1.contains(&marker), "the prompt reached D1");

    // Opt in: the first 200 characters are kept, and only those.
    let p = send(
        s.client
            .patch(s.url("/v1/account"))
            .bearer_auth(&key)
            .json(&json!({"store_prompt_prefix": true})),
    )
    .await;
    assert_eq!(p.status, 200, "{}", p.text);
    let long = format!("{marker} {}", "x".repeat(300));
    assert_eq!(
        s.ask(&key, &json!({"prompt": long, "providers": ["nope"]}))
            .await
            .status,
        400
    );
    // Refused for its model (403): parsed, but it did not pass validation, so it is not kept.
    let r = s
        .ask(
            &key,
            &json!({"prompt": format!("refused {marker}"), "providers": ["openai"],
                "params": {"models": {"openai": "dall-e-3"}}}),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    // A valid ask passes validation, so its prompt is kept (the opt-in applies to prompts that
    // passed it), and is then refused by the key's bucket, which the calls above emptied (burst
    // 2, one token per 1,000 s): a 429 that still writes its usage row with the prefix.
    let tail = "TAILMARK".repeat(40);
    let r = s.ask(&key, &json!({"prompt": format!("{marker} {tail}"), "providers": ["openai"], "cache_scope": "private"})).await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "rate_limited", "{}", r.text);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let u = s.get("/v1/usage?limit=5", Some(&key)).await.json();
    let kept = u["events"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|e| e["prompt_prefix"].as_str())
        .expect("a prompt prefix")
        .to_string();
    assert!(kept.starts_with(&marker));
    assert_eq!(kept.chars().count(), 200);
    assert!(
        u["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| !e["prompt_prefix"]
                .as_str()
                .unwrap_or("")
                .starts_with("refused")),
        "the refused call's prompt was kept: {u}"
    );
}

#[tokio::test]
async fn usage_is_per_account_and_paginates() {
    let s = &stack();
    let (_, a) = s.live_key().await;
    let (_, b) = s.live_key().await;
    for _ in 0..5 {
        assert_eq!(s.get("/v1/account", Some(&a)).await.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let page1 = s.get("/v1/usage?limit=2", Some(&a)).await.json();
    assert_eq!(page1["events"].as_array().unwrap().len(), 2);
    let cursor = page1["next_cursor"].as_str().unwrap().to_string();
    let page2 = s
        .get(&format!("/v1/usage?limit=2&cursor={cursor}"), Some(&a))
        .await
        .json();
    assert_eq!(page2["events"].as_array().unwrap().len(), 2);
    assert_ne!(
        page1["events"][0]["request_id"],
        page2["events"][0]["request_id"]
    );
    let bu = s.get("/v1/usage", Some(&b)).await.json();
    assert!(
        bu["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["key_prefix"] == b[..12]),
        "{bu}"
    );
    let future = s
        .get("/v1/usage?from=2999-01-01T00:00:00Z", Some(&a))
        .await
        .json();
    assert_eq!(future["totals"]["calls"], 0);
    assert_eq!(s.get("/v1/usage?limit=0", Some(&a)).await.status, 400);
    assert_eq!(
        s.get("/v1/usage?from=yesterday", Some(&a)).await.status,
        400
    );
    // Past the range of a date: a 400 naming the parameter, not a failed Worker.
    for q in ["from=9000000000000000", "to=18446744073709551615"] {
        let r = s.get(&format!("/v1/usage?{q}"), Some(&a)).await;
        assert_eq!(r.status, 400, "{q}: {}", r.text);
        assert_eq!(r.json()["error"]["code"], "invalid_param", "{q}");
    }
    let edge = s.get("/v1/usage?to=8640000000000000", Some(&a)).await;
    assert_eq!(edge.status, 200, "{}", edge.text);
}

#[tokio::test]
async fn deleting_an_account_leaves_no_row_and_its_keys_get_401() {
    let s = &stack();
    let (account, key) = s.live_key().await;
    let second = s
        .post("/v1/keys", Some(&key), &json!({"name": "two"}))
        .await
        .json()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let n = nonce();
    let private = json!({"prompt": format!("private {n}"), "providers": ["openai"], "cache_scope": "private"});
    assert_eq!(s.ask(&key, &private).await.status, 200);
    // A key of its own (a sealed key) and a call that opened it (an access log row).
    let sealed = send(
        s.client
            .put(s.url("/v1/provider-keys/openai"))
            .bearer_auth(&key)
            .json(&json!({"key": format!("ownkey-{n}-0123456789abcdef")})),
    )
    .await;
    assert_eq!(sealed.status, 200, "{}", sealed.text);
    let body = json!({"model": "gpt-4o-mini", "max_completion_tokens": 16,
        "messages": [{"role": "user", "content": format!("own key {n}")}]});
    let r = send(
        s.client
            .post(s.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&body),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // A dashboard session of the account, which deletion must end too.
    let login = send(
        s.client
            .post(s.url("/dashboard/api/login"))
            .header("Origin", &s.base)
            .json(&json!({ "key": key })),
    )
    .await;
    assert_eq!(login.status, 200, "{}", login.text);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before: Value = s.get(&format!("/__dev/rows/{account}"), None).await.json();
    assert!(
        before["usage_events"].as_u64().unwrap() >= 1
            && before["response_archive"].as_u64().unwrap() >= 1
            && before["dashboard_sessions"].as_u64() == Some(1)
            && before["provider_keys"].as_u64() == Some(1)
            && before["key_access_log"].as_u64().unwrap() >= 1,
        "{before}"
    );
    // Every table of the schema is counted (a table added later must be, and deleted too).
    let tables: Value = s.get("/__dev/tables", None).await.json();
    let tables = tables["tables"].as_array().expect("the schema's tables");
    assert!(tables.len() >= 7, "{tables:?}");
    for t in tables {
        assert!(
            before.get(t.as_str().unwrap()).is_some(),
            "table {t} is not counted: {before}"
        );
    }
    let d = s.delete("/v1/account", Some(&key)).await;
    assert_eq!(d.status, 200, "{}", d.text);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after: Value = s.get(&format!("/__dev/rows/{account}"), None).await.json();
    for (table, count) in after.as_object().unwrap() {
        assert_eq!(count, 0, "{table} still has rows: {after}");
    }
    for k in [&key, &second] {
        assert_eq!(s.get("/v1/account", Some(k)).await.status, 401);
        assert_eq!(s.ask(k, &private).await.status, 401);
    }
}

/// A live key of `account` whose prefix `seed` (3 bytes, hex) fixes: (token, prefix).
async fn seeded_key(s: &Stack, account: &str, seed: &str) -> (String, String) {
    let r = s
        .post(
            &format!("/__dev/accounts/{account}/keys/seeded/{seed}"),
            None,
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let v = r.json();
    let field = |name: &str| v[name].as_str().unwrap().to_string();
    (field("key"), field("prefix"))
}

/// A miss (no-store) with `key`.
async fn ask_miss(s: &Stack, key: &str) -> Reply {
    let rb = s
        .client
        .post(s.url("/v1/ask"))
        .bearer_auth(key)
        .header("Cache-Control", "no-store")
        .json(&json!({"prompt": format!("reuse {}", nonce()), "providers": ["openai"]}));
    send(rb).await
}

/// Deleting an account frees its keys' prefixes, and revokes their buckets; a new key that
/// draws such a prefix starts with a clean bucket rather than a revoked one.
#[tokio::test]
async fn a_new_key_on_a_deleted_accounts_prefix_works() {
    let s = &stack();
    // Three bytes fix the key's prefix; random per run.
    let seed: String = nonce()
        .bytes()
        .rev()
        .take(6)
        .map(|b| format!("{:x}", b % 16))
        .collect();
    let first_account = s.account("pro", 1_000_000).await;
    let (first, prefix) = seeded_key(s, &first_account, &seed).await;
    assert_eq!(ask_miss(s, &first).await.status, 200);
    let deleted = s.delete("/v1/account", Some(&first)).await;
    assert_eq!(deleted.status, 200, "{}", deleted.text);

    let second_account = s.account("pro", 1_000_000).await;
    let (second, again) = seeded_key(s, &second_account, &seed).await;
    assert_eq!(again, prefix, "the new key took the freed prefix");
    assert_eq!(
        ask_miss(s, &first).await.status,
        401,
        "the deleted key stays dead"
    );
    let r = ask_miss(s, &second).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

/// A call still running when its account is deleted leaves no row behind when it ends.
#[tokio::test]
async fn a_call_in_flight_during_account_deletion_leaves_no_row() {
    let s = &stack();
    let (account, key) = s.live_key().await;
    let other = s.key(&account, "live").await;
    let n = nonce();
    let body =
        json!({"prompt": format!("slow {n} [[mock:openai=delay:1500]]"), "providers": ["openai"]});
    let slow = s.ask(&key, &body);
    let delete = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        s.delete("/v1/account", Some(&other)).await
    };
    let (call, deleted) = tokio::join!(slow, delete);
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    assert_eq!(call.status, 200, "{}", call.text);
    assert_eq!(s.mock_calls(&n).await["total"], 1, "the call was in flight");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let after: Value = s.get(&format!("/__dev/rows/{account}"), None).await.json();
    for (table, count) in after.as_object().unwrap() {
        assert_eq!(count, 0, "{table} has rows: {after}");
    }
}

/// D1 refuses a bound value over its limit (1 MB; the suite's stack sets it lower): a burst of
/// large answers queued for one write is split over as many statements as the limit needs, so
/// every usage and archive row lands; an answer over the limit alone is not archived, and costs
/// no other row its place.
#[tokio::test]
async fn a_burst_of_large_answers_is_recorded_whole_under_d1s_value_limit() {
    use integration_tests::DEV_D1_VALUE_LIMIT;
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let ask = |chars: usize| json!({"prompt": format!("large answers {n} [[mock:*=long:{chars}]]"), "providers": ["openai"]});
    let large = ask(DEV_D1_VALUE_LIMIT * 2 / 5);
    let first = s.ask(&key, &large).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let size = first.text.len();
    assert!(
        size * 3 > DEV_D1_VALUE_LIMIT && size < DEV_D1_VALUE_LIMIT,
        "an answer of {size} bytes: three must not fit one value, one must"
    );
    // Twelve hits of that answer and one answer over the limit, at once: one or two writes.
    let over = ask(DEV_D1_VALUE_LIMIT + 1000);
    let mut calls: Vec<_> = (0..12).map(|_| s.ask(&key, &large)).collect();
    calls.push(s.ask(&key, &over));
    let replies = futures::future::join_all(calls).await;
    for r in &replies {
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let (over_reply, hits) = replies.split_last().unwrap();
    // The answer over the limit is never archived: 404 at once (its rows may still wait for
    // their flush, which would serve a queued answer) and later.
    let over_id = over_reply.json()["id"].as_str().unwrap().to_string();
    let over_status = || async {
        s.get(&format!("/v1/ask/{over_id}"), Some(&key))
            .await
            .status
    };
    assert_eq!(over_status().await, 404, "at once");
    for r in std::iter::once(&first).chain(hits) {
        let body = r.json();
        let got = archived(s, &key, body["id"].as_str().unwrap()).await;
        assert_eq!(got.status, 200, "{}", got.text);
        assert_eq!(got.json(), body);
    }
    assert_eq!(over_status().await, 404, "later");
    // Every call has its usage row, the one over the limit included.
    let usage = s.get("/v1/usage?limit=100", Some(&key)).await.json();
    let ids: Vec<&str> = usage["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["request_id"].as_str())
        .collect();
    for r in std::iter::once(&first).chain(&replies) {
        let id = r.json()["id"].as_str().unwrap().to_string();
        assert!(ids.contains(&id.as_str()), "no usage row for {id}");
    }
}

#[tokio::test]
async fn usage_is_filtered_by_endpoint_and_totalled_per_day() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let ask = json!({"prompt": format!("per day {n}"), "providers": ["openai"]});
    assert_eq!(s.ask(&key, &ask).await.status, 200);
    // The entry is written after the response: the second call is a hit once it has landed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(s.ask(&key, &ask).await.json()["cache"]["status"], "hit");
    assert_eq!(s.get("/v1/account", Some(&key)).await.status, 200);
    let mut u = Value::Null;
    for _ in 0..40 {
        u = s
            .get("/v1/usage?endpoint=POST%20/v1/ask", Some(&key))
            .await
            .json();
        if u["totals"]["calls"] == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(u["totals"]["calls"], 2, "{u}");
    let events = u["events"].as_array().unwrap();
    assert!(
        events.iter().all(|e| e["endpoint"] == "POST /v1/ask"),
        "{u}"
    );
    let days = u["days"].as_array().unwrap();
    assert_eq!(days.len(), 1, "{u}");
    assert_eq!(days[0]["calls"], 2);
    assert_eq!(days[0]["cache_hits"], 1);
    assert_eq!(days[0]["day"].as_str().unwrap().len(), 10);
    // Unfiltered, the account read is counted too (its row may land a moment later).
    let mut all = Value::Null;
    for _ in 0..40 {
        all = s.get("/v1/usage", Some(&key)).await.json();
        if all["totals"]["calls"].as_u64().unwrap() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(all["totals"]["calls"].as_u64().unwrap() >= 3, "{all}");
    let bad = s.get("/v1/usage?endpoint=", Some(&key)).await;
    assert_eq!(bad.status, 400);
}
