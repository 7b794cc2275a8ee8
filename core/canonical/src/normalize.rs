//! Prompt normalization for the cache key: lowercase, NFC, collapse whitespace, strip trailing
//! punctuation (DESIGN.md "Cache key"). ASCII prompts go eight bytes at a time; other prompts
//! go in one pass straight into the key's JSON text when NFC has nothing to do (its quick check
//! answers Yes for the lowercased text, the common case), and by the general path, one step
//! after the other, when it might compose.
//!
//! `normalize(normalize(x)) == normalize(x)` for every string. When lowercasing leaves a string
//! in NFC (the common case), one pass is a fixed point: lowercasing is idempotent (tested for
//! every character), and collapsing and stripping only replace or drop starters that compose
//! with nothing, or cut a suffix, which keeps a string lowercase and NFC. When NFC has to
//! compose, the result rests on how std's case tables and `unicode-normalization`'s tables (of
//! different Unicode versions) agree, so that path checks its output and runs the pass again
//! in the (never yet seen) case that it is not a fixed point.

use unicode_normalization::{is_nfc_quick, IsNormalized};

use crate::nfc::{is_nfc, nfc};
pub use crate::punctuation::is_punctuation;

use crate::canonical_json::{escape, needs_escape, write_json_string_body};

/// Further passes the general path may run if one pass was not a fixed point.
const MAX_EXTRA_PASSES: usize = 8;

/// The normalized form of a prompt, as it enters the cache key:
/// `strip_trailing_punct(collapse_ws(nfc(lowercase(p))))`, repeated to a fixed point.
pub fn normalize(p: &str) -> String {
    if p.is_ascii() {
        return normalize_ascii(p);
    }
    // The key's one-pass writer, JSON-escaped (one copy of it in the Worker): without a
    // backslash, nothing was escaped.
    let mut out = Vec::new();
    if write_normalized_unicode(p, &mut out) && !out.contains(&b'\\') {
        // Always UTF-8 (whole characters copied or encoded), checked rather than assumed.
        if let Ok(s) = String::from_utf8(out) {
            return s;
        }
    }
    normalize_composing(p)
}

/// [`normalize`] by the general path: one pass of the four steps, repeated to a fixed point if
/// NFC composed.
fn normalize_composing(p: &str) -> String {
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

// ---------------------------------------------------------------------------------------------
// ASCII, eight bytes at a time in a `u64` (SWAR): the release profile optimizes for size,
// which turns LLVM's auto-vectorizer off, and wasm32 has 64-bit integers. On ASCII,
// `to_lowercase` is ASCII lowercase, NFC is the identity, the whitespace is `\t \n \v \f \r`
// and space, and punctuation is a fixed set, so one pass is a fixed point.
// ---------------------------------------------------------------------------------------------

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;
const LOW7: u64 = !HIGH;

/// Room kept past the output's length, so that an eight-byte store needs no check.
const SLACK: usize = 8;

fn normalize_ascii(p: &str) -> String {
    let mut out = Vec::new();
    write_normalized_ascii::<false>(p.as_bytes(), &mut out);
    match String::from_utf8(out) {
        Ok(s) => s,
        // Unreachable: the bytes are ASCII. The general path gives the same answer anyway.
        Err(_) => one_pass_unicode(p).0,
    }
}

/// Appends the body of the JSON string literal of `normalize(p)` (escaped, no quotes) to `out`,
/// normalized and escaped in one pass with no intermediate string unless NFC might compose,
/// handing `out` to `take` (which may empty it) after each `part` bytes (at least 8) of an
/// ASCII prompt and once at the end, so that a consumer such as a hasher keeps one small
/// buffer hot instead of one as long as the prompt.
pub fn write_normalized_json_body_in_parts(
    p: &str,
    out: &mut Vec<u8>,
    part: usize,
    mut take: impl FnMut(&mut Vec<u8>),
) {
    if p.is_ascii() {
        let bytes = without_trailing_ascii(p.as_bytes());
        let mut after_space = true;
        for piece in bytes.chunks(part.max(8)) {
            write_normalized_ascii_part::<true>(piece, out, &mut after_space);
            take(out);
        }
    } else {
        let start = out.len();
        if !write_normalized_unicode(p, out) {
            out.truncate(start);
            write_json_string_body(&normalize_composing(p), out);
        }
        take(out);
    }
}

/// Appends `normalize(p)` for ASCII `p` to `out`, JSON-escaped if `ESCAPE`.
///
/// Trailing whitespace and punctuation are cut from the input first: lowercasing and collapsing
/// leave both where they are, so this is the same as stripping them from the output. Then
/// words of eight bytes that only lowercase are stored two at a time, and the others (with a
/// byte to blank, a space to drop or a byte to escape) one at a time.
fn write_normalized_ascii<const ESCAPE: bool>(p: &[u8], out: &mut Vec<u8>) {
    write_normalized_ascii_part::<ESCAPE>(without_trailing_ascii(p), out, &mut true);
}

/// `p` (ASCII) without its trailing whitespace and punctuation.
fn without_trailing_ascii(p: &[u8]) -> &[u8] {
    let mut end = p.len();
    while end > 0 && (lower_and_blank(p[end - 1]) == b' ' || is_ascii_punctuation(p[end - 1])) {
        end -= 1;
    }
    &p[..end]
}

/// Appends the normalized form of `bytes`, a part of an ASCII prompt without its trailing
/// whitespace and punctuation; `after_space_before` says whether the byte before the part became a
/// space (true before the first part drops leading whitespace), and is left saying it of the
/// part's last byte.
fn write_normalized_ascii_part<const ESCAPE: bool>(
    bytes: &[u8],
    out: &mut Vec<u8>,
    after_space_before: &mut bool,
) {
    // `out` holds initialized room at `len..`: at least one byte per unread input byte and
    // `SLACK` more; a word that escapes first makes room for six bytes per byte.
    let mut len = out.len();
    out.resize(len + bytes.len() + SLACK, 0);
    // Whether the last byte seen became a space.
    let mut after_space = *after_space_before;
    let mut i = 0;
    while i + 8 <= bytes.len() {
        // The high bit of the last byte if it is a space, shifted down to the first byte's.
        let mut carry = u64::from(after_space) << 7;
        let src = &bytes[i..];
        // As long as the input, so that its bounds bound the stores.
        let dst = &mut out[len..len + src.len()];
        let mut j = 0;
        while j + 16 <= src.len() {
            let (y0, spaces0, special0) = lowercase_word::<ESCAPE>(word_at(src, j), carry);
            let (y1, spaces1, special1) =
                lowercase_word::<ESCAPE>(word_at(src, j + 8), spaces0 >> 56);
            if special0 | special1 != 0 {
                break;
            }
            dst[j..j + 8].copy_from_slice(&y0.to_le_bytes());
            dst[j + 8..j + 16].copy_from_slice(&y1.to_le_bytes());
            carry = spaces1 >> 56;
            j += 16;
        }
        i += j;
        len += j;
        after_space = carry != 0;
        // Single words up to the one that needs more than lowercasing (one of the next two,
        // unless the input ends first).
        while i + 8 <= bytes.len() {
            let x = word_at(bytes, i);
            let unread = bytes.len() - i;
            let special;
            (len, special) = put_ascii_word::<ESCAPE>(out, len, x, 8, &mut after_space, unread);
            i += 8;
            if special {
                break;
            }
        }
    }
    if ESCAPE {
        make_room(out, len, 6 * 8);
    }
    for &b in &bytes[i..] {
        let b = lower_and_blank(b);
        let space = b == b' ';
        if !(space && after_space) {
            len = put(out, len, b, ESCAPE && needs_escape(b));
        }
        after_space = space;
    }
    out.truncate(len);
    *after_space_before = after_space;
}

/// The eight bytes of `s` at `i`, as a little-endian word.
#[inline(always)]
fn word_at(s: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&s[i..i + 8]);
    u64::from_le_bytes(w)
}

/// The eight ASCII bytes `x` lowercased, the high bits of its spaces, and nonzero if the word
/// needs more than lowercasing: a byte below 0x20 (whitespace to blank, controls to escape),
/// `"` or `\` if `ESCAPE`, or a space to drop (one after a space; `carry` has the high bit of
/// the first byte set when the byte before the word is one).
///
/// Bytes of `x` that are not ASCII give garbage in their own and later bytes, never earlier
/// ones: every sum stays within its byte for ASCII, and carries and shifts only go up.
#[inline(always)]
fn lowercase_word<const ESCAPE: bool>(x: u64, carry: u64) -> (u64, u64, u64) {
    // High bit of each byte at least 0x20, and (if escaping) neither `"` nor `\`.
    let mut fine = x.wrapping_add(ONES * 0x60);
    if ESCAPE {
        fine &= (x ^ (ONES * u64::from(b'"'))).wrapping_add(LOW7)
            & (x ^ (ONES * u64::from(b'\\'))).wrapping_add(LOW7);
    }
    let spaces = ascii_spaces(x);
    let special = (!fine & HIGH) | (spaces & ((spaces << 8) | carry));
    // Per byte, `b + 0x3f` reaches 0x80 from `A` on, `b + 0x25` from past `Z` on.
    let upper = (x.wrapping_add(ONES * 0x3f) ^ x.wrapping_add(ONES * 0x25)) & HIGH;
    (x | (upper >> 2), spaces, special)
}

/// Writes the first `k` bytes of `x` (ASCII; later bytes may not be), read with `unread` input
/// bytes left, at `len`: lowercased, blanked, spaces after a space dropped, escaped if
/// `ESCAPE`. Returns the new length, and whether the word needed more than lowercasing.
#[inline(always)]
fn put_ascii_word<const ESCAPE: bool>(
    out: &mut Vec<u8>,
    len: usize,
    x: u64,
    k: usize,
    after_space: &mut bool,
    unread: usize,
) -> (usize, bool) {
    let keep = if k == 8 {
        HIGH
    } else {
        HIGH & ((1 << (8 * k)) - 1)
    };
    let last = 8 * k - 1;
    let (y, spaces, special) = lowercase_word::<ESCAPE>(x, u64::from(*after_space) << 7);
    if special & keep == 0 {
        out[len..len + 8].copy_from_slice(&y.to_le_bytes());
        *after_space = (spaces >> last) & 1 != 0;
        return (len + k, false);
    }
    let y = lower_and_blank_word(x);
    let spaces = ascii_spaces(y) & keep;
    // A space is dropped when the byte before it (in this word or the last) is a space.
    let drop = spaces & ((spaces << 8) | (u64::from(*after_space) << 7));
    let escapes = if ESCAPE {
        ascii_escape_mask(y) & keep
    } else {
        0
    };
    *after_space = (spaces >> last) & 1 != 0;
    if drop | escapes == 0 {
        out[len..len + 8].copy_from_slice(&y.to_le_bytes());
        return (len + k, true);
    }
    if escapes != 0 {
        make_room(out, len, 6 * 8 + unread + SLACK);
    }
    (put_special_word(out, len, y, k, drop, escapes), true)
}

/// Writes the first `k` bytes of the ASCII word `y` at `len` but for those marked in `drop`
/// (high bits), escaping those marked in `escapes`, in room for eight bytes per byte. The bytes
/// between marked ones go in one store each. (Out of line: inlined, it slows the loops it
/// would sit in.)
#[inline(never)]
fn put_special_word(
    out: &mut [u8],
    mut len: usize,
    y: u64,
    k: usize,
    drop: u64,
    escapes: u64,
) -> usize {
    let mut marked = drop | escapes;
    // Bytes of `y` from `from` on are still to go.
    let mut from = 0;
    while marked != 0 {
        let j = (marked.trailing_zeros() / 8) as usize;
        out[len..len + 8].copy_from_slice(&(y >> (8 * from)).to_le_bytes());
        len += j - from;
        // The escape is stored either way; a dropped byte takes no room.
        let e = escape_bytes((y >> (8 * j)) as u8);
        out[len..len + 8].copy_from_slice(&e);
        if (escapes >> (8 * j)) & 0x80 != 0 {
            len += usize::from(e[7]);
        }
        from = j + 1;
        marked &= marked - 1;
    }
    // `from` is 8 when the last byte was marked: the shift wraps, and nothing is kept.
    out[len..len + 8].copy_from_slice(&y.wrapping_shr(8 * from as u32).to_le_bytes());
    len + (k - from)
}

/// The JSON escape of `b` (for which [`needs_escape`] holds) in the first bytes of eight, and
/// its length in the last.
#[inline(always)]
fn escape_bytes(b: u8) -> [u8; 8] {
    const fn table() -> [[u8; 8]; 128] {
        let mut t = [[0u8; 8]; 128];
        let hex = b"0123456789abcdef";
        let mut b = 0;
        while b < 128 {
            let c = b as u8;
            let short = match c {
                b'"' => b'"',
                b'\\' => b'\\',
                0x08 => b'b',
                0x09 => b't',
                0x0a => b'n',
                0x0c => b'f',
                0x0d => b'r',
                _ => 0,
            };
            t[b] = if short != 0 {
                [b'\\', short, 0, 0, 0, 0, 0, 2]
            } else {
                let (hi, lo) = (hex[(c >> 4) as usize], hex[(c & 15) as usize]);
                [b'\\', b'u', b'0', b'0', hi, lo, 0, 6]
            };
            b += 1;
        }
        t
    }
    static ESCAPES: [[u8; 8]; 128] = table();
    ESCAPES[usize::from(b & 0x7f)]
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

/// Makes `out` hold initialized room for at least `need` bytes from `len`.
#[inline(always)]
fn make_room(out: &mut Vec<u8>, len: usize, need: usize) {
    if out.len() < len + need {
        grow(out, len + need);
    }
}

/// Resizes `out` to at least `min`, with room to spare so that escapes do not resize it each
/// time.
#[inline(never)]
fn grow(out: &mut Vec<u8>, min: usize) {
    out.resize(min + 512, 0);
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
// Prompts that are not ASCII, in one pass. When `is_nfc_quick` answers Yes for the lowercased
// prompt, NFC is the identity and the general path returns
// `strip_trailing_punctuation(collapse(to_lowercase(p)))`: that is written here straight from
// the prompt, checking the quick check's conditions (every character of the lowercased text
// NFC_QC=Yes, combining classes in order) as it goes. When one fails, the caller runs the
// general path instead; so the output is the general path's for every input.
//
// - Trailing punctuation and whitespace are cut from the input first, as for ASCII: they are
//   lowercase-stable, and the lowercase of any other character ends in neither (both tested
//   for every character).
// - Most characters are "simple": every step leaves them alone wherever they stand
//   (lowercase-stable, NFC_QC=Yes, combining class 0, not whitespace), looked up in a bitset.
//   Runs of them, with ASCII that does not change, are copied whole; capitals two bytes long
//   whose lowercase is simple and two bytes long are lowercased by an offset from a table.
// - ASCII goes eight bytes at a time as above, and so do words of ASCII and two-byte
//   characters (Latin, Greek, Cyrillic text).
// - Σ is the one character whose lowercase depends on its neighbours (std's Final_Sigma). The
//   neighbours settle it most of the time; else its word is lowercased again by
//   `str::to_lowercase` and rewritten (whitespace is neither case-ignorable nor cased, so the
//   ends of a word look like the ends of the string to it).
// - The rest goes through `char::to_lowercase` and the quick check's step.
// ---------------------------------------------------------------------------------------------

/// Appends `normalize(p)`, JSON-escaped, to `out` and returns true, or returns false, with
/// garbage in `out` past its old length, if NFC might compose.
fn write_normalized_unicode(p: &str, out: &mut Vec<u8>) -> bool {
    let end = p.len() - trailing_punctuation_and_whitespace(p);
    let s = &p.as_bytes()[..end];
    let n = s.len();
    let start = out.len();
    let mut len = start;
    // Invariant: `out.len() >= len + (n - i) + SLACK`, initialized room for one byte per
    // unread input byte and a word more. Steps that write more than they read make room.
    out.resize(len + n + SLACK, 0);
    // Whether the last character seen became a space; true at the start drops leading
    // whitespace.
    let mut after_space = true;
    // Combining class of the last character of the lowercased text, as `is_nfc_quick` tracks.
    let mut last_cc = 0u8;
    let mut i = 0;
    while i < n {
        if i + 8 <= n {
            let x = word_at(s, i);
            if x & HIGH == 0 {
                len = put_ascii_word::<true>(out, len, x, 8, &mut after_space, n - i).0;
                last_cc = 0;
                i += 8;
                continue;
            }
            // Lead bytes of three or four (CJK, Hangul, emoji) come in runs, which the run
            // below takes faster.
            if x & (x << 1) & (x << 2) & HIGH == 0 {
                if let Some(y) = two_byte_word(p, end, i, x, &mut after_space) {
                    out[len..len + 8].copy_from_slice(&y.to_le_bytes());
                    len += 8;
                    last_cc = 0;
                    i += 8;
                    continue;
                }
            }
            // ASCII bytes before the first byte that is not.
            let k = ((x & HIGH).trailing_zeros() / 8) as usize;
            if k > 0 {
                len = put_ascii_word::<true>(out, len, x, k, &mut after_space, n - i).0;
                last_cc = 0;
                i += k;
            }
        } else if s[i] < 0x80 {
            let b = lower_and_blank(s[i]);
            let space = b == b' ';
            if !(space && after_space) {
                let escaped = needs_escape(b);
                if escaped {
                    make_room(out, len, 6 + (n - i) + SLACK);
                }
                len = put(out, len, b, escaped);
            }
            after_space = space;
            last_cc = 0;
            i += 1;
            continue;
        }
        // `s[i]` is not ASCII.
        if s[i] & 0xc0 == 0x80 {
            // A word stopped inside a character, a simple one: the rest of it is copied.
            out[len] = s[i];
            len += 1;
            i += 1;
            continue;
        }
        let (run_len, run_end, space) = write_run(p, end, out, len, i);
        if run_end > i {
            len = run_len;
            i = run_end;
            after_space = space;
            last_cc = 0;
            continue;
        }
        // A character that is neither simple nor lowercased in a run.
        let Some(c) = p[i..].chars().next() else {
            return false;
        };
        if c == 'Σ' {
            match rewrite_sigma_word(p, end, i, out, start, len) {
                Some((l, next)) => {
                    len = l;
                    i = next;
                }
                None => return false,
            }
            after_space = false;
            last_cc = 0;
            continue;
        }
        make_room(out, len, 4 * 6 + (n - i) + SLACK);
        if c.is_whitespace() {
            if !nfc_quick_step(c, &mut last_cc) {
                return false;
            }
            if !after_space {
                out[len] = b' ';
                len += 1;
            }
            after_space = true;
        } else {
            for lower in c.to_lowercase() {
                match put_lowered(lower, out, len, &mut last_cc) {
                    Some(l) => len = l,
                    None => return false,
                }
            }
            after_space = false;
        }
        i += c.len_utf8();
    }
    // The cut characters are lowercase-stable; NFC must leave them alone too.
    for c in p[end..].chars() {
        if !nfc_quick_step(c, &mut last_cc) {
            return false;
        }
    }
    out.truncate(len);
    true
}

/// The eight bytes `x` at `p[i..]` (`i + 8 <= end`; none a lead byte of three or four) as
/// written, if they need no more than lowercasing: ASCII as [`lowercase_word`] takes it, and
/// each character that starts in the word simple or a capital that [`lowercase_at`] lowers
/// (but for one the word's end cuts). Bytes that go on with a character of the last word are
/// kept: that one was simple.
#[inline(always)]
fn two_byte_word(p: &str, end: usize, i: usize, x: u64, after_space: &mut bool) -> Option<u64> {
    let s = &p.as_bytes()[..end];
    let ascii = !x & HIGH;
    // The masks of `lowercase_word`, from the low seven bits so that nothing carries, kept for
    // the ASCII bytes: the spaces before the drops.
    let low = x & LOW7;
    let fine = low.wrapping_add(ONES * 0x60)
        & (low ^ (ONES * u64::from(b'"'))).wrapping_add(LOW7)
        & (low ^ (ONES * u64::from(b'\\'))).wrapping_add(LOW7);
    let spaces = ascii_spaces(low) & ascii;
    let drop = spaces & ((spaces << 8) | (u64::from(*after_space) << 7));
    if (!fine & ascii) | drop != 0 {
        return None;
    }
    let upper = (low.wrapping_add(ONES * 0x3f) ^ low.wrapping_add(ONES * 0x25)) & ascii;
    let mut y = x | (upper >> 2);
    // Lead bytes have their top two bits set.
    let mut leads = x & (x << 1) & HIGH;
    while leads != 0 {
        let j = (leads.trailing_zeros() / 8) as usize;
        if !simple_at(s, i + j).0 {
            if j == 7 {
                return None;
            }
            let lower = lowercase_at(p, end, i + j)?;
            let bytes = (0xc0 | (lower >> 6)) | ((0x80 | (lower & 0x3f)) << 8);
            y = (y & !(0xffff << (8 * j))) | (u64::from(bytes) << (8 * j));
        }
        leads &= leads - 1;
    }
    *after_space = spaces >> 63 != 0;
    Some(y)
}

/// Writes the run of text that starts with the character at `p[i..]` (up to `end`) at `len`:
/// text every step leaves alone (simple characters, ASCII that neither lowercases nor escapes,
/// single spaces) is copied as a whole when something else comes; capitals that
/// [`lowercase_at`] lowers are written in between. Returns the new length, where the input
/// goes on (`i` if the first character is neither), and whether the run ended in a space.
#[inline(always)]
fn write_run(
    p: &str,
    end: usize,
    out: &mut [u8],
    mut len: usize,
    mut i: usize,
) -> (usize, usize, bool) {
    let s = &p.as_bytes()[..end];
    let mut run = i;
    let mut space = false;
    while i < s.len() {
        match run_class(s[i]) {
            RUN_PLAIN => {
                space = false;
                i += 1;
            }
            RUN_SPACE if !space => {
                space = true;
                i += 1;
            }
            RUN_LEAD => {
                let (simple, width) = simple_at(s, i);
                if simple {
                    space = false;
                    i += width;
                    continue;
                }
                let Some(lower) = lowercase_at(p, end, i) else {
                    break;
                };
                // Two bytes in, two bytes out.
                len = copy_run(out, len, &s[run..i]);
                out[len] = 0xc0 | (lower >> 6) as u8;
                out[len + 1] = 0x80 | (lower & 0x3f) as u8;
                len += 2;
                i += 2;
                run = i;
                space = false;
            }
            _ => break,
        }
    }
    (copy_run(out, len, &s[run..i]), i, space)
}

/// Classes of bytes in a run: ASCII that every step leaves alone and that is not escaped
/// (printable but for space, the capitals, `"` and `\`), the space, bytes that are not ASCII
/// (only lead bytes come up), and the rest.
const RUN_OTHER: u8 = 0;
const RUN_PLAIN: u8 = 1;
const RUN_SPACE: u8 = 2;
const RUN_LEAD: u8 = 3;

/// The run class of `b`.
#[inline(always)]
fn run_class(b: u8) -> u8 {
    const fn table() -> [u8; 256] {
        let mut t = [RUN_OTHER; 256];
        let mut b = 0;
        while b < 256 {
            let c = b as u8;
            t[b] = if c >= 0x80 {
                RUN_LEAD
            } else if c == b' ' {
                RUN_SPACE
            } else if c > b' ' && c < 0x7f && !c.is_ascii_uppercase() && c != b'"' && c != b'\\' {
                RUN_PLAIN
            } else {
                RUN_OTHER
            };
            b += 1;
        }
        t
    }
    static CLASSES: [u8; 256] = table();
    CLASSES[usize::from(b)]
}

/// Writes `run`, input text that every step leaves alone, at `len`; returns the new length.
#[inline(always)]
fn copy_run(out: &mut [u8], len: usize, run: &[u8]) -> usize {
    if !run.is_empty() {
        out[len..len + run.len()].copy_from_slice(run);
    }
    len + run.len()
}

/// The lowercase of the character at `p[i..]` (before `end`) when it is a capital two bytes
/// long whose lowercase is simple and two bytes long, found without the general path: by the
/// offset in [`TWO_BYTE`], or Σ settled by its neighbours.
#[inline(always)]
fn lowercase_at(p: &str, end: usize, i: usize) -> Option<u32> {
    let s = p.as_bytes();
    if s[i] >= 0xe0 {
        return None;
    }
    let cp = (u32::from(s[i] & 0x1f) << 6) | u32::from(s[i + 1] & 0x3f);
    match lowercase_by_offset(cp) {
        Some(lower) => Some(lower),
        None if cp == u32::from('Σ') => sigma_by_neighbours(p, end, i).map(u32::from),
        None => None,
    }
}

/// Byte length of the trailing run of punctuation and whitespace of `p`.
fn trailing_punctuation_and_whitespace(p: &str) -> usize {
    let mut cut = 0;
    for c in p.chars().rev() {
        let strip = if c.is_ascii() {
            let b = c as u8;
            lower_and_blank(b) == b' ' || is_ascii_punctuation(b)
        } else {
            c.is_whitespace() || is_punctuation(c)
        };
        if !strip {
            break;
        }
        cut += c.len_utf8();
    }
    cut
}

/// The code point and UTF-8 length of the character that starts at `s[i]`, a lead byte that
/// is not ASCII (`s` is valid UTF-8).
#[inline(always)]
fn decode(s: &[u8], i: usize) -> (u32, usize) {
    let b0 = u32::from(s[i]);
    let cont = |j: usize| u32::from(s[i + j] & 0x3f);
    if b0 < 0xe0 {
        (((b0 & 0x1f) << 6) | cont(1), 2)
    } else if b0 < 0xf0 {
        (((b0 & 0x0f) << 12) | (cont(1) << 6) | cont(2), 3)
    } else {
        (
            ((b0 & 0x07) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3),
            4,
        )
    }
}

/// Whether the character that starts at `s[i]`, a lead byte that is not ASCII, is
/// [`is_simple`], and its UTF-8 length. For three bytes, a chunk of the bitset is the 64 code
/// points of the last byte's payload, so the first two pick the chunk.
#[inline(always)]
fn simple_at(s: &[u8], i: usize) -> (bool, usize) {
    let b0 = s[i];
    if b0 < 0xe0 {
        let cp = (u32::from(b0 & 0x1f) << 6) | u32::from(s[i + 1] & 0x3f);
        (two_byte_class(cp) == TWO_BYTE_SIMPLE, 2)
    } else if b0 < 0xf0 {
        let chunk = (usize::from(b0 & 0x0f) << 6) | usize::from(s[i + 1] & 0x3f);
        (simple_bit(chunk, s[i + 2]), 3)
    } else {
        (is_simple(decode(s, i).0), 4)
    }
}

/// Whether every step leaves `cp` alone wherever it stands: it is lowercase-stable, NFC_QC=Yes,
/// of combining class 0 and not whitespace (the tests check the tables against these
/// properties for every character).
#[inline(always)]
fn is_simple(cp: u32) -> bool {
    if cp < 0x20000 {
        simple_bit((cp >> 6) as usize, cp as u8)
    } else {
        // Planes 2 and up: only the CJK compatibility ideographs decompose.
        !(0x2f800..=0x2fa1d).contains(&cp)
    }
}

/// Bit `last % 64` of chunk `chunk` (below 0x20000 / 64) of the bitset of [`is_simple`].
#[inline(always)]
fn simple_bit(chunk: usize, last: u8) -> bool {
    let id = SIMPLE_INDEX.get(chunk).copied().unwrap_or(0);
    SIMPLE_CHUNKS
        .get(usize::from(id))
        .is_some_and(|bits| (bits >> (last & 63)) & 1 != 0)
}

/// For a two-byte capital whose lowercase is simple and two bytes long (but Σ): the code point
/// of that lowercase, from [`TWO_BYTE`].
#[inline(always)]
fn lowercase_by_offset(cp: u32) -> Option<u32> {
    let class = two_byte_class(cp);
    (class != TWO_BYTE_SIMPLE && class != TWO_BYTE_OTHER)
        .then(|| cp.wrapping_add_signed(i32::from(class as i8)))
}

/// The [`TWO_BYTE`] entry of `cp` (`TWO_BYTE_OTHER` for code points not two bytes long).
#[inline(always)]
fn two_byte_class(cp: u32) -> u8 {
    let index = (cp as usize).wrapping_sub(0x80);
    TWO_BYTE.get(index).copied().unwrap_or(TWO_BYTE_OTHER)
}

/// [`TWO_BYTE`] entries: a simple character, or one neither simple nor lowercased at an
/// offset. Any other entry is that offset, as an `i8`.
const TWO_BYTE_SIMPLE: u8 = 0;
const TWO_BYTE_OTHER: u8 = 0x80;

/// Writes `c`, a character of the lowercased text that is not whitespace, at `len` (room for
/// six bytes made), after the quick check's step. `None` if the quick check would not answer
/// Yes.
#[inline]
fn put_lowered(c: char, out: &mut [u8], len: usize, last_cc: &mut u8) -> Option<usize> {
    if c.is_ascii() {
        *last_cc = 0;
        let b = c as u8;
        return Some(put(out, len, b, needs_escape(b)));
    }
    if is_simple(u32::from(c)) {
        *last_cc = 0;
    } else if !nfc_quick_step(c, last_cc) {
        return None;
    }
    let w = c.len_utf8();
    c.encode_utf8(&mut out[len..len + w]);
    Some(len + w)
}

/// One step of `is_nfc_quick` over `c` after a character of combining class `last_cc`:
/// false if the answer could no longer be Yes.
fn nfc_quick_step(c: char, last_cc: &mut u8) -> bool {
    if c.is_ascii() {
        *last_cc = 0;
        return true;
    }
    let cc = unicode_normalization::char::canonical_combining_class(c);
    if cc != 0 && *last_cc > cc {
        return false;
    }
    *last_cc = cc;
    is_nfc_quick(std::iter::once(c)) == IsNormalized::Yes
}

/// The lowercase of the Σ at `p[i..]` when its neighbours settle it: ς when, skipping
/// case-ignorable characters, a cased one comes before it and none after, else σ (std's
/// Final_Sigma). `None` when a character in the way is not one [`sigma_neighbour`] knows.
#[inline]
fn sigma_by_neighbours(p: &str, end: usize, i: usize) -> Option<char> {
    let s = p.as_bytes();
    // The characters next to Σ settle it most of the time; they are read from the bytes when
    // ASCII or two bytes long.
    let two = |j: usize| {
        char::from_u32((u32::from(s[j] & 0x1f) << 6) | u32::from(s[j + 1] & 0x3f))
            .unwrap_or(char::REPLACEMENT_CHARACTER)
    };
    let settled = |c: char| match sigma_neighbour(c) {
        SigmaNeighbour::Cased => Some(true),
        SigmaNeighbour::Uncased => Some(false),
        _ => None,
    };
    let before = match i {
        0 => Some(false),
        _ if s[i - 1] < 0x80 => settled(char::from(s[i - 1])),
        _ if i >= 2 && s[i - 2] & 0xe0 == 0xc0 => settled(two(i - 2)),
        _ => None,
    };
    let before = match before {
        Some(before) => before,
        None => cased_past_ignorables(p[..i].chars().rev())?,
    };
    // The cut run after `end` is never cased, as if the string ended there.
    let after = match i + 2 {
        j if j == end => Some(false),
        j if s[j] < 0x80 => settled(char::from(s[j])),
        j if s[j] & 0xe0 == 0xc0 => settled(two(j)),
        _ => None,
    };
    let after = match after {
        Some(after) => after,
        None => cased_past_ignorables(p[i + 2..end].chars())?,
    };
    Some(if before && !after { 'ς' } else { 'σ' })
}

fn cased_past_ignorables(chars: impl Iterator<Item = char>) -> Option<bool> {
    for c in chars {
        match sigma_neighbour(c) {
            SigmaNeighbour::Ignorable => {}
            SigmaNeighbour::Cased => return Some(true),
            SigmaNeighbour::Uncased => return Some(false),
            SigmaNeighbour::Unknown => return None,
        }
    }
    Some(false)
}

/// What Final_Sigma sees in a character, for those of common text.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum SigmaNeighbour {
    /// Cased and not case-ignorable.
    Cased,
    /// Neither cased nor case-ignorable.
    Uncased,
    /// Case-ignorable: skipped.
    Ignorable,
    /// Not classed here.
    Unknown,
}

/// Letters of ASCII, Latin-1 and Greek are cased; ASCII digits and whitespace are not;
/// `' . : ^ `` `, the middle dot, the soft hyphen and the right single quotation mark are
/// case-ignorable (each checked against std in the tests).
#[inline]
fn sigma_neighbour(c: char) -> SigmaNeighbour {
    match u32::from(c) {
        0x41..=0x5a | 0x61..=0x7a | 0xc0..=0xd6 | 0xd8..=0xf6 | 0xf8..=0xff => {
            SigmaNeighbour::Cased
        }
        0x386 | 0x388..=0x38a | 0x38c | 0x38e..=0x3a1 | 0x3a3..=0x3ce => SigmaNeighbour::Cased,
        0x27 | 0x2e | 0x3a | 0x5e | 0x60 | 0xad | 0xb7 | 0x2019 => SigmaNeighbour::Ignorable,
        0x30..=0x39 => SigmaNeighbour::Uncased,
        _ if c.is_whitespace() => SigmaNeighbour::Uncased,
        _ => SigmaNeighbour::Unknown,
    }
}

/// Rewrites the word holding the Σ at `p[i..]` (its output starts after the last space
/// written since `start`) with `str::to_lowercase` of the whole word, which gives each Σ its
/// final or medial form. Returns the new length and where the input goes on, or `None` if the
/// quick check would not answer Yes. `end` is where the trailing cut begins: punctuation is
/// never cased, so cutting it does not change a Σ's form.
#[inline(never)]
fn rewrite_sigma_word(
    p: &str,
    end: usize,
    i: usize,
    out: &mut Vec<u8>,
    start: usize,
    len: usize,
) -> Option<(usize, usize)> {
    let word_in = p[..i]
        .char_indices()
        .rev()
        .find(|&(_, c)| c.is_whitespace())
        .map_or(0, |(j, c)| j + c.len_utf8());
    let word_end = p[i..end]
        .char_indices()
        .find(|&(_, c)| c.is_whitespace())
        .map_or(end, |(j, _)| i + j);
    let mut len = out[start..len]
        .iter()
        .rposition(|&b| b == b' ')
        .map_or(start, |j| start + j + 1);
    let lowered = p[word_in..word_end].to_lowercase();
    make_room(out, len, 6 * lowered.len() + (end - word_end) + SLACK);
    // The character before the word is whitespace, a starter, or there is none.
    let mut last_cc = 0;
    for c in lowered.chars() {
        len = put_lowered(c, out, len, &mut last_cc)?;
    }
    Some((len, word_end))
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
        collapse_chars(
            nfc(lowered.chars(), lowered.len()).into_iter(),
            lowered.len(),
        )
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
    s.chars().all(is_lowercase_stable) && is_nfc(s)
}

/// Whether `str::to_lowercase` maps `c` to itself in every context.
fn is_lowercase_stable(c: char) -> bool {
    if c.is_ascii() {
        return !c.is_ascii_uppercase();
    }
    let mut lower = c.to_lowercase();
    lower.next() == Some(c) && lower.next().is_none()
}

// The bitset of [`is_simple`] for U+0000..U+1FFFF: bit `cp % 64` of chunk
// `SIMPLE_INDEX[cp / 64]`; and the classes of the two-byte characters U+0080..U+07FF
// (`TWO_BYTE[cp - 0x80]`: simple, other, or the offset of a lowercase). Generated by
// `print_simple_table` in the tests, checked there.
static SIMPLE_INDEX: [u8; 2048] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
    10, 25, 26, 27, 10, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 33, 39, 35, 40, 41, 42, 33, 43,
    33, 44, 45, 42, 10, 46, 47, 48, 47, 48, 49, 50, 51, 52, 53, 10, 54, 55, 10, 56, 57, 58, 10, 10,
    10, 10, 10, 59, 60, 61, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 62, 10, 63, 10, 10, 64, 10, 10,
    65, 10, 66, 10, 10, 10, 67, 68, 69, 70, 71, 72, 73, 74, 75, 10, 76, 77, 10, 10, 10, 11, 78, 78,
    79, 78, 80, 81, 82, 83, 84, 85, 10, 86, 87, 88, 89, 10, 10, 10, 10, 10, 90, 10, 10, 10, 10, 10,
    91, 92, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 93, 10, 10, 10, 10, 15, 94, 78, 95, 10, 96, 10, 60, 10, 10, 10, 10, 10, 10, 10, 10, 97, 10,
    98, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 99, 100, 101, 102, 103, 104, 105,
    106, 10, 10, 107, 108, 109, 110, 62, 10, 10, 111, 112, 10, 10, 10, 113, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11,
    11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 11, 11, 11, 11, 114, 115, 11, 116, 117,
    118, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 88, 10, 10, 10, 119, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 120, 10, 10, 10, 121, 10, 122, 10, 10, 123, 10, 124, 125, 10, 126, 127, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 128, 10, 10, 129, 10, 10, 10, 10, 10,
    10, 130, 10, 131, 132, 10, 10, 10, 10, 133, 134, 10, 135, 136, 10, 10, 137, 138, 10, 139, 110,
    10, 140, 141, 10, 10, 90, 45, 142, 143, 144, 10, 145, 146, 147, 10, 10, 148, 62, 96, 10, 149,
    10, 150, 10, 10, 10, 138, 10, 60, 10, 151, 89, 10, 121, 152, 153, 154, 10, 10, 10, 10, 10, 96,
    10, 10, 10, 10, 155, 156, 10, 10, 10, 10, 10, 10, 157, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 158, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 159, 160, 10, 10, 10, 10, 10, 10, 10, 10, 161, 10, 10, 10, 162, 163, 10, 10,
    10, 10, 101, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 164,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 161, 165, 166, 62, 10, 167, 168, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    169, 10, 170, 10, 160, 10, 10, 10, 10, 10, 171, 172, 10, 10, 10, 10, 10, 10, 10, 172, 10, 10,
    10, 173, 10, 10, 10, 174, 10, 10, 10, 10, 10, 10, 10, 175, 176, 177, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
];
static SIMPLE_CHUNKS: [u64; 178] = [
    0xfffffffeffffc1ff,
    0xfffffffff8000001,
    0xfffffffeffffffdf,
    0xffffffff80800000,
    0x55aaaaaaaaaaaaaa,
    0xd4aaaaaaaaaaab55,
    0xee512d2a4e243129,
    0xaa29aaaab555524f,
    0x93faaaaaaaaaaaaa,
    0xffffffffffffaa85,
    0xffffffffffffffff,
    0x0000000000000000,
    0x3faa000000008000,
    0xfffff0040001283f,
    0x196faaaaaaff7fff,
    0xffff000000000000,
    0xaaaaaaaaffffffff,
    0xaaaaaaaaaaaaab06,
    0xaaaaaaaaaaaad554,
    0x0001aaaaaaaaaaaa,
    0xffffffffff800000,
    0x400000000001ffff,
    0xfffffffffffffc49,
    0xfffffffff800ffff,
    0xfffeffff000007ff,
    0xffffc260603fffff,
    0x0000fffffffdffff,
    0xfffffffffffff800,
    0xdff007ffffffffff,
    0xffffc110043fffff,
    0xfffffffff1ffffff,
    0xffffffff007fffff,
    0x00000004000003ff,
    0xefffffffffffffff,
    0xffffffff00e1dfff,
    0xafffffffffffffff,
    0xbfffffff4f7fdfff,
    0xefb7ffffffffffff,
    0xffffffffb1ffdfff,
    0xffffffffffffdfff,
    0xffffffffcf3fdfff,
    0xbfffffffffffffff,
    0xffffffffff7fdfff,
    0xffffffffff9fdfff,
    0xffffffffff9fdffb,
    0xa7ffffffffffffff,
    0xffffffff7fff7bff,
    0xf8ffffffffffffff,
    0xfffffffffffff0ff,
    0xfd5ffffffcffffff,
    0xc281fdffef7bdff7,
    0xfdffef7bdff7ff20,
    0xffffffffffffffbf,
    0xf97fbfffffffffff,
    0x00000000ffffdfff,
    0xffffffffffffdf40,
    0xffc00001ffffffff,
    0x000000ffffffffff,
    0xfffffffffffffff8,
    0xffffffff1fffffff,
    0x00000000ffffffff,
    0xffc0000000000000,
    0xfffffffffffffffe,
    0xffefffffffcfffff,
    0xffffffffdffbffff,
    0xfffffdffffffffff,
    0xf1ffffffffffffff,
    0xfffffffffe7fffff,
    0x601ffffeffffffff,
    0x4000ffffffffffff,
    0xfffe000000000000,
    0xffcfffffffffffff,
    0xfff007ffffffffef,
    0xfffff3ffffffffff,
    0xfff3ffbfffffffff,
    0xff7fffffffffffff,
    0x180000000000fdff,
    0xfcefde020008ffff,
    0xaaaaaaaaaaaaaaaa,
    0xaaaaaaaabfeaaaaa,
    0x00ff00ffc0ff00ff,
    0xd55500ff55ffc0ff,
    0xa0ff00ff00ff00ff,
    0xc0ff20f7f0f7e0ff,
    0xffff7cfffffff800,
    0xffffffff7fffffff,
    0xfffe001de000ffff,
    0xfffbf3bfffffffff,
    0xffff0000ffffffff,
    0xfffffffffffffff7,
    0xfffff9ffffffffff,
    0x003fffffffffffff,
    0xffffffffffff0000,
    0xffffffffefffffff,
    0x3fda1562ffffffff,
    0xfff857faaaaaaaaa,
    0x7fffffffffffffff,
    0xffff03fffffffffe,
    0xfffffffff9ffffff,
    0xc00f6aaaaaaaaaaa,
    0xffffffff3aaaaaaa,
    0xfffcffffffffffff,
    0xaaabaaabffffffff,
    0x95ffaaaaaaaaaaaa,
    0xaaa082aaaabad7aa,
    0xffdfffffeaaaa50a,
    0xffffefffffffffbf,
    0xfffc0000ffffffef,
    0xffffc7ffffffffff,
    0xfffffffffff7ffff,
    0xfff7ffffffffffff,
    0x3e62ffffffffffff,
    0xffbffffffffffffd,
    0xffffdfffffffffff,
    0x0000039a801ac000,
    0x0000c00000000000,
    0xfffffffffc000000,
    0xa08003ff1fffffff,
    0xffffffffffff8024,
    0xf8000001ffffffff,
    0xdfffffffffffffff,
    0xfffffffeffffffff,
    0xf83fffffffffffff,
    0xffffff0000000000,
    0x0000ffffffffffff,
    0xfffffffffff00000,
    0x0800ffffffffffff,
    0xffffffffffc80800,
    0x78ffffffffff5fff,
    0xffffff9fffffffff,
    0xfff8000000000000,
    0xffffff0fffffffff,
    0xffffc1c00000ffff,
    0xffffe7ffffffffff,
    0x1000ffffffff07ff,
    0xfffffffffffe003f,
    0xffffffffffffffc3,
    0x7ffeffffffffffbf,
    0xf9ffffffffffffff,
    0xffe7ff7ffffffff8,
    0xfffffffffffffbfe,
    0xff9fffffffffffff,
    0xffe0e03fff7fdfff,
    0xf6ffffffffffffff,
    0xfffffffffffe3c5b,
    0xffffffffbfffffbb,
    0xdbfeffffffffffff,
    0xfffffffffffffff3,
    0x7fff7fffffffffff,
    0xff3fffffffffffff,
    0xfffff7ffffffffff,
    0x9ffeffffffffffff,
    0xffefffffffffffff,
    0xffffffffffffff7f,
    0xfffffffffdffffff,
    0xffffffffffffffcb,
    0xffffffffff7fffff,
    0xfffffffffffffff9,
    0xffff7c003fffffff,
    0xffe0ffffffffffff,
    0xff80ffffffffffff,
    0xfffffe7fffffffff,
    0xffffffff00000000,
    0xfe000000ffffffff,
    0xffffffffbfffffff,
    0x07f81c003fffffff,
    0x07ffc3fffffff018,
    0xffffffff67f8ffe3,
    0xfffffffffffffffc,
    0xfffff82406000080,
    0xffffffffffff7fff,
    0xffffbfffffffffff,
    0xffff0fffffffffff,
    0xffff3fffffffffff,
    0xffdf3fb7ffffffff,
    0xffffffffff80ffff,
    0xfffffffc00000000,
    0xfffffffffffff80f,
];
static TWO_BYTE: [u8; 0x780] = [
    0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x00, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00,
    0x80, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01,
    0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x87, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00,
    0x00, 0x80, 0x01, 0x00, 0x01, 0x00, 0x80, 0x01, 0x00, 0x80, 0x80, 0x01, 0x00, 0x00, 0x4f, 0x80,
    0x80, 0x01, 0x00, 0x80, 0x80, 0x00, 0x80, 0x80, 0x01, 0x00, 0x00, 0x00, 0x80, 0x80, 0x00, 0x80,
    0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x80, 0x01, 0x00, 0x80, 0x00, 0x00, 0x01, 0x00, 0x80, 0x01,
    0x00, 0x80, 0x80, 0x01, 0x00, 0x01, 0x00, 0x80, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x01, 0x00, 0x01,
    0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x01, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00,
    0x00, 0x02, 0x01, 0x00, 0x01, 0x00, 0x9f, 0xc8, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00,
    0x80, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x01, 0x00, 0x80, 0x80, 0x00,
    0x00, 0x01, 0x00, 0x80, 0x45, 0x47, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00,
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
    0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x74,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x26, 0x80, 0x25, 0x25, 0x25, 0x00, 0x40, 0x00, 0x3f, 0x3f,
    0x00, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x00, 0x80, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00,
    0x00, 0x00, 0x00, 0x00, 0xc4, 0x00, 0x00, 0x01, 0x00, 0xf9, 0x01, 0x00, 0x00, 0x80, 0x80, 0x80,
    0x50, 0x50, 0x50, 0x50, 0x50, 0x50, 0x50, 0x50, 0x50, 0x50, 0x50, 0x50, 0x50, 0x50, 0x50, 0x50,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00,
    0x01, 0x00, 0x00, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00,
    0x0f, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00,
    0x00, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30,
    0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30,
    0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0x80,
    0x00, 0x80, 0x80, 0x00, 0x80, 0x80, 0x00, 0x80, 0x80, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x80, 0x80, 0x80, 0x80,
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0x00, 0x80,
    0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0x00, 0x80, 0x80, 0x00, 0x80, 0x80, 0x80, 0x80, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x80, 0x80, 0x80, 0x80,
    0x80, 0x80, 0x80, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00,
];

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use unicode_normalization::UnicodeNormalization;

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

    /// `normalize` as it was before the fused path: the ASCII path, else the general path.
    fn old_normalize(p: &str) -> String {
        if p.is_ascii() {
            normalize_ascii(p)
        } else {
            normalize_composing(p)
        }
    }

    /// What [`is_simple`] stands for.
    fn is_simple_by_definition(c: char) -> bool {
        is_lowercase_stable(c)
            && is_nfc_quick(std::iter::once(c)) == IsNormalized::Yes
            && unicode_normalization::char::canonical_combining_class(c) == 0
            && !c.is_whitespace()
    }

    #[test]
    fn simple_table_matches_its_definition() {
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            assert_eq!(
                is_simple(u32::from(c)),
                is_simple_by_definition(c),
                "U+{:04X}: the Unicode tables changed, run `print_simple_table`",
                u32::from(c)
            );
        }
    }

    /// Prints the table of [`is_simple`] (`cargo test -p gateway-core print_simple_table --
    /// --ignored --nocapture`).
    #[test]
    #[ignore]
    fn print_simple_table() {
        let mut chunks: Vec<u64> = Vec::new();
        let mut index = Vec::new();
        for base in (0..0x20000u32).step_by(64) {
            let bits = (0..64)
                .filter(|j| char::from_u32(base + j).is_some_and(is_simple_by_definition))
                .fold(0u64, |bits, j| bits | 1 << j);
            let id = chunks.iter().position(|&c| c == bits).unwrap_or_else(|| {
                chunks.push(bits);
                chunks.len() - 1
            });
            index.push(u8::try_from(id).expect("at most 256 distinct chunks"));
        }
        println!("static SIMPLE_INDEX: [u8; {}] = [", index.len());
        for row in index.chunks(16) {
            let row: Vec<String> = row.iter().map(u8::to_string).collect();
            println!("    {},", row.join(", "));
        }
        println!("];\n\nstatic SIMPLE_CHUNKS: [u64; {}] = [", chunks.len());
        for row in chunks.chunks(4) {
            let row: Vec<String> = row.iter().map(|c| format!("0x{c:016x}")).collect();
            println!("    {},", row.join(", "));
        }
        println!("];\n\nstatic TWO_BYTE: [u8; 0x780] = [");
        let two: Vec<u8> = (0x80..0x800u32)
            .map(|u| char::from_u32(u).map_or(TWO_BYTE_OTHER, two_byte_class_by_definition))
            .collect();
        for row in two.chunks(16) {
            let row: Vec<String> = row.iter().map(|c| format!("0x{c:02x}")).collect();
            println!("    {},", row.join(", "));
        }
        println!("];");
    }

    /// What [`TWO_BYTE`] stands for.
    fn two_byte_class_by_definition(c: char) -> u8 {
        if is_simple_by_definition(c) {
            return TWO_BYTE_SIMPLE;
        }
        let mut lower = c.to_lowercase();
        match (lower.next(), lower.next()) {
            (Some(l), None) if c != 'Σ' && l.len_utf8() == 2 && is_simple_by_definition(l) => {
                i8::try_from(i64::from(u32::from(l)) - i64::from(u32::from(c)))
                    .ok()
                    .filter(|&d| d != 0 && d != i8::MIN)
                    .map_or(TWO_BYTE_OTHER, |d| d as u8)
            }
            _ => TWO_BYTE_OTHER,
        }
    }

    #[test]
    fn two_byte_table_matches_its_definition() {
        let mut offsets = 0;
        for c in (0x80..0x800u32).filter_map(char::from_u32) {
            let u = u32::from(c);
            assert_eq!(
                two_byte_class(u),
                two_byte_class_by_definition(c),
                "U+{u:04X}: the Unicode tables changed, run `print_simple_table`"
            );
            if let Some(lower) = lowercase_by_offset(u) {
                let lower = char::from_u32(lower).expect("a character");
                assert!(c.to_lowercase().eq([lower]), "U+{u:04X}");
                assert!(
                    is_simple(u32::from(lower)) && lower.len_utf8() == 2,
                    "U+{u:04X}"
                );
                offsets += 1;
            }
        }
        assert!(offsets > 300, "{offsets}");
        assert_eq!(lowercase_by_offset('Σ'.into()), None);
        assert_eq!(lowercase_by_offset('A'.into()), None);
        assert_eq!(lowercase_by_offset('\u{1e00}'.into()), None);
    }

    /// The neighbours of Σ are classed as std's Final_Sigma sees them: in every position a
    /// wrongly classed one would show.
    #[test]
    fn sigma_neighbours_are_classed_as_std_does() {
        let mut known = [0; 3];
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            // The forms of Σ after c (at the end, after a capital) and before c (at the
            // end, before a capital).
            let expected = match sigma_neighbour(c) {
                SigmaNeighbour::Cased => ["ς", "ς", "σ", "σ"],
                SigmaNeighbour::Uncased => ["σ", "σ", "ς", "ς"],
                SigmaNeighbour::Ignorable => ["σ", "ς", "ς", "σ"],
                SigmaNeighbour::Unknown => continue,
            };
            known[sigma_neighbour(c) as usize] += 1;
            let u = u32::from(c);
            let after = |s: String| s.to_lowercase().chars().rev().take(1).collect::<String>();
            let before = |s: String| s.to_lowercase().chars().skip(1).take(1).collect::<String>();
            assert_eq!(after(format!("{c}Σ")), expected[0], "U+{u:04X}");
            assert_eq!(after(format!("A{c}Σ")), expected[1], "U+{u:04X}");
            assert_eq!(before(format!("AΣ{c}")), expected[2], "U+{u:04X}");
            assert_eq!(before(format!("AΣ{c}A")), expected[3], "U+{u:04X}");
        }
        // Letters 52 + 62 + 69; digits 10 and whitespace 25; 8 case-ignorable.
        assert_eq!(known, [52 + 62 + 69, 10 + 25, 8]);
    }

    /// What cutting the trailing run from the input and rewriting Σ's word rest on.
    #[test]
    fn cut_and_word_boundaries_keep_every_mapping() {
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            let u = u32::from(c);
            let ws = c.is_whitespace();
            let punct = is_punctuation(c);
            if ws || punct {
                // Lowercasing leaves the cut run alone, ...
                assert!(is_lowercase_stable(c), "U+{u:04X}");
                // ... and a Σ before it has its final form with or without it: punctuation
                // is either case-ignorable or not cased.
                assert!(
                    format!("AΣ{c}").to_lowercase().starts_with("aς"),
                    "U+{u:04X}"
                );
            } else {
                // The lowercase of anything else has no whitespace and does not end in
                // punctuation, so the cut is the same before and after lowercasing.
                let lower: String = c.to_lowercase().collect();
                assert!(!lower.contains(char::is_whitespace), "U+{u:04X}");
                let last = lower.chars().next_back().expect("not empty");
                assert!(!is_punctuation(last), "U+{u:04X}");
            }
            if ws {
                // Whitespace is a starter and neither case-ignorable nor cased, so the ends of
                // a word look like the ends of the string to Σ and to the quick check.
                assert_eq!(
                    unicode_normalization::char::canonical_combining_class(c),
                    0,
                    "U+{u:04X}"
                );
                assert!(format!("A{c}Σ").to_lowercase().ends_with('σ'), "U+{u:04X}");
                assert!(
                    format!("Σ{c}A").to_lowercase().starts_with('σ'),
                    "U+{u:04X}"
                );
            }
        }
    }

    /// The one-pass writer's answer (JSON-escaped), if it has one.
    fn fast(p: &str) -> Option<String> {
        let mut out = Vec::new();
        write_normalized_unicode(p, &mut out).then(|| String::from_utf8(out).expect("UTF-8"))
    }

    fn escaped(normalized: &str) -> String {
        let mut out = String::new();
        write_json_string_body(normalized, &mut out);
        out
    }

    #[test]
    fn the_fused_path_takes_common_text_and_hands_back_composition() {
        for p in [
            "Résumez ce RAPPORT : ÀÉÎÕÜ Ærøskøbing Straße ŁÓDŹ ŸES",
            "東京の天気は晴れです。来週の予定を教えてください。\u{3000}x",
            "서울의 날씨는 맑습니다. ΟΔΟΣ ΣΟΦΙΑΣ. ΜΟΣΧΑ, Σ. ΣΣ Σ",
            "Привет, МИР!  Ѐ 😀👍🏽 \u{1F468}\u{200D}\u{1F469} \u{212a}elvin \u{212b}",
            "Istanbul? \"quoted\"\\ \u{0}\t\u{a0}\u{2028} 𐐀",
        ] {
            assert_eq!(fast(p), Some(escaped(&old_normalize(p))), "{p:?}");
        }
        // NFC would compose, or might: the general path answers.
        for p in [
            "İstanbul", // i and U+0307, which composes with some letters
            "e\u{301}",
            "a\u{2000}b",
            "\u{1100}\u{1161}",
            "a\u{5ae}\u{302}",
            "a?\u{2000}",
            "Ά\u{301}",
        ] {
            assert_eq!(fast(p), None, "{p:?}");
            assert_eq!(normalize(p), old_normalize(p), "{p:?}");
        }
    }

    #[test]
    fn final_sigma_follows_its_word() {
        for (p, expected) in [
            ("ΟΔΟΣ ΣΟΦΙΑΣ.", "οδος σοφιας"),
            ("ΟΔΟΣ.ΣΟΦΙΑΣ", "οδοσ.σοφιας"),
            ("Σ", "σ"),
            ("Σ.", "σ"),
            ("ΑΣ.", "ας"),
            ("ΑΣ'Α", "ασ'α"),
            ("Α'Σ", "α'ς"),
            ("ΑΣ.. x", "ας.. x"),
            ("ΑΣ.'Α x", "ασ.'α x"),
            ("Α.Σ x", "α.ς x"),
            ("9Σ x", "9σ x"),
            ("ΑΣ9 x", "ας9 x"),
            ("ΑΣ, x", "ας, x"),
            ("ΑΣ\u{301}Α", "ασ\u{301}α"),
            ("x ΑΣ\u{3000}y", "x ας y"),
            ("ΑΣ\u{301}", "ας\u{301}"),
            ("ΑΣΣ ΣΑ Σ", "ασς σα σ"),
        ] {
            assert_eq!(normalize(p), expected, "{p:?}");
            assert_eq!(normalize(p), old_normalize(p), "{p:?}");
        }
        let long = "ΟΔΟΣ ".repeat(1000) + &"Σ".repeat(3000);
        assert_eq!(normalize(&long), old_normalize(&long));
    }

    /// Samples at every offset from a word's start, so that each character meets each end.
    #[test]
    fn every_alignment_matches_the_old_implementation() {
        for sample in [
            "Résumez ce RAPPORT : crème brûlée, ÀÉÎÕÜ.  東京の天気は晴れです。\n\nÜnïcödé «déjà vu»",
            "ΟΔΟΣ ΣΟΦΙΑΣ. ΜΟΣΧΑ'Σ Σ.Σ ΑΣ\u{301} Σ9",
            "Ærøskøbing ÑANDÚ Ÿ ǅ Ɓ ŁÓDŹ Ѐ ЖЁ Ա",
            "a\u{a0}b \u{85}c\u{3000}d\u{2028}e  \t\n f ǆ \u{3000}A",
            "東京 서울 😀👍🏽 \u{1F468}\u{200D}\u{1F469} \u{2f800} 𠀋",
            "\"ÀÉ\"\\\n\n  x\u{1}y\u{1f}Z\u{7f}",
            "İstanbul e\u{301} a\u{2000}b \u{1100}\u{1161}",
        ] {
            for pad in 0..17 {
                for lead in ["x", " ", "é", "東"] {
                    let p = lead.repeat(pad) + sample;
                    assert_eq!(normalize(&p), old_normalize(&p), "{p:?}");
                    assert_eq!(
                        escaped_in_one_pass(&p),
                        escaped_after(&old_normalize(&p)),
                        "{p:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn escape_table_matches_the_json_escapes() {
        for b in (0u8..128).filter(|&b| needs_escape(b)) {
            let e = escape_bytes(b);
            let n = usize::from(e[7]);
            assert_eq!(&e[..n], escape(b).as_bytes(), "{b}");
        }
    }

    #[test]
    fn run_classes_match_the_steps() {
        for b in 0u8..=255 {
            let expected = if b >= 0x80 {
                RUN_LEAD
            } else if b == b' ' {
                RUN_SPACE
            } else if lower_and_blank(b) == b && b >= 0x20 && b != 0x7f && !needs_escape(b) {
                RUN_PLAIN
            } else {
                RUN_OTHER
            };
            assert_eq!(run_class(b), expected, "{b}");
        }
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

    /// The whole body in one part.
    fn write_normalized_json_body(p: &str, out: &mut Vec<u8>) {
        write_normalized_json_body_in_parts(p, out, usize::MAX, |_| {});
    }

    /// The body written in parts of `part` bytes, each taken out as it is handed over.
    fn escaped_in_parts(p: &str, part: usize) -> String {
        let mut taken = b"prefix".to_vec();
        let mut out = Vec::new();
        write_normalized_json_body_in_parts(p, &mut out, part, |buf| {
            taken.extend_from_slice(buf);
            buf.clear();
        });
        taken.extend_from_slice(&out);
        String::from_utf8(taken).expect("UTF-8 in, UTF-8 out")
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

    /// Characters of many scripts, cased and not, composed and decomposed, and what sits
    /// between words.
    fn script_char() -> impl Strategy<Value = char> {
        prop_oneof![
            6 => prop::sample::select(vec![
                // Latin, with combining marks and the capitals lowercased by offset
                'A', 'e', 'É', 'é', '\u{301}', '\u{308}', '\u{323}', '\u{327}', 'Ç', 'Ā', 'ā',
                'Ł', 'ł', 'Ÿ', 'ÿ', 'ſ', 'ẞ', 'ß', 'Ǆ', 'ǅ', 'ǆ', 'Ǳ', 'Ⱥ', 'ﬀ', 'Ａ', 'ａ',
                '\u{212a}', '\u{212b}', 'Å', 'Ω', '\u{2126}',
                // Greek: final sigma, tonos, iota subscript
                'Σ', 'σ', 'ς', 'Α', 'α', 'Ά', 'ά', '\u{1f71}', 'ᾼ', 'ᾳ', '\u{345}', '\u{342}',
                'Ϊ', 'ΐ', '\u{387}', '\u{37e}',
                // Turkish dotted and dotless i
                'İ', 'I', 'i', 'ı', '\u{307}',
                // Cyrillic
                'Ж', 'ж', 'Ѐ', 'ѐ', 'Й', 'И', '\u{306}', 'Ѷ',
                // CJK, kana and their punctuation
                '東', '京', '。', '、', '「', '」', 'か', '\u{3099}', 'が', 'ｶ', '\u{ff9e}', '・',
                '\u{f900}', '\u{2f800}', '𠀋',
                // Hangul syllables and jamo
                '가', '각', '\u{1100}', '\u{1161}', '\u{11a8}', '\u{3131}',
                // emoji and joiners
                '😀', '👍', '\u{1f3fd}', '\u{200d}', '\u{fe0f}', '🇫', '🇷',
                // Arabic, Hebrew, Devanagari, Thai marks in and out of order
                'ب', '\u{64b}', '\u{650}', '\u{653}', 'א', '\u{5b4}', '\u{5bc}', 'क',
                '\u{93c}', '\u{94d}', 'ก', '\u{e38}', '\u{e48}',
                // whitespace and punctuation, ASCII and not
                ' ', ' ', '\t', '\n', '\u{b}', '\u{a0}', '\u{85}', '\u{2000}', '\u{2001}',
                '\u{2002}', '\u{2028}', '\u{3000}', '.', '?', '!', '\'', '¿', '«', '»', '—',
                '·', '+', '"', '\\', '\0', '\u{1}',
                // others cased outside the offsets: Deseret, Armenian, Georgian, Cherokee
                '𐐀', '𐐨', 'Ա', 'ա', 'Ⴀ', 'Ꭰ', 'ꭰ',
            ]),
            1 => any::<char>(),
        ]
    }

    /// Mixed-script strings, with ASCII runs long enough for the eight-byte words.
    fn mixed_string() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                3 => script_char().prop_map(String::from),
                1 => "[A-Za-z .,?\"\\\\\t\n\u{0}-\u{1f}]{1,20}",
            ],
            0..24,
        )
        .prop_map(|parts| parts.concat())
    }

    /// Text of ASCII and two-byte characters (capitals lowercased by offset and not, Σ, marks,
    /// whitespace), which goes eight bytes at a time with characters across the words' ends.
    fn two_byte_string() -> impl Strategy<Value = String> {
        let two_byte = prop_oneof![
            4 => prop::sample::select(vec![
                'é', 'É', 'ß', 'Ÿ', 'ÿ', 'Ā', 'ı', 'İ', 'ǅ', 'Ɓ', 'Σ', 'σ', 'ς', 'Ά', 'ά', 'Ω',
                'Ж', 'ж', 'Ѐ', 'Ա', 'ա', 'א', 'ب', '\u{a0}', '\u{85}', '\u{301}', '\u{345}',
                '\u{5b4}', '·', '«', '»', '¿', '×', '\u{37e}', '\u{387}',
            ]),
            1 => (0x80..0x800u32).prop_filter_map("a character", char::from_u32),
        ];
        prop::collection::vec(
            prop_oneof![
                3 => two_byte.prop_map(String::from),
                2 => "[A-Za-z]{1,9}",
                1 => "[ .,'\"\\\\\t\n]{1,3}",
            ],
            0..40,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(8192))]

        #[test]
        fn fused_path_matches_the_old_implementation(p in mixed_string()) {
            prop_assert_eq!(normalize(&p), old_normalize(&p));
            prop_assert_eq!(escaped_in_one_pass(&p), escaped_after(&old_normalize(&p)));
            for part in [8, 13, 64] {
                prop_assert_eq!(escaped_in_parts(&p, part), escaped_after(&old_normalize(&p)));
            }
            // What was written before the prompt (here with spaces) is left alone.
            let mut out = b"x \\ ".to_vec();
            write_normalized_json_body(&p, &mut out);
            let mut expected = String::from("x \\ ");
            write_json_string_body(&old_normalize(&p), &mut expected);
            prop_assert_eq!(String::from_utf8(out).expect("UTF-8"), expected);
        }

        #[test]
        fn fused_path_matches_the_spec_composition(p in mixed_string()) {
            prop_assert_eq!(normalize(&p), reference(&p));
        }

        #[test]
        fn two_byte_words_match_the_old_implementation(p in two_byte_string()) {
            prop_assert_eq!(normalize(&p), old_normalize(&p));
            prop_assert_eq!(escaped_in_one_pass(&p), escaped_after(&old_normalize(&p)));
            for part in [8, 13, 64] {
                prop_assert_eq!(escaped_in_parts(&p, part), escaped_after(&old_normalize(&p)));
            }
        }
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
