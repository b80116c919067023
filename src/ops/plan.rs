//! `medrun plan`: resolve a spec, digest its inputs (through the state cache), compute every key
//! and say which stages are already in the store. Writes nothing but the state cache.
//!
//! A stage counts as cached only when its output verifies (the tree and every object it lists
//! hash to their addresses), the same check `run` makes, so `plan` and `explain` never call a
//! stage cached that `run` would rebuild.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::Project;
use crate::env::{DeviceClass, EngineFingerprint};
use crate::error::Result;
use crate::hash::{self, RunKeys};
use crate::lock::state::StateCache;
use crate::lock::{self, Lockfile, Pin, Stale};
use crate::spec::{self, Format, LoadedSpec, ModelSource, RelPath, TemplateSpec, TokenizerSpec};
use crate::store::{CachedOutput, Store};

#[derive(Debug, Clone, Serialize)]
pub struct PlanStage {
    pub name: String,
    pub kind: String,
    pub key: String,
    pub parent: Option<String>,
    /// The recorded output when the stage is already in the store (and verifies).
    pub output: Option<String>,
    /// Why a recorded output cannot be used (a missing or corrupt object): the stage runs again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub damaged: Option<String>,
}

/// How a plan digests the spec's inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digests {
    /// Through the state cache, a hint (`plan`, `explain`).
    Cached,
    /// Every file hashed fresh; the cache is updated but never read (`run`: the digests go into
    /// keys, the run record and the `--locked` check).
    Fresh,
    /// Every file hashed fresh; the cache is neither read nor written (`plan --verify`).
    Uncached,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub project: Project,
    pub loaded: LoadedSpec,
    pub pins: BTreeMap<RelPath, Pin>,
    /// Path → names that use it (`corpus`, `medical-demo/mc`, `model`).
    pub names: BTreeMap<RelPath, Vec<String>>,
    pub keys: RunKeys,
    pub engine: EngineFingerprint,
    pub device: DeviceClass,
    pub lock: Option<Lockfile>,
    pub stale: Vec<Stale>,
    pub stages: Vec<PlanStage>,
    /// The state cache as updated by this plan's digests, for saving once the store exists.
    pub(crate) state: StateCache,
    /// The store, if one exists; it remembers the objects the plan already verified.
    pub(crate) store: Option<Store>,
}

/// Names by which a spec refers to each input path.
pub fn input_names(s: &spec::Spec) -> BTreeMap<RelPath, Vec<String>> {
    let mut names: BTreeMap<RelPath, Vec<String>> = BTreeMap::new();
    for (n, d) in &s.datasets {
        names.entry(d.path.clone()).or_default().push(n.clone());
    }
    for suite in &s.evals {
        for (n, d) in &suite.datasets {
            names
                .entry(d.path.clone())
                .or_default()
                .push(format!("{}/{n}", suite.name));
        }
    }
    if let ModelSource::From(p) = &s.model.source {
        names.entry(p.clone()).or_default().push("model".into());
    }
    if let TokenizerSpec::Path(p) = &s.tokenizer {
        names.entry(p.clone()).or_default().push("tokenizer".into());
    }
    if let TemplateSpec::File(p) = &s.template {
        names.entry(p.clone()).or_default().push("template".into());
    }
    names
}

/// Digest every input of a spec.
pub fn digest_inputs(
    project: &Project,
    loaded: &LoadedSpec,
    cache: &mut StateCache,
) -> Result<BTreeMap<RelPath, Pin>> {
    let names = input_names(&loaded.spec);
    let fetchable = loaded.spec.fetchable_inputs();
    let mut pins = BTreeMap::new();
    for (path, format) in loaded.spec.all_inputs() {
        let what = match names.get(&path) {
            Some(n) => format!(
                "{} `{}` of {}",
                if format == Format::Model {
                    "model"
                } else {
                    "input"
                },
                n.join("`, `"),
                loaded.display.display()
            ),
            None => format!("input of {}", loaded.display.display()),
        };
        let pin = lock::digest(&project.root, &path, format, &what, cache)
            .map_err(|e| with_fetch(e, &fetchable))?;
        pins.insert(path, pin);
    }
    Ok(pins)
}

/// Attach the spec's fetch command to a missing-input error, for the hint.
pub fn with_fetch(e: lock::LockError, fetchable: &BTreeMap<RelPath, String>) -> lock::LockError {
    match e {
        lock::LockError::Missing {
            path,
            what,
            fetch: None,
        } => {
            let fetch = fetchable.get(&path).cloned();
            lock::LockError::Missing { path, what, fetch }
        }
        other => other,
    }
}

/// Whether a stage output is fully present and intact in the store: the tree and every object it
/// lists hash to their addresses.
pub fn output_present(store: &Store, output: &str) -> bool {
    store.verify_tree(output).is_ok()
}

/// `plan` through the state cache, or (`verify`) hashing every input without it.
pub fn plan(spec_path: &Path, store: Option<&Path>, verify: bool) -> Result<Plan> {
    let digests = if verify {
        Digests::Uncached
    } else {
        Digests::Cached
    };
    plan_with(spec_path, store, digests)
}

pub fn plan_with(spec_path: &Path, store: Option<&Path>, digests: Digests) -> Result<Plan> {
    let project = Project::for_spec(spec_path, store)?;
    let loaded = spec::load_spec(&project.root, spec_path)?;
    // Read the lock before anything is written, so a malformed lock leaves no trace.
    let lockfile = Lockfile::read(&project.root)?;
    let device = DeviceClass::detect(loaded.spec.device)?;
    let engine = EngineFingerprint::current();
    let mut cache = match digests {
        Digests::Cached => StateCache::load(&project.store_dir),
        Digests::Fresh => StateCache::fresh(&project.store_dir),
        Digests::Uncached => StateCache::disabled(),
    };
    let pins = digest_inputs(&project, &loaded, &mut cache)?;
    cache.save(&project.store_dir);
    let keys = hash::run_keys(&loaded.spec, &pins, &engine, &device)?;
    let names = input_names(&loaded.spec);
    let stale = lock::compare(lockfile.as_ref(), &pins, &names);
    let store = Store::open_existing(&project.store_dir).ok();
    let mut stages = Vec::new();
    for (sk, st) in keys.stages.iter().zip(&loaded.spec.stages) {
        let (output, damaged) = match &store {
            Some(s) => match s.cached_output(&sk.key)? {
                CachedOutput::Intact { output, .. } => (Some(output), None),
                CachedOutput::Damaged { problem, .. } => (None, Some(problem)),
                CachedOutput::None => (None, None),
            },
            None => (None, None),
        };
        stages.push(PlanStage {
            name: sk.name.clone(),
            kind: st.kind.to_string(),
            key: sk.key.clone(),
            parent: sk.inputs.parent.clone(),
            output,
            damaged,
        });
    }
    Ok(Plan {
        project,
        loaded,
        pins,
        names,
        keys,
        engine,
        device,
        lock: lockfile,
        stale,
        stages,
        state: cache,
        store,
    })
}

impl Plan {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "spec": self.loaded.display.to_string_lossy(),
            "name": self.loaded.spec.name,
            "run_key": self.keys.run_key,
            "stages": self.stages,
            "lock": {
                "up_to_date": self.stale.is_empty(),
                "changed": self.stale,
            },
            "engine": self.engine,
            "device": self.device,
        })
    }

    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "run {}  ({})",
            self.loaded.spec.name,
            self.loaded.display.display()
        );
        let _ = writeln!(o, "run key {}", self.keys.run_key);
        let w = self
            .stages
            .iter()
            .map(|s| s.name.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let _ = writeln!(o, "{:<w$}  {:<4}  {:<64}  status", "stage", "kind", "key");
        for s in &self.stages {
            let status = match (&s.output, &s.damaged) {
                (Some(out), _) => format!("cached (output {})", &out[..12]),
                (None, Some(problem)) => format!("to run (stored output damaged: {problem})"),
                (None, None) => "to run".into(),
            };
            let _ = writeln!(o, "{:<w$}  {:<4}  {}  {status}", s.name, s.kind, s.key);
        }
        if !self.stale.is_empty() {
            let what = if self.lock.is_none() {
                "datasets.lock does not exist".to_string()
            } else {
                format!(
                    "datasets.lock is out of date for {} input(s)",
                    self.stale.len()
                )
            };
            let _ = writeln!(o, "{what}: run `medrun lock`");
        }
        o
    }
}
