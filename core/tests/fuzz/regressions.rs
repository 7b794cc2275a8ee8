//! Inputs the fuzzer found, as named tests (their bytes are also under
//! `fixtures/fuzz/<target>/regressions/`, which `every_seed_and_regression_runs_clean` runs).

use gateway_core::api::dropin::stream::{synthesize, StreamEnd, StreamWatcher};
use gateway_core::api::dropin::Dialect;
use gateway_core::scrub::{excerpt, scrub};

/// Found by the `scrub` target: in `Bearer Bearer <token>` (a client that put the scheme in its
/// key, echoed by an upstream) the scrubber takes the second `Bearer` for the token, and the
/// token itself is left; the same after an `Authorization:` header's scheme word. Keys with a known prefix (`sk-`, `lvk_`, …) are still caught by their
/// own pattern; an opaque token is not. Fixed (core/src/scrub.rs `past_scheme_words`).
#[test]
fn known_finding_a_doubled_bearer_hides_its_token() {
    for text in [
        "Authorization: Bearer Bearer opaqueTOKEN0123456789abcdef",
        "sent Bearer Bearer opaqueTOKEN0123456789abcdef ok",
        "Authorization: Basic Bearer opaqueTOKEN0123456789abcdef",
    ] {
        let out = scrub(text);
        assert!(
            !out.contains("opaqueTOKEN0123456789abcdef"),
            "{text} -> {out}"
        );
    }
}

/// Found by the `scrub` target (a false alarm of a first invariant, kept as a check): an excerpt
/// cut inside a redacted token field ends in a piece of `Bearer`, never in the credential.
#[test]
fn an_excerpt_cut_inside_a_token_field_shows_no_credential() {
    let input = std::fs::read(
        super::repo_root()
            .join("fixtures/fuzz/scrub/regressions/excerpt_cut_inside_a_token_field.txt"),
    )
    .unwrap();
    let text = String::from_utf8_lossy(&input);
    let ex = excerpt(&text, 200);
    assert!(!ex.contains("abc.def"), "{ex}");
    assert!(ex.ends_with('…'), "{ex}");
}

/// Found by the `synthesize` target: a stored Anthropic answer without `stop_reason` (only a
/// provider's own 200 body could be one) synthesizes a stream that reads as cut, not clean. The
/// stream is still well formed (the SDKs reassemble it); the watcher's verdict is only used on
/// live streams, never on synthesized hits.
#[test]
fn a_stored_answer_without_stop_reason_synthesizes_a_stream_read_as_cut() {
    let stored = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-3-5-haiku-latest","content":[{"type":"text","text":"Hi."}],"stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":20}}"#;
    let bytes = synthesize(Dialect::AnthropicMessages, stored, false).unwrap();
    let mut w = StreamWatcher::new(Dialect::AnthropicMessages);
    w.feed(&bytes).unwrap();
    assert_ne!(w.outcome(), StreamEnd::Clean);
    let with_reason = stored.replace(
        r#""stop_sequence""#,
        r#""stop_reason":"end_turn","stop_sequence""#,
    );
    let bytes = synthesize(Dialect::AnthropicMessages, &with_reason, false).unwrap();
    let mut w = StreamWatcher::new(Dialect::AnthropicMessages);
    w.feed(&bytes).unwrap();
    assert_eq!(w.outcome(), StreamEnd::Clean);
}

/// Found by the `adapters` target: `excerpt` scrubs before it collapses whitespace, so a header
/// echo split by a line break in an upstream error body (`x-api-key:\n<value>`) is not
/// recognized, and reaches the caller's error message as `x-api-key: <value>`. Keys with a
/// known prefix are still caught by their own pattern; an opaque value is not. Fixed
/// (core/src/scrub.rs `excerpt` scrubs again after collapsing).
#[test]
fn known_finding_an_excerpt_joins_a_header_echo_across_a_line_break() {
    let ex = excerpt(
        "upstream said: x-api-key:\n  opaqueVALUE0123456789abcdef",
        200,
    );
    assert!(!ex.contains("opaqueVALUE0123456789abcdef"), "{ex}");
}

/// The same text on one line is scrubbed (so the finding above is the line break alone).
#[test]
fn a_header_echo_on_one_line_is_scrubbed_in_an_excerpt() {
    let ex = excerpt("upstream said: x-api-key: opaqueVALUE0123456789abcdef", 200);
    assert!(!ex.contains("opaqueVALUE0123456789abcdef"), "{ex}");
}
