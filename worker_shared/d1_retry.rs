//! Retries a D1 call that failed on a lock conflict (`SQLITE_BUSY`, "database is locked"):
//! such a statement did not run, so running it again is safe. Several Workers write the same
//! database (the gateway, and the brokers' key-access audit); the local runtime reports their
//! overlap this way, and D1 advises retrying transient errors. Shared by the gateway and the
//! brokers (included with `#[path]`).

use std::future::Future;
use std::time::Duration;

use worker::{Delay, Error, Result};

/// Waits before each retry, in milliseconds.
const BACKOFF_MS: [u64; 3] = [10, 40, 160];

/// Whether `e` is a lock conflict, after which the statement is known not to have run.
/// (A D1 error's text carries its cause.)
pub fn is_busy(e: &Error) -> bool {
    let text = e.to_string();
    text.contains("SQLITE_BUSY") || text.contains("database is locked")
}

/// Runs `call`, and again after each back-off step while it fails on a lock conflict.
pub async fn retry_busy<T, F, Fut>(mut call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    for wait_ms in BACKOFF_MS {
        match call().await {
            Err(e) if is_busy(&e) => Delay::from(Duration::from_millis(wait_ms)).await,
            done => return done,
        }
    }
    call().await
}
