//! What the gateway remembers about calls: one usage event per call (never prompt or response
//! text, unless the account opted in to a 200-character prompt prefix) and the 30-day response
//! archive. Both are written off the response path, in one D1 batch.

use gateway_core::cache_control::CacheOutcome;
use serde_json::Value;
use worker::console_error;
use worker::wasm_bindgen::JsValue;

use crate::auth::Caller;
use crate::edge::Gw;

/// Characters of the prompt kept when the account opted in.
pub const PROMPT_PREFIX_CHARS: usize = 200;

/// The usage row of one call, filled in as the call proceeds.
#[derive(Debug, Clone, Default)]
pub struct Event {
    pub endpoint: String,
    pub account_id: String,
    pub key_prefix: String,
    pub providers: String,
    pub cache_status: Option<&'static str>,
    pub cache_tier: Option<&'static str>,
    pub tokens: (u64, u64),
    pub credits: u64,
    pub prompt_prefix: Option<String>,
    /// Set when the call deleted the account: nothing may be written for it afterwards.
    pub discard: bool,
    /// The answer to archive (successful calls only).
    pub archive: Option<String>,
}

impl Event {
    pub fn new(endpoint: &str, caller: &Caller) -> Self {
        Event {
            endpoint: endpoint.to_string(),
            account_id: caller.account_id.clone(),
            key_prefix: caller.prefix.clone(),
            ..Default::default()
        }
    }

    pub fn cache(&mut self, outcome: CacheOutcome) {
        self.cache_status = Some(outcome.status());
        self.cache_tier = outcome.tier().map(|t| t.as_str());
    }

    /// Keeps the first 200 characters of the prompt only if the account opted in.
    pub fn set_prompt(&mut self, caller: &Caller, prompt: &str) {
        if caller.store_prompt_prefix {
            self.prompt_prefix = Some(prompt.chars().take(PROMPT_PREFIX_CHARS).collect());
        }
    }
}

fn s(v: &str) -> JsValue {
    JsValue::from_str(v)
}
fn n(v: u64) -> JsValue {
    JsValue::from_f64(v as f64)
}
fn opt(v: Option<&str>) -> JsValue {
    v.map_or(JsValue::NULL, s)
}

/// Writes the call's usage row, and its archived answer if it has one, after the response is
/// sent: one D1 batch (one round trip) for both.
pub fn usage_later(gw: &Gw, event: Event, status: u16) {
    if event.discard {
        return;
    }
    let Ok(db) = gw.db() else { return };
    let (request_id, now) = (gw.request_id.clone(), gw.now_ms);
    let latency = worker::Date::now().as_millis().saturating_sub(now);
    gw.after(async move {
        let write = async {
            let mut stmts = vec![db
                .prepare(
                    "INSERT INTO usage_events (account_id, key_prefix, request_id, endpoint, providers, cache_status, \
                     cache_tier, status_code, input_tokens, output_tokens, credits, latency_ms, prompt_prefix, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                )
                .bind(&[
                    s(&event.account_id),
                    s(&event.key_prefix),
                    s(&request_id),
                    s(&event.endpoint),
                    s(&event.providers),
                    opt(event.cache_status),
                    opt(event.cache_tier),
                    n(u64::from(status)),
                    n(event.tokens.0),
                    n(event.tokens.1),
                    n(event.credits),
                    n(latency),
                    opt(event.prompt_prefix.as_deref()),
                    n(now),
                ])?];
            if let Some(text) = &event.archive {
                stmts.push(
                    db.prepare(
                        "INSERT INTO response_archive (request_id, account_id, created_at, response) VALUES (?1, ?2, ?3, ?4)",
                    )
                    .bind(&[s(&request_id), s(&event.account_id), n(now), s(text)])?,
                );
            }
            db.batch(stmts).await.map(|_| ())
        };
        if let Err(e) = write.await {
            console_error!("usage/archive write failed: {e}");
        }
    });
}

/// Keeps a successful response (the body the caller got) to archive with the usage row.
pub fn archive_later(event: &mut Event, body: &Value) {
    event.archive = serde_json::to_string(body).ok();
}
