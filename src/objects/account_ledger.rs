//! `AccountLedger`: one per account (`id_from_name(account_id)`), holding the credit balance,
//! the account-wide calls and token buckets and their open reservations in Durable Object
//! storage; a thin shell over `gateway_core::credits::ledger_ops` (operations, replies,
//! `apply`). Its alarm charges (credits) and closes (buckets) the reservations never settled,
//! at their reserved amount.

#[cfg(feature = "dev-hooks")]
use std::cell::Cell;

use gateway_core::credits::ledger::Ledger;
use gateway_core::credits::ledger_ops::{apply, next_expiry, LedgerOp};
use wasm_bindgen::prelude::*;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use super::{refuse_fetch, reply, ExpiryAlarm, Operations, StoredCell};

#[durable_object]
pub struct AccountLedger {
    ledger: StoredCell<Ledger>,
    alarm: ExpiryAlarm,
    /// Test hook (set only through the gateway's dev-only route): how many of the next `batch`
    /// calls fail before touching the ledger, so tests can see queued operations retried.
    #[cfg(feature = "dev-hooks")]
    failing_batches: Cell<u32>,
    /// Test hook: how far this instance's clock runs ahead of the runtime's, ms.
    #[cfg(feature = "dev-hooks")]
    clock_ahead_ms: Cell<u64>,
}

impl DurableObject for AccountLedger {
    fn new(state: State, _env: Env) -> Self {
        AccountLedger {
            ledger: StoredCell::new(&state, "ledger"),
            alarm: ExpiryAlarm::new(&state),
            #[cfg(feature = "dev-hooks")]
            failing_batches: Cell::new(0),
            #[cfg(feature = "dev-hooks")]
            clock_ahead_ms: Cell::new(0),
        }
    }

    async fn fetch(&self, _req: Request) -> Result<Response> {
        refuse_fetch()
    }

    async fn alarm(&self) -> Result<Response> {
        self.alarm.fired();
        let now_ms = self.now_ms();
        let mut ledger = self.ledger.load().await?;
        // A balance read applies nothing but the expiries due.
        let applied = apply(&mut ledger, LedgerOp::Balance, now_ms);
        let next = next_expiry(&ledger);
        if applied.changed {
            self.ledger.save(ledger).await?;
        }
        self.alarm.ensure(next).await?;
        Response::ok("")
    }
}

export_rpc!(AccountLedger);

impl AccountLedger {
    /// The time the ledger is applied at: the runtime's clock (ahead by the test hook's shift
    /// in a dev build).
    fn now_ms(&self) -> u64 {
        let now_ms = worker_shared::clock::now_ms();
        #[cfg(feature = "dev-hooks")]
        let now_ms = now_ms + self.clock_ahead_ms.get();
        now_ms
    }
}

impl Operations for AccountLedger {
    type Op = LedgerOp;

    async fn operate(&self, op: LedgerOp) -> Result<String> {
        #[cfg(feature = "dev-hooks")]
        if let Some(answer) = self.test_hook(&op).await? {
            return Ok(answer);
        }
        let now_ms = self.now_ms();
        let mut ledger = self.ledger.load().await?;
        let applied = apply(&mut ledger, op, now_ms);
        let next = next_expiry(&ledger);
        if applied.wiped {
            // An alarm still pending finds an empty ledger and does nothing.
            self.alarm.fired();
            self.ledger.wipe().await?;
        }
        if applied.changed {
            self.ledger.save(ledger).await?;
        }
        self.alarm.ensure(next).await?;
        reply(&applied.reply)
    }
}

#[cfg(feature = "dev-hooks")]
impl AccountLedger {
    /// The test hook: `fail_batches` sets how many batches fail (answering the ledger as it
    /// stands), and while that count lasts a batch fails before touching the ledger. `None`:
    /// the operation is the ledger's to apply.
    async fn test_hook(&self, op: &LedgerOp) -> Result<Option<String>> {
        use gateway_core::credits::ledger_ops::{LedgerReply, LedgerView};
        match *op {
            LedgerOp::FailBatches { count } => {
                self.failing_batches.set(count);
                let view = LedgerView::of(&self.ledger.load().await?, 0);
                reply(&LedgerReply::Ok(view)).map(Some)
            }
            LedgerOp::ShiftClock { ms } => {
                self.clock_ahead_ms.set(ms);
                let view = LedgerView::of(&self.ledger.load().await?, 0);
                reply(&LedgerReply::Ok(view)).map(Some)
            }
            LedgerOp::Reread { old_form } => {
                let ledger = self.ledger.reread(old_form).await?;
                reply(&LedgerReply::Ok(LedgerView::of(&ledger, 0))).map(Some)
            }
            LedgerOp::Batch { .. } if self.failing_batches.get() > 0 => {
                self.failing_batches.set(self.failing_batches.get() - 1);
                Err(worker::Error::RustError("batch refused (test hook)".into()))
            }
            _ => Ok(None),
        }
    }
}
