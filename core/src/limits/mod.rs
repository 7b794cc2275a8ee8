//! Rate limits: tiers and their limits, the token-bucket math, the `TokenBucket` Durable
//! Object's operations and stored state, and the rate-limit headers.

pub mod bucket;
pub mod bucket_ops;
pub mod headers;
pub mod reservation;
pub mod tier;
