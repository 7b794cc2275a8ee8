//! Secret rotation without downtime (docs/OPERATIONS.md). The local brokers run as in the middle
//! of both rotations (scripts/devconfig.py): they accept the previous shared secret beside the
//! current one, and hold two BYOK master key versions (1 under the older single-key name
//! `BYOK_MASTER_KEY`, 2 as `BYOK_MASTER_KEY_V2`). So: the previous secret is admitted and nothing else is, a key sealed with an
//! old version still opens, new seals use the newest, and the admin re-seal moves stored keys
//! to the newest, each decryption recorded in the account's access log first.

use gateway_core::keys::byok::{self, MasterKey, MasterKeys};
use gateway_core::providers::Provider;
use integration_tests::{json, nonce, send, stack, Reply, Stack, Value};

#[tokio::test]
async fn a_broker_admits_the_previous_shared_secret_during_a_rotation() {
    let s = &stack();
    let n = nonce();
    let previous = s.dev_secret("broker-openai", "BROKER_SHARED_SECRET_PREVIOUS");
    let current = s.dev_secret("broker-openai", "BROKER_SHARED_SECRET");
    assert_ne!(previous, current);
    assert_eq!(current, s.dev_secret("gateway", "BROKER_SHARED_SECRET"));
    let body = json!({"request_id": "req_x", "account_id": "acct_x", "test_mode": false,
        "completion": {"model": "gpt-4o-mini", "prompt": format!("rotation {n}"), "max_tokens": 5}});
    // Over HTTP (the secret in a header) and over RPC (the way the gateway calls a broker).
    for path in [
        "/__dev/broker/openai/v1/complete",
        "/__dev/broker-rpc/openai",
    ] {
        for (secret, status) in [
            (previous.as_str(), 200),
            (current.as_str(), 200),
            (&previous[1..], 401),
            (&format!("{current}{previous}"), 401),
        ] {
            let rb = s
                .client
                .post(s.url(path))
                .header("x-broker-secret", secret)
                .json(&body);
            let r = send(rb).await;
            assert_eq!(r.status, status, "{path}: {}", r.text);
        }
    }
    // Four admitted calls, none of the refused ones reached the provider.
    assert_eq!(s.mock_calls(&n).await["total"], 4);
}

async fn put_provider_key(s: &Stack, key: &str, provider: &str, secret: &str) -> Reply {
    send(
        s.client
            .put(s.url(&format!("/v1/provider-keys/{provider}")))
            .bearer_auth(key)
            .json(&json!({"key": secret})),
    )
    .await
}

async fn chat(s: &Stack, key: &str, prompt: &str) -> Reply {
    send(
        s.client
            .post(s.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(
                &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}],
                "max_completion_tokens": 16}),
            ),
    )
    .await
}

/// The authorization header of the last upstream request whose text contains `contains`.
async fn upstream_auth(s: &Stack, contains: &str) -> String {
    let r = send(
        s.client
            .get(format!("{}/__mock/last", s.mock))
            .query(&[("contains", contains)]),
    )
    .await;
    assert_eq!(r.status, 200, "no upstream request with {contains}");
    r.json()["headers"]["authorization"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn stored_ciphertext(s: &Stack, account: &str) -> String {
    s.sqlite(
        "print(c.execute('SELECT ciphertext FROM provider_keys WHERE account_id = ? AND provider = ?', (sys.argv[2], 'openai')).fetchone()[0])",
        &[account],
    )
}

fn store_ciphertext(s: &Stack, account: &str, ciphertext: &str) {
    s.sqlite(
        "c.execute('UPDATE provider_keys SET ciphertext = ? WHERE account_id = ? AND provider = ?', (sys.argv[3], sys.argv[2], 'openai'))",
        &[account, ciphertext],
    );
}

/// Re-seals every openai key, page by page, as scripts/reseal.sh does; the reports.
async fn reseal_all(s: &Stack) -> Vec<Value> {
    let mut reports = Vec::new();
    let mut after = Value::Null;
    loop {
        let r = s
            .admin(
                reqwest::Method::POST,
                "/admin/byok/reseal/openai",
                &json!({"after": after, "limit": 100}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let report = r.json();
        assert_eq!(report["provider"], "openai");
        assert_eq!(report["newest_version"], 2);
        after = report["next"].clone();
        reports.push(report);
        if after.is_null() {
            return reports;
        }
    }
}

#[tokio::test]
async fn keys_sealed_with_an_old_master_version_still_work_and_reseal_moves_them_to_the_newest() {
    let s = &stack();
    let (account, key) = s.live_key().await;
    let n = nonce();
    let own = format!("ownkey-{n}-rotation-0123456789");

    // New seals use the newest version (2), named in the ciphertext.
    let r = put_provider_key(s, &key, "openai", &own).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(stored_ciphertext(s, &account).starts_with("v2:"));

    // A key stored before the rotation: sealed with version 1, in the form without a version
    // (what every key stored before versioning looks like).
    let v1 = MasterKey::from_hex(&s.dev_secret("broker-openai", "BYOK_MASTER_KEY")).unwrap();
    let old = byok::seal(
        &MasterKeys::single(1, v1),
        &account,
        Provider::OpenAi,
        &own,
        [7; 12],
    )
    .unwrap();
    assert!(!old.contains(':'));
    store_ciphertext(s, &account, &old);
    let before = chat(s, &key, &format!("old version {n}")).await;
    assert_eq!(before.status, 200, "{}", before.text);
    assert_eq!(
        upstream_auth(s, &format!("old version {n}")).await,
        format!("Bearer {own}")
    );

    // The re-seal moves it to version 2; the key still works, and the decryption the re-seal
    // made is in the account's access log.
    let reports = reseal_all(s).await;
    let resealed: u64 = reports
        .iter()
        .map(|r| r["resealed"].as_u64().unwrap())
        .sum();
    assert!(resealed >= 1, "{reports:?}");
    let moved = stored_ciphertext(s, &account);
    assert!(moved.starts_with("v2:"), "{moved}");
    assert_ne!(moved, old);
    let after = chat(s, &key, &format!("new version {n}")).await;
    assert_eq!(after.status, 200, "{}", after.text);
    assert_eq!(
        upstream_auth(s, &format!("new version {n}")).await,
        format!("Bearer {own}")
    );
    let log = s.get("/v1/provider-keys/access-log", Some(&key)).await;
    assert_eq!(log.status, 200, "{}", log.text);
    assert!(
        log.text.contains("re-seal (BYOK master key rotation)"),
        "{}",
        log.text
    );
    assert!(!log.text.contains(&own));

    // A second pass, by the operators' own script (scripts/reseal.sh, which hands curl the
    // admin token on its standard input), leaves a current key as it is.
    let out = std::process::Command::new("bash")
        .arg(integration_tests::root().join("scripts/reseal.sh"))
        .arg(&s.base)
        .env("ADMIN_TOKEN", integration_tests::ADMIN_TOKEN)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for provider in ["openai", "anthropic"] {
        assert!(
            stdout.contains(&format!("\"provider\":\"{provider}\"")),
            "{stdout}"
        );
    }
    assert_eq!(stored_ciphertext(s, &account), moved);

    // A version the broker does not hold: refused, no upstream call, and the re-seal leaves it.
    let unknown = format!("v9:{}", moved.trim_start_matches("v2:"));
    store_ciphertext(s, &account, &unknown);
    let refused = chat(s, &key, &format!("unknown version {n}")).await;
    assert_eq!(refused.status, 424, "{}", refused.text);
    assert_eq!(refused.json()["error"]["code"], "provider_key_unusable");
    let reports = reseal_all(s).await;
    assert!(
        reports.iter().any(|r| r["unusable"].as_u64().unwrap() >= 1),
        "{reports:?}"
    );
    assert_eq!(stored_ciphertext(s, &account), unknown);
    assert_eq!(
        s.mock_calls(&format!("unknown version {n}")).await["total"],
        0
    );
}

#[tokio::test]
async fn the_reseal_route_needs_the_admin_token_and_a_byok_provider() {
    let s = &stack();
    let url = s.url("/admin/byok/reseal/openai");
    let r = send(s.client.post(&url).json(&json!({}))).await;
    assert_eq!(r.status, 401, "{}", r.text);
    let r = send(
        s.client
            .post(&url)
            .bearer_auth("not-the-admin-token")
            .json(&json!({})),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.text);
    for provider in ["gemini", "perplexity", "nope"] {
        let r = s
            .admin(
                reqwest::Method::POST,
                &format!("/admin/byok/reseal/{provider}"),
                &json!({}),
            )
            .await;
        assert_eq!(r.status, 404, "{provider}: {}", r.text);
    }
    for body in [
        json!({"limit": 0}),
        json!({"limit": 1000}),
        json!({"after": "../etc"}),
        json!({"limt": 5}),
    ] {
        let r = s
            .admin(reqwest::Method::POST, "/admin/byok/reseal/openai", &body)
            .await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
    }
}
