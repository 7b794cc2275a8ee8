//! Promises of SECURITY.md that no other test proved: each test here is named in its row.
//! Where a promise is kept by configuration, the test reads the configuration.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use integration_tests::{json, nonce, root, send, stack, Stack, Value};

fn calls_of(calls: &Value, provider: &str) -> u64 {
    calls[provider].as_u64().unwrap_or(0)
}

/// Waits until the entry written off the response path has reached L2.
async fn wait_stored(s: &Stack, key: &str) {
    for _ in 0..60 {
        let r = s.get(&format!("/__dev/l2/ask/v1/{key}"), None).await;
        if r.json()["value"].is_string() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("entry {key} never reached L2");
}

/// Row 1: a `/v1/ask` prompt goes to the selected providers and no other; a drop-in call goes to
/// its dialect's provider only.
#[tokio::test]
async fn a_prompt_reaches_only_the_providers_it_selected() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let r = s
        .ask(
            &key,
            &json!({"prompt": format!("only two of four {n}"), "providers": ["gemini", "anthropic"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let calls = s.mock_calls(&n).await;
    assert_eq!(calls["total"], 2, "{calls}");
    assert_eq!(
        (calls_of(&calls, "anthropic"), calls_of(&calls, "gemini")),
        (1, 1),
        "{calls}"
    );
    assert_eq!(
        (calls_of(&calls, "openai"), calls_of(&calls, "perplexity")),
        (0, 0),
        "{calls}"
    );

    let m = nonce();
    let r = send(
        s.client
            .post(s.url("/v1/messages"))
            .header("x-api-key", &key)
            .json(
                &json!({"model": "claude-3-5-haiku-latest", "max_tokens": 16,
                "messages": [{"role": "user", "content": format!("drop-in to one {m}")}]}),
            ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let calls = s.mock_calls(&m).await;
    assert_eq!(calls["total"], 1, "{calls}");
    assert_eq!(calls_of(&calls, "anthropic"), 1, "{calls}");
}

/// Row 3: L1 is written with `max-age=86400`, and the L2 entry (KV) with an expiry 24 h after it
/// was stored, read from the local KV store itself.
#[tokio::test]
async fn l2_entries_are_written_to_expire_in_24_hours() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let n = nonce();
    let r = s
        .ask(
            &key,
            &json!({"prompt": format!("expire in a day {n}"), "providers": ["openai"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let cache_key = r.header("x-cache-key").unwrap();
    wait_stored(s, &cache_key).await;
    let l1 = s
        .get(&format!("/__dev/l1/ask/v1/{cache_key}"), None)
        .await
        .json();
    assert_eq!(l1["cache_control"], "max-age=86400", "{l1}");
    // Miniflare keeps KV entries in SQLite: key, blob, expiration (epoch ms), metadata.
    let kv_dir = s.state_dir.join("persist/v3/kv");
    let script = r#"
import glob, json, sqlite3, sys
for f in glob.glob(sys.argv[1] + "/*/*.sqlite"):
    c = sqlite3.connect("file:" + f + "?mode=ro", uri=True)
    try:
        row = c.execute("SELECT expiration, metadata FROM _mf_entries WHERE key = ?", (sys.argv[2],)).fetchone()
    except sqlite3.Error:
        continue
    if row:
        print(json.dumps({"expiration": row[0], "metadata": json.loads(row[1] or "null")}))
        sys.exit(0)
sys.exit(3)
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&kv_dir)
        .arg(format!("ask:{cache_key}"))
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "no KV row for ask:{cache_key}: {out:?}"
    );
    let row: Value = serde_json::from_slice(&out.stdout).unwrap();
    let expiration = row["expiration"].as_u64().expect("an expiration");
    let stored_at = row["metadata"]["stored_at"].as_u64().expect("stored_at");
    let ttl_ms = expiration.saturating_sub(stored_at);
    assert!(
        (86_399_000..=86_401_000).contains(&ttl_ms),
        "the L2 entry lives {ttl_ms} ms: {row}"
    );
}

/// Row 6: a hit costs the serving fee, less than its miss, and calls no provider; the balance
/// loses exactly what the two responses said.
#[tokio::test]
async fn a_hit_costs_less_than_its_miss_and_calls_no_provider() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let before = s.get("/v1/account", Some(&key)).await.json()["credits_balance"]
        .as_u64()
        .unwrap();
    let n = nonce();
    let body =
        json!({"prompt": format!("cheaper twice {n}"), "providers": ["openai", "anthropic"]});
    let miss = s.ask(&key, &body).await;
    assert_eq!(miss.json()["cache"]["status"], "miss", "{}", miss.text);
    wait_stored(s, &miss.header("x-cache-key").unwrap()).await;
    let hit = s.ask(&key, &body).await;
    assert_eq!(hit.json()["cache"]["status"], "hit", "{}", hit.text);
    let (m, h) = (
        miss.json()["usage"]["credits"].as_u64().unwrap(),
        hit.json()["usage"]["credits"].as_u64().unwrap(),
    );
    assert!(h < m, "hit {h} vs miss {m}");
    assert_eq!(h, 1, "the serving fee");
    assert_eq!(
        s.mock_calls(&n).await["total"],
        2,
        "the hit called no provider"
    );
    let mut after = 0;
    for _ in 0..40 {
        after = s.get("/v1/account", Some(&key)).await.json()["credits_balance"]
            .as_u64()
            .unwrap();
        if before - after == m + h {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(before - after, m + h, "balance {before} -> {after}");
}

/// Row 7 (configuration): the archive cleanup is the daily cron at 04:00 UTC, and the scheduled
/// handler runs it.
#[tokio::test]
async fn the_archive_cleanup_runs_daily_at_04_00_utc() {
    let toml = std::fs::read_to_string(root().join("wrangler.toml")).unwrap();
    let triggers = toml
        .split("[triggers]")
        .nth(1)
        .expect("a [triggers] table in wrangler.toml");
    let crons = triggers
        .lines()
        .find(|l| l.trim_start().starts_with("crons"))
        .expect("crons");
    assert_eq!(crons.trim(), r#"crons = ["0 4 * * *"]"#);
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).unwrap();
    let scheduled = lib
        .split("#[event(scheduled)]")
        .nth(1)
        .expect("a scheduled handler");
    assert!(scheduled[..scheduled.find("\n}\n").unwrap()].contains("retention::purge_archive"));
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
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
    out
}

/// Row 8: a minted key's plaintext is returned once; afterwards only its prefix and hash are
/// anywhere: not in a listing, not in D1, KV or any other local storage, not in the logs.
#[tokio::test]
async fn a_minted_key_is_shown_once_and_stored_and_logged_only_as_prefix_and_hash() {
    let s = &stack();
    let (_, key) = s.live_key().await;
    let r = s
        .post("/v1/keys", Some(&key), &json!({"name": "shown once"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let minted = r.json()["key"].as_str().unwrap().to_string();
    let prefix = r.json()["prefix"].as_str().unwrap().to_string();
    assert_eq!(prefix, minted[..12]);
    // Use it (auth memo, KV auth cache, last use), then read the listings.
    assert_eq!(s.get("/v1/account", Some(&minted)).await.status, 200);
    let n = nonce();
    let ask = s
        .ask(
            &minted,
            &json!({"prompt": format!("shown once {n}"), "providers": ["openai"]}),
        )
        .await;
    assert_eq!(ask.status, 200, "{}", ask.text);
    let list = s.get("/v1/keys", Some(&key)).await;
    assert!(
        list.text.contains(&prefix) && !list.text.contains(&minted[12..]),
        "{}",
        list.text
    );
    let usage = s.get("/v1/usage", Some(&minted)).await;
    assert!(!usage.text.contains(&minted[12..]));
    // The log has caught up with the calls above once it has the last one's line.
    let last = usage
        .header("x-request-id")
        .expect("a request id")
        .to_string();
    let mut waited = 0;
    while !s.log().contains(&last) {
        waited += 1;
        assert!(waited < 50, "no log line for {last}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hash = gateway_core::keys::hash_token(&minted);
    assert!(s.d1_dump().contains(&hash), "the hash is stored");
    let secret = &minted.as_bytes()[12..];
    // The scan reads the stores' files: the hash, stored in D1, is found by it.
    let mut hash_found = false;
    for f in files_under(&s.state_dir.join("persist")) {
        // A file the stores removed since the listing (a journal) holds nothing any more.
        let bytes = match std::fs::read(&f) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            read => read.expect("a storage file the scan can read"),
        };
        hash_found |= bytes.windows(hash.len()).any(|w| w == hash.as_bytes());
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret),
            "the plaintext is in {}",
            f.display()
        );
    }
    assert!(hash_found, "the scan found none of the stored files");
    let log = std::fs::read(s.state_dir.join("stack.log")).unwrap();
    assert!(
        !log.windows(secret.len()).any(|w| w == secret),
        "the plaintext is in the log"
    );
}

/// Row 12 (configuration): the gateway holds no provider key. Its `wrangler.toml`, the local
/// config and secrets the stack generated for it, and its source name none; the brokers' do.
#[tokio::test]
async fn the_gateway_holds_no_provider_key() {
    let s = &stack();
    let toml = std::fs::read_to_string(root().join("wrangler.toml")).unwrap();
    assert!(
        !toml.contains("API_KEY"),
        "wrangler.toml names a provider key"
    );
    for p in ["openai", "anthropic", "gemini", "perplexity"] {
        let broker =
            std::fs::read_to_string(root().join(format!("broker/wrangler.{p}.toml"))).unwrap();
        assert!(
            broker.contains("PROVIDER_API_KEY"),
            "broker {p} keeps its own key"
        );
    }
    // The local stack: every broker's key value, and none of them in the gateway's config.
    let config = s.state_dir.join("config");
    let mut provider_keys = Vec::new();
    for p in ["openai", "anthropic", "gemini", "perplexity"] {
        let vars = std::fs::read_to_string(config.join(format!("broker-{p}/.dev.vars"))).unwrap();
        let line = vars
            .lines()
            .find(|l| l.starts_with("PROVIDER_API_KEY="))
            .unwrap_or_else(|| panic!("broker-{p} has its key"));
        let value = line["PROVIDER_API_KEY=".len()..]
            .trim_matches('"')
            .to_string();
        assert!(value.len() >= 8);
        provider_keys.push(value);
    }
    let mut gateway_files = files_under(&config.join("gateway"));
    assert!(!gateway_files.is_empty());
    // The source of every crate compiled into the gateway.
    let mut sources = 0;
    for dir in ["src", "core/src", "worker_shared/src"] {
        let rs: Vec<_> = files_under(&root().join(dir))
            .into_iter()
            .filter(|f| f.extension().is_some_and(|e| e == "rs"))
            .collect();
        sources += rs.len();
        gateway_files.extend(rs);
    }
    assert!(sources > 20, "the scan found {sources} source files");
    for f in gateway_files {
        let text = String::from_utf8_lossy(&std::fs::read(&f).expect("a file the scan can read"))
            .into_owned();
        // Any provider key's name (a Gemini error's reason `API_KEY_INVALID` is not one).
        for name in [
            "PROVIDER_API_KEY",
            "OPENAI_API_KEY",
            "ANTHROPIC_API_KEY",
            "GEMINI_API_KEY",
            "PERPLEXITY_API_KEY",
        ] {
            assert!(!text.contains(name), "{} names {name}", f.display());
        }
        for k in &provider_keys {
            assert!(
                !text.contains(k.as_str()),
                "{} holds a provider key",
                f.display()
            );
        }
    }
}

/// Row 16: the owner's access log shows the last 100 decryptions, newest first.
#[tokio::test]
async fn the_access_log_shows_the_last_100_decryptions() {
    let s = &stack();
    let account = s.account("scale", 10_000_000).await;
    let key = s.key(&account, "live").await;
    let n = nonce();
    let put = send(
        s.client
            .put(s.url("/v1/provider-keys/openai"))
            .bearer_auth(&key)
            .json(&json!({"key": format!("own-openai-key-{n}")})),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.text);
    let mut ids = Vec::new();
    for i in 0..101 {
        let r = s
            .ask(
                &key,
                &json!({"prompt": format!("decrypt {i} {n}"), "providers": ["openai"]}),
            )
            .await;
        assert_eq!(r.status, 200, "call {i}: {}", r.text);
        ids.push(r.header("x-request-id").unwrap());
    }
    let log = s.get("/v1/provider-keys/access-log", Some(&key)).await;
    assert_eq!(log.status, 200, "{}", log.text);
    let entries = log.json()["entries"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 100);
    let shown: Vec<&str> = entries
        .iter()
        .map(|e| e["request_id"].as_str().unwrap())
        .collect();
    let newest: Vec<&str> = ids.iter().rev().take(100).map(String::as_str).collect();
    assert_eq!(shown, newest, "the last 100, newest first");
    assert!(!shown.contains(&ids[0].as_str()), "the oldest is not shown");
}

/// SECURITY.md's disclosure policy names the contact `/.well-known/security.txt` serves.
#[tokio::test]
async fn security_md_names_the_contact_that_security_txt_serves() {
    let s = &stack();
    let served = s.get("/.well-known/security.txt", None).await;
    assert_eq!(served.status, 200, "{}", served.text);
    let contact = served
        .text
        .lines()
        .find_map(|l| l.strip_prefix("Contact: mailto:"))
        .expect("a mailto contact")
        .trim()
        .to_string();
    let md = std::fs::read_to_string(root().join("SECURITY.md")).unwrap();
    assert!(
        md.contains(&format!("**{contact}**")),
        "SECURITY.md does not name {contact}"
    );
}

/// Every test SECURITY.md names exists: `it` names as `module::name` in
/// tests/tests/integration/<module>.rs, `core` names as a test function under core/.
/// The attribute lines right above `fn name(` in `source` when they make it a test (`#[test]`
/// or `#[tokio::test]`), else `None` (no such function, or a helper, or commented out).
fn test_attributes(source: &str, name: &str) -> Option<String> {
    let needle = format!("fn {name}(");
    source.match_indices(&needle).find_map(|(at, _)| {
        let line_start = source[..at].rfind('\n').map_or(0, |i| i + 1);
        let head = source[line_start..at].trim();
        if !(head.is_empty() || head == "async" || head == "pub" || head == "pub async") {
            return None;
        }
        let attributes: Vec<&str> = source[..line_start]
            .lines()
            .rev()
            .map(str::trim)
            .take_while(|l| l.starts_with("#[") || l.starts_with("///"))
            .filter(|l| l.starts_with("#["))
            .collect();
        attributes
            .iter()
            .any(|a| *a == "#[test]" || *a == "#[tokio::test]")
            .then(|| attributes.join("\n"))
    })
}

#[tokio::test]
async fn every_test_security_md_names_exists() {
    let md = std::fs::read_to_string(root().join("SECURITY.md")).unwrap();
    let core_sources: String = files_under(&root().join("core"))
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "rs"))
        .map(|f| std::fs::read_to_string(f).unwrap_or_default())
        .collect();
    let mut named = 0;
    for (package, rest) in md
        .split("it `")
        .skip(1)
        .map(|r| ("it", r))
        .chain(md.split("core `").skip(1).map(|r| ("core", r)))
    {
        let Some(path) = rest.split('`').next() else {
            continue;
        };
        let name = path.rsplit("::").next().unwrap();
        if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            continue;
        }
        named += 1;
        let found = if package == "it" {
            let module = path.split("::").next().unwrap();
            let source = std::fs::read_to_string(
                root().join(format!("tests/tests/integration/{module}.rs")),
            )
            .unwrap_or_default();
            test_attributes(&source, name)
        } else {
            test_attributes(&core_sources, name)
        };
        let Some(attributes) = found else {
            panic!("SECURITY.md names `{path}` ({package}), which is not a test");
        };
        // An ignored test proves nothing: only a known finding, which SECURITY.md lists as
        // open, may be.
        assert!(
            !attributes.contains("#[ignore") || name.starts_with("known_finding_"),
            "SECURITY.md names `{path}`, which is ignored"
        );
    }
    assert!(named > 60, "only {named} tests named");
}

/// The local stacks never send a call to a real provider unless asked: a provider key left in
/// the environment (a deploy's `OPENAI_API_KEY`, say) is used by the README's run command only
/// (`DEV_REAL_PROVIDER_KEYS=1`, which `scripts/dev.sh` sets); the test, benchmark and soak stacks
/// keep the mock and its fake keys. The brokers' `.dev.vars` are readable by their owner only.
#[test]
fn a_provider_key_in_the_environment_reaches_only_the_run_commands_stack() {
    use std::os::unix::fs::PermissionsExt;
    let real = "sk-proj-a-real-looking-key-0123456789abcdefghij";
    let broker_vars = |opt_in: bool| {
        let dir = std::env::temp_dir().join(format!("devconfig-{}-{opt_in}", nonce()));
        let mut cmd = Command::new("python3");
        cmd.arg(root().join("scripts/devconfig.py"))
            .arg(&dir)
            .arg("http://127.0.0.1:9")
            .env("OPENAI_API_KEY", real)
            .env_remove("DEV_REAL_PROVIDER_KEYS");
        if opt_in {
            cmd.env("DEV_REAL_PROVIDER_KEYS", "1");
        }
        let out = cmd.output().expect("python3 runs devconfig.py");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let vars_path = dir.join("broker-openai/.dev.vars");
        let vars = std::fs::read_to_string(&vars_path).unwrap();
        let mode = std::fs::metadata(&vars_path).unwrap().permissions().mode() & 0o777;
        let config = std::fs::read_to_string(dir.join("broker-openai/wrangler.json")).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        (vars, mode, config)
    };
    let (vars, mode, config) = broker_vars(false);
    assert!(!vars.contains(real), "the test stack took the real key");
    assert!(vars.contains("sk-mock-openai-local"), "{vars}");
    assert!(
        config.contains("http://127.0.0.1:9/openai/v1"),
        "not pointed at the mock"
    );
    assert_eq!(mode, 0o600, ".dev.vars mode {mode:o}");
    let (vars, mode, config) = broker_vars(true);
    assert!(vars.contains(real), "the run command's opt-in was ignored");
    assert!(
        !config.contains("127.0.0.1:9"),
        "the real key sent to the mock"
    );
    assert_eq!(mode, 0o600, ".dev.vars mode {mode:o}");
}

/// A deploy never makes the local stacks' admin token (or any short one) the production one: an
/// `ADMIN_TOKEN` left exported from `scripts/dev.sh` stops the deploy before it builds or
/// touches the network.
#[test]
fn a_deploy_refuses_a_weak_admin_token() {
    for (token, why) in [
        ("dev-admin-token", "the local stacks' default"),
        ("short-but-not-the-default", "fewer than 32"),
    ] {
        let out = Command::new("python3")
            .arg(root().join("scripts/deploy.py"))
            .env("ADMIN_TOKEN", token)
            .env_remove("CLOUDFLARE_API_TOKEN")
            .env_remove("CLOUDFLARE_ACCOUNT_ID")
            .output()
            .expect("python3 runs deploy.py");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{token}: {text}");
        assert!(text.contains(why), "{token}: {text}");
        assert!(
            !text.contains("build:"),
            "{token}: it went on to build: {text}"
        );
    }
}
