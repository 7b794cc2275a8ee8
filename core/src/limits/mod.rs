//! Rate limits: tiers and their limits, the token-bucket math, and the rate-limit headers.

pub mod bucket;
pub mod headers;
pub mod tier;
