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
    // No store yet: the cache has nowhere to go, and nothing is created for it.
    let o = p.bin(&["lock", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["hashed"], 4);
    assert!(!p.store().exists(), "lock created a store directory");
    medrun::store::Store::open(&p.store()).unwrap();
    let lock_json = |args: &[&str]| -> serde_json::Value {
        let o = p.bin(args);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    // `lock` writes datasets.lock, so it hashes fresh and only fills the cache.
    for _ in 0..2 {
        let v = lock_json(&["lock", "--json"]);
        assert_eq!(
            (v["hashed"].as_u64(), v["cache_hits"].as_u64()),
            (Some(4), Some(0)),
            "{v}"
        );
    }
    let v = lock_json(&["lock", "--check", "--json"]);
    assert_eq!(v["hashed"], 0, "lock --check uses the cache: {v}");
    assert_eq!(v["cache_hits"], 4);
    p.write("data/mc.jsonl", "{\"question\":\"changed\"}\n");
    let o = p.bin(&["lock", "--check"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("suite/mc"), "{}", stderr(&o));
}

#[test]
fn absent_fetchable_model_keeps_its_pin_and_hints_the_fetch_command() {
    let p = project();
    // A spec that starts from a local model and says how to fetch it.
    p.write("models/base.gguf", "not really a model, only bytes to pin");
    p.write(
        "runs/fetched.yaml",
        "version: 1\nname: fetched\nseed: 1\nmodel:\n  family: llama\n  from: models/base.gguf\n  \
         fetch: scripts/get-base.sh\ndatasets:\n  d: {path: data/sft.jsonl, format: sharegpt}\n\
         stages:\n  - {name: sft, kind: sft, datasets: [d], max_steps: 1, batch_size: 1, max_len: 32, optimizer: {lr: 0.001}}\n",
    );
    let o = p.bin(&["lock"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let locked = p.read("datasets.lock");
    assert!(locked.contains("\"models/base.gguf\":"), "{locked}");

    // Absent from the checkout: the pin is kept, with a warning naming the fetch command.
    std::fs::remove_file(p.path("models/base.gguf")).unwrap();
    for args in [
        &["lock"][..],
        &["lock", "--check"],
        &["lock", "--check", "--verify"],
    ] {
        let o = p.bin(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains("models/base.gguf") && e.contains("scripts/get-base.sh"),
            "{args:?}: {e}"
        );
    }
    assert_eq!(p.read("datasets.lock"), locked);

    // `plan` (and so `run`) still needs the file, and its hint is the fetch command.
    let o = p.bin(&["plan", "runs/fetched.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("models/base.gguf") && e.contains("fetch it with `scripts/get-base.sh`"),
        "{e}"
    );

    // With no locked entry there is nothing to keep: an error with the same hint.
    std::fs::remove_file(p.path("datasets.lock")).unwrap();
    let o = p.bin(&["lock"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("fetch it with `scripts/get-base.sh`"),
        "{}",
        stderr(&o)
    );
    assert!(!p.path("datasets.lock").exists());
}

#[test]
fn fetch_without_a_local_model_is_a_spec_error() {
    let p = project();
    p.write(
        "runs/bad.yaml",
        "version: 1\nname: bad\nseed: 1\nmodel:\n  family: llama\n  \
         init: {hidden_size: 8, layers: 1, heads: 2, intermediate_size: 16}\n  \
         fetch: scripts/get-base.sh\ntokenizer:\n  train: {dataset: d, vocab_size: 300}\n\
         datasets:\n  d: {path: data/pt.txt, format: text}\nstages:\n  - {name: pt, kind: pt, datasets: [d], max_steps: 1, batch_size: 1, max_len: 32, optimizer: {lr: 0.001}}\n",
    );
    let o = p.bin(&["plan", "runs/bad.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("runs/bad.yaml:7:") && e.contains("model.fetch"),
        "{e}"
    );
}
