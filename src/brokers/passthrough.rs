//! The drop-in passthrough: one broker call with the caller's body byte for byte and the
//! metadata in `x-gw-*` headers; the upstream's answer comes back as it is.

use super::{post_to_broker, timeout_ms};

use futures::future::{select, Either};
use gateway_core::broker::errors::{broker_unavailable, read_refusal, BrokerErrorCode, Refusal};
use gateway_core::broker::passthrough::read_usage_headers;
use gateway_core::broker::{
    ACCOUNT_ID_HEADER, BYOK_HEADER, ORIGIN_HEADER, ORIGIN_UPSTREAM, PASSTHROUGH_PATH,
    QUOTA_CODE_HEADER, REQUEST_ID_HEADER, STREAM_HEADER, TEST_MODE_HEADER, USAGE_INPUT_HEADER,
    USAGE_OUTPUT_HEADER,
};
use gateway_core::error::ApiError;
use gateway_core::providers::Provider;
use gateway_core::scrub::scrub;
use worker::{console_error, Delay, Headers};
use worker_shared::fetch;

use crate::http::context::RequestContext;
use gateway_core::error::ApiResult;

/// A drop-in call's answer from upstream (or the broker's synthetic test answer), as the broker
/// passed it back.
pub use gateway_core::broker::passthrough::UpstreamAnswer as Passthrough;

/// What the broker passed back for a drop-in call.
pub enum Upstream {
    /// A whole answer (or the upstream's refusal), with its usage.
    Whole(Passthrough),
    /// The upstream's event stream (2xx), still arriving: relayed, not read here.
    Stream {
        status: u16,
        body: worker::web_sys::ReadableStream,
    },
}

/// Forwards a drop-in request to `provider`'s broker: `body` byte for byte, the metadata in
/// `x-gw-*` headers, plus the caller's `anthropic-version` / `anthropic-beta` headers. Broker
/// refusals come back as contract errors; the upstream's answer, whatever its status, as a
/// [`Passthrough`].
#[allow(clippy::too_many_arguments)]
pub async fn passthrough(
    cx: &RequestContext,
    provider: Provider,
    account_id: &str,
    test_mode: bool,
    sealed: Option<&str>,
    forward: &[(&str, String)],
    body: &[u8],
) -> ApiResult<Upstream> {
    let timeout_ms = timeout_ms(cx);
    let headers = Headers::new();
    let _ = headers.set("Content-Type", "application/json");
    let _ = headers.set(REQUEST_ID_HEADER, &cx.request_id);
    let _ = headers.set(ACCOUNT_ID_HEADER, account_id);
    let _ = headers.set(TEST_MODE_HEADER, if test_mode { "1" } else { "0" });
    // This gateway reads `upstream_quota_exhausted` (a broker answers it only then).
    let _ = headers.set(QUOTA_CODE_HEADER, "1");
    if let Some(s) = sealed {
        let _ = headers.set(BYOK_HEADER, s);
    }
    for (name, value) in forward {
        let _ = headers.set(name, value);
    }
    let bytes = worker::js_sys::Uint8Array::from(body);
    let call = post_to_broker(cx, provider, PASSTHROUGH_PATH, headers, bytes.into());
    futures::pin_mut!(call);
    let timer = Delay::from(std::time::Duration::from_millis(timeout_ms));
    let resp = match select(call, timer).await {
        Either::Left((Ok(r), _)) => r,
        Either::Left((Err(e), _)) => {
            console_error!("broker {provider}: passthrough: {e}");
            return Err(broker_unavailable(provider));
        }
        Either::Right(((), _)) => {
            return Err(BrokerErrorCode::UpstreamTimeout
                .error(format!("{provider} did not answer within {timeout_ms} ms")))
        }
    };
    let status = resp.status();
    let header = |name: &str| fetch::header(&resp, name);
    let from_upstream = header(ORIGIN_HEADER).as_deref() == Some(ORIGIN_UPSTREAM);
    if from_upstream && header(STREAM_HEADER).as_deref() == Some("1") {
        if let Some(body) = resp.body() {
            return Ok(Upstream::Stream { status, body });
        }
        return Err(broker_unavailable(provider));
    }
    let tokens = read_usage_headers(
        header(USAGE_INPUT_HEADER).as_deref(),
        header(USAGE_OUTPUT_HEADER).as_deref(),
    );
    let retry_after = header("retry-after");
    let text = fetch::text(&resp).await.unwrap_or_default();
    if from_upstream {
        return Ok(Upstream::Whole(Passthrough {
            status,
            body: text,
            tokens,
            retry_after,
        }));
    }
    Err(broker_error(provider, status, &text, retry_after))
}

/// A broker's own refusal as a contract error for the caller (see [`read_refusal`]); one
/// that rejects the gateway itself (secret, path) is logged and becomes a 503: the caller did
/// nothing wrong.
pub(super) fn broker_error(
    provider: Provider,
    status: u16,
    text: &str,
    retry_after: Option<String>,
) -> ApiError {
    let refusal = read_refusal(provider, status, text, retry_after);
    if let Refusal::Unavailable { given, .. } = &refusal {
        console_error!(
            "broker {provider}: refused a passthrough with HTTP {status} `{}`",
            scrub(given)
        );
        // The broker checks the gateway's secret and the path before it touches its provider
        // key: such a refusal was never sent upstream, and costs the caller nothing.
        if let Some(BrokerErrorCode::Unauthorized | BrokerErrorCode::NotFound) =
            BrokerErrorCode::parse(given)
        {
            return refusal.into_error().never_sent();
        }
    }
    refusal.into_error()
}
