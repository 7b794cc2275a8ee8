//! Pure logic shared by the gateway, its Durable Objects and the brokers: no `worker` import,
//! no clock reads, no I/O. Everything here is tested and benchmarked natively.
//!
//! One folder per concern: `api` (request parsing of `/v1/ask` and the drop-in dialects, the
//! request URL's parts), `cache` (cache keys and cache-control; normalization and canonical
//! JSON come from the `gateway-canonical` crate), `limits` (tiers, token buckets, the
//! `TokenBucket` object's operations, rate-limit headers), `credits` (ledger, the
//! `AccountLedger` object's operations, prices), `keys` (API keys, BYOK sealing), `providers`
//! (models, completions, the providers' wire formats), `broker` (the gateway ↔ broker
//! protocol), `usage` (usage rows and their packing into D1 values), `wire` (internally tagged
//! JSON enums read without serde's buffering).

pub mod api;
pub mod broker;
pub mod cache;
pub mod credits;
pub mod error;
pub mod keys;
pub mod limits;
pub mod providers;
pub mod scrub;
pub mod usage;
pub mod wire;
