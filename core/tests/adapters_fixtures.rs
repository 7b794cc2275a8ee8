//! The adapters against the providers' recorded wire formats in `fixtures/providers/`: every
//! response and error body parses to the expected result, and every built request has the
//! recorded request's exact JSON for the same inputs.

use std::collections::BTreeSet;
use std::path::PathBuf;

use gateway_core::providers::adapters::{self, UpstreamRequest};
use gateway_core::providers::completion::{
    Completion, CompletionRequest, ProviderError, ProviderErrorCode, Tokens,
};
use gateway_core::providers::Provider;
use serde_json::Value;

fn fixtures_dir(p: Provider) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/providers")
        .join(p.as_str())
}

fn read(p: Provider, file: &str) -> String {
    let path = fixtures_dir(p).join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn parse(
    p: Provider,
    status: u16,
    retry_after: Option<&str>,
    file: &str,
) -> Result<Completion, ProviderError> {
    adapters::parse_response(p, status, retry_after, &read(p, file))
}

fn error(p: Provider, status: u16, retry_after: Option<&str>, file: &str) -> ProviderError {
    match parse(p, status, retry_after, file) {
        Err(e) => {
            assert_eq!(e.upstream_status, Some(status), "{p}/{file}");
            assert!(!e.message.contains('\n'), "{p}/{file}: {}", e.message);
            assert!(
                e.message.chars().count() <= 260,
                "{p}/{file}: {}",
                e.message
            );
            e
        }
        Ok(c) => panic!("{p}/{file} parsed as a completion: {c:?}"),
    }
}

/// Every fixture file must be asserted by one of the tests below.
const COVERED: &[(Provider, &[&str])] = &[
    (
        Provider::OpenAi,
        &[
            "request.json",
            "response.json",
            "error_400.json",
            "error_401.json",
            "error_429.json",
            "stream.txt",
            "stream_length.txt",
        ],
    ),
    (
        Provider::Anthropic,
        &[
            "request.json",
            "response.json",
            "error_401.json",
            "error_429.json",
            "error_529_overloaded.json",
            "stream.txt",
        ],
    ),
    (
        Provider::Gemini,
        &[
            "request.json",
            "response.json",
            "error_400.json",
            "error_429.json",
            "stream.txt",
        ],
    ),
    (
        Provider::Perplexity,
        &[
            "request.json",
            "response.json",
            "error_401.json",
            "error_401_legacy.html",
            "stream.txt",
        ],
    ),
];

#[test]
fn every_fixture_file_is_covered() {
    for (p, files) in COVERED {
        let on_disk: BTreeSet<String> = std::fs::read_dir(fixtures_dir(*p))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let covered: BTreeSet<String> = files.iter().map(|f| f.to_string()).collect();
        assert_eq!(on_disk, covered, "{p}");
    }
}

// ---- responses ----

#[test]
fn openai_response() {
    assert_eq!(
        parse(Provider::OpenAi, 200, None, "response.json").unwrap(),
        Completion {
            model: "gpt-4o-mini-2024-07-18".into(),
            content: "Hello! How can I assist you today?".into(),
            citations: vec![],
            tokens: Tokens {
                input: 19,
                output: 10
            },
        }
    );
}

#[test]
fn anthropic_response() {
    assert_eq!(
        parse(Provider::Anthropic, 200, None, "response.json").unwrap(),
        Completion {
            model: "claude-sonnet-4-5-20250929".into(),
            content: "Hi! I'm Claude. How can I help you today?".into(),
            citations: vec![],
            tokens: Tokens {
                input: 18,
                output: 15
            },
        }
    );
}

#[test]
fn gemini_response() {
    assert_eq!(
        parse(Provider::Gemini, 200, None, "response.json").unwrap(),
        Completion {
            model: "gemini-2.5-flash".into(),
            content: "Hello! How can I help you today?".into(),
            citations: vec![],
            tokens: Tokens {
                input: 9,
                output: 9
            },
        }
    );
}

#[test]
fn perplexity_response() {
    assert_eq!(
        parse(Provider::Perplexity, 200, None, "response.json").unwrap(),
        Completion {
            model: "sonar".into(),
            content:
                "The Milky Way is estimated to contain roughly 100 to 400 billion stars [1][2]."
                    .into(),
            citations: vec![
                "https://en.wikipedia.org/wiki/Milky_Way".into(),
                "https://science.nasa.gov/resource/the-milky-way-galaxy/".into(),
            ],
            tokens: Tokens {
                input: 14,
                output: 20
            },
        }
    );
}

#[test]
fn truncated_response_bodies_are_malformed() {
    for p in Provider::ALL {
        let body = read(p, "response.json");
        let cut = &body[..body.len() / 2];
        let e = adapters::parse_response(p, 200, None, cut).unwrap_err();
        assert_eq!(e.code, ProviderErrorCode::UpstreamMalformed, "{p}");
        assert_eq!(e.upstream_status, Some(200));
        assert!(
            !e.message.contains(cut.trim()),
            "{p}: body leaked into {}",
            e.message
        );
    }
}

#[test]
fn an_error_body_with_status_200_is_malformed() {
    for p in Provider::ALL {
        let e = adapters::parse_response(p, 200, None, r#"{"error":{"message":"x"}}"#).unwrap_err();
        assert_eq!(e.code, ProviderErrorCode::UpstreamMalformed, "{p}");
    }
}

// ---- errors ----

#[test]
fn openai_error_400_is_bad_request() {
    let e = error(Provider::OpenAi, 400, None, "error_400.json");
    assert_eq!(e.code, ProviderErrorCode::UpstreamBadRequest);
    assert!(
        e.message.contains("Unsupported parameter: 'max_tokens'"),
        "{}",
        e.message
    );
    assert_eq!(e.retry_after_ms, None);
}

#[test]
fn openai_error_401_is_auth_failed_and_scrubbed() {
    let e = error(Provider::OpenAi, 401, None, "error_401.json");
    assert_eq!(e.code, ProviderErrorCode::UpstreamAuthFailed);
    assert!(!e.message.contains("sk-proj"), "{}", e.message);
    assert!(!e.message.contains("abcd"), "{}", e.message);
    assert!(
        e.message.contains("Incorrect API key provided: [REDACTED]"),
        "{}",
        e.message
    );
}

#[test]
fn openai_error_429_is_rate_limited_with_header_retry() {
    let e = error(Provider::OpenAi, 429, Some("2"), "error_429.json");
    assert_eq!(e.code, ProviderErrorCode::UpstreamRateLimited);
    assert_eq!(e.retry_after_ms, Some(2000));
    assert!(e.message.contains("Rate limit reached"), "{}", e.message);
    let e = error(Provider::OpenAi, 429, None, "error_429.json");
    assert_eq!(e.retry_after_ms, None);
}

#[test]
fn anthropic_error_401_is_auth_failed() {
    let e = error(Provider::Anthropic, 401, None, "error_401.json");
    assert_eq!(e.code, ProviderErrorCode::UpstreamAuthFailed);
    assert_eq!(
        e.message,
        "anthropic rejected the broker's credentials (HTTP 401): invalid x-api-key"
    );
}

#[test]
fn anthropic_error_429_is_rate_limited_with_header_retry() {
    let e = error(Provider::Anthropic, 429, Some("7"), "error_429.json");
    assert_eq!(e.code, ProviderErrorCode::UpstreamRateLimited);
    assert_eq!(e.retry_after_ms, Some(7000));
    assert!(
        e.message.ends_with('…'),
        "long upstream text is cut: {}",
        e.message
    );
}

#[test]
fn anthropic_error_529_is_overloaded() {
    let e = error(Provider::Anthropic, 529, None, "error_529_overloaded.json");
    assert_eq!(e.code, ProviderErrorCode::UpstreamOverloaded);
    assert_eq!(e.message, "anthropic is overloaded (HTTP 529): Overloaded");
}

#[test]
fn gemini_error_400_api_key_invalid_is_auth_failed() {
    let e = error(Provider::Gemini, 400, None, "error_400.json");
    assert_eq!(e.code, ProviderErrorCode::UpstreamAuthFailed);
    assert!(e.message.contains("API key not valid"), "{}", e.message);
}

#[test]
fn gemini_error_429_takes_retry_delay_from_the_body() {
    let e = error(Provider::Gemini, 429, None, "error_429.json");
    assert_eq!(e.code, ProviderErrorCode::UpstreamRateLimited);
    assert_eq!(e.retry_after_ms, Some(59_000));
}

#[test]
fn gemini_error_429_without_details_has_no_retry() {
    let body = r#"{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED"}}"#;
    let e = adapters::parse_response(Provider::Gemini, 429, None, body).unwrap_err();
    assert_eq!(e.code, ProviderErrorCode::UpstreamRateLimited);
    assert_eq!(e.retry_after_ms, None);
}

#[test]
fn perplexity_error_401_is_auth_failed() {
    let e = error(Provider::Perplexity, 401, None, "error_401.json");
    assert_eq!(e.code, ProviderErrorCode::UpstreamAuthFailed);
    assert!(
        e.message.contains("Invalid API key provided"),
        "{}",
        e.message
    );
}

#[test]
fn perplexity_legacy_html_401_is_auth_failed_without_markup() {
    let e = error(Provider::Perplexity, 401, None, "error_401_legacy.html");
    assert_eq!(e.code, ProviderErrorCode::UpstreamAuthFailed);
    assert_eq!(
        e.message,
        "perplexity rejected the broker's credentials (HTTP 401): 401 Authorization Required"
    );
}

#[test]
fn any_providers_error_body_maps_by_status() {
    for p in Provider::ALL {
        for (status, code) in [
            (500, ProviderErrorCode::UpstreamServerError),
            (503, ProviderErrorCode::UpstreamOverloaded),
            (529, ProviderErrorCode::UpstreamOverloaded),
            (504, ProviderErrorCode::UpstreamTimeout),
            (404, ProviderErrorCode::UpstreamBadRequest),
        ] {
            let e = adapters::parse_response(p, status, None, "").unwrap_err();
            assert_eq!(e.code, code, "{p} {status}");
        }
    }
}

// ---- requests ----

/// The inputs the recorded `request.json` was made from.
fn fixture_request(p: Provider) -> CompletionRequest {
    let recorded: Value = serde_json::from_str(&read(p, "request.json")).unwrap();
    let (model, system, prompt, max_tokens, temperature) = match p {
        Provider::OpenAi | Provider::Perplexity => (
            recorded["model"].as_str().unwrap().to_owned(),
            recorded["messages"][0]["content"]
                .as_str()
                .map(str::to_owned),
            recorded["messages"][1]["content"]
                .as_str()
                .unwrap()
                .to_owned(),
            recorded
                .get("max_completion_tokens")
                .or_else(|| recorded.get("max_tokens"))
                .and_then(Value::as_u64)
                .unwrap(),
            recorded["temperature"].as_f64(),
        ),
        Provider::Anthropic => (
            recorded["model"].as_str().unwrap().to_owned(),
            recorded["system"].as_str().map(str::to_owned),
            recorded["messages"][0]["content"]
                .as_str()
                .unwrap()
                .to_owned(),
            recorded["max_tokens"].as_u64().unwrap(),
            recorded["temperature"].as_f64(),
        ),
        Provider::Gemini => (
            "gemini-2.5-flash".to_owned(),
            recorded["systemInstruction"]["parts"][0]["text"]
                .as_str()
                .map(str::to_owned),
            recorded["contents"][0]["parts"][0]["text"]
                .as_str()
                .unwrap()
                .to_owned(),
            recorded["generationConfig"]["maxOutputTokens"]
                .as_u64()
                .unwrap(),
            recorded["generationConfig"]["temperature"].as_f64(),
        ),
    };
    CompletionRequest {
        model,
        prompt,
        system,
        max_tokens: u32::try_from(max_tokens).unwrap(),
        temperature,
        top_p: None,
    }
}

/// The JSON "shape": every object's key set and every array's length, recursively.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(shape).collect()),
        Value::String(_) => Value::String("string".into()),
        Value::Number(_) => Value::String("number".into()),
        other => other.clone(),
    }
}

fn built(p: Provider) -> (UpstreamRequest, Value) {
    let req = adapters::build_request(
        p,
        &fixture_request(p),
        "http://127.0.0.1:1/base/",
        "test-key-123",
    );
    let body: Value = serde_json::from_str(&req.body).unwrap();
    (req, body)
}

#[test]
fn built_request_bodies_match_the_recorded_requests() {
    for p in Provider::ALL {
        let recorded: Value = serde_json::from_str(&read(p, "request.json")).unwrap();
        let (_, body) = built(p);
        assert_eq!(shape(&body), shape(&recorded), "{p}: field layout");
        assert_eq!(body, recorded, "{p}: values");
    }
}

#[test]
fn built_requests_use_each_providers_endpoint_and_auth_header() {
    let expect = [
        (
            Provider::OpenAi,
            "http://127.0.0.1:1/base/chat/completions",
            "authorization",
            "Bearer test-key-123",
        ),
        (
            Provider::Anthropic,
            "http://127.0.0.1:1/base/v1/messages",
            "x-api-key",
            "test-key-123",
        ),
        (
            Provider::Gemini,
            "http://127.0.0.1:1/base/v1beta/models/gemini-2.5-flash:generateContent",
            "x-goog-api-key",
            "test-key-123",
        ),
        (
            Provider::Perplexity,
            "http://127.0.0.1:1/base/chat/completions",
            "authorization",
            "Bearer test-key-123",
        ),
    ];
    for (p, url, name, value) in expect {
        let (req, _) = built(p);
        assert_eq!(req.url, url, "{p}");
        let auth: Vec<_> = req.headers.iter().filter(|(n, _)| n == name).collect();
        assert_eq!(auth, [&(name.to_owned(), value.to_owned())], "{p}");
        assert!(
            req.headers
                .contains(&("content-type".into(), "application/json".into())),
            "{p}"
        );
        if p == Provider::Anthropic {
            assert!(req
                .headers
                .contains(&("anthropic-version".into(), "2023-06-01".into())));
        }
        assert!(!req.body.contains("test-key-123"), "{p}: key in the body");
    }
}

#[test]
fn built_requests_carry_no_gateway_metadata() {
    for p in Provider::ALL {
        let (req, body) = built(p);
        for (name, _) in &req.headers {
            assert!(
                [
                    "authorization",
                    "x-api-key",
                    "x-goog-api-key",
                    "anthropic-version",
                    "content-type"
                ]
                .contains(&name.as_str()),
                "{p}: unexpected header {name}"
            );
        }
        let text = body.to_string();
        for word in ["lvk_", "account", "request_id", "cache"] {
            assert!(!text.contains(word), "{p}: {word} in body");
        }
    }
}

// ---- streams ----

use gateway_core::api::dropin::stream::{SseParser, StreamEnd, StreamWatcher};
use gateway_core::api::dropin::Dialect;

/// Every event of a recorded stream parses, and its data is JSON (or OpenAI's `[DONE]`).
fn stream_events(p: Provider, file: &str) -> Vec<(Option<String>, Value)> {
    // A recorded file may end without the blank line that dispatches its last event.
    let text = format!("{}\n\n", read(p, file).trim_end());
    SseParser::new()
        .feed(text.as_bytes())
        .into_iter()
        .map(|ev| {
            let ev = ev.unwrap_or_else(|e| panic!("{p}/{file}: {e}"));
            let data = if ev.data == "[DONE]" {
                Value::String(ev.data)
            } else {
                serde_json::from_str(&ev.data)
                    .unwrap_or_else(|e| panic!("{p}/{file}: {e}: {}", ev.data))
            };
            (ev.event, data)
        })
        .collect()
}

#[test]
fn recorded_streams_are_server_sent_events_of_json() {
    for (p, file) in [
        (Provider::OpenAi, "stream.txt"),
        (Provider::OpenAi, "stream_length.txt"),
        (Provider::Anthropic, "stream.txt"),
        (Provider::Gemini, "stream.txt"),
        (Provider::Perplexity, "stream.txt"),
    ] {
        let events = stream_events(p, file);
        assert!(events.len() >= 3, "{p}/{file}");
    }
}

#[test]
fn the_drop_in_dialects_recorded_streams_end_cleanly_with_their_usage() {
    for (p, file, dialect) in [
        (Provider::OpenAi, "stream.txt", Dialect::OpenAiChat),
        (Provider::OpenAi, "stream_length.txt", Dialect::OpenAiChat),
        (
            Provider::Anthropic,
            "stream.txt",
            Dialect::AnthropicMessages,
        ),
    ] {
        let text = format!("{}\n\n", read(p, file).trim_end());
        let mut w = StreamWatcher::new(dialect);
        w.feed(text.as_bytes()).unwrap();
        assert_eq!(w.outcome(), StreamEnd::Clean, "{p}/{file}");
        let usage = w.usage().unwrap_or_else(|| panic!("{p}/{file}: no usage"));
        assert!(usage.input > 0 && usage.output > 0, "{p}/{file}: {usage:?}");
        let body: Value = serde_json::from_str(&w.final_body().unwrap()).unwrap();
        assert!(body["id"].is_string(), "{p}/{file}: {body}");
    }
}
