//! The HTTP edge of the gateway: what a request carries, reading it, answering it, and its
//! log line.

pub mod context;
pub mod log;
pub mod request;
pub mod response;
