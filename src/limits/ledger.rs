//! Typed client of the `AccountLedger` Durable Object (one per account): encodes `LedgerOp`s,
//! decodes the typed `LedgerReply`. Failures to reach it are 503s.
//!
//! Operations that need no answer before the response (settlements, releases, cache-hit fees;
//! not a stream's renewals, sent alone) wait in an isolate-local queue per account and travel
//! together: at most `FLUSH_MS` later in
//! one `batch` call, or sooner, ahead of the next call this isolate makes to the same account's
//! ledger (a reservation or a balance read then sees every earlier operation applied first).
//! A batch whose send fails is retried with back-off, with only its retry-safe operations
//! (settlements and releases, which a ledger applies at most once), kept in the queue between
//! attempts.

use std::cell::RefCell;

use gateway_core::credits::ledger_ops::{
    encode_batch, LedgerOp, LedgerReply, LedgerView, MeterReserve,
};
use gateway_core::error::ApiError;
use worker::{console_error, Env};

use super::queue::Queued;
use crate::http::context::RequestContext;
use crate::objects;
use crate::runtime::dependency;
use gateway_core::error::ApiResult;

/// How long a queued operation waits before its account's batch is sent.
const FLUSH_MS: u64 = 100;

thread_local! {
    /// Queued operations per account.
    static QUEUE: RefCell<Queued<LedgerOp>> = const { RefCell::new(Queued::new()) };
}

/// Sends `op` to the account's ledger, preceded by the operations queued for that account
/// (one call either way): the ledger's reply to `op`, applied or refused. On failure the
/// queued retry-safe operations go back to the queue.
pub async fn call(cx: &RequestContext, account_id: &str, op: &LedgerOp) -> ApiResult<LedgerReply> {
    let queued = take_queued(account_id);
    let body = if queued.is_empty() {
        serde_json::to_string(op)
    } else {
        encode_batch(queued.iter().chain(std::iter::once(op)))
    }
    .map_err(dependency("encode"))?;
    let result = send(&cx.env, account_id, body).await;
    if result.is_err() {
        // The failed call may have been applied: only retry-safe operations go back, and a
        // flush is scheduled for them if none is pending.
        let retry: Vec<LedgerOp> = queued.into_iter().filter(LedgerOp::is_retry_safe).collect();
        if !retry.is_empty() {
            requeue(account_id, retry);
            schedule_flush(cx);
        }
    }
    result
}

/// Sends one encoded operation (every batch is encoded from borrowed operations, with
/// `encode_batch`: queued operations, possibly followed by the caller's own, are not copied).
async fn send(env: &Env, account_id: &str, body: String) -> ApiResult<LedgerReply> {
    objects::call(
        env,
        "ACCOUNT_LEDGER",
        account_id,
        &body,
        "AccountLedger reply",
    )
    .await
}

/// Queues `op` for the account's next batch (sent after the response, within `FLUSH_MS`).
/// Consecutive fees are summed into one operation.
pub fn queue(cx: &RequestContext, account_id: &str, op: LedgerOp) {
    QUEUE.with(|q| {
        let mut q = q.borrow_mut();
        let ops = q.slot(account_id);
        match (ops.last_mut(), &op) {
            (Some(LedgerOp::Fee { amount: sum }), LedgerOp::Fee { amount }) => *sum += amount,
            _ => ops.push(op),
        }
    });
    schedule_flush(cx);
}

/// How long an account's failed batch waits before each new attempt.
const RETRY_MS: [u64; 3] = [200, 1_000, 5_000];

/// Sends every account's queued operations `FLUSH_MS` from now, each account's as one batch.
async fn flush_later(env: Env) {
    worker::Delay::from(std::time::Duration::from_millis(FLUSH_MS)).await;
    let due = QUEUE.with(|q| q.borrow_mut().drain());
    let sends = due
        .into_iter()
        .map(|(account_id, ops)| deliver(env.clone(), account_id, ops));
    futures::future::join_all(sends).await;
}

/// Sends an account's batch. When the send fails, its retry-safe operations (the failed call
/// may have been applied, and a fee must not be charged twice) go back to the head of the
/// account's queue, where any call of the account carries them along, and are sent again
/// after each `RETRY_MS` wait with whatever was queued meanwhile. After the last attempt they
/// stay queued: the isolate's next flush or ledger call for the account sends them.
async fn deliver(env: Env, account_id: String, mut ops: Vec<LedgerOp>) {
    for (attempt, wait_ms) in std::iter::once(0).chain(RETRY_MS).enumerate() {
        if wait_ms > 0 {
            worker::Delay::from(std::time::Duration::from_millis(wait_ms)).await;
            // Another flush or a call of the account may have sent them meanwhile.
            ops = take_queued(&account_id);
            if ops.is_empty() {
                return;
            }
        }
        let Ok(body) = encode_batch(&ops) else {
            return;
        };
        match send(&env, &account_id, body).await {
            Ok(_) => return,
            Err(e) => {
                let before = ops.len();
                ops.retain(LedgerOp::is_retry_safe);
                console_error!(
                    "ledger batch of {before} operations failed (attempt {}): {}; {} kept",
                    attempt + 1,
                    e.code,
                    ops.len()
                );
                if ops.is_empty() {
                    return;
                }
                requeue(&account_id, std::mem::take(&mut ops));
            }
        }
    }
}

fn take_queued(account_id: &str) -> Vec<LedgerOp> {
    QUEUE.with(|q| q.borrow_mut().take(account_id))
}

/// Puts `ops` back at the head of the account's queue.
fn requeue(account_id: &str, ops: Vec<LedgerOp>) {
    QUEUE.with(|q| q.borrow_mut().put_back(account_id, ops));
}

/// Makes sure a flush is pending (after operations were queued or went back to the queue).
fn schedule_flush(cx: &RequestContext) {
    let schedule = QUEUE.with(|q| q.borrow_mut().schedule());
    if schedule {
        cx.after(flush_later(cx.env.clone()));
    }
}

/// Sends `op` alone, leaving the account's queue as it is (a renewal, which must not ride with
/// queued operations; dev-only routes: a test can then tell what the queue delivered from what
/// a call carried along).
pub async fn send_alone(env: &Env, account_id: &str, op: &LedgerOp) -> ApiResult<LedgerReply> {
    let body = serde_json::to_string(op).map_err(dependency("encode"))?;
    send(env, account_id, body).await
}

/// Drops the operations queued for an account being deleted.
pub fn forget(account_id: &str) {
    take_queued(account_id);
}

/// Reserves `amount` credits for call `id` (after the account's queued operations), unless the
/// account has `max_in_flight` calls open, and with `meters` the call's worst case on the
/// account-wide buckets, all or nothing: applied, or refused (`insufficient_credits`,
/// `limited`, ...).
pub async fn reserve(
    cx: &RequestContext,
    account_id: &str,
    id: &str,
    amount: u64,
    max_in_flight: u32,
    meters: Option<MeterReserve>,
) -> ApiResult<LedgerReply> {
    let op = LedgerOp::Reserve {
        id: id.to_string(),
        amount,
        max_in_flight,
        meters,
    };
    call(cx, account_id, &op).await
}

/// Adds credits (admin top-up): the ledger after it.
/// Adds `amount` credits; with `id`, once per id (a retried top-up is not applied twice).
pub async fn credit(
    cx: &RequestContext,
    account_id: &str,
    amount: u64,
    id: Option<String>,
) -> ApiResult<LedgerView> {
    applied(call(cx, account_id, &LedgerOp::Credit { amount, id }).await?)
}

/// The account's balance.
pub async fn balance(cx: &RequestContext, account_id: &str) -> ApiResult<LedgerView> {
    applied(call(cx, account_id, &LedgerOp::Balance).await?)
}

/// The ledger after an operation the ledger never refuses (a balance read, a credit): a
/// refusal all the same is a logged 500.
pub fn applied(reply: LedgerReply) -> ApiResult<LedgerView> {
    reply.map_err(|refusal| {
        console_error!("ledger refused an operation it always applies: {refusal}");
        ApiError::internal()
    })
}

pub async fn wipe(cx: &RequestContext, account_id: &str) -> ApiResult<()> {
    call(cx, account_id, &LedgerOp::Wipe).await.map(|_| ())
}
