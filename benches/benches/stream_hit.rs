//! Criterion benches of a streamed hit's own work: `synthesize` (the stored answer replayed as
//! the provider's events) for each dialect, beside parsing the same stored answer into JSON
//! (the least any hit that changes an answer's form must do), for the providers' documented
//! answers (`fixtures/providers/*/response.json`) and one with a 4 KB text.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use gateway_core::api::dropin::stream::synthesize;
use gateway_core::api::dropin::Dialect;
use serde_json::Value;

fn fixture(provider: &str) -> String {
    let path = format!(
        "{}/../fixtures/providers/{provider}/response.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The fixture with its text replaced by `len` bytes of prose.
fn with_long_text(dialect: Dialect, stored: &str, len: usize) -> String {
    let text: String = "The quick brown fox jumps over the lazy dog. "
        .chars()
        .cycle()
        .take(len)
        .collect();
    let mut v: Value = serde_json::from_str(stored).expect("fixture is JSON");
    match dialect {
        Dialect::AnthropicMessages => {
            v["content"] = serde_json::json!([{"type": "text", "text": text}])
        }
        Dialect::OpenAiChat => v["choices"][0]["message"]["content"] = Value::String(text),
    }
    v.to_string()
}

fn bench_stream_hit(c: &mut Criterion) {
    for (name, dialect, provider) in [
        ("messages", Dialect::AnthropicMessages, "anthropic"),
        ("chat", Dialect::OpenAiChat, "openai"),
    ] {
        let documented = fixture(provider);
        let long = with_long_text(dialect, &documented, 4096);
        let mut g = c.benchmark_group(format!("stream_hit_{name}"));
        for (size, stored) in [("fixture", &documented), ("4KB", &long)] {
            assert!(synthesize(dialect, stored, true).is_ok(), "{name} {size}");
            g.bench_with_input(BenchmarkId::new("synthesize", size), stored, |b, s| {
                b.iter(|| synthesize(dialect, black_box(s), true))
            });
            g.bench_with_input(BenchmarkId::new("parse_only", size), stored, |b, s| {
                b.iter(|| serde_json::from_str::<Value>(black_box(s)))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench_stream_hit);
criterion_main!(benches);
