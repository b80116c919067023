//! Run records: one append-only JSON-lines file per run (`runs-v1/<run id>.jsonl`). Each line is
//! one event, written whole and fsynced; a line torn by a crash is ignored when reading, and
//! everything before it stays valid. When the run ends the record is sealed ([`super::seal`]),
//! and every read checks it against its seal.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::seal::{Seal, SealError};
use crate::env::{DeviceClass, EngineFingerprint, HostFacts};
use crate::provenance::GitState;
use crate::store::{Store, StoreError, io_at};

/// A dataset as recorded in a run (path kept for people; the hash is what matters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedInput {
    pub path: String,
    pub format: String,
    pub blake3: String,
    pub bytes: u64,
    pub records: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedStage {
    pub name: String,
    pub kind: String,
    pub key: String,
    pub parent: Option<String>,
    /// Dataset names this stage reads.
    pub datasets: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStarted {
    pub run_id: String,
    pub run_key: String,
    pub spec_name: String,
    /// Spec path relative to the project root.
    pub spec_path: String,
    /// Object holding the spec file's bytes.
    pub spec_object: String,
    /// Object holding the resolved spec (canonical JSON).
    pub resolved_object: String,
    /// Inputs by name (`name` for spec datasets, `suite/name` for eval data, `model`, …).
    pub inputs: BTreeMap<String, RecordedInput>,
    pub engine: EngineFingerprint,
    pub device: DeviceClass,
    pub git: GitState,
    pub host: HostFacts,
    pub started_at: String,
    pub allow_dirty: bool,
    pub locked: bool,
    pub stages: Vec<PlannedStage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageCompleted {
    pub stage: String,
    pub key: String,
    pub parent_key: Option<String>,
    pub parent_output: Option<String>,
    /// The stage's output tree (its content address).
    pub output: String,
    /// File name → object id.
    pub artifacts: BTreeMap<String, String>,
    /// Logs outside the content address (timings): file name → object id.
    #[serde(default)]
    pub logs: BTreeMap<String, String>,
    pub metrics: serde_json::Value,
    pub started_at: String,
    pub finished_at: String,
    pub seconds: f64,
    pub host: HostFacts,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted(Box<RunStarted>),
    StageStarted {
        stage: String,
        key: String,
        at: String,
    },
    StageCached {
        stage: String,
        key: String,
        output: String,
        at: String,
    },
    StageCompleted(Box<StageCompleted>),
    StageFailed {
        stage: String,
        key: String,
        error: String,
        at: String,
    },
    /// The same key produced different bytes than recorded before.
    Nondeterminism {
        stage: String,
        key: String,
        recorded: String,
        produced: String,
        at: String,
    },
    RunFinished {
        status: RunStatus,
        at: String,
    },
    /// The untrained model the run starts from, built for evaluation (the `base` column): the
    /// spec's seeded initialisation with the config and tokenizer of stage `from_stage`'s output.
    BaseModel {
        from_stage: String,
        output: String,
        at: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Ok,
    Failed,
}

/// The state of one stage in a run, folded from its events.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StageState {
    Planned,
    Running { started_at: String },
    Cached { output: String, at: String },
    Completed(Box<StageCompleted>),
    Failed { error: String, at: String },
}

impl StageState {
    pub fn output(&self) -> Option<&str> {
        match self {
            StageState::Cached { output, .. } => Some(output),
            StageState::Completed(c) => Some(&c.output),
            _ => None,
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            StageState::Planned => "planned",
            StageState::Running { .. } => "interrupted",
            StageState::Cached { .. } => "cached",
            StageState::Completed(_) => "completed",
            StageState::Failed { .. } => "failed",
        }
    }
}

/// A run, folded from its record file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRecord {
    /// The record file this run was read from.
    #[serde(skip)]
    pub path: PathBuf,
    /// Where the record stands against its seal ([`super::seal`]).
    pub seal: Seal,
    pub started: RunStarted,
    /// In plan order.
    pub stages: Vec<(PlannedStage, StageState)>,
    pub nondeterminism: Vec<Event>,
    pub finished: Option<(RunStatus, String)>,
    /// The untrained starting model's checkpoint tree, when the run built one (`RUN:base`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// Lines that could not be read (a torn final write).
    pub torn_lines: usize,
}

impl RunRecord {
    pub fn id(&self) -> &str {
        &self.started.run_id
    }

    pub fn status(&self) -> &'static str {
        match self.finished {
            Some((RunStatus::Ok, _)) => "ok",
            Some((RunStatus::Failed, _)) => "failed",
            None => "interrupted",
        }
    }

    pub fn stage(&self, name: &str) -> Option<&(PlannedStage, StageState)> {
        self.stages.iter().find(|(p, _)| p.name == name)
    }

    /// Refuse a record that no longer matches its seal (edited after sealing, or a damaged
    /// seal). An unsealed record (an interrupted run) passes.
    pub fn check_intact(&self, store: &Store) -> Result<(), SealError> {
        match super::seal::problem(store, self.id(), &self.seal, &self.path) {
            Some(e @ SealError::Broken { .. }) => Err(e),
            _ => Ok(()),
        }
    }

    /// The address of the sealed record: refuses unsealed and broken records.
    pub fn sealed(&self, store: &Store) -> Result<&str, SealError> {
        match &self.seal {
            Seal::Sealed { object } => Ok(object),
            other => Err(
                super::seal::problem(store, self.id(), other, &self.path).unwrap_or(
                    SealError::Unsealed {
                        run: self.id().to_string(),
                        path: self.path.clone(),
                    },
                ),
            ),
        }
    }

    /// Every object this run references (gc roots).
    pub fn objects(&self) -> Vec<String> {
        let mut v = vec![
            self.started.spec_object.clone(),
            self.started.resolved_object.clone(),
        ];
        v.extend(self.base.iter().cloned());
        if let Seal::Sealed { object } = &self.seal {
            v.push(object.clone());
        }
        for (_, st) in &self.stages {
            if let Some(o) = st.output() {
                v.push(o.to_string());
            }
            if let StageState::Completed(c) = st {
                v.extend(c.artifacts.values().cloned());
                v.extend(c.logs.values().cloned());
            }
        }
        v
    }
}

/// Appends events to one run's record.
pub struct RecordWriter {
    run_id: String,
    path: PathBuf,
    file: std::fs::File,
}

impl RecordWriter {
    pub fn create(store: &Store, run_id: &str) -> Result<RecordWriter, StoreError> {
        let dir = store.runs_dir();
        std::fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        let path = dir.join(format!("{run_id}.jsonl"));
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(io_at(&path))?;
        Ok(RecordWriter {
            run_id: run_id.to_string(),
            path,
            file,
        })
    }

    pub fn append(&mut self, event: &Event) -> Result<(), StoreError> {
        let mut line = serde_json::to_vec(event).map_err(|e| StoreError::Malformed {
            what: "run event".into(),
            message: e.to_string(),
        })?;
        line.push(b'\n');
        self.file.write_all(&line).map_err(io_at(&self.path))?;
        self.file.sync_data().map_err(io_at(&self.path))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// End the run: append `run_finished` and seal the record ([`super::seal::seal`]). Returns
    /// the sealed record's address.
    pub fn finish(&mut self, store: &Store, status: RunStatus) -> Result<String, StoreError> {
        self.append(&Event::RunFinished {
            status,
            at: crate::time::now(),
        })?;
        super::seal::seal(store, &self.run_id)
    }
}

/// Fold a record file's text into a run.
pub fn parse_record(text: &str, file: &Path) -> Result<RunRecord, StoreError> {
    let mut started: Option<RunStarted> = None;
    let mut stages: Vec<(PlannedStage, StageState)> = Vec::new();
    let mut nondeterminism = Vec::new();
    let mut finished = None;
    let mut base = None;
    let mut torn = 0;
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        let ev: Event = match serde_json::from_str(line) {
            Ok(e) => e,
            Err(_) => {
                torn += 1;
                continue;
            }
        };
        let set = |stages: &mut Vec<(PlannedStage, StageState)>, name: &str, st: StageState| {
            if let Some(s) = stages.iter_mut().find(|(p, _)| p.name == name) {
                s.1 = st;
            }
        };
        match ev {
            Event::RunStarted(r) => {
                stages = r
                    .stages
                    .iter()
                    .map(|p| (p.clone(), StageState::Planned))
                    .collect();
                started = Some(*r);
            }
            Event::StageStarted { stage, at, .. } => {
                set(&mut stages, &stage, StageState::Running { started_at: at })
            }
            Event::StageCached {
                stage, output, at, ..
            } => set(&mut stages, &stage, StageState::Cached { output, at }),
            Event::StageCompleted(c) => {
                let name = c.stage.clone();
                set(&mut stages, &name, StageState::Completed(c))
            }
            Event::StageFailed {
                stage, error, at, ..
            } => set(&mut stages, &stage, StageState::Failed { error, at }),
            e @ Event::Nondeterminism { .. } => nondeterminism.push(e),
            Event::RunFinished { status, at } => finished = Some((status, at)),
            Event::BaseModel { output, .. } => base = Some(output),
        }
    }
    let started = started.ok_or_else(|| StoreError::Malformed {
        what: format!("run record {}", file.display()),
        message: "no run_started event".into(),
    })?;
    Ok(RunRecord {
        path: file.to_path_buf(),
        seal: Seal::Unsealed,
        started,
        stages,
        nondeterminism,
        finished,
        base,
        torn_lines: torn,
    })
}

/// Every run in the store, oldest first, each with its seal checked ([`RunRecord::seal`]).
/// Unreadable records are skipped with a warning; records that fail their seal are returned
/// (marked broken) so that the commands using them can refuse them by name.
pub fn load_runs(store: &Store) -> Result<Vec<RunRecord>, StoreError> {
    let dir = store.runs_dir();
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Ok(out);
    };
    let mut files: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    for f in files {
        match read_record(store, &f)? {
            Ok(r) => out.push(r),
            Err(e) => tracing::warn!(error = %e, "skipping unreadable run record"),
        }
    }
    out.sort_by(|a, b| {
        (a.started.started_at.as_str(), a.id()).cmp(&(b.started.started_at.as_str(), b.id()))
    });
    Ok(out)
}

/// Read one record file and check it against its seal. The outer error is I/O; the inner one
/// a record that cannot be read at all.
pub fn read_record(
    store: &Store,
    file: &Path,
) -> Result<Result<RunRecord, StoreError>, StoreError> {
    let bytes = std::fs::read(file).map_err(io_at(file))?;
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let mut record = match parse_record(&text, file) {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    record.seal = super::seal::state(store, &stem, &bytes)?;
    if record.started.run_id != stem && !matches!(record.seal, Seal::Broken { .. }) {
        record.seal = Seal::Broken {
            problem: format!(
                "it names run {} but is stored as run {stem}",
                record.started.run_id
            ),
            sealed: None,
        };
    }
    Ok(Ok(record))
}
