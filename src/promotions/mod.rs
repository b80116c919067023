//! `promotions.yaml`: the append-only promotion history at the project root, committed to git.
//! Each promotion of a checkpoint to a channel (`production`, `staging`, …) adds one entry; the
//! holder of a channel is its last entry. Nothing ever rewrites, reorders or deletes an entry:
//! rolling back is a new promotion of the older checkpoint.
//!
//! Every entry carries what it takes to re-derive it (format version 2): the sealed run record
//! its checkpoint came from, the commit that run trained at, the results its gates read, and for
//! each comparison gate the holder it was compared with and that holder's results. The modules:
//!
//! - [`format`]: the file format, its strict parser and its one canonical layout;
//! - [`history`]: the git side: the committed file only ever grows (checked through git2);
//! - [`verify`]: the store side: each entry re-derived from content-addressed evidence.
//!
//! The format and the reasoning are documented in docs/concepts/promotions.md.
//!
//! [`append`] takes an advisory lock on the project root directory (so two `medrun promote`
//! processes on one machine queue up), re-reads and re-checks the file as [`load`] does, runs
//! the caller's verification on it, and checks that the new entry's `previous` is the channel's
//! current holder and that every holder its comparison gates used still holds its channel:
//! promotions on other channels that landed since the caller loaded the history are kept (a
//! safe merge), but a promotion decided against a holder that has since changed is refused. It
//! then writes the whole file atomically (temp file, fsync, rename).

pub mod format;
pub mod history;
pub mod verify;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::yaml::{At, YamlError};

pub use format::{GateRecord, check_channel_name, header, render_entry};

pub const PROMOTIONS_FILE: &str = "promotions.yaml";
pub const PROMOTIONS_VERSION: u32 = 2;

/// One promotion.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Entry {
    pub channel: String,
    /// RFC 3339 UTC (`crate::time::now()`).
    pub promoted_at: String,
    /// The promoted output tree (64 hex).
    pub checkpoint: String,
    /// The tree of the results the gates read: suite name → that suite's results tree (64 hex).
    pub results: String,
    pub run: String,
    /// The sealed run record (its content address, 64 hex).
    pub record: String,
    /// The commit the run trained at (the spec's gates are read there).
    pub commit: String,
    pub stage: String,
    /// Spec path relative to the project root.
    pub spec: String,
    /// The channel's checkpoint before this promotion.
    pub previous: Option<String>,
    pub gates: Vec<GateRecord>,
}

/// The whole history, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    entries: Vec<Entry>,
    /// The line of each entry's first line in the canonical file.
    lines: Vec<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum PromotionError {
    #[error(transparent)]
    Yaml(#[from] YamlError),
    #[error(
        "{at}: promotions.yaml is version 1, whose entries cannot be verified; this medrun reads version 2"
    )]
    Version1 { at: At },
    #[error("{at}: {message}")]
    Invalid { at: At, message: String },
    #[error(
        "{at}: {PROMOTIONS_FILE} is not in the layout medrun writes (expected {expected:?}); was it edited by hand?"
    )]
    NotCanonical { at: At, expected: String },
    /// An entry, or the file's git history, does not re-derive (see [`verify`], [`history`]).
    #[error("{at}: {message}")]
    Unverified {
        /// `promotions.yaml:LINE`, or `commit ID`.
        at: String,
        message: String,
        hint: String,
    },
    #[error(
        "channel `{channel}` changed since the gates were decided: they compared against {}, but the channel now holds {}",
        show(.expected),
        show(.found)
    )]
    Conflict {
        channel: String,
        expected: Option<String>,
        found: Option<String>,
    },
    #[error("checkpoint {checkpoint} already holds channel `{channel}`")]
    AlreadyHolds { channel: String, checkpoint: String },
    #[error("{0}")]
    BadChannel(String),
    #[error("invalid promotion entry: {0}")]
    InvalidEntry(String),
    #[error("cannot {what} {}: {source}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub(crate) fn show(x: &Option<String>) -> String {
    match x {
        Some(c) => format!("checkpoint {c}"),
        None => "no checkpoint (first promotion)".into(),
    }
}

impl PromotionError {
    pub fn hint(&self) -> String {
        match self {
            PromotionError::Yaml(_)
            | PromotionError::Invalid { .. }
            | PromotionError::NotCanonical { .. } => format!(
                "{PROMOTIONS_FILE} is append-only history written by `medrun promote`: see what changed with `git diff {PROMOTIONS_FILE}` and restore it with `git checkout {PROMOTIONS_FILE}`"
            ),
            PromotionError::Version1 { .. } => format!(
                "version 1 entries carry no evidence to check them against: remove the file (`git rm {PROMOTIONS_FILE}`; its history stays in git) and promote each channel's checkpoint again with `medrun promote`"
            ),
            PromotionError::Unverified { hint, .. } => hint.clone(),
            PromotionError::Conflict { .. } => {
                "another promotion landed meanwhile: evaluate the gates against the new holder, then promote again".into()
            }
            PromotionError::AlreadyHolds { .. } => "nothing to promote".into(),
            PromotionError::BadChannel(_) => {
                "pick a name such as `production` or `staging-eu`: a name that reads as hex would be taken for a run or object id".into()
            }
            PromotionError::InvalidEntry(_) => {
                "this is a bug in medrun: please report it with the command you ran".into()
            }
            PromotionError::Io { .. } => {
                "check that the project root exists and is writable".into()
            }
        }
    }
}

impl History {
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The current holder of `channel`: its last entry.
    pub fn holder(&self, channel: &str) -> Option<&Entry> {
        self.entries.iter().rev().find(|e| e.channel == channel)
    }

    /// The holder of `channel` just before entry `index` was appended.
    pub fn holder_before(&self, index: usize, channel: &str) -> Option<&Entry> {
        self.entries[..index.min(self.entries.len())]
            .iter()
            .rev()
            .find(|e| e.channel == channel)
    }

    /// Every channel that has been promoted to, sorted.
    pub fn channels(&self) -> BTreeSet<&str> {
        self.entries.iter().map(|e| e.channel.as_str()).collect()
    }

    /// The line entry `index` starts on in the file.
    pub fn line(&self, index: usize) -> u64 {
        self.lines.get(index).copied().unwrap_or(0)
    }

    /// `promotions.yaml:LINE` of `field` in entry `index` (`gates[2].value` for a gate field).
    pub fn at(&self, index: usize, field: &str) -> String {
        let start = self.line(index);
        let offset = self
            .entries
            .get(index)
            .map(|e| format::field_offset(e, field))
            .unwrap_or(0);
        format!("{PROMOTIONS_FILE}:{}", start + offset)
    }
}

fn display() -> &'static Path {
    Path::new(PROMOTIONS_FILE)
}

/// The file's text, `None` when there is none.
pub fn read(root: &Path) -> Result<Option<String>, PromotionError> {
    let path = root.join(PROMOTIONS_FILE);
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(PromotionError::Io {
                what: "read",
                path,
                source,
            });
        }
        Ok(_) => {}
    }
    Ok(Some(crate::yaml::read_text(&path, display())?))
}

/// Read `root/promotions.yaml`: strictly parsed, every entry checked, and in the canonical
/// layout (anything else is a hand edit); a missing file is an empty history.
pub fn load(root: &Path) -> Result<History, PromotionError> {
    match read(root)? {
        None => Ok(History::default()),
        Some(text) => format::parse_file(&text),
    }
}

/// An advisory lock on the project root directory, held while appending (Unix `flock`).
struct RootLock {
    _dir: Option<std::fs::File>,
}

fn lock_root(root: &Path) -> Result<RootLock, PromotionError> {
    let io = |source| PromotionError::Io {
        what: "lock",
        path: root.to_path_buf(),
        source,
    };
    if cfg!(unix) {
        let dir = std::fs::File::open(root).map_err(io)?;
        if dir.try_lock().is_err() {
            tracing::info!("waiting for another `medrun promote` to finish");
            dir.lock().map_err(io)?;
        }
        Ok(RootLock { _dir: Some(dir) })
    } else {
        // Directories cannot be opened as files elsewhere; the atomic rename still keeps the
        // file whole, and the `previous` check still catches most races.
        Ok(RootLock { _dir: None })
    }
}

/// The check `append` runs on the history it is about to extend (under the lock).
pub type HistoryCheck<'a> = dyn Fn(&History) -> Result<(), PromotionError> + 'a;

/// Append `entry` to `root/promotions.yaml` (see the module docs): the existing bytes are kept
/// as a prefix and the entry's canonical text follows. `check` runs on the history as read
/// under the lock, before anything is written.
pub fn append(root: &Path, entry: &Entry, check: &HistoryCheck<'_>) -> Result<(), PromotionError> {
    format::check_entry(entry).map_err(PromotionError::InvalidEntry)?;
    let _lock = lock_root(root)?;
    let (text, history) = match read(root)? {
        None => (header(), History::default()),
        Some(text) => {
            let history = format::parse_file(&text)?;
            (text, history)
        }
    };
    check(&history)?;
    let holder = history.holder(&entry.channel).map(|e| e.checkpoint.clone());
    if holder.as_ref() == Some(&entry.checkpoint) {
        return Err(PromotionError::AlreadyHolds {
            channel: entry.channel.clone(),
            checkpoint: entry.checkpoint.clone(),
        });
    }
    if holder != entry.previous {
        return Err(PromotionError::Conflict {
            channel: entry.channel.clone(),
            expected: entry.previous.clone(),
            found: holder,
        });
    }
    for g in &entry.gates {
        if let Some(c) = &g.vs_channel {
            let now = history.holder(c).map(|e| e.checkpoint.clone());
            if now != g.holder {
                return Err(PromotionError::Conflict {
                    channel: c.clone(),
                    expected: g.holder.clone(),
                    found: now,
                });
            }
        }
    }
    let new_text = text + &render_entry(entry);
    // The new text must read back as the old history plus the entry (compared through the
    // canonical text, in which NaN equals NaN).
    match format::parse_file(&new_text) {
        Ok(back) if back.entries.len() == history.entries.len() + 1 => {}
        Ok(_) => {
            return Err(PromotionError::InvalidEntry(
                "the entry does not read back as written".into(),
            ));
        }
        Err(e) => {
            return Err(PromotionError::InvalidEntry(format!(
                "the entry does not read back: {e}"
            )));
        }
    }
    let path = root.join(PROMOTIONS_FILE);
    crate::tempfiles::write_project_file(root, &path, new_text.as_bytes()).map_err(|source| {
        PromotionError::Io {
            what: "write",
            path,
            source,
        }
    })
}

/// A check that accepts any history (tests of the format alone).
#[cfg(test)]
pub(crate) fn no_check(_: &History) -> Result<(), PromotionError> {
    Ok(())
}

#[cfg(test)]
mod tests;
