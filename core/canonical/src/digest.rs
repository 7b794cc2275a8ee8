//! The SHA-256 of canonical JSON text, streamed into the hasher as it is written: the many
//! short pieces (quotes, commas, escapes) are gathered in a small buffer, long runs such as the
//! prompt go straight in. The cache key's hashing, built here with the rest of its hot code.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::canonical_json::{write_canonical_json_to, write_json_string, JsonSink};
use crate::normalize::write_normalized_json_body_in_parts;

/// Canonical JSON text on its way into SHA-256.
pub struct CanonicalDigest {
    hasher: Sha256,
    buf: Vec<u8>,
}

/// Size of the gathering buffer; writes at least this long bypass it.
const HASH_BUF: usize = 4096;

impl Default for CanonicalDigest {
    fn default() -> Self {
        Self::new()
    }
}

impl CanonicalDigest {
    pub fn new() -> Self {
        CanonicalDigest {
            hasher: Sha256::new(),
            buf: Vec::with_capacity(HASH_BUF),
        }
    }

    /// Raw JSON text (punctuation of the tuple around its elements).
    pub fn push_raw(&mut self, s: &str) {
        JsonSink::push_str(self, s);
    }

    /// `s` as a JSON string literal.
    pub fn push_string(&mut self, s: &str) {
        write_json_string(s, self);
    }

    /// The canonical JSON of `v`.
    pub fn push_value(&mut self, v: &Value) {
        write_canonical_json_to(v, self);
    }

    /// The JSON string body of `normalize(prompt)` (no quotes), written in one pass.
    pub fn push_normalized_prompt(&mut self, prompt: &str) {
        let hasher = &mut self.hasher;
        write_normalized_json_body_in_parts(prompt, &mut self.buf, HASH_BUF, |buf| {
            if buf.len() >= HASH_BUF {
                drain(hasher, buf);
            }
        });
    }

    fn flush(&mut self) {
        drain(&mut self.hasher, &mut self.buf);
    }

    /// Lowercase hex of the digest, 64 characters.
    pub fn finish_hex(mut self) -> String {
        self.flush();
        hex::encode(self.hasher.finalize())
    }
}

/// Hashes what `buf` gathered and empties it.
fn drain(hasher: &mut Sha256, buf: &mut Vec<u8>) {
    hasher.update(&buf[..]);
    buf.clear();
}

impl JsonSink for CanonicalDigest {
    fn push_str(&mut self, s: &str) {
        if self.buf.len() + s.len() > HASH_BUF {
            self.flush();
        }
        if s.len() >= HASH_BUF {
            self.hasher.update(s.as_bytes());
        } else {
            self.buf.extend_from_slice(s.as_bytes());
        }
    }
}
