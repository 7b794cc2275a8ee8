//! What callers send: `POST /v1/ask` and the drop-in dialects, parsed and validated.

pub mod account;
pub mod ask;
pub mod dropin;
pub mod route;
pub mod strict_json;
