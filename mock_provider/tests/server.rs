//! The mock served in-process on a free port, driven with raw HTTP/1.1 over a `TcpStream`:
//! each provider's route, auth check, faults, and the `/__mock/*` call log.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mock_provider::{serve, MockState};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn start() -> SocketAddr {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, MockState::new()));
    addr
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// One request on a fresh connection (`Connection: close`). `None` when the server closed the
/// connection without answering.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<Reply> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw).await {
        Ok(0) | Err(_) if raw.is_empty() => return None,
        _ => {}
    }
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect();
    Some(Reply {
        status,
        headers,
        body: body.to_owned(),
    })
}

async fn openai(addr: SocketAddr, prompt: &str) -> Option<Reply> {
    let body = json!({"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": prompt}],
        "max_completion_tokens": 64});
    http(
        addr,
        "POST",
        "/openai/v1/chat/completions",
        &[("Authorization", "Bearer sk-test-openai-0001")],
        &body.to_string(),
    )
    .await
}

async fn counts(addr: SocketAddr, contains: &str) -> Value {
    http(
        addr,
        "GET",
        &format!("/__mock/calls?contains={contains}"),
        &[],
        "",
    )
    .await
    .unwrap()
    .json()
}

#[tokio::test]
async fn openai_answers_in_chat_completions_shape() {
    let addr = start().await;
    let r = openai(addr, "What is the capital of France?")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gpt-4o-mini");
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(content.starts_with("[openai/gpt-4o-mini] "), "{content}");
    assert!(
        content.ends_with(" What is the capital of France?"),
        "{content}"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    // "Be brief." + the 6-word prompt.
    assert_eq!(v["usage"]["prompt_tokens"], 8);
    assert_eq!(v["usage"]["completion_tokens"], 8);
    assert_eq!(v["usage"]["total_tokens"], 16);
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert!(v["created"].is_u64());
    // Deterministic.
    let again = openai(addr, "What is the capital of France?")
        .await
        .unwrap()
        .json();
    assert_eq!(again["choices"], v["choices"]);
}

#[tokio::test]
async fn anthropic_gemini_and_perplexity_answer_in_their_shapes() {
    let addr = start().await;
    let body = json!({"model": "claude-haiku-4-5", "max_tokens": 3, "system": "sys",
        "messages": [{"role": "user", "content": "one two three four"}]});
    let r = http(
        addr,
        "POST",
        "/anthropic/v1/messages",
        &[("x-api-key", "ak-1"), ("anthropic-version", "2023-06-01")],
        &body.to_string(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["model"], "claude-haiku-4-5");
    assert_eq!(v["content"][0]["type"], "text");
    assert_eq!(v["stop_reason"], "max_tokens");
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 5, "output_tokens": 3,
        "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "service_tier": "standard"})
    );

    let body = json!({"contents": [{"role": "user", "parts": [{"text": "Hello"}]}],
        "generationConfig": {"maxOutputTokens": 100}});
    let r = http(
        addr,
        "POST",
        "/gemini/v1beta/models/gemini-2.5-flash:generateContent",
        &[("x-goog-api-key", "g-1")],
        &body.to_string(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["modelVersion"], "gemini-2.5-flash");
    let text = v["candidates"][0]["content"]["parts"][0]["text"]
        .as_str()
        .unwrap();
    assert!(text.starts_with("[gemini/gemini-2.5-flash] "), "{text}");
    assert_eq!(v["candidates"][0]["finishReason"], "STOP");
    assert_eq!(v["usageMetadata"]["promptTokenCount"], 1);

    let body = json!({"model": "sonar", "messages": [{"role": "user", "content": "stars?"}], "max_tokens": 50});
    let r = http(
        addr,
        "POST",
        "/perplexity/chat/completions",
        &[("Authorization", "Bearer pplx-1")],
        &body.to_string(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["model"], "sonar");
    assert_eq!(v["citations"].as_array().unwrap().len(), 2);
    assert_eq!(v["search_results"][1]["url"], v["citations"][1]);
}

#[tokio::test]
async fn missing_credentials_get_each_providers_error() {
    let addr = start().await;
    let chat =
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 5})
            .to_string();
    let r = http(addr, "POST", "/openai/v1/chat/completions", &[], &chat)
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("You didn't provide an API key"));
    let r = http(
        addr,
        "POST",
        "/anthropic/v1/messages",
        &[("anthropic-version", "2023-06-01")],
        &chat,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["type"], "authentication_error");
    let r = http(
        addr,
        "POST",
        "/gemini/v1beta/models/gemini-2.5-flash:generateContent",
        &[],
        "{}",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"]["status"], "PERMISSION_DENIED");
    let r = http(
        addr,
        "POST",
        "/perplexity/chat/completions",
        &[("Authorization", "Bearer ")],
        &chat,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 401);
    // Anthropic also takes `Authorization: Bearer`, as its current SDK sends the key.
    let a = json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})
        .to_string();
    let r = http(
        addr,
        "POST",
        "/anthropic/v1/messages",
        &[
            ("Authorization", "Bearer ak-3"),
            ("anthropic-version", "2023-06-01"),
        ],
        &a,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    // Gemini also takes the key from the query string.
    let g = json!({"contents": [{"parts": [{"text": "hi"}]}]}).to_string();
    let r = http(
        addr,
        "POST",
        "/gemini/v1beta/models/gemini-2.5-flash:generateContent?key=q-1",
        &[],
        &g,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn required_fields_and_headers_are_checked() {
    let addr = start().await;
    let no_max =
        json!({"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "x"}]})
            .to_string();
    let r = http(
        addr,
        "POST",
        "/anthropic/v1/messages",
        &[("x-api-key", "k"), ("anthropic-version", "2023-06-01")],
        &no_max,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["message"], "max_tokens: Field required");
    let r = http(
        addr,
        "POST",
        "/anthropic/v1/messages",
        &[("x-api-key", "k")],
        &no_max,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400);
    let legacy = json!({"model": "o4-mini", "messages": [{"role": "user", "content": "x"}], "max_tokens": 5}).to_string();
    let r = http(
        addr,
        "POST",
        "/openai/v1/chat/completions",
        &[("Authorization", "Bearer k")],
        &legacy,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "unsupported_parameter");
    let r = http(
        addr,
        "POST",
        "/openai/v1/chat/completions",
        &[("Authorization", "Bearer k")],
        "{not json",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400);
    let r = http(
        addr,
        "POST",
        "/gemini/v1beta/models/gemini-2.5-flash:countTokens",
        &[("x-goog-api-key", "k")],
        "{}",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 404);
    let r = http(addr, "GET", "/nowhere", &[], "").await.unwrap();
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn status_faults_use_provider_bodies_and_retry_hints() {
    let addr = start().await;
    let r = openai(addr, "a [[mock:openai=429]]").await.unwrap();
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("2"));
    assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");
    let r = openai(addr, "b [[mock:*=503]]").await.unwrap();
    assert_eq!(r.status, 503);
    let r = openai(addr, "c [[mock:openai=529]]").await.unwrap();
    assert_eq!(r.status, 529);
    let r = openai(addr, "d [[mock:openai=500]]").await.unwrap();
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["error"]["type"], "server_error");
    let r = openai(addr, "e [[mock:openai=401]]").await.unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "invalid_api_key");
    // A marker for another provider changes nothing here.
    assert_eq!(
        openai(addr, "f [[mock:gemini=500]]").await.unwrap().status,
        200
    );
    // An unknown fault is refused loudly.
    let r = openai(addr, "g [[mock:openai=teapot]]").await.unwrap();
    assert_eq!(r.status, 400);
    assert!(r.body.contains("unknown fault: teapot"));

    let g = json!({"contents": [{"parts": [{"text": "h [[mock:gemini=429]]"}]}]}).to_string();
    let r = http(
        addr,
        "POST",
        "/gemini/v1beta/models/gemini-2.5-flash:generateContent",
        &[("x-goog-api-key", "k")],
        &g,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 429);
    let details = r.json()["error"]["details"].clone();
    assert!(
        details
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["retryDelay"] == "2s"),
        "{details}"
    );
}

#[tokio::test]
async fn malformed_echo_key_and_html_faults() {
    let addr = start().await;
    let r = openai(addr, "[[mock:openai=malformed]]").await.unwrap();
    assert_eq!(r.status, 200);
    assert!(
        serde_json::from_str::<Value>(&r.body).is_err(),
        "{}",
        r.body
    );
    assert!(r.body.starts_with("{\"id\":"), "{}", r.body);

    let r = openai(addr, "[[mock:openai=echo_key]]").await.unwrap();
    assert_eq!(r.status, 401);
    let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(msg.contains("provided: sk-test-openai-0001."), "{msg}");
    assert!(
        msg.contains("authorization: Bearer sk-test-openai-0001"),
        "{msg}"
    );

    let body = json!({"model": "sonar", "messages": [{"role": "user", "content": "[[mock:perplexity=html401]]"}]});
    let r = http(
        addr,
        "POST",
        "/perplexity/chat/completions",
        &[("Authorization", "Bearer p")],
        &body.to_string(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.header("content-type"), Some("text/html"));
    assert!(r.body.contains("<title>401 Authorization Required</title>"));
}

#[tokio::test]
async fn drop_closes_the_connection_without_a_response() {
    let addr = start().await;
    assert!(openai(addr, "bye [[mock:openai=drop]]").await.is_none());
    // The server is still fine afterwards, and the dropped call was counted.
    assert_eq!(openai(addr, "still here").await.unwrap().status, 200);
    assert_eq!(counts(addr, "bye").await["openai"], 1);
}

#[tokio::test]
async fn delay_waits_then_answers() {
    let addr = start().await;
    let t = Instant::now();
    let r = openai(addr, "slow [[mock:openai=delay:150]]")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn calls_last_and_reset() {
    let addr = start().await;
    openai(addr, "count-me-7f3 one").await.unwrap();
    openai(addr, "count-me-7f3 two").await.unwrap();
    openai(addr, "someone else").await.unwrap();
    let body = json!({"model": "claude-haiku-4-5", "max_tokens": 9, "system": "count-me-7f3 in system",
        "messages": [{"role": "user", "content": "hi"}]});
    http(
        addr,
        "POST",
        "/anthropic/v1/messages",
        &[("x-api-key", "ak-2"), ("anthropic-version", "2023-06-01")],
        &body.to_string(),
    )
    .await
    .unwrap();

    assert_eq!(
        counts(addr, "count-me-7f3").await,
        json!({"openai": 2, "anthropic": 1, "gemini": 0, "perplexity": 0, "total": 3})
    );
    let all = http(addr, "GET", "/__mock/calls", &[], "")
        .await
        .unwrap()
        .json();
    assert_eq!(all["total"], 4);

    let last = http(addr, "GET", "/__mock/last?contains=count-me-7f3", &[], "")
        .await
        .unwrap()
        .json();
    assert_eq!(last["provider"], "anthropic");
    assert_eq!(last["path"], "/anthropic/v1/messages");
    assert_eq!(last["headers"]["x-api-key"], "ak-2");
    assert_eq!(last["body"], body);
    let last_openai = http(
        addr,
        "GET",
        "/__mock/last?contains=count-me-7f3%20two",
        &[],
        "",
    )
    .await
    .unwrap()
    .json();
    assert_eq!(last_openai["provider"], "openai");
    assert_eq!(
        last_openai["headers"]["authorization"],
        "Bearer sk-test-openai-0001"
    );

    let r = http(addr, "POST", "/__mock/reset", &[], "").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(counts(addr, "").await["total"], 0);
    let none = http(addr, "GET", "/__mock/last?contains=count-me-7f3", &[], "")
        .await
        .unwrap();
    assert_eq!(none.status, 404);
}

#[tokio::test]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let addr = start().await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    for i in 0..3 {
        let req = format!(
            "GET /__mock/health HTTP/1.1\r\nHost: x\r\n{}\r\n",
            if i == 2 { "Connection: close\r\n" } else { "" }
        );
        stream.write_all(req.as_bytes()).await.unwrap();
    }
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    assert_eq!(raw.matches("HTTP/1.1 200 OK").count(), 3, "{raw}");
}
