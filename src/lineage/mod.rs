//! Lineage: append-only run records, REF resolution, and provenance views (text, JSON,
//! OpenLineage 2-0-2 RunEvents).

pub mod openlineage;
pub mod record;
pub mod render;

pub use record::{Event, RunRecord, RunStatus, StageState, load_runs};

use crate::store::{Store, StoreError, is_object_id};

#[derive(Debug, thiserror::Error)]
pub enum RefError {
    #[error("no run or artifact matches `{0}`")]
    NotFound(String),
    #[error("`{reference}` is ambiguous: it matches {}", .candidates.join(", "))]
    Ambiguous {
        reference: String,
        candidates: Vec<String>,
    },
    #[error("run {run} has no stage `{stage}` (stages: {})", .stages.join(", "))]
    NoStage {
        run: String,
        stage: String,
        stages: Vec<String>,
    },
    #[error("the store has no runs yet")]
    NoRuns,
    #[error(
        "`{0}` is not a REF: use a run id or prefix, `latest`, `RUN:STAGE`, or an artifact hash"
    )]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RefError {
    pub fn hint(&self) -> String {
        match self {
            RefError::Ambiguous { .. } => "use a longer prefix".into(),
            RefError::NoRuns => "run `medrun run SPEC` first".into(),
            RefError::Store(e) => e.hint(),
            _ => "list runs with `medrun lineage latest`, or use a full run id or artifact hash"
                .into(),
        }
    }
}

/// What a REF names.
#[derive(Debug, Clone)]
pub enum Target {
    Run(Box<RunRecord>),
    Stage(Box<RunRecord>, String),
    Object(String),
}

/// The shortest prefix length accepted for ids.
pub const MIN_PREFIX: usize = 4;

fn run_matches<'a>(runs: &'a [RunRecord], r: &str) -> Result<&'a RunRecord, RefError> {
    if r == "latest" {
        return runs.last().ok_or(RefError::NoRuns);
    }
    let hits: Vec<&RunRecord> = runs.iter().filter(|x| x.id().starts_with(r)).collect();
    match hits.as_slice() {
        [one] => Ok(one),
        [] => Err(RefError::NotFound(r.to_string())),
        many => Err(RefError::Ambiguous {
            reference: r.to_string(),
            candidates: many.iter().map(|x| format!("run {}", x.id())).collect(),
        }),
    }
}

/// Resolve a REF: a run id or unambiguous prefix, `latest`, `RUN:STAGE`, or an artifact hash
/// (or unambiguous prefix).
pub fn resolve(store: &Store, reference: &str) -> Result<Target, RefError> {
    let runs = load_runs(store)?;
    if let Some((run, stage)) = reference.split_once(':') {
        let r = run_matches(&runs, run)?;
        if r.stage(stage).is_none() {
            return Err(RefError::NoStage {
                run: r.id().to_string(),
                stage: stage.to_string(),
                stages: r.stages.iter().map(|(p, _)| p.name.clone()).collect(),
            });
        }
        return Ok(Target::Stage(Box::new(r.clone()), stage.to_string()));
    }
    if reference == "latest" {
        return Ok(Target::Run(Box::new(run_matches(&runs, "latest")?.clone())));
    }
    let hexish = reference.len() >= MIN_PREFIX
        && reference.len() <= 64
        && reference
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !hexish {
        return Err(RefError::Invalid(reference.to_string()));
    }
    let run_hits: Vec<&RunRecord> = runs
        .iter()
        .filter(|x| x.id().starts_with(reference))
        .collect();
    let obj_hits = if is_object_id(reference) {
        if store.contains(reference) {
            vec![reference.to_string()]
        } else {
            Vec::new()
        }
    } else {
        store.objects_with_prefix(reference)?
    };
    match (run_hits.as_slice(), obj_hits.as_slice()) {
        ([r], []) => Ok(Target::Run(Box::new((*r).clone()))),
        ([], [o]) => Ok(Target::Object(o.clone())),
        ([], []) => Err(RefError::NotFound(reference.to_string())),
        (rs, os) => Err(RefError::Ambiguous {
            reference: reference.to_string(),
            candidates: rs
                .iter()
                .map(|r| format!("run {}", r.id()))
                .chain(os.iter().map(|o| format!("object {o}")))
                .collect(),
        }),
    }
}

/// The runs and stages that produced an object (as a stage output or an artifact), oldest first.
pub fn producers(runs: &[RunRecord], object: &str) -> Vec<(RunRecord, String, Option<String>)> {
    let mut out = Vec::new();
    for r in runs {
        for (p, st) in &r.stages {
            if st.output() == Some(object) {
                out.push((r.clone(), p.name.clone(), None));
            } else if let StageState::Completed(c) = st
                && let Some((name, _)) = c.artifacts.iter().find(|(_, id)| id.as_str() == object)
            {
                out.push((r.clone(), p.name.clone(), Some(name.clone())));
            }
        }
        if r.started.spec_object == object {
            out.push((r.clone(), String::new(), Some("spec".into())));
        }
    }
    out
}
