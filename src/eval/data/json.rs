//! `json` (one document) and `jsonl` (one object per line) eval data.

use std::io::BufReader;
use std::sync::Arc;

use serde_json::Value;

use super::{DUPLICATE_HINT, EvalDataError, Lines, Record, bad, kind, too_long};
use crate::fsx::lines::{LineReader, Next};
use crate::fsx::{self, InputFile};
use crate::strict_json::{self, StrictError};

fn json_error(file: &str, e: &serde_json::Error) -> EvalDataError {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = full.strip_suffix(&suffix).unwrap_or(&full);
    EvalDataError::Bad {
        file: file.into(),
        line: e.line(),
        column: Some(e.column()),
        message: format!("invalid JSON: {message}"),
        hint: "fix the JSON (the position is where the parser stopped)",
    }
}

/// Parse a JSON document strictly; errors name `file` and the position in `text`.
fn parse_strict(text: &str, file: &str) -> Result<Value, EvalDataError> {
    strict_json::from_str(text).map_err(|e| match e {
        StrictError::Syntax(e) => json_error(file, &e),
        StrictError::Duplicate(d) => EvalDataError::Bad {
            file: file.into(),
            line: d.line,
            column: Some(d.column),
            message: d.to_string(),
            hint: DUPLICATE_HINT,
        },
    })
}

/// One non-blank JSON line (line `n` of `file`) as a record.
fn line_record(line: &str, file: &Arc<str>, n: usize) -> Result<Record, EvalDataError> {
    match parse_strict(line, file) {
        Ok(Value::Object(fields)) => Ok(Record {
            file: file.clone(),
            line: n,
            fields,
        }),
        Ok(v) => Err(bad(
            file,
            n,
            format!("expected a JSON object per line, found {}", kind(&v)),
            "JSON lines hold one object per line; a whole JSON document is `format: json`",
        )),
        Err(mut err) => {
            if let EvalDataError::Bad { line, .. } = &mut err {
                *line = n;
            }
            Err(err)
        }
    }
}

/// JSON lines already in memory.
pub(super) fn parse_jsonl(
    text: &str,
    file: &Arc<str>,
    max: u64,
) -> Result<Vec<Record>, EvalDataError> {
    let mut out = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.len() as u64 > max {
            return Err(too_long(file, i + 1, "the line", line.len() as u64, max));
        }
        if line.trim().is_empty() {
            continue;
        }
        out.push(line_record(line, file, i + 1)?);
    }
    Ok(out)
}

/// JSON lines read from a file line by line, never more than `max` bytes of a line in memory.
pub(super) fn read_jsonl(
    file: &InputFile,
    shown: &Arc<str>,
    max: u64,
    out: &mut Vec<Record>,
) -> Result<(), EvalDataError> {
    let f = fsx::open_regular(&file.path, &file.display)?;
    let mut lines = LineReader::new(BufReader::with_capacity(1 << 16, f), max);
    let mut buf = Vec::new();
    loop {
        let next = lines.next(&mut buf).map_err(|source| EvalDataError::Io {
            path: file.display.clone(),
            source,
        })?;
        let n = usize::try_from(lines.number()).unwrap_or(usize::MAX);
        match next {
            Next::End => return Ok(()),
            Next::TooLong { bytes } => return Err(too_long(shown, n, "the line", bytes, max)),
            Next::Line => {}
        }
        let mut bytes = buf.as_slice();
        if n == 1 {
            bytes = super::strip_bom(bytes);
        }
        bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        let Ok(line) = std::str::from_utf8(bytes) else {
            return Err(bad(shown, n, "not valid UTF-8", "save the file as UTF-8"));
        };
        if line.trim().is_empty() {
            continue;
        }
        out.push(line_record(line, shown, n)?);
    }
}

/// Where the members of the top-level array or object start, found by a scan of the document:
/// for an array each element's first byte, for an object each key's opening quote and the key's
/// raw (still escaped) JSON text.
fn members(text: &str) -> Vec<(usize, Option<&str>)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut expecting = false;
    let mut in_string = false;
    let mut escaped = false;
    let mut key_start: Option<usize> = None;
    let mut is_object = false;
    for (i, &c) in b.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
                if let Some(s) = key_start.take() {
                    out.push((s, Some(&text[s..=i])));
                }
            }
            continue;
        }
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => continue,
            _ => {}
        }
        if expecting && depth == 1 && c != b']' && c != b'}' {
            expecting = false;
            if is_object {
                key_start = Some(i);
            } else {
                out.push((i, None));
            }
        }
        match c {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth == 1 {
                    is_object = c == b'{';
                    expecting = true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => expecting = true,
            _ => {}
        }
    }
    out
}

/// Refuse a member of the document longer than `max` bytes, before anything is parsed. A
/// member's size runs from its first byte to the next member's (or the document's end).
fn check_sizes(
    text: &str,
    found: &[(usize, Option<&str>)],
    lines: &Lines,
    file: &str,
    max: u64,
) -> Result<(), EvalDataError> {
    if text.len() as u64 <= max {
        return Ok(());
    }
    let end = text.trim_end().len();
    for (i, (start, _)) in found.iter().enumerate() {
        let next = found.get(i + 1).map_or(end, |(s, _)| *s);
        let size = next.saturating_sub(*start) as u64;
        if size > max {
            return Err(too_long(
                file,
                lines.line(*start),
                &format!("record {i}"),
                size,
                max,
            ));
        }
    }
    Ok(())
}

pub(super) fn parse_json(
    text: &str,
    file: &Arc<str>,
    max: u64,
) -> Result<Vec<Record>, EvalDataError> {
    let lines = Lines::new(text.as_bytes());
    let found = members(text);
    check_sizes(text, &found, &lines, file, max)?;
    let doc = parse_strict(text, file)?;
    match doc {
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let line = found.get(i).map(|(o, _)| lines.line(*o)).unwrap_or(1);
                match item {
                    Value::Object(fields) => out.push(Record {
                        file: file.clone(),
                        line,
                        fields,
                    }),
                    v => {
                        return Err(bad(
                            file,
                            line,
                            format!("element {i} of the array is {}, not an object", kind(&v)),
                            "each record of a JSON array must be an object of fields",
                        ));
                    }
                }
            }
            Ok(out)
        }
        Value::Object(map) => object_of_records(map, &found, &lines, file),
        v => Err(bad(
            file,
            1,
            format!(
                "the document is {}, not an array or object of records",
                kind(&v)
            ),
            "`format: json` reads an array of objects or an object of id → object",
        )),
    }
}

/// An object of id → record (keys are unique: the strict parse refused a repeated one).
fn object_of_records(
    map: serde_json::Map<String, Value>,
    found: &[(usize, Option<&str>)],
    lines: &Lines,
    file: &Arc<str>,
) -> Result<Vec<Record>, EvalDataError> {
    // Lines by key, from the scan; a key the scan missed (it never should) gets line 1.
    let line_of_key: std::collections::BTreeMap<String, usize> = found
        .iter()
        .map(|(offset, raw)| {
            let key: String = raw
                .and_then(|r| serde_json::from_str(r).ok())
                .unwrap_or_default();
            (key, lines.line(*offset))
        })
        .collect();
    let mut out = Vec::with_capacity(map.len());
    for (key, value) in map {
        let line = line_of_key.get(&key).copied().unwrap_or(1);
        let Value::Object(mut fields) = value else {
            return Err(bad(
                file,
                line,
                format!("record {key:?} is {}, not an object", kind(&value)),
                "a JSON object of records maps each id to an object of fields",
            ));
        };
        if fields.contains_key("id") {
            return Err(bad(
                file,
                line,
                format!("record {key:?} has its own `id` field, which its key would replace"),
                "store the records as a JSON array (or JSON lines) to keep their `id` fields",
            ));
        }
        fields.insert("id".into(), Value::String(key));
        out.push(Record {
            file: file.clone(),
            line,
            fields,
        });
    }
    Ok(out)
}
