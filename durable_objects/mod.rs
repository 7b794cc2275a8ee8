//! The gateway's Durable Object classes and the small JSON protocol the gateway speaks to them.
//! Each class is a thin shell: read the clock, load state, call the pure logic, persist, reply.
//!
//! The gateway reaches them by Workers RPC: every class exports one method, `rpc(path, body)`,
//! which answers the reply's JSON text (or rejects), so a call builds no `Request`, headers or
//! `Response` on either side (`fetch` is refused).
//! The runtime offers RPC only on classes deriving from `DurableObject`: `src/entry.mjs`
//! (the Worker's entry module) gives the generated classes that prototype.

/// Exports `rpc(path, body)`, the method the gateway calls, on a class implementing
/// [`Operations`] (defined before the class modules, which use it).
#[rustfmt::skip] // rustfmt formats this body differently on each pass
macro_rules! export_rpc {
    ($class:ident) => {
        #[wasm_bindgen(
            wasm_bindgen_futures = ::worker::wasm_bindgen_futures,
            js_sys = ::worker::js_sys
        )]
        impl $class {
            /// The RPC entry point: `stub.rpc(path, body)` (see `durable_objects`).
            #[wasm_bindgen(js_name = rpc)]
            pub async fn rpc_call(
                &self,
                path: String,
                body: String,
            ) -> std::result::Result<JsValue, JsValue> {
                let serve = $crate::durable_objects::serve_rpc(self, &path, &body);
                std::panic::AssertUnwindSafe(serve).await
            }
        }
    };
}

pub mod account_ledger;
pub mod token_bucket;

pub use account_ledger::AccountLedger;
pub use token_bucket::TokenBucket;

use gateway_core::limits::bucket::Decision;
use gateway_core::limits::tier::Limits;
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use worker::{js_sys, Env, Response};

use crate::edge::{dependency, rpc_call, Outcome};

/// A Durable Object stub seen through the RPC method every class here exports.
#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(extends = js_sys::Object)]
    type ObjectRpc;

    #[wasm_bindgen(method, catch, js_name = rpc)]
    fn rpc(this: &ObjectRpc, path: &str, body: &str) -> Result<js_sys::Promise, JsValue>;
}

/// Sends the JSON `body` to operation `path` of the object named `name` in namespace `binding`
/// and returns the reply text. Any failure (binding, stub, call, refusal) is a logged 503:
/// callers fail closed.
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
    let value = rpc_call(stub.into_rpc::<ObjectRpc>().rpc(path, &body))
        .await
        .map_err(dependency(binding))?;
    value
        .as_string()
        .ok_or_else(|| dependency(binding)("reply is not text"))
}

/// A class's operations, served over RPC: `rpc(path, body)` answers the reply text, or
/// rejects (failure, unknown operation).
pub(crate) trait Operations {
    /// Runs operation `path` on the JSON `body`; `None` for an unknown operation.
    async fn operate(&self, path: &str, body: &str) -> Option<worker::Result<String>>;
}

pub(crate) async fn serve_rpc<O: Operations>(
    object: &O,
    path: &str,
    body: &str,
) -> Result<JsValue, JsValue> {
    match object.operate(path, body).await {
        Some(Ok(reply)) => Ok(reply.into()),
        Some(Err(e)) => Err(js_sys::Error::new(&e.to_string()).into()),
        None => Err(js_sys::Error::new(&format!("unknown operation {path}")).into()),
    }
}

/// What `fetch` answers: the objects serve their operations over RPC only.
pub(crate) fn refuse_fetch() -> worker::Result<Response> {
    Response::error("this object is reached by RPC: rpc(path, body)", 404)
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
    /// Test hook (dev-only route): the next `count` batches fail before touching the ledger.
    FailBatches {
        count: u32,
    },
}

impl LedgerOp {
    /// Whether applying the operation twice has the effect of applying it once: a reservation
    /// is settled or released at most once (a repeat is refused as `unknown_reservation`). Only
    /// such operations are sent again after a call whose outcome is unknown.
    pub fn is_retry_safe(&self) -> bool {
        matches!(self, LedgerOp::Settle { .. } | LedgerOp::Release { .. })
    }
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
