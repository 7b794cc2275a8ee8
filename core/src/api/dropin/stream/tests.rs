//! The watchers on recorded provider streams (`core/tests/fixtures/streams/`, sources in its
//! README), the synthesized streams, and the properties tying them together.

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::*;
use crate::api::dropin::usage;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/streams/",
            $name
        ))
    };
}

/// A recorded stream with the blank line after its last event, where the recording lacks it.
fn ended(s: &str) -> String {
    if s.ends_with("\n\n") {
        s.to_owned()
    } else {
        format!("{}\n\n", s.trim_end_matches('\n'))
    }
}

fn watch(dialect: Dialect, bytes: &[u8]) -> StreamWatcher {
    let mut w = StreamWatcher::new(dialect);
    w.feed(bytes).expect("readable stream");
    w
}

fn watch_in_chunks(dialect: Dialect, bytes: &[u8], sizes: &[usize]) -> StreamWatcher {
    let mut w = StreamWatcher::new(dialect);
    let mut rest = bytes;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap_or(&1)).clamp(1, rest.len());
        w.feed(&rest[..n]).expect("readable stream");
        rest = &rest[n..];
    }
    w
}

fn body(w: &StreamWatcher) -> Value {
    serde_json::from_str(&w.final_body().expect("a final body")).expect("JSON body")
}

const A: Dialect = Dialect::AnthropicMessages;
const O: Dialect = Dialect::OpenAiChat;

const ANTHROPIC: [(&str, &str); 6] = [
    ("basic", fixture!("anthropic_basic_response.sse")),
    ("tool_use", fixture!("anthropic_tool_use_response.sse")),
    ("refusal", fixture!("anthropic_refusal_response.sse")),
    (
        "incomplete",
        fixture!("anthropic_incomplete_partial_json_response.sse"),
    ),
    ("fallback", fixture!("anthropic_fallback_response.sse")),
    ("thinking", fixture!("anthropic_thinking_tool_use.sse")),
];

const OPENAI: [(&str, &str); 7] = [
    ("text", fixture!("openai_text.sse")),
    ("tools", fixture!("openai_tools.sse")),
    ("tool_nonstrict", fixture!("openai_tool_nonstrict.sse")),
    ("length", fixture!("openai_length.sse")),
    ("refusal", fixture!("openai_refusal.sse")),
    ("choices", fixture!("openai_choices.sse")),
    ("logprobs", fixture!("openai_logprobs.sse")),
];

fn all_fixtures() -> Vec<(Dialect, &'static str, String)> {
    let a = ANTHROPIC.iter().map(|(n, s)| (A, *n, ended(s)));
    let o = OPENAI.iter().map(|(n, s)| (O, *n, s.to_string()));
    a.chain(o).collect()
}

// --- Anthropic, recorded -------------------------------------------------------------------

#[test]
fn anthropic_basic_stream_reassembles_into_the_sdk_message() {
    let w = watch(A, ended(ANTHROPIC[0].1).as_bytes());
    assert_eq!(w.outcome(), StreamEnd::Clean);
    assert_eq!(
        w.usage(),
        Some(Tokens {
            input: 11,
            output: 6
        })
    );
    assert_eq!(
        body(&w),
        json!({
            "id": "msg_4QpJur2dWWDjF6C758FbBw5vm12BaVipnK",
            "type": "message",
            "role": "assistant",
            "content": [{"type": "text", "text": "Hello there!"}],
            "model": "claude-3-opus-latest",
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": {"input_tokens": 11, "output_tokens": 6}
        })
    );
}

#[test]
fn anthropic_recording_without_the_last_blank_line_never_sees_message_stop() {
    // As in the SDK's own test: the undispatched `message_stop` leaves the stream unfinished.
    let w = watch(A, ANTHROPIC[0].1.as_bytes());
    assert_eq!(w.outcome(), StreamEnd::Truncated);
    assert_eq!(w.final_body(), None);
    assert_eq!(
        w.usage(),
        Some(Tokens {
            input: 11,
            output: 6
        })
    );
}

#[test]
fn anthropic_tool_input_is_parsed_from_the_concatenated_partial_json() {
    let w = watch(A, ended(ANTHROPIC[1].1).as_bytes());
    assert_eq!(w.outcome(), StreamEnd::Clean);
    let m = body(&w);
    assert_eq!(
        m["content"][0]["text"],
        "I'll check the current weather in Paris for you."
    );
    assert_eq!(
        m["content"][1],
        json!({"type": "tool_use", "id": "toolu_01NRLabsLyVHZPKxbKvkfSMn",
            "name": "get_weather", "caller": {"type": "direct"}, "input": {"location": "Paris"}})
    );
    assert_eq!(m["stop_reason"], "tool_use");
    assert_eq!(
        m["usage"],
        json!({"input_tokens": 377, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0, "output_tokens": 65, "service_tier": "standard"})
    );
    assert_eq!(
        w.usage(),
        Some(Tokens {
            input: 377,
            output: 65
        })
    );
}

#[test]
fn anthropic_thinking_keeps_its_text_and_signature_and_delta_usage_replaces_the_start() {
    let w = watch(A, ANTHROPIC[5].1.as_bytes());
    assert_eq!(w.outcome(), StreamEnd::Clean);
    let m = body(&w);
    let thinking = &m["content"][0];
    assert_eq!(thinking["type"], "thinking");
    assert_eq!(
        thinking["thinking"],
        "The user is asking for weather information for Florence, Italy. I have access to a \
         weather function that takes a \"location\" parameter. The user has provided the \
         location as \"Florence, Italy\" which is clear and specific. I have all the required \
         parameters to make this function call."
    );
    assert!(thinking["signature"]
        .as_str()
        .is_some_and(|s| s.starts_with("EsQDCkYICBgCKkBr9") && s.ends_with("SEYAQ==")));
    assert_eq!(
        m["content"][1]["input"],
        json!({"location": "Florence, Italy"})
    );
    assert_eq!(m["usage"]["output_tokens"], 119);
    assert_eq!(
        m["usage"]["cache_creation"],
        json!({"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0})
    );
    assert_eq!(
        w.usage(),
        Some(Tokens {
            input: 423,
            output: 119
        })
    );
}

#[test]
fn anthropic_refusal_carries_its_stop_details() {
    let w = watch(A, ended(ANTHROPIC[2].1).as_bytes());
    assert_eq!(w.outcome(), StreamEnd::Clean);
    let m = body(&w);
    assert_eq!(m["stop_reason"], "refusal");
    assert_eq!(m["stop_details"]["category"], "cyber");
    assert_eq!(m["content"], json!([{"type": "text", "text": ""}]));
}

#[test]
fn anthropic_fallback_block_names_the_model_that_answered() {
    let w = watch(A, ended(ANTHROPIC[4].1).as_bytes());
    let m = body(&w);
    assert_eq!(m["model"], "claude-sonnet-4-5");
    assert_eq!(m["content"][1]["text"], "Hello there!");
}

#[test]
fn anthropic_tool_input_cut_at_max_tokens_finishes_cleanly_but_gives_no_body() {
    let w = watch(A, ended(ANTHROPIC[3].1).as_bytes());
    assert_eq!(w.outcome(), StreamEnd::Clean);
    assert_eq!(w.final_body(), None);
    assert_eq!(
        w.usage(),
        Some(Tokens {
            input: 450,
            output: 124
        })
    );
}

#[test]
fn anthropic_error_event_makes_the_stream_an_error_whatever_follows() {
    let text = ended(ANTHROPIC[0].1);
    let (head, tail) = text.split_at(text.find("event: message_delta").unwrap());
    let with_error = format!(
        "{head}event: error\ndata: {{\"type\": \"error\", \"error\": {{\"type\": \
         \"overloaded_error\", \"message\": \"Overloaded\"}}}}\n\n{tail}"
    );
    let w = watch(A, with_error.as_bytes());
    assert_eq!(w.outcome(), StreamEnd::Error);
    assert_eq!(w.final_body(), None);

    let mut cut = text[..text.find("event: message_delta").unwrap()].to_owned();
    cut.push_str(std::str::from_utf8(&terminal_error(A, "api_error", "upstream cut")).unwrap());
    assert_eq!(watch(A, cut.as_bytes()).outcome(), StreamEnd::Error);
}

#[test]
fn anthropic_usage_is_final_only_once_a_message_delta_counted_the_output() {
    let text = ended(ANTHROPIC[0].1);
    let whole = watch(A, text.as_bytes());
    assert!(whole.final_usage().is_some());
    assert_eq!(whole.final_usage(), whole.usage());
    // Failed before its `message_delta`: `message_start`'s count is all there is, and it is
    // not what was generated.
    let mut failed = text[..text.find("event: message_delta").unwrap()].to_owned();
    failed.push_str(std::str::from_utf8(&terminal_error(A, "overloaded_error", "Over")).unwrap());
    let w = watch(A, failed.as_bytes());
    assert_eq!(w.outcome(), StreamEnd::Error);
    assert!(w.usage().is_some(), "message_start's usage");
    assert_eq!(w.final_usage(), None);
    // Failed after it: the count it gave is final.
    let stop = text.find("event: message_stop").unwrap();
    let mut late = text[..stop].to_owned();
    late.push_str(std::str::from_utf8(&terminal_error(A, "overloaded_error", "Over")).unwrap());
    let w = watch(A, late.as_bytes());
    assert_eq!(w.outcome(), StreamEnd::Error);
    assert_eq!(w.final_usage(), whole.usage());
}

#[test]
fn anthropic_message_stop_without_a_stop_reason_is_not_clean() {
    let text =
        ended(ANTHROPIC[0].1).replace("\"stop_reason\":\"end_turn\"", "\"stop_reason\":null");
    assert_eq!(watch(A, text.as_bytes()).outcome(), StreamEnd::Truncated);
}

#[test]
fn anthropic_last_message_delta_usage_wins_and_brings_cache_counts() {
    let stream = "event: message_start\n\
        data: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"c\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n\
        event: message_delta\n\
        data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":null,\"stop_sequence\":null},\"usage\":{\"output_tokens\":3}}\n\n\
        event: message_delta\n\
        data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":9,\"input_tokens\":7,\"cache_read_input_tokens\":100,\"cache_creation_input_tokens\":null}}\n\n\
        event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let w = watch(A, stream.as_bytes());
    assert_eq!(w.outcome(), StreamEnd::Clean);
    assert_eq!(
        w.usage(),
        Some(Tokens {
            input: 107,
            output: 9
        })
    );
    assert_eq!(
        body(&w)["usage"],
        json!({"input_tokens": 7, "cache_read_input_tokens": 100, "output_tokens": 9})
    );
}

#[test]
fn anthropic_delta_before_message_start_is_out_of_order() {
    let mut w = StreamWatcher::new(A);
    let e = w.feed(b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}\n\n");
    assert!(matches!(e, Err(StreamError::OutOfOrder(_))), "{e:?}");
    assert_eq!(w.outcome(), StreamEnd::Truncated);
}

// --- OpenAI, recorded ----------------------------------------------------------------------

#[test]
fn openai_text_stream_reassembles_into_the_chat_completion() {
    let w = watch(O, OPENAI[0].1.as_bytes());
    assert_eq!(w.outcome(), StreamEnd::Clean);
    assert_eq!(
        w.usage(),
        Some(Tokens {
            input: 14,
            output: 30
        })
    );
    assert_eq!(
        body(&w),
        json!({
            "id": "chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL",
            "object": "chat.completion",
            "created": 1727346168,
            "model": "gpt-4o-2024-08-06",
            "system_fingerprint": "fp_5050236cbd",
            "choices": [{
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "I'm unable to provide real-time weather updates. To get the current \
                        weather in San Francisco, I recommend checking a reliable weather website \
                        or a weather app.",
                    "refusal": null
                },
                "logprobs": null,
                "finish_reason": "stop"
            }],
            "usage": {"prompt_tokens": 14, "completion_tokens": 30, "total_tokens": 44,
                "completion_tokens_details": {"reasoning_tokens": 0}}
        })
    );
}

#[test]
fn openai_tool_calls_merge_by_index_with_their_arguments_concatenated() {
    let w = watch(O, OPENAI[1].1.as_bytes());
    assert_eq!(w.outcome(), StreamEnd::Clean);
    let m = body(&w);
    let msg = &m["choices"][0]["message"];
    assert_eq!(msg["content"], Value::Null);
    assert_eq!(
        msg["tool_calls"],
        json!([
            {"id": "call_JMW1whyEaYG438VE1OIflxA2", "type": "function", "function": {
                "name": "GetWeatherArgs",
                "arguments": "{\"city\": \"Edinburgh\", \"country\": \"GB\", \"units\": \"c\"}"}},
            {"id": "call_DNYTawLBoN8fj3KN6qU9N1Ou", "type": "function", "function": {
                "name": "get_stock_price",
                "arguments": "{\"ticker\": \"AAPL\", \"exchange\": \"NASDAQ\"}"}}
        ])
    );
    assert_eq!(m["choices"][0]["finish_reason"], "tool_calls");
}

#[test]
fn openai_refusal_accumulates_like_content() {
    let m = body(&watch(O, OPENAI[4].1.as_bytes()));
    let msg = &m["choices"][0]["message"];
    assert_eq!(msg["content"], Value::Null);
    assert!(msg["refusal"]
        .as_str()
        .is_some_and(|r| r.starts_with("I'm") && r.ends_with("request.")));
}

#[test]
fn openai_every_choice_must_finish_and_all_are_kept() {
    let text = OPENAI[5].1;
    let w = watch(O, text.as_bytes());
    assert_eq!(w.outcome(), StreamEnd::Clean);
    let m = body(&w);
    let choices = m["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
        assert_eq!(c["finish_reason"], "stop");
        assert!(c["message"]["content"]
            .as_str()
            .is_some_and(|s| s.contains("San Francisco")));
    }
    // Without the last choice's finish chunk the `[DONE]` is not a clean end.
    let last_finish = text
        .lines()
        .filter(|l| {
            l.contains("\"index\":2,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"")
        })
        .collect::<Vec<_>>();
    assert_eq!(last_finish.len(), 1);
    let without = text.replace(&format!("{}\n\n", last_finish[0]), "");
    assert_eq!(watch(O, without.as_bytes()).outcome(), StreamEnd::Truncated);
}

#[test]
fn openai_logprobs_lists_grow_chunk_by_chunk() {
    let m = body(&watch(O, OPENAI[6].1.as_bytes()));
    let lp = &m["choices"][0]["logprobs"];
    let tokens: Vec<_> = lp["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["token"].as_str().unwrap())
        .collect();
    assert_eq!(tokens, ["Foo", "!"]);
    assert_eq!(lp["refusal"], Value::Null);
}

#[test]
fn openai_usage_chunk_with_choices_is_read_too() {
    let stream = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"hi\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n\
        data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\n\
        data: [DONE]\n\n";
    let w = watch(O, stream.as_bytes());
    assert_eq!(w.outcome(), StreamEnd::Clean);
    assert_eq!(
        w.usage(),
        Some(Tokens {
            input: 3,
            output: 1
        })
    );
    assert_eq!(body(&w)["choices"][0]["message"]["content"], "hi");
}

#[test]
fn openai_stream_without_usage_chunk_has_no_usage() {
    let text = OPENAI[0].1;
    let start = text.find("data: {\"id\":\"chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL\",\"object\":\"chat.completion.chunk\",\"created\":1727346168,\"model\":\"gpt-4o-2024-08-06\",\"system_fingerprint\":\"fp_5050236cbd\",\"choices\":[],").unwrap();
    let end = start + text[start..].find("\n\n").unwrap() + 2;
    let without = format!("{}{}", &text[..start], &text[end..]);
    let w = watch(O, without.as_bytes());
    assert_eq!(w.outcome(), StreamEnd::Clean);
    assert_eq!(w.usage(), None);
    assert!(body(&w).get("usage").is_none());
}

#[test]
fn openai_error_object_makes_the_stream_an_error() {
    let text = OPENAI[0].1;
    let at = text.find("data: [DONE]").unwrap();
    let with_error = format!(
        "{}data: {{\"error\": {{\"message\": \"server error\", \"type\": \"server_error\"}}}}\n\n{}",
        &text[..at],
        &text[at..]
    );
    assert_eq!(watch(O, with_error.as_bytes()).outcome(), StreamEnd::Error);
    let mut cut = text[..text.len() / 2].to_owned();
    cut.truncate(cut.rfind("\n\n").unwrap() + 2);
    cut.push_str(std::str::from_utf8(&terminal_error(O, "api_error", "upstream cut")).unwrap());
    let w = watch(O, cut.as_bytes());
    assert_eq!(w.outcome(), StreamEnd::Error);
    assert_eq!(w.final_body(), None);
}

#[test]
fn openai_objects_that_are_not_chunks_are_skipped() {
    let text = OPENAI[0].1;
    let filter = "data: {\"id\":\"\",\"object\":\"\",\"created\":0,\"model\":\"\",\"choices\":[],\"prompt_filter_results\":[]}\n\n";
    let w = watch(O, format!("{filter}{text}").as_bytes());
    assert_eq!(w.outcome(), StreamEnd::Clean);
    assert_eq!(body(&w), body(&watch(O, text.as_bytes())));
}

#[test]
fn openai_done_without_a_finish_reason_is_not_clean() {
    let text = OPENAI[0]
        .1
        .replace("\"finish_reason\":\"stop\"", "\"finish_reason\":null");
    assert_eq!(watch(O, text.as_bytes()).outcome(), StreamEnd::Truncated);
}

/// An OpenAI stream of `pieces` content chunks, each carrying `padding` bytes of the fields
/// every chunk repeats (as OpenAI's `obfuscation`), then the finish, the usage and `[DONE]`.
fn long_chat_stream(pieces: &[String], padding: usize) -> String {
    let chunk = |choices: Value, usage: Value| {
        let c = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
            "model": "gpt-4o-mini", "choices": choices, "usage": usage,
            "obfuscation": "p".repeat(padding)});
        format!("data: {c}\n\n")
    };
    let mut out = chunk(
        json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]),
        Value::Null,
    );
    for p in pieces {
        let choices = json!([{"index": 0, "delta": {"content": p}, "finish_reason": null}]);
        out.push_str(&chunk(choices, Value::Null));
    }
    out.push_str(&chunk(
        json!([{"index": 0, "delta": {}, "finish_reason": "stop"}]),
        Value::Null,
    ));
    out.push_str(&chunk(
        json!([]),
        json!({"prompt_tokens": 5, "completion_tokens": pieces.len(), "total_tokens": 5 + pieces.len()}),
    ));
    out + "data: [DONE]\n\n"
}

#[test]
fn a_long_openai_stream_reassembles_by_its_answer_not_its_chunks_size() {
    // 30,000 one-token chunks of about 400 bytes each: 12 MB of events, a 30 KB answer.
    let pieces: Vec<String> = (0..30_000).map(|i| format!("t{}", i % 10)).collect();
    let text = long_chat_stream(&pieces, 300);
    assert!(text.len() > MAX_REASSEMBLED_BYTES, "{}", text.len());
    let w = watch(O, text.as_bytes());
    assert_eq!(w.outcome(), StreamEnd::Clean);
    let body: Value = serde_json::from_str(&w.final_body().expect("a body to store")).unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], pieces.concat());
    // An answer itself past the bound is still watched and settled, but gives no body.
    let big: Vec<String> = (0..20).map(|_| "x".repeat(500_000)).collect();
    let w = watch(O, long_chat_stream(&big, 0).as_bytes());
    assert_eq!(w.outcome(), StreamEnd::Clean);
    assert_eq!(w.final_body(), None);
    assert_eq!(w.usage().map(|u| u.output), Some(20));
}

// --- Both ------------------------------------------------------------------------------------

#[test]
fn unreadable_event_is_reported_and_the_stream_is_never_clean() {
    for (dialect, name, text) in all_fixtures() {
        let at = text.find("\n\n").unwrap() + 2;
        let broken = format!("{}data: {{not json\n\n{}", &text[..at], &text[at..]);
        let mut w = StreamWatcher::new(dialect);
        let r = w.feed(broken.as_bytes());
        assert!(
            matches!(r, Err(StreamError::BadEvent { .. })),
            "{name}: {r:?}"
        );
        assert_eq!(w.outcome(), StreamEnd::Truncated, "{name}");
        assert_eq!(w.final_body(), None, "{name}");
    }
}

#[test]
fn oversized_event_is_reported_and_the_stream_is_never_clean() {
    let text = OPENAI[0].1;
    let huge = format!("data: {}\n\n{text}", "x".repeat(MAX_EVENT_BYTES + 1));
    let mut w = StreamWatcher::new(O);
    assert_eq!(
        w.feed(huge.as_bytes()),
        Err(StreamError::Sse(SseError::EventTooLarge {
            limit: MAX_EVENT_BYTES
        }))
    );
    assert_eq!(w.outcome(), StreamEnd::Truncated);
    assert_eq!(
        w.usage(),
        Some(Tokens {
            input: 14,
            output: 30
        })
    );
}

#[test]
fn a_stream_cut_before_its_terminal_event_is_not_clean() {
    for (dialect, name, text) in all_fixtures() {
        let bytes = text.as_bytes();
        assert_eq!(
            watch(dialect, bytes).outcome(),
            StreamEnd::Clean,
            "{name} whole"
        );
        // Every line end, and the bytes around it, as a cut.
        let mut cuts: Vec<usize> = (0..bytes.len())
            .filter(|&i| bytes[i] == b'\n')
            .flat_map(|i| [i, i + 1])
            .filter(|&c| c < bytes.len())
            .collect();
        cuts.extend([0, 1, bytes.len() - 1]);
        for cut in cuts {
            let w = watch(dialect, &bytes[..cut]);
            assert_ne!(w.outcome(), StreamEnd::Clean, "{name} cut at {cut}");
            assert_eq!(w.final_body(), None, "{name} cut at {cut}");
        }
    }
}

#[test]
fn keepalives_change_nothing() {
    for (dialect, name, text) in all_fixtures() {
        let at = text.find("\n\n").unwrap() + 2;
        let ka = std::str::from_utf8(keepalive(dialect)).unwrap();
        let with = format!("{ka}{}{ka}{ka}{}", &text[..at], &text[at..]);
        let (a, b) = (
            watch(dialect, text.as_bytes()),
            watch(dialect, with.as_bytes()),
        );
        assert_eq!(a.outcome(), b.outcome(), "{name}");
        assert_eq!(a.usage(), b.usage(), "{name}");
        assert_eq!(a.final_body(), b.final_body(), "{name}");
    }
    assert_eq!(
        SseParser::new().feed(keepalive(A)),
        vec![Ok(SseEvent {
            event: Some("ping".into()),
            data: "{\"type\": \"ping\"}".into()
        })]
    );
    assert_eq!(SseParser::new().feed(keepalive(O)), vec![]);
}

#[test]
fn terminal_errors_are_the_shapes_the_sdks_raise() {
    let a = String::from_utf8(terminal_error(A, "overloaded_error", "Overloaded")).unwrap();
    let ev = SseParser::new().feed(a.as_bytes()).remove(0).unwrap();
    assert_eq!(ev.event.as_deref(), Some("error"));
    assert_eq!(
        serde_json::from_str::<Value>(&ev.data).unwrap(),
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    );
    let o = String::from_utf8(terminal_error(O, "api_error", "cut")).unwrap();
    let ev = SseParser::new().feed(o.as_bytes()).remove(0).unwrap();
    assert_eq!(ev.event, None);
    assert_eq!(
        serde_json::from_str::<Value>(&ev.data).unwrap(),
        json!({"error": {"message": "cut", "type": "api_error", "param": null, "code": "api_error"}})
    );
}

#[test]
fn recorded_streams_replayed_from_their_body_give_the_same_body_and_usage() {
    for (dialect, name, text) in all_fixtures() {
        let live = watch(dialect, text.as_bytes());
        let Some(stored) = live.final_body() else {
            assert_eq!(name, "incomplete");
            continue;
        };
        let replay = synthesize(dialect, &stored, true).expect("replayable");
        let w = watch(dialect, &replay);
        assert_eq!(w.outcome(), StreamEnd::Clean, "{name}");
        assert_eq!(w.usage(), live.usage(), "{name}");
        assert_eq!(body(&w), body(&live), "{name}");
    }
}

// --- Synthesized streams -------------------------------------------------------------------

fn event_names(bytes: &[u8]) -> Vec<String> {
    SseParser::new()
        .feed(bytes)
        .into_iter()
        .map(|e| e.unwrap().event.unwrap_or_default())
        .collect()
}

#[test]
fn synthesized_anthropic_stream_follows_the_api_event_order() {
    let stored = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "text", "text": "Hello"},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": [1, 2]}}
        ],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 10, "cache_read_input_tokens": 4, "output_tokens": 20}
    });
    let bytes = synthesize(A, &stored.to_string(), false).unwrap();
    assert_eq!(
        event_names(&bytes),
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let events = SseParser::new().feed(&bytes);
    let start: Value = serde_json::from_str(&events[0].as_ref().unwrap().data).unwrap();
    assert_eq!(start["message"]["content"], json!([]));
    assert_eq!(start["message"]["stop_reason"], Value::Null);
    assert_eq!(
        start["message"]["usage"],
        json!({"input_tokens": 10, "cache_read_input_tokens": 4, "output_tokens": 1})
    );
    let delta: Value = serde_json::from_str(&events[12].as_ref().unwrap().data).unwrap();
    assert_eq!(
        delta,
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
            "usage": {"output_tokens": 20, "input_tokens": 10, "cache_read_input_tokens": 4}})
    );
    let w = watch(A, &bytes);
    assert_eq!(w.outcome(), StreamEnd::Clean);
    assert_eq!(
        w.usage(),
        Some(Tokens {
            input: 14,
            output: 20
        })
    );
    assert_eq!(body(&w), stored);
}

#[test]
fn synthesized_openai_stream_has_role_then_content_then_finish_then_usage_then_done() {
    let stored = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 5, "model": "gpt-x",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there",
            "refusal": null, "annotations": []}, "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        "system_fingerprint": "fp_1", "service_tier": "default"
    });
    let bytes = synthesize(O, &stored.to_string(), true).unwrap();
    let events: Vec<_> = SseParser::new()
        .feed(&bytes)
        .into_iter()
        .map(|e| e.unwrap().data)
        .collect();
    assert_eq!(events.len(), 5);
    let chunk = |i: usize| serde_json::from_str::<Value>(&events[i]).unwrap();
    assert_eq!(
        chunk(0)["choices"][0]["delta"],
        json!({"role": "assistant", "content": "", "refusal": null, "annotations": []})
    );
    assert_eq!(chunk(0)["object"], "chat.completion.chunk");
    assert_eq!(chunk(0)["usage"], Value::Null);
    assert_eq!(chunk(0)["system_fingerprint"], "fp_1");
    assert_eq!(
        chunk(1)["choices"][0]["delta"],
        json!({"content": "Hi there"})
    );
    assert_eq!(chunk(2)["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunk(3)["choices"], json!([]));
    assert_eq!(chunk(3)["usage"], stored["usage"]);
    assert_eq!(events[4], "[DONE]");
    assert_eq!(body(&watch(O, &bytes)), stored);

    // Without include_usage: no usage chunk and no `usage` key.
    let bytes = synthesize(O, &stored.to_string(), false).unwrap();
    let w = watch(O, &bytes);
    assert!(!String::from_utf8(bytes).unwrap().contains("usage"));
    assert_eq!(w.outcome(), StreamEnd::Clean);
    assert_eq!(w.usage(), None);
    let mut without = stored.clone();
    without.as_object_mut().unwrap().remove("usage");
    assert_eq!(body(&w), without);
}

#[test]
fn synthesized_tool_call_sends_id_type_and_name_first_then_arguments() {
    let args = "{\"city\": \"Paris\", \"units\": \"c\", \"details\": [1, 2, 3, 4, 5, 6]}";
    let stored = json!({
        "id": "c", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "refusal": null,
            "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "weather", "arguments": args}}]},
            "logprobs": null, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    });
    let bytes = synthesize(O, &stored.to_string(), true).unwrap();
    let chunks: Vec<Value> = SseParser::new()
        .feed(&bytes)
        .into_iter()
        .map(|e| e.unwrap().data)
        .filter(|d| d != "[DONE]")
        .map(|d| serde_json::from_str(&d).unwrap())
        .collect();
    assert_eq!(
        chunks[1]["choices"][0]["delta"]["tool_calls"],
        json!([{"index": 0, "id": "call_1", "type": "function",
            "function": {"name": "weather", "arguments": ""}}])
    );
    let pieces: String = chunks[2..]
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(pieces, args);
    assert!(chunks.len() > 4, "arguments cut into several deltas");
    assert_eq!(body(&watch(O, &bytes)), stored);
}

#[test]
fn long_text_is_cut_into_a_few_deltas_at_character_boundaries() {
    let text = "\u{e9}t\u{e9} ".repeat(200);
    let ps = synthesize::pieces(&text);
    assert!(ps.len() <= synthesize::MAX_PIECES && ps.len() > 1);
    assert_eq!(ps.concat(), text);
    assert!(synthesize::pieces("").is_empty());
    assert_eq!(synthesize::pieces("short"), ["short"]);
    assert_eq!(synthesize::pieces(&text), ps, "deterministic");
}

#[test]
fn synthesize_refuses_what_is_not_an_answer() {
    assert!(matches!(
        synthesize(A, "not json", false),
        Err(SynthesizeError::NotJson(_))
    ));
    assert_eq!(
        synthesize(A, "{\"type\": \"message\"}", false),
        Err(SynthesizeError::NotAnAnswer("content"))
    );
    assert_eq!(
        synthesize(O, "[]", false),
        Err(SynthesizeError::NotAnAnswer("(top level)"))
    );
    assert_eq!(
        synthesize(O, "{\"id\": \"x\"}", false),
        Err(SynthesizeError::NotAnAnswer("choices"))
    );
}

// --- Properties ----------------------------------------------------------------------------

fn text() -> impl Strategy<Value = String> {
    "(\\PC|\n|\"|\\\\){0,120}"
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1.0e9f64..1.0e9).prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-z_]{1,8}", json_value(), 0..5)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

fn anthropic_block() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => (text(), prop::option::of(prop::collection::vec(json_object(), 0..3))).prop_map(
            |(t, cites)| {
                let mut b = json!({"type": "text", "text": t});
                if let Some(c) = cites {
                    b["citations"] = Value::Array(c);
                }
                b
            }
        ),
        2 => ("toolu_[a-zA-Z0-9]{4,10}", "[a-z_]{1,10}", json_object(),
            prop::sample::select(vec!["tool_use", "server_tool_use", "mcp_tool_use"]))
            .prop_map(|(id, name, input, kind)| json!({"type": kind, "id": id, "name": name, "input": input})),
        2 => (text(), "[A-Za-z0-9+/=]{0,80}")
            .prop_map(|(t, sig)| json!({"type": "thinking", "thinking": t, "signature": sig})),
        1 => "[A-Za-z0-9+/=]{1,80}".prop_map(|d| json!({"type": "redacted_thinking", "data": d})),
        1 => json_object().prop_map(|c| json!({"type": "web_search_tool_result",
            "tool_use_id": "srvtoolu_1", "content": c})),
    ]
}

fn anthropic_message() -> impl Strategy<Value = Value> {
    (
        "msg_[a-zA-Z0-9]{4,16}",
        "claude-[a-z0-9-]{1,16}",
        prop::collection::vec(anthropic_block(), 0..5),
        prop::sample::select(vec![
            "end_turn",
            "max_tokens",
            "stop_sequence",
            "tool_use",
            "pause_turn",
            "refusal",
        ]),
        prop::option::of("\\PC{1,8}"),
        (
            0u32..100_000,
            prop::option::of(0u32..10_000),
            prop::option::of(0u32..10_000),
            0u32..10_000,
            prop::option::of(prop::sample::select(vec!["standard", "priority"])),
        ),
    )
        .prop_map(
            |(id, model, content, stop, seq, (inp, cw, cr, out, tier))| {
                let mut usage = Map::new();
                usage.insert("input_tokens".into(), json!(inp));
                if let Some(n) = cw {
                    usage.insert("cache_creation_input_tokens".into(), json!(n));
                }
                if let Some(n) = cr {
                    usage.insert("cache_read_input_tokens".into(), json!(n));
                }
                usage.insert("output_tokens".into(), json!(out));
                if let Some(t) = tier {
                    usage.insert("service_tier".into(), json!(t));
                }
                json!({"id": id, "type": "message", "role": "assistant", "model": model,
                "content": content, "stop_reason": stop, "stop_sequence": seq, "usage": usage})
            },
        )
}

fn openai_tool_call() -> impl Strategy<Value = Value> {
    (
        "call_[a-zA-Z0-9]{4,12}",
        "[a-zA-Z_]{1,12}",
        prop_oneof![json_object().prop_map(|o| o.to_string()), text()],
    )
        .prop_map(|(id, name, args)| {
            json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}})
        })
}

fn openai_choice() -> impl Strategy<Value = Value> {
    (
        prop::option::of(text()),
        prop::option::of(text()),
        prop::option::of(prop::collection::vec(openai_tool_call(), 1..4)),
        any::<bool>(),
        prop::option::of(prop::collection::vec(("\\PC{1,6}", -20.0f64..0.0), 0..4)),
        prop::sample::select(vec!["stop", "length", "tool_calls", "content_filter"]),
    )
        .prop_map(|(content, refusal, calls, annotations, logprobs, finish)| {
            let mut message = json!({"role": "assistant", "content": content, "refusal": refusal});
            if let Some(c) = calls {
                message["tool_calls"] = Value::Array(c);
            }
            if annotations {
                message["annotations"] = json!([]);
            }
            let logprobs = logprobs.map_or(Value::Null, |lp| {
                let content: Vec<Value> = lp
                    .into_iter()
                    .map(|(t, p)| {
                        json!({"token": t, "logprob": p, "bytes": t.as_bytes(),
                        "top_logprobs": []})
                    })
                    .collect();
                json!({"content": content, "refusal": null})
            });
            json!({"index": 0, "message": message, "logprobs": logprobs, "finish_reason": finish})
        })
}

fn openai_completion() -> impl Strategy<Value = Value> {
    (
        "chatcmpl-[a-zA-Z0-9]{4,16}",
        0u64..2_000_000_000,
        "gpt-[a-z0-9.-]{1,12}",
        prop::collection::vec(openai_choice(), 1..4),
        (0u32..100_000, 0u32..10_000),
        prop::option::of("fp_[a-z0-9]{6,10}"),
        prop::option::of(prop::sample::select(vec!["default", "flex"])),
    )
        .prop_map(|(id, created, model, choices, (p, c), fp, tier)| {
            let choices: Vec<Value> = choices
                .into_iter()
                .enumerate()
                .map(|(i, mut ch)| {
                    ch["index"] = json!(i);
                    ch
                })
                .collect();
            let mut m = json!({"id": id, "object": "chat.completion", "created": created,
                "model": model, "choices": choices,
                "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}});
            if let Some(fp) = fp {
                m["system_fingerprint"] = json!(fp);
            }
            if let Some(t) = tier {
                m["service_tier"] = json!(t);
            }
            m
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn anthropic_reassemble_of_synthesize_is_the_stored_message(
        m in anthropic_message(),
        sizes in prop::collection::vec(1usize..300, 1..8),
    ) {
        let stored = m.to_string();
        let bytes = synthesize(A, &stored, false).unwrap();
        let w = watch_in_chunks(A, &bytes, &sizes);
        prop_assert_eq!(w.outcome(), StreamEnd::Clean);
        prop_assert_eq!(w.usage(), usage(A, &m));
        prop_assert_eq!(body(&w), m);
    }

    #[test]
    fn openai_reassemble_of_synthesize_is_the_stored_completion(
        m in openai_completion(),
        sizes in prop::collection::vec(1usize..300, 1..8),
    ) {
        let stored = m.to_string();
        let bytes = synthesize(O, &stored, true).unwrap();
        let w = watch_in_chunks(O, &bytes, &sizes);
        prop_assert_eq!(w.outcome(), StreamEnd::Clean);
        prop_assert_eq!(w.usage(), usage(O, &m));
        prop_assert_eq!(body(&w), m.clone());

        let w = watch(O, &synthesize(O, &stored, false).unwrap());
        prop_assert_eq!(w.outcome(), StreamEnd::Clean);
        prop_assert_eq!(w.usage(), None);
        let mut without = m;
        without.as_object_mut().unwrap().remove("usage");
        prop_assert_eq!(body(&w), without);
    }

    #[test]
    fn each_synthesized_event_is_sse_encoded_compact_json(
        m in prop_oneof![
            anthropic_message().prop_map(|m| (A, m)),
            openai_completion().prop_map(|m| (O, m)),
        ],
        include_usage in any::<bool>(),
    ) {
        // The synthesizer writes its events in place: each must be what `sse::encode` makes
        // of serde_json's own compact text of the event's data (the same bytes as before).
        let (dialect, m) = m;
        let bytes = synthesize(dialect, &m.to_string(), include_usage).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        let mut parser = SseParser::new();
        let mut again = String::new();
        for ev in parser.feed(text.as_bytes()) {
            let ev = ev.unwrap();
            let data = if ev.data == "[DONE]" || ev.event.as_deref() == Some("ping") {
                ev.data.clone()
            } else {
                serde_json::from_str::<Value>(&ev.data).unwrap().to_string()
            };
            again.push_str(&sse::encode(ev.event.as_deref(), &data));
        }
        prop_assert_eq!(again, text);
    }

    #[test]
    fn synthesized_stream_cut_anywhere_is_not_clean(
        m in prop_oneof![
            anthropic_message().prop_map(|m| (A, m)),
            openai_completion().prop_map(|m| (O, m)),
        ],
        frac in 0.0f64..1.0,
    ) {
        let (dialect, m) = m;
        let bytes = synthesize(dialect, &m.to_string(), true).unwrap();
        let cut = ((bytes.len() as f64) * frac) as usize;
        let w = watch(dialect, &bytes[..cut.min(bytes.len() - 1)]);
        prop_assert_ne!(w.outcome(), StreamEnd::Clean);
        prop_assert_eq!(w.final_body(), None);
    }

    #[test]
    fn recorded_streams_split_anywhere_give_the_same_result(
        which in 0usize..13,
        sizes in prop::collection::vec(1usize..64, 1..10),
    ) {
        let (dialect, name, text) = all_fixtures().swap_remove(which);
        let whole = watch(dialect, text.as_bytes());
        let split = watch_in_chunks(dialect, text.as_bytes(), &sizes);
        prop_assert_eq!(whole.outcome(), split.outcome(), "{}", name);
        prop_assert_eq!(whole.usage(), split.usage(), "{}", name);
        prop_assert_eq!(whole.final_body(), split.final_body(), "{}", name);
    }
}
