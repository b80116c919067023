//! `promotions.yaml`: the append-only promotion history at the project root, committed to git.
//! Each promotion of a checkpoint to a channel (`production`, `staging`, …) adds one entry; the
//! holder of a channel is its last entry. Nothing ever rewrites, reorders or deletes an entry:
//! rolling back is a new promotion of the older checkpoint.
//!
//! # Format, version 1
//!
//! ```yaml
//! # promotions.yaml: every promotion of this project, oldest first. Written by
//! # `medrun promote` and committed to git; append-only, do not edit by hand.
//! version: 1
//! promotions:
//!   - channel: "production"
//!     promoted_at: "2026-03-01T12:00:00.000Z"
//!     checkpoint: "3f0c…64 hex…"
//!     results: "9a41…64 hex…"
//!     run: "0d3e5b0c8f1a4e6b9c2d7a8e1f0b3c4d"
//!     stage: "sft"
//!     spec: "runs/medical.yaml"
//!     previous: null
//!     gates:
//!       - metric: "medical/mc/acc"
//!         value: 0.71
//!         holder_value: null
//!         p_value: null
//!         passed: true
//! ```
//!
//! | Field | Meaning |
//! |---|---|
//! | `version` | `1`; another version is refused with its own error |
//! | `channel` | channel name: 1–64 characters from `A-Z a-z 0-9 - _ .`, not starting with `.` |
//! | `promoted_at` | RFC 3339 UTC time, `YYYY-MM-DDTHH:MM:SS[.fff]Z` |
//! | `checkpoint` | the promoted stage's output tree (content address, 64 lowercase hex) |
//! | `results` | the evaluation results artifact the gates read (64 lowercase hex) |
//! | `run` | id of the run that produced the checkpoint (lowercase hex) |
//! | `stage` | the stage of that run whose output is promoted |
//! | `spec` | the run spec's path relative to the project root |
//! | `previous` | the channel's checkpoint before this promotion, `null` for its first |
//! | `gates` | every gate judged: `metric`, `value`, `holder_value`, `p_value` (numbers; `null` for none; a non-finite value as the string `"inf"`, `"-inf"` or `"nan"`, as in results files: `crate::eval::number`), `passed` |
//!
//! Every key is required and unknown keys are errors. `previous` must equal the checkpoint of
//! the channel's preceding entry, so a reordered, deleted or hand-written entry is caught with
//! its `file:line:column`. The file must also be exactly in the canonical layout below: a
//! reformatted file (same meaning, other spelling) is refused too, at the first line that
//! differs, because only a hand edit produces one. The hint of these errors is
//! `git checkout promotions.yaml`.
//!
//! # Canonical layout and appending
//!
//! The file is written in one layout: the comment header, `version: 1`, `promotions:`, then each
//! entry exactly as above (strings JSON-quoted, which is valid YAML and keeps a hex id made only
//! of digits a string; floats in Rust's shortest round-trip form). The layout of a history is
//! the header followed by each entry's text, so appending an entry writes the old bytes
//! unchanged followed by the new entry's text: `git diff` shows only added lines.
//!
//! [`append`] takes an advisory lock on the project root directory (so two `medrun promote`
//! processes on one machine queue up), re-reads and re-checks the file as [`load`] does, and
//! checks that the new entry's `previous` is the channel's current holder: promotions on other
//! channels that landed since the caller loaded the history are kept (a safe merge), but a
//! promotion that was decided against a holder that has since changed is refused. It then
//! writes the whole file atomically (temp file, fsync, rename).
//!
//! Two git branches that both promoted conflict at the end of the file when merged; keeping
//! both blocks (in either order) gives a canonical file again, and the `previous` chain then
//! tells whether both promoted the same channel from the same holder.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::eval::gate::GateOutcome;
use crate::spec::resolve::normalize_rel;
use crate::yaml::{self, At, Pos, YamlError};

pub const PROMOTIONS_FILE: &str = "promotions.yaml";
pub const PROMOTIONS_VERSION: u32 = 1;

const HEADER: &str = "# promotions.yaml: every promotion of this project, oldest first. Written by\n\
# `medrun promote` and committed to git; append-only, do not edit by hand.\n";

/// One gate as recorded with a promotion.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GateRecord {
    pub metric: String,
    #[serde(serialize_with = "crate::eval::number::option::serialize")]
    pub value: Option<f64>,
    #[serde(serialize_with = "crate::eval::number::option::serialize")]
    pub holder_value: Option<f64>,
    #[serde(serialize_with = "crate::eval::number::option::serialize")]
    pub p_value: Option<f64>,
    pub passed: bool,
}

impl From<&GateOutcome> for GateRecord {
    fn from(g: &GateOutcome) -> GateRecord {
        GateRecord {
            metric: g.metric.clone(),
            value: g.value,
            holder_value: g.holder_value,
            p_value: g.p_value,
            passed: g.passed,
        }
    }
}

/// One promotion.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Entry {
    pub channel: String,
    /// RFC 3339 UTC (`crate::time::now()`).
    pub promoted_at: String,
    /// The promoted output tree (64 hex).
    pub checkpoint: String,
    /// The results artifact the gates read (64 hex).
    pub results: String,
    pub run: String,
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
}

#[derive(Debug, thiserror::Error)]
pub enum PromotionError {
    #[error(transparent)]
    Yaml(#[from] YamlError),
    #[error("{at}: {message}")]
    Invalid { at: At, message: String },
    #[error(
        "{at}: {PROMOTIONS_FILE} is not in the layout medrun writes (expected {expected:?}); was it edited by hand?"
    )]
    NotCanonical { at: At, expected: String },
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

fn show(x: &Option<String>) -> String {
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
            PromotionError::Conflict { .. } => {
                "another promotion landed on this channel meanwhile: evaluate the gates against the new holder, then promote again".into()
            }
            PromotionError::AlreadyHolds { .. } => "nothing to promote".into(),
            PromotionError::InvalidEntry(_) => {
                "this is a bug in medrun: please report it with the command you ran".into()
            }
            PromotionError::Io { .. } => {
                "check that the project root exists and is writable".into()
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Field checks, shared by the parser and `append`.

fn is_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn check_object(s: &str, field: &str) -> Result<(), String> {
    if s.len() == 64 && is_hex(s) {
        Ok(())
    } else {
        Err(format!(
            "`{field}` must be 64 lowercase hex digits, got {s:?}"
        ))
    }
}

fn check_name(s: &str, field: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !s.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid {field} name {s:?}: names use 1-64 characters from A-Z a-z 0-9 - _ . and do not start with a dot"
        ))
    }
}

fn check_run(s: &str) -> Result<(), String> {
    if !s.is_empty() && s.len() <= 64 && is_hex(s) {
        Ok(())
    } else {
        Err(format!("`run` must be a run id (lowercase hex), got {s:?}"))
    }
}

fn check_spec(s: &str) -> Result<(), String> {
    match normalize_rel(s) {
        Ok(rel) if rel.as_str() == s => Ok(()),
        Ok(rel) => Err(format!(
            "`spec` {s:?} is not in normal form (expected \"{rel}\")"
        )),
        Err(why) => Err(format!("`spec` {s:?}: {why}")),
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.f+]Z` with plausible field ranges.
fn check_time(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .filter(|d| d.iter().all(u8::is_ascii_digit))
            .map(|d| d.iter().fold(0u32, |a, &x| a * 10 + u32::from(x - b'0')))
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    let ok = (|| {
        let (_, mo, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
        let (h, mi, sec) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
        let seps = at(4, b'-') && at(7, b'-') && at(10, b'T') && at(13, b':') && at(16, b':');
        let fields = (1..=12).contains(&mo) && (1..=31).contains(&d) && h < 24 && mi < 60;
        let rest = &b[19..];
        let frac = match rest {
            [b'Z'] => true,
            [b'.', mid @ .., b'Z'] => !mid.is_empty() && mid.iter().all(u8::is_ascii_digit),
            _ => false,
        };
        Some(seps && fields && sec <= 60 && frac)
    })();
    if ok == Some(true) {
        Ok(())
    } else {
        Err(format!(
            "`promoted_at` must be an RFC 3339 UTC time like \"2026-03-01T12:00:00.000Z\", got {s:?}"
        ))
    }
}

fn check_entry(e: &Entry) -> Result<(), String> {
    check_name(&e.channel, "channel")?;
    check_time(&e.promoted_at)?;
    check_object(&e.checkpoint, "checkpoint")?;
    check_object(&e.results, "results")?;
    check_run(&e.run)?;
    check_name(&e.stage, "stage")?;
    check_spec(&e.spec)?;
    if let Some(p) = &e.previous {
        check_object(p, "previous")?;
    }
    for g in &e.gates {
        if g.metric.is_empty() {
            return Err("a gate has an empty `metric`".into());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reading.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHistory {
    #[allow(dead_code)]
    version: Spanned<u32>,
    /// `promotions:` with no entries reads as null.
    promotions: Option<Vec<RawEntry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    channel: Spanned<String>,
    promoted_at: Spanned<String>,
    checkpoint: Spanned<String>,
    results: Spanned<String>,
    run: Spanned<String>,
    stage: Spanned<String>,
    spec: Spanned<String>,
    previous: Spanned<Option<String>>,
    gates: Vec<RawGate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGate {
    metric: Spanned<String>,
    #[serde(with = "crate::eval::number::option")]
    value: Option<f64>,
    #[serde(with = "crate::eval::number::option")]
    holder_value: Option<f64>,
    #[serde(with = "crate::eval::number::option")]
    p_value: Option<f64>,
    passed: bool,
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

    /// Every channel that has been promoted to, sorted.
    pub fn channels(&self) -> BTreeSet<&str> {
        self.entries.iter().map(|e| e.channel.as_str()).collect()
    }

    /// Parse a history strictly; `display` names the file in errors.
    pub fn parse(text: &str, display: &Path) -> Result<History, PromotionError> {
        yaml::check_version(text, display, PROMOTIONS_FILE, PROMOTIONS_VERSION)?;
        let raw: RawHistory = yaml::parse(text, display)?;
        let mut history = History::default();
        for r in raw.promotions.unwrap_or_default() {
            let invalid = |at: At, message: String| PromotionError::Invalid { at, message };
            let field = |s: &Spanned<String>, check: &dyn Fn(&str) -> Result<(), String>| {
                check(&s.value).map_err(|m| invalid(At::spanned(display, s), m))
            };
            field(&r.channel, &|s| check_name(s, "channel"))?;
            field(&r.promoted_at, &check_time)?;
            field(&r.checkpoint, &|s| check_object(s, "checkpoint"))?;
            field(&r.results, &|s| check_object(s, "results"))?;
            field(&r.run, &check_run)?;
            field(&r.stage, &|s| check_name(s, "stage"))?;
            field(&r.spec, &check_spec)?;
            if let Some(p) = &r.previous.value {
                check_object(p, "previous")
                    .map_err(|m| invalid(At::spanned(display, &r.previous), m))?;
            }
            let before = history.holder(&r.channel.value).map(|e| &e.checkpoint);
            if before != r.previous.value.as_ref() {
                return Err(invalid(
                    At::spanned(display, &r.previous),
                    format!(
                        "this promotion on `{}` says the channel held {}, but the entries before it leave it at {} (entries were edited, removed or reordered)",
                        r.channel.value,
                        show(&r.previous.value),
                        show(&before.cloned())
                    ),
                ));
            }
            let mut gates = Vec::with_capacity(r.gates.len());
            for g in r.gates {
                if g.metric.value.is_empty() {
                    return Err(invalid(
                        At::spanned(display, &g.metric),
                        "a gate has an empty `metric`".into(),
                    ));
                }
                gates.push(GateRecord {
                    metric: g.metric.value,
                    value: g.value,
                    holder_value: g.holder_value,
                    p_value: g.p_value,
                    passed: g.passed,
                });
            }
            history.entries.push(Entry {
                channel: r.channel.value,
                promoted_at: r.promoted_at.value,
                checkpoint: r.checkpoint.value,
                results: r.results.value,
                run: r.run.value,
                stage: r.stage.value,
                spec: r.spec.value,
                previous: r.previous.value,
                gates,
            });
        }
        Ok(history)
    }

    /// The canonical text of this history.
    pub fn render(&self) -> String {
        let mut s = header();
        for e in &self.entries {
            s.push_str(&render_entry(e));
        }
        s
    }
}

fn header() -> String {
    format!("{HEADER}version: {PROMOTIONS_VERSION}\npromotions:\n")
}

/// A string as a YAML double-quoted scalar (JSON escaping is valid YAML).
fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

/// A gate number: finite values in full, `null` for none, and NaN and ±∞ as the quoted strings
/// `"nan"`, `"inf"` and `"-inf"` (as in results files, `crate::eval::number`), which read back
/// to the same value.
fn number(x: Option<f64>) -> String {
    match x {
        // Debug is the shortest text that reads back to the same bits (`0.1`, `1e-7`, `3.0`).
        Some(v) => match crate::eval::number::non_finite_name(v) {
            Some(name) => quote(name),
            None => format!("{v:?}"),
        },
        None => "null".into(),
    }
}

/// One entry's text in the canonical layout.
fn render_entry(e: &Entry) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "  - channel: {}", quote(&e.channel));
    let _ = writeln!(s, "    promoted_at: {}", quote(&e.promoted_at));
    let _ = writeln!(s, "    checkpoint: {}", quote(&e.checkpoint));
    let _ = writeln!(s, "    results: {}", quote(&e.results));
    let _ = writeln!(s, "    run: {}", quote(&e.run));
    let _ = writeln!(s, "    stage: {}", quote(&e.stage));
    let _ = writeln!(s, "    spec: {}", quote(&e.spec));
    let previous = e.previous.as_deref().map_or("null".into(), quote);
    let _ = writeln!(s, "    previous: {previous}");
    if e.gates.is_empty() {
        s.push_str("    gates: []\n");
    } else {
        s.push_str("    gates:\n");
        for g in &e.gates {
            let _ = writeln!(s, "      - metric: {}", quote(&g.metric));
            let _ = writeln!(s, "        value: {}", number(g.value));
            let _ = writeln!(s, "        holder_value: {}", number(g.holder_value));
            let _ = writeln!(s, "        p_value: {}", number(g.p_value));
            let _ = writeln!(s, "        passed: {}", g.passed);
        }
    }
    s
}

fn display() -> &'static Path {
    Path::new(PROMOTIONS_FILE)
}

/// The file's text, `None` when there is none.
fn read(root: &Path) -> Result<Option<String>, PromotionError> {
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
    Ok(Some(yaml::read_text(&path, display())?))
}

/// Parse the file's text strictly, then require the canonical layout.
fn parse_file(text: &str) -> Result<History, PromotionError> {
    let history = History::parse(text, display())?;
    let expected = history.render();
    if text != expected {
        let (pos, line) = first_difference(text, &expected);
        return Err(PromotionError::NotCanonical {
            at: At::new(display(), pos),
            expected: line,
        });
    }
    Ok(history)
}

/// Read `root/promotions.yaml`: strictly parsed, every entry checked, and in the canonical
/// layout (anything else is a hand edit); a missing file is an empty history.
pub fn load(root: &Path) -> Result<History, PromotionError> {
    match read(root)? {
        None => Ok(History::default()),
        Some(text) => parse_file(&text),
    }
}

/// Position of the first line where `text` departs from `expected`.
fn first_difference(text: &str, expected: &str) -> (Pos, String) {
    let mut line = 1;
    let mut got = text.split_inclusive('\n');
    for want in expected.split_inclusive('\n') {
        match got.next() {
            Some(g) if g == want => line += 1,
            Some(g) => {
                let column = g
                    .chars()
                    .zip(want.chars())
                    .take_while(|(a, b)| a == b)
                    .count() as u64
                    + 1;
                return (Pos { line, column }, want.trim_end_matches('\n').into());
            }
            None => return (Pos { line, column: 1 }, want.trim_end_matches('\n').into()),
        }
    }
    (Pos { line, column: 1 }, "end of file".into())
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

/// Append `entry` to `root/promotions.yaml` (see the module docs): the existing bytes are kept
/// as a prefix and the entry's canonical text follows.
pub fn append(root: &Path, entry: &Entry) -> Result<(), PromotionError> {
    check_entry(entry).map_err(PromotionError::InvalidEntry)?;
    let _lock = lock_root(root)?;
    let (text, history) = match read(root)? {
        None => (header(), History::default()),
        Some(text) => {
            let history = parse_file(&text)?;
            (text, history)
        }
    };
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
    let new_text = text + &render_entry(entry);
    // The new text must read back as the old history plus the entry (compared through the
    // canonical text, in which NaN equals NaN).
    match History::parse(&new_text, display()) {
        Ok(back)
            if back.entries.len() == history.entries.len() + 1 && back.render() == new_text => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(c: char) -> String {
        c.to_string().repeat(64)
    }

    fn entry(channel: &str, checkpoint: char, previous: Option<char>) -> Entry {
        Entry {
            channel: channel.into(),
            promoted_at: "2026-03-01T12:00:00.000Z".into(),
            checkpoint: hex(checkpoint),
            results: hex('e'),
            run: "0123456789abcdef0123456789abcdef".into(),
            stage: "sft".into(),
            spec: "runs/medical.yaml".into(),
            previous: previous.map(hex),
            gates: vec![
                GateRecord {
                    metric: "medical/mc/acc".into(),
                    value: Some(0.71),
                    holder_value: None,
                    p_value: None,
                    passed: true,
                },
                GateRecord {
                    metric: "medical/harmful/refusal_rate".into(),
                    value: Some(0.9),
                    holder_value: Some(0.92),
                    p_value: Some(0.386_718_75),
                    passed: true,
                },
            ],
        }
    }

    fn file(root: &Path) -> String {
        std::fs::read_to_string(root.join(PROMOTIONS_FILE)).unwrap_or_default()
    }

    #[test]
    fn missing_file_is_an_empty_history() {
        let dir = tempfile::tempdir().expect("tempdir");
        let h = load(dir.path()).expect("load");
        assert!(h.is_empty());
        assert_eq!(h.holder("production"), None);
        assert!(h.channels().is_empty());
    }

    #[test]
    fn append_keeps_the_old_bytes_as_a_prefix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        append(root, &entry("production", 'a', None)).expect("first");
        let one = file(root);
        assert!(one.starts_with(&header()));
        append(root, &entry("staging", 'b', None)).expect("second");
        let two = file(root);
        append(root, &entry("production", 'c', Some('a'))).expect("third");
        let three = file(root);
        assert!(two.starts_with(&one) && three.starts_with(&two));
        assert_eq!(
            &three[two.len()..],
            render_entry(&entry("production", 'c', Some('a')))
        );
        let h = load(root).expect("load");
        assert_eq!(h.entries().len(), 3);
        assert_eq!(
            h.holder("production").map(|e| e.checkpoint.clone()),
            Some(hex('c'))
        );
        assert_eq!(
            h.holder("staging").map(|e| e.checkpoint.clone()),
            Some(hex('b'))
        );
        assert_eq!(
            h.channels().into_iter().collect::<Vec<_>>(),
            ["production", "staging"]
        );
        assert_eq!(h.render(), three, "the file is canonical");
    }

    #[test]
    fn canonical_text_of_one_entry() {
        let h = History {
            entries: vec![entry("production", 'a', None)],
        };
        let a = hex('a');
        let e = hex('e');
        let want = format!(
            "# promotions.yaml: every promotion of this project, oldest first. Written by
# `medrun promote` and committed to git; append-only, do not edit by hand.
version: 1
promotions:
  - channel: \"production\"
    promoted_at: \"2026-03-01T12:00:00.000Z\"
    checkpoint: \"{a}\"
    results: \"{e}\"
    run: \"0123456789abcdef0123456789abcdef\"
    stage: \"sft\"
    spec: \"runs/medical.yaml\"
    previous: null
    gates:
      - metric: \"medical/mc/acc\"
        value: 0.71
        holder_value: null
        p_value: null
        passed: true
      - metric: \"medical/harmful/refusal_rate\"
        value: 0.9
        holder_value: 0.92
        p_value: 0.38671875
        passed: true
"
        );
        assert_eq!(h.render(), want);
        assert_eq!(History::parse(&want, display()).expect("parse"), h);
    }

    #[test]
    fn numbers_round_trip_exactly() {
        let mut rng = crate::rng::Rng::new(5);
        let mut values = vec![
            0.0,
            -0.0,
            1.0,
            0.1,
            1e-7,
            1e300,
            -2.5e-310,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ];
        values.extend((0..200).map(|_| f64::from_bits(rng.next_u64())));
        let mut e = entry("production", 'a', None);
        e.gates = values
            .iter()
            .map(|&v| GateRecord {
                metric: "s/t/m".into(),
                value: Some(v),
                holder_value: None,
                p_value: Some(v),
                passed: false,
            })
            .collect();
        let h = History { entries: vec![e] };
        let back = History::parse(&h.render(), display()).expect("parse");
        for (g, &v) in back.entries[0].gates.iter().zip(&values) {
            let got = g.value.expect("a value is never dropped");
            if v.is_nan() {
                assert!(got.is_nan(), "{v:?} read back as {got:?}");
            } else {
                assert_eq!(got.to_bits(), v.to_bits(), "{v:?} read back as {got:?}");
            }
        }
        assert!(h.render().contains("value: \"inf\"\n"), "{}", h.render());
    }

    #[test]
    fn an_all_digit_hex_id_stays_a_string() {
        let mut e = entry("production", '1', None);
        e.run = "12345678901234567890123456789012".into();
        e.results = format!("1e{}", "5".repeat(62));
        let h = History { entries: vec![e] };
        assert_eq!(History::parse(&h.render(), display()).expect("parse"), h);
    }

    #[test]
    fn previous_must_be_the_current_holder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        append(root, &entry("production", 'a', None)).expect("first");
        // Decided against nobody, but `a` holds the channel now.
        let err = append(root, &entry("production", 'b', None)).expect_err("conflict");
        assert!(matches!(err, PromotionError::Conflict { .. }), "{err}");
        assert!(
            err.to_string().contains("now holds checkpoint aaaa"),
            "{err}"
        );
        // Re-promoting the holder is refused.
        let err = append(root, &entry("production", 'a', Some('a'))).expect_err("holds");
        assert!(matches!(err, PromotionError::AlreadyHolds { .. }));
        // A promotion on another channel merges.
        append(root, &entry("staging", 'b', None)).expect("other channel");
        append(root, &entry("production", 'b', Some('a'))).expect("after the merge");
    }

    #[test]
    fn invalid_entries_are_refused_before_writing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut e = entry("production", 'a', None);
        e.checkpoint = "ABC".into();
        assert!(matches!(
            append(dir.path(), &e),
            Err(PromotionError::InvalidEntry(_))
        ));
        let mut e = entry("prod uction", 'a', None);
        e.promoted_at = "yesterday".into();
        assert!(append(dir.path(), &e).is_err());
        assert!(!dir.path().join(PROMOTIONS_FILE).exists());
    }

    fn write(root: &Path, text: &str) {
        std::fs::write(root.join(PROMOTIONS_FILE), text).expect("write");
    }

    fn one_entry_text() -> String {
        History {
            entries: vec![entry("production", 'a', None)],
        }
        .render()
    }

    #[test]
    fn hand_edits_give_file_line_column_and_a_hint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let good = one_entry_text();

        // A bad checkpoint hash, at its position.
        write(root, &good.replace(&hex('a'), "not-a-hash"));
        let err = load(root).expect_err("bad hash");
        assert_eq!(
            err.to_string(),
            "promotions.yaml:7:17: `checkpoint` must be 64 lowercase hex digits, got \"not-a-hash\""
        );
        assert!(err.hint().contains("git checkout promotions.yaml"));

        // An unknown key.
        write(
            root,
            &good.replace("    stage:", "    note: \"hi\"\n    stage:"),
        );
        let err = load(root).expect_err("unknown key");
        let msg = err.to_string();
        assert!(msg.starts_with("promotions.yaml:"), "{msg}");
        assert!(msg.contains("note"), "{msg}");

        // A missing key.
        write(root, &good.replace("    previous: null\n", ""));
        let msg = load(root).expect_err("missing").to_string();
        assert!(
            msg.starts_with("promotions.yaml:") && msg.contains("previous"),
            "{msg}"
        );

        // Not YAML at all.
        write(root, "version: 1\npromotions: [\n");
        let msg = load(root).expect_err("syntax").to_string();
        assert!(msg.starts_with("promotions.yaml:"), "{msg}");

        // A future version.
        write(root, &good.replace("version: 1", "version: 2"));
        let msg = load(root).expect_err("version").to_string();
        assert_eq!(
            msg,
            "promotions.yaml:3:10: unsupported promotions.yaml version 2; this medrun reads version 1"
        );
    }

    #[test]
    fn a_broken_chain_is_caught() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        append(root, &entry("production", 'a', None)).expect("first");
        append(root, &entry("production", 'b', Some('a'))).expect("second");
        // Delete the first entry by hand: the second's `previous` names a checkpoint that
        // never held the channel.
        let text = file(root);
        let first = render_entry(&entry("production", 'a', None));
        write(root, &text.replacen(&first, "", 1));
        let err = load(root).expect_err("chain");
        let msg = err.to_string();
        assert!(msg.starts_with("promotions.yaml:12:15: "), "{msg}");
        assert!(msg.contains("edited, removed or reordered"), "{msg}");
    }

    #[test]
    fn a_reformatted_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        // Same meaning, other spelling: YAML 1.1 `yes`, an unquoted string.
        for (from, to) in [
            ("passed: true", "passed: yes"),
            ("channel: \"production\"", "channel: production"),
        ] {
            let text = one_entry_text().replacen(from, to, 1);
            write(root, &text);
            let err = load(root).expect_err("not canonical");
            assert!(matches!(err, PromotionError::NotCanonical { .. }), "{err}");
            assert!(err.hint().contains("git checkout promotions.yaml"));
            let err = append(root, &entry("staging", 'b', None)).expect_err("not canonical");
            assert!(matches!(err, PromotionError::NotCanonical { .. }), "{err}");
            assert_eq!(file(root), text, "nothing was written");
        }
        let err = load(root).expect_err("not canonical");
        assert_eq!(
            err.to_string(),
            "promotions.yaml:5:14: promotions.yaml is not in the layout medrun writes (expected \"  - channel: \\\"production\\\"\"); was it edited by hand?"
        );
        // A duplicated key is a YAML error.
        let text = one_entry_text().replacen(
            "    stage: \"sft\"\n",
            "    stage: \"sft\"\n    stage: \"dpo\"\n",
            1,
        );
        write(root, &text);
        let msg = load(root).expect_err("duplicate").to_string();
        assert!(msg.starts_with("promotions.yaml:11:"), "{msg}");
    }

    #[test]
    fn empty_promotions_list_and_not_utf8() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write(root, &header());
        assert!(load(root).expect("empty").is_empty());
        append(root, &entry("production", 'a', None)).expect("append to the empty header");
        assert_eq!(file(root), one_entry_text());
        std::fs::write(root.join(PROMOTIONS_FILE), b"version: 1\n\xff\n").expect("write");
        let msg = load(root).expect_err("utf8").to_string();
        assert_eq!(msg, "promotions.yaml:2:1: file is not valid UTF-8");
    }

    #[cfg(unix)]
    #[test]
    fn appends_from_two_threads_both_land() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_path_buf();
        let handles: Vec<_> = ["alpha", "beta", "gamma", "delta"]
            .into_iter()
            .zip(['a', 'b', 'c', 'd'])
            .map(|(ch, c)| {
                let root = root.clone();
                std::thread::spawn(move || append(&root, &entry(ch, c, None)))
            })
            .collect();
        for h in handles {
            h.join().expect("thread").expect("append");
        }
        assert_eq!(load(&root).expect("load").channels().len(), 4);
    }
}
