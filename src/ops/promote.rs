//! `medrun promote REF --to CHANNEL`: evaluate the checkpoint with its run's suites (or reuse
//! cached results), judge the run's gates for its stage against the channel's current holder,
//! and, only if every gate passes, append the promotion to `promotions.yaml`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::Project;
use super::eval::{EvalOptions, eval_suites};
use super::export::{Checkpoint, checkpoint_of};
use crate::error::{Error, Result};
use crate::eval::gate::{self, Decision, Holders, Options, Scores};
use crate::eval::scores::scores_of;
use crate::eval::suite::{Evaluated, read_samples};
use crate::lineage::{self, RunRecord};
use crate::printer::Printer;
use crate::promotions::history::Repo;
use crate::promotions::{self, Entry, GateRecord, History, PromotionError, verify};
use crate::spec::{GateRule, Spec};
use crate::store::tree::TreeEntry;
use crate::store::{Store, Tree};

#[derive(Debug, Clone, Serialize)]
pub struct PromoteReport {
    pub channel: String,
    pub checkpoint: String,
    pub run: String,
    pub stage: String,
    pub previous: Option<String>,
    /// Suite → results address.
    pub results: BTreeMap<String, String>,
    pub decision: Decision,
    pub promoted: bool,
    /// The checkpoint already holds the channel: nothing was evaluated or written.
    #[serde(default)]
    pub already_holds: bool,
}

/// Where a promoted checkpoint comes from: the sealed record of the run that produced it, and
/// that run's spec as committed at the run's commit (its gates and suites are what judge it).
pub struct Origin {
    pub run: RunRecord,
    pub stage: String,
    /// The sealed record's address.
    pub record: String,
    pub commit: String,
    pub spec: Spec,
}

/// Check everything about a candidate that is cheap, before anything is evaluated or stored:
/// its record is sealed and intact, its run trained at a commit in HEAD's history, and its
/// spec is the file committed there (a dirty spec cannot be verified later).
fn origin_of(store: &Store, repo: &Repo, run: &RunRecord, stage: &str) -> Result<Origin> {
    let record = run.sealed(store)?.to_string();
    let problem = |message: String| {
        Error::Problems {
        message,
        hint: "promote a checkpoint of a run of a committed spec (run it again after committing: its stages are cached), on a branch whose history holds that commit".into(),
    }
    };
    let commit = run.started.git.commit.clone().ok_or_else(|| {
        problem(format!(
            "run {} was not trained at a commit, so its gates cannot be read from git",
            run.id()
        ))
    })?;
    let bytes = store.get(&run.started.spec_object)?;
    let spec = verify::committed_spec(repo, &commit, &run.started.spec_path, &bytes)
        .map_err(|m| problem(format!("run {} cannot be promoted: {m}", run.id())))?;
    Ok(Origin {
        run: run.clone(),
        stage: stage.to_string(),
        record,
        commit,
        spec,
    })
}

/// The run and stage that produced a checkpoint: the REF's own run, or for a hash or channel the
/// newest producing run that passes [`origin_of`].
pub fn origin(store: &Store, root: &Path, ck: &Checkpoint) -> Result<Origin> {
    let repo = Repo::open(root)?;
    let runs = lineage::load_runs(store)?;
    if let (Some(r), Some(s)) = (&ck.run_id, &ck.stage) {
        let run = runs
            .iter()
            .find(|x| x.id() == r)
            .ok_or_else(|| Error::Io(format!("run {r} vanished")))?;
        return origin_of(store, &repo, run, s);
    }
    let found = lineage::producers(store, &runs, &ck.output)?;
    let mut first_error = None;
    for (r, s, file) in found.iter().rev() {
        if file.is_some() {
            continue;
        }
        match origin_of(store, &repo, r, s) {
            Ok(o) => return Ok(o),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or_else(|| Error::Problems {
        message: format!("no run record produced {}", &ck.output[..12]),
        hint: "promote a checkpoint that `medrun run` produced (RUN:STAGE)".into(),
    }))
}

/// Scores of a checkpoint on `suites`' results.
pub fn scores(store: &Store, evs: &[Evaluated]) -> Result<Scores> {
    let mut samples = Vec::new();
    for ev in evs {
        samples.push(
            read_samples(store, &ev.output).map_err(|e| Error::Problems {
                hint: e.hint(),
                message: e.to_string(),
            })?,
        );
    }
    let pairs: Vec<(&crate::eval::suite::Results, &BTreeMap<String, Vec<Value>>)> =
        evs.iter().map(|e| &e.results).zip(samples.iter()).collect();
    Ok(scores_of(&pairs))
}

/// The checkpoint that held a channel when the gates were judged, and its results (suite →
/// results tree).
#[derive(Debug, Clone)]
pub struct HolderEvidence {
    pub checkpoint: String,
    pub results: Tree,
}

/// Judge the gates of `stage` for `ck` (already evaluated as `evs`) against each channel's
/// holder in promotions.yaml (holders are evaluated with the same suites, normally cached).
pub fn judge(
    project: &Project,
    store: &Store,
    spec: &Spec,
    stage: &str,
    evs: &[Evaluated],
    opts: &EvalOptions,
    printer: &Printer,
) -> Result<Decision> {
    Ok(judge_with_holders(project, store, spec, stage, evs, opts, printer)?.0)
}

/// [`judge`], also returning, per compared channel, the holder and the results it was judged
/// with (`None`: nobody held the channel).
pub fn judge_with_holders(
    project: &Project,
    store: &Store,
    spec: &Spec,
    stage: &str,
    evs: &[Evaluated],
    opts: &EvalOptions,
    printer: &Printer,
) -> Result<(Decision, BTreeMap<String, Option<HolderEvidence>>)> {
    let gates: Vec<_> = spec
        .gates
        .iter()
        .filter(|g| g.stage == stage)
        .cloned()
        .collect();
    let candidate = scores(store, evs)?;
    let history = promotions::load(&project.root)?;
    let mut holder_scores: BTreeMap<String, Option<Scores>> = BTreeMap::new();
    let mut evidence: BTreeMap<String, Option<HolderEvidence>> = BTreeMap::new();
    for g in &gates {
        if let GateRule::NoWorseThan { channel, .. } = &g.rule {
            if holder_scores.contains_key(channel) {
                continue;
            }
            let (s, ev) = match history.holder(channel) {
                None => (None, None),
                Some(entry) => {
                    let tree = Tree::load(store, &entry.checkpoint)?;
                    let hk = Checkpoint {
                        run_id: Some(entry.run.clone()),
                        stage: Some(entry.stage.clone()),
                        output: entry.checkpoint.clone(),
                        tree,
                    };
                    let hevs = eval_suites(project, store, &hk, &spec.evals, opts, printer)?;
                    let ev = HolderEvidence {
                        checkpoint: entry.checkpoint.clone(),
                        results: results_tree(store, &hevs),
                    };
                    (Some(scores(store, &hevs)?), Some(ev))
                }
            };
            holder_scores.insert(channel.clone(), s);
            evidence.insert(channel.clone(), ev);
        }
    }
    let holders = Holders::PerChannel(
        holder_scores
            .iter()
            .map(|(c, s)| (c.clone(), s.as_ref()))
            .collect(),
    );
    let decision = gate::decide_with(&gates, &candidate, &holders, &Options::default());
    Ok((decision, evidence))
}

/// One address for everything the gates read of one checkpoint: a tree of its suites' results.
fn results_tree(store: &Store, evs: &[Evaluated]) -> Tree {
    let mut tree = Tree::default();
    for e in evs {
        let bytes = std::fs::metadata(store.object_path(&e.output))
            .map(|m| m.len())
            .unwrap_or(0);
        tree.entries.insert(
            e.results.suite.clone(),
            TreeEntry {
                object: e.output.clone(),
                bytes,
            },
        );
    }
    tree
}

/// A plain-text table of gate outcomes.
pub fn decision_table(d: &Decision) -> String {
    let mut s = format!(
        "{:<40} {:<28} {:>9} {:>9} {:>8}  {}\n",
        "gate", "rule", "value", "holder", "p", "verdict"
    );
    let num = |v: Option<f64>| {
        v.map(|x| crate::eval::number::show(x, 4))
            .unwrap_or_else(|| "-".into())
    };
    for g in &d.gates {
        s.push_str(&format!(
            "{:<40} {:<28} {:>9} {:>9} {:>8}  {}{}\n",
            g.metric,
            g.rule,
            num(g.value),
            num(g.holder_value),
            num(g.p_value),
            if g.passed { "pass" } else { "FAIL" },
            if g.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", g.reason)
            }
        ));
    }
    s
}

fn no_gates(spec: &Spec, stage: &str) -> Error {
    Error::Problems {
        message: format!(
            "spec `{}` has no gates for stage `{stage}`: nothing decides whether this checkpoint is safe to ship",
            spec.name
        ),
        hint: "add `gates:` for this stage to the spec (see docs/reference/spec.md), and commit it, or promote another stage".into(),
    }
}

pub fn promote(
    project: &Project,
    reference: &str,
    channel: &str,
    opts: &EvalOptions,
    printer: &Printer,
) -> Result<PromoteReport> {
    // Everything that can be checked without evaluating comes first: nothing is stored
    // (results included) for a promotion that cannot be recorded.
    promotions::check_channel_name(channel).map_err(PromotionError::BadChannel)?;
    let store = Store::open_existing(&project.store_dir)?;
    let ck = checkpoint_of(&store, &project.root, reference)?;
    let o = origin(&store, &project.root, &ck)?;
    if !o.spec.gates.iter().any(|g| g.stage == o.stage) {
        return Err(no_gates(&o.spec, &o.stage));
    }
    let history = promotions::load(&project.root)?;
    let unchanged = |h: &History| h == &history;
    let already = history
        .holder(channel)
        .is_some_and(|e| e.checkpoint == ck.output);
    let report = |previous, results, decision, promoted, already_holds| PromoteReport {
        channel: channel.to_string(),
        checkpoint: ck.output.clone(),
        run: o.run.id().to_string(),
        stage: o.stage.clone(),
        previous,
        results,
        decision,
        promoted,
        already_holds,
    };
    super::promotions::check(&project.root, &store, &history)?;
    if already {
        let d = Decision {
            passed: true,
            gates: Vec::new(),
        };
        return Ok(report(None, BTreeMap::new(), d, false, true));
    }
    let _lock = store.lock_shared()?;
    let evs = eval_suites(project, &store, &ck, &o.spec.evals, opts, printer)?;
    let (decision, holders) =
        judge_with_holders(project, &store, &o.spec, &o.stage, &evs, opts, printer)?;
    let previous = promotions::load(&project.root)?
        .holder(channel)
        .map(|e| e.checkpoint.clone());
    let results: BTreeMap<String, String> = evs
        .iter()
        .map(|e| (e.results.suite.clone(), e.output.clone()))
        .collect();
    if !decision.passed {
        return Ok(report(previous, results, decision, false, false));
    }
    let results_id = results_tree(&store, &evs).put(&store)?;
    let mut held: BTreeMap<String, Option<(String, String)>> = BTreeMap::new();
    for (c, ev) in &holders {
        let h = match ev {
            Some(ev) => Some((ev.checkpoint.clone(), ev.results.put(&store)?)),
            None => None,
        };
        held.insert(c.clone(), h);
    }
    let gates: Vec<_> = o.spec.gates.iter().filter(|g| g.stage == o.stage).collect();
    let records = decision
        .gates
        .iter()
        .zip(&gates)
        .map(|(outcome, g)| {
            let vs = match &g.rule {
                GateRule::NoWorseThan { channel, .. } => Some(channel.as_str()),
                GateRule::Threshold { .. } => None,
            };
            let holder = vs.and_then(|c| held.get(c).cloned().flatten());
            GateRecord::new(
                outcome,
                vs,
                holder.as_ref().map(|(a, b)| (a.as_str(), b.as_str())),
            )
        })
        .collect();
    let entry = Entry {
        channel: channel.to_string(),
        promoted_at: crate::time::now(),
        checkpoint: ck.output.clone(),
        results: results_id,
        run: o.run.id().to_string(),
        record: o.record.clone(),
        commit: o.commit.clone(),
        stage: o.stage.clone(),
        spec: o.run.started.spec_path.clone(),
        previous: previous.clone(),
        gates: records,
    };
    // Never record a checkpoint whose bytes do not hash to its address.
    super::export::verify_checkpoint(&store, &ck)?;
    // Under the file's lock: entries that landed since the check above are verified too.
    let verify = |h: &History| {
        if unchanged(h) {
            Ok(())
        } else {
            super::promotions::check(&project.root, &store, h).map(|_| ())
        }
    };
    promotions::append(&project.root, &entry, &verify)?;
    Ok(report(previous, results, decision, true, false))
}
