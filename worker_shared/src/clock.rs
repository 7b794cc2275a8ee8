//! The runtime's clock: milliseconds since the epoch, read with `Date.now()` (one call into
//! JavaScript; `worker::Date::now()` builds a `Date` object and reads it back, two calls).
//! On the Workers runtime the clock moves only at I/O, so every read within one burst of
//! work returns the same instant.

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    worker::js_sys::Date::now() as u64
}
