//! `medrun lock`, `lock --check`, `run --locked`.

use crate::common::{project, stderr, stdout};

#[test]
fn lock_then_check_is_clean_and_not_rewritten() {
    let p = project();
    let o = p.bin(&["lock"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = p.read("datasets.lock");
    assert!(text.contains("version: 1"));
    for f in [
        "data/pt.txt",
        "data/sft.jsonl",
        "data/dpo.jsonl",
        "data/mc.jsonl",
    ] {
        assert!(
            text.contains(&format!("\"{f}\":")),
            "{f} missing from lock:\n{text}"
        );
    }
    // Blank line in pt.txt is not a record.
    assert!(
        text.contains("format: text\n    blake3: ") && text.contains("records: 3\n"),
        "{text}"
    );
    let mtime = std::fs::metadata(p.path("datasets.lock"))
        .unwrap()
        .modified()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let o = p.bin(&["lock", "--check"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = p.bin(&["lock"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("unchanged"), "{}", stderr(&o));
    assert_eq!(
        std::fs::metadata(p.path("datasets.lock"))
            .unwrap()
            .modified()
            .unwrap(),
        mtime
    );
    // --verify re-hashes and agrees.
    let o = p.bin(&["lock", "--check", "--verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

fn flip_one_byte(path: &std::path::Path) {
    let mut b = std::fs::read(path).unwrap();
    b[5] ^= 0x01;
    std::fs::write(path, b).unwrap();
}

#[test]
fn flipped_byte_fails_check_and_locked_run_naming_the_dataset() {
    let p = project();
    assert_eq!(p.bin(&["lock"]).status.code(), Some(0));
    p.commit_all();
    let before = p.read("datasets.lock");
    flip_one_byte(&p.path("data/sft.jsonl"));

    let o = p.bin(&["lock", "--check"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("data/sft.jsonl"), "{e}");
    assert!(e.contains("chats"), "names the dataset: {e}");
    assert!(e.contains("hint: ") && e.contains("medrun lock"), "{e}");
    assert_eq!(p.read("datasets.lock"), before, "--check must not write");

    let o = p.bin(&["run", "runs/tiny.yaml", "--locked", "--allow-dirty"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("chats") && e.contains("data/sft.jsonl"), "{e}");
    assert!(
        e.contains("locked") && e.contains("now"),
        "old and new: {e}"
    );
    assert!(e.contains("medrun lock"), "{e}");
    assert!(
        !p.path(".medrun/runs-v1").exists(),
        "refused before any work"
    );
    assert_eq!(p.read("datasets.lock"), before);
}

#[test]
fn missing_dataset_is_a_clear_error() {
    let p = project();
    std::fs::remove_file(p.path("data/dpo.jsonl")).unwrap();
    let o = p.bin(&["lock"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("data/dpo.jsonl") && e.contains("does not exist"),
        "{e}"
    );
    let o = p.bin(&["plan", "runs/tiny.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("`pairs`"), "{}", stderr(&o));
}

#[test]
fn check_without_a_lock_fails() {
    let p = project();
    let o = p.bin(&["lock", "--check"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not locked"), "{}", stderr(&o));
    assert!(stdout(&o).is_empty());
}

#[test]
fn state_cache_skips_rehash_but_notices_changes() {
    let p = project();
    // Make the files look old enough to be cached (not "racily clean").
    for f in [
        "data/pt.txt",
        "data/sft.jsonl",
        "data/dpo.jsonl",
        "data/mc.jsonl",
    ] {
        let t = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(p.path(f))
            .unwrap()
            .set_modified(t)
            .unwrap();
    }
    let o = p.bin(&["lock", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["hashed"], 4);
    let o = p.bin(&["lock", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["hashed"], 0, "second lock uses the cache: {v}");
    assert_eq!(v["cache_hits"], 4);
    p.write("data/mc.jsonl", "{\"question\":\"changed\"}\n");
    let o = p.bin(&["lock", "--check"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("suite/mc"), "{}", stderr(&o));
}
