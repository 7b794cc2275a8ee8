//! Gateway API keys: minting (`lvk_live_`/`lvk_test_` + 32 random bytes), the 12-character
//! lookup prefix, the SHA-256 hash that is stored, and constant-time verification.

pub mod byok;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Characters of the token kept in clear as the lookup prefix (and TokenBucket name).
pub const PREFIX_LEN: usize = 12;
/// Length of the URL-safe base64 (no padding) encoding of 32 bytes.
const SECRET_B64_LEN: usize = 43;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyMode {
    Live,
    Test,
}

impl KeyMode {
    pub fn tag(self) -> &'static str {
        match self {
            KeyMode::Live => "lvk_live_",
            KeyMode::Test => "lvk_test_",
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            KeyMode::Live => "live",
            KeyMode::Test => "test",
        }
    }
    pub fn parse(s: &str) -> Option<KeyMode> {
        match s {
            "live" => Some(KeyMode::Live),
            "test" => Some(KeyMode::Test),
            _ => None,
        }
    }
}

/// A freshly minted key. `token` is shown to the caller once and never stored.
#[derive(Debug, Clone)]
pub struct MintedKey {
    pub token: String,
    pub prefix: String,
    pub hash: String,
    pub mode: KeyMode,
}

/// Builds a key from 32 random bytes drawn by the caller (the edge owns randomness).
pub fn mint(mode: KeyMode, secret: &[u8; 32]) -> MintedKey {
    let token = format!("{}{}", mode.tag(), URL_SAFE_NO_PAD.encode(secret));
    MintedKey {
        prefix: token[..PREFIX_LEN].to_string(),
        hash: hash_token(&token),
        token,
        mode,
    }
}

/// A token that has the right shape; it may still be unknown or revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WellFormedToken<'a> {
    pub token: &'a str,
    pub prefix: &'a str,
    pub mode: KeyMode,
}

/// Checks the token's shape without touching storage.
pub fn parse_token(token: &str) -> Option<WellFormedToken<'_>> {
    let mode = if token.starts_with(KeyMode::Live.tag()) {
        KeyMode::Live
    } else if token.starts_with(KeyMode::Test.tag()) {
        KeyMode::Test
    } else {
        return None;
    };
    let secret = &token[mode.tag().len()..];
    let ok = secret.len() == SECRET_B64_LEN
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| WellFormedToken {
        token,
        prefix: &token[..PREFIX_LEN],
        mode,
    })
}

/// Lowercase hex SHA-256 of the whole token: what the database stores.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Compares the token's hash with the stored one in constant time.
pub fn hash_matches(stored_hash_hex: &str, token: &str) -> bool {
    let computed = hash_token(token);
    constant_time_eq(stored_hash_hex.as_bytes(), computed.as_bytes())
}

/// Constant-time byte comparison (length is not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

/// Identifiers the gateway hands out: `acct_<32 hex>`, `req_<32 hex>`.
pub fn make_id(kind: &str, random: &[u8; 16]) -> String {
    format!("{kind}_{}", hex::encode(random))
}

/// True when `id` looks like `<kind>_<32 lowercase hex>`.
pub fn is_id(kind: &str, id: &str) -> bool {
    id.strip_prefix(kind)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_key_has_tag_43_char_secret_and_12_char_prefix() {
        let k = mint(KeyMode::Live, &[7u8; 32]);
        assert!(k.token.starts_with("lvk_live_"));
        assert_eq!(k.token.len(), 9 + 43);
        assert_eq!(k.prefix, &k.token[..12]);
        assert_eq!(k.hash, hash_token(&k.token));
        assert_eq!(k.hash.len(), 64);
        let t = mint(KeyMode::Test, &[7u8; 32]);
        assert!(t.token.starts_with("lvk_test_"));
        assert_ne!(t.hash, k.hash);
    }

    #[test]
    fn parse_accepts_minted_and_rejects_malformed() {
        let k = mint(KeyMode::Test, &[200u8; 32]);
        let p = parse_token(&k.token).expect("well formed");
        assert_eq!(p.prefix, k.prefix);
        assert_eq!(p.mode, KeyMode::Test);
        for bad in [
            "",
            "lvk_live_",
            "lvk_prod_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            &k.token[..k.token.len() - 1],
            &format!("{}A", k.token),
            "lvk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "lvk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAé",
            "sk-abc",
        ] {
            assert!(parse_token(bad).is_none(), "{bad:?} should be malformed");
        }
    }

    #[test]
    fn hash_matches_only_the_same_token() {
        let k = mint(KeyMode::Live, &[1u8; 32]);
        assert!(hash_matches(&k.hash, &k.token));
        let other = mint(KeyMode::Live, &[2u8; 32]);
        assert!(!hash_matches(&k.hash, &other.token));
        assert!(!hash_matches("", &k.token));
    }

    #[test]
    fn bearer_parses_scheme_case_insensitively() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(bearer("Bearer "), None);
    }

    #[test]
    fn ids_round_trip_and_reject_other_shapes() {
        let id = make_id("req", &[0xab; 16]);
        assert!(is_id("req", &id));
        assert!(!is_id("acct", &id));
        assert!(!is_id("req", "req_ABAB"));
        assert!(!is_id("req", &id.to_uppercase()));
        assert!(!is_id("req", "req_../../etc/passwd"));
    }
}
