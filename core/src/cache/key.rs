//! Cache key derivation (DESIGN.md "Cache key"): the SHA-256 of the canonical JSON of a
//! versioned tuple, streamed into the hasher without building the JSON text or, for ASCII
//! prompts, the normalized prompt.

use std::fmt;

use crate::providers::Provider;
use gateway_canonical::digest::CanonicalDigest;
use serde_json::Value;

/// Who may be served a cached answer: everyone, or only the one account that asked.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Scope {
    Shared,
    /// Holds the account id.
    Private(String),
}

impl Scope {
    /// The scope as it enters the key: `"shared"` or `"private:<account_id>"`.
    pub fn as_key_str(&self) -> String {
        match self {
            Scope::Shared => "shared".to_owned(),
            Scope::Private(account_id) => format!("private:{account_id}"),
        }
    }

    pub fn kind(&self) -> ScopeKind {
        match self {
            Scope::Shared => ScopeKind::Shared,
            Scope::Private(_) => ScopeKind::Private,
        }
    }
}

/// The scope a request asks for on the wire (`cache_scope` of `/v1/ask`, the drop-in
/// endpoints' `x-cache-scope` header), before the account is known.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ScopeKind {
    Shared,
    Private,
}

impl ScopeKind {
    /// Parses the wire value `"shared"` or `"private"` (exactly, case-sensitive).
    pub fn parse(s: &str) -> Option<ScopeKind> {
        match s {
            "shared" => Some(ScopeKind::Shared),
            "private" => Some(ScopeKind::Private),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ScopeKind::Shared => "shared",
            ScopeKind::Private => "private",
        }
    }

    /// The scope of a request by `account_id`.
    pub fn for_account(self, account_id: &str) -> Scope {
        match self {
            ScopeKind::Shared => Scope::Shared,
            ScopeKind::Private => Scope::Private(account_id.to_owned()),
        }
    }
}

/// Which endpoint's answers a key belongs to. Each has its own key namespace (the tuple's first
/// element) and its own names in L1 and L2, so two endpoints never share an entry.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Namespace {
    /// `POST /v1/ask`.
    Ask,
    /// `POST /v1/chat/completions` (OpenAI dialect).
    Chat,
    /// `POST /v1/messages` (Anthropic dialect).
    Messages,
}

impl Namespace {
    /// The namespace as it enters the key: `ask/v1`, `chat/v1`, `messages/v1`.
    pub fn as_str(self) -> &'static str {
        match self {
            Namespace::Ask => "ask/v1",
            Namespace::Chat => "chat/v1",
            Namespace::Messages => "messages/v1",
        }
    }

    /// The namespace named by its key string (`ask/v1`, `chat/v1`, `messages/v1`).
    pub fn parse(s: &str) -> Option<Namespace> {
        [Namespace::Ask, Namespace::Chat, Namespace::Messages]
            .into_iter()
            .find(|n| n.as_str() == s)
    }

    /// L1 (Cache API) address of `key`: `https://cache.internal/<namespace>/<key>`.
    pub fn l1_url(self, key: &str) -> String {
        format!("https://cache.internal/{}/{key}", self.as_str())
    }

    /// L2 (KV) name of `key`: `ask:<key>`, `chat:<key>`, `messages:<key>`.
    pub fn l2_name(self, key: &str) -> String {
        let short = match self {
            Namespace::Ask => "ask",
            Namespace::Chat => "chat",
            Namespace::Messages => "messages",
        };
        format!("{short}:{key}")
    }
}

/// A cache key: lowercase hex SHA-256, 64 characters.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CacheKey(String);

impl CacheKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The key of an `/ask` request:
/// `hex(SHA-256(canonical_json(["ask/v1", scope, normalize(prompt), sorted_unique(providers), params])))`.
/// `params` are the validated params with the caller's defaults filled in.
pub fn ask_cache_key(
    scope: &Scope,
    prompt: &str,
    providers: &[Provider],
    params: &Value,
) -> CacheKey {
    let mut providers = providers.to_vec();
    providers.sort_unstable();
    providers.dedup();

    let mut h = CanonicalDigest::new();
    h.push_raw("[");
    h.push_string(Namespace::Ask.as_str());
    h.push_raw(",");
    write_scope(scope, &mut h);
    h.push_raw(",\"");
    h.push_normalized_prompt(prompt);
    h.push_raw("\",[");
    for (i, p) in providers.iter().enumerate() {
        if i > 0 {
            h.push_raw(",");
        }
        h.push_string(p.as_str());
    }
    h.push_raw("],");
    h.push_value(params);
    h.push_raw("]");
    CacheKey(h.finish_hex())
}

/// The key of a drop-in endpoint request (`namespace` is e.g. `"messages/v1"`, `"chat/v1"`):
/// `hex(SHA-256(canonical_json([namespace, scope, request])))`.
pub fn request_cache_key(namespace: &str, scope: &Scope, request: &Value) -> CacheKey {
    let mut h = CanonicalDigest::new();
    h.push_raw("[");
    h.push_string(namespace);
    h.push_raw(",");
    write_scope(scope, &mut h);
    h.push_raw(",");
    h.push_value(request);
    h.push_raw("]");
    CacheKey(h.finish_hex())
}

fn write_scope(scope: &Scope, h: &mut CanonicalDigest) {
    match scope {
        Scope::Shared => h.push_string("shared"),
        Scope::Private(_) => h.push_string(&scope.as_key_str()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_namespace_has_its_own_storage_names() {
        let k = "9f86";
        assert_eq!(
            Namespace::Ask.l1_url(k),
            "https://cache.internal/ask/v1/9f86"
        );
        assert_eq!(
            Namespace::Chat.l1_url(k),
            "https://cache.internal/chat/v1/9f86"
        );
        assert_eq!(Namespace::Ask.l2_name(k), "ask:9f86");
        assert_eq!(Namespace::Chat.l2_name(k), "chat:9f86");
        assert_eq!(Namespace::Messages.l2_name(k), "messages:9f86");
        assert_eq!(Namespace::parse("chat/v1"), Some(Namespace::Chat));
        assert_eq!(Namespace::parse("chat"), None);
    }

    use super::*;
    use crate::cache::canonical_json::canonical_json;
    use crate::cache::normalize::normalize;
    use serde_json::json;
    use sha2::{Digest, Sha256};

    fn sha_hex(text: &str) -> String {
        hex::encode(Sha256::digest(text.as_bytes()))
    }

    fn private(id: &str) -> Scope {
        Scope::Private(id.to_owned())
    }

    #[test]
    fn ask_key_is_the_hash_of_the_canonical_tuple() {
        let params = json!({"max_tokens": 256, "temperature": 0.5});
        let key = ask_cache_key(
            &private("acct_1"),
            "  Hello,   WORLD?? ",
            &[Provider::OpenAi, Provider::Anthropic],
            &params,
        );
        let tuple = json!([
            "ask/v1",
            "private:acct_1",
            "hello, world",
            ["anthropic", "openai"],
            params
        ]);
        assert_eq!(key.as_str(), sha_hex(&canonical_json(&tuple)));
        assert_eq!(
            canonical_json(&tuple),
            r#"["ask/v1","private:acct_1","hello, world",["anthropic","openai"],{"max_tokens":256,"temperature":0.5}]"#
        );
    }

    /// Long ASCII prompts are normalized and hashed in parts of 4 KB: a run of whitespace, an
    /// escape or a capital on either side of a part's edge gives the key of the whole.
    #[test]
    fn long_prompts_hash_as_one_across_their_parts() {
        let params = json!({"max_tokens": 16});
        for unit in ["ab  \"C\"\t\n", "x ", "Q\\  ", "word. ", "\u{7}  z"] {
            for len in (4080..4112).chain(8180..8200).chain(12_280..12_300) {
                let mut p = unit.repeat(len / unit.len() + 1);
                p.truncate(len);
                let key = ask_cache_key(&Scope::Shared, &p, &[Provider::OpenAi], &params);
                let tuple = json!(["ask/v1", "shared", normalize(&p), ["openai"], params]);
                assert_eq!(
                    key.as_str(),
                    sha_hex(&canonical_json(&tuple)),
                    "{unit:?} {len}"
                );
            }
        }
    }
    #[test]
    fn ask_key_of_a_known_tuple_is_stable() {
        // printf '%s' '["ask/v1","shared","hi",["gemini"],{}]' | sha256sum
        let key = ask_cache_key(&Scope::Shared, "Hi!", &[Provider::Gemini], &json!({}));
        assert_eq!(
            key.as_str(),
            sha_hex(r#"["ask/v1","shared","hi",["gemini"],{}]"#)
        );
        assert_eq!(key.as_str().len(), 64);
        assert!(key
            .as_str()
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_eq!(key.to_string(), key.as_str());
    }

    #[test]
    fn providers_are_sorted_and_deduplicated() {
        let params = json!({});
        let a = ask_cache_key(
            &Scope::Shared,
            "q",
            &[Provider::Perplexity, Provider::Gemini, Provider::Gemini],
            &params,
        );
        let b = ask_cache_key(
            &Scope::Shared,
            "q",
            &[Provider::Gemini, Provider::Perplexity],
            &params,
        );
        assert_eq!(a, b);
    }

    #[test]
    fn prompts_equal_after_normalization_share_a_key() {
        let p = [Provider::Anthropic];
        let params = json!({"n": 1});
        assert_eq!(
            ask_cache_key(&Scope::Shared, "What is C++?", &p, &params),
            ask_cache_key(&Scope::Shared, "  what   IS c++ ", &p, &params)
        );
    }

    #[test]
    fn one_and_one_point_zero_are_one_param_value() {
        let p = [Provider::Anthropic];
        let one: Value = serde_json::from_str(r#"{"temperature": 1}"#).expect("literal");
        let one_point_zero: Value =
            serde_json::from_str(r#"{"temperature": 1.0}"#).expect("literal");
        assert_eq!(
            ask_cache_key(&Scope::Shared, "q", &p, &one),
            ask_cache_key(&Scope::Shared, "q", &p, &one_point_zero)
        );
    }

    #[test]
    fn scopes_separate_keys() {
        let p = [Provider::Anthropic];
        let params = json!({});
        let shared = ask_cache_key(&Scope::Shared, "q", &p, &params);
        let a = ask_cache_key(&private("a"), "q", &p, &params);
        let b = ask_cache_key(&private("b"), "q", &p, &params);
        assert_ne!(shared, a);
        assert_ne!(a, b);
    }

    #[test]
    fn a_delimiter_in_the_prompt_cannot_forge_another_tuple() {
        let params = json!({});
        let p = [Provider::Anthropic];
        let forged = ask_cache_key(&Scope::Shared, "a\",\"b", &p, &params);
        assert_ne!(forged, ask_cache_key(&Scope::Shared, "a", &p, &params));
        let a = ask_cache_key(&private("x\",\"y"), "q", &p, &params);
        let b = ask_cache_key(&private("x"), "y\",\"q", &p, &params);
        assert_ne!(a, b);
    }

    #[test]
    fn request_key_is_the_hash_of_the_canonical_triple() {
        let request = json!({"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1.0});
        let key = request_cache_key("messages/v1", &private("acct\"9"), &request);
        let triple = json!(["messages/v1", "private:acct\"9", request]);
        assert_eq!(key.as_str(), sha_hex(&canonical_json(&triple)));
        assert_ne!(
            key,
            request_cache_key("chat/v1", &private("acct\"9"), &request)
        );
    }

    #[test]
    fn request_key_does_not_normalize_the_request() {
        let a = request_cache_key("chat/v1", &Scope::Shared, &json!({"q": "Hi"}));
        let b = request_cache_key("chat/v1", &Scope::Shared, &json!({"q": "hi"}));
        assert_ne!(a, b);
    }

    #[test]
    fn scope_strings_and_wire_values() {
        assert_eq!(Scope::Shared.as_key_str(), "shared");
        assert_eq!(private("acct_1").as_key_str(), "private:acct_1");
        assert_eq!(ScopeKind::parse("shared"), Some(ScopeKind::Shared));
        assert_eq!(ScopeKind::parse("private"), Some(ScopeKind::Private));
        assert_eq!(ScopeKind::parse("Private"), None);
        assert_eq!(ScopeKind::parse(""), None);
        assert_eq!(ScopeKind::Private.for_account("a"), private("a"));
        assert_eq!(ScopeKind::Shared.for_account("a"), Scope::Shared);
        for kind in [ScopeKind::Shared, ScopeKind::Private] {
            assert_eq!(ScopeKind::parse(kind.as_str()), Some(kind));
            assert_eq!(kind.for_account("a").kind(), kind);
        }
    }
}
