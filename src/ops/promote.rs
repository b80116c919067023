//! `medrun promote REF --to CHANNEL`: evaluate the checkpoint with its run's suites (or reuse
//! cached results), judge the run's gates for its stage against the channel's current holder,
//! and, only if every gate passes, append the promotion to `promotions.yaml`.

use std::collections::BTreeMap;

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
use crate::promotions::{self, Entry, GateRecord};
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

/// The run and stage that produced a checkpoint, and that run's resolved spec.
pub fn origin(store: &Store, ck: &Checkpoint) -> Result<(RunRecord, String, Spec)> {
    let runs = lineage::load_runs(store)?;
    let (run, stage) = match (&ck.run_id, &ck.stage) {
        (Some(r), Some(s)) => (
            runs.iter()
                .find(|x| x.id() == r)
                .cloned()
                .ok_or_else(|| Error::Io(format!("run {r} vanished")))?,
            s.clone(),
        ),
        _ => {
            let p = lineage::producers(&runs, &ck.output);
            let (r, s, _) = p.into_iter().next().ok_or_else(|| Error::Problems {
                message: format!("no run record produced {}", &ck.output[..12]),
                hint: "promote a checkpoint that `medrun run` produced (RUN:STAGE)".into(),
            })?;
            (r, s)
        }
    };
    let bytes = store.get(&run.started.resolved_object)?;
    let spec: Spec = serde_json::from_slice(&bytes).map_err(|e| {
        Error::Io(format!(
            "the resolved spec of run {} cannot be read by this medrun: {e}",
            run.id()
        ))
    })?;
    Ok((run, stage, spec))
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
    let gates: Vec<_> = spec
        .gates
        .iter()
        .filter(|g| g.stage == stage)
        .cloned()
        .collect();
    let candidate = scores(store, evs)?;
    let history = promotions::load(&project.root)?;
    let mut holder_scores: BTreeMap<String, Option<Scores>> = BTreeMap::new();
    for g in &gates {
        if let GateRule::NoWorseThan { channel, .. } = &g.rule {
            if holder_scores.contains_key(channel) {
                continue;
            }
            let s = match history.holder(channel) {
                None => None,
                Some(entry) => {
                    let tree = Tree::load(store, &entry.checkpoint)?;
                    let hk = Checkpoint {
                        run_id: Some(entry.run.clone()),
                        stage: Some(entry.stage.clone()),
                        output: entry.checkpoint.clone(),
                        tree,
                    };
                    let hevs = eval_suites(project, store, &hk, &spec.evals, opts, printer)?;
                    Some(scores(store, &hevs)?)
                }
            };
            holder_scores.insert(channel.clone(), s);
        }
    }
    let holders = Holders::PerChannel(
        holder_scores
            .iter()
            .map(|(c, s)| (c.clone(), s.as_ref()))
            .collect(),
    );
    Ok(gate::decide_with(
        &gates,
        &candidate,
        &holders,
        &Options::default(),
    ))
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

pub fn promote(
    project: &Project,
    reference: &str,
    channel: &str,
    opts: &EvalOptions,
    printer: &Printer,
) -> Result<PromoteReport> {
    let store = Store::open_existing(&project.store_dir)?;
    let ck = checkpoint_of(&store, &project.root, reference)?;
    let (run, stage, spec) = origin(&store, &ck)?;
    if !spec.gates.iter().any(|g| g.stage == stage) {
        return Err(Error::Problems {
            message: format!(
                "spec `{}` has no gates for stage `{stage}`: nothing decides whether this checkpoint is safe to ship",
                spec.name
            ),
            hint: "add `gates:` for this stage to the spec (see docs/reference/spec.md), or promote another stage".into(),
        });
    }
    let history = promotions::load(&project.root)?;
    if history
        .holder(channel)
        .is_some_and(|e| e.checkpoint == ck.output)
    {
        return Ok(PromoteReport {
            channel: channel.to_string(),
            checkpoint: ck.output.clone(),
            run: run.id().to_string(),
            stage,
            previous: None,
            results: BTreeMap::new(),
            decision: Decision {
                passed: true,
                gates: Vec::new(),
            },
            promoted: false,
            already_holds: true,
        });
    }
    let _lock = store.lock_shared()?;
    let evs = eval_suites(project, &store, &ck, &spec.evals, opts, printer)?;
    let decision = judge(project, &store, &spec, &stage, &evs, opts, printer)?;
    let history = promotions::load(&project.root)?;
    let previous = history.holder(channel).map(|e| e.checkpoint.clone());
    let results: BTreeMap<String, String> = evs
        .iter()
        .map(|e| (e.results.suite.clone(), e.output.clone()))
        .collect();
    let mut report = PromoteReport {
        channel: channel.to_string(),
        checkpoint: ck.output.clone(),
        run: run.id().to_string(),
        stage: stage.clone(),
        previous: previous.clone(),
        results: results.clone(),
        decision,
        promoted: false,
        already_holds: false,
    };
    if !report.decision.passed {
        return Ok(report);
    }
    // One address for everything the gates read: a tree of the suites' results.
    let mut tree = Tree::default();
    for (suite, out) in &results {
        let bytes = std::fs::metadata(store.object_path(out))
            .map(|m| m.len())
            .unwrap_or(0);
        tree.entries.insert(
            suite.clone(),
            TreeEntry {
                object: out.clone(),
                bytes,
            },
        );
    }
    let results_id = tree.put(&store)?;
    let entry = Entry {
        channel: channel.to_string(),
        promoted_at: crate::time::now(),
        checkpoint: ck.output.clone(),
        results: results_id,
        run: run.id().to_string(),
        stage,
        spec: run.started.spec_path.clone(),
        previous,
        gates: report.decision.gates.iter().map(GateRecord::from).collect(),
    };
    // Never record a checkpoint whose bytes do not hash to its address.
    super::export::verify_checkpoint(&store, &ck)?;
    promotions::append(&project.root, &entry)?;
    report.promoted = true;
    Ok(report)
}
