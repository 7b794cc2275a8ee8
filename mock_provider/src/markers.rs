//! Fault-injection markers in a prompt: `[[mock:<provider|*>=<fault>]]`. Markers live in the
//! request itself, so tests running in parallel never disturb one another.
//!
//! Faults: `delay:<ms>` (wait, then go on), `500`, `503`, `529`, `429`, `401`, `malformed`,
//! `drop`, `echo_key`, `html401`; and `dated_model` (answer normally, naming the model the way
//! the real APIs do, with a snapshot date: `gpt-4o-mini-2024-07-18`), and `long:<chars>` (answer
//! normally, with that many more characters in one word at the end of the content, as a long
//! completion would bring), and `empty` (answer 200 with no text, cut at the output limit, as
//! Gemini does when thinking used up `maxOutputTokens`), and `input_tokens:<n>` (answer
//! normally, billing that many input tokens, as a provider counting media by URL or a
//! tokenizer above the gateway's estimate would). Several markers may apply to one request: their delays add
//! up, and the first other fault wins (`[[mock:*=delay:200]][[mock:*=drop]]` waits, then drops).
//!
//! Stream markers, for a streamed request (`"stream": true`, Gemini's `:streamGenerateContent`;
//! a JSON request ignores them): `stream_delay:<ms>` (wait that long before each event after
//! the first), `first_event_delay:<ms>` (the headers go at once, the first event that much
//! later), `stream_error` (a few content events, then the provider's in-stream error event,
//! then the stream ends), `stream_truncate` (a few content events, then the connection closes
//! mid-body, with no terminal event), `stream_hang` (a few content events, then nothing: the
//! connection stays open until the mock's longest delay, 10 minutes, has passed, then closes
//! mid-body), `stream_linger` (the whole stream, its terminal event included, then the connection
//! stays open as for `stream_hang`). Stream delays add up like `delay`; of the stream faults the first wins. Every
//! other fault still applies first: a status fault (`429`, `503`, …) answers its ordinary JSON
//! error, with its status and headers, instead of a stream; `malformed` cuts the stream's
//! bytes in half.

use crate::wire::Api;

/// What to do instead of (or before) answering normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// That HTTP status, with the provider's real error body for it.
    Status(u16),
    /// 429 with the provider's real body and retry hint (`retry-after: 2`, Gemini `"2s"`).
    RateLimited,
    /// 401 with the provider's real invalid-key body (Gemini: its 400 `API_KEY_INVALID`).
    Unauthorized,
    /// 200 with the normal body cut in half.
    Malformed,
    /// Close the connection without any response.
    Drop,
    /// An auth error whose message echoes the received key and the whole auth header value.
    EchoKey,
    /// Perplexity's legacy openresty HTML 401 page.
    Html401,
    /// The provider account's quota or credit exhausted: OpenAI's 429 `insufficient_quota`,
    /// Anthropic's 400 "credit balance is too low" (Gemini and Perplexity: their 429).
    QuotaExhausted,
}

/// The faults that apply to one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Plan {
    pub delay_ms: u64,
    pub fault: Option<Fault>,
    /// Name the model with a snapshot date in the answer.
    pub dated_model: bool,
    /// Characters added to the answer's content.
    pub long_chars: usize,
    /// Answer with no text, cut at the output limit.
    pub empty: bool,
    /// Input tokens to bill instead of the prompt's words.
    pub input_tokens: Option<u64>,
    /// Wait before each streamed event after the first.
    pub stream_delay_ms: u64,
    /// Wait before the first streamed event (the headers are sent at once).
    pub first_event_delay_ms: u64,
    /// How a stream goes wrong, if it does.
    pub stream_fault: Option<StreamFault>,
}

/// How a streamed answer goes wrong after a few content events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFault {
    /// The provider's in-stream error event, then the end of the stream.
    Error,
    /// The connection closes mid-body, with no terminal event.
    Truncate,
    /// Nothing more is sent; the connection stays open until `MAX_DELAY_MS` has passed.
    Hang,
    /// The whole stream, its terminal event included, then the connection stays open as for
    /// `Hang` (a provider or proxy that does not close after the end).
    Linger,
}

const OPEN: &str = "[[mock:";
const CLOSE: &str = "]]";
/// Longest delay a marker may ask for (10 minutes); also how long `stream_hang` holds on.
pub const MAX_DELAY_MS: u64 = 600_000;
/// Most characters a `long:` marker may add (2 MB).
const MAX_LONG_CHARS: usize = 2_000_000;

/// The plan for `api` from the markers in `prompt`. A marker aimed at this provider (or `*`)
/// with a fault it does not know is an error (the mock answers 400 naming it), so a typo in a
/// test shows instead of passing silently. Markers for other providers are ignored.
pub fn plan(api: Api, prompt: &str) -> Result<Plan, String> {
    let mut plan = Plan::default();
    let mut rest = prompt;
    while let Some(at) = rest.find(OPEN) {
        rest = &rest[at + OPEN.len()..];
        let Some(end) = rest.find(CLOSE) else { break };
        let inner = &rest[..end];
        rest = &rest[end + CLOSE.len()..];
        let Some((target, fault)) = inner.split_once('=') else {
            return Err(format!("marker without '=': {inner}"));
        };
        let target = target.trim();
        if target != "*" && target != api.as_str() {
            continue;
        }
        let fault = fault.trim();
        let delays = [
            ("delay:", &mut plan.delay_ms),
            ("stream_delay:", &mut plan.stream_delay_ms),
            ("first_event_delay:", &mut plan.first_event_delay_ms),
        ];
        if let Some((prefix, ms, slot)) = delays
            .into_iter()
            .find_map(|(p, slot)| fault.strip_prefix(p).map(|ms| (p, ms, slot)))
        {
            let ms: u64 = ms
                .trim()
                .parse()
                .map_err(|_| format!("bad {}: {fault}", prefix.trim_end_matches(':')))?;
            *slot = slot.saturating_add(ms).min(MAX_DELAY_MS);
            continue;
        }
        let stream_fault = match fault {
            "stream_error" => Some(StreamFault::Error),
            "stream_truncate" => Some(StreamFault::Truncate),
            "stream_hang" => Some(StreamFault::Hang),
            "stream_linger" => Some(StreamFault::Linger),
            _ => None,
        };
        if let Some(f) = stream_fault {
            plan.stream_fault.get_or_insert(f);
            continue;
        }
        if fault == "dated_model" {
            plan.dated_model = true;
            continue;
        }
        if let Some(n) = fault.strip_prefix("input_tokens:") {
            let n: u64 = n
                .trim()
                .parse()
                .map_err(|_| format!("bad input_tokens: {fault}"))?;
            plan.input_tokens = Some(n);
            continue;
        }
        if fault == "empty" {
            plan.empty = true;
            continue;
        }
        if let Some(n) = fault.strip_prefix("long:") {
            let n: usize = n.trim().parse().map_err(|_| format!("bad long: {fault}"))?;
            plan.long_chars = n.min(MAX_LONG_CHARS);
            continue;
        }
        let parsed = parse_fault(fault).ok_or_else(|| format!("unknown fault: {fault}"))?;
        plan.fault.get_or_insert(parsed);
    }
    Ok(plan)
}

fn parse_fault(s: &str) -> Option<Fault> {
    Some(match s {
        "500" => Fault::Status(500),
        "503" => Fault::Status(503),
        "529" => Fault::Status(529),
        // No provider sends it; a proxy in the way might.
        "304" => Fault::Status(304),
        "429" => Fault::RateLimited,
        "401" => Fault::Unauthorized,
        "malformed" => Fault::Malformed,
        "drop" => Fault::Drop,
        "echo_key" => Fault::EchoKey,
        "html401" => Fault::Html401,
        "quota" => Fault::QuotaExhausted,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_adds_characters_and_is_not_a_fault() {
        let p = plan(Api::Anthropic, "[[mock:*=long:5000]] hi").unwrap();
        assert_eq!((p.long_chars, p.fault), (5000, None));
        assert!(plan(Api::Anthropic, "[[mock:*=long:lots]]").is_err());
    }

    #[test]
    fn dated_model_is_not_a_fault() {
        let p = plan(Api::OpenAi, "[[mock:openai=dated_model]] hi").unwrap();
        assert!(p.dated_model);
        assert_eq!(p.fault, None);
        assert!(
            !plan(Api::Gemini, "[[mock:openai=dated_model]]")
                .unwrap()
                .dated_model
        );
    }

    #[test]
    fn no_marker_is_the_empty_plan() {
        assert_eq!(plan(Api::OpenAi, "What is 2+2?"), Ok(Plan::default()));
        assert_eq!(plan(Api::OpenAi, "[[mock:openai=500"), Ok(Plan::default()));
    }

    #[test]
    fn marker_for_this_provider_applies() {
        let p = plan(Api::Anthropic, "hi [[mock:anthropic=529]] there").unwrap();
        assert_eq!(p.fault, Some(Fault::Status(529)));
        assert_eq!(p.delay_ms, 0);
    }

    #[test]
    fn marker_for_another_provider_is_ignored() {
        assert_eq!(
            plan(Api::Gemini, "[[mock:openai=500]]"),
            Ok(Plan::default())
        );
        assert_eq!(
            plan(Api::Gemini, "[[mock:openai=nonsense]]"),
            Ok(Plan::default())
        );
    }

    #[test]
    fn star_applies_to_every_provider() {
        for api in Api::ALL {
            assert_eq!(
                plan(api, "[[mock:*=drop]]").unwrap().fault,
                Some(Fault::Drop)
            );
        }
    }

    #[test]
    fn every_fault_name_parses() {
        let cases = [
            ("500", Fault::Status(500)),
            ("503", Fault::Status(503)),
            ("529", Fault::Status(529)),
            ("429", Fault::RateLimited),
            ("401", Fault::Unauthorized),
            ("malformed", Fault::Malformed),
            ("drop", Fault::Drop),
            ("echo_key", Fault::EchoKey),
            ("html401", Fault::Html401),
            ("quota", Fault::QuotaExhausted),
        ];
        for (name, fault) in cases {
            let prompt = format!("[[mock:perplexity={name}]]");
            assert_eq!(plan(Api::Perplexity, &prompt).unwrap().fault, Some(fault));
        }
    }

    #[test]
    fn delays_add_up_and_first_fault_wins() {
        let p = plan(
            Api::OpenAi,
            "[[mock:*=delay:100]] [[mock:openai=delay:50]] [[mock:openai=503]] [[mock:*=500]]",
        )
        .unwrap();
        assert_eq!(p.delay_ms, 150);
        assert_eq!(p.fault, Some(Fault::Status(503)));
    }

    #[test]
    fn delay_alone_answers_normally_after_waiting() {
        let p = plan(Api::Gemini, "slow [[mock:gemini=delay:250]]").unwrap();
        assert_eq!(
            p,
            Plan {
                delay_ms: 250,
                fault: None,
                dated_model: false,
                long_chars: 0,
                empty: false,
                input_tokens: None,
                stream_delay_ms: 0,
                first_event_delay_ms: 0,
                stream_fault: None,
            }
        );
    }

    #[test]
    fn stream_markers_add_up_first_stream_fault_wins_and_are_not_faults() {
        let p = plan(
            Api::OpenAi,
            "[[mock:*=stream_delay:20]] [[mock:openai=stream_delay:5]] [[mock:*=first_event_delay:300]] \
             [[mock:openai=stream_truncate]] [[mock:*=stream_error]] [[mock:gemini=stream_hang]]",
        )
        .unwrap();
        assert_eq!((p.stream_delay_ms, p.first_event_delay_ms), (25, 300));
        assert_eq!(p.stream_fault, Some(StreamFault::Truncate));
        assert_eq!((p.fault, p.delay_ms), (None, 0));
        let p = plan(Api::Gemini, "[[mock:*=stream_hang]] [[mock:*=503]]").unwrap();
        assert_eq!(p.stream_fault, Some(StreamFault::Hang));
        assert_eq!(p.fault, Some(Fault::Status(503)));
        assert_eq!(
            plan(Api::Anthropic, "[[mock:*=first_event_delay:99999999999]]")
                .unwrap()
                .first_event_delay_ms,
            MAX_DELAY_MS
        );
        assert_eq!(
            plan(Api::Anthropic, "[[mock:*=stream_delay:soon]]"),
            Err("bad stream_delay: stream_delay:soon".to_owned())
        );
    }

    #[test]
    fn delay_is_capped() {
        let p = plan(Api::Gemini, "[[mock:*=delay:99999999999]]").unwrap();
        assert_eq!(p.delay_ms, MAX_DELAY_MS);
    }

    #[test]
    fn unknown_fault_or_bad_delay_for_this_provider_is_an_error() {
        assert_eq!(
            plan(Api::OpenAi, "[[mock:openai=418]]"),
            Err("unknown fault: 418".to_owned())
        );
        assert!(plan(Api::OpenAi, "[[mock:*=delay:soon]]").is_err());
        assert!(plan(Api::OpenAi, "[[mock:openai]]").is_err());
    }
}
