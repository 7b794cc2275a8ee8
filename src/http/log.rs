//! The request's log line (`gateway_core::usage::log_line`): what it gathers while the request
//! runs (its route, its error code, each broker call and its time) and where it is written.
//!
//! Exactly one line per request. A call with a usage row writes its line with that row
//! ([`for_usage`], from `usage_later`: a streamed answer's at the stream's end, with its credits
//! and how it ended); every other request (no auth, admin, health, a discarded row) writes it
//! when its response leaves ([`at_response`]). A 5xx line goes out at error level. A line
//! left to a usage row that never came (a streamed answer whose end was never recorded) is
//! written when the request's last reference goes, with `stream_end: "unrecorded"`: that is
//! a call left unsettled, worth an alert.

use std::cell::RefCell;
use std::rc::Rc;

use gateway_core::providers::Provider;
use gateway_core::usage::log_line::{self, ProviderCall, RequestLine};
use worker::{console_error, console_log};

use crate::db::usage_log::Event;
use crate::http::context::RequestContext;

/// Who writes the line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Owner {
    /// The response, when it leaves.
    #[default]
    Response,
    /// The call's usage row, written later (a streamed answer, at its end).
    Usage,
    /// Written.
    Done,
}

/// What the line gathers while the request runs. Shared by the request's context and its
/// clones (a streamed answer's end runs on a clone).
#[derive(Debug)]
pub struct RequestLog {
    request_id: String,
    started_ms: u64,
    route: String,
    /// The response's status, once it left.
    status: u16,
    error: Option<&'static str>,
    account_id: Option<String>,
    calls: Vec<ProviderCall>,
    owner: Owner,
}

pub type SharedLog = Rc<RefCell<RequestLog>>;

/// The log of a request that arrived at `started_ms`.
pub fn new_log(request_id: &str, started_ms: u64) -> SharedLog {
    Rc::new(RefCell::new(RequestLog {
        request_id: request_id.to_string(),
        started_ms,
        route: "unrouted".into(),
        status: 0,
        error: None,
        account_id: None,
        calls: Vec::new(),
        owner: Owner::Response,
    }))
}

impl RequestLog {
    fn duration_ms(&self) -> u64 {
        worker_shared::clock::now_ms().saturating_sub(self.started_ms)
    }
}

impl Drop for RequestLog {
    fn drop(&mut self) {
        // Left to a usage row that never came: the call's end was not recorded.
        if self.owner == Owner::Usage {
            write(&RequestLine {
                event: log_line::EVENT,
                request_id: &self.request_id,
                route: &self.route,
                status: self.status,
                error: self.error,
                account_id: self.account_id.as_deref(),
                providers: &self.calls,
                stream_end: Some("unrecorded"),
                duration_ms: self.duration_ms(),
                ..RequestLine::default()
            });
        }
    }
}

impl RequestContext {
    /// Names the request's route (its pattern, never the raw path).
    pub fn log_route(&self, route: String) {
        self.log.borrow_mut().route = route;
    }

    /// Records the error code the request is answered with.
    pub fn log_error(&self, code: &'static str) {
        self.log.borrow_mut().error = Some(code);
    }

    /// Records the calling account, once authenticated.
    pub fn log_account(&self, account_id: &str) {
        self.log.borrow_mut().account_id = Some(account_id.to_string());
    }

    /// The line will be written with the call's usage row, later (a streamed answer).
    pub fn log_deferred(&self) {
        let mut log = self.log.borrow_mut();
        if log.owner == Owner::Response {
            log.owner = Owner::Usage;
        }
    }

    /// Starts timing a broker call: its time and outcome go into the line when the returned
    /// timer is finished, or as `abandoned` when it is dropped first (the gateway stopped
    /// waiting: a timeout, or the caller left).
    pub fn time_call(&self, provider: Provider) -> CallTimer {
        CallTimer {
            log: self.log.clone(),
            provider,
            started_ms: worker_shared::clock::now_ms(),
            done: false,
        }
    }
}

/// A broker call being timed (see [`RequestContext::time_call`]).
pub struct CallTimer {
    log: SharedLog,
    provider: Provider,
    started_ms: u64,
    done: bool,
}

impl CallTimer {
    fn record(&mut self, status: Option<u16>, error: Option<String>) {
        self.done = true;
        let latency_ms = worker_shared::clock::now_ms().saturating_sub(self.started_ms);
        self.log.borrow_mut().calls.push(ProviderCall {
            provider: self.provider,
            latency_ms,
            status,
            error,
        });
    }

    /// The broker answered `status`; `error` is its error code, if it gave one.
    pub fn answered(mut self, status: u16, error: Option<String>) {
        self.record(Some(status), error);
    }

    /// There was no answer (the binding or the call failed).
    pub fn unreachable(mut self) {
        self.record(None, Some("unreachable".into()));
    }
}

impl Drop for CallTimer {
    fn drop(&mut self) {
        if !self.done {
            self.record(None, Some("abandoned".into()));
        }
    }
}

/// A broker's error code for the line: the `error.code` of its JSON body, if it is a code
/// (anything else is `other`: the line never takes more than a name from a body).
pub fn broker_code(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let code = v["error"]["code"].as_str()?;
    Some(log_line::code(code).to_string())
}

fn write(line: &RequestLine) {
    let text = line.to_json();
    if line.is_error() {
        console_error!("{text}");
    } else {
        console_log!("{text}");
    }
}

/// Writes the line of a request whose response leaves now, unless its usage row writes it.
pub fn at_response(cx: &RequestContext, status: u16) {
    let mut log = cx.log.borrow_mut();
    log.status = status;
    if log.owner != Owner::Response {
        return;
    }
    log.owner = Owner::Done;
    write(&RequestLine {
        event: log_line::EVENT,
        request_id: &log.request_id,
        route: &log.route,
        status,
        error: log.error,
        account_id: log.account_id.as_deref(),
        providers: &log.calls,
        duration_ms: log.duration_ms(),
        ..RequestLine::default()
    });
}

/// Writes the line of a call together with its usage row (`event`, answered `status`).
pub fn for_usage(cx: &RequestContext, event: &Event, status: u16) {
    let mut log = cx.log.borrow_mut();
    if log.owner == Owner::Done {
        return;
    }
    log.owner = Owner::Done;
    write(&RequestLine {
        event: log_line::EVENT,
        request_id: &log.request_id,
        route: &event.endpoint,
        status,
        error: log.error,
        account_id: Some(&event.account_id),
        cache_status: event.cache_status,
        cache_tier: event.cache_tier,
        providers: &log.calls,
        credits: Some(event.credits),
        tokens: Some(event.tokens),
        stream_end: event.stream_end,
        duration_ms: log.duration_ms(),
    });
}
