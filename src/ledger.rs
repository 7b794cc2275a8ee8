//! Client of the `AccountLedger` Durable Object (one per account). Failures are 503s.

use worker::{Headers, Method, Request, RequestInit};

use crate::durable_objects::{LedgerOp, LedgerReply};
use worker::Env;

use crate::edge::{dependency, Outcome};

pub async fn call(env: &Env, account_id: &str, op: &LedgerOp) -> Outcome<LedgerReply> {
    let ns = env
        .durable_object("ACCOUNT_LEDGER")
        .map_err(dependency("AccountLedger binding"))?;
    let stub = ns
        .id_from_name(account_id)
        .and_then(|id| id.get_stub())
        .map_err(dependency("AccountLedger stub"))?;
    let body = serde_json::to_string(op).map_err(dependency("encode"))?;
    let headers = Headers::new();
    let _ = headers.set("Content-Type", "application/json");
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(body.into()));
    let req = Request::new_with_init("https://ledger/", &init)
        .map_err(dependency("AccountLedger request"))?;
    let mut resp = stub
        .fetch_with_request(req)
        .await
        .map_err(dependency("AccountLedger fetch"))?;
    if resp.status_code() != 200 {
        return Err(dependency("AccountLedger status")(resp.status_code()));
    }
    resp.json::<LedgerReply>()
        .await
        .map_err(dependency("AccountLedger reply"))
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
