//! The `promotions.yaml` format, version 2: a strict parser and the one canonical layout.
//!
//! ```yaml
//! # promotions.yaml: every promotion of this project, oldest first. Written by
//! # `medrun promote` and committed to git; append-only, do not edit by hand.
//! version: 2
//! promotions:
//!   - channel: "production"
//!     promoted_at: "2026-03-01T12:00:00.000Z"
//!     checkpoint: "3f0c…64 hex…"
//!     results: "9a41…64 hex…"
//!     run: "0d3e5b0c8f1a4e6b9c2d7a8e1f0b3c4d"
//!     record: "5be2…64 hex…"
//!     commit: "9c1f…40 hex…"
//!     stage: "sft"
//!     spec: "runs/medical.yaml"
//!     previous: null
//!     gates:
//!       - metric: "medical/mc/acc"
//!         vs_channel: null
//!         value: 0.71
//!         holder: null
//!         holder_results: null
//!         holder_value: null
//!         p_value: null
//!         passed: true
//! ```
//!
//! Every key is required and unknown keys are errors. Besides each field's own form, the parser
//! checks what the file says about itself: `previous` is the channel's holder before the entry,
//! each comparison gate's `holder` is its channel's holder before the entry (with
//! `holder_results` exactly when there is a holder), every entry has gates and every gate
//! passed. The file must also be exactly in the canonical layout: a reformatted file (same
//! meaning, other spelling) is refused at the first line that differs, because only a hand edit
//! produces one. The layout of a history is the header followed by each entry's text, so
//! appending an entry keeps the old bytes unchanged and `git diff` shows only added lines.
//!
//! Strings are JSON-quoted (valid YAML that keeps a hex id made only of digits a string); floats
//! are in Rust's shortest round-trip form, and a NaN or infinite value is written as the quoted
//! string `"nan"`, `"inf"` or `"-inf"` (as in results files: `crate::eval::number`).

use std::fmt::Write as _;
use std::path::Path;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{Entry, History, PROMOTIONS_FILE, PROMOTIONS_VERSION, PromotionError, show};
use crate::eval::gate::GateOutcome;
use crate::spec::resolve::normalize_rel;
use crate::yaml::{self, At, Pos, YamlError};

const HEADER: &str = "# promotions.yaml: every promotion of this project, oldest first. Written by\n\
# `medrun promote` and committed to git; append-only, do not edit by hand.\n";

/// One gate as recorded with a promotion.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GateRecord {
    pub metric: String,
    /// The channel a comparison gate compared against (`null` for a threshold).
    pub vs_channel: Option<String>,
    #[serde(serialize_with = "crate::eval::number::option::serialize")]
    pub value: Option<f64>,
    /// The checkpoint holding `vs_channel` when the gate was judged (`null`: first promotion).
    pub holder: Option<String>,
    /// The results tree the holder was judged with (same shape as an entry's `results`).
    pub holder_results: Option<String>,
    #[serde(serialize_with = "crate::eval::number::option::serialize")]
    pub holder_value: Option<f64>,
    #[serde(serialize_with = "crate::eval::number::option::serialize")]
    pub p_value: Option<f64>,
    pub passed: bool,
}

impl GateRecord {
    /// A judged gate; `holder` is the channel holder's checkpoint and results tree, when the gate
    /// compared against one.
    pub fn new(
        g: &GateOutcome,
        vs_channel: Option<&str>,
        holder: Option<(&str, &str)>,
    ) -> GateRecord {
        GateRecord {
            metric: g.metric.clone(),
            vs_channel: vs_channel.map(str::to_string),
            value: g.value,
            holder: holder.map(|h| h.0.to_string()),
            holder_results: holder.map(|h| h.1.to_string()),
            holder_value: g.holder_value,
            p_value: g.p_value,
            passed: g.passed,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Field checks, shared by the parser and `append`.

/// Lowercase hex digits only.
pub(crate) fn is_hex(s: &str) -> bool {
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

fn check_commit(s: &str) -> Result<(), String> {
    if (s.len() == 40 || s.len() == 64) && is_hex(s) {
        Ok(())
    } else {
        Err(format!(
            "`commit` must be a full git commit id (40 or 64 lowercase hex digits), got {s:?}"
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

/// A channel name must be a valid name that no other REF can shadow: not `latest`, and not
/// 4-64 lowercase hex digits (which read as a run or object id prefix).
pub fn check_channel_name(s: &str) -> Result<(), String> {
    check_name(s, "channel")?;
    if s == "latest" {
        return Err(
            "invalid channel name \"latest\": `latest` is a REF for the newest run, so the channel could never be named"
                .into(),
        );
    }
    if s.len() >= crate::lineage::MIN_PREFIX && is_hex(s) {
        return Err(format!(
            "invalid channel name {s:?}: it reads as a hex prefix of a run or object id, so the channel could never be named as a REF"
        ));
    }
    Ok(())
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

/// What one gate record says about itself.
fn check_gate(g: &GateRecord) -> Result<(), String> {
    if g.metric.is_empty() {
        return Err("a gate has an empty `metric`".into());
    }
    if !g.passed {
        return Err(format!(
            "gate `{}` did not pass, but only promotions whose gates all pass are recorded",
            g.metric
        ));
    }
    match &g.vs_channel {
        None if g.holder.is_some() || g.holder_results.is_some() || g.holder_value.is_some() => {
            Err(format!(
                "gate `{}` compares against no channel but names a holder",
                g.metric
            ))
        }
        None => Ok(()),
        Some(c) => {
            check_channel_name(c)?;
            if let Some(h) = &g.holder {
                check_object(h, "holder")?;
            }
            if let Some(r) = &g.holder_results {
                check_object(r, "holder_results")?;
            }
            if g.holder.is_some() != g.holder_results.is_some() {
                return Err(format!(
                    "gate `{}`: `holder` and `holder_results` are both set or both null",
                    g.metric
                ));
            }
            Ok(())
        }
    }
}

pub(crate) fn check_entry(e: &Entry) -> Result<(), String> {
    check_channel_name(&e.channel)?;
    check_time(&e.promoted_at)?;
    check_object(&e.checkpoint, "checkpoint")?;
    check_object(&e.results, "results")?;
    check_run(&e.run)?;
    check_object(&e.record, "record")?;
    check_commit(&e.commit)?;
    check_name(&e.stage, "stage")?;
    check_spec(&e.spec)?;
    if let Some(p) = &e.previous {
        check_object(p, "previous")?;
    }
    if e.gates.is_empty() {
        return Err(
            "a promotion without gates: nothing decided that this checkpoint may ship".into(),
        );
    }
    e.gates.iter().try_for_each(check_gate)
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
    record: Spanned<String>,
    commit: Spanned<String>,
    stage: Spanned<String>,
    spec: Spanned<String>,
    previous: Spanned<Option<String>>,
    gates: Spanned<Vec<RawGate>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGate {
    metric: Spanned<String>,
    vs_channel: Option<String>,
    #[serde(with = "crate::eval::number::option")]
    value: Option<f64>,
    holder: Spanned<Option<String>>,
    holder_results: Option<String>,
    #[serde(with = "crate::eval::number::option")]
    holder_value: Option<f64>,
    #[serde(with = "crate::eval::number::option")]
    p_value: Option<f64>,
    passed: bool,
}

fn invalid(at: At, message: String) -> PromotionError {
    PromotionError::Invalid { at, message }
}

fn field(
    display: &Path,
    s: &Spanned<String>,
    check: &dyn Fn(&str) -> Result<(), String>,
) -> Result<(), PromotionError> {
    check(&s.value).map_err(|m| invalid(At::spanned(display, s), m))
}

/// One raw entry, checked against the entries before it.
fn entry(display: &Path, history: &History, r: RawEntry) -> Result<Entry, PromotionError> {
    field(display, &r.channel, &check_channel_name)?;
    field(display, &r.promoted_at, &check_time)?;
    field(display, &r.checkpoint, &|s| check_object(s, "checkpoint"))?;
    field(display, &r.results, &|s| check_object(s, "results"))?;
    field(display, &r.run, &check_run)?;
    field(display, &r.record, &|s| check_object(s, "record"))?;
    field(display, &r.commit, &check_commit)?;
    field(display, &r.stage, &|s| check_name(s, "stage"))?;
    field(display, &r.spec, &check_spec)?;
    if let Some(p) = &r.previous.value {
        check_object(p, "previous").map_err(|m| invalid(At::spanned(display, &r.previous), m))?;
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
    if r.gates.value.is_empty() {
        return Err(invalid(
            At::spanned(display, &r.gates),
            "a promotion without gates: nothing decided that this checkpoint may ship".into(),
        ));
    }
    let mut gates = Vec::with_capacity(r.gates.value.len());
    for g in r.gates.value {
        let rec = GateRecord {
            metric: g.metric.value.clone(),
            vs_channel: g.vs_channel,
            value: g.value,
            holder: g.holder.value.clone(),
            holder_results: g.holder_results,
            holder_value: g.holder_value,
            p_value: g.p_value,
            passed: g.passed,
        };
        check_gate(&rec).map_err(|m| invalid(At::spanned(display, &g.metric), m))?;
        if let Some(c) = &rec.vs_channel {
            let held = history.holder(c).map(|e| &e.checkpoint);
            if held != rec.holder.as_ref() {
                return Err(invalid(
                    At::spanned(display, &g.holder),
                    format!(
                        "gate `{}` says channel `{c}` held {}, but the entries before it leave it at {} (entries were edited, removed or reordered)",
                        rec.metric,
                        show(&rec.holder),
                        show(&held.cloned())
                    ),
                ));
            }
        }
        gates.push(rec);
    }
    Ok(Entry {
        channel: r.channel.value,
        promoted_at: r.promoted_at.value,
        checkpoint: r.checkpoint.value,
        results: r.results.value,
        run: r.run.value,
        record: r.record.value,
        commit: r.commit.value,
        stage: r.stage.value,
        spec: r.spec.value,
        previous: r.previous.value,
        gates,
    })
}

impl History {
    /// Parse a history strictly; `display` names the file in errors.
    pub fn parse(text: &str, display: &Path) -> Result<History, PromotionError> {
        if let Err(e) = yaml::check_version(text, display, PROMOTIONS_FILE, PROMOTIONS_VERSION) {
            return Err(match e {
                YamlError::Version { at, found, .. } if found == "1" => {
                    PromotionError::Version1 { at }
                }
                other => other.into(),
            });
        }
        let raw: RawHistory = yaml::parse(text, display)?;
        let mut history = History::default();
        for r in raw.promotions.unwrap_or_default() {
            let e = entry(display, &history, r)?;
            history.entries.push(e);
        }
        history.number_lines();
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

    /// Each entry's first line in the canonical text.
    fn number_lines(&mut self) {
        let mut line = header().lines().count() as u64 + 1;
        self.lines = self
            .entries
            .iter()
            .map(|e| {
                let start = line;
                line += render_entry(e).lines().count() as u64;
                start
            })
            .collect();
    }
}

/// The file's header: the comment, `version: 2` and `promotions:`.
pub fn header() -> String {
    format!("{HEADER}version: {PROMOTIONS_VERSION}\npromotions:\n")
}

/// A string as a YAML double-quoted scalar (JSON escaping is valid YAML).
fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

fn opt(s: Option<&str>) -> String {
    s.map_or("null".into(), quote)
}

/// A gate number: finite values in full, `null` for none, and NaN and ±∞ as the quoted strings
/// `"nan"`, `"inf"` and `"-inf"` (as in results files, `crate::eval::number`), which read back
/// to the same value.
pub(crate) fn number(x: Option<f64>) -> String {
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
pub fn render_entry(e: &Entry) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "  - channel: {}", quote(&e.channel));
    let _ = writeln!(s, "    promoted_at: {}", quote(&e.promoted_at));
    let _ = writeln!(s, "    checkpoint: {}", quote(&e.checkpoint));
    let _ = writeln!(s, "    results: {}", quote(&e.results));
    let _ = writeln!(s, "    run: {}", quote(&e.run));
    let _ = writeln!(s, "    record: {}", quote(&e.record));
    let _ = writeln!(s, "    commit: {}", quote(&e.commit));
    let _ = writeln!(s, "    stage: {}", quote(&e.stage));
    let _ = writeln!(s, "    spec: {}", quote(&e.spec));
    let _ = writeln!(s, "    previous: {}", opt(e.previous.as_deref()));
    if e.gates.is_empty() {
        s.push_str("    gates: []\n");
    } else {
        s.push_str("    gates:\n");
        for g in &e.gates {
            let _ = writeln!(s, "      - metric: {}", quote(&g.metric));
            let _ = writeln!(s, "        vs_channel: {}", opt(g.vs_channel.as_deref()));
            let _ = writeln!(s, "        value: {}", number(g.value));
            let _ = writeln!(s, "        holder: {}", opt(g.holder.as_deref()));
            let _ = writeln!(
                s,
                "        holder_results: {}",
                opt(g.holder_results.as_deref())
            );
            let _ = writeln!(s, "        holder_value: {}", number(g.holder_value));
            let _ = writeln!(s, "        p_value: {}", number(g.p_value));
            let _ = writeln!(s, "        passed: {}", g.passed);
        }
    }
    s
}

/// Lines from an entry's first line to `field` (`stage`, or `gates[I].FIELD`); 0 when unknown.
pub(crate) fn field_offset(e: &Entry, field: &str) -> u64 {
    let text = render_entry(e);
    let (gate, name) = match field.strip_prefix("gates[") {
        Some(rest) => match rest.split_once("].") {
            Some((i, f)) => (i.parse::<usize>().ok(), f),
            None => return 0,
        },
        None => (None, field),
    };
    let mut gates_seen = 0usize;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start().trim_start_matches("- ");
        if line.starts_with("      - metric:") {
            gates_seen += 1;
        }
        let in_scope = match gate {
            None => !line.starts_with("      "),
            Some(g) => gates_seen == g + 1,
        };
        if in_scope && t.starts_with(name) && t[name.len()..].starts_with(':') {
            return i as u64;
        }
    }
    0
}

fn display() -> &'static Path {
    Path::new(PROMOTIONS_FILE)
}

/// Parse the file's text strictly, then require the canonical layout.
pub(crate) fn parse_file(text: &str) -> Result<History, PromotionError> {
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

/// Entry blocks of a version of the file, for the history check ([`super::history`]): the text
/// of each entry, byte for byte, split at the lines that start one. `None` when the text is not
/// a version-2 file in the canonical layout's outline (its header, then entries).
pub(crate) fn blocks(text: &str) -> Option<Vec<&str>> {
    let rest = text.strip_prefix(header().as_str())?;
    let mut out = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        if line.starts_with("  - channel: ") {
            if offset > start {
                out.push(&rest[start..offset]);
                start = offset;
            }
        } else if offset == 0 || !line.starts_with("    ") {
            // Every other line of an entry is indented under it (a conflict marker is not).
            return None;
        }
        offset += line.len();
    }
    if offset > start {
        out.push(&rest[start..offset]);
    }
    Some(out)
}
