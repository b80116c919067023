//! Dataset readers: training files → typed records, before any tokenization.
//!
//! Three formats, matching the MedicalGPT recipe (see `docs/DOMAIN.md`, "Stage contracts"):
//! - [`read_text`] (PT): `.txt`, one document per line, or JSON lines `{"text": "..."}`.
//! - [`read_sharegpt`] (SFT): ShareGPT JSON lines `{"conversations": [{"from", "value"}, ...]}`.
//! - [`read_preference`] (DPO): `{"conversations", "chosen", "rejected"}` or the legacy
//!   `{"system", "history", "question", "response_chosen", "response_rejected"}`, per line.
//!
//! Common rules:
//! - A path may name a file or a directory of shards: every file under it (recursively, names
//!   starting with `.` ignored), read in the order of their relative paths. The readers take the
//!   listing from [`crate::fsx`], the same one `medrun lock` hashes: inside the project root,
//!   regular files only. Line numbers restart at 1 in each file, and every message names the file
//!   it is about.
//! - A line longer than [`ReadOptions::max_record_bytes`] is a bad record, found before the line
//!   is held in memory.
//! - JSON records are parsed strictly ([`crate::strict_json`]): a key written twice in one
//!   object is a bad record, named with its path.
//! - A UTF-8 byte-order mark at the start of a file is dropped, a trailing `\r` is dropped from
//!   every line, and blank lines (empty or whitespace only) are skipped without a word.
//! - Records come out in file order; nothing here shuffles.
//! - Unknown keys in a record are ignored: data files often carry ids or sources.
//! - A bad record is an error naming `file:line` and the field, unless
//!   [`ReadOptions::skip_bad_records`] is set, in which case it is listed in [`Read::skipped`]
//!   and reading goes on. Either way a file whose records are all bad is an error, and so is an
//!   input with no records at all.

mod json;
mod preference;
mod sharegpt;
mod source;
mod text;

#[cfg(test)]
pub(crate) mod tests;

use std::fmt;

pub use preference::read_preference;
pub use sharegpt::read_sharegpt;
pub use text::read_text;

/// Who speaks a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    /// The role of a ShareGPT `from` (or OpenAI-style `role`) value: `human`/`user`,
    /// `gpt`/`assistant` or `system`. Exact, lower-case names only.
    pub fn from_name(name: &str) -> Option<Role> {
        match name {
            "system" => Some(Role::System),
            "human" | "user" => Some(Role::User),
            "gpt" | "assistant" => Some(Role::Assistant),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One message of a conversation, as written in the file (no template applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub role: Role,
    pub content: String,
}

/// A pretraining document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextDoc {
    /// 1-based line in its file.
    pub line: u64,
    pub text: String,
}

/// An SFT conversation, turns in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// 1-based line in its file.
    pub line: u64,
    pub turns: Vec<Turn>,
}

/// A DPO preference pair: a prompt (system, history, question) and two raw responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefPair {
    /// 1-based line in its file.
    pub line: u64,
    pub prompt: Vec<Turn>,
    pub chosen: String,
    pub rejected: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// List bad records in [`Read::skipped`] instead of failing on the first one.
    pub skip_bad_records: bool,
    /// The longest line accepted, in bytes (line ending excluded); a longer line is a bad record.
    pub max_record_bytes: u64,
}

impl Default for ReadOptions {
    /// Strict, with this process's record size limit ([`crate::fsx::max_record_bytes`]).
    fn default() -> Self {
        ReadOptions {
            skip_bad_records: false,
            max_record_bytes: crate::fsx::max_record_bytes(),
        }
    }
}

/// What a reader returns: the records in file order, and the records it skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read<T> {
    pub records: Vec<T>,
    pub skipped: Vec<Skipped>,
}

/// A bad record passed over because of [`ReadOptions::skip_bad_records`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The file, as displayed in messages (`display`, then `/relative/path` for a directory).
    pub file: String,
    pub line: u64,
    /// Path of the offending field (`conversations[2].from`), when one field is to blame.
    pub field: Option<String>,
    pub reason: String,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.reason)
    }
}

/// Why one record (one line) cannot be used. Messages name the field, not the file: the file and
/// line are added by [`DataError::BadRecord`] and [`Skipped`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("invalid UTF-8 at byte {column} of the line")]
    NotUtf8 { column: usize },
    #[error("invalid JSON: {message}")]
    Json { column: usize, message: String },
    #[error(
        "the line holds {}, over the limit of {} (--max-record-bytes)",
        show_bytes(*bytes),
        show_bytes(*limit)
    )]
    TooLong { bytes: u64, limit: u64 },
    #[error("duplicate key {key:?}{}", in_object(within))]
    DuplicateKey {
        key: String,
        /// Path of the object holding the key; empty at the top level.
        within: String,
        /// Path of the key itself (`conversations[1].from`).
        field: String,
        column: usize,
    },
    #[error(
        "the file starts with `[`: it looks like one JSON array, but medrun reads JSON lines (one object per line)"
    )]
    JsonArray,
    #[error("expected a JSON object, found {found}")]
    NotObject { found: &'static str },
    #[error("field \"{field}\": missing")]
    Missing { field: String },
    #[error("field \"{field}\": expected {expected}, found {found}")]
    WrongType {
        field: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("field \"{field}\": has both \"{a}\" and \"{b}\"; keep one")]
    Both {
        field: String,
        a: &'static str,
        b: &'static str,
    },
    #[error(
        "field \"{field}\": unknown role \"{value}\" (expected human, gpt, system, user or assistant)"
    )]
    UnknownRole { field: String, value: String },
    #[error("field \"{field}\": empty (or only whitespace)")]
    Empty { field: String },
    #[error("field \"{field}\": empty conversation")]
    EmptyConversation { field: String },
    #[error("field \"{field}\": the conversation has no assistant turn")]
    NoAssistant { field: String },
    #[error("field \"{field}\": the prompt has no user turn")]
    NoUser { field: String },
    #[error("field \"{field}\": {message}")]
    RoleOrder { field: String, message: String },
    #[error("fields \"{chosen}\" and \"{rejected}\" are identical")]
    Identical {
        chosen: &'static str,
        rejected: &'static str,
    },
    #[error(
        "not a preference record: expected \"conversations\", \"chosen\" and \"rejected\", or the legacy \"question\", \"response_chosen\" and \"response_rejected\""
    )]
    NotPreference,
    #[error(
        "mixes the current keys (\"conversations\", \"chosen\", \"rejected\") with legacy ones (\"system\", \"history\", \"question\", \"response_chosen\", \"response_rejected\")"
    )]
    MixedPreference,
}

impl Problem {
    /// The field to blame, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Problem::Missing { field }
            | Problem::WrongType { field, .. }
            | Problem::Both { field, .. }
            | Problem::UnknownRole { field, .. }
            | Problem::Empty { field }
            | Problem::EmptyConversation { field }
            | Problem::NoAssistant { field }
            | Problem::NoUser { field }
            | Problem::DuplicateKey { field, .. }
            | Problem::RoleOrder { field, .. } => Some(field),
            Problem::NotUtf8 { .. }
            | Problem::TooLong { .. }
            | Problem::Identical { .. }
            | Problem::MixedPreference
            | Problem::Json { .. }
            | Problem::JsonArray
            | Problem::NotObject { .. }
            | Problem::NotPreference => None,
        }
    }

    /// The column to append to `file:line`, for problems that have one.
    fn column(&self) -> Option<usize> {
        match self {
            Problem::Json { column, .. } | Problem::DuplicateKey { column, .. } => Some(*column),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read `{path}`: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}{}: {problem}", column_suffix(problem))]
    BadRecord {
        file: String,
        line: u64,
        #[source]
        problem: Problem,
    },
    #[error("{}", no_records_message(file, skipped))]
    NoRecords { file: String, skipped: Vec<Skipped> },
    #[error(transparent)]
    Path(#[from] crate::fsx::FsError),
}

fn in_object(within: &str) -> String {
    if within.is_empty() {
        String::new()
    } else {
        format!(" in {within}")
    }
}

use crate::fsx::lines::show_bytes;

fn column_suffix(p: &Problem) -> String {
    p.column().map(|c| format!(":{c}")).unwrap_or_default()
}

fn no_records_message(file: &str, skipped: &[Skipped]) -> String {
    match skipped.first() {
        None => format!("`{file}` has no records"),
        Some(first) => format!(
            "`{file}` has no usable records: all {} were bad (first: {first})",
            skipped.len()
        ),
    }
}

impl DataError {
    pub fn hint(&self) -> String {
        match self {
            DataError::Io { .. } => "check the path and its permissions".into(),
            DataError::BadRecord { problem, .. } => match problem {
                Problem::JsonArray => {
                    "convert it to JSON lines, e.g. `jq -c '.[]' in.json > out.jsonl`".into()
                }
                Problem::NotUtf8 { .. } => {
                    "save the file as UTF-8, or pass --skip-bad-records to skip the line".into()
                }
                Problem::UnknownRole { .. } => {
                    "use `human`, `gpt` or `system` in `from` (or `user`/`assistant` in `role`), or pass --skip-bad-records to skip the record".into()
                }
                Problem::TooLong { .. } => {
                    "split the record, raise the limit with --max-record-bytes (or MEDRUN_MAX_RECORD_BYTES), or pass --skip-bad-records to skip it".into()
                }
                Problem::DuplicateKey { .. } => {
                    "keep one of the two: JSON readers disagree on which one counts (serde_json and Python keep the last), so medrun refuses to guess; or pass --skip-bad-records to skip the record".into()
                }
                Problem::RoleOrder { .. } => {
                    "order the turns as system (optional, first), then user and assistant alternating from a user turn: join two user turns in a row into one, drop an answer with no question before it; or pass --skip-bad-records to skip the record".into()
                }
                _ => "fix the record or pass --skip-bad-records to skip it".into(),
            },
            DataError::NoRecords { skipped, .. } if skipped.is_empty() => {
                "the file is empty or holds only blank lines: check the dataset path".into()
            }
            DataError::NoRecords { .. } => {
                "check that the dataset's `format` (text, sharegpt or preference) matches the file"
                    .into()
            }
            DataError::Path(e) => e.hint(),
        }
    }
}
