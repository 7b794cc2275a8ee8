//! Dashboard sessions through the public HTTP API: an API key exchanged for a cookie (its
//! flags), what a cookie may call, the CSRF check, and the ends of a session (logout, the key's
//! revocation), plus the dashboard's security headers.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use integration_tests::{json, send, stack, stack_alone, Reply, Stack};

/// An address no other login of this run came from (IPv6's documentation prefix).
fn own_address() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    format!("2001:db8::1:{:x}", NEXT.fetch_add(1, Ordering::SeqCst))
}

/// Logs in with `key`: the reply and the cookie pair (`gw_session=...`) it set. Each login comes
/// from an address of its own, so the tests' logins never meet the per-address login limit
/// (which `repeated_logins_are_throttled_per_address` tests).
async fn login(s: &Stack, key: &str) -> (Reply, Option<String>) {
    let r = send(
        s.client
            .post(s.url("/dashboard/api/login"))
            .header("Origin", &s.base)
            .header("CF-Connecting-IP", own_address())
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
    // Stored hashed: the token's hash is in D1, the token itself nowhere there.
    let token = cookie.split_once('=').map(|(_, t)| t).unwrap();
    assert!(token.len() >= 32, "{cookie}");
    let d1 = s.d1_dump();
    assert!(
        d1.contains(&gateway_core::keys::hash_token(token)),
        "the session's hash is stored"
    );
    assert!(
        !d1.contains(token),
        "the session token is stored in the clear"
    );

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

/// Over plain HTTP to a host other than the loopback one (as a zone without "Always Use HTTPS"
/// would pass it on), the dashboard and its login are not served: a 308 to the same URL over
/// HTTPS, with the security headers; over the loopback host they are, with no HSTS (which a
/// browser reads over HTTPS only).
#[tokio::test]
async fn plain_http_to_another_host_is_sent_to_https() {
    let s = &stack();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    for (method, path) in [
        (reqwest::Method::GET, "/dashboard/app.js?v=1"),
        (reqwest::Method::POST, "/dashboard/api/login"),
    ] {
        let r = send(
            client
                .request(method.clone(), s.url(path))
                .header("Host", "gw.example.com")
                .json(&json!({"key": "lvk_live_nothing"})),
        )
        .await;
        assert_eq!(r.status, 308, "{method} {path}: {}", r.text);
        assert_eq!(
            r.header("location").as_deref(),
            Some(format!("https://gw.example.com{path}").as_str()),
            "{method} {path}"
        );
        assert!(
            r.header("content-security-policy").is_some(),
            "{method} {path}"
        );
    }
    let page = s.get("/dashboard", None).await;
    assert_eq!(page.status, 200);
    assert!(page.header("strict-transport-security").is_none());
}

/// A cookie header that names the session twice opens none, whichever comes first: a cookie
/// planted beside the caller's own (a sibling subdomain may set the unprefixed name with a
/// longer path, which browsers list first) is never read in its place, so the caller's changes
/// cannot land in the planter's account. The caller's own cookie alone still works.
#[tokio::test]
async fn a_cookie_header_naming_the_session_twice_opens_none() {
    let s = &stack();
    let (victim, victim_key) = s.live_key().await;
    let (_, planter_key) = s.live_key().await;
    let (_, mine) = login(s, &victim_key).await;
    let (_, planted) = login(s, &planter_key).await;
    let (mine, planted) = (mine.unwrap(), planted.unwrap());
    let alone = send(with_cookie(s.client.get(s.url("/v1/account")), &mine)).await;
    assert_eq!(alone.status, 200, "{}", alone.text);
    assert_eq!(alone.json()["account_id"], victim.as_str());
    for both in [format!("{planted}; {mine}"), format!("{mine}; {planted}")] {
        let who = send(with_cookie(
            s.client.get(s.url("/dashboard/api/session")),
            &both,
        ))
        .await;
        assert_eq!(who.status, 401, "{both}: {}", who.text);
        let put = send(with_cookie(
            s.client
                .put(s.url("/v1/provider-keys/openai"))
                .header("Origin", &s.base)
                .json(&json!({"key": "sk-victims-own-key-0123456789"})),
            &both,
        ))
        .await;
        assert_eq!(put.status, 401, "{both}: {}", put.text);
    }
    // Neither account got the key.
    for key in [&victim_key, &planter_key] {
        let listed = s.get("/v1/provider-keys", Some(key)).await;
        assert_eq!(listed.status, 200, "{}", listed.text);
        assert!(
            !listed.text.contains("6789"),
            "a provider key was stored: {}",
            listed.text
        );
    }
}

/// Made-up session tokens count as failed lookups, as made-up API keys do: past the isolate's
/// budget they are answered 429 without a D1 read (and logout makes no D1 write), and a second
/// later a real session is served again.
#[tokio::test]
async fn a_walk_over_made_up_session_tokens_is_throttled_per_isolate() {
    let s = &stack_alone();
    let (account, key) = s.live_key().await;
    let (_, cookie) = login(s, &key).await;
    let cookie = cookie.unwrap();
    let name = cookie.split('=').next().unwrap().to_string();
    let mut statuses = Vec::new();
    for i in 0..120u32 {
        let made_up = format!("{name}={:064x}", 0xdead_0000u64 + u64::from(i));
        let (method, path) = if i % 2 == 0 {
            ("GET", "/dashboard/api/session")
        } else {
            ("POST", "/dashboard/api/logout")
        };
        let rb = match method {
            "GET" => s.client.get(s.url(path)),
            _ => s.client.post(s.url(path)).header("Origin", &s.base),
        };
        let r = send(with_cookie(rb, &made_up)).await;
        statuses.push((path, r.status));
    }
    assert!(
        statuses.iter().all(|(p, st)| *st == 429
            || *st
                == if *p == "/dashboard/api/session" {
                    401
                } else {
                    204
                }),
        "{statuses:?}"
    );
    for path in ["/dashboard/api/session", "/dashboard/api/logout"] {
        assert!(
            statuses.iter().any(|(p, st)| *p == path && *st == 429),
            "{path} was never throttled: {statuses:?}"
        );
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let who = send(with_cookie(
        s.client.get(s.url("/dashboard/api/session")),
        &cookie,
    ))
    .await;
    assert_eq!(who.status, 200, "{}", who.text);
    assert_eq!(who.json()["account_id"], account.as_str());
}

/// A key revoked elsewhere in the last seconds (D1 says revoked, this isolate's caches still
/// say active) opens no session: the login reads the key's row from D1 now.
#[tokio::test]
async fn a_key_revoked_elsewhere_opens_no_session_while_caches_lag() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    // Warm this isolate's caches with the key.
    assert_eq!(s.get("/v1/account", Some(&key)).await.status, 200);
    s.revoke_elsewhere(&key).await;
    let (r, cookie) = login(s, &key).await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(cookie.is_none(), "a session cookie was set: {cookie:?}");
}
