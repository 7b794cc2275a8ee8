//! Responses: JSON bodies, headers, and the contract's error envelope.

use gateway_core::error::ApiResult;

use gateway_core::error::ApiError;
use serde::Serialize;
use worker::{Headers, Response};

/// A JSON response with the given status.
pub fn json<T: Serialize>(status: u16, body: &T) -> ApiResult<Response> {
    Response::from_json(body)
        .map(|r| r.with_status(status))
        .map_err(|_| ApiError::internal())
}

/// A response whose body is already-serialized JSON.
pub fn json_text(status: u16, body: String) -> ApiResult<Response> {
    let resp = Response::ok(body)
        .map(|r| r.with_status(status))
        .map_err(|_| ApiError::internal())?;
    set_header(resp.headers(), "Content-Type", "application/json");
    Ok(resp)
}

/// Sets a header, ignoring invalid values (all values here are produced by the gateway).
pub fn set_header(headers: &Headers, name: &str, value: &str) {
    let _ = headers.set(name, value);
}

/// Renders a contract error as a response: envelope, status, extra headers.
pub fn error_response(e: &ApiError, request_id: &str) -> Response {
    let resp = worker_shared::reply::reply_error(e);
    set_header(resp.headers(), "X-Request-Id", request_id);
    resp
}
