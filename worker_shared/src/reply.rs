//! A contract error as an HTTP response: the JSON envelope, the status, the extra headers.

use gateway_core::error::ApiError;
use worker::Response;

/// `e` as a response: `{"error": {...}}`, its status and its headers (e.g. `Retry-After`).
pub fn reply_error(e: &ApiError) -> Response {
    let resp = Response::from_json(&e.body())
        .unwrap_or_else(|_| Response::empty().unwrap_or_else(|_| Response::builder().empty()))
        .with_status(e.status);
    let h = resp.headers();
    for (name, value) in &e.headers {
        // The values are produced by the Workers themselves; an invalid one is left out.
        let _ = h.set(name, value);
    }
    resp
}
