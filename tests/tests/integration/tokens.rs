//! Token limits per minute and account-wide limits through the public API: exact admission of
//! worst-case tokens under concurrency, refunds and debt after settlement, calls too large to
//! ever fit, keys of one account sharing its limits, and each endpoint's rate-limit headers.

use std::time::Duration;

use futures::future::join_all;
use integration_tests::{json, nonce, reqwest::Method, send, stack, Reply, Stack, Value};

/// An enterprise account with these `limits` (calls `burst`/`per_second` generous unless set),
/// plenty of credits, and one live key.
async fn account_with(s: &Stack, limits: Value) -> (String, String) {
    let account = s.account("enterprise", 1_000_000_000).await;
    let mut l = json!({"burst": 1000, "per_second": 100});
    for (k, v) in limits.as_object().unwrap() {
        l[k] = v.clone();
    }
    let r = s
        .admin(
            Method::PATCH,
            &format!("/admin/accounts/{account}"),
            &json!({"tier": "enterprise", "limits": l}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let key = s.key(&account, "live").await;
    (account, key)
}

async fn no_store(s: &Stack, path: &str, key: &str, body: &Value) -> Reply {
    send(
        s.client
            .post(s.url(path))
            .bearer_auth(key)
            .header("Cache-Control", "no-store")
            .json(body),
    )
    .await
}

/// A prompt of exactly `bytes` bytes (the input estimate is bytes / 2 + 16 tokens).
fn prompt(tag: &str, bytes: usize) -> String {
    let mut p = format!("{tag} ");
    while p.len() < bytes {
        p.push('x');
    }
    p.truncate(bytes);
    p
}

#[tokio::test]
async fn concurrent_calls_are_admitted_exactly_to_the_input_token_limit() {
    let s = &stack();
    let (_, key) = account_with(
        s,
        json!({"input_tokens_per_minute": 1000, "output_tokens_per_minute": 1_000_000}),
    )
    .await;
    let n = nonce();
    // 468 bytes: 250 worst-case input tokens each; the mock holds each call for a second.
    let key = &key;
    let calls = (0..20).map(|i| {
        let body = json!({"prompt": prompt(&format!("[[mock:*=delay:1000]] {n} {i:02}"), 468),
            "providers": ["openai"]});
        async move { no_store(s, "/v1/ask", key, &body).await }
    });
    let replies = join_all(calls).await;
    let admitted = replies.iter().filter(|r| r.status == 200).count();
    let refused: Vec<&Reply> = replies.iter().filter(|r| r.status == 429).collect();
    assert_eq!(
        admitted,
        4,
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(refused.len(), 16);
    for r in &refused {
        let e = &r.json()["error"];
        assert_eq!(e["limit"], "input_tokens", "{}", r.text);
        assert_eq!(e["scope"], "key");
        // 250 tokens at 1,000 a minute: 15 s, less what refilled since the bucket emptied.
        let wait = e["retry_after_ms"].as_u64().unwrap();
        assert!((12_000..=15_000).contains(&wait), "{wait}");
        let header: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert_eq!(
            header,
            wait.div_ceil(1000),
            "Retry-After is the exact wait, rounded up"
        );
    }
    // Settled at their actual (small) input, the admitted calls gave the rest back: a call
    // now is admitted at once.
    let mut again = None;
    for _ in 0..30 {
        let body = json!({"prompt": prompt(&format!("{n} later"), 468), "providers": ["openai"]});
        let r = no_store(s, "/v1/ask", key, &body).await;
        if r.status == 200 {
            again = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(again.is_some(), "the refund let a call in");
}

fn header_u64(r: &Reply, name: &str) -> u64 {
    r.header(name)
        .unwrap_or_else(|| panic!("no {name}: {:?}", r.headers))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn unused_output_tokens_come_back_at_once() {
    let s = &stack();
    let (_, key) = account_with(s, json!({"output_tokens_per_minute": 10_000})).await;
    let n = nonce();
    let body = |i: u32| {
        json!({"model": "claude-haiku-4-5", "max_tokens": 1024,
            "messages": [{"role": "user", "content": format!("refund {n} {i}")}]})
    };
    let first = no_store(s, "/v1/messages", &key, &body(1)).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let before = header_u64(&first, "anthropic-ratelimit-output-tokens-remaining");
    assert!(before <= 10_000 - 1024, "{before}");
    // The first call used a few tokens of its 1,024: once it settles, the next call's
    // remaining count is its own reservation below the first's, not two reservations.
    let mut after = 0;
    for i in 2..30 {
        let r = no_store(s, "/v1/messages", &key, &body(i)).await;
        assert_eq!(r.status, 200, "{}", r.text);
        after = header_u64(&r, "anthropic-ratelimit-output-tokens-remaining");
        if after + 200 >= before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        after + 200 >= before,
        "refund visible: before {before}, after {after}"
    );
    assert_eq!(
        header_u64(&first, "anthropic-ratelimit-output-tokens-limit"),
        10_000
    );
}

#[tokio::test]
async fn tokens_used_beyond_the_reservation_are_a_debt_the_next_call_waits_for() {
    let s = &stack();
    let (_, key) = account_with(
        s,
        json!({"input_tokens_per_minute": 1000, "output_tokens_per_minute": 1_000_000}),
    )
    .await;
    let n = nonce();
    // Reserved ~ 40 input tokens; the provider reports 1,900.
    let big =
        json!({"prompt": format!("[[mock:*=input_tokens:1900]] {n}"), "providers": ["openai"]});
    let r = no_store(s, "/v1/ask", &key, &big).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut refused = None;
    for i in 0..30 {
        let small = json!({"prompt": format!("{n} next {i}"), "providers": ["openai"]});
        let r = no_store(s, "/v1/ask", &key, &small).await;
        if r.status == 429 {
            refused = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = refused.expect("the debt refuses the next call");
    let e = &r.json()["error"];
    assert_eq!(e["limit"], "input_tokens", "{}", r.text);
    // At least the debt (the bucket below zero) must refill first: more than a whole minute's
    // worth of waiting for a small call would be needed with no debt only if it were huge.
    let wait = e["retry_after_ms"].as_u64().unwrap();
    assert!(wait > 30_000, "the debt shows in the wait: {wait} ms");
}

#[tokio::test]
async fn a_call_that_can_never_fit_is_request_too_large_without_a_retry_time() {
    let s = &stack();
    let (_, key) = account_with(s, json!({"output_tokens_per_minute": 1000})).await;
    let body = json!({"model": "claude-haiku-4-5", "max_tokens": 2000,
        "messages": [{"role": "user", "content": format!("too big {}", nonce())}]});
    let r = no_store(s, "/v1/messages", &key, &body).await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.json()["type"], "error");
    assert_eq!(r.json()["error"]["code"], "request_too_large", "{}", r.text);
    assert!(r.header("retry-after").is_none(), "{:?}", r.headers);
    assert!(r.header("retry-after-ms").is_none(), "{:?}", r.headers);
    // The SDKs' retries could never turn it into an answer: they are told not to try.
    assert_eq!(r.header("x-should-retry").as_deref(), Some("false"));
}

#[tokio::test]
async fn two_keys_of_one_account_share_its_limit() {
    let s = &stack();
    let (account, a) = account_with(s, json!({"account_calls_per_minute": 4})).await;
    let b = s.key(&account, "live").await;
    let n = nonce();
    let mut statuses = Vec::new();
    for i in 0..4 {
        for key in [&a, &b] {
            let body = json!({"prompt": format!("shared {n} {i} {}", &key[..14]), "providers": ["openai"]});
            let r = no_store(s, "/v1/ask", key, &body).await;
            if r.status == 429 {
                assert_eq!(r.json()["error"]["scope"], "account", "{}", r.text);
                assert_eq!(r.json()["error"]["limit"], "requests", "{}", r.text);
            }
            statuses.push(r.status);
        }
    }
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(admitted, 4, "{statuses:?}");
    // Every other call was the account's 429 (checked above), and none anything else.
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    // Both keys were refused: the limit is the account's, not the first key's own.
    assert!(
        statuses[..].chunks(2).any(|pair| pair[1] == 429),
        "{statuses:?}"
    );
    assert!(
        statuses[..].chunks(2).any(|pair| pair[0] == 429),
        "{statuses:?}"
    );
}

/// A drop-in call refused by an account-wide limit while its key had room: the 429's headers
/// speak for the account's limit that refused it (none left, reset at the retry time), not for
/// the key's call bucket, so a client pacing by the provider's headers waits; the body names
/// the tier as every other 429 does.
#[tokio::test]
async fn an_account_limits_429_carries_the_accounts_headers() {
    let s = &stack();
    let (account, a) = account_with(s, json!({"account_calls_per_minute": 1})).await;
    let b = s.key(&account, "live").await;
    let n = nonce();
    let body = |key: &str| {
        json!({"model": "claude-haiku-4-5", "max_tokens": 16,
            "messages": [{"role": "user", "content": format!("account headers {n} {}", &key[..14])}]})
    };
    let first = no_store(s, "/v1/messages", &a, &body(&a)).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let r = no_store(s, "/v1/messages", &b, &body(&b)).await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.json()["error"]["scope"], "account", "{}", r.text);
    assert_eq!(r.json()["error"]["tier"], "enterprise", "{}", r.text);
    assert_eq!(
        r.header("anthropic-ratelimit-requests-remaining")
            .as_deref(),
        Some("0"),
        "{:?}",
        r.headers
    );
    assert_eq!(
        r.header("anthropic-ratelimit-requests-limit").as_deref(),
        Some("1"),
        "{:?}",
        r.headers
    );
    let retry_s: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(retry_s >= 50, "one call a minute: {retry_s}");
    let remaining = r.header("ratelimit").unwrap_or_default();
    assert!(
        remaining.contains("\"enterprise-account-requests\";r=0;t="),
        "{remaining}"
    );
}

#[tokio::test]
async fn each_endpoint_speaks_its_own_rate_limit_headers() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let m = no_store(
        s,
        "/v1/messages",
        &key,
        &json!({"model": "claude-haiku-4-5", "max_tokens": 64,
            "messages": [{"role": "user", "content": format!("headers {n}")}]}),
    )
    .await;
    assert_eq!(m.status, 200, "{}", m.text);
    for family in ["requests", "input-tokens", "output-tokens"] {
        for part in ["limit", "remaining", "reset"] {
            let name = format!("anthropic-ratelimit-{family}-{part}");
            assert!(m.header(&name).is_some(), "{name}: {:?}", m.headers);
        }
    }
    let reset = m.header("anthropic-ratelimit-requests-reset").unwrap();
    assert!(
        reset.len() == 20 && reset.ends_with('Z') && reset.as_bytes()[10] == b'T',
        "RFC 3339: {reset}"
    );
    assert!(m.header("ratelimit-policy").is_some());

    let c = no_store(
        s,
        "/v1/chat/completions",
        &key,
        &json!({"model": "gpt-4o-mini", "max_completion_tokens": 64,
            "messages": [{"role": "user", "content": format!("headers {n}")}]}),
    )
    .await;
    assert_eq!(c.status, 200, "{}", c.text);
    for name in [
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-tokens",
    ] {
        assert!(c.header(name).is_some(), "{name}: {:?}", c.headers);
    }
    let reset = c.header("x-ratelimit-reset-tokens").unwrap();
    assert!(
        reset.ends_with('s') && reset.chars().next().unwrap().is_ascii_digit(),
        "a Go duration: {reset}"
    );
    assert!(c.header("anthropic-ratelimit-requests-limit").is_none());

    let a = no_store(
        s,
        "/v1/ask",
        &key,
        &json!({"prompt": format!("headers {n}"), "providers": ["openai"]}),
    )
    .await;
    assert!(a.header("ratelimit-policy").is_some());
    assert!(a.header("anthropic-ratelimit-requests-limit").is_none());
    assert!(a.header("x-ratelimit-limit-tokens").is_none());
}

/// The benchmarks' baseline for what token limits cost a miss (`x-dev-limits: calls-only`,
/// `scripts/bench.sh` section c) differs from a miss in its token limits alone: it takes no
/// tokens, and it still charges every call exactly what it cost.
#[tokio::test]
async fn the_calls_only_baseline_takes_no_tokens_and_charges_exactly() {
    let s = &stack();
    let (_, key) = account_with(
        s,
        json!({"input_tokens_per_minute": 1000, "output_tokens_per_minute": 1_000_000}),
    )
    .await;
    let n = nonce();
    // 1,168 bytes: 600 worst-case input tokens each, so two at once exceed the 1,000 of the
    // limit; the mock holds each call for a second, so both are in flight together.
    let body = |tag: &str| {
        json!({"prompt": prompt(&format!("[[mock:openai=delay:1000]] baseline {n} {tag}"), 1168),
            "providers": ["openai"], "params": {"max_tokens": 16}})
    };
    let pair = |calls_only: bool, tag: &'static str| {
        let body = body(tag);
        let key = key.clone();
        async move {
            let one = |i: u32| {
                let mut b = body.clone();
                b["prompt"] = json!(format!("{} {i}", b["prompt"].as_str().unwrap()));
                let mut rb = s
                    .client
                    .post(s.url("/v1/ask"))
                    .bearer_auth(&key)
                    .header("Cache-Control", "no-store")
                    .json(&b);
                if calls_only {
                    rb = rb.header("x-dev-limits", "calls-only");
                }
                send(rb)
            };
            join_all([one(1), one(2)]).await
        }
    };
    // With token limits, the second of the pair is refused for its input tokens.
    let limited = pair(false, "limited").await;
    let mut statuses: Vec<u16> = limited.iter().map(|r| r.status).collect();
    statuses.sort();
    assert_eq!(
        statuses,
        vec![200, 429],
        "{:?}",
        limited.iter().map(|r| &r.text).collect::<Vec<_>>()
    );
    let refused = limited.iter().find(|r| r.status == 429).unwrap();
    assert_eq!(
        refused.json()["error"]["limit"],
        "input_tokens",
        "{}",
        refused.text
    );
    // Calls-only: both are admitted, and each is charged its cost, exactly once (the balance
    // read once the first pair's settlements are in).
    let before = s.settled_balance(&key).await;
    let baseline = pair(true, "baseline").await;
    let mut charged = 0;
    for r in &baseline {
        assert_eq!(r.status, 200, "{}", r.text);
        let credits = r.json()["usage"]["credits"].as_u64().unwrap();
        assert!(credits > 0, "{}", r.text);
        charged += credits;
    }
    assert_eq!(
        before - s.settled_balance(&key).await,
        charged,
        "charged exactly what the calls cost"
    );
}
