//! Strict YAML loading shared by every medrun file format (run specs, eval suites, `datasets.lock`).
//!
//! Every file goes through the same gate before serde sees it: a size limit, a UTF-8 check that
//! reports the line and column of the first bad byte, and serde-saphyr with a tight budget (alias
//! bombs, deep nesting and huge documents are refused). Errors always carry `file:line:column`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Largest YAML file medrun reads. Specs and lock files are a few KiB; anything near this is
/// hostile or a mistake.
pub const MAX_YAML_BYTES: usize = 4 * 1024 * 1024;

/// A position in a source file, 1-based. Line 0 means "unknown".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

impl Pos {
    pub fn from_location(loc: &serde_saphyr::Location) -> Pos {
        Pos {
            line: loc.line(),
            column: loc.column(),
        }
    }

    /// Line and column of a byte offset in `bytes`.
    pub fn of_offset(bytes: &[u8], offset: usize) -> Pos {
        let end = offset.min(bytes.len());
        let before = &bytes[..end];
        let line = before.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map(|i| i + 1)
            .unwrap_or(0);
        let column = String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count() as u64
            + 1;
        Pos { line, column }
    }
}

/// A file name plus a position: prints as `file:line:column` (or just `file` when unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At {
    pub file: PathBuf,
    pub pos: Pos,
}

impl At {
    pub fn new(file: &Path, pos: Pos) -> At {
        At {
            file: file.to_path_buf(),
            pos,
        }
    }

    pub fn file(file: &Path) -> At {
        At::new(file, Pos::default())
    }

    pub fn spanned<T>(file: &Path, s: &serde_saphyr::Spanned<T>) -> At {
        At::new(file, Pos::from_location(&s.referenced))
    }
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pos.line == 0 {
            write!(f, "{}", self.file.display())
        } else {
            write!(
                f,
                "{}:{}:{}",
                self.file.display(),
                self.pos.line,
                self.pos.column
            )
        }
    }
}

/// Why a YAML file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    #[error("{at}: cannot read file: {source}")]
    Io {
        at: At,
        #[source]
        source: std::io::Error,
    },
    #[error("{at}: file is {size} bytes, over the {limit}-byte limit for a medrun YAML file")]
    TooLarge { at: At, size: u64, limit: usize },
    #[error("{at}: file is not valid UTF-8")]
    NotUtf8 { at: At },
    #[error("{at}: {message}")]
    Syntax { at: At, message: String },
    #[error("{at}: unsupported {what} version {found}; this medrun reads version {supported}")]
    Version {
        at: At,
        what: &'static str,
        found: String,
        supported: u32,
    },
    #[error("{at}: missing `version` field")]
    NoVersion { at: At },
}

impl YamlError {
    pub fn at(&self) -> &At {
        match self {
            YamlError::Io { at, .. }
            | YamlError::TooLarge { at, .. }
            | YamlError::NotUtf8 { at }
            | YamlError::Syntax { at, .. }
            | YamlError::Version { at, .. }
            | YamlError::NoVersion { at } => at,
        }
    }
}

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        with_snippet: false,
        budget: serde_saphyr::budget! {
            max_events: 200_000,
            max_aliases: 256,
            max_anchors: 256,
            max_depth: 64,
            max_documents: 1,
            max_nodes: 100_000,
            max_total_scalar_bytes: MAX_YAML_BYTES,
            max_recorded_anchor_events: 10_000,
            max_merge_keys: 64,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: 10_000,
            max_replay_stack_depth: 8,
            max_alias_expansions_per_anchor: 64,
        },
    }
}

/// Read a file's bytes with the size limit and UTF-8 check applied. Only a regular file is
/// opened (a FIFO would block the open forever).
pub fn read_text(path: &Path, display: &Path) -> Result<String, YamlError> {
    use std::io::Read;
    let file = crate::fsx::open_regular(path, &display.display().to_string()).map_err(|e| {
        let source = match e {
            crate::fsx::FsError::Io { source, .. } => source,
            crate::fsx::FsError::NotRegular { kind, .. } => {
                std::io::Error::other(format!("it is {kind}, not a regular file"))
            }
            other => std::io::Error::other(other.to_string()),
        };
        YamlError::Io {
            at: At::file(display),
            source,
        }
    })?;
    let mut bytes = Vec::new();
    // Read one byte past the limit so an oversized file is detected without reading all of it.
    file.take(MAX_YAML_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| YamlError::Io {
            at: At::file(display),
            source,
        })?;
    if bytes.len() > MAX_YAML_BYTES {
        let size = std::fs::metadata(path)
            .map(|m| m.len())
            .unwrap_or(bytes.len() as u64);
        return Err(YamlError::TooLarge {
            at: At::new(display, Pos::of_offset(&bytes, MAX_YAML_BYTES)),
            size,
            limit: MAX_YAML_BYTES,
        });
    }
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        YamlError::NotUtf8 {
            at: At::new(display, Pos::of_offset(e.as_bytes(), offset)),
        }
    })
}

/// Turn a serde-saphyr error into `file:line:column: message`.
pub fn syntax_error(display: &Path, err: &serde_saphyr::Error) -> YamlError {
    let pos = err
        .location()
        .map(|l| Pos::from_location(&l))
        .unwrap_or_default();
    let mut message = err.to_string();
    // serde-saphyr appends " at line N, column M"; we print the position up front instead.
    if let Some(i) = message.rfind(" at line ")
        && is_position_suffix(&message[i + " at line ".len()..])
    {
        message.truncate(i);
    }
    YamlError::Syntax {
        at: At::new(display, pos),
        message,
    }
}

/// Whether `s` is exactly `N, column M`.
fn is_position_suffix(s: &str) -> bool {
    let Some((line, col)) = s.split_once(", column ") else {
        return false;
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    digits(line) && digits(col)
}

/// Parse `text` into `T` strictly.
pub fn parse<T: DeserializeOwned>(text: &str, display: &Path) -> Result<T, YamlError> {
    serde_saphyr::from_str_with_options(text, options()).map_err(|e| syntax_error(display, &e))
}

#[derive(serde::Deserialize)]
struct VersionProbe {
    version: Option<serde_saphyr::Spanned<serde_json_like::Scalar>>,
}

mod serde_json_like {
    /// Any scalar, kept as text for the version check.
    #[derive(Debug)]
    pub struct Scalar(pub String);

    impl<'de> serde::Deserialize<'de> for Scalar {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl serde::de::Visitor<'_> for V {
                type Value = Scalar;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a version number")
                }
                fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                    Ok(Scalar(v.to_string()))
                }
                fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                    Ok(Scalar(v.to_string()))
                }
                fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                    Ok(Scalar(v.to_string()))
                }
                fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                    Ok(Scalar(format!("{v:?}")))
                }
                fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
                    Ok(Scalar(v.to_string()))
                }
            }
            d.deserialize_any(V)
        }
    }
}

/// Check the `version:` field before the strict parse, so that a future format gets a clear
/// "unsupported version" error instead of a confusing unknown-field error.
pub fn check_version(
    text: &str,
    display: &Path,
    what: &'static str,
    supported: u32,
) -> Result<(), YamlError> {
    // A lenient probe: unknown keys are ignored here, the strict parse comes next.
    let probe: Result<VersionProbe, _> = serde_saphyr::from_str_with_options(text, options());
    match probe {
        Err(e) => Err(syntax_error(display, &e)),
        Ok(VersionProbe { version: None }) => Err(YamlError::NoVersion {
            at: At::new(display, Pos { line: 1, column: 1 }),
        }),
        Ok(VersionProbe { version: Some(v) }) => {
            if v.value.0 == supported.to_string() {
                Ok(())
            } else {
                Err(YamlError::Version {
                    at: At::spanned(display, &v),
                    what,
                    found: v.value.0.clone(),
                    supported,
                })
            }
        }
    }
}

/// Read, version-check and strictly parse a medrun YAML file.
pub fn load<T: DeserializeOwned>(
    path: &Path,
    display: &Path,
    what: &'static str,
    supported: u32,
) -> Result<(T, String), YamlError> {
    let text = read_text(path, display)?;
    check_version(&text, display, what, supported)?;
    let value = parse(&text, display)?;
    Ok((value, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_to_position() {
        let b = b"ab\ncd\xffe";
        assert_eq!(Pos::of_offset(b, 0), Pos { line: 1, column: 1 });
        assert_eq!(Pos::of_offset(b, 5), Pos { line: 2, column: 3 });
    }

    #[test]
    fn only_a_trailing_position_is_stripped() {
        assert!(is_position_suffix("3, column 7"));
        assert!(!is_position_suffix("3, column 7) (used"));
        assert!(!is_position_suffix("x, column 7"));
    }

    #[test]
    fn version_probe_rejects_two() {
        let err = check_version("version: 2\nname: x\n", Path::new("f.yaml"), "spec", 1)
            .expect_err("version 2 must be refused");
        assert_eq!(
            err.to_string(),
            "f.yaml:1:10: unsupported spec version 2; this medrun reads version 1"
        );
    }

    #[test]
    fn alias_bomb_is_refused() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = (b'a' + i - 1) as char;
            let cur = (b'a' + i) as char;
            text.push_str(&format!(
                "{cur}: &{cur} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
        }
        let r: Result<std::collections::BTreeMap<String, serde_json_value::V>, _> =
            parse(&text, Path::new("bomb.yaml"));
        assert!(r.is_err());
    }

    mod serde_json_value {
        /// Accept anything (like serde_json::Value) so the budget is what refuses the bomb.
        #[derive(Debug)]
        pub struct V;
        impl<'de> serde::Deserialize<'de> for V {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                serde::de::IgnoredAny::deserialize(d).map(|_| V)
            }
        }
    }
}
