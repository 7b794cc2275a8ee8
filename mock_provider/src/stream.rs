//! The four providers' streamed answers (OpenAI and Perplexity `chat.completion.chunk`s,
//! Anthropic's typed events, Gemini's `GenerateContentResponse` chunks) carrying the same text,
//! ids and token counts as the JSON answer, and the timed body that sends them one event at a
//! time, with the stream faults (`fixtures/providers/*/stream.txt` show the real streams).

use std::io;
use std::time::Duration;

use axum::body::{Body, Bytes};
use serde_json::{json, Value};

use crate::markers::{StreamFault, MAX_DELAY_MS};
use crate::wire::{self, Answer, Api};

/// Where an event sits in a stream. The stream faults cut after a few `Content` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Before the text: OpenAI's role chunk, Anthropic's `message_start` … `ping`.
    Lead,
    /// One piece of the answer's text.
    Content,
    /// After the text: the stop reason, the usage, `[DONE]`, `message_stop`.
    Tail,
}

/// One streamed event: an optional SSE `event:` name and its `data:` JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub part: Part,
    pub name: Option<&'static str>,
    pub data: String,
}

impl Event {
    fn new(part: Part, name: Option<&'static str>, data: Value) -> Event {
        Event {
            part,
            name,
            data: data.to_string(),
        }
    }
}

/// How events are written on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Server-sent events: `[event: <name>\n]data: <json>\n\n`.
    Sse,
    /// Gemini's `:streamGenerateContent` without `alt=sse`: one JSON array, sent an element at
    /// a time.
    JsonArray,
}

/// Most bytes in one text delta (a long answer's one long word is cut into several).
const MAX_PIECE: usize = 4096;

/// The answer's text cut into deltas: a word with the whitespace before it, at most
/// `MAX_PIECE` bytes each. Joined, they are `content` again.
pub fn text_pieces(content: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut prev_space = false;
    for (i, c) in content.char_indices() {
        let space = c.is_whitespace();
        if i > start && ((space && !prev_space) || i - start + c.len_utf8() > MAX_PIECE) {
            pieces.push(&content[start..i]);
            start = i;
        }
        prev_space = space;
    }
    if start < content.len() {
        pieces.push(&content[start..]);
    }
    pieces
}

/// What a streamed request asked for besides the answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// OpenAI `stream_options.include_usage`: a usage chunk before `[DONE]`.
    pub include_usage: bool,
}

/// The events that stream `a` from `model`, as `api` sends them. `now` is the Unix time in
/// seconds.
pub fn events(api: Api, model: &str, a: &Answer, now: u64, opts: Options) -> Vec<Event> {
    match api {
        Api::OpenAi | Api::Perplexity => chat_chunks(api, model, a, now, opts),
        Api::Anthropic => anthropic_events(model, a),
        Api::Gemini => gemini_chunks(model, a),
    }
}

fn chat_chunks(api: Api, model: &str, a: &Answer, now: u64, opts: Options) -> Vec<Event> {
    let id = wire::response_id(api, &a.digest);
    let perplexity = api == Api::Perplexity;
    let (citations, search_results) = wire::perplexity_sources(&a.digest);
    // Perplexity's choices carry the text so far in `message` beside the `delta`.
    let mut so_far = String::new();
    let chunk = |choices: Value, usage: Option<Value>| {
        let mut c = json!({"id": id, "object": "chat.completion.chunk", "created": now,
            "model": model, "choices": choices});
        if perplexity {
            c["citations"] = citations.clone();
            c["search_results"] = search_results.clone();
        } else {
            c["service_tier"] = json!("default");
            c["system_fingerprint"] = Value::Null;
        }
        match usage {
            Some(u) => c["usage"] = u,
            None if opts.include_usage && !perplexity => c["usage"] = Value::Null,
            None => {}
        }
        c
    };
    let choice = |delta: Value, so_far: &str, finish: Option<&str>| {
        let mut c = json!({"index": 0, "delta": delta, "finish_reason": finish});
        if perplexity {
            c["message"] = json!({"role": "assistant", "content": so_far});
        } else {
            c["logprobs"] = Value::Null;
        }
        json!([c])
    };
    let mut out = Vec::new();
    let role = if perplexity {
        json!({"role": "assistant", "content": ""})
    } else {
        json!({"role": "assistant", "content": "", "refusal": null})
    };
    out.push(Event::new(
        Part::Lead,
        None,
        chunk(choice(role, "", None), None),
    ));
    for piece in text_pieces(&a.content) {
        so_far.push_str(piece);
        let delta = if perplexity {
            json!({"role": "assistant", "content": piece})
        } else {
            json!({ "content": piece })
        };
        out.push(Event::new(
            Part::Content,
            None,
            chunk(choice(delta, &so_far, None), None),
        ));
    }
    let stop = wire::stop_reason(api, a.truncated);
    let (last_delta, last_usage) = if perplexity {
        let usage = serde_json::to_value(wire::perplexity_usage(a)).unwrap_or_default();
        (json!({"role": "assistant", "content": ""}), Some(usage))
    } else {
        (json!({}), None)
    };
    out.push(Event::new(
        Part::Tail,
        None,
        chunk(choice(last_delta, &so_far, Some(stop)), last_usage),
    ));
    if opts.include_usage && !perplexity {
        let usage = serde_json::to_value(wire::openai_usage(a)).unwrap_or_default();
        out.push(Event::new(Part::Tail, None, chunk(json!([]), Some(usage))));
    }
    out.push(Event {
        part: Part::Tail,
        name: None,
        data: "[DONE]".to_owned(),
    });
    out
}

fn anthropic_events(model: &str, a: &Answer) -> Vec<Event> {
    let ev = |part, name, data| Event::new(part, Some(name), data);
    let mut out = vec![
        ev(
            Part::Lead,
            "message_start",
            json!({"type": "message_start", "message": {
                "id": wire::response_id(Api::Anthropic, &a.digest), "type": "message",
                "role": "assistant", "model": model, "content": [], "stop_reason": null,
                "stop_sequence": null, "usage": {"input_tokens": a.input_tokens,
                    "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                    "output_tokens": 1, "service_tier": "standard"}}}),
        ),
        ev(
            Part::Lead,
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}),
        ),
        ev(Part::Lead, "ping", json!({"type": "ping"})),
    ];
    for piece in text_pieces(&a.content) {
        out.push(ev(
            Part::Content,
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": piece}}),
        ));
    }
    out.push(ev(
        Part::Tail,
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    out.push(ev(
        Part::Tail,
        "message_delta",
        json!({"type": "message_delta",
            "delta": {"stop_reason": wire::stop_reason(Api::Anthropic, a.truncated),
                "stop_sequence": null},
            "usage": {"output_tokens": a.output_tokens}}),
    ));
    out.push(ev(
        Part::Tail,
        "message_stop",
        json!({"type": "message_stop"}),
    ));
    out
}

fn gemini_chunks(model: &str, a: &Answer) -> Vec<Event> {
    let response_id = wire::response_id(Api::Gemini, &a.digest);
    let chunk = |text: &str| {
        json!({"candidates": [{"content": {"parts": [{"text": text}], "role": "model"},
            "index": 0}], "modelVersion": model, "responseId": response_id})
    };
    let mut out: Vec<Event> = text_pieces(&a.content)
        .into_iter()
        .map(|piece| Event::new(Part::Content, None, chunk(piece)))
        .collect();
    let mut last = chunk("");
    last["candidates"][0]["finishReason"] = json!(wire::stop_reason(Api::Gemini, a.truncated));
    last["usageMetadata"] = json!({"promptTokenCount": a.input_tokens,
        "candidatesTokenCount": a.output_tokens,
        "totalTokenCount": a.input_tokens + a.output_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": a.input_tokens}]});
    out.push(Event::new(Part::Tail, None, last));
    out
}

/// The provider's in-stream error event (the `stream_error` fault): Anthropic's `error`
/// event (overloaded), an OpenAI `data: {"error": …}` chunk, Gemini's error object, and
/// Perplexity's `error` event (which its SDK raises on).
pub fn error_event(api: Api) -> Event {
    match api {
        Api::Anthropic => Event::new(
            Part::Tail,
            Some("error"),
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ),
        Api::OpenAi => Event::new(
            Part::Tail,
            None,
            json!({"error": {"message": "The server had an error while processing your request. Sorry about that!",
                "type": "server_error", "param": null, "code": null}}),
        ),
        Api::Gemini => Event::new(
            Part::Tail,
            None,
            json!({"error": {"code": 503, "message": "The model is overloaded. Please try again later.",
                "status": "UNAVAILABLE"}}),
        ),
        Api::Perplexity => Event::new(
            Part::Tail,
            Some("error"),
            json!({"error": {"message": "Internal server error.", "type": "internal_server_error",
                "code": 500}}),
        ),
    }
}

/// How the body ends once its chunks are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The body ends normally.
    Finish,
    /// The connection closes mid-body (no terminating chunk).
    Abort,
    /// Nothing more is sent until `MAX_DELAY_MS` has passed; then as `Abort`.
    Hang,
}

/// Content events sent before a stream fault strikes.
pub const CONTENT_BEFORE_FAULT: usize = 2;

/// The bytes to send, one chunk per event, and how the body ends, for `events` under `fault`.
pub fn script(
    api: Api,
    events: &[Event],
    framing: Framing,
    fault: Option<StreamFault>,
) -> (Vec<Bytes>, Ending) {
    let kept: Vec<&Event> = match fault {
        None | Some(StreamFault::Linger) => events.iter().collect(),
        Some(_) => {
            let mut content = 0;
            events
                .iter()
                .take_while(|e| match e.part {
                    Part::Lead => true,
                    Part::Content => {
                        content += 1;
                        content <= CONTENT_BEFORE_FAULT
                    }
                    Part::Tail => false,
                })
                .collect()
        }
    };
    let error = (fault == Some(StreamFault::Error)).then(|| error_event(api));
    let mut out: Vec<Bytes> = kept
        .into_iter()
        .chain(error.as_ref())
        // The JSON array has no `[DONE]`: its end is the closing bracket.
        .filter(|e| framing == Framing::Sse || e.data != "[DONE]")
        .enumerate()
        .map(|(i, e)| encode(e, framing, i == 0))
        .collect();
    let ending = match fault {
        None | Some(StreamFault::Error) => Ending::Finish,
        Some(StreamFault::Truncate) => Ending::Abort,
        Some(StreamFault::Hang | StreamFault::Linger) => Ending::Hang,
    };
    let whole = !matches!(fault, Some(StreamFault::Truncate | StreamFault::Hang));
    if framing == Framing::JsonArray && whole {
        out.push(Bytes::from_static(b"]"));
    }
    (out, ending)
}

fn encode(e: &Event, framing: Framing, first: bool) -> Bytes {
    Bytes::from(match (framing, e.name) {
        (Framing::Sse, Some(name)) => format!("event: {name}\ndata: {}\n\n", e.data),
        (Framing::Sse, None) => format!("data: {}\n\n", e.data),
        (Framing::JsonArray, _) => format!("{}{}", if first { "[" } else { ",\r\n" }, e.data),
    })
}

/// Waits around the events of a stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pacing {
    /// Before the first chunk (the headers are already sent).
    pub first: Duration,
    /// Before each later chunk.
    pub between: Duration,
}

/// A body that sends `chunks` one at a time, waiting as `pacing` says, then ends as `ending`
/// says. Each wait leaves the body pending, so hyper flushes what was written before it.
/// `open` lives as long as the body: until it ends, or its connection goes.
pub fn body<T: Send + 'static>(
    chunks: Vec<Bytes>,
    pacing: Pacing,
    ending: Ending,
    open: T,
) -> Body {
    struct Feed<T> {
        chunks: std::vec::IntoIter<Bytes>,
        sent: usize,
        pacing: Pacing,
        ending: Option<Ending>,
        _open: T,
    }
    let feed = Feed {
        chunks: chunks.into_iter(),
        sent: 0,
        pacing,
        ending: Some(ending),
        _open: open,
    };
    let stream = futures::stream::unfold(feed, |mut f| async move {
        if let Some(chunk) = f.chunks.next() {
            let wait = if f.sent == 0 {
                f.pacing.first
            } else {
                f.pacing.between
            };
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            f.sent += 1;
            return Some((Ok(chunk), f));
        }
        let hold = match f.ending.take()? {
            Ending::Finish => return None,
            // Long enough for hyper to flush what it has before the connection goes.
            Ending::Abort => Duration::from_millis(20),
            Ending::Hang => Duration::from_millis(MAX_DELAY_MS),
        };
        tokio::time::sleep(hold).await;
        // An error from the body makes hyper close the connection without ending the body.
        Some((Err(io::Error::other("mock: stream cut")), f))
    });
    Body::from_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(content: &str) -> Answer {
        Answer {
            content: content.to_owned(),
            input_tokens: 7,
            output_tokens: content.split_whitespace().count() as u64,
            truncated: false,
            digest: "ab".repeat(32),
        }
    }

    fn data(e: &Event) -> Value {
        serde_json::from_str(&e.data).unwrap()
    }

    #[test]
    fn pieces_join_back_and_cut_at_words_and_size() {
        let text = "[openai/m] 1a2b3c4d  What is\tthe capital?";
        let pieces = text_pieces(text);
        assert_eq!(pieces.concat(), text);
        assert_eq!(
            pieces,
            [
                "[openai/m]",
                " 1a2b3c4d",
                "  What",
                " is",
                "\tthe",
                " capital?"
            ]
        );
        let long = format!("a {}", "é".repeat(5000));
        let pieces = text_pieces(&long);
        assert_eq!(pieces.concat(), long);
        assert!(
            pieces.iter().all(|p| p.len() <= MAX_PIECE),
            "{}",
            pieces.len()
        );
        assert!(pieces.len() >= 3);
        assert!(text_pieces("").is_empty());
    }

    #[test]
    fn openai_chunks_follow_the_rules_for_usage_and_done() {
        let a = answer("one two three");
        let plain = events(Api::OpenAi, "m", &a, 5, Options::default());
        assert_eq!(plain.len(), 1 + 3 + 1 + 1);
        assert_eq!(plain.last().unwrap().data, "[DONE]");
        let first = data(&plain[0]);
        assert_eq!(
            first["choices"][0]["delta"],
            json!({"role": "assistant", "content": "", "refusal": null})
        );
        assert!(first.get("usage").is_none());
        let stop = data(&plain[4]);
        assert_eq!(stop["choices"][0]["delta"], json!({}));
        assert_eq!(stop["choices"][0]["finish_reason"], "stop");

        let with = events(
            Api::OpenAi,
            "m",
            &a,
            5,
            Options {
                include_usage: true,
            },
        );
        assert_eq!(with.len(), plain.len() + 1);
        for e in &with[..5] {
            let v = data(e);
            assert_eq!(v["usage"], Value::Null);
            assert!(v.get("usage").is_some());
            assert_eq!(v["object"], "chat.completion.chunk");
            assert_eq!(v["id"], wire::response_id(Api::OpenAi, &a.digest));
        }
        let usage = data(&with[5]);
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["prompt_tokens"], 7);
        assert_eq!(usage["usage"]["completion_tokens"], 3);
    }

    #[test]
    fn perplexity_chunks_carry_sources_message_and_final_usage() {
        let a = answer("one two");
        let ev = events(Api::Perplexity, "sonar", &a, 5, Options::default());
        let json_body: Value =
            serde_json::from_str(&wire::success_body(Api::Perplexity, "sonar", &a, 5)).unwrap();
        for e in &ev[..ev.len() - 1] {
            let v = data(e);
            assert_eq!(v["citations"], json_body["citations"]);
            assert_eq!(v["search_results"], json_body["search_results"]);
        }
        assert_eq!(data(&ev[2])["choices"][0]["message"]["content"], "one two");
        assert!(data(&ev[2]).get("usage").is_none());
        let last = data(&ev[3]);
        assert_eq!(last["usage"], json_body["usage"]);
        assert_eq!(last["choices"][0]["finish_reason"], "stop");
        assert_eq!(ev[4].data, "[DONE]");
    }

    #[test]
    fn faults_cut_after_a_few_content_events() {
        let a = answer("a b c d e f");
        let ev = events(Api::Anthropic, "m", &a, 0, Options::default());
        let (all, end) = script(Api::Anthropic, &ev, Framing::Sse, None);
        assert_eq!((all.len(), end), (ev.len(), Ending::Finish));
        let (cut, end) = script(Api::Anthropic, &ev, Framing::Sse, Some(StreamFault::Error));
        assert_eq!(end, Ending::Finish);
        assert_eq!(cut.len(), 3 + CONTENT_BEFORE_FAULT + 1);
        assert!(cut.last().unwrap().starts_with(b"event: error\ndata: "));
        let (cut, end) = script(
            Api::Anthropic,
            &ev,
            Framing::Sse,
            Some(StreamFault::Truncate),
        );
        assert_eq!((cut.len(), end), (3 + CONTENT_BEFORE_FAULT, Ending::Abort));
        let (_, end) = script(Api::Anthropic, &ev, Framing::Sse, Some(StreamFault::Hang));
        assert_eq!(end, Ending::Hang);
        // Lingering: every event, the terminal one included, then the connection stays open.
        let (lingering, end) = script(Api::Anthropic, &ev, Framing::Sse, Some(StreamFault::Linger));
        assert_eq!((lingering, end), (all, Ending::Hang));
        let ev = events(Api::Gemini, "g", &a, 0, Options::default());
        let (lingering, _) = script(
            Api::Gemini,
            &ev,
            Framing::JsonArray,
            Some(StreamFault::Linger),
        );
        assert_eq!(lingering.last().unwrap().as_ref(), b"]");
    }

    #[test]
    fn gemini_json_array_framing_is_one_array_of_the_chunks() {
        let a = answer("x y z");
        let ev = events(Api::Gemini, "g", &a, 0, Options::default());
        let (chunks, _) = script(Api::Gemini, &ev, Framing::JsonArray, None);
        let joined: Vec<u8> = chunks.concat();
        let v: Value = serde_json::from_slice(&joined).unwrap();
        let arr = v.as_array().unwrap();
        assert_eq!(arr.len(), 4);
        assert_eq!(arr[3]["candidates"][0]["finishReason"], "STOP");
        assert_eq!(arr[3]["usageMetadata"]["candidatesTokenCount"], 3);
    }
}
