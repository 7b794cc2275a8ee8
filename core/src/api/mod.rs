//! What callers send: `POST /v1/ask` and the drop-in dialects, parsed and validated.

pub mod account;
pub mod ask;
pub mod dashboard;
pub mod dropin;
pub mod request_url;
pub mod route;
pub mod strict_json;

/// Largest request body the gateway (and a broker, on the drop-in path) reads at all, for
/// `/v1/ask` and the drop-in endpoints alike: room for a 20 KB prompt, a system prompt and JSON
/// escaping. Enforced while streaming, before the whole body is read.
pub const BODY_LIMIT: usize = 256 * 1024;
