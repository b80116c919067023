//! The child-report verification, fed with fake reports of rebuilt binaries that lie in each
//! way they can.

use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::env::{DeviceClass, EngineFingerprint, HostFacts};
use crate::lineage::StageState;
use crate::lineage::record::{PlannedStage, RunStarted};
use crate::provenance::GitState;
use crate::store::tree::TreeEntry;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    run: RunRecord,
    /// Recorded output trees by stage.
    recorded: BTreeMap<String, String>,
}

fn tree_of(store: &Store, files: &[(&str, &[u8])]) -> String {
    let mut t = Tree::default();
    for (name, bytes) in files {
        let id = store.put_bytes(bytes).unwrap();
        t.entries.insert(
            name.to_string(),
            TreeEntry {
                object: id,
                bytes: bytes.len() as u64,
            },
        );
    }
    t.put(store).unwrap()
}

fn trajectory_json(params: &[&str]) -> Vec<u8> {
    let steps: Vec<_> = params
        .iter()
        .enumerate()
        .map(|(i, p)| json!({"step": i as u64 + 1, "params": p}))
        .collect();
    serde_json::to_vec(&json!({ "steps": steps })).unwrap()
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join(".medrun")).unwrap();
    let mut recorded = BTreeMap::new();
    let mut stages = Vec::new();
    for name in ["pt", "sft"] {
        let out = tree_of(
            &store,
            &[
                ("model.safetensors", format!("{name} weights").as_bytes()),
                ("trajectory.json", &trajectory_json(&["a", "b", "c"])),
            ],
        );
        recorded.insert(name.to_string(), out.clone());
        stages.push((
            PlannedStage {
                name: name.into(),
                kind: name.into(),
                key: "0".repeat(64),
                parent: None,
                datasets: Vec::new(),
            },
            StageState::Cached {
                output: out,
                at: "2026-01-01T00:00:00.000Z".into(),
            },
        ));
    }
    let started = RunStarted {
        run_id: "1".repeat(64),
        run_key: "2".repeat(64),
        spec_name: "tiny".into(),
        spec_path: "runs/tiny.yaml".into(),
        spec_object: "3".repeat(64),
        resolved_object: "4".repeat(64),
        inputs: BTreeMap::new(),
        engine: EngineFingerprint::current(),
        device: DeviceClass {
            kind: "cpu".into(),
            model: "test".into(),
            isa: Vec::new(),
        },
        git: GitState {
            repo: true,
            commit: Some("5".repeat(40)),
            dirty: false,
            diff_hash: None,
            dirty_files: Vec::new(),
            spec_committed: true,
        },
        host: HostFacts::detect(),
        started_at: "2026-01-01T00:00:00.000Z".into(),
        allow_dirty: false,
        locked: false,
        stages: stages.iter().map(|(p, _)| p.clone()).collect(),
    };
    let run = RunRecord {
        path: std::path::PathBuf::new(),
        seal: crate::lineage::seal::Seal::Unsealed,
        started,
        stages,
        nondeterminism: Vec::new(),
        finished: None,
        base: None,
        torn_lines: 0,
    };
    Fixture {
        _dir: dir,
        store,
        run,
        recorded,
    }
}

/// A report as a rebuilt medrun would print it, with `produced` per stage.
fn report(f: &Fixture, produced: &[(&str, &str)], claim_identical: bool) -> Vec<u8> {
    let stages: Vec<_> = produced
        .iter()
        .map(|(s, p)| {
            json!({"stage": s, "recorded": f.recorded.get(*s), "produced": p,
                   "identical": claim_identical})
        })
        .collect();
    serde_json::to_vec(&json!({"run": f.run.id(), "identical": claim_identical, "stages": stages}))
        .unwrap()
}

fn err(r: Result<Vec<StageRepro>>) -> String {
    match r {
        Ok(s) => panic!("a lying report was accepted: {s:?}"),
        Err(e) => {
            assert_eq!(e.exit_code(), crate::error::EXIT_USER, "{e}");
            e.to_string()
        }
    }
}

#[test]
fn an_honest_identical_report_is_judged_identical() {
    let f = fixture();
    let (pt, sft) = (&f.recorded["pt"], &f.recorded["sft"]);
    let out = report(&f, &[("pt", pt), ("sft", sft)], true);
    let stages = verify_child_report(&f.store, &f.run, None, &out).unwrap();
    assert_eq!(stages.len(), 2);
    assert!(
        stages
            .iter()
            .all(|s| s.identical && s.differing_files.is_empty())
    );
}

#[test]
fn a_child_claiming_identical_for_other_bytes_is_judged_different_here() {
    let f = fixture();
    let other = tree_of(
        &f.store,
        &[
            ("model.safetensors", b"sft weights, drifted"),
            ("trajectory.json", &trajectory_json(&["a", "x", "y"])),
        ],
    );
    let out = report(&f, &[("pt", &f.recorded["pt"]), ("sft", &other)], true);
    let stages = verify_child_report(&f.store, &f.run, None, &out).unwrap();
    assert!(stages[0].identical);
    let s = &stages[1];
    assert!(!s.identical, "the child's verdict was taken");
    assert_eq!(s.produced, other);
    assert_eq!(s.recorded, f.recorded["sft"]);
    assert_eq!(s.differing_files, ["model.safetensors", "trajectory.json"]);
    assert_eq!(s.first_divergent_step, Some(2));
}

#[test]
fn a_child_claiming_a_tree_it_did_not_store_is_an_error() {
    let f = fixture();
    let ghost = "9".repeat(64);
    let out = report(&f, &[("pt", &f.recorded["pt"]), ("sft", &ghost)], true);
    let e = err(verify_child_report(&f.store, &f.run, None, &out));
    assert!(e.contains("stage `sft`") && e.contains(&ghost), "{e}");
}

#[test]
fn a_tree_listing_an_object_missing_from_the_store_is_an_error() {
    let f = fixture();
    let mut t = Tree::default();
    t.entries.insert(
        "model.safetensors".into(),
        TreeEntry {
            object: "8".repeat(64),
            bytes: 3,
        },
    );
    let id = t.put(&f.store).unwrap();
    let out = report(&f, &[("pt", &id), ("sft", &f.recorded["sft"])], false);
    let e = err(verify_child_report(&f.store, &f.run, None, &out));
    assert!(
        e.contains("stage `pt`")
            && e.contains("model.safetensors")
            && e.contains("not in the store"),
        "{e}"
    );
}

#[test]
fn a_tree_whose_object_is_corrupt_is_an_error() {
    let f = fixture();
    let id = tree_of(&f.store, &[("model.safetensors", b"fresh weights")]);
    let obj = Tree::load(&f.store, &id).unwrap().entries["model.safetensors"]
        .object
        .clone();
    let path = f.store.object_path(&obj);
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&path, perms).unwrap();
    std::fs::write(&path, b"fresh weightz").unwrap();
    let out = report(&f, &[("pt", &f.recorded["pt"]), ("sft", &id)], true);
    let e = err(verify_child_report(&f.store, &f.run, None, &out));
    assert!(e.contains("stage `sft`") && e.contains("hash to"), "{e}");
}

#[test]
fn a_tree_listing_the_wrong_size_is_an_error() {
    let f = fixture();
    let obj = f.store.put_bytes(b"twelve bytes").unwrap();
    let mut t = Tree::default();
    t.entries.insert(
        "model.safetensors".into(),
        TreeEntry {
            object: obj,
            bytes: 11,
        },
    );
    let id = t.put(&f.store).unwrap();
    let out = report(&f, &[("pt", &id), ("sft", &f.recorded["sft"])], true);
    let e = err(verify_child_report(&f.store, &f.run, None, &out));
    assert!(e.contains("lists 11 bytes"), "{e}");
}

#[test]
fn a_produced_id_that_is_not_a_tree_is_an_error() {
    let f = fixture();
    let blob = f.store.put_bytes(b"not a tree").unwrap();
    for bad in [blob.as_str(), "../../etc/passwd", ""] {
        let out = report(&f, &[("pt", bad), ("sft", &f.recorded["sft"])], true);
        let e = err(verify_child_report(&f.store, &f.run, None, &out));
        assert!(e.contains("stage `pt`"), "{e}");
    }
}

#[test]
fn malformed_output_is_an_error() {
    let f = fixture();
    for bad in [
        &b""[..],
        b"building...\n{}",
        b"{\"run\": 1}",
        b"[]",
        b"{\"run\": \"x\", \"stages\": [{\"stage\": \"pt\"}]}",
    ] {
        let e = err(verify_child_report(&f.store, &f.run, None, bad));
        assert!(e.contains("cannot be trusted"), "{e}");
    }
}

#[test]
fn a_report_on_another_run_is_an_error() {
    let f = fixture();
    let mut v: serde_json::Value = serde_json::from_slice(&report(
        &f,
        &[("pt", &f.recorded["pt"]), ("sft", &f.recorded["sft"])],
        true,
    ))
    .unwrap();
    v["run"] = json!("7".repeat(64));
    let e = err(verify_child_report(
        &f.store,
        &f.run,
        None,
        &serde_json::to_vec(&v).unwrap(),
    ));
    assert!(e.contains(&"7".repeat(64)), "{e}");
}

#[test]
fn a_wrong_stage_set_is_an_error() {
    let f = fixture();
    let (pt, sft) = (f.recorded["pt"].as_str(), f.recorded["sft"].as_str());
    let cases: [&[(&str, &str)]; 5] = [
        &[],
        &[("pt", pt)],
        &[("sft", sft), ("pt", pt)],
        &[("pt", pt), ("sft", sft), ("dpo", sft)],
        &[("pt", pt), ("pt", pt)],
    ];
    for stages in cases {
        let out = report(&f, stages, true);
        let e = err(verify_child_report(&f.store, &f.run, None, &out));
        assert!(e.contains("the reproduction covers [pt, sft]"), "{e}");
    }
}

#[test]
fn with_one_stage_only_that_stage_is_accepted() {
    let f = fixture();
    let (pt, sft) = (f.recorded["pt"].as_str(), f.recorded["sft"].as_str());
    let ok = verify_child_report(
        &f.store,
        &f.run,
        Some("sft"),
        &report(&f, &[("sft", sft)], true),
    )
    .unwrap();
    assert_eq!(ok.len(), 1);
    assert!(ok[0].identical);
    let e = err(verify_child_report(
        &f.store,
        &f.run,
        Some("sft"),
        &report(&f, &[("pt", pt), ("sft", sft)], true),
    ));
    assert!(e.contains("covers [sft]"), "{e}");
}

#[cfg(unix)]
#[test]
fn the_child_gets_the_run_and_stage_and_only_its_stdout_is_read() {
    use std::os::unix::fs::PermissionsExt;
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let args = dir.path().join("args");
    let bin = dir.path().join("medrun");
    let out = String::from_utf8(report(&f, &[("sft", &f.recorded["sft"])], true)).unwrap();
    std::fs::write(
        &bin,
        format!(
            "#!/bin/sh\necho \"$@ $MEDRUN_REPRODUCE_REBUILT\" > '{}'\necho 'progress' >&2\ncat <<'EOF'\n{out}\nEOF\nexit 4\n",
            args.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let child =
        super::super::rebuild::run_child(&bin, dir.path(), f.store.root(), f.run.id(), Some("sft"))
            .unwrap();
    assert_eq!(child.code, Some(4));
    let seen = std::fs::read_to_string(&args).unwrap();
    assert_eq!(
        seen.trim(),
        format!(
            "--store {} --json reproduce {} --stage sft 1",
            f.store.root().display(),
            f.run.id()
        )
    );
    let stages = verify_child_report(&f.store, &f.run, Some("sft"), &child.stdout).unwrap();
    assert!(stages[0].identical);
}
