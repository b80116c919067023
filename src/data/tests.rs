//! Tests shared by the readers: directories of shards, skip mode, file-level errors, and the real
//! MedicalGPT sample files (in `../shared/data/medicalgpt` beside the checkout, when present).

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::*;
use crate::fsx::{Access, DEFAULT_MAX_RECORD_BYTES, FsError, Input};

type Reader<T> = fn(&Input, ReadOptions) -> Result<Read<T>, DataError>;

const SKIP: ReadOptions = ReadOptions {
    skip_bad_records: true,
    max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
};

/// The input at `path` as the readers get it, named `display` in messages.
pub(crate) fn input(path: &Path, display: &str) -> Input {
    try_input(path, display).unwrap()
}

pub(super) fn try_input(path: &Path, display: &str) -> Result<Input, FsError> {
    let parent = path.parent().unwrap();
    let name = path.file_name().unwrap().to_str().unwrap();
    let mut input = Access::with(parent, Vec::new(), DEFAULT_MAX_RECORD_BYTES)?.input(name)?;
    let base = display.trim_end_matches('/');
    input.display = display.to_owned();
    for f in &mut input.files {
        f.display = if f.rel.is_empty() {
            display.to_owned()
        } else {
            format!("{base}/{}", f.rel)
        };
    }
    Ok(input)
}

/// A temporary directory holding one file `name` with `bytes`.
pub(super) fn file(name: &str, bytes: impl AsRef<[u8]>) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

/// The error reading `contents` (as a file named `name`, displayed as `name`) fails with.
pub(super) fn err<T: std::fmt::Debug>(read: Reader<T>, name: &str, contents: &str) -> DataError {
    let (_d, p) = file(
        Path::new(name).file_name().unwrap().to_str().unwrap(),
        contents,
    );
    read(&input(&p, name), ReadOptions::default()).unwrap_err()
}

const SFT_OK: &str =
    "{\"conversations\":[{\"from\":\"human\",\"value\":\"q\"},{\"from\":\"gpt\",\"value\":\"a\"}]}";

#[test]
fn skip_mode_collects_bad_records_and_keeps_order() {
    let bad_role = "{\"conversations\":[{\"from\":\"human\",\"value\":\"q\"},{\"from\":\"bot\",\"value\":\"a\"}]}";
    let contents = format!("{SFT_OK}\n{{oops\n{SFT_OK}\n\n{bad_role}\n{SFT_OK}\n");
    let (_d, p) = file("sft.jsonl", &contents);
    let read = read_sharegpt(&input(&p, "sft.jsonl"), SKIP).unwrap();
    assert_eq!(
        read.records.iter().map(|c| c.line).collect::<Vec<_>>(),
        [1, 3, 6]
    );
    assert_eq!(read.skipped.len(), 2);
    assert_eq!(
        read.skipped[0],
        Skipped {
            file: "sft.jsonl".into(),
            line: 2,
            field: None,
            reason: "invalid JSON at column 2: key must be a string".into(),
        }
    );
    assert_eq!(read.skipped[1].line, 5);
    assert_eq!(
        read.skipped[1].field.as_deref(),
        Some("conversations[1].from")
    );
    assert_eq!(
        read.skipped[1].to_string(),
        "sft.jsonl:5: field \"conversations[1].from\": unknown role \"bot\" (expected human, gpt, system, user or assistant)"
    );
    // Without skipping, the first bad record fails the read.
    let e = read_sharegpt(&input(&p, "sft.jsonl"), ReadOptions::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "sft.jsonl:2:2: invalid JSON: key must be a string"
    );
}

#[test]
fn file_with_only_bad_records_is_an_error_even_when_skipping() {
    let (_d, p) = file("pt.jsonl", "{\"txt\": \"a\"}\n{\"txt\": \"b\"}\n");
    let e = read_text(&input(&p, "data/pt.jsonl"), SKIP).unwrap_err();
    assert_eq!(
        e.to_string(),
        "`data/pt.jsonl` has no usable records: all 2 were bad (first: data/pt.jsonl:1: field \"text\": missing)"
    );
    assert!(e.hint().contains("`format`"), "{}", e.hint());
    match e {
        DataError::NoRecords { skipped, .. } => assert_eq!(skipped.len(), 2),
        other => panic!("{other:?}"),
    }
}

#[test]
fn empty_input_is_an_error() {
    for contents in ["", "\u{feff}", "\n\r\n  \n"] {
        let (_d, p) = file("pt.txt", contents);
        let e = read_text(&input(&p, "pt.txt"), SKIP).unwrap_err();
        assert_eq!(e.to_string(), "`pt.txt` has no records");
        assert!(e.hint().contains("empty"), "{}", e.hint());
    }
    let dir = tempfile::tempdir().unwrap();
    let e = read_sharegpt(&input(dir.path(), "shards"), SKIP).unwrap_err();
    assert_eq!(e.to_string(), "`shards` has no records");
}

#[test]
fn missing_path_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let e = DataError::from(try_input(&dir.path().join("nope.jsonl"), "nope.jsonl").unwrap_err());
    assert_eq!(e.to_string(), "`nope.jsonl` does not exist");
    assert!(e.hint().starts_with("restore the file"), "{}", e.hint());
}

#[test]
fn directory_shards_in_relative_path_order_with_per_file_lines() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("b")).unwrap();
    std::fs::write(root.join("b/01.txt"), "b1\nb2\n").unwrap();
    std::fs::write(root.join("c.jsonl"), "{\"text\": \"c1\"}\n").unwrap();
    std::fs::write(root.join("a.txt"), "\n\na1\n").unwrap();
    std::fs::write(root.join(".hidden.txt"), "no\n").unwrap();
    std::fs::write(root.join("empty.txt"), "").unwrap();
    let read = read_text(&input(root, "corpus/"), ReadOptions::default()).unwrap();
    let got: Vec<_> = read
        .records
        .iter()
        .map(|d| (d.line, d.text.as_str()))
        .collect();
    assert_eq!(got, [(3, "a1"), (1, "b1"), (2, "b2"), (1, "c1")]);

    // Errors name the shard.
    std::fs::write(
        root.join("b/02.jsonl"),
        "{\"text\": \"x\"}\n{\"text\": 1}\n",
    )
    .unwrap();
    let e = read_text(&input(root, "corpus"), ReadOptions::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "corpus/b/02.jsonl:2: field \"text\": expected a string, found a number"
    );
    let read = read_text(&input(root, "corpus"), SKIP).unwrap();
    assert_eq!(read.records.len(), 5);
    assert_eq!(read.skipped.len(), 1);
    assert_eq!(read.skipped[0].file, "corpus/b/02.jsonl");

    // A shard whose records are all bad fails the whole read, naming the shard.
    std::fs::write(root.join("d.jsonl"), "{\"text\": \"\"}\n").unwrap();
    let e = read_text(&input(root, "corpus"), SKIP).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("`corpus/d.jsonl` has no usable records: all 1 were bad"),
        "{e}"
    );
}

#[test]
fn a_line_over_the_record_limit_is_a_bad_record_named_by_line() {
    let big = "x".repeat(100);
    let (_d, p) = file("pt.txt", format!("short\n{big}\r\nafter\n"));
    let strict = ReadOptions {
        skip_bad_records: false,
        max_record_bytes: 64,
    };
    let e = read_text(&input(&p, "data/pt.txt"), strict).unwrap_err();
    assert_eq!(
        e.to_string(),
        "data/pt.txt:2: the line holds 100 bytes, over the limit of 64 bytes (--max-record-bytes)"
    );
    assert!(e.hint().contains("--max-record-bytes"), "{}", e.hint());
    let skip = ReadOptions {
        skip_bad_records: true,
        max_record_bytes: 64,
    };
    let read = read_text(&input(&p, "data/pt.txt"), skip).unwrap();
    let texts: Vec<_> = read
        .records
        .iter()
        .map(|d| (d.line, d.text.as_str()))
        .collect();
    assert_eq!(texts, [(1, "short"), (3, "after")]);
    assert_eq!(read.skipped[0].line, 2);
    // Exactly at the limit is fine.
    let read = read_text(
        &input(&p, "data/pt.txt"),
        ReadOptions {
            skip_bad_records: false,
            max_record_bytes: 100,
        },
    )
    .unwrap();
    assert_eq!(read.records.len(), 3);
}

#[test]
fn duplicate_key_in_pt_json_lines() {
    let (_d, p) = file(
        "pt.jsonl",
        "{\"text\": \"a\"}\n{\"text\": \"benign\", \"text\": \"poison\"}\n",
    );
    let e = read_text(&input(&p, "pt.jsonl"), ReadOptions::default()).unwrap_err();
    assert_eq!(e.to_string(), "pt.jsonl:2:25: duplicate key \"text\"");
    assert!(e.hint().contains("keep one of the two"), "{}", e.hint());
}

#[test]
fn readers_read_what_lock_hashes_through_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("corpus/sub")).unwrap();
    std::fs::write(root.join("real.txt"), "linked doc\n").unwrap();
    std::fs::write(root.join("corpus/a.txt"), "a doc\n").unwrap();
    std::os::unix::fs::symlink("../../real.txt", root.join("corpus/sub/b.txt")).unwrap();
    let read = read_text(
        &input(&root.join("corpus"), "corpus"),
        ReadOptions::default(),
    )
    .unwrap();
    let texts: Vec<_> = read.records.iter().map(|d| d.text.as_str()).collect();
    assert_eq!(texts, ["a doc", "linked doc"]);
}

#[test]
fn nothing_in_a_file_panics() {
    // Bytes a user's file could hold, each fed to every reader.
    let nasty: [&[u8]; 10] = [
        b"\xff\xfe\x00",
        b"{\"conversations\": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]}",
        b"{\"text\": \"\\ud800\"}",
        b"{\"conversations\": [{\"from\": \"\xe4\xbd\", \"value\": 1}]}",
        b"\xef\xbb\xbf\xef\xbb\xbf{}",
        b"{\"history\": [[], {}, null], \"question\": \"q\", \"response_chosen\": 1}",
        b"null\n1e999999\n\"\"\n[]\n",
        b"\r\r\r\n\r",
        b"{\"text\": \"a\"}{\"text\": \"b\"}",
        b"{\"conversations\": [{\"from\": \"gpt\", \"value\": \"a\", \"from\": \"human\"}]}",
    ];
    for bytes in nasty {
        for name in ["x.jsonl", "x.txt", "x"] {
            let (_d, p) = file(name, bytes);
            for opts in [ReadOptions::default(), SKIP] {
                let _ = read_text(&input(&p, name), opts);
                let _ = read_sharegpt(&input(&p, name), opts);
                let _ = read_preference(&input(&p, name), opts);
            }
        }
    }
}

// ---- the real MedicalGPT sample files ----

fn medicalgpt(rel: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/medicalgpt")
        .join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "skipped: {} is absent (the shared MedicalGPT sample data sits beside the checkout)",
            p.display()
        );
        None
    }
}

fn no_skips<T>(read: &Read<T>) {
    assert!(read.skipped.is_empty(), "{:?}", read.skipped);
}

#[test]
fn real_medical_sft() {
    let Some(p) = medicalgpt("sft/medical_sft_1K_format.jsonl") else {
        return;
    };
    let read = read_sharegpt(
        &input(&p, "medical_sft_1K_format.jsonl"),
        ReadOptions::default(),
    )
    .unwrap();
    no_skips(&read);
    assert_eq!(read.records.len(), 1000);
    for c in &read.records {
        let roles: Vec<_> = c.turns.iter().map(|t| t.role).collect();
        assert_eq!(roles, [Role::User, Role::Assistant], "line {}", c.line);
    }
    assert!(
        read.records[0].turns[0]
            .content
            .starts_with("治疗阳痿吃什么药呢")
    );
    assert_eq!(read.records[999].line, 1000);
}

#[test]
fn real_general_sharegpt_has_one_conversation_without_an_answer() {
    let Some(p) = medicalgpt("sft/sharegpt_zh_1K_format.jsonl") else {
        return;
    };
    let e = read_sharegpt(
        &input(&p, "sharegpt_zh_1K_format.jsonl"),
        ReadOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "sharegpt_zh_1K_format.jsonl:781: field \"conversations\": the conversation has no assistant turn"
    );
    let read = read_sharegpt(&input(&p, "sharegpt_zh_1K_format.jsonl"), SKIP).unwrap();
    assert_eq!(read.records.len(), 999);
    assert_eq!(read.skipped.len(), 1);
    assert_eq!(read.skipped[0].line, 781);
    // Empty messages are kept as they are.
    let empty = read
        .records
        .iter()
        .flat_map(|c| &c.turns)
        .filter(|t| t.content.is_empty())
        .count();
    assert_eq!(empty, 17);
}

#[test]
fn real_preference_pairs_same_in_both_formats() {
    let (Some(cur), Some(old)) = (
        medicalgpt("reward/dpo_zh_500.jsonl"),
        medicalgpt("legacy/reward/dpo_zh_500.jsonl"),
    ) else {
        return;
    };
    let cur = read_preference(&input(&cur, "dpo_zh_500.jsonl"), ReadOptions::default()).unwrap();
    let old = read_preference(
        &input(&old, "legacy/dpo_zh_500.jsonl"),
        ReadOptions::default(),
    )
    .unwrap();
    no_skips(&cur);
    no_skips(&old);
    assert_eq!(cur.records.len(), 500);
    // The legacy file is the same 500 pairs, row by row, in the old layout (and it has no final
    // newline).
    assert_eq!(cur.records, old.records);
    let with_system = cur
        .records
        .iter()
        .filter(|p| p.prompt[0].role == Role::System)
        .count();
    assert_eq!(with_system, 84);
    for p in &cur.records {
        assert_eq!(p.prompt.last().map(|t| t.role), Some(Role::User));
        assert!(p.prompt.len() <= 2);
    }
}

#[test]
fn real_legacy_medical_pairs() {
    let Some(p) = medicalgpt("legacy/reward/test.json") else {
        return;
    };
    let read = read_preference(&input(&p, "test.json"), ReadOptions::default()).unwrap();
    no_skips(&read);
    assert_eq!(read.records.len(), 100);
    assert!(read.records.iter().all(|p| p.prompt.len() == 1));
}

#[test]
fn real_toolcall_pairs_are_refused_by_role() {
    let Some(p) = medicalgpt("reward/toolcall_dpo_zh_demo.jsonl") else {
        return;
    };
    let read = read_preference(&input(&p, "toolcall_dpo_zh_demo.jsonl"), SKIP).unwrap();
    assert_eq!(read.records.len(), 7);
    assert_eq!(
        read.skipped.iter().map(|s| s.line).collect::<Vec<_>>(),
        [2, 4, 8, 11]
    );
    assert!(
        read.skipped
            .iter()
            .all(|s| s.field.as_deref() == Some("conversations[1].from"))
    );
}

#[test]
fn real_pretrain_text() {
    let Some(p) = medicalgpt("pretrain/fever.txt") else {
        return;
    };
    let read = read_text(&input(&p, "fever.txt"), ReadOptions::default()).unwrap();
    no_skips(&read);
    assert_eq!(read.records.len(), 985);
    assert_eq!(read.records[0].line, 1);
    assert_eq!(read.records[0].text, "第一章论");
    assert_eq!(read.records[984].line, 995);
}
