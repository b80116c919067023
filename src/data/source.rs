//! Files and lines: the reading loop shared by every format.
//!
//! A dataset path is a file or a directory of shards. Each file is read line by line (one line in
//! memory at a time, however long), a leading byte-order mark is dropped, `\r\n` counts as `\n`,
//! blank lines are passed over, and each remaining line goes to the format's parser. Bad lines are
//! returned as errors or collected, per [`ReadOptions`].

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::{DataError, Problem, Read, ReadOptions, Skipped};

const BOM: &[u8] = b"\xEF\xBB\xBF";
/// Directory nesting past this is treated as a symlink loop.
const MAX_DEPTH: usize = 32;

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

/// One file to read, and the name messages give it.
#[derive(Debug)]
struct SourceFile {
    path: PathBuf,
    display: String,
}

fn io(display: &str) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: display.to_owned(),
        source,
    }
}

/// `path` itself, or every file under it (names starting with `.` ignored) in the order of their
/// relative paths, which is also the order `medrun lock` hashes them in.
fn list(path: &Path, display: &str) -> Result<Vec<SourceFile>, DataError> {
    let meta = fs::metadata(path).map_err(io(display))?;
    if !meta.is_dir() {
        return Ok(vec![SourceFile {
            path: path.to_path_buf(),
            display: display.to_owned(),
        }]);
    }
    let mut found = Vec::new();
    walk(path, path, display, 0, &mut found)?;
    found.sort();
    let base = display.trim_end_matches('/');
    Ok(found
        .into_iter()
        .map(|(rel, path)| SourceFile {
            display: format!("{base}/{rel}"),
            path,
        })
        .collect())
}

fn walk(
    base: &Path,
    dir: &Path,
    display: &str,
    depth: usize,
    out: &mut Vec<(String, PathBuf)>,
) -> Result<(), DataError> {
    let shown = |p: &Path| match p.strip_prefix(base) {
        Ok(rel) if !rel.as_os_str().is_empty() => format!(
            "{}/{}",
            display.trim_end_matches('/'),
            rel.to_string_lossy().replace('\\', "/")
        ),
        _ => display.to_owned(),
    };
    if depth > MAX_DEPTH {
        return Err(DataError::Io {
            path: shown(dir),
            source: std::io::Error::other(format!(
                "directory nesting deeper than {MAX_DEPTH} levels (a symlink loop?)"
            )),
        });
    }
    let entries = fs::read_dir(dir).map_err(io(&shown(dir)))?;
    for entry in entries {
        let entry = entry.map_err(io(&shown(dir)))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let p = entry.path();
        let meta = fs::metadata(&p).map_err(io(&shown(&p)))?;
        if meta.is_dir() {
            walk(base, &p, display, depth + 1, out)?;
        } else if meta.is_file() {
            let rel = p
                .strip_prefix(base)
                .unwrap_or(&p)
                .to_string_lossy()
                .replace('\\', "/");
            out.push((rel, p));
        }
    }
    Ok(())
}

/// Read every file under `path`, handing each non-blank line to the parser `parser_for` makes for
/// that file (so a parser may keep per-file state, such as a sniffed format).
pub(crate) fn read_lines<T, P>(
    path: &Path,
    display: &str,
    opts: ReadOptions,
    mut parser_for: impl FnMut(&Path) -> P,
) -> Result<Read<T>, DataError>
where
    P: FnMut(Line<'_>) -> Result<T, Problem>,
{
    let mut read = Read {
        records: Vec::new(),
        skipped: Vec::new(),
    };
    for file in list(path, display)? {
        let (records, skipped) = (read.records.len(), read.skipped.len());
        let mut parse = parser_for(&file.path);
        read_file(&file, opts, &mut parse, &mut read)?;
        if read.records.len() == records && read.skipped.len() > skipped {
            return Err(DataError::NoRecords {
                file: file.display,
                skipped: read.skipped.split_off(skipped),
            });
        }
    }
    if read.records.is_empty() {
        return Err(DataError::NoRecords {
            file: display.to_owned(),
            skipped: Vec::new(),
        });
    }
    Ok(read)
}

fn read_file<T>(
    file: &SourceFile,
    opts: ReadOptions,
    parse: &mut impl FnMut(Line<'_>) -> Result<T, Problem>,
    read: &mut Read<T>,
) -> Result<(), DataError> {
    let f = File::open(&file.path).map_err(io(&file.display))?;
    let mut reader = BufReader::with_capacity(1 << 16, f);
    let mut buf = Vec::new();
    let mut number = 0u64;
    let mut first = true;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(io(&file.display))?;
        if n == 0 {
            return Ok(());
        }
        number += 1;
        let mut bytes = buf.as_slice();
        if number == 1 {
            bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
        }
        bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        let outcome = match std::str::from_utf8(bytes) {
            Ok(text) if text.trim().is_empty() => continue,
            Ok(text) => parse(Line {
                number,
                text,
                first,
            }),
            Err(e) => Err(Problem::NotUtf8 {
                column: e.valid_up_to() + 1,
            }),
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
