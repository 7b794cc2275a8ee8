//! Client of the `AccountLedger` Durable Object (one per account). Failures are 503s.

use worker::Env;

use crate::durable_objects::{self, LedgerOp, LedgerReply};
use crate::edge::{dependency, Outcome};

pub async fn call(env: &Env, account_id: &str, op: &LedgerOp) -> Outcome<LedgerReply> {
    let body = serde_json::to_string(op).map_err(dependency("encode"))?;
    let text = durable_objects::post(env, "ACCOUNT_LEDGER", account_id, "/", body).await?;
    serde_json::from_str(&text).map_err(dependency("AccountLedger reply"))
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
