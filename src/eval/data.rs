//! Eval data: a dataset file (or a directory of them) → records, one JSON object per record,
//! each remembering the file and line it came from so that every later error can name it.
//!
//! Formats (the suite's `format:`):
//! - `json`: one JSON document, either an array of objects (records in array order) or an object
//!   of id → object, like PubMedQA's `ori_pqal.json`. For the latter each key becomes the
//!   record's field `id`, and records come out **sorted by key** (byte order of the key
//!   strings), not in file order: the order is then a property of the data, not of whoever wrote
//!   the file. A duplicate key is an error, and so is a record that already has an `id` field.
//! - `jsonl` (also `sharegpt` and `preference`, which are JSON lines): one object per non-blank
//!   line, in file order.
//! - `csv`: a header row names the fields (kept verbatim, so an unnamed first column such as
//!   MMLU/CMMLU's or MedSafetyBench's row index is the field `""`); duplicate header names are an
//!   error. `csv-noheader`: fields are named `0`, `1`, … (upstream MMLU). In both, quoted fields
//!   may hold commas, quotes (`""`) and newlines; every row must have as many fields as the first;
//!   every value is a string; a record's line is the line its row starts on.
//! - `text`: one document per line, or JSON lines `{"text"}` (as PT data); the field is `text`.
//!
//! In every format a leading UTF-8 byte-order mark is dropped, and a dataset with no records is
//! an error. A directory is read file by file in the order of the files' relative paths (names
//! starting with `.` skipped), as `medrun lock` hashes it; line numbers restart in each file.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::spec::{DatasetSpec, Format};

/// One record of an eval dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The file it came from, as shown to the user (a shard's own path inside a directory).
    pub file: Arc<str>,
    /// 1-based line where the record starts.
    pub line: usize,
    pub fields: Map<String, Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum EvalDataError {
    #[error("cannot read `{path}`: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}{}: {message}", column.map(|c| format!(":{c}")).unwrap_or_default())]
    Bad {
        file: String,
        line: usize,
        column: Option<usize>,
        message: String,
        hint: &'static str,
    },
    #[error(transparent)]
    Text(#[from] crate::data::DataError),
    #[error("`{file}` has no records")]
    Empty { file: String },
    #[error("`{file}`: `{format}` data cannot be read as eval records")]
    Format { file: String, format: Format },
}

impl EvalDataError {
    pub fn hint(&self) -> String {
        match self {
            EvalDataError::Io { .. } => "check the path and its permissions".into(),
            EvalDataError::Bad { hint, .. } => (*hint).into(),
            EvalDataError::Text(e) => e.hint(),
            EvalDataError::Empty { .. } => {
                "the file is empty or holds only a header: check the dataset path".into()
            }
            EvalDataError::Format { .. } => {
                "eval datasets use json, jsonl, csv, csv-noheader or text".into()
            }
        }
    }
}

const BOM: &str = "\u{feff}";
const MAX_DEPTH: usize = 32;

/// Read a suite dataset, with its path relative to the project `root`.
pub fn load_dataset(root: &Path, spec: &DatasetSpec) -> Result<Vec<Record>, EvalDataError> {
    read_records(&spec.path.to_path(root), spec.path.as_str(), spec.format)
}

/// Read every record under `path` (a file or a directory); `display` names it in messages.
pub fn read_records(
    path: &Path,
    display: &str,
    format: Format,
) -> Result<Vec<Record>, EvalDataError> {
    if !format.has_records() {
        return Err(EvalDataError::Format {
            file: display.into(),
            format,
        });
    }
    let mut out = Vec::new();
    for (file, shown) in files(path, display)? {
        if format == Format::Text {
            let read = crate::data::read_text(&file, &shown, crate::data::ReadOptions::default())?;
            let shown: Arc<str> = shown.into();
            out.extend(read.records.into_iter().map(|d| {
                let mut fields = Map::new();
                fields.insert("text".into(), Value::String(d.text));
                Record {
                    file: shown.clone(),
                    line: usize::try_from(d.line).unwrap_or(usize::MAX),
                    fields,
                }
            }));
            continue;
        }
        let bytes = std::fs::read(&file).map_err(|source| EvalDataError::Io {
            path: shown.clone(),
            source,
        })?;
        out.extend(parse_records(&bytes, &shown, format)?);
    }
    if out.is_empty() {
        return Err(EvalDataError::Empty {
            file: display.into(),
        });
    }
    Ok(out)
}

/// Parse one file's bytes. `text` data goes through [`read_records`] (it is read by the PT
/// reader); here it is an error.
pub fn parse_records(
    bytes: &[u8],
    display: &str,
    format: Format,
) -> Result<Vec<Record>, EvalDataError> {
    let file: Arc<str> = display.into();
    match format {
        Format::Json => parse_json(&utf8(bytes, &file)?, &file),
        Format::Jsonl | Format::Sharegpt | Format::Preference => {
            parse_jsonl(&utf8(bytes, &file)?, &file)
        }
        Format::Csv => parse_csv(strip_bom(bytes), &file, true),
        Format::CsvNoheader => parse_csv(strip_bom(bytes), &file, false),
        Format::Text | Format::Model | Format::File => Err(EvalDataError::Format {
            file: display.into(),
            format,
        }),
    }
}

fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(BOM.as_bytes()).unwrap_or(bytes)
}

fn bad(file: &str, line: usize, message: impl Into<String>, hint: &'static str) -> EvalDataError {
    EvalDataError::Bad {
        file: file.into(),
        line,
        column: None,
        message: message.into(),
        hint,
    }
}

fn utf8(bytes: &[u8], file: &str) -> Result<String, EvalDataError> {
    match std::str::from_utf8(strip_bom(bytes)) {
        Ok(s) => Ok(s.to_owned()),
        Err(e) => {
            let good = &strip_bom(bytes)[..e.valid_up_to()];
            let line = 1 + good.iter().filter(|b| **b == b'\n').count();
            Err(bad(file, line, "not valid UTF-8", "save the file as UTF-8"))
        }
    }
}

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

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn parse_jsonl(text: &str, file: &Arc<str>) -> Result<Vec<Record>, EvalDataError> {
    let mut out = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            continue;
        }
        let n = i + 1;
        match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(fields)) => out.push(Record {
                file: file.clone(),
                line: n,
                fields,
            }),
            Ok(v) => {
                return Err(bad(
                    file,
                    n,
                    format!("expected a JSON object per line, found {}", kind(&v)),
                    "JSON lines hold one object per line; a whole JSON document is `format: json`",
                ));
            }
            Err(e) => {
                let mut err = json_error(file, &e);
                if let EvalDataError::Bad { line, .. } = &mut err {
                    *line = n;
                }
                return Err(err);
            }
        }
    }
    Ok(out)
}

/// Where the members of the top-level array or object start, found by a scan of the (already
/// validated) document: for an array each element's first byte, for an object each key's
/// opening quote and the key's raw (still escaped) JSON text.
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

struct Lines {
    starts: Vec<usize>,
}

impl Lines {
    fn new(text: &[u8]) -> Lines {
        let mut starts = vec![0];
        starts.extend(
            text.iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        );
        Lines { starts }
    }
    /// 1-based line of a byte offset.
    fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|s| *s <= offset)
    }
}

fn parse_json(text: &str, file: &Arc<str>) -> Result<Vec<Record>, EvalDataError> {
    let doc: Value = serde_json::from_str(text).map_err(|e| json_error(file, &e))?;
    let lines = Lines::new(text.as_bytes());
    let found = members(text);
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
        Value::Object(map) => {
            // Lines by key, from the scan; a key the scan missed (it never should) gets line 1.
            let mut line_of_key = std::collections::BTreeMap::new();
            for (offset, raw) in &found {
                let line = lines.line(*offset);
                let key: String = raw
                    .and_then(|r| serde_json::from_str(r).ok())
                    .unwrap_or_default();
                if line_of_key.insert(key.clone(), line).is_some() {
                    return Err(bad(
                        file,
                        line,
                        format!("duplicate key {key:?}"),
                        "each record id must appear once; JSON keeps only the last",
                    ));
                }
            }
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
                        format!(
                            "record {key:?} has its own `id` field, which its key would replace"
                        ),
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

fn csv_error(
    file: &str,
    e: &csv::Error,
    line_of: &dyn Fn(Option<&csv::Position>) -> usize,
) -> EvalDataError {
    let line = line_of(e.position());
    let message = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("row has {len} fields, but the first row has {expected_len}"),
        csv::ErrorKind::Utf8 { err, .. } => {
            format!("field {} is not valid UTF-8", err.field() + 1)
        }
        _ => format!("invalid CSV: {e}"),
    };
    bad(
        file,
        line,
        message,
        "check the quoting: a field with commas, quotes or newlines must be in double quotes, with inner quotes doubled",
    )
}

fn parse_csv(bytes: &[u8], file: &Arc<str>, header: bool) -> Result<Vec<Record>, EvalDataError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(header)
        .flexible(false)
        .from_reader(bytes);
    // The csv crate's own line numbers drift after blank lines and with `\r\n`; its byte
    // offsets point at the line ending or blank line before a row. So: from that offset, skip
    // line endings, and count lines up to the row's first byte.
    let lines = Lines::new(bytes);
    let line_of = |pos: Option<&csv::Position>| -> usize {
        let mut at = pos
            .map(|p| usize::try_from(p.byte()).unwrap_or(usize::MAX))
            .unwrap_or(0)
            .min(bytes.len());
        while at < bytes.len() && (bytes[at] == b'\n' || bytes[at] == b'\r') {
            at += 1;
        }
        lines.line(at)
    };
    let names: Vec<String> = if header {
        let h = reader
            .headers()
            .map_err(|e| csv_error(file, &e, &line_of))?;
        let names: Vec<String> = h.iter().map(str::to_owned).collect();
        let mut seen = std::collections::BTreeSet::new();
        for n in &names {
            if !seen.insert(n.as_str()) {
                return Err(bad(
                    file,
                    1,
                    format!("the header names column {n:?} twice"),
                    "rename one of the columns, or read the file as `csv-noheader` (fields 0, 1, …)",
                ));
            }
        }
        names
    } else {
        Vec::new()
    };
    let mut out = Vec::new();
    for row in reader.records() {
        let row = row.map_err(|e| csv_error(file, &e, &line_of))?;
        let line = line_of(row.position());
        let mut fields = Map::new();
        for (i, v) in row.iter().enumerate() {
            let name = match names.get(i) {
                Some(n) => n.clone(),
                None => i.to_string(),
            };
            fields.insert(name, Value::String(v.to_owned()));
        }
        out.push(Record {
            file: file.clone(),
            line,
            fields,
        });
    }
    Ok(out)
}

/// `path` itself, or every file under it (dot-names skipped) sorted by relative path, each with
/// the name messages give it.
fn files(path: &Path, display: &str) -> Result<Vec<(PathBuf, String)>, EvalDataError> {
    let io = |p: &str| {
        let p = p.to_owned();
        move |source| EvalDataError::Io { path: p, source }
    };
    let meta = std::fs::metadata(path).map_err(io(display))?;
    if !meta.is_dir() {
        return Ok(vec![(path.to_path_buf(), display.to_owned())]);
    }
    let base = display.trim_end_matches('/');
    let mut found: Vec<(String, PathBuf)> = Vec::new();
    let mut stack = vec![(path.to_path_buf(), String::new(), 0usize)];
    while let Some((dir, rel, depth)) = stack.pop() {
        let shown = if rel.is_empty() {
            base.to_owned()
        } else {
            format!("{base}/{rel}")
        };
        if depth > MAX_DEPTH {
            return Err(EvalDataError::Io {
                path: shown,
                source: std::io::Error::other("directories nested too deep (a symlink loop?)"),
            });
        }
        for entry in std::fs::read_dir(&dir).map_err(io(&shown))? {
            let entry = entry.map_err(io(&shown))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let child_rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let p = entry.path();
            let m = std::fs::metadata(&p).map_err(io(&format!("{base}/{child_rel}")))?;
            if m.is_dir() {
                stack.push((p, child_rel, depth + 1));
            } else {
                found.push((child_rel, p));
            }
        }
    }
    found.sort();
    Ok(found
        .into_iter()
        .map(|(rel, p)| (p, format!("{base}/{rel}")))
        .collect())
}

/// `file:line`, for messages.
impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(text: &str, format: Format) -> Result<Vec<Record>, EvalDataError> {
        parse_records(text.as_bytes(), "d", format)
    }

    fn lines(r: &[Record]) -> Vec<usize> {
        r.iter().map(|r| r.line).collect()
    }

    #[test]
    fn json_array_with_lines() {
        let r = parse(
            "\u{feff}[\n  {\"q\": \"a,]}\\\"\"},\n\n  {\"q\": [1, {\"x\": 2}]}\n]\n",
            Format::Json,
        )
        .unwrap();
        assert_eq!(lines(&r), [2, 4]);
        assert_eq!(r[0].fields["q"], json!("a,]}\""));
        assert_eq!(r[1].fields["q"], json!([1, {"x": 2}]));
    }

    #[test]
    fn json_object_of_ids_is_sorted_by_key_with_id_field() {
        let text = "{\n \"9\": {\"a\": 1},\n \"10\": {\n  \"a\": 2\n },\n \"k\\\"\": {\"a\": 3}\n}";
        let r = parse(text, Format::Json).unwrap();
        let ids: Vec<_> = r.iter().map(|r| r.fields["id"].clone()).collect();
        assert_eq!(ids, [json!("10"), json!("9"), json!("k\"")]);
        assert_eq!(lines(&r), [3, 2, 6]);
    }

    #[test]
    fn json_errors_name_the_line() {
        let e = parse("{\"a\": {\"x\": 1},\n \"a\": {\"x\": 2}}", Format::Json).unwrap_err();
        assert_eq!(e.to_string(), "d:2: duplicate key \"a\"");
        let e = parse("[{\"a\": 1},\n 3]", Format::Json).unwrap_err();
        assert_eq!(
            e.to_string(),
            "d:2: element 1 of the array is a number, not an object"
        );
        let e = parse("{\"a\": {\"id\": 1}}", Format::Json).unwrap_err();
        assert!(e.to_string().contains("has its own `id` field"), "{e}");
        let e = parse("[\n{\"a\": 1,}\n]", Format::Json).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("d:2:9: invalid JSON: trailing comma"),
            "{e}"
        );
        let e = parse("\"x\"", Format::Json).unwrap_err();
        assert!(e.to_string().contains("not an array or object"), "{e}");
    }

    #[test]
    fn jsonl_skips_blank_lines_and_names_bad_ones() {
        let r = parse("{\"a\":1}\r\n\n  \n{\"a\":2}", Format::Jsonl).unwrap();
        assert_eq!(lines(&r), [1, 4]);
        let e = parse("{\"a\":1}\n[1]\n", Format::Jsonl).unwrap_err();
        assert!(
            e.to_string().starts_with("d:2: expected a JSON object"),
            "{e}"
        );
        let e = parse("{\"a\":1}\n{\"a\" 1}\n", Format::Jsonl).unwrap_err();
        assert!(e.to_string().starts_with("d:2:6: invalid JSON"), "{e}");
    }

    #[test]
    fn csv_header_quotes_and_newlines() {
        let text = ",Question,A\n0,\"multi\nline, with \"\"quotes\"\"\",x\n\n1,q2,y\n";
        let r = parse(text, Format::Csv).unwrap();
        assert_eq!(lines(&r), [2, 5]);
        assert_eq!(r[0].fields[""], json!("0"));
        assert_eq!(
            r[0].fields["Question"],
            json!("multi\nline, with \"quotes\"")
        );
        let r = parse("h\r\n1\r\n\r\n2\r\n3\r\n", Format::Csv).unwrap();
        assert_eq!(lines(&r), [2, 4, 5]);
        let r = parse("h\n1\n\n\n2\n3\n", Format::Csv).unwrap();
        assert_eq!(lines(&r), [2, 5, 6]);
        let r = parse("a,b\r\nc,d\r\n", Format::CsvNoheader).unwrap();
        assert_eq!(r[1].fields["0"], json!("c"));
        assert_eq!(r[1].fields["1"], json!("d"));
    }

    #[test]
    fn csv_errors() {
        let e = parse("a,b\n1,2\n\n1,2,3\n", Format::Csv).unwrap_err();
        assert_eq!(
            e.to_string(),
            "d:4: row has 3 fields, but the first row has 2"
        );
        let e = parse("a,a\n1,2\n", Format::Csv).unwrap_err();
        assert!(e.to_string().contains("names column \"a\" twice"), "{e}");
        let e = parse_records(b"a\n\xff\n", "d", Format::Csv).unwrap_err();
        assert!(
            e.to_string().starts_with("d:2: field 1 is not valid UTF-8"),
            "{e}"
        );
    }

    #[test]
    fn directories_read_in_path_order_and_empty_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("b")).unwrap();
        std::fs::write(dir.path().join("b/x.jsonl"), "{\"n\":2}\n").unwrap();
        std::fs::write(dir.path().join("a.jsonl"), "{\"n\":1}\n").unwrap();
        std::fs::write(dir.path().join(".hidden"), "junk").unwrap();
        let r = read_records(dir.path(), "data/d/", Format::Jsonl).unwrap();
        let files: Vec<&str> = r.iter().map(|r| &*r.file).collect();
        assert_eq!(files, ["data/d/a.jsonl", "data/d/b/x.jsonl"]);
        std::fs::write(dir.path().join("e.csv"), "h1,h2\n").unwrap();
        let e = read_records(&dir.path().join("e.csv"), "e.csv", Format::Csv).unwrap_err();
        assert_eq!(e.to_string(), "`e.csv` has no records");
    }

    #[test]
    fn text_format_reads_documents() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.txt");
        std::fs::write(&p, "first doc\n\nsecond doc\n").unwrap();
        let r = read_records(&p, "t.txt", Format::Text).unwrap();
        assert_eq!(lines(&r), [1, 3]);
        assert_eq!(r[1].fields["text"], json!("second doc"));
    }

    fn shared() -> Option<PathBuf> {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/evals");
        if p.is_dir() {
            Some(p)
        } else {
            eprintln!("skipped: {} is absent", p.display());
            None
        }
    }

    #[test]
    fn real_pubmedqa_reads() {
        let Some(base) = shared() else { return };
        let r = read_records(
            &base.join("pubmedqa/pqal_dev_sample_300.json"),
            "pubmedqa.json",
            Format::Json,
        )
        .unwrap();
        assert_eq!(r.len(), 300);
        let mut ids: Vec<&str> = r.iter().map(|r| r.fields["id"].as_str().unwrap()).collect();
        let sorted = {
            let mut s = ids.clone();
            s.sort();
            s
        };
        assert_eq!(ids, sorted);
        ids.dedup();
        assert_eq!(ids.len(), 300);
        let mut labels = std::collections::BTreeMap::new();
        for rec in &r {
            assert!(rec.fields["QUESTION"].is_string());
            assert!(rec.fields["CONTEXTS"].is_array());
            *labels
                .entry(rec.fields["final_decision"].as_str().unwrap().to_owned())
                .or_insert(0) += 1;
        }
        assert_eq!(labels["yes"], 166);
        assert_eq!(labels["no"], 101);
        assert_eq!(labels["maybe"], 33);
        // The first key in the file is on line 2; lines grow with the key order of the file.
        assert!(r.iter().any(|rec| rec.line == 2));
    }

    #[test]
    fn real_cmmlu_reads() {
        let Some(base) = shared() else { return };
        let test = read_records(
            &base.join("cmmlu_medical/data/test"),
            "cmmlu/test",
            Format::Csv,
        )
        .unwrap();
        assert_eq!(test.len(), 300);
        for rec in &test {
            let keys: Vec<&str> = rec.fields.keys().map(String::as_str).collect();
            assert_eq!(
                keys,
                ["", "A", "Answer", "B", "C", "D", "Question"],
                "{rec}"
            );
            assert!(["A", "B", "C", "D"].contains(&rec.fields["Answer"].as_str().unwrap()));
        }
        let dev = read_records(
            &base.join("cmmlu_medical/data/dev"),
            "cmmlu/dev",
            Format::Csv,
        )
        .unwrap();
        assert_eq!(dev.len(), 35);
    }

    #[test]
    fn real_medsafetybench_reads() {
        let Some(base) = shared() else { return };
        let r = read_records(
            &base.join("medsafetybench/datasets/train"),
            "msb",
            Format::Csv,
        )
        .unwrap();
        assert_eq!(r.len(), 300);
        for rec in &r {
            let keys: Vec<&str> = rec.fields.keys().map(String::as_str).collect();
            assert_eq!(
                keys,
                ["", "harmful_medical_request", "safe_response"],
                "{rec}"
            );
            assert!(!rec.fields["safe_response"].as_str().unwrap().is_empty());
        }
        let files: std::collections::BTreeSet<&str> = r.iter().map(|r| &*r.file).collect();
        assert_eq!(files.len(), 18);
    }
}
