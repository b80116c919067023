//! The store: torn writes are never visible, `verify` finds corruption, `gc` keeps what is
//! reachable.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use medrun::store::Store;

use crate::common::{FakeTrainer, executors, project, stderr, stdout};

/// A reader that yields 4 MiB, creates `marker`, then blocks forever (until killed).
struct Stall {
    sent: usize,
    marker: std::path::PathBuf,
}

impl Read for Stall {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.sent >= 4 << 20 {
            std::fs::write(&self.marker, b"ready").unwrap();
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        let n = buf.len().min(64 * 1024);
        buf[..n].fill(0xab);
        self.sent += n;
        Ok(n)
    }
}

/// Child-process half of `killed_writer_leaves_no_torn_object`; does nothing unless spawned by it.
#[test]
#[ignore = "spawned as a child process by killed_writer_leaves_no_torn_object"]
fn writer_child() {
    let Ok(dir) = std::env::var("MEDRUN_TEST_KILL_STORE") else {
        return;
    };
    let store = Store::open(Path::new(&dir)).unwrap();
    let marker = Path::new(&dir).join("..").join("marker");
    let _ = store.put_reader(Stall { sent: 0, marker });
    unreachable!("the parent kills this process mid-write");
}

#[test]
fn killed_writer_leaves_no_torn_object() {
    let tmp = tempfile::tempdir().unwrap();
    let store_dir = tmp.path().join("store");
    Store::open(&store_dir).unwrap();
    let marker = tmp.path().join("marker");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "store::writer_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MEDRUN_TEST_KILL_STORE", &store_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !marker.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "child never reached mid-write"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let store = Store::open_existing(&store_dir).unwrap();
    assert!(
        store.list_objects().unwrap().is_empty(),
        "a torn object became visible"
    );
    let temps: Vec<_> = std::fs::read_dir(store.tmp_dir())
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(temps.len(), 1, "the partial write stays in tmp/");
    assert!(temps[0].metadata().unwrap().len() >= 4 << 20);
    // verify is clean (nothing references the partial write); gc removes the leftover.
    let report = medrun::ops::verify::verify(&store_dir).unwrap();
    assert!(report.ok());
    // A killed stage leaves its work directory behind too.
    let work = store.tmp_dir().join("work-deadbeef-pt");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("model.safetensors"), b"partial").unwrap();
    let gc = medrun::ops::gc::gc(tmp.path(), &store_dir, &[], false).unwrap();
    assert_eq!(gc.temp_files_removed, 2);
    assert_eq!(std::fs::read_dir(store.tmp_dir()).unwrap().count(), 0);
}

fn corrupt(path: &Path) {
    let mut perm = std::fs::metadata(path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(path, perm).unwrap();
    let mut b = std::fs::read(path).unwrap();
    b[0] ^= 0xff;
    std::fs::write(path, b).unwrap();
}

#[test]
fn verify_finds_a_corrupted_object() {
    let p = project();
    assert_eq!(p.bin(&["lock"]).status.code(), Some(0));
    p.commit_all();
    let spec = p.spec().display().to_string();
    assert_eq!(
        p.cli(&["run", &spec], &executors(Arc::new(FakeTrainer::new()))),
        0
    );
    let o = p.bin(&["verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let store = Store::open_existing(&p.store()).unwrap();
    let victim = store.list_objects().unwrap()[0].clone();
    corrupt(&store.object_path(&victim));
    let o = p.bin(&["verify"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains(&format!("corrupt  {victim}")),
        "{}",
        stdout(&o)
    );
    assert!(stderr(&o).contains("hint:"), "{}", stderr(&o));
    let o = p.bin(&["verify", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["report"]["corrupt"][0][0], victim.as_str());
    // A missing referenced object is reported too.
    let mut perm = std::fs::metadata(store.object_path(&victim))
        .unwrap()
        .permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(store.object_path(&victim), perm).unwrap();
    std::fs::remove_file(store.object_path(&victim)).unwrap();
    let o = p.bin(&["verify"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains(&format!("missing  {victim}")),
        "{}",
        stdout(&o)
    );
}

#[test]
fn gc_deletes_only_unreachable_objects() {
    let p = project();
    assert_eq!(p.bin(&["lock"]).status.code(), Some(0));
    p.commit_all();
    let spec = p.spec().display().to_string();
    assert_eq!(
        p.cli(&["run", &spec], &executors(Arc::new(FakeTrainer::new()))),
        0
    );
    let store = Store::open_existing(&p.store()).unwrap();
    let before = store.list_objects().unwrap();
    let orphan = store
        .put_bytes(b"left behind by an interrupted stage")
        .unwrap();
    let kept = store.put_bytes(b"kept by --keep").unwrap();
    let promoted = store.put_bytes(b"named in promotions.yaml").unwrap();
    p.write(
        "promotions.yaml",
        &format!("version: 1\npromotions:\n  - checkpoint: {promoted}\n"),
    );
    let o = p.bin(&["gc", "--dry-run", "--json", "--keep", &kept[..10]]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["deleted"], serde_json::json!([orphan.clone()]));
    assert!(store.contains(&orphan), "dry run deletes nothing");
    let o = p.bin(&["gc", "--keep", &kept[..10]]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!store.contains(&orphan));
    assert!(store.contains(&kept) && store.contains(&promoted));
    for id in before {
        assert!(store.contains(&id), "gc deleted reachable object {id}");
    }
    assert_eq!(p.bin(&["verify"]).status.code(), Some(0));
    // Without --keep, the unreferenced object goes too.
    assert_eq!(p.bin(&["gc"]).status.code(), Some(0));
    assert!(!store.contains(&kept));
}

#[test]
fn concurrent_runs_share_a_store_safely() {
    let p = project();
    assert_eq!(p.bin(&["lock"]).status.code(), Some(0));
    p.commit_all();
    let spec = p.spec().display().to_string();
    let t = Arc::new(FakeTrainer::new());
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let ex = executors(t.clone());
            let spec = spec.clone();
            let store = p.store();
            std::thread::spawn(move || {
                let args = [
                    "medrun",
                    "-q",
                    "--store",
                    store.to_str().unwrap(),
                    "run",
                    spec.as_str(),
                ];
                medrun::cli::main_with(args, &ex)
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 0);
    }
    // Same keys, same bytes: no nondeterminism, a clean store, one output per key.
    let o = p.bin(&["verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let store = Store::open_existing(&p.store()).unwrap();
    assert_eq!(store.list_key_outputs().unwrap().len(), 3);
    for r in medrun::lineage::load_runs(&store).unwrap() {
        assert!(r.nondeterminism.is_empty());
        assert_eq!(r.status(), "ok");
    }
}

#[test]
fn gc_waits_for_a_running_writer() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let orphan = store.put_bytes(b"orphan").unwrap();
    let shared = store.lock_shared().unwrap();
    let dir = tmp.path().to_path_buf();
    let gc = std::thread::spawn(move || medrun::ops::gc::gc(&dir, &dir, &[], false).unwrap());
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !gc.is_finished(),
        "gc must wait while a run holds the store"
    );
    assert!(store.contains(&orphan));
    drop(shared);
    let report = gc.join().unwrap();
    assert_eq!(report.deleted, vec![orphan.clone()]);
}
