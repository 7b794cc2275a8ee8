//! Bodies: a subrequest's response read as text in one native call, and a request's body read
//! with a byte cap.
//!
//! worker's own `Response::text` goes through a chunk stream whose reader is set up, read and
//! released from Rust around every chunk; profiles of the miss path showed that machinery as
//! its largest cost, hence [`text`].

use futures::StreamExt;
use gateway_core::error::ApiError;
use worker::wasm_bindgen_futures::JsFuture;
use worker::{web_sys, Error, Request, Response, Result};

/// The whole body of `resp` as text (UTF-8, as `Response.text()` decodes it).
pub async fn text(resp: Response) -> Result<String> {
    let native: web_sys::Response = resp.into();
    let value = JsFuture::from(native.text()?).await?;
    value
        .as_string()
        .ok_or_else(|| Error::RustError("response body is not text".into()))
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
    let mut stream = match req.stream() {
        Ok(s) => s,
        // No body at all.
        Err(_) => return Ok(Vec::new()),
    };
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
