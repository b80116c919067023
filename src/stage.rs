//! The interface between the orchestrator and the training engine. `medrun run` drives each stage
//! through a [`StageExecutor`] chosen by the stage's kind; the training engine implements it for
//! `pt`, `sft` and `dpo`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::lock::Pin;
use crate::spec::{RelPath, Spec, Stage, StageKind};
use crate::store::{Store, Tree};

/// The parent stage's output, for chained stages.
#[derive(Debug, Clone)]
pub struct ParentOutput {
    pub stage: String,
    pub key: String,
    /// Content address of the parent's output tree.
    pub output: String,
    pub tree: Tree,
}

/// Everything an executor may read. It writes its files into `work_dir` only.
pub struct StageContext<'a> {
    pub root: &'a Path,
    pub spec: &'a Spec,
    pub stage: &'a Stage,
    pub index: usize,
    pub key: &'a str,
    pub run_id: &'a str,
    pub parent: Option<ParentOutput>,
    pub store: &'a Store,
    pub inputs: &'a BTreeMap<RelPath, Pin>,
    /// An empty directory inside the store's `tmp/`, removed after the stage.
    pub work_dir: &'a Path,
    /// `--skip-bad-records`: skip malformed records (and report them) instead of failing.
    pub skip_bad_records: bool,
    /// Whether to draw progress bars (stderr is a terminal, no `--json`, no `-q`).
    pub progress: bool,
}

/// What a stage produced.
///
/// `files` are the deterministic outputs (checkpoint, config, tokenizer, trajectory): they form
/// the output tree whose id is the stage's content address, so they must be a pure function of
/// the stage key. `logs` hold what legitimately varies between identical runs (per-step timings,
/// tokens/s): stored and recorded in the lineage, but outside the content address.
#[derive(Debug, Clone, Default)]
pub struct StageOutput {
    pub files: BTreeMap<String, PathBuf>,
    pub logs: BTreeMap<String, PathBuf>,
    pub metrics: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StageError {
    pub message: String,
    pub hint: String,
    /// Whether the user can fix it (bad data, NaN loss with these hyper-parameters) → exit 1,
    /// or it is an internal failure → exit 2.
    pub user: bool,
}

impl From<crate::fsx::FsError> for StageError {
    /// An input file the stage may not or cannot read: the user's to fix (exit 1).
    fn from(e: crate::fsx::FsError) -> StageError {
        StageError {
            hint: e.hint(),
            message: e.to_string(),
            user: true,
        }
    }
}

pub trait StageExecutor: Send + Sync {
    /// Checks that need no work (device availability, supported settings), run for every stage
    /// before the run starts, so a bad setting fails before hours of earlier stages.
    fn check(&self, _spec: &Spec, _stage: &Stage) -> Result<(), StageError> {
        Ok(())
    }

    fn execute(&self, ctx: &StageContext<'_>) -> Result<StageOutput, StageError>;

    /// The model the run starts from, before any stage trained it: a checkpoint tree (its
    /// objects already in `store`) scored as the `base` column of the evaluation table, so each
    /// stage's gain is measured against the untrained model. `first` is the first stage's
    /// output, whose config and tokenizer the base model shares. `None` when the executor has no
    /// cheap way to build one.
    fn initial_model(
        &self,
        _spec: &Spec,
        _first: &Tree,
        _store: &Store,
    ) -> Result<Option<Tree>, StageError> {
        Ok(None)
    }
}

/// Executors by stage kind.
#[derive(Default)]
pub struct Executors {
    map: BTreeMap<StageKind, Box<dyn StageExecutor>>,
}

impl Executors {
    /// The executors built into this medrun: the training engine for `pt`, `sft` and `dpo`.
    pub fn builtin() -> Executors {
        Executors::default()
            .with(
                StageKind::Pt,
                Box::new(crate::train::executor::TrainExecutor),
            )
            .with(
                StageKind::Sft,
                Box::new(crate::train::executor::TrainExecutor),
            )
            .with(
                StageKind::Dpo,
                Box::new(crate::train::executor::TrainExecutor),
            )
    }

    pub fn with(mut self, kind: StageKind, exec: Box<dyn StageExecutor>) -> Executors {
        self.map.insert(kind, exec);
        self
    }

    pub fn get(&self, kind: StageKind) -> Option<&dyn StageExecutor> {
        self.map.get(&kind).map(|b| b.as_ref())
    }
}
