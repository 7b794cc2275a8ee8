//! The fuzz targets. Each takes arbitrary bytes, must never panic, and checks what must hold
//! for any input: refusals are 4xx, accepted requests stay within their limits, the streamed
//! cache-key hash equals SHA-256 of the canonical JSON text, a stream parses the same however it
//! is split, scrubbed text holds no planted key, canonical JSON is a fixed point. The string
//! returned names the outcome reached (a new one grows the corpus).

use gateway_core::api::ask::{parse_ask, PROMPT_LIMIT};
use gateway_core::api::dropin::stream::{self, SseParser, StreamEnd, StreamWatcher};
use gateway_core::api::dropin::{
    check_features, parse_request, synthetic_response, Dialect, MAX_CHOICES,
};
use gateway_core::api::strict_json::{parse_strict, StrictJsonError};
use gateway_core::cache::canonical_json::canonical_json as jcs;
use gateway_core::cache::key::{ask_cache_key, request_cache_key, Scope, ScopeKind};
use gateway_core::cache::normalize::normalize;
use gateway_core::error::ApiError;
use gateway_core::providers::adapters::parse_response;
use gateway_core::providers::adapters::stream::CompletionStream;
use gateway_core::providers::models::default_allowlist;
use gateway_core::providers::Provider;
use gateway_core::scrub::{excerpt, scrub as scrub_text, scrub_secrets};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const ACCOUNT: &str = "acct_0123456789abcdef0123456789abcdef";

/// The key as the contract writes it, computed the slow way: SHA-256 of the canonical JSON
/// text of the tuple.
fn reference_key(tuple: &Value) -> String {
    hex::encode(Sha256::digest(jcs(tuple).as_bytes()))
}

fn refused(e: &ApiError) -> String {
    assert!(
        (400..500).contains(&e.status),
        "a refusal of bad input is a {} ({}: {})",
        e.status,
        e.code,
        e.message
    );
    let body = e.body();
    assert_eq!(body["error"]["code"], e.code, "envelope: {body}");
    let field = e
        .extra
        .get("field")
        .or_else(|| e.extra.get("param"))
        .and_then(Value::as_str)
        .unwrap_or("");
    format!("err:{}:{}:{}", e.status, e.code, field)
}

/// A few deterministic choices drawn from the input itself.
fn pick(data: &[u8], salt: u64, n: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ salt;
    for b in data.iter().take(64) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= data.len() as u64;
    (h % n as u64) as usize
}

/// `data` cut into chunks at positions drawn from the input.
fn chunks(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut salt = 1;
    while !rest.is_empty() {
        let n = 1 + pick(rest, salt, 17.min(rest.len()));
        out.push(&rest[..n]);
        rest = &rest[n..];
        salt += 1;
    }
    out
}

/// `POST /v1/ask`: the body parser and validator, then the key of what it accepted.
pub fn ask(data: &[u8]) -> String {
    let cap = [1024, 4096, 16_384][pick(data, 7, 3)];
    match parse_ask(data, cap) {
        Err(e) => refused(&e),
        Ok(req) => {
            assert!(req.prompt.len() <= PROMPT_LIMIT);
            assert!(!req.prompt.trim().is_empty());
            assert!(!req.providers.is_empty());
            assert!(
                req.providers.windows(2).all(|w| w[0] < w[1]),
                "sorted, unique"
            );
            assert!(
                req.max_tokens >= 1 && req.max_tokens <= cap,
                "{}",
                req.max_tokens
            );
            assert!(
                !normalize(&req.prompt).is_empty(),
                "a prompt that keys as empty"
            );
            for p in &req.providers {
                let model = req.models.get(p).expect("a model for every provider");
                assert!(!model.is_empty());
            }
            let scope = req.scope.for_account(ACCOUNT);
            let key = ask_cache_key(&scope, &req.prompt, &req.providers, &req.key_params);
            let providers: Vec<&str> = req.providers.iter().map(|p| p.as_str()).collect();
            let tuple = json!([
                "ask/v1",
                scope.as_key_str(),
                normalize(&req.prompt),
                providers,
                req.key_params
            ]);
            assert_eq!(key.as_str(), reference_key(&tuple));
            format!(
                "ok:{}:{}:{}",
                req.providers.len(),
                req.scope.as_str(),
                req.stream
            )
        }
    }
}

fn dropin(dialect: Dialect, data: &[u8]) -> String {
    let provider = dialect.provider();
    let cap = [1024, 16_384][pick(data, 11, 2)];
    match parse_request(dialect, data, default_allowlist(provider), cap) {
        Err(e) => refused(&e),
        Ok(req) => {
            assert!(req.prompt_bytes <= PROMPT_LIMIT, "{}", req.prompt_bytes);
            assert!(req.output_budget >= 1);
            assert!(
                req.output_budget <= u64::from(cap) * MAX_CHOICES,
                "budget {} over cap {cap}",
                req.output_budget
            );
            if let Some(body) = &req.forward_body {
                let forwarded = parse_strict(body).expect("the forwarded body is strict JSON");
                assert!(forwarded.is_object());
            }
            let Value::Object(obj) = &req.value else {
                panic!("an accepted body that is not an object");
            };
            assert!(!obj.contains_key("stream") && !obj.contains_key("stream_options"));
            let features = check_features(dialect, obj, None);
            let ns = dialect.namespace().as_str();
            for scope in [Scope::Shared, ScopeKind::Private.for_account(ACCOUNT)] {
                let key = request_cache_key(ns, &scope, &req.value);
                let tuple = json!([ns, scope.as_key_str(), req.value]);
                assert_eq!(key.as_str(), reference_key(&tuple));
            }
            let (answer, _) = synthetic_response(&req, 1_700_000_000);
            assert!(answer.is_object());
            match features {
                Ok(()) => format!("ok:{}:{}", req.stream, req.include_usage),
                Err(e) => refused(&e),
            }
        }
    }
}

/// `POST /v1/chat/completions`: the OpenAI dialect's validator.
pub fn dropin_openai(data: &[u8]) -> String {
    dropin(Dialect::OpenAiChat, data)
}

/// `POST /v1/messages`: the Anthropic dialect's validator.
pub fn dropin_anthropic(data: &[u8]) -> String {
    dropin(Dialect::AnthropicMessages, data)
}

/// Normalization and both cache keys, for any prompt and any params or request.
pub fn cache_key(data: &[u8]) -> String {
    let prompt = String::from_utf8_lossy(data);
    let n = normalize(&prompt);
    assert_eq!(normalize(&n), n, "normalize is idempotent");
    assert_eq!(n.trim(), n, "no leading or trailing whitespace");
    assert!(!n.contains("  "), "whitespace runs collapse");
    let mask = pick(data, 3, 16);
    let providers: Vec<Provider> = Provider::ALL
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, p)| *p)
        .chain(std::iter::once(Provider::OpenAi))
        .collect();
    let params =
        serde_json::from_slice::<Value>(data).unwrap_or_else(|_| json!({"max_tokens": 256}));
    let mut sorted: Vec<&str> = providers.iter().map(|p| p.as_str()).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut keys = Vec::new();
    for scope in [Scope::Shared, ScopeKind::Private.for_account(ACCOUNT)] {
        let key = ask_cache_key(&scope, &prompt, &providers, &params);
        let tuple = json!(["ask/v1", scope.as_key_str(), n, sorted, params]);
        assert_eq!(
            key.as_str(),
            reference_key(&tuple),
            "ask key for {prompt:?}"
        );
        let rkey = request_cache_key("chat/v1", &scope, &params);
        assert_eq!(
            rkey.as_str(),
            reference_key(&json!(["chat/v1", scope.as_key_str(), params]))
        );
        keys.push(key);
    }
    assert_ne!(keys[0], keys[1], "private and shared never share a key");
    format!("{}:{}", n.is_empty(), params.is_object())
}

const STATUSES: [u16; 12] = [200, 201, 400, 401, 403, 404, 408, 413, 429, 500, 503, 529];
const RETRY_AFTER: [Option<&str>; 6] = [
    None,
    Some("1"),
    Some("2.5"),
    Some("Wed, 21 Oct 2015 07:28:00 GMT"),
    Some("-1"),
    Some("99999999999999999999"),
];

/// The four providers' response adapters, whole and streamed: an answer is only ever read from
/// a 2xx, with exactly the allowlisted fields; a key planted in the body never reaches an error
/// message.
pub fn adapters(data: &[u8]) -> String {
    let body = String::from_utf8_lossy(data);
    let secret = planted_secret(data);
    let mut cut = pick(data, 21, body.len() + 1);
    while !body.is_char_boundary(cut) {
        cut -= 1;
    }
    let with_key = format!("{} sk-proj-{secret} {}", &body[..cut], &body[cut..]);
    let mut class = String::new();
    for provider in Provider::ALL {
        for status in [200, STATUSES[pick(data, 5, STATUSES.len())]] {
            let retry = RETRY_AFTER[pick(data, u64::from(status), RETRY_AFTER.len())];
            match parse_response(provider, status, retry, &body) {
                Ok(c) => {
                    assert!((200..300).contains(&status), "a {status} read as an answer");
                    let v = serde_json::to_value(&c).expect("a completion serializes");
                    let mut fields: Vec<&str> =
                        v.as_object().unwrap().keys().map(String::as_str).collect();
                    fields.sort_unstable();
                    assert_eq!(fields, ["citations", "content", "model", "tokens"]);
                    class.push('o');
                }
                Err(e) => class.push_str(e.code.as_str()),
            }
            if let Err(e) = parse_response(provider, status, retry, &with_key) {
                assert!(
                    !e.message.contains(&secret),
                    "a key in an error: {}",
                    e.message
                );
            }
        }
        class.push_str(&completion_stream(provider, data));
    }
    class
}

/// 40 key characters drawn from the input.
fn planted_secret(data: &[u8]) -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    (0..40)
        .map(|i| alphabet[pick(data, 100 + i, if i == 0 { 62 } else { 64 })] as char)
        .collect()
}

/// One provider's stream reader, fed whole and in chunks: the same deltas and outcome.
fn completion_stream(provider: Provider, data: &[u8]) -> String {
    let mut whole = CompletionStream::new(provider);
    let whole_deltas = whole.feed(data).concat();
    let mut split = CompletionStream::new(provider);
    let split_deltas: String = chunks(data)
        .into_iter()
        .flat_map(|c| split.feed(c))
        .collect();
    assert_eq!(whole_deltas, split_deltas, "deltas depend on the split");
    let (a, b) = (whole.finish(), split.finish());
    assert_eq!(a, b, "the outcome depends on the split");
    match a {
        Ok(c) => {
            assert_eq!(c.content, whole_deltas, "the answer is the deltas joined");
            "s:ok".into()
        }
        Err(e) => {
            assert_eq!(
                scrub_text(&e.message),
                e.message,
                "an unscrubbed stream error"
            );
            format!("s:{}", e.code.as_str())
        }
    }
}

/// The SSE parser (whole vs split, encode round trip) and both dialects' stream watchers.
pub fn sse(data: &[u8]) -> String {
    let limit = [stream::MAX_EVENT_BYTES, 64][pick(data, 13, 2)];
    let whole = SseParser::with_limit(limit).feed(data);
    let mut p = SseParser::with_limit(limit);
    let split: Vec<_> = chunks(data).into_iter().flat_map(|c| p.feed(c)).collect();
    assert_eq!(whole, split, "events depend on the split");
    for ev in whole.iter().flatten() {
        let text = stream::sse::encode(ev.event.as_deref(), &ev.data);
        let back = SseParser::new().feed(text.as_bytes());
        assert_eq!(
            back,
            vec![Ok(ev.clone())],
            "encode does not round-trip {ev:?}"
        );
    }
    let mut class = format!(
        "{}:{}",
        whole.len().min(4),
        whole.iter().any(|e| e.is_err())
    );
    for dialect in [Dialect::OpenAiChat, Dialect::AnthropicMessages] {
        let mut a = StreamWatcher::new(dialect);
        let ra = a.feed(data);
        let mut b = StreamWatcher::new(dialect);
        let rb: Vec<_> = chunks(data).into_iter().map(|c| b.feed(c)).collect();
        assert_eq!(
            ra.is_err(),
            rb.iter().any(Result::is_err),
            "errors depend on the split"
        );
        assert_eq!(a.outcome(), b.outcome(), "the end depends on the split");
        assert_eq!(a.usage(), b.usage(), "usage depends on the split");
        let body = a.final_body();
        assert_eq!(body, b.final_body(), "the answer depends on the split");
        if let Some(body) = &body {
            assert_eq!(a.outcome(), StreamEnd::Clean);
            let v: Value = serde_json::from_str(body).expect("a reassembled answer is JSON");
            assert!(v.is_object());
        }
        class.push_str(&format!(":{:?}:{}", a.outcome(), body.is_some()));
    }
    class
}

/// The stream synthesizer for a stored answer: what it makes is a clean stream of the dialect
/// that reassembles into an answer which synthesizes to the same stream.
pub fn synthesize(data: &[u8]) -> String {
    let stored = String::from_utf8_lossy(data);
    let mut class = String::new();
    for dialect in [Dialect::OpenAiChat, Dialect::AnthropicMessages] {
        for include_usage in [false, true] {
            match stream::synthesize(dialect, &stored, include_usage) {
                Err(e) => class.push_str(&format!(":e{}", e.to_string().len().min(1))),
                Ok(bytes) => {
                    let mut w = StreamWatcher::new(dialect);
                    w.feed(&bytes).expect("a synthesized stream reads back");
                    // A stored answer that says how it finished synthesizes a clean stream.
                    // (One that does not, which only a provider's own 200 body can be, makes a
                    // stream the watcher reads as cut: the SDKs still reassemble it.)
                    if finished(dialect, &stored) {
                        assert_eq!(w.outcome(), StreamEnd::Clean, "not clean: {stored}");
                    }
                    if let Some(again) = w.final_body() {
                        let twice = stream::synthesize(dialect, &again, include_usage)
                            .expect("a reassembled answer synthesizes");
                        let mut w2 = StreamWatcher::new(dialect);
                        w2.feed(&twice).expect("reads back");
                        assert_eq!(w2.final_body().as_deref(), Some(again.as_str()));
                        class.push_str(":ok");
                    } else {
                        class.push_str(&format!(":{:?}", w.outcome()));
                    }
                }
            }
        }
    }
    class
}

/// Whether a stored answer says how it finished: Anthropic's `stop_reason`, or OpenAI's
/// `finish_reason` on every choice (and has no `error` member).
fn finished(dialect: Dialect, stored: &str) -> bool {
    let Ok(v) = serde_json::from_str::<Value>(stored) else {
        return false;
    };
    // A member named `error` is copied into the synthesized events, which then read as an
    // error (no provider's answer has one; a 200 body that did would be an error already).
    if v.get("error").is_some() {
        return false;
    }
    match dialect {
        Dialect::AnthropicMessages => v["stop_reason"].is_string(),
        Dialect::OpenAiChat => v["choices"].as_array().is_some_and(|c| {
            !c.is_empty()
                && c.iter()
                    .all(|c| c["finish_reason"].as_str().is_some_and(|r| !r.is_empty()))
        }),
    }
}

const KEY_SHAPES: [&str; 8] = [
    "sk-",
    "sk-proj-",
    "sk-ant-api03-",
    "AIza",
    "pplx-",
    "lvk_live_",
    "lvk_test_",
    "Bearer ",
];

/// The scrubber: idempotent, and a key planted anywhere between words never survives.
pub fn scrub(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    let once = scrub_text(&text);
    assert_eq!(scrub_text(&once), once, "scrub is not idempotent");
    assert!(excerpt(&text, 200).chars().count() <= 201);
    let _ = scrub_secrets(&text, &["secret-value-1234", "", "abc"]);
    // Plant a key of each shape at a place drawn from the input, between spaces: it never
    // survives the scrubber, nor an excerpt.
    let body = planted_secret(data);
    let mut cut = pick(data, 99, text.len() + 1);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let (before, after) = text.split_at(cut);
    for shape in KEY_SHAPES {
        let planted = format!("{before} {shape}{body} {after}");
        let out = scrub_text(&planted);
        assert!(
            !out.contains(&body),
            "{shape}… survived in {planted:?} -> {out:?}"
        );
        let ex = excerpt(&format!(" {shape}{body} {after}"), 200);
        assert!(!ex.contains(&body), "{shape}… survived an excerpt: {ex:?}");
    }
    format!(
        "{}",
        matches!(scrub_text(&text), std::borrow::Cow::Owned(_))
    )
}

/// Canonical JSON (RFC 8785) of anything serde_json reads is JSON, and a fixed point; the
/// strict parser agrees with serde_json except on a key named twice.
pub fn canonical_json(data: &[u8]) -> String {
    let loose = serde_json::from_slice::<Value>(data);
    let strict = parse_strict(data);
    match (&loose, &strict) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "the strict parser reads another value"),
        (Err(_), Ok(_)) => panic!("the strict parser accepts what serde_json refuses"),
        (Ok(_), Err(StrictJsonError::Syntax(e))) => {
            panic!("the strict parser refuses what serde_json reads: {e}")
        }
        _ => {}
    }
    let Ok(v) = loose else {
        return "syntax".into();
    };
    let c = jcs(&v);
    let back: Value = serde_json::from_str(&c).expect("canonical JSON is JSON");
    assert_eq!(jcs(&back), c, "canonical JSON is not a fixed point");
    let kind = match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    format!("{kind}:{}", strict.is_ok())
}
