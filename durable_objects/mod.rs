//! The gateway's Durable Object classes and the small JSON protocol the gateway speaks to them.
//! Each class is a thin shell: read the clock, load state, call the pure logic, persist, reply.

pub mod account_ledger;
pub mod token_bucket;

pub use account_ledger::AccountLedger;
pub use token_bucket::TokenBucket;

use gateway_core::bucket::Decision;
use gateway_core::tier::Limits;
use serde::{Deserialize, Serialize};
use worker::{Env, Method, Request, RequestInit};

use crate::edge::{dependency, Outcome};

/// POSTs a JSON body to `path` of the object named `name` in namespace `binding` and returns
/// the reply text. Any failure (binding, stub, fetch, non-200) is a logged 503: callers fail closed.
pub async fn post(
    env: &Env,
    binding: &'static str,
    name: &str,
    path: &str,
    body: String,
) -> Outcome<String> {
    let ns = env.durable_object(binding).map_err(dependency(binding))?;
    let stub = ns
        .id_from_name(name)
        .and_then(|id| id.get_stub())
        .map_err(dependency(binding))?;
    // The objects parse the body as JSON whatever its type: no headers to build.
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(body.into()));
    let req = Request::new_with_init(&format!("https://object{path}"), &init)
        .map_err(dependency(binding))?;
    let resp = stub
        .fetch_with_request(req)
        .await
        .map_err(dependency(binding))?;
    if resp.status_code() != 200 {
        return Err(dependency(binding)(resp.status_code()));
    }
    crate::body::text(resp).await.map_err(dependency(binding))
}

/// `POST /take` to a `TokenBucket`.
#[derive(Debug, Serialize, Deserialize)]
pub struct TakeRequest {
    pub cost: u32,
    pub limits: Limits,
}

/// The bucket's answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum TakeReply {
    Decided {
        decision: Decision,
    },
    /// The key was revoked: refuse, whatever the tokens.
    Revoked,
    /// The cost can never fit this bucket.
    InsufficientCapacity {
        burst: u32,
    },
}

/// Operations on an `AccountLedger` (`POST /` with this body).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum LedgerOp {
    Balance,
    Credit {
        amount: u64,
    },
    Reserve {
        id: String,
        amount: u64,
    },
    Settle {
        id: String,
        actual: u64,
    },
    Release {
        id: String,
    },
    Fee {
        amount: u64,
    },
    Wipe,
    /// These operations in order, saved once; the reply is the last one's (a batch inside a
    /// batch is refused: `unsupported_operation`).
    Batch {
        ops: Vec<LedgerOp>,
    },
}

/// The ledger's answer to every operation.
#[derive(Debug, Serialize, Deserialize)]
pub struct LedgerReply {
    pub ok: bool,
    pub balance: u64,
    pub available: u64,
    /// Credits charged by `settle` or `fee`.
    #[serde(default)]
    pub charged: u64,
    /// Why `ok` is false: `insufficient_credits`, `unknown_reservation`, `duplicate_reservation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
