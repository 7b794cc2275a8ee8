//! Integration tests: the whole system under one `wrangler dev`, through its public HTTP API.

mod bad_input;
mod brokers;
mod cache;
mod coalescing;
mod data;
mod dropin;
mod foundation;
mod hardening;
mod promises;
mod ratelimit;
mod sessions;
mod streaming;
mod strict_json;
