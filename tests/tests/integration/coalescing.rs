//! Coalesced identical misses through the public API: N concurrent identical cacheable calls
//! make one upstream call (counted by the mock), the leader is charged the call and the
//! followers the hit fee; failures are shared; a lost leader promotes one follower; the bounds
//! (wait, size, age) hold; what must not coalesce does not.

use std::time::Duration;

use futures::future::join_all;
use futures::StreamExt;
use integration_tests::{json, nonce, send, stack, Reply, Stack, Value, LIVE_CREDITS};

const COLLAPSED: &str = "edge-gateway; fwd=uri-miss; collapsed";

async fn post_with(
    s: &Stack,
    path: &str,
    key: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> Reply {
    let mut rb = s.client.post(s.url(path)).bearer_auth(key).json(body);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    send(rb).await
}

/// `n` identical calls at once (the first sent a moment before the others, so it leads).
async fn burst(s: &Stack, path: &str, key: &str, body: &Value, n: usize) -> Vec<Reply> {
    let first = post_with(s, path, key, body, &[]);
    let rest = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        join_all((1..n).map(|_| post_with(s, path, key, body, &[]))).await
    };
    let (first, rest) = tokio::join!(first, rest);
    std::iter::once(first).chain(rest).collect()
}

fn is_collapsed(r: &Reply) -> bool {
    r.header("cache-status").as_deref() == Some(COLLAPSED)
}

/// The leader's reply and the followers', after checking there is exactly one leader.
fn split(replies: &[Reply]) -> (&Reply, Vec<&Reply>) {
    let (followers, leaders): (Vec<&Reply>, Vec<&Reply>) =
        replies.iter().partition(|r| is_collapsed(r));
    assert_eq!(
        leaders.len(),
        1,
        "one leader: {:?}",
        leaders
            .iter()
            .map(|r| r.header("cache-status"))
            .collect::<Vec<_>>()
    );
    (leaders[0], followers)
}

#[tokio::test]
async fn fifty_identical_asks_make_one_upstream_call_per_provider() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let before = s.balance(&key).await;
    let n = nonce();
    let body = json!({"prompt": format!("coalesce me [[mock:*=delay:1000]] {n}"),
        "providers": ["openai", "anthropic"]});
    let replies = burst(s, "/v1/ask", &key, &body, 50).await;
    for r in &replies {
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let calls = s.mock_calls(&n).await;
    assert_eq!(calls["total"], 2, "one call per provider: {calls}");
    let (leader, followers) = split(&replies);
    assert_eq!(followers.len(), 49);
    assert_eq!(leader.json()["cache"]["status"], "miss");
    let results = |r: &Reply| {
        let mut v = r.json()["results"].clone();
        for x in v.as_array_mut().unwrap() {
            x.as_object_mut().unwrap().remove("latency_ms");
        }
        v
    };
    let charged = leader.json()["usage"]["credits"].as_u64().unwrap();
    let fee = followers[0].json()["usage"]["credits"].as_u64().unwrap();
    assert!(
        charged > fee,
        "the leader pays the call ({charged}), followers the fee ({fee})"
    );
    for f in &followers {
        let b = f.json();
        assert_eq!(b["cache"]["status"], "coalesced", "{b}");
        assert_eq!(results(f), results(leader));
        assert_eq!(b["usage"]["credits"], fee);
    }
    // One full charge and 49 hit fees, exactly.
    assert_eq!(s.settled_balance(&key).await, before - charged - 49 * fee);
    // The answer was stored: the next identical call is a hit.
    let again = s.ask(&key, &body).await;
    assert_eq!(again.json()["cache"]["status"], "hit", "{}", again.text);
}

fn chat(prompt: &str, stream: bool) -> Value {
    json!({"model": "gpt-4o-mini", "max_completion_tokens": 64, "stream": stream,
        "messages": [{"role": "user", "content": prompt}]})
}

fn messages(prompt: &str, stream: bool) -> Value {
    json!({"model": "claude-haiku-4-5", "max_tokens": 64, "stream": stream,
        "messages": [{"role": "user", "content": prompt}]})
}

#[tokio::test]
async fn identical_drop_in_calls_coalesce() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    for (path, body) in [
        ("/v1/chat/completions", chat as fn(&str, bool) -> Value),
        ("/v1/messages", messages),
    ] {
        let n = nonce();
        let body = body(&format!("coalesce [[mock:*=delay:1000]] {n}"), false);
        let replies = burst(s, path, &key, &body, 50).await;
        for r in &replies {
            assert_eq!(r.status, 200, "{path}: {}", r.text);
        }
        assert_eq!(s.mock_calls(&n).await["total"], 1, "{path}");
        let (leader, followers) = split(&replies);
        for f in followers {
            assert_eq!(
                f.text, leader.text,
                "{path}: the provider's answer as it came"
            );
        }
    }
}

/// A streamed answer read whole: status, `Cache-Status`, text, and when its last bytes came.
async fn stream_text(
    s: &Stack,
    path: &str,
    key: &str,
    body: &Value,
) -> (u16, Option<String>, String, std::time::Instant) {
    let resp = s
        .client
        .post(s.url(path))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .expect("sent");
    let status = resp.status().as_u16();
    let cache = resp
        .headers()
        .get("cache-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut text = Vec::new();
    let mut body = resp.bytes_stream();
    let mut last = std::time::Instant::now();
    while let Some(Ok(chunk)) = body.next().await {
        text.extend_from_slice(&chunk);
        last = std::time::Instant::now();
    }
    (
        status,
        cache,
        String::from_utf8_lossy(&text).into_owned(),
        last,
    )
}

/// The text deltas of an Anthropic event stream, joined.
fn anthropic_text(events: &str) -> String {
    events
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|v| v["type"] == "content_block_delta")
        .filter_map(|v| v["delta"]["text"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn identical_streams_coalesce_and_followers_stream_live() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let body = messages(
        &format!("stream together [[mock:anthropic=stream_delay:150]] {n}"),
        true,
    );
    let json_body = messages(
        &format!("stream together [[mock:anthropic=stream_delay:150]] {n}"),
        false,
    );
    let first = stream_text(s, "/v1/messages", &key, &body);
    let others = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let streams = join_all((0..19).map(|_| stream_text(s, "/v1/messages", &key, &body)));
        // A JSON caller of the same key follows the stream and gets the whole answer.
        let whole = post_with(s, "/v1/messages", &key, &json_body, &[]);
        tokio::join!(streams, whole)
    };
    let (first, (rest, whole)) = tokio::join!(first, others);
    // The leader is whichever stream reached the flight first (almost always the first sent).
    let mut streams: Vec<_> = std::iter::once(first).chain(rest).collect();
    let leaders: Vec<usize> = (0..streams.len())
        .filter(|i| streams[*i].1.as_deref() != Some(COLLAPSED))
        .collect();
    assert_eq!(
        leaders.len(),
        1,
        "one leader: {:?}",
        streams.iter().map(|s| &s.1).collect::<Vec<_>>()
    );
    let leader = streams.remove(leaders[0]);
    let followers = streams;
    assert_eq!(leader.0, 200, "{}", leader.2);
    assert_eq!(s.mock_calls(&n).await["total"], 1);
    let text = anthropic_text(&leader.2);
    assert!(!text.is_empty(), "{}", leader.2);
    assert!(leader.2.contains("event: message_stop"), "{}", leader.2);
    for f in &followers {
        assert_eq!(f.0, 200, "{}", f.2);
        assert_eq!(f.1.as_deref(), Some(COLLAPSED));
        assert_eq!(anthropic_text(&f.2), text, "every event from the first");
        assert!(f.2.contains("event: message_start"), "{}", f.2);
        assert!(f.2.contains("event: message_stop"), "{}", f.2);
    }
    // Live: each follower's last event came with the leader's (its events are 150 ms apart,
    // so a follower fed at the end, or an event behind, would be 150 ms or more late).
    let lag = followers
        .iter()
        .map(|f| f.3.saturating_duration_since(leader.3))
        .max()
        .unwrap();
    println!("the last follower's last event came {lag:?} after the leader's");
    assert!(lag < Duration::from_millis(120), "{lag:?}");
    assert_eq!(whole.status, 200, "{}", whole.text);
    assert!(is_collapsed(&whole), "{:?}", whole.headers);
    assert_eq!(whole.json()["content"][0]["text"], text.as_str());
}

#[tokio::test]
async fn a_failed_leader_shares_its_failure() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    // What one call alone makes upstream (a 503 may be retried by the broker).
    let solo = nonce();
    let r = s
        .ask(&key, &json!({"prompt": format!("fail [[mock:openai=503]] {solo}"), "providers": ["openai", "anthropic"]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let one_call = s.mock_calls(&solo).await["total"].as_u64().unwrap();

    // The failing upstream answers well after the followers' 100 ms head start, however
    // loaded the machine: they all join while the leader's call is in flight.
    let n = nonce();
    let body = json!({"prompt": format!("fail [[mock:*=delay:2000]] [[mock:openai=503]] {n}"),
        "providers": ["openai", "anthropic"]});
    let replies = burst(s, "/v1/ask", &key, &body, 10).await;
    assert_eq!(s.mock_calls(&n).await["total"].as_u64().unwrap(), one_call);
    let (leader, followers) = split(&replies);
    let openai = |r: &Reply| {
        r.json()["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["provider"] == "openai")
            .cloned()
            .unwrap()
    };
    assert!(openai(leader)["error"].is_object(), "{}", leader.text);
    for f in followers {
        assert_eq!(f.status, 200);
        assert_eq!(openai(f)["error"], openai(leader)["error"], "{}", f.text);
        // Anthropic's answer was served: the hit fee.
        assert!(
            f.json()["usage"]["credits"].as_u64().unwrap() > 0,
            "{}",
            f.text
        );
    }
    // Every provider failed: the followers were served no answer, and pay nothing (as the
    // same call alone costs nothing when its provider refused).
    let n = nonce();
    let body = json!({"prompt": format!("all fail [[mock:*=delay:2000]] [[mock:openai=503]] {n}"),
        "providers": ["openai"]});
    let replies = burst(s, "/v1/ask", &key, &body, 5).await;
    let (leader, followers) = split(&replies);
    assert_eq!(leader.json()["usage"]["credits"], 0, "{}", leader.text);
    for f in followers {
        assert!(openai(f)["error"].is_object(), "{}", f.text);
        assert_eq!(f.json()["usage"]["credits"], 0, "{}", f.text);
    }

    // A drop-in upstream error is shared as it came, from the one call a lone request makes.
    let solo = nonce();
    let r = post_with(
        s,
        "/v1/chat/completions",
        &key,
        &chat(&format!("down [[mock:openai=503]] {solo}"), false),
        &[],
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.text);
    let one_dropin = s.mock_calls(&solo).await["total"].as_u64().unwrap();
    let n = nonce();
    let body = chat(
        &format!("down [[mock:*=delay:2000]] [[mock:openai=503]] {n}"),
        false,
    );
    let replies = burst(s, "/v1/chat/completions", &key, &body, 10).await;
    assert_eq!(
        s.mock_calls(&n).await["total"].as_u64().unwrap(),
        one_dropin
    );
    let (leader, followers) = split(&replies);
    assert_eq!(leader.status, 503, "{}", leader.text);
    for f in followers {
        assert_eq!(f.status, 503, "{}", f.text);
        assert_eq!(f.json()["error"], leader.json()["error"]);
    }
    s.assert_rows_add_up(&key, LIVE_CREDITS).await;
}

#[tokio::test]
async fn a_lost_leader_promotes_exactly_one_follower() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    // The lost leader joins well before its followers (300 ms head start), and its own call is
    // still in flight when they join (1.5 s), however loaded the machine.
    let body =
        json!({"prompt": format!("lost [[mock:*=delay:1500]] {n}"), "providers": ["openai"]});
    let lost = post_with(s, "/v1/ask", &key, &body, &[("x-dev-flight", "lose")]);
    let followers = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        join_all((0..5).map(|_| s.ask(&key, &body))).await
    };
    let (lost, followers) = tokio::join!(lost, followers);
    assert_eq!(lost.status, 200, "{}", lost.text);
    for f in &followers {
        assert_eq!(f.status, 200, "{}", f.text);
    }
    // The lost leader's call and the promoted follower's: exactly one more.
    assert_eq!(s.mock_calls(&n).await["total"], 2);
    let promoted: Vec<_> = followers.iter().filter(|r| !is_collapsed(r)).collect();
    assert_eq!(promoted.len(), 1, "one follower promoted");
}

/// A leader lost once it published part of its stream: the followers passing that stream on
/// cannot be continued by a new leader's (a second `message_start`), so their streams end with
/// the protocol's error, never with what reads as a whole answer; a follower waiting for the
/// whole answer is promoted and makes the call.
#[tokio::test]
async fn a_leader_lost_mid_stream_ends_its_streaming_followers_and_promotes_a_waiting_one() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    for path in ["/v1/ask", "/v1/messages"] {
        let n = nonce();
        let prompt = format!("lost mid-way [[mock:*=stream_delay:300]] {n}");
        let (streamed, whole) = if path == "/v1/ask" {
            let ask =
                |stream| json!({"prompt": prompt, "providers": ["anthropic"], "stream": stream});
            (ask(true), ask(false))
        } else {
            (messages(&prompt, true), messages(&prompt, false))
        };
        let lost = [("x-dev-flight", "lose-mid-stream")];
        let leader = post_with(s, path, &key, &streamed, &lost);
        let followers = async {
            tokio::time::sleep(Duration::from_millis(600)).await;
            // The streaming follower joins first, the waiting one after it.
            let waiting = async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                post_with(s, path, &key, &whole, &[]).await
            };
            tokio::join!(stream_text(s, path, &key, &streamed), waiting)
        };
        let (leader, (streaming, waiting)) = tokio::join!(leader, followers);
        assert_eq!(leader.status, 200, "{}", leader.text);
        let (status, cache, text, _) = streaming;
        assert_eq!(status, 200, "{text}");
        assert_eq!(cache.as_deref(), Some(COLLAPSED), "{path}");
        let events: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(events.last(), Some(&"error"), "{path}: {text}");
        if path == "/v1/ask" {
            assert!(
                events.contains(&"delta"),
                "the leader's first events: {text}"
            );
            assert!(!events.contains(&"done"), "{text}");
        } else {
            assert_eq!(
                events.iter().filter(|e| **e == "message_start").count(),
                1,
                "{text}"
            );
            assert!(!events.contains(&"message_stop"), "{text}");
        }
        assert_eq!(waiting.status, 200, "{path}: {}", waiting.text);
        assert!(!is_collapsed(&waiting), "promoted: {:?}", waiting.headers);
        assert_eq!(s.mock_calls(&n).await["total"], 2, "{path}");
    }
    s.assert_rows_add_up(&key, LIVE_CREDITS).await;
}

#[tokio::test]
async fn the_flight_outlives_its_leaders_client() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let before = s.balance(&key).await;
    let n = nonce();
    let body =
        json!({"prompt": format!("walk away [[mock:*=delay:1000]] {n}"), "providers": ["openai"]});
    let gone = s
        .client
        .post(s.url("/v1/ask"))
        .bearer_auth(&key)
        .json(&body)
        .timeout(Duration::from_millis(100))
        .send();
    let followers = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        join_all((0..5).map(|_| s.ask(&key, &body))).await
    };
    let (gone, followers) = tokio::join!(gone, followers);
    assert!(gone.is_err(), "the leader's client left at 100 ms");
    for f in &followers {
        assert_eq!(f.status, 200, "{}", f.text);
        assert!(is_collapsed(f), "{:?}", f.headers);
    }
    assert_eq!(s.mock_calls(&n).await["total"], 1);
    // The cache was written, and the leader settled once (the call's charge, plus 5 fees).
    let again = s.ask(&key, &body).await;
    assert_eq!(again.json()["cache"]["status"], "hit", "{}", again.text);
    let fee = followers[0].json()["usage"]["credits"].as_u64().unwrap();
    let spent = before - s.settled_balance(&key).await;
    let usage = s.get("/v1/usage", Some(&key)).await.json();
    let misses: Vec<&Value> = usage["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["cache"]["status"] == "miss")
        .collect();
    assert_eq!(misses.len(), 1, "{usage}");
    let charged = misses[0]["credits"].as_u64().unwrap();
    assert!(charged > 0, "{usage}");
    assert_eq!(spent, charged + 6 * fee, "{usage}");
}

#[tokio::test]
async fn a_streaming_ask_follower_whose_client_leaves_still_writes_its_row_and_archive() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let body = json!({"prompt": format!("leave early [[mock:openai=stream_delay:200]] {n}"),
        "providers": ["openai"], "stream": true});
    let leader = stream_text(s, "/v1/ask", &key, &body);
    let follower = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let resp = s
            .client
            .post(s.url("/v1/ask"))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .expect("sent");
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        assert_eq!(header("cache-status").as_deref(), Some(COLLAPSED));
        let id = header("x-request-id").expect("a request id");
        // Its first events, then the caller goes away long before the leader's end.
        let mut events = resp.bytes_stream();
        let first = tokio::time::timeout(Duration::from_secs(5), events.next()).await;
        assert!(matches!(first, Ok(Some(Ok(_)))), "{first:?}");
        drop(events);
        id
    };
    let (leader, id) = tokio::join!(leader, follower);
    assert_eq!(leader.0, 200, "{}", leader.2);
    assert!(leader.2.contains("event: done"), "{}", leader.2);
    assert_eq!(s.mock_calls(&n).await["total"], 1);
    // The follower's fee was debited when its stream began: its row carries it, and its answer
    // is archived, as for a follower that stayed.
    s.assert_rows_add_up(&key, LIVE_CREDITS).await;
    let archived = s.get(&format!("/v1/ask/{id}"), Some(&key)).await;
    assert_eq!(archived.status, 200, "{}", archived.text);
    assert_eq!(
        archived.json()["cache"]["status"],
        "coalesced",
        "{}",
        archived.text
    );
}

#[tokio::test]
async fn private_calls_of_two_accounts_do_not_coalesce() {
    let s = &stack();
    let (account_a, a) = s.live_key().await;
    let (_, b) = s.live_key().await;
    let n = nonce();
    let body = json!({"prompt": format!("mine [[mock:*=delay:800]] {n}"), "providers": ["openai"],
        "cache_scope": "private"});
    let (ra, rb) = tokio::join!(s.ask(&a, &body), s.ask(&b, &body));
    assert_eq!(ra.json()["cache"]["status"], "miss", "{}", ra.text);
    assert_eq!(rb.json()["cache"]["status"], "miss", "{}", rb.text);
    assert_eq!(s.mock_calls(&n).await["total"], 2);
    // The same two calls from one account do coalesce: the two above were kept apart by
    // their accounts, not by their timing.
    let a2 = s.key(&account_a, "live").await;
    let m = nonce();
    let body = json!({"prompt": format!("mine [[mock:*=delay:800]] {m}"), "providers": ["openai"],
        "cache_scope": "private"});
    let (r1, r2) = tokio::join!(s.ask(&a, &body), s.ask(&a2, &body));
    let statuses = [
        r1.json()["cache"]["status"].clone(),
        r2.json()["cache"]["status"].clone(),
    ];
    assert!(statuses.contains(&json!("coalesced")), "{statuses:?}");
    assert_eq!(s.mock_calls(&m).await["total"], 1);
}

#[tokio::test]
async fn no_store_and_test_keys_do_not_coalesce() {
    let s = &stack();
    let (account, key) = s.live_key().await;
    let n = nonce();
    let body =
        json!({"prompt": format!("alone [[mock:*=delay:500]] {n}"), "providers": ["openai"]});
    let replies = join_all(
        (0..5).map(|_| post_with(s, "/v1/ask", &key, &body, &[("Cache-Control", "no-store")])),
    )
    .await;
    for r in &replies {
        assert_eq!(r.json()["cache"]["status"], "bypass", "{}", r.text);
    }
    assert_eq!(s.mock_calls(&n).await["total"], 5);
    let test = s.key(&account, "test").await;
    let replies = join_all((0..5).map(|_| s.ask(&test, &body))).await;
    for r in &replies {
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(!is_collapsed(r));
    }
}

#[tokio::test]
async fn a_follower_past_its_wait_bound_gets_504() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let body =
        json!({"prompt": format!("stalled [[mock:*=delay:200]] {n}"), "providers": ["openai"]});
    let stalled = post_with(s, "/v1/ask", &key, &body, &[("x-dev-flight", "stall")]);
    let follower = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = std::time::Instant::now();
        let r = s.ask(&key, &body).await;
        (r, started.elapsed())
    };
    let (stalled, (f, waited)) = tokio::join!(stalled, follower);
    assert_eq!(stalled.status, 200);
    assert_eq!(f.status, 504, "{}", f.text);
    assert_eq!(f.json()["error"]["code"], "upstream_timeout");
    assert!(
        waited >= Duration::from_secs(3),
        "waited the provider timeout and a margin: {waited:?}"
    );
    assert_eq!(s.mock_calls(&n).await["total"], 1, "no call of its own");

    // In a drop-in dialect, its error shape.
    let n = nonce();
    let body = messages(&format!("stalled [[mock:*=delay:200]] {n}"), false);
    let stalled = post_with(s, "/v1/messages", &key, &body, &[("x-dev-flight", "stall")]);
    let follower = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        post_with(s, "/v1/messages", &key, &body, &[]).await
    };
    let (_, f) = tokio::join!(stalled, follower);
    assert_eq!(f.status, 504, "{}", f.text);
    assert_eq!(f.json()["type"], "error", "{}", f.text);
}

#[tokio::test]
async fn a_full_flight_and_an_old_flight_let_callers_make_their_own_call() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    // Bounded at 2 followers (the hook lowers the 1,000): the third makes its own call.
    let n = nonce();
    let body =
        json!({"prompt": format!("full [[mock:*=delay:1000]] {n}"), "providers": ["openai"]});
    let leader = s.ask(&key, &body);
    let others = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let two = join_all((0..2).map(|_| s.ask(&key, &body)));
        let third = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            post_with(s, "/v1/ask", &key, &body, &[("x-dev-flight", "max=2")]).await
        };
        tokio::join!(two, third)
    };
    let (_, (two, third)) = tokio::join!(leader, others);
    assert!(two.iter().all(is_collapsed));
    assert!(!is_collapsed(&third), "{:?}", third.headers);
    assert_eq!(s.mock_calls(&n).await["total"], 2);

    // A flight older than twice the provider timeout (3 s here) is abandoned: a caller after
    // that leads a new one (no-cache: the stalled leader's own answer is in the cache).
    let n = nonce();
    let body = json!({"prompt": format!("old [[mock:*=delay:100]] {n}"), "providers": ["openai"]});
    let stalled = post_with(s, "/v1/ask", &key, &body, &[("x-dev-flight", "stall")]).await;
    assert_eq!(stalled.status, 200);
    tokio::time::sleep(Duration::from_millis(6_500)).await;
    let late = post_with(s, "/v1/ask", &key, &body, &[("Cache-Control", "no-cache")]).await;
    assert_eq!(late.status, 200, "{}", late.text);
    assert_eq!(late.json()["cache"]["status"], "refresh", "{}", late.text);
    assert_eq!(s.mock_calls(&n).await["total"], 2);
}

#[tokio::test]
async fn streamed_asks_and_chat_streams_coalesce_too() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    // /v1/ask with `stream: true`: followers get the leader's `delta` and `result` events as
    // they come, then their own `done`.
    let n = nonce();
    let body = json!({"prompt": format!("ask stream [[mock:*=delay:800]] {n}"),
        "providers": ["openai", "anthropic"], "stream": true});
    let leader = stream_text(s, "/v1/ask", &key, &body);
    let others = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        join_all((0..9).map(|_| stream_text(s, "/v1/ask", &key, &body))).await
    };
    let (leader, followers) = tokio::join!(leader, others);
    assert_eq!(leader.0, 200, "{}", leader.2);
    assert_eq!(s.mock_calls(&n).await["total"], 2);
    for f in &followers {
        assert_eq!(f.0, 200, "{}", f.2);
        assert_eq!(f.1.as_deref(), Some(COLLAPSED));
        assert_eq!(
            f.2.matches("event: done").count(),
            1,
            "its own done only: {}",
            f.2
        );
        assert_eq!(f.2.matches("event: result").count(), 2, "{}", f.2);
        // The leader's own deltas, as they came (a hit's synthesized events have one a result).
        let deltas = leader.2.matches("event: delta").count();
        assert!(deltas > 2, "{}", leader.2);
        assert_eq!(f.2.matches("event: delta").count(), deltas, "{}", f.2);
        let done =
            f.2.split("event: done\ndata: ")
                .nth(1)
                .unwrap()
                .lines()
                .next()
                .unwrap();
        let done: Value = serde_json::from_str(done).unwrap();
        assert_eq!(done["cache"]["status"], "coalesced", "{done}");
        assert_eq!(done["results"].as_array().unwrap().len(), 2, "{done}");
    }

    // An OpenAI stream: a follower that asked for the usage chunk gets it, one that did not
    // does not, whatever the leader asked.
    let n = nonce();
    let prompt = format!("chat stream [[mock:openai=stream_delay:100]] {n}");
    let plain = chat(&prompt, true);
    let mut with_usage = plain.clone();
    with_usage["stream_options"] = json!({"include_usage": true});
    let leader = stream_text(s, "/v1/chat/completions", &key, &plain);
    let others = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        tokio::join!(
            stream_text(s, "/v1/chat/completions", &key, &with_usage),
            stream_text(s, "/v1/chat/completions", &key, &plain)
        )
    };
    let (leader, (usage, plain)) = tokio::join!(leader, others);
    assert_eq!(s.mock_calls(&n).await["total"], 1);
    assert!(!leader.2.contains("\"usage\""), "{}", leader.2);
    assert_eq!(usage.1.as_deref(), Some(COLLAPSED));
    assert!(usage.2.contains("\"usage\":{"), "{}", usage.2);
    assert!(usage.2.trim_end().ends_with("data: [DONE]"), "{}", usage.2);
    assert_eq!(plain.1.as_deref(), Some(COLLAPSED));
    assert!(!plain.2.contains("\"usage\""), "{}", plain.2);
    // Every follower's fee is on its usage row, as the leaders' charges are on theirs.
    let spent = s.assert_rows_add_up(&key, LIVE_CREDITS).await;
    assert!(spent > 0);
}

/// Found by review (2026-12-08): a follower of a leader whose call failed gets the failure's
/// retry hints with it: here a drop-in timeout's `x-should-retry: false` (each SDK retry of a
/// timed-out call would be a new call, charged its worst case), which the follower's error
/// used to lose.
#[tokio::test]
async fn a_follower_of_a_timed_out_leader_is_told_not_to_retry_as_the_leader_is() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let body = json!({"model": "claude-haiku-4-5", "max_tokens": 32, "messages": [
        {"role": "user", "content": format!("slow together [[mock:anthropic=delay:8000]] {n}")}]});
    let follower = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.post("/v1/messages", Some(&key), &body).await
    };
    let (leader, follower) = tokio::join!(s.post("/v1/messages", Some(&key), &body), follower);
    assert_eq!(s.mock_calls(&n).await["total"], 1, "one call for both");
    for r in [&leader, &follower] {
        assert_eq!(r.status, 504, "{}", r.text);
        assert_eq!(
            r.header("x-should-retry").as_deref(),
            Some("false"),
            "{:?}",
            r.headers
        );
    }
}
