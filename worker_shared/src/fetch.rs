//! Subrequests answered with the runtime's own `Response`, kept as it is: its status, headers
//! and body are read from it directly.
//!
//! worker's `Fetch` and `Fetcher::fetch_request` turn the runtime's answer into worker's
//! `Response` (reading its `cf`, `webSocket`, headers and body on the way), and getting the
//! body back out of that builds a new runtime `Response` around it (`From<Response> for
//! web_sys::Response`): two conversions per hop for nothing either Worker reads. A miss makes
//! two such hops (the gateway's call of its broker, the broker's of the provider), so both go
//! through here, as do the calls of a coalescing flight's object (docs/DECISIONS.md,
//! "Subrequests answered with the runtime's own `Response`").

use worker::js_sys::{self, Promise};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{wasm_bindgen, web_sys, Error, Fetcher, Result, Stub};

/// What answers `fetch(request)` with the runtime's `Response`: a service binding or a
/// Durable Object stub, seen through its own `fetch`.
#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    #[wasm_bindgen(extends = js_sys::Object)]
    type RawFetcher;

    #[wasm_bindgen(method, catch, js_name = fetch)]
    fn fetch(
        this: &RawFetcher,
        request: &web_sys::Request,
    ) -> std::result::Result<Promise, JsValue>;
}

async fn response(promise: Promise) -> Result<web_sys::Response> {
    Ok(JsFuture::from(promise).await?.dyn_into()?)
}

/// A service binding (another Worker) or a Durable Object, called by `fetch`.
pub struct Target(RawFetcher);

impl Target {
    pub fn service(fetcher: Fetcher) -> Target {
        Target(fetcher.into_rpc())
    }

    pub fn object(stub: Stub) -> Target {
        Target(stub.into_rpc())
    }

    /// `request` sent to it.
    pub async fn fetch(&self, request: &web_sys::Request) -> Result<web_sys::Response> {
        response(self.0.fetch(request)?).await
    }
}

/// `request` sent to the network, aborted when `signal` is.
pub async fn global(
    request: &web_sys::Request,
    signal: Option<&web_sys::AbortSignal>,
) -> Result<web_sys::Response> {
    let init = web_sys::RequestInit::new();
    if signal.is_some() {
        init.set_signal(signal);
    }
    let scope: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    response(scope.fetch_with_request_and_init(request, &init)).await
}

/// The value of the header `name` of `resp`, if it has one.
pub fn header(resp: &web_sys::Response, name: &str) -> Option<String> {
    resp.headers().get(name).ok().flatten()
}

/// The whole body of `resp` as text (UTF-8, as `Response.text()` decodes it).
pub async fn text(resp: &web_sys::Response) -> Result<String> {
    let value = JsFuture::from(resp.text()?).await?;
    value
        .as_string()
        .ok_or_else(|| Error::RustError("response body is not text".into()))
}
