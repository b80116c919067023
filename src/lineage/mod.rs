//! Lineage: append-only run records, REF resolution, and provenance views (text, JSON,
//! OpenLineage 2-0-2 RunEvents).
//!
//! A REF is a run id or unambiguous prefix, `latest`, `RUN:STAGE`, an artifact hash (or
//! unambiguous prefix), or, through [`resolve_with_channels`], a channel name from the project's
//! `promotions.yaml` (`production`), which names the checkpoint currently holding the channel.

pub mod openlineage;
pub mod record;
pub mod render;
pub mod seal;

pub use record::{Event, RunRecord, RunStatus, StageState, load_runs};
pub use seal::{Seal, SealError};

use std::path::Path;

use crate::promotions::{self, History, PromotionError};
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
    Seal(#[from] SealError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RefError {
    pub fn hint(&self) -> String {
        match self {
            RefError::Ambiguous { .. } => "use a longer prefix".into(),
            RefError::NoRuns => "run `medrun run SPEC` first".into(),
            RefError::Store(e) => e.hint(),
            RefError::Promotions(e) => e.hint(),
            RefError::Seal(e) => e.hint(),
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
/// (or unambiguous prefix). A run whose record fails its seal is refused
/// ([`RunRecord::check_intact`]).
pub fn resolve(store: &Store, reference: &str) -> Result<Target, RefError> {
    let target = resolve_unchecked(store, reference)?;
    if let Target::Run(r) | Target::Stage(r, _) = &target {
        r.check_intact(store)?;
    }
    Ok(target)
}

fn resolve_unchecked(store: &Store, reference: &str) -> Result<Target, RefError> {
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

/// Checks a promotion history before one of its channels is resolved. The commands pass the
/// full verification (`ops::promotions::check_channel`: every entry re-derived from the store
/// and git, see docs/concepts/promotions.md); the lineage layer only calls it.
pub type ChannelCheck<'a> = dyn Fn(&History) -> Result<(), PromotionError> + 'a;

/// [`resolve`], plus channel names: a REF that names a channel in `root/promotions.yaml`
/// resolves to the checkpoint currently holding it ([`Target::Object`]), which must be in the
/// store, once `check` accepts the history. REFs that are not channels resolve as [`resolve`]
/// does; when `promotions.yaml` is unreadable they still do, and only a REF that could be a
/// channel reports the file's error.
pub fn resolve_with_channels(
    store: &Store,
    root: &Path,
    reference: &str,
    check: &ChannelCheck<'_>,
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
    // A valid channel name never reads as another REF (promotions::check_channel_name refuses
    // `latest` and hex), so a name in the history is the channel.
    if !store.contains(&entry.checkpoint) {
        return Err(RefError::ChannelMissing {
            channel: reference.to_string(),
            checkpoint: entry.checkpoint.clone(),
        });
    }
    check(&history)?;
    Ok(Target::Object(entry.checkpoint.clone()))
}

/// The runs and stages that produced an object (as a stage output or an artifact), oldest first.
/// A record that fails its seal and claims the object is refused: what it says cannot be told
/// from what was recorded.
pub fn producers(
    store: &Store,
    runs: &[RunRecord],
    object: &str,
) -> Result<Vec<(RunRecord, String, Option<String>)>, SealError> {
    let found = producers_unchecked(runs, object);
    for (r, _, _) in &found {
        r.check_intact(store)?;
    }
    Ok(found)
}

fn producers_unchecked(
    runs: &[RunRecord],
    object: &str,
) -> Vec<(RunRecord, String, Option<String>)> {
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
    use crate::promotions::{Entry, GateRecord, append, no_check};

    fn promote(root: &Path, channel: &str, checkpoint: &str, previous: Option<&str>) {
        let entry = Entry {
            channel: channel.into(),
            promoted_at: "2026-03-01T12:00:00.000Z".into(),
            checkpoint: checkpoint.into(),
            results: "e".repeat(64),
            run: "0123456789abcdef0123456789abcdef".into(),
            record: "d".repeat(64),
            commit: "c".repeat(40),
            stage: "sft".into(),
            spec: "runs/x.yaml".into(),
            previous: previous.map(str::to_string),
            gates: vec![GateRecord {
                metric: "s/t/acc".into(),
                vs_channel: None,
                value: Some(1.0),
                holder: None,
                holder_results: None,
                holder_value: None,
                p_value: None,
                passed: true,
            }],
        };
        append(root, &entry, &no_check).expect("append");
    }

    fn accept(_: &History) -> Result<(), PromotionError> {
        Ok(())
    }

    fn rwc(store: &Store, root: &Path, reference: &str) -> Result<Target, RefError> {
        resolve_with_channels(store, root, reference, &accept)
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
            rwc(&store, root, "production"),
            Err(RefError::Invalid(_))
        ));
        assert_eq!(object(rwc(&store, root, &a)), a);
        promote(root, "production", &a, None);
        assert_eq!(object(rwc(&store, root, "production")), a);
        promote(root, "production", &b, Some(&a));
        assert_eq!(object(rwc(&store, root, "production")), b);
        // Unknown channels, hashes and `resolve` itself behave as before.
        assert!(matches!(
            rwc(&store, root, "staging"),
            Err(RefError::Invalid(_))
        ));
        assert_eq!(object(rwc(&store, root, &a[..12])), a);
        assert!(matches!(
            resolve(&store, "production"),
            Err(RefError::Invalid(_))
        ));
        assert!(matches!(rwc(&store, root, "latest"), Err(RefError::NoRuns)));
    }

    #[test]
    fn a_channel_whose_checkpoint_is_not_in_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let store = Store::open(&root.join(".medrun")).expect("store");
        promote(root, "production", &"c".repeat(64), None);
        let err = rwc(&store, root, "production").expect_err("missing");
        assert!(matches!(err, RefError::ChannelMissing { .. }), "{err}");
        assert!(err.hint().contains("--store"));
    }

    #[test]
    fn a_history_that_fails_its_check_resolves_no_channel_but_other_refs_still_resolve() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let store = Store::open(&root.join(".medrun")).expect("store");
        let a = store.put_bytes(b"checkpoint a").expect("put");
        promote(root, "production", &a, None);
        let refuse = |_: &History| -> Result<(), PromotionError> {
            Err(PromotionError::Unverified {
                at: "promotions.yaml:5".into(),
                message: "forged".into(),
                hint: "restore it".into(),
            })
        };
        let err = resolve_with_channels(&store, root, "production", &refuse).expect_err("refused");
        assert!(matches!(err, RefError::Promotions(_)), "{err}");
        assert_eq!(err.to_string(), "promotions.yaml:5: forged");
        assert_eq!(err.hint(), "restore it");
        assert_eq!(object(resolve_with_channels(&store, root, &a, &refuse)), a);
    }

    #[test]
    fn a_broken_promotions_file_only_matters_for_channel_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let store = Store::open(&root.join(".medrun")).expect("store");
        let a = store.put_bytes(b"checkpoint a").expect("put");
        std::fs::write(root.join("promotions.yaml"), "version: 2\npromotions: [\n").expect("write");
        assert_eq!(object(rwc(&store, root, &a)), a);
        let err = rwc(&store, root, "production").expect_err("broken");
        assert!(matches!(err, RefError::Promotions(_)), "{err}");
        assert!(err.to_string().starts_with("promotions.yaml:2:"), "{err}");
        assert!(err.hint().contains("git checkout promotions.yaml"));
    }

    /// A record edited after it was sealed is refused wherever its run is named, and as a
    /// producer of an object (finding 4: an edited record used to pass `verify`, and `export`
    /// then shipped the weights it named).
    #[test]
    fn an_edited_sealed_record_is_refused_by_run_name_and_as_a_producer() {
        use record::{Event, RecordWriter};
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join(".medrun")).expect("store");
        let good = store.put_bytes(b"the trained checkpoint").expect("put");
        let other = store.put_bytes(b"some other checkpoint").expect("put");
        let id = "00112233445566778899aabbccddeeff";
        let started = serde_json::json!({
            "event": "run_started", "run_id": id, "run_key": "k", "spec_name": "s",
            "spec_path": "runs/s.yaml", "spec_object": good, "resolved_object": good,
            "inputs": {}, "engine": {"version": "v", "source_hash": "h", "features": [],
            "target": "t", "rustc": "r"}, "device": {"kind": "cpu", "model": "m", "isa": []},
            "git": {"repo": true, "commit": null, "dirty": false, "diff_hash": null,
            "dirty_files": [], "spec_committed": true}, "host": {"hostname": "h", "os": "o",
            "arch": "a", "cpus": 1, "threads": null}, "started_at": "2026-01-01T00:00:00.000Z",
            "allow_dirty": false, "locked": false,
            "stages": [{"name": "dpo", "kind": "dpo", "key": "k1", "parent": null, "datasets": []}]
        });
        let event: Event = serde_json::from_value(started).expect("run_started");
        let mut w = RecordWriter::create(&store, id).expect("create");
        w.append(&event).expect("append");
        w.append(&Event::StageCached {
            stage: "dpo".into(),
            key: "k1".into(),
            output: good.clone(),
            at: "2026-01-01T00:00:01.000Z".into(),
        })
        .expect("append");
        let sealed = w.finish(&store, RunStatus::Ok).expect("seal");
        assert!(matches!(
            resolve(&store, &format!("{id}:dpo")),
            Ok(Target::Stage(..))
        ));
        let runs = load_runs(&store).expect("runs");
        assert_eq!(
            runs[0].seal,
            Seal::Sealed {
                object: sealed.clone()
            }
        );
        assert!(
            runs[0].objects().contains(&sealed),
            "gc keeps the sealed bytes"
        );
        // Point the stage at another checkpoint.
        let path = seal::record_path(&store, id);
        let text = std::fs::read_to_string(&path).expect("read");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o222, 0, "a sealed record is read-only");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        std::fs::write(&path, text.replace(&good, &other)).expect("edit");
        let err = resolve(&store, &format!("{id}:dpo")).expect_err("edited");
        assert!(matches!(err, RefError::Seal(_)), "{err}");
        assert!(err.to_string().contains(&format!("{id}.jsonl")), "{err}");
        assert!(err.hint().contains("cp "), "{}", err.hint());
        let runs = load_runs(&store).expect("runs");
        assert!(producers(&store, &runs, &other).is_err());
    }
}
