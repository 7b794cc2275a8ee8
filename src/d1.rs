//! The gateway's one way to run a D1 statement: bind values, then read rows, one row or the
//! number of changed rows. Any D1 failure is a logged 503 (fail closed).

use serde::de::DeserializeOwned;
use worker::wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement};

use crate::edge::{dependency, Outcome};

const DB: &str = "D1";

/// A text parameter.
pub fn text(v: &str) -> JsValue {
    JsValue::from_str(v)
}

/// A numeric parameter (JS numbers: exact up to 2^53).
pub fn num(v: u64) -> JsValue {
    JsValue::from_f64(v as f64)
}

/// A nullable text parameter.
pub fn opt_text(v: Option<&str>) -> JsValue {
    v.map_or(JsValue::NULL, text)
}

/// `sql` with `args` bound.
pub fn statement(db: &D1Database, sql: &str, args: &[JsValue]) -> Outcome<D1PreparedStatement> {
    db.prepare(sql).bind(args).map_err(dependency(DB))
}

/// Every row of the result.
pub async fn all<T: DeserializeOwned>(
    db: &D1Database,
    sql: &str,
    args: &[JsValue],
) -> Outcome<Vec<T>> {
    statement(db, sql, args)?
        .all()
        .await
        .map_err(dependency(DB))?
        .results::<T>()
        .map_err(dependency(DB))
}

/// The first row, if any.
pub async fn first<T: DeserializeOwned>(
    db: &D1Database,
    sql: &str,
    args: &[JsValue],
) -> Outcome<Option<T>> {
    statement(db, sql, args)?
        .first::<T>(None)
        .await
        .map_err(dependency(DB))
}

/// Runs a write; returns how many rows it changed.
pub async fn run(db: &D1Database, sql: &str, args: &[JsValue]) -> Outcome<usize> {
    let r = statement(db, sql, args)?
        .run()
        .await
        .map_err(dependency(DB))?;
    Ok(r.meta().ok().flatten().and_then(|m| m.changes).unwrap_or(0))
}
