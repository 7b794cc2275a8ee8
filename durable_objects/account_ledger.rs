//! `AccountLedger`: one per account (`id_from_name(account_id)`), holding the credit balance
//! and open reservations in Durable Object storage; a thin shell over `gateway_core::credits::ledger`.

use std::cell::{Cell, RefCell};

use gateway_core::credits::ledger::{Ledger, LedgerError};
use wasm_bindgen::prelude::*;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use super::{refuse_fetch, LedgerOp, LedgerReply, Operations};

const STATE_KEY: &str = "ledger";
/// A reservation not settled within this long is released (its call surely ended).
const RESERVATION_MAX_AGE_MS: u64 = 10 * 60 * 1000;

#[durable_object]
pub struct AccountLedger {
    state: State,
    cached: RefCell<Option<Ledger>>,
    /// Test hook (set only through the gateway's dev-only route): how many of the next `batch`
    /// calls fail before touching the ledger, so tests can see queued operations retried.
    failing_batches: Cell<u32>,
}

impl AccountLedger {
    async fn load(&self) -> Result<Ledger> {
        if let Some(l) = self.cached.borrow().clone() {
            return Ok(l);
        }
        let ledger = self
            .state
            .storage()
            .get::<Ledger>(STATE_KEY)
            .await?
            .unwrap_or_default();
        *self.cached.borrow_mut() = Some(ledger.clone());
        Ok(ledger)
    }

    /// Stores the ledger, then remembers it: a write that fails leaves the object as stored.
    async fn save(&self, ledger: &Ledger) -> Result<()> {
        self.state.storage().put(STATE_KEY, ledger).await?;
        *self.cached.borrow_mut() = Some(ledger.clone());
        Ok(())
    }
}

fn reply(ledger: &Ledger, charged: u64, error: Option<&'static str>) -> Result<String> {
    Ok(serde_json::to_string(&LedgerReply {
        ok: error.is_none(),
        balance: ledger.balance(),
        available: ledger.available(),
        charged,
        error: error.map(str::to_string),
    })?)
}

/// The reply's name for a refusal.
fn code(e: LedgerError) -> &'static str {
    match e {
        LedgerError::InsufficientCredits { .. } => "insufficient_credits",
        LedgerError::UnknownReservation => "unknown_reservation",
        LedgerError::DuplicateReservation => "duplicate_reservation",
    }
}

impl DurableObject for AccountLedger {
    fn new(state: State, _env: Env) -> Self {
        AccountLedger {
            state,
            cached: RefCell::new(None),
            failing_batches: Cell::new(0),
        }
    }

    async fn fetch(&self, _req: Request) -> Result<Response> {
        refuse_fetch()
    }
}

export_rpc!(AccountLedger);

impl Operations for AccountLedger {
    /// Every operation is `POST /` with a `LedgerOp` body.
    async fn operate(&self, path: &str, body: &str) -> Option<Result<String>> {
        if path != "/" {
            return None;
        }
        Some(self.apply_op(body).await)
    }
}

impl AccountLedger {
    async fn apply_op(&self, body: &str) -> Result<String> {
        let op: LedgerOp = serde_json::from_str(body)?;
        if let LedgerOp::FailBatches { count } = op {
            self.failing_batches.set(count);
            return reply(&self.load().await?, 0, None);
        }
        if matches!(op, LedgerOp::Batch { .. }) && self.failing_batches.get() > 0 {
            self.failing_batches.set(self.failing_batches.get() - 1);
            return Err(worker::Error::RustError("batch refused (test hook)".into()));
        }
        let now_ms = worker::Date::now().as_millis();
        let mut ledger = self.load().await?;
        let mut dirty = !ledger.expire(now_ms, RESERVATION_MAX_AGE_MS).is_empty();
        let ops = match op {
            LedgerOp::Batch { ops } => ops,
            op => vec![op],
        };
        let (mut charged, mut error) = (0, None);
        for op in ops {
            if let LedgerOp::Wipe = op {
                self.state.storage().delete_all().await?;
                *self.cached.borrow_mut() = Some(Ledger::default());
                (ledger, dirty, charged, error) = (Ledger::default(), false, 0, None);
                continue;
            }
            let changed;
            (changed, charged, error) = apply(&mut ledger, op, now_ms);
            dirty |= changed;
        }
        if dirty {
            self.save(&ledger).await?;
        }
        reply(&ledger, charged, error)
    }
}

/// Applies one operation: whether the ledger changed, what it charged, why it was refused.
fn apply(ledger: &mut Ledger, op: LedgerOp, now_ms: u64) -> (bool, u64, Option<&'static str>) {
    let refused = |e: LedgerError| (false, 0, Some(code(e)));
    match op {
        LedgerOp::Balance => (false, 0, None),
        LedgerOp::Credit { amount } => {
            ledger.credit(amount);
            (true, 0, None)
        }
        LedgerOp::Reserve { id, amount } => match ledger.reserve(&id, amount, now_ms) {
            Ok(()) => (true, 0, None),
            Err(e) => refused(e),
        },
        LedgerOp::Settle { id, actual } => match ledger.settle(&id, actual) {
            Ok(c) => (true, c, None),
            Err(e) => refused(e),
        },
        LedgerOp::Release { id } => match ledger.release(&id) {
            Ok(_) => (true, 0, None),
            Err(e) => refused(e),
        },
        LedgerOp::Fee { amount } => (true, ledger.debit_fee(amount), None),
        // `wipe` is applied by the caller; a batch inside a batch and the test hook are not
        // operations.
        LedgerOp::Wipe | LedgerOp::Batch { .. } | LedgerOp::FailBatches { .. } => {
            (false, 0, Some("unsupported_operation"))
        }
    }
}
