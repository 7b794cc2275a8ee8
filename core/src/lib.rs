//! Pure logic shared by the gateway, its Durable Objects and the brokers: no `worker` import,
//! no clock reads, no I/O. Everything here is tested and benchmarked natively.

pub mod adapters;
pub mod ask;
pub mod batch;
pub mod broker;
pub mod bucket;
pub mod byok;
pub mod cache_control;
pub mod cache_key;
pub mod canonical_json;
pub mod completion;
pub mod dropin;
pub mod error;
pub mod keys;
pub mod ledger;
pub mod models;
pub mod normalize;
pub mod pricing;
pub mod provider;
pub mod ratelimit_headers;
pub mod scrub;
pub mod tier;
