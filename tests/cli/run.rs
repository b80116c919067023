//! `medrun run` with a deterministic test executor: caching, records, lineage, explain,
//! provenance checks, failures and nondeterminism.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::common::{FakeTrainer, executors, project, stderr, stdout};

#[test]
fn run_records_and_caches() {
    let p = project();
    assert_eq!(p.bin(&["lock"]).status.code(), Some(0));
    p.commit_all();
    let t = Arc::new(FakeTrainer::new());
    let ex = executors(t.clone());
    let spec = p.spec().display().to_string();
    assert_eq!(p.cli(&["run", &spec, "--locked"], &ex), 0);
    assert_eq!(t.calls.load(Ordering::SeqCst), 3);
    // Second run: every stage is a cache hit, no executor call.
    assert_eq!(p.cli(&["run", &spec, "--locked"], &ex), 0);
    assert_eq!(t.calls.load(Ordering::SeqCst), 3);

    let o = p.bin(&["plan", "runs/tiny.yaml", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["stages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["output"].is_string()),
        "{v}"
    );

    // Lineage of the latest run, text and JSON.
    let o = p.bin(&["lineage", "latest"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("tiny") && text.contains("cached") && text.contains("data/sft.jsonl"),
        "{text}"
    );
    let o = p.bin(&["lineage", "latest", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["status"], "ok");
    // The first run completed every stage; find an artifact and trace it back.
    let o = p.bin(&["--json", "lineage", "latest"]);
    let latest: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let first_id = {
        let runs: Vec<_> = std::fs::read_dir(p.path(".medrun/runs-v1"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|f| f.extension().is_some_and(|e| e == "jsonl"))
            .collect();
        assert_eq!(runs.len(), 2);
        runs.iter()
            .map(|r| r.file_stem().unwrap().to_string_lossy().to_string())
            .find(|id| id != latest["run_id"].as_str().unwrap())
            .unwrap()
    };
    let o = p.bin(&["lineage", &format!("{}:sft", &first_id[..8]), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let stages = v["record"]["stages"].as_array().unwrap();
    let sft = &stages[1][1];
    assert_eq!(sft["status"], "completed");
    let model = sft["artifacts"]["model.bin"].as_str().unwrap().to_string();
    let o = p.bin(&["lineage", &model]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("artifact model.bin")
            && text.contains("sft (sft)")
            && text.contains("pt (pt)"),
        "{text}"
    );

    // OpenLineage: START then COMPLETE per stage, inputs are the datasets.
    let o = p.bin(&["lineage", &first_id, "--format", "openlineage"]);
    let events: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 6);
    assert_eq!(events[0]["eventType"], "START");
    assert_eq!(events[1]["eventType"], "COMPLETE");
    assert_eq!(events[1]["job"]["name"], "tiny.pt");
    assert_eq!(events[1]["inputs"][0]["name"], "data/pt.txt");
    assert!(events[1]["schemaURL"].as_str().unwrap().contains("2-0-2"));
    assert_eq!(events[3]["outputs"].as_array().unwrap().len(), 2);

    // The store verifies clean.
    let o = p.bin(&["verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn dirty_tree_and_uncommitted_spec_are_refused_unless_allowed() {
    let p = project();
    assert_eq!(p.bin(&["lock"]).status.code(), Some(0));
    // datasets.lock is new and uncommitted: dirty.
    let o = p.bin(&["run", "runs/tiny.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("uncommitted") && e.contains("datasets.lock") && e.contains("--allow-dirty"),
        "{e}"
    );
    p.commit_all();
    p.write("runs/new.yaml", crate::common::SPEC);
    let o = p.bin(&["run", "runs/new.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("runs/new.yaml is not committed"),
        "{}",
        stderr(&o)
    );

    // With --allow-dirty the state is recorded (the fake trainer is needed to get that far).
    let t = Arc::new(FakeTrainer::new());
    let spec = p.path("runs/new.yaml").display().to_string();
    assert_eq!(p.cli(&["run", &spec, "--allow-dirty"], &executors(t)), 0);
    let o = p.bin(&["lineage", "latest", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let git = &v["record"]["started"]["git"];
    assert_eq!(git["dirty"], true);
    assert_eq!(git["spec_committed"], false);
    assert!(git["diff_hash"].as_str().unwrap().len() == 64);
    assert_eq!(v["record"]["started"]["allow_dirty"], true);
}

#[test]
fn failed_stage_is_recorded_and_keeps_earlier_outputs() {
    let p = project();
    assert_eq!(p.bin(&["lock"]).status.code(), Some(0));
    p.commit_all();
    let t = Arc::new(FakeTrainer {
        fail_on: Some("sft".into()),
        ..FakeTrainer::new()
    });
    let spec = p.spec().display().to_string();
    assert_eq!(p.cli(&["run", &spec], &executors(t)), 1);
    let o = p.bin(&["lineage", "latest"]);
    let text = stdout(&o);
    assert!(
        text.contains("failed") && text.contains("loss is NaN at step 3"),
        "{text}"
    );
    // The next run reuses pt and only reruns sft and dpo.
    let t = Arc::new(FakeTrainer::new());
    assert_eq!(p.cli(&["run", &spec], &executors(t.clone())), 0);
    assert_eq!(t.calls.load(Ordering::SeqCst), 2);
}

#[test]
fn explain_names_the_changed_field() {
    let p = project();
    assert_eq!(p.bin(&["lock"]).status.code(), Some(0));
    p.commit_all();
    let spec = p.spec().display().to_string();
    let o = p.bin(&["explain", "runs/tiny.yaml"]);
    assert!(stdout(&o).contains("pt: never run"), "{}", stdout(&o));
    assert_eq!(
        p.cli(&["run", &spec], &executors(Arc::new(FakeTrainer::new()))),
        0
    );
    let o = p.bin(&["explain", "runs/tiny.yaml"]);
    assert!(stdout(&o).contains("pt: fresh"), "{}", stdout(&o));
    p.write(
        "runs/tiny.yaml",
        &crate::common::SPEC.replace("optimizer: {lr: 0.0001}", "optimizer: {lr: 0.0003}"),
    );
    let o = p.bin(&["explain", "runs/tiny.yaml"]);
    let text = stdout(&o);
    assert!(text.contains("pt: fresh"), "{text}");
    assert!(
        text.contains("sft: stale since run") && text.contains("stage.optimizer.lr changed"),
        "{text}"
    );
    assert!(
        text.contains("stage.optimizer.lr: 0.0001 → 0.0003"),
        "{text}"
    );
    assert!(
        text.contains("dpo: stale because its parent stage `sft` changed"),
        "{text}"
    );
    let o = p.bin(&["explain", "runs/tiny.yaml", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[1]["status"], "changed");
    assert_eq!(v[1]["changes"][0]["field"], "stage.optimizer.lr");
    assert_eq!(v[2]["only_parent"], true);
}

#[test]
fn nondeterminism_is_reported_not_hidden() {
    let p = project();
    assert_eq!(p.bin(&["lock"]).status.code(), Some(0));
    p.commit_all();
    let spec = p.spec().display().to_string();
    assert_eq!(
        p.cli(&["run", &spec], &executors(Arc::new(FakeTrainer::new()))),
        0
    );
    // Make the stages run again, with a trainer that produces other bytes: delete the objects
    // holding each stage's `metrics.json` (the same bytes on every run, so the new run restores
    // them). The recorded outputs are then intact again when the new outputs are recorded: two
    // different intact outputs for one key is nondeterminism.
    for entry in walk(&p.path(".medrun/objects-v1")) {
        if !std::fs::read(&entry).unwrap().starts_with(b"{\"stage\"") {
            continue;
        }
        let mut perm = std::fs::metadata(&entry).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perm.set_readonly(false);
        std::fs::set_permissions(&entry, perm).unwrap();
        std::fs::remove_file(entry).unwrap();
    }
    let salty = Arc::new(FakeTrainer {
        salt: true,
        ..FakeTrainer::new()
    });
    let code = p.cli(&["run", &spec], &executors(salty));
    assert_eq!(code, 0);
    let o = p.bin(&["lineage", "latest"]);
    assert!(
        stdout(&o).contains("NONDETERMINISM in stage pt"),
        "{}",
        stdout(&o)
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}
