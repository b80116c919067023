//! `medrun explain`: for each stage not in the store, what changed since the last run of the same
//! spec (by name), field by field. A stage whose recorded output is damaged (a missing or corrupt
//! object, found by the plan's verification) is explained as such.

use std::path::Path;

use serde::Serialize;

use super::plan;
use crate::error::Result;
use crate::hash::explain::{Change, diff};
use crate::lineage::load_runs;
use crate::store::Store;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StageExplanation {
    /// In the store: nothing to do.
    Fresh { output: String },
    /// The key has a recorded output, but it does not verify: the stage runs again.
    Damaged { problem: String },
    /// No earlier run of this spec has this stage.
    NeverRun,
    /// Same key as the last run, but that run did not finish the stage.
    NotFinished {
        last_run: String,
        last_state: String,
    },
    /// The key changed: these fields differ from the last run's.
    Changed {
        last_run: String,
        changes: Vec<Change>,
        /// True when the stage's own inputs are unchanged and only its parent's key moved.
        only_parent: bool,
    },
    /// The last run's key inputs are not in the store (cleaned up or another store).
    Unknown { last_run: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct Explained {
    pub stage: String,
    pub key: String,
    #[serde(flatten)]
    pub why: StageExplanation,
}

pub fn explain(spec_path: &Path, store: Option<&Path>) -> Result<Vec<Explained>> {
    let plan = plan::plan(spec_path, store, false)?;
    let store = Store::open_existing(&plan.project.store_dir).ok();
    let runs = match &store {
        Some(s) => load_runs(s)?,
        None => Vec::new(),
    };
    let name = &plan.loaded.spec.name;
    let mut out = Vec::new();
    for (ps, sk) in plan.stages.iter().zip(&plan.keys.stages) {
        let why = if let Some(o) = &ps.output {
            StageExplanation::Fresh { output: o.clone() }
        } else if let Some(problem) = &ps.damaged {
            StageExplanation::Damaged {
                problem: problem.clone(),
            }
        } else {
            // The newest run of this spec that planned this stage.
            let last = runs
                .iter()
                .rev()
                .filter(|r| &r.started.spec_name == name)
                .find_map(|r| r.stage(&ps.name).map(|(p, st)| (r, p, st)));
            match (last, &store) {
                (None, _) | (_, None) => StageExplanation::NeverRun,
                (Some((r, p, st)), Some(s)) => {
                    if p.key == ps.key {
                        StageExplanation::NotFinished {
                            last_run: r.id().to_string(),
                            last_state: st.label().to_string(),
                        }
                    } else {
                        match s.key_inputs(&p.key)? {
                            None => StageExplanation::Unknown {
                                last_run: r.id().to_string(),
                            },
                            Some(old) => {
                                let new = crate::hash::canonical_value(&sk.inputs)?;
                                let changes = diff(&old, &new);
                                let only_parent = !changes.is_empty()
                                    && changes.iter().all(|c| c.field == "parent");
                                StageExplanation::Changed {
                                    last_run: r.id().to_string(),
                                    changes,
                                    only_parent,
                                }
                            }
                        }
                    }
                }
            }
        };
        out.push(Explained {
            stage: ps.name.clone(),
            key: ps.key.clone(),
            why,
        });
    }
    Ok(out)
}

pub fn to_text(ex: &[Explained]) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    for (i, e) in ex.iter().enumerate() {
        let short = &e.key[..12];
        match &e.why {
            StageExplanation::Fresh { output } => {
                let _ = writeln!(
                    o,
                    "{}: fresh (key {short}, output {})",
                    e.stage,
                    &output[..12]
                );
            }
            StageExplanation::Damaged { problem } => {
                let _ = writeln!(
                    o,
                    "{}: stored output damaged, runs again to restore it (key {short}): {problem}",
                    e.stage
                );
            }
            StageExplanation::NeverRun => {
                let _ = writeln!(o, "{}: never run (key {short})", e.stage);
            }
            StageExplanation::NotFinished {
                last_run,
                last_state,
            } => {
                let _ = writeln!(
                    o,
                    "{}: same key as run {}, where it was {last_state} (key {short})",
                    e.stage,
                    &last_run[..12.min(last_run.len())]
                );
            }
            StageExplanation::Unknown { last_run } => {
                let _ = writeln!(
                    o,
                    "{}: key changed since run {}, whose key inputs are no longer in the store",
                    e.stage,
                    &last_run[..12.min(last_run.len())]
                );
            }
            StageExplanation::Changed {
                last_run,
                changes,
                only_parent,
            } => {
                let lr = &last_run[..12.min(last_run.len())];
                if *only_parent {
                    let parent = if i > 0 { ex[i - 1].stage.as_str() } else { "?" };
                    let _ = writeln!(
                        o,
                        "{}: stale because its parent stage `{parent}` changed (since run {lr})",
                        e.stage
                    );
                } else {
                    let first = changes
                        .iter()
                        .find(|c| c.field != "parent")
                        .unwrap_or(&changes[0]);
                    let _ = writeln!(
                        o,
                        "{}: stale since run {lr}: {} changed",
                        e.stage, first.field
                    );
                    for c in changes {
                        let _ = writeln!(o, "    {c}");
                    }
                }
            }
        }
    }
    o
}
