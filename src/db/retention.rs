//! The daily retention cron: archived answers past 30 days and keys revoked over 30 days ago
//! are deleted, in bounded batches.

use worker::{console_error, console_log, D1Database};

use crate::db::d1;
use crate::db::d1::num as n;

/// Days a revoked key's row (and prefix) is kept.
pub const KEY_RETENTION_DAYS: u64 = 30;

/// Days an archived answer is served.
pub const RETENTION_DAYS: u64 = 30;
pub const RETENTION_MS: u64 = RETENTION_DAYS * 86_400_000;
/// Rows the cron deletes per statement, and statements per run. A Worker invocation may make
/// at most 1,000 D1 queries on the paid plan (50 on the free one): the archive purge stays
/// under that, leaving room for the key purge after it (docs/SCALING.md).
const PURGE_BATCH: u64 = 500;
const PURGE_MAX_BATCHES: u32 = 990;

/// The daily cron's other half: deletes the rows of keys revoked more than
/// `KEY_RETENTION_DAYS` ago, freeing their prefixes and their place under the account's key cap
/// (a freed prefix drawn again gets a cleared bucket at minting). Returns the rows deleted.
pub async fn purge_revoked_keys(db: &D1Database, now_ms: u64) -> u64 {
    let cutoff = now_ms.saturating_sub(KEY_RETENTION_DAYS * 86_400_000);
    let deleted = d1::run(
        db,
        "DELETE FROM api_keys WHERE status = 'revoked' AND revoked_at < ?1",
        &[n(cutoff)],
    )
    .await
    .unwrap_or(0);
    console_log!("key purge: deleted {deleted} keys revoked before the retention window");
    deleted as u64
}

/// The daily retention cron: deletes archive rows older than 30 days in bounded batches.
pub async fn purge_archive(db: &D1Database, now_ms: u64) -> u64 {
    let cutoff = now_ms.saturating_sub(RETENTION_MS);
    let mut deleted = 0u64;
    for _ in 0..PURGE_MAX_BATCHES {
        let run = d1::run(
            db,
            "DELETE FROM response_archive WHERE rowid IN \
             (SELECT rowid FROM response_archive WHERE created_at < ?1 LIMIT ?2)",
            &[n(cutoff), n(PURGE_BATCH)],
        )
        .await;
        // A failure is logged by `d1::run`; the next night's run resumes.
        let Ok(changes) = run.map(|c| c as u64) else {
            console_error!("archive purge stopped after {deleted} rows");
            break;
        };
        deleted += changes;
        if changes < PURGE_BATCH {
            break;
        }
    }
    console_log!("archive purge: deleted {deleted} rows older than {RETENTION_DAYS} days");
    deleted
}
