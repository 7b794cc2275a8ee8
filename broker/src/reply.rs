//! A JSON answer: its status and body. Served as an HTTP response by `fetch`, and as
//! `[status, body]` by the RPC method `complete`.

use gateway_core::error::ApiError;
use worker::Response;

pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    pub fn json<T: serde::Serialize>(status: u16, v: &T) -> Result<Reply, ApiError> {
        let body = serde_json::to_string(v).map_err(|_| ApiError::internal())?;
        Ok(Reply { status, body })
    }

    pub fn error(e: &ApiError) -> Reply {
        Reply {
            status: e.status,
            body: e.body().to_string(),
        }
    }

    pub fn into_response(self) -> Result<Response, ApiError> {
        let resp = Response::ok(self.body)
            .map_err(|_| ApiError::internal())?
            .with_status(self.status);
        let _ = resp.headers().set("Content-Type", "application/json");
        Ok(resp)
    }
}
