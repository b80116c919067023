//! Verify on read: a damaged store object is never used (a cached stage with a corrupt checkpoint
//! runs again and restores it; promote, eval, generate and export refuse it), and the state cache
//! never decides what `run --locked` trains on, nor lands outside a medrun store.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use medrun::lock::state::Stat;
use medrun::store::{Store, Tree};

use crate::common::{FakeTrainer, Project, executors, plan_keys, project, stderr, stdout};

fn writable(p: &Path) {
    let mut perm = std::fs::metadata(p).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(p, perm).unwrap();
}

fn flip(p: &Path) {
    writable(p);
    let mut b = std::fs::read(p).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 1;
    std::fs::write(p, b).unwrap();
}

/// Make project files old enough for the state cache to keep their digests.
fn age(p: &Project, files: &[&str]) {
    for f in files {
        std::fs::File::options()
            .write(true)
            .open(p.path(f))
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
    }
}

const DATA: &[&str] = &[
    "data/pt.txt",
    "data/sft.jsonl",
    "data/dpo.jsonl",
    "data/mc.jsonl",
];

/// The output tree recorded for the stage key `key`.
fn output_of(store: &Store, key: &str) -> (String, Tree) {
    let out = store.key_output(key).unwrap().unwrap().output;
    let tree = Tree::load(store, &out).unwrap();
    (out, tree)
}

fn git_status(p: &Project) -> String {
    let o = std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=all"])
        .current_dir(p.root())
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn a_corrupt_checkpoint_is_never_used_and_run_restores_it() {
    let p = project();
    assert_eq!(p.bin(&["lock"]).status.code(), Some(0));
    p.commit_all();
    let o = p.bin(&["run", "runs/tiny.yaml"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let (_, keys) = plan_keys(&p, "runs/tiny.yaml");
    let store = Store::open_existing(&p.store()).unwrap();
    let (dpo, tree) = output_of(&store, &keys[2]);
    let model = tree.entries["model.safetensors"].object.clone();
    flip(&store.object_path(&model));

    // Nothing uses the damaged checkpoint; each error names the object, the file and the fix.
    for args in [
        &["promote", "latest:dpo", "--to", "prod"][..],
        &["eval", "latest:dpo", "--suite", "evals/suite.yaml"],
        &["generate", "latest:dpo", "--prompt", "Asthma"],
        &["export", "latest:dpo", "exported"],
    ] {
        let o = p.bin(args);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {e}");
        assert!(e.contains(&model), "{args:?}: {e}");
        assert!(e.contains("`model.safetensors` of output"), "{args:?}: {e}");
        assert!(e.contains("medrun run runs/tiny.yaml"), "{args:?}: {e}");
    }
    assert!(!p.path("promotions.yaml").exists());
    assert!(!p.path("exported").exists());
    // `plan` and `explain` verify too: the stage is not called cached.
    let o = p.bin(&["plan", "runs/tiny.yaml"]);
    assert!(
        stdout(&o).contains("to run (stored output damaged:"),
        "{}",
        stdout(&o)
    );
    let o = p.bin(&["explain", "runs/tiny.yaml", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[2]["status"], "damaged", "{v}");

    // `run` trains the stage again, which restores the object byte for byte.
    let o = p.bin(&["run", "runs/tiny.yaml"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("stage `dpo`: its stored output is damaged"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("running it again to restore it"));
    let store = Store::open_existing(&p.store()).unwrap();
    assert_eq!(store.check_object(&model).unwrap(), None);
    assert_eq!(output_of(&store, &keys[2]).0, dpo);
    assert_eq!(p.bin(&["verify"]).status.code(), Some(0));

    // Damaged evaluation results are computed again (and restored), never read.
    let o = p.bin(&[
        "eval",
        "latest:dpo",
        "--suite",
        "evals/suite.yaml",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["cached"], true);
    let results = v["results_output"].as_str().unwrap().to_string();
    let rt = Tree::load(&store, &results).unwrap();
    let rj = rt.entries["results.json"].object.clone();
    flip(&store.object_path(&rj));
    let o = p.bin(&[
        "eval",
        "latest:dpo",
        "--suite",
        "evals/suite.yaml",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["cached"], false);
    assert_eq!(v["results_output"], results.as_str());
    assert_eq!(store.check_object(&rj).unwrap(), None);
    let o = p.bin(&["promote", "latest:dpo", "--to", "prod"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn damaged_key_records_and_outputs_are_rebuilt_not_reported_as_nondeterminism() {
    let p = project();
    assert_eq!(p.bin(&["lock"]).status.code(), Some(0));
    p.commit_all();
    let spec = p.spec().display().to_string();
    let t = Arc::new(FakeTrainer::new());
    assert_eq!(p.cli(&["run", &spec], &executors(t.clone())), 0);
    let (_, keys) = plan_keys(&p, "runs/tiny.yaml");
    let store = Store::open_existing(&p.store()).unwrap();
    let (pt, _) = output_of(&store, &keys[0]);
    let record = |key: &str| {
        p.store()
            .join("keys-v1")
            .join(&key[..2])
            .join(format!("{key}.out"))
    };
    // pt: garbage in its key record. sft: a record naming an output that was never stored.
    writable(&record(&keys[0]));
    std::fs::write(record(&keys[0]), b"\0{\"output\": nope").unwrap();
    writable(&record(&keys[1]));
    std::fs::write(
        record(&keys[1]),
        format!("{{\"output\":\"{}\",\"run\":\"x\"}}", "ab".repeat(32)),
    )
    .unwrap();
    let calls = t.calls.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(p.cli(&["run", &spec], &executors(t.clone())), 0);
    assert_eq!(t.calls.load(std::sync::atomic::Ordering::SeqCst), calls + 2);
    assert_eq!(output_of(&store, &keys[0]).0, pt);
    assert!(matches!(
        store.cached_output(&keys[1]).unwrap(),
        medrun::store::CachedOutput::Intact { .. }
    ));
    let o = p.bin(&["lineage", "latest"]);
    assert!(!stdout(&o).contains("NONDETERMINISM"), "{}", stdout(&o));
    assert_eq!(p.bin(&["verify"]).status.code(), Some(0));
    // And now everything is cached again.
    assert_eq!(p.cli(&["run", &spec], &executors(t.clone())), 0);
    assert_eq!(t.calls.load(std::sync::atomic::Ordering::SeqCst), calls + 2);
}

/// Forge the state cache: claim that `rel`, as it is now, has the hash it has in datasets.lock.
fn poison(p: &Project, rel: &str) {
    let lock = p.read("datasets.lock");
    let at = lock.find(&format!("\"{rel}\":")).unwrap();
    let b = lock[at..].find("blake3: ").unwrap() + at + 8;
    let locked = &lock[b..b + 64];
    let state = p.store().join("state-v1.json");
    let mut v: serde_json::Value = std::fs::read(&state)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| serde_json::json!({"version": 1, "entries": {}}));
    let path = std::fs::canonicalize(p.path(rel)).unwrap();
    let stat = Stat::of(&std::fs::metadata(&path).unwrap());
    v["entries"][path.display().to_string()] = serde_json::json!({
        "stat": stat, "blake3": locked, "records": {"lines": 3},
    });
    std::fs::write(&state, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[test]
fn a_poisoned_state_cache_does_not_decide_what_run_locked_trains_on() {
    let p = project();
    age(&p, DATA);
    assert_eq!(p.bin(&["lock"]).status.code(), Some(0));
    p.commit_all();
    let spec = p.spec().display().to_string();
    let t = Arc::new(FakeTrainer::new());
    assert_eq!(p.cli(&["run", "--locked", &spec], &executors(t.clone())), 0);
    // Same size, other bytes; committed, so only the lock can tell.
    let text = p.read("data/pt.txt").replace("wheeze", "sneeze");
    p.write("data/pt.txt", &text);
    age(&p, &["data/pt.txt"]);
    p.commit_all();
    poison(&p, "data/pt.txt");
    // The reporting commands take the cache's word (it is a documented hint)...
    let o = p.bin(&["plan", "runs/tiny.yaml", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["lock"]["up_to_date"], true, "{v}");
    assert_eq!(p.bin(&["lock", "--check"]).status.code(), Some(0));
    poison(&p, "data/pt.txt");
    // ...but `run --locked` hashes the file and refuses, before any training.
    let calls = t.calls.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(p.cli(&["run", "--locked", &spec], &executors(t.clone())), 1);
    assert_eq!(t.calls.load(std::sync::atomic::Ordering::SeqCst), calls);
    // The fresh digest replaced the lie, so the hint is right again.
    assert_eq!(p.bin(&["lock", "--check"]).status.code(), Some(1));
    // `lock` records the real hash, whatever the cache says.
    poison(&p, "data/pt.txt");
    let o = p.bin(&["lock"]);
    assert!(stderr(&o).contains("1 changed"), "{}", stderr(&o));
    assert_eq!(
        p.bin(&["lock", "--check", "--verify"]).status.code(),
        Some(0)
    );
}

#[test]
fn the_state_cache_lands_only_in_a_medrun_store() {
    let p = project();
    age(&p, DATA);
    p.write("notes/todo.txt", "buy milk\n");
    p.commit_all();
    for args in [
        &["--store", "notes", "plan", "runs/tiny.yaml"][..],
        &["--store", "notes", "explain", "runs/tiny.yaml"],
        &["--store", "notes", "lock"],
        &["--store", "nowhere", "plan", "runs/tiny.yaml"],
    ] {
        let o = p.bin(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    }
    p.commit_all();
    // `run` refuses to make the unrelated directory a store, before writing anything.
    let o = p.bin(&["--store", "notes", "run", "runs/tiny.yaml"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let names: Vec<String> = std::fs::read_dir(p.path("notes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(names, ["todo.txt"]);
    assert!(!p.path("nowhere").exists());
    assert!(!p.store().exists());
}

#[test]
fn the_first_run_works_in_a_checkout_that_does_not_ignore_the_store() {
    let p = project();
    std::fs::remove_file(p.path(".gitignore")).unwrap();
    age(&p, DATA);
    age(&p, &["runs/tiny.yaml", "evals/suite.yaml"]);
    assert_eq!(p.bin(&["lock"]).status.code(), Some(0));
    assert!(!p.store().exists(), "lock created the store");
    p.commit_all();
    assert_eq!(git_status(&p), "");
    let spec = p.spec().display().to_string();
    let t = Arc::new(FakeTrainer::new());
    assert_eq!(p.cli(&["run", &spec], &executors(t)), 0);
    assert!(p.store().join("state-v1.json").is_file());
    assert_eq!(p.read(".medrun/.gitignore"), "*\n");
    assert_eq!(git_status(&p), "");
}
