//! The provider broker Worker: one crate deployed once per provider. It alone holds that
//! provider's key (and, with every other broker, the BYOK master secret); it checks the shared
//! secret, the model allowlist and the caps before any key is used, speaks the provider's wire
//! format for `/v1/ask`, forwards drop-in requests verbatim, and seals and opens the keys that
//! accounts bring, writing a `key_access_log` row before a decrypted key is used.

use gateway_core::api::dropin::{self, Dialect};
use gateway_core::broker::errors::{
    byok_unavailable, completion_failure, key_audit_unavailable, platform_key_refused,
    provider_key_unusable, secret_refused, upstream_failure, upstream_malformed,
};
use gateway_core::broker::{
    check_request, synthetic_completion, BrokerRequest, SealRequest, ACCOUNT_ID_HEADER,
    BROKER_BODY_LIMIT, BYOK_HEADER, COMPLETE_PATH, DEFAULT_MAX_OUTPUT_TOKENS, ORIGIN_HEADER,
    PASSTHROUGH_PATH, REQUEST_ID_HEADER, SEAL_PATH, SECRET_HEADER, TEST_MODE_HEADER,
    USAGE_INPUT_HEADER, USAGE_OUTPUT_HEADER,
};
use gateway_core::error::ApiError;
use gateway_core::keys::byok::{self, MasterKey};
use gateway_core::keys::constant_time_eq;
use gateway_core::providers::adapters;
use gateway_core::providers::completion::{ProviderError, ProviderErrorCode};
use gateway_core::providers::models::default_allowlist;
use gateway_core::providers::Provider;
use gateway_core::scrub::{scrub, scrub_secrets};
use std::panic::AssertUnwindSafe;
use worker_shared::body::{self, read_capped};
use worker_shared::d1;
use worker_shared::env::var;
use worker_shared::reply::reply_error;

use worker::wasm_bindgen::prelude::wasm_bindgen;
use worker::wasm_bindgen::JsValue;
use worker::{
    console_log, event, js_sys, web_sys, AbortSignal, Context, Env, Fetch, Headers, Method,
    Request, RequestInit, Response,
};

/// Default upstream timeout, when `UPSTREAM_TIMEOUT_MS` is not set.
const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// Largest seal request body.
const SEAL_BODY_LIMIT: usize = 4 * 1024;

/// Every log line passes through the scrubber.
fn log(line: &str) {
    console_log!("{}", scrub(line));
}

/// A JSON answer: its status and body. Served as an HTTP response by `fetch`, and as
/// `[status, body]` by the RPC method `complete`.
struct Reply {
    status: u16,
    body: String,
}

impl Reply {
    fn json<T: serde::Serialize>(status: u16, v: &T) -> Result<Reply, ApiError> {
        let body = serde_json::to_string(v).map_err(|_| ApiError::internal())?;
        Ok(Reply { status, body })
    }

    fn error(e: &ApiError) -> Reply {
        Reply {
            status: e.status,
            body: e.body().to_string(),
        }
    }

    fn into_response(self) -> Result<Response, ApiError> {
        let resp = Response::ok(self.body)
            .map_err(|_| ApiError::internal())?
            .with_status(self.status);
        let _ = resp.headers().set("Content-Type", "application/json");
        Ok(resp)
    }
}

#[event(fetch)]
pub async fn fetch(req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    match handle(req, &env).await {
        Ok(resp) => Ok(resp),
        Err(e) => Ok(reply_error(&e)),
    }
}

/// The shared secret (checked first, in constant time) and this broker's provider.
fn admit(env: &Env, given: &str) -> Result<Provider, ApiError> {
    let expected = var(env, "BROKER_SHARED_SECRET").ok_or_else(|| {
        log("broker misconfigured: BROKER_SHARED_SECRET is not set");
        secret_refused()
    })?;
    if !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        return Err(secret_refused());
    }
    var(env, "PROVIDER")
        .and_then(|p| Provider::parse(&p))
        .ok_or_else(|| {
            log("broker misconfigured: PROVIDER is not a provider name");
            ApiError::internal()
        })
}

async fn handle(mut req: Request, env: &Env) -> Result<Response, ApiError> {
    // 1. The shared secret, before anything else.
    let given = req
        .headers()
        .get(SECRET_HEADER)
        .ok()
        .flatten()
        .unwrap_or_default();
    let provider = admit(env, &given)?;
    if req.method() != Method::Post {
        return Err(ApiError::not_found());
    }
    match req.path().as_str() {
        COMPLETE_PATH => {
            let body = read_capped(&mut req, BROKER_BODY_LIMIT).await?;
            complete(&body, env, provider).await?.into_response()
        }
        PASSTHROUGH_PATH => passthrough(req, env, provider).await,
        SEAL_PATH => seal(req, env, provider).await,
        _ => Err(ApiError::not_found()),
    }
}

/// `POST /v1/complete` as a Workers RPC method, the way the gateway calls it: `complete(secret,
/// body)` answers `[status, body]` exactly as `fetch` would answer that request. Exported to
/// the Worker's entry class by broker/src/entry.mjs, which passes the Worker's `env` and, for a
/// body it did not copy because it is over the limit, `oversized`.
#[wasm_bindgen(
    wasm_bindgen = ::worker::wasm_bindgen,
    wasm_bindgen_futures = ::worker::wasm_bindgen_futures,
    js_sys = ::worker::js_sys
)]
pub async fn broker_complete(
    env: Env,
    secret: String,
    body: String,
    oversized: bool,
) -> Result<JsValue, JsValue> {
    let run = async {
        let provider = admit(&env, &secret)?;
        if oversized || body.len() > BROKER_BODY_LIMIT {
            return Err(ApiError::body_too_large(BROKER_BODY_LIMIT));
        }
        complete(body.as_bytes(), &env, provider).await
    };
    let reply = AssertUnwindSafe(run)
        .await
        .unwrap_or_else(|e| Reply::error(&e));
    Ok(js_sys::Array::of2(&JsValue::from(reply.status), &JsValue::from(reply.body)).into())
}

fn max_output_tokens(env: &Env) -> u32 {
    var(env, "MAX_OUTPUT_TOKENS")
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MAX_OUTPUT_TOKENS)
}

fn timeout_ms(env: &Env) -> u64 {
    var(env, "UPSTREAM_TIMEOUT_MS")
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_TIMEOUT_MS)
}

fn platform_key(env: &Env, provider: Provider) -> Result<String, ApiError> {
    var(env, "PROVIDER_API_KEY").ok_or_else(|| {
        log(&format!("broker {provider}: PROVIDER_API_KEY is not set"));
        ApiError::unavailable(5)
    })
}

fn upstream_base(env: &Env) -> Result<String, ApiError> {
    var(env, "UPSTREAM_BASE_URL").ok_or_else(|| {
        log("broker misconfigured: UPSTREAM_BASE_URL is not set");
        ApiError::internal()
    })
}

/// `POST /v1/complete`: one `/v1/ask` completion in the provider's wire format.
async fn complete(body: &[u8], env: &Env, provider: Provider) -> Result<Reply, ApiError> {
    // 2. The request (capped by the caller), parsed.
    let call: BrokerRequest = serde_json::from_slice(body)
        .map_err(|_| ApiError::invalid_request("body is not a broker request"))?;

    // 3. Allowlist and caps, before the key is touched.
    check_request(
        provider,
        &call.completion,
        default_allowlist(provider),
        max_output_tokens(env),
    )?;

    // 4. Test keys never reach the provider.
    if call.test_mode {
        return Reply::json(200, &synthetic_completion(provider, &call.completion));
    }

    // 5. The upstream call, with the account's own key when it brought one.
    let key = match &call.byok_ciphertext {
        Some(sealed) => {
            open_byok(
                env,
                provider,
                &call.account_id,
                &call.request_id,
                "POST /v1/ask",
                sealed,
            )
            .await?
        }
        None => platform_key(env, provider)?,
    };
    let base = upstream_base(env)?;
    let upstream = adapters::build_request(provider, &call.completion, &base, &key);
    let result = match send_upstream(
        provider,
        &upstream.url,
        &upstream.headers,
        upstream.body.into(),
        timeout_ms(env),
    )
    .await
    {
        Ok((status, retry_after, text)) => {
            adapters::parse_response(provider, status, retry_after.as_deref(), &text)
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(completion) => Reply::json(200, &completion),
        Err(e) => {
            log(&scrub_secrets(
                &format!(
                    "broker {provider}: request {} upstream error {}: {}",
                    call.request_id, e.code, e.message
                ),
                &[&key],
            ));
            let (status, body) = completion_failure(&e, &key);
            Reply::json(status, &body)
        }
    }
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .ok()
        .flatten()
        .filter(|v| !v.is_empty())
}

/// A caller's `anthropic-version` / `anthropic-beta` value, if it is a plain token list.
fn safe_header_value(v: Option<String>, max: usize) -> Option<String> {
    v.filter(|s| {
        s.len() <= max
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_,. ".contains(&b))
    })
}

/// `POST /v1/passthrough`: a drop-in request forwarded byte for byte. The same checks as the
/// gateway's run again here, before any key is touched.
async fn passthrough(
    mut req: Request,
    env: &Env,
    provider: Provider,
) -> Result<Response, ApiError> {
    let dialect = Dialect::for_provider(provider).ok_or_else(ApiError::not_found)?;
    let request_id = header(&req, REQUEST_ID_HEADER)
        .ok_or_else(|| ApiError::invalid_request("missing request id"))?;
    let account_id = header(&req, ACCOUNT_ID_HEADER)
        .ok_or_else(|| ApiError::invalid_request("missing account id"))?;
    let test_mode = header(&req, TEST_MODE_HEADER).as_deref() == Some("1");
    let sealed = header(&req, BYOK_HEADER);
    let version = safe_header_value(header(&req, "anthropic-version"), 32);
    let beta = safe_header_value(header(&req, "anthropic-beta"), 256);
    let body = read_capped(&mut req, dropin::BODY_LIMIT).await?;
    let parsed = dropin::parse_request(
        dialect,
        &body,
        default_allowlist(provider),
        max_output_tokens(env),
    )?;

    if test_mode {
        let now_s = worker::Date::now().as_millis() / 1000;
        let (answer, tokens) = dropin::synthetic_response(&parsed, now_s);
        return upstream_reply(200, answer.to_string(), Some(tokens), None);
    }

    let key = match &sealed {
        Some(s) => {
            open_byok(
                env,
                provider,
                &account_id,
                &request_id,
                dialect.endpoint(),
                s,
            )
            .await?
        }
        None => platform_key(env, provider)?,
    };
    let base = upstream_base(env)?;
    let url = format!("{}{}", base.trim_end_matches('/'), dialect.upstream_path());
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    match dialect {
        Dialect::OpenAiChat => headers.push(("authorization".into(), format!("Bearer {key}"))),
        Dialect::AnthropicMessages => {
            headers.push(("x-api-key".into(), key.clone()));
            let v = version.unwrap_or_else(|| adapters::anthropic::API_VERSION.to_string());
            headers.push(("anthropic-version".into(), v));
            if let Some(b) = beta {
                headers.push(("anthropic-beta".into(), b));
            }
        }
    }
    let bytes = worker::js_sys::Uint8Array::from(body.as_slice());
    let (status, retry_after, text) =
        match send_upstream(provider, &url, &headers, bytes.into(), timeout_ms(env)).await {
            Ok(r) => r,
            Err(e) => {
                log(&format!(
                    "broker {provider}: passthrough {request_id}: {}: {}",
                    e.code, e.message
                ));
                return Err(upstream_failure(&e, &key));
            }
        };
    if (200..300).contains(&status) {
        let tokens = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| dropin::usage(dialect, &v));
        let Some(tokens) = tokens else {
            log(&format!("broker {provider}: passthrough {request_id}: HTTP {status} without usable usage counts"));
            return Err(upstream_malformed(provider, status));
        };
        return upstream_reply(status, text, Some(tokens), None);
    }
    log(&format!(
        "broker {provider}: passthrough {request_id}: upstream HTTP {status}"
    ));
    if sealed.is_none() && (status == 401 || status == 403) {
        // The platform's own key was refused: the caller's key is fine, so not a 401 for them.
        return Err(platform_key_refused(provider, status));
    }
    upstream_reply(
        status,
        scrub_secrets(&text, &[&key]).into_owned(),
        None,
        retry_after,
    )
}

/// The upstream's answer, marked as such, with the tokens it used.
fn upstream_reply(
    status: u16,
    body: String,
    tokens: Option<gateway_core::providers::completion::Tokens>,
    retry_after: Option<String>,
) -> Result<Response, ApiError> {
    let resp = Response::ok(body)
        .map_err(|_| ApiError::internal())?
        .with_status(status);
    let h = resp.headers();
    let _ = h.set("content-type", "application/json");
    let _ = h.set(ORIGIN_HEADER, "upstream");
    if let Some(t) = tokens {
        let _ = h.set(USAGE_INPUT_HEADER, &t.input.to_string());
        let _ = h.set(USAGE_OUTPUT_HEADER, &t.output.to_string());
    }
    if let Some(r) = retry_after.filter(|r| r.len() <= 32) {
        let _ = h.set("retry-after", &r);
    }
    Ok(resp)
}

fn master_key(env: &Env) -> Result<MasterKey, ApiError> {
    var(env, "BYOK_MASTER_KEY")
        .and_then(|h| MasterKey::from_hex(&h).ok())
        .ok_or_else(|| {
            log("broker misconfigured: BYOK_MASTER_KEY is not set or not 32 hex-encoded bytes");
            byok_unavailable()
        })
}

/// `POST /v1/byok/seal`: encrypts a key an account brings, for this broker's provider only.
async fn seal(mut req: Request, env: &Env, provider: Provider) -> Result<Response, ApiError> {
    let body = read_capped(&mut req, SEAL_BODY_LIMIT).await?;
    let r: SealRequest = serde_json::from_slice(&body)
        .map_err(|_| ApiError::invalid_request("body is not a seal request"))?;
    if r.provider != provider || !byok::supports(provider) {
        return Err(ApiError::invalid_request(
            "this broker seals only its own provider's keys",
        ));
    }
    byok::check_key(&r.key).map_err(|m| ApiError::invalid_param("key", m))?;
    let master = master_key(env)?;
    let mut nonce = [0u8; byok::NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|_| {
        log("broker: getrandom failed");
        ApiError::unavailable(1)
    })?;
    let ciphertext = byok::seal(&master, &r.account_id, provider, &r.key, nonce)
        .map_err(|_| ApiError::internal())?;
    Reply::json(200, &serde_json::json!({ "ciphertext": ciphertext }))?.into_response()
}

/// Decrypts the account's key and records the access before returning it. A key whose access
/// cannot be recorded is not used (503); one that does not decrypt is refused (424).
async fn open_byok(
    env: &Env,
    provider: Provider,
    account_id: &str,
    request_id: &str,
    purpose: &str,
    sealed: &str,
) -> Result<String, ApiError> {
    let master = master_key(env)?;
    match byok::open(&master, account_id, provider, sealed) {
        Ok(key) => {
            if let Err(e) = audit(env, account_id, provider, request_id, purpose).await {
                log(&format!(
                    "broker {provider}: key access log write failed, key not used: {e}"
                ));
                return Err(key_audit_unavailable());
            }
            Ok(key)
        }
        Err(e) => {
            log(&format!(
                "broker {provider}: request {request_id}: account key refused: {e}"
            ));
            // The failed attempt is recorded too (best effort: nothing is decrypted to protect).
            let _ = audit(
                env,
                account_id,
                provider,
                request_id,
                &format!("{purpose} (decryption failed)"),
            )
            .await;
            Err(provider_key_unusable(provider))
        }
    }
}

/// One `key_access_log` row, in the D1 database the gateway shares.
async fn audit(
    env: &Env,
    account_id: &str,
    provider: Provider,
    request_id: &str,
    purpose: &str,
) -> Result<(), String> {
    let db = env.d1("DB").map_err(|e| e.to_string())?;
    let now = worker::Date::now().as_millis();
    // No row for an account deleted while the call was on its way: and then no key use.
    let insert = d1::statement(
        &db,
        "INSERT INTO key_access_log (account_id, provider, request_id, purpose, created_at) \
         SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM accounts WHERE id = ?1)",
        &[
            d1::text(account_id),
            d1::text(provider.as_str()),
            d1::text(request_id),
            d1::text(purpose),
            d1::num(now),
        ],
    )
    .map_err(|e| e.to_string())?;
    let written = d1::run(&insert).await.map_err(|e| e.to_string())?;
    if written == 0 {
        return Err("the account no longer exists".into());
    }
    Ok(())
}

/// One POST upstream, bounded by `timeout_ms`: the status, the `retry-after` header and the
/// body text. Headers hold the key: never log them.
async fn send_upstream(
    provider: Provider,
    url: &str,
    header_list: &[(String, String)],
    body: JsValue,
    timeout_ms: u64,
) -> Result<(u16, Option<String>, String), ProviderError> {
    let unreachable = |msg: &str| ProviderError {
        code: ProviderErrorCode::UpstreamUnreachable,
        message: msg.to_string(),
        upstream_status: None,
        retry_after_ms: None,
    };
    let headers = Headers::new();
    for (k, v) in header_list {
        headers
            .set(k, v)
            .map_err(|_| unreachable("invalid upstream header"))?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(body));
    let request =
        Request::new_with_init(url, &init).map_err(|_| unreachable("invalid upstream URL"))?;
    // The runtime's own deadline (`AbortSignal.timeout`) covers the headers and the body, and
    // aborts the upstream request when it passes.
    let signal = AbortSignal::from(web_sys::AbortSignal::timeout_with_f64(timeout_ms as f64));
    let timed_out = || ProviderError {
        code: ProviderErrorCode::UpstreamTimeout,
        message: format!("{provider} did not answer within {timeout_ms} ms"),
        upstream_status: None,
        retry_after_ms: None,
    };
    let resp = match Fetch::Request(request).send_with_signal(&signal).await {
        Ok(resp) => resp,
        Err(_) if signal.aborted() => return Err(timed_out()),
        Err(_) => return Err(unreachable(&format!("could not reach {provider}"))),
    };
    let status = resp.status_code();
    let retry_after = resp.headers().get("retry-after").ok().flatten();
    match body::text(resp).await {
        Ok(text) => Ok((status, retry_after, text)),
        Err(_) if signal.aborted() => Err(timed_out()),
        Err(_) => Err(unreachable("upstream connection closed")),
    }
}
