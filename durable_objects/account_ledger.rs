//! `AccountLedger`: one per account (`id_from_name(account_id)`), holding the credit balance
//! and open reservations in Durable Object storage; a thin shell over `gateway_core::ledger`.

use std::cell::RefCell;

use gateway_core::ledger::{Ledger, LedgerError};
use worker::{durable_object, DurableObject, Env, Method, Request, Response, Result, State};

use super::{LedgerOp, LedgerReply};

const STATE_KEY: &str = "ledger";
/// A reservation not settled within this long is released (its call surely ended).
const RESERVATION_MAX_AGE_MS: u64 = 10 * 60 * 1000;

#[durable_object]
pub struct AccountLedger {
    state: State,
    cached: RefCell<Option<Ledger>>,
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

    async fn save(&self, ledger: &Ledger) -> Result<()> {
        *self.cached.borrow_mut() = Some(ledger.clone());
        self.state.storage().put(STATE_KEY, ledger).await
    }
}

fn reply(ledger: &Ledger, charged: u64, error: Option<LedgerError>) -> Result<Response> {
    let error = error.map(|e| {
        match e {
            LedgerError::InsufficientCredits { .. } => "insufficient_credits",
            LedgerError::UnknownReservation => "unknown_reservation",
            LedgerError::DuplicateReservation => "duplicate_reservation",
        }
        .to_string()
    });
    Response::from_json(&LedgerReply {
        ok: error.is_none(),
        balance: ledger.balance(),
        available: ledger.available(),
        charged,
        error,
    })
}

impl DurableObject for AccountLedger {
    fn new(state: State, _env: Env) -> Self {
        AccountLedger {
            state,
            cached: RefCell::new(None),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        if req.method() != Method::Post {
            return Response::error("method not allowed", 405);
        }
        let op: LedgerOp = req.json().await?;
        let now_ms = worker::Date::now().as_millis();
        let mut ledger = self.load().await?;
        let expired = !ledger.expire(now_ms, RESERVATION_MAX_AGE_MS).is_empty();
        let (changed, charged, error) = match op {
            LedgerOp::Balance => (false, 0, None),
            LedgerOp::Credit { amount } => {
                ledger.credit(amount);
                (true, 0, None)
            }
            LedgerOp::Reserve { id, amount } => match ledger.reserve(&id, amount, now_ms) {
                Ok(()) => (true, 0, None),
                Err(e) => (false, 0, Some(e)),
            },
            LedgerOp::Settle { id, actual } => match ledger.settle(&id, actual) {
                Ok(c) => (true, c, None),
                Err(e) => (false, 0, Some(e)),
            },
            LedgerOp::Release { id } => match ledger.release(&id) {
                Ok(_) => (true, 0, None),
                Err(e) => (false, 0, Some(e)),
            },
            LedgerOp::Fee { amount } => {
                let c = ledger.debit_fee(amount);
                (true, c, None)
            }
            LedgerOp::Wipe => {
                self.state.storage().delete_all().await?;
                *self.cached.borrow_mut() = Some(Ledger::default());
                return reply(&Ledger::default(), 0, None);
            }
        };
        if changed || expired {
            self.save(&ledger).await?;
        }
        reply(&ledger, charged, error)
    }
}
