//! Reading a request: the API key header, the JSON content type, capped bodies and small
//! JSON objects.

use gateway_core::error::ApiResult;

use gateway_core::error::ApiError;
use gateway_core::keys;
use worker::Request;

/// The bearer token of the request, or its `x-api-key` header (drop-in endpoints).
pub fn api_key_header(req: &Request) -> Option<String> {
    let h = req.headers();
    if let Ok(Some(auth)) = h.get("Authorization") {
        return keys::bearer(&auth).map(str::to_string);
    }
    h.get("x-api-key")
        .ok()
        .flatten()
        .map(|v| v.trim().to_string())
}

/// Requires a JSON content type (415 otherwise).
pub fn require_json(req: &Request) -> ApiResult<()> {
    let ct = req
        .headers()
        .get("Content-Type")
        .ok()
        .flatten()
        .unwrap_or_default();
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if media == "application/json"
        || (media.starts_with("application/") && media.ends_with("+json"))
    {
        Ok(())
    } else {
        Err(ApiError::unsupported_media_type())
    }
}

/// Reads the body, refusing (413) as soon as it passes `limit` bytes: a declared
/// Content-Length over the limit is refused before anything is read.
pub async fn read_body_capped(req: &mut Request, limit: usize) -> ApiResult<Vec<u8>> {
    worker_shared::body::read_capped(req, limit).await
}

/// Reads a small JSON body (admin and account routes) into a JSON object.
/// The body's JSON object, or an empty object when the request's body is empty (a route whose
/// fields are all optional, such as `POST /v1/keys`). A body with bytes in it must be JSON.
pub async fn read_optional_json_object(
    req: &mut Request,
    limit: usize,
) -> ApiResult<serde_json::Map<String, serde_json::Value>> {
    let body = read_body_capped(req, limit).await?;
    if body.is_empty() {
        return Ok(serde_json::Map::new());
    }
    require_json(req)?;
    json_object(&body)
}

pub async fn read_json_object(
    req: &mut Request,
    limit: usize,
) -> ApiResult<serde_json::Map<String, serde_json::Value>> {
    require_json(req)?;
    let body = read_body_capped(req, limit).await?;
    json_object(&body)
}

/// `body` as a JSON object, or the 400 for what it is instead. Strict, as the answering
/// endpoints' bodies are: a key named twice at any depth is refused, not read as its last value.
fn json_object(body: &[u8]) -> ApiResult<serde_json::Map<String, serde_json::Value>> {
    match gateway_core::api::strict_json::parse_strict(body)? {
        serde_json::Value::Object(m) => Ok(m),
        _ => Err(ApiError::invalid_request("the body must be a JSON object")),
    }
}
