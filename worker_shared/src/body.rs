//! Bodies: a response read as text in one native call, a request's body read with a byte
//! cap, and a body read chunk by chunk as it arrives ([`Chunks`]).
//!
//! worker's own `Response::text` goes through a chunk stream whose reader is set up, read and
//! released from Rust around every chunk; profiles of the miss path showed that machinery as
//! its largest cost, hence [`text`] (and [`crate::fetch::text`] for a subrequest's answer). worker's `ByteStream` releases its reader's lock when the
//! body ends (the Streams standard has that reject the reader's `closed` promise with a new
//! `TypeError`): in the gateway isolate's profile of streamed misses that one call took as
//! long as all the body's reads together, for a lock nobody takes again, hence [`Chunks`].

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures::{FutureExt, Stream, StreamExt};
use gateway_core::error::ApiError;
use worker::js_sys::Uint8Array;
use worker::wasm_bindgen::JsCast;
use worker::wasm_bindgen_futures::JsFuture;
use worker::{web_sys, Error, Request, Response, Result};

/// The whole body of worker's `resp` as text (UTF-8, as `Response.text()` decodes it); a
/// subrequest's answer is read with [`crate::fetch::text`], without the conversion.
pub async fn text(resp: Response) -> Result<String> {
    crate::fetch::text(&resp.into()).await
}

/// Reads the request's body, refusing (413) as soon as it passes `limit` bytes: a declared
/// Content-Length over the limit is refused before anything is read.
pub async fn read_capped(
    req: &mut Request,
    limit: usize,
) -> std::result::Result<Vec<u8>, ApiError> {
    let unreadable = || ApiError::invalid_request("could not read the request body");
    let declared = req
        .headers()
        .get("Content-Length")
        .ok()
        .flatten()
        .and_then(|len| len.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > limit as u64 => return Err(ApiError::body_too_large(limit)),
        // A declared length within the limit: the runtime enforces it, so the body is read
        // in one call (one await instead of one per chunk); the cap is still checked.
        Some(_) => {
            let body = req.bytes().await.map_err(|_| unreadable())?;
            if body.len() > limit {
                return Err(ApiError::body_too_large(limit));
            }
            return Ok(body);
        }
        None => {}
    }
    let native: &web_sys::Request = req.inner();
    let Some(body) = native.body() else {
        // No body at all.
        return Ok(Vec::new());
    };
    let mut stream = Chunks::new(body);
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| unreadable())?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::body_too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A body's chunks as they arrive (`Uint8Array`s, copied out), read from its stream's reader;
/// the same items as worker's `ByteStream`, an abort read as the end as it does. When the body
/// ends its reader is dropped, not released; dropped before the end, the stream is cancelled
/// (a broker's event stream: its upstream request with it).
pub struct Chunks {
    /// `None` once the body ended (or failed).
    reader: Option<web_sys::ReadableStreamDefaultReader>,
    /// The read under way.
    read: Option<JsFuture>,
}

impl Chunks {
    pub fn new(stream: web_sys::ReadableStream) -> Self {
        Chunks {
            reader: Some(stream.get_reader().unchecked_into()),
            read: None,
        }
    }

    /// The chunks of `resp`'s body; `None` when it has none.
    pub fn of(resp: &web_sys::Response) -> Option<Self> {
        resp.body().map(Chunks::new)
    }
}

impl Stream for Chunks {
    type Item = Result<Vec<u8>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(reader) = &this.reader else {
            return Poll::Ready(None);
        };
        let read = this
            .read
            .get_or_insert_with(|| JsFuture::from(reader.read()));
        let result = ready!(read.poll_unpin(cx));
        this.read = None;
        let chunk = match result {
            Ok(result) => {
                let result: web_sys::ReadableStreamReadResult = result.unchecked_into();
                if result.get_done().unwrap_or(true) {
                    None
                } else {
                    Some(Ok(Uint8Array::new(&result.get_value()).to_vec()))
                }
            }
            Err(e) => match Error::from(e) {
                e if e.to_string() == "Error: aborted" => None,
                e => Some(Err(e)),
            },
        };
        if !matches!(chunk, Some(Ok(_))) {
            // Ended or failed: nothing more will be read.
            this.reader = None;
        }
        Poll::Ready(chunk)
    }
}

impl Drop for Chunks {
    fn drop(&mut self) {
        if let Some(reader) = self.reader.take() {
            // The body was not read to its end: the stream is cancelled, not left open.
            let _ = reader.cancel();
        }
    }
}
