//! Checking what a rebuilt medrun reports, against the store and the run record.
//!
//! The rebuilt binary is a child process whose stdout is only a claim. From it medrun takes the
//! produced output id of each stage and nothing else: the stage set must be exactly the one
//! asked for, each produced tree and every object it lists must be in the store and hash to its
//! id (a full re-hash), and the verdict (identical or not, the differing files, the first
//! divergent step) is computed here from the record and the store. A report that is malformed,
//! names other stages or claims trees the store does not hold is an error, never a pass.

use serde::Deserialize;

use super::{StageRepro, compare, problem};
use crate::error::{Error, Result};
use crate::lineage::RunRecord;
use crate::store::{Store, StoreError, Tree, is_object_id};

/// The only fields read from the child's report.
#[derive(Debug, Deserialize)]
struct ChildReport {
    run: String,
    stages: Vec<ChildStage>,
}

#[derive(Debug, Deserialize)]
struct ChildStage {
    stage: String,
    produced: String,
}

fn lie(message: String) -> Error {
    problem(
        format!("the rebuilt medrun's report cannot be trusted: {message}"),
        "nothing was accepted from it; build the recorded commit by hand and reproduce with that binary to see what it does, and run `medrun verify`",
    )
}

/// The stages a reproduction of `run` covers (all, or `only`), with their recorded outputs.
pub(crate) fn expected_stages(
    run: &RunRecord,
    only: Option<&str>,
) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (planned, state) in &run.stages {
        if only.is_some_and(|s| s != planned.name) {
            continue;
        }
        let recorded = state.output().ok_or_else(|| {
            problem(
                format!(
                    "stage `{}` of run {} has no recorded output to compare with",
                    planned.name,
                    run.id()
                ),
                "reproduce a run whose stages completed",
            )
        })?;
        out.push((planned.name.clone(), recorded.to_string()));
    }
    Ok(out)
}

/// Re-hash a tree and every object it lists. Errors name the stage and the object.
fn check_tree(store: &Store, stage: &str, id: &str) -> Result<Tree> {
    if !is_object_id(id) {
        return Err(lie(format!("stage `{stage}`: `{id}` is not an object id")));
    }
    let tree = Tree::load(store, id).map_err(|e| {
        lie(format!(
            "stage `{stage}`: its output tree {id} is not a valid tree in the store: {e}"
        ))
    })?;
    for (name, entry) in &tree.entries {
        match store.check_object(&entry.object) {
            Ok(None) => {}
            Ok(Some(actual)) => {
                return Err(lie(format!(
                    "stage `{stage}`: file `{name}` of tree {id} is object {}, whose bytes hash to {actual}",
                    entry.object
                )));
            }
            Err(StoreError::Missing { .. }) => {
                return Err(lie(format!(
                    "stage `{stage}`: file `{name}` of tree {id} is object {}, which is not in the store",
                    entry.object
                )));
            }
            Err(e) => return Err(e.into()),
        }
        let size = std::fs::metadata(store.object_path(&entry.object))
            .map(|m| m.len())
            .map_err(|e| Error::Io(format!("cannot read object {}: {e}", entry.object)))?;
        if size != entry.bytes {
            return Err(lie(format!(
                "stage `{stage}`: file `{name}` of tree {id} lists {} bytes, its object has {size}",
                entry.bytes
            )));
        }
    }
    Ok(tree)
}

/// Verify a rebuilt medrun's stdout against the store and the record, and judge it here.
pub(crate) fn verify_child_report(
    store: &Store,
    run: &RunRecord,
    only: Option<&str>,
    stdout: &[u8],
) -> Result<Vec<StageRepro>> {
    let report: ChildReport = serde_json::from_slice(stdout).map_err(|e| {
        lie(format!(
            "its stdout is not a reproduction report ({e}); it began with {:?}",
            String::from_utf8_lossy(&stdout[..stdout.len().min(200)])
        ))
    })?;
    if report.run != run.id() {
        return Err(lie(format!(
            "it reports on run `{}`, not on run {}",
            report.run,
            run.id()
        )));
    }
    let expected = expected_stages(run, only)?;
    let got: Vec<&str> = report.stages.iter().map(|s| s.stage.as_str()).collect();
    let want: Vec<&str> = expected.iter().map(|(s, _)| s.as_str()).collect();
    if got != want {
        return Err(lie(format!(
            "it reports the stages [{}], but the reproduction covers [{}]",
            got.join(", "),
            want.join(", ")
        )));
    }
    let mut stages = Vec::new();
    for (child, (name, recorded)) in report.stages.iter().zip(&expected) {
        let produced = check_tree(store, name, &child.produced)?;
        stages.push(compare(
            store,
            name,
            recorded,
            child.produced.clone(),
            &produced,
        ));
    }
    Ok(stages)
}

#[cfg(test)]
mod tests;
