//! JSON with duplicate keys refused.
//!
//! `serde_json` keeps the last of two equal keys in an object without a word, so
//! `{"text": "a", "text": "b"}` trains on `b` while another tool (or a reviewer reading the
//! first one) sees `a`. Dataset and eval records are parsed here instead: a seed builds the same
//! [`serde_json::Value`] serde_json would, and stops at the second occurrence of a key, naming
//! the key and the path of the object that holds it (`conversations[1]`). The parser's position
//! at that point (just after the repeated key) gives the line and column.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// A key written twice in one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    pub key: String,
    /// Path of the object holding it (`conversations[1]`); empty for the top level.
    pub within: String,
    /// 1-based line and column just after the second occurrence of the key.
    pub line: usize,
    pub column: usize,
}

impl Duplicate {
    /// The key's full path (`conversations[1].from`).
    pub fn field(&self) -> String {
        let mut s = self.within.clone();
        push_key(&mut s, &self.key);
        s
    }
}

impl fmt::Display for Duplicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "duplicate key {:?}", self.key)?;
        if !self.within.is_empty() {
            write!(f, " in {}", self.within)?;
        }
        Ok(())
    }
}

#[derive(Debug)]
pub enum StrictError {
    /// Not JSON (or trailing characters): serde_json's own error.
    Syntax(serde_json::Error),
    Duplicate(Duplicate),
}

/// Parse one JSON document, refusing duplicate keys at any depth.
pub fn from_str(text: &str) -> Result<Value, StrictError> {
    let found = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let seed = ValueSeed {
        at: Seg::Root,
        found: &found,
    };
    let parsed = seed.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    match parsed {
        Ok(v) => Ok(v),
        Err(e) => match found.into_inner() {
            Some((key, within)) => Err(StrictError::Duplicate(Duplicate {
                key,
                within,
                line: e.line(),
                column: e.column(),
            })),
            None => Err(StrictError::Syntax(e)),
        },
    }
}

/// Where a value sits, as a chain back to the root (rendered only for an error).
#[derive(Clone, Copy)]
enum Seg<'a> {
    Root,
    Key(&'a Seg<'a>, &'a str),
    Index(&'a Seg<'a>, usize),
}

impl Seg<'_> {
    fn render(&self, out: &mut String) {
        match self {
            Seg::Root => {}
            Seg::Key(parent, k) => {
                parent.render(out);
                push_key(out, k);
            }
            Seg::Index(parent, i) => {
                parent.render(out);
                out.push_str(&format!("[{i}]"));
            }
        }
    }
}

/// Append `.key` (or just `key` at the start) to a path.
fn push_key(out: &mut String, key: &str) {
    if !out.is_empty() {
        out.push('.');
    }
    out.push_str(key);
}

type Found = RefCell<Option<(String, String)>>;

struct ValueSeed<'a, 'f> {
    at: Seg<'a>,
    found: &'f Found,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, '_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(v) = seq.next_element_seed(ValueSeed {
            at: Seg::Index(&self.at, out.len()),
            found: self.found,
        })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                let mut within = String::new();
                self.at.render(&mut within);
                let message = format!("duplicate key {key:?}");
                *self.found.borrow_mut() = Some((key, within));
                return Err(de::Error::custom(message));
            }
            let value = map.next_value_seed(ValueSeed {
                at: Seg::Key(&self.at, &key),
                found: self.found,
            })?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dup(text: &str) -> Duplicate {
        match from_str(text) {
            Err(StrictError::Duplicate(d)) => d,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn same_value_as_serde_json() {
        for text in [
            r#"{"a": [1, -2, 3.5, 1e300, true, null, "x\u00e9"], "b": {"c": {}}, "d": []}"#,
            "[]",
            "\"s\"",
            "18446744073709551615",
            "-9223372036854775808",
            "0.1",
        ] {
            let want: Value = serde_json::from_str(text).unwrap();
            assert_eq!(from_str(text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn duplicate_keys_are_named_with_their_path() {
        let d = dup(r#"{"text": "a", "text": "b"}"#);
        assert_eq!(d.to_string(), "duplicate key \"text\"");
        assert_eq!(d.field(), "text");
        assert_eq!((d.line, d.column), (1, 20));
        let d = dup(
            r#"{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "from": "human", "value": "a"}]}"#,
        );
        assert_eq!(d.to_string(), "duplicate key \"from\" in conversations[1]");
        assert_eq!(d.field(), "conversations[1].from");
        let d = dup("{\"a\": {\"b\": [{}, {\"c\": 1,\n \"c\": 2}]}}");
        assert_eq!(d.to_string(), "duplicate key \"c\" in a.b[1]");
        assert_eq!(d.line, 2);
    }

    #[test]
    fn keys_equal_after_unescaping_are_duplicates() {
        let d = dup(r#"{"a": 1, "\u0061": 2}"#);
        assert_eq!(d.key, "a");
    }

    #[test]
    fn equal_keys_in_different_objects_are_fine() {
        assert!(from_str(r#"[{"a": 1}, {"a": 2}, {"b": {"a": 3}, "a": 4}]"#).is_ok());
    }

    #[test]
    fn syntax_errors_pass_through() {
        assert!(matches!(
            from_str("{\"a\": 1,}"),
            Err(StrictError::Syntax(_))
        ));
        assert!(matches!(from_str("{} x"), Err(StrictError::Syntax(_))));
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(matches!(from_str(&deep), Err(StrictError::Syntax(_))));
    }
}
