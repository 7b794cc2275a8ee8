//! A JSON parser for request bodies that refuses a key named twice in any object at any depth
//! (keys compared after unescaping, so `"a"` and `"\u0061"` are one name): serde_json keeps the
//! last of two, a provider may read the first, and then the question answered would not be the
//! one the cache key names.

use std::cell::RefCell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::error::ApiError;

/// Most characters of one key shown in an error.
const SHOWN_KEY_CHARS: usize = 40;
/// Most characters of a whole path shown in an error.
const SHOWN_PATH_CHARS: usize = 120;
/// Most characters of serde_json's syntax message passed on.
const SHOWN_SYNTAX_CHARS: usize = 120;

/// Why a body is not one strict JSON value.
#[derive(Debug)]
pub enum StrictJsonError {
    /// Not one JSON value: bad syntax, trailing characters, or nesting deeper than serde_json's
    /// limit of 128. serde_json's message names a line and column and never echoes input.
    Syntax(serde_json::Error),
    /// An object names a key twice.
    DuplicateKey(DuplicateKey),
}

/// A key named twice in one object, and where that object is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateKey {
    /// From the root to the object holding the repeated key, outermost first.
    pub path: Vec<PathStep>,
    /// The repeated key, unescaped.
    pub key: String,
}

/// One step from a JSON value into one of its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathStep {
    Key(String),
    Index(usize),
}

impl DuplicateKey {
    /// The repeated field as a path (`params.models.openai`, `messages[0].content`), control
    /// characters removed, each key cut to 40 characters and the whole to 120.
    pub fn field(&self) -> String {
        let mut out = String::new();
        let last = PathStep::Key(self.key.clone());
        for step in self.path.iter().chain([&last]) {
            match step {
                PathStep::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.extend(k.chars().filter(|c| !c.is_control()).take(SHOWN_KEY_CHARS));
                }
                PathStep::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        if out.chars().count() > SHOWN_PATH_CHARS {
            out = out.chars().take(SHOWN_PATH_CHARS).collect();
            out.push('…');
        }
        out
    }
}

impl fmt::Display for StrictJsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StrictJsonError::Syntax(e) => write!(f, "{e}"),
            StrictJsonError::DuplicateKey(d) => {
                write!(f, "the body names a field twice (`{}`)", d.field())
            }
        }
    }
}

impl std::error::Error for StrictJsonError {}

/// The 400 of a body that is not strict JSON: `invalid_json` for bad syntax, `invalid_request`
/// naming the field (also in `field`) for a key named twice.
impl From<StrictJsonError> for ApiError {
    fn from(e: StrictJsonError) -> ApiError {
        match &e {
            StrictJsonError::Syntax(s) => ApiError::invalid_json(
                &s.to_string()
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(SHOWN_SYNTAX_CHARS)
                    .collect::<String>(),
            ),
            StrictJsonError::DuplicateKey(d) => {
                ApiError::invalid_request(e.to_string()).with("field", d.field())
            }
        }
    }
}

/// Parses `bytes` as one JSON value, as `serde_json::from_slice::<Value>` does (same numbers,
/// same strings, same limits), except that a key named twice in any object is an error.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, StrictJsonError> {
    let duplicate = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = StrictValue {
        duplicate: &duplicate,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    parsed.map_err(|e| match duplicate.into_inner() {
        Some(mut d) => {
            d.path.reverse();
            StrictJsonError::DuplicateKey(d)
        }
        None => StrictJsonError::Syntax(e),
    })
}

/// Builds a [`Value`] like serde_json's own visitor, refusing a repeated key. The repeat is
/// noted in `duplicate` (serde's error type carries only a message); each enclosing object or
/// array adds its step to the path while the error unwinds, innermost first.
#[derive(Clone, Copy)]
struct StrictValue<'s> {
    duplicate: &'s RefCell<Option<DuplicateKey>>,
}

impl StrictValue<'_> {
    fn unwinding_through(&self, step: impl FnOnce() -> PathStep) {
        if let Some(d) = self.duplicate.borrow_mut().as_mut() {
            d.path.push(step());
        }
    }
}

impl<'de> DeserializeSeed<'de> for StrictValue<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_f64<E>(self, f: f64) -> Result<Value, E> {
        Ok(Number::from_f64(f).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        loop {
            let next = seq.next_element_seed(self).inspect_err(|_| {
                self.unwinding_through(|| PathStep::Index(items.len()));
            })?;
            match next {
                Some(v) => items.push(v),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut obj = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if obj.contains_key(&key) {
                *self.duplicate.borrow_mut() = Some(DuplicateKey {
                    path: Vec::new(),
                    key,
                });
                return Err(A::Error::custom("a key is named twice"));
            }
            let value = map.next_value_seed(self).inspect_err(|_| {
                self.unwinding_through(|| PathStep::Key(key.clone()));
            })?;
            obj.insert(key, value);
        }
        Ok(Value::Object(obj))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn duplicate(text: &str) -> DuplicateKey {
        match parse_strict(text.as_bytes()) {
            Err(StrictJsonError::DuplicateKey(d)) => d,
            other => panic!("{text}: expected a duplicate key, got {other:?}"),
        }
    }

    #[test]
    fn parses_what_serde_json_parses() {
        for text in [
            r#"{"a":1,"b":[true,false,null],"c":{"d":"e\u00e9\n","f":-2.5e-3}}"#,
            r#"[1, -1, 18446744073709551615, 18446744073709551616, -9223372036854775809]"#,
            r#"0.1"#,
            r#"-0"#,
            r#"1e300"#,
            r#""\ud83d\ude00""#,
            r#"  {"a" : {} , "b" : [] }  "#,
            r#"{"":1,"a":{"":2}}"#,
        ] {
            let want: Value = serde_json::from_str(text).unwrap();
            assert_eq!(parse_strict(text.as_bytes()).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn refuses_a_top_level_key_named_twice() {
        let d = duplicate(r#"{"model":"a","messages":[],"model":"b"}"#);
        assert_eq!((d.path, d.key.as_str()), (vec![], "model"));
    }

    #[test]
    fn refuses_a_key_named_twice_in_a_nested_object() {
        let d = duplicate(
            r#"{"prompt":"x","params":{"models":{"openai":"gpt-4o-mini","openai":"gpt-4o"}}}"#,
        );
        assert_eq!(d.field(), "params.models.openai");
        assert_eq!(
            d.path,
            vec![
                PathStep::Key("params".into()),
                PathStep::Key("models".into())
            ]
        );
    }

    #[test]
    fn refuses_a_key_named_twice_in_an_object_inside_an_array() {
        let d = duplicate(
            r#"{"model":"m","messages":[{"role":"user","content":"a"},{"role":"user","content":"a","content":"b"}]}"#,
        );
        assert_eq!(d.field(), "messages[1].content");
        let d = duplicate(r#"[[{"a":1,"a":1}]]"#);
        assert_eq!(d.field(), "[0][0].a");
    }

    #[test]
    fn keys_are_compared_after_unescaping() {
        assert_eq!(duplicate(r#"{"a":1,"\u0061":2}"#).key, "a");
        assert_eq!(duplicate(r#"{"mo\u0064el":1,"model":2}"#).key, "model");
        assert_eq!(duplicate(r#"{"\n":1,"\u000a":2}"#).key, "\n");
        assert_eq!(duplicate(r#"{"😀":1,"\ud83d\ude00":2}"#).key, "😀");
        // Different after unescaping: both kept.
        assert!(parse_strict(br#"{"a":1,"\u0041":2,"a ":3}"#).is_ok());
    }

    #[test]
    fn the_same_key_in_different_objects_is_fine() {
        let text = r#"{"a":{"a":{"a":1}},"b":[{"a":1},{"a":2}]}"#;
        assert_eq!(
            parse_strict(text.as_bytes()).unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
    }

    #[test]
    fn bad_syntax_trailing_text_and_deep_nesting_are_syntax_errors() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        for text in ["", "{", "not json", r#"{"a":1} x"#, r#"{"a":1,}"#, &deep] {
            assert!(
                matches!(
                    parse_strict(text.as_bytes()),
                    Err(StrictJsonError::Syntax(_))
                ),
                "{text:?}"
            );
        }
    }

    #[test]
    fn a_syntax_error_after_a_duplicate_is_still_the_duplicate() {
        // Parsing stops at the repeat: what follows is never read.
        let d = duplicate(r#"{"a":1,"a":2 garbage"#);
        assert_eq!(d.key, "a");
    }

    #[test]
    fn errors_map_to_the_contracts_400s() {
        let e = ApiError::from(parse_strict(b"{").unwrap_err());
        assert_eq!((e.status, e.code), (400, "invalid_json"));
        let e = ApiError::from(parse_strict(br#"{"p":{"m":1,"m":2}}"#).unwrap_err());
        assert_eq!((e.status, e.code), (400, "invalid_request"));
        assert_eq!(e.message, "the body names a field twice (`p.m`)");
        assert_eq!(e.extra["field"], json!("p.m"));
    }

    #[test]
    fn the_field_shown_is_cut_and_free_of_control_characters() {
        let long = "k".repeat(100);
        let text = format!(r#"{{"{long}":{{"x\ny":1,"x\ny":2}}}}"#);
        let d = duplicate(&text);
        assert_eq!(d.key, "x\ny");
        assert_eq!(d.field(), format!("{}.xy", "k".repeat(SHOWN_KEY_CHARS)));
        let path = (0..60)
            .map(|i| format!(r#"{{"key{i}":"#))
            .collect::<String>();
        let text = format!(r#"{path}{{"a":1,"a":2}}{}"#, "}".repeat(60));
        let shown = duplicate(&text).field();
        assert_eq!(shown.chars().count(), SHOWN_PATH_CHARS + 1);
        assert!(shown.ends_with('…'));
    }

    /// Random JSON values, objects and arrays nested a few levels.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "[a-z\"\\\\\n é😀]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-c\"\\\\\n é]{0,3}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// `v` as JSON text, with one more member in its `target`th non-empty object (counted
    /// modulo their number, in document order) repeating that object's first key, escaped as
    /// `\uXXXX` when `escaped`. Returns the text and the repeated key. `v` must hold a
    /// non-empty object.
    fn with_a_repeated_key(
        v: &Value,
        target: usize,
        escaped: bool,
        extra: &Value,
    ) -> (String, String) {
        fn write(
            v: &Value,
            seen: &mut usize,
            target: usize,
            escaped: bool,
            extra: &Value,
            out: &mut String,
            repeated: &mut Option<String>,
        ) {
            match v {
                Value::Object(m) => {
                    let here = !m.is_empty() && *seen == target;
                    if !m.is_empty() {
                        *seen += 1;
                    }
                    out.push('{');
                    for (i, (k, x)) in m.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        out.push_str(&Value::String(k.clone()).to_string());
                        out.push(':');
                        write(x, seen, target, escaped, extra, out, repeated);
                    }
                    if here {
                        let (k, _) = m.iter().next().unwrap();
                        let name = if escaped {
                            let units: String =
                                k.encode_utf16().map(|u| format!("\\u{u:04x}")).collect();
                            format!("\"{units}\"")
                        } else {
                            Value::String(k.clone()).to_string()
                        };
                        out.push_str(&format!(",{name}:{extra}"));
                        *repeated = Some(k.clone());
                    }
                    out.push('}');
                }
                Value::Array(items) => {
                    out.push('[');
                    for (i, x) in items.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        write(x, seen, target, escaped, extra, out, repeated);
                    }
                    out.push(']');
                }
                other => out.push_str(&other.to_string()),
            }
        }
        fn count(v: &Value) -> usize {
            match v {
                Value::Object(m) => {
                    usize::from(!m.is_empty()) + m.values().map(count).sum::<usize>()
                }
                Value::Array(items) => items.iter().map(count).sum(),
                _ => 0,
            }
        }
        let n = count(v);
        assert!(n > 0, "no object to repeat a key in");
        let (mut out, mut repeated) = (String::new(), None);
        write(
            v,
            &mut 0,
            target % n,
            escaped,
            extra,
            &mut out,
            &mut repeated,
        );
        (out, repeated.expect("the target object was written"))
    }

    proptest! {
        #[test]
        fn without_a_repeated_key_it_parses_as_serde_json_does(v in json_value(), pretty in any::<bool>()) {
            let text = if pretty { serde_json::to_string_pretty(&v).unwrap() } else { v.to_string() };
            let got = parse_strict(text.as_bytes()).unwrap();
            prop_assert_eq!(&got, &serde_json::from_str::<Value>(&text).unwrap());
            prop_assert_eq!(got, v);
        }

        #[test]
        fn a_repeated_key_at_any_depth_is_refused(
            v in json_value(),
            target in any::<usize>(),
            escaped in any::<bool>(),
            extra in json_value(),
        ) {
            // Wrapped, so there is always an object to repeat a key in.
            let root = serde_json::json!({ "root": v });
            let (text, key) = with_a_repeated_key(&root, target, escaped, &extra);
            // serde_json itself accepts it (keeping the last value).
            prop_assert!(serde_json::from_str::<Value>(&text).is_ok(), "{}", text);
            match parse_strict(text.as_bytes()) {
                Err(StrictJsonError::DuplicateKey(d)) => prop_assert_eq!(d.key, key),
                other => prop_assert!(false, "{} -> {:?}", text, other),
            }
        }
    }
}
