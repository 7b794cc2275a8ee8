//! The cache key and its parts: prompt normalization, canonical JSON, the key itself, and the
//! request/response cache-control rules, and the single flight of identical misses.

pub mod control;
pub mod flight;
pub mod key;

pub use gateway_canonical::{canonical_json, nfc, normalize, punctuation};
