//! D1 statements as both Workers run them: values bound, then run, again after a lock conflict.
//!
//! A call that failed on a lock conflict (`SQLITE_BUSY`, "database is locked") did not run, so
//! running it again is safe. Several Workers write the same database (the gateway, and the
//! brokers' key-access audit); the local runtime reports their overlap this way, and D1 advises
//! retrying transient errors.

use std::future::Future;
use std::time::Duration;

use worker::wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, Delay, Error, Result};

/// Waits before each retry, in milliseconds.
const BACKOFF_MS: [u64; 3] = [10, 40, 160];

/// Whether `e` is a lock conflict, after which the statement is known not to have run.
/// (A D1 error's text carries its cause.)
pub fn is_busy(e: &Error) -> bool {
    let text = e.to_string();
    text.contains("SQLITE_BUSY") || text.contains("database is locked")
}

/// Runs `call`, and again after each back-off step while it fails with an error `again`
/// accepts.
async fn retry_while<T, F, Fut>(again: impl Fn(&Error) -> bool, mut call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    for wait_ms in BACKOFF_MS {
        match call().await {
            Err(e) if again(&e) => Delay::from(Duration::from_millis(wait_ms)).await,
            done => return done,
        }
    }
    call().await
}

/// Runs `call`, and again after each back-off step while it fails on a lock conflict.
pub async fn retry_busy<T, F, Fut>(call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    retry_while(is_busy, call).await
}

/// Runs `call`, a read (a `SELECT`: it changes nothing, so running it again is always safe),
/// and again after each back-off step while it fails for any reason: the local runtime's D1
/// object now and then answers a read with an internal error that the next attempt does not
/// meet, and D1 advises retrying transient errors.
pub async fn retry_read<T, F, Fut>(call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    retry_while(|_| true, call).await
}

/// A text parameter.
pub fn text(v: &str) -> JsValue {
    JsValue::from_str(v)
}

/// A numeric parameter (JS numbers: exact up to 2^53).
pub fn num(v: u64) -> JsValue {
    JsValue::from_f64(v as f64)
}

/// A nullable text parameter.
pub fn opt_text(v: Option<&str>) -> JsValue {
    v.map_or(JsValue::NULL, text)
}

/// `sql` with `args` bound.
pub fn statement(db: &D1Database, sql: &str, args: &[JsValue]) -> Result<D1PreparedStatement> {
    db.prepare(sql).bind(args)
}

/// Runs a write (again after a lock conflict); returns how many rows it changed.
pub async fn run(st: &D1PreparedStatement) -> Result<usize> {
    let r = retry_busy(|| st.run()).await?;
    Ok(r.meta().ok().flatten().and_then(|m| m.changes).unwrap_or(0))
}
