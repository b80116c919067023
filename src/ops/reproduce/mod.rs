//! `medrun reproduce REF [--stage S] [--rebuild]`: re-execute a recorded run's stages from their
//! recorded inputs with the cache off, and compare each stage's output address with the record.
//!
//! - Every recorded input (datasets, base model, tokenizer, templates) must still hash to what
//!   the run recorded; otherwise the reproduction is refused before any work, naming the input.
//! - Each stage starts from its recorded parent output (which must still be in the store), so a
//!   divergence is attributed to the first stage that produces other bytes from the same inputs.
//! - If this binary's engine fingerprint differs from the recorded one, the recorded commit is
//!   built and that binary performs the reproduction, but only with `--rebuild` and only for a
//!   commit in the project's own history (`rebuild`); its report is verified against the store
//!   and judged here (`verify`).
//!
//! Identical: exit 0. Different: exit 4, naming the first stage that diverged and, from the
//! trajectory fingerprints, the first step at which the parameters differed.

mod rebuild;
mod verify;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Project;
use crate::env::{DeviceClass, EngineFingerprint};
use crate::error::{Error, Result};
use crate::lineage::{self, RunRecord, Target};
use crate::lock::state::StateCache;
use crate::lock::{self, Pin};
use crate::printer::Printer;
use crate::spec::{Format, RelPath, Spec};
use crate::stage::{Executors, ParentOutput, StageContext};
use crate::store::tree::TreeEntry;
use crate::store::{Store, Tree};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageRepro {
    pub stage: String,
    pub recorded: String,
    pub produced: String,
    pub identical: bool,
    /// Files whose bytes differ (when not identical).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub differing_files: Vec<String>,
    /// The first trajectory step whose parameter fingerprint differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_divergent_step: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReproReport {
    pub run: String,
    pub identical: bool,
    pub stages: Vec<StageRepro>,
    /// Set when a binary built from the recorded commit did the work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebuilt_from: Option<String>,
}

pub(crate) fn problem(message: String, hint: impl Into<String>) -> Error {
    Error::Problems {
        message,
        hint: hint.into(),
    }
}

fn format_of(name: &str) -> Option<Format> {
    match name {
        "model" => Some(Format::Model),
        "file" => Some(Format::File),
        other => Format::parse(other),
    }
}

/// Re-hash every recorded input; refuse if any is missing or changed.
fn check_inputs(project: &Project, run: &RunRecord) -> Result<BTreeMap<RelPath, Pin>> {
    let mut cache = StateCache::disabled();
    let mut pins = BTreeMap::new();
    for (name, input) in &run.started.inputs {
        let rel = RelPath(input.path.clone());
        let format = format_of(&input.format).ok_or_else(|| {
            problem(
                format!(
                    "input `{name}` has format `{}`, unknown to this medrun",
                    input.format
                ),
                "reproduce with the medrun that recorded the run",
            )
        })?;
        let what = format!("input `{name}` of run {}", run.id());
        let pin = lock::digest(&project.root, &rel, format, &what, &mut cache).map_err(|e| {
            problem(
                format!("{e}"),
                format!(
                    "restore {} as it was for the run (blake3 {}), e.g. `git checkout {}` for files kept in git",
                    input.path,
                    &input.blake3[..12.min(input.blake3.len())],
                    run.started.git.commit.as_deref().unwrap_or("<commit>")
                ),
            )
        })?;
        if pin.blake3 != input.blake3 || pin.bytes != input.bytes {
            return Err(problem(
                format!(
                    "input `{name}` ({}) changed since run {}: recorded {} bytes, blake3 {}; now {} bytes, blake3 {}",
                    input.path,
                    &run.id()[..12],
                    input.bytes,
                    &input.blake3[..12.min(input.blake3.len())],
                    pin.bytes,
                    &pin.blake3[..12]
                ),
                "restore the recorded bytes (e.g. from git or your data store) before reproducing",
            ));
        }
        pins.insert(rel, pin);
    }
    Ok(pins)
}

fn trajectory(store: &Store, tree: &Tree) -> Vec<(u64, String)> {
    let Some(e) = tree.entries.get("trajectory.json") else {
        return Vec::new();
    };
    let Ok(bytes) = store.get(&e.object) else {
        return Vec::new();
    };
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    v.get("steps")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| {
                    Some((
                        s.get("step")?.as_u64()?,
                        s.get("params")?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn first_divergence(a: &[(u64, String)], b: &[(u64, String)]) -> Option<u64> {
    let bm: BTreeMap<u64, &String> = b.iter().map(|(s, h)| (*s, h)).collect();
    a.iter()
        .find(|(s, h)| bm.get(s).is_some_and(|x| *x != h))
        .map(|(s, _)| *s)
}

/// Options of `medrun reproduce`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReproduceOptions<'a> {
    /// Reproduce only this stage (from its recorded parent output).
    pub only: Option<&'a str>,
    /// Allow building and running the recorded commit when the run's engine differs.
    pub rebuild: bool,
}

/// Compare a produced output tree with the recorded one: the verdict, the differing files and
/// the first divergent trajectory step, all read from the store.
pub(crate) fn compare(
    store: &Store,
    stage: &str,
    recorded: &str,
    produced: String,
    tree: &Tree,
) -> StageRepro {
    let identical = produced == recorded;
    let mut differing = Vec::new();
    let mut step = None;
    if !identical {
        let rec_tree = Tree::load(store, recorded).unwrap_or_default();
        for (name, e) in &tree.entries {
            if rec_tree.entries.get(name).map(|r| &r.object) != Some(&e.object) {
                differing.push(name.clone());
            }
        }
        for name in rec_tree.entries.keys() {
            if !tree.entries.contains_key(name) {
                differing.push(name.clone());
            }
        }
        differing.sort();
        step = first_divergence(&trajectory(store, tree), &trajectory(store, &rec_tree));
    }
    StageRepro {
        stage: stage.to_string(),
        recorded: recorded.to_string(),
        produced,
        identical,
        differing_files: differing,
        first_divergent_step: step,
    }
}

fn print_verdict(printer: &Printer, s: &StageRepro) {
    printer.status(&format!(
        "  {:<8} {}",
        s.stage,
        if s.identical {
            format!("identical ({})", &s.produced[..12])
        } else {
            format!(
                "DIFFERS: recorded {}, produced {}{}",
                &s.recorded[..12.min(s.recorded.len())],
                &s.produced[..12],
                s.first_divergent_step
                    .map(|n| format!("; parameters first differ at step {n}"))
                    .unwrap_or_default()
            )
        }
    ));
}

/// The run's engine differs from this binary: build the recorded commit (if it is trusted and
/// `--rebuild` was given), let it reproduce, and verify what it reports.
fn reproduce_rebuilt(
    project: &Project,
    store: &Store,
    run: &RunRecord,
    opts: ReproduceOptions<'_>,
    printer: &Printer,
) -> Result<ReproReport> {
    if std::env::var_os("MEDRUN_REPRODUCE_REBUILT").is_some() {
        return Err(problem(
            format!(
                "the rebuilt medrun still has another engine fingerprint than run {} records",
                run.id()
            ),
            "the recorded commit does not reproduce its own build (toolchain or target differ)",
        ));
    }
    // Refuses an untrusted commit before anything is created.
    let plan = rebuild::plan(&project.root, run)?;
    if !opts.rebuild {
        return Err(problem(
            format!(
                "run {} was recorded by another engine ({}; this is {}); reproducing it means building and running the code of commit {}:\n{}",
                &run.id()[..12.min(run.id().len())],
                run.started.engine.short(),
                EngineFingerprint::current().short(),
                plan.commit,
                plan.describe()
            ),
            format!(
                "review the commit (`git show {}`), then allow the build with `medrun reproduce {} --rebuild`; or reproduce with the medrun binary that recorded the run",
                plan.short(),
                &run.id()[..12.min(run.id().len())]
            ),
        ));
    }
    // Every stage the child must report on has a recorded output (checked before building).
    verify::expected_stages(run, opts.only)?;
    let bin = rebuild::build(&project.root, run, &plan, printer)?;
    // No gc between the child's writes and their verification.
    let _lock = store.lock_shared()?;
    let child = rebuild::run_child(&bin, &project.root, store.root(), run.id(), opts.only)?;
    if !matches!(child.code, Some(0) | Some(4)) {
        return Err(problem(
            format!(
                "the rebuilt medrun (commit {}) failed with {}",
                plan.short(),
                child
                    .code
                    .map(|c| format!("exit {c}"))
                    .unwrap_or_else(|| "a signal".into())
            ),
            "see its output above",
        ));
    }
    let stages = verify::verify_child_report(store, run, opts.only, &child.stdout)?;
    for s in &stages {
        print_verdict(printer, s);
    }
    Ok(ReproReport {
        run: run.id().to_string(),
        identical: stages.iter().all(|s| s.identical),
        stages,
        rebuilt_from: Some(plan.commit),
    })
}

/// The resolved spec stored with the run; warns when this machine is of another device class.
fn recorded_spec(store: &Store, run: &RunRecord, printer: &Printer) -> Result<Spec> {
    let spec: Spec =
        serde_json::from_slice(&store.get(&run.started.resolved_object)?).map_err(|e| {
            Error::Io(format!(
                "the recorded spec of run {} is unreadable: {e}",
                run.id()
            ))
        })?;
    let device = DeviceClass::detect(spec.device)?;
    if device != run.started.device {
        printer.warn(&format!(
            "run {} was recorded on {}; this machine is {}: outputs are only promised to be identical within one device class",
            &run.id()[..12],
            run.started.device.short(),
            device.short()
        ));
    }
    Ok(spec)
}

/// The recorded output of stage `i`'s parent (the stage before it), which must be in the store.
fn parent_output(store: &Store, run: &RunRecord, i: usize) -> Result<Option<ParentOutput>> {
    let Some((pp, ps)) = i.checked_sub(1).map(|j| &run.stages[j]) else {
        return Ok(None);
    };
    let out = ps.output().ok_or_else(|| {
        problem(
            format!("parent stage `{}` has no recorded output", pp.name),
            "reproduce a run whose stages completed",
        )
    })?;
    let tree = Tree::load(store, out).map_err(|e| {
        problem(
            format!(
                "the recorded output of stage `{}` ({}) is not in the store: {e}",
                pp.name,
                &out[..12.min(out.len())]
            ),
            "it was garbage-collected or the store is another one; run the spec again to recreate it, or pass the right --store",
        )
    })?;
    Ok(Some(ParentOutput {
        stage: pp.name.clone(),
        key: pp.key.clone(),
        output: out.to_string(),
        tree,
    }))
}

/// Store a stage's files as objects; their tree (not yet stored).
fn store_files(store: &Store, files: &BTreeMap<String, std::path::PathBuf>) -> Result<Tree> {
    let mut tree = Tree::default();
    for (name, path) in files {
        let id = store.put_file(path)?;
        let bytes = std::fs::metadata(store.object_path(&id))
            .map(|m| m.len())
            .unwrap_or(0);
        tree.entries
            .insert(name.clone(), TreeEntry { object: id, bytes });
    }
    Ok(tree)
}

pub fn reproduce(
    project: &Project,
    reference: &str,
    opts: ReproduceOptions<'_>,
    executors: &Executors,
    printer: &Printer,
) -> Result<ReproReport> {
    let only = opts.only;
    let store = Store::open_existing(&project.store_dir)?;
    let run = match super::promotions::resolve(&store, &project.root, reference)? {
        Target::Run(r) | Target::Stage(r, _) => *r,
        Target::Object(id) => {
            let runs = lineage::load_runs(&store)?;
            lineage::producers(&store, &runs, &id)?
                .into_iter()
                .next()
                .map(|(r, _, _)| r)
                .ok_or_else(|| {
                    problem(
                        format!("no run produced {}", &id[..12.min(id.len())]),
                        "pass a run id",
                    )
                })?
        }
    };
    if let Some(s) = only
        && run.stage(s).is_none()
    {
        return Err(problem(
            format!("run {} has no stage `{s}`", run.id()),
            "see `medrun lineage RUN` for its stages",
        ));
    }
    let pins = check_inputs(project, &run)?;

    // Another engine recorded the run: rebuild it and let that binary reproduce.
    if EngineFingerprint::current() != run.started.engine {
        return reproduce_rebuilt(project, &store, &run, opts, printer);
    }
    let spec = recorded_spec(&store, &run, printer)?;
    let _lock = store.lock_shared()?;
    let mut stages = Vec::new();
    for (i, (planned, state)) in run.stages.iter().enumerate() {
        if only.is_some_and(|s| s != planned.name) {
            continue;
        }
        let Some(recorded) = state.output().map(str::to_string) else {
            return Err(problem(
                format!(
                    "stage `{}` of run {} has no recorded output to compare with",
                    planned.name,
                    run.id()
                ),
                "reproduce a run whose stages completed",
            ));
        };
        let stage = spec.stage(&planned.name).ok_or_else(|| {
            Error::Io(format!(
                "stage `{}` missing from the recorded spec",
                planned.name
            ))
        })?;
        let parent = parent_output(&store, &run, i)?;
        let exec = executors.get(stage.kind).ok_or_else(|| Error::NoExecutor {
            kind: stage.kind.to_string(),
            stage: stage.name.clone(),
        })?;
        printer.status(&format!("  {:<8} reproducing (cache off)", planned.name));
        // Resume checkpoints of the reproduction live under their own key.
        let repro_key = blake3::hash(format!("reproduce/{}", planned.key).as_bytes())
            .to_hex()
            .to_string();
        let work = store
            .tmp_dir()
            .join(format!("reproduce-{}-{}", &run.id()[..12], planned.name));
        std::fs::create_dir_all(&work).map_err(crate::store::io_at(&work))?;
        let ctx = StageContext {
            root: &project.root,
            spec: &spec,
            stage,
            index: i,
            key: &repro_key,
            run_id: run.id(),
            parent,
            store: &store,
            inputs: &pins,
            work_dir: &work,
            skip_bad_records: false,
            progress: printer.shows_progress(),
        };
        let produced = exec.execute(&ctx).map_err(|source| Error::Stage {
            stage: planned.name.clone(),
            source,
        });
        let output = match produced {
            Ok(o) => o,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&work);
                return Err(e);
            }
        };
        let tree = store_files(&store, &output.files);
        let _ = std::fs::remove_dir_all(&work);
        let tree = tree?;
        store.clear_resume_point(&repro_key)?;
        let out = tree.put(&store)?;
        let repro = compare(&store, &planned.name, &recorded, out, &tree);
        print_verdict(printer, &repro);
        stages.push(repro);
    }
    Ok(ReproReport {
        run: run.id().to_string(),
        identical: stages.iter().all(|s| s.identical),
        stages,
        rebuilt_from: None,
    })
}
