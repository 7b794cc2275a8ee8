//! The gateway's one way to run a D1 statement: bind values, then read rows, one row or the
//! number of changed rows. Any D1 failure is a logged 503 (fail closed). Binding and the retries
//! (writes after a lock conflict, reads after any failure) are worker-shared's, as the brokers
//! run them; the bound-value limit is the gateway's own.

#[cfg(feature = "dev-hooks")]
use std::cell::Cell;

use gateway_core::usage::packing::D1_VALUE_LIMIT;
use serde::de::DeserializeOwned;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::{js_sys, D1Database, D1PreparedStatement};
use worker_shared::d1::{retry_busy, retry_read};

use crate::runtime::dependency;
use gateway_core::error::ApiResult;

pub use worker_shared::d1::{num, opt_text, text};

const DB: &str = "D1";

#[cfg(feature = "dev-hooks")]
thread_local! {
    /// The largest text value a statement binds: D1's own limit, lowered only by the local
    /// test configuration (`DEV_D1_VALUE_LIMIT`, read in a `dev-hooks` build under
    /// `DEV_MODE=1`) so the suite can reach it.
    static VALUE_LIMIT: Cell<usize> = const { Cell::new(D1_VALUE_LIMIT) };
}

/// The largest text value a statement may bind, in bytes.
#[cfg(feature = "dev-hooks")]
pub fn value_limit() -> usize {
    VALUE_LIMIT.with(Cell::get)
}

/// The largest text value a statement may bind, in bytes: D1's own limit.
#[cfg(not(feature = "dev-hooks"))]
pub fn value_limit() -> usize {
    D1_VALUE_LIMIT
}

/// Lowers the limit for this isolate (local test configuration only, see `RequestContext::new`).
#[cfg(feature = "dev-hooks")]
pub fn set_value_limit(bytes: usize) {
    VALUE_LIMIT.with(|l| l.set(bytes.min(D1_VALUE_LIMIT)));
}

/// `sql` with `args` bound. A text value over the limit is refused here, as D1 would refuse
/// it (its length in UTF-16 units is at most its length in UTF-8 bytes, so nothing D1 takes is
/// refused).
pub fn statement(db: &D1Database, sql: &str, args: &[JsValue]) -> ApiResult<D1PreparedStatement> {
    let limit = value_limit();
    if let Some(units) = args
        .iter()
        .filter_map(|a| a.dyn_ref::<js_sys::JsString>())
        .map(|s| s.length() as usize)
        .find(|units| *units > limit)
    {
        let e = format!("a bound text value of {units} units is over the {limit}-byte limit");
        return Err(dependency(DB)(e));
    }
    worker_shared::d1::statement(db, sql, args).map_err(dependency(DB))
}

/// Every row of the result of a read (again after a failure: see `retry_read`).
pub async fn all<T: DeserializeOwned>(
    db: &D1Database,
    sql: &str,
    args: &[JsValue],
) -> ApiResult<Vec<T>> {
    let st = statement(db, sql, args)?;
    retry_read(|| st.all())
        .await
        .map_err(dependency(DB))?
        .results::<T>()
        .map_err(dependency(DB))
}

/// The first row of a read, if any (again after a failure: see `retry_read`).
pub async fn first<T: DeserializeOwned>(
    db: &D1Database,
    sql: &str,
    args: &[JsValue],
) -> ApiResult<Option<T>> {
    let st = statement(db, sql, args)?;
    retry_read(|| st.first::<T>(None))
        .await
        .map_err(dependency(DB))
}

/// The `n` of a `SELECT COUNT(*) AS n ...` (0 when no row).
pub async fn count(db: &D1Database, sql: &str, args: &[JsValue]) -> ApiResult<u64> {
    #[derive(serde::Deserialize)]
    struct Count {
        n: u64,
    }
    Ok(first::<Count>(db, sql, args).await?.map_or(0, |c| c.n))
}

/// Runs a write; returns how many rows it changed.
pub async fn run(db: &D1Database, sql: &str, args: &[JsValue]) -> ApiResult<usize> {
    let st = statement(db, sql, args)?;
    worker_shared::d1::run(&st).await.map_err(dependency(DB))
}

/// Runs `stmts` as one D1 batch (one transaction), again if it met a lock conflict.
pub async fn batch(db: &D1Database, stmts: Vec<D1PreparedStatement>) -> worker::Result<()> {
    retry_busy(|| db.batch(stmts.clone())).await.map(|_| ())
}
