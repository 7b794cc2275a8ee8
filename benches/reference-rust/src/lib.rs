//! The load benchmark's Rust reference (`scripts/bench.sh`, section d): the miss topology of
//! `benches/reference-worker` (`POST /miss`) written with the `worker` crate and wasm-bindgen, as
//! the gateway and its brokers are, with no gateway code: what the runtime allows a Rust Worker's
//! miss, beside what it allows a JavaScript one.
//!
//! One module plays both Workers (`reference-rust.toml` and `reference-rust-broker.toml`):
//! - `GET /healthz`: the bare route;
//! - `POST /miss` (the front): the body read, two `RefObject` round trips at once by Workers RPC
//!   (each with one storage write, as the key's bucket and the account's ledger reserve), then a
//!   service-binding call to the broker, whose response (JSON or an event stream) is handed back
//!   as it is;
//! - `POST /call` (the broker): the body read, then the outbound fetch named by `x-upstream`,
//!   its response handed back as it is.
//!
//! Both hand the response on through the `worker` crate's `Response`, which builds a new JS
//! `Response` around the old one's body at each hop, as the crate's own `fetch` calls do.
//! `POST /miss-raw` and `POST /call-raw` do the same work with the runtime's own `Response`
//! passed through untouched (`web_sys`), as the JS reference does: the least a Rust Worker can do.

use std::cell::Cell;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use worker::{
    durable_object, event, js_sys, wasm_bindgen_futures, web_sys, Context, DurableObject, Env,
    Fetch, Headers, Method, Request, RequestInit, Response, Result, State,
};

/// The object both round trips reach: a counter kept in storage.
#[durable_object]
pub struct RefObject {
    state: State,
    n: Cell<u64>,
}

impl DurableObject for RefObject {
    fn new(state: State, _env: Env) -> Self {
        RefObject {
            state,
            n: Cell::new(0),
        }
    }

    async fn fetch(&self, _req: Request) -> Result<Response> {
        Response::error("reached by RPC: bump()", 404)
    }
}

#[wasm_bindgen(
    wasm_bindgen_futures = ::worker::wasm_bindgen_futures,
    js_sys = ::worker::js_sys
)]
impl RefObject {
    /// The RPC method: one more, written to storage.
    #[wasm_bindgen(js_name = bump)]
    pub async fn bump(&self) -> std::result::Result<JsValue, JsValue> {
        let n = self.n.get() + 1;
        self.n.set(n);
        self.state
            .storage()
            .put("n", n)
            .await
            .map_err(|e| JsValue::from_str(&e.to_string()))?;
        Ok(JsValue::from_f64(n as f64))
    }
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(extends = js_sys::Object)]
    type RefObjectRpc;

    #[wasm_bindgen(method, catch, js_name = bump)]
    fn bump(this: &RefObjectRpc) -> std::result::Result<js_sys::Promise, JsValue>;
}

/// One round trip to the object named `name`.
async fn bump(env: &Env, name: &str) -> Result<()> {
    let stub = env
        .durable_object("REF_OBJECT")?
        .id_from_name(name)?
        .get_stub()?;
    let promise = stub.into_rpc::<RefObjectRpc>().bump()?;
    JsFuture::from(promise).await?;
    Ok(())
}

/// The runtime's `fetch`, on a service binding and globally, answering its own `Response`.
#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(extends = js_sys::Object)]
    type RawFetcher;

    #[wasm_bindgen(method, catch, js_name = fetch)]
    fn fetch(
        this: &RawFetcher,
        request: &web_sys::Request,
    ) -> std::result::Result<js_sys::Promise, JsValue>;

    #[wasm_bindgen(catch, js_name = fetch)]
    fn global_fetch(request: &web_sys::Request) -> std::result::Result<js_sys::Promise, JsValue>;
}

/// The runtime's `Response` a fetch's promise settles with.
async fn raw_response(promise: js_sys::Promise) -> Result<web_sys::Response> {
    Ok(JsFuture::from(promise).await?.dyn_into()?)
}

/// The upstream URL both roles pass on (`x-upstream`), read only by the routes that call it.
fn upstream(req: &Request) -> Result<String> {
    Ok(req.headers().get("x-upstream")?.unwrap_or_default())
}

/// A JSON POST of `body` to `url` with `headers`.
fn post(url: &str, headers: Headers, body: String) -> Result<Request> {
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(JsValue::from_str(&body)));
    Request::new_with_init(url, &init)
}

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, _ctx: Context) -> Result<web_sys::Response> {
    let path = req.path();
    let raw = path.ends_with("-raw");
    match (req.method(), path.as_str()) {
        (Method::Get, "/healthz") => Response::ok("{\"ok\":true}").map(Into::into),
        (Method::Post, "/miss" | "/miss-raw") => {
            let upstream = upstream(&req)?;
            let body = req.text().await?;
            // `x-no-objects` (by hand, not by bench.sh): the topology without its two round
            // trips, which says what they cost it.
            if !req.headers().has("x-no-objects")? {
                let (key, account) = futures::join!(bump(&env, "key"), bump(&env, "account"));
                key.and(account)?;
            }
            let headers = Headers::new();
            headers.set("Content-Type", "application/json")?;
            headers.set("x-upstream", &upstream)?;
            let broker = env.service("BROKER")?;
            if raw {
                let call = post("https://broker/call-raw", headers, body)?;
                raw_response(broker.into_rpc::<RawFetcher>().fetch(call.inner())?).await
            } else {
                let call = post("https://broker/call", headers, body)?;
                broker.fetch_request(call).await.map(Into::into)
            }
        }
        (Method::Post, "/call" | "/call-raw") => {
            let upstream = upstream(&req)?;
            let body = req.text().await?;
            let headers = Headers::new();
            headers.set("Content-Type", "application/json")?;
            headers.set("Authorization", "Bearer reference")?;
            let call = post(&upstream, headers, body)?;
            if raw {
                raw_response(global_fetch(call.inner())?).await
            } else {
                Fetch::Request(call).send().await.map(Into::into)
            }
        }
        _ => Response::error("not found", 404).map(Into::into),
    }
}
