//! The hostile-input corpus (tests/corpus/hostile/README.md): each case attacks medrun through one
//! real command, and the real binary must answer as the case says: the right exit code, the right
//! words on stderr, no panic, no hang, no abort, and no write the case does not allow.
//!
//! `HOSTILE_CASE=SUBSTRING cargo test --test hostile` runs only the cases whose `class/file` name
//! contains SUBSTRING. The outcome table is printed at the end (`-- --nocapture` shows it).

#[path = "hostile/support.rs"]
mod support;

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use support::{Case, Fixtures, Outcome, Tally, corpus_dir, load_cases, run_case};

#[test]
fn hostile_corpus() {
    let filter = std::env::var("HOSTILE_CASE").unwrap_or_default();
    let cases: Vec<Case> = load_cases()
        .into_iter()
        .filter(|c| c.name.contains(&filter))
        .collect();
    assert!(
        !cases.is_empty() || !filter.is_empty(),
        "no hostile cases found under {}",
        corpus_dir().display()
    );
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let fixtures = Fixtures::new(scratch.path());
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(String, Outcome)>> = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 4);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(case) = cases.get(i) else { break };
                    let dir: PathBuf = scratch.path().join(format!("case-{i}"));
                    let outcome = run_case(case, &fixtures, &dir);
                    if outcome.passed() {
                        let _ = std::fs::remove_dir_all(&dir);
                    }
                    results
                        .lock()
                        .expect("results lock")
                        .push((case.name.clone(), outcome));
                }
            });
        }
    });
    let mut results = results.into_inner().expect("results lock");
    results.sort_by(|a, b| a.0.cmp(&b.0));
    let tally = Tally::of(&results);
    eprintln!("{}", tally.table());
    let failures: Vec<String> = results
        .iter()
        .filter(|(_, o)| !o.passed())
        .map(|(name, o)| format!("{name}: {}", o.describe()))
        .collect();
    if !failures.is_empty() {
        // Keep the work directories of failed cases for a look.
        let kept = scratch.keep();
        panic!(
            "{} of {} hostile case(s) failed (work directories kept under {}):\n\n{}",
            failures.len(),
            results.len(),
            kept.display(),
            failures.join("\n\n")
        );
    }
}
