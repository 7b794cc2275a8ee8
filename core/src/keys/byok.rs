//! Bring-your-own provider keys, sealed at rest: a per-account key derived with HKDF-SHA-256
//! from the brokers' master secret (info `byok/v1/<account_id>`), AES-256-GCM with a fresh
//! 12-byte nonce per encryption (drawn by the caller: the edge owns randomness) and
//! `account_id \0 provider` as associated data, so a ciphertext moved to another account or
//! provider does not decrypt. Stored form: base64 (standard, padded) of `nonce || ciphertext`.
//! A sealed key is opened for a call only through [`open_audited`]: the access is recorded
//! before the key is decrypted.

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
/// HKDF `info` prefix; the account id follows it.
pub const INFO_PREFIX: &str = "byok/v1/";
/// Shortest and longest provider key accepted.
pub const KEY_MIN_LEN: usize = 8;
pub const KEY_MAX_LEN: usize = 512;
/// GCM tag length: the least a ciphertext holds past its nonce.
const TAG_LEN: usize = 16;

/// Why sealing or opening failed. Says nothing about the key or the plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByokError {
    /// The master secret is not 64 hex characters (32 bytes).
    BadMasterKey,
    /// Not base64, or too short to hold a nonce and a tag.
    Malformed,
    /// Authentication failed: wrong account, wrong provider, wrong master or tampered bytes.
    Decrypt,
    /// The cipher refused to encrypt (cannot happen with valid inputs).
    Encrypt,
}

impl std::fmt::Display for ByokError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ByokError::BadMasterKey => "the BYOK master secret is not 32 hex-encoded bytes",
            ByokError::Malformed => "the sealed key is malformed",
            ByokError::Decrypt => "the sealed key does not decrypt for this account and provider",
            ByokError::Encrypt => "encryption failed",
        })
    }
}

impl std::error::Error for ByokError {}

/// The brokers' master secret. Its `Debug` form never shows the bytes.
#[derive(Clone)]
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

/// Encrypts `plaintext` for (`account_id`, `provider`) under `nonce`, which must never repeat
/// for an account: draw it fresh from a CSPRNG for every call.
pub fn seal(
    master: &MasterKey,
    account_id: &str,
    provider: Provider,
    plaintext: &str,
    nonce: [u8; NONCE_LEN],
) -> Result<String, ByokError> {
    let cipher = master.account_cipher(account_id)?;
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
    Ok(STANDARD.encode(out))
}

/// Decrypts a sealed key of (`account_id`, `provider`).
pub fn open(
    master: &MasterKey,
    account_id: &str,
    provider: Provider,
    sealed: &str,
) -> Result<String, ByokError> {
    let raw = STANDARD
        .decode(sealed.trim())
        .map_err(|_| ByokError::Malformed)?;
    if raw.len() < NONCE_LEN + TAG_LEN {
        return Err(ByokError::Malformed);
    }
    let (nonce, ct) = raw.split_at(NONCE_LEN);
    let cipher = master.account_cipher(account_id)?;
    let aad = associated_data(account_id, provider);
    let pt = cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
        .map_err(|_| ByokError::Decrypt)?;
    String::from_utf8(pt).map_err(|_| ByokError::Decrypt)
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

    fn master() -> MasterKey {
        MasterKey::from_hex(&"2a".repeat(32)).unwrap()
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
        let other = MasterKey::from_hex(&"2b".repeat(32)).unwrap();
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
        assert_eq!(format!("{:?}", master()), "MasterKey([redacted])");
    }

    #[test]
    fn associated_data_separates_account_and_provider() {
        assert_eq!(
            associated_data("acct_x", Provider::Anthropic),
            b"acct_x\0anthropic".to_vec()
        );
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
