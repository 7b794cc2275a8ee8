//! Property tests of the cache key: normalization is idempotent, distinct tuples never share a
//! key (even with prompts full of delimiters), scopes separate keys, and provider order,
//! provider duplicates and number spelling do not matter; nor does the order in which a
//! request's JSON text lists its members, from the raw body to the key (`/v1/ask` and drop-in).

use std::collections::BTreeSet;

use gateway_core::api::ask::parse_ask;
use gateway_core::api::dropin::{parse_request, Dialect};
use gateway_core::cache::canonical_json::canonical_json;
use gateway_core::cache::key::{ask_cache_key, request_cache_key, CacheKey, Scope};
use gateway_core::cache::normalize::normalize;
use gateway_core::providers::models::default_allowlist;
use gateway_core::providers::Provider;
use proptest::prelude::*;
use serde_json::Value;

/// Characters that break naive keys or naive normalizers.
const NASTY: &[char] = &[
    '|', '"', '\\', '\n', '\r', '\t', '\0', '\u{1}', '\u{200d}', '\u{200b}', '\u{301}', '\u{308}',
    '\u{345}', '\u{307}', ',', '[', ']', '{', '}', ':', ' ', '\u{a0}', '\u{3000}', '\u{2028}', '.',
    '?', '¿', '»', '+', 'a', 'A', 'e', 'é', 'E', 'İ', 'i', 'ẞ', 'ß', 'Σ', 'σ', 'ς', 'Α', 'ᾼ',
    '\u{212a}', 'k', 'Å', '\u{212b}', '가', '\u{1100}', '\u{1161}', 'ǅ', '漢', '😀',
];

fn nasty_char() -> impl Strategy<Value = char> {
    prop_oneof![
        8 => prop::sample::select(NASTY),
        1 => any::<char>(),
    ]
}

fn nasty_string(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(nasty_char(), 0..max).prop_map(|v| v.into_iter().collect())
}

/// Short strings over a tiny alphabet, so two draws often normalize alike.
fn colliding_prompt() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(&['a', 'A', ' ', '\n', '?', '|', '"', '\u{301}', 'é', 'e'][..]),
        0..6,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn scope() -> impl Strategy<Value = Scope> {
    prop_oneof![
        Just(Scope::Shared),
        prop::sample::select(&["a", "b", "a\"", "shared", "private:a", ""][..])
            .prop_map(|id| Scope::Private(id.to_owned())),
    ]
}

fn providers() -> impl Strategy<Value = Vec<Provider>> {
    prop::collection::vec(prop::sample::select(&Provider::ALL[..]), 0..6)
}

fn params() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(
        prop::sample::select(&["max_tokens", "temperature", "models", "é", "\u{fb33}", "😀"][..]),
        prop_oneof![
            (0u8..3).prop_map(Value::from),
            Just(Value::from(0.5)),
            Just(Value::from(1.0)),
            Just(Value::from("x")),
        ],
        0..3,
    )
    .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
}

fn key_of(t: &(Scope, String, Vec<Provider>, Value)) -> String {
    ask_cache_key(&t.0, &t.1, &t.2, &t.3).to_string()
}

/// What the key is meant to depend on, and nothing else.
fn meaning(
    t: &(Scope, String, Vec<Provider>, Value),
) -> (String, String, BTreeSet<Provider>, String) {
    (
        t.0.as_key_str(),
        normalize(&t.1),
        t.2.iter().copied().collect(),
        canonical_json(&t.3),
    )
}

fn tuple() -> impl Strategy<Value = (Scope, String, Vec<Provider>, Value)> {
    (scope(), colliding_prompt(), providers(), params())
}

/// JSON text of an object with `members` in the given order, values as written.
fn object_text(members: &[(String, String)]) -> String {
    let body: Vec<String> = members
        .iter()
        .map(|(k, v)| format!("{}:{v}", Value::from(k.as_str())))
        .collect();
    format!("{{{}}}", body.join(","))
}

/// `members` in another order: rotated by `rotate`, then reversed.
fn reordered(members: &[(String, String)], rotate: usize) -> Vec<(String, String)> {
    let mut out = members.to_vec();
    let len = out.len().max(1);
    out.rotate_left(rotate % len);
    out.reverse();
    out
}

fn member(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_owned(), v.into())
}

/// The key `/v1/ask` computes for a raw body (shared scope), as the gateway does: parse and
/// validate, then key the result.
fn ask_key_of_text(body: &str) -> Result<CacheKey, TestCaseError> {
    let ask = parse_ask(body.as_bytes(), 4096)
        .map_err(|e| TestCaseError::fail(format!("{body}: {}", e.message)))?;
    Ok(ask_cache_key(
        &Scope::Shared,
        &ask.prompt,
        &ask.providers,
        &ask.key_params,
    ))
}

/// The key a drop-in endpoint computes for a raw body (shared scope, no forwarded headers), as
/// the gateway does: check the body, then key the parsed request.
fn dropin_key_of_text(dialect: Dialect, body: &str) -> Result<CacheKey, TestCaseError> {
    let allowlist = default_allowlist(dialect.provider());
    let req = parse_request(dialect, body.as_bytes(), allowlist, 4096)
        .map_err(|e| TestCaseError::fail(format!("{body}: {}", e.message)))?;
    Ok(request_cache_key(
        dialect.namespace().as_str(),
        &Scope::Shared,
        &req.value,
    ))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn normalize_is_idempotent(p in nasty_string(40)) {
        let once = normalize(&p);
        prop_assert_eq!(normalize(&once), once);
    }

    #[test]
    fn normalize_is_idempotent_on_any_unicode(p in any::<String>()) {
        let once = normalize(&p);
        prop_assert_eq!(normalize(&once), once);
    }

    #[test]
    fn keys_are_equal_exactly_when_the_normalized_tuples_are(
        a in tuple(),
        other in tuple(),
        keep in any::<[bool; 4]>(),
    ) {
        // b shares a random subset of a's fields, so equal and near-equal pairs are common.
        let b = (
            if keep[0] { a.0.clone() } else { other.0 },
            if keep[1] { a.1.clone() } else { other.1 },
            if keep[2] { a.2.clone() } else { other.2 },
            if keep[3] { a.3.clone() } else { other.3 },
        );
        prop_assert_eq!(key_of(&a) == key_of(&b), meaning(&a) == meaning(&b));
    }

    #[test]
    fn prompts_that_differ_after_normalization_never_share_a_key(
        a in nasty_string(24),
        b in nasty_string(24),
        s in scope(),
        ps in providers(),
        params in params(),
    ) {
        let (ka, kb) = (
            ask_cache_key(&s, &a, &ps, &params),
            ask_cache_key(&s, &b, &ps, &params),
        );
        prop_assert_eq!(ka == kb, normalize(&a) == normalize(&b));
    }

    #[test]
    fn delimiters_cannot_move_text_between_tuple_fields(
        id_a in nasty_string(8),
        id_b in nasty_string(8),
        prompt_a in nasty_string(16),
        prompt_b in nasty_string(16),
    ) {
        let p = [Provider::Anthropic];
        let params = Value::Object(Default::default());
        let ka = ask_cache_key(&Scope::Private(id_a.clone()), &prompt_a, &p, &params);
        let kb = ask_cache_key(&Scope::Private(id_b.clone()), &prompt_b, &p, &params);
        prop_assert_eq!(ka == kb, id_a == id_b && normalize(&prompt_a) == normalize(&prompt_b));
        let ra = request_cache_key(&id_a, &Scope::Shared, &Value::from(prompt_a.as_str()));
        let rb = request_cache_key(&id_b, &Scope::Shared, &Value::from(prompt_b.as_str()));
        prop_assert_eq!(ra == rb, id_a == id_b && prompt_a == prompt_b);
    }

    #[test]
    fn private_keys_of_two_accounts_differ_from_each_other_and_from_shared(
        a in nasty_string(12),
        b in nasty_string(12),
        prompt in nasty_string(24),
        ps in providers(),
        params in params(),
    ) {
        prop_assume!(a != b);
        let shared = ask_cache_key(&Scope::Shared, &prompt, &ps, &params);
        let ka = ask_cache_key(&Scope::Private(a), &prompt, &ps, &params);
        let kb = ask_cache_key(&Scope::Private(b), &prompt, &ps, &params);
        prop_assert_ne!(&ka, &kb);
        prop_assert_ne!(&ka, &shared);
        prop_assert_ne!(&kb, &shared);
    }

    #[test]
    fn provider_order_and_duplicates_do_not_change_the_key(
        ps in providers(),
        extra in providers(),
        seed in any::<u64>(),
        prompt in nasty_string(16),
    ) {
        let params = Value::Object(Default::default());
        // The same set, shuffled, with some members repeated.
        let mut shuffled: Vec<Provider> = ps.iter().chain(extra.iter().filter(|p| ps.contains(p))).copied().collect();
        let n = shuffled.len();
        for i in (1..n).rev() {
            let j = (seed.wrapping_mul(6364136223846793005).wrapping_add(i as u64) % (i as u64 + 1)) as usize;
            shuffled.swap(i, j);
        }
        prop_assert_eq!(
            ask_cache_key(&Scope::Shared, &prompt, &ps, &params),
            ask_cache_key(&Scope::Shared, &prompt, &shuffled, &params)
        );
    }

    #[test]
    fn params_number_spelling_does_not_change_the_key(
        members in prop::collection::btree_map("[a-zé😀\u{fb33}]{1,4}", 0i64..1000, 0..6),
        prompt in nasty_string(16),
    ) {
        let plain: Vec<(String, String)> = members.iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
        // Each integer spelled as a double (`7.0`, `7e0`).
        let respelled: Vec<(String, String)> = members
            .iter()
            .enumerate()
            .map(|(i, (k, v))| (k.clone(), if i % 2 == 0 { format!("{v}.0") } else { format!("{v}e0") }))
            .collect();
        let a: Value = serde_json::from_str(&object_text(&plain)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let b: Value = serde_json::from_str(&object_text(&respelled)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let ps = [Provider::Gemini];
        prop_assert_eq!(
            ask_cache_key(&Scope::Shared, &prompt, &ps, &a),
            ask_cache_key(&Scope::Shared, &prompt, &ps, &b)
        );
    }

    /// The same `/v1/ask` body written with its members, its params and its models in other
    /// orders (and its decimals spelled otherwise) is the same request: raw text in, key out.
    #[test]
    fn ask_body_member_order_does_not_change_the_key(
        prompt in nasty_string(16),
        providers in prop::sample::subsequence(&Provider::ALL[..], 1..=4),
        max_tokens in prop::option::of(1u32..=4096),
        temperature_tenths in prop::option::of(0u32..=20),
        top_p_tenths in prop::option::of(1u32..=10),
        system in prop::option::of(nasty_string(8)),
        name_models in any::<bool>(),
        rotate in 0usize..8,
    ) {
        let text = |s: &str| Value::from(s).to_string();
        let names: Vec<String> = providers.iter().map(|p| text(p.as_str())).collect();
        let models: Vec<(String, String)> = providers
            .iter()
            .filter(|_| name_models)
            .map(|p| member(p.as_str(), text(p.default_model())))
            .collect();
        let mut params = vec![];
        let mut params_respelled = vec![];
        if let Some(n) = max_tokens {
            params.push(member("max_tokens", n.to_string()));
            params_respelled.push(member("max_tokens", n.to_string()));
        }
        for (name, tenths) in [("temperature", temperature_tenths), ("top_p", top_p_tenths)] {
            if let Some(t) = tenths {
                params.push(member(name, format!("{}.{}", t / 10, t % 10)));
                params_respelled.push(member(name, format!("{t}e-1")));
            }
        }
        if let Some(s) = &system {
            params.push(member("system", text(s)));
            params_respelled.push(member("system", text(s)));
        }
        if !models.is_empty() {
            params.push(member("models", object_text(&models)));
            params_respelled.push(member("models", object_text(&reordered(&models, rotate))));
        }
        // A letter first, so the prompt is never empty once normalized.
        let prompt = text(&format!("q{prompt}"));
        let top = |params: &[(String, String)]| {
            vec![
                member("prompt", prompt.clone()),
                member("providers", format!("[{}]", names.join(","))),
                member("params", object_text(params)),
                member("cache_scope", text("shared")),
            ]
        };
        let a = object_text(&top(&params));
        let b = object_text(&reordered(&top(&reordered(&params_respelled, rotate)), rotate));
        prop_assert_ne!(&a, &b);
        prop_assert_eq!(ask_key_of_text(&a)?, ask_key_of_text(&b)?);
    }

    /// The same drop-in body written with its members (nested ones too) in another order, and
    /// its integers spelled as doubles, is the same request: raw text in, key out. Field names
    /// include characters whose UTF-8 and UTF-16 orders differ.
    #[test]
    fn dropin_body_member_order_and_number_spelling_do_not_change_the_key(
        members in prop::collection::btree_map("[a-zé😀\u{fb33}]{1,4}", 0i64..1000, 0..6),
        rotate in 0usize..8,
        prompt in nasty_string(16),
        anthropic in any::<bool>(),
    ) {
        let content = Value::from(prompt.as_str()).to_string();
        let turn = |role_first: bool| {
            let turn = [member("role", "\"user\""), member("content", content.clone())];
            let turn = if role_first { turn.to_vec() } else { reordered(&turn, 0) };
            format!("[{}]", object_text(&turn))
        };
        let (dialect, model) = if anthropic {
            (Dialect::AnthropicMessages, "\"claude-haiku-4-5\"")
        } else {
            (Dialect::OpenAiChat, "\"gpt-4o-mini\"")
        };
        // Prefixed, so no generated name is a field the drop-in checks read (`n`).
        let mut plain = vec![member("model", model), member("messages", turn(true)), member("max_tokens", "64")];
        let mut respelled = vec![member("model", model), member("messages", turn(false)), member("max_tokens", "64")];
        for (i, (k, v)) in members.iter().enumerate() {
            plain.push(member(&format!("x{k}"), v.to_string()));
            respelled.push(member(&format!("x{k}"), if i % 2 == 0 { format!("{v}.0") } else { format!("{v}e0") }));
        }
        let a = object_text(&plain);
        let b = object_text(&reordered(&respelled, rotate));
        prop_assert_ne!(&a, &b);
        prop_assert_eq!(dropin_key_of_text(dialect, &a)?, dropin_key_of_text(dialect, &b)?);
    }
}
