//! The cache key and its parts: prompt normalization, canonical JSON, the key itself, and the
//! request/response cache-control rules.

pub mod canonical_json;
pub mod control;
pub mod key;
pub mod normalize;
