//! The upstream calls of both routes: a POST bounded by the runtime's own deadline, and a
//! streamed one bounded to its headers. Their headers hold the key: never log them. Both are
//! sent with the runtime's own `fetch` and answered its own `Response` (`worker_shared::fetch`).

use gateway_core::providers::completion::{ProviderError, ProviderErrorCode};
use gateway_core::providers::Provider;
use worker::wasm_bindgen::JsValue;
use worker::{web_sys, Headers, Method, Request, RequestInit};
use worker_shared::fetch;

/// The POST to the provider's `url` with `header_list` and `body`.
fn upstream_request(
    url: &str,
    header_list: &[(String, String)],
    body: JsValue,
) -> Result<Request, ProviderError> {
    let unreachable = |msg: &str| ProviderError::new(ProviderErrorCode::UpstreamUnreachable, msg);
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
    Request::new_with_init(url, &init).map_err(|_| unreachable("invalid upstream URL"))
}

/// One POST upstream, bounded by `timeout_ms`: the status, the `retry-after` header and the
/// body text.
pub async fn send_upstream(
    provider: Provider,
    url: &str,
    header_list: &[(String, String)],
    body: JsValue,
    timeout_ms: u64,
) -> Result<(u16, Option<String>, String), ProviderError> {
    let unreachable = |msg: &str| ProviderError::new(ProviderErrorCode::UpstreamUnreachable, msg);
    let request = upstream_request(url, header_list, body)?;
    // The runtime's own deadline (`AbortSignal.timeout`) covers the headers and the body, and
    // aborts the upstream request when it passes.
    let signal = web_sys::AbortSignal::timeout_with_f64(timeout_ms as f64);
    let timed_out = || {
        ProviderError::new(
            ProviderErrorCode::UpstreamTimeout,
            format!("{provider} did not answer within {timeout_ms} ms"),
        )
    };
    let resp = match fetch::global(request.inner(), Some(&signal)).await {
        Ok(resp) => resp,
        Err(_) if signal.aborted() => return Err(timed_out()),
        Err(_) => return Err(unreachable(&format!("could not reach {provider}"))),
    };
    let status = resp.status();
    let retry_after = fetch::header(&resp, "retry-after");
    match fetch::text(&resp).await {
        Ok(text) => Ok((status, retry_after, text)),
        Err(_) if signal.aborted() => Err(timed_out()),
        Err(_) => Err(unreachable("upstream connection closed")),
    }
}

/// One POST upstream whose answer is an event stream: the response once its headers arrived
/// within `timeout_ms` (the request is aborted past it), its body not read. A success's body
/// is then relayed as it arrives, never bounded by that deadline: the gateway bounds the
/// silence between events.
pub async fn open_upstream_stream(
    provider: Provider,
    url: &str,
    header_list: &[(String, String)],
    body: JsValue,
    timeout_ms: u64,
) -> Result<web_sys::Response, ProviderError> {
    let unreachable = |msg: &str| ProviderError::new(ProviderErrorCode::UpstreamUnreachable, msg);
    let request = upstream_request(url, header_list, body)?;
    let controller = worker::AbortController::default();
    let signal = controller.signal();
    let send = fetch::global(request.inner(), Some(&*signal));
    futures::pin_mut!(send);
    let timer = worker::Delay::from(std::time::Duration::from_millis(timeout_ms));
    match futures::future::select(send, timer).await {
        futures::future::Either::Left((Ok(resp), _)) => Ok(resp),
        futures::future::Either::Left((Err(_), _)) => {
            Err(unreachable(&format!("could not reach {provider}")))
        }
        futures::future::Either::Right(((), _)) => {
            controller.abort();
            Err(ProviderError::new(
                ProviderErrorCode::UpstreamTimeout,
                format!("{provider} did not answer within {timeout_ms} ms"),
            ))
        }
    }
}

/// The body of an upstream error answer as text (a stream request's refusal is JSON).
pub async fn error_text(resp: &web_sys::Response) -> String {
    fetch::text(resp).await.unwrap_or_default()
}
