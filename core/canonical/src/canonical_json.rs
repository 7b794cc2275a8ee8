//! RFC 8785 (JCS) canonical JSON: sorted keys, no whitespace, minimal string escapes and
//! ECMAScript number formatting, written to a `String` or streamed into any [`JsonSink`].

use serde_json::{Map, Number, Value};

/// Where canonical JSON text goes: a `String`, or a hasher (see `cache_key`).
pub trait JsonSink {
    fn push_str(&mut self, s: &str);
}

impl JsonSink for String {
    fn push_str(&mut self, s: &str) {
        String::push_str(self, s);
    }
}

impl JsonSink for Vec<u8> {
    fn push_str(&mut self, s: &str) {
        self.extend_from_slice(s.as_bytes());
    }
}

/// The RFC 8785 canonical form of `v`.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical_json(v, &mut out);
    out
}

/// Appends the RFC 8785 canonical form of `v` to `out`.
pub fn write_canonical_json(v: &Value, out: &mut String) {
    write_canonical_json_to(v, out);
}

/// Streams the RFC 8785 canonical form of `v` into `out`.
///
/// Numbers that are not finite (only possible with serde_json's `arbitrary_precision`) have no
/// JSON form; they are written as `null`, as ECMAScript's `JSON.stringify` does.
pub fn write_canonical_json_to<S: JsonSink + ?Sized>(v: &Value, out: &mut S) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_json_number(n, out),
        Value::String(s) => write_json_string(s, out),
        Value::Array(items) => {
            out.push_str("[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(",");
                }
                write_canonical_json_to(item, out);
            }
            out.push_str("]");
        }
        Value::Object(map) => write_object(map, out),
    }
}

/// Writes `s` as a JSON string literal: only `"`, `\` and control characters below U+0020 are
/// escaped (`\b \t \n \f \r` short, the rest `\u00xx`); everything else is literal UTF-8.
pub fn write_json_string<S: JsonSink + ?Sized>(s: &str, out: &mut S) {
    out.push_str("\"");
    write_json_string_body(s, out);
    out.push_str("\"");
}

/// [`write_json_string`] without the surrounding quotes.
pub(crate) fn write_json_string_body<S: JsonSink + ?Sized>(s: &str, out: &mut S) {
    let bytes = s.as_bytes();
    let mut start = 0;
    while let Some(i) = find_escape(bytes, start) {
        // Escaped bytes are ASCII, so `start` and `i` are char boundaries.
        out.push_str(&s[start..i]);
        out.push_str(escape(bytes[i]));
        start = i + 1;
    }
    out.push_str(&s[start..]);
}

/// Writes `n` as ECMAScript's `Number.prototype.toString` would write the double it denotes.
pub fn write_json_number<S: JsonSink + ?Sized>(n: &Number, out: &mut S) {
    let mut buf = NumberBuf::new();
    if let Some(u) = n.as_u64() {
        buf.write_f64(u as f64);
    } else if let Some(i) = n.as_i64() {
        buf.write_f64(i as f64);
    } else {
        buf.write_f64(n.as_f64().unwrap_or(f64::NAN));
    }
    out.push_str(buf.as_str());
}

fn write_object<S: JsonSink + ?Sized>(map: &Map<String, Value>, out: &mut S) {
    out.push_str("{");
    if keys_in_utf16_order(map) {
        for (i, (k, v)) in map.iter().enumerate() {
            write_member(i, k, v, out);
        }
    } else {
        let mut members: Vec<(&String, &Value)> = map.iter().collect();
        members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
        for (i, (k, v)) in members.into_iter().enumerate() {
            write_member(i, k, v, out);
        }
    }
    out.push_str("}");
}

fn write_member<S: JsonSink + ?Sized>(i: usize, k: &str, v: &Value, out: &mut S) {
    if i > 0 {
        out.push_str(",");
    }
    write_json_string(k, out);
    out.push_str(":");
    write_canonical_json_to(v, out);
}

/// Whether the map already iterates in RFC 8785 order (it usually does: serde_json's map is
/// sorted by UTF-8 bytes, which differs from UTF-16 order only around U+E000..U+FFFF).
fn keys_in_utf16_order(map: &Map<String, Value>) -> bool {
    let mut prev: Option<&String> = None;
    for k in map.keys() {
        if let Some(p) = prev {
            if p.encode_utf16().cmp(k.encode_utf16()) != std::cmp::Ordering::Less {
                return false;
            }
        }
        prev = Some(k);
    }
    true
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;
const LOW7: u64 = !HIGH;

pub(crate) fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// First `i >= from` with a byte that must be escaped, eight bytes at a time (SWAR).
fn find_escape(bytes: &[u8], from: usize) -> Option<usize> {
    let mut base = from;
    let mut words = bytes[from..].chunks_exact(8);
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let mask = escape_mask(u64::from_le_bytes(w));
        if mask != 0 {
            return Some(base + (mask.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&b| needs_escape(b))
        .map(|i| base + i)
}

/// The high bit of each byte of `x` that must be escaped. Exact for every byte value: the
/// low seven bits are added separately so nothing carries into the next byte.
#[inline(always)]
fn escape_mask(x: u64) -> u64 {
    let below_space = !((x & LOW7).wrapping_add(ONES * (0x80 - 0x20)) | x) & HIGH;
    below_space
        | zero_bytes(x ^ (ONES * u64::from(b'"')))
        | zero_bytes(x ^ (ONES * u64::from(b'\\')))
}

/// The high bit of each zero byte of `y`.
#[inline(always)]
fn zero_bytes(y: u64) -> u64 {
    !(((y & LOW7).wrapping_add(LOW7)) | y) & HIGH
}

/// The JSON escape of a byte for which [`needs_escape`] holds (empty for any other byte).
pub(crate) fn escape(b: u8) -> &'static str {
    const CONTROL: [&str; 32] = [
        "\\u0000", "\\u0001", "\\u0002", "\\u0003", "\\u0004", "\\u0005", "\\u0006", "\\u0007",
        "\\b", "\\t", "\\n", "\\u000b", "\\f", "\\r", "\\u000e", "\\u000f", "\\u0010", "\\u0011",
        "\\u0012", "\\u0013", "\\u0014", "\\u0015", "\\u0016", "\\u0017", "\\u0018", "\\u0019",
        "\\u001a", "\\u001b", "\\u001c", "\\u001d", "\\u001e", "\\u001f",
    ];
    match b {
        b'"' => "\\\"",
        b'\\' => "\\\\",
        _ => CONTROL.get(usize::from(b)).copied().unwrap_or(""),
    }
}

/// A number's text, laid out on the stack. The longest ECMAScript form of a double is 25
/// bytes (`-0.000001` followed by 16 more digits).
struct NumberBuf {
    bytes: [u8; 32],
    len: usize,
}

impl NumberBuf {
    fn new() -> Self {
        NumberBuf {
            bytes: [0; 32],
            len: 0,
        }
    }

    fn as_str(&self) -> &str {
        // Only ASCII is ever pushed.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("null")
    }

    fn push(&mut self, b: u8) {
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    fn push_all(&mut self, bs: &[u8]) {
        bs.iter().for_each(|&b| self.push(b));
    }

    fn push_zeros(&mut self, n: usize) {
        (0..n).for_each(|_| self.push(b'0'));
    }

    fn push_decimal(&mut self, mut n: u32) {
        let mut digits = [0u8; 10];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push_all(&digits[i..]);
    }

    /// ECMAScript `Number::toString(x)` (ECMA-262 §6.1.6.1.20), with `ryu` giving the
    /// shortest round-tripping digits.
    fn write_f64(&mut self, x: f64) {
        if !x.is_finite() {
            self.push_all(b"null");
            return;
        }
        if x == 0.0 {
            self.push(b'0'); // also -0
            return;
        }
        if x < 0.0 {
            self.push(b'-');
        }
        let mut ryu_buf = ryu::Buffer::new();
        let (digits, k, n) = shortest_digits(ryu_buf.format_finite(x.abs()));
        let digits = &digits[..k];
        // The value is 0.d1d2…dk × 10^n.
        if k as i32 <= n && n <= 21 {
            self.push_all(digits);
            self.push_zeros((n - k as i32) as usize);
        } else if 0 < n && n <= 21 {
            let (int, frac) = digits.split_at(n as usize);
            self.push_all(int);
            self.push(b'.');
            self.push_all(frac);
        } else if -6 < n && n <= 0 {
            self.push_all(b"0.");
            self.push_zeros((-n) as usize);
            self.push_all(digits);
        } else {
            self.push(digits[0]);
            if k > 1 {
                self.push(b'.');
                self.push_all(&digits[1..]);
            }
            self.push(b'e');
            let e = n - 1;
            self.push(if e > 0 { b'+' } else { b'-' });
            self.push_decimal(e.unsigned_abs());
        }
    }
}

/// Splits ryu's text for a positive finite double (forms like `123.0`, `0.001`, `1.5e-7`,
/// `1e30`) into significant digits without leading or trailing zeros, their count `k`, and
/// the exponent `n` with value = 0.digits × 10^n.
fn shortest_digits(text: &str) -> ([u8; 24], usize, i32) {
    let (mantissa, exponent) = match text.split_once('e') {
        Some((m, e)) => (m, parse_exponent(e)),
        None => (text, 0),
    };
    let mut digits = [0u8; 24];
    let mut k = 0;
    let mut point: Option<i32> = None;
    let mut leading_zeros = 0i32;
    for b in mantissa.bytes() {
        match b {
            b'.' => point = Some(k as i32 + leading_zeros),
            b'0' if k == 0 => leading_zeros += 1,
            b'0'..=b'9' => {
                if let Some(slot) = digits.get_mut(k) {
                    *slot = b;
                    k += 1;
                }
            }
            _ => {}
        }
    }
    let point = point.unwrap_or(k as i32 + leading_zeros);
    while k > 1 && digits[k - 1] == b'0' {
        k -= 1;
    }
    (digits, k, point - leading_zeros + exponent)
}

fn parse_exponent(e: &str) -> i32 {
    let (sign, digits) = match e.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, e.trim_start_matches('+')),
    };
    sign * digits
        .bytes()
        .fold(0i32, |acc, b| acc * 10 + i32::from(b.wrapping_sub(b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn num(text: &str) -> String {
        let v: Value = serde_json::from_str(text).expect("test literal");
        canonical_json(&v)
    }

    fn f(x: f64) -> String {
        let mut b = NumberBuf::new();
        b.write_f64(x);
        b.as_str().to_owned()
    }

    #[test]
    fn integral_doubles_have_no_fraction() {
        assert_eq!(num("1.0"), "1");
        assert_eq!(num("1"), "1");
        assert_eq!(num("4.50"), "4.5");
        assert_eq!(num("100"), "100");
        assert_eq!(num("-0"), "0");
        assert_eq!(num("-0.0"), "0");
        assert_eq!(num("1E2"), "100");
    }

    #[test]
    fn rfc_8785_number_examples() {
        assert_eq!(num("1e30"), "1e+30");
        assert_eq!(num("2e-3"), "0.002");
        assert_eq!(num("0.000000000000000000000000001"), "1e-27");
        assert_eq!(num("1e21"), "1e+21");
        assert_eq!(num("1e20"), "100000000000000000000");
        assert_eq!(num("0.000001"), "0.000001");
        assert_eq!(num("1e-7"), "1e-7");
        assert_eq!(num("-1e-7"), "-1e-7");
        assert_eq!(num("333333333.33333329"), "333333333.3333333");
        assert_eq!(num("1E30"), "1e+30");
        assert_eq!(num("4.5"), "4.5");
        assert_eq!(num("9007199254740992"), "9007199254740992");
        assert_eq!(num("-5e-324"), "-5e-324");
        assert_eq!(num("1.7976931348623157e308"), "1.7976931348623157e+308");
        assert_eq!(num("123456789012345680000"), "123456789012345680000");
        assert_eq!(num("1.5e-7"), "1.5e-7");
        assert_eq!(num("12.5e20"), "1.25e+21");
    }

    /// Appendix B of RFC 8785: IEEE 754 bit patterns and their canonical text.
    #[test]
    fn rfc_8785_appendix_b_bit_patterns() {
        let cases: [(u64, &str); 25] = [
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
            (0x3ff0000000000000, "1"),
        ];
        for (bits, text) in cases {
            assert_eq!(f(f64::from_bits(bits)), text, "{bits:#x}");
        }
    }

    #[test]
    fn integers_beyond_2_pow_53_are_written_as_the_double_they_become() {
        assert_eq!(num("9007199254740993"), "9007199254740992");
        assert_eq!(num("18446744073709551615"), "18446744073709552000");
        assert_eq!(num("-9223372036854775808"), "-9223372036854776000");
        assert_eq!(num("-9007199254740993"), "-9007199254740992");
    }

    #[test]
    fn non_finite_numbers_become_null() {
        assert_eq!(f(f64::NAN), "null");
        assert_eq!(f(f64::INFINITY), "null");
    }

    #[test]
    fn object_keys_are_sorted_and_whitespace_is_dropped() {
        let v: Value =
            serde_json::from_str(r#"{ "b" : [1, 2.0, {"z":null, "a":true}], "a" : "x" }"#)
                .expect("test literal");
        assert_eq!(
            canonical_json(&v),
            r#"{"a":"x","b":[1,2,{"a":true,"z":null}]}"#
        );
    }

    /// RFC 8785 §3.2.3: keys sort by UTF-16 code units, so U+1F600 (surrogates D83D DE00)
    /// sorts before U+FB33 although its UTF-8 bytes are greater.
    #[test]
    fn object_keys_sort_by_utf16_code_units() {
        let mut map = Map::new();
        map.insert("\u{20ac}".into(), json!("Euro Sign"));
        map.insert("\r".into(), json!("Carriage Return"));
        map.insert("\u{fb33}".into(), json!("Hebrew Letter Dalet With Dagesh"));
        map.insert("1".into(), json!("One"));
        map.insert("\u{1f600}".into(), json!("Emoji: Grinning Face"));
        map.insert("\u{80}".into(), json!("Control"));
        map.insert(
            "\u{f6}".into(),
            json!("Latin Small Letter O With Diaeresis"),
        );
        assert_eq!(
            canonical_json(&Value::Object(map)),
            "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\
             \"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\
             \"\u{1f600}\":\"Emoji: Grinning Face\",\
             \"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}"
        );
    }

    /// RFC 8785 §3.2.2.2 example, with its expected output.
    #[test]
    fn rfc_8785_string_and_literal_example() {
        let v: Value = serde_json::from_str(
            r#"{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
                "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
                "literals": [null, true, false]}"#,
        )
        .expect("test literal");
        assert_eq!(
            canonical_json(&v),
            "{\"literals\":[null,true,false],\
             \"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],\
             \"string\":\"\u{20ac}$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}"
        );
    }

    #[test]
    fn strings_escape_only_quote_backslash_and_controls() {
        let s = "\"\\\u{0}\u{8}\t\n\u{b}\u{c}\r\u{1f}\u{7f}/<>&\u{2028}é\u{200d}";
        assert_eq!(
            canonical_json(&json!(s)),
            "\"\\\"\\\\\\u0000\\b\\t\\n\\u000b\\f\\r\\u001f\u{7f}/<>&\u{2028}é\u{200d}\""
        );
    }

    #[test]
    fn long_strings_escape_across_chunk_borders() {
        for at in [0, 1, 63, 64, 65, 127, 128, 200] {
            let mut s = "a".repeat(201);
            s.replace_range(at..at + 1, "\"");
            let expected = format!("\"{}\\\"{}\"", &s[..at], &s[at + 1..]);
            assert_eq!(canonical_json(&json!(s)), expected, "at {at}");
        }
    }

    #[test]
    fn escape_mask_is_exact_for_every_byte() {
        for b in 0..=255u8 {
            let mask = escape_mask(u64::from_le_bytes([
                b'a', b, 0xff, b'a', 0x80, b, b'!', b'a',
            ]));
            assert_eq!(mask & (1 << 15) != 0, needs_escape(b), "{b}");
            assert_eq!(mask & (1 << 47) != 0, needs_escape(b), "{b}");
            assert_eq!(mask & !((1 << 15) | (1 << 47)), 0, "{b}");
        }
    }

    #[test]
    fn write_appends_to_the_buffer() {
        let mut out = String::from("x");
        write_canonical_json(&json!({"a": [1.0]}), &mut out);
        assert_eq!(out, "x{\"a\":[1]}");
    }

    #[test]
    fn matches_serde_json_for_integers_and_plain_strings() {
        let v = json!({"k": [0, -1, 12345678, "plain ascii", "ünïcödé 漢字"]});
        assert_eq!(
            canonical_json(&v),
            serde_json::to_string(&v).expect("serializes")
        );
    }
}
