//! Eval data: a dataset file (or a directory of them) → records, one JSON object per record,
//! each remembering the file and line it came from so that every later error can name it.
//!
//! Formats (the suite's `format:`):
//! - `json`: one JSON document, either an array of objects (records in array order) or an object
//!   of id → object, like PubMedQA's `ori_pqal.json`. For the latter each key becomes the
//!   record's field `id`, and records come out **sorted by key** (byte order of the key
//!   strings), not in file order: the order is then a property of the data, not of whoever wrote
//!   the file. A record that already has an `id` field is an error.
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
//! an error. JSON is parsed strictly: a key written twice in any object is an error naming the
//! key and its path ([`crate::strict_json`]). A record (a line, a CSV row, an element or member
//! of a JSON document) longer than `--max-record-bytes` is an error naming its line, found
//! before the record is parsed: JSON lines and text are read line by line and never hold more
//! than the limit of one line; a `json` or `csv` file is read whole (it is one document) and its
//! records are measured by a scan before any of them is parsed.
//!
//! Which files make a dataset is decided by [`crate::fsx`], as for training data and
//! `medrun lock`: a directory is read file by file in the order of the files' relative paths
//! (names starting with `.` skipped), every file inside the project root and a regular file;
//! line numbers restart in each file.

mod json;
mod table;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::fsx::{self, Access, Input, InputFile};
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
    #[error(transparent)]
    Path(#[from] fsx::FsError),
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
            EvalDataError::Path(e) => e.hint(),
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

/// The hint for a record over the size limit.
const TOO_LONG_HINT: &str =
    "split the record, or raise the limit with --max-record-bytes (or MEDRUN_MAX_RECORD_BYTES)";

/// The hint for a key written twice.
const DUPLICATE_HINT: &str =
    "keep one of the two: JSON readers disagree on which one counts, so medrun refuses to guess";

/// Read a suite dataset, with its path relative to the project `root`.
pub fn load_dataset(root: &Path, spec: &DatasetSpec) -> Result<Vec<Record>, EvalDataError> {
    let input = Access::new(root)?.input(spec.path.as_str())?;
    read_records(&input, spec.format)
}

/// Read every record of `input` (a file or a directory, listed by [`fsx`]).
pub fn read_records(input: &Input, format: Format) -> Result<Vec<Record>, EvalDataError> {
    if !format.has_records() {
        return Err(EvalDataError::Format {
            file: input.display.clone(),
            format,
        });
    }
    let max = fsx::max_record_bytes();
    let mut out = Vec::new();
    for file in &input.files {
        read_file(file, format, max, &mut out)?;
    }
    if out.is_empty() {
        return Err(EvalDataError::Empty {
            file: input.display.clone(),
        });
    }
    Ok(out)
}

fn read_file(
    file: &InputFile,
    format: Format,
    max: u64,
    out: &mut Vec<Record>,
) -> Result<(), EvalDataError> {
    let shown: Arc<str> = file.display.as_str().into();
    match format {
        Format::Text => {
            let opts = crate::data::ReadOptions {
                skip_bad_records: false,
                max_record_bytes: max,
            };
            let read = crate::data::read_text(&Input::single(file), opts)?;
            out.extend(read.records.into_iter().map(|d| {
                let mut fields = Map::new();
                fields.insert("text".into(), Value::String(d.text));
                Record {
                    file: shown.clone(),
                    line: usize::try_from(d.line).unwrap_or(usize::MAX),
                    fields,
                }
            }));
        }
        Format::Jsonl | Format::Sharegpt | Format::Preference => {
            json::read_jsonl(file, &shown, max, out)?;
        }
        _ => {
            let bytes = fsx::read_regular(&file.path, &file.display)?;
            out.extend(parse_bytes(&bytes, &shown, format, max)?);
        }
    }
    Ok(())
}

/// Parse one file's bytes, with this process's record size limit. `text` data goes through
/// [`read_records`] (it is read by the PT reader); here it is an error.
pub fn parse_records(
    bytes: &[u8],
    display: &str,
    format: Format,
) -> Result<Vec<Record>, EvalDataError> {
    parse_bytes(bytes, &display.into(), format, fsx::max_record_bytes())
}

fn parse_bytes(
    bytes: &[u8],
    file: &Arc<str>,
    format: Format,
    max: u64,
) -> Result<Vec<Record>, EvalDataError> {
    match format {
        Format::Json => json::parse_json(&utf8(bytes, file)?, file, max),
        Format::Jsonl | Format::Sharegpt | Format::Preference => {
            json::parse_jsonl(&utf8(bytes, file)?, file, max)
        }
        Format::Csv => table::parse_csv(strip_bom(bytes), file, true, max),
        Format::CsvNoheader => table::parse_csv(strip_bom(bytes), file, false, max),
        Format::Text | Format::Model | Format::File => Err(EvalDataError::Format {
            file: file.to_string(),
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

/// The error for a record of `bytes` bytes over the limit `max`, starting on `line`.
fn too_long(file: &str, line: usize, what: &str, bytes: u64, max: u64) -> EvalDataError {
    use crate::fsx::lines::show_bytes;
    bad(
        file,
        line,
        format!(
            "{what} holds {}, over the limit of {} (--max-record-bytes)",
            show_bytes(bytes),
            show_bytes(max)
        ),
        TOO_LONG_HINT,
    )
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

/// Line starts of a text, to turn byte offsets into line numbers.
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

/// `file:line`, for messages.
impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// Read the file or directory at `path` (any absolute path: tests), named `display`.
#[cfg(test)]
pub(crate) fn read_path(
    path: &Path,
    display: &str,
    format: Format,
) -> Result<Vec<Record>, EvalDataError> {
    read_records(&crate::data::tests::input(path, display), format)
}

#[cfg(test)]
mod tests;
