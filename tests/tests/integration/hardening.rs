//! Security and billing hardening (issue 14): each test fails without its fix.

use std::time::Duration;

use integration_tests::{nonce, stack, stack_alone, Stack};

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
        let token = format!(
            "lvk_live_{:03}{}",
            i,
            &format!("{n}{}", "x".repeat(60))[..40]
        );
        let token: String = token
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { 'z' })
            .collect();
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
