//! Integration tests: the whole system under one `wrangler dev`, through its public HTTP API.

mod bad_input;
mod brokers;
mod cache;
mod coalescing;
mod dashboard;
mod data;
mod dropin;
mod foundation;
mod hardening;
mod logs;
mod promises;
mod ratelimit;
mod rotation;
mod sessions;
mod streaming;
mod strict_json;
mod tokens;
