//! The bad-input catalogue, over raw HTTP on every endpoint: oversized and chunked bodies,
//! deep nesting, `1e400`, duplicate keys, invalid UTF-8, NUL and control characters, long and
//! many headers, CR/LF where a header or path is built, wrong methods, unknown routes, garbage
//! tokens. Each answer is a 4xx JSON envelope (or, for bytes the HTTP layer cannot parse, the
//! runtime's own 4xx before the Worker runs), never a 5xx, within the client's timeout; and
//! what the account had stored before (balance, keys, provider keys, settings, an archived answer,
//! a cache entry) is unchanged after.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use integration_tests::{json, nonce, stack_alone, Stack, Value, ADMIN_TOKEN};

/// One raw exchange's answer.
#[derive(Debug)]
struct RawReply {
    status: u16,
    head: String,
    body: Vec<u8>,
    took: Duration,
}

impl RawReply {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
    /// Whether the Worker answered (every gateway response carries `X-Request-Id`).
    fn answered_by_gateway(&self) -> bool {
        self.header("x-request-id").is_some()
    }
}

/// Longest any answer may take: past it the request hung.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

fn port(s: &Stack) -> u16 {
    s.base.rsplit(':').next().unwrap().parse().unwrap()
}

fn decode_chunked(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(nl) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = std::str::from_utf8(&b[..nl])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 || b.len() < nl + 2 + size {
            return out;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + size]);
        b = &b[(nl + 4 + size).min(b.len())..];
    }
}

/// Sends `bytes` as they are and reads one response (by its length, its chunks, or to EOF).
async fn raw(port: u16, bytes: Vec<u8>) -> RawReply {
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        // The server may answer (e.g. 413) before reading the whole body and close: a failed
        // write is then no error of the gateway's.
        let _ = s.write_all(&bytes);
        let mut buf = Vec::new();
        let mut chunk = [0u8; 65536];
        loop {
            match s.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => {
                    assert!(
                        started.elapsed() < CLIENT_TIMEOUT,
                        "no answer within {CLIENT_TIMEOUT:?} (hang) to {:?}",
                        String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                    );
                    if buf.is_empty() {
                        panic!("connection failed with no answer: {e}");
                    }
                    break;
                }
            }
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                let body = &buf[end + 4..];
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok());
                let is_head = bytes.starts_with(b"HEAD ");
                if is_head
                    || len.is_some_and(|n| body.len() >= n)
                    || (head.contains("transfer-encoding: chunked") && body.ends_with(b"0\r\n\r\n"))
                {
                    break;
                }
            }
        }
        let took = started.elapsed();
        let end = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no HTTP answer: {:?}", String::from_utf8_lossy(&buf)));
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        let status = head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line: {head}"));
        let mut body = buf[end + 4..].to_vec();
        if head.to_lowercase().contains("transfer-encoding: chunked") {
            body = decode_chunked(&body);
        }
        RawReply {
            status,
            head,
            body,
            took,
        }
    })
    .await
    .expect("raw exchange")
}

/// A request with the given head lines (each without its CRLF) and body, `Content-Length` set.
fn request(method: &str, path: &str, port: u16, lines: &[String], body: &[u8]) -> Vec<u8> {
    let mut out =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n")
            .into_bytes();
    for l in lines {
        out.extend_from_slice(l.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// The same, with the body sent in chunks of 8 KiB.
fn chunked(method: &str, path: &str, port: u16, lines: &[String], body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n"
    )
    .into_bytes();
    for l in lines {
        out.extend_from_slice(l.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    for c in body.chunks(8192) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// A 4xx in the contract's envelope, from the gateway, in time.
fn assert_refused(what: &str, r: &RawReply) {
    assert!(
        (400..500).contains(&r.status),
        "{what}: {} {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    assert!(r.took < CLIENT_TIMEOUT, "{what}: took {:?}", r.took);
    assert!(
        r.answered_by_gateway(),
        "{what}: not answered by the gateway: {}",
        r.head
    );
    let ct = r.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("application/json"),
        "{what}: content-type {ct}"
    );
    let v: Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|_| panic!("{what}: not JSON: {}", String::from_utf8_lossy(&r.body)));
    assert!(
        v["error"]["code"].is_string() && v["error"]["message"].is_string(),
        "{what}: not the envelope: {v}"
    );
}

/// Refused before the Worker by the HTTP layer (bytes no HTTP parser accepts): a 4xx, in time.
fn assert_refused_by_runtime_or_gateway(what: &str, r: &RawReply) {
    if r.answered_by_gateway() {
        assert_refused(what, r);
    } else {
        assert!(
            (400..500).contains(&r.status),
            "{what}: {} {}",
            r.status,
            r.head
        );
        assert!(r.took < CLIENT_TIMEOUT, "{what}: took {:?}", r.took);
    }
}

/// After a chunked body refused at the cap (413 before the rest is read), wrangler dev's proxy
/// answers the next POST 503 "Your worker restarted mid-request" (no X-Request-Id: the Worker
/// never saw it); a GET sent instead, which the proxy retries, got no answer in 30 s. A known finding of the local stack
/// (`known_finding_a_post_after_a_refused_chunked_body_gets_a_503_under_wrangler_dev`). One
/// sacrificial POST takes that broken connection: the gateway's own refusal, or exactly that 503.
async fn absorb_after_chunked(p: u16) {
    let lines = vec!["Content-Type: application/json".to_string()];
    let r = raw(p, request("POST", "/v1/ask", p, &lines, b"{}")).await;
    if r.answered_by_gateway() {
        assert_refused("the call after a refused chunked body", &r);
    } else {
        assert_eq!(r.status, 503, "after a refused chunked body: {}", r.head);
        let body = String::from_utf8_lossy(&r.body);
        assert!(body.contains("restarted mid-request"), "{body}");
    }
}

/// What the account holds, as its owner reads it.
async fn snapshot(s: &Stack, key: &str, archived: &str, account: &str) -> Value {
    let mut out = serde_json::Map::new();
    for path in [
        "/v1/account".to_string(),
        "/v1/keys".into(),
        "/v1/provider-keys".into(),
        "/v1/provider-keys/access-log".into(),
        format!("/v1/ask/{archived}"),
    ] {
        let r = s.get(&path, Some(key)).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        let mut v = r.json();
        // Reading the account touches the key's `last_used_at` at most once a minute: not a
        // change of what is stored on the account's behalf.
        if let Some(keys) = v["keys"].as_array_mut() {
            for k in keys {
                if let Some(o) = k.as_object_mut() {
                    o.remove("last_used_at");
                }
            }
        }
        out.insert(path, v);
    }
    let rows = s.get(&format!("/__dev/rows/{account}"), None).await.json();
    out.insert("rows.api_keys".into(), rows["api_keys"].clone());
    out.insert("rows.provider_keys".into(), rows["provider_keys"].clone());
    out.insert("rows.accounts".into(), rows["accounts"].clone());
    out.insert(
        "rows.response_archive".into(),
        rows["response_archive"].clone(),
    );
    out.insert("rows.key_access_log".into(), rows["key_access_log"].clone());
    Value::Object(out)
}

/// A JSON endpoint: method, path, its credential lines, its valid members, its rules.
type Endpoint<'a> = (&'a str, String, Vec<String>, Vec<(&'a str, &'a str)>, Rules);

/// Which cases an endpoint is sent beyond the malformed ones.
#[derive(Clone, Copy, PartialEq)]
enum Rules {
    /// `/v1/ask`, the account, admin, dashboard and provider-key bodies: a repeated field and an
    /// unknown field are refused (docs/DECISIONS.md; the account and admin bodies since this
    /// catalogue found them reading a repeated field as its last value).
    Strict,
    /// The drop-ins: a repeated field is a 400; an unknown top-level field is allowed on a call
    /// paid with the account's own key (the test account has one), so it is not sent.
    StrictKnownFieldsOpen,
}

/// The bodies a JSON endpoint is sent, named; each must be refused. `fields` are the
/// endpoint's own members with a valid JSON value each; the first is the one made bad.
fn bad_bodies(fields: &[(&str, &str)], rules: Rules) -> Vec<(String, Vec<u8>, bool)> {
    let members = |first: Option<&str>| -> String {
        fields
            .iter()
            .enumerate()
            .map(|(i, (k, v))| format!("\"{k}\":{}", if i == 0 { first.unwrap_or(v) } else { v }))
            .collect::<Vec<_>>()
            .join(",")
    };
    let valid = members(None);
    let (k0, v0) = fields[0];
    let pad = "a".repeat(300 * 1024);
    let mut out = vec![
        ("not JSON".to_string(), b"{garbage".to_vec(), false),
        ("an array".into(), b"[]".to_vec(), false),
        ("a string".into(), b"\"x\"".to_vec(), false),
        (
            "trailing garbage".into(),
            format!("{{{valid}}} x").into_bytes(),
            false,
        ),
        (
            "oversized".into(),
            format!("{{{valid},\"pad\":\"{pad}\"}}").into_bytes(),
            false,
        ),
        (
            "oversized, chunked".into(),
            format!("{{{valid},\"pad\":\"{pad}\"}}").into_bytes(),
            true,
        ),
        (
            "deeply nested".into(),
            format!(
                "{{{valid},\"deep\":{}1{}}}",
                "[".repeat(50_000),
                "]".repeat(50_000)
            )
            .into_bytes(),
            false,
        ),
        (
            "1e400".into(),
            format!("{{{}}}", members(Some("1e400"))).into_bytes(),
            false,
        ),
        (
            "-1e400".into(),
            format!("{{{}}}", members(Some("-1e400"))).into_bytes(),
            false,
        ),
    ];
    // A field named twice, plainly and with its first letter escaped.
    out.push((
        "duplicate key".into(),
        format!("{{{valid},\"{k0}\":{v0}}}").into_bytes(),
        false,
    ));
    let escaped = format!("\\u{:04x}{}", k0.as_bytes()[0], &k0[1..]);
    out.push((
        "duplicate key, escaped".into(),
        format!("{{{valid},\"{escaped}\":{v0}}}").into_bytes(),
        false,
    ));
    if rules == Rules::Strict {
        out.push((
            "unknown field".into(),
            format!("{{{valid},\"bogus\":1}}").into_bytes(),
            false,
        ));
    }
    // Invalid UTF-8, a lone surrogate, raw NUL, control and CR/LF bytes inside each string field.
    for (i, (k, v)) in fields.iter().enumerate() {
        if !v.starts_with('"') {
            continue;
        }
        for (name, bad) in [
            ("invalid UTF-8", &b"\xff\xfe\xc0\x80"[..]),
            ("lone surrogate escape", &b"\\ud800"[..]),
            ("raw NUL", &b"a\x00b"[..]),
            ("raw control characters", &b"a\x01\x1fb"[..]),
            ("raw CR/LF", &b"a\r\nSet-Cookie: x=1"[..]),
        ] {
            let mut body = b"{".to_vec();
            for (j, (k2, v2)) in fields.iter().enumerate() {
                if j > 0 {
                    body.push(b',');
                }
                if j == i {
                    body.extend_from_slice(format!("\"{k2}\":\"").as_bytes());
                    body.extend_from_slice(bad);
                    body.extend_from_slice(&v2.as_bytes()[1..]);
                } else {
                    body.extend_from_slice(format!("\"{k2}\":{v2}").as_bytes());
                }
            }
            body.push(b'}');
            out.push((format!("{name} in `{k}`"), body, false));
        }
    }
    out
}

#[tokio::test]
async fn every_endpoint_refuses_bad_input_with_a_4xx_envelope_and_changes_nothing() {
    let s = &stack_alone();
    let p = port(s);
    let account = s.account("scale", 1_000_000).await;
    let key = s.key(&account, "live").await;
    let n = nonce();
    // Something stored: an answer (archived and cached), a provider key, a setting.
    let asked = json!({"prompt": format!("bad input baseline {n}"), "providers": ["openai"]});
    let first = s.ask(&key, &asked).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let archived = first.json()["id"].as_str().unwrap().to_string();
    let put = integration_tests::send(
        s.client
            .put(s.url("/v1/provider-keys/anthropic"))
            .bearer_auth(&key)
            .json(&json!({"key": format!("own-anthropic-key-{n}")})),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.text);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before = snapshot(s, &key, &archived, &account).await;

    let auth = format!("Authorization: Bearer {key}");
    let admin = format!("Authorization: Bearer {ADMIN_TOKEN}");
    let json_ct = "Content-Type: application/json".to_string();
    let origin = format!("Origin: {}", s.base);
    // Each JSON endpoint with its own valid members (the first is the one made bad).
    let endpoints: Vec<Endpoint> = vec![
        (
            "POST",
            "/v1/ask".into(),
            vec![auth.clone()],
            vec![
                ("prompt", "\"what is bad input\""),
                ("providers", "[\"openai\"]"),
                ("cache_scope", "\"shared\""),
            ],
            Rules::Strict,
        ),
        (
            "POST",
            "/v1/chat/completions".into(),
            vec![auth.clone()],
            vec![
                ("model", "\"gpt-4o-mini\""),
                ("messages", "[{\"role\":\"user\",\"content\":\"hi\"}]"),
            ],
            Rules::StrictKnownFieldsOpen,
        ),
        (
            "POST",
            "/v1/messages".into(),
            vec![auth.clone()],
            vec![
                ("model", "\"claude-3-5-haiku-latest\""),
                ("max_tokens", "16"),
                ("messages", "[{\"role\":\"user\",\"content\":\"hi\"}]"),
            ],
            Rules::StrictKnownFieldsOpen,
        ),
        (
            "POST",
            "/v1/keys".into(),
            vec![auth.clone()],
            vec![("name", "\"bad input\""), ("mode", "\"live\"")],
            Rules::Strict,
        ),
        (
            "PATCH",
            "/v1/account".into(),
            vec![auth.clone()],
            vec![("store_prompt_prefix", "true")],
            Rules::Strict,
        ),
        (
            "POST",
            "/admin/accounts".into(),
            vec![admin.clone()],
            vec![("tier", "\"free\""), ("credits", "10")],
            Rules::Strict,
        ),
        (
            "POST",
            format!("/admin/accounts/{account}/keys"),
            vec![admin.clone()],
            vec![("name", "\"bad input\""), ("mode", "\"live\"")],
            Rules::Strict,
        ),
        (
            "PATCH",
            format!("/admin/accounts/{account}"),
            vec![admin.clone()],
            vec![("tier", "\"free\"")],
            Rules::Strict,
        ),
        (
            "POST",
            format!("/admin/accounts/{account}/credits"),
            vec![admin.clone()],
            vec![("amount", "5")],
            Rules::Strict,
        ),
    ];
    let mut cases = 0;
    for (method, path, lines, fields, rules) in &endpoints {
        let mut lines = lines.clone();
        lines.push(json_ct.clone());
        for (name, body, is_chunked) in bad_bodies(fields, *rules) {
            let bytes = if is_chunked {
                chunked(method, path, p, &lines, &body)
            } else {
                request(method, path, p, &lines, &body)
            };
            let r = raw(p, bytes).await;
            assert_refused(&format!("{method} {path}: {name}"), &r);
            if is_chunked {
                absorb_after_chunked(p).await;
            }
            cases += 1;
        }
        // The right body with the wrong content type.
        let mut text = lines.clone();
        text.pop();
        text.push("Content-Type: text/plain".into());
        let valid = format!(
            "{{{}}}",
            fields
                .iter()
                .map(|(k, v)| format!("\"{k}\":{v}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let r = raw(p, request(method, path, p, &text, valid.as_bytes())).await;
        assert_refused(&format!("{method} {path}: text/plain"), &r);
        cases += 1;
    }
    // The dashboard's login, from addresses of its own (its throttle is per address).
    for (i, (name, body, is_chunked)) in bad_bodies(&[("key", "\"lvk_live_nope\"")], Rules::Strict)
        .into_iter()
        .enumerate()
    {
        let lines = vec![
            json_ct.clone(),
            origin.clone(),
            format!("CF-Connecting-IP: 192.0.2.{}", 10 + i),
        ];
        let path = "/dashboard/api/login";
        let bytes = if is_chunked {
            chunked("POST", path, p, &lines, &body)
        } else {
            request("POST", path, p, &lines, &body)
        };
        let r = raw(p, bytes).await;
        assert_refused(&format!("POST {path}: {name}"), &r);
        if is_chunked {
            absorb_after_chunked(p).await;
        }
        cases += 1;
    }
    // The provider-key body.
    for (name, body, is_chunked) in bad_bodies(&[("key", "\"abcdefghijkl\"")], Rules::Strict) {
        let lines = vec![auth.clone(), json_ct.clone()];
        let path = "/v1/provider-keys/openai";
        let bytes = if is_chunked {
            chunked("PUT", path, p, &lines, &body)
        } else {
            request("PUT", path, p, &lines, &body)
        };
        let r = raw(p, bytes).await;
        assert_refused(&format!("PUT {path}: {name}"), &r);
        if is_chunked {
            absorb_after_chunked(p).await;
        }
        cases += 1;
    }

    // Garbage credentials on every authenticated route.
    let routes: Vec<(&str, String)> = vec![
        ("POST", "/v1/ask".into()),
        ("GET", format!("/v1/ask/{archived}")),
        ("POST", "/v1/chat/completions".into()),
        ("POST", "/v1/messages".into()),
        ("GET", "/v1/usage".into()),
        ("GET", "/v1/account".into()),
        ("PATCH", "/v1/account".into()),
        ("DELETE", "/v1/account".into()),
        ("GET", "/v1/keys".into()),
        ("POST", "/v1/keys".into()),
        ("DELETE", format!("/v1/keys/{}", &key[..12])),
        ("GET", "/v1/provider-keys".into()),
        ("GET", "/v1/provider-keys/access-log".into()),
        ("PUT", "/v1/provider-keys/anthropic".into()),
        ("DELETE", "/v1/provider-keys/anthropic".into()),
        ("GET", "/dashboard/api/session".into()),
        ("POST", "/admin/accounts".into()),
        ("DELETE", "/admin/accounts".into()),
    ];
    let long_token = "A".repeat(9000);
    let tokens = [
        "Authorization: Bearer garbage".to_string(),
        "Authorization: Bearer lvk_live_".into(),
        format!("Authorization: Bearer lvk_live_{}", "A".repeat(43)),
        format!("Authorization: Bearer {}x", key),
        format!("Authorization: Bearer {}", &key[..key.len() - 1]),
        format!("Authorization: Basic {key}"),
        "Authorization: Bearer".into(),
        "Authorization: ".into(),
        format!("Authorization: Bearer {long_token}"),
        "x-api-key: lvk_test_%00%0d%0a".into(),
        "Cookie: gw_session=00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
            .into(),
    ];
    for (method, path) in &routes {
        for t in &tokens {
            let body: &[u8] = if matches!(*method, "POST" | "PUT" | "PATCH") {
                b"{}"
            } else {
                b""
            };
            let r = raw(
                p,
                request(method, path, p, &[t.clone(), json_ct.clone()], body),
            )
            .await;
            assert_refused(
                &format!("{method} {path} with {}", &t[..t.len().min(40)]),
                &r,
            );
            assert!(
                matches!(r.status, 401 | 403 | 404 | 405 | 429),
                "{method} {path} with {}: {}",
                &t[..t.len().min(40)],
                r.status
            );
            cases += 1;
        }
    }

    // Wrong methods and unknown routes.
    for (method, path) in [
        ("PUT", "/v1/ask"),
        ("DELETE", "/v1/ask"),
        ("GET", "/v1/chat/completions"),
        ("PUT", "/v1/messages"),
        ("PATCH", "/v1/usage"),
        ("POST", "/v1/account"),
        ("PUT", "/v1/keys"),
        ("POST", "/v1/provider-keys/openai"),
        ("PATCH", "/v1/provider-keys"),
        ("OPTIONS", "/v1/ask"),
        ("TRACE", "/v1/ask"),
        ("GET", "/v1/nope"),
        ("GET", "/v1/ask/a/b/c"),
        ("GET", "/v1/keys/%0d%0aSet-Cookie:%20x=1"),
        ("DELETE", "/v1/keys/%0d%0aSet-Cookie:%20x=1"),
        ("DELETE", "/v1/provider-keys/%00"),
        ("GET", "/v1/ask/req_%00%ff"),
        ("GET", "/nope"),
        ("POST", "/version"),
        ("DELETE", "/healthz"),
        ("PUT", "/.well-known/security.txt"),
        ("GET", "/admin/nope"),
        ("DELETE", "/admin/accounts"),
        ("GET", "/dashboard/api/nope"),
        ("POST", "/dashboard/api/session"),
    ] {
        let r = raw(
            p,
            request(method, path, p, &[auth.clone(), json_ct.clone()], b"{}"),
        )
        .await;
        assert_refused(&format!("{method} {path}"), &r);
        assert!(
            r.header("set-cookie").is_none(),
            "{method} {path} set a cookie"
        );
        cases += 1;
    }
    let long_path = format!("/v1/{}", "a".repeat(8000));
    let r = raw(
        p,
        request("GET", &long_path, p, std::slice::from_ref(&auth), b""),
    )
    .await;
    assert_refused("a 8,000-byte path", &r);

    // Long and many headers: harmless ones change nothing (the call is answered as without
    // them); with a bad body the answer is the same refusal.
    let many: Vec<String> = (0..500)
        .map(|i| format!("X-Filler-{i}: {}", "v".repeat(20)))
        .collect();
    let long = vec![format!("X-Long: {}", "a".repeat(30_000))];
    for (name, extra) in [("500 headers", many), ("a 30,000-byte header", long)] {
        let mut lines = vec![auth.clone()];
        lines.extend(extra.iter().cloned());
        let r = raw(p, request("GET", "/v1/account", p, &lines, b"")).await;
        assert!(
            r.answered_by_gateway() && r.status == 200,
            "{name}: {}",
            r.head
        );
        let mut lines = vec![auth.clone(), json_ct.clone()];
        lines.extend(extra);
        let r = raw(p, request("POST", "/v1/ask", p, &lines, b"{\"prompt\":1}")).await;
        assert_refused(&format!("{name} and a bad body"), &r);
        cases += 2;
    }
    // Header values the gateway reads, with characters no value may hold as text.
    let chat = br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    let anthropic = br#"{"model":"claude-3-5-haiku-latest","max_tokens":8,"messages":[]}"#;
    for (name, path, line, body) in [
        (
            "x-cache-scope with an encoded CR/LF",
            "/v1/chat/completions",
            "x-cache-scope: private%0d%0aX-Evil: 1",
            &chat[..],
        ),
        (
            "x-cache-scope with a control byte",
            "/v1/chat/completions",
            "x-cache-scope: \u{1}",
            &chat[..],
        ),
        (
            "anthropic-version with an encoded CR/LF",
            "/v1/messages",
            "anthropic-version: 2023-06-01%0d%0aX-Evil: 1",
            &anthropic[..],
        ),
        (
            "Cache-Control noise",
            "/v1/ask",
            "Cache-Control: ,,;;\u{7f} no-store=\"",
            &b"{\"prompt\":\"\",\"providers\":[\"openai\"]}"[..],
        ),
    ] {
        let r = raw(
            p,
            request(
                "POST",
                path,
                p,
                &[auth.clone(), json_ct.clone(), line.to_string()],
                body,
            ),
        )
        .await;
        assert_refused_by_runtime_or_gateway(name, &r);
        assert!(
            r.header("x-evil").is_none(),
            "{name}: a header was injected"
        );
        cases += 1;
    }
    // Bytes no HTTP parser accepts (a bare CR or LF, or NUL, inside a header value; a token
    // with control bytes): the runtime refuses them before the Worker runs.
    for (name, line) in [
        ("bare LF in a header value", b"X-A: a\nb".to_vec()),
        ("bare CR in a header value", b"X-A: a\rb".to_vec()),
        ("NUL in a header value", b"X-A: a\x00b".to_vec()),
        (
            "control bytes in the token",
            b"Authorization: Bearer lvk_live_\x00\x01AAAA".to_vec(),
        ),
    ] {
        let mut bytes = format!(
            "GET /v1/account HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nConnection: close\r\n{auth}\r\n"
        )
        .into_bytes();
        bytes.extend_from_slice(&line);
        bytes.extend_from_slice(b"\r\n\r\n");
        let r = raw(p, bytes).await;
        assert_refused_by_runtime_or_gateway(name, &r);
        cases += 1;
    }
    // Framing errors: a malformed chunk (a declared length the body never reaches is the
    // client's own wait, not the server's, and is left out).
    let mut bad_chunk = format!("POST /v1/ask HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nConnection: close\r\n{auth}\r\n{json_ct}\r\nTransfer-Encoding: chunked\r\n\r\n").into_bytes();
    bad_chunk.extend_from_slice(b"zz\r\n{}\r\n0\r\n\r\n");
    assert_refused_by_runtime_or_gateway("a malformed chunk", &raw(p, bad_chunk).await);
    // A malformed Content-Length never reaches the Worker: under wrangler dev, workerd's HTTP
    // parser throws on it and answers a bare 500 of its own (no X-Request-Id); deployed, the
    // edge's HTTP layer answers it before the Worker too. Whatever it answers, not the gateway.
    let bad_len = format!("POST /v1/ask HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nConnection: close\r\n{auth}\r\n{json_ct}\r\nContent-Length: abc\r\n\r\n{{}}").into_bytes();
    let r = raw(p, bad_len).await;
    assert!(
        !r.answered_by_gateway() || r.status < 500,
        "a malformed Content-Length: {}",
        r.head
    );
    absorb_after_chunked(p).await;

    assert!(cases > 300, "{cases} cases");
    // The stack still answers, and nothing the account held changed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = snapshot(s, &key, &archived, &account).await;
    assert_eq!(before, after, "bad input changed what was stored");
    let again = s.ask(&key, &asked).await;
    assert_eq!(again.json()["cache"]["status"], "hit", "{}", again.text);
    // A hit serves the stored results; the miss answered them with its latency besides.
    let mut fresh = first.json()["results"].clone();
    for r in fresh.as_array_mut().unwrap() {
        r.as_object_mut().unwrap().remove("latency_ms");
    }
    assert_eq!(again.json()["results"], fresh, "the cached answer changed");
}

/// Found by this catalogue, fixed (`put` now takes only `key`, from a strict parse): `PUT /v1/provider-keys/:provider`
/// accepts a body naming `key` twice (the last one is sealed) or carrying an unknown field,
/// where every other body of the API is a 400 naming the field (docs/DECISIONS.md).
#[tokio::test]
async fn known_finding_a_provider_key_body_may_name_key_twice_or_an_unknown_field() {
    let s = &stack_alone();
    let p = port(s);
    let (_, key) = s.live_key().await;
    for body in [
        &br#"{"key":"abcdefghijkl","key":"zzzzzzzzzzzz"}"#[..],
        &br#"{"key":"abcdefghijkl","bogus":1}"#[..],
    ] {
        let lines = vec![
            format!("Authorization: Bearer {key}"),
            "Content-Type: application/json".into(),
        ];
        let r = raw(
            p,
            request("PUT", "/v1/provider-keys/openai", p, &lines, body),
        )
        .await;
        assert_refused("PUT /v1/provider-keys/openai", &r);
    }
}

/// Found by this catalogue, fixed (`read_json_object` now parses strictly): before, the account, admin and dashboard bodies read a field
/// named twice as its last value, where `/v1/ask` and the drop-ins refuse it. Only the caller's
/// own request is ambiguous there (no provider reads these bodies), so it is not a cache or
/// billing hole, but it is not the "a field named twice is a 400" the API promises elsewhere.
#[tokio::test]
async fn known_finding_account_and_admin_bodies_read_a_repeated_field_as_its_last_value() {
    let s = &stack_alone();
    let p = port(s);
    let (account, key) = s.live_key().await;
    for (method, path, auth, body) in [
        (
            "PATCH",
            "/v1/account".to_string(),
            key.clone(),
            &br#"{"store_prompt_prefix":false,"store_prompt_prefix":true}"#[..],
        ),
        (
            "POST",
            "/v1/keys".into(),
            key.clone(),
            &br#"{"name":"a","name":"b"}"#[..],
        ),
        (
            "POST",
            format!("/admin/accounts/{account}/credits"),
            ADMIN_TOKEN.to_string(),
            &br#"{"amount":1,"amount":2}"#[..],
        ),
    ] {
        let lines = vec![
            format!("Authorization: Bearer {auth}"),
            "Content-Type: application/json".into(),
        ];
        let r = raw(p, request(method, &path, p, &lines, body)).await;
        assert_refused(&format!("{method} {path}"), &r);
    }
}

/// Known finding of the local stack (wrangler dev; not seen deployed): a chunked body refused at
/// the 256 KiB cap is answered 413 before the rest is read, and the next request, on any
/// connection, is answered 503 "Your worker restarted mid-request" by wrangler's proxy (1 ms, no
/// X-Request-Id; the Worker logs nothing). GET and HEAD are retried by the proxy and unaffected.
/// A fix on the gateway's side would drain (or close) the rest of a refused body.
#[tokio::test]
#[ignore = "known finding: under wrangler dev a POST after a refused chunked body gets a 503"]
async fn known_finding_a_post_after_a_refused_chunked_body_gets_a_503_under_wrangler_dev() {
    let s = &stack_alone();
    let p = port(s);
    let (_, key) = s.live_key().await;
    let lines = vec![
        format!("Authorization: Bearer {key}"),
        "Content-Type: application/json".to_string(),
    ];
    let big = format!(
        "{{\"prompt\":\"{}\",\"providers\":[\"openai\"]}}",
        "a".repeat(300 * 1024)
    );
    let r = raw(p, chunked("POST", "/v1/ask", p, &lines, big.as_bytes())).await;
    assert_refused("an oversized chunked body", &r);
    let r = raw(p, request("POST", "/v1/ask", p, &lines, b"{\"prompt\":1}")).await;
    assert_refused("the next call", &r);
}
