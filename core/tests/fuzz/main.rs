//! Fuzzing of the pure parsers on stable Rust: a time-bounded mutational fuzzer with proptest
//! generators (no coverage instrumentation, which needs nightly or an AFL++ toolchain), over the
//! `/v1/ask` parser, both drop-in validators, normalization and the cache key, the provider
//! response adapters, the SSE parser and watchers, the stream synthesizer, the scrubber and
//! canonical JSON. Each target checks invariants beyond "no panic" (see `targets.rs`).
//!
//! Two tests:
//! - `every_seed_and_regression_runs_clean` (in the ordinary test run): every committed input
//!   under `fixtures/fuzz/<target>/` (seeds, and `regressions/` holding inputs that once failed)
//!   through its target.
//! - `fuzz_for_a_while` (ignored; `scripts/fuzz.sh` runs it): each target for `FUZZ_SECONDS`
//!   (default 60), `FUZZ_TARGETS` (comma-separated) to pick some, `FUZZ_SEED` to replay a run.
//!   A failing input is written to `target/fuzz/crashes/<target>/` and the test fails.

mod regressions;
mod targets;

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// One fuzz target: runs an input, panics when an invariant breaks, and returns the class of
/// outcome it reached (an error code, a stream end, ...). A new class adds the input to the corpus.
pub type Target = fn(&[u8]) -> String;

/// Every target, by the name of its corpus folder.
pub const TARGETS: &[(&str, Target)] = &[
    ("ask", targets::ask),
    ("dropin_openai", targets::dropin_openai),
    ("dropin_anthropic", targets::dropin_anthropic),
    ("cache_key", targets::cache_key),
    ("adapters", targets::adapters),
    ("sse", targets::sse),
    ("synthesize", targets::synthesize),
    ("scrub", targets::scrub),
    ("canonical_json", targets::canonical_json),
];

/// The largest input the mutator makes (past the 256 KiB body cap).
const MAX_INPUT: usize = 300 * 1024;
/// The most inputs kept in one target's corpus.
const MAX_CORPUS: usize = 4096;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The committed inputs of a target: its seeds and its regressions.
fn committed(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    files_under(&repo_root().join("fixtures/fuzz").join(target))
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n != "README.md"))
        .filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
        .collect()
}

/// The panic message of the last input run, kept by the quiet hook installed while fuzzing.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("{msg}{at}"));
    }));
}

fn run_one(target: Target, input: &[u8]) -> Result<String, String> {
    catch_unwind(AssertUnwindSafe(|| target(input))).map_err(|_| {
        LAST_PANIC
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_else(|| "panic".into())
    })
}

#[test]
fn every_seed_and_regression_runs_clean() {
    let mut failures = Vec::new();
    let mut count = 0;
    for (name, target) in TARGETS {
        let inputs = committed(name);
        assert!(!inputs.is_empty(), "fixtures/fuzz/{name}/ has no seed");
        for (path, bytes) in inputs {
            count += 1;
            if let Err(msg) = run_one(*target, &bytes) {
                failures.push(format!("{}: {msg}", path.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(count >= TARGETS.len());
}

/// A small fast generator for the mutator (the structured inputs come from proptest).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// Tokens the mutator inserts: JSON syntax and hostile values, SSE syntax, key shapes.
const DICT: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"\"",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"\\udc00",
    b"\\u00e9",
    b"\\\"",
    b"null",
    b"true",
    b"false",
    b"0",
    b"-0",
    b"1e400",
    b"-1e400",
    b"1e-400",
    b"1.0",
    b"1E2",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"9007199254740993",
    b"0.1",
    b"1.7976931348623157e308",
    b"5e-324",
    b"\"\"",
    b"{}",
    b"[]",
    b"\x00",
    b"\x7f",
    b"\xc0\x80",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xef\xbb\xbf",
    b"\xe2\x80\xa8",
    b"\xcc\x81",
    b"\xce\xa3",
    b"\xe3\x80\x80",
    b"\r",
    b"\n",
    b"\r\n",
    b"\n\n",
    b"\t",
    b" ",
    b"data: ",
    b"data:",
    b"event: ",
    b"event:",
    b"id: 1",
    b"retry: 5",
    b": keep-alive",
    b"data: [DONE]",
    b"sk-",
    b"sk-ant-api03-",
    b"sk-proj-",
    b"AIza",
    b"pplx-",
    b"lvk_live_",
    b"lvk_test_",
    b"Bearer ",
    b"Authorization: ",
    b"x-api-key: ",
    b"\"api_key\":\"",
    b"?key=",
    b"org-",
    b"organization (",
    b"\"prompt\"",
    b"\"providers\"",
    b"\"params\"",
    b"\"models\"",
    b"\"max_tokens\"",
    b"\"temperature\"",
    b"\"top_p\"",
    b"\"system\"",
    b"\"cache_scope\"",
    b"\"stream\"",
    b"\"stream_options\"",
    b"\"include_usage\"",
    b"\"messages\"",
    b"\"role\"",
    b"\"content\"",
    b"\"model\"",
    b"\"n\"",
    b"\"max_completion_tokens\"",
    b"\"tools\"",
    b"\"type\"",
    b"\"text\"",
    b"\"usage\"",
    b"\"choices\"",
    b"\"delta\"",
    b"\"index\"",
    b"\"finish_reason\"",
    b"\"error\"",
    b"\"candidates\"",
    b"\"parts\"",
    b"\"usageMetadata\"",
    b"\"citations\"",
    b"\"message_start\"",
    b"\"content_block_delta\"",
    b"\"message_delta\"",
    b"\"message_stop\"",
    b"\"input_tokens\"",
    b"\"output_tokens\"",
    b"\"openai\"",
    b"\"anthropic\"",
    b"\"gemini\"",
    b"\"perplexity\"",
    b"\"gpt-4o-mini\"",
    b"\"claude-3-5-haiku-latest\"",
    b"\"private\"",
    b"\"shared\"",
    b"...",
    b"?!",
    b"\xc2\xbf",
    b"c++",
    b"\xf0\x9f\x98\x80",
];

const INTERESTING: &[u8] = &[
    0, 1, 0x7f, 0x80, 0xff, b'"', b'\\', b'{', b'[', b'}', b']', b'\n', b'\r', b':', b',', b' ',
    0xc3, 0xe2, 0xf0, b'0', b'e', b'-', b'.',
];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    let rounds = 1 + rng.below(6);
    for _ in 0..rounds {
        let len = input.len();
        match rng.below(11) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                input.splice(at..at, bytes);
            }
            3 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(32.min(len - a))).min(len);
                input.drain(a..b);
            }
            4 if len > 0 => {
                // Repeat a slice: nesting, long runs, many fields.
                let a = rng.below(len);
                let b = (a + 1 + rng.below(64.min(len - a))).min(len);
                let piece = input[a..b].to_vec();
                let times = if rng.chance(8) {
                    1 + rng.below(2000)
                } else {
                    1 + rng.below(4)
                };
                let at = rng.below(len + 1);
                let mut rep = Vec::with_capacity(piece.len() * times);
                for _ in 0..times {
                    rep.extend_from_slice(&piece);
                }
                input.splice(at..at, rep);
            }
            5 | 6 => {
                let at = rng.below(len + 1);
                let tok = DICT[rng.below(DICT.len())];
                input.splice(at..at, tok.iter().copied());
            }
            7 if len > 0 => {
                // Overwrite a span with a dictionary token.
                let tok = DICT[rng.below(DICT.len())];
                let a = rng.below(len);
                let b = (a + tok.len()).min(len);
                input.splice(a..b, tok.iter().copied());
            }
            8 if !corpus.is_empty() => {
                // Splice: our head, another input's tail.
                let other = &corpus[rng.below(corpus.len())];
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                input.truncate(cut);
                input.extend_from_slice(&other[from..]);
            }
            9 if len > 0 => {
                input.truncate(rng.below(len));
            }
            10 => {
                // Deep nesting at a random place.
                let depth = 1 + rng.below(300);
                let at = rng.below(len + 1);
                let (open, close): (&[u8], &[u8]) = match rng.below(3) {
                    0 => (b"[", b"]"),
                    1 => (b"{\"a\":", b"}"),
                    _ => (b"[{\"k\":[", b"]}]"),
                };
                let mut nest = open.repeat(depth);
                nest.extend_from_slice(b"1");
                nest.extend_from_slice(&close.repeat(depth));
                input.splice(at..at, nest);
            }
            _ => {}
        }
    }
    input.truncate(MAX_INPUT);
}

/// Structured inputs: JSON documents built from the fields the targets read, as text.
fn json_strategy() -> impl Strategy<Value = String> {
    use proptest::prelude::*;
    use serde_json::Value;
    let keys = prop::sample::select(vec![
        "prompt",
        "providers",
        "params",
        "cache_scope",
        "stream",
        "models",
        "max_tokens",
        "temperature",
        "top_p",
        "system",
        "openai",
        "anthropic",
        "gemini",
        "perplexity",
        "model",
        "messages",
        "role",
        "content",
        "type",
        "text",
        "n",
        "max_completion_tokens",
        "stream_options",
        "include_usage",
        "tools",
        "usage",
        "choices",
        "delta",
        "index",
        "finish_reason",
        "error",
        "message",
        "input_tokens",
        "output_tokens",
        "candidates",
        "parts",
        "citations",
        "id",
        "stop_reason",
        "tool_choice",
        "metadata",
    ])
    .prop_map(str::to_string);
    let key = prop_oneof![4 => keys, 1 => any::<String>()];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        (0u32..40_000).prop_map(Value::from),
        prop::sample::select(vec![
            "openai",
            "anthropic",
            "gemini",
            "perplexity",
            "private",
            "shared",
            "user",
            "assistant",
            "system",
            "text",
            "gpt-4o-mini",
            "claude-3-5-haiku-latest",
            "gemini-2.0-flash",
            "sonar",
            "dall-e-3",
            "What is the capital of France?",
            "",
            "  \u{a0}?!",
            "c++",
            "tool_use",
            "image",
        ])
        .prop_map(|s| Value::String(s.to_string())),
        any::<String>().prop_map(Value::String),
        "[ -~]{0,64}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
    .prop_map(|v| v.to_string())
}

struct Report {
    name: &'static str,
    execs: u64,
    seeds: usize,
    corpus: usize,
    classes: usize,
    crashes: Vec<(PathBuf, String)>,
    elapsed: Duration,
}

fn fuzz_target(name: &'static str, target: Target, seconds: u64, seed: u64) -> Report {
    let out_dir = repo_root().join("target/fuzz/crashes").join(name);
    let mut rng = Rng(seed ^ fnv(name.as_bytes()));
    let mut corpus: Vec<Vec<u8>> = committed(name).into_iter().map(|(_, b)| b).collect();
    let seeds = corpus.len();
    let mut classes = HashSet::new();
    let mut crashes = Vec::new();
    let mut seen_crash = HashSet::new();
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(
            RngAlgorithm::ChaCha,
            &seed_bytes(seed ^ fnv(name.as_bytes())),
        ),
    );
    let strategy = json_strategy();
    let mut record =
        |input: &[u8], result: Result<String, String>, corpus: &mut Vec<Vec<u8>>| match result {
            Ok(class) => {
                if classes.insert(class) && corpus.len() < MAX_CORPUS {
                    corpus.push(input.to_vec());
                }
            }
            Err(msg) => {
                let site = msg.split(" at ").last().unwrap_or("").to_string();
                if seen_crash.insert(site) {
                    let _ = std::fs::create_dir_all(&out_dir);
                    let path = out_dir.join(format!("crash-{:016x}", fnv(input)));
                    let _ = std::fs::write(&path, input);
                    crashes.push((path, msg));
                }
            }
        };
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut execs = 0u64;
    // The seeds first, then mutations and generated documents until the time is up.
    for i in 0..corpus.len() {
        let input = corpus[i].clone();
        let r = run_one(target, &input);
        record(&input, r, &mut corpus);
        execs += 1;
    }
    while Instant::now() < deadline {
        for _ in 0..16 {
            let input = if corpus.is_empty() || rng.chance(5) {
                let mut doc = match strategy.new_tree(&mut runner) {
                    Ok(tree) => tree.current().into_bytes(),
                    Err(_) => Vec::new(),
                };
                if rng.chance(2) {
                    mutate(&mut rng, &mut doc, &corpus);
                }
                doc
            } else {
                let mut input = corpus[rng.below(corpus.len())].clone();
                mutate(&mut rng, &mut input, &corpus);
                input
            };
            let r = run_one(target, &input);
            record(&input, r, &mut corpus);
            execs += 1;
        }
    }
    let elapsed = started.elapsed();
    Report {
        name,
        execs,
        seeds,
        corpus: corpus.len(),
        classes: classes.len(),
        crashes,
        elapsed,
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn seed_bytes(seed: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut r = Rng(seed);
    for chunk in out.chunks_mut(8) {
        chunk.copy_from_slice(&r.next().to_le_bytes());
    }
    out
}

#[test]
#[ignore = "long-running: scripts/fuzz.sh runs it"]
fn fuzz_for_a_while() {
    let seconds: u64 = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let wanted: Option<Vec<String>> = std::env::var("FUZZ_TARGETS")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    if let Some(w) = &wanted {
        for n in w {
            assert!(
                TARGETS.iter().any(|(t, _)| t == n),
                "unknown fuzz target `{n}`; targets: {:?}",
                TARGETS.iter().map(|(t, _)| *t).collect::<Vec<_>>()
            );
        }
    }
    println!("fuzz: seed {seed} (FUZZ_SEED={seed} replays it), {seconds} s per target");
    quiet_panics();
    let failed = Arc::new(Mutex::new(Vec::new()));
    let mut total = 0u64;
    for (name, target) in TARGETS {
        if wanted
            .as_ref()
            .is_some_and(|w| !w.iter().any(|n| n == name))
        {
            continue;
        }
        let r = fuzz_target(name, *target, seconds, seed);
        total += r.execs;
        println!(
            "fuzz {:<17} {:>10} executions in {:>5.1} s ({:>8.0}/s), {} seeds, corpus {}, {} outcome classes, {} crash(es)",
            r.name,
            r.execs,
            r.elapsed.as_secs_f64(),
            r.execs as f64 / r.elapsed.as_secs_f64().max(1e-9),
            r.seeds,
            r.corpus,
            r.classes,
            r.crashes.len()
        );
        for (path, msg) in &r.crashes {
            println!("  CRASH {}: {msg}", path.display());
            failed
                .lock()
                .unwrap()
                .push(format!("{}: {}", r.name, path.display()));
        }
    }
    let _ = std::panic::take_hook();
    println!("fuzz: {total} executions in all");
    let failed = failed.lock().unwrap();
    assert!(
        failed.is_empty(),
        "fuzzing found failing inputs (copy each into fixtures/fuzz/<target>/regressions/ once fixed):\n{}",
        failed.join("\n")
    );
}
