//! Promotions that prove themselves, and sealed run records, through the binary on the hostile
//! corpus's tiny project (it trains in well under a second). Every forgery of issue 14 (finding 2,
//! and the run-record half of finding 4) now fails to fool medrun: each attack is made on a fresh
//! copy of one promoted project, and `export prod` (or the command the attack targets) must exit
//! 1, name where the problem is, and write nothing.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use super::train::medrun;
use crate::common::{Project, stderr};

/// The hostile corpus's project, in git, trained and with `latest:dpo` promoted to `prod`
/// (committed).
fn promoted() -> Project {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/hostile/project");
    copy(&src, dir.path());
    let p = Project { dir };
    p.write(".gitignore", "/.medrun\n");
    p.git(&["init", "-q"]);
    p.commit_all();
    ok(&p, &["run", "runs/hostile.yaml"]);
    ok(&p, &["promote", "latest:dpo", "--to", "prod"]);
    p.commit_all();
    p
}

fn copy(from: &Path, to: &Path) {
    let o = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

/// A fresh copy of `p` (work tree, git and store).
fn clone(p: &Project) -> Project {
    let dir = tempfile::tempdir().unwrap();
    copy(p.root(), dir.path());
    Project { dir }
}

fn run(p: &Project, args: &[&str]) -> Output {
    medrun(p, args, 2).output().unwrap()
}

fn ok(p: &Project, args: &[&str]) -> Output {
    let o = run(p, args);
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    o
}

/// Run `args`, which must exit 1 with every one of `words` on stderr.
fn refused(p: &Project, args: &[&str], words: &[&str]) {
    let o = run(p, args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{args:?} must be refused: {err}");
    for w in words {
        assert!(err.contains(w), "{args:?}: stderr lacks {w:?}: {err}");
    }
    assert!(!p.path("out").exists(), "nothing is exported");
}

/// The newest run record: (path, run id).
fn record(p: &Project) -> (PathBuf, String) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(p.store().join("runs-v1"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|f| f.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort_by_key(|f| std::fs::metadata(f).unwrap().modified().unwrap());
    let f = files.pop().unwrap();
    let id = f.file_stem().unwrap().to_string_lossy().to_string();
    (f, id)
}

/// Stage name → output tree, from the newest record.
fn output(p: &Project, stage: &str) -> String {
    let text = std::fs::read_to_string(record(p).0).unwrap();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["stage"] == stage && e["output"].is_string())
        .map(|e| e["output"].as_str().unwrap().to_string())
        .next_back()
        .unwrap()
}

/// Replace text in a (possibly read-only) file.
fn edit(path: &Path, from: &str, to: &str) {
    let mut perm = std::fs::metadata(path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(path, perm).unwrap();
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} lacks {from}", path.display());
    std::fs::write(path, text.replace(from, to)).unwrap();
}

/// A second model on `prod` (another seed; its gate lets any model pass).
fn promote_again(p: &Project) {
    edit(&p.path("runs/hostile.yaml"), "seed: 7", "seed: 8");
    edit(&p.path("runs/hostile.yaml"), "min: 0.5", "min: 0.0");
    p.commit_all();
    ok(p, &["run", "runs/hostile.yaml"]);
    ok(p, &["promote", "latest:dpo", "--to", "prod"]);
    p.commit_all();
}

#[test]
fn a_promotion_records_its_evidence_and_every_forgery_of_it_is_refused() {
    let base = promoted();
    let text = base.read("promotions.yaml");
    assert!(text.contains("\nversion: 2\n"), "{text}");
    // The entry pins the sealed record and the commit the run trained at.
    let (rec, _) = record(&base);
    let address = blake3::hash(&std::fs::read(&rec).unwrap())
        .to_hex()
        .to_string();
    assert!(text.contains(&format!("record: \"{address}\"")), "{text}");
    let seal = std::fs::read_to_string(rec.with_extension("seal")).unwrap();
    assert_eq!(seal.trim(), address);
    let o = ok(&base, &["promotions", "verify", "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["entries"], 1, "{v}");
    assert_eq!(v["history"]["commits"], 2, "{v}");
    assert!(v["hashed_bytes"].as_u64().unwrap() > 0, "{v}");
    ok(&base, &["export", "prod", "good"]);
    let pt = output(&base, "pt");

    // A hand-written entry with no gates and an all-zero results id gives `prod` to pt.
    let p = clone(&base);
    let dpo = output(&p, "dpo");
    let block = text[text.find("  - channel:").unwrap()..].to_string();
    let results = block.split("results: \"").nth(1).unwrap()[..64].to_string();
    let forged = block
        .replace(&dpo, &pt)
        .replace("previous: null", &format!("previous: \"{dpo}\""))
        .replace(&results, &"0".repeat(64));
    let gates = forged.find("    gates:").unwrap();
    p.write(
        "promotions.yaml",
        &format!("{text}{}    gates: []\n", &forged[..gates]),
    );
    p.commit_all();
    refused(
        &p,
        &["export", "prod", "out"],
        &["promotions.yaml:", "gates"],
    );
    // The same forgery with the real entry's gates: the run did not produce that checkpoint.
    let p = clone(&base);
    p.write("promotions.yaml", &format!("{text}{forged}"));
    p.commit_all();
    refused(
        &p,
        &["export", "prod", "out"],
        &["promotions.yaml:", "prod"],
    );
    refused(&p, &["promotions", "verify"], &["promotions.yaml:"]);

    // An old value edited and committed: the commit that rewrote it is named.
    let p = clone(&base);
    edit(&p.path("promotions.yaml"), "value: 1.0", "value: 0.75");
    p.commit_all();
    refused(
        &p,
        &["lineage", "prod"],
        &["commit ", "rewrote promotions.yaml"],
    );
    // ...and uncommitted.
    let p = clone(&base);
    edit(&p.path("promotions.yaml"), "value: 1.0", "value: 0.75");
    refused(
        &p,
        &["generate", "prod", "--prompt", "hi"],
        &["committed history"],
    );

    // Channels reordered.
    let p = clone(&base);
    ok(&p, &["promote", "latest:dpo", "--to", "staging"]);
    p.commit_all();
    let now = p.read("promotions.yaml");
    let (head, rest) = now.split_at(now.find("  - channel:").unwrap());
    let second = rest[1..].find("  - channel:").unwrap() + 1;
    p.write(
        "promotions.yaml",
        &format!("{head}{}{}", &rest[second..], &rest[..second]),
    );
    p.commit_all();
    refused(&p, &["export", "prod", "out"], &["rewrote promotions.yaml"]);

    // The newest entry deleted and committed: a silent rollback.
    let rollback = clone(&base);
    promote_again(&rollback);
    let p = clone(&rollback);
    p.write("promotions.yaml", &text);
    p.commit_all();
    refused(&p, &["export", "prod", "out"], &["rewrote promotions.yaml"]);

    // A consistent rewrite: the first checkpoint and the second entry's `previous` both edited.
    let p = clone(&rollback);
    let now = p.read("promotions.yaml");
    p.write("promotions.yaml", &now.replace(&dpo, &pt));
    p.commit_all();
    refused(&p, &["export", "prod", "out"], &["rewrote promotions.yaml"]);
    // The honest history still verifies, across both promotions and all its commits.
    ok(&rollback, &["promotions", "verify"]);
    ok(&rollback, &["export", "prod", "good2"]);
}

#[test]
fn sealed_run_records_refuse_edits_plants_and_lost_seals() {
    let base = promoted();
    let pt = output(&base, "pt");
    let dpo = output(&base, "dpo");
    let (rec, run_id) = record(&base);
    let name = rec.file_name().unwrap().to_string_lossy().to_string();
    let stage = format!("{run_id}:dpo");
    let (before, after) = (
        format!("\"output\":\"{dpo}\""),
        format!("\"output\":\"{pt}\""),
    );

    // A record edited after sealing: its dpo output now names the pt weights.
    let p = clone(&base);
    edit(&p.store().join("runs-v1").join(&name), &before, &after);
    refused(
        &p,
        &["export", &stage, "out"],
        &[&name, "changed after it was sealed"],
    );
    refused(&p, &["lineage", &stage], &[&name]);
    refused(&p, &["gc"], &[&name]);
    let o = run(&p, &["verify", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["report"]["tampered"][0][0],
        format!("runs-v1/{name}"),
        "{v}"
    );
    // The channel's entry pins the record too.
    refused(
        &p,
        &["export", "prod", "out"],
        &["promotions.yaml:", "changed after it was sealed"],
    );
    // Restoring the sealed bytes (the hint's command) repairs it.
    let sealed =
        std::fs::read_to_string(p.store().join("runs-v1").join(&name).with_extension("seal"))
            .unwrap();
    let sealed = sealed.trim();
    let obj = p
        .store()
        .join("objects-v1")
        .join(&sealed[..2])
        .join(&sealed[2..]);
    std::fs::copy(&obj, p.store().join("runs-v1").join(&name)).unwrap();
    ok(&p, &["verify"]);
    ok(&p, &["export", "prod", "out2"]);

    // A planted record: a copy under a new run id naming pt as its dpo output, unsealed.
    let p = clone(&base);
    let planted = "0123456789abcdef0123456789abcdef";
    let text = std::fs::read_to_string(&rec)
        .unwrap()
        .replace(&run_id, planted)
        .replace(&before, &after);
    std::fs::write(p.store().join(format!("runs-v1/{planted}.jsonl")), text).unwrap();
    refused(
        &p,
        &["promote", &format!("{planted}:dpo"), "--to", "staging"],
        &[&format!("{planted}.jsonl"), "not sealed"],
    );
    refused(
        &p,
        &["export", &format!("{planted}:dpo"), "out"],
        &["not sealed"],
    );
    let o = ok(&p, &["verify"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("unsealed  runs-v1/{planted}.jsonl")),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );

    // A deleted seal.
    let p = clone(&base);
    std::fs::remove_file(p.store().join("runs-v1").join(&name).with_extension("seal")).unwrap();
    refused(
        &p,
        &["export", "prod", "out"],
        &["promotions.yaml:", "lost its seal"],
    );
    refused(&p, &["export", &stage, "out"], &["not sealed"]);
}

#[test]
fn promote_checks_the_channel_and_the_spec_before_storing_anything() {
    let p = promoted();
    let objects = || walk(&p.store().join("objects-v1"));
    let before = objects();
    // Names that a run or object prefix, or `latest`, would shadow.
    for bad in ["beef", "2024", "latest"] {
        refused(
            &p,
            &["promote", "latest:dpo", "--to", bad, "--no-cache"],
            &[bad, "channel name"],
        );
    }
    // A run whose spec was not the committed file (--allow-dirty).
    edit(&p.path("runs/hostile.yaml"), "min: 0.5", "min: 0.0");
    ok(&p, &["run", "runs/hostile.yaml", "--allow-dirty"]);
    p.git(&["checkout", "-q", "runs/hostile.yaml"]);
    let after_run = objects();
    refused(
        &p,
        &["promote", "latest:dpo", "--to", "staging", "--no-cache"],
        &["runs/hostile.yaml", "uncommitted spec changes"],
    );
    assert_eq!(objects(), after_run, "nothing was stored");
    assert!(after_run.len() > before.len());
    assert!(!p.read("promotions.yaml").contains("staging"));
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}
