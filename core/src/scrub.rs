//! Redaction of API-key material from log lines and error bodies: a hand-written, single-pass
//! scanner that returns the input untouched (borrowed) when nothing matches.
//!
//! Recognized, each replaced by [`REDACTED`]:
//! - provider keys: `sk-…` (covers `sk-proj-…`, `sk-ant-…`), `pplx-…`, `AIza…` (35+ chars in all);
//! - gateway keys: `lvk_live_…`, `lvk_test_…` (a 12-character key prefix such as
//!   `lvk_live_abc` is not a secret and is kept);
//! - `Bearer <token>` (the word `Bearer` is kept);
//! - header or field echoes whose name ends in `authorization`, `api-key`, `api_key`, `apikey`,
//!   `secret`, `token` or `password`, followed by `:` or `=` (`x-api-key: …`,
//!   `"x-goog-api-key":"…"`, `Authorization: Basic …`; an auth scheme word is kept);
//! - a `key=` query parameter (`?key=…`, `&key=…`), as Gemini URLs carry it;
//! - the platform's provider account ids that upstream errors name: OpenAI's `org-…` (8+
//!   characters) and the UUID in Anthropic's `organization (…)`. Not secrets, but every caller
//!   seeing a 429 passed on would otherwise learn the operator's provider accounts.
//!
//! A key pattern only starts at a word boundary, so `task-list`, `skeleton` or `ask` are left alone;
//! a JSON escape (`\n`, `\t`, `\u00e9`, …) is one, so raw JSON text such as `"…\nsk-…"` is scrubbed.

use std::borrow::Cow;

/// What every redacted secret is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Minimum characters after `sk-`, `pplx-`, `lvk_live_`, `lvk_test_`.
const MIN_KEY_BODY: usize = 4;
/// A Google API key is `AIza` plus 35 characters; accept 35 or more characters in all.
const MIN_GOOGLE_BODY: usize = 31;
/// Minimum characters after `org-` in an OpenAI organization id.
const MIN_ORG_ID: usize = 8;
/// Minimum length of a free-standing bearer token, so prose such as "bearer of" is kept.
const MIN_BEARER_TOKEN: usize = 6;

/// Header or field names (as lowercase suffixes) whose value is a secret.
const SECRET_NAME_SUFFIXES: [&[u8]; 7] = [
    b"authorization",
    b"api-key",
    b"api_key",
    b"apikey",
    b"secret",
    b"token",
    b"password",
];

/// Bytes that can start a match; everything else is skipped with one table lookup.
static TRIGGER: [bool; 256] = {
    let mut t = [false; 256];
    t[b's' as usize] = true;
    t[b'A' as usize] = true;
    t[b'p' as usize] = true;
    t[b'l' as usize] = true;
    t[b'b' as usize] = true;
    t[b'B' as usize] = true;
    t[b':' as usize] = true;
    t[b'=' as usize] = true;
    t[b'o' as usize] = true;
    t
};

/// Replaces every API-key pattern in `s` with [`REDACTED`]. Borrowed when nothing matched.
pub fn scrub(s: &str) -> Cow<'_, str> {
    let b = s.as_bytes();
    let Some((mut start, mut end)) = next_match(b, 0) else {
        return Cow::Borrowed(s);
    };
    let mut out = String::with_capacity(s.len());
    let mut copied = 0;
    loop {
        // Match offsets always sit on ASCII bytes, so they are char boundaries.
        out.push_str(&s[copied..start]);
        out.push_str(REDACTED);
        copied = end;
        match next_match(b, end) {
            Some((s2, e2)) => {
                start = s2;
                end = e2;
            }
            None => break,
        }
    }
    out.push_str(&s[copied..]);
    Cow::Owned(out)
}

/// [`scrub`], after first redacting every exact occurrence of the given known secrets (a broker
/// passes its own provider key, which may match no pattern). Secrets shorter than 4 bytes are
/// ignored, so an empty or tiny value cannot blank out ordinary text.
pub fn scrub_secrets<'a>(s: &'a str, secrets: &[&str]) -> Cow<'a, str> {
    let mut out: Cow<'a, str> = Cow::Borrowed(s);
    for secret in secrets {
        if secret.len() >= 4 && out.contains(secret) {
            out = Cow::Owned(out.replace(secret, REDACTED));
        }
    }
    match out {
        Cow::Borrowed(b) => scrub(b),
        Cow::Owned(o) => match scrub(&o) {
            Cow::Borrowed(_) => Cow::Owned(o),
            Cow::Owned(scrubbed) => Cow::Owned(scrubbed),
        },
    }
}

/// A short, single-line, scrubbed excerpt of untrusted text (an upstream error message or
/// body): scrubbed, whitespace runs collapsed, scrubbed again (a header echo split by a line
/// break, `x-api-key:\n<value>`, is one line only now), and cut to `max_chars` characters
/// (with a trailing `…` when cut).
pub fn excerpt(s: &str, max_chars: usize) -> String {
    let once = scrub(s);
    let mut collapsed = String::with_capacity(once.len());
    let mut pending = false;
    for c in once.chars() {
        if c.is_whitespace() || c.is_control() {
            pending = !collapsed.is_empty();
            continue;
        }
        if pending {
            collapsed.push(' ');
            pending = false;
        }
        collapsed.push(c);
    }
    let scrubbed = scrub(&collapsed);
    let mut out = String::with_capacity(scrubbed.len().min(max_chars * 4 + 3));
    let mut count = 0;
    let mut pending_space = false;
    for c in scrubbed.chars() {
        if c.is_whitespace() || c.is_control() {
            pending_space = !out.is_empty();
            continue;
        }
        let needed = if pending_space { 2 } else { 1 };
        if count + needed > max_chars {
            out.push('…');
            return out;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.push(c);
        count += needed;
    }
    out
}

/// The next (redact_start, redact_end) at or after `from`.
fn next_match(b: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while i < b.len() {
        if TRIGGER[b[i] as usize] {
            if let Some(m) = match_at(b, i) {
                return Some(m);
            }
        }
        i += 1;
    }
    None
}

fn match_at(b: &[u8], i: usize) -> Option<(usize, usize)> {
    let c = b[i];
    if c == b':' || c == b'=' {
        return secret_field_value(b, i);
    }
    if !starts_a_word(b, i) {
        return None;
    }
    let rest = &b[i..];
    let prefixed = |prefix: &[u8], min_body: usize| -> Option<(usize, usize)> {
        if !rest.starts_with(prefix) {
            return None;
        }
        let body_start = i + prefix.len();
        let end = run(b, body_start, is_key_byte);
        (end - body_start >= min_body).then_some((i, end))
    };
    match c {
        b's' => prefixed(b"sk-", MIN_KEY_BODY),
        b'A' => prefixed(b"AIza", MIN_GOOGLE_BODY),
        b'p' => prefixed(b"pplx-", MIN_KEY_BODY),
        b'l' => {
            prefixed(b"lvk_live_", MIN_KEY_BODY).or_else(|| prefixed(b"lvk_test_", MIN_KEY_BODY))
        }
        b'b' | b'B' => bearer_token(b, i),
        b'o' => prefixed(b"org-", MIN_ORG_ID).or_else(|| anthropic_org(b, i)),
        _ => None,
    }
}

/// Whether a key pattern may start at `i`: at the start of the text, after a byte that is not
/// ASCII alphanumeric, or right after a JSON escape. Raw JSON text (an upstream error body)
/// writes a newline before a key as `\nsk-…`; the `n` is no word character there. The escapes
/// that end in a non-alphanumeric byte (`\"`, `\\`, `\/`) already are boundaries.
fn starts_a_word(b: &[u8], i: usize) -> bool {
    i == 0 || !b[i - 1].is_ascii_alphanumeric() || ends_json_escape(b, i)
}

/// Whether the bytes just before `i` are a JSON escape: `\n`, `\t`, `\r`, `\b`, `\f` or
/// `\uXXXX`. The backslash is not checked for being itself escaped (`\\n` is an escaped
/// backslash and a letter): taking it for a boundary redacts more, never less.
fn ends_json_escape(b: &[u8], i: usize) -> bool {
    let short = i >= 2 && b[i - 2] == b'\\' && matches!(b[i - 1], b'n' | b't' | b'r' | b'b' | b'f');
    let unicode = i >= 6
        && b[i - 6] == b'\\'
        && b[i - 5] == b'u'
        && b[i - 4..i].iter().all(u8::is_ascii_hexdigit);
    short || unicode
}

/// `organization (<uuid>)` starting at `i`: redacts the UUID only.
fn anthropic_org(b: &[u8], i: usize) -> Option<(usize, usize)> {
    const LEAD: &[u8] = b"organization (";
    if !b.get(i..)?.starts_with(LEAD) {
        return None;
    }
    let id_start = i + LEAD.len();
    let end = run(b, id_start, |c| c.is_ascii_hexdigit() || c == b'-');
    (end - id_start == 36 && b.get(end) == Some(&b')')).then_some((id_start, end))
}

/// `Bearer <token>` starting at `i`: redacts the token only.
fn bearer_token(b: &[u8], i: usize) -> Option<(usize, usize)> {
    let word = b.get(i..i + 6)?;
    if !word.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let mut token_start = run(b, i + 6, |c| c == b' ' || c == b'\t');
    if token_start == i + 6 {
        return None;
    }
    // A doubled scheme (`Bearer Bearer <token>`, a client that put the scheme in its key):
    // the token is after the last scheme word.
    token_start = past_scheme_words(b, token_start);
    let end = run(b, token_start, is_token_byte);
    (end - token_start >= MIN_BEARER_TOKEN).then_some((token_start, end))
}

/// The value after a `:` or `=` at `sep` when the name before it is a secret-bearing one.
fn secret_field_value(b: &[u8], sep: usize) -> Option<(usize, usize)> {
    // Look back over optional spaces and one closing quote to the name.
    let mut j = sep;
    while j > 0 && (b[j - 1] == b' ' || b[j - 1] == b'\t') {
        j -= 1;
    }
    if j > 0 && (b[j - 1] == b'"' || b[j - 1] == b'\'') {
        j -= 1;
    }
    let mut k = j;
    while k > 0 && is_name_byte(b[k - 1]) {
        k -= 1;
    }
    let name = &b[k..j];
    let is_query_key = b[sep] == b'='
        && name.eq_ignore_ascii_case(b"key")
        && k > 0
        && (b[k - 1] == b'?' || b[k - 1] == b'&');
    let is_auth = ends_with_name(name, b"authorization");
    if !is_query_key && !SECRET_NAME_SUFFIXES.iter().any(|s| ends_with_name(name, s)) {
        return None;
    }
    // Forward over optional spaces and one opening quote to the value.
    let mut v = run(b, sep + 1, |c| c == b' ' || c == b'\t');
    if v < b.len() && (b[v] == b'"' || b[v] == b'\'') {
        v += 1;
    }
    // Keep an auth scheme word (`Bearer`, `Basic`, …): any word followed by a space in an
    // authorization value, a well-known scheme in any other secret field.
    let word_end = run(b, v, |c| c.is_ascii_alphabetic());
    let after = run(b, word_end, |c| c == b' ' || c == b'\t');
    if after > word_end && word_end > v && (is_auth || is_known_scheme(&b[v..word_end])) {
        v = past_scheme_words(b, after);
    }
    let end = run(b, v, is_token_byte);
    (end > v).then_some((v, end))
}

/// From `at`, past every well-known scheme word followed by spaces (`Bearer Bearer `, `Basic
/// Bearer `): where the credential starts.
fn past_scheme_words(b: &[u8], mut at: usize) -> usize {
    loop {
        let word_end = run(b, at, |c| c.is_ascii_alphabetic());
        let after = run(b, word_end, |c| c == b' ' || c == b'\t');
        if word_end > at && after > word_end && is_known_scheme(&b[at..word_end]) {
            at = after;
        } else {
            return at;
        }
    }
}

fn is_known_scheme(word: &[u8]) -> bool {
    [&b"bearer"[..], b"basic", b"token", b"digest"]
        .iter()
        .any(|s| word.eq_ignore_ascii_case(s))
}

/// Whether `name` ends with `suffix` (ASCII case-insensitive) at a name-part boundary.
fn ends_with_name(name: &[u8], suffix: &[u8]) -> bool {
    if name.len() < suffix.len() {
        return false;
    }
    let at = name.len() - suffix.len();
    name[at..].eq_ignore_ascii_case(suffix) && (at == 0 || matches!(name[at - 1], b'-' | b'_'))
}

/// End of the run of bytes satisfying `pred` from `start`.
fn run(b: &[u8], start: usize, pred: impl Fn(u8) -> bool) -> usize {
    let mut e = start;
    while e < b.len() && pred(b[e]) {
        e += 1;
    }
    e
}

/// Characters of provider and gateway keys (a masked key's `*` included).
fn is_key_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'*')
}

/// Characters of an HTTP token68 credential (plus `*` for masked echoes).
fn is_token_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=' | b'*')
}

fn is_name_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(x: &str) -> String {
        scrub(x).into_owned()
    }

    #[test]
    fn redacts_the_platforms_provider_account_ids_from_429_messages() {
        let openai = include_str!("../../fixtures/providers/openai/error_429.json");
        let anthropic = include_str!("../../fixtures/providers/anthropic/error_429.json");
        assert!(!s(openai).contains("org-XXXX"), "{}", s(openai));
        assert!(s(openai).contains("in organization [REDACTED] on tokens per min"));
        assert!(!s(anthropic).contains("00000000-0000"), "{}", s(anthropic));
        assert!(s(anthropic).contains("your organization ([REDACTED]) of 30,000"));
        // Words that merely start the same way are kept.
        assert_eq!(
            s("org-chart organization (see below) organizer"),
            "org-chart organization (see below) organizer"
        );
    }

    #[test]
    fn redacts_openai_legacy_key() {
        assert_eq!(
            s("key sk-abcdEFGH1234567890abcdEFGH1234567890abcdEFGH used"),
            "key [REDACTED] used"
        );
    }

    #[test]
    fn redacts_openai_project_key() {
        assert_eq!(s("sk-proj-Ab3_dE-fGh9"), "[REDACTED]");
    }

    #[test]
    fn redacts_masked_openai_key_in_upstream_error_message() {
        let msg = "Incorrect API key provided: sk-proj-********************************abcd. You can find your API key at https://platform.openai.com/account/api-keys.";
        assert_eq!(
            s(msg),
            "Incorrect API key provided: [REDACTED]. You can find your API key at https://platform.openai.com/account/api-keys."
        );
    }

    #[test]
    fn redacts_anthropic_key() {
        assert_eq!(s("using sk-ant-api03-XyZ_12-abc,"), "using [REDACTED],");
    }

    #[test]
    fn redacts_google_api_key() {
        let key = "AIzaSyA1bcdEfGhIJkLmNoPqRsTuVwXyZ012345";
        assert_eq!(key.len(), 39);
        assert_eq!(s(&format!("key={key}")), "key=[REDACTED]");
        assert_eq!(s(&format!("({key})")), "([REDACTED])");
    }

    #[test]
    fn short_aiza_word_is_not_a_google_key() {
        assert_eq!(s("AIzaShort"), "AIzaShort");
    }

    #[test]
    fn redacts_perplexity_key() {
        assert_eq!(s("pplx-1a2b3c4d5e6f"), "[REDACTED]");
    }

    #[test]
    fn redacts_gateway_live_key() {
        assert_eq!(
            s("token lvk_live_Zm9vYmFyYmF6cXV4LWtleS1zZWNyZXQtMzItYnl0ZXM leaked"),
            "token [REDACTED] leaked"
        );
    }

    #[test]
    fn redacts_gateway_test_key() {
        assert_eq!(s("\"lvk_test_abcdEFGH_1234-5678\""), "\"[REDACTED]\"");
    }

    #[test]
    fn keeps_twelve_character_gateway_key_prefix() {
        assert_eq!(s("key prefix lvk_live_abc"), "key prefix lvk_live_abc");
    }

    #[test]
    fn redacts_bearer_token_keeping_the_word_bearer() {
        assert_eq!(
            s("sent Bearer eyJhbGciOi.J9x_y-z/+= ok"),
            "sent Bearer [REDACTED] ok"
        );
        assert_eq!(s("bearer   abcdefgh"), "bearer   [REDACTED]");
    }

    #[test]
    fn a_doubled_scheme_hides_no_token() {
        for text in [
            "Authorization: Bearer Bearer opaqueTOKEN0123456789abcdef",
            "sent Bearer Bearer opaqueTOKEN0123456789abcdef ok",
            "Authorization: Basic Bearer opaqueTOKEN0123456789abcdef",
        ] {
            let out = s(text);
            assert!(!out.contains("opaqueTOKEN"), "{text} -> {out}");
        }
    }

    #[test]
    fn an_excerpt_scrubs_a_header_echo_split_by_a_line_break() {
        let ex = excerpt(
            "upstream said: x-api-key:\n  opaqueVALUE0123456789abcdef",
            200,
        );
        assert!(!ex.contains("opaqueVALUE"), "{ex}");
        assert_eq!(excerpt("a\n\n b  c", 200), "a b c");
    }

    #[test]
    fn bearer_in_prose_is_untouched() {
        assert_eq!(s("the bearer of bad news"), "the bearer of bad news");
    }

    #[test]
    fn redacts_authorization_header_echo_keeping_scheme() {
        assert_eq!(
            s("Authorization: Bearer abc"),
            "Authorization: Bearer [REDACTED]"
        );
        assert_eq!(
            s("proxy-authorization=Basic dXNlcjpwYXNz"),
            "proxy-authorization=Basic [REDACTED]"
        );
        assert_eq!(s("authorization: opaque123"), "authorization: [REDACTED]");
    }

    #[test]
    fn redacts_x_api_key_header_echo() {
        assert_eq!(s("x-api-key: my-test-key"), "x-api-key: [REDACTED]");
        assert_eq!(s("X-Goog-Api-Key:k1"), "X-Goog-Api-Key:[REDACTED]");
        assert_eq!(
            s("invalid x-api-key: abc123xyz, retry"),
            "invalid x-api-key: [REDACTED], retry"
        );
    }

    #[test]
    fn redacts_header_echo_inside_json() {
        assert_eq!(
            s(r#"{"x-api-key": "k-123", "authorization":"Bearer t-1","model":"m"}"#),
            r#"{"x-api-key": "[REDACTED]", "authorization":"Bearer [REDACTED]","model":"m"}"#
        );
    }

    #[test]
    fn redacts_secret_and_token_fields() {
        assert_eq!(s("broker_secret=s3cr3t"), "broker_secret=[REDACTED]");
        assert_eq!(s("x-broker-secret: s3cr3t"), "x-broker-secret: [REDACTED]");
        assert_eq!(s("access_token=abc.def"), "access_token=[REDACTED]");
    }

    #[test]
    fn redacts_scheme_credential_in_a_token_field() {
        assert_eq!(s("token=Bearer abcdefgh"), "token=Bearer [REDACTED]");
        assert_eq!(s("authorization: Bearer"), "authorization: [REDACTED]");
    }

    #[test]
    fn redacts_key_query_parameter() {
        assert_eq!(
            s("POST /v1beta/models/m:generateContent?key=test-key&alt=json"),
            "POST /v1beta/models/m:generateContent?key=[REDACTED]&alt=json"
        );
    }

    #[test]
    fn ordinary_text_is_untouched_and_borrowed() {
        for text in [
            "task-list",
            "skeleton",
            "ask",
            "ask-me-anything and risk-free desk-top tasks",
            "mask-layer, flask-app, whisk-away",
            "cache key: 9f86d081884c7d65",
            "max_tokens: 256, tokens: {input: 3}",
            "https://api.openai.com/v1/chat/completions",
            "Apply plenty of blue paint; AIza is not a key",
            "Überraschung: déjà vu — 東京 sk",
            "",
        ] {
            assert!(
                matches!(scrub(text), Cow::Borrowed(_)),
                "changed: {text:?} -> {:?}",
                scrub(text)
            );
        }
    }

    #[test]
    fn redacts_several_keys_in_one_line() {
        assert_eq!(
            s("a sk-abcdefgh b pplx-abcdefgh c lvk_test_abcdefgh d"),
            "a [REDACTED] b [REDACTED] c [REDACTED] d"
        );
    }

    #[test]
    fn keeps_multibyte_text_around_a_key() {
        assert_eq!(s("clé: «sk-abcdefgh» ✓"), "clé: «[REDACTED]» ✓");
    }

    #[test]
    fn scrub_secrets_redacts_known_values_that_match_no_pattern() {
        let out = scrub_secrets(
            "Incorrect API key provided: test-openai-key.",
            &["test-openai-key", ""],
        );
        assert_eq!(out, "Incorrect API key provided: [REDACTED].");
        assert!(matches!(
            scrub_secrets("clean", &["abcd"]),
            Cow::Borrowed(_)
        ));
        assert_eq!(scrub_secrets("a b c", &["b"]), "a b c");
    }

    #[test]
    fn excerpt_scrubs_collapses_and_cuts() {
        assert_eq!(excerpt("  a\n\n b\tsk-abcdefgh  ", 100), "a b [REDACTED]");
        assert_eq!(excerpt("abcdef", 3), "abc…");
        assert_eq!(excerpt("ab cd", 4), "ab c…");
        assert_eq!(excerpt("", 10), "");
    }

    #[test]
    fn redacts_a_key_right_after_a_json_escape_in_raw_json() {
        assert_eq!(
            s(r#"{"error":{"message":"bad key:\nsk-proj-abcdEFGH1234"}}"#),
            r#"{"error":{"message":"bad key:\n[REDACTED]"}}"#
        );
        assert_eq!(
            s(r#""\tAIzaSyA1bcdEfGhIJkLmNoPqRsTuVwXyZ012345""#),
            r#""\t[REDACTED]""#
        );
        assert_eq!(s(r"\u00e9pplx-1a2b3c4d"), r"\u00e9[REDACTED]");
        assert_eq!(s(r"\r\nBearer abcdefgh"), r"\r\nBearer [REDACTED]");
        assert_eq!(s(r"\blvk_test_abcdefgh"), r"\b[REDACTED]");
        // Without a backslash the letter is a word character, and `\u00e` is no escape.
        assert_eq!(s("nsk-abcdefgh"), "nsk-abcdefgh");
        assert_eq!(s(r"\u00esk-abcdefgh"), r"\u00esk-abcdefgh");
    }

    /// Every key pattern, as (text of the key, its secret part) for a generated body.
    fn keys_of_every_pattern(body: &str) -> Vec<(String, String)> {
        [
            "sk-",
            "sk-proj-",
            "sk-ant-api03-",
            "AIza",
            "pplx-",
            "lvk_live_",
            "lvk_test_",
            "Bearer ",
        ]
        .iter()
        .map(|p| (format!("{p}{body}"), body.to_string()))
        .collect()
    }

    /// Every JSON escape, `\uXXXX` with the given hex digits.
    fn json_escapes(hex4: &str) -> Vec<String> {
        let mut e: Vec<String> = [r"\n", r"\t", r"\r", r"\b", r"\f", r#"\""#, r"\\", r"\/"]
            .map(String::from)
            .to_vec();
        e.push(format!(r"\u{hex4}"));
        e
    }

    proptest! {
        #[test]
        fn no_key_survives_right_after_a_json_escape(
            before in "[ a-zA-Z0-9:,{}\"]{0,12}",
            body in "[A-Za-z0-9_-]{40}",
            hex4 in "[0-9a-fA-F]{4}",
            after in prop::sample::select(vec!["", " ", "\"", "\"}", r"\n", r"\u0022", ".", ","]),
        ) {
            for escape in json_escapes(&hex4) {
                for (key, secret) in keys_of_every_pattern(&body) {
                    let text = format!("{before}{escape}{key}{after}");
                    let out = scrub(&text);
                    prop_assert!(!out.contains(&secret), "{} -> {}", text, out);
                }
            }
        }

        #[test]
        fn no_key_survives_in_a_json_string_serialized_by_serde(
            words in "[ a-zA-Z0-9:.]{0,12}",
            lead in prop::sample::select(
                ('\u{0}'..='\u{1f}').chain(['"', '\\', ' ', '(']).collect::<Vec<char>>()
            ),
            trail in prop::sample::select(vec!['\n', '\t', '"', '\\', '\u{1}', ' ']),
            body in "[A-Za-z0-9_-]{40}",
            pretty in any::<bool>(),
        ) {
            for (key, secret) in keys_of_every_pattern(&body) {
                let value = serde_json::json!({
                    "error": {"message": format!("{words}{lead}{key}{trail}"), "code": 401}
                });
                let text = if pretty {
                    serde_json::to_string_pretty(&value).unwrap()
                } else {
                    value.to_string()
                };
                let out = scrub(&text);
                prop_assert!(!out.contains(&secret), "{} -> {}", text, out);
            }
        }

        #[test]
        fn scrub_is_idempotent(x in "[ a-zA-Z0-9:=\"'_*./+-]{0,80}") {
            let once = scrub(&x).into_owned();
            let twice = scrub(&once).into_owned();
            prop_assert_eq!(once, twice);
        }

        #[test]
        fn no_known_key_survives(prefix in "[ a-z]{0,10}", body in "[A-Za-z0-9_-]{40}") {
            for key in [format!("sk-{body}"), format!("pplx-{body}"), format!("lvk_live_{body}"), format!("AIza{body}")] {
                let text = format!("{prefix} {key} end");
                let out = scrub(&text);
                prop_assert!(!out.contains(&body), "{} -> {}", text, out);
            }
        }

        #[test]
        fn text_without_triggers_is_borrowed(x in "[ ac-kmnoq-rt-zC-Z0-9,.!?]{0,80}") {
            prop_assert!(matches!(scrub(&x), Cow::Borrowed(_)));
        }
    }
}
