//! Unicode Normalization Form C (UAX #15) from canonical tables only: canonical decomposition,
//! canonical ordering, canonical composition, built on `unicode-normalization`'s per-character
//! functions. Its `nfc()` iterator also decomposes by compatibility at run time, which links
//! the compatibility and CJK-variant tables (about 70 KB of the Worker's wasm) into every
//! build; this module gives the same answer (tested against it) without them.

use unicode_normalization::char::{canonical_combining_class, compose, decompose_canonical};
use unicode_normalization::{is_nfc_quick, IsNormalized};

/// The NFC of `chars`, as `unicode_normalization::UnicodeNormalization::nfc` gives it.
pub fn nfc(chars: impl Iterator<Item = char>, capacity: usize) -> Vec<char> {
    // Canonical decomposition, each character with its combining class.
    let mut parts: Vec<(char, u8)> = Vec::with_capacity(capacity);
    for c in chars {
        decompose_canonical(c, |d| parts.push((d, canonical_combining_class(d))));
    }
    // Canonical ordering: every run of non-starters, stably by combining class.
    let mut i = 0;
    while i < parts.len() {
        if parts[i].1 == 0 {
            i += 1;
            continue;
        }
        let start = i;
        while i < parts.len() && parts[i].1 != 0 {
            i += 1;
        }
        parts[start..i].sort_by_key(|&(_, cc)| cc);
    }
    // Canonical composition: each character joins the last starter when nothing blocks it.
    let mut out: Vec<char> = Vec::with_capacity(parts.len());
    // The last starter's index in `out`, and the class of the last character kept after it
    // (`None`: it comes straight after the starter).
    let mut starter: Option<usize> = None;
    let mut last_cc: Option<u8> = None;
    for (c, cc) in parts {
        if let Some(s) = starter {
            let blocked = last_cc.is_some_and(|l| l >= cc);
            if !blocked {
                if let Some(composed) = compose(out[s], c) {
                    out[s] = composed;
                    continue;
                }
            }
        }
        if cc == 0 {
            starter = Some(out.len());
            last_cc = None;
        } else if starter.is_some() {
            last_cc = Some(cc);
        }
        out.push(c);
    }
    out
}

/// Whether `s` is in NFC, as `unicode_normalization::is_nfc` says.
pub fn is_nfc(s: &str) -> bool {
    match is_nfc_quick(s.chars()) {
        IsNormalized::Yes => true,
        IsNormalized::No => false,
        IsNormalized::Maybe => nfc(s.chars(), s.len()).into_iter().eq(s.chars()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use unicode_normalization::UnicodeNormalization;

    fn reference(s: &str) -> String {
        s.nfc().collect()
    }

    fn ours(s: &str) -> String {
        nfc(s.chars(), s.len()).into_iter().collect()
    }

    /// Every character of the planes that hold decompositions and compositions (up to
    /// U+2FFFF), alone, after a starter, and before a mark.
    #[test]
    fn every_character_matches_the_crate() {
        for c in (0..=0x2FFFFu32).filter_map(char::from_u32) {
            for s in [c.to_string(), format!("a{c}"), format!("{c}\u{301}")] {
                assert_eq!(ours(&s), reference(&s), "U+{:04X}", c as u32);
                assert_eq!(
                    is_nfc(&s),
                    unicode_normalization::is_nfc(&s),
                    "U+{:04X}",
                    c as u32
                );
            }
        }
    }

    #[test]
    fn known_compositions() {
        assert_eq!(ours("e\u{301}"), "\u{e9}");
        // Marks out of canonical order compose after reordering.
        assert_eq!(ours("a\u{323}\u{302}"), reference("a\u{323}\u{302}"));
        assert_eq!(ours("a\u{302}\u{323}"), reference("a\u{302}\u{323}"));
        // Hangul L V T.
        assert_eq!(ours("\u{1100}\u{1161}\u{11a8}"), "\u{ac01}");
        // A mark before any starter stays.
        assert_eq!(ours("\u{301}e"), "\u{301}e");
        // A blocked mark: a same-class mark between it and the starter.
        assert_eq!(ours("a\u{301}\u{301}"), reference("a\u{301}\u{301}"));
    }

    /// Characters that decompose, compose or reorder, mixed with plain letters.
    fn tricky() -> impl Strategy<Value = char> {
        prop_oneof![
            prop::sample::select(vec![
                'a',
                'e',
                'o',
                'A',
                'ı',
                'ſ',
                '\u{300}',
                '\u{301}',
                '\u{302}',
                '\u{308}',
                '\u{323}',
                '\u{327}',
                '\u{328}',
                '\u{345}',
                '\u{3b1}',
                '\u{3c9}',
                '\u{1100}',
                '\u{1161}',
                '\u{11a8}',
                '\u{ac00}',
                '\u{1e0b}',
                '\u{212b}',
                '\u{2126}',
                '\u{f900}',
                '\u{0f73}',
                '\u{0f75}',
                '\u{0f81}',
                '\u{1d15e}',
                '\u{05b0}',
                '\u{0591}',
                '\u{0e48}',
                '\u{093c}',
                '\u{0958}',
                ' ',
            ]),
            any::<char>(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        #[test]
        fn matches_the_crate(chars in prop::collection::vec(tricky(), 0..24)) {
            let s: String = chars.into_iter().collect();
            prop_assert_eq!(ours(&s), reference(&s));
            prop_assert_eq!(is_nfc(&s), unicode_normalization::is_nfc(&s));
        }
    }
}
