//! `csv` and `csv-noheader` eval data (tables).

use std::sync::Arc;

use serde_json::{Map, Value};

use super::{EvalDataError, Lines, Record, bad, too_long};

/// Refuse a row longer than `max` bytes (line ending excluded), before the CSV is parsed. Rows
/// end at a newline outside double quotes, as in the parser.
fn check_rows(bytes: &[u8], file: &str, max: u64) -> Result<(), EvalDataError> {
    if bytes.len() as u64 <= max {
        return Ok(());
    }
    let row = |start: usize, end: usize, line: usize| {
        let mut len = end - start;
        if len > 0 && bytes[end - 1] == b'\r' {
            len -= 1;
        }
        if len as u64 > max {
            Err(too_long(file, line, "the row", len as u64, max))
        } else {
            Ok(())
        }
    };
    let (mut in_quotes, mut start, mut line, mut start_line) = (false, 0usize, 1usize, 1usize);
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' => in_quotes = !in_quotes,
            b'\n' => {
                if !in_quotes {
                    row(start, i, start_line)?;
                    start = i + 1;
                    start_line = line + 1;
                }
                line += 1;
            }
            _ => {}
        }
    }
    row(start, bytes.len(), start_line)
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

pub(super) fn parse_csv(
    bytes: &[u8],
    file: &Arc<str>,
    header: bool,
    max: u64,
) -> Result<Vec<Record>, EvalDataError> {
    check_rows(bytes, file, max)?;
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
