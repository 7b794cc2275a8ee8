//! Dashboard sessions through the public HTTP API: an API key exchanged for a cookie (its
//! flags), what a cookie may call, the CSRF check, and the ends of a session (logout, the key's
//! revocation), plus the dashboard's security headers.

use integration_tests::{json, send, stack, Reply, Stack};

/// Logs in with `key`: the reply and the cookie pair (`gw_session=...`) it set.
async fn login(s: &Stack, key: &str) -> (Reply, Option<String>) {
    let r = send(
        s.client
            .post(s.url("/dashboard/api/login"))
            .header("Origin", &s.base)
            .json(&json!({ "key": key })),
    )
    .await;
    let cookie = r
        .header("set-cookie")
        .and_then(|c| c.split(';').next().map(str::to_string));
    (r, cookie)
}

fn with_cookie(rb: reqwest::RequestBuilder, cookie: &str) -> reqwest::RequestBuilder {
    rb.header("Cookie", cookie)
}

#[tokio::test]
async fn a_key_opens_a_session_whose_cookie_reaches_the_account_routes() {
    let s = &stack();
    let (account, key) = s.live_key().await;
    let (r, cookie) = login(s, &key).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["account_id"], account.as_str());
    let set = r.header("set-cookie").unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(set.contains(flag), "{set}");
    }
    // Over plain HTTP to 127.0.0.1 only, `Secure` is left out (the browser would not send it).
    assert!(!set.contains("Secure"), "{set}");
    assert!(!set.contains(&key), "the key itself is never in the cookie");
    let cookie = cookie.unwrap();

    let who = send(with_cookie(
        s.client.get(s.url("/dashboard/api/session")),
        &cookie,
    ))
    .await;
    assert_eq!(who.status, 200, "{}", who.text);
    assert_eq!(who.json()["account_id"], account.as_str());
    assert!(who.json()["commit"].is_string());
    assert_eq!(who.header("cache-control").as_deref(), Some("no-store"));
    let keys = send(with_cookie(s.client.get(s.url("/v1/keys")), &cookie)).await;
    assert_eq!(keys.status, 200, "{}", keys.text);

    // A cookie never spends credits: the answering endpoints take an API key only.
    let ask = send(with_cookie(
        s.client
            .post(s.url("/v1/ask"))
            .header("Origin", &s.base)
            .json(&json!({"prompt": "hi", "providers": ["openai"]})),
        &cookie,
    ))
    .await;
    assert_eq!(ask.status, 401, "{}", ask.text);

    // Logout ends it.
    let out = send(with_cookie(
        s.client
            .post(s.url("/dashboard/api/logout"))
            .header("Origin", &s.base),
        &cookie,
    ))
    .await;
    assert_eq!(out.status, 204, "{}", out.text);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    let who = send(with_cookie(
        s.client.get(s.url("/dashboard/api/session")),
        &cookie,
    ))
    .await;
    assert_eq!(who.status, 401);
}

#[tokio::test]
async fn a_wrong_key_gets_the_apis_one_401() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let (wrong, cookie) = login(s, &format!("{key}x")).await;
    assert_eq!(wrong.status, 401);
    assert!(cookie.is_none());
    let api = s.get("/v1/account", Some(&format!("{key}x"))).await;
    assert_eq!(wrong.json()["error"], api.json()["error"]);
}

#[tokio::test]
async fn a_cross_origin_change_is_refused() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let (_, cookie) = login(s, &key).await;
    let cookie = cookie.unwrap();
    let mint = |origin: Option<&str>| {
        let mut rb = s
            .client
            .post(s.url("/v1/keys"))
            .json(&json!({"name": "from the dashboard"}));
        if let Some(o) = origin {
            rb = rb.header("Origin", o);
        }
        send(with_cookie(rb, &cookie))
    };
    let evil = mint(Some("http://evil.example")).await;
    assert_eq!(evil.status, 403, "{}", evil.text);
    assert_eq!(evil.json()["error"]["code"], "csrf_refused");
    let none = mint(None).await;
    assert_eq!(none.status, 403, "{}", none.text);
    let own = mint(Some(&s.base)).await;
    assert_eq!(own.status, 201, "{}", own.text);
    // A login from another origin is refused too.
    let r = send(
        s.client
            .post(s.url("/dashboard/api/login"))
            .header("Origin", "http://evil.example")
            .json(&json!({ "key": key })),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text);
}

#[tokio::test]
async fn revoking_the_key_ends_its_sessions_at_once() {
    let s = &stack();
    let (account, owner) = s.live_key().await;
    let other = s.key(&account, "live").await;
    let (_, cookie) = login(s, &other).await;
    let cookie = cookie.unwrap();
    let ok = send(with_cookie(s.client.get(s.url("/v1/account")), &cookie)).await;
    assert_eq!(ok.status, 200);
    let keys = s.get("/v1/keys", Some(&owner)).await.json();
    let target = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["prefix"].as_str().unwrap().to_string())
        .find(|p| other.starts_with(p.as_str()))
        .unwrap();
    let r = s.delete(&format!("/v1/keys/{target}"), Some(&owner)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let after = send(with_cookie(s.client.get(s.url("/v1/account")), &cookie)).await;
    assert_eq!(after.status, 401, "{}", after.text);
    let who = send(with_cookie(
        s.client.get(s.url("/dashboard/api/session")),
        &cookie,
    ))
    .await;
    assert_eq!(who.status, 401);
}

#[tokio::test]
async fn a_test_keys_session_reads_but_cannot_change_the_account() {
    let s = &stack();
    let (account, _) = s.live_key().await;
    let test = s.key(&account, "test").await;
    let (r, cookie) = login(s, &test).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["mode"], "test");
    let cookie = cookie.unwrap();
    let read = send(with_cookie(s.client.get(s.url("/v1/account")), &cookie)).await;
    assert_eq!(read.status, 200);
    let change = send(with_cookie(
        s.client
            .post(s.url("/v1/keys"))
            .header("Origin", &s.base)
            .json(&json!({})),
        &cookie,
    ))
    .await;
    assert_eq!(change.status, 403, "{}", change.text);
    assert_eq!(change.json()["error"]["code"], "live_key_required");
}

#[tokio::test]
async fn repeated_logins_are_throttled_per_address() {
    let s = &stack();
    let addr = format!("198.51.100.{}", rand_octet());
    let mut last = None;
    for _ in 0..12 {
        let r = send(
            s.client
                .post(s.url("/dashboard/api/login"))
                .header("Origin", &s.base)
                .header("CF-Connecting-IP", &addr)
                .json(&json!({"key": "lvk_live_nope"})),
        )
        .await;
        last = Some(r);
        if last.as_ref().unwrap().status == 429 {
            break;
        }
    }
    let last = last.unwrap();
    assert_eq!(last.status, 429, "{}", last.text);
    assert!(last.header("retry-after").is_some());
}

fn rand_octet() -> u8 {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        % 250) as u8
}

#[tokio::test]
async fn dashboard_responses_carry_the_security_headers() {
    let s = &stack();
    let page = s.get("/dashboard", None).await;
    let missing = s.get("/dashboard/no-such-file.js", None).await;
    let api = s.get("/dashboard/api/session", None).await;
    for r in [&page, &missing, &api] {
        let csp = r.header("content-security-policy").unwrap_or_default();
        for part in [
            "default-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
        ] {
            assert!(csp.contains(part), "{csp}");
        }
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(
            r.header("x-content-type-options").as_deref(),
            Some("nosniff")
        );
        assert!(r.header("referrer-policy").is_some());
    }
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page
        .header("content-type")
        .unwrap_or_default()
        .starts_with("text/html"));
    assert_eq!(missing.status, 404);
    assert_eq!(api.status, 401);
}
