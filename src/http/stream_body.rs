//! A streamed response's body as the runtime's own byte pipe (`IdentityTransformStream`): the
//! gateway writes each chunk into its writable side, and the runtime sends the readable side
//! with no JavaScript stream on the way. A body built from a Rust stream (`Response::from_stream`)
//! costs each chunk a pull through a JS `ReadableStream` and a future; on a streamed miss that
//! delayed the first event by about 0.3 ms p50 (`docs/DECISIONS.md`, "The streamed body").
//!
//! Writes are queued, never awaited in turn: the writer is never held up by a slow caller, nor
//! by one the runtime stopped reading without telling. A caller that went away (its side
//! cancelled) is seen as a rejected write or a rejected `closed`, after which
//! [`BodyWriter::write`] says so.

use worker::js_sys::Uint8Array;
use worker::wasm_bindgen::prelude::*;
use worker::web_sys::ReadableStream;

#[wasm_bindgen(
    wasm_bindgen = ::worker::wasm_bindgen,
    js_sys = ::worker::js_sys,
    inline_js = r#"
export function open_body() {
  const { readable, writable } = new IdentityTransformStream();
  const body = { readable, writer: writable.getWriter(), gone: false };
  body.writer.closed.catch(() => { body.gone = true; });
  return body;
}
export function body_readable(body) { return body.readable; }
export function write_body(body, chunk) {
  if (body.gone) return false;
  body.writer.write(chunk).catch(() => { body.gone = true; });
  return true;
}
export function close_body(body) { body.writer.close().catch(() => {}); }
export function abort_body(body) { body.writer.abort().catch(() => {}); }
"#
)]
extern "C" {
    type JsBody;
    #[wasm_bindgen(catch)]
    fn open_body() -> Result<JsBody, JsValue>;
    fn body_readable(body: &JsBody) -> ReadableStream;
    fn write_body(body: &JsBody, chunk: &Uint8Array) -> bool;
    fn close_body(body: &JsBody);
    fn abort_body(body: &JsBody);
}

/// The writable side of a streamed body.
pub struct BodyWriter(JsBody);

impl BodyWriter {
    /// Queues `chunk` for the caller: `false` (and nothing queued) once the caller has gone.
    pub fn write(&self, chunk: &[u8]) -> bool {
        // Copied out of wasm memory: the write completes after this call returns.
        write_body(&self.0, &Uint8Array::from(chunk))
    }

    /// Ends the body after the chunks queued so far.
    pub fn close(self) {
        close_body(&self.0);
    }

    /// Breaks the body off: the caller sees it fail, not end.
    pub fn abort(self) {
        abort_body(&self.0);
    }
}

/// A new body: the stream a response is built on, and its writer.
pub fn stream_body() -> Result<(ReadableStream, BodyWriter), JsValue> {
    let body = open_body()?;
    Ok((body_readable(&body), BodyWriter(body)))
}
