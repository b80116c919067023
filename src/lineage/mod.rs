//! Lineage: append-only run records, REF resolution, and provenance views (text, JSON,
//! OpenLineage 2-0-2 RunEvents).
//!
//! A REF is a run id or unambiguous prefix, `latest`, `RUN:STAGE`, an artifact hash (or
//! unambiguous prefix), or, through [`resolve_with_channels`], a channel name from the project's
//! `promotions.yaml` (`production`), which names the checkpoint currently holding the channel.

pub mod openlineage;
pub mod record;
pub mod render;

pub use record::{Event, RunRecord, RunStatus, StageState, load_runs};

use std::path::Path;

use crate::promotions::{self, PromotionError};
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
    #[error("channel `{channel}` is held by checkpoint {checkpoint}, which is not in this store")]
    ChannelMissing { channel: String, checkpoint: String },
    #[error(transparent)]
    Promotions(#[from] PromotionError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RefError {
    pub fn hint(&self) -> String {
        match self {
            RefError::Ambiguous { candidates, .. }
                if candidates.iter().any(|c| c.starts_with("channel ")) =>
            {
                "name the run or object by a longer prefix, and the channel by its checkpoint hash (listed in promotions.yaml)".into()
            }
            RefError::Ambiguous { .. } => "use a longer prefix".into(),
            RefError::NoRuns => "run `medrun run SPEC` first".into(),
            RefError::Store(e) => e.hint(),
            RefError::Promotions(e) => e.hint(),
            RefError::ChannelMissing { .. } => {
                "use the store that holds it (`--store`), or run the promoted run's spec again to rebuild it (`promotions.yaml` names the run and spec)".into()
            }
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
        let base = stage == crate::spec::BASE_STAGE && r.base.is_some();
        if r.stage(stage).is_none() && !base {
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

/// How a target reads in an "ambiguous" message.
fn describe(t: &Target) -> String {
    match t {
        Target::Run(r) => format!("run {}", r.id()),
        Target::Stage(r, s) => format!("stage {}:{s}", r.id()),
        Target::Object(o) => format!("object {o}"),
    }
}

/// [`resolve`], plus channel names: a REF that names a channel in `root/promotions.yaml`
/// resolves to the checkpoint currently holding it ([`Target::Object`]), which must be in the
/// store. A channel name that also reads as another REF (`latest`, a run or object prefix) is
/// ambiguous. REFs that are not channels resolve as [`resolve`] does; when `promotions.yaml` is
/// unreadable they still do, and only a REF that could be a channel reports the file's error.
pub fn resolve_with_channels(
    store: &Store,
    root: &Path,
    reference: &str,
) -> Result<Target, RefError> {
    if reference.contains(':') {
        return resolve(store, reference);
    }
    let plain = resolve(store, reference);
    let history = match promotions::load(root) {
        Ok(h) => h,
        Err(e) => {
            return match plain {
                Ok(t) => {
                    tracing::warn!(
                        "promotions.yaml is unreadable ({e}); `{reference}` is not taken as a channel"
                    );
                    Ok(t)
                }
                Err(RefError::NotFound(_) | RefError::Invalid(_) | RefError::NoRuns) => {
                    Err(e.into())
                }
                Err(other) => Err(other),
            };
        }
    };
    let Some(entry) = history.holder(reference) else {
        return plain;
    };
    let channel = format!("channel {reference} (checkpoint {})", entry.checkpoint);
    let others = match plain {
        Ok(t) => vec![describe(&t)],
        Err(RefError::Ambiguous { candidates, .. }) => candidates,
        Err(RefError::NotFound(_) | RefError::Invalid(_) | RefError::NoRuns) => Vec::new(),
        Err(e) => return Err(e),
    };
    if !others.is_empty() {
        return Err(RefError::Ambiguous {
            reference: reference.to_string(),
            candidates: std::iter::once(channel).chain(others).collect(),
        });
    }
    if !store.contains(&entry.checkpoint) {
        return Err(RefError::ChannelMissing {
            channel: reference.to_string(),
            checkpoint: entry.checkpoint.clone(),
        });
    }
    Ok(Target::Object(entry.checkpoint.clone()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promotions::{Entry, append};

    fn promote(root: &Path, channel: &str, checkpoint: &str, previous: Option<&str>) {
        append(
            root,
            &Entry {
                channel: channel.into(),
                promoted_at: "2026-03-01T12:00:00.000Z".into(),
                checkpoint: checkpoint.into(),
                results: "e".repeat(64),
                run: "0123456789abcdef0123456789abcdef".into(),
                stage: "sft".into(),
                spec: "runs/x.yaml".into(),
                previous: previous.map(str::to_string),
                gates: Vec::new(),
            },
        )
        .expect("append");
    }

    fn object(t: Result<Target, RefError>) -> String {
        match t {
            Ok(Target::Object(o)) => o,
            other => panic!("expected an object, got {other:?}"),
        }
    }

    #[test]
    fn a_channel_resolves_to_its_current_checkpoint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let store = Store::open(&root.join(".medrun")).expect("store");
        let a = store.put_bytes(b"checkpoint a").expect("put");
        let b = store.put_bytes(b"checkpoint b").expect("put");
        // No promotions.yaml: channel names are not REFs, everything else is unchanged.
        assert!(matches!(
            resolve_with_channels(&store, root, "production"),
            Err(RefError::Invalid(_))
        ));
        assert_eq!(object(resolve_with_channels(&store, root, &a)), a);
        promote(root, "production", &a, None);
        assert_eq!(object(resolve_with_channels(&store, root, "production")), a);
        promote(root, "production", &b, Some(&a));
        assert_eq!(object(resolve_with_channels(&store, root, "production")), b);
        // Unknown channels, hashes and `resolve` itself behave as before.
        assert!(matches!(
            resolve_with_channels(&store, root, "staging"),
            Err(RefError::Invalid(_))
        ));
        assert_eq!(object(resolve_with_channels(&store, root, &a[..12])), a);
        assert!(matches!(
            resolve(&store, "production"),
            Err(RefError::Invalid(_))
        ));
        assert!(matches!(
            resolve_with_channels(&store, root, "latest"),
            Err(RefError::NoRuns)
        ));
    }

    #[test]
    fn a_channel_whose_checkpoint_is_not_in_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let store = Store::open(&root.join(".medrun")).expect("store");
        promote(root, "production", &"c".repeat(64), None);
        let err = resolve_with_channels(&store, root, "production").expect_err("missing");
        assert!(matches!(err, RefError::ChannelMissing { .. }), "{err}");
        assert!(err.hint().contains("--store"));
    }

    #[test]
    fn a_channel_named_like_a_prefix_is_ambiguous() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let store = Store::open(&root.join(".medrun")).expect("store");
        let a = store.put_bytes(b"checkpoint a").expect("put");
        let b = store.put_bytes(b"checkpoint b").expect("put");
        let name = &a[..8];
        promote(root, name, &b, None);
        let err = resolve_with_channels(&store, root, name).expect_err("ambiguous");
        let RefError::Ambiguous { candidates, .. } = &err else {
            panic!("{err}");
        };
        assert_eq!(
            candidates,
            &[
                format!("channel {name} (checkpoint {b})"),
                format!("object {a}")
            ]
        );
        assert!(err.hint().contains("checkpoint hash"));
    }

    #[test]
    fn a_broken_promotions_file_only_matters_for_channel_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let store = Store::open(&root.join(".medrun")).expect("store");
        let a = store.put_bytes(b"checkpoint a").expect("put");
        std::fs::write(root.join("promotions.yaml"), "version: 1\npromotions: [\n").expect("write");
        assert_eq!(object(resolve_with_channels(&store, root, &a)), a);
        let err = resolve_with_channels(&store, root, "production").expect_err("broken");
        assert!(matches!(err, RefError::Promotions(_)), "{err}");
        assert!(err.to_string().starts_with("promotions.yaml:2:"), "{err}");
        assert!(err.hint().contains("git checkout promotions.yaml"));
    }
}
