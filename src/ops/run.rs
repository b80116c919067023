//! `medrun run`: check the lock and the code state, record the run, and drive each stage through
//! its executor, skipping stages whose key already has an output in the store.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use super::plan::{self, Digests, Plan};
use super::run_eval::evaluate_stage;
pub use super::run_eval::stage_table;
use crate::env::HostFacts;
use crate::error::{Error, Result};
use crate::lineage::RunStatus;
use crate::lineage::record::{
    Event, PlannedStage, RecordWriter, RecordedInput, RunStarted, StageCompleted,
};
use crate::lock::LockError;
use crate::printer::Printer;
use crate::provenance;
use crate::spec::BASE_STAGE;
use crate::stage::{Executors, ParentOutput, StageContext};
use crate::store::tree::TreeEntry;
use crate::store::{CachedOutput, KeyOutcome, KeyOutput, Store, Tree};

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub locked: bool,
    pub allow_dirty: bool,
    /// Skip malformed training records instead of failing (they are counted in `data.json`).
    pub skip_bad_records: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageResult {
    pub name: String,
    pub kind: String,
    pub key: String,
    pub status: String,
    pub output: String,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub run_key: String,
    pub spec: String,
    pub status: String,
    pub stages: Vec<StageResult>,
    pub nondeterministic: Vec<String>,
    pub store: String,
    pub lock_updated: bool,
    /// The untrained starting model's checkpoint tree (`RUN:base`), when the spec trains from
    /// scratch and names eval suites: scored first, as stage `base`.
    pub base: Option<String>,
    /// Each stage's checkpoint scored by the spec's suites.
    pub evals: Vec<StageEval>,
    /// Each stage's gates (those whose `stage` is that stage).
    pub gates: Vec<StageGates>,
    /// Whether every judged gate passed.
    pub gates_passed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageEval {
    pub stage: String,
    pub suite: String,
    pub results: String,
    pub cached: bool,
    pub status: String,
    /// Numbers, or `"inf"`, `"-inf"`, `"nan"` ([`crate::eval::number`]).
    #[serde(serialize_with = "crate::eval::number::map::serialize")]
    pub metrics: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageGates {
    pub stage: String,
    pub decision: crate::eval::gate::Decision,
}

/// Build (or find: it is content-addressed) the untrained model the first stage started from,
/// and record it in the run.
fn base_model(
    executors: &Executors,
    first: &crate::spec::Stage,
    spec: &crate::spec::Spec,
    store: &Store,
    first_output: &ParentOutput,
    rec: &mut RecordWriter,
) -> Result<Option<ParentOutput>> {
    let Some(exec) = executors.get(first.kind) else {
        return Ok(None);
    };
    let tree = exec
        .initial_model(spec, &first_output.tree, store)
        .map_err(|source| Error::Stage {
            stage: BASE_STAGE.into(),
            source,
        })?;
    let Some(tree) = tree else { return Ok(None) };
    let output = tree.put(store)?;
    rec.append(&Event::BaseModel {
        from_stage: first.name.clone(),
        output: output.clone(),
        at: crate::time::now(),
    })?;
    Ok(Some(ParentOutput {
        stage: BASE_STAGE.into(),
        key: String::new(),
        output,
        tree,
    }))
}

/// A stage's cached output: its key has an output whose tree and every object it lists hash to
/// their addresses. A damaged output is not a hit (with a warning): the stage runs again, and
/// storing its files restores the damaged objects.
fn cache_hit(
    store: &Store,
    ps: &plan::PlanStage,
    printer: &Printer,
) -> Result<Option<(String, Tree)>> {
    Ok(match store.cached_output(&ps.key)? {
        CachedOutput::Intact { output, tree } => Some((output, tree)),
        CachedOutput::Damaged { problem, .. } => {
            printer.warn(&format!(
                "stage `{}`: its stored output is damaged ({problem}); running it again to restore it",
                ps.name
            ));
            None
        }
        CachedOutput::None => None,
    })
}

fn new_run_id(run_key: &str) -> String {
    let seed = format!(
        "{run_key}/{}/{}/{}",
        crate::store::nanos(),
        std::process::id(),
        HostFacts::detect().hostname
    );
    crate::hash::hex(seed.as_bytes())[..32].to_string()
}

fn dirty_message(plan: &Plan, git: &provenance::GitState) -> Option<String> {
    if !git.repo {
        return Some(format!(
            "{} is not inside a git repository, so the run cannot be traced to a commit",
            plan.project.root.display()
        ));
    }
    if git.commit.is_none() {
        return Some("the repository has no commits yet".into());
    }
    if !git.spec_committed {
        return Some(format!(
            "the spec {} is not committed (or has uncommitted changes)",
            plan.loaded.display.display()
        ));
    }
    if git.dirty {
        let mut files = git.dirty_files.join(", ");
        if git.dirty_files.len() >= 20 {
            files.push_str(", …");
        }
        return Some(format!("the work tree has uncommitted changes: {files}"));
    }
    None
}

pub fn run(
    spec_path: &Path,
    store: Option<&Path>,
    opts: &RunOptions,
    executors: &Executors,
    printer: &Printer,
) -> Result<RunReport> {
    // Inputs hashed fresh: the state cache is a hint that anyone who can write the store can
    // forge, and these digests go into the keys, the run record and the `--locked` check.
    let mut plan = plan::plan_with(spec_path, store, Digests::Fresh)?;
    // 1. Data must match the lock (or, without --locked, the lock is brought up to date).
    let mut lock_updated = false;
    if !plan.stale.is_empty() {
        if opts.locked {
            return Err(LockError::Stale(plan.stale.clone()).into());
        }
        lock_updated = super::lock::update_entries(&plan.project.root, &plan.pins)?;
        for s in &plan.stale {
            printer.warn(&format!(
                "datasets.lock updated for {} ({})",
                s.path,
                if s.names.is_empty() {
                    "-".into()
                } else {
                    s.names.join(", ")
                }
            ));
        }
    }
    // 2. Code provenance.
    let git = provenance::inspect(&plan.project.root, Some(spec_path));
    if let Some(msg) = dirty_message(&plan, &git) {
        if !opts.allow_dirty {
            return Err(Error::Dirty { message: msg });
        }
        printer.warn(&format!("{msg}; recording the dirty state (--allow-dirty)"));
    }
    // 3. Every stage that must run needs an executor, before any work starts.
    for (ps, st) in plan.stages.iter().zip(&plan.loaded.spec.stages) {
        if ps.output.is_none() {
            let exec = executors.get(st.kind).ok_or_else(|| Error::NoExecutor {
                kind: st.kind.to_string(),
                stage: st.name.clone(),
            })?;
            exec.check(&plan.loaded.spec, st)
                .map_err(|source| Error::Stage {
                    stage: st.name.clone(),
                    source,
                })?;
        }
    }
    // 4. Record the run.
    // The plan's store value remembers which objects it verified (no second hashing).
    let store = match &plan.store {
        Some(s) => s.clone(),
        None => Store::open(&plan.project.store_dir)?,
    };
    let _lock = store.lock_shared()?;
    // Now that the store (and its `.gitignore`) exists, the fresh digests can be cached.
    plan.state.save(&plan.project.store_dir);
    let spec_object = store.put_bytes(plan.loaded.text.as_bytes())?;
    let resolved = crate::hash::canonical_string(&plan.loaded.spec)?;
    let resolved_object = store.put_bytes(resolved.as_bytes())?;
    for sk in &plan.keys.stages {
        store.put_key_inputs(&sk.key, &crate::hash::canonical_value(&sk.inputs)?)?;
    }
    let run_id = new_run_id(&plan.keys.run_key);
    let mut inputs = BTreeMap::new();
    for (path, names) in &plan.names {
        if let Some(pin) = plan.pins.get(path) {
            for n in names {
                inputs.insert(
                    n.clone(),
                    RecordedInput {
                        path: path.to_string(),
                        format: pin.format.to_string(),
                        blake3: pin.blake3.clone(),
                        bytes: pin.bytes,
                        records: pin.records,
                    },
                );
            }
        }
    }
    let planned: Vec<PlannedStage> = plan
        .stages
        .iter()
        .zip(&plan.loaded.spec.stages)
        .map(|(p, s)| PlannedStage {
            name: p.name.clone(),
            kind: p.kind.clone(),
            key: p.key.clone(),
            parent: p.parent.clone(),
            datasets: s.datasets.clone(),
        })
        .collect();
    let host = HostFacts::detect();
    let mut rec = RecordWriter::create(&store, &run_id)?;
    rec.append(&Event::RunStarted(Box::new(RunStarted {
        run_id: run_id.clone(),
        run_key: plan.keys.run_key.clone(),
        spec_name: plan.loaded.spec.name.clone(),
        spec_path: plan.loaded.display.to_string_lossy().replace('\\', "/"),
        spec_object,
        resolved_object,
        inputs,
        engine: plan.engine.clone(),
        device: plan.device.clone(),
        git,
        host: host.clone(),
        started_at: crate::time::now(),
        allow_dirty: opts.allow_dirty,
        locked: opts.locked,
        stages: planned,
    })))?;
    printer.status(&format!(
        "run {run_id}  {}  ({} stage{})",
        plan.loaded.spec.name,
        plan.stages.len(),
        if plan.stages.len() == 1 { "" } else { "s" }
    ));

    let mut results = Vec::new();
    let mut nondeterministic = Vec::new();
    let mut evals = Vec::new();
    let mut gate_reports = Vec::new();
    let mut eval_error: Option<Error> = None;
    let mut parent: Option<ParentOutput> = None;
    let mut base_output: Option<String> = None;
    for (i, (ps, stage)) in plan.stages.iter().zip(&plan.loaded.spec.stages).enumerate() {
        if let Some((out, tree)) = cache_hit(&store, ps, printer)? {
            rec.append(&Event::StageCached {
                stage: ps.name.clone(),
                key: ps.key.clone(),
                output: out.clone(),
                at: crate::time::now(),
            })?;
            printer.status(&format!(
                "  {:<8} {:<4} cached     output {}",
                ps.name,
                ps.kind,
                &out[..12]
            ));
            results.push(StageResult {
                name: ps.name.clone(),
                kind: ps.kind.clone(),
                key: ps.key.clone(),
                status: "cached".into(),
                output: out.clone(),
                seconds: 0.0,
            });
            parent = Some(ParentOutput {
                stage: ps.name.clone(),
                key: ps.key.clone(),
                tree,
                output: out,
            });
        } else {
            let started_at = crate::time::now();
            rec.append(&Event::StageStarted {
                stage: ps.name.clone(),
                key: ps.key.clone(),
                at: started_at.clone(),
            })?;
            printer.status(&format!("  {:<8} {:<4} running", ps.name, ps.kind));
            let t0 = Instant::now();
            let work = store.tmp_dir().join(format!("work-{run_id}-{}", ps.name));
            std::fs::create_dir_all(&work).map_err(crate::store::io_at(&work))?;
            let exec = executors.get(stage.kind).ok_or_else(|| Error::NoExecutor {
                kind: stage.kind.to_string(),
                stage: stage.name.clone(),
            })?;
            let ctx = StageContext {
                root: &plan.project.root,
                spec: &plan.loaded.spec,
                stage,
                index: i,
                key: &ps.key,
                run_id: &run_id,
                parent: parent.clone(),
                store: &store,
                inputs: &plan.pins,
                work_dir: &work,
                skip_bad_records: opts.skip_bad_records,
                progress: printer.shows_progress(),
            };
            let produced = exec.execute(&ctx);
            let output = match produced {
                Ok(o) => o,
                Err(e) => {
                    rec.append(&Event::StageFailed {
                        stage: ps.name.clone(),
                        key: ps.key.clone(),
                        error: e.message.clone(),
                        at: crate::time::now(),
                    })?;
                    rec.finish(&store, RunStatus::Failed)?;
                    let _ = std::fs::remove_dir_all(&work);
                    return Err(Error::Stage {
                        stage: ps.name.clone(),
                        source: e,
                    });
                }
            };
            // Move the files into the store and build the output tree.
            let mut tree = Tree::default();
            let mut artifacts = BTreeMap::new();
            for (name, path) in &output.files {
                let id = store.put_file(path)?;
                let bytes = std::fs::metadata(store.object_path(&id))
                    .map(|m| m.len())
                    .unwrap_or(0);
                tree.entries.insert(
                    name.clone(),
                    TreeEntry {
                        object: id.clone(),
                        bytes,
                    },
                );
                artifacts.insert(name.clone(), id);
            }
            let mut logs = BTreeMap::new();
            for (name, path) in &output.logs {
                logs.insert(name.clone(), store.put_file(path)?);
            }
            let _ = std::fs::remove_dir_all(&work);
            let out = tree.put(&store)?;
            let seconds = t0.elapsed().as_secs_f64();
            let outcome = store.record_key_output(
                &ps.key,
                &KeyOutput {
                    output: out.clone(),
                    run: run_id.clone(),
                },
            )?;
            // The stage is complete: its resume checkpoint is no longer needed.
            store.clear_resume_point(&ps.key)?;
            if let KeyOutcome::Repaired { problem, .. } = &outcome {
                printer.warn(&format!(
                    "stage `{}`: its key record was replaced; it named an unusable output ({problem})",
                    ps.name
                ));
            }
            if let KeyOutcome::Different { existing } = &outcome {
                rec.append(&Event::Nondeterminism {
                    stage: ps.name.clone(),
                    key: ps.key.clone(),
                    recorded: existing.clone(),
                    produced: out.clone(),
                    at: crate::time::now(),
                })?;
                printer.warn(&format!(
                    "NONDETERMINISM: stage `{}` produced output {} but its key already recorded {}",
                    ps.name,
                    &out[..12],
                    &existing[..12.min(existing.len())]
                ));
                nondeterministic.push(ps.name.clone());
            }
            rec.append(&Event::StageCompleted(Box::new(StageCompleted {
                stage: ps.name.clone(),
                key: ps.key.clone(),
                parent_key: parent.as_ref().map(|p| p.key.clone()),
                parent_output: parent.as_ref().map(|p| p.output.clone()),
                output: out.clone(),
                artifacts,
                logs,
                metrics: output.metrics.clone(),
                started_at,
                finished_at: crate::time::now(),
                seconds,
                host: host.clone(),
            })))?;
            printer.status(&format!(
                "  {:<8} {:<4} completed  output {}  {:.1}s",
                ps.name,
                ps.kind,
                &out[..12],
                seconds
            ));
            results.push(StageResult {
                name: ps.name.clone(),
                kind: ps.kind.clone(),
                key: ps.key.clone(),
                status: "completed".into(),
                output: out.clone(),
                seconds,
            });
            parent = Some(ParentOutput {
                stage: ps.name.clone(),
                key: ps.key.clone(),
                tree,
                output: out,
            });
        }
        let Some(p) = &parent else { continue };
        // Before the first stage's own scores: the untrained model it started from.
        if i == 0 && eval_error.is_none() && !plan.loaded.spec.evals.is_empty() {
            match base_model(executors, stage, &plan.loaded.spec, &store, p, &mut rec) {
                Ok(Some(base)) => {
                    if let Err(e) = evaluate_stage(
                        &plan.project,
                        &store,
                        &plan.loaded.spec,
                        &run_id,
                        BASE_STAGE,
                        &base.output,
                        &base.tree,
                        printer,
                        &mut evals,
                        &mut gate_reports,
                    ) {
                        printer.warn(&format!("evaluating the untrained base model failed: {e}"));
                        eval_error = Some(e);
                    }
                    base_output = Some(base.output);
                }
                Ok(None) => {}
                Err(e) => {
                    printer.warn(&format!("building the untrained base model failed: {e}"));
                    eval_error = Some(e);
                }
            }
        }
        if eval_error.is_none()
            && let Err(e) = evaluate_stage(
                &plan.project,
                &store,
                &plan.loaded.spec,
                &run_id,
                &ps.name,
                &p.output,
                &p.tree,
                printer,
                &mut evals,
                &mut gate_reports,
            )
        {
            printer.warn(&format!("evaluating stage `{}` failed: {e}", ps.name));
            eval_error = Some(e);
        }
    }
    // The record is complete: seal it (its bytes become an object, see `lineage::seal`).
    rec.finish(&store, RunStatus::Ok)?;
    if let Some(e) = eval_error {
        return Err(e);
    }
    let gates_passed = gate_reports.iter().all(|g| g.decision.passed);
    Ok(RunReport {
        run_id,
        run_key: plan.keys.run_key.clone(),
        spec: plan.loaded.display.to_string_lossy().to_string(),
        status: "ok".into(),
        stages: results,
        nondeterministic,
        store: store.root().display().to_string(),
        lock_updated,
        base: base_output,
        evals,
        gates: gate_reports,
        gates_passed,
    })
}
