//! The four providers' wire formats as the mock speaks them: what it reads from a request,
//! the deterministic answer it derives, and the exact response and error bodies (shaped after
//! `fixtures/providers/`).

use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// One of the four faked APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    OpenAi,
    Anthropic,
    Gemini,
    Perplexity,
}

impl Api {
    pub const ALL: [Api; 4] = [Api::OpenAi, Api::Anthropic, Api::Gemini, Api::Perplexity];

    pub fn as_str(self) -> &'static str {
        match self {
            Api::OpenAi => "openai",
            Api::Anthropic => "anthropic",
            Api::Gemini => "gemini",
            Api::Perplexity => "perplexity",
        }
    }
}

/// What the mock reads from a request body. Missing fields are empty / `None`; the handler
/// decides which are required.
#[derive(Debug, Default, PartialEq)]
pub struct Extracted {
    pub model: Option<String>,
    /// Text of the last user turn: markers are read here, and the answer derives from it.
    pub prompt: String,
    /// System prompt and every turn's text, newline-joined: what call counting searches.
    pub all_text: String,
    /// Whitespace-separated words in system prompt and all turns: the input token count.
    pub input_words: u64,
    /// The request's output cap (`max_completion_tokens` / `max_tokens` / `maxOutputTokens`).
    pub max_tokens: Option<u64>,
    /// Whether the request has its turns array (`messages` / `contents`).
    pub has_turns: bool,
    /// OpenAI only: the deprecated `max_tokens` field was sent.
    pub legacy_max_tokens: bool,
}

/// Text of a content value: a string, or an array of parts/blocks with `text`.
fn content_text(v: Option<&Value>, out: &mut String) {
    match v {
        Some(Value::String(s)) => out.push_str(s),
        Some(Value::Array(parts)) => {
            for p in parts {
                if let Some(t) = p.get("text").and_then(Value::as_str) {
                    out.push_str(t);
                }
            }
        }
        _ => {}
    }
}

fn push_line(all: &mut String, text: &str) {
    if text.is_empty() {
        return;
    }
    if !all.is_empty() {
        all.push('\n');
    }
    all.push_str(text);
}

/// Reads a request body of `api`. `path_model` is Gemini's model from the URL.
pub fn extract(api: Api, body: &Value, path_model: Option<&str>) -> Extracted {
    let mut x = Extracted {
        model: match api {
            Api::Gemini => path_model.map(str::to_owned),
            _ => body.get("model").and_then(Value::as_str).map(str::to_owned),
        },
        ..Extracted::default()
    };
    let mut system = String::new();
    match api {
        Api::Anthropic => content_text(body.get("system"), &mut system),
        Api::Gemini => content_text(
            body.get("systemInstruction").and_then(|s| s.get("parts")),
            &mut system,
        ),
        Api::OpenAi | Api::Perplexity => {}
    }
    push_line(&mut x.all_text, &system);
    let (turns_key, text_key) = match api {
        Api::Gemini => ("contents", "parts"),
        _ => ("messages", "content"),
    };
    if let Some(turns) = body.get(turns_key).and_then(Value::as_array) {
        x.has_turns = true;
        for turn in turns {
            let mut text = String::new();
            content_text(turn.get(text_key), &mut text);
            push_line(&mut x.all_text, &text);
            // Gemini turns may leave the role out for a single-turn request.
            let role = turn.get("role").and_then(Value::as_str);
            if role == Some("user") || (api == Api::Gemini && role.is_none()) {
                x.prompt = text;
            }
        }
    }
    x.input_words = x.all_text.split_whitespace().count() as u64;
    // Tool definitions are input too (the real APIs bill them as prompt tokens).
    if let Some(tools) = body.get("tools") {
        x.input_words += tools.to_string().split_whitespace().count() as u64;
    }
    x.max_tokens = match api {
        Api::OpenAi => body
            .get("max_completion_tokens")
            .or_else(|| body.get("max_tokens"))
            .and_then(Value::as_u64),
        Api::Anthropic | Api::Perplexity => body.get("max_tokens").and_then(Value::as_u64),
        Api::Gemini => body
            .get("generationConfig")
            .and_then(|g| g.get("maxOutputTokens"))
            .and_then(Value::as_u64),
    };
    x.legacy_max_tokens = api == Api::OpenAi && body.get("max_tokens").is_some();
    x
}

/// The deterministic answer to a prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub content: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// The output cap cut the content short.
    pub truncated: bool,
    /// Hex SHA-256 of the prompt, for ids.
    pub digest: String,
}

/// Characters of the prompt echoed in the answer.
const ECHO_CHARS: usize = 60;

/// `"[<provider>/<model>] <first 8 hex of sha256(prompt)> <first 60 chars of the prompt>"`
/// (whitespace collapsed), cut to `max_tokens` words when that is lower. Output tokens are the
/// answer's words, input tokens `input_words`.
pub fn answer(
    api: Api,
    model: &str,
    prompt: &str,
    input_words: u64,
    max_tokens: Option<u64>,
) -> Answer {
    let digest = hex::encode(Sha256::digest(prompt.as_bytes()));
    let mut echo = String::new();
    let mut n = 0;
    'words: for word in prompt.split_whitespace() {
        if !echo.is_empty() {
            if n + 1 >= ECHO_CHARS {
                break;
            }
            echo.push(' ');
            n += 1;
        }
        for c in word.chars() {
            if n >= ECHO_CHARS {
                break 'words;
            }
            echo.push(c);
            n += 1;
        }
    }
    let mut content = format!("[{}/{}] {}", api.as_str(), model, &digest[..8]);
    if !echo.is_empty() {
        content.push(' ');
        content.push_str(&echo);
    }
    let words = content.split_whitespace().count() as u64;
    let (content, output_tokens, truncated) = match max_tokens {
        Some(cap) if cap < words => {
            let kept: Vec<&str> = content.split_whitespace().take(cap as usize).collect();
            (kept.join(" "), cap, true)
        }
        _ => (content, words, false),
    };
    Answer {
        content,
        input_tokens: input_words,
        output_tokens,
        truncated,
        digest,
    }
}

// ---- success bodies ----

#[derive(Serialize)]
struct OpenAiResponse<'a> {
    id: String,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [OpenAiChoice<'a>; 1],
    usage: OpenAiUsage,
    service_tier: &'static str,
    system_fingerprint: Option<&'static str>,
}

#[derive(Serialize)]
struct OpenAiChoice<'a> {
    index: u32,
    message: OpenAiMessage<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct OpenAiMessage<'a> {
    role: &'static str,
    content: &'a str,
    refusal: Option<()>,
    annotations: [(); 0],
}

#[derive(Serialize)]
pub(crate) struct OpenAiUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: Value,
    completion_tokens_details: Value,
}

#[derive(Serialize)]
struct AnthropicResponse<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: [AnthropicBlock<'a>; 1],
    stop_reason: &'static str,
    stop_sequence: Option<()>,
    usage: AnthropicUsage,
}

#[derive(Serialize)]
struct AnthropicBlock<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

#[derive(Serialize)]
struct AnthropicUsage {
    input_tokens: u64,
    output_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    service_tier: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GeminiResponse<'a> {
    candidates: [GeminiCandidate<'a>; 1],
    usage_metadata: GeminiUsage,
    model_version: &'a str,
    response_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GeminiCandidate<'a> {
    content: GeminiContent<'a>,
    finish_reason: &'static str,
    index: u32,
}

#[derive(Serialize)]
struct GeminiContent<'a> {
    parts: [GeminiPart<'a>; 1],
    role: &'static str,
}

#[derive(Serialize)]
struct GeminiPart<'a> {
    text: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GeminiUsage {
    prompt_token_count: u64,
    candidates_token_count: u64,
    total_token_count: u64,
    prompt_tokens_details: [GeminiModality; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GeminiModality {
    modality: &'static str,
    token_count: u64,
}

#[derive(Serialize)]
struct PerplexityResponse<'a> {
    id: String,
    model: &'a str,
    created: u64,
    object: &'static str,
    choices: [PerplexityChoice<'a>; 1],
    usage: PerplexityUsage,
    citations: [&'a str; 2],
    search_results: [PerplexitySearchResult<'a>; 2],
}

#[derive(Serialize)]
struct PerplexityChoice<'a> {
    index: u32,
    finish_reason: &'static str,
    message: PerplexityMessage<'a>,
    delta: PerplexityMessage<'a>,
}

#[derive(Serialize)]
struct PerplexityMessage<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
pub(crate) struct PerplexityUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    search_context_size: &'static str,
    cost: Value,
}

#[derive(Serialize)]
struct PerplexitySearchResult<'a> {
    title: String,
    url: &'a str,
    date: &'static str,
    last_updated: &'static str,
    snippet: &'static str,
    source: &'static str,
}

fn search_result<'a>(n: u32, url: &'a str, tag: &str) -> PerplexitySearchResult<'a> {
    PerplexitySearchResult {
        title: format!("Mock source {n} for {tag}"),
        url,
        date: "2025-01-01",
        last_updated: "2025-01-02",
        snippet: "Deterministic mock search result.",
        source: "web",
    }
}

/// The id of the answer to the prompt with hex digest `d`: the JSON body's and every
/// streamed chunk's (Gemini: its `responseId`).
pub fn response_id(api: Api, d: &str) -> String {
    match api {
        Api::OpenAi => format!("chatcmpl-mock{}", &d[..20]),
        Api::Anthropic => format!("msg_mock{}", &d[..16]),
        Api::Gemini => d[..22].to_owned(),
        Api::Perplexity => format!(
            "{}-{}-{}-{}-{}",
            &d[..8],
            &d[8..12],
            &d[12..16],
            &d[16..20],
            &d[20..32]
        ),
    }
}

/// The provider's name for why the answer stopped.
pub fn stop_reason(api: Api, truncated: bool) -> &'static str {
    match (api, truncated) {
        (Api::OpenAi | Api::Perplexity, false) => "stop",
        (Api::OpenAi | Api::Perplexity, true) => "length",
        (Api::Anthropic, false) => "end_turn",
        (Api::Anthropic, true) => "max_tokens",
        (Api::Gemini, false) => "STOP",
        (Api::Gemini, true) => "MAX_TOKENS",
    }
}

pub(crate) fn openai_usage(a: &Answer) -> OpenAiUsage {
    OpenAiUsage {
        prompt_tokens: a.input_tokens,
        completion_tokens: a.output_tokens,
        total_tokens: a.input_tokens + a.output_tokens,
        prompt_tokens_details: json!({"cached_tokens": 0, "audio_tokens": 0}),
        completion_tokens_details: json!({"reasoning_tokens": 0, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}),
    }
}

pub(crate) fn perplexity_usage(a: &Answer) -> PerplexityUsage {
    PerplexityUsage {
        prompt_tokens: a.input_tokens,
        completion_tokens: a.output_tokens,
        total_tokens: a.input_tokens + a.output_tokens,
        search_context_size: "low",
        cost: json!({"input_tokens_cost": 0.0, "output_tokens_cost": 0.0,
            "request_cost": 0.005, "total_cost": 0.005}),
    }
}

/// Perplexity's `citations` and `search_results` for the prompt with hex digest `d`.
pub(crate) fn perplexity_sources(d: &str) -> (Value, Value) {
    let url1 = format!("https://example.com/mock/{}/1", &d[..8]);
    let url2 = format!("https://example.com/mock/{}/2", &d[..8]);
    let results = [
        search_result(1, &url1, &d[..8]),
        search_result(2, &url2, &d[..8]),
    ];
    (
        json!([url1, url2]),
        serde_json::to_value(results).unwrap_or_default(),
    )
}

/// The provider's 200 body for `answer` from `model`. `now` is the Unix time in seconds.
pub fn success_body(api: Api, model: &str, a: &Answer, now: u64) -> String {
    let total = a.input_tokens + a.output_tokens;
    let d = &a.digest;
    let out = match api {
        Api::OpenAi => serde_json::to_string(&OpenAiResponse {
            id: response_id(api, d),
            object: "chat.completion",
            created: now,
            model,
            choices: [OpenAiChoice {
                index: 0,
                message: OpenAiMessage {
                    role: "assistant",
                    content: &a.content,
                    refusal: None,
                    annotations: [],
                },
                logprobs: None,
                finish_reason: stop_reason(api, a.truncated),
            }],
            usage: openai_usage(a),
            service_tier: "default",
            system_fingerprint: None,
        }),
        Api::Anthropic => serde_json::to_string(&AnthropicResponse {
            id: response_id(api, d),
            kind: "message",
            role: "assistant",
            model,
            content: [AnthropicBlock {
                kind: "text",
                text: &a.content,
            }],
            stop_reason: stop_reason(api, a.truncated),
            stop_sequence: None,
            usage: AnthropicUsage {
                input_tokens: a.input_tokens,
                output_tokens: a.output_tokens,
                cache_creation_input_tokens: 0,
                cache_read_input_tokens: 0,
                service_tier: "standard",
            },
        }),
        Api::Gemini => serde_json::to_string(&GeminiResponse {
            candidates: [GeminiCandidate {
                content: GeminiContent {
                    parts: [GeminiPart { text: &a.content }],
                    role: "model",
                },
                finish_reason: stop_reason(api, a.truncated),
                index: 0,
            }],
            usage_metadata: GeminiUsage {
                prompt_token_count: a.input_tokens,
                candidates_token_count: a.output_tokens,
                total_token_count: total,
                prompt_tokens_details: [GeminiModality {
                    modality: "TEXT",
                    token_count: a.input_tokens,
                }],
            },
            model_version: model,
            response_id: &response_id(api, d),
        }),
        Api::Perplexity => {
            let url1 = format!("https://example.com/mock/{}/1", &d[..8]);
            let url2 = format!("https://example.com/mock/{}/2", &d[..8]);
            serde_json::to_string(&PerplexityResponse {
                id: response_id(api, d),
                model,
                created: now,
                object: "chat.completion",
                choices: [PerplexityChoice {
                    index: 0,
                    finish_reason: stop_reason(api, a.truncated),
                    message: PerplexityMessage {
                        role: "assistant",
                        content: &a.content,
                    },
                    delta: PerplexityMessage {
                        role: "assistant",
                        content: "",
                    },
                }],
                usage: perplexity_usage(a),
                citations: [url1.as_str(), url2.as_str()],
                search_results: [
                    search_result(1, &url1, &d[..8]),
                    search_result(2, &url2, &d[..8]),
                ],
            })
        }
    };
    // Plain structs of strings and numbers: serialization cannot fail.
    out.unwrap_or_default()
}

// ---- error bodies ----

/// An error response: status, extra headers, content type, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub content_type: &'static str,
    pub body: String,
}

impl ErrorReply {
    fn json(status: u16, body: Value) -> ErrorReply {
        ErrorReply {
            status,
            headers: Vec::new(),
            content_type: "application/json",
            body: body.to_string(),
        }
    }

    fn with_header(mut self, name: &'static str, value: &str) -> ErrorReply {
        self.headers.push((name, value.to_owned()));
        self
    }
}

/// Perplexity's legacy openresty 401 page (`fixtures/providers/perplexity/error_401_legacy.html`).
pub const HTML_401: &str = "<html>\n<head><title>401 Authorization Required</title></head>\n<body>\n<center><h1>401 Authorization Required</h1></center>\n<hr><center>openresty/1.21.4.3</center>\n</body>\n</html>\n";

const OPENAI_KEY_HELP: &str =
    "You can find your API key at https://platform.openai.com/account/api-keys.";

fn openai_error(
    status: u16,
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> ErrorReply {
    ErrorReply::json(
        status,
        json!({"error": {"message": message, "type": kind, "param": param, "code": code}}),
    )
}

fn anthropic_error(status: u16, kind: &str, message: &str, request_id: &str) -> ErrorReply {
    ErrorReply::json(
        status,
        json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}),
    )
}

fn gemini_error(status: u16, grpc: &str, message: &str, details: Option<Value>) -> ErrorReply {
    let mut error = json!({"code": status, "message": message, "status": grpc});
    if let (Some(d), Some(obj)) = (details, error.as_object_mut()) {
        obj.insert("details".into(), d);
    }
    ErrorReply::json(status, json!({ "error": error }))
}

fn perplexity_error(status: u16, message: &str, kind: &str) -> ErrorReply {
    ErrorReply::json(
        status,
        json!({"error": {"message": message, "type": kind, "code": status}}),
    )
}

fn gemini_key_invalid(message: &str) -> ErrorReply {
    gemini_error(
        400,
        "INVALID_ARGUMENT",
        message,
        Some(json!([
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
             "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}},
            {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
             "message": message}
        ])),
    )
}

/// The provider's answer to a request with no credentials at all.
pub fn missing_auth(api: Api, request_id: &str) -> ErrorReply {
    match api {
        Api::OpenAi => openai_error(
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank user name) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            None,
            None,
        ),
        Api::Anthropic => anthropic_error(401, "authentication_error", "x-api-key header is required", request_id),
        // Gemini answers a request without any key with 403 PERMISSION_DENIED.
        Api::Gemini => gemini_error(
            403,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
            None,
        ),
        Api::Perplexity => unauthorized(api, request_id),
    }
}

/// The provider's invalid-key answer (the `401` fault).
pub fn unauthorized(api: Api, request_id: &str) -> ErrorReply {
    match api {
        Api::OpenAi => openai_error(
            401,
            &format!("Incorrect API key provided: sk-proj-********************************abcd. {OPENAI_KEY_HELP}"),
            "invalid_request_error",
            None,
            Some("invalid_api_key"),
        ),
        Api::Anthropic => anthropic_error(401, "authentication_error", "invalid x-api-key", request_id),
        Api::Gemini => gemini_key_invalid("API key not valid. Please pass a valid API key."),
        Api::Perplexity => perplexity_error(
            401,
            "Invalid API key provided. You can find your API key at https://www.perplexity.ai/settings/api.",
            "invalid_api_key",
        ),
    }
}

/// An invalid-key answer that leaks what it received (the `echo_key` fault): the bare key and
/// the whole auth header as `<name>: <value>`.
pub fn echo_key(
    api: Api,
    key: &str,
    header_name: &str,
    header_value: &str,
    request_id: &str,
) -> ErrorReply {
    let echo = format!("{header_name}: {header_value}");
    match api {
        Api::OpenAi => openai_error(
            401,
            &format!("Incorrect API key provided: {key}. {echo}. {OPENAI_KEY_HELP}"),
            "invalid_request_error",
            None,
            Some("invalid_api_key"),
        ),
        Api::Anthropic => anthropic_error(
            401,
            "authentication_error",
            &format!("invalid x-api-key {key} ({echo})"),
            request_id,
        ),
        Api::Gemini => gemini_key_invalid(&format!(
            "API key not valid: {key} ({echo}). Please pass a valid API key."
        )),
        Api::Perplexity => perplexity_error(
            401,
            &format!("Invalid API key provided: {key}. {echo}"),
            "invalid_api_key",
        ),
    }
}

/// The provider's 429, with its retry hint: `retry-after: 2` (Gemini: `retryDelay: "2s"`).
pub fn rate_limited(api: Api, model: &str, request_id: &str) -> ErrorReply {
    match api {
        Api::OpenAi => openai_error(
            429,
            &format!("Rate limit reached for {model} in organization org-mock on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 2s. Visit https://platform.openai.com/account/rate-limits to learn more."),
            "requests",
            None,
            Some("rate_limit_exceeded"),
        )
        .with_header("retry-after", "2"),
        Api::Anthropic => anthropic_error(
            429,
            "rate_limit_error",
            "This request would exceed the rate limit for your organization of 50 requests per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits.",
            request_id,
        )
        .with_header("retry-after", "2"),
        Api::Gemini => gemini_error(
            429,
            "RESOURCE_EXHAUSTED",
            "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
            Some(json!([
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
                    {"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                     "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                     "quotaDimensions": {"location": "global", "model": model}}]},
                {"@type": "type.googleapis.com/google.rpc.Help", "links": [
                    {"description": "Learn more about Gemini API quotas",
                     "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2s"}
            ])),
        ),
        Api::Perplexity => perplexity_error(429, "Rate limit exceeded. Please try again later.", "rate_limit_exceeded")
            .with_header("retry-after", "2"),
    }
}

/// The provider's answer when the account's quota or credit is exhausted, as documented:
/// OpenAI's 429 `insufficient_quota` (docs "Error codes": "You exceeded your current quota"),
/// Anthropic's 400 `invalid_request_error` about the credit balance; Gemini and Perplexity
/// answer it as their 429.
pub fn quota_exhausted(api: Api, model: &str, request_id: &str) -> ErrorReply {
    match api {
        Api::OpenAi => openai_error(
            429,
            "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
            "insufficient_quota",
            None,
            Some("insufficient_quota"),
        ),
        Api::Anthropic => anthropic_error(
            400,
            "invalid_request_error",
            "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.",
            request_id,
        ),
        Api::Gemini | Api::Perplexity => rate_limited(api, model, request_id),
    }
}

/// The provider's body for a server-side status (500, 503, 529).
pub fn server_error(api: Api, status: u16, request_id: &str) -> ErrorReply {
    let overloaded = status == 503 || status == 529;
    match api {
        Api::OpenAi if overloaded => openai_error(
            status,
            "The engine is currently overloaded, please try again later.",
            "server_error",
            None,
            None,
        ),
        Api::OpenAi => openai_error(
            status,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
            None,
        ),
        Api::Anthropic if overloaded => anthropic_error(status, "overloaded_error", "Overloaded", request_id),
        Api::Anthropic => anthropic_error(status, "api_error", "Internal server error", request_id),
        Api::Gemini if overloaded => gemini_error(
            status,
            "UNAVAILABLE",
            "The model is overloaded. Please try again later.",
            None,
        ),
        Api::Gemini => gemini_error(
            status,
            "INTERNAL",
            "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
            None,
        ),
        Api::Perplexity if overloaded => perplexity_error(status, "Service temporarily overloaded.", "service_unavailable"),
        Api::Perplexity => perplexity_error(status, "Internal server error.", "internal_server_error"),
    }
}

/// The provider's 400 for a request it cannot accept (bad JSON, a missing field, a marker
/// the mock does not know).
pub fn bad_request(api: Api, message: &str, param: Option<&str>, request_id: &str) -> ErrorReply {
    match api {
        Api::OpenAi => openai_error(400, message, "invalid_request_error", param, None),
        Api::Anthropic => anthropic_error(400, "invalid_request_error", message, request_id),
        Api::Gemini => gemini_error(400, "INVALID_ARGUMENT", message, None),
        Api::Perplexity => perplexity_error(400, message, "invalid_request"),
    }
}

/// OpenAI's 400 for `max_tokens` sent to a reasoning model
/// (`fixtures/providers/openai/error_400.json`).
pub fn openai_unsupported_max_tokens() -> ErrorReply {
    openai_error(
        400,
        "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
        "invalid_request_error",
        Some("max_tokens"),
        Some("unsupported_parameter"),
    )
}

/// Gemini's 404 for a path action other than `generateContent`.
pub fn gemini_not_found(model_and_action: &str) -> ErrorReply {
    gemini_error(
        404,
        "NOT_FOUND",
        &format!("models/{model_and_action} is not found for API version v1beta, or is not supported by the mock (only generateContent and streamGenerateContent are)."),
        None,
    )
}

/// Whether OpenAI refuses `max_tokens` for `model` (reasoning models).
pub fn is_openai_reasoning_model(model: &str) -> bool {
    ["o1", "o3", "o4", "gpt-5"].iter().any(|f| {
        model == *f
            || model
                .strip_prefix(f)
                .is_some_and(|r| r.starts_with(['-', '.']))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_is_deterministic_and_derived_from_the_prompt() {
        let a = answer(
            Api::OpenAi,
            "gpt-4o-mini",
            "What is the capital of France?",
            6,
            None,
        );
        let b = answer(
            Api::OpenAi,
            "gpt-4o-mini",
            "What is the capital of France?",
            6,
            None,
        );
        assert_eq!(a, b);
        let hash = &hex::encode(Sha256::digest(b"What is the capital of France?"))[..8];
        assert_eq!(
            a.content,
            format!("[openai/gpt-4o-mini] {hash} What is the capital of France?")
        );
        assert_eq!(a.output_tokens, 8);
        assert_eq!(a.input_tokens, 6);
        assert!(!a.truncated);
        let c = answer(
            Api::OpenAi,
            "gpt-4o-mini",
            "What is the capital of Spain?",
            6,
            None,
        );
        assert_ne!(a.content, c.content);
    }

    #[test]
    fn answer_names_provider_and_model() {
        let a = answer(Api::Gemini, "gemini-2.5-pro", "hi", 1, None);
        assert!(a.content.starts_with("[gemini/gemini-2.5-pro] "));
    }

    #[test]
    fn echo_is_cut_at_sixty_characters_with_whitespace_collapsed() {
        let prompt = format!("  one\n\ttwo   {}", "x".repeat(100));
        let a = answer(Api::Anthropic, "m", &prompt, 3, None);
        let echo = a.content.splitn(3, ' ').nth(2).unwrap();
        assert_eq!(echo.chars().count(), 60);
        assert!(echo.starts_with("one two xxx"));
    }

    #[test]
    fn echo_counts_characters_not_bytes() {
        let a = answer(Api::Perplexity, "sonar", &"é".repeat(80), 1, None);
        assert!(a.content.ends_with(&"é".repeat(60)));
    }

    #[test]
    fn max_tokens_caps_output_words_and_marks_truncation() {
        let a = answer(Api::OpenAi, "m", "a b c d e f", 6, Some(3));
        assert_eq!(a.output_tokens, 3);
        assert!(a.truncated);
        assert_eq!(a.content.split_whitespace().count(), 3);
        let b = answer(Api::OpenAi, "m", "a", 1, Some(100));
        assert!(!b.truncated);
        assert_eq!(b.output_tokens, 3);
    }

    #[test]
    fn extracts_openai_messages_with_string_and_part_contents() {
        let body = json!({"model": "gpt-4o", "max_completion_tokens": 9, "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": [{"type": "text", "text": "second "}, {"type": "text", "text": "question"}]}
        ]});
        let x = extract(Api::OpenAi, &body, None);
        assert_eq!(x.model.as_deref(), Some("gpt-4o"));
        assert_eq!(x.prompt, "second question");
        assert_eq!(
            x.all_text,
            "Be brief.\nfirst question\nan answer\nsecond question"
        );
        assert_eq!(x.input_words, 8);
        assert_eq!(x.max_tokens, Some(9));
        assert!(x.has_turns && !x.legacy_max_tokens);
    }

    #[test]
    fn extracts_anthropic_system_blocks_and_max_tokens() {
        let body = json!({"model": "claude-haiku-4-5", "max_tokens": 5,
            "system": [{"type": "text", "text": "sys words"}],
            "messages": [{"role": "user", "content": "hello there"}]});
        let x = extract(Api::Anthropic, &body, None);
        assert_eq!(x.prompt, "hello there");
        assert_eq!(x.input_words, 4);
        assert_eq!(x.max_tokens, Some(5));
    }

    #[test]
    fn extracts_gemini_contents_and_model_from_path() {
        let body = json!({"systemInstruction": {"parts": [{"text": "sys"}]},
            "contents": [{"parts": [{"text": "Hello "}, {"text": "Gemini"}]}],
            "generationConfig": {"maxOutputTokens": 7}});
        let x = extract(Api::Gemini, &body, Some("gemini-2.5-flash"));
        assert_eq!(x.model.as_deref(), Some("gemini-2.5-flash"));
        assert_eq!(x.prompt, "Hello Gemini");
        assert_eq!(x.all_text, "sys\nHello Gemini");
        assert_eq!(x.max_tokens, Some(7));
    }

    #[test]
    fn missing_fields_extract_as_empty() {
        let x = extract(Api::Perplexity, &json!({}), None);
        assert_eq!(x, Extracted::default());
    }

    #[test]
    fn success_bodies_have_the_fixture_fields() {
        let a = answer(Api::OpenAi, "m", "hi there", 2, None);
        for api in Api::ALL {
            let v: Value =
                serde_json::from_str(&success_body(api, "m", &a, 1_700_000_000)).unwrap();
            match api {
                Api::OpenAi => {
                    assert_eq!(v["object"], "chat.completion");
                    assert_eq!(v["choices"][0]["message"]["content"], a.content.as_str());
                    assert_eq!(v["choices"][0]["finish_reason"], "stop");
                    assert_eq!(v["usage"]["total_tokens"], 2 + a.output_tokens);
                    assert_eq!(v["created"], 1_700_000_000u64);
                }
                Api::Anthropic => {
                    assert_eq!(v["type"], "message");
                    assert_eq!(v["content"][0]["type"], "text");
                    assert_eq!(v["stop_reason"], "end_turn");
                    assert_eq!(v["usage"]["input_tokens"], 2);
                }
                Api::Gemini => {
                    assert_eq!(
                        v["candidates"][0]["content"]["parts"][0]["text"],
                        a.content.as_str()
                    );
                    assert_eq!(v["modelVersion"], "m");
                    assert_eq!(v["usageMetadata"]["candidatesTokenCount"], a.output_tokens);
                    assert!(v["responseId"].is_string());
                }
                Api::Perplexity => {
                    assert_eq!(v["citations"].as_array().unwrap().len(), 2);
                    assert_eq!(v["search_results"][0]["url"], v["citations"][0]);
                    assert_eq!(v["choices"][0]["delta"]["content"], "");
                    assert!(v["usage"]["cost"]["total_cost"].is_number());
                }
            }
            assert_eq!(v.get("model").or(v.get("modelVersion")).unwrap(), "m");
        }
    }

    #[test]
    fn truncated_answer_uses_each_providers_length_stop_reason() {
        let a = answer(Api::OpenAi, "m", "a b c", 3, Some(1));
        let stop = |api| -> Value {
            let v: Value = serde_json::from_str(&success_body(api, "m", &a, 0)).unwrap();
            v.pointer("/choices/0/finish_reason")
                .or(v.pointer("/stop_reason"))
                .or(v.pointer("/candidates/0/finishReason"))
                .cloned()
                .unwrap()
        };
        assert_eq!(stop(Api::OpenAi), "length");
        assert_eq!(stop(Api::Anthropic), "max_tokens");
        assert_eq!(stop(Api::Gemini), "MAX_TOKENS");
        assert_eq!(stop(Api::Perplexity), "length");
    }

    #[test]
    fn error_bodies_follow_each_providers_shape() {
        for api in Api::ALL {
            for reply in [
                unauthorized(api, "req_x"),
                missing_auth(api, "req_x"),
                rate_limited(api, "m", "req_x"),
                server_error(api, 500, "req_x"),
                server_error(api, 529, "req_x"),
                bad_request(api, "bad", None, "req_x"),
            ] {
                let v: Value = serde_json::from_str(&reply.body).unwrap();
                assert!(v["error"]["message"].is_string(), "{api:?} {v}");
                if api == Api::Anthropic {
                    assert_eq!(v["type"], "error");
                    assert!(v["error"]["type"].is_string());
                }
                if api == Api::Gemini {
                    assert_eq!(v["error"]["code"], reply.status);
                }
            }
        }
    }

    #[test]
    fn rate_limit_hints_match_the_providers() {
        for api in [Api::OpenAi, Api::Anthropic] {
            assert_eq!(
                rate_limited(api, "m", "r").headers,
                vec![("retry-after", "2".to_owned())]
            );
        }
        let g = rate_limited(Api::Gemini, "m", "r");
        assert!(g.headers.is_empty());
        assert!(g.body.contains(r#""retryDelay":"2s""#));
    }

    #[test]
    fn echo_key_repeats_the_key_and_header() {
        let r = echo_key(
            Api::OpenAi,
            "sk-live-123",
            "authorization",
            "Bearer sk-live-123",
            "r",
        );
        let v: Value = serde_json::from_str(&r.body).unwrap();
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains("provided: sk-live-123."), "{m}");
        assert!(m.contains("authorization: Bearer sk-live-123"), "{m}");
        assert_eq!(r.status, 401);
        let g = echo_key(Api::Gemini, "k\"q", "x-goog-api-key", "k\"q", "r");
        assert_eq!(g.status, 400);
        assert!(
            serde_json::from_str::<Value>(&g.body).is_ok(),
            "key is JSON-escaped"
        );
    }

    #[test]
    fn reasoning_model_detection() {
        for m in ["o1", "o3-mini", "o4-mini", "gpt-5", "gpt-5-mini", "gpt-5.1"] {
            assert!(is_openai_reasoning_model(m), "{m}");
        }
        for m in ["gpt-4o", "gpt-4.1-mini", "o3x", "gpt-50"] {
            assert!(!is_openai_reasoning_model(m), "{m}");
        }
    }
}
