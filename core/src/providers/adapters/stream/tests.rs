//! The streamed-call adapters on the providers' recorded streams
//! (`fixtures/providers/*/stream*.txt`) and on hand-written event sequences: deltas, the final
//! completion, error events, cut streams, and the streaming requests.

use super::*;
use crate::providers::completion::Tokens;

const OPENAI: &str = include_str!("../../../../../fixtures/providers/openai/stream.txt");
const OPENAI_LENGTH: &str =
    include_str!("../../../../../fixtures/providers/openai/stream_length.txt");
const ANTHROPIC: &str = include_str!("../../../../../fixtures/providers/anthropic/stream.txt");
const GEMINI: &str = include_str!("../../../../../fixtures/providers/gemini/stream.txt");
const PERPLEXITY: &str = include_str!("../../../../../fixtures/providers/perplexity/stream.txt");

/// A recorded stream, ended with a blank line (a recording may lack the last one).
fn ended(text: &str) -> String {
    format!("{text}\n\n")
}

/// Feeds `body` in the given pieces; the deltas and the outcome.
fn run(p: Provider, pieces: &[&[u8]]) -> (Vec<String>, Result<Completion, ProviderError>) {
    let mut s = CompletionStream::new(p);
    let mut deltas = Vec::new();
    for piece in pieces {
        deltas.extend(s.feed(piece));
    }
    (deltas, s.finish())
}

fn whole(p: Provider, body: &str) -> (Vec<String>, Result<Completion, ProviderError>) {
    run(p, &[body.as_bytes()])
}

fn answer(model: &str, content: &str, input: u64, output: u64) -> Completion {
    Completion {
        model: model.into(),
        content: content.into(),
        citations: Vec::new(),
        tokens: Tokens { input, output },
    }
}

fn sse(events: &[(Option<&str>, &str)]) -> String {
    events
        .iter()
        .map(|(name, data)| match name {
            Some(n) => format!("event: {n}\ndata: {data}\n\n"),
            None => format!("data: {data}\n\n"),
        })
        .collect()
}

fn fixtures() -> Vec<(Provider, String)> {
    vec![
        (Provider::OpenAi, ended(OPENAI)),
        (Provider::OpenAi, ended(OPENAI_LENGTH)),
        (Provider::Anthropic, ended(ANTHROPIC)),
        (Provider::Gemini, ended(GEMINI)),
        (Provider::Perplexity, ended(PERPLEXITY)),
    ]
}

#[test]
fn openai_recorded_stream_gives_its_text_model_and_usage_chunk() {
    let (deltas, c) = whole(Provider::OpenAi, &ended(OPENAI));
    let text = "I'm unable to provide real-time weather updates. To get the current weather in \
                San Francisco, I recommend checking a reliable weather website or a weather app.";
    assert_eq!(c.unwrap(), answer("gpt-4o-2024-08-06", text, 14, 30));
    assert_eq!(deltas.len(), 30);
    assert_eq!(deltas.concat(), text);
}

#[test]
fn openai_stream_cut_at_its_length_limit_is_still_an_answer() {
    let (deltas, c) = whole(Provider::OpenAi, &ended(OPENAI_LENGTH));
    assert_eq!(deltas, ["{\""]);
    assert_eq!(c.unwrap(), answer("gpt-4o-2024-08-06", "{\"", 79, 1));
}

#[test]
fn anthropic_recorded_stream_gives_text_deltas_and_start_plus_delta_usage() {
    let (deltas, c) = whole(Provider::Anthropic, &ended(ANTHROPIC));
    assert_eq!(deltas, ["Hello", " there", "!"]);
    assert_eq!(
        c.unwrap(),
        answer("claude-3-opus-latest", "Hello there!", 11, 6)
    );
}

#[test]
fn gemini_recorded_stream_gives_its_parts_and_last_usage_metadata() {
    let (deltas, c) = whole(Provider::Gemini, &ended(GEMINI));
    assert_eq!(deltas, ["The capital", " of France is Paris."]);
    assert_eq!(
        c.unwrap(),
        answer("gemini-2.5-flash", "The capital of France is Paris.", 8, 7)
    );
}

#[test]
fn perplexity_recorded_stream_gives_its_deltas_citations_and_final_usage() {
    let (deltas, c) = whole(Provider::Perplexity, &ended(PERPLEXITY));
    assert_eq!(
        deltas,
        ["The Milky Way", " holds 100 to 400 billion stars [1][2]."]
    );
    let mut expected = answer(
        "sonar",
        "The Milky Way holds 100 to 400 billion stars [1][2].",
        9,
        17,
    );
    expected.citations = vec![
        "https://en.wikipedia.org/wiki/Milky_Way".into(),
        "https://science.nasa.gov/milky-way/".into(),
    ];
    assert_eq!(c.unwrap(), expected);
}

#[test]
fn a_recording_without_its_last_blank_line_reads_the_same_once_ended() {
    // The Anthropic recording ends in `data: {"type":"message_stop"}` with no blank line.
    let (_, cut) = whole(Provider::Anthropic, ANTHROPIC);
    assert_eq!(
        cut.unwrap_err().code,
        ProviderErrorCode::UpstreamUnreachable
    );
    assert!(whole(Provider::Anthropic, &ended(ANTHROPIC)).1.is_ok());
}

#[test]
fn a_stream_split_at_any_byte_gives_the_same_deltas_and_completion() {
    for (p, body) in fixtures() {
        let bytes = body.as_bytes();
        let (deltas, c) = run(p, &[bytes]);
        let c = c.unwrap();
        assert_eq!(deltas.concat(), c.content, "{p}");
        for i in 0..=bytes.len() {
            let (d, got) = run(p, &[&bytes[..i], &bytes[i..]]);
            assert_eq!(d, deltas, "{p} split at {i}");
            assert_eq!(got.as_ref(), Ok(&c), "{p} split at {i}");
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        let (d, got) = run(p, &singles);
        assert_eq!((d, got), (deltas, Ok(c)), "{p} byte by byte");
    }
}

#[test]
fn crlf_line_ends_read_the_same() {
    for (p, body) in fixtures() {
        let crlf = body.replace('\n', "\r\n");
        assert_eq!(whole(p, &crlf), whole(p, &body), "{p}");
    }
}

#[test]
fn a_stream_cut_before_its_terminal_event_is_an_unreachable_upstream() {
    for (p, body) in fixtures() {
        // Drop the terminal event: `[DONE]`, `message_stop`, the finish chunk (Perplexity's
        // finish chunk with its usage is one too, so `[DONE]` and it go).
        let events: Vec<&str> = body.trim_end().split("\n\n").collect();
        let keep = events.len() - if p == Provider::Perplexity { 2 } else { 1 };
        let cut = format!("{}\n\n", events[..keep].join("\n\n"));
        let (deltas, r) = whole(p, &cut);
        let e = r.unwrap_err();
        assert_eq!(e.code, ProviderErrorCode::UpstreamUnreachable, "{p}: {e}");
        assert!(e.message.contains("terminal event"), "{e}");
        assert!(p == Provider::Gemini || !deltas.is_empty(), "{p}");
        // Cut in the middle of the terminal event: that event is never read.
        let terminal = events[keep].as_bytes();
        let mid = [cut.as_bytes(), &terminal[..terminal.len() / 2]].concat();
        assert_eq!(
            run(p, &[&mid]).1.unwrap_err().code,
            ProviderErrorCode::UpstreamUnreachable,
            "{p}"
        );
    }
    assert_eq!(
        whole(Provider::OpenAi, "").1.unwrap_err().code,
        ProviderErrorCode::UpstreamUnreachable
    );
}

#[test]
fn error_events_map_like_the_same_error_bodies() {
    let cases = [
        (
            Provider::Anthropic,
            Some("error"),
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            ProviderErrorCode::UpstreamOverloaded,
        ),
        (
            Provider::Anthropic,
            Some("error"),
            r#"{"type":"error","error":{"type":"api_error","message":"Internal server error"}}"#,
            ProviderErrorCode::UpstreamServerError,
        ),
        (
            Provider::Anthropic,
            Some("error"),
            r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow"}}"#,
            ProviderErrorCode::UpstreamRateLimited,
        ),
        (
            Provider::OpenAi,
            None,
            r#"{"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}}"#,
            ProviderErrorCode::UpstreamServerError,
        ),
        (
            Provider::Gemini,
            None,
            r#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#,
            ProviderErrorCode::UpstreamOverloaded,
        ),
        (
            Provider::Gemini,
            None,
            r#"{"error":{"code":429,"message":"Quota","status":"RESOURCE_EXHAUSTED","details":[{"retryDelay":"41s"}]}}"#,
            ProviderErrorCode::UpstreamRateLimited,
        ),
        (
            Provider::Perplexity,
            Some("error"),
            r#"{"error":{"message":"Internal server error.","type":"internal_server_error","code":500}}"#,
            ProviderErrorCode::UpstreamServerError,
        ),
    ];
    for (p, name, data, code) in cases {
        // Part of the answer first, then the error: the deltas came, the call failed.
        let lead = match p {
            Provider::Anthropic => sse(&[
                (
                    Some("message_start"),
                    r#"{"type":"message_start","message":{"model":"m","usage":{"input_tokens":1,"output_tokens":1}}}"#,
                ),
                (
                    Some("content_block_delta"),
                    r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
                ),
            ]),
            Provider::Gemini => sse(&[(
                None,
                r#"{"candidates":[{"content":{"parts":[{"text":"Hi"}]}}],"modelVersion":"m"}"#,
            )]),
            _ => sse(&[(
                None,
                r#"{"model":"m","choices":[{"index":0,"delta":{"content":"Hi"}}]}"#,
            )]),
        };
        let body = format!("{lead}{}", sse(&[(name, data)]));
        let (deltas, r) = whole(p, &body);
        assert_eq!(deltas, ["Hi"], "{p}");
        let e = r.unwrap_err();
        assert_eq!(e.code, code, "{p}: {e}");
        assert_eq!(e.upstream_status, None);
        assert!(e.message.contains("(in its stream)"), "{e}");
    }
    let e = whole(
        Provider::Gemini,
        &sse(&[(None, r#"{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"retryDelay":"41s"}]}}"#)]),
    )
    .1
    .unwrap_err();
    assert_eq!(e.retry_after_ms, Some(41_000));
}

#[test]
fn events_after_an_error_or_the_terminal_event_are_not_read() {
    let body = sse(&[
        (
            Some("error"),
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        ),
        (
            Some("content_block_delta"),
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"late"}}"#,
        ),
        (Some("message_stop"), r#"{"type":"message_stop"}"#),
    ]);
    let (deltas, r) = whole(Provider::Anthropic, &body);
    assert!(deltas.is_empty());
    assert_eq!(r.unwrap_err().code, ProviderErrorCode::UpstreamOverloaded);
    let after_done = format!(
        "{}{}",
        ended(OPENAI),
        sse(&[(
            None,
            r#"{"model":"x","choices":[{"index":0,"delta":{"content":"late"}}]}"#
        )])
    );
    let (deltas, r) = whole(Provider::OpenAi, &after_done);
    assert!(!deltas.contains(&"late".to_owned()));
    assert_eq!(r.unwrap().model, "gpt-4o-2024-08-06");
}

#[test]
fn an_unreadable_event_is_malformed() {
    for (p, data) in [
        (
            Provider::OpenAi,
            r#"{"model":"m","choices":[{"index":0,"delta":{"content":"#,
        ),
        (
            Provider::OpenAi,
            r#"{"model":"m","choices":[{"index":0,"delta":{"content":7}}]}"#,
        ),
        (Provider::Anthropic, r#"{"no_type":1}"#),
        (Provider::Gemini, "not json"),
        (Provider::Perplexity, r#"{"model":"sonar","citations":"x"}"#),
    ] {
        let e = whole(p, &sse(&[(None, data)])).1.unwrap_err();
        assert_eq!(e.code, ProviderErrorCode::UpstreamMalformed, "{p} {data}");
    }
}

#[test]
fn an_event_over_the_size_limit_is_malformed() {
    let huge = format!(
        r#"{{"model":"m","choices":[{{"index":0,"delta":{{"content":"{}"}}}}]}}"#,
        "x".repeat(crate::api::dropin::stream::MAX_EVENT_BYTES)
    );
    let body = format!("{}{}", sse(&[(None, &huge)]), ended(OPENAI));
    let (deltas, r) = whole(Provider::OpenAi, &body);
    assert!(deltas.is_empty());
    let e = r.unwrap_err();
    assert_eq!(e.code, ProviderErrorCode::UpstreamMalformed);
    assert!(e.message.contains("larger than"), "{e}");
}

#[test]
fn an_openai_stream_ended_without_its_usage_chunk_is_malformed() {
    let body = sse(&[
        (
            None,
            r#"{"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""}}],"usage":null}"#,
        ),
        (
            None,
            r#"{"model":"m","choices":[{"index":0,"delta":{"content":"Hi"}}],"usage":null}"#,
        ),
        (
            None,
            r#"{"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}"#,
        ),
        (None, "[DONE]"),
    ]);
    let e = whole(Provider::OpenAi, &body).1.unwrap_err();
    assert_eq!(e.code, ProviderErrorCode::UpstreamMalformed);
    assert_eq!(e.message, "openai sent a stream with no usage");
}

#[test]
fn a_chat_stream_with_no_text_field_is_malformed_and_an_empty_one_is_an_empty_answer() {
    let usage = r#"{"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":0}}"#;
    let none = sse(&[(None, usage), (None, "[DONE]")]);
    assert_eq!(
        whole(Provider::OpenAi, &none).1.unwrap_err().code,
        ProviderErrorCode::UpstreamMalformed
    );
    let empty = sse(&[
        (
            None,
            r#"{"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":"length"}]}"#,
        ),
        (None, usage),
        (None, "[DONE]"),
    ]);
    let (deltas, c) = whole(Provider::OpenAi, &empty);
    assert!(deltas.is_empty());
    let c = c.unwrap();
    assert_eq!(c, answer("m", "", 3, 0));
    assert!(!c.is_cacheable());
}

#[test]
fn an_openai_refusal_streams_as_the_answer_text() {
    let body = sse(&[
        (
            None,
            r#"{"model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":null,"refusal":""}}]}"#,
        ),
        (
            None,
            r#"{"model":"gpt-4o","choices":[{"index":0,"delta":{"refusal":"I can't"}}]}"#,
        ),
        (
            None,
            r#"{"model":"gpt-4o","choices":[{"index":0,"delta":{"refusal":" help with that."}}]}"#,
        ),
        (
            None,
            r#"{"model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
        ),
        (
            None,
            r#"{"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":6}}"#,
        ),
        (None, "[DONE]"),
    ]);
    let (deltas, c) = whole(Provider::OpenAi, &body);
    assert_eq!(deltas, ["I can't", " help with that."]);
    assert_eq!(
        c.unwrap(),
        answer("gpt-4o", "I can't help with that.", 5, 6)
    );
}

#[test]
fn perplexity_ignores_a_refusal_field_and_may_end_without_done() {
    let body = sse(&[
        (
            None,
            r#"{"model":"sonar","choices":[{"index":0,"delta":{"content":"A","refusal":"no"}}],"search_results":[{"url":"https://a.example/"},{"title":"no url"}]}"#,
        ),
        (
            None,
            r#"{"model":"sonar","choices":[{"index":0,"delta":{"content":""},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#,
        ),
    ]);
    let (deltas, c) = whole(Provider::Perplexity, &body);
    assert_eq!(deltas, ["A"]);
    let c = c.unwrap();
    assert_eq!(c.content, "A");
    assert_eq!(c.citations, ["https://a.example/"]);
}

#[test]
fn anthropic_counts_cached_input_skips_thinking_and_takes_the_last_delta_usage() {
    let body = sse(&[
        (
            Some("message_start"),
            r#"{"type":"message_start","message":{"model":"claude-sonnet-4-5","content":[],"usage":{"input_tokens":3,"cache_creation_input_tokens":10,"cache_read_input_tokens":5,"output_tokens":1}}}"#,
        ),
        (
            Some("content_block_start"),
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}"#,
        ),
        (
            Some("content_block_delta"),
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm"}}"#,
        ),
        (
            Some("content_block_delta"),
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"sig"}}"#,
        ),
        (
            Some("content_block_stop"),
            r#"{"type":"content_block_stop","index":0}"#,
        ),
        (
            Some("content_block_start"),
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}"#,
        ),
        (
            Some("content_block_delta"),
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Hello"}}"#,
        ),
        (
            Some("content_block_delta"),
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{}"}}"#,
        ),
        (
            Some("message_delta"),
            r#"{"type":"message_delta","delta":{"stop_reason":null},"usage":{"output_tokens":2}}"#,
        ),
        (
            Some("message_delta"),
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":9,"cache_read_input_tokens":6}}"#,
        ),
        (Some("message_stop"), r#"{"type":"message_stop"}"#),
    ]);
    let (deltas, c) = whole(Provider::Anthropic, &body);
    assert_eq!(deltas, ["Hello"]);
    assert_eq!(c.unwrap(), answer("claude-sonnet-4-5", "Hello", 19, 9));
}

#[test]
fn an_anthropic_stream_without_usage_counts_is_malformed() {
    let body = sse(&[
        (
            Some("message_start"),
            r#"{"type":"message_start","message":{"model":"m","usage":{"output_tokens":1}}}"#,
        ),
        (Some("message_stop"), r#"{"type":"message_stop"}"#),
    ]);
    let e = whole(Provider::Anthropic, &body).1.unwrap_err();
    assert_eq!(e.code, ProviderErrorCode::UpstreamMalformed);
    assert_eq!(
        e.message,
        "anthropic sent a stream with incomplete usage token counts"
    );
}

#[test]
fn gemini_leaves_thoughts_out_of_the_text_and_adds_their_tokens() {
    let body = sse(&[
        (
            None,
            r#"{"candidates":[{"content":{"parts":[{"text":"plan","thought":true}]}}],"modelVersion":"gemini-2.5-pro","usageMetadata":{"promptTokenCount":4,"thoughtsTokenCount":30}}"#,
        ),
        (
            None,
            r#"{"candidates":[{"content":{"parts":[{"text":"Hel"},{"text":"lo"}]}}],"modelVersion":"gemini-2.5-pro"}"#,
        ),
        (
            None,
            r#"{"candidates":[{"content":{"parts":[{"text":""}]},"finishReason":"STOP"}],"modelVersion":"gemini-2.5-pro","usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":2,"thoughtsTokenCount":30}}"#,
        ),
    ]);
    let (deltas, c) = whole(Provider::Gemini, &body);
    assert_eq!(deltas, ["Hello"]);
    assert_eq!(c.unwrap(), answer("gemini-2.5-pro", "Hello", 4, 32));
}

#[test]
fn gemini_safety_stop_is_an_empty_answer_and_a_blocked_prompt_a_bad_request() {
    let safety = sse(&[(
        None,
        r#"{"candidates":[{"finishReason":"SAFETY"}],"usageMetadata":{"promptTokenCount":4},"modelVersion":"gemini-2.5-flash"}"#,
    )]);
    let (deltas, c) = whole(Provider::Gemini, &safety);
    assert!(deltas.is_empty());
    assert_eq!(c.unwrap(), answer("gemini-2.5-flash", "", 4, 0));
    let blocked = sse(&[(
        None,
        r#"{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":4},"modelVersion":"gemini-2.5-flash"}"#,
    )]);
    let e = whole(Provider::Gemini, &blocked).1.unwrap_err();
    assert_eq!(e.code, ProviderErrorCode::UpstreamBadRequest);
    assert_eq!(e.message, "gemini blocked the prompt (SAFETY)");
}

#[test]
fn a_gemini_stream_ended_without_usage_metadata_is_malformed() {
    let body = sse(&[(
        None,
        r#"{"candidates":[{"content":{"parts":[{"text":"x"}]},"finishReason":"STOP"}],"modelVersion":"m"}"#,
    )]);
    let e = whole(Provider::Gemini, &body).1.unwrap_err();
    assert_eq!(e.code, ProviderErrorCode::UpstreamMalformed);
    assert_eq!(e.message, "gemini sent a stream with no usageMetadata");
}

fn req() -> CompletionRequest {
    CompletionRequest {
        model: "m/x".into(),
        prompt: "Hi".into(),
        system: Some("Be brief.".into()),
        max_tokens: 16,
        temperature: Some(0.3),
        top_p: None,
    }
}

#[test]
fn the_stream_request_is_the_whole_request_in_streaming_mode() {
    for p in Provider::ALL {
        let plain = build_request(p, &req(), "http://h/", "k");
        let streamed = build_stream_request(p, &req(), "http://h/", "k");
        let mut body: Value = serde_json::from_str(&streamed.body).unwrap();
        let extra: Vec<(String, Value)> = ["stream", "stream_options"]
            .iter()
            .filter_map(|k| Some((k.to_string(), body.as_object_mut()?.remove(*k)?)))
            .collect();
        assert_eq!(
            body,
            serde_json::from_str::<Value>(&plain.body).unwrap(),
            "{p}"
        );
        let expected: Vec<(String, Value)> = match p {
            Provider::OpenAi => vec![
                ("stream".into(), Value::Bool(true)),
                (
                    "stream_options".into(),
                    serde_json::json!({"include_usage": true}),
                ),
            ],
            Provider::Anthropic | Provider::Perplexity => {
                vec![("stream".into(), Value::Bool(true))]
            }
            Provider::Gemini => vec![],
        };
        assert_eq!(extra, expected, "{p}");
        let mut headers = plain.headers.clone();
        headers.push(("accept".into(), "text/event-stream".into()));
        assert_eq!(streamed.headers, headers, "{p}");
        if p == Provider::Gemini {
            assert_eq!(
                streamed.url,
                "http://h/v1beta/models/m%2Fx:streamGenerateContent?alt=sse"
            );
        } else {
            assert_eq!(streamed.url, plain.url, "{p}");
        }
    }
}
