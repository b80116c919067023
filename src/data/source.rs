//! Files and lines: the reading loop shared by every format.
//!
//! A dataset is a file or a directory of shards, listed by [`crate::fsx`] (inside the project
//! root, regular files only, the same list `medrun lock` hashes). Each file is read line by line,
//! one line in memory at a time and never more than [`ReadOptions::max_record_bytes`] of it (a
//! longer line is a bad record, skipped through without being stored), a leading byte-order mark
//! is dropped, `\r\n` counts as `\n`, blank lines are passed over, and each remaining line goes to
//! the format's parser. Bad lines are returned as errors or collected, per [`ReadOptions`].

use std::io::BufReader;

use super::{DataError, Problem, Read, ReadOptions, Skipped};
use crate::fsx::lines::{LineReader, Next};
use crate::fsx::{self, Input, InputFile};

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One non-blank line handed to a parser.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Line<'a> {
    /// 1-based line number in its file.
    pub number: u64,
    /// The line without its `\n`, `\r` or leading byte-order mark.
    pub text: &'a str,
    /// Whether this is the first non-blank line of its file.
    pub first: bool,
}

fn io(display: &str) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: display.to_owned(),
        source,
    }
}

/// Read every file of `input` (listed by [`fsx`], like `medrun lock` hashes it), handing each
/// non-blank line to the parser `parser_for` makes for that file (so a parser may keep per-file
/// state, such as a sniffed format).
pub(crate) fn read_lines<T, P>(
    input: &Input,
    opts: ReadOptions,
    mut parser_for: impl FnMut(&InputFile) -> P,
) -> Result<Read<T>, DataError>
where
    P: FnMut(Line<'_>) -> Result<T, Problem>,
{
    let mut read = Read {
        records: Vec::new(),
        skipped: Vec::new(),
    };
    for file in &input.files {
        let (records, skipped) = (read.records.len(), read.skipped.len());
        let mut parse = parser_for(file);
        read_file(file, opts, &mut parse, &mut read)?;
        if read.records.len() == records && read.skipped.len() > skipped {
            return Err(DataError::NoRecords {
                file: file.display.clone(),
                skipped: read.skipped.split_off(skipped),
            });
        }
    }
    if read.records.is_empty() {
        return Err(DataError::NoRecords {
            file: input.display.clone(),
            skipped: Vec::new(),
        });
    }
    Ok(read)
}

fn read_file<T>(
    file: &InputFile,
    opts: ReadOptions,
    parse: &mut impl FnMut(Line<'_>) -> Result<T, Problem>,
    read: &mut Read<T>,
) -> Result<(), DataError> {
    let f = fsx::open_regular(&file.path, &file.display)?;
    let mut lines = LineReader::new(BufReader::with_capacity(1 << 16, f), opts.max_record_bytes);
    let mut buf = Vec::new();
    let mut first = true;
    loop {
        let next = lines.next(&mut buf).map_err(io(&file.display))?;
        let number = lines.number();
        let outcome = match next {
            Next::End => return Ok(()),
            Next::TooLong { bytes } => Err(Problem::TooLong {
                bytes,
                limit: lines.max(),
            }),
            Next::Line => {
                let mut bytes = buf.as_slice();
                if number == 1 {
                    bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
                }
                bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
                match std::str::from_utf8(bytes) {
                    Ok(text) if text.trim().is_empty() => continue,
                    Ok(text) => parse(Line {
                        number,
                        text,
                        first,
                    }),
                    Err(e) => Err(Problem::NotUtf8 {
                        column: e.valid_up_to() + 1,
                    }),
                }
            }
        };
        first = false;
        match outcome {
            Ok(record) => read.records.push(record),
            // A JSON array is the wrong kind of file, not one bad record.
            Err(problem) if opts.skip_bad_records && problem != Problem::JsonArray => {
                read.skipped.push(Skipped {
                    file: file.display.clone(),
                    line: number,
                    field: problem.field().map(str::to_owned),
                    reason: match &problem {
                        Problem::Json { column, message } => {
                            format!("invalid JSON at column {column}: {message}")
                        }
                        _ => problem.to_string(),
                    },
                })
            }
            Err(problem) => {
                return Err(DataError::BadRecord {
                    file: file.display.clone(),
                    line: number,
                    problem,
                });
            }
        }
    }
}
