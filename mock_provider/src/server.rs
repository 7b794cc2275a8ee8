//! The mock's HTTP server: the four provider routes, the `/__mock/*` control routes, the call
//! log, and an accept loop (hyper's HTTP/1.1 with axum's router as the service) that can close
//! a connection without any response.
//!
//! Order of work for a provider request: parse the body, record the call, read the markers,
//! wait out any delay, `drop`, check the credentials (a missing key gets the provider's own
//! error), apply the other faults, check the request's required fields, answer: as JSON, or
//! as the provider's stream for a streamed request (`"stream": true`; Gemini's
//! `:streamGenerateContent`, as SSE with `?alt=sse`, else one JSON array sent piece by piece).
//! Every error, faults included, is the ordinary JSON error, before any stream begins.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::markers::{self, Fault};
use crate::stream::{self, Framing, Pacing};
use crate::wire::{self, Api, ErrorReply};

/// How many full raw requests `/__mock/last` can look back through.
const RECENT_CAP: usize = 1024;

/// One recorded request, as `/__mock/last` shows it.
struct RawRequest {
    api: Api,
    prompt: Arc<str>,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Default)]
struct CallLog {
    /// The prompts of the streamed answers still being sent (one entry per stream), so a test
    /// can tell that a caller's disconnect ended the upstream call.
    open_streams: Vec<Arc<str>>,
    /// Every provider call since the last reset: (provider, full prompt text).
    calls: Vec<(Api, Arc<str>)>,
    /// The most recent raw requests, newest last.
    recent: VecDeque<RawRequest>,
}

/// The shared state: the call log. Cheap to clone.
#[derive(Clone, Default)]
pub struct MockState {
    log: Arc<Mutex<CallLog>>,
}

impl MockState {
    pub fn new() -> MockState {
        MockState::default()
    }

    fn log(&self) -> MutexGuard<'_, CallLog> {
        // A panic while holding the lock cannot leave the log inconsistent: keep serving.
        self.log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn record(&self, api: Api, prompt: &str, uri: &Uri, headers: &HeaderMap, body: &Bytes) {
        let prompt: Arc<str> = Arc::from(prompt);
        let raw = RawRequest {
            api,
            prompt: prompt.clone(),
            path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
            headers: headers.clone(),
            body: body.clone(),
        };
        let mut log = self.log();
        log.calls.push((api, prompt));
        if log.recent.len() == RECENT_CAP {
            log.recent.pop_front();
        }
        log.recent.push_back(raw);
    }

    /// Calls per provider whose prompt contains `contains` (all calls when `None`).
    pub fn counts(&self, contains: Option<&str>) -> [(Api, u64); 4] {
        let mut counts = Api::ALL.map(|a| (a, 0u64));
        for (api, prompt) in &self.log().calls {
            if contains.is_none_or(|c| prompt.contains(c)) {
                if let Some(slot) = counts.iter_mut().find(|(a, _)| a == api) {
                    slot.1 += 1;
                }
            }
        }
        counts
    }

    /// Notes a streamed answer to `prompt` as open until the returned guard is dropped (with
    /// the body: when the stream ends or its connection goes).
    fn open_stream(&self, prompt: &str) -> OpenStream {
        let prompt: Arc<str> = Arc::from(prompt);
        self.log().open_streams.push(prompt.clone());
        OpenStream {
            state: self.clone(),
            prompt,
        }
    }

    /// Streamed answers still being sent whose prompt contains `contains`.
    pub fn open_streams(&self, contains: Option<&str>) -> usize {
        self.log()
            .open_streams
            .iter()
            .filter(|p| contains.is_none_or(|c| p.contains(c)))
            .count()
    }

    pub fn reset(&self) {
        let mut log = self.log();
        log.calls.clear();
        log.recent.clear();
    }
}

/// A streamed answer being sent ([`MockState::open_stream`]); dropped with its body.
pub struct OpenStream {
    state: MockState,
    prompt: Arc<str>,
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        let mut log = self.state.log();
        if let Some(i) = log
            .open_streams
            .iter()
            .position(|p| Arc::ptr_eq(p, &self.prompt))
        {
            log.open_streams.swap_remove(i);
        }
    }
}

/// Marks a response that must not be sent: the connection is closed instead.
#[derive(Clone, Copy)]
struct DropConnection;

/// The mock's routes. Provider base URLs: `http://HOST/openai/v1`, `http://HOST/anthropic`,
/// `http://HOST/gemini`, `http://HOST/perplexity`.
pub fn router(state: MockState) -> Router {
    Router::new()
        .route("/openai/v1/chat/completions", post(openai))
        .route("/anthropic/v1/messages", post(anthropic))
        .route("/gemini/v1beta/models/{model_and_action}", post(gemini))
        // The google-genai SDK calls `/v1/…` when given a base URL; same API here.
        .route("/gemini/v1/models/{model_and_action}", post(gemini))
        .route("/perplexity/chat/completions", post(perplexity))
        .route("/__mock/calls", get(calls))
        .route("/__mock/last", get(last))
        .route("/__mock/open-streams", get(open_streams))
        .route("/__mock/reset", post(reset))
        .route("/__mock/health", get(|| async { "ok" }))
        .fallback(not_found)
        .with_state(state)
}

/// Serves `router(state)` on `listener` until the task is dropped. Each connection is
/// HTTP/1.1 with keep-alive and `TCP_NODELAY`.
pub async fn serve(listener: TcpListener, state: MockState) {
    let app = router(state);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors or a reset during accept: wait and go on.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let app = app.clone();
                async move {
                    let response = match app.oneshot(req.map(Body::new)).await {
                        Ok(r) => r,
                        Err(never) => match never {},
                    };
                    if response.extensions().get::<DropConnection>().is_some() {
                        // An error from the service makes hyper close the connection
                        // without writing any response.
                        return Err(io::Error::other("mock: drop fault"));
                    }
                    Ok::<_, io::Error>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

// ---- provider routes ----

async fn openai(State(s): State<MockState>, headers: HeaderMap, uri: Uri, body: Bytes) -> Response {
    handle(s, Api::OpenAi, None, headers, uri, body).await
}

async fn anthropic(
    State(s): State<MockState>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    handle(s, Api::Anthropic, None, headers, uri, body).await
}

async fn gemini(
    State(s): State<MockState>,
    Path(model_and_action): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    handle(s, Api::Gemini, Some(model_and_action), headers, uri, body).await
}

async fn perplexity(
    State(s): State<MockState>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    handle(s, Api::Perplexity, None, headers, uri, body).await
}

/// The credentials a request carried, as the provider reads them.
struct Credentials {
    key: String,
    header_name: &'static str,
    header_value: String,
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn credentials(api: Api, headers: &HeaderMap, uri: &Uri) -> Option<Credentials> {
    let named = |name: &'static str, value: &str, key: &str| {
        (!key.is_empty()).then(|| Credentials {
            key: key.to_owned(),
            header_name: name,
            header_value: value.to_owned(),
        })
    };
    let bearer = || {
        let value = header_str(headers, "authorization")?;
        let (scheme, key) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        named("authorization", value, key.trim())
    };
    match api {
        Api::OpenAi | Api::Perplexity => bearer(),
        // `x-api-key` is the documented header; the current Python SDK sends
        // `Authorization: Bearer <api key>` instead, and the API takes both.
        Api::Anthropic => match header_str(headers, "x-api-key") {
            Some(value) => named("x-api-key", value, value.trim()),
            None => bearer(),
        },
        Api::Gemini => match header_str(headers, "x-goog-api-key") {
            Some(value) => named("x-goog-api-key", value, value.trim()),
            None => {
                let key = uri
                    .query()?
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("key="))?;
                named("key", key, key)
            }
        },
    }
}

fn request_id(prompt: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(prompt.as_bytes());
    format!("req_mock{}", &hex::encode(d)[..16])
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn handle(
    state: MockState,
    api: Api,
    model_and_action: Option<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let (path_model, action) = match &model_and_action {
        Some(ma) => match ma.split_once(':') {
            Some((m, a)) => (Some(m.strip_prefix("models/").unwrap_or(m)), a),
            None => (Some(ma.as_str()), ""),
        },
        None => (None, ""),
    };
    let x = parsed
        .as_ref()
        .map(|v| wire::extract(api, v, path_model))
        .unwrap_or_default();
    state.record(api, &x.all_text, &uri, &headers, &body);
    let rid = || request_id(&x.all_text);

    let plan = match markers::plan(api, &x.prompt) {
        Ok(p) => p,
        Err(msg) => {
            return reply(wire::bad_request(
                api,
                &format!("mock-provider: {msg}"),
                None,
                &rid(),
            ));
        }
    };
    if plan.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(plan.delay_ms)).await;
    }
    if plan.fault == Some(Fault::Drop) {
        let mut r = Response::new(Body::empty());
        r.extensions_mut().insert(DropConnection);
        return r;
    }
    let Some(creds) = credentials(api, &headers, &uri) else {
        return reply(wire::missing_auth(api, &rid()));
    };
    let model = x.model.as_deref().unwrap_or("");
    match plan.fault {
        Some(Fault::Status(status)) => return reply(wire::server_error(api, status, &rid())),
        Some(Fault::RateLimited) => return reply(wire::rate_limited(api, model, &rid())),
        Some(Fault::QuotaExhausted) => return reply(wire::quota_exhausted(api, model, &rid())),
        Some(Fault::Unauthorized) => return reply(wire::unauthorized(api, &rid())),
        Some(Fault::EchoKey) => {
            return reply(wire::echo_key(
                api,
                &creds.key,
                creds.header_name,
                &creds.header_value,
                &rid(),
            ));
        }
        Some(Fault::Html401) => {
            return reply(ErrorReply {
                status: 401,
                headers: Vec::new(),
                content_type: "text/html",
                body: wire::HTML_401.to_owned(),
            });
        }
        Some(Fault::Malformed) | Some(Fault::Drop) | None => {}
    }
    if let Some(problem) = invalid(api, &x, parsed.is_some(), action, &headers) {
        return reply(match problem {
            Invalid::Message(msg, param) => wire::bad_request(api, msg, param, &rid()),
            Invalid::Reply(r) => r,
        });
    }
    let mut answer = wire::answer(api, model, &x.prompt, x.input_words, x.max_tokens);
    if let Some(n) = plan.input_tokens {
        answer.input_tokens = n;
    }
    if plan.empty {
        answer.content.clear();
        answer.truncated = true;
    }
    if plan.long_chars > 0 {
        answer.content.push(' ');
        answer.content.push_str(&"z".repeat(plan.long_chars));
        answer.output_tokens += 1;
    }
    // Real APIs name the snapshot that answered (`gpt-4o-mini-2024-07-18`).
    let answered = if plan.dated_model {
        format!("{model}-2024-07-18")
    } else {
        model.to_string()
    };
    let streamed = match api {
        Api::Gemini => action == "streamGenerateContent",
        _ => parsed.as_ref().and_then(|v| v.get("stream")) == Some(&Value::Bool(true)),
    };
    if streamed {
        let sse = api != Api::Gemini
            || uri
                .query()
                .is_some_and(|q| q.split('&').any(|kv| kv == "alt=sse"));
        let framing = if sse {
            Framing::Sse
        } else {
            Framing::JsonArray
        };
        let opts = stream::Options {
            include_usage: parsed
                .as_ref()
                .and_then(|v| v.pointer("/stream_options/include_usage"))
                == Some(&Value::Bool(true)),
        };
        let events = stream::events(api, &answered, &answer, unix_now(), opts);
        let (mut chunks, ending) = stream::script(api, &events, framing, plan.stream_fault);
        if plan.fault == Some(Fault::Malformed) {
            let all = chunks.concat();
            chunks = vec![Bytes::copy_from_slice(&all[..all.len() / 2])];
        }
        let pacing = Pacing {
            first: Duration::from_millis(plan.first_event_delay_ms),
            between: Duration::from_millis(plan.stream_delay_ms),
        };
        let open = state.open_stream(&x.all_text);
        let mut r = Response::new(stream::body(chunks, pacing, ending, open));
        let content_type = if sse {
            "text/event-stream"
        } else {
            "application/json"
        };
        let headers = r.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert("cache-control", HeaderValue::from_static("no-cache"));
        return r;
    }
    let mut body = wire::success_body(api, &answered, &answer, unix_now());
    if plan.fault == Some(Fault::Malformed) {
        let mut cut = body.len() / 2;
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        body.truncate(cut);
    }
    json_response(200, body)
}

enum Invalid {
    Message(&'static str, Option<&'static str>),
    Reply(ErrorReply),
}

/// What the real provider would refuse in this request, if anything.
fn invalid(
    api: Api,
    x: &wire::Extracted,
    is_json: bool,
    action: &str,
    headers: &HeaderMap,
) -> Option<Invalid> {
    if api == Api::Gemini && action != "generateContent" && action != "streamGenerateContent" {
        return Some(Invalid::Reply(wire::gemini_not_found(
            x.model.as_deref().unwrap_or_default(),
        )));
    }
    if !is_json {
        return Some(Invalid::Message(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly.)",
            None,
        ));
    }
    if api == Api::Anthropic && header_str(headers, "anthropic-version").is_none() {
        return Some(Invalid::Message(
            "anthropic-version: header is required",
            None,
        ));
    }
    if x.model.as_deref().is_none_or(str::is_empty) {
        return Some(Invalid::Message(
            "you must provide a model parameter",
            Some("model"),
        ));
    }
    if !x.has_turns {
        return Some(match api {
            Api::Gemini => Invalid::Message(
                "* GenerateContentRequest.contents: contents is not specified",
                None,
            ),
            Api::Anthropic => Invalid::Message("messages: Field required", None),
            _ => Invalid::Message("Missing required parameter: 'messages'.", Some("messages")),
        });
    }
    if api == Api::Anthropic && x.max_tokens.is_none() {
        return Some(Invalid::Message("max_tokens: Field required", None));
    }
    if api == Api::OpenAi
        && x.legacy_max_tokens
        && x.model
            .as_deref()
            .is_some_and(wire::is_openai_reasoning_model)
    {
        return Some(Invalid::Reply(wire::openai_unsupported_max_tokens()));
    }
    None
}

fn json_response(status: u16, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn reply(e: ErrorReply) -> Response {
    let mut r = json_response(e.status, e.body);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(e.content_type));
    for (name, value) in e.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            r.headers_mut().insert(HeaderName::from_static(name), v);
        }
    }
    r
}

// ---- control routes ----

#[derive(Deserialize)]
struct ContainsQuery {
    contains: Option<String>,
    /// `/__mock/last` only: the last call to this provider (`openai`, `anthropic`, ...).
    provider: Option<String>,
}

async fn calls(State(s): State<MockState>, Query(q): Query<ContainsQuery>) -> Response {
    let counts = s.counts(q.contains.as_deref());
    let mut out = Map::new();
    let mut total = 0;
    for (api, n) in counts {
        out.insert(api.as_str().to_owned(), json!(n));
        total += n;
    }
    out.insert("total".to_owned(), json!(total));
    json_response(200, Value::Object(out).to_string())
}

async fn last(State(s): State<MockState>, Query(q): Query<ContainsQuery>) -> Response {
    let log = s.log();
    let found = log.recent.iter().rev().find(|r| {
        q.contains.as_deref().is_none_or(|c| r.prompt.contains(c))
            && q.provider.as_deref().is_none_or(|p| r.api.as_str() == p)
    });
    let Some(r) = found else {
        return json_response(
            404,
            json!({"error": "no matching call recorded"}).to_string(),
        );
    };
    let mut headers = Map::new();
    for name in r.headers.keys() {
        let value: Vec<String> = r
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        headers.insert(name.as_str().to_owned(), Value::String(value.join(", ")));
    }
    let body = serde_json::from_slice::<Value>(&r.body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&r.body).into_owned()));
    let mut out = json!({
        "provider": r.api.as_str(),
        "path": r.path,
        "headers": headers,
        "body": body,
        // The bytes as they arrived, to tell a body forwarded verbatim from one re-encoded.
        "raw": String::from_utf8_lossy(&r.body),
    });
    if let (Some(query), Some(obj)) = (&r.query, out.as_object_mut()) {
        obj.insert("query".to_owned(), Value::String(query.clone()));
    }
    json_response(200, out.to_string())
}

/// `{"open": n}`: the streamed answers still being sent whose prompt contains `contains`.
async fn open_streams(State(s): State<MockState>, Query(q): Query<ContainsQuery>) -> Response {
    let open = s.open_streams(q.contains.as_deref());
    json_response(200, json!({ "open": open }).to_string())
}

async fn reset(State(s): State<MockState>) -> Response {
    s.reset();
    json_response(200, json!({"ok": true}).to_string())
}

async fn not_found(method: Method, uri: Uri) -> Response {
    json_response(
        404,
        json!({"error": {"message": format!("mock-provider: no route for {method} {}", uri.path())}})
            .to_string(),
    )
}
