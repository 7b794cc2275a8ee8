//! `POST /v1/ask`: validate, look up the cache, then (on a miss) pass the key's token bucket
//! and the account's ledger, fan out to the brokers, and answer in the contract's shape.

use gateway_core::api::ask::{parse_ask, AskRequest, BODY_LIMIT};
use gateway_core::cache::key::{ask_cache_key, CacheKey, Namespace, ScopeKind};
use gateway_core::credits::settlement::{self, Unreported};
use gateway_core::error::ApiError;
use gateway_core::providers::completion::CompletionRequest;
use gateway_core::providers::models::{check_model, default_allowlist};
use serde::Serialize;
use serde_json::{json, Value};
use worker::{Request, Response};

use crate::auth::Caller;
use crate::brokers;
use crate::brokers::{ProviderResult, ResultBody, Timed};
use crate::cache::{Entry, RawEntry};
use crate::db::usage_log;
use crate::db::usage_log::Event;
use crate::flight::Landed;
use crate::http::context::RequestContext;
use crate::http::request::{read_body_capped, require_json};
use crate::http::response::{json_text, set_header};
use crate::limits::{self, Charge, Used, WorstCase};
use crate::pipeline::{self, Endpoint, EventBody, Served, SharedAnswer, Streamed};
use crate::routes::ask_stream;
use gateway_core::broker::BrokerRequest;
use gateway_core::cache::control::{CacheOutcome, RequestCacheMode};
use gateway_core::cache::flight::Outcome;
use gateway_core::error::ApiResult;
use gateway_core::providers::Provider;

pub async fn post(
    cx: &RequestContext,
    mut req: Request,
    caller: &Caller,
    event: &mut Event,
) -> ApiResult<Response> {
    require_json(&req)?;
    let body = read_body_capped(&mut req, BODY_LIMIT).await?;
    let policy = limits::policy(cx, caller);
    let mut ask = parse_ask(&body, policy.max_tokens_cap)?;
    event.providers = ask
        .providers
        .iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(",");
    check_models(&ask)?;
    // Only a prompt that passed validation is kept (`docs/DECISIONS.md`).
    event.set_prompt(caller.store_prompt_prefix, &ask.prompt);

    // An answer paid with the account's own provider key is never shared.
    if ask.providers.iter().any(|p| caller.has_byok(*p)) {
        ask.scope = ScopeKind::Private;
    }
    let key = ask_cache_key(
        &ask.scope.for_account(&caller.account_id),
        &ask.prompt,
        &ask.providers,
        &ask.key_params,
    );
    let mode = pipeline::cache_mode(caller, &req);
    let endpoint = Ask {
        ask,
        key,
        mode,
        free: caller.is_test(),
    };
    pipeline::run(cx, caller, &policy, &endpoint, mode, event).await
}

/// `/v1/ask` in the pipeline: a fanout to the requested providers' brokers.
struct Ask {
    ask: AskRequest,
    key: CacheKey,
    /// How the request asked the cache to take part (what a streamed answer's `done` says).
    mode: RequestCacheMode,
    /// A test key's call: it reserves and costs nothing.
    free: bool,
}

/// What `/v1/ask`'s brokers gave back.
enum Fanout {
    /// Each provider's result with its latency, in the request's provider order.
    Whole(Vec<Timed>),
    /// Asked with `"stream": true`: the brokers are called in their streamed mode as the
    /// events are read (`ask_stream`).
    Streaming {
        cx: RequestContext,
        calls: Vec<(Provider, Result<BrokerRequest, ProviderResult>)>,
    },
}

impl Ask {
    fn completion_requests(&self) -> Vec<(Provider, CompletionRequest)> {
        let a = &self.ask;
        a.providers
            .iter()
            .map(|p| {
                (
                    *p,
                    CompletionRequest {
                        model: a.models[p].clone(),
                        prompt: a.prompt.clone(),
                        system: a.system.clone(),
                        max_tokens: a.max_tokens,
                        temperature: a.temperature,
                        top_p: a.top_p,
                    },
                )
            })
            .collect()
    }
}

impl Endpoint for Ask {
    type Answer = Fanout;

    fn namespace(&self) -> Namespace {
        Namespace::Ask
    }

    fn key(&self) -> &CacheKey {
        &self.key
    }

    fn worst_cases(&self) -> Vec<WorstCase> {
        let a = &self.ask;
        a.providers
            .iter()
            .map(|p| WorstCase {
                provider: *p,
                model: a.models[p].clone(),
                prompt_bytes: a.prompt.len() + a.system.as_ref().map_or(0, String::len),
                max_tokens: a.max_tokens,
            })
            .collect()
    }

    fn answer_hit(
        &self,
        cx: &RequestContext,
        text: String,
        served: Served,
        event: &mut Event,
    ) -> Option<ApiResult<Response>> {
        // The stored results are passed through as they were written: no re-encoding.
        let entry = serde_json::from_str::<RawEntry>(&text).ok()?;
        Some(respond(cx, &self.ask, &served, &entry.results, event))
    }

    async fn call(&self, cx: &RequestContext, caller: &Caller) -> ApiResult<Fanout> {
        let calls = self.completion_requests();
        if self.ask.stream {
            return Ok(Fanout::Streaming {
                cx: cx.clone(),
                calls: brokers::broker_requests(cx, caller, calls).await,
            });
        }
        Ok(Fanout::Whole(brokers::run(cx, caller, calls).await))
    }

    fn take_stream(&self, answer: Fanout) -> Result<Streamed, Fanout> {
        let Fanout::Streaming { cx, calls } = answer else {
            return Err(answer);
        };
        let done = ask_stream::Done {
            request_id: cx.request_id.clone(),
            created_at: cx.now_iso(),
            // As the whole answer's: the cache took no part beyond the request's mode (whether
            // it stores is known at the end, and the body does not say it).
            cache: CacheOutcome::fetched(self.mode, false)
                .body(self.ask.scope.as_str(), self.key.as_str()),
            free: self.free,
            models: self.ask.models.clone(),
            worst: self.worst_cases(),
            order: self.ask.providers.clone(),
            price: limits::price_table(&cx),
        };
        let (body, ended) = ask_stream::events(&cx, calls, done);
        Ok(Streamed::Events { body, ended })
    }

    fn answer_stream(&self, resp: Response, served: Served) -> ApiResult<Response> {
        set_header(resp.headers(), "Content-Type", "text/event-stream");
        set_header(resp.headers(), "Cache-Control", "no-cache");
        answer_headers(&resp, &served);
        Ok(resp)
    }

    /// Each result priced at the model that was asked for, as its reservation was: providers
    /// answer with their own names for it (`gpt-4o-mini-2024-07-18` for `gpt-4o-mini`), which
    /// the price table does not list. A provider that failed after the call may have reached it
    /// (timed out, cut off, unreadable) is charged its worst case; one that refused, nothing.
    fn charges<'a>(&'a self, answer: &'a Fanout, worst: &'a [WorstCase]) -> Vec<Charge<'a>> {
        let Fanout::Whole(answer) = answer else {
            return worst.iter().map(Charge::WorstCase).collect();
        };
        answer
            .iter()
            .filter_map(|t| {
                let provider = t.result.provider;
                match &t.result.outcome {
                    ResultBody::Ok(c) => Some(Charge::Used(Used {
                        provider,
                        model: self.ask.models.get(&provider).unwrap_or(&c.model),
                        tokens: c.tokens,
                    })),
                    ResultBody::Err { error } => match settlement::unreported(&error.code) {
                        Unreported::WorstCase => worst
                            .iter()
                            .find(|w| w.provider == provider)
                            .map(Charge::WorstCase),
                        Unreported::Nothing => None,
                    },
                }
            })
            .collect()
    }

    /// Stored only if every provider answered, and with text (`Completion::is_cacheable`).
    fn entry(&self, answer: &Fanout) -> Option<String> {
        let Fanout::Whole(answer) = answer else {
            return None;
        };
        let cacheable = answer
            .iter()
            .all(|t| t.result.completion().is_some_and(|c| c.is_cacheable()));
        if !cacheable {
            return None;
        }
        serde_json::to_string(&Entry {
            results: answer.iter().map(|t| t.result.clone()).collect(),
        })
        .ok()
    }

    /// An answer whose every provider failed serves nothing (it costs the follower nothing, as
    /// the same call alone would have cost nothing for providers that refused).
    fn serves_answer(&self, shared: &SharedAnswer) -> bool {
        (200..300).contains(&shared.status)
            && serde_json::from_str::<Entry>(&shared.text)
                .is_ok_and(|e| e.results.iter().any(|r| r.completion().is_some()))
    }

    /// Every result, failures included, in the form of a stored entry.
    fn shared(&self, answer: &Fanout) -> Outcome {
        let text = match answer {
            Fanout::Whole(answer) => serde_json::to_string(&Entry {
                results: answer.iter().map(|t| t.result.clone()).collect(),
            })
            .ok(),
            Fanout::Streaming { .. } => None,
        };
        match text {
            Some(text) => Outcome::Answer {
                status: 200,
                text,
                retry_after: None,
            },
            None => Outcome::Error {
                status: 500,
                code: "internal_error".into(),
                message: "internal error".into(),
                hints: Vec::new(),
            },
        }
    }

    fn follows_stream(&self) -> bool {
        self.ask.stream
    }

    /// The leader's `delta` and `result` events as they come, then this caller's own `done`
    /// (its cache status, its fee), with the results the leader's outcome holds; its usage
    /// row and archive are written then. Without the leader's answer (lost mid-answer), an
    /// `error` event instead of the `done`.
    fn follow_stream(
        &self,
        cx: &RequestContext,
        body: EventBody,
        landed: Landed,
        served: Served,
        event: &mut Event,
    ) -> ApiResult<Response> {
        let mut row = std::mem::take(event);
        // The row leaves with the stream's end, so it takes the fee now (the pipeline sets it
        // on `event` after this returns, for the answers whose row stays there).
        row.credits = served.credits;
        event.deferred = true;
        let (created_at, credits) = (cx.now_iso(), served.credits);
        let cache = served
            .outcome
            .body(self.ask.scope.as_str(), served.key.as_str());
        let cx2 = cx.clone();
        let tail = futures::stream::once(async move {
            let landed = landed.borrow_mut().take();
            let results = match &landed {
                Some(Outcome::Answer { text, .. }) => serde_json::from_str::<Value>(text)
                    .ok()
                    .and_then(|mut v| match v.get_mut("results").map(Value::take) {
                        Some(Value::Array(results)) => Some(results),
                        _ => None,
                    }),
                _ => None,
            };
            let Some(results) = results else {
                // No answer came (the leader was lost mid-answer): the events end with an
                // `error`, never with a `done` that would read as a whole answer.
                let (code, message) = match landed {
                    Some(Outcome::Error { code, message, .. }) => (code, message),
                    _ => (
                        "upstream_error".to_string(),
                        "the identical call this one followed ended without its answer".to_string(),
                    ),
                };
                usage_log::usage_later(&cx2, row, 200);
                let error = json!({"error": {"code": code, "message": message}});
                return Ok(ask_stream::event("error", &error.to_string()));
            };
            let body = AskAnswer {
                id: &cx2.request_id,
                created_at,
                cache,
                results: &results,
                usage: Usage { credits },
            }
            .text();
            usage_log::archive_later(&mut row, body.clone());
            usage_log::usage_later(&cx2, row, 200);
            Ok(ask_stream::event("done", &body))
        });
        // Driven to its end whatever the caller does: the fee is debited already, and its row
        // and archive are written by the tail.
        let resp = pipeline::driven(cx, Box::pin(futures::StreamExt::chain(body, tail)))?;
        self.answer_stream(resp, served)
    }

    /// As a hit is served (the JSON answer or its events).
    fn answer_shared(
        &self,
        cx: &RequestContext,
        shared: SharedAnswer,
        served: Served,
        event: &mut Event,
    ) -> ApiResult<Response> {
        self.answer_hit(cx, shared.text, served, event)
            .unwrap_or_else(|| Err(ApiError::internal()))
    }

    fn answer(
        &self,
        cx: &RequestContext,
        answer: Fanout,
        served: Served,
        event: &mut Event,
    ) -> ApiResult<Response> {
        let Fanout::Whole(answer) = answer else {
            return Err(ApiError::internal());
        };
        let results: Vec<Value> = answer.iter().map(ask_stream::result_json).collect();
        respond(cx, &self.ask, &served, &results, event)
    }
}

/// A model the gateway already knows it will refuse is a 403 for the whole request.
fn check_models(ask: &AskRequest) -> ApiResult<()> {
    for (p, model) in &ask.models {
        if let Err(r) = check_model(*p, model, default_allowlist(*p)) {
            return Err(ApiError::model_not_allowed(*p, model, r));
        }
    }
    Ok(())
}

/// The contract's `/v1/ask` answer, serialized once for both the caller and the archive, and
/// for a streamed answer's `done`: one struct, so every form has the same text (its members in
/// this order).
#[derive(Serialize)]
pub(crate) struct AskAnswer<'a, R: Serialize> {
    pub id: &'a str,
    pub created_at: String,
    pub cache: Value,
    pub results: &'a [R],
    pub usage: Usage,
}

#[derive(Serialize)]
pub(crate) struct Usage {
    pub credits: u64,
}

impl<R: Serialize> AskAnswer<'_, R> {
    /// Its JSON text.
    pub fn text(&self) -> String {
        // Strings, numbers and values only: nothing that can fail to serialize.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The contract's answer, archived with the call's usage row: JSON, or (asked with
/// `"stream": true`, a hit) the events of the stored results then `done` with that JSON.
fn respond<R: Serialize>(
    cx: &RequestContext,
    ask: &AskRequest,
    served: &Served,
    results: &[R],
    event: &mut Event,
) -> ApiResult<Response> {
    let key = served.key.as_str();
    let body = AskAnswer {
        id: &cx.request_id,
        created_at: cx.now_iso(),
        cache: served.outcome.body(ask.scope.as_str(), key),
        results,
        usage: Usage {
            credits: served.credits,
        },
    }
    .text();
    let resp = if ask.stream {
        let events = ask_stream::hit_events(results, &body);
        let resp = Response::from_bytes(events).map_err(|_| ApiError::internal())?;
        set_header(resp.headers(), "Content-Type", "text/event-stream");
        set_header(resp.headers(), "Cache-Control", "no-cache");
        resp
    } else {
        json_text(200, body.clone())?
    };
    usage_log::archive_later(event, body);
    answer_headers(&resp, served);
    Ok(resp)
}

/// The cache and rate-limit headers of an answer.
fn answer_headers(resp: &Response, served: &Served) {
    let h = resp.headers();
    set_header(h, "Cache-Status", &served.outcome.header());
    set_header(h, "X-Cache-Key", served.key.as_str());
    for (name, value) in &served.admission.headers {
        set_header(h, name, value);
    }
}
