//! The gateway's provider adapters (`gateway_core::providers::adapters`) against the mock: every request
//! they build is accepted, every answer and fault parses to the expected result. This is the
//! broker ↔ upstream contract, checked without a broker. The streamed calls
//! (`adapters::stream`) give, chunk by chunk, the same completion as the JSON ones.

use std::net::SocketAddr;

use gateway_core::providers::adapters::stream::{build_stream_request, CompletionStream};
use gateway_core::providers::adapters::{self, UpstreamRequest};
use gateway_core::providers::completion::{
    Completion, CompletionRequest, ProviderError, ProviderErrorCode,
};
use gateway_core::providers::Provider;
use gateway_core::scrub::scrub_secrets;
use mock_provider::{serve, MockState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn start() -> SocketAddr {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, MockState::new()));
    addr
}

fn base_url(addr: SocketAddr, p: Provider) -> String {
    let prefix = match p {
        Provider::OpenAi => "openai/v1",
        Provider::Anthropic => "anthropic",
        Provider::Gemini => "gemini",
        Provider::Perplexity => "perplexity",
    };
    format!("http://{addr}/{prefix}")
}

/// Sends an adapter-built request; `None` if the connection closed without a response.
async fn send(addr: SocketAddr, req: &UpstreamRequest) -> Option<(u16, Option<String>, String)> {
    let path = req.url.strip_prefix(&format!("http://{addr}")).unwrap();
    let mut head = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (n, v) in &req.headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str(&format!("content-length: {}\r\n\r\n", req.body.len()));
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(req.body.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    if raw.is_empty() {
        return None;
    }
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let retry_after = head
        .split("\r\n")
        .filter_map(|l| l.split_once(": "))
        .find(|(n, _)| n.eq_ignore_ascii_case("retry-after"))
        .map(|(_, v)| v.to_owned());
    Some((status, retry_after, body.to_owned()))
}

const KEY: &str = "test-provider-key-0042";

fn completion_request(p: Provider, prompt: &str, max_tokens: u32) -> CompletionRequest {
    CompletionRequest {
        model: p.default_model().to_owned(),
        prompt: prompt.to_owned(),
        system: Some("Answer briefly.".to_owned()),
        max_tokens,
        temperature: Some(0.2),
        top_p: None,
    }
}

async fn call(
    addr: SocketAddr,
    p: Provider,
    prompt: &str,
    max_tokens: u32,
) -> Option<Result<Completion, ProviderError>> {
    let req = completion_request(p, prompt, max_tokens);
    let upstream = adapters::build_request(p, &req, &base_url(addr, p), KEY);
    let (status, retry_after, body) = send(addr, &upstream).await?;
    Some(adapters::parse_response(
        p,
        status,
        retry_after.as_deref(),
        &body,
    ))
}

#[tokio::test]
async fn every_adapter_gets_a_completion_from_the_mock() {
    let addr = start().await;
    for p in Provider::ALL {
        let c = call(addr, p, "What is the capital of France?", 256)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.model, p.default_model(), "{p}");
        let prefix = format!("[{}/{}] ", p.as_str(), p.default_model());
        assert!(c.content.starts_with(&prefix), "{p}: {}", c.content);
        assert!(
            c.content.ends_with("What is the capital of France?"),
            "{p}: {}",
            c.content
        );
        // "Answer briefly." + the 6-word prompt; the answer has 8 words.
        assert_eq!((c.tokens.input, c.tokens.output), (8, 8), "{p}");
        assert_eq!(
            c.citations.len(),
            if p == Provider::Perplexity { 2 } else { 0 },
            "{p}"
        );
    }
}

#[tokio::test]
async fn max_tokens_reaches_the_mock_in_each_format() {
    let addr = start().await;
    for p in Provider::ALL {
        let c = call(addr, p, "one two three four five", 3)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.tokens.output, 3, "{p}");
        assert_eq!(c.content.split_whitespace().count(), 3, "{p}");
    }
}

#[tokio::test]
async fn faults_map_to_the_expected_error_codes() {
    let addr = start().await;
    let cases = [
        ("429", ProviderErrorCode::UpstreamRateLimited),
        ("401", ProviderErrorCode::UpstreamAuthFailed),
        ("500", ProviderErrorCode::UpstreamServerError),
        ("503", ProviderErrorCode::UpstreamOverloaded),
        ("529", ProviderErrorCode::UpstreamOverloaded),
        ("malformed", ProviderErrorCode::UpstreamMalformed),
        ("html401", ProviderErrorCode::UpstreamAuthFailed),
    ];
    for p in Provider::ALL {
        for (fault, code) in cases {
            let prompt = format!("q [[mock:{}={fault}]]", p.as_str());
            let e = call(addr, p, &prompt, 64).await.unwrap().unwrap_err();
            assert_eq!(e.code, code, "{p} {fault}: {}", e.message);
            if fault == "429" {
                assert_eq!(e.retry_after_ms, Some(2000), "{p}");
            }
        }
    }
}

#[tokio::test]
async fn echoed_key_is_scrubbed_from_the_error_message() {
    let addr = start().await;
    for p in Provider::ALL {
        let e = call(addr, p, "[[mock:*=echo_key]]", 64)
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(e.code, ProviderErrorCode::UpstreamAuthFailed, "{p}");
        // The key matches no key pattern, but it is echoed as a header, which is caught...
        assert!(e.message.contains("[REDACTED]"), "{p}: {}", e.message);
        // ...and the bare copy is left for the broker, which knows its own key.
        let safe = scrub_secrets(&e.message, &[KEY]);
        assert!(!safe.contains(KEY), "{p}: {safe}");
    }
}

#[tokio::test]
async fn drop_leaves_no_response() {
    let addr = start().await;
    for p in Provider::ALL {
        assert!(call(addr, p, "[[mock:*=drop]]", 64).await.is_none(), "{p}");
    }
}

/// A streamed call, as a broker makes it: the streaming request, its body fed to a
/// [`CompletionStream`] chunk by chunk as it arrives (a non-2xx answer read as JSON instead).
/// The deltas, the number of body chunks, and the outcome.
async fn call_streamed(
    addr: SocketAddr,
    p: Provider,
    prompt: &str,
    max_tokens: u32,
) -> (Vec<String>, usize, Result<Completion, ProviderError>) {
    let req = completion_request(p, prompt, max_tokens);
    let upstream = build_stream_request(p, &req, &base_url(addr, p), KEY);
    let mut http = reqwest::Client::new()
        .post(&upstream.url)
        .body(upstream.body);
    for (n, v) in &upstream.headers {
        http = http.header(n, v);
    }
    let mut resp = http.send().await.unwrap();
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp.text().await.unwrap();
        let outcome = adapters::parse_response(p, status, retry_after.as_deref(), &body);
        return (Vec::new(), 0, outcome);
    }
    let mut stream = CompletionStream::new(p);
    let (mut deltas, mut chunks) = (Vec::new(), 0);
    // A body cut mid-way ends the reading like its end: the stream says what it lacks.
    while let Ok(Some(chunk)) = resp.chunk().await {
        chunks += 1;
        deltas.extend(stream.feed(&chunk));
    }
    (deltas, chunks, stream.finish())
}

#[tokio::test]
async fn every_streamed_call_gives_the_completion_of_the_json_call() {
    let addr = start().await;
    let long = format!("q [[mock:*=long:{}]]", 9000);
    let prompts: [(&str, u32); 5] = [
        ("What is the capital of France?", 256),
        ("one two three four five", 3),
        ("q [[mock:*=dated_model]]", 64),
        ("q [[mock:*=input_tokens:1234]]", 64),
        (&long, 20_000),
    ];
    for p in Provider::ALL {
        for (prompt, max_tokens) in prompts {
            let whole = call(addr, p, prompt, max_tokens).await.unwrap().unwrap();
            let (deltas, chunks, streamed) = call_streamed(addr, p, prompt, max_tokens).await;
            assert_eq!(streamed, Ok(whole.clone()), "{p} {prompt}");
            assert_eq!(deltas.concat(), whole.content, "{p} {prompt}");
            assert!(deltas.len() > 1 && chunks > 1, "{p} {prompt}: {deltas:?}");
        }
    }
}

#[tokio::test]
async fn an_empty_streamed_answer_is_the_same_empty_answer() {
    let addr = start().await;
    for p in Provider::ALL {
        let whole = call(addr, p, "q [[mock:*=empty]]", 64).await.unwrap();
        let (deltas, _, streamed) = call_streamed(addr, p, "q [[mock:*=empty]]", 64).await;
        assert_eq!(streamed, whole, "{p}");
        assert!(deltas.is_empty(), "{p}");
    }
}

#[tokio::test]
async fn an_error_event_mid_stream_is_a_typed_provider_error() {
    let addr = start().await;
    let cases = [
        (Provider::Anthropic, ProviderErrorCode::UpstreamOverloaded),
        (Provider::Gemini, ProviderErrorCode::UpstreamOverloaded),
        (Provider::OpenAi, ProviderErrorCode::UpstreamServerError),
        (Provider::Perplexity, ProviderErrorCode::UpstreamServerError),
    ];
    for (p, code) in cases {
        let prompt = format!(
            "one two three four five [[mock:{}=stream_error]]",
            p.as_str()
        );
        let (deltas, _, outcome) = call_streamed(addr, p, &prompt, 64).await;
        let e = outcome.unwrap_err();
        assert_eq!(e.code, code, "{p}: {e}");
        // The content events before the error were reported as they came.
        assert_eq!(deltas.len(), 2, "{p}: {deltas:?}");
    }
}

#[tokio::test]
async fn a_cut_stream_is_an_error_and_a_status_fault_its_json_error() {
    let addr = start().await;
    for p in Provider::ALL {
        let prompt = "one two three four five [[mock:*=stream_truncate]]";
        let (deltas, _, outcome) = call_streamed(addr, p, prompt, 64).await;
        let e = outcome.unwrap_err();
        assert_eq!(e.code, ProviderErrorCode::UpstreamUnreachable, "{p}: {e}");
        assert_eq!(deltas.len(), 2, "{p}");
        let (_, _, outcome) = call_streamed(addr, p, "q [[mock:*=429]]", 64).await;
        let e = outcome.unwrap_err();
        assert_eq!(e.code, ProviderErrorCode::UpstreamRateLimited, "{p}");
        assert_eq!(e.retry_after_ms, Some(2000), "{p}");
    }
}
