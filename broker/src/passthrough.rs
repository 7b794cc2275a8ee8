//! `POST /v1/passthrough`: a drop-in request forwarded byte for byte. The same checks as the
//! gateway's run again here, before any key is touched; the upstream's answer goes back as it
//! is (error bodies scrubbed), marked as the upstream's, with the tokens it used.

use gateway_core::api::dropin::{self, Dialect};
use gateway_core::broker::errors::upstream_failure;
use gateway_core::broker::passthrough::{
    answer_headers, read_upstream_answer, upstream_headers, KeyUsed, UpstreamAnswer, BETA_HEADER,
    VERSION_HEADER,
};
use gateway_core::broker::{
    ACCOUNT_ID_HEADER, BYOK_HEADER, ORIGIN_HEADER, ORIGIN_UPSTREAM, QUOTA_CODE_HEADER,
    REQUEST_ID_HEADER, STREAM_HEADER, TEST_MODE_HEADER,
};
use gateway_core::error::ApiError;
use gateway_core::providers::models::default_allowlist;
use gateway_core::providers::Provider;
use worker::{web_sys, Env, Request};
use worker_shared::body::read_capped;
use worker_shared::fetch;

use crate::config::{max_output_tokens, platform_key, timeout_ms, upstream_base};
use crate::log;
use crate::seal::open_byok;
use crate::upstream::{error_text, open_upstream_stream, send_upstream};

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .ok()
        .flatten()
        .filter(|v| !v.is_empty())
}

/// Forwards one drop-in request for `provider` (one with a dialect; 404 otherwise).
pub async fn passthrough(
    mut req: Request,
    env: &Env,
    provider: Provider,
) -> Result<web_sys::Response, ApiError> {
    let dialect = Dialect::for_provider(provider).ok_or_else(ApiError::not_found)?;
    let request_id = header(&req, REQUEST_ID_HEADER)
        .ok_or_else(|| ApiError::invalid_request("missing request id"))?;
    let account_id = header(&req, ACCOUNT_ID_HEADER)
        .ok_or_else(|| ApiError::invalid_request("missing account id"))?;
    let test_mode = header(&req, TEST_MODE_HEADER).as_deref() == Some("1");
    let sealed = header(&req, BYOK_HEADER);
    let used = match sealed {
        Some(_) => KeyUsed::Account,
        None => KeyUsed::Platform {
            quota_code: header(&req, QUOTA_CODE_HEADER).as_deref() == Some("1"),
        },
    };
    let version = header(&req, VERSION_HEADER);
    let beta = header(&req, BETA_HEADER);
    let body = read_capped(&mut req, dropin::BODY_LIMIT).await?;
    let parsed = dropin::parse_request(
        dialect,
        &body,
        default_allowlist(provider),
        max_output_tokens(env),
    )?;

    if test_mode {
        let now_s = worker_shared::clock::now_ms() / 1000;
        let (answer, tokens) = dropin::synthetic_response(&parsed, now_s);
        return upstream_reply(UpstreamAnswer {
            status: 200,
            body: answer.to_string(),
            tokens: Some(tokens),
            retry_after: None,
        });
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
    let url = provider.completion_url(&base, &parsed.model);
    let headers = upstream_headers(dialect, &key, version.as_deref(), beta.as_deref());
    let bytes = worker::js_sys::Uint8Array::from(body.as_slice());
    if parsed.stream {
        return stream_upstream(
            env,
            provider,
            dialect,
            &request_id,
            &url,
            &headers,
            bytes,
            &key,
            used,
        )
        .await;
    }
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
    let success = (200..300).contains(&status);
    if !success {
        log(&format!(
            "broker {provider}: passthrough {request_id}: upstream HTTP {status}"
        ));
    }
    let answer =
        read_upstream_answer(dialect, status, text, retry_after, &key, used)
            .inspect_err(|_| {
                if success {
                    log(&format!("broker {provider}: passthrough {request_id}: HTTP {status} without usable usage counts"));
                }
            })?;
    upstream_reply(answer)
}

/// A streamed call: a success's event stream goes back as the upstream sends it (its body is
/// handed on, not read: nothing here waits for the whole answer), marked as the upstream's and
/// as a stream; the gateway reads the usage from the events. A refusal before the stream is
/// the upstream's JSON error, answered as for a whole call (scrubbed, with its status).
#[allow(clippy::too_many_arguments)]
async fn stream_upstream(
    env: &Env,
    provider: Provider,
    dialect: Dialect,
    request_id: &str,
    url: &str,
    headers: &[(String, String)],
    body: worker::js_sys::Uint8Array,
    key: &str,
    used: KeyUsed,
) -> Result<web_sys::Response, ApiError> {
    let upstream =
        match open_upstream_stream(provider, url, headers, body.into(), timeout_ms(env)).await {
            Ok(r) => r,
            Err(e) => {
                log(&format!(
                    "broker {provider}: stream {request_id}: {}: {}",
                    e.code, e.message
                ));
                return Err(upstream_failure(&e, key));
            }
        };
    let status = upstream.status();
    if !(200..300).contains(&status) {
        log(&format!(
            "broker {provider}: stream {request_id}: upstream HTTP {status}"
        ));
        let retry_after = fetch::header(&upstream, "retry-after");
        let text = error_text(&upstream).await;
        return upstream_reply(read_upstream_answer(
            dialect,
            status,
            text,
            retry_after,
            key,
            used,
        )?);
    }
    let Some(stream) = upstream.body() else {
        return Err(gateway_core::broker::errors::upstream_malformed(
            provider, status,
        ));
    };
    // The runtime's own `Response` around the upstream's body as it is.
    let headers = web_sys::Headers::new().map_err(|_| ApiError::internal())?;
    for (name, value) in [
        ("content-type", "text/event-stream"),
        (ORIGIN_HEADER, ORIGIN_UPSTREAM),
        (STREAM_HEADER, "1"),
    ] {
        headers.set(name, value).map_err(|_| ApiError::internal())?;
    }
    let init = web_sys::ResponseInit::new();
    init.set_status(status);
    init.set_headers(&headers);
    web_sys::Response::new_with_opt_readable_stream_and_init(Some(&stream), &init)
        .map_err(|_| ApiError::internal())
}

/// The upstream's answer, marked as such, with the tokens it used: the runtime's own `Response`,
/// whose refusal of a status is an error here (the `worker` crate's conversion unwraps it, and
/// a panic would reset this broker's isolate under every call in flight).
fn upstream_reply(answer: UpstreamAnswer) -> Result<web_sys::Response, ApiError> {
    let headers = web_sys::Headers::new().map_err(|_| ApiError::internal())?;
    for (name, value) in answer_headers(&answer) {
        headers
            .set(name, &value)
            .map_err(|_| ApiError::internal())?;
    }
    let init = web_sys::ResponseInit::new();
    init.set_status(answer.status);
    init.set_headers(&headers);
    web_sys::Response::new_with_opt_str_and_init(Some(&answer.body), &init)
        .map_err(|_| ApiError::internal())
}
