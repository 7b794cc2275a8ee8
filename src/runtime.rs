//! The Workers runtime as the gateway uses it: the clock as text, randomness, Workers RPC
//! calls, and failures of bindings (D1, KV, Durable Objects, brokers) as logged 503s.

use gateway_core::error::ApiResult;

use gateway_core::error::ApiError;
use gateway_core::scrub::scrub;
use worker::console_error;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;

/// Milliseconds since the epoch → `2026-11-22T15:00:00Z`.
pub fn iso8601(ms: u64) -> String {
    // Past `Date`'s range `toISOString` would throw: clamp (callers bound user input first).
    let d = js_date(ms.min(8_640_000_000_000_000));
    let s = d.to_iso_string().as_string().unwrap_or_default();
    // `2026-11-22T15:00:00.123Z` → drop the milliseconds.
    match s.find('.') {
        Some(i) => format!("{}Z", &s[..i]),
        None => s,
    }
}

fn js_date(ms: u64) -> worker::js_sys::Date {
    worker::js_sys::Date::new(&worker::wasm_bindgen::JsValue::from_f64(ms as f64))
}

/// Maps a failure of a binding (D1, KV, Durable Object, broker) to a logged 503.
pub fn dependency<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> ApiError {
    move |e| {
        console_error!("dependency failure: {what}: {}", scrub(&e.to_string()));
        ApiError::unavailable(1)
    }
}

/// 16 random bytes from the runtime's CSPRNG, for ids (zeros, logged, if it failed: never for a
/// secret, which takes [`random_32`]).
pub fn random_16() -> [u8; 16] {
    let mut b = [0u8; 16];
    // getrandom only fails if the runtime has no crypto.getRandomValues; workerd always has it.
    if getrandom::fill(&mut b).is_err() {
        console_error!("getrandom failed");
    }
    b
}

/// 32 random bytes from the runtime's CSPRNG, or an error (never a predictable secret).
pub fn random_32() -> ApiResult<[u8; 32]> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(dependency("getrandom"))?;
    Ok(b)
}

/// Awaits a Workers RPC call (a method of a Durable Object stub or a service binding, as bound
/// by `wasm_bindgen`): its value, or what the rejection (or the failed call) said.
pub async fn rpc_call(call: Result<worker::js_sys::Promise, JsValue>) -> Result<JsValue, String> {
    let promise = call.map_err(|e| js_message(&e))?;
    JsFuture::from(promise).await.map_err(|e| js_message(&e))
}

/// What a rejected call says (an `Error`'s message, or the value itself).
fn js_message(e: &JsValue) -> String {
    e.dyn_ref::<worker::js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| "call failed".into())
}
