//! Streamed drop-in answers (`"stream": true`) through the public API: relayed as they arrive,
//! metered on the provider's usage, only complete streams cached, one entry for both forms,
//! early ends settled by the documented rule and recorded in the usage row.

use std::time::{Duration, Instant};

use futures::StreamExt;
use integration_tests::{json, nonce, send, stack, Stack, Value, LIVE_CREDITS};

fn chat_stream(prompt: &str) -> Value {
    json!({"model": "gpt-4o-mini", "max_completion_tokens": 64, "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": prompt}]})
}

fn messages_stream(prompt: &str) -> Value {
    json!({"model": "claude-haiku-4-5", "max_tokens": 64, "stream": true,
        "messages": [{"role": "user", "content": prompt}]})
}

/// A streamed answer read whole: status, headers, the time its first bytes came, the time it
/// ended, its text.
struct Streamed {
    status: u16,
    headers: reqwest::header::HeaderMap,
    first_bytes_after: Duration,
    elapsed: Duration,
    text: String,
}

async fn stream(s: &Stack, path: &str, key: &str, body: &Value) -> Streamed {
    let started = Instant::now();
    let resp = s
        .client
        .post(s.url(path))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .expect("sent");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let mut body = resp.bytes_stream();
    let mut text = Vec::new();
    let mut first_bytes_after = None;
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else { break };
        if first_bytes_after.is_none() && !chunk.is_empty() {
            first_bytes_after = Some(started.elapsed());
        }
        text.extend_from_slice(&chunk);
    }
    Streamed {
        status,
        headers,
        first_bytes_after: first_bytes_after.unwrap_or_else(|| started.elapsed()),
        elapsed: started.elapsed(),
        text: String::from_utf8_lossy(&text).into_owned(),
    }
}

/// The data of each event, parsed (the `[DONE]` line kept as a string).
fn data_of(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|ev| {
            let data: Vec<&str> = ev
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            (!data.is_empty()).then(|| {
                let d = data.join("\n");
                serde_json::from_str(&d).unwrap_or(Value::String(d))
            })
        })
        .collect()
}

/// The usage row of the call whose answer carried `request_id`, once it is written.
async fn usage_row(s: &Stack, key: &str, request_id: &str) -> Value {
    for _ in 0..60 {
        let u = s.get("/v1/usage", Some(key)).await.json();
        if let Some(e) = u["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["request_id"] == request_id)
        {
            return e.clone();
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    panic!("no usage row for {request_id}");
}

fn request_id(r: &Streamed) -> String {
    r.headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn events_are_relayed_as_they_arrive() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let r = stream(
        s,
        "/v1/messages",
        &key,
        &messages_stream(&format!(
            "slow stream [[mock:anthropic=stream_delay:1000]] {n}"
        )),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.headers.get("content-type").unwrap(),
        "text/event-stream",
        "{:?}",
        r.headers
    );
    assert!(
        r.first_bytes_after < Duration::from_millis(900),
        "first event after {:?}: buffered",
        r.first_bytes_after
    );
    assert!(r.text.contains("event: message_start") && r.text.contains("event: message_stop"));
}

#[tokio::test]
async fn a_clean_stream_is_metered_on_its_usage_and_cached_for_both_forms() {
    let s = &stack();
    let credits = 1_000_000;
    let account = s.account("pro", credits).await;
    let key = s.key(&account, "live").await;
    let n = nonce();
    let prompt = format!("stream and cache {n}");
    let live = stream(s, "/v1/chat/completions", &key, &chat_stream(&prompt)).await;
    assert_eq!(live.status, 200, "{}", live.text);
    let events = data_of(&live.text);
    assert_eq!(events.last(), Some(&json!("[DONE]")), "{}", live.text);
    let usage = events
        .iter()
        .find(|e| e["usage"].is_object())
        .map(|e| e["usage"].clone())
        .expect("the usage chunk the client asked for");
    let text: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(text.contains("openai"), "{text}");
    let row = usage_row(s, &key, &request_id(&live)).await;
    assert_eq!(row["stream_end"], "clean", "{row}");
    assert_eq!(row["tokens"]["input"], usage["prompt_tokens"], "{row}");
    assert_eq!(row["tokens"]["output"], usage["completion_tokens"], "{row}");
    let expected = gateway_core::credits::pricing::PriceTable::default().cost(
        gateway_core::providers::Provider::OpenAi,
        "gpt-4o-mini",
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
    );
    assert_eq!(row["credits"], expected, "{row}");
    // The same request as JSON: a hit, with the reassembled answer.
    let mut whole = chat_stream(&prompt);
    whole.as_object_mut().unwrap().remove("stream");
    whole.as_object_mut().unwrap().remove("stream_options");
    let hit = s.post("/v1/chat/completions", Some(&key), &whole).await;
    assert_eq!(hit.status, 200, "{}", hit.text);
    assert!(
        hit.header("cache-status").unwrap().contains("hit"),
        "{:?}",
        hit.headers
    );
    let body = hit.json();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], text);
    assert_eq!(
        body["usage"]["completion_tokens"],
        usage["completion_tokens"]
    );
    // And as a stream again: synthesized from the entry, the same text.
    let again = stream(s, "/v1/chat/completions", &key, &chat_stream(&prompt)).await;
    assert!(
        again
            .headers
            .get("cache-status")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("hit"),
        "{:?}",
        again.headers
    );
    let text_again: String = data_of(&again.text)
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text_again, text);
    assert_eq!(
        s.mock_calls(&n).await["total"],
        1,
        "hits make no upstream call"
    );
}

#[tokio::test]
async fn a_whole_answer_serves_a_later_stream() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let mut whole = messages_stream(&format!("whole then stream {n}"));
    whole.as_object_mut().unwrap().remove("stream");
    let first = s.post("/v1/messages", Some(&key), &whole).await;
    assert_eq!(first.status, 200, "{}", first.text);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = stream(
        s,
        "/v1/messages",
        &key,
        &messages_stream(&format!("whole then stream {n}")),
    )
    .await;
    assert!(
        r.headers
            .get("cache-status")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("hit"),
        "{:?}",
        r.headers
    );
    let text: String = data_of(&r.text)
        .iter()
        .filter_map(|e| e["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, first.json()["content"][0]["text"].as_str().unwrap());
    assert!(r.text.contains("event: message_stop"));
    assert_eq!(s.mock_calls(&n).await["total"], 1);
}

#[tokio::test]
async fn a_stream_that_fails_mid_way_ends_with_an_error_event_and_is_not_cached() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let body = messages_stream(&format!(
        "mid-stream error [[mock:anthropic=stream_error]] {n}"
    ));
    let r = stream(s, "/v1/messages", &key, &body).await;
    assert_eq!(r.status, 200);
    assert!(r.text.contains("event: error"), "{}", r.text);
    assert!(!r.text.contains("event: message_stop"), "{}", r.text);
    let row = usage_row(s, &key, &request_id(&r)).await;
    assert_eq!(row["stream_end"], "provider_error", "{row}");
    // Its usage so far came with `message_start` (the input, one output token), not its
    // final count: the call is charged its worst case, as a cut stream is.
    let worst = s.reserved_for("/v1/messages", &body).await;
    assert_eq!(
        row["credits"], worst,
        "never at a count that is not final: {row}"
    );
    let again = stream(s, "/v1/messages", &key, &body).await;
    assert!(
        !again
            .headers
            .get("cache-status")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("hit"),
        "a failed stream was cached"
    );
    assert_eq!(s.mock_calls(&n).await["total"], 2);
}

/// A stream running longer than the ledger keeps a reservation (10 minutes: past it, a call
/// whose isolate was lost is charged in full) is still settled at its usage: its reservation
/// is renewed while it runs. The account's ledger's clock is moved ahead (a test hook), so the
/// stream is 12 minutes old within two seconds.
#[tokio::test]
async fn a_stream_older_than_a_reservation_lives_is_settled_at_its_usage() {
    let s = &stack();
    let credits = LIVE_CREDITS;
    let (account, key) = s.live_key().await;
    let n = nonce();
    let body = messages_stream(&format!(
        "a long answer [[mock:anthropic=stream_delay:600]] {n}"
    ));
    let worst = s.reserved_for("/v1/messages", &body).await;
    let ahead = |minutes: u64| {
        let path = format!("/__dev/ledger/{account}/clock-ahead/{}", minutes * 60_000);
        async move {
            let r = s.post(&path, None, &json!({})).await;
            assert_eq!(r.status, 200, "{}", r.text);
        }
    };
    let start = std::time::Instant::now();
    let aging = async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        // Six minutes on, the stream renews its reservation (every 300 ms in the suite) ...
        ahead(6).await;
        tokio::time::sleep(Duration::from_millis(900)).await;
        // ... so twelve minutes after it was made, it is six minutes old.
        ahead(12).await;
        start.elapsed()
    };
    let (r, aged) = tokio::join!(stream(s, "/v1/messages", &key, &body), aging);
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.elapsed > aged + Duration::from_millis(300),
        "the stream was still running when its reservation was 12 minutes old: {:?} {aged:?}",
        r.elapsed
    );
    assert!(r.text.contains("event: message_stop"), "{}", r.text);
    let row = usage_row(s, &key, &request_id(&r)).await;
    assert_eq!(row["stream_end"], "clean", "{row}");
    let charged = row["credits"].as_u64().unwrap();
    assert!(charged > 0 && charged < worst, "{charged} of {worst}");
    // The balance was charged what the row says, not the reservation by its expiry.
    s.assert_rows_add_up(&key, credits).await;
}

#[tokio::test]
async fn a_cut_stream_ends_with_the_dialects_error_and_is_charged_its_worst_case() {
    let s = &stack();
    let credits = 1_000_000;
    let account = s.account("pro", credits).await;
    let key = s.key(&account, "live").await;
    let n = nonce();
    let body = chat_stream(&format!("truncated [[mock:openai=stream_truncate]] {n}"));
    let r = stream(s, "/v1/chat/completions", &key, &body).await;
    assert_eq!(r.status, 200);
    let events = data_of(&r.text);
    assert!(
        events.last().unwrap()["error"].is_object(),
        "the stream must end with an error, not cleanly: {}",
        r.text
    );
    assert!(!r.text.contains("[DONE]"));
    let row = usage_row(s, &key, &request_id(&r)).await;
    assert_eq!(row["stream_end"], "cut", "{row}");
    let worst = s.reserved_for("/v1/chat/completions", &body).await;
    assert_eq!(row["credits"], worst, "{row}");
    let again = stream(s, "/v1/chat/completions", &key, &body).await;
    assert!(!again
        .headers
        .get("cache-status")
        .unwrap()
        .to_str()
        .unwrap()
        .contains("hit"));
}

#[tokio::test]
async fn a_stream_whose_upstream_stays_open_after_its_end_ends_cleanly_at_its_terminal_event() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    // The whole stream, its terminal event included, then the upstream's connection stays
    // open: the caller's stream ends at the terminal event, cleanly (no keep-alive, no error
    // at the silence bound, 3 s in the suite), settled on the usage and stored.
    for (path, body, end) in [
        (
            "/v1/chat/completions",
            chat_stream(&format!("lingering [[mock:openai=stream_linger]] {n}")),
            "data: [DONE]\n\n",
        ),
        (
            "/v1/messages",
            messages_stream(&format!("lingering [[mock:anthropic=stream_linger]] {n}")),
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        ),
    ] {
        // Its worst case, asked before the answer is stored (a hit reserves nothing).
        let worst = s.reserved_for(path, &body).await;
        let r = stream(s, path, &key, &body).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        assert!(r.text.ends_with(end), "{path}: {}", r.text);
        assert!(!r.text.contains("error"), "{path}: {}", r.text);
        assert!(
            r.elapsed < Duration::from_millis(2_000),
            "{path}: {:?}",
            r.elapsed
        );
        let row = usage_row(s, &key, &request_id(&r)).await;
        assert_eq!(row["stream_end"], "clean", "{path}: {row}");
        assert!(row["credits"].as_u64().unwrap() < worst, "{path}: {row}");
        let again = stream(s, path, &key, &body).await;
        let status = again.headers.get("cache-status").unwrap().to_str().unwrap();
        assert!(status.contains("hit"), "{path}: {status}");
    }
}

#[tokio::test]
async fn a_caller_that_goes_away_is_settled_once_and_its_upstream_call_ends() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let body = messages_stream(&format!("hang [[mock:anthropic=stream_hang]] {n}"));
    let resp = s
        .client
        .post(s.url("/v1/messages"))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let id = resp
        .headers()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let mut events = resp.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("a first event");
    assert!(first.is_some());
    // The provider's stream is open while the caller reads ...
    assert_eq!(open_streams(s, &n).await, 1);
    drop(events);
    let dropped = Instant::now();
    let row = usage_row(s, &key, &id).await;
    // The relay ends with its caller (`client_gone`) where the runtime passes the disconnect
    // on; under wrangler dev its proxy may keep the stream open, and the silence bound (the
    // provider timeout, 3 s in the suite) ends it. Either way within a bound, settled once.
    assert!(
        row["stream_end"] == "client_gone" || row["stream_end"] == "silent",
        "{row}"
    );
    assert!(row["latency_ms"].as_u64().unwrap() < 6_000, "{row}");
    assert!(row["credits"].as_u64().unwrap() > 0, "never free: {row}");
    // ... and the broker's upstream call ends within a bound of the caller leaving (the
    // provider stops generating, and billing, with it): the mock sees its connection go.
    while open_streams(s, &n).await > 0 {
        assert!(
            dropped.elapsed() < Duration::from_secs(8),
            "the upstream stream is still open {:?} after the caller left",
            dropped.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Settled once: the balance stops moving after that one charge, and is what the row says.
    let b1 = s.get("/v1/account", Some(&key)).await.json()["credits_balance"].clone();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let b2 = s.get("/v1/account", Some(&key)).await.json()["credits_balance"].clone();
    assert_eq!(b1, b2);
    s.assert_rows_add_up(&key, LIVE_CREDITS).await;
}

/// The mock's streamed answers still being sent whose prompt holds `marker`.
async fn open_streams(s: &Stack, marker: &str) -> u64 {
    let r = send(
        s.client
            .get(format!("{}/__mock/open-streams", s.mock))
            .query(&[("contains", marker)]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["open"].as_u64().expect("a count")
}

#[tokio::test]
async fn a_silent_stream_gets_keepalives_then_ends_with_an_error_at_the_provider_timeout() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    // A few events, then silence: keep-alives every second (the suite's interval), and the
    // cut at the provider timeout (3 s in the suite) with the dialect's error, never a clean end.
    let r = stream(
        s,
        "/v1/chat/completions",
        &key,
        &chat_stream(&format!("quiet [[mock:openai=stream_hang]] {n}")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let keepalives = r.text.matches(": keep-alive\n\n").count();
    assert!((1..=4).contains(&keepalives), "{keepalives}: {}", r.text);
    let events = data_of(&r.text);
    assert!(
        events
            .last()
            .is_some_and(|e| e["error"]["message"].is_string()),
        "{}",
        r.text
    );
    assert!(!r.text.contains("[DONE]"), "{}", r.text);
    assert!(
        r.elapsed >= Duration::from_millis(2_500) && r.elapsed < Duration::from_secs(8),
        "{:?}",
        r.elapsed
    );
    let row = usage_row(s, &key, &request_id(&r)).await;
    assert_eq!(row["stream_end"], "silent", "{row}");
}

#[tokio::test]
async fn a_follower_of_a_silent_stream_gets_its_own_keepalives_and_the_error() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    // The same silent stream twice, the second a moment later: it follows the first. Its relay
    // is pulled by the runtime (a task per read), and its keep-alives must still go out.
    let body = chat_stream(&format!("quiet together [[mock:openai=stream_hang]] {n}"));
    let leader = stream(s, "/v1/chat/completions", &key, &body);
    let follower = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        stream(s, "/v1/chat/completions", &key, &body).await
    };
    let (leader, follower) = tokio::join!(leader, follower);
    assert_eq!(
        follower
            .headers
            .get("cache-status")
            .and_then(|v| v.to_str().ok()),
        Some("edge-gateway; fwd=uri-miss; collapsed"),
        "{:?}",
        follower.headers
    );
    assert_eq!(s.mock_calls(&n).await["total"], 1, "one upstream call");
    for (who, r) in [("leader", &leader), ("follower", &follower)] {
        assert_eq!(r.status, 200, "{who}: {}", r.text);
        let keepalives = r.text.matches(": keep-alive\n\n").count();
        assert!(
            (1..=4).contains(&keepalives),
            "{who}: {keepalives}: {}",
            r.text
        );
        let events = data_of(&r.text);
        assert!(
            events
                .last()
                .is_some_and(|e| e["error"]["message"].is_string()),
            "{who}: {}",
            r.text
        );
        assert!(r.elapsed < Duration::from_secs(8), "{who}: {:?}", r.elapsed);
    }
}

#[tokio::test]
async fn an_ask_stream_ends_a_provider_silent_past_its_timeout() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    // OpenAI's stream goes silent after a few events: its call ends at the provider timeout
    // (3 s in the suite) as a timed-out result, and the answer ends with its done.
    let body = json!({"prompt": format!("ask quiet [[mock:openai=stream_hang]] {n}"),
        "providers": ["openai", "gemini"], "stream": true});
    let r = stream(s, "/v1/ask", &key, &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.elapsed >= Duration::from_millis(2_500) && r.elapsed < Duration::from_secs(8),
        "{:?}",
        r.elapsed
    );
    let events = ask_events(&r.text);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    let openai = events
        .iter()
        .find(|(n, d)| n == "result" && d["provider"] == "openai")
        .map(|(_, d)| d)
        .unwrap_or_else(|| panic!("openai's result: {names:?}"));
    assert_eq!(openai["error"]["code"], "upstream_timeout", "{openai}");
    let (last, done) = events.last().unwrap();
    assert_eq!(last, "done", "{names:?}");
    let result_of = |p: &str| {
        done["results"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["provider"] == p))
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(result_of("openai"), *openai, "{done}");
    assert!(result_of("gemini")["content"].is_string(), "{done}");
}

#[tokio::test]
async fn an_ask_stream_gives_a_providers_result_at_its_terminal_event_though_its_connection_lingers(
) {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    // Each provider sends its whole stream, then holds its connection open: each result comes
    // at its provider's terminal event, not at the provider timeout (3 s in the suite) as a
    // timed-out failure, and the whole answer is stored.
    let body = json!({"prompt": format!("ask lingering [[mock:*=stream_linger]] {n}"),
        "providers": ["openai", "anthropic", "gemini", "perplexity"], "stream": true});
    let r = stream(s, "/v1/ask", &key, &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.elapsed < Duration::from_millis(2_000), "{:?}", r.elapsed);
    let events = ask_events(&r.text);
    let (last, done) = events.last().unwrap();
    assert_eq!(last, "done", "{}", r.text);
    for result in done["results"].as_array().unwrap() {
        assert!(result["content"].is_string(), "{result}");
    }
    assert_eq!(done["results"].as_array().unwrap().len(), 4, "{done}");
    let again = s
        .ask(
            &key,
            &json!({"prompt": body["prompt"], "providers": body["providers"]}),
        )
        .await;
    assert_eq!(again.json()["cache"]["status"], "hit", "{}", again.text);
}

/// A provider whose stream fails after it began answering may have generated (and billed) up
/// to its worst case: that is its charge, as for a drop-in stream; one that refused before
/// its stream began costs nothing, as in a whole call.
#[tokio::test]
async fn an_ask_stream_charges_a_provider_that_failed_mid_answer_its_worst_case() {
    let s = &stack();
    let credits = LIVE_CREDITS;
    let (_, key) = s.live_key().await;
    let n = nonce();
    for (i, provider) in ["anthropic", "openai"].into_iter().enumerate() {
        let body = json!({"prompt": format!("ask fails mid-way [[mock:*=stream_error]] {n} {i}"),
            "providers": [provider], "stream": true, "params": {"max_tokens": 64}});
        let r = stream(s, "/v1/ask", &key, &body).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let events = ask_events(&r.text);
        assert!(
            events.iter().any(|(n, _)| n == "delta"),
            "it began answering: {}",
            r.text
        );
        let (last, done) = events.last().unwrap();
        assert_eq!(last, "done", "{}", r.text);
        assert!(done["results"][0]["error"].is_object(), "{done}");
        let worst = s.reserved_for("/v1/ask", &body).await;
        assert_eq!(done["usage"]["credits"], worst, "{provider}: {done}");
        let row = usage_row(s, &key, &request_id(&r)).await;
        assert_eq!(row["credits"], worst, "{row}");
    }
    let refused = json!({"prompt": format!("ask refused [[mock:*=529]] {n}"),
        "providers": ["anthropic"], "stream": true});
    let r = stream(s, "/v1/ask", &key, &refused).await;
    let (_, done) = ask_events(&r.text).pop().unwrap();
    assert_eq!(
        done["results"][0]["error"]["code"], "upstream_overloaded",
        "{done}"
    );
    assert_eq!(done["usage"]["credits"], 0, "{done}");
    s.assert_rows_add_up(&key, credits).await;
}

#[tokio::test]
async fn a_refusal_before_the_stream_is_an_ordinary_http_error() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let r = s
        .post(
            "/v1/messages",
            Some(&key),
            &messages_stream(&format!("overloaded [[mock:anthropic=529]] {n}")),
        )
        .await;
    assert_eq!(r.status, 529, "{}", r.text);
    assert_eq!(r.json()["type"], "error");
    let r = s
        .post(
            "/v1/chat/completions",
            Some(&key),
            &chat_stream(&format!("limited [[mock:openai=429]] {n}")),
        )
        .await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
}

#[tokio::test]
async fn a_test_key_streams_its_synthetic_answer() {
    let s = &stack();
    let (account, _) = s.live_key().await;
    let test = s.key(&account, "test").await;
    let r = stream(
        s,
        "/v1/chat/completions",
        &test,
        &chat_stream(&format!("test stream {}", nonce())),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let events = data_of(&r.text);
    assert_eq!(events.last(), Some(&json!("[DONE]")), "{}", r.text);
    assert!(events
        .iter()
        .any(|e| e["choices"][0]["delta"]["content"].is_string()));
}

/// The events of an `/v1/ask` stream: (name, data) in order.
fn ask_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter_map(|ev| {
            let name = ev
                .lines()
                .find_map(|l| l.strip_prefix("event:"))?
                .trim()
                .to_string();
            let data: Vec<&str> = ev
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            Some((name, serde_json::from_str(&data.join("\n")).ok()?))
        })
        .collect()
}

#[tokio::test]
async fn an_ask_stream_tells_each_provider_as_it_answers_then_the_whole_answer() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let body = json!({"prompt": format!("ask stream [[mock:gemini=delay:1500]] {n}"),
        "providers": ["gemini", "openai"], "stream": true});
    let r = stream(s, "/v1/ask", &key, &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.headers.get("content-type").unwrap(), "text/event-stream");
    let events = ask_events(&r.text);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    let results: Vec<&Value> = events
        .iter()
        .filter(|(n, _)| n == "result")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(results.len(), 2, "{names:?}");
    assert_eq!(
        results[0]["provider"], "openai",
        "the fast provider first: {names:?}"
    );
    assert_eq!(results[1]["provider"], "gemini");
    let first_delta = events
        .iter()
        .position(|(n, d)| n == "delta" && d["provider"] == "openai")
        .expect("openai's text as a delta");
    let gemini_result = events
        .iter()
        .position(|(n, d)| n == "result" && d["provider"] == "gemini")
        .unwrap();
    assert!(first_delta < gemini_result, "{names:?}");
    let text: String = events
        .iter()
        .filter(|(n, d)| n == "delta" && d["provider"] == "openai")
        .filter_map(|(_, d)| d["text"].as_str())
        .collect();
    assert_eq!(text, results[0]["content"].as_str().unwrap());
    let (last, done) = events.last().unwrap();
    assert_eq!(last, "done", "{names:?}");
    assert_eq!(done["id"], request_id(&r));
    assert_eq!(
        done["results"][0]["provider"], "gemini",
        "in the answer's own order"
    );
    assert!(done["usage"]["credits"].as_u64().unwrap() > 0, "{done}");
    // The JSON answer of the same request (a hit now) has the same results.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut whole = body.clone();
    whole.as_object_mut().unwrap().remove("stream");
    let json_answer = s.ask(&key, &whole).await.json();
    assert_eq!(json_answer["cache"]["status"], "hit", "{json_answer}");
    for i in 0..2 {
        for f in ["provider", "model", "content", "tokens"] {
            assert_eq!(json_answer["results"][i][f], done["results"][i][f], "{f}");
        }
    }
    // The archive holds the done body.
    let archived = s
        .get(&format!("/v1/ask/{}", request_id(&r)), Some(&key))
        .await;
    assert_eq!(archived.json(), *done);
    // A streamed hit answers the same events from the cache, then its own done.
    let hit = stream(s, "/v1/ask", &key, &body).await;
    let hit_events = ask_events(&hit.text);
    let (_, hit_done) = hit_events.last().unwrap();
    assert_eq!(hit_done["cache"]["status"], "hit", "{hit_done}");
    assert_eq!(
        hit_done["results"][1]["content"],
        done["results"][1]["content"]
    );
    // Each stored result as its text's delta and then itself, as in the hit's done.
    let names: Vec<&str> = hit_events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["delta", "result", "delta", "result", "done"]);
    for (i, pair) in hit_events[..4].chunks(2).enumerate() {
        let (delta, result) = (&pair[0].1, &pair[1].1);
        assert_eq!(*result, hit_done["results"][i], "result {i}");
        assert_eq!(delta["provider"], result["provider"], "delta {i}");
        assert_eq!(delta["text"], result["content"], "delta {i}");
        assert_eq!(
            delta.as_object().map(|o| o.len()),
            Some(2),
            "delta {i}: {delta}"
        );
    }
    assert_eq!(s.mock_calls(&n).await["total"], 2, "one call per provider");
    let bad = s
        .ask(
            &key,
            &json!({"prompt": "x", "providers": ["openai"], "stream": "yes"}),
        )
        .await;
    assert_eq!(bad.status, 400);
}

/// A streamed `/v1/ask`'s `done` is the body the JSON call would return in every cache mode and
/// for test keys too: `bypass` under `no-store`, `refresh` under `no-cache`, and a test key's
/// call `bypass` at 0 credits (it was `miss`, and priced, whatever the mode or the key).
#[tokio::test]
async fn an_ask_streams_done_says_the_cache_mode_and_the_cost_as_the_json_call_would() {
    let s = &stack();
    let (account, live) = s.live_key().await;
    let test = s.key(&account, "test").await;
    let n = nonce();
    let call = |key: String, mode: Option<&'static str>, stream: bool, prompt: String| {
        let body = json!({"prompt": prompt, "providers": ["openai"], "stream": stream});
        let mut rb = s.client.post(s.url("/v1/ask")).bearer_auth(key).json(&body);
        if let Some(m) = mode {
            rb = rb.header("Cache-Control", m);
        }
        send(rb)
    };
    for (key, mode, status) in [
        (&live, Some("no-store"), "bypass"),
        (&live, Some("no-cache"), "refresh"),
        (&test, None, "bypass"),
    ] {
        let streamed = call(key.clone(), mode, true, format!("done {mode:?} {n} s")).await;
        assert_eq!(streamed.status, 200, "{}", streamed.text);
        let events = ask_events(&streamed.text);
        let (last, done) = events.last().unwrap();
        assert_eq!(last, "done", "{}", streamed.text);
        // Its text is the JSON answer's form too: the same members in the same order.
        let done_text = streamed
            .text
            .split("event: done\ndata: ")
            .nth(1)
            .and_then(|t| t.lines().next())
            .unwrap_or_default();
        let whole = call(key.clone(), mode, false, format!("done {mode:?} {n} j")).await;
        assert_eq!(whole.status, 200, "{}", whole.text);
        let members = |text: &str| -> Vec<String> {
            let v: Value = serde_json::from_str(text).unwrap();
            let order = [
                "\"id\"",
                "\"created_at\"",
                "\"cache\"",
                "\"results\"",
                "\"usage\"",
            ];
            let mut at: Vec<(usize, String)> = order
                .iter()
                .map(|m| (text.find(m).unwrap_or(usize::MAX), m.to_string()))
                .collect();
            assert!(v.is_object());
            at.sort();
            at.into_iter().map(|(_, m)| m).collect()
        };
        assert_eq!(members(done_text), members(&whole.text), "{done_text}");
        let whole = whole.json();
        assert_eq!(done["cache"]["status"], status, "{mode:?}: {done}");
        assert_eq!(
            done["cache"]["status"], whole["cache"]["status"],
            "{mode:?}"
        );
        if key == &test {
            assert_eq!(done["usage"]["credits"], 0, "{done}");
            assert_eq!(whole["usage"]["credits"], 0, "{whole}");
        } else {
            assert!(done["usage"]["credits"].as_u64().unwrap() > 0, "{done}");
        }
    }
}
