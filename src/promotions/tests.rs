//! The format and `append`: canonical text, strict parsing, the chain, and locking.

use super::format::blocks;
use super::*;

fn hex(c: char) -> String {
    c.to_string().repeat(64)
}

fn threshold(metric: &str, value: f64) -> GateRecord {
    GateRecord {
        metric: metric.into(),
        vs_channel: None,
        value: Some(value),
        holder: None,
        holder_results: None,
        holder_value: None,
        p_value: None,
        passed: true,
    }
}

fn entry(channel: &str, checkpoint: char, previous: Option<char>) -> Entry {
    Entry {
        channel: channel.into(),
        promoted_at: "2026-03-01T12:00:00.000Z".into(),
        checkpoint: hex(checkpoint),
        results: hex('e'),
        run: "0123456789abcdef0123456789abcdef".into(),
        record: hex('d'),
        commit: "c".repeat(40),
        stage: "sft".into(),
        spec: "runs/medical.yaml".into(),
        previous: previous.map(hex),
        gates: vec![
            threshold("medical/mc/acc", 0.71),
            GateRecord {
                metric: "medical/harmful/refusal_rate".into(),
                vs_channel: Some(channel.into()),
                value: Some(0.9),
                holder: previous.map(hex),
                holder_results: previous.map(|_| hex('f')),
                holder_value: previous.map(|_| 0.92),
                p_value: previous.map(|_| 0.386_718_75),
                passed: true,
            },
        ],
    }
}

fn file(root: &Path) -> String {
    std::fs::read_to_string(root.join(PROMOTIONS_FILE)).unwrap_or_default()
}

fn add(root: &Path, e: &Entry) -> Result<(), PromotionError> {
    append(root, e, &no_check)
}

fn history(entries: Vec<Entry>) -> History {
    let mut h = History {
        entries,
        lines: Vec::new(),
    };
    h = History::parse(&h.render(), Path::new(PROMOTIONS_FILE)).expect("parse");
    h
}

#[test]
fn missing_file_is_an_empty_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = load(dir.path()).expect("load");
    assert!(h.is_empty());
    assert_eq!(h.holder("production"), None);
    assert!(h.channels().is_empty());
}

#[test]
fn append_keeps_the_old_bytes_as_a_prefix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    add(root, &entry("production", 'a', None)).expect("first");
    let one = file(root);
    assert!(one.starts_with(&header()));
    add(root, &entry("staging", 'b', None)).expect("second");
    let two = file(root);
    add(root, &entry("production", 'c', Some('a'))).expect("third");
    let three = file(root);
    assert!(two.starts_with(&one) && three.starts_with(&two));
    assert_eq!(
        &three[two.len()..],
        render_entry(&entry("production", 'c', Some('a')))
    );
    let h = load(root).expect("load");
    assert_eq!(h.entries().len(), 3);
    assert_eq!(
        h.holder("production").map(|e| e.checkpoint.clone()),
        Some(hex('c'))
    );
    assert_eq!(
        h.holder_before(2, "production")
            .map(|e| e.checkpoint.clone()),
        Some(hex('a'))
    );
    assert_eq!(
        h.channels().into_iter().collect::<Vec<_>>(),
        ["production", "staging"]
    );
    assert_eq!(h.render(), three, "the file is canonical");
    assert_eq!(blocks(&three).map(|b| b.len()), Some(3));
}

#[test]
fn canonical_text_of_one_entry_and_its_line_numbers() {
    let h = history(vec![entry("production", 'a', None)]);
    let a = hex('a');
    let e = hex('e');
    let d = hex('d');
    let c = "c".repeat(40);
    let want = format!(
        "# promotions.yaml: every promotion of this project, oldest first. Written by
# `medrun promote` and committed to git; append-only, do not edit by hand.
version: 2
promotions:
  - channel: \"production\"
    promoted_at: \"2026-03-01T12:00:00.000Z\"
    checkpoint: \"{a}\"
    results: \"{e}\"
    run: \"0123456789abcdef0123456789abcdef\"
    record: \"{d}\"
    commit: \"{c}\"
    stage: \"sft\"
    spec: \"runs/medical.yaml\"
    previous: null
    gates:
      - metric: \"medical/mc/acc\"
        vs_channel: null
        value: 0.71
        holder: null
        holder_results: null
        holder_value: null
        p_value: null
        passed: true
      - metric: \"medical/harmful/refusal_rate\"
        vs_channel: \"production\"
        value: 0.9
        holder: null
        holder_results: null
        holder_value: null
        p_value: null
        passed: true
"
    );
    assert_eq!(h.render(), want);
    assert_eq!(
        History::parse(&want, Path::new(PROMOTIONS_FILE)).expect("parse"),
        h
    );
    assert_eq!(h.line(0), 5);
    assert_eq!(h.at(0, "checkpoint"), "promotions.yaml:7");
    assert_eq!(h.at(0, "record"), "promotions.yaml:10");
    assert_eq!(h.at(0, "gates[1].value"), "promotions.yaml:26");
    assert_eq!(h.at(0, "gates[0].metric"), "promotions.yaml:16");
}

#[test]
fn numbers_round_trip_exactly() {
    let mut rng = crate::rng::Rng::new(5);
    let mut values = vec![
        0.0,
        -0.0,
        1.0,
        0.1,
        1e-7,
        1e300,
        -2.5e-310,
        f64::MIN_POSITIVE,
        f64::MAX,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
    ];
    values.extend((0..200).map(|_| f64::from_bits(rng.next_u64())));
    let mut e = entry("production", 'a', None);
    e.gates = values.iter().map(|&v| threshold("s/t/m", v)).collect();
    let h = History {
        entries: vec![e],
        lines: Vec::new(),
    };
    let back = History::parse(&h.render(), Path::new(PROMOTIONS_FILE)).expect("parse");
    for (g, &v) in back.entries[0].gates.iter().zip(&values) {
        let got = g.value.expect("a value is never dropped");
        if v.is_nan() {
            assert!(got.is_nan(), "{v:?} read back as {got:?}");
        } else {
            assert_eq!(got.to_bits(), v.to_bits(), "{v:?} read back as {got:?}");
        }
    }
    assert!(h.render().contains("value: \"inf\"\n"), "{}", h.render());
}

#[test]
fn an_all_digit_hex_id_stays_a_string() {
    let mut e = entry("production", '1', None);
    e.run = "12345678901234567890123456789012".into();
    e.results = format!("1e{}", "5".repeat(62));
    e.commit = "1".repeat(40);
    let h = history(vec![e]);
    assert_eq!(
        History::parse(&h.render(), Path::new(PROMOTIONS_FILE)).expect("parse"),
        h
    );
}

#[test]
fn previous_and_compared_holders_must_be_current() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    add(root, &entry("production", 'a', None)).expect("first");
    // Decided against nobody, but `a` holds the channel now.
    let err = add(root, &entry("production", 'b', None)).expect_err("conflict");
    assert!(matches!(err, PromotionError::Conflict { .. }), "{err}");
    assert!(
        err.to_string().contains("now holds checkpoint aaaa"),
        "{err}"
    );
    // Re-promoting the holder is refused.
    let err = add(root, &entry("production", 'a', Some('a'))).expect_err("holds");
    assert!(matches!(err, PromotionError::AlreadyHolds { .. }));
    // A promotion on another channel merges...
    add(root, &entry("staging", 'b', None)).expect("other channel");
    add(root, &entry("production", 'b', Some('a'))).expect("after the merge");
    // ...but not one whose comparison gate used a holder that has changed since.
    let mut e = entry("staging", 'c', Some('b'));
    e.gates[1].vs_channel = Some("production".into());
    e.gates[1].holder = Some(hex('a'));
    let err = add(root, &e).expect_err("stale holder");
    assert!(
        matches!(&err, PromotionError::Conflict { channel, .. } if channel == "production"),
        "{err}"
    );
}

#[test]
fn the_check_runs_on_the_history_before_anything_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    add(root, &entry("production", 'a', None)).expect("first");
    let before = file(root);
    let refuse = |h: &History| -> Result<(), PromotionError> {
        assert_eq!(h.entries().len(), 1);
        Err(PromotionError::Unverified {
            at: "promotions.yaml:5".into(),
            message: "no".into(),
            hint: "h".into(),
        })
    };
    let err = append(root, &entry("staging", 'b', None), &refuse).expect_err("refused");
    assert!(matches!(err, PromotionError::Unverified { .. }));
    assert_eq!(file(root), before);
}

#[test]
fn invalid_entries_are_refused_before_writing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut e = entry("production", 'a', None);
    e.checkpoint = "ABC".into();
    assert!(matches!(
        add(dir.path(), &e),
        Err(PromotionError::InvalidEntry(_))
    ));
    let mut e = entry("prod uction", 'a', None);
    e.promoted_at = "yesterday".into();
    assert!(add(dir.path(), &e).is_err());
    let mut e = entry("production", 'a', None);
    e.gates.clear();
    assert!(add(dir.path(), &e).is_err(), "no gates");
    let mut e = entry("production", 'a', None);
    e.gates[0].passed = false;
    assert!(add(dir.path(), &e).is_err(), "a failed gate");
    assert!(!dir.path().join(PROMOTIONS_FILE).exists());
}

/// Regression (issue 14, finding 10): a channel named like hex could be recorded, but never
/// used, since a REF that reads as hex is a run or object prefix.
#[test]
fn channel_names_that_another_ref_would_shadow_are_refused() {
    for bad in [
        "beef",
        "2024",
        "0123456789abcdef",
        "latest",
        ".x",
        "a b",
        "",
    ] {
        assert!(check_channel_name(bad).is_err(), "{bad:?}");
    }
    for good in ["production", "staging-eu", "v2", "abc", "deadbeefx", "Beef"] {
        assert!(check_channel_name(good).is_ok(), "{good:?}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(add(dir.path(), &entry("cafe", 'a', None)).is_err());
    let text = history(vec![entry("production", 'a', None)])
        .render()
        .replace("\"production\"", "\"cafe\"");
    let err = History::parse(&text, Path::new(PROMOTIONS_FILE)).expect_err("hex channel");
    assert!(err.to_string().starts_with("promotions.yaml:5:"), "{err}");
}

fn write(root: &Path, text: &str) {
    std::fs::write(root.join(PROMOTIONS_FILE), text).expect("write");
}

fn one_entry_text() -> String {
    history(vec![entry("production", 'a', None)]).render()
}

#[test]
fn hand_edits_give_file_line_column_and_a_hint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let good = one_entry_text();

    // A bad checkpoint hash, at its position.
    write(root, &good.replace(&hex('a'), "not-a-hash"));
    let err = load(root).expect_err("bad hash");
    assert_eq!(
        err.to_string(),
        "promotions.yaml:7:17: `checkpoint` must be 64 lowercase hex digits, got \"not-a-hash\""
    );
    assert!(err.hint().contains("git checkout promotions.yaml"));

    // An unknown key.
    write(
        root,
        &good.replace("    stage:", "    note: \"hi\"\n    stage:"),
    );
    let msg = load(root).expect_err("unknown key").to_string();
    assert!(
        msg.starts_with("promotions.yaml:") && msg.contains("note"),
        "{msg}"
    );

    // A missing key.
    write(root, &good.replace("    record:", "    recorded:"));
    let msg = load(root).expect_err("missing").to_string();
    assert!(
        msg.starts_with("promotions.yaml:") && msg.contains("record"),
        "{msg}"
    );

    // Not YAML at all.
    write(root, "version: 2\npromotions: [\n");
    let msg = load(root).expect_err("syntax").to_string();
    assert!(msg.starts_with("promotions.yaml:"), "{msg}");

    // A future version.
    write(root, &good.replace("version: 2", "version: 3"));
    let msg = load(root).expect_err("version").to_string();
    assert_eq!(
        msg,
        "promotions.yaml:3:10: unsupported promotions.yaml version 3; this medrun reads version 2"
    );
}

#[test]
fn a_version_1_file_is_refused_with_an_upgrade_hint() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "version: 1\npromotions:\n");
    let err = load(dir.path()).expect_err("v1");
    assert!(matches!(err, PromotionError::Version1 { .. }), "{err}");
    assert!(
        err.to_string().starts_with("promotions.yaml:1:10: "),
        "{err}"
    );
    assert!(
        err.hint().contains("git rm promotions.yaml"),
        "{}",
        err.hint()
    );
}

#[test]
fn a_broken_chain_or_holder_is_caught() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    add(root, &entry("production", 'a', None)).expect("first");
    add(root, &entry("production", 'b', Some('a'))).expect("second");
    // Delete the first entry by hand: the second's `previous` names a checkpoint that
    // never held the channel.
    let text = file(root);
    let first = render_entry(&entry("production", 'a', None));
    write(root, &text.replacen(&first, "", 1));
    let msg = load(root).expect_err("chain").to_string();
    assert!(msg.starts_with("promotions.yaml:14:15: "), "{msg}");
    assert!(msg.contains("edited, removed or reordered"), "{msg}");
    // A comparison gate that names another holder than the history's.
    let text = history(vec![entry("production", 'a', None)]).render();
    let forged = text.replace(
        "vs_channel: \"production\"\n        value: 0.9\n        holder: null\n        holder_results: null",
        &format!(
            "vs_channel: \"production\"\n        value: 0.9\n        holder: \"{}\"\n        holder_results: \"{}\"",
            hex('9'),
            hex('f')
        ),
    );
    assert_ne!(forged, text);
    write(root, &forged);
    let msg = load(root).expect_err("holder").to_string();
    assert!(msg.contains("says channel `production` held"), "{msg}");
}

#[test]
fn a_reformatted_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    // Same meaning, other spelling: YAML 1.1 `yes`, an unquoted string.
    for (from, to) in [
        ("passed: true", "passed: yes"),
        ("channel: \"production\"", "channel: production"),
    ] {
        let text = one_entry_text().replacen(from, to, 1);
        write(root, &text);
        let err = load(root).expect_err("not canonical");
        assert!(matches!(err, PromotionError::NotCanonical { .. }), "{err}");
        assert!(err.hint().contains("git checkout promotions.yaml"));
        let err = add(root, &entry("staging", 'b', None)).expect_err("not canonical");
        assert!(matches!(err, PromotionError::NotCanonical { .. }), "{err}");
        assert_eq!(file(root), text, "nothing was written");
    }
    let err = load(root).expect_err("not canonical");
    assert_eq!(
        err.to_string(),
        "promotions.yaml:5:14: promotions.yaml is not in the layout medrun writes (expected \"  - channel: \\\"production\\\"\"); was it edited by hand?"
    );
    // A duplicated key is a YAML error.
    let text = one_entry_text().replacen(
        "    stage: \"sft\"\n",
        "    stage: \"sft\"\n    stage: \"dpo\"\n",
        1,
    );
    write(root, &text);
    let msg = load(root).expect_err("duplicate").to_string();
    assert!(msg.starts_with("promotions.yaml:13:"), "{msg}");
}

#[test]
fn empty_promotions_list_and_not_utf8() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(root, &header());
    assert!(load(root).expect("empty").is_empty());
    add(root, &entry("production", 'a', None)).expect("append to the empty header");
    assert_eq!(file(root), one_entry_text());
    std::fs::write(root.join(PROMOTIONS_FILE), b"version: 2\n\xff\n").expect("write");
    let msg = load(root).expect_err("utf8").to_string();
    assert_eq!(msg, "promotions.yaml:2:1: file is not valid UTF-8");
}

#[test]
fn blocks_split_a_version_into_entries() {
    let h = history(vec![
        entry("production", 'a', None),
        entry("production", 'b', Some('a')),
    ]);
    let text = h.render();
    let b = blocks(&text).expect("v2");
    assert_eq!(b.len(), 2);
    assert_eq!(b[1], render_entry(&h.entries()[1]));
    assert_eq!(blocks(&header()), Some(Vec::new()));
    assert_eq!(blocks("version: 1\npromotions:\n"), None);
    assert_eq!(blocks(&format!("{}garbage\n", header())), None);
}

#[cfg(unix)]
#[test]
fn appends_from_two_threads_both_land() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_path_buf();
    let handles: Vec<_> = ["alpha", "beta", "gamma", "delta"]
        .into_iter()
        .zip(['a', 'b', 'c', 'd'])
        .map(|(ch, c)| {
            let root = root.clone();
            std::thread::spawn(move || add(&root, &entry(ch, c, None)))
        })
        .collect();
    for h in handles {
        h.join().expect("thread").expect("append");
    }
    assert_eq!(load(&root).expect("load").channels().len(), 4);
}
