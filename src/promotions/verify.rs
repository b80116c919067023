//! Every entry re-derived from content-addressed evidence (docs/concepts/promotions.md):
//!
//! 1. **The record.** `record` is an object (hashed on read) holding the sealed run record of
//!    `run`; its `run_started` names `spec`, `commit`, and its stage `stage` produced
//!    `checkpoint`. The store's copy of that record (`runs-v1/<run>.jsonl`) is still sealed with
//!    this address and unchanged.
//! 2. **The gates.** `commit` is HEAD or one of its ancestors, and the spec file there holds the
//!    exact bytes the run recorded (a run whose spec differs from the commit, a dirty run, cannot
//!    be verified). That spec, resolved with the suites of the same commit, gives the stage's
//!    gates: the entry records exactly those, in order, each with its channel.
//! 3. **The verdicts.** The results tree (suite → results tree) hashes right, lists exactly the
//!    spec's suites, and each suite's results score `checkpoint`; the holders' results likewise
//!    score the holders. Re-judging the gates (`eval::gate`, a pure function) on them gives the
//!    recorded values and verdicts.
//! 4. **The checkpoint.** Its tree hashes right and every file is present with its recorded size
//!    (with `deep`, every file is re-hashed too).
//!
//! The chain (`previous`, each gate's `holder`) is checked when the file is parsed
//! ([`super::format`]), and the git history by [`super::history`]. Nothing here evaluates a model:
//! it reads and hashes.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;

use super::format::number;
use super::history::{self, HistoryReport, Repo};
use super::{Entry, History, PromotionError};
use crate::eval::gate::{self, Holders, Options as GateOptions, Scores};
use crate::lineage::record::parse_record;
use crate::lineage::seal;
use crate::spec::{Gate, GateRule, Spec};
use crate::store::{Store, Tree};

/// One thing that does not re-derive, where it is, and what to do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    /// `promotions.yaml:LINE`, or `commit ID`.
    pub at: String,
    pub message: String,
    pub hint: String,
}

impl From<Problem> for PromotionError {
    fn from(p: Problem) -> PromotionError {
        PromotionError::Unverified {
            at: p.at,
            message: p.message,
            hint: p.hint,
        }
    }
}

/// How verification reads stored evaluation results. The eval module implements it (in `ops`),
/// so that this core module does not depend on the evaluation engine.
pub trait ResultsReader {
    /// The gate's scores from `suites` (suite name → that suite's results tree), after checking
    /// that each tree is intact, holds that suite's results, and scores `checkpoint`.
    fn scores(
        &self,
        store: &Store,
        suites: &BTreeMap<String, String>,
        checkpoint: &str,
    ) -> Result<Scores, String>;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Re-hash every file of every promoted checkpoint (`medrun promotions verify`); otherwise
    /// a checkpoint's tree is hashed and its files checked for presence and size (reading a
    /// checkpoint hashes it anyway).
    pub deep: bool,
}

/// What verification looked at and found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub entries: usize,
    pub history: HistoryReport,
    /// Bytes of checkpoint files re-hashed (`deep`).
    pub hashed_bytes: u64,
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The first problem as an error, if any.
    pub fn into_result(self) -> Result<Report, PromotionError> {
        match self.problems.first() {
            Some(p) => Err(p.clone().into()),
            None => Ok(self),
        }
    }
}

const RESTORE: &str = "an entry is only ever written by `medrun promote`: restore promotions.yaml from git (`git log -p promotions.yaml`) and use the store that promoted it (`--store`); a forged entry must be removed in a reviewed commit";

/// Verify every entry of `history` (the file at `root`), and the file's git history.
pub fn verify(
    root: &Path,
    store: &Store,
    history: &History,
    reader: &dyn ResultsReader,
    opts: Options,
) -> Report {
    if history.is_empty() {
        return history_only(root);
    }
    let mut report = Report {
        entries: history.entries().len(),
        ..Report::default()
    };
    let repo = match Repo::open(root) {
        Ok(r) => r,
        Err(e) => {
            report.problems.push(Problem {
                at: super::PROMOTIONS_FILE.into(),
                message: e.to_string(),
                hint: e.hint(),
            });
            return report;
        }
    };
    git(&repo, root, &mut report);
    let mut cx = Cx {
        store,
        repo: &repo,
        history,
        reader,
        opts,
        specs: HashMap::new(),
        hashed: 0,
    };
    for i in 0..history.entries().len() {
        if let Err(p) = cx.entry(i) {
            report.problems.push(p);
        }
    }
    report.hashed_bytes = cx.hashed;
    report
}

/// Only the git side, for a history with no entries (or no store): a committed history that
/// the current file no longer keeps is still a rewrite. Outside a git repository there is no
/// history to keep.
pub fn history_only(root: &Path) -> Report {
    let mut report = Report::default();
    if let Ok(repo) = Repo::open(root) {
        git(&repo, root, &mut report);
    }
    report
}

fn git(repo: &Repo, root: &Path, report: &mut Report) {
    let current = super::read(root).ok().flatten();
    match history::check(repo, current.as_deref()) {
        Ok((h, problems)) => {
            report.history = h;
            report.problems.extend(problems);
        }
        Err(e) => report.problems.push(Problem {
            at: super::PROMOTIONS_FILE.into(),
            message: e.to_string(),
            hint: e.hint(),
        }),
    }
}

struct Cx<'a> {
    store: &'a Store,
    repo: &'a Repo,
    history: &'a History,
    reader: &'a dyn ResultsReader,
    opts: Options,
    /// (commit, spec path) → the resolved spec, or why it cannot be had.
    specs: HashMap<(String, String), Result<Spec, String>>,
    hashed: u64,
}

impl Cx<'_> {
    fn problem(&self, i: usize, field: &str, message: String, hint: &str) -> Problem {
        let e = &self.history.entries()[i];
        Problem {
            at: self.history.at(i, field),
            message: format!(
                "the promotion of {} to `{}`: {message}",
                short(&e.checkpoint),
                e.channel
            ),
            hint: hint.into(),
        }
    }

    fn entry(&mut self, i: usize) -> Result<(), Problem> {
        let e = self.history.entries()[i].clone();
        let spec_bytes = self.record(i, &e)?;
        let spec = self.spec_at(i, &e, &spec_bytes)?;
        let gates: Vec<Gate> = spec
            .gates
            .iter()
            .filter(|g| g.stage == e.stage)
            .cloned()
            .collect();
        self.same_gates(i, &e, &gates)?;
        let suites: Vec<String> = spec.evals.iter().map(|s| s.name.clone()).collect();
        let candidate = self.scores(i, "results", &e.results, &suites, &e.checkpoint)?;
        let mut holders: BTreeMap<String, Option<Scores>> = BTreeMap::new();
        for (k, g) in e.gates.iter().enumerate() {
            let Some(c) = &g.vs_channel else { continue };
            let s = match (&g.holder, &g.holder_results) {
                (Some(h), Some(r)) => {
                    let field = format!("gates[{k}].holder_results");
                    Some(self.scores(i, &field, r, &suites, h)?)
                }
                _ => None,
            };
            if let Some(prev) = holders.get(c)
                && prev != &s
            {
                return Err(self.problem(
                    i,
                    &format!("gates[{k}].holder_results"),
                    format!("its gates on channel `{c}` name different holder results"),
                    RESTORE,
                ));
            }
            holders.insert(c.clone(), s);
        }
        let view = Holders::PerChannel(
            holders
                .iter()
                .map(|(c, s)| (c.clone(), s.as_ref()))
                .collect(),
        );
        let decision = gate::decide_with(&gates, &candidate, &view, &GateOptions::default());
        for (k, (got, rec)) in decision.gates.iter().zip(&e.gates).enumerate() {
            let pairs = [
                ("value", number(got.value), number(rec.value)),
                (
                    "holder_value",
                    number(got.holder_value),
                    number(rec.holder_value),
                ),
                ("p_value", number(got.p_value), number(rec.p_value)),
                ("passed", got.passed.to_string(), rec.passed.to_string()),
            ];
            for (f, derived, recorded) in pairs {
                if derived != recorded {
                    return Err(self.problem(
                        i,
                        &format!("gates[{k}].{f}"),
                        format!(
                            "gate `{}`: re-judging it on the stored results gives {f} {derived}, but the entry records {recorded}",
                            rec.metric
                        ),
                        RESTORE,
                    ));
                }
            }
        }
        self.checkpoint(i, &e)
    }

    /// Check the sealed record; returns the spec bytes it recorded.
    fn record(&mut self, i: usize, e: &Entry) -> Result<Vec<u8>, Problem> {
        let bytes = self.store.get(&e.record).map_err(|err| {
            self.problem(
                i,
                "record",
                format!("its run record cannot be read: {err}"),
                RESTORE,
            )
        })?;
        let text = String::from_utf8_lossy(&bytes);
        let rec = parse_record(&text, Path::new(&e.record)).map_err(|err| {
            self.problem(
                i,
                "record",
                format!("object {} is not a run record: {err}", short(&e.record)),
                RESTORE,
            )
        })?;
        let s = &rec.started;
        let claims = [
            ("run", s.run_id.as_str(), e.run.as_str()),
            ("spec", s.spec_path.as_str(), e.spec.as_str()),
            (
                "commit",
                s.git.commit.as_deref().unwrap_or("none"),
                e.commit.as_str(),
            ),
        ];
        for (field, recorded, entry) in claims {
            if recorded != entry {
                return Err(self.problem(
                    i,
                    field,
                    format!(
                        "its sealed run record has {field} {recorded}, but the entry says {entry}"
                    ),
                    RESTORE,
                ));
            }
        }
        let output = rec.stage(&e.stage).and_then(|(_, st)| st.output());
        if output != Some(e.checkpoint.as_str()) {
            return Err(self.problem(
                i,
                "checkpoint",
                format!(
                    "run {} did not produce it: its sealed record gives stage `{}` {}",
                    short(&e.run),
                    e.stage,
                    output.map_or("no output".into(), |o| format!("output {o}"))
                ),
                RESTORE,
            ));
        }
        self.store_copy(i, e)?;
        self.store.get(&s.spec_object).map_err(|err| {
            self.problem(
                i,
                "record",
                format!("the spec its run recorded cannot be read: {err}"),
                RESTORE,
            )
        })
    }

    /// The store's `runs-v1/` copy of the record is still sealed with the entry's address.
    fn store_copy(&self, i: usize, e: &Entry) -> Result<(), Problem> {
        let path = seal::record_path(self.store, &e.run);
        let seal_path = seal::seal_path(self.store, &e.run);
        let fail = |m: String| {
            self.problem(
                i,
                "record",
                m,
                "run records are never edited: restore runs-v1/ from a copy of the store; the sealed bytes are the object the entry names",
            )
        };
        let bytes = std::fs::read(&path).map_err(|err| {
            fail(format!(
                "run record {} cannot be read: {err}",
                path.display()
            ))
        })?;
        match seal::read_seal(&seal_path) {
            Ok(Some(Ok(id))) if id == e.record => {}
            Ok(Some(Ok(id))) => {
                return Err(fail(format!(
                    "run record {} was sealed again after the promotion: its seal names {id}",
                    path.display()
                )));
            }
            Ok(Some(Err(m))) => return Err(fail(m)),
            Ok(None) => {
                return Err(fail(format!(
                    "run record {} has lost its seal ({} is missing)",
                    path.display(),
                    seal_path.display()
                )));
            }
            Err(err) => return Err(fail(err.to_string())),
        }
        if blake3::hash(&bytes).to_hex().as_str() != e.record {
            return Err(fail(format!(
                "run record {} was changed after it was sealed",
                path.display()
            )));
        }
        Ok(())
    }

    /// The spec at the run's commit, resolved; its bytes must be the run's.
    fn spec_at(&mut self, i: usize, e: &Entry, recorded: &[u8]) -> Result<Spec, Problem> {
        let key = (e.commit.clone(), e.spec.clone());
        if !self.specs.contains_key(&key) {
            let got = committed_spec(self.repo, &e.commit, &e.spec, recorded);
            self.specs.insert(key.clone(), got);
        }
        match &self.specs[&key] {
            Ok(s) => Ok(s.clone()),
            Err(m) => Err(self.problem(
                i,
                "commit",
                m.clone(),
                "an entry is verified against the spec committed at its run's commit: promote only checkpoints of runs of committed specs, on a branch whose history holds that commit",
            )),
        }
    }

    fn same_gates(&self, i: usize, e: &Entry, gates: &[Gate]) -> Result<(), Problem> {
        let channel = |g: &Gate| match &g.rule {
            GateRule::NoWorseThan { channel, .. } => Some(channel.clone()),
            GateRule::Threshold { .. } => None,
        };
        let spec: Vec<(String, Option<String>)> = gates
            .iter()
            .map(|g| (g.metric.clone(), channel(g)))
            .collect();
        let recorded: Vec<(String, Option<String>)> = e
            .gates
            .iter()
            .map(|g| (g.metric.clone(), g.vs_channel.clone()))
            .collect();
        if spec != recorded {
            let show = |v: &[(String, Option<String>)]| {
                let items: Vec<String> = v
                    .iter()
                    .map(|(m, c)| match c {
                        Some(c) => format!("{m} vs {c}"),
                        None => m.clone(),
                    })
                    .collect();
                if items.is_empty() {
                    "none".into()
                } else {
                    items.join(", ")
                }
            };
            return Err(self.problem(
                i,
                "gates",
                format!(
                    "its gates are not the spec's gates for stage `{}` at commit {}: the spec has [{}], the entry records [{}]",
                    e.stage,
                    short(&e.commit),
                    show(&spec),
                    show(&recorded)
                ),
                RESTORE,
            ));
        }
        Ok(())
    }

    /// Scores from results tree `id`, which must list exactly `suites` and score `checkpoint`.
    fn scores(
        &self,
        i: usize,
        field: &str,
        id: &str,
        suites: &[String],
        checkpoint: &str,
    ) -> Result<Scores, Problem> {
        let fail = |m: String| self.problem(i, field, m, RESTORE);
        let tree = Tree::load(self.store, id)
            .map_err(|err| fail(format!("results {}: {err}", short(id))))?;
        let names: Vec<&String> = tree.entries.keys().collect();
        let mut want: Vec<&String> = suites.iter().collect();
        want.sort();
        if names != want {
            return Err(fail(format!(
                "results {} hold suites [{}], but the spec evaluates [{}]",
                short(id),
                names
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                want.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let map = tree
            .entries
            .iter()
            .map(|(k, v)| (k.clone(), v.object.clone()))
            .collect();
        self.reader
            .scores(self.store, &map, checkpoint)
            .map_err(|m| fail(format!("results {}: {m}", short(id))))
    }

    fn checkpoint(&mut self, i: usize, e: &Entry) -> Result<(), Problem> {
        let fail = |m: String| {
            self.problem(
                i,
                "checkpoint",
                m,
                "run `medrun verify` to list damaged objects; re-running the stage restores them (same key, same bytes)",
            )
        };
        let tree = Tree::load(self.store, &e.checkpoint).map_err(|err| fail(err.to_string()))?;
        let mut hashed = 0;
        for (name, f) in &tree.entries {
            let path = self.store.object_path(&f.object);
            let size = std::fs::metadata(&path).map(|m| m.len()).ok();
            if size != Some(f.bytes) {
                return Err(fail(format!(
                    "its file {name} (object {}) is {}",
                    short(&f.object),
                    size.map_or("missing".into(), |s| format!("{s} bytes, not {}", f.bytes))
                )));
            }
            if self.opts.deep {
                match self.store.check_object(&f.object) {
                    Ok(None) => hashed += f.bytes,
                    Ok(Some(actual)) => {
                        return Err(fail(format!(
                            "its file {name} is corrupt: object {} hashes to {actual}",
                            f.object
                        )));
                    }
                    Err(err) => return Err(fail(format!("its file {name}: {err}"))),
                }
            }
        }
        self.hashed += hashed;
        Ok(())
    }
}

fn short(id: &str) -> &str {
    &id[..12.min(id.len())]
}

/// The spec at `commit` (which must be in HEAD's history), resolved with the suites of that
/// commit; `recorded` are the spec bytes the run stored, which must equal the committed file.
pub fn committed_spec(
    repo: &Repo,
    commit: &str,
    spec: &str,
    recorded: &[u8],
) -> Result<Spec, String> {
    let oid =
        git2::Oid::from_str(commit).map_err(|e| format!("commit {commit}: {}", e.message()))?;
    if repo.repo.find_commit(oid).is_err() {
        return Err(format!(
            "its run trained at commit {commit}, which is not in this repository (a shallow clone needs the full history)"
        ));
    }
    if !repo.in_history(oid) {
        return Err(format!(
            "its run trained at commit {commit}, which is not HEAD or one of its ancestors"
        ));
    }
    let committed = repo
        .file_at(oid, spec)
        .map_err(|e| format!("reading {spec} at commit {commit}: {}", e.message()))?
        .ok_or_else(|| format!("commit {} has no file {spec}", short(commit)))?;
    if committed != recorded {
        return Err(format!(
            "the spec its run used is not the {spec} committed at {} (a run with uncommitted spec changes), so its gates cannot be read from git",
            short(commit)
        ));
    }
    let text = String::from_utf8(committed).map_err(|_| format!("{spec} is not UTF-8"))?;
    let mut read = |rel: &crate::spec::RelPath| -> Result<String, String> {
        let bytes = repo
            .file_at(oid, rel.as_str())
            .map_err(|e| e.message().to_string())?
            .ok_or_else(|| format!("not in commit {}", short(commit)))?;
        String::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())
    };
    crate::spec::resolve_text(Path::new(spec), &text, &mut read)
        .map_err(|e| format!("the spec at commit {} does not resolve: {e}", short(commit)))
}
