//! What the gateway remembers about calls: one usage event per call (never prompt or response
//! text, unless the account opted in to a 200-character prompt prefix) and the 30-day response
//! archive. Both are written off the response path, batched per isolate (one D1 write per
//! 100 ms at most, split only when its values would exceed D1's 1 MB limit), so a burst of
//! cache hits costs one write, not one per call.

use gateway_core::cache::control::CacheOutcome;
use std::cell::RefCell;
use std::rc::Rc;

use gateway_core::usage::packing::{fits_alone, pack_json_arrays};
use gateway_core::usage::rows::{encode_archive_row, UsageRow, INSERT_ARCHIVE, INSERT_USAGE};
use worker::{console_error, console_log, D1Database};

use crate::db::d1::{statement, text as s, value_limit};
use crate::http::context::RequestContext;

/// Characters of the prompt kept when the account opted in.
pub const PROMPT_PREFIX_CHARS: usize = 200;

/// The usage row of one call, filled in as the call proceeds.
#[derive(Debug, Clone, Default)]
pub struct Event {
    pub endpoint: String,
    pub account_id: String,
    pub key_prefix: String,
    pub providers: String,
    pub cache_status: Option<&'static str>,
    pub cache_tier: Option<&'static str>,
    pub tokens: (u64, u64),
    pub credits: u64,
    pub prompt_prefix: Option<String>,
    /// Set when the call deleted the account (nothing may be written for it afterwards), or
    /// was refused by the isolate's limiter of unmetered calls.
    pub discard: bool,
    /// How a streamed answer ended (`clean`, `cut`, `client_gone`, ...); `None` for a whole one.
    pub stream_end: Option<&'static str>,
    /// Written later, by the work that runs when a streamed answer ends, not with the response.
    pub deferred: bool,
    /// Set once the call reached the cache or the key's bucket (a hit, or the miss path's
    /// gate): every other call passes the isolate's limiter of unmetered calls instead.
    pub gated: bool,
    /// The answer to archive (successful calls only).
    pub archive: Option<String>,
}

impl Event {
    pub fn new(endpoint: &str, account_id: &str, key_prefix: &str) -> Self {
        Event {
            endpoint: endpoint.to_string(),
            account_id: account_id.to_string(),
            key_prefix: key_prefix.to_string(),
            ..Default::default()
        }
    }

    pub fn cache(&mut self, outcome: CacheOutcome) {
        self.cache_status = Some(outcome.status());
        self.cache_tier = outcome.tier().map(|t| t.as_str());
    }

    /// Keeps the first 200 characters of the prompt only if the account opted in.
    pub fn set_prompt(&mut self, opted_in: bool, prompt: &str) {
        if opted_in {
            self.prompt_prefix = Some(prompt.chars().take(PROMPT_PREFIX_CHARS).collect());
        }
    }
}

/// How long usage rows wait in the isolate before they are written, and how many at most.
const FLUSH_MS: u64 = 100;
const FLUSH_ROWS: usize = 200;

/// A usage row (and the answer to archive, if any) waiting for the next batch.
struct Pending {
    event: Event,
    request_id: String,
    status: u16,
    latency_ms: u64,
    at_ms: u64,
}

thread_local! {
    /// Rows of this isolate not yet written, and whether a flush is scheduled.
    static PENDING: RefCell<(Vec<Pending>, bool)> = const { RefCell::new((Vec::new(), false)) };
    /// Rows of the flushes whose D1 write has not finished yet.
    static WRITING: RefCell<Vec<Rc<Vec<Pending>>>> = const { RefCell::new(Vec::new()) };
}

/// Queues the call's usage row, and its archived answer if it has one, for the isolate's next
/// batch: every `FLUSH_MS` (or `FLUSH_ROWS` rows) one D1 batch writes all queued rows, after
/// the responses were sent (`wait_until` keeps the isolate alive until the write is done).
pub fn usage_later(cx: &RequestContext, event: Event, status: u16) {
    if event.discard {
        return;
    }
    // The request's log line goes with its usage row (a streamed answer's at its end).
    crate::http::log::for_usage(cx, &event, status);
    let latency_ms = worker_shared::clock::now_ms().saturating_sub(cx.now_ms);
    let mut row = Pending {
        event,
        request_id: cx.request_id.clone(),
        status,
        latency_ms,
        at_ms: cx.now_ms,
    };
    // An answer whose archive row cannot fit one D1 value is never stored, so it is not queued
    // either: `GET /v1/ask/:id` answers 404 for it from the start, not only after the flush.
    if row
        .event
        .archive
        .as_deref()
        .is_some_and(|text| !archive_fits(&row, text))
    {
        console_error!("an archived answer over D1's value limit was not kept");
        row.event.archive = None;
    }
    let (schedule, full) = PENDING.with(|p| {
        let mut p = p.borrow_mut();
        p.0.push(row);
        let schedule = !p.1;
        p.1 = true;
        (schedule, p.0.len() >= FLUSH_ROWS)
    });
    if full {
        if let Ok(db) = cx.db() {
            cx.after(flush(db));
        }
    }
    if !schedule {
        return;
    }
    let Ok(db) = cx.db() else { return };
    cx.after(async move {
        worker::Delay::from(std::time::Duration::from_millis(FLUSH_MS)).await;
        PENDING.with(|p| p.borrow_mut().1 = false);
        flush(db).await;
    });
}

thread_local! {
    /// Calls to no route (404) or with another method (405) since the last flush, by status:
    /// counted, not written (each would be a row anyone with a key could add).
    static UNROUTED: RefCell<(u64, u64)> = const { RefCell::new((0, 0)) };
}

/// Counts a call to no route; the counts are logged with the isolate's next usage flush.
pub fn count_unrouted(status: u16) {
    UNROUTED.with(|u| {
        let mut u = u.borrow_mut();
        if status == 405 {
            u.1 += 1;
        } else {
            u.0 += 1;
        }
    });
}

/// The archived answer of request `id` if it still waits in this isolate's queue, for its
/// account (and, when `key_prefix` is given, only if that key made the call).
pub fn queued_answer(id: &str, account_id: &str, key_prefix: Option<&str>) -> Option<String> {
    let find = |rows: &[Pending]| {
        rows.iter().find_map(|r| {
            let mine = r.request_id == id
                && r.event.account_id == account_id
                && key_prefix.is_none_or(|k| r.event.key_prefix == k);
            mine.then(|| r.event.archive.clone()).flatten()
        })
    };
    PENDING
        .with(|p| find(&p.borrow().0))
        .or_else(|| WRITING.with(|w| w.borrow().iter().find_map(|rows| find(rows))))
}

/// Drops the queued rows of an account being deleted.
pub fn forget_account(account_id: &str) {
    PENDING.with(|p| {
        p.borrow_mut()
            .0
            .retain(|r| r.event.account_id != account_id)
    });
}

/// Writes every queued row: each table's rows travel as JSON arrays, each bound to one
/// parameter and inserted by `json_each`, so a flush usually costs one D1 batch of two
/// statements whether it holds one row or two hundred. D1 refuses a value over 1 MB, so rows
/// are packed into as many arrays as that needs, and statements into batches whose values
/// stay under it; an archived answer over the limit alone cannot be stored and is left out
/// (its usage row is still written). Rows of an account that no longer exists (deleted while
/// the call was running) are not written.
async fn flush(db: D1Database) {
    let (not_found, not_allowed) = UNROUTED.with(|u| std::mem::take(&mut *u.borrow_mut()));
    if not_found + not_allowed > 0 {
        console_log!("{{\"unrouted_calls\":{{\"404\":{not_found},\"405\":{not_allowed}}}}}");
    }
    let rows = PENDING.with(|p| std::mem::take(&mut p.borrow_mut().0));
    if rows.is_empty() {
        return;
    }
    let rows = Rc::new(rows);
    // Until its write is done, the flush's answers are still served from the isolate.
    WRITING.with(|w| w.borrow_mut().push(rows.clone()));
    write(&db, &rows).await;
    WRITING.with(|w| w.borrow_mut().retain(|r| !Rc::ptr_eq(r, &rows)));
}

/// Writes the queued rows now (dev-only routes: a test that changes a row must find it in D1).
#[cfg(feature = "dev-hooks")]
pub async fn flush_now(db: D1Database) {
    flush(db).await;
}

/// Writes one flush's rows (see [`flush`]).
async fn write(db: &D1Database, rows: &[Pending]) {
    let limit = value_limit();
    let (usage, archive) = encode_rows(rows);
    let usage = pack_json_arrays(&usage, limit);
    let archive = pack_json_arrays(&archive, limit);
    let left_out = usage.oversized.len() + archive.oversized.len();
    if left_out > 0 {
        console_error!("{left_out} usage/archive rows over D1's value limit were not written");
    }
    let arrays = usage
        .arrays
        .iter()
        .map(|a| (INSERT_USAGE, a))
        .chain(archive.arrays.iter().map(|a| (INSERT_ARCHIVE, a)));
    // Consecutive statements share a batch while their values fit the limit together.
    let mut batches: Vec<(usize, Vec<_>)> = Vec::new();
    for (sql, array) in arrays {
        // A statement that cannot be bound is logged by `statement` and left out.
        let Ok(stmt) = statement(db, sql, &[s(array)]) else {
            continue;
        };
        match batches.last_mut() {
            Some((bytes, stmts)) if *bytes + array.len() <= limit => {
                *bytes += array.len();
                stmts.push(stmt);
            }
            _ => batches.push((array.len(), vec![stmt])),
        }
    }
    for (_, stmts) in batches {
        let n = stmts.len();
        if let Err(e) = crate::db::d1::batch(db, stmts).await {
            console_error!("usage/archive write ({n} statements) failed: {e}");
        }
    }
}

/// The queued rows as the JSON values the inserts read: one usage row each (columns in
/// `INSERT_USAGE` order), and one archive row for each that has an answer to archive.
fn encode_rows(rows: &[Pending]) -> (Vec<String>, Vec<String>) {
    let usage = rows
        .iter()
        .map(|r| {
            let e = &r.event;
            UsageRow {
                account_id: &e.account_id,
                key_prefix: &e.key_prefix,
                request_id: &r.request_id,
                endpoint: &e.endpoint,
                providers: &e.providers,
                cache_status: e.cache_status,
                cache_tier: e.cache_tier,
                status_code: r.status,
                input_tokens: e.tokens.0,
                output_tokens: e.tokens.1,
                credits: e.credits,
                latency_ms: r.latency_ms,
                prompt_prefix: e.prompt_prefix.as_deref(),
                created_at: r.at_ms,
                stream_end: e.stream_end,
            }
            .encode()
        })
        .collect();
    let archive = rows
        .iter()
        .filter_map(|r| {
            let text = r.event.archive.as_ref()?;
            Some(encode_archive_row(
                &r.request_id,
                &r.event.account_id,
                r.at_ms,
                text,
            ))
        })
        .collect();
    (usage, archive)
}

/// Whether the archive row of `text` (the answer of `row`) fits one D1 value alone. An answer
/// well under the limit is not encoded to find out (its row is at most six bytes per byte plus
/// its other columns).
fn archive_fits(row: &Pending, text: &str) -> bool {
    let limit = value_limit();
    if text.len().saturating_mul(6) + 1024 <= limit {
        return true;
    }
    let encoded = encode_archive_row(&row.request_id, &row.event.account_id, row.at_ms, text);
    fits_alone(encoded.len(), limit)
}

/// Keeps a successful response (the body the caller got) to archive with the usage row.
pub fn archive_later(event: &mut Event, body: String) {
    event.archive = Some(body);
}
