//! `loadgen`: a closed-loop HTTP load generator for loopback targets only. C workers each send
//! one request at a time over kept-alive connections for a warmup then a measured window,
//! and every measured latency is recorded. Prints one machine-readable line per run:
//! `NAME requests=… rps=… p50_ms=… p90_ms=… p99_ms=… max_ms=… errors=… concurrency=…`
//! (errors: transport errors, non-2xx statuses, and bodies without the `--expect` text; the
//! first one is described on stderr). `--raw FILE` keeps the run's latencies, and
//! `loadgen --merge --label NAME FILE...` prints one line for several such runs (exact
//! percentiles over all their latencies), so a benchmark can alternate targets.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gateway_benches::{is_loopback_host, Summary};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Method, Url};

const USAGE: &str = "usage: loadgen --label NAME --url URL [--method M] [--header 'K: V']... \
[--body STR | --body-file F] [--expect STR] [--concurrency C] [--duration SECS] [--warmup SECS] \
[--timeout SECS] [--no-keepalive] [--first-byte] [--raw FILE] [--key-file F] [--expect-status N] [--gap-ms MS]\n       loadgen --merge --label NAME RAW_FILE...";

struct Spec {
    label: String,
    url: Url,
    method: Method,
    headers: HeaderMap,
    body: Option<Vec<u8>>,
    expect: Option<String>,
    concurrency: usize,
    duration: Duration,
    warmup: Duration,
    timeout: Duration,
    /// A new connection per request (diagnostics); the default keeps connections alive.
    no_keepalive: bool,
    /// Latency up to the body's first bytes (time to first event of a stream), not its end.
    first_byte: bool,
    /// Where to write every measured latency (microseconds, one a line), to merge runs.
    raw: Option<String>,
    /// API keys, one a line (`--key-file`): request n is sent with `Authorization: Bearer`
    /// the key n modulo their number, so one run spreads over many keys and accounts.
    keys: Vec<String>,
    next_key: std::sync::atomic::AtomicUsize,
    /// The status that counts as the expected answer (`--expect-status`; default: any 2xx).
    expect_status: Option<u16>,
    /// A pause after each request before a worker sends its next (`--gap-ms`; default none):
    /// tells a request's own latency from the work the previous one left running.
    gap: Duration,
}

fn secs(v: &str, name: &str) -> Result<Duration, String> {
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 3600.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{name} must be a number of seconds (0..=3600), got {v:?}"))
}

fn parse_args(args: &[String]) -> Result<Spec, String> {
    let mut label = None;
    let mut url = None;
    let mut method = Method::GET;
    let mut headers = HeaderMap::new();
    let mut body = None;
    let mut expect = None;
    let mut concurrency = 8usize;
    let mut duration = Duration::from_secs(10);
    let mut warmup = Duration::from_secs(2);
    let mut timeout = Duration::from_secs(10);
    let mut no_keepalive = false;
    let mut first_byte = false;
    let mut raw = None;
    let mut keys = Vec::new();
    let mut expect_status = None;
    let mut gap = Duration::ZERO;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--label" => label = Some(value()?),
            "--url" => url = Some(value()?),
            "--method" => {
                let m = value()?;
                method = Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| format!("bad method {m:?}"))?;
            }
            "--header" => {
                let h = value()?;
                let (k, v) = h
                    .split_once(':')
                    .ok_or_else(|| format!("header {h:?} is not 'K: V'"))?;
                let name = HeaderName::from_bytes(k.trim().as_bytes())
                    .map_err(|_| format!("bad header name {k:?}"))?;
                let val = HeaderValue::from_str(v.trim())
                    .map_err(|_| format!("bad header value for {k:?}"))?;
                headers.append(name, val);
            }
            "--body" => body = Some(value()?.into_bytes()),
            "--body-file" => {
                let f = value()?;
                body = Some(std::fs::read(&f).map_err(|e| format!("cannot read {f}: {e}"))?);
            }
            "--expect" => expect = Some(value()?),
            "--concurrency" => {
                let c = value()?;
                concurrency = c
                    .parse()
                    .ok()
                    .filter(|c| (1..=1024).contains(c))
                    .ok_or_else(|| format!("concurrency must be 1..=1024, got {c:?}"))?;
            }
            "--duration" => duration = secs(&value()?, "duration")?,
            "--warmup" => warmup = secs(&value()?, "warmup")?,
            "--timeout" => timeout = secs(&value()?, "timeout")?,
            "--no-keepalive" => no_keepalive = true,
            "--first-byte" => first_byte = true,
            "--raw" => raw = Some(value()?),
            "--key-file" => {
                let f = value()?;
                let text =
                    std::fs::read_to_string(&f).map_err(|e| format!("cannot read {f}: {e}"))?;
                keys = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .collect();
                if keys.is_empty() {
                    return Err(format!("{f} holds no key"));
                }
            }
            "--expect-status" => {
                let v = value()?;
                expect_status = Some(
                    v.parse::<u16>()
                        .ok()
                        .filter(|c| (100..600).contains(c))
                        .ok_or_else(|| {
                            format!("--expect-status must be an HTTP status, got {v:?}")
                        })?,
                );
            }
            "--gap-ms" => {
                let v = value()?;
                gap = v
                    .parse::<u64>()
                    .ok()
                    .filter(|ms| *ms <= 10_000)
                    .map(Duration::from_millis)
                    .ok_or_else(|| format!("--gap-ms must be 0..=10000 ms, got {v:?}"))?;
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let label = label.ok_or_else(|| format!("--label is required\n{USAGE}"))?;
    if label.is_empty() || label.contains(char::is_whitespace) {
        return Err("the label must be one word".into());
    }
    let url = url.ok_or_else(|| format!("--url is required\n{USAGE}"))?;
    let url = Url::parse(&url).map_err(|e| format!("bad URL {url:?}: {e}"))?;
    if url.scheme() != "http" {
        return Err(format!(
            "only http:// URLs on loopback are allowed, got {url}"
        ));
    }
    match url.host_str() {
        Some(h) if is_loopback_host(h) => {}
        _ => return Err(format!("refusing a non-loopback URL: {url}")),
    }
    if duration.is_zero() {
        return Err("duration must be above zero".into());
    }
    if timeout.is_zero() {
        timeout = duration;
    }
    Ok(Spec {
        label,
        url,
        method,
        headers,
        body,
        expect,
        concurrency,
        duration,
        warmup,
        timeout,
        no_keepalive,
        first_byte,
        raw,
        keys,
        next_key: std::sync::atomic::AtomicUsize::new(0),
        expect_status,
        gap,
    })
}

/// What one worker saw in the measured window.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    errors: u64,
    last_done: Option<Instant>,
}

/// One request: when its body's first bytes arrived (the body is read whole all the same);
/// `Err` describes why it counts as an error.
async fn one(client: &Client, spec: &Spec) -> Result<Option<Instant>, String> {
    let mut rb = client
        .request(spec.method.clone(), spec.url.clone())
        .headers(spec.headers.clone());
    if let Some(b) = &spec.body {
        rb = rb.body(b.clone());
    }
    if !spec.keys.is_empty() {
        let n = spec
            .next_key
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        rb = rb.bearer_auth(&spec.keys[n % spec.keys.len()]);
    }
    let mut resp = rb.send().await.map_err(|e| format!("transport: {e}"))?;
    let status = resp.status();
    let mut body = Vec::new();
    let mut first = None;
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("status {status}, body read failed: {e}"))?
    {
        if first.is_none() && !chunk.is_empty() {
            first = Some(Instant::now());
        }
        body.extend_from_slice(&chunk);
    }
    let text = || String::from_utf8_lossy(&body[..body.len().min(600)]).into_owned();
    let expected = match spec.expect_status {
        Some(code) => status.as_u16() == code,
        None => status.is_success(),
    };
    if !expected {
        return Err(format!("status {status}: {}", text()));
    }
    if let Some(want) = &spec.expect {
        if !String::from_utf8_lossy(&body).contains(want.as_str()) {
            return Err(format!("status {status}, body lacks {want:?}: {}", text()));
        }
    }
    Ok(first)
}

async fn worker(
    client: Client,
    spec: Arc<Spec>,
    measure_from: Instant,
    end: Instant,
    first_error: Arc<Mutex<Option<String>>>,
) -> Tally {
    let mut t = Tally::default();
    loop {
        let start = Instant::now();
        if start >= end {
            break;
        }
        let result = one(&client, &spec).await;
        let done = Instant::now();
        // `--first-byte`: the latency is the time to the body's first bytes.
        let until = match &result {
            Ok(Some(first)) if spec.first_byte => *first,
            _ => done,
        };
        let transport_error = matches!(&result, Err(e) if e.starts_with("transport"));
        if start >= measure_from {
            t.latencies_us
                .push(until.duration_since(start).as_micros() as u64);
            t.last_done = Some(done);
            if let Err(e) = result {
                t.errors += 1;
                let mut first = first_error.lock().unwrap_or_else(|p| p.into_inner());
                if first.is_none() {
                    *first = Some(e);
                }
            }
        }
        if transport_error {
            // Do not spin on a target that is down.
            tokio::time::sleep(Duration::from_millis(10)).await;
        } else if !spec.gap.is_zero() {
            tokio::time::sleep(spec.gap).await;
        }
    }
    t
}

async fn run(spec: Spec) -> Result<bool, String> {
    let client = Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(if spec.no_keepalive {
            0
        } else {
            spec.concurrency
        })
        .timeout(spec.timeout)
        .build()
        .map_err(|e| format!("client: {e}"))?;
    let spec = Arc::new(spec);
    let first_error = Arc::new(Mutex::new(None));
    let begin = Instant::now();
    let measure_from = begin + spec.warmup;
    let end = measure_from + spec.duration;
    let tasks: Vec<_> = (0..spec.concurrency)
        .map(|_| {
            tokio::spawn(worker(
                client.clone(),
                spec.clone(),
                measure_from,
                end,
                first_error.clone(),
            ))
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    let mut last_done = measure_from;
    for task in tasks {
        let t = task.await.map_err(|e| format!("worker panicked: {e}"))?;
        all.extend(t.latencies_us);
        errors += t.errors;
        if let Some(d) = t.last_done {
            last_done = last_done.max(d);
        }
    }
    let window = last_done.duration_since(measure_from).as_micros() as u64;
    let summary = Summary::new(&spec.label, all, window, errors, spec.concurrency);
    if let Some(path) = &spec.raw {
        std::fs::write(path, summary.to_raw()).map_err(|e| format!("cannot write {path}: {e}"))?;
    }
    println!("{}", summary.line());
    if let Some(e) = first_error.lock().unwrap_or_else(|p| p.into_inner()).take() {
        eprintln!("{}: first error: {e}", spec.label);
    }
    Ok(errors == 0 && !summary.latencies_us.is_empty())
}

/// `loadgen --merge --label NAME FILE...`: one line for several `--raw` runs of one target.
fn merge(args: &[String]) -> Result<bool, String> {
    let (label, files) = match args {
        [flag, label, files @ ..] if flag == "--label" && !files.is_empty() => (label, files),
        _ => return Err("usage: loadgen --merge --label NAME FILE...".into()),
    };
    let runs = files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).map_err(|e| format!("cannot read {f}: {e}"))?;
            Summary::from_raw(label, &text).map_err(|e| format!("{f}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let merged = Summary::merge(label, &runs);
    println!("{}", merged.line());
    Ok(merged.errors == 0 && !merged.latencies_us.is_empty())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--merge") {
        return match merge(&args[1..]) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("loadgen: {e}");
                ExitCode::from(2)
            }
        };
    }
    let spec = match parse_args(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    // One thread: the load tool should leave the machine's cores to the server under test.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(spec)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::from(2)
        }
    }
}
