//! Bring-your-own provider keys, sealed at rest: a per-account key derived with HKDF-SHA-256
//! from one of the brokers' master secrets (info `byok/v1/<account_id>`), AES-256-GCM with a
//! fresh 12-byte nonce per encryption (drawn by the caller: the edge owns randomness) and
//! `account_id \0 provider` as associated data, so a ciphertext moved to another account or
//! provider does not decrypt. A sealed key is opened for a call only through [`open_audited`]:
//! the access is recorded before the key is decrypted.
//!
//! **Master key versions.** The master secret is versioned so it can be rotated: a broker holds
//! a keyring ([`MasterKeys`]), one secret per version, `BYOK_MASTER_KEY_V<N>` (64 hex
//! characters), and the older single `BYOK_MASTER_KEY`, which is version 1. One secret per
//! version, because a Worker's secrets cannot be read back: a rotation adds the next version's
//! secret without having to know the others. Every ciphertext names the version that sealed
//! it; new seals use the newest version, every version still held opens, and [`reseal`] moves a
//! ciphertext to the newest. Stored form: version 1 is base64 (standard, padded) of
//! `nonce || ciphertext`, exactly the form that predates versioning (so every key stored before
//! it still opens, and a version-1 seal still opens in a broker rolled back to before it);
//! version N ≥ 2 is `v<N>:` followed by that base64. A standard base64 text never holds `:`, so
//! the two forms cannot be confused.

use std::collections::BTreeMap;
use std::future::Future;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hkdf::Hkdf;
use sha2::Sha256;

use crate::providers::Provider;

/// Bytes of the AES-GCM nonce that prefixes every ciphertext.
pub const NONCE_LEN: usize = 12;
/// HKDF `info` prefix; the account id follows it. (The scheme's version, not the key's.)
pub const INFO_PREFIX: &str = "byok/v1/";
/// Shortest and longest provider key accepted.
pub const KEY_MIN_LEN: usize = 8;
pub const KEY_MAX_LEN: usize = 512;
/// GCM tag length: the least a ciphertext holds past its nonce.
const TAG_LEN: usize = 16;
/// The broker secret holding one master key, version 1 (the name from before versioning).
pub const LEGACY_VAR: &str = "BYOK_MASTER_KEY";
/// The broker secret holding version N's master key is this prefix followed by N.
pub const VERSION_VAR_PREFIX: &str = "BYOK_MASTER_KEY_V";
/// The version of a ciphertext without a version prefix, and of [`LEGACY_VAR`].
pub const FIRST_VERSION: u32 = 1;
/// The highest version there can be (a broker looks for `BYOK_MASTER_KEY_V1` to `_V64`).
pub const MAX_VERSION: u32 = 64;

/// The name of the broker secret holding version `version`'s key.
pub fn version_var(version: u32) -> String {
    format!("{VERSION_VAR_PREFIX}{version}")
}

/// Why sealing or opening failed. Says nothing about the key or the plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByokError {
    /// The master secrets are not a keyring of 32-byte hex keys (see [`MasterKeys::from_secrets`]).
    BadMasterKey,
    /// Not base64, or too short to hold a nonce and a tag, or a malformed version prefix.
    Malformed,
    /// The ciphertext names a master key version this broker does not hold.
    UnknownVersion(u32),
    /// Authentication failed: wrong account, wrong provider, wrong master or tampered bytes.
    Decrypt,
    /// The cipher refused to encrypt (cannot happen with valid inputs).
    Encrypt,
}

impl std::fmt::Display for ByokError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ByokError::BadMasterKey => f.write_str(
                "the BYOK master secrets are not 32 hex-encoded bytes each, one key per version",
            ),
            ByokError::Malformed => f.write_str("the sealed key is malformed"),
            ByokError::UnknownVersion(v) => write!(
                f,
                "the sealed key names master key version {v}, which this broker does not hold"
            ),
            ByokError::Decrypt => {
                f.write_str("the sealed key does not decrypt for this account and provider")
            }
            ByokError::Encrypt => f.write_str("encryption failed"),
        }
    }
}

impl std::error::Error for ByokError {}

/// One of the brokers' master secrets. Its `Debug` form never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; 32]) -> MasterKey {
        MasterKey(bytes)
    }

    /// Parses 64 hex characters (surrounding whitespace ignored).
    pub fn from_hex(s: &str) -> Result<MasterKey, ByokError> {
        let bytes = hex::decode(s.trim()).map_err(|_| ByokError::BadMasterKey)?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| ByokError::BadMasterKey)?;
        Ok(MasterKey(arr))
    }

    /// The account's own AES-256 key: HKDF-SHA-256(master, no salt, info = `byok/v1/<account>`).
    fn account_cipher(&self, account_id: &str) -> Result<Aes256Gcm, ByokError> {
        let hk = Hkdf::<Sha256>::new(None, &self.0);
        let mut okm = [0u8; 32];
        let info = format!("{INFO_PREFIX}{account_id}");
        hk.expand(info.as_bytes(), &mut okm)
            .map_err(|_| ByokError::Encrypt)?;
        Aes256Gcm::new_from_slice(&okm).map_err(|_| ByokError::Encrypt)
    }
}

/// A broker's master keys by version (never empty): the newest seals, every one opens.
/// Its `Debug` form shows the versions only.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKeys(BTreeMap<u32, MasterKey>);

impl std::fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKeys(versions {:?})", self.versions())
    }
}

/// A canonical version number: decimal digits, no leading zero, 1 to [`MAX_VERSION`].
fn parse_version(digits: &str) -> Option<u32> {
    let canonical = !digits.is_empty()
        && digits.len() <= 6
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    canonical
        .then(|| digits.parse().ok())
        .flatten()
        .filter(|v| (FIRST_VERSION..=MAX_VERSION).contains(v))
}

impl MasterKeys {
    /// A keyring of one key.
    pub fn single(version: u32, key: MasterKey) -> MasterKeys {
        MasterKeys(BTreeMap::from([(version, key)]))
    }

    /// The keyring a broker's secrets describe: `legacy` (`BYOK_MASTER_KEY`, version 1) and
    /// `numbered` (each `BYOK_MASTER_KEY_V<N>` that is set, as `(N, value)`), each value 64 hex
    /// characters (unset or empty: absent). A version named twice must be the same key.
    /// Anything else (nothing set, a malformed key, a version out of range, one version with two
    /// keys) is [`ByokError::BadMasterKey`]: the broker then seals and opens nothing rather than
    /// guess.
    pub fn from_secrets(
        legacy: Option<&str>,
        numbered: &[(u32, &str)],
    ) -> Result<MasterKeys, ByokError> {
        let legacy = legacy.map(|l| (FIRST_VERSION, l));
        let mut keys: BTreeMap<u32, MasterKey> = BTreeMap::new();
        for (version, hex) in legacy.iter().chain(numbered) {
            if hex.trim().is_empty() {
                continue;
            }
            if !(FIRST_VERSION..=MAX_VERSION).contains(version) {
                return Err(ByokError::BadMasterKey);
            }
            let key = MasterKey::from_hex(hex)?;
            if keys.get(version).is_some_and(|named| *named != key) {
                return Err(ByokError::BadMasterKey);
            }
            keys.insert(*version, key);
        }
        if keys.is_empty() {
            return Err(ByokError::BadMasterKey);
        }
        Ok(MasterKeys(keys))
    }

    /// The versions held, oldest first.
    pub fn versions(&self) -> Vec<u32> {
        self.0.keys().copied().collect()
    }

    /// The version new seals use: the highest held.
    pub fn newest(&self) -> u32 {
        // Never empty (every constructor refuses an empty keyring).
        self.0.keys().next_back().copied().unwrap_or(FIRST_VERSION)
    }

    fn key(&self, version: u32) -> Result<&MasterKey, ByokError> {
        self.0
            .get(&version)
            .ok_or(ByokError::UnknownVersion(version))
    }

    /// The text every ciphertext sealed with the newest version starts with, when that
    /// version has a prefix (`v<N>:`; `None` for version 1, whose form has none): the rows a
    /// re-seal must visit are those not starting with it.
    pub fn newest_prefix(&self) -> Option<String> {
        version_prefix(self.newest())
    }
}

/// The prefix of a version's stored form: none for version 1, `v<N>:` above.
fn version_prefix(version: u32) -> Option<String> {
    (version > FIRST_VERSION).then(|| format!("v{version}:"))
}

/// The version a sealed key names and its base64 part. No `:` at all is version 1 (the form
/// from before versioning); otherwise the text must start with `v<N>:`, N ≥ 2.
fn split_version(sealed: &str) -> Result<(u32, &str), ByokError> {
    let sealed = sealed.trim();
    match sealed.split_once(':') {
        None => Ok((FIRST_VERSION, sealed)),
        Some((tag, rest)) => {
            let version = tag
                .strip_prefix('v')
                .and_then(parse_version)
                .filter(|v| *v > FIRST_VERSION)
                .ok_or(ByokError::Malformed)?;
            Ok((version, rest))
        }
    }
}

/// The master key version a sealed key names (version 1 for the unprefixed form).
pub fn version_of(sealed: &str) -> Result<u32, ByokError> {
    split_version(sealed).map(|(v, _)| v)
}

/// Providers whose keys an account may bring.
pub fn supports(provider: Provider) -> bool {
    matches!(provider, Provider::OpenAi | Provider::Anthropic)
}

/// The associated data binding a ciphertext to its owner: `account_id \0 provider`.
pub fn associated_data(account_id: &str, provider: Provider) -> Vec<u8> {
    let mut aad = Vec::with_capacity(account_id.len() + 1 + provider.as_str().len());
    aad.extend_from_slice(account_id.as_bytes());
    aad.push(0);
    aad.extend_from_slice(provider.as_str().as_bytes());
    aad
}

/// Encrypts `plaintext` for (`account_id`, `provider`) with the newest master key, under
/// `nonce`, which must never repeat for an account: draw it fresh from a CSPRNG for every call.
pub fn seal(
    keys: &MasterKeys,
    account_id: &str,
    provider: Provider,
    plaintext: &str,
    nonce: [u8; NONCE_LEN],
) -> Result<String, ByokError> {
    let version = keys.newest();
    let cipher = keys.key(version)?.account_cipher(account_id)?;
    let aad = associated_data(account_id, provider);
    let ct = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext.as_bytes(),
                aad: &aad,
            },
        )
        .map_err(|_| ByokError::Encrypt)?;
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    let body = STANDARD.encode(out);
    Ok(match version_prefix(version) {
        Some(prefix) => format!("{prefix}{body}"),
        None => body,
    })
}

/// Decrypts a sealed key of (`account_id`, `provider`) with the master key version it names.
pub fn open(
    keys: &MasterKeys,
    account_id: &str,
    provider: Provider,
    sealed: &str,
) -> Result<String, ByokError> {
    let (version, body) = split_version(sealed)?;
    let raw = STANDARD.decode(body).map_err(|_| ByokError::Malformed)?;
    if raw.len() < NONCE_LEN + TAG_LEN {
        return Err(ByokError::Malformed);
    }
    let (nonce, ct) = raw.split_at(NONCE_LEN);
    let cipher = keys.key(version)?.account_cipher(account_id)?;
    let aad = associated_data(account_id, provider);
    let pt = cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
        .map_err(|_| ByokError::Decrypt)?;
    String::from_utf8(pt).map_err(|_| ByokError::Decrypt)
}

/// What [`reseal`] made of a sealed key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resealed {
    /// Already sealed with the newest version: nothing to store.
    Current,
    /// Sealed again with the newest version: store `ciphertext` in place of the old one.
    Moved { from: u32, ciphertext: String },
}

/// Moves a sealed key of (`account_id`, `provider`) to the newest master key version: opens it
/// with the version it names and seals the same plaintext again under `nonce` (fresh, as for
/// [`seal`]). A key already at the newest version is left as it is, without decrypting it. A
/// decryption is an access: the broker records it before calling this, as for any other.
pub fn reseal(
    keys: &MasterKeys,
    account_id: &str,
    provider: Provider,
    sealed: &str,
    nonce: [u8; NONCE_LEN],
) -> Result<Resealed, ByokError> {
    let from = version_of(sealed)?;
    if from == keys.newest() {
        return Ok(Resealed::Current);
    }
    let plaintext = open(keys, account_id, provider, sealed)?;
    Ok(Resealed::Moved {
        from,
        ciphertext: seal(keys, account_id, provider, &plaintext, nonce)?,
    })
}

/// Whether a sealed key is at the newest version (a re-seal would leave it as it is).
pub fn is_current(keys: &MasterKeys, sealed: &str) -> bool {
    version_of(sealed).is_ok_and(|v| v == keys.newest())
}

/// Why [`open_audited`] gave no key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditedOpenError<E> {
    /// The access could not be recorded: nothing was decrypted.
    NotRecorded(E),
    /// The access was recorded, then the key did not decrypt. `failure_recorded` is the outcome
    /// of the second row, the one saying so (best effort: nothing was decrypted to protect).
    Unusable {
        error: ByokError,
        failure_recorded: Result<(), E>,
    },
}

/// The purpose of the row recording that an access's decryption failed.
pub fn failed_purpose(purpose: &str) -> String {
    format!("{purpose} (decryption failed)")
}

/// Opens a sealed key for one use, in the only order allowed: `record(purpose)` writes the
/// access row and only once it is written is `decrypt` called. A row that cannot be written
/// means no decryption; a decryption that fails is recorded once more, with
/// [`failed_purpose`]. The caller does the I/O (`record` writes to the audit log); this
/// function owns the order.
pub async fn open_audited<E, Record, Recorded>(
    purpose: &str,
    mut record: Record,
    decrypt: impl FnOnce() -> Result<String, ByokError>,
) -> Result<String, AuditedOpenError<E>>
where
    Record: FnMut(String) -> Recorded,
    Recorded: Future<Output = Result<(), E>>,
{
    record(purpose.to_string())
        .await
        .map_err(AuditedOpenError::NotRecorded)?;
    match decrypt() {
        Ok(key) => Ok(key),
        Err(error) => Err(AuditedOpenError::Unusable {
            error,
            failure_recorded: record(failed_purpose(purpose)).await,
        }),
    }
}

/// Checks the shape of a key an account registers: 8 to 512 visible ASCII characters, no
/// whitespace. The provider alone can say whether it works.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.len() < KEY_MIN_LEN || key.len() > KEY_MAX_LEN {
        return Err(format!(
            "`key` must be {KEY_MIN_LEN} to {KEY_MAX_LEN} characters long"
        ));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("`key` must be visible ASCII characters with no whitespace".into());
    }
    Ok(())
}

/// The last 4 characters of a key, the only part ever shown back.
pub fn last4(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    chars[chars.len().saturating_sub(4)..].iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCT: &str = "acct_aaaaaaaaaaaaaaaaaaaaaa";
    const OTHER: &str = "acct_bbbbbbbbbbbbbbbbbbbbbb";
    const KEY: &str = "sk-proj-abcdefghijklmnopqrstuvwxyz0123";

    /// A keyring of version 1 only: the stored form from before versioning.
    fn master() -> MasterKeys {
        MasterKeys::single(1, MasterKey::from_hex(&"2a".repeat(32)).unwrap())
    }

    fn key_hex(byte: u8) -> String {
        format!("{byte:02x}").repeat(32)
    }

    #[test]
    fn round_trips() {
        let sealed = seal(&master(), ACCT, Provider::OpenAi, KEY, [7; 12]).unwrap();
        assert_eq!(
            open(&master(), ACCT, Provider::OpenAi, &sealed).unwrap(),
            KEY
        );
    }

    #[test]
    fn stored_form_is_base64_of_nonce_then_ciphertext_and_hides_the_key() {
        let sealed = seal(&master(), ACCT, Provider::OpenAi, KEY, [9; 12]).unwrap();
        let raw = STANDARD.decode(&sealed).unwrap();
        assert_eq!(&raw[..12], &[9; 12]);
        assert_eq!(raw.len(), 12 + KEY.len() + 16);
        assert!(!sealed.contains("sk-") && !sealed.contains("abcdef"));
    }

    #[test]
    fn another_account_cannot_open_it() {
        let sealed = seal(&master(), ACCT, Provider::OpenAi, KEY, [1; 12]).unwrap();
        assert_eq!(
            open(&master(), OTHER, Provider::OpenAi, &sealed),
            Err(ByokError::Decrypt)
        );
    }

    #[test]
    fn another_provider_cannot_open_it() {
        let sealed = seal(&master(), ACCT, Provider::OpenAi, KEY, [1; 12]).unwrap();
        assert_eq!(
            open(&master(), ACCT, Provider::Anthropic, &sealed),
            Err(ByokError::Decrypt)
        );
    }

    #[test]
    fn another_master_cannot_open_it() {
        let sealed = seal(&master(), ACCT, Provider::OpenAi, KEY, [1; 12]).unwrap();
        let other = MasterKeys::single(1, MasterKey::from_hex(&"2b".repeat(32)).unwrap());
        assert_eq!(
            open(&other, ACCT, Provider::OpenAi, &sealed),
            Err(ByokError::Decrypt)
        );
    }

    #[test]
    fn two_encryptions_of_one_key_differ() {
        let a = seal(&master(), ACCT, Provider::OpenAi, KEY, [1; 12]).unwrap();
        let b = seal(&master(), ACCT, Provider::OpenAi, KEY, [2; 12]).unwrap();
        assert_ne!(a, b);
        // Past the nonce too: GCM's keystream depends on it.
        let (ra, rb) = (STANDARD.decode(&a).unwrap(), STANDARD.decode(&b).unwrap());
        assert_ne!(ra[12..], rb[12..]);
        assert_eq!(open(&master(), ACCT, Provider::OpenAi, &b).unwrap(), KEY);
    }

    #[test]
    fn tampered_ciphertext_fails() {
        let sealed = seal(&master(), ACCT, Provider::OpenAi, KEY, [3; 12]).unwrap();
        let raw = STANDARD.decode(&sealed).unwrap();
        for i in [0, 11, 12, raw.len() / 2, raw.len() - 1] {
            let mut bad = raw.clone();
            bad[i] ^= 0x01;
            assert_eq!(
                open(&master(), ACCT, Provider::OpenAi, &STANDARD.encode(&bad)),
                Err(ByokError::Decrypt),
                "flipped byte {i}"
            );
        }
        let truncated = STANDARD.encode(&raw[..raw.len() - 1]);
        assert_eq!(
            open(&master(), ACCT, Provider::OpenAi, &truncated),
            Err(ByokError::Decrypt)
        );
    }

    #[test]
    fn malformed_inputs_are_refused_without_panicking() {
        for s in ["", "not base64!", "AAAA", &STANDARD.encode([0u8; 27])] {
            assert_eq!(
                open(&master(), ACCT, Provider::OpenAi, s),
                Err(ByokError::Malformed),
                "{s}"
            );
        }
    }

    #[test]
    fn master_key_must_be_32_hex_bytes() {
        assert!(MasterKey::from_hex(&"ab".repeat(32)).is_ok());
        assert!(MasterKey::from_hex(&format!(" {}\n", "ab".repeat(32))).is_ok());
        for bad in [
            "",
            "ab",
            &"ab".repeat(31),
            &"zz".repeat(32),
            &"ab".repeat(33),
        ] {
            assert_eq!(
                MasterKey::from_hex(bad).unwrap_err(),
                ByokError::BadMasterKey
            );
        }
        assert_eq!(
            format!("{:?}", MasterKey::from_hex(&"2a".repeat(32)).unwrap()),
            "MasterKey([redacted])"
        );
        assert_eq!(format!("{:?}", master()), "MasterKeys(versions [1])");
    }

    #[test]
    fn associated_data_separates_account_and_provider() {
        assert_eq!(
            associated_data("acct_x", Provider::Anthropic),
            b"acct_x\0anthropic".to_vec()
        );
    }

    /// A key sealed in the stored form from before versioning, computed independently of this
    /// code (Python's `cryptography`: HKDF-SHA-256 with no salt, info `byok/v1/<account>`,
    /// AES-256-GCM, AAD `account \0 provider`) with master `2a`×32 and nonce `07`×12.
    const STORED_BEFORE_VERSIONING: &str =
        "BwcHBwcHBwcHBwcHeKv39a4zOfj0mWfVYiPBT9n0dvV0qllCt0ErIFW4nA2kluTgpZk/CzQN3n8Ei6iE/TT7tpcy";

    /// A keyring of the given versions, version N's key being the byte `0x2a + N - 1` repeated
    /// (so version 1 is the key of [`master`]).
    fn ring(versions: &[u32]) -> MasterKeys {
        let hexes: Vec<(u32, String)> = versions
            .iter()
            .map(|v| (*v, key_hex(0x29 + *v as u8)))
            .collect();
        let numbered: Vec<(u32, &str)> = hexes.iter().map(|(v, h)| (*v, h.as_str())).collect();
        MasterKeys::from_secrets(None, &numbered).unwrap()
    }

    #[test]
    fn a_key_stored_before_versioning_still_opens_as_version_1() {
        assert_eq!(version_of(STORED_BEFORE_VERSIONING), Ok(1));
        for keys in [master(), ring(&[1, 2]), ring(&[1, 2, 3])] {
            assert_eq!(
                open(&keys, ACCT, Provider::OpenAi, STORED_BEFORE_VERSIONING).unwrap(),
                KEY,
                "{keys:?}"
            );
        }
        // Through the legacy secret name too (`BYOK_MASTER_KEY` alone is version 1).
        let legacy = MasterKeys::from_secrets(Some(&"2a".repeat(32)), &[]).unwrap();
        assert_eq!(
            open(&legacy, ACCT, Provider::OpenAi, STORED_BEFORE_VERSIONING).unwrap(),
            KEY
        );
    }

    #[test]
    fn version_1_still_seals_in_the_form_from_before_versioning() {
        assert_eq!(
            seal(&master(), ACCT, Provider::OpenAi, KEY, [7; 12]).unwrap(),
            STORED_BEFORE_VERSIONING
        );
    }

    #[test]
    fn new_seals_use_the_newest_version_and_name_it() {
        // The order the secrets are found in does not matter: the highest version is the newest.
        let (v3, v2) = (key_hex(0x2c), key_hex(0x2b));
        let keys = MasterKeys::from_secrets(Some(&key_hex(0x2a)), &[(3, &v3), (2, &v2)]).unwrap();
        assert_eq!(keys.versions(), [1, 2, 3]);
        assert_eq!(keys.newest(), 3);
        let sealed = seal(&keys, ACCT, Provider::OpenAi, KEY, [4; 12]).unwrap();
        assert!(sealed.starts_with("v3:"), "{sealed}");
        assert_eq!(version_of(&sealed), Ok(3));
        assert!(is_current(&keys, &sealed));
        assert_eq!(open(&keys, ACCT, Provider::OpenAi, &sealed).unwrap(), KEY);
        // A broker without version 3 says so, rather than try another key.
        assert_eq!(
            open(&ring(&[1, 2]), ACCT, Provider::OpenAi, &sealed),
            Err(ByokError::UnknownVersion(3))
        );
        // Past the prefix, the form is version 1's: base64 of nonce, ciphertext and tag.
        let raw = STANDARD.decode(&sealed["v3:".len()..]).unwrap();
        assert_eq!(&raw[..12], &[4; 12]);
        assert_eq!(raw.len(), 12 + KEY.len() + 16);
    }

    #[test]
    fn every_version_still_held_opens_and_a_dropped_one_is_named() {
        let by_v1 = seal(&ring(&[1]), ACCT, Provider::Anthropic, KEY, [1; 12]).unwrap();
        let by_v2 = seal(&ring(&[1, 2]), ACCT, Provider::Anthropic, KEY, [2; 12]).unwrap();
        let by_v3 = seal(&ring(&[1, 2, 3]), ACCT, Provider::Anthropic, KEY, [3; 12]).unwrap();
        let all = ring(&[1, 2, 3]);
        for sealed in [&by_v1, &by_v2, &by_v3] {
            assert_eq!(open(&all, ACCT, Provider::Anthropic, sealed).unwrap(), KEY);
        }
        let without_v1 = ring(&[2, 3]);
        assert_eq!(
            open(&without_v1, ACCT, Provider::Anthropic, &by_v1),
            Err(ByokError::UnknownVersion(1))
        );
        assert_eq!(
            open(&without_v1, ACCT, Provider::Anthropic, &by_v2).unwrap(),
            KEY
        );
    }

    #[test]
    fn a_relabelled_version_does_not_decrypt() {
        let keys = ring(&[1, 2, 3]);
        let sealed = seal(&ring(&[1, 2]), ACCT, Provider::OpenAi, KEY, [6; 12]).unwrap();
        let body = sealed.strip_prefix("v2:").unwrap();
        for relabelled in [format!("v3:{body}"), body.to_string()] {
            assert_eq!(
                open(&keys, ACCT, Provider::OpenAi, &relabelled),
                Err(ByokError::Decrypt),
                "{relabelled}"
            );
        }
    }

    #[test]
    fn malformed_version_prefixes_are_refused() {
        let keys = ring(&[1, 2]);
        let body = STORED_BEFORE_VERSIONING;
        // Version 1 has one form only (no prefix); a version is canonical decimal.
        for tag in [
            "v1", "v", "v0", "v02", "V2", "2", "x2", "v2a", "v-2", "v1000000", "v2:v2",
        ] {
            let sealed = format!("{tag}:{body}");
            assert_eq!(
                open(&keys, ACCT, Provider::OpenAi, &sealed),
                Err(ByokError::Malformed),
                "{sealed}"
            );
        }
        assert_eq!(
            open(&keys, ACCT, Provider::OpenAi, "v2:not base64!"),
            Err(ByokError::Malformed)
        );
        assert_eq!(
            open(&keys, ACCT, Provider::OpenAi, &format!("v7:{body}")),
            Err(ByokError::UnknownVersion(7))
        );
    }

    #[test]
    fn reseal_moves_an_old_version_to_the_newest_and_leaves_a_current_one() {
        let keys = ring(&[1, 2, 3]);
        let moved = reseal(
            &keys,
            ACCT,
            Provider::OpenAi,
            STORED_BEFORE_VERSIONING,
            [8; 12],
        );
        let Ok(Resealed::Moved { from, ciphertext }) = moved else {
            panic!("{moved:?}")
        };
        assert_eq!(from, 1);
        assert!(ciphertext.starts_with("v3:"), "{ciphertext}");
        assert_eq!(
            open(&keys, ACCT, Provider::OpenAi, &ciphertext).unwrap(),
            KEY
        );
        // Bound to the same owner as before.
        assert_eq!(
            open(&keys, OTHER, Provider::OpenAi, &ciphertext),
            Err(ByokError::Decrypt)
        );
        assert_eq!(
            reseal(&keys, ACCT, Provider::OpenAi, &ciphertext, [9; 12]),
            Ok(Resealed::Current)
        );
        let by_v2 = seal(&ring(&[2]), ACCT, Provider::OpenAi, KEY, [5; 12]).unwrap();
        assert!(matches!(
            reseal(&keys, ACCT, Provider::OpenAi, &by_v2, [5; 12]),
            Ok(Resealed::Moved { from: 2, .. })
        ));
        // What does not open is not re-sealed: it stays as it is, and the error says why.
        assert_eq!(
            reseal(
                &keys,
                OTHER,
                Provider::OpenAi,
                STORED_BEFORE_VERSIONING,
                [8; 12]
            ),
            Err(ByokError::Decrypt)
        );
        assert_eq!(
            reseal(
                &ring(&[2, 3]),
                ACCT,
                Provider::OpenAi,
                STORED_BEFORE_VERSIONING,
                [8; 12]
            ),
            Err(ByokError::UnknownVersion(1))
        );
        assert!(!is_current(&keys, STORED_BEFORE_VERSIONING));
    }

    #[test]
    fn the_newest_prefix_names_the_rows_a_reseal_visits() {
        assert_eq!(master().newest_prefix(), None);
        assert_eq!(ring(&[1, 2]).newest_prefix().as_deref(), Some("v2:"));
        let keys = ring(&[1, 12]);
        let sealed = seal(&keys, ACCT, Provider::OpenAi, KEY, [1; 12]).unwrap();
        assert!(sealed.starts_with(&keys.newest_prefix().unwrap()));
        assert!(!STORED_BEFORE_VERSIONING.starts_with("v12:"));
    }

    #[test]
    fn keyrings_parse_from_the_brokers_secrets() {
        let (a, b, c) = (key_hex(0xa1), key_hex(0xb2), key_hex(0xc3));
        let parse = |legacy: Option<&str>, numbered: &[(u32, &str)]| {
            MasterKeys::from_secrets(legacy, numbered).map(|k| k.versions())
        };
        assert_eq!(parse(Some(&a), &[]), Ok(vec![1]));
        assert_eq!(parse(None, &[(1, &a)]), Ok(vec![1]));
        assert_eq!(parse(None, &[(2, &b), (3, &c)]), Ok(vec![2, 3]));
        assert_eq!(parse(Some(&a), &[(3, &c), (2, &b)]), Ok(vec![1, 2, 3]));
        // An unset or empty secret is absent; surrounding whitespace is ignored.
        assert_eq!(
            parse(Some(""), &[(2, &format!(" {b}\n")), (3, "")]),
            Ok(vec![2])
        );
        // Version 1 named twice: fine if it is the same key, refused if not.
        assert_eq!(parse(Some(&a), &[(1, &a), (2, &b)]), Ok(vec![1, 2]));
        let bad = Err(ByokError::BadMasterKey);
        assert_eq!(parse(Some(&a), &[(1, &b)]), bad);
        assert_eq!(parse(None, &[(2, &b), (2, &c)]), bad);
        assert_eq!(parse(None, &[(0, &b)]), bad);
        assert_eq!(parse(None, &[(MAX_VERSION + 1, &b)]), bad);
        assert_eq!(parse(None, &[(2, "abcd")]), bad);
        assert_eq!(parse(None, &[(2, &format!("{b}zz"))]), bad);
        assert_eq!(parse(None, &[]), bad);
        assert_eq!(parse(Some(""), &[(2, " ")]), bad);
        assert_eq!(parse(Some("abcd"), &[]), bad);
        assert_eq!(parse(None, &[(MAX_VERSION, &c)]), Ok(vec![MAX_VERSION]));
        let shown = format!("{:?}", MasterKeys::from_secrets(Some(&a), &[(2, &b)]));
        assert_eq!(shown, "Ok(MasterKeys(versions [1, 2]))");
        assert_eq!(version_var(7), "BYOK_MASTER_KEY_V7");
    }

    #[test]
    fn key_shape_and_last4() {
        assert!(check_key(KEY).is_ok());
        assert!(check_key("short").is_err());
        assert!(check_key("sk-with space-123456").is_err());
        assert!(check_key(&"k".repeat(513)).is_err());
        assert!(check_key("sk-ünïcode-12345").is_err());
        assert_eq!(last4(KEY), "0123");
        assert_eq!(last4("abc"), "abc");
    }

    /// What the fakes of [`open_audited`] saw, in order.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Step {
        RecordStarted(String),
        RecordWritten(String),
        RecordRefused(String),
        Decrypted,
    }

    /// Runs a future whose every pending poll is a yield (the fakes' only kind).
    fn run<F: Future>(f: F) -> F::Output {
        use std::task::{Context, Poll, Waker};
        let mut f = std::pin::pin!(f);
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
                return out;
            }
        }
    }

    /// Resolves on its second poll, like a database write that takes a while.
    struct Yield(bool);

    impl Future for Yield {
        type Output = ();
        fn poll(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<()> {
            if self.0 {
                std::task::Poll::Ready(())
            } else {
                self.0 = true;
                std::task::Poll::Pending
            }
        }
    }

    /// [`open_audited`] with an audit log that takes a poll to write each row and accepts the
    /// rows for which `accepts` says so, and a cipher giving `decrypted`.
    fn open_with_fakes(
        accepts: impl Fn(&str) -> bool,
        decrypted: Result<String, ByokError>,
    ) -> (Result<String, AuditedOpenError<&'static str>>, Vec<Step>) {
        let steps = std::cell::RefCell::new(Vec::new());
        let out = run(open_audited(
            "POST /v1/messages",
            |purpose: String| {
                let (steps, ok) = (&steps, accepts(&purpose));
                async move {
                    steps
                        .borrow_mut()
                        .push(Step::RecordStarted(purpose.clone()));
                    Yield(false).await;
                    if ok {
                        steps.borrow_mut().push(Step::RecordWritten(purpose));
                        Ok(())
                    } else {
                        steps.borrow_mut().push(Step::RecordRefused(purpose));
                        Err("d1 down")
                    }
                }
            },
            || {
                steps.borrow_mut().push(Step::Decrypted);
                decrypted
            },
        ));
        (out, steps.into_inner())
    }

    #[test]
    fn the_access_is_recorded_strictly_before_the_key_is_decrypted() {
        let (out, steps) = open_with_fakes(|_| true, Ok(KEY.to_string()));
        assert_eq!(out, Ok(KEY.to_string()));
        assert_eq!(
            steps,
            [
                Step::RecordStarted("POST /v1/messages".into()),
                Step::RecordWritten("POST /v1/messages".into()),
                Step::Decrypted,
            ]
        );
    }

    #[test]
    fn an_access_that_cannot_be_recorded_decrypts_nothing() {
        let (out, steps) = open_with_fakes(|_| false, Ok(KEY.to_string()));
        assert_eq!(out, Err(AuditedOpenError::NotRecorded("d1 down")));
        assert!(!steps.contains(&Step::Decrypted), "{steps:?}");
        assert_eq!(
            steps,
            [
                Step::RecordStarted("POST /v1/messages".into()),
                Step::RecordRefused("POST /v1/messages".into()),
            ]
        );
    }

    #[test]
    fn a_failed_decryption_has_its_row_and_a_second_one_saying_so() {
        let (out, steps) = open_with_fakes(|_| true, Err(ByokError::Decrypt));
        assert_eq!(
            out,
            Err(AuditedOpenError::Unusable {
                error: ByokError::Decrypt,
                failure_recorded: Ok(()),
            })
        );
        let failed = "POST /v1/messages (decryption failed)".to_string();
        assert_eq!(
            steps,
            [
                Step::RecordStarted("POST /v1/messages".into()),
                Step::RecordWritten("POST /v1/messages".into()),
                Step::Decrypted,
                Step::RecordStarted(failed.clone()),
                Step::RecordWritten(failed),
            ]
        );
        // The second row is best effort: its failure is reported, the outcome is the same.
        let (out, _) = open_with_fakes(
            |p| !p.ends_with("(decryption failed)"),
            Err(ByokError::Malformed),
        );
        assert_eq!(
            out,
            Err(AuditedOpenError::Unusable {
                error: ByokError::Malformed,
                failure_recorded: Err("d1 down"),
            })
        );
    }

    #[test]
    fn open_audited_opens_a_real_sealed_key_once_recorded() {
        let sealed = seal(&master(), ACCT, Provider::OpenAi, KEY, [5; 12]).unwrap();
        let rows = std::cell::RefCell::new(Vec::new());
        let out = run(open_audited(
            "POST /v1/ask",
            |p: String| {
                rows.borrow_mut().push(p);
                std::future::ready(Ok::<(), ()>(()))
            },
            || open(&master(), ACCT, Provider::OpenAi, &sealed),
        ));
        assert_eq!(out, Ok(KEY.to_string()));
        assert_eq!(rows.into_inner(), ["POST /v1/ask"]);
    }

    #[test]
    fn only_openai_and_anthropic_keys_are_supported() {
        assert!(supports(Provider::OpenAi) && supports(Provider::Anthropic));
        assert!(!supports(Provider::Gemini) && !supports(Provider::Perplexity));
    }
}
