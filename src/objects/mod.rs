//! The gateway's Durable Object classes, and the one way the gateway calls them. Each class is a
//! thin shell over its protocol and logic in `gateway_core` (`limits::bucket_ops` for
//! `TokenBucket`, `credits::ledger_ops` for `AccountLedger`): read the clock, load its state
//! (a [`StoredCell`]), apply the operation, write, reply. `Flight` (`cache::flight`) is the
//! exception: it holds no storage and is reached by `fetch`, its followers' answers being
//! streams (see [`flight`]).
//!
//! The gateway reaches the other two by Workers RPC: every class exports one method, `rpc(op)`, which
//! takes the JSON text of one of the class's operations (`BucketOp`, `LedgerOp`) and answers
//! the JSON text of that operation's typed reply (or rejects), so a call builds no `Request`,
//! headers or `Response` on either side (`fetch` is refused). The typed clients are
//! `crate::limits::bucket` and `crate::limits::ledger`.
//! The runtime offers RPC only on classes deriving from `DurableObject`: `src/entry.mjs`
//! (the Worker's entry module) gives the generated classes that prototype.

/// Exports `rpc(op)`, the method the gateway calls, on a class implementing [`Operations`]
/// (defined before the class modules, which use it).
#[rustfmt::skip] // rustfmt formats this body differently on each pass
macro_rules! export_rpc {
    ($class:ident) => {
        #[wasm_bindgen(
            wasm_bindgen_futures = ::worker::wasm_bindgen_futures,
            js_sys = ::worker::js_sys
        )]
        impl $class {
            /// The RPC entry point: `stub.rpc(op)` (see `objects`).
            #[wasm_bindgen(js_name = rpc)]
            pub async fn rpc_call(&self, op: String) -> std::result::Result<JsValue, JsValue> {
                let serve = $crate::objects::serve_rpc(self, &op);
                std::panic::AssertUnwindSafe(serve).await
            }
        }
    };
}

pub mod account_ledger;
pub mod flight;
mod stored;
pub mod token_bucket;

pub use account_ledger::AccountLedger;
pub use flight::Flight;
pub use stored::{ExpiryAlarm, StoredCell};
pub use token_bucket::TokenBucket;

use serde::de::DeserializeOwned;
use serde::Serialize;
use wasm_bindgen::prelude::*;
use worker::{js_sys, Env, Response};

use crate::runtime::{dependency, rpc_call};
use gateway_core::error::ApiResult;

/// A Durable Object stub seen through the RPC method every class here exports.
#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(extends = js_sys::Object)]
    type ObjectRpc;

    #[wasm_bindgen(method, catch, js_name = rpc)]
    fn rpc(this: &ObjectRpc, op: &str) -> Result<js_sys::Promise, JsValue>;
}

/// Sends the operation `op` (its JSON text) to the object named `name` in namespace `binding`
/// and decodes the reply as `R` (`what` names the reply in logs). Any failure (binding, stub,
/// call, rejection, a reply that is not an `R`) is a logged 503: callers fail closed.
pub async fn call<R: DeserializeOwned>(
    env: &Env,
    binding: &'static str,
    name: &str,
    op: &str,
    what: &'static str,
) -> ApiResult<R> {
    let ns = env.durable_object(binding).map_err(dependency(binding))?;
    let stub = ns
        .id_from_name(name)
        .and_then(|id| id.get_stub())
        .map_err(dependency(binding))?;
    let value = rpc_call(stub.into_rpc::<ObjectRpc>().rpc(op))
        .await
        .map_err(dependency(binding))?;
    let text = value
        .as_string()
        .ok_or_else(|| dependency(binding)("reply is not text"))?;
    serde_json::from_str(&text).map_err(dependency(what))
}

/// A class's operations, served over RPC: `rpc(op)` answers the reply's JSON text, or
/// rejects (failure, unknown operation).
pub(crate) trait Operations {
    /// What the class is asked to do (a `gateway_core` operation enum).
    type Op: DeserializeOwned;

    /// Applies `op`; the answer is the JSON text of its reply (see [`reply`]).
    async fn operate(&self, op: Self::Op) -> worker::Result<String>;
}

pub(crate) async fn serve_rpc<O: Operations>(object: &O, op: &str) -> Result<JsValue, JsValue> {
    let op: O::Op = serde_json::from_str(op)
        .map_err(|e| js_sys::Error::new(&format!("unknown operation: {e}")))?;
    match object.operate(op).await {
        Ok(reply) => Ok(reply.into()),
        Err(e) => Err(js_sys::Error::new(&e.to_string()).into()),
    }
}

/// The JSON text of a reply.
pub(crate) fn reply<T: Serialize>(reply: &T) -> worker::Result<String> {
    Ok(serde_json::to_string(reply)?)
}

/// What `fetch` answers: the objects serve their operations over RPC only.
pub(crate) fn refuse_fetch() -> worker::Result<Response> {
    Response::error("this object is reached by RPC: rpc(op)", 404)
}
