//! The drop-in provider endpoints, `POST /v1/chat/completions` (OpenAI) and `POST /v1/messages`
//! (Anthropic): the official SDKs work by changing only their base URL. The body is forwarded
//! to the provider's broker byte for byte and the provider's answer comes back as it is, with
//! the same cache, rate limits, credits and metering as `/v1/ask`, and errors in a shape both
//! SDKs read.

use gateway_core::api::dropin::stream::synthesize;
use gateway_core::api::dropin::{self, Dialect, SCOPE_HEADER};
use gateway_core::broker::passthrough::{BETA_HEADER, FORWARDED_HEADERS};
use gateway_core::cache::key::{request_cache_key, CacheKey, Namespace, ScopeKind};
use gateway_core::error::ApiError;
use gateway_core::providers::models::default_allowlist;
use gateway_core::providers::Provider;
use serde_json::Value;
use worker::{Request, Response};

use crate::auth::Caller;
use crate::brokers;
use crate::brokers::{Passthrough, Upstream};
use crate::db::sealed_keys;
use crate::db::usage_log::Event;
use crate::flight::Landed;
use crate::http::context::RequestContext;
use crate::http::request::{read_body_capped, require_json};
use crate::http::response::set_header;
use crate::limits::{self, Charge, Used, WorstCase};
use crate::pipeline::{self, Endpoint, EventBody, RelayStream, Served, SharedAnswer, Streamed};
use crate::relay;
use gateway_core::cache::flight::Outcome;
use gateway_core::error::ApiResult;

/// One drop-in call, through the pipeline (as `/v1/ask`: a hit takes no bucket token).
///
/// Scope: the `x-cache-scope` header (`shared` by default). An account that brought its own
/// key for this provider is always served from its private scope: that answer was paid with
/// its own key. Test keys neither read nor write the cache, so a synthetic answer is never
/// served to a live key.
pub async fn post(
    cx: &RequestContext,
    mut req: Request,
    caller: &Caller,
    event: &mut Event,
    dialect: Dialect,
) -> ApiResult<Response> {
    event.endpoint = dialect.endpoint().to_string();
    require_json(&req)?;
    let body = read_body_capped(&mut req, dropin::BODY_LIMIT).await?;
    let policy = limits::policy(cx, caller).in_dialect(dialect.rate_headers());
    let provider = dialect.provider();
    let parsed = dropin::parse_request(
        dialect,
        &body,
        default_allowlist(provider),
        policy.max_tokens_cap,
    )?;
    event.providers = provider.as_str().to_string();
    let asked = scope_header(&req)?;
    // Only a prompt that passed validation is kept (`docs/DECISIONS.md`).
    event.set_prompt(caller.store_prompt_prefix, &parsed.last_user_text);
    let sealed = if caller.is_test() || !caller.has_byok(provider) {
        None
    } else {
        sealed_keys::sealed(cx, &caller.account_id, provider).await?
    };
    // On the platform's provider key, only the features the gateway checks and bills; a call
    // on the account's own key (BYOK) pays its provider itself.
    if sealed.is_none() {
        if let Value::Object(body) = &parsed.value {
            let beta = req.headers().get(BETA_HEADER).ok().flatten();
            dropin::check_features(dialect, body, beta.as_deref())?;
        }
    }
    let scope = if sealed.is_some() {
        ScopeKind::Private
    } else {
        asked
    };
    // The headers forwarded upstream change the answer (`anthropic-beta` turns features on),
    // so they are part of the key: `[body, {header: value}]` when there are any (a body is a
    // JSON object, so the two shapes never meet), the body alone otherwise.
    let forward: Vec<(&'static str, String)> = FORWARDED_HEADERS
        .iter()
        .filter_map(|name| req.headers().get(name).ok().flatten().map(|v| (*name, v)))
        .collect();
    let keyed = if forward.is_empty() {
        parsed.value
    } else {
        let headers: serde_json::Map<String, Value> = forward
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.clone())))
            .collect();
        Value::Array(vec![parsed.value, Value::Object(headers)])
    };
    let namespace = dialect.namespace();
    let key = request_cache_key(
        namespace.as_str(),
        &scope.for_account(&caller.account_id),
        &keyed,
    );
    let call = DropIn {
        namespace,
        provider,
        key,
        scope,
        model: parsed.model,
        output_budget: parsed.output_budget,
        sealed,
        forward,
        dialect,
        stream: parsed.stream,
        include_usage: parsed.include_usage,
        // An OpenAI request naming no output cap is forwarded with the tier's (and a stream
        // asks for its usage chunk).
        body: parsed.forward_body.unwrap_or(body),
    };
    let mode = pipeline::cache_mode(caller, &req);
    pipeline::run(cx, caller, &policy, &call, mode, event).await
}

/// A drop-in call in the pipeline: the body forwarded to one provider's broker as it is.
struct DropIn {
    namespace: Namespace,
    provider: Provider,
    key: CacheKey,
    scope: ScopeKind,
    model: String,
    output_budget: u64,
    /// The account's own key for this provider, sealed (BYOK).
    sealed: Option<String>,
    forward: Vec<(&'static str, String)>,
    body: Vec<u8>,
    dialect: Dialect,
    /// The caller asked for an event stream.
    stream: bool,
    /// The caller asked for OpenAI's usage chunk.
    include_usage: bool,
}

impl DropIn {
    /// A whole answer (stored, or the broker's synthetic one) in the form the caller asked:
    /// as it is, or, for a stream, as the provider's event sequence synthesized from it.
    fn in_form(
        &self,
        status: u16,
        text: String,
        served: &Served,
        retry_after: Option<String>,
    ) -> ApiResult<Response> {
        if !(self.stream && (200..300).contains(&status)) {
            return respond(status, text, served, self.scope, retry_after);
        }
        let events = synthesize(self.dialect, &text, self.include_usage).map_err(|e| {
            worker::console_error!("could not synthesize a stream from an answer: {e}");
            ApiError::internal()
        })?;
        let resp = Response::from_bytes(events)
            .map_err(|_| ApiError::internal())?
            .with_status(status);
        stream_headers(&resp, served, self.scope);
        Ok(resp)
    }
}

/// The headers of an event-stream answer: its type, no caching or buffering on the way, and
/// the gateway's cache and rate-limit headers.
fn stream_headers(resp: &Response, served: &Served, scope: ScopeKind) {
    let h = resp.headers();
    set_header(h, "Content-Type", "text/event-stream");
    set_header(h, "Cache-Control", "no-cache");
    set_header(h, "Cache-Status", &served.outcome.header());
    set_header(h, "X-Cache-Key", served.key.as_str());
    set_header(h, "X-Cache-Scope", scope.as_str());
    for (name, value) in &served.admission.headers {
        set_header(h, name, value);
    }
}

impl Endpoint for DropIn {
    type Answer = Upstream;

    fn namespace(&self) -> Namespace {
        self.namespace
    }

    fn key(&self) -> &CacheKey {
        &self.key
    }

    fn worst_cases(&self) -> Vec<WorstCase> {
        vec![WorstCase {
            provider: self.provider,
            model: self.model.clone(),
            // The whole body, not only the messages' text: tool definitions, response formats
            // and the like are billed as input too (a cost past the reservation is still
            // charged, from what the balance has beyond other calls' reservations).
            prompt_bytes: self.body.len(),
            max_tokens: u32::try_from(self.output_budget).unwrap_or(u32::MAX),
        }]
    }

    fn answer_hit(
        &self,
        _gw: &RequestContext,
        text: String,
        served: Served,
        _event: &mut Event,
    ) -> Option<ApiResult<Response>> {
        Some(self.in_form(200, text, &served, None))
    }

    async fn call(&self, cx: &RequestContext, caller: &Caller) -> ApiResult<Upstream> {
        brokers::passthrough(
            cx,
            self.provider,
            &caller.account_id,
            caller.is_test(),
            self.sealed.as_deref(),
            &self.forward,
            &self.body,
        )
        .await
        .map_err(not_retried_for_nothing)
    }

    /// The usage the provider told; a success without one (unreadable) is charged its worst
    /// case, an upstream refusal (4xx/5xx, which providers do not bill) nothing.
    fn charges<'a>(&'a self, answer: &'a Upstream, worst: &'a [WorstCase]) -> Vec<Charge<'a>> {
        let Upstream::Whole(answer) = answer else {
            return worst.iter().map(Charge::WorstCase).collect();
        };
        match answer.tokens {
            Some(tokens) => vec![Charge::Used(Used {
                provider: self.provider,
                model: &self.model,
                tokens,
            })],
            None if (200..300).contains(&answer.status) => {
                worst.iter().map(Charge::WorstCase).collect()
            }
            None => Vec::new(),
        }
    }

    /// A successful answer with its usage is stored as the provider gave it.
    fn entry(&self, answer: &Upstream) -> Option<String> {
        let Upstream::Whole(answer) = answer else {
            return None;
        };
        succeeded(answer).then(|| answer.body.clone())
    }

    fn take_stream(&self, answer: Upstream) -> Result<Streamed, Upstream> {
        match answer {
            Upstream::Stream { status, body } => Ok(Streamed::Relay(RelayStream {
                status,
                body,
                dialect: self.dialect,
                strip_usage: self.dialect == Dialect::OpenAiChat && !self.include_usage,
                provider: self.provider,
                model: self.model.clone(),
            })),
            whole => Err(whole),
        }
    }

    fn answer_stream(&self, resp: Response, served: Served) -> ApiResult<Response> {
        stream_headers(&resp, &served, self.scope);
        Ok(resp)
    }

    fn follows_stream(&self) -> bool {
        self.stream
    }

    /// The provider's answer as it came: status, body and its retry hint.
    fn shared(&self, answer: &Upstream) -> Outcome {
        match answer {
            Upstream::Whole(a) => Outcome::Answer {
                status: a.status,
                text: a.body.clone(),
                retry_after: a.retry_after.clone().filter(|_| !succeeded(a)),
            },
            Upstream::Stream { .. } => Outcome::Error {
                status: 500,
                code: "internal_error".into(),
                message: "internal error".into(),
                hints: Vec::new(),
            },
        }
    }

    fn answer_shared(
        &self,
        _gw: &RequestContext,
        shared: SharedAnswer,
        served: Served,
        _event: &mut Event,
    ) -> ApiResult<Response> {
        self.in_form(shared.status, shared.text, &served, shared.retry_after)
    }

    /// The leader's events relayed as this caller asked them (its own usage-chunk choice).
    fn follow_stream(
        &self,
        cx: &RequestContext,
        body: EventBody,
        _landed: Landed,
        served: Served,
        _event: &mut Event,
    ) -> ApiResult<Response> {
        let strip = self.dialect == Dialect::OpenAiChat && !self.include_usage;
        let (body, _ended) =
            relay::relay(self.dialect, body, strip, pipeline::relay_bounds(cx), None);
        let resp = Response::from_stream(body).map_err(|_| ApiError::internal())?;
        stream_headers(&resp, &served, self.scope);
        Ok(resp)
    }

    fn answer(
        &self,
        _gw: &RequestContext,
        answer: Upstream,
        served: Served,
        _event: &mut Event,
    ) -> ApiResult<Response> {
        let Upstream::Whole(answer) = answer else {
            return Err(ApiError::internal());
        };
        // The upstream's own retry hint, on its refusals only.
        let ok = succeeded(&answer);
        let retry_after = answer.retry_after.filter(|_| !ok);
        self.in_form(answer.status, answer.body, &served, retry_after)
    }
}

/// Whether the upstream answered with success and told its usage (what may be stored).
fn succeeded(answer: &Passthrough) -> bool {
    (200..300).contains(&answer.status) && answer.tokens.is_some()
}

/// The `x-cache-scope` request header: `shared` (default) or `private`; anything else is a 400.
fn scope_header(req: &Request) -> ApiResult<ScopeKind> {
    match req.headers().get(SCOPE_HEADER).ok().flatten() {
        None => Ok(ScopeKind::Shared),
        Some(v) => ScopeKind::parse(v.trim()).ok_or_else(|| {
            ApiError::invalid_request("the x-cache-scope header must be `shared` or `private`")
                .with("header", SCOPE_HEADER)
        }),
    }
}

/// The provider's answer as it is, with the gateway's cache and rate-limit headers.
fn respond(
    status: u16,
    body: String,
    served: &Served,
    scope: ScopeKind,
    retry_after: Option<String>,
) -> ApiResult<Response> {
    let resp = Response::ok(body)
        .map_err(|_| ApiError::internal())?
        .with_status(status);
    let h = resp.headers();
    set_header(h, "Content-Type", "application/json");
    set_header(h, "Cache-Status", &served.outcome.header());
    set_header(h, "X-Cache-Key", served.key.as_str());
    set_header(h, "X-Cache-Scope", scope.as_str());
    for (name, value) in &served.admission.headers {
        set_header(h, name, value);
    }
    if let Some(r) = retry_after {
        set_header(h, "Retry-After", &r);
    }
    Ok(resp)
}

/// On the drop-in paths and the SDKs' other paths (`Dialect::of_request`), errors use the body
/// both SDKs read (see [`dropin::error_body`]):
/// `error.type` beside `code` and `message`, and Anthropic's top-level `"type": "error"`. Every
/// Anthropic answer, error or not, also carries the request's id as `request-id`, where the
/// Anthropic SDK reads a call's id (`message._request_id`, an error's `request_id`).
pub fn in_dialect(
    dialect: Option<Dialect>,
    result: ApiResult<Response>,
    request_id: &str,
) -> ApiResult<Response> {
    let Some(dialect) = dialect else {
        return result;
    };
    let resp = match result {
        Ok(resp) => resp,
        Err(e) => {
            let resp = Response::from_json(&dropin::error_body(dialect, &e))
                .map_err(|_| ApiError::internal())?
                .with_status(e.status);
            let h = resp.headers();
            set_header(h, "X-Request-Id", request_id);
            for (name, value) in &e.headers {
                set_header(h, name, value);
            }
            resp
        }
    };
    if dialect == Dialect::AnthropicMessages {
        set_header(resp.headers(), "request-id", request_id);
    }
    Ok(resp)
}

/// An upstream failure the SDKs' automatic retries (twice, on any 5xx) would only repeat, though
/// it costs nothing: the platform's own key refused, or its quota there exhausted. It carries
/// `x-should-retry: false` (one charged its worst case gets it from the pipeline, for that
/// charge); a timeout's message says a long answer can be streamed.
fn not_retried_for_nothing(mut e: ApiError) -> ApiError {
    if e.code == "upstream_timeout" {
        e.message
            .push_str("; stream a long answer (`\"stream\": true`): a stream is bounded by its silences, not its length");
    }
    if matches!(e.code, "upstream_auth_failed" | "upstream_quota_exhausted") {
        e.never_retried()
    } else {
        e
    }
}
