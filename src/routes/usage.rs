//! `GET /v1/usage`: the account's usage totals and events over a window, paginated.

use crate::routes::archive::own_key;
use gateway_core::error::ApiError;
use serde::Deserialize;
use serde_json::{json, Value};
use worker::Response;

use crate::auth::Caller;
use crate::db::d1;
use crate::db::d1::{num as n, opt_text as opt, text as s};
use crate::http::context::RequestContext;
use crate::http::response::json;
use crate::runtime::iso8601;
use gateway_core::error::ApiResult;

/// The latest instant a JavaScript `Date` can hold (epoch ms): bounds past it are refused.
const MAX_TIME_MS: u64 = 8_640_000_000_000_000;

/// Parses a time bound: epoch milliseconds or an ISO-8601 date-time, within `Date`'s range.
fn time_param(name: &str, v: &str) -> ApiResult<u64> {
    let ms = match v.parse::<u64>() {
        Ok(ms) => Some(ms),
        Err(_) => {
            let ms = worker::js_sys::Date::parse(v);
            (ms.is_finite() && ms >= 0.0).then_some(ms as u64)
        }
    };
    if let Some(ms) = ms.filter(|ms| *ms <= MAX_TIME_MS) {
        Ok(ms)
    } else {
        Err(ApiError::invalid_param(
            name,
            format!("`{name}` must be epoch milliseconds or an ISO-8601 time"),
        ))
    }
}

/// `GET /v1/usage?from=&to=&limit=&cursor=&endpoint=`: totals over the window, per UTC day,
/// and the newest events, paginated by `cursor` (the `next_cursor` of the previous page);
/// `endpoint` (a row's endpoint, such as `POST /v1/ask`) narrows all three.
pub async fn get_usage(
    cx: &RequestContext,
    caller: &Caller,
    query: &[(String, String)],
) -> ApiResult<Response> {
    let mut from = 0u64;
    let mut to = cx.now_ms + 1;
    let mut limit = 50u64;
    let mut cursor = i64::MAX as u64;
    let mut endpoint: Option<String> = None;
    for (k, v) in query {
        match k.as_str() {
            "from" => from = time_param("from", v)?,
            "to" => to = time_param("to", v)?,
            "limit" => {
                limit = v
                    .parse::<u64>()
                    .ok()
                    .filter(|l| (1..=500).contains(l))
                    .ok_or_else(|| ApiError::invalid_param("limit", "`limit` must be 1..=500"))?
            }
            "cursor" => {
                cursor = v
                    .parse::<u64>()
                    .ok()
                    .filter(|c| *c <= i64::MAX as u64)
                    .ok_or_else(|| ApiError::invalid_param("cursor", "`cursor` is not valid"))?
            }
            "endpoint" => {
                if v.is_empty() || v.len() > 64 {
                    return Err(ApiError::invalid_param(
                        "endpoint",
                        "`endpoint` is a usage row's endpoint, such as `POST /v1/ask`",
                    ));
                }
                endpoint = Some(v.clone());
            }
            other => {
                return Err(ApiError::invalid_param(
                    &other.chars().take(40).collect::<String>(),
                    "unknown query parameter; expected from, to, limit, cursor, endpoint",
                ))
            }
        }
    }
    let db = cx.db()?;
    #[derive(Deserialize)]
    struct Totals {
        calls: f64,
        input_tokens: Option<f64>,
        output_tokens: Option<f64>,
        credits: Option<f64>,
        cache_hits: Option<f64>,
    }
    let totals = d1::first::<Totals>(
        &db,
        "SELECT COUNT(*) AS calls, SUM(input_tokens) AS input_tokens, SUM(output_tokens) AS output_tokens, \
             SUM(credits) AS credits, SUM(cache_status = 'hit') AS cache_hits FROM usage_events \
             WHERE account_id = ?1 AND created_at >= ?2 AND created_at < ?3 \
             AND (?4 IS NULL OR key_prefix = ?4) AND (?5 IS NULL OR endpoint = ?5)",
        &[s(&caller.account_id), n(from), n(to), opt(own_key(caller)), opt(endpoint.as_deref())],
    )
    .await?;
    #[derive(Deserialize)]
    struct Day {
        day: f64,
        calls: f64,
        cache_hits: Option<f64>,
        coalesced: Option<f64>,
        credits: Option<f64>,
    }
    let days = d1::all::<Day>(
        &db,
        "SELECT created_at / 86400000 AS day, COUNT(*) AS calls, SUM(cache_status = 'hit') AS cache_hits, \
             SUM(cache_status = 'coalesced') AS coalesced, SUM(credits) AS credits FROM usage_events \
             WHERE account_id = ?1 AND created_at >= ?2 AND created_at < ?3 \
             AND (?4 IS NULL OR key_prefix = ?4) AND (?5 IS NULL OR endpoint = ?5) \
             GROUP BY day ORDER BY day",
        &[s(&caller.account_id), n(from), n(to), opt(own_key(caller)), opt(endpoint.as_deref())],
    )
    .await?;
    let days: Vec<Value> = days
        .iter()
        .map(|d| {
            json!({
                "day": iso8601(d.day as u64 * 86_400_000)[..10].to_string(),
                "calls": d.calls as u64,
                "cache_hits": d.cache_hits.unwrap_or(0.0) as u64,
                "coalesced": d.coalesced.unwrap_or(0.0) as u64,
                "credits": d.credits.unwrap_or(0.0) as u64,
            })
        })
        .collect();
    #[derive(Deserialize)]
    struct Row {
        id: f64,
        key_prefix: String,
        request_id: String,
        endpoint: String,
        providers: String,
        cache_status: Option<String>,
        cache_tier: Option<String>,
        status_code: f64,
        input_tokens: f64,
        output_tokens: f64,
        credits: f64,
        latency_ms: f64,
        prompt_prefix: Option<String>,
        created_at: f64,
        stream_end: Option<String>,
    }
    let rows = d1::all::<Row>(
        &db,
        "SELECT id, key_prefix, request_id, endpoint, providers, cache_status, cache_tier, status_code, \
             input_tokens, output_tokens, credits, latency_ms, prompt_prefix, created_at, stream_end FROM usage_events \
             WHERE account_id = ?1 AND created_at >= ?2 AND created_at < ?3 AND id < ?4 \
             AND (?6 IS NULL OR key_prefix = ?6) AND (?7 IS NULL OR endpoint = ?7) \
             ORDER BY id DESC LIMIT ?5",
        &[
            s(&caller.account_id),
            n(from),
            n(to),
            n(cursor),
            n(limit),
            opt(own_key(caller)),
            opt(endpoint.as_deref()),
        ],
    )
    .await?;
    let next_cursor = (rows.len() as u64 == limit)
        .then(|| rows.last().map(|r| r.id as u64))
        .flatten();
    let events: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut e = json!({
                "request_id": r.request_id,
                "key_prefix": r.key_prefix,
                "endpoint": r.endpoint,
                "providers": r.providers.split(',').filter(|p| !p.is_empty()).collect::<Vec<_>>(),
                "cache": {"status": r.cache_status, "tier": r.cache_tier},
                "status": r.status_code as u64,
                "tokens": {"input": r.input_tokens as u64, "output": r.output_tokens as u64},
                "credits": r.credits as u64,
                "latency_ms": r.latency_ms as u64,
                "created_at": iso8601(r.created_at as u64),
            });
            if let Some(p) = &r.prompt_prefix {
                e["prompt_prefix"] = json!(p);
            }
            if let Some(end) = &r.stream_end {
                e["stream_end"] = json!(end);
            }
            e
        })
        .collect();
    let t = totals.unwrap_or(Totals {
        calls: 0.0,
        input_tokens: None,
        output_tokens: None,
        credits: None,
        cache_hits: None,
    });
    json(
        200,
        &json!({
            "account_id": caller.account_id,
            "from": iso8601(from),
            "to": iso8601(to),
            "totals": {
                "calls": t.calls as u64,
                "cache_hits": t.cache_hits.unwrap_or(0.0) as u64,
                "input_tokens": t.input_tokens.unwrap_or(0.0) as u64,
                "output_tokens": t.output_tokens.unwrap_or(0.0) as u64,
                "credits": t.credits.unwrap_or(0.0) as u64,
            },
            "days": days,
            "events": events,
            "next_cursor": next_cursor.map(|c| c.to_string()),
        }),
    )
}
