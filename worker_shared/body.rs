//! Reads a subrequest's response body with one native `Response.text()` call. worker's own
//! `Response::text` goes through a chunk stream whose reader is set up, read and released from
//! Rust around every chunk; profiles of the miss path showed that machinery as its largest cost.
//! Shared by the gateway and the brokers (included with `#[path]`).

use worker::wasm_bindgen_futures::JsFuture;
use worker::{web_sys, Error, Response, Result};

/// The whole body of `resp` as text (UTF-8, as `Response.text()` decodes it).
pub async fn text(resp: Response) -> Result<String> {
    let native: web_sys::Response = resp.into();
    let value = JsFuture::from(native.text()?).await?;
    value
        .as_string()
        .ok_or_else(|| Error::RustError("response body is not text".into()))
}
