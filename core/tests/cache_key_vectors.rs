//! Checks `ask_cache_key`, `request_cache_key` and `normalize` against the fixed vectors in
//! `tests/vectors/`, which `make_vectors.py` computed independently with Python's stdlib.

use gateway_core::cache::key::{ask_cache_key, request_cache_key, Scope};
use gateway_core::cache::normalize::normalize;
use gateway_core::providers::Provider;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct AskRow {
    scope: String,
    prompt: String,
    providers: Vec<String>,
    params: Value,
    normalized: String,
    expected_key: String,
}

#[derive(Deserialize)]
struct RequestRow {
    namespace: String,
    scope: String,
    request: Value,
    expected_key: String,
}

fn scope(s: &str) -> Scope {
    match s.strip_prefix("private:") {
        Some(account_id) => Scope::Private(account_id.to_owned()),
        None => {
            assert_eq!(s, "shared", "unknown scope in vectors");
            Scope::Shared
        }
    }
}

fn providers(names: &[String]) -> Vec<Provider> {
    names
        .iter()
        .map(|n| Provider::parse(n).unwrap_or_else(|| panic!("unknown provider {n:?} in vectors")))
        .collect()
}

#[test]
fn ask_vectors_match_the_independent_computation() {
    let rows: Vec<AskRow> =
        serde_json::from_str(include_str!("vectors/cache_key.json")).expect("vectors parse");
    assert!(rows.len() >= 12, "only {} rows", rows.len());
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(
            normalize(&row.prompt),
            row.normalized,
            "row {i}: {:?}",
            row.prompt
        );
        let key = ask_cache_key(
            &scope(&row.scope),
            &row.prompt,
            &providers(&row.providers),
            &row.params,
        );
        assert_eq!(key.as_str(), row.expected_key, "row {i}: {:?}", row.prompt);
    }
}

#[test]
fn request_vectors_match_the_independent_computation() {
    let rows: Vec<RequestRow> =
        serde_json::from_str(include_str!("vectors/request_cache_key.json"))
            .expect("vectors parse");
    assert!(!rows.is_empty());
    for (i, row) in rows.iter().enumerate() {
        let key = request_cache_key(&row.namespace, &scope(&row.scope), &row.request);
        assert_eq!(key.as_str(), row.expected_key, "row {i}");
    }
}

/// The table pairs rows that must share a key (1.0 vs 1, decomposed vs composed accents,
/// spacing and punctuation) and rows that must not (shared vs private, two accounts).
#[test]
fn vectors_cover_equal_and_distinct_pairs() {
    let rows: Vec<AskRow> =
        serde_json::from_str(include_str!("vectors/cache_key.json")).expect("vectors parse");
    assert_eq!(rows[3].expected_key, rows[4].expected_key, "NFC");
    assert_eq!(rows[13].expected_key, rows[14].expected_key, "1.0 vs 1");
    assert_ne!(
        rows[0].expected_key, rows[1].expected_key,
        "shared vs private"
    );
    assert_ne!(rows[1].expected_key, rows[2].expected_key, "two accounts");
}
