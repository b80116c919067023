//! The machinery of the hostile corpus: cases and their headers, fixtures, the write snapshot, and
//! running one case with a timeout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_medrun");
const DEFAULT_TIMEOUT: u64 = 60;
/// Paths every command may change: the store's advisory lock and its temp directory.
const ALWAYS_ALLOWED: &[&str] = &[".medrun/lock", ".medrun/tmp", ".medrun/tmp/**"];

pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/hostile")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FixtureKind {
    Project,
    Trained,
    Promoted,
}

/// One case file and what its header says.
#[derive(Debug, Clone)]
pub struct Case {
    /// `class/NN-name.sh`.
    pub name: String,
    pub path: PathBuf,
    pub fixture: FixtureKind,
    pub run: String,
    pub exit: i32,
    pub expect: Vec<String>,
    pub stdout: Vec<String>,
    /// `None`: no writes allowed.
    pub writes: Vec<String>,
    pub timeout: u64,
    pub checks: Vec<String>,
}

fn header_lines(text: &str) -> Vec<(&str, &str)> {
    text.lines()
        .take_while(|l| l.starts_with('#'))
        .filter_map(|l| {
            let l = l.trim_start_matches('#').trim_start();
            let (k, v) = l.split_once(':')?;
            Some((k.trim(), v.trim()))
        })
        .collect()
}

fn parse_case(name: String, path: PathBuf) -> Case {
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let headers = header_lines(&text);
    let all = |key: &str| -> Vec<String> {
        headers
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
            .collect()
    };
    let one = |key: &str| -> Option<String> {
        let v = all(key);
        assert!(v.len() <= 1, "{name}: more than one `# {key}:` line");
        v.into_iter().next()
    };
    let about = one("about").unwrap_or_default();
    assert!(!about.is_empty(), "{name}: needs an `# about:` line");
    let fixture = match one("fixture").as_deref() {
        Some("project") => FixtureKind::Project,
        Some("trained") => FixtureKind::Trained,
        Some("promoted") => FixtureKind::Promoted,
        other => panic!("{name}: `# fixture:` must be project, trained or promoted, not {other:?}"),
    };
    let run = one("run").unwrap_or_else(|| panic!("{name}: needs a `# run:` line"));
    let exit = one("exit").map_or(1, |v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}: bad `# exit: {v}`"))
    });
    let writes = match one("writes").as_deref() {
        None | Some("none") => Vec::new(),
        Some(globs) => globs.split_whitespace().map(str::to_string).collect(),
    };
    let timeout = one("timeout").map_or(DEFAULT_TIMEOUT, |v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}: bad `# timeout: {v}`"))
    });
    Case {
        name,
        path,
        fixture,
        run,
        exit,
        expect: all("expect"),
        stdout: all("stdout"),
        writes,
        timeout,
        checks: all("check"),
    }
}

/// Every `class/NN-name.sh` under the corpus, sorted, with unique numbers per class.
pub fn load_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut classes: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("tests/corpus/hostile")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_dir() && p.file_name().is_some_and(|n| n != "project"))
        .collect();
    classes.sort();
    for class in classes {
        let cname = class.file_name().unwrap().to_string_lossy().to_string();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&class)
            .expect("a class directory")
            .map(|e| e.expect("a directory entry").path())
            .collect();
        files.sort();
        let mut numbers = std::collections::BTreeSet::new();
        for f in files {
            let fname = f.file_name().unwrap().to_string_lossy().to_string();
            let name = format!("{cname}/{fname}");
            assert!(fname.ends_with(".sh"), "{name}: cases are .sh files");
            let num = fname
                .split('-')
                .next()
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or_else(|| panic!("{name}: name it NN-what.sh"));
            assert!(
                numbers.insert(num),
                "{name}: number {num} used twice in {cname}/"
            );
            cases.push(parse_case(name, f));
        }
    }
    cases
}

// ---------------------------------------------------------------------------------------------
// Fixtures

fn git_env(cmd: &mut Command) -> &mut Command {
    cmd.env("GIT_AUTHOR_NAME", "hostile")
        .env("GIT_AUTHOR_EMAIL", "hostile@medrun.invalid")
        .env("GIT_COMMITTER_NAME", "hostile")
        .env("GIT_COMMITTER_EMAIL", "hostile@medrun.invalid")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("NO_COLOR", "1")
        .env_remove("MEDRUN_STORE")
        .env_remove("RUST_LOG")
}

fn sh(dir: &Path, script: &str) {
    let out = git_env(Command::new("bash").arg("-c").arg(script))
        .current_dir(dir)
        .env("MEDRUN", BIN)
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "fixture step failed in {}: {script}\nstdout:\n{}\nstderr:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn copy_dir(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

/// The three fixtures, each built once, on first use.
pub struct Fixtures {
    root: PathBuf,
    project: OnceLock<PathBuf>,
    trained: OnceLock<PathBuf>,
    promoted: OnceLock<PathBuf>,
}

impl Fixtures {
    pub fn new(scratch: &Path) -> Fixtures {
        let root = scratch.join("fixtures");
        std::fs::create_dir_all(&root).expect("fixtures dir");
        Fixtures {
            root,
            project: OnceLock::new(),
            trained: OnceLock::new(),
            promoted: OnceLock::new(),
        }
    }

    fn project(&self) -> &Path {
        self.project.get_or_init(|| {
            let p = self.root.join("project");
            copy_dir(&corpus_dir().join("project"), &p);
            std::fs::write(p.join(".gitignore"), "/.medrun\n").expect(".gitignore");
            sh(
                &p,
                "git init -q && git add -A && git commit -q -m 'hostile fixture'",
            );
            p
        })
    }

    fn trained(&self) -> &Path {
        self.trained.get_or_init(|| {
            let p = self.root.join("trained");
            copy_dir(self.project(), &p);
            sh(&p, "\"$MEDRUN\" -q run runs/hostile.yaml");
            p
        })
    }

    fn promoted(&self) -> &Path {
        self.promoted.get_or_init(|| {
            let p = self.root.join("promoted");
            copy_dir(self.trained(), &p);
            sh(
                &p,
                "\"$MEDRUN\" -q promote latest:dpo --to prod && git add promotions.yaml && git commit -q -m 'promote prod'",
            );
            p
        })
    }

    pub fn get(&self, kind: FixtureKind) -> &Path {
        match kind {
            FixtureKind::Project => self.project(),
            FixtureKind::Trained => self.trained(),
            FixtureKind::Promoted => self.promoted(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Snapshots: what a command changed

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir(u32),
    File(u32, u64, [u8; 32]),
    Link(PathBuf),
    Other(u32),
}

fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Node>) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let rel = p
            .strip_prefix(root)
            .unwrap_or(&p)
            .to_string_lossy()
            .to_string();
        if rel == ".git" {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let mode = meta.permissions().mode();
        let ft = meta.file_type();
        let node = if ft.is_symlink() {
            Node::Link(std::fs::read_link(&p).unwrap_or_default())
        } else if ft.is_dir() {
            walk(root, &p, out);
            Node::Dir(mode)
        } else if ft.is_file() {
            let hash = std::fs::read(&p)
                .map(|b| *blake3::hash(&b).as_bytes())
                .unwrap_or([0; 32]);
            Node::File(mode, meta.len(), hash)
        } else {
            Node::Other(mode)
        };
        out.insert(rel, node);
    }
}

/// `*` matches within one path segment, `**` any number of segments.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    fn segs(p: &[&str], s: &[&str]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(&"**"), _) => segs(&p[1..], s) || (!s.is_empty() && segs(p, &s[1..])),
            (Some(pp), Some(ss)) => seg(pp.as_bytes(), ss.as_bytes()) && segs(&p[1..], &s[1..]),
            _ => false,
        }
    }
    fn seg(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => seg(&p[1..], s) || (!s.is_empty() && seg(p, &s[1..])),
            (Some(a), Some(b)) => a == b && seg(&p[1..], &s[1..]),
            _ => false,
        }
    }
    let p: Vec<&str> = pattern.split('/').collect();
    let s: Vec<&str> = path.split('/').collect();
    segs(&p, &s)
}

fn changes(before: &BTreeMap<String, Node>, after: &BTreeMap<String, Node>) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in before {
        match after.get(k) {
            None => out.push(format!("deleted {k}")),
            Some(w) if w != v => out.push(format!("changed {k}")),
            _ => {}
        }
    }
    for k in after.keys() {
        if !before.contains_key(k) {
            out.push(format!("created {k}"));
        }
    }
    out
}

fn unexpected_writes(case: &Case, changed: &[String]) -> Vec<String> {
    changed
        .iter()
        .filter(|c| {
            let path = c.split_once(' ').map_or(c.as_str(), |(_, p)| p);
            !ALWAYS_ALLOWED
                .iter()
                .map(|s| s.to_string())
                .chain(case.writes.iter().cloned())
                .any(|g| glob_match(&g, path))
        })
        .cloned()
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Running a case

/// What happened to one case.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub expected_exit: i32,
    /// `None`: hung (killed after the timeout).
    pub exit: Option<i32>,
    pub seconds: f64,
    pub stderr: String,
    pub stdout: String,
    pub missing_expect: Vec<String>,
    pub missing_stdout: Vec<String>,
    pub writes: Vec<String>,
    pub failed_checks: Vec<String>,
    /// The case's own setup failed (a broken case, not a medrun failure).
    pub setup_error: Option<String>,
}

impl Outcome {
    pub fn panicked(&self) -> bool {
        self.exit == Some(101) || self.stderr.contains("panicked at")
    }

    /// Killed by a signal (bash reports 128 + N), or out of memory.
    pub fn aborted(&self) -> bool {
        self.exit.is_some_and(|c| c >= 128) || self.stderr.contains("memory allocation of")
    }

    pub fn hung(&self) -> bool {
        self.exit.is_none()
    }

    pub fn passed(&self) -> bool {
        self.setup_error.is_none()
            && self.exit == Some(self.expected_exit)
            && !self.panicked()
            && !self.aborted()
            && self.missing_expect.is_empty()
            && self.missing_stdout.is_empty()
            && self.writes.is_empty()
            && self.failed_checks.is_empty()
    }

    pub fn describe(&self) -> String {
        if let Some(e) = &self.setup_error {
            return format!("the case's setup failed: {e}");
        }
        let mut s = match self.exit {
            None => format!("HUNG (killed after {:.0} s)", self.seconds),
            Some(c) => format!("exit {c} (expected {})", self.expected_exit),
        };
        for m in &self.missing_expect {
            s.push_str(&format!("\n  stderr lacks {m:?}"));
        }
        for m in &self.missing_stdout {
            s.push_str(&format!("\n  stdout lacks {m:?}"));
        }
        for w in &self.writes {
            s.push_str(&format!("\n  unexpected write: {w}"));
        }
        for c in &self.failed_checks {
            s.push_str(&format!("\n  check failed: {c}"));
        }
        let tail = |t: &str| -> String {
            let t = t.trim_end();
            let start = t.len().saturating_sub(1500);
            let start = (start..=t.len())
                .find(|&i| t.is_char_boundary(i))
                .unwrap_or(t.len());
            t[start..].to_string()
        };
        s.push_str(&format!("\n  stderr: {}", tail(&self.stderr)));
        if !self.stdout.trim().is_empty() {
            s.push_str(&format!("\n  stdout: {}", tail(&self.stdout)));
        }
        s
    }
}

fn case_command(case: &Case, dir: &Path, script: &str) -> Command {
    let prelude = corpus_dir().join("prelude.sh");
    let full = format!(
        "set -euo pipefail\nsource {}\n{script}",
        shell_quote(&prelude.to_string_lossy())
    );
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(full).current_dir(dir);
    git_env(&mut cmd)
        .env("MEDRUN", BIN)
        .env("STORE", dir.join(".medrun"))
        .env(
            "CASE_DIR",
            case.path.parent().unwrap_or(Path::new(".")).as_os_str(),
        );
    cmd
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Run `cmd` in its own process group, killing the group after `timeout`. Returns the exit
/// code (`None` when it timed out) and its stdout and stderr.
fn run_with_timeout(
    mut cmd: Command,
    timeout: Duration,
    logs: &Path,
) -> (Option<i32>, String, String, f64) {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let out_path = logs.join("stdout");
    let err_path = logs.join("stderr");
    let out = std::fs::File::create(&out_path).expect("stdout log");
    let err = std::fs::File::create(&err_path).expect("stderr log");
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn bash");
    let code = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break Some(st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)));
        }
        if start.elapsed() > timeout {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg("--")
                .arg(format!("-{}", child.id()))
                .status();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read =
        |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).to_string();
    (
        code,
        read(&out_path),
        read(&err_path),
        start.elapsed().as_secs_f64(),
    )
}

pub fn run_case(case: &Case, fixtures: &Fixtures, work: &Path) -> Outcome {
    let project = work.join("p");
    let logs = work.join("logs");
    std::fs::create_dir_all(&logs).expect("logs dir");
    copy_dir(fixtures.get(case.fixture), &project);
    let mut outcome = Outcome {
        expected_exit: case.exit,
        exit: Some(-1),
        seconds: 0.0,
        stderr: String::new(),
        stdout: String::new(),
        missing_expect: Vec::new(),
        missing_stdout: Vec::new(),
        writes: Vec::new(),
        failed_checks: Vec::new(),
        setup_error: None,
    };
    let setup = format!("source {}", shell_quote(&case.path.to_string_lossy()));
    let (code, so, se, _) = run_with_timeout(
        case_command(case, &project, &setup),
        Duration::from_secs(300),
        &logs,
    );
    if code != Some(0) {
        outcome.setup_error = Some(format!("exit {code:?}\nstdout: {so}\nstderr: {se}"));
        return outcome;
    }
    let before = snapshot(&project);
    let (code, so, se, secs) = run_with_timeout(
        case_command(case, &project, &case.run),
        Duration::from_secs(case.timeout),
        &logs,
    );
    outcome.exit = code;
    outcome.seconds = secs;
    outcome.stdout = so;
    outcome.stderr = se;
    let after = snapshot(&project);
    outcome.writes = unexpected_writes(case, &changes(&before, &after));
    outcome.missing_expect = case
        .expect
        .iter()
        .filter(|e| !outcome.stderr.contains(e.as_str()))
        .cloned()
        .collect();
    outcome.missing_stdout = case
        .stdout
        .iter()
        .filter(|e| !outcome.stdout.contains(e.as_str()))
        .cloned()
        .collect();
    if code.is_some() {
        for check in &case.checks {
            let (c, so, se, _) = run_with_timeout(
                case_command(case, &project, check),
                Duration::from_secs(120),
                &logs,
            );
            if c != Some(0) {
                outcome
                    .failed_checks
                    .push(format!("{check} (exit {c:?})\n    {so}{se}"));
            }
        }
    }
    outcome
}

// ---------------------------------------------------------------------------------------------
// The outcome table

#[derive(Debug, Default)]
pub struct Tally {
    pub cases: usize,
    pub passed: usize,
    pub exit1_located: usize,
    pub other_expected: usize,
    pub panics: usize,
    pub hangs: usize,
    pub aborts: usize,
    pub silent: usize,
    pub wrong_exit: usize,
    pub writes_on_failure: usize,
    pub failed_checks: usize,
    pub broken_cases: usize,
}

impl Tally {
    pub fn of(results: &[(String, Outcome)]) -> Tally {
        let mut t = Tally {
            cases: results.len(),
            ..Tally::default()
        };
        for (_, o) in results {
            if o.setup_error.is_some() {
                t.broken_cases += 1;
                continue;
            }
            t.passed += usize::from(o.passed());
            if o.passed() {
                if o.expected_exit == 1 {
                    t.exit1_located += 1;
                } else {
                    t.other_expected += 1;
                }
            }
            t.panics += usize::from(o.panicked());
            t.hangs += usize::from(o.hung());
            t.aborts += usize::from(o.aborted() && !o.panicked());
            let expected_error = o.expected_exit != 0;
            if expected_error && o.exit == Some(0) {
                t.silent += 1;
            } else if o.exit.is_some()
                && o.exit != Some(o.expected_exit)
                && !o.panicked()
                && !o.aborted()
            {
                t.wrong_exit += 1;
            }
            if expected_error && !o.writes.is_empty() {
                t.writes_on_failure += 1;
            }
            t.failed_checks += usize::from(!o.failed_checks.is_empty());
        }
        t
    }

    pub fn table(&self) -> String {
        let rows = [
            ("cases", self.cases),
            ("passed", self.passed),
            (
                "expected error, exit 1 with its location",
                self.exit1_located,
            ),
            (
                "expected success or exit 3/4, as the case says",
                self.other_expected,
            ),
            ("panics", self.panics),
            ("hangs", self.hangs),
            ("aborts", self.aborts),
            (
                "silent acceptances (exit 0 where an error was due)",
                self.silent,
            ),
            ("other wrong exit codes", self.wrong_exit),
            (
                "writes on failure outside the allowed paths",
                self.writes_on_failure,
            ),
            ("failed checks", self.failed_checks),
            ("broken cases (setup failed)", self.broken_cases),
        ];
        let mut s = String::from("\nhostile corpus\n| outcome | cases |\n|---|---:|\n");
        for (k, v) in rows {
            s.push_str(&format!("| {k} | {v} |\n"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match(".medrun/tmp/**", ".medrun/tmp/a/b"));
        assert!(glob_match(".medrun/tmp/**", ".medrun/tmp"));
        assert!(glob_match("data/*.txt", "data/pt.txt"));
        assert!(!glob_match("data/*.txt", "data/x/pt.txt"));
        assert!(glob_match(".medrun/**", ".medrun/objects-v1/ab/cd"));
        assert!(!glob_match(".medrun/lock", ".medrun/locks"));
    }
}
