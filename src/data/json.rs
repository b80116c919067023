//! JSON-lines helpers: one line → one object, and typed field access that names the field path
//! (`conversations[1].value`) when a value is missing or of the wrong type.

use serde_json::{Map, Value};

use super::Problem;
use super::source::Line;
use crate::strict_json::{self, StrictError};

pub(crate) type Object = Map<String, Value>;

/// Parse one line as a JSON object, refusing a key written twice in any object of it. A syntax
/// error's column counts characters from 1.
pub(crate) fn parse_object(line: Line<'_>) -> Result<Object, Problem> {
    if line.first && line.text.trim_start().starts_with('[') {
        return Err(Problem::JsonArray);
    }
    match strict_json::from_str(line.text) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(v) => Err(Problem::NotObject { found: kind(&v) }),
        Err(StrictError::Syntax(e)) => Err(Problem::Json {
            column: char_column(line.text, e.column()),
            message: without_position(&e),
        }),
        Err(StrictError::Duplicate(d)) => Err(Problem::DuplicateKey {
            field: d.field(),
            column: char_column(line.text, d.column),
            key: d.key,
            within: d.within,
        }),
    }
}

/// serde counts columns in bytes; messages count characters, so that a column in a line of
/// Chinese text points where an editor does.
fn char_column(text: &str, byte_column: usize) -> usize {
    let mut end = byte_column.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let partial = usize::from(end < byte_column.min(text.len()));
    text[..end].chars().count() + partial
}

/// serde's message without its trailing ` at line L column C` (the line is always 1 here; the
/// caller reports the file's line and the column itself).
fn without_position(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    match full.strip_suffix(&suffix) {
        Some(message) => message.to_owned(),
        None => full,
    }
}

/// "a string", "an array", ...: how a message names a JSON value's type.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `obj[key]`, which must be present (`null` counts as present, and fails the type check).
pub(crate) fn required<'a>(obj: &'a Object, key: &str, field: &str) -> Result<&'a Value, Problem> {
    obj.get(key).ok_or_else(|| Problem::Missing {
        field: field.to_owned(),
    })
}

/// `obj[key]`, absent when missing or `null`.
pub(crate) fn optional<'a>(obj: &'a Object, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

pub(crate) fn as_str<'a>(v: &'a Value, field: &str) -> Result<&'a str, Problem> {
    v.as_str().ok_or_else(|| Problem::WrongType {
        field: field.to_owned(),
        expected: "a string",
        found: kind(v),
    })
}

/// `obj[key]` as a required string.
pub(crate) fn required_str<'a>(obj: &'a Object, key: &str) -> Result<&'a str, Problem> {
    as_str(required(obj, key, key)?, key)
}

/// `obj[key]` as a required string that is not empty or only whitespace.
pub(crate) fn non_empty_str<'a>(obj: &'a Object, key: &str) -> Result<&'a str, Problem> {
    let s = required_str(obj, key)?;
    if s.trim().is_empty() {
        return Err(Problem::Empty {
            field: key.to_owned(),
        });
    }
    Ok(s)
}
