//! The canonical forms a cache key hashes: the normalized prompt ([`normalize`], with its NFC
//! and punctuation tables) and RFC 8785 JSON ([`canonical_json`]). A crate of its own so that
//! the release profile can build this hot code for speed and the rest of the gateway for size
//! (`docs/DECISIONS.md`, "Bundle size"); `gateway_core::cache` re-exports it.

pub mod canonical_json;
pub mod digest;
pub mod nfc;
pub mod normalize;
pub mod punctuation;
