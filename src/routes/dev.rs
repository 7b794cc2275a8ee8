//! Dev-only routes for the local test suite. Compiled only into a `dev-hooks` build (scripts/
//! build.sh --dev-hooks, which the test, dev and bench scripts use; a deploy builds without),
//! and even there refused (404) unless `DEV_MODE=1`, which only the generated local configs set
//! (scripts/devconfig.py); wrangler.toml never does.

use gateway_core::cache::key::Namespace;
use gateway_core::credits::ledger_ops::LedgerOp;
use gateway_core::error::ApiError;
use gateway_core::limits::tier::{Limits, MAX_BURST, MAX_PER_SECOND};
use gateway_core::providers::Provider;
use serde_json::json;
use worker::wasm_bindgen::JsValue;
use worker::{Method, Request, Response};

use crate::cache;
use crate::http::context::RequestContext;
use crate::http::response::json;
use crate::runtime::dependency;
use gateway_core::error::ApiResult;

/// A whole-number field of a small JSON body, 0 when absent (the dev routes' `days`,
/// `seconds`).
async fn u64_field(req: &mut Request, name: &str) -> ApiResult<u64> {
    let body = crate::http::request::read_json_object(req, 1024).await?;
    Ok(body
        .get(name)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0))
}

/// The namespace named by a dev route's path (`ask/v1`, …), or a 404.
fn namespace(ns: &str, version: &str) -> ApiResult<Namespace> {
    Namespace::parse(&format!("{ns}/{version}")).ok_or_else(ApiError::not_found)
}

pub async fn route(cx: &RequestContext, mut req: Request, segs: &[&str]) -> ApiResult<Response> {
    if !cx.dev_mode() {
        return Err(ApiError::not_found());
    }
    match (req.method(), segs) {
        // Drop an L1 entry, so a test can reach L2.
        (Method::Delete, ["l1", ns, version, key]) => {
            let dropped = cache::drop_l1(namespace(ns, version)?, key).await;
            json(200, &json!({"dropped": dropped}))
        }
        // Read the raw L2 value and its metadata, so a test can check what an entry holds.
        (Method::Get, ["l2", ns, version, key]) => {
            let name = namespace(ns, version)?.l2_name(key);
            let (value, meta) = cx
                .kv()?
                .get(&name)
                .text_with_metadata::<cache::L2Meta>()
                .await
                .map_err(dependency("KV"))?;
            json(
                200,
                &json!({"value": value, "stored_at": meta.map(|m| m.stored_at)}),
            )
        }
        // Make an L2 entry older by `seconds` (its stored date moves back; its KV expiry stays).
        (Method::Post, ["l2", ns, version, key, "age"]) => {
            let seconds = u64_field(&mut req, "seconds").await?;
            let name = namespace(ns, version)?.l2_name(key);
            let kv = cx.kv()?;
            let (value, meta) = kv
                .get(&name)
                .text_with_metadata::<cache::L2Meta>()
                .await
                .map_err(dependency("KV"))?;
            let (Some(value), Some(meta)) = (value, meta) else {
                return Err(ApiError::not_found());
            };
            let older = cache::L2Meta {
                stored_at: meta.stored_at.saturating_sub(seconds.saturating_mul(1000)),
            };
            cache::put_l2(&kv, &name, value, older, cache::TTL_S).await;
            json(200, &json!({"stored_at": older.stored_at}))
        }
        // The `Cache-Control` of an L1 entry (its lifetime), if there is one.
        (Method::Get, ["l1", ns, version, key]) => {
            let cc = cache::l1_cache_control(namespace(ns, version)?, key).await;
            json(200, &json!({"cache_control": cc}))
        }
        // Mint a live key whose secret starts with the given 3 bytes (hex), hence whose prefix
        // is known in advance: a test can make a new key take a deleted account's prefix.
        (Method::Post, ["accounts", account, "keys", "seeded", seed]) => {
            let seed: [u8; 3] = (0..3)
                .map(|i| {
                    seed.get(2 * i..2 * i + 2)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                })
                .collect::<Option<Vec<u8>>>()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| ApiError::invalid_param("seed", "3 bytes in hex"))?;
            let draw = || {
                let mut secret = crate::runtime::random_32()?;
                secret[..3].copy_from_slice(&seed);
                Ok(secret)
            };
            let minted = crate::routes::account::mint_key_from(
                cx,
                account,
                None,
                gateway_core::keys::KeyMode::Live,
                None,
                draw,
            )
            .await?;
            json(201, &json!({"key": minted.token, "prefix": minted.prefix}))
        }
        // Revoke a key in D1 only, as another colo's revocation looks to this isolate before
        // its caches catch up (memo 5 s, KV 60 s).
        (Method::Post, ["keys", prefix, "revoke-row-only"]) => {
            crate::db::d1::run(
                &cx.db()?,
                "UPDATE api_keys SET status = 'revoked' WHERE prefix = ?1",
                &[JsValue::from_str(prefix)],
            )
            .await?;
            json(200, &json!({"revoked_in_d1": prefix}))
        }
        // Move a revoked key's revocation back by N days (the key purge's clock).
        (Method::Post, ["keys", prefix, "age"]) => {
            let days = u64_field(&mut req, "days").await?;
            crate::db::d1::run(
                &cx.db()?,
                "UPDATE api_keys SET revoked_at = revoked_at - ?2 WHERE prefix = ?1",
                &[
                    JsValue::from_str(prefix),
                    JsValue::from_f64(days.saturating_mul(86_400_000) as f64),
                ],
            )
            .await?;
            json(200, &json!({"aged": prefix}))
        }
        // Make a key's bucket fail, so a test can see the gateway fail closed.
        (Method::Post, ["bucket", prefix, "break"]) => {
            crate::limits::bucket::break_for_tests(&cx.env, prefix).await?;
            json(200, &json!({"broken": true}))
        }
        // Mark a key revoked in its bucket only (as if the auth cache were stale elsewhere).
        (Method::Post, ["bucket", prefix, "revoke"]) => {
            crate::limits::bucket::revoke(&cx.env, prefix).await?;
            json(200, &json!({"revoked": true}))
        }
        // An account's ledger read without carrying the isolate's queued operations along, and
        // a hook that makes its next N batches fail: together they show queued settlements
        // retried rather than lost.
        (Method::Get, ["ledger", account]) => {
            let reply =
                crate::limits::ledger::send_alone(&cx.env, account, &LedgerOp::Balance).await?;
            json(200, &crate::limits::ledger::applied(reply)?)
        }
        // A bucket's or a ledger's next operation reads its state from storage, as a new
        // instance would (src/objects/stored.rs): as stored (`reread`), or after it is stored
        // again in the form written before 2026-12-07 (`reread-old-form`).
        (
            Method::Post,
            [object @ ("bucket" | "ledger"), name, how @ ("reread" | "reread-old-form")],
        ) => {
            let old_form = *how == "reread-old-form";
            if *object == "bucket" {
                crate::limits::bucket::reread(&cx.env, name, old_form).await?;
            } else {
                ledger_hook(cx, name, LedgerOp::Reread { old_form }).await?;
            }
            json(200, &json!({"reread": object, "old_form": old_form}))
        }
        // The account's ledger's clock runs `ms` ahead of the runtime's (reservations age at
        // once; `0` puts it back).
        (Method::Post, ["ledger", account, "clock-ahead", ms]) => {
            let ms = ms.parse().map_err(|_| ApiError::not_found())?;
            ledger_hook(cx, account, LedgerOp::ShiftClock { ms }).await?;
            json(200, &json!({"clock_ahead_ms": ms}))
        }
        (Method::Post, ["ledger", account, "fail-batches", count]) => {
            let count = count.parse().map_err(|_| ApiError::not_found())?;
            ledger_hook(cx, account, LedgerOp::FailBatches { count }).await?;
            json(200, &json!({"failing_batches": count}))
        }
        // Load benchmarks (scripts/bench.sh): one real rate-limit decision through the key's
        // TokenBucket with limits that never deny, and a bare round trip to a bucket instance.
        (Method::Post, ["bench", "bucket", prefix]) => {
            let limits = Limits {
                burst: MAX_BURST,
                per_second: MAX_PER_SECOND,
            };
            let reply = crate::limits::bucket::take(&cx.env, prefix, 1, limits).await?;
            json(200, &reply)
        }
        // The miss path's decision with token limits: the key's call token and worst-case
        // tokens reserved in one round trip (limits that never deny), then settled as the
        // gate's settlement is (queued, carried by the key's next reservation).
        (Method::Post, ["bench", "bucket-tokens", prefix]) => {
            let limits = Limits {
                burst: MAX_BURST,
                per_second: MAX_PER_SECOND,
            };
            let tokens = gateway_core::limits::tier::MinuteLimits::tokens(100_000_000, 100_000_000);
            let reply =
                crate::limits::bucket::reserve(cx, prefix, limits, tokens, 300, 1024).await?;
            crate::limits::bucket::settle_later(cx, prefix, &cx.request_id, tokens, 20, 100);
            json(200, &reply)
        }
        // The L1 read alone (Cache API lookup of an `ask/v1` key), the reference that bounds
        // the L1 hit path's throughput under the local runtime.
        (Method::Get, ["bench", "l1", key]) => {
            let tier = cache::lookup(cx, Namespace::Ask, key)
                .await
                .map(|(_, t)| t.as_str());
            json(200, &json!({"tier": tier}))
        }
        (Method::Post, ["bench", "do-ping", name]) => {
            crate::limits::bucket::ping(&cx.env, name).await?;
            json(200, &json!({}))
        }
        // Age an archived answer by N days (the archive's clock is the row's created_at).
        (Method::Post, ["archive", id, "age"]) => {
            let days = u64_field(&mut req, "days").await?;
            let ms = JsValue::from_f64(days.saturating_mul(86_400_000) as f64);
            let db = cx.db()?;
            // The row may still wait in this isolate's queue (it is served from there): write it.
            crate::db::usage_log::flush_now(cx.db()?).await;
            for table in ["response_archive", "usage_events"] {
                let sql = format!(
                    "UPDATE {table} SET created_at = created_at - ?2 WHERE request_id = ?1"
                );
                crate::db::d1::run(&db, &sql, &[JsValue::from_str(id), ms.clone()]).await?;
            }
            json(200, &json!({"aged_days": days}))
        }
        // Every table of the schema (the one above must count each that holds account rows).
        (Method::Get, ["tables"]) => {
            #[derive(serde::Deserialize)]
            struct Table {
                name: String,
            }
            let rows: Vec<Table> = crate::db::d1::all(
                &cx.db()?,
                "SELECT name FROM sqlite_master WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%' AND name != 'd1_migrations'",
                &[],
            )
            .await?;
            let names: Vec<String> = rows.into_iter().map(|t| t.name).collect();
            json(200, &json!({ "tables": names }))
        }
        // Rows an account has in every table (account deletion must leave none).
        (Method::Get, ["rows", account]) => {
            let db = cx.db()?;
            let mut counts = serde_json::Map::new();
            for (table, col) in [
                ("accounts", "id"),
                ("api_keys", "account_id"),
                ("usage_events", "account_id"),
                ("response_archive", "account_id"),
                ("provider_keys", "account_id"),
                ("key_access_log", "account_id"),
                ("dashboard_sessions", "account_id"),
            ] {
                let sql = format!("SELECT COUNT(*) AS n FROM {table} WHERE {col} = ?1");
                let n = crate::db::d1::count(&db, &sql, &[JsValue::from_str(account)]).await?;
                counts.insert(table.into(), json!(n));
            }
            json(200, &serde_json::Value::Object(counts))
        }
        // Call a broker's RPC method `complete` with the secret the caller gives (header
        // `x-broker-secret`, empty when absent, the gateway's own for `configured`) and the
        // body as the payload.
        (Method::Post, ["broker-rpc", provider]) => {
            let p = Provider::parse(provider).ok_or_else(ApiError::not_found)?;
            // `x-broker-secret: configured` stands for the gateway's own secret.
            let secret = match req.headers().get("x-broker-secret").ok().flatten() {
                Some(s) if s == "configured" => cx.var("BROKER_SHARED_SECRET"),
                other => other,
            };
            let payload = req.text().await.unwrap_or_default();
            let (status, body) =
                crate::brokers::complete_rpc(cx, p, secret.as_deref().unwrap_or(""), &payload)
                    .await
                    .map_err(dependency("broker"))?;
            crate::http::response::json_text(status, body)
        }
        // Forward a request to a broker as is: the caller's own headers, no shared secret added.
        (_, ["broker", provider, rest @ ..]) => {
            let p = Provider::parse(provider).ok_or_else(ApiError::not_found)?;
            let fetcher = cx
                .env
                .service(p.binding())
                .map_err(dependency("broker binding"))?;
            let body = req.bytes().await.unwrap_or_default();
            let mut init = worker::RequestInit::new();
            init.with_method(req.method())
                .with_headers(req.headers().clone());
            if !body.is_empty() {
                init.with_body(Some(
                    worker::js_sys::Uint8Array::from(body.as_slice()).into(),
                ));
            }
            let url = format!("https://broker/{}", rest.join("/"));
            let fwd = Request::new_with_init(&url, &init).map_err(dependency("request"))?;
            fetcher
                .fetch_request(fwd)
                .await
                .map_err(dependency("broker"))
        }
        _ => Err(ApiError::not_found()),
    }
}

/// Sends a test operation to `account`'s ledger alone, past the isolate's queue.
async fn ledger_hook(cx: &RequestContext, account: &str, op: LedgerOp) -> ApiResult<()> {
    crate::limits::ledger::applied(
        crate::limits::ledger::send_alone(&cx.env, account, &op).await?,
    )?;
    Ok(())
}
