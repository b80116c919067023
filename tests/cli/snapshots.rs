//! insta snapshots of CLI output, with hashes, ids, times, durations and paths filtered out.

use std::sync::Arc;

use crate::common::{FakeTrainer, executors, project, stderr, stdout};

fn filters() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"[0-9a-f]{64}", "[HASH]"),
        (r"[0-9a-f]{32}", "[RUN]"),
        (r"\b[0-9a-f]{12}\b", "[SHORT]"),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", "[TIME]"),
        (r"\d+\.\d+s\b", "[SECS]"),
        (r"(?m)^  engine .*$", "  engine   [ENGINE]"),
        (r"(?m)^  device .*$", "  device   [DEVICE]"),
        (r"(?m)^  host .*$", "  host     [HOST]"),
        (r"took \[SECS\] on .*", "took [SECS] on [HOST]"),
        (r"/tmp/[^\s]+", "[TMP]"),
    ]
}

macro_rules! snap {
    ($name:expr, $value:expr) => {
        insta::with_settings!({filters => filters(), prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!($name, $value);
        });
    };
}

#[test]
fn plan_text() {
    let p = project();
    let o = p.bin(&["plan", "runs/tiny.yaml"]);
    assert_eq!(o.status.code(), Some(0));
    snap!("plan_text", stdout(&o));
}

#[test]
fn lineage_text_and_errors() {
    let p = project();
    assert_eq!(p.bin(&["lock"]).status.code(), Some(0));
    p.commit_all();
    let spec = p.spec().display().to_string();
    assert_eq!(
        p.cli(&["run", &spec], &executors(Arc::new(FakeTrainer::new()))),
        0
    );
    let o = p.bin(&["lineage", "latest"]);
    snap!("lineage_run_text", stdout(&o));
    let o = p.bin(&["lineage", "latest:dpo"]);
    snap!("lineage_stage_text", stdout(&o));
    let o = p.bin(&["lineage", "latest:nope"]);
    assert_eq!(o.status.code(), Some(1));
    snap!("lineage_no_such_stage", stderr(&o));
}

#[test]
fn spec_error_format() {
    let p = project();
    p.write(
        "runs/tiny.yaml",
        &crate::common::SPEC.replace("datasets: [chats]", "datasets: [chatz]"),
    );
    let o = p.bin(&["plan", "runs/tiny.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    snap!("spec_error_undeclared_dataset", stderr(&o));
}
