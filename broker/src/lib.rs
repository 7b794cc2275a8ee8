//! The provider broker Worker: one crate deployed once per provider. It alone holds that
//! provider's key; it checks the shared secret, the model allowlist and the caps before the key
//! is used, speaks the provider's wire format, and returns only `{model, content, citations, tokens}`.

use futures::future::{select, Either};
use gateway_core::adapters;
use gateway_core::broker::{
    check_request, synthetic_completion, BrokerRequest, BROKER_BODY_LIMIT, COMPLETE_PATH,
    DEFAULT_MAX_OUTPUT_TOKENS, SECRET_HEADER,
};
use gateway_core::completion::{ProviderError, ProviderErrorCode};
use gateway_core::error::ApiError;
use gateway_core::keys::constant_time_eq;
use gateway_core::models::default_allowlist;
use gateway_core::provider::Provider;
use gateway_core::scrub::scrub;
use worker::{console_log, event, AbortController, Context, Delay, Env, Fetch, Headers, Method, Request, RequestInit, Response};

/// Default upstream timeout, when `UPSTREAM_TIMEOUT_MS` is not set.
const DEFAULT_TIMEOUT_MS: u64 = 30_000;

/// Every log line passes through the scrubber.
fn log(line: &str) {
    console_log!("{}", scrub(line));
}

fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name)
        .ok()
        .map(|v| v.to_string())
        .or_else(|| env.secret(name).ok().map(|v| v.to_string()))
        .filter(|v| !v.is_empty())
}

fn reply_error(e: &ApiError) -> worker::Result<Response> {
    Ok(Response::from_json(&e.body())?.with_status(e.status))
}

fn reply_provider_error(e: &ProviderError) -> worker::Result<Response> {
    let mut e = e.clone();
    e.message = scrub(&e.message).into_owned();
    Ok(Response::from_json(&serde_json::json!({ "error": e }))?.with_status(502))
}

#[event(fetch)]
pub async fn fetch(req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    match handle(req, &env).await {
        Ok(resp) => Ok(resp),
        Err(e) => reply_error(&e),
    }
}

async fn handle(mut req: Request, env: &Env) -> Result<Response, ApiError> {
    // 1. The shared secret, before anything else.
    let expected = var(env, "BROKER_SHARED_SECRET").ok_or_else(|| {
        log("broker misconfigured: BROKER_SHARED_SECRET is not set");
        ApiError::new(401, "unauthorized", "missing or invalid broker secret")
    })?;
    let given = req.headers().get(SECRET_HEADER).ok().flatten().unwrap_or_default();
    if !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        return Err(ApiError::new(401, "unauthorized", "missing or invalid broker secret"));
    }
    if req.method() != Method::Post || req.path() != COMPLETE_PATH {
        return Err(ApiError::not_found());
    }
    let provider = var(env, "PROVIDER")
        .and_then(|p| Provider::parse(&p))
        .ok_or_else(|| {
            log("broker misconfigured: PROVIDER is not a provider name");
            ApiError::internal()
        })?;

    // 2. The request, capped and parsed.
    let body = req.bytes().await.map_err(|_| ApiError::invalid_request("unreadable body"))?;
    if body.len() > BROKER_BODY_LIMIT {
        return Err(ApiError::body_too_large(BROKER_BODY_LIMIT));
    }
    let call: BrokerRequest = serde_json::from_slice(&body)
        .map_err(|_| ApiError::invalid_request("body is not a broker request"))?;

    // 3. Allowlist and caps, before the key is touched.
    let max_out = var(env, "MAX_OUTPUT_TOKENS")
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MAX_OUTPUT_TOKENS);
    check_request(provider, &call.completion, default_allowlist(provider), max_out)?;

    // 4. Test keys never reach the provider.
    if call.test_mode {
        return json_ok(&synthetic_completion(provider, &call.completion));
    }

    // 5. The upstream call.
    let key = var(env, "PROVIDER_API_KEY").ok_or_else(|| {
        log(&format!("broker {provider}: PROVIDER_API_KEY is not set"));
        ApiError::unavailable(5)
    })?;
    let base = var(env, "UPSTREAM_BASE_URL").ok_or_else(|| ApiError::internal())?;
    let timeout_ms = var(env, "UPSTREAM_TIMEOUT_MS")
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_TIMEOUT_MS);
    let upstream = adapters::build_request(provider, &call.completion, &base, &key);
    match call_upstream(provider, upstream, timeout_ms).await {
        Ok(completion) => json_ok(&completion),
        Err(e) => {
            log(&format!(
                "broker {provider}: request {} upstream error {}: {}",
                call.request_id, e.code, e.message
            ));
            reply_provider_error(&e).map_err(|_| ApiError::internal())
        }
    }
}

fn json_ok<T: serde::Serialize>(v: &T) -> Result<Response, ApiError> {
    Response::from_json(v).map_err(|_| ApiError::internal())
}

async fn call_upstream(
    provider: Provider,
    upstream: adapters::UpstreamRequest,
    timeout_ms: u64,
) -> Result<gateway_core::completion::Completion, ProviderError> {
    let unreachable = |msg: &str| ProviderError {
        code: ProviderErrorCode::UpstreamUnreachable,
        message: msg.to_string(),
        upstream_status: None,
        retry_after_ms: None,
    };
    let headers = Headers::new();
    for (k, v) in &upstream.headers {
        headers.set(k, v).map_err(|_| unreachable("invalid upstream header"))?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(upstream.body.into()));
    let request = Request::new_with_init(&upstream.url, &init).map_err(|_| unreachable("invalid upstream URL"))?;
    let controller = AbortController::default();
    let signal = controller.signal();
    let fetch = Fetch::Request(request);
    let call = async {
        let mut resp = fetch
            .send_with_signal(&signal)
            .await
            .map_err(|_| unreachable(&format!("could not reach {provider}")))?;
        let status = resp.status_code();
        let retry_after = resp.headers().get("retry-after").ok().flatten();
        let text = resp.text().await.map_err(|_| unreachable("upstream connection closed"))?;
        adapters::parse_response(provider, status, retry_after.as_deref(), &text)
    };
    let timer = Delay::from(std::time::Duration::from_millis(timeout_ms));
    futures::pin_mut!(call);
    match select(call, timer).await {
        Either::Left((result, _)) => result,
        Either::Right(((), _)) => {
            controller.abort();
            Err(ProviderError {
                code: ProviderErrorCode::UpstreamTimeout,
                message: format!("{provider} did not answer within {timeout_ms} ms"),
                upstream_status: None,
                retry_after_ms: None,
            })
        }
    }
}
