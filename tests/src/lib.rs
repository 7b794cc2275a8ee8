//! The integration-test harness: starts one local stack per test binary (mock provider server +
//! one `wrangler dev` with the gateway and four brokers, fresh state, free ports), shares it
//! between the tests, and stops its whole process group when the binary exits.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use reqwest;
pub use serde_json::{json, Value};

pub const ADMIN_TOKEN: &str = "test-admin-token";
/// The largest text value the suite's gateway binds in a D1 statement (D1's own: 1,000,000 bytes).
pub const DEV_D1_VALUE_LIMIT: usize = 96 * 1024;
/// The most keys one account of the suite may mint through `POST /v1/keys` (default 1,000).
pub const DEV_MAX_KEYS_PER_ACCOUNT: u64 = 12;
/// The credits of an account [`Stack::live_key`] makes.
pub const LIVE_CREDITS: u64 = 1_000_000;

/// The running stack.
pub struct Stack {
    pub base: String,
    pub mock: String,
    pub state_dir: PathBuf,
    pub client: reqwest::Client,
}

static STACK: OnceLock<Stack> = OnceLock::new();
static PGID: AtomicI32 = AtomicI32::new(0);

extern "C" fn stop_stack() {
    let pgid = PGID.swap(0, Ordering::SeqCst);
    if pgid > 0 {
        // SAFETY: signalling a process group we created.
        unsafe {
            libc::kill(-pgid, libc::SIGTERM);
        }
        std::thread::sleep(Duration::from_millis(300));
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn http_ok(port: u16, path: &str) -> bool {
    let Ok(mut s) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 32];
    matches!(s.read(&mut buf), Ok(n) if n >= 12 && &buf[9..12] == b"200")
}

/// Tests share the stack; a load-heavy test (hundreds of concurrent calls) takes it alone, so
/// it neither starves the others on this 2-core machine nor is measured against their load.
static TURN: RwLock<()> = RwLock::new(());

/// The shared stack, started on first use, held for the caller's test.
pub struct StackGuard {
    stack: &'static Stack,
    _turn: Turn,
}

#[allow(dead_code)]
enum Turn {
    Shared(RwLockReadGuard<'static, ()>),
    Alone(RwLockWriteGuard<'static, ()>),
}

impl std::ops::Deref for StackGuard {
    type Target = Stack;
    fn deref(&self) -> &Stack {
        self.stack
    }
}

/// The stack, shared with the other tests running now.
pub fn stack() -> StackGuard {
    let stack = STACK.get_or_init(start);
    let turn = TURN.read().unwrap_or_else(|e| e.into_inner());
    StackGuard {
        stack,
        _turn: Turn::Shared(turn),
    }
}

/// The stack, with no other test running against it meanwhile.
pub fn stack_alone() -> StackGuard {
    let stack = STACK.get_or_init(start);
    let turn = TURN.write().unwrap_or_else(|e| e.into_inner());
    StackGuard {
        stack,
        _turn: Turn::Alone(turn),
    }
}

fn start() -> Stack {
    let root = root();
    for needed in [
        "build/worker/entry.mjs",
        "broker/build/worker/entry.mjs",
        "target/release/mock-provider",
    ] {
        assert!(
            root.join(needed).exists(),
            "{needed} is missing: run the tests with scripts/test.sh, which builds it"
        );
    }
    let states = root.join("target").join("test-state");
    // Each test process's state stays after it (its stack's log, for a failure) until a later
    // run finds the process gone.
    for entry in std::fs::read_dir(&states).into_iter().flatten().flatten() {
        let pid = entry.file_name().to_string_lossy().parse::<u32>().ok();
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let state_dir = states.join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&state_dir);
    std::fs::create_dir_all(&state_dir).expect("state dir");
    // The stack picks its ports here, and wrangler dev picks more of its own later: now and
    // then one of those is a port this run already holds, and the stack exits at once. Such a
    // start is retried on new ports (a stack that is merely slow is waited for).
    let mut attempt = 0;
    let (port, mock_port) = loop {
        attempt += 1;
        let (port, mock_port, inspector) = (free_port(), free_port(), free_port());
        let log = std::fs::File::create(state_dir.join("stack.log")).expect("log file");
        let mut child = Command::new("bash")
            .arg(root.join("scripts/stack.sh"))
            .arg(&state_dir)
            .arg(port.to_string())
            .arg(mock_port.to_string())
            .arg(inspector.to_string())
            .env("ADMIN_TOKEN", ADMIN_TOKEN)
            .env("PROVIDER_TIMEOUT_MS", "3000")
            // A silent stream's keep-alives every second (15 s in production).
            .env("STREAM_KEEPALIVE_MS", "1000")
            // A running stream renews its credit reservation every 300 ms (5 min in
            // production).
            .env("STREAM_RENEW_MS", "300")
            // D1 refuses values over 1 MB; the suite's limit is lower so a test can reach it.
            .env("DEV_D1_VALUE_LIMIT", DEV_D1_VALUE_LIMIT.to_string())
            .env(
                "DEV_MAX_KEYS_PER_ACCOUNT",
                DEV_MAX_KEYS_PER_ACCOUNT.to_string(),
            )
            .env("UPSTREAM_TIMEOUT_MS", "2500")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start scripts/stack.sh");
        PGID.store(child.id() as i32, Ordering::SeqCst);
        if attempt == 1 {
            // SAFETY: registering a plain extern "C" fn to run at process exit.
            unsafe {
                libc::atexit(stop_stack);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(300);
        let up = loop {
            if http_ok(port, "/healthz") && http_ok(mock_port, "/__mock/calls") {
                break true;
            }
            if matches!(child.try_wait(), Ok(Some(_))) {
                break false;
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(state_dir.join("stack.log")).unwrap_or_default();
                stop_stack();
                panic!("the stack did not come up in 300 s; its log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        if up {
            break (port, mock_port);
        }
        let log = std::fs::read_to_string(state_dir.join("stack.log")).unwrap_or_default();
        stop_stack();
        if attempt >= 3 {
            panic!("the stack exited at start {attempt} times; its last log:\n{log}");
        }
        eprintln!("the stack exited at start (attempt {attempt}); retrying on new ports");
        let _ = std::fs::remove_dir_all(&state_dir);
        std::fs::create_dir_all(&state_dir).expect("state dir");
    };
    Stack {
        base: format!("http://127.0.0.1:{port}"),
        mock: format!("http://127.0.0.1:{mock_port}"),
        state_dir,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            // Each #[tokio::test] has its own runtime: pooled connections would outlive theirs.
            .pool_max_idle_per_host(0)
            .build()
            .expect("client"),
    }
}

/// A string no other test uses: put it in prompts to count only your own mock calls.
pub fn nonce() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "n{}x{}x{}",
        t % 1_000_000_000_000,
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|_| panic!("not JSON ({}): {}", self.status, self.text))
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

pub async fn send(rb: reqwest::RequestBuilder) -> Reply {
    let resp = rb.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    Reply {
        status,
        headers,
        text,
    }
}

impl Stack {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> Reply {
        let mut rb = self.client.get(self.url(path));
        if let Some(k) = key {
            rb = rb.bearer_auth(k);
        }
        send(rb).await
    }

    /// Revokes `key` in D1 alone, as another isolate's revocation looks from here: this
    /// isolate's caches still take the key afterwards (an unknown route is a 404, not a 401),
    /// while what reads D1 refuses it. Call it after the key was used here at least once.
    pub async fn revoke_elsewhere(&self, key: &str) {
        let path = format!("/__dev/keys/{}/revoke-row-only", &key[..12]);
        let r = self.post(&path, None, &json!({})).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(
            self.get("/v1/no-such-route", Some(key)).await.status,
            404,
            "this isolate's caches still hold the key as active"
        );
    }

    pub async fn post(&self, path: &str, key: Option<&str>, body: &Value) -> Reply {
        let mut rb = self.client.post(self.url(path)).json(body);
        if let Some(k) = key {
            rb = rb.bearer_auth(k);
        }
        send(rb).await
    }

    pub async fn delete(&self, path: &str, key: Option<&str>) -> Reply {
        let mut rb = self.client.delete(self.url(path));
        if let Some(k) = key {
            rb = rb.bearer_auth(k);
        }
        send(rb).await
    }

    pub async fn admin(&self, method: reqwest::Method, path: &str, body: &Value) -> Reply {
        send(
            self.client
                .request(method, self.url(path))
                .bearer_auth(ADMIN_TOKEN)
                .json(body),
        )
        .await
    }

    /// A new account; returns its id.
    pub async fn account(&self, tier: &str, credits: u64) -> String {
        let r = self
            .admin(
                reqwest::Method::POST,
                "/admin/accounts",
                &json!({"tier": tier, "credits": credits}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.json()["account_id"]
            .as_str()
            .expect("account_id")
            .to_string()
    }

    /// A new key of the account; returns the plaintext token.
    pub async fn key(&self, account_id: &str, mode: &str) -> String {
        let r = self
            .admin(
                reqwest::Method::POST,
                &format!("/admin/accounts/{account_id}/keys"),
                &json!({"name": "test", "mode": mode}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.json()["key"].as_str().expect("key").to_string()
    }

    /// A fresh account (pro tier, [`LIVE_CREDITS`]) and one live key.
    pub async fn live_key(&self) -> (String, String) {
        let a = self.account("pro", LIVE_CREDITS).await;
        let k = self.key(&a, "live").await;
        (a, k)
    }

    /// The credits balance of `key`'s account.
    pub async fn balance(&self, key: &str) -> u64 {
        self.get("/v1/account", Some(key)).await.json()["credits_balance"]
            .as_u64()
            .unwrap()
    }

    /// `key`'s balance once it stops moving (settlements and fees are debited after the
    /// responses): two reads 250 ms apart agree, or 10 s have passed.
    pub async fn settled_balance(&self, key: &str) -> u64 {
        let mut last = self.balance(key).await;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let b = self.balance(key).await;
            if b == last {
                return b;
            }
            last = b;
        }
        last
    }

    /// The credits the usage rows of `key`'s account add up to (`GET /v1/usage`, its days).
    pub async fn usage_credits(&self, key: &str) -> u64 {
        let r = self.get("/v1/usage", Some(key)).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()["days"]
            .as_array()
            .expect("days")
            .iter()
            .map(|d| d["credits"].as_u64().expect("credits"))
            .sum()
    }

    /// Checks that what `key`'s account spent from `initial` credits is what its usage rows
    /// say it was charged (both are written after the responses: the rows get 5 s to land once
    /// the balance stops moving). Returns what it spent.
    pub async fn assert_rows_add_up(&self, key: &str, initial: u64) -> u64 {
        let spent = initial - self.settled_balance(key).await;
        let mut rows = self.usage_credits(key).await;
        for _ in 0..20 {
            if rows == spent {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            rows = self.usage_credits(key).await;
        }
        assert_eq!(
            rows, spent,
            "the usage rows' credits against the balance spent"
        );
        spent
    }

    /// The 402 of an account holding one credit: what `path` would reserve for `body` (its
    /// worst case).
    pub async fn reserved_for(&self, path: &str, body: &Value) -> u64 {
        let probe = self.account("enterprise", 1).await;
        let probe_key = self.key(&probe, "live").await;
        let r = self.post(path, Some(&probe_key), body).await;
        assert_eq!(r.status, 402, "{}", r.text);
        assert_eq!(r.json()["error"]["code"], "insufficient_credits");
        r.json()["error"]["needed"].as_u64().unwrap()
    }

    pub async fn ask(&self, key: &str, body: &Value) -> Reply {
        self.post("/v1/ask", Some(key), body).await
    }

    /// Calls the mock provider server received whose prompt contains `contains`.
    pub async fn mock_calls(&self, contains: &str) -> Value {
        let r = send(
            self.client
                .get(format!("{}/__mock/calls", self.mock))
                .query(&[("contains", contains)]),
        )
        .await;
        r.json()
    }

    /// Everything the local D1 database holds, as text (for "no prompt text anywhere" checks).
    pub fn d1_dump(&self) -> String {
        let mut out = String::new();
        let dir = self.state_dir.join("persist").join("v3").join("d1");
        for entry in walk(&dir) {
            if entry
                .extension()
                .is_some_and(|e| e == "sqlite" || e == "sqlite-wal")
            {
                if let Ok(bytes) = std::fs::read(&entry) {
                    out.push_str(&String::from_utf8_lossy(&bytes));
                }
            }
        }
        out
    }
}

impl Stack {
    /// A local secret of one of the stack's Workers (`gateway`, `broker-openai`, ...), as
    /// scripts/devconfig.py wrote it into that Worker's `.dev.vars`.
    pub fn dev_secret(&self, worker: &str, name: &str) -> String {
        let path = self.state_dir.join("config").join(worker).join(".dev.vars");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| serde_json::from_str::<String>(v).ok())
            .unwrap_or_else(|| panic!("{name} is not in {}", path.display()))
    }

    /// The local D1 database file (the one holding the gateway's tables).
    pub fn d1_file(&self) -> PathBuf {
        let dir = self
            .state_dir
            .join("persist/v3/d1/miniflare-D1DatabaseObject");
        std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.extension().is_some_and(|x| x == "sqlite") && !p.ends_with("metadata.sqlite")
            })
            .expect("the D1 sqlite file")
    }

    /// Runs a Python snippet against the local D1 file (python3's sqlite3 module: `c` is the
    /// connection, `sys.argv[2..]` the `args`); returns what it printed.
    pub fn sqlite(&self, script: &str, args: &[&str]) -> String {
        let out = Command::new("python3")
            .arg("-c")
            .arg(format!(
                "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\n{script}\nc.commit()"
            ))
            .arg(self.d1_file())
            .args(args)
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The stack's log so far (the Workers' console output among it).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state_dir.join("stack.log")).unwrap_or_default()
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
