//! The bad-input corpus (tests/corpus/README.md): every malformed or hostile spec and lock file must
//! make the real binary exit 1 with `error: FILE:LINE:COL: ...` and a `hint:`, never panic, and
//! write nothing: no store directory, no new or rewritten `datasets.lock`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_medrun");

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// What a corpus file says must happen, from its `# expect:` and `# at:` header lines.
#[derive(Debug, Clone)]
struct Expect {
    message: String,
    line: u64,
    column: Option<u64>,
}

/// Read the expectation header of a corpus file; panics (naming the file) when it is missing or
/// malformed.
fn expectation(path: &Path, bytes: &[u8]) -> Expect {
    let text = String::from_utf8_lossy(bytes);
    let header: Vec<&str> = text.lines().take_while(|l| l.starts_with('#')).collect();
    let field = |key: &str| -> String {
        let found: Vec<&str> = header
            .iter()
            .filter_map(|l| l.strip_prefix(key))
            .map(str::trim)
            .collect();
        match found.as_slice() {
            [one] if !one.is_empty() => one.to_string(),
            _ => panic!(
                "{}: needs exactly one non-empty `{key}` line in its leading comments",
                path.display()
            ),
        }
    };
    let message = field("# expect:");
    let at = field("# at:");
    let num = |s: &str| -> u64 {
        s.parse()
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or_else(|| panic!("{}: bad `# at: {at}`", path.display()))
    };
    let (line, column) = match at.split_once(':') {
        Some((l, c)) => (num(l), Some(num(c))),
        None => (num(&at), None),
    };
    let lines = text.lines().count() as u64;
    assert!(
        line <= lines,
        "{}: `# at: {at}` is past the end of the file ({lines} lines)",
        path.display()
    );
    Expect {
        message,
        line,
        column,
    }
}

/// The corpus files with this extension under `tests/corpus/<dir>`, sorted, checked for the
/// `NN-name.ext` naming scheme with unique numbers.
fn corpus_files(dir: &str, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus().join(dir))
        .unwrap_or_else(|e| panic!("tests/corpus/{dir}: {e}"))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut numbers = std::collections::BTreeSet::new();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let stem = name
            .strip_suffix(&format!(".{ext}"))
            .unwrap_or_else(|| panic!("tests/corpus/{dir}/{name}: expected a .{ext} file"));
        let (nn, rest) = stem.split_at(stem.find('-').unwrap_or(0));
        assert!(
            nn.len() == 2 && nn.bytes().all(|b| b.is_ascii_digit()) && rest.len() > 1,
            "tests/corpus/{dir}/{name}: name it NN-what-is-wrong.{ext}"
        );
        assert!(
            numbers.insert(nn.to_string()),
            "tests/corpus/{dir}: {nn} used twice"
        );
    }
    files
}

/// A fresh copy of `tests/corpus/valid` (data and eval suite; the spec and lock are added by
/// each test), with its store at `store/` inside it (passed as `MEDRUN_STORE`).
struct Proj {
    dir: tempfile::TempDir,
}

impl Proj {
    fn new() -> Proj {
        let dir = tempfile::tempdir().unwrap();
        let valid = corpus().join("valid");
        for rel in [
            "data/pt.txt",
            "data/sft.jsonl",
            "data/dpo.jsonl",
            "data/mc.jsonl",
            "evals/suite.yaml",
        ] {
            let to = dir.path().join(rel);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(valid.join(rel), &to).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("runs")).unwrap();
        Proj { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, bytes: &[u8]) {
        std::fs::write(self.path(rel), bytes).unwrap();
    }

    fn store(&self) -> PathBuf {
        self.path("store")
    }

    fn medrun(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .current_dir(self.dir.path())
            .env("MEDRUN_STORE", self.store())
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .env_remove("RUST_BACKTRACE")
            .output()
            .unwrap()
    }
}

fn valid_spec() -> Vec<u8> {
    std::fs::read(corpus().join("valid/spec.yaml")).unwrap()
}

fn valid_lock() -> Vec<u8> {
    std::fs::read(corpus().join("valid/datasets.lock")).unwrap()
}

/// Check one refusal; `Err` describes everything that is wrong with it.
fn check_refusal(
    proj: &Proj,
    args: &[&str],
    out: &Output,
    file: &str,
    exp: &Expect,
) -> Result<(), String> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut problems = Vec::new();
    if out.status.code() != Some(1) {
        problems.push(format!("exit code {:?}, expected 1", out.status.code()));
    }
    if stderr.contains("panicked") || stderr.contains("RUST_BACKTRACE") {
        problems.push("it panicked".to_string());
    }
    let prefix = format!("error: {file}:{}:", exp.line);
    let located = match exp.column {
        Some(c) => stderr.starts_with(&format!("{prefix}{c}: ")),
        None => stderr.strip_prefix(&prefix).is_some_and(|rest| {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            digits > 0 && rest[digits..].starts_with(": ")
        }),
    };
    if !located {
        let at = match exp.column {
            Some(c) => format!("{}:{c}", exp.line),
            None => format!("{}:COL", exp.line),
        };
        problems.push(format!("stderr does not start with `error: {file}:{at}: `"));
    }
    if !stderr.contains(&exp.message) {
        problems.push(format!("stderr does not contain {:?}", exp.message));
    }
    if !stderr.lines().any(|l| l.starts_with("hint: ")) {
        problems.push("stderr has no `hint:` line".to_string());
    }
    if !stdout.trim().is_empty() {
        problems.push("it printed to stdout".to_string());
    }
    if proj.store().exists() {
        problems.push("it created the store directory".to_string());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "`medrun {}`: {}\n--- stderr:\n{}--- stdout:\n{}",
            args.join(" "),
            problems.join("; "),
            stderr,
            stdout
        ))
    }
}

fn report(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} corpus failure(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Positive controls: the base project is valid, so each corpus file fails only for its defect.

#[test]
fn valid_spec_plans() {
    let p = Proj::new();
    p.write("runs/bad.yaml", &valid_spec());
    let out = p.medrun(&["plan", "runs/bad.yaml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("run key "));
    assert!(!stderr.contains("error"), "{stderr}");
}

#[test]
fn valid_lock_checks() {
    let p = Proj::new();
    p.write("runs/tiny.yaml", &valid_spec());
    p.write("datasets.lock", &valid_lock());
    let out = p.medrun(&["lock", "--check"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "valid/datasets.lock does not match valid/: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// The committed corpus.

#[test]
fn corpus_is_big_enough() {
    assert!(corpus_files("specs", "yaml").len() >= 22);
    assert!(corpus_files("locks", "lock").len() >= 6);
}

#[test]
fn bad_specs_are_refused_with_location() {
    let mut failures = Vec::new();
    for f in corpus_files("specs", "yaml") {
        let bytes = std::fs::read(&f).unwrap();
        let exp = expectation(&f, &bytes);
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let p = Proj::new();
        p.write("runs/bad.yaml", &bytes);
        for args in [
            &["plan", "runs/bad.yaml"][..],
            &["run", "runs/bad.yaml", "--allow-dirty"][..],
        ] {
            let out = p.medrun(args);
            if let Err(e) = check_refusal(&p, args, &out, "runs/bad.yaml", &exp) {
                failures.push(format!("specs/{name}: {e}"));
            }
            if p.path("datasets.lock").exists() {
                failures.push(format!(
                    "specs/{name}: `medrun {}` wrote datasets.lock",
                    args.join(" ")
                ));
            }
        }
    }
    report(failures);
}

#[test]
fn bad_locks_are_refused_with_location() {
    let mut failures = Vec::new();
    for f in corpus_files("locks", "lock") {
        let bytes = std::fs::read(&f).unwrap();
        let exp = expectation(&f, &bytes);
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let p = Proj::new();
        p.write("runs/tiny.yaml", &valid_spec());
        p.write("datasets.lock", &bytes);
        for args in [&["lock", "--check"][..], &["lock"][..]] {
            let out = p.medrun(args);
            if let Err(e) = check_refusal(&p, args, &out, "datasets.lock", &exp) {
                failures.push(format!("locks/{name}: {e}"));
            }
            if std::fs::read(p.path("datasets.lock")).ok().as_deref() != Some(&bytes[..]) {
                failures.push(format!(
                    "locks/{name}: `medrun {}` changed datasets.lock",
                    args.join(" ")
                ));
            }
        }
    }
    report(failures);
}

// ---------------------------------------------------------------------------------------------
// Hostile inputs generated at test time (too big, or not text, to commit).

/// `version: 1`, `name: bad`, then `line3`, then the rest of the valid spec.
fn spec_with_line3(line3: &[u8]) -> Vec<u8> {
    let spec = String::from_utf8(valid_spec()).unwrap();
    let body = &spec[spec.find("version: 1\n").unwrap()..];
    let rest = body
        .strip_prefix("version: 1\nname: bad\n")
        .expect("valid/spec.yaml starts with `version: 1` and `name: bad`");
    let mut out = b"version: 1\nname: bad\n".to_vec();
    out.extend_from_slice(line3);
    out.extend_from_slice(rest.as_bytes());
    out
}

/// Write `head`, then `n` bytes of `A`, then `tail`, without holding 100 MB in memory.
fn write_long_line(path: &Path, head: &[u8], n: usize, tail: &[u8]) {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    w.write_all(head).unwrap();
    let chunk = vec![b'A'; 1 << 20];
    let mut left = n;
    while left > 0 {
        let k = left.min(chunk.len());
        w.write_all(&chunk[..k]).unwrap();
        left -= k;
    }
    w.write_all(tail).unwrap();
    w.flush().unwrap();
}

const HUNDRED_MB: usize = 100 * 1024 * 1024;

#[test]
fn spec_with_a_100_mb_line_is_refused() {
    let p = Proj::new();
    let rest = spec_with_line3(b"");
    let rest = &rest[b"version: 1\nname: bad\n".len()..];
    let mut tail = b"\n".to_vec();
    tail.extend_from_slice(rest);
    write_long_line(
        &p.path("runs/bad.yaml"),
        b"version: 1\nname: bad\ndescription: ",
        HUNDRED_MB,
        &tail,
    );
    let exp = Expect {
        message: "over the 4194304-byte limit".into(),
        line: 3,
        column: None,
    };
    let mut failures = Vec::new();
    for args in [
        &["plan", "runs/bad.yaml"][..],
        &["run", "runs/bad.yaml", "--allow-dirty"][..],
    ] {
        let out = p.medrun(args);
        if let Err(e) = check_refusal(&p, args, &out, "runs/bad.yaml", &exp) {
            failures.push(format!("100 MB line: {e}"));
        }
    }
    report(failures);
}

#[test]
fn spec_with_invalid_utf8_is_refused() {
    let p = Proj::new();
    // `description: caf` is 16 bytes, so the first bad byte is at column 17.
    p.write(
        "runs/bad.yaml",
        &spec_with_line3(b"description: caf\xff\xfe\n"),
    );
    let exp = Expect {
        message: "file is not valid UTF-8".into(),
        line: 3,
        column: Some(17),
    };
    let mut failures = Vec::new();
    for args in [
        &["plan", "runs/bad.yaml"][..],
        &["run", "runs/bad.yaml", "--allow-dirty"][..],
    ] {
        let out = p.medrun(args);
        if let Err(e) = check_refusal(&p, args, &out, "runs/bad.yaml", &exp) {
            failures.push(format!("invalid UTF-8: {e}"));
        }
    }
    report(failures);
}

#[test]
fn lock_with_a_100_mb_line_is_refused() {
    let p = Proj::new();
    p.write("runs/tiny.yaml", &valid_spec());
    write_long_line(
        &p.path("datasets.lock"),
        b"version: 1\n# ",
        HUNDRED_MB,
        b"\nentries: {}\n",
    );
    let exp = Expect {
        message: "over the 4194304-byte limit".into(),
        line: 2,
        column: None,
    };
    let out = p.medrun(&["lock", "--check"]);
    report(
        check_refusal(&p, &["lock", "--check"], &out, "datasets.lock", &exp)
            .err()
            .into_iter()
            .collect(),
    );
}

#[test]
fn lock_with_invalid_utf8_is_refused() {
    let p = Proj::new();
    p.write("runs/tiny.yaml", &valid_spec());
    let lock = String::from_utf8(valid_lock()).unwrap();
    let body = &lock[lock.find("version: 1\n").unwrap()..];
    // Line 3 is the first entry's key: `  "data/dpo.jsonl":`; corrupt the path inside it.
    let mut bytes = b"version: 1\nentries:\n  \"data/dpo\xff\xfe.jsonl\":\n".to_vec();
    let after = body
        .strip_prefix("version: 1\nentries:\n  \"data/dpo.jsonl\":\n")
        .expect("valid/datasets.lock starts with the data/dpo.jsonl entry");
    bytes.extend_from_slice(after.as_bytes());
    p.write("datasets.lock", &bytes);
    let exp = Expect {
        message: "file is not valid UTF-8".into(),
        line: 3,
        column: Some(12),
    };
    let mut failures = Vec::new();
    for args in [&["lock", "--check"][..], &["lock"][..]] {
        let out = p.medrun(args);
        if let Err(e) = check_refusal(&p, args, &out, "datasets.lock", &exp) {
            failures.push(format!("invalid UTF-8 lock: {e}"));
        }
        if std::fs::read(p.path("datasets.lock")).unwrap() != bytes {
            failures.push(format!("`medrun {}` changed datasets.lock", args.join(" ")));
        }
    }
    report(failures);
}

// ---------------------------------------------------------------------------------------------
// Known gap, kept as an ignored test until src/ is fixed.

/// `plan` (and so `run`) digest the inputs and save the state cache into the store *before*
/// reading datasets.lock, so a malformed lock is refused with exit 1 only after the store
/// directory has been created. The data must be older than two seconds for the cache to keep it
/// (the racily-clean rule), hence the back-dated mtimes.
#[test]

fn plan_with_a_bad_lock_writes_nothing() {
    let mut failures = Vec::new();
    for f in corpus_files("locks", "lock") {
        let bytes = std::fs::read(&f).unwrap();
        let exp = expectation(&f, &bytes);
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let p = Proj::new();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for rel in [
            "data/pt.txt",
            "data/sft.jsonl",
            "data/dpo.jsonl",
            "data/mc.jsonl",
        ] {
            std::fs::File::options()
                .write(true)
                .open(p.path(rel))
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        p.write("runs/tiny.yaml", &valid_spec());
        p.write("datasets.lock", &bytes);
        let args = ["plan", "runs/tiny.yaml"];
        let out = p.medrun(&args);
        if let Err(e) = check_refusal(&p, &args, &out, "datasets.lock", &exp) {
            failures.push(format!("locks/{name}: {e}"));
        }
    }
    report(failures);
}
