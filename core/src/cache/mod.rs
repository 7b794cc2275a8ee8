//! The cache key and its parts: prompt normalization, canonical JSON, the key itself, and the
//! request/response cache-control rules, and the single flight of identical misses.

pub mod canonical_json;
pub mod control;
pub mod flight;
pub mod key;
pub mod nfc;
pub mod normalize;
pub mod punctuation;
