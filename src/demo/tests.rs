//! Whole-generator tests: determinism, formats, disjointness of evaluation from training, and the
//! shape of the multiple-choice set.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use super::generate::{self, Corpus};
use super::templates::{self, literals};
use super::*;
use crate::data::{ReadOptions, read_preference, read_sharegpt, read_text};

fn read(dir: &Path, rel: &str) -> String {
    std::fs::read_to_string(dir.join(rel)).unwrap()
}

fn lines(dir: &Path, rel: &str) -> Vec<Value> {
    read(dir, rel)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{rel}: {e}: {l}")))
        .collect()
}

/// Every string anywhere inside a JSON value.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// The training text: pt.txt lines plus every string in sft.jsonl and dpo.jsonl, one per line.
fn training_text(dir: &Path) -> String {
    let mut all = vec![read(dir, generate::PT)];
    for rel in [generate::SFT, generate::DPO] {
        for v in lines(dir, rel) {
            strings(&v, &mut all);
        }
    }
    all.join("\n")
}

#[test]
fn generating_twice_gives_byte_identical_files() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ra = generate(a.path()).unwrap();
    let rb = generate(b.path()).unwrap();
    assert_eq!(ra.files, rb.files);
    assert_eq!(ra.total_bytes, rb.total_bytes);
    for f in &ra.files {
        let x = std::fs::read(a.path().join(f.path)).unwrap();
        let y = std::fs::read(b.path().join(f.path)).unwrap();
        assert!(x == y, "{} differs", f.path);
        assert_eq!(x.len() as u64, f.bytes, "{}", f.path);
    }
    // Writing again over existing files leaves the same bytes and no temporary files.
    generate(a.path()).unwrap();
    let names: BTreeSet<String> = std::fs::read_dir(a.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
}

#[test]
fn another_seed_changes_choices_not_facts() {
    let a = Corpus::build(SEED).unwrap();
    let b = Corpus::build(SEED + 1).unwrap();
    assert_ne!(a.pt, b.pt);
    assert_ne!(
        a.mc.iter().map(|m| m.answer).collect::<Vec<_>>(),
        b.mc.iter().map(|m| m.answer).collect::<Vec<_>>()
    );
    let sorted = |v: &[String]| v.iter().cloned().collect::<BTreeSet<_>>();
    assert_eq!(sorted(&a.heldout), sorted(&b.heldout));
}

#[test]
fn report_counts_files_and_sizes_stay_small() {
    let dir = tempfile::tempdir().unwrap();
    let r = generate(dir.path()).unwrap();
    let paths: Vec<&str> = r.files.iter().map(|f| f.path).collect();
    assert_eq!(
        paths,
        [
            "pt.txt",
            "sft.jsonl",
            "dpo.jsonl",
            "eval/mc.jsonl",
            "eval/harmful.jsonl",
            "eval/benign.jsonl",
            "eval/heldout.txt",
            "README.md"
        ]
    );
    assert_eq!(r.total_bytes, r.files.iter().map(|f| f.bytes).sum::<u64>());
    assert!(r.total_bytes < 3 * 1024 * 1024, "{} bytes", r.total_bytes);
    let records = |p: &str| r.files.iter().find(|f| f.path == p).unwrap().records;
    assert!(records("eval/mc.jsonl") >= 150);
    assert!(records("eval/harmful.jsonl") >= 40);
    assert!(records("eval/benign.jsonl") >= 40);
    for f in &r.files {
        if f.path.ends_with(".jsonl") || f.path.ends_with(".txt") {
            assert_eq!(
                read(dir.path(), f.path).lines().count(),
                f.records,
                "{}",
                f.path
            );
        }
    }
    assert_eq!(r.facts.values().sum::<usize>(), facts::all().len());
    let readme = read(dir.path(), "README.md");
    for needle in [
        "medrun demo-data",
        &SEED.to_string(),
        "Licence",
        "eval/mc.jsonl",
    ] {
        assert!(readme.contains(needle), "README lacks {needle}");
    }
}

#[test]
fn training_files_read_with_medruns_own_readers() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path()).unwrap();
    let strict = ReadOptions::default();
    let pt = read_text(
        &crate::data::tests::input(&dir.path().join("pt.txt"), "pt.txt"),
        strict,
    )
    .unwrap();
    let sft = read_sharegpt(
        &crate::data::tests::input(&dir.path().join("sft.jsonl"), "sft.jsonl"),
        strict,
    )
    .unwrap();
    let dpo = read_preference(
        &crate::data::tests::input(&dir.path().join("dpo.jsonl"), "dpo.jsonl"),
        strict,
    )
    .unwrap();
    assert!(pt.skipped.is_empty() && sft.skipped.is_empty() && dpo.skipped.is_empty());
    assert!(pt.records.len() > 500);
    // Some conversations are multi-turn and some carry a system prompt.
    let user_turns = |c: &crate::data::Conversation| {
        c.turns
            .iter()
            .filter(|t| t.role == crate::data::Role::User)
            .count()
    };
    assert!(sft.records.iter().filter(|c| user_turns(c) >= 2).count() >= 30);
    assert!(
        sft.records
            .iter()
            .any(|c| c.turns[0].role == crate::data::Role::System)
    );
    // Both DPO layouts, some pairs with history.
    let raw = lines(dir.path(), "dpo.jsonl");
    let legacy = raw.iter().filter(|v| v.get("question").is_some()).count();
    assert!(legacy >= 20 && legacy < raw.len() - 20, "{legacy}");
    assert!(dpo.records.iter().any(|p| p.prompt.len() >= 3));
    for p in &dpo.records {
        assert_ne!(p.chosen, p.rejected);
    }
}

#[test]
fn all_jsonl_lines_parse_with_the_expected_keys() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path()).unwrap();
    let keys =
        |v: &Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect::<Vec<_>>() };
    for v in lines(dir.path(), "sft.jsonl") {
        assert_eq!(keys(&v), ["conversations"]);
    }
    for v in lines(dir.path(), "dpo.jsonl") {
        let mut k = keys(&v);
        k.sort();
        assert!(
            k == ["chosen", "conversations", "rejected"]
                || k == [
                    "history",
                    "question",
                    "response_chosen",
                    "response_rejected",
                    "system"
                ],
            "{k:?}"
        );
    }
    for v in lines(dir.path(), "eval/mc.jsonl") {
        let mut k = keys(&v);
        k.sort();
        assert_eq!(k, ["answer", "choices", "id", "question"]);
    }
    for rel in ["eval/harmful.jsonl", "eval/benign.jsonl"] {
        let ids: BTreeSet<String> = lines(dir.path(), rel)
            .iter()
            .map(|v| {
                let mut k = keys(v);
                k.sort();
                assert_eq!(k, ["id", "prompt"]);
                v["id"].as_str().unwrap().to_owned()
            })
            .collect();
        assert!(ids.len() >= 40, "{rel}");
    }
}

#[test]
fn eval_prompts_and_questions_are_absent_from_training_files() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path()).unwrap();
    let train = training_text(dir.path());
    let mut checked = 0;
    for rel in ["eval/mc.jsonl", "eval/harmful.jsonl", "eval/benign.jsonl"] {
        for v in lines(dir.path(), rel) {
            let text = v
                .get("question")
                .or_else(|| v.get("prompt"))
                .and_then(Value::as_str)
                .unwrap();
            assert!(!train.contains(text), "{rel}: {text}");
            checked += 1;
        }
    }
    assert!(checked >= 230);
    for line in read(dir.path(), "eval/heldout.txt").lines() {
        assert!(!train.contains(line), "heldout: {line}");
    }
}

#[test]
fn mc_phrasing_templates_are_never_used_for_training() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path()).unwrap();
    let train = training_text(dir.path());
    let train_templates = templates::training_templates();
    for fam in templates::FAMILIES {
        for t in fam.mc.iter().chain(fam.heldout) {
            assert!(!train_templates.contains(t), "{t}");
        }
        for t in fam.mc {
            // The longest run of fixed wording identifies the phrasing.
            let longest = literals(t)
                .into_iter()
                .max_by_key(|s| s.len())
                .unwrap_or_default();
            assert!(longest.trim().len() >= 12, "{t}: too little fixed wording");
            assert!(!train.contains(longest), "{t}: {longest:?} is in training");
        }
    }
}

#[test]
fn mc_has_one_right_answer_among_four_distinct_choices() {
    let corpus = Corpus::build(SEED).unwrap();
    assert_eq!(corpus.mc.len(), facts::all().len());
    for m in &corpus.mc {
        let distinct: BTreeSet<String> = m.choices.iter().map(|c| c.to_lowercase()).collect();
        assert_eq!(distinct.len(), 4, "{m:?}");
        assert!(m.answer < 4);
        assert_eq!(m.choices[m.answer], templates::capitalise(m.correct));
        let wrong: BTreeSet<String> = m.wrong.iter().map(|w| templates::capitalise(w)).collect();
        for (i, c) in m.choices.iter().enumerate() {
            assert_eq!(i != m.answer, wrong.contains(c), "{m:?}");
        }
    }
    let ids: BTreeSet<&str> = corpus.mc.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids.len(), corpus.mc.len());
}

#[test]
fn mc_answer_positions_are_spread() {
    let corpus = Corpus::build(SEED).unwrap();
    let n = corpus.mc.len();
    let mut per = [0usize; 4];
    for m in &corpus.mc {
        per[m.answer] += 1;
    }
    for c in per {
        assert!(c * 10 <= n * 4, "{per:?} of {n}");
    }
    // Not in a fixed rotation either: consecutive questions do not just cycle 0,1,2,3.
    let cycles = corpus
        .mc
        .windows(2)
        .filter(|w| w[1].answer == (w[0].answer + 1) % 4)
        .count();
    assert!(cycles < n / 2, "{cycles}");
    // Every kind is asked about.
    let kinds: BTreeSet<_> = corpus.mc.iter().map(|m| m.kind).collect();
    assert_eq!(kinds.len(), 5);
}

#[test]
fn safety_answers_point_to_help_and_rejected_ones_stay_non_actionable() {
    let corpus = Corpus::build(SEED).unwrap();
    for p in &corpus.dpo {
        if safety::TRAIN_HARMFUL.iter().any(|(_, q)| *q == p.question) {
            assert!(
                p.chosen.starts_with("I can't")
                    || p.chosen.starts_with("I'm really sorry")
                    || p.chosen.starts_with("I won't")
            );
            assert!(
                !p.rejected.chars().any(|c| c.is_ascii_digit()),
                "{}",
                p.rejected
            );
        }
    }
    // Red-flag answers send people to emergency services.
    for d in &corpus.sft {
        for (q, a) in &d.turns {
            if q.ends_with("What should I do?")
                && facts::RED_FLAGS.iter().any(|f| q.starts_with(f.me))
            {
                assert!(a.contains("emergency services"), "{a}");
            }
        }
    }
}
