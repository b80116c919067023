//! Inputs stay inside the project root (symlinks out are refused unless `--allow-outside` names
//! the target), non-regular files are refused without blocking, and records have a size limit.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Project, project, stderr};

/// Run the binary in the project with extra environment; kill it (and fail) past `limit`.
fn bin_within(p: &Project, args: &[&str], env: &[(&str, &str)], limit: Duration) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_medrun"));
    c.args(args)
        .current_dir(p.root())
        .env_remove("MEDRUN_STORE")
        .env_remove("MEDRUN_ALLOW_OUTSIDE")
        .env_remove("MEDRUN_MAX_RECORD_BYTES")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().unwrap();
            panic!("medrun {args:?} still running after {limit:?}: it hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn bin(p: &Project, args: &[&str]) -> Output {
    bin_within(p, args, &[], Duration::from_secs(60))
}

fn pin_of(p: &Project, path: &str) -> String {
    let lock = p.read("datasets.lock");
    let at = lock.find(&format!("\"{path}\":")).expect("entry");
    lock[at..]
        .lines()
        .find_map(|l| l.trim().strip_prefix("blake3: "))
        .unwrap()
        .to_owned()
}

#[test]
fn symlinks_inside_the_root_keep_working() {
    let p = project();
    assert_eq!(bin(&p, &["lock"]).status.code(), Some(0));
    let before = pin_of(&p, "data/pt.txt");
    // The dataset becomes a link to a file elsewhere in the project, through a linked directory.
    std::fs::create_dir_all(p.path("corpus/real")).unwrap();
    std::fs::rename(p.path("data/pt.txt"), p.path("corpus/real/pt.txt")).unwrap();
    std::os::unix::fs::symlink("real", p.path("corpus/alias")).unwrap();
    std::os::unix::fs::symlink("../corpus/alias/pt.txt", p.path("data/pt.txt")).unwrap();
    let o = bin(&p, &["lock", "--check"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = bin(&p, &["plan", "runs/tiny.yaml"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(pin_of(&p, "data/pt.txt"), before);
}

#[test]
fn symlink_out_is_refused_unless_allowed() {
    let p = project();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("pt.txt");
    std::fs::copy(p.path("data/pt.txt"), &target).unwrap();
    std::fs::remove_file(p.path("data/pt.txt")).unwrap();
    std::os::unix::fs::symlink(&target, p.path("data/pt.txt")).unwrap();

    let o = bin(&p, &["lock"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains(&format!(
            "error: `data/pt.txt` leads outside the project root: `data/pt.txt` is a symlink to `{}`",
            target.display()
        )),
        "{e}"
    );
    assert!(e.contains("--allow-outside"), "{e}");
    assert!(!p.path("datasets.lock").exists());

    let dir = outside.path().to_str().unwrap();
    let o = bin(&p, &["--allow-outside", dir, "lock"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = bin_within(
        &p,
        &["lock", "--check"],
        &[("MEDRUN_ALLOW_OUTSIDE", &format!("/nonexistent-a:{dir}"))],
        Duration::from_secs(60),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--allow-outside /nonexistent-a"),
        "{}",
        stderr(&o)
    );
    let o = bin_within(
        &p,
        &["lock", "--check"],
        &[("MEDRUN_ALLOW_OUTSIDE", dir)],
        Duration::from_secs(60),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn fifo_dataset_is_refused_without_hanging() {
    let p = project();
    assert_eq!(bin(&p, &["lock"]).status.code(), Some(0));
    std::fs::remove_file(p.path("data/sft.jsonl")).unwrap();
    let ok = Command::new("mkfifo")
        .arg(p.path("data/sft.jsonl"))
        .status()
        .unwrap();
    assert!(ok.success());
    for args in [
        &["plan", "runs/tiny.yaml"][..],
        &["lock"],
        &["run", "runs/tiny.yaml", "--allow-dirty"],
    ] {
        let o = bin_within(&p, args, &[], Duration::from_secs(30));
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("`data/sft.jsonl` is a FIFO (named pipe), not a regular file"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn record_limit_names_the_line_and_is_configurable() {
    let p = project();
    let long = "Metformin lowers glucose. ".repeat(8);
    let text = format!("Short first line.\n{long}\n");
    p.write("data/pt.txt", &text);
    assert_eq!(bin(&p, &["lock"]).status.code(), Some(0));
    p.commit_all();
    let o = bin(&p, &["--max-record-bytes", "64", "run", "runs/tiny.yaml"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let want = format!(
        "data/pt.txt:2: the line holds {} bytes, over the limit of 64 bytes (--max-record-bytes)",
        long.len()
    );
    assert!(stderr(&o).contains(&want), "{}", stderr(&o));
    let o = bin_within(
        &p,
        &["run", "runs/tiny.yaml"],
        &[("MEDRUN_MAX_RECORD_BYTES", "64")],
        Duration::from_secs(60),
    );
    assert!(stderr(&o).contains(&want), "{}", stderr(&o));
    for bad in ["0", "4X"] {
        let o = bin(&p, &["--max-record-bytes", bad, "plan", "runs/tiny.yaml"]);
        assert_eq!(o.status.code(), Some(1), "{bad}: {}", stderr(&o));
        assert!(stderr(&o).contains("max-record-bytes"), "{}", stderr(&o));
    }
}

#[test]
fn suite_symlinked_out_is_refused() {
    let p = project();
    let outside = tempfile::tempdir().unwrap();
    let suite = outside.path().join("suite.yaml");
    std::fs::copy(p.path("evals/suite.yaml"), &suite).unwrap();
    std::fs::remove_file(p.path("evals/suite.yaml")).unwrap();
    std::os::unix::fs::symlink(&suite, p.path("evals/suite.yaml")).unwrap();
    let o = bin(&p, &["lock"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("`evals/suite.yaml` leads outside the project root"),
        "{}",
        stderr(&o)
    );
}
