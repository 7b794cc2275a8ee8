//! The HTTP edge of the gateway: what a request carries, reading it, answering it.

pub mod context;
pub mod request;
pub mod response;
