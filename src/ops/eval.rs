//! `medrun eval REF --suite FILE`: score a checkpoint with a suite, or reuse cached results.
//!
//! The suite's data must match `datasets.lock` (eval data is pinned like training data): a
//! changed or unpinned file is refused before any work, naming the dataset.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::Device;

use super::Project;
use super::export::{Checkpoint, checkpoint_of};
use crate::env::{DeviceClass, EngineFingerprint};
use crate::error::{Error, Result};
use crate::eval::suite::{self, EvalContext, Evaluated, ScoringOptions};
use crate::lock::state::StateCache;
use crate::lock::{self, LockError, Lockfile, Pin};
use crate::printer::Printer;
use crate::spec::{self, DeviceSpec, RelPath, Suite};
use crate::store::Store;

#[derive(Debug, Clone, Copy)]
pub struct EvalOptions {
    pub no_cache: bool,
    pub scoring: ScoringOptions,
    /// Sequences per forward pass (results do not depend on it).
    pub batch_size: usize,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            no_cache: false,
            scoring: ScoringOptions::default(),
            batch_size: 8,
        }
    }
}

/// Digest a suite's data and check it against the lock. The data is hashed fresh (the state
/// cache is updated, never read): these digests go into the results key and gate decisions.
pub fn suite_pins(project: &Project, suites: &[Suite]) -> Result<BTreeMap<RelPath, Pin>> {
    let lockfile = Lockfile::read(&project.root)?;
    let mut cache = StateCache::fresh(&project.store_dir);
    let mut pins = BTreeMap::new();
    let mut names: BTreeMap<RelPath, Vec<String>> = BTreeMap::new();
    for s in suites {
        for (n, d) in &s.datasets {
            let what = format!("dataset `{n}` of suite `{}`", s.name);
            let pin = lock::digest(&project.root, &d.path, d.format, &what, &mut cache)?;
            pins.insert(d.path.clone(), pin);
            names
                .entry(d.path.clone())
                .or_default()
                .push(format!("{}/{n}", s.name));
        }
    }
    cache.save(&project.store_dir);
    let stale = lock::compare(lockfile.as_ref(), &pins, &names);
    if !stale.is_empty() {
        return Err(LockError::Stale(stale).into());
    }
    Ok(pins)
}

/// Load a suite file given on the command line (relative to the working directory or the root).
pub fn load_suite_arg(project: &Project, file: &Path) -> Result<Suite> {
    let abs = std::fs::canonicalize(file)
        .map_err(|e| Error::Io(format!("cannot read suite {}: {e}", file.display())))?;
    let rel = abs
        .strip_prefix(&project.root)
        .map_err(|_| Error::Problems {
            message: format!(
                "suite {} is outside the project at {}",
                file.display(),
                project.root.display()
            ),
            hint: "eval suites live in the project (evals/*.yaml) so their data can be pinned"
                .into(),
        })?;
    let rel =
        spec::resolve::normalize_rel(&rel.to_string_lossy()).map_err(|m| Error::Problems {
            message: format!("suite path {}: {m}", file.display()),
            hint: "pass a path inside the project".into(),
        })?;
    Ok(spec::load_suite(&project.root, rel)?)
}

/// Evaluate one checkpoint with several suites. The checkpoint is verified first (its tree and
/// every object in it hash to their addresses), so cached results are never reported, or fed
/// to a gate, for a checkpoint whose bytes are damaged.
pub fn eval_suites(
    project: &Project,
    store: &Store,
    ck: &Checkpoint,
    suites: &[Suite],
    opts: &EvalOptions,
    printer: &Printer,
) -> Result<Vec<Evaluated>> {
    super::export::verify_checkpoint(store, ck)?;
    let pins = suite_pins(project, suites)?;
    let engine = EngineFingerprint::current();
    let device_class = DeviceClass::detect(DeviceSpec::Cpu)?;
    let device = Device::Cpu;
    let cx = EvalContext {
        root: &project.root,
        store,
        pins: &pins,
        engine: &engine,
        device_class: &device_class,
        device: &device,
        scoring: opts.scoring,
        batch_size: opts.batch_size,
        no_cache: opts.no_cache,
        seed: 1234,
    };
    let mut out = Vec::new();
    for s in suites {
        let mut progress = |task: &str| printer.status(&format!("  eval {:<20} {task}", s.name));
        let ev = suite::evaluate(&cx, &ck.output, &ck.tree, s, &mut progress).map_err(|e| {
            Error::Problems {
                hint: e.hint(),
                message: format!("evaluating suite `{}`: {e}", s.name),
            }
        })?;
        out.push(ev);
    }
    Ok(out)
}

pub fn eval(
    project: &Project,
    reference: &str,
    suite_file: &Path,
    opts: &EvalOptions,
    printer: &Printer,
) -> Result<(Checkpoint, Evaluated)> {
    let store = Store::open_existing(&project.store_dir)?;
    let ck = checkpoint_of(&store, &project.root, reference)?;
    let suite = load_suite_arg(project, suite_file)?;
    let _lock = store.lock_shared()?;
    let mut evs = eval_suites(
        project,
        &store,
        &ck,
        std::slice::from_ref(&suite),
        opts,
        printer,
    )?;
    let ev = evs.pop().ok_or_else(|| Error::Io("no results".into()))?;
    Ok((ck, ev))
}
