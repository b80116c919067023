//! Temp files left by killed commands: never where `git status` sees them, removed at the next
//! start when their process is gone, kept while it runs; a failing export leaves nothing.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use crate::common::{FakeTrainer, Project, executors, project, stderr};

fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

fn git_status(p: &Project) -> String {
    let o = Command::new("git")
        .args(["status", "--porcelain", "-uall"])
        .current_dir(p.root())
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn locked_project() -> Project {
    let p = project();
    assert_eq!(p.bin(&["lock"]).status.code(), Some(0));
    p.commit_all();
    p
}

#[test]
fn lock_writes_no_temp_file_that_git_sees() {
    let p = project();
    assert_eq!(p.bin(&["lock"]).status.code(), Some(0));
    assert_eq!(git_status(&p), "?? datasets.lock\n");
    let tmp = p.path(".git/medrun-tmp");
    assert!(tmp.is_dir());
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
}

#[test]
fn stale_temp_files_no_longer_block_run() {
    let p = locked_project();
    let dead = dead_pid();
    let old = p.path(&format!(".datasets.lock.tmp-{dead}-1"));
    let old_promo = p.path(&format!(".promotions.yaml.tmp-{dead}-2"));
    std::fs::write(&old, "half a lock").unwrap();
    std::fs::write(&old_promo, "half a promotion").unwrap();
    std::fs::create_dir_all(p.path(".git/medrun-tmp")).unwrap();
    let new = p.path(&format!(".git/medrun-tmp/datasets.lock.tmp-{dead}-3"));
    std::fs::write(&new, "x").unwrap();
    assert_ne!(git_status(&p), "", "the planted files make the tree dirty");
    let spec = p.spec().display().to_string();
    let ex = executors(Arc::new(FakeTrainer::new()));
    assert_eq!(p.cli(&["run", &spec], &ex), 0);
    for f in [&old, &old_promo, &new] {
        assert!(!f.exists(), "{} was not removed", f.display());
    }
    assert_eq!(git_status(&p), "");
}

#[test]
fn a_live_processs_temp_file_is_left_alone() {
    let p = locked_project();
    let mut sleeper = Command::new("sleep").arg("60").spawn().unwrap();
    let live = p.path(&format!(".datasets.lock.tmp-{}-1", sleeper.id()));
    std::fs::write(&live, "being written").unwrap();
    let o = p.bin(&["run", "runs/tiny.yaml"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains(".datasets.lock.tmp-"), "{}", stderr(&o));
    let o = p.bin(&["lock"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(live.exists(), "a live process's temp file was removed");
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    let o = p.bin(&["lock"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!live.exists());
    assert!(stderr(&o).contains("left by a medrun process that no longer runs"));
}

#[test]
fn lock_check_removes_nothing() {
    let p = locked_project();
    let stale = p.path(&format!(".datasets.lock.tmp-{}-1", dead_pid()));
    std::fs::write(&stale, "x").unwrap();
    assert_eq!(p.bin(&["lock", "--check"]).status.code(), Some(0));
    assert!(stale.exists());
}

/// Store a tree whose `config.json` is present and whose `model.safetensors` is missing, so an
/// export of it fails part-way. Returns its id.
fn half_tree(store: &Path) -> String {
    let s = medrun::store::Store::open(store).unwrap();
    let config = s.put_bytes(b"{}").unwrap();
    let mut t = medrun::store::Tree::default();
    for (name, object) in [
        ("config.json", config),
        ("model.safetensors", "e".repeat(64)),
    ] {
        t.entries.insert(
            name.into(),
            medrun::store::tree::TreeEntry { object, bytes: 2 },
        );
    }
    t.put(&s).unwrap()
}

#[test]
fn a_failing_export_leaves_nothing_and_clears_killed_exports() {
    let p = locked_project();
    let tree = half_tree(&p.store());
    // A fresh directory tree: nothing of it may remain.
    let o = p.bin(&["export", &tree, "out/deep/model"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(!p.path("out").exists(), "the failed export left out/");
    // An existing empty target stays, and staging directories of dead exports are removed while
    // a live one is kept.
    std::fs::create_dir_all(p.path("exports/model")).unwrap();
    let dead = p.path(&format!("exports/.medrun-export-{}-1", dead_pid()));
    std::fs::create_dir(&dead).unwrap();
    std::fs::write(dead.join("config.json"), "{}").unwrap();
    let live = p.path(&format!("exports/.medrun-export-{}-2", std::process::id()));
    std::fs::create_dir(&live).unwrap();
    let o = p.bin(&["export", &tree, "exports/model"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(!dead.exists(), "a killed export's directory was kept");
    assert!(live.is_dir(), "a live export's directory was removed");
    let mut left: Vec<String> = std::fs::read_dir(p.path("exports"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            format!(".medrun-export-{}-2", std::process::id()),
            "model".to_string()
        ]
    );
    assert_eq!(
        std::fs::read_dir(p.path("exports/model")).unwrap().count(),
        0
    );
}
