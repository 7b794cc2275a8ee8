//! Prompt normalization for the cache key: lowercase, NFC, collapse whitespace, strip trailing
//! punctuation (DESIGN.md "Cache key"), with a fast path for ASCII prompts.
//!
//! `normalize(normalize(x)) == normalize(x)` for every string. When lowercasing leaves a string
//! in NFC (the common case), one pass is a fixed point: lowercasing is idempotent (tested for
//! every character), and collapsing and stripping only replace or drop starters that compose
//! with nothing, or cut a suffix, which keeps a string lowercase and NFC. When NFC has to
//! compose, the result rests on how std's case tables and `unicode-normalization`'s tables (of
//! different Unicode versions) agree, so that path checks its output and runs the pass again
//! in the (never yet seen) case that it is not a fixed point.

use unicode_general_category::{get_general_category, GeneralCategory};
use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

use crate::cache::canonical_json::{escape, needs_escape, write_json_string_body};

/// Further passes the non-ASCII path may run if one pass was not a fixed point.
const MAX_EXTRA_PASSES: usize = 8;

/// The normalized form of a prompt, as it enters the cache key:
/// `strip_trailing_punct(collapse_ws(nfc(lowercase(p))))`, repeated to a fixed point.
pub fn normalize(p: &str) -> String {
    if p.is_ascii() {
        return normalize_ascii(p);
    }
    let (mut out, composed) = one_pass_unicode(p);
    if composed {
        for _ in 0..MAX_EXTRA_PASSES {
            if is_fixed_point(&out) {
                break;
            }
            out = one_pass_unicode(&out).0;
        }
    }
    out
}

/// Whether `c` is of Unicode general category P* (Pc, Pd, Ps, Pe, Pi, Pf, Po).
pub fn is_punctuation(c: char) -> bool {
    matches!(
        get_general_category(c),
        GeneralCategory::ConnectorPunctuation
            | GeneralCategory::DashPunctuation
            | GeneralCategory::OpenPunctuation
            | GeneralCategory::ClosePunctuation
            | GeneralCategory::InitialPunctuation
            | GeneralCategory::FinalPunctuation
            | GeneralCategory::OtherPunctuation
    )
}

// ---------------------------------------------------------------------------------------------
// ASCII fast path. On ASCII, `to_lowercase` is ASCII lowercase, NFC is the identity, the
// whitespace is `\t \n \v \f \r` and space, and punctuation is a fixed set, so one pass is a
// fixed point. The work is done eight bytes at a time in a `u64` (SWAR): the release profile
// optimizes for size, which turns LLVM's auto-vectorizer off, and wasm32 has 64-bit integers.
// ---------------------------------------------------------------------------------------------

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;
const LOW7: u64 = !HIGH;

fn normalize_ascii(p: &str) -> String {
    let mut out = Vec::new();
    write_normalized_ascii::<false>(p.as_bytes(), &mut out);
    match String::from_utf8(out) {
        Ok(s) => s,
        // Unreachable: the bytes are ASCII. The general path gives the same answer anyway.
        Err(_) => one_pass_unicode(p).0,
    }
}

/// Appends the body of the JSON string literal of `normalize(p)` (escaped, no quotes) to `out`.
/// ASCII prompts are normalized and escaped in one pass with no intermediate string.
pub(crate) fn write_normalized_json_body(p: &str, out: &mut Vec<u8>) {
    if p.is_ascii() {
        write_normalized_ascii::<true>(p.as_bytes(), out);
    } else {
        write_json_string_body(&normalize(p), out);
    }
}

/// Appends `normalize(p)` for ASCII `p` to `out`, JSON-escaped if `ESCAPE`.
///
/// Trailing whitespace and punctuation are cut from the input first: lowercasing and collapsing
/// leave both where they are, so this is the same as stripping them from the output. Then
/// every word of eight bytes is lowercased and blanked at once, and stored whole unless it
/// holds a space to drop (one after a space, or a leading one) or a byte to escape.
fn write_normalized_ascii<const ESCAPE: bool>(p: &[u8], out: &mut Vec<u8>) {
    let mut end = p.len();
    while end > 0 && (lower_and_blank(p[end - 1]) == b' ' || is_ascii_punctuation(p[end - 1])) {
        end -= 1;
    }
    let bytes = &p[..end];
    // `out` holds initialized room at `len..`; it always has at least one byte per unread
    // input byte, and a word that may escape first makes room for six bytes per byte.
    let mut len = out.len();
    out.resize(len + bytes.len(), 0);
    // Whether the last byte seen became a space; true at the start drops leading whitespace.
    let mut after_space = true;
    let mut words = bytes.chunks_exact(8);
    let mut unread = bytes.len();
    for word in &mut words {
        unread -= 8;
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let y = lower_and_blank_word(u64::from_le_bytes(w));
        let spaces = ascii_spaces(y);
        // A space is dropped when the byte before it (in this word or the last) is a space.
        let drop = spaces & ((spaces << 8) | (u64::from(after_space) << 7));
        let escapes = if ESCAPE { ascii_escape_mask(y) } else { 0 };
        after_space = spaces >> 63 != 0;
        if drop | escapes == 0 {
            out[len..len + 8].copy_from_slice(&y.to_le_bytes());
            len += 8;
            continue;
        }
        if escapes != 0 && out.len() < len + 6 * 8 + unread {
            out.resize(len + 6 * 8 + unread, 0);
        }
        for (i, &b) in y.to_le_bytes().iter().enumerate() {
            let bit = 0x80 << (8 * i);
            if drop & bit != 0 {
                continue;
            }
            len = put(out, len, b, escapes & bit != 0);
        }
    }
    if ESCAPE && out.len() < len + 6 * 8 {
        out.resize(len + 6 * 8, 0);
    }
    for &b in words.remainder() {
        let b = lower_and_blank(b);
        let space = b == b' ';
        if !(space && after_space) {
            len = put(out, len, b, ESCAPE && needs_escape(b));
        }
        after_space = space;
    }
    out.truncate(len);
}

/// Writes `b` (or its JSON escape) at `len` in room already made; returns the new length.
#[inline(always)]
fn put(out: &mut [u8], len: usize, b: u8, escaped: bool) -> usize {
    if escaped {
        let e = escape(b).as_bytes();
        out[len..len + e.len()].copy_from_slice(e);
        len + e.len()
    } else {
        out[len] = b;
        len + 1
    }
}

/// The high bit of each byte of `y` (ASCII) that JSON escapes: controls, `"` and `\`.
/// Per byte, `b + 0x60` reaches 0x80 exactly when `b >= 0x20`, and `(b ^ c) + 0x7f` exactly
/// when `b != c`; a byte is escaped when one of the three sums does not.
#[inline(always)]
fn ascii_escape_mask(y: u64) -> u64 {
    let printable = y.wrapping_add(ONES * 0x60);
    let not_quote = (y ^ (ONES * u64::from(b'"'))).wrapping_add(LOW7);
    let not_backslash = (y ^ (ONES * u64::from(b'\\'))).wrapping_add(LOW7);
    !(printable & not_quote & not_backslash) & HIGH
}

/// The high bit of each space byte of `y` (ASCII).
#[inline(always)]
fn ascii_spaces(y: u64) -> u64 {
    !(y ^ (ONES * u64::from(b' '))).wrapping_add(LOW7) & HIGH
}

/// The high bit of each byte of `x` (every byte ASCII) that lies in `lo..=hi`. Per byte,
/// `b + (0x80 - lo)` reaches 0x80 exactly when `b >= lo`, and nothing carries into the next.
#[inline(always)]
fn ascii_in_range(x: u64, lo: u8, hi: u8) -> u64 {
    let at_least_lo = x.wrapping_add(ONES * u64::from(0x80 - lo));
    let above_hi = x.wrapping_add(ONES * u64::from(0x7f - hi));
    at_least_lo & !above_hi & HIGH
}

/// [`lower_and_blank`] on eight ASCII bytes at once.
#[inline(always)]
fn lower_and_blank_word(x: u64) -> u64 {
    let upper = ascii_in_range(x, b'A', b'Z');
    let blank = (ascii_in_range(x, b'\t', b'\r') >> 7) * 0xff;
    ((x | (upper >> 2)) & !blank) | (blank & (ONES * u64::from(b' ')))
}

/// ASCII lowercase, and `char::is_whitespace` bytes (9..=13 and 32) become a space.
#[inline(always)]
fn lower_and_blank(b: u8) -> u8 {
    if (b'\t'..=b'\r').contains(&b) {
        b' '
    } else {
        b.to_ascii_lowercase()
    }
}

/// ASCII bytes of general category P*. (`u8::is_ascii_punctuation` also holds the symbols
/// `$ + < = > ^ ` | ~`, which are category S and stay.)
fn is_ascii_punctuation(b: u8) -> bool {
    b.is_ascii_punctuation()
        && !matches!(
            b,
            b'$' | b'+' | b'<' | b'=' | b'>' | b'^' | b'`' | b'|' | b'~'
        )
}

// ---------------------------------------------------------------------------------------------
// General path.
// ---------------------------------------------------------------------------------------------

/// One application of the four steps, allocating only where a step changes something; and
/// whether NFC ran (the lowercased text was not already known to be NFC).
fn one_pass_unicode(p: &str) -> (String, bool) {
    let lowered = p.to_lowercase();
    let composed = is_nfc_quick(lowered.chars()) != IsNormalized::Yes;
    let mut out = if composed {
        collapse_chars(lowered.nfc(), lowered.len())
    } else if is_collapsed(&lowered) {
        lowered
    } else {
        collapse_chars(lowered.chars(), lowered.len())
    };
    strip_trailing_punctuation(&mut out);
    (out, composed)
}

/// Whether `s` has no leading or trailing whitespace and no whitespace but single spaces.
fn is_collapsed(s: &str) -> bool {
    let mut prev_ws = true; // a leading space counts as following whitespace
    for c in s.chars() {
        let ws = c.is_whitespace();
        if ws && (c != ' ' || prev_ws) {
            return false;
        }
        prev_ws = ws;
    }
    !prev_ws || s.is_empty()
}

/// Every run of whitespace becomes one space; leading and trailing whitespace is dropped.
fn collapse_chars(chars: impl Iterator<Item = char>, capacity: usize) -> String {
    let mut out = String::with_capacity(capacity);
    let mut pending_space = false;
    for c in chars {
        if c.is_whitespace() {
            pending_space = true;
        } else {
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            out.push(c);
        }
    }
    out
}

/// Removes trailing punctuation and the whitespace it exposes, until neither is left.
/// `s` is collapsed, so whitespace at the end can only have been exposed by a removal.
fn strip_trailing_punctuation(s: &mut String) {
    while let Some(c) = s.chars().next_back() {
        if is_punctuation(c) || c.is_whitespace() {
            s.pop();
        } else {
            break;
        }
    }
}

/// Whether another pass would leave `s` unchanged: it is lowercase-stable and NFC. (It is
/// collapsed and has no trailing punctuation by construction, and both survive lowercasing
/// and NFC of a string those two leave alone.)
fn is_fixed_point(s: &str) -> bool {
    s.chars().all(is_lowercase_stable) && unicode_normalization::is_nfc(s)
}

/// Whether `str::to_lowercase` maps `c` to itself in every context.
fn is_lowercase_stable(c: char) -> bool {
    if c.is_ascii() {
        return !c.is_ascii_uppercase();
    }
    let mut lower = c.to_lowercase();
    lower.next() == Some(c) && lower.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The spec's composition, written as plainly as possible, for comparison.
    fn reference(p: &str) -> String {
        let nfc: String = p.to_lowercase().nfc().collect();
        let mut out = nfc
            .split(char::is_whitespace)
            .filter(|w| !w.is_empty())
            .fold(String::new(), |mut acc, w| {
                if !acc.is_empty() {
                    acc.push(' ');
                }
                acc.push_str(w);
                acc
            });
        while out.ends_with(|c: char| is_punctuation(c) || c.is_whitespace()) {
            out.pop();
        }
        out
    }

    #[test]
    fn c_plus_plus_keeps_its_pluses() {
        assert_eq!(normalize("C++"), "c++");
        assert_eq!(normalize("What is C++?"), "what is c++");
    }

    #[test]
    fn trailing_question_marks_and_exposed_spaces_are_stripped() {
        assert_eq!(normalize("Why ? ? !"), "why");
        assert_eq!(normalize("why?!?\t\n"), "why");
        assert_eq!(normalize("Pourquoi ? ¿ « »"), "pourquoi");
    }

    #[test]
    fn punctuation_inside_the_prompt_stays() {
        assert_eq!(normalize("e.g. a, b; c!  d"), "e.g. a, b; c! d");
    }

    #[test]
    fn symbols_at_the_end_are_not_punctuation() {
        for p in [
            "a $", "a +", "a <", "a =", "a >", "a ^", "a `", "a |", "a ~", "a €", "a ©",
        ] {
            assert_eq!(normalize(p), p, "{p:?}");
        }
    }

    #[test]
    fn whitespace_runs_become_one_space_and_ends_are_trimmed() {
        assert_eq!(normalize("  a \t\n\r\x0b\x0c b  "), "a b");
        assert_eq!(normalize("\u{3000}a\u{00a0}\u{2028}b\u{85}"), "a b");
    }

    #[test]
    fn control_characters_that_are_not_whitespace_stay() {
        assert_eq!(normalize("a\u{0}b\u{1f}"), "a\u{0}b\u{1f}");
        assert_eq!(normalize("a\u{1c} b"), "a\u{1c} b");
    }

    #[test]
    fn all_whitespace_or_punctuation_prompts_become_empty() {
        for p in ["", " ", "\n\t", "?", "...", " ? ! . ", "\u{3000}¿?\u{2029}"] {
            assert_eq!(normalize(p), "", "{p:?}");
        }
    }

    #[test]
    fn letters_are_lowercased_with_unicode_rules() {
        assert_eq!(normalize("HELLO Wörld ÀÉÎ"), "hello wörld àéî");
        assert_eq!(normalize("ẞ"), "ß");
        assert_eq!(normalize("İstanbul"), "i\u{307}stanbul");
    }

    #[test]
    fn greek_final_sigma_is_lowercased_by_position() {
        assert_eq!(normalize("ΟΔΟΣ ΟΔΟΣ."), "οδος οδος");
        assert_eq!(normalize("ΣΑΣ"), "σας");
    }

    #[test]
    fn decomposed_accents_are_composed() {
        assert_eq!(normalize("E\u{301}te\u{301}"), "été");
        assert_eq!(normalize("Cafe\u{301}"), normalize("Café"));
        assert_eq!(normalize("\u{212b}"), "å"); // ANGSTROM SIGN
        assert_eq!(normalize("\u{212a}"), "k"); // KELVIN SIGN
    }

    #[test]
    fn a_combining_mark_after_trailing_punctuation_keeps_it() {
        assert_eq!(normalize("a.\u{301}"), "a.\u{301}");
    }

    #[test]
    fn zero_width_joiner_is_neither_whitespace_nor_punctuation() {
        assert_eq!(normalize("a\u{200d}b\u{200d}"), "a\u{200d}b\u{200d}");
    }

    #[test]
    fn ascii_punctuation_table_matches_the_general_category() {
        for b in 0u8..128 {
            assert_eq!(
                is_ascii_punctuation(b),
                is_punctuation(char::from(b)),
                "{b}"
            );
        }
    }

    #[test]
    fn ascii_blanking_matches_char_is_whitespace() {
        for b in 0u8..128 {
            let c = char::from(b);
            assert_eq!(
                lower_and_blank(b) == b' ',
                c.is_whitespace() || b == b' ',
                "{b}"
            );
            if !c.is_whitespace() {
                assert_eq!(lower_and_blank(b), b.to_ascii_lowercase(), "{b}");
            }
        }
    }

    #[test]
    fn ascii_whitespace_collapses_across_word_borders() {
        for lead in 0..18 {
            for gap in 0..18 {
                for ws in [" ", "\n", "\t\r"] {
                    let p = format!(
                        "{}{}{}{}",
                        ws.repeat(lead % 3),
                        "A".repeat(lead),
                        ws.repeat(gap),
                        "b.".repeat(9)
                    );
                    assert_eq!(normalize_ascii(&p), reference(&p), "{p:?}");
                }
            }
        }
    }

    fn escaped_in_one_pass(p: &str) -> String {
        let mut out = b"prefix".to_vec();
        write_normalized_json_body(p, &mut out);
        String::from_utf8(out).expect("ASCII in, ASCII out")
    }

    fn escaped_after(normalized: &str) -> String {
        let mut out = String::from("prefix");
        write_json_string_body(normalized, &mut out);
        out
    }

    #[test]
    fn escaped_ascii_path_handles_escapes_in_every_position() {
        for lead in 0..18 {
            for esc in [
                "\"",
                "\\",
                "\u{0}",
                "\u{1f}",
                "\"\\\u{1}\"\"\"\"\"\"\"\"\"\"",
            ] {
                let p = format!(
                    "{}{esc}{}  x{esc}{esc} Y.",
                    "A".repeat(lead),
                    " b".repeat(lead)
                );
                assert_eq!(
                    escaped_in_one_pass(&p),
                    escaped_after(&normalize(&p)),
                    "{p:?}"
                );
            }
        }
        assert_eq!(
            escaped_in_one_pass("Say \"hi\"\\\n\u{0}?"),
            "prefixsay \\\"hi\\\"\\\\ \\u0000"
        );
    }

    #[test]
    fn ascii_word_masks_match_the_byte_tests() {
        for b in 0u8..128 {
            let y = u64::from_le_bytes([b'a', b, 0, b' ', b'"', b'\\', 0x7f, b]);
            let spaces = ascii_spaces(y).to_le_bytes().map(|m| m != 0);
            let escapes = ascii_escape_mask(y).to_le_bytes().map(|m| m != 0);
            for (i, c) in y.to_le_bytes().into_iter().enumerate() {
                assert_eq!(spaces[i], c == b' ', "{b} at {i}");
                assert_eq!(escapes[i], needs_escape(c), "{b} at {i}");
            }
        }
    }

    #[test]
    fn ascii_word_transform_matches_the_byte_transform() {
        for b in 0u8..128 {
            let word = lower_and_blank_word(u64::from_le_bytes([b, b'A', 0, 9, 13, 32, 127, b]));
            let expected = [b, b'A', 0, 9, 13, 32, 127, b].map(lower_and_blank);
            assert_eq!(word.to_le_bytes(), expected, "{b}");
        }
    }

    /// Characters one pass could treat specially: cased, decomposable, combining, whitespace
    /// or punctuation. (The rest pass through every step unchanged.)
    fn special_chars() -> impl Iterator<Item = char> {
        (0..=0x10FFFFu32).filter_map(char::from_u32).filter(|&c| {
            let mut parts = 0;
            unicode_normalization::char::decompose_canonical(c, |_| parts += 1);
            !is_lowercase_stable(c)
                || c.is_lowercase()
                || parts != 1
                || unicode_normalization::char::canonical_combining_class(c) != 0
                || c.is_whitespace()
                || is_punctuation(c)
        })
    }

    /// Every special character alone, after a letter, before a combining mark and after a
    /// capital sigma: one pass is already a fixed point, so the guard in `normalize` is only a
    /// guard.
    #[test]
    fn one_pass_is_a_fixed_point_for_every_special_character() {
        for c in special_chars() {
            for p in [
                c.to_string(),
                format!("A{c}"),
                format!("{c}\u{301}"),
                format!("Σ{c}"),
            ] {
                let once = one_pass_unicode(&p).0;
                assert!(is_fixed_point(&once), "U+{:04X} in {p:?}", c as u32);
                assert_eq!(one_pass_unicode(&once).0, once, "U+{:04X}", c as u32);
            }
        }
    }

    /// What `to_lowercase` produces, it leaves alone: so a pass that did not compose is
    /// lowercase-stable without checking.
    #[test]
    fn lowercasing_is_idempotent_for_every_character() {
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            assert!(
                c.to_lowercase().all(is_lowercase_stable),
                "U+{:04X}",
                c as u32
            );
        }
        assert_eq!("ΑΣ ΑΣΑ".to_lowercase(), "ας ασα");
    }

    /// A pass that did not compose ends in a fixed point, and the check agrees.
    #[test]
    fn passes_without_composition_are_fixed_points() {
        for p in [
            "Ünïcödé  ÀÉÎ ?",
            "東京の天気は？",
            "ΟΔΟΣ ΣΟΦΙΑΣ.",
            "\u{3000}x\u{a0} y\u{3000}",
            "STRASSE ẞ\u{200d}",
        ] {
            let (once, composed) = one_pass_unicode(p);
            assert!(!composed, "{p:?}");
            assert!(is_fixed_point(&once), "{p:?}");
        }
    }

    /// Composition never turns lowercase-stable parts into a character that lowercases.
    #[test]
    fn composites_of_lowercase_parts_are_lowercase() {
        for c in special_chars() {
            let parts: String = std::iter::once(c).nfd().collect();
            if parts.chars().all(is_lowercase_stable) {
                let composed: String = parts.nfc().collect();
                assert!(
                    composed.chars().all(is_lowercase_stable),
                    "U+{:04X}",
                    c as u32
                );
            }
        }
    }

    fn weird_char() -> impl Strategy<Value = char> {
        prop_oneof![
            4 => prop::sample::select(vec![
                'A', 'z', ' ', '\t', '\n', '.', '?', '!', '¿', '«', '»', '+', '|', '"', '\\',
                '\0', '\u{200d}', '\u{301}', '\u{308}', '\u{345}', '\u{307}', 'İ', 'ẞ', 'ß',
                'Σ', 'σ', 'ς', 'Α', 'ᾼ', '\u{212a}', '\u{212b}', '\u{2126}', '\u{3000}', '\u{85}',
                '\u{2000}', '\u{1100}', '\u{1161}', '\u{11a8}', '가', 'Å', 'Ǆ', 'ǅ', 'ǆ', 'ﬀ', '・',
            ]),
            1 => any::<char>(),
        ]
    }

    fn weird_string() -> impl Strategy<Value = String> {
        prop::collection::vec(weird_char(), 0..24).prop_map(|v| v.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn normalize_is_idempotent(p in weird_string()) {
            let once = normalize(&p);
            prop_assert_eq!(normalize(&once), once);
        }

        #[test]
        fn one_pass_is_a_fixed_point(p in weird_string()) {
            let (once, _) = one_pass_unicode(&p);
            prop_assert!(is_fixed_point(&once));
            prop_assert_eq!(one_pass_unicode(&once).0, once);
        }

        #[test]
        fn normalize_is_the_spec_composition(p in weird_string()) {
            prop_assert_eq!(normalize(&p), reference(&p));
        }

        #[test]
        fn ascii_path_matches_the_general_path(p in "[ -~\t\n\r\x0b\x0c\x00\x1c]{0,200}") {
            prop_assert_eq!(normalize_ascii(&p), one_pass_unicode(&p).0);
        }

        #[test]
        fn escaped_ascii_path_matches_escaping_the_general_path(p in "[\x00-\x7f]{0,200}") {
            prop_assert_eq!(escaped_in_one_pass(&p), escaped_after(&one_pass_unicode(&p).0));
        }

        #[test]
        fn escaped_path_matches_escaping_normalize(p in weird_string()) {
            prop_assert_eq!(escaped_in_one_pass(&p), escaped_after(&normalize(&p)));
        }
    }
}
