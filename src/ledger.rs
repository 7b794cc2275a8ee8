//! Client of the `AccountLedger` Durable Object (one per account). Failures are 503s.
//!
//! Operations that need no answer before the response (settlements, releases, cache-hit fees)
//! wait in an isolate-local queue per account and travel together: at most `FLUSH_MS` later in
//! one `batch` call, or sooner, ahead of the next call this isolate makes to the same account's
//! ledger (a reservation or a balance read then sees every earlier operation applied first).

use std::cell::RefCell;
use std::collections::BTreeMap;

use worker::{console_error, Env};

use crate::durable_objects::{self, LedgerOp, LedgerReply};
use crate::edge::{dependency, Gw, Outcome};

/// How long a queued operation waits before its account's batch is sent.
const FLUSH_MS: u64 = 100;

thread_local! {
    /// Queued operations per account, and whether a flush is scheduled.
    static QUEUE: RefCell<(BTreeMap<String, Vec<LedgerOp>>, bool)> =
        const { RefCell::new((BTreeMap::new(), false)) };
}

/// Sends `op` to the account's ledger, preceded by the operations queued for that account
/// (one call either way). On failure the queued operations go back to the queue.
pub async fn call(env: &Env, account_id: &str, op: &LedgerOp) -> Outcome<LedgerReply> {
    let queued = take_queued(account_id);
    let body = if queued.is_empty() {
        serde_json::to_string(op)
    } else {
        serde_json::to_string(&LedgerOpRef::Batch {
            ops: queued.iter().chain(std::iter::once(op)).collect(),
        })
    }
    .map_err(dependency("encode"))?;
    let result = send(env, account_id, body).await;
    if result.is_err() && !queued.is_empty() {
        requeue(account_id, queued);
    }
    result
}

async fn send(env: &Env, account_id: &str, body: String) -> Outcome<LedgerReply> {
    let text = durable_objects::post(env, "ACCOUNT_LEDGER", account_id, "/", body).await?;
    serde_json::from_str(&text).map_err(dependency("AccountLedger reply"))
}

/// `LedgerOp::Batch` over borrowed operations: how every batch is encoded (queued operations,
/// possibly followed by the caller's own, are not copied into an owned batch).
#[derive(serde::Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum LedgerOpRef<'a> {
    Batch { ops: Vec<&'a LedgerOp> },
}

/// Queues `op` for the account's next batch (sent after the response, within `FLUSH_MS`).
/// Consecutive fees are summed into one operation.
pub fn queue(gw: &Gw, account_id: &str, op: LedgerOp) {
    let schedule = QUEUE.with(|q| {
        let mut q = q.borrow_mut();
        let ops = q.0.entry(account_id.to_string()).or_default();
        match (ops.last_mut(), &op) {
            (Some(LedgerOp::Fee { amount: sum }), LedgerOp::Fee { amount }) => *sum += amount,
            _ => ops.push(op),
        }
        !std::mem::replace(&mut q.1, true)
    });
    if !schedule {
        return;
    }
    let env = gw.env.clone();
    gw.after(async move {
        worker::Delay::from(std::time::Duration::from_millis(FLUSH_MS)).await;
        let due = QUEUE.with(|q| {
            let mut q = q.borrow_mut();
            q.1 = false;
            std::mem::take(&mut q.0)
        });
        for (account_id, ops) in due {
            let n = ops.len();
            let Ok(body) = serde_json::to_string(&LedgerOpRef::Batch {
                ops: ops.iter().collect(),
            }) else {
                continue;
            };
            if let Err(e) = send(&env, &account_id, body).await {
                console_error!("ledger batch of {n} operations failed: {}", e.code);
            }
        }
    });
}

fn take_queued(account_id: &str) -> Vec<LedgerOp> {
    QUEUE.with(|q| q.borrow_mut().0.remove(account_id).unwrap_or_default())
}

fn requeue(account_id: &str, mut ops: Vec<LedgerOp>) {
    QUEUE.with(|q| {
        let mut q = q.borrow_mut();
        let slot = q.0.entry(account_id.to_string()).or_default();
        ops.append(slot);
        *slot = ops;
    });
}

/// Drops the operations queued for an account being deleted.
pub fn forget(account_id: &str) {
    take_queued(account_id);
}

pub async fn credit(env: &Env, account_id: &str, amount: u64) -> Outcome<LedgerReply> {
    call(env, account_id, &LedgerOp::Credit { amount }).await
}

pub async fn balance(env: &Env, account_id: &str) -> Outcome<LedgerReply> {
    call(env, account_id, &LedgerOp::Balance).await
}

pub async fn wipe(env: &Env, account_id: &str) -> Outcome<()> {
    call(env, account_id, &LedgerOp::Wipe).await.map(|_| ())
}
