//! Streamed `/v1/ask` calls: each provider's request in its streaming mode, and a reader of its
//! server-sent events that hands back the text deltas as they arrive and, at the end, the same
//! [`Completion`] the non-streaming call gives (or a typed [`ProviderError`]).
//!
//! The request is [`build_request`]'s, plus: OpenAI `"stream": true, "stream_options":
//! {"include_usage": true}` (its usage comes in one chunk before `[DONE]`); Anthropic and
//! Perplexity `"stream": true` (Perplexity puts the usage on its last chunk unasked); Gemini
//! the `:streamGenerateContent?alt=sse` endpoint with the same body. All ask for
//! `accept: text/event-stream`.
//!
//! How each stream becomes a [`Completion`], read as the non-streaming adapter reads its body:
//! - OpenAI, Perplexity: the text is the join of `choices[0].delta.content` (OpenAI: or, when
//!   the answer is a refusal, of `delta.refusal`); the model is the chunks' `model`; the tokens
//!   are the usage chunk's `prompt_tokens` / `completion_tokens`; Perplexity's citations are the
//!   last `citations` sent (failing that, the URLs of `search_results`). The stream ends with
//!   `data: [DONE]` (Perplexity: or with a chunk that has a `finish_reason` and the usage).
//! - Anthropic: the text is the join of the `text_delta`s (thinking and tool deltas left out);
//!   the model is `message_start`'s; the tokens are `message_start`'s usage with the last
//!   `message_delta`'s counts over it, the input counting cache writes and reads
//!   ([`super::anthropic::input_tokens`]). The stream ends with `message_stop`.
//! - Gemini: the text is the join of the first candidate's text parts of every chunk (thought
//!   parts left out); the model is `modelVersion`; the tokens are the last `usageMetadata`'s
//!   (output = candidates + thoughts). The stream ends with a chunk whose candidate has a
//!   `finishReason`, or a blocked prompt's `promptFeedback` (`upstream_bad_request`, as in
//!   the non-streaming adapter).
//!
//! The deltas, joined, are always the completion's `content`; an empty answer is one, as in
//! the non-streaming adapters ([`Completion::is_cacheable`] is the caller's to ask).
//!
//! Errors, the first one winning (the events after it are not read):
//! - an error event (Anthropic `event: error`, an OpenAI or Gemini `data: {"error": …}`,
//!   Perplexity's `event: error`) maps as the same body would with the HTTP status it stands
//!   for (its numeric `error.code`, else its `error.type`/`status`: `overloaded_error` is 529,
//!   `UNAVAILABLE` 503, …; anything unknown 500): `upstream_overloaded`,
//!   `upstream_server_error`, `upstream_rate_limited`, …;
//! - an event that is not JSON, does not match its schema or is too large, and a stream that
//!   ended cleanly without its model, text field or usage: `upstream_malformed`;
//! - a stream that ended before its terminal event: `upstream_unreachable`, as the broker calls
//!   a connection closed mid-body of a non-streamed answer (transient: it may work if tried
//!   again).
//!
//! These errors carry no `upstream_status`: the stream's own response was a 2xx. A non-2xx
//! answer to the stream request is an ordinary JSON error: the broker reads it with
//! [`super::parse_response`].

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;

use super::{anthropic, chat_completions, gemini, perplexity};
use super::{build_request, error_from_body, header, UpstreamRequest};
use crate::api::dropin::stream::sse::{SseEvent, SseParser};
use crate::providers::completion::{
    Completion, CompletionRequest, ProviderError, ProviderErrorCode,
};
use crate::providers::Provider;

/// Builds `provider`'s streaming request for `req`: [`build_request`]'s, in streaming mode.
pub fn build_stream_request(
    provider: Provider,
    req: &CompletionRequest,
    base_url: &str,
    api_key: &str,
) -> UpstreamRequest {
    let mut r = build_request(provider, req, base_url, api_key);
    match provider {
        Provider::OpenAi => {
            r.body = with_fields(
                &r.body,
                r#""stream":true,"stream_options":{"include_usage":true}"#,
            )
        }
        Provider::Anthropic | Provider::Perplexity => {
            r.body = with_fields(&r.body, r#""stream":true"#)
        }
        Provider::Gemini => r.url = provider.stream_completion_url(base_url, &req.model),
    }
    r.headers.push(header("accept", "text/event-stream"));
    r
}

/// `body`, a JSON object, with `fields` (`"k":v,…`) added at its end.
fn with_fields(body: &str, fields: &str) -> String {
    // The adapters' bodies are objects with a model or contents field: never `{}`.
    match body.strip_suffix('}') {
        Some(head) => format!("{head},{fields}}}"),
        None => body.to_owned(),
    }
}

/// One streamed provider call being read: fed the response body's bytes as they arrive, it
/// returns the text deltas, and at the end the completion.
#[derive(Debug)]
pub struct CompletionStream {
    provider: Provider,
    parser: SseParser,
    reader: Reader,
    content: String,
    /// The first error seen; nothing is read after it.
    failure: Option<ProviderError>,
    /// The terminal event came; nothing is read after it.
    done: bool,
}

impl CompletionStream {
    pub fn new(provider: Provider) -> CompletionStream {
        let reader = match provider {
            Provider::OpenAi | Provider::Perplexity => Reader::Chat(ChatReader::default()),
            Provider::Anthropic => Reader::Anthropic(AnthropicReader::default()),
            Provider::Gemini => Reader::Gemini(GeminiReader::default()),
        };
        CompletionStream {
            provider,
            parser: SseParser::new(),
            reader,
            content: String::new(),
            failure: None,
            done: false,
        }
    }

    /// Feeds the next bytes of the body (split anywhere); returns the text deltas of the events
    /// they complete, in order, none empty.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<String> {
        let mut deltas = Vec::new();
        for ev in self.parser.feed(chunk) {
            if self.failure.is_some() || self.done {
                continue;
            }
            let step = match ev {
                Ok(ev) => self.read(&ev),
                Err(e) => Err(malformed(self.provider, &format!("a {e}"))),
            };
            match step {
                Ok(Some(delta)) if !delta.is_empty() => {
                    self.content.push_str(&delta);
                    deltas.push(delta);
                }
                Ok(_) => {}
                Err(e) => self.failure = Some(e),
            }
        }
        deltas
    }

    /// The stream said all it will: its terminal event came, or an event failed it (the
    /// provider's error event, one that could not be read). What follows is not read, so
    /// [`finish`](Self::finish) answers now what it would at the body's end.
    pub fn ended(&self) -> bool {
        self.done || self.failure.is_some()
    }

    /// The completion, once the body has ended; or why the stream gave none.
    pub fn finish(self) -> Result<Completion, ProviderError> {
        let p = self.provider;
        if let Some(e) = self.failure {
            return Err(e);
        }
        if !self.done {
            return Err(ProviderError::new(
                ProviderErrorCode::UpstreamUnreachable,
                format!("{p}'s stream ended before its terminal event"),
            ));
        }
        let content = self.content;
        let m = |what: &str| malformed(p, what);
        match self.reader {
            Reader::Chat(r) => {
                let model = r.model.ok_or_else(|| m("no model"))?;
                if !r.text_field {
                    return Err(m("no choices[0].delta.content"));
                }
                let tokens = r.usage.ok_or_else(|| m("no usage"))?.tokens().map_err(m)?;
                let citations = if p == Provider::Perplexity {
                    r.sources.into_citations()
                } else {
                    Vec::new()
                };
                Ok(Completion {
                    model,
                    content,
                    citations,
                    tokens,
                })
            }
            Reader::Anthropic(r) => {
                let model = r.model.ok_or_else(|| m("no model"))?;
                let tokens = r.usage.ok_or_else(|| m("no usage"))?.tokens().map_err(m)?;
                Ok(Completion {
                    model,
                    content,
                    citations: Vec::new(),
                    tokens,
                })
            }
            Reader::Gemini(r) => {
                if !r.candidate {
                    return Err(
                        gemini::blocked(None, r.feedback).unwrap_or_else(|| m("no candidates"))
                    );
                }
                let model = r.model.ok_or_else(|| m("no modelVersion"))?;
                let usage = r.usage.ok_or_else(|| m("no usageMetadata"))?;
                let tokens = gemini::usage_tokens(usage).map_err(m)?;
                Ok(Completion {
                    model,
                    content,
                    citations: Vec::new(),
                    tokens,
                })
            }
        }
    }

    /// Reads one event: its text delta, if any.
    fn read(&mut self, ev: &SseEvent) -> Result<Option<String>, ProviderError> {
        let p = self.provider;
        let data = ev.data.trim();
        if data.is_empty() {
            return Ok(None);
        }
        if let Reader::Chat(_) = self.reader {
            if data == "[DONE]" {
                self.done = true;
                return Ok(None);
            }
        }
        let probe: Probe = parse(p, data)?;
        if probe.error.is_some() || ev.event.as_deref() == Some("error") {
            return Err(error_event(p, data));
        }
        match &mut self.reader {
            Reader::Chat(r) => {
                let delta = r.read(p, parse(p, data)?);
                // Perplexity may end without `[DONE]`: its stop and usage are its end.
                if p == Provider::Perplexity && r.finished && r.usage.is_some() {
                    self.done = true;
                }
                Ok(delta)
            }
            Reader::Anthropic(r) => {
                let ev: AnthropicEvent = parse(p, data)?;
                if ev.kind == "message_stop" {
                    self.done = true;
                }
                Ok(r.read(ev))
            }
            Reader::Gemini(r) => {
                let delta = r.read(parse(p, data)?);
                if r.finished {
                    self.done = true;
                }
                Ok(delta)
            }
        }
    }
}

/// What is kept of a stream besides its text, per wire format.
#[derive(Debug)]
enum Reader {
    Chat(ChatReader),
    Anthropic(AnthropicReader),
    Gemini(GeminiReader),
}

/// Whether any event is an error event: the `error` field all four formats use for one.
#[derive(Deserialize)]
struct Probe {
    error: Option<IgnoredAny>,
}

fn parse<'de, T: Deserialize<'de>>(p: Provider, data: &'de str) -> Result<T, ProviderError> {
    serde_json::from_str(data).map_err(|e| {
        let what = if e.is_syntax() || e.is_eof() {
            "an event that is not valid JSON"
        } else {
            "an event that does not match its schema"
        };
        malformed(p, what)
    })
}

fn malformed(p: Provider, what: &str) -> ProviderError {
    ProviderError::new(
        ProviderErrorCode::UpstreamMalformed,
        format!("{p} sent a stream with {what}"),
    )
}

/// The typed error of an error event's `data`, classified as the same body with the HTTP
/// status it stands for.
fn error_event(p: Provider, data: &str) -> ProviderError {
    let value: Value = serde_json::from_str(data).unwrap_or(Value::Null);
    let error = value.get("error");
    let code = error
        .and_then(|e| e.get("code"))
        .and_then(Value::as_u64)
        .filter(|c| (400..=599).contains(c));
    let kind = error
        .and_then(|e| e.get("type").or_else(|| e.get("status")))
        .and_then(Value::as_str);
    let status = code.map_or_else(|| kind_status(kind), |c| c as u16);
    let mut e = error_from_body(p, status, None, data, "(in its stream)");
    e.upstream_status = None;
    e
}

/// The HTTP status an error event's `type` (Anthropic, OpenAI, Perplexity) or `status`
/// (Gemini) stands for.
fn kind_status(kind: Option<&str>) -> u16 {
    match kind.unwrap_or("") {
        "overloaded_error" => 529,
        "UNAVAILABLE" => 503,
        "rate_limit_error"
        | "rate_limit_exceeded"
        | "insufficient_quota"
        | "RESOURCE_EXHAUSTED" => 429,
        "authentication_error" | "UNAUTHENTICATED" => 401,
        "permission_error" | "PERMISSION_DENIED" => 403,
        "not_found_error" | "NOT_FOUND" => 404,
        "request_too_large" => 413,
        "invalid_request_error" | "INVALID_ARGUMENT" | "FAILED_PRECONDITION" => 400,
        "timeout_error" | "DEADLINE_EXCEEDED" => 504,
        _ => 500,
    }
}

// --- Chat Completions (OpenAI, Perplexity) ---

#[derive(Deserialize)]
struct ChatChunk {
    model: Option<String>,
    choices: Option<Vec<ChatChoice>>,
    usage: Option<chat_completions::Usage>,
    #[serde(flatten)]
    sources: perplexity::Sources,
}

#[derive(Deserialize)]
struct ChatChoice {
    index: Option<u64>,
    delta: Option<ChatDelta>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChatDelta {
    content: Option<String>,
    refusal: Option<String>,
}

/// Which of OpenAI's two text fields the answer is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChatText {
    Content,
    Refusal,
}

#[derive(Default)]
struct ChatReader {
    model: Option<String>,
    usage: Option<chat_completions::Usage>,
    sources: perplexity::Sources,
    /// A text field (a `content` string, OpenAI: or a `refusal`) came, even an empty one.
    text_field: bool,
    /// The field the text comes in: the first to bring any. The non-streaming adapter reads
    /// `content`, or `refusal` when the content is null; a stream brings one of the two.
    text: Option<ChatText>,
    /// The first choice had its `finish_reason`.
    finished: bool,
}

impl std::fmt::Debug for ChatReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatReader")
            .field("model", &self.model)
            .field("text", &self.text)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl ChatReader {
    fn read(&mut self, p: Provider, chunk: ChatChunk) -> Option<String> {
        if chunk.model.is_some() {
            self.model = chunk.model;
        }
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        if chunk.sources.citations.is_some() || chunk.sources.search_results.is_some() {
            self.sources = chunk.sources;
        }
        let choice = chunk
            .choices
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.index.unwrap_or(0) == 0)?;
        self.finished |= choice.finish_reason.is_some();
        let delta = choice.delta?;
        let refusal = delta.refusal.filter(|_| p == Provider::OpenAi);
        self.text_field |= delta.content.is_some() || refusal.is_some();
        for (kind, piece) in [
            (ChatText::Content, delta.content),
            (ChatText::Refusal, refusal),
        ] {
            let Some(piece) = piece.filter(|s| !s.is_empty()) else {
                continue;
            };
            if *self.text.get_or_insert(kind) == kind {
                return Some(piece);
            }
        }
        None
    }
}

// --- Anthropic Messages ---

#[derive(Deserialize)]
struct AnthropicEvent {
    #[serde(rename = "type")]
    kind: String,
    /// `message_start`'s message.
    message: Option<AnthropicMessage>,
    /// `content_block_delta`'s and `message_delta`'s delta.
    delta: Option<AnthropicDelta>,
    /// `message_delta`'s usage.
    usage: Option<anthropic::Usage>,
}

#[derive(Deserialize)]
struct AnthropicMessage {
    model: Option<String>,
    usage: Option<anthropic::Usage>,
}

#[derive(Deserialize)]
struct AnthropicDelta {
    #[serde(rename = "type")]
    kind: Option<String>,
    text: Option<String>,
}

#[derive(Default)]
struct AnthropicReader {
    model: Option<String>,
    usage: Option<anthropic::Usage>,
}

impl std::fmt::Debug for AnthropicReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnthropicReader")
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl AnthropicReader {
    fn read(&mut self, ev: AnthropicEvent) -> Option<String> {
        match ev.kind.as_str() {
            "message_start" => {
                let message = ev.message?;
                self.model = message.model;
                self.usage = message.usage;
                None
            }
            "message_delta" => {
                // Its counts are cumulative: each one it has replaces message_start's.
                let new = ev.usage?;
                let usage = self.usage.get_or_insert_with(Default::default);
                let pick = |new: Option<u64>, old: Option<u64>| new.or(old);
                usage.input_tokens = pick(new.input_tokens, usage.input_tokens);
                usage.output_tokens = pick(new.output_tokens, usage.output_tokens);
                usage.cache_creation_input_tokens = pick(
                    new.cache_creation_input_tokens,
                    usage.cache_creation_input_tokens,
                );
                usage.cache_read_input_tokens =
                    pick(new.cache_read_input_tokens, usage.cache_read_input_tokens);
                None
            }
            "content_block_delta" => {
                let delta = ev.delta?;
                (delta.kind.as_deref() == Some("text_delta"))
                    .then_some(delta.text)
                    .flatten()
            }
            _ => None,
        }
    }
}

// --- Gemini streamGenerateContent ---

#[derive(Default)]
struct GeminiReader {
    model: Option<String>,
    usage: Option<gemini::UsageMetadata>,
    feedback: Option<gemini::PromptFeedback>,
    /// A chunk had a candidate.
    candidate: bool,
    /// The candidate had its `finishReason`, or the prompt was blocked.
    finished: bool,
}

impl std::fmt::Debug for GeminiReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeminiReader")
            .field("model", &self.model)
            .field("candidate", &self.candidate)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl GeminiReader {
    fn read(&mut self, chunk: gemini::ResponseBody) -> Option<String> {
        if chunk.model_version.is_some() {
            self.model = chunk.model_version;
        }
        if chunk.usage_metadata.is_some() {
            self.usage = chunk.usage_metadata;
        }
        if let Some(feedback) = chunk.prompt_feedback {
            self.finished |= feedback.block_reason.is_some();
            self.feedback = Some(feedback);
        }
        let candidate = chunk.candidates?.into_iter().next()?;
        self.candidate = true;
        self.finished |= candidate.finish_reason.is_some();
        Some(gemini::visible_text(candidate.content))
    }
}

#[cfg(test)]
mod tests;
