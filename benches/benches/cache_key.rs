//! Criterion benches of cache key derivation: `ask_cache_key` (normalize + canonical JSON +
//! SHA-256) beside a raw `Sha256::digest` of the same prompt bytes, for ASCII and non-ASCII
//! prompts of 100 B, 2 KB and 20 KB.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gateway_core::cache::key::{ask_cache_key, Scope};
use gateway_core::cache::normalize::normalize;
use gateway_core::providers::Provider;
use serde_json::json;
use sha2::{Digest, Sha256};

const ASCII_TEXT: &str = "Summarize the following REPORT for an executive audience.  Keep the \
tone neutral, list the three biggest risks, and say what C++ and Rust code paths changed.\n\n\
The Q3 numbers show revenue up 12% (year over year); costs rose faster, mainly in cloud \
spend and hiring.\tSee table 4, \"Regional breakdown\", for details: EMEA -3%, APAC +21%.\n";

const NON_ASCII_TEXT: &str = "Résumez ce RAPPORT pour la direction générale : crème brûlée, \
naïve café, Ærøskøbing, Straße, ÀÉÎÕÜ.  東京の天気は晴れです。来週の予定を教えてください。\n\n\
Ünïcödé façade — «déjà vu» ½ · Größe ÑANDÚ; 서울의 날씨는 맑습니다.\tΟΔΟΣ ΣΟΦΙΑΣ.\n";

/// `text` repeated and cut to at most `len` bytes at a char boundary.
fn prompt(text: &str, len: usize) -> String {
    let mut out = String::with_capacity(len + text.len());
    while out.len() < len {
        out.push_str(text);
    }
    let mut cut = len;
    while !out.is_char_boundary(cut) {
        cut -= 1;
    }
    out.truncate(cut);
    out
}

fn bench_cache_key(c: &mut Criterion) {
    let params = json!({
        "max_tokens": 1024,
        "temperature": 0.7,
        "models": {"anthropic": "claude-haiku-4-5", "openai": "gpt-4o-mini"},
    });
    let providers = [Provider::OpenAi, Provider::Anthropic];
    let scope = Scope::Private("acct_0123456789".to_owned());

    for (kind, text) in [("ascii", ASCII_TEXT), ("non_ascii", NON_ASCII_TEXT)] {
        let mut group = c.benchmark_group(format!("cache_key/{kind}"));
        for (label, len) in [("100B", 100), ("2KB", 2_000), ("20KB", 20_000)] {
            let p = prompt(text, len);
            group.throughput(Throughput::Bytes(p.len() as u64));
            group.bench_with_input(BenchmarkId::new("ask_cache_key", label), &p, |b, p| {
                b.iter(|| ask_cache_key(&scope, black_box(p), &providers, &params))
            });
            group.bench_with_input(BenchmarkId::new("normalize", label), &p, |b, p| {
                b.iter(|| normalize(black_box(p)))
            });
            group.bench_with_input(BenchmarkId::new("sha256_raw", label), &p, |b, p| {
                b.iter(|| Sha256::digest(black_box(p.as_bytes())))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench_cache_key);
criterion_main!(benches);
