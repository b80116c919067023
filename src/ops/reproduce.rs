//! `medrun reproduce REF [--stage S]`: re-execute a recorded run's stages from their recorded
//! inputs with the cache off, and compare each stage's output address with the record.
//!
//! - Every recorded input (datasets, base model, tokenizer, templates) must still hash to what
//!   the run recorded; otherwise the reproduction is refused before any work, naming the input.
//! - Each stage starts from its recorded parent output (which must still be in the store), so a
//!   divergence is attributed to the first stage that produces other bytes from the same inputs.
//! - If this binary's engine fingerprint differs from the recorded one, the recorded commit is
//!   checked out into a temporary git worktree, built with `cargo build --release --locked`, and
//!   that binary performs the reproduction.
//!
//! Identical: exit 0. Different: exit 4, naming the first stage that diverged and, from the
//! trajectory fingerprints, the first step at which the parameters differed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

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

fn problem(message: String, hint: impl Into<String>) -> Error {
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

/// The binary built from the recorded commit, when the engine differs.
fn rebuild(
    project: &Project,
    store: &Store,
    run: &RunRecord,
    printer: &Printer,
) -> Result<PathBuf> {
    let commit = run.started.git.commit.clone().ok_or_else(|| {
        problem(
            format!(
                "run {} was recorded by another medrun build ({}) and records no git commit to rebuild it from",
                run.id(),
                run.started.engine.short()
            ),
            "reproduce it with the medrun binary that recorded it",
        )
    })?;
    if run.started.git.dirty {
        printer.warn(&format!(
            "run {} was recorded from a dirty tree (diff {}); the rebuild uses commit {} without those changes",
            &run.id()[..12],
            run.started.git.diff_hash.as_deref().unwrap_or("?"),
            &commit[..12.min(commit.len())]
        ));
    }
    let repo = git2::Repository::discover(&project.root).map_err(|e| {
        problem(
            format!("cannot open the git repository: {e}"),
            "run reproduce inside the project's git checkout",
        )
    })?;
    let oid = git2::Oid::from_str(&commit).map_err(|e| {
        problem(
            format!("bad commit id {commit}: {e}"),
            "the run record is damaged",
        )
    })?;
    let c = repo.find_commit(oid).map_err(|_| {
        problem(
            format!(
                "commit {commit} that recorded run {} is not in this repository",
                run.id()
            ),
            format!("fetch it (`git fetch origin {commit}`) and run reproduce again"),
        )
    })?;
    let short = &commit[..12.min(commit.len())];
    let dir = store.tmp_dir().join(format!("reproduce-{short}"));
    let bin = dir.join("target/release/medrun");
    if !bin.is_file() {
        if !dir.join("Cargo.toml").is_file() {
            let _ = std::fs::remove_dir_all(&dir);
            let branch = format!("medrun-reproduce-{short}");
            let r = match repo.find_branch(&branch, git2::BranchType::Local) {
                Ok(b) => b,
                Err(_) => repo.branch(&branch, &c, true).map_err(|e| {
                    problem(
                        format!("cannot create branch {branch}: {e}"),
                        "check the repository",
                    )
                })?,
            };
            let reference = r.into_reference();
            let mut opts = git2::WorktreeAddOptions::new();
            opts.reference(Some(&reference));
            if let Ok(w) = repo.find_worktree(&branch) {
                let _ = w.prune(Some(
                    git2::WorktreePruneOptions::new()
                        .valid(true)
                        .working_tree(true),
                ));
            }
            repo.worktree(&branch, &dir, Some(&opts)).map_err(|e| {
                problem(
                    format!("cannot check out {short} into {}: {e}", dir.display()),
                    "remove the directory and try again",
                )
            })?;
        }
        printer.status(&format!(
            "building medrun at {short} (the run's engine differs from this binary) in {}",
            dir.display()
        ));
        let st = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--release", "--locked"])
            .current_dir(&dir)
            .status()
            .map_err(|e| {
                problem(
                    format!("cannot run cargo: {e}"),
                    "install Rust (rustup) to rebuild the recorded engine",
                )
            })?;
        if !st.success() || !bin.is_file() {
            return Err(problem(
                format!("building commit {short} failed"),
                format!(
                    "see the cargo output above; the worktree is at {}",
                    dir.display()
                ),
            ));
        }
    }
    Ok(bin)
}

pub fn reproduce(
    project: &Project,
    reference: &str,
    only: Option<&str>,
    executors: &Executors,
    printer: &Printer,
) -> Result<ReproReport> {
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
    let engine = EngineFingerprint::current();
    if engine != run.started.engine {
        if std::env::var_os("MEDRUN_REPRODUCE_REBUILT").is_some() {
            return Err(problem(
                format!(
                    "the rebuilt medrun still has another engine fingerprint than run {} records",
                    run.id()
                ),
                "the recorded commit does not reproduce its own build (toolchain or target differ)",
            ));
        }
        let bin = rebuild(project, &store, &run, printer)?;
        let mut cmd = Command::new(&bin);
        cmd.arg("--store")
            .arg(store.root())
            .arg("--json")
            .arg("reproduce")
            .arg(run.id())
            .current_dir(&project.root)
            .env("MEDRUN_REPRODUCE_REBUILT", "1");
        if let Some(s) = only {
            cmd.arg("--stage").arg(s);
        }
        let out = cmd
            .output()
            .map_err(|e| problem(format!("cannot run {}: {e}", bin.display()), "rebuild it"))?;
        let mut rep: ReproReport = serde_json::from_slice(&out.stdout).map_err(|e| {
            problem(
                format!(
                    "the rebuilt medrun failed ({}): {e}\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ),
                "see its output above",
            )
        })?;
        rep.rebuilt_from = run.started.git.commit.clone();
        return Ok(rep);
    }
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
        let parent = match i.checked_sub(1).map(|j| &run.stages[j]) {
            None => None,
            Some((pp, ps)) => {
                let out = ps.output().ok_or_else(|| {
                    problem(
                        format!("parent stage `{}` has no recorded output", pp.name),
                        "reproduce a run whose stages completed",
                    )
                })?;
                let tree = Tree::load(&store, out).map_err(|e| {
                    problem(
                        format!("the recorded output of stage `{}` ({}) is not in the store: {e}", pp.name, &out[..12]),
                        "it was garbage-collected or the store is another one; run the spec again to recreate it, or pass the right --store",
                    )
                })?;
                Some(ParentOutput {
                    stage: pp.name.clone(),
                    key: pp.key.clone(),
                    output: out.to_string(),
                    tree,
                })
            }
        };
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
        let mut tree = Tree::default();
        for (name, path) in &output.files {
            let id = store.put_file(path)?;
            let bytes = std::fs::metadata(store.object_path(&id))
                .map(|m| m.len())
                .unwrap_or(0);
            tree.entries
                .insert(name.clone(), TreeEntry { object: id, bytes });
        }
        let _ = std::fs::remove_dir_all(&work);
        store.clear_resume_point(&repro_key)?;
        let out = tree.put(&store)?;
        let identical = out == recorded;
        let mut differing = Vec::new();
        let mut step = None;
        if !identical {
            let rec_tree = Tree::load(&store, &recorded).unwrap_or_default();
            for (name, e) in &tree.entries {
                if rec_tree.entries.get(name).map(|r| &r.object) != Some(&e.object) {
                    differing.push(name.clone());
                }
            }
            step = first_divergence(&trajectory(&store, &tree), &trajectory(&store, &rec_tree));
        }
        printer.status(&format!(
            "  {:<8} {}",
            planned.name,
            if identical {
                format!("identical ({})", &out[..12])
            } else {
                format!(
                    "DIFFERS: recorded {}, produced {}{}",
                    &recorded[..12],
                    &out[..12],
                    step.map(|s| format!("; parameters first differ at step {s}"))
                        .unwrap_or_default()
                )
            }
        ));
        stages.push(StageRepro {
            stage: planned.name.clone(),
            recorded,
            produced: out,
            identical,
            differing_files: differing,
            first_divergent_step: step,
        });
    }
    Ok(ReproReport {
        run: run.id().to_string(),
        identical: stages.iter().all(|s| s.identical),
        stages,
        rebuilt_from: None,
    })
}
