//! `POST /v1/complete-stream`: one `/v1/ask` completion in the provider's streaming mode, told
//! to the gateway as events while the provider writes it: `delta` `{"text"}` as text arrives,
//! then `result` (the completion, as `/v1/complete` answers it) or `error` (`StreamFailure`:
//! the failure as `/v1/complete` would answer it, and whether the provider had begun its
//! answer). The same checks as `/v1/complete` run first.

use futures::StreamExt;
use gateway_core::api::dropin::stream::sse;
use gateway_core::broker::errors::StreamFailure;
use gateway_core::broker::synthetic_completion;
use gateway_core::error::ApiError;
use gateway_core::providers::adapters::{self, stream::CompletionStream};
use gateway_core::providers::completion::ProviderError;
use gateway_core::providers::Provider;
use gateway_core::scrub::scrub_secrets;
use serde_json::json;
use worker::{Env, Response};
use worker_shared::body::Chunks;

use crate::complete::{checked, Checked};
use crate::config::{timeout_ms, upstream_base};
use crate::log;
use crate::upstream::{error_text, open_upstream_stream};

fn delta(text: &str) -> Vec<u8> {
    sse::encode(Some("delta"), &json!({ "text": text }).to_string()).into_bytes()
}

fn result<T: serde::Serialize>(completion: &T) -> Vec<u8> {
    let body = serde_json::to_string(completion).unwrap_or_default();
    sse::encode(Some("result"), &body).into_bytes()
}

/// The `error` event of a call that failed before (`mid_answer` false) or after its provider
/// began answering.
fn failure(e: &ProviderError, key: &str, mid_answer: bool) -> Vec<u8> {
    let data = serde_json::to_string(&StreamFailure::new(e, key, mid_answer)).unwrap_or_default();
    sse::encode(Some("error"), &data).into_bytes()
}

fn events_response(
    body: impl futures::Stream<Item = Vec<u8>> + 'static,
) -> Result<Response, ApiError> {
    let resp = Response::from_stream(body.map(Ok::<Vec<u8>, worker::Error>))
        .map_err(|_| ApiError::internal())?;
    let _ = resp.headers().set("content-type", "text/event-stream");
    Ok(resp)
}

/// One streamed completion for the request `body` (already capped by the caller).
pub async fn complete_stream(
    body: &[u8],
    env: &Env,
    provider: Provider,
) -> Result<Response, ApiError> {
    let Checked { call, key } = checked(body, env, provider).await?;
    let Some(key) = key else {
        let c = synthetic_completion(provider, &call.completion);
        let events = [delta(&c.content), result(&c)].concat();
        return events_response(futures::stream::iter([events]));
    };
    let base = upstream_base(env)?;
    let upstream = adapters::stream::build_stream_request(provider, &call.completion, &base, &key);
    let logged = |e: &ProviderError| {
        log(&scrub_secrets(
            &format!(
                "broker {provider}: stream {} upstream error {}: {}",
                call.request_id, e.code, e.message
            ),
            &[&key],
        ));
    };
    let resp = match open_upstream_stream(
        provider,
        &upstream.url,
        &upstream.headers,
        upstream.body.into(),
        timeout_ms(env),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            logged(&e);
            return events_response(futures::stream::iter([failure(&e, &key, false)]));
        }
    };
    let status = resp.status();
    if !(200..300).contains(&status) {
        let retry_after = worker_shared::fetch::header(&resp, "retry-after");
        let text = error_text(&resp).await;
        let events = match adapters::parse_response(provider, status, retry_after.as_deref(), &text)
        {
            Ok(c) => [delta(&c.content), result(&c)].concat(),
            Err(e) => {
                logged(&e);
                failure(&e, &key, false)
            }
        };
        return events_response(futures::stream::iter([events]));
    }
    // A success without a body: the provider was called, so this is a malformed answer
    // (charged its worst case), not the broker's own failure.
    let body = Chunks::of(&resp)
        .ok_or_else(|| gateway_core::broker::errors::upstream_malformed(provider, status))?;
    // The provider's stream, read as it arrives; its deltas go on at once. `began`: some of
    // its text came, so a failure after it is one mid-answer (a stream that fails before any
    // text, e.g. a prompt Gemini blocks, is its refusal).
    let state = (body, Some(CompletionStream::new(provider)), key, false);
    let events = futures::stream::unfold(state, |(mut body, mut watcher, key, began)| async move {
        let w = watcher.as_mut()?;
        match body.next().await {
            Some(Ok(chunk)) => {
                let mut out: Vec<u8> = w.feed(&chunk).iter().flat_map(|t| delta(t)).collect();
                let began = began || !out.is_empty();
                // Its terminal event (or an error) came: the result goes now, whatever the
                // provider's connection does next (the body is dropped with the stream).
                if w.ended() {
                    let w = watcher.take()?;
                    out.extend(outcome(w, &key, began));
                }
                Some((out, (body, watcher, key, began)))
            }
            // The end (or a broken stream): the completion the events add up to, or why not.
            _ => {
                let w = watcher.take()?;
                let out = outcome(w, &key, began);
                Some((out, (body, None, key, began)))
            }
        }
    })
    .filter(|chunk| futures::future::ready(!chunk.is_empty()));
    events_response(events)
}

/// The last event of a provider's stream: its `result`, or why it gave none.
fn outcome(w: CompletionStream, key: &str, began: bool) -> Vec<u8> {
    match w.finish() {
        Ok(c) => result(&c),
        Err(e) => failure(&e, key, began),
    }
}
