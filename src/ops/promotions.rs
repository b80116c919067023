//! `medrun promotions verify`, and the verification that every use of a channel runs first
//! (`promote`, `export CHANNEL`, and any REF that names a channel): each entry of
//! `promotions.yaml` re-derived from the store and git ([`crate::promotions::verify`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use super::Project;
use crate::error::Result;
use crate::eval::gate::Scores;
use crate::eval::scores::scores_of;
use crate::eval::suite::{Results, read_results, read_samples};
use crate::lineage::{self, RefError, Target};
use crate::promotions::verify::{self, Options, Report, ResultsReader};
use crate::promotions::{self, History, PromotionError};
use crate::store::{Store, Tree};

/// Reads results trees as `medrun eval` stored them.
pub struct StoredResults;

impl ResultsReader for StoredResults {
    fn scores(
        &self,
        store: &Store,
        suites: &BTreeMap<String, String>,
        checkpoint: &str,
    ) -> std::result::Result<Scores, String> {
        let mut read: Vec<(Results, BTreeMap<String, Vec<Value>>)> = Vec::new();
        for (suite, id) in suites {
            let tree = Tree::load(store, id).map_err(|e| format!("suite `{suite}`: {e}"))?;
            for (name, f) in &tree.entries {
                match store.check_object(&f.object) {
                    Ok(None) => {}
                    Ok(Some(actual)) => {
                        return Err(format!(
                            "suite `{suite}`: {name} (object {}) is corrupt: its bytes hash to {actual}",
                            f.object
                        ));
                    }
                    Err(e) => return Err(format!("suite `{suite}`: {name}: {e}")),
                }
            }
            let r = read_results(store, id).map_err(|e| format!("suite `{suite}`: {e}"))?;
            if r.suite != *suite {
                return Err(format!(
                    "the results listed as suite `{suite}` are suite `{}`'s",
                    r.suite
                ));
            }
            if r.checkpoint != checkpoint {
                return Err(format!(
                    "suite `{suite}`'s results score checkpoint {}, not {checkpoint}",
                    r.checkpoint
                ));
            }
            let samples = read_samples(store, id).map_err(|e| format!("suite `{suite}`: {e}"))?;
            read.push((r, samples));
        }
        let pairs: Vec<(&Results, &BTreeMap<String, Vec<Value>>)> =
            read.iter().map(|(r, s)| (r, s)).collect();
        Ok(scores_of(&pairs))
    }
}

/// Verify `history` (the file at `root`): the check a use of a channel runs. Checkpoint files
/// are checked for presence and size; the one that is then read is hashed as it is read.
pub fn check(root: &Path, store: &Store, history: &History) -> Result<Report, PromotionError> {
    verify::verify(
        root,
        store,
        history,
        &StoredResults,
        Options { deep: false },
    )
    .into_result()
}

/// [`lineage::resolve_with_channels`] with the verification: a channel name resolves only when
/// the whole promotion history re-derives.
pub fn resolve(store: &Store, root: &Path, reference: &str) -> Result<Target, RefError> {
    let verify = |h: &History| check(root, store, h).map(|_| ());
    lineage::resolve_with_channels(store, root, reference, &verify)
}

/// What `medrun promotions verify` prints.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyOutcome {
    pub ok: bool,
    pub channels: BTreeMap<String, String>,
    pub seconds: f64,
    #[serde(flatten)]
    pub report: Report,
}

/// `medrun promotions verify`: every entry re-derived, every checkpoint file re-hashed, and the
/// file's git history walked.
pub fn verify_all(project: &Project) -> Result<VerifyOutcome> {
    let t0 = Instant::now();
    let history = promotions::load(&project.root)?;
    let store = if history.is_empty() {
        Store::open_existing(&project.store_dir).ok()
    } else {
        Some(Store::open_existing(&project.store_dir)?)
    };
    let report = match &store {
        Some(s) => verify::verify(
            &project.root,
            s,
            &history,
            &StoredResults,
            Options { deep: true },
        ),
        None => verify::history_only(&project.root),
    };
    let channels = history
        .channels()
        .into_iter()
        .filter_map(|c| {
            history
                .holder(c)
                .map(|e| (c.to_string(), e.checkpoint.clone()))
        })
        .collect();
    Ok(VerifyOutcome {
        ok: report.ok(),
        channels,
        seconds: t0.elapsed().as_secs_f64(),
        report,
    })
}
