//! The rebuild path of `medrun reproduce`: when a run was recorded by another engine, build the
//! recorded commit and let that binary reproduce the run.
//!
//! Building runs the commit's code (`build.rs`, proc macros, then the binary itself), and the
//! commit comes from a run record, which is a plain file in the store. So a commit is built only
//! when the project already trusts it and the user asked for it:
//!
//! - it must be reachable from a local branch or a tag of the project, or from a detached HEAD
//!   (the checkout itself). Remote-tracking branches do not count (a fetch brings them in without
//!   review), nor do the `medrun-reproduce-*` branches that medrun creates for its worktrees;
//! - `--rebuild` must be given. Without it the command stops with exit 1, naming the commit and
//!   what would be built.
//!
//! The worktree and its build live inside the repository's git directory
//! (`.git/medrun/reproduce-<12 hex>/`), never in the store: nothing in the store is executed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::lineage::RunRecord;
use crate::printer::Printer;

use super::problem;

/// Prefix of the branches medrun creates for its worktrees; they never make a commit trusted.
pub(crate) const BRANCH_PREFIX: &str = "medrun-reproduce-";

/// What the rebuild would build, once the commit is known to be trusted.
#[derive(Debug, Clone)]
pub(crate) struct RebuildPlan {
    pub commit: String,
    pub subject: String,
    pub author: String,
    pub date: String,
    /// The branch or tag (or `HEAD`) the commit was found from.
    pub reached_from: String,
    pub branch: String,
    pub worktree: PathBuf,
}

impl RebuildPlan {
    pub fn short(&self) -> &str {
        &self.commit[..12]
    }

    pub fn binary(&self) -> PathBuf {
        self.worktree.join("target/release/medrun")
    }

    /// The build command, as printed.
    pub fn build_command(&self) -> String {
        format!(
            "{} build --release --locked (in {}, CARGO_TARGET_DIR={})",
            cargo(),
            self.worktree.display(),
            self.worktree.join("target").display()
        )
    }

    /// The commit and what will be built, one item a line.
    pub fn describe(&self) -> String {
        format!(
            "  commit   {}\n  subject  {}\n  author   {}\n  date     {}\n  reached  from {}\n  worktree {}\n  build    {}",
            self.commit,
            self.subject,
            self.author,
            self.date,
            self.reached_from,
            self.worktree.display(),
            self.build_command()
        )
    }
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Whether `s` is a full git object id (SHA-1 or SHA-256, lower-case hex).
fn is_commit_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64)
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn git_problem(what: &str, e: git2::Error) -> Error {
    problem(
        format!("{what}: {e}"),
        "run reproduce inside the project's git checkout",
    )
}

/// The first local branch, tag or detached HEAD from which `oid` is reachable.
pub(crate) fn reachable_from(repo: &git2::Repository, oid: git2::Oid) -> Result<Option<String>> {
    let reaches = |tip: git2::Oid| -> Result<bool> {
        Ok(tip == oid
            || repo
                .graph_descendant_of(tip, oid)
                .map_err(|e| git_problem("cannot walk the git history", e))?)
    };
    if repo.head_detached().unwrap_or(false)
        && let Ok(c) = repo.head().and_then(|h| h.peel_to_commit())
        && reaches(c.id())?
    {
        return Ok(Some("HEAD (detached)".into()));
    }
    let refs = repo
        .references()
        .map_err(|e| git_problem("cannot list the git references", e))?;
    let mut names: Vec<(String, git2::Oid)> = Vec::new();
    for r in refs.flatten() {
        let Ok(name) = r.name().map(str::to_string) else {
            continue;
        };
        let counted = match name.strip_prefix("refs/heads/") {
            Some(branch) => !branch.starts_with(BRANCH_PREFIX),
            None => name.starts_with("refs/tags/"),
        };
        if !counted {
            continue;
        }
        if let Ok(c) = r.peel_to_commit() {
            names.push((name, c.id()));
        }
    }
    names.sort();
    for (name, tip) in names {
        if reaches(tip)? {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

/// Check that the run's commit may be built, and say what would be built. Creates nothing.
pub(crate) fn plan(root: &Path, run: &RunRecord) -> Result<RebuildPlan> {
    let commit = run.started.git.commit.clone().ok_or_else(|| {
        problem(
            format!(
                "run {} was recorded by another medrun build ({}) and records no git commit to rebuild it from",
                run.id(),
                run.started.engine.short()
            ),
            "reproduce it with the medrun binary that recorded it",
        )
    })?;
    if !is_commit_id(&commit) {
        return Err(problem(
            format!(
                "run {} names `{commit}` as its git commit, which is not a full commit id",
                run.id()
            ),
            "the run record is damaged or was not written by medrun; medrun rebuilds only full commit ids",
        ));
    }
    let repo = git2::Repository::discover(root)
        .map_err(|e| git_problem("cannot open the git repository", e))?;
    let oid = git2::Oid::from_str(&commit).map_err(|e| {
        problem(
            format!("bad commit id {commit} in run {}: {e}", run.id()),
            "the run record is damaged",
        )
    })?;
    let c = repo.find_commit(oid).map_err(|_| {
        problem(
            format!(
                "commit {commit} that recorded run {} is not in this repository",
                run.id()
            ),
            "if it is the project's, fetch its branch from the project's remote and make it a local branch, then run reproduce again",
        )
    })?;
    let reached_from = reachable_from(&repo, oid)?.ok_or_else(|| {
        problem(
            format!(
                "commit {commit} named by run {} is not reachable from any branch or tag of this repository (`{BRANCH_PREFIX}*` branches and remote-tracking branches do not count); medrun builds only commits in the project's own history, and built nothing",
                run.id()
            ),
            format!(
                "a run record naming a dangling commit may have been planted in the store; if you trust this commit, review it (`git show {commit}`) and put it on a branch (`git branch NAME {commit}`), then run `medrun reproduce {} --rebuild`",
                &run.id()[..12.min(run.id().len())]
            ),
        )
    })?;
    let author = c.author();
    let short = &commit[..12];
    let branch = format!("{BRANCH_PREFIX}{short}");
    Ok(RebuildPlan {
        subject: printable(c.summary_bytes().unwrap_or_default()),
        author: format!(
            "{} <{}>",
            printable(author.name_bytes()),
            printable(author.email_bytes())
        ),
        date: commit_date(&c.time()),
        reached_from,
        worktree: repo
            .commondir()
            .join("medrun")
            .join(format!("reproduce-{short}")),
        branch,
        commit,
    })
}

/// Text from a commit, safe to print: control characters (terminal escapes) become `?`.
fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// `YYYY-MM-DD HH:MM:SS +HHMM`, in the commit's own time zone.
fn commit_date(t: &git2::Time) -> String {
    let offset = i64::from(t.offset_minutes());
    let local = t.seconds() + offset * 60;
    let day = crate::time::rfc3339(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(local.max(0) as u64),
    );
    let sign = if offset < 0 { '-' } else { '+' };
    format!(
        "{} {}{:02}{:02}",
        day.get(..19).unwrap_or(&day).replace('T', " "),
        sign,
        offset.abs() / 60,
        offset.abs() % 60
    )
}

/// A worktree at `dir` whose HEAD is `oid` and that has no change: reusable as it is.
fn worktree_is_clean_at(dir: &Path, oid: git2::Oid) -> bool {
    let Ok(wt) = git2::Repository::open(dir) else {
        return false;
    };
    let at = wt
        .head()
        .and_then(|h| h.peel_to_commit())
        .is_ok_and(|c| c.id() == oid);
    if !at {
        return false;
    }
    let mut opts = git2::StatusOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(false)
        .include_ignored(false);
    // `target/` is the build medrun itself made there (CARGO_TARGET_DIR), ignored or not.
    wt.statuses(Some(&mut opts)).is_ok_and(|s| {
        s.iter().all(|e| {
            e.path()
                .is_ok_and(|p| p == "target/" || p.starts_with("target/"))
        })
    })
}

/// Check the commit out into the plan's worktree (reusing a clean one at the same commit).
fn ensure_worktree(root: &Path, plan: &RebuildPlan) -> Result<()> {
    let repo = git2::Repository::discover(root)
        .map_err(|e| git_problem("cannot open the git repository", e))?;
    let oid = git2::Oid::from_str(&plan.commit).map_err(|e| git_problem("bad commit id", e))?;
    if worktree_is_clean_at(&plan.worktree, oid) {
        return Ok(());
    }
    let c = repo
        .find_commit(oid)
        .map_err(|e| git_problem("cannot read the commit", e))?;
    if let Ok(w) = repo.find_worktree(&plan.branch) {
        let _ = w.prune(Some(
            git2::WorktreePruneOptions::new()
                .valid(true)
                .locked(false)
                .working_tree(true),
        ));
    }
    if plan.worktree.exists() {
        std::fs::remove_dir_all(&plan.worktree).map_err(|e| {
            problem(
                format!(
                    "cannot remove the stale worktree {}: {e}",
                    plan.worktree.display()
                ),
                "remove it by hand and run reproduce again",
            )
        })?;
    }
    if let Some(parent) = plan.worktree.parent() {
        std::fs::create_dir_all(parent).map_err(|e| {
            problem(
                format!("cannot create {}: {e}", parent.display()),
                "check the permissions of the git directory",
            )
        })?;
    }
    // Force: a branch of this name left at another commit is moved to the one verified above.
    let branch = repo.branch(&plan.branch, &c, true).map_err(|e| {
        problem(
            format!("cannot create branch {}: {e}", plan.branch),
            format!(
                "delete it (`git branch -D {}`) and run reproduce again",
                plan.branch
            ),
        )
    })?;
    let reference = branch.into_reference();
    let mut opts = git2::WorktreeAddOptions::new();
    opts.reference(Some(&reference));
    repo.worktree(&plan.branch, &plan.worktree, Some(&opts))
        .map_err(|e| {
            problem(
                format!(
                    "cannot check out {} into {}: {e}",
                    plan.short(),
                    plan.worktree.display()
                ),
                format!(
                    "run `git worktree prune`, remove {} and try again",
                    plan.worktree.display()
                ),
            )
        })?;
    if !worktree_is_clean_at(&plan.worktree, oid) {
        return Err(problem(
            format!(
                "the worktree {} is not a clean checkout of {}",
                plan.worktree.display(),
                plan.commit
            ),
            "run `git worktree prune`, remove the directory and try again",
        ));
    }
    Ok(())
}

/// Print what will be built, check the commit out and build it. Returns the binary.
pub(crate) fn build(
    root: &Path,
    run: &RunRecord,
    plan: &RebuildPlan,
    printer: &Printer,
) -> Result<PathBuf> {
    if run.started.git.dirty {
        printer.warn(&format!(
            "run {} was recorded from a dirty tree (diff {}); the rebuild uses commit {} without those changes",
            &run.id()[..12.min(run.id().len())],
            run.started.git.diff_hash.as_deref().unwrap_or("?"),
            plan.short()
        ));
    }
    // Shown even with --json and -q: the user is about to run this commit's code.
    printer.notice(&format!(
        "rebuilding the engine of run {} (--rebuild): building and running this commit's code\n{}",
        &run.id()[..12.min(run.id().len())],
        plan.describe()
    ));
    ensure_worktree(root, plan)?;
    let target = plan.worktree.join("target");
    let st = Command::new(cargo())
        .args(["build", "--release", "--locked"])
        .current_dir(&plan.worktree)
        .env("CARGO_TARGET_DIR", &target)
        .stdin(Stdio::null())
        // Keep stdout for medrun's own report (`--json`): cargo's output goes to stderr.
        .stdout(Stdio::from(std::io::stderr()))
        .status()
        .map_err(|e| {
            problem(
                format!("cannot run {}: {e}", cargo()),
                "install Rust (rustup) to rebuild the recorded engine",
            )
        })?;
    let bin = plan.binary();
    if !st.success() || !bin.is_file() {
        return Err(problem(
            format!("building commit {} failed ({st})", plan.short()),
            format!(
                "see the cargo output above; the worktree is at {}",
                plan.worktree.display()
            ),
        ));
    }
    Ok(bin)
}

/// What the rebuilt binary printed on stdout, and how it exited.
pub(crate) struct ChildRun {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
}

/// Run `bin --store STORE --json reproduce RUN [--stage S]` in the project root. Its stderr goes
/// to ours; its stdout is returned for verification.
pub(crate) fn run_child(
    bin: &Path,
    root: &Path,
    store: &Path,
    run_id: &str,
    only: Option<&str>,
) -> Result<ChildRun> {
    let mut cmd = Command::new(bin);
    cmd.arg("--store")
        .arg(store)
        .arg("--json")
        .arg("reproduce")
        .arg(run_id)
        .current_dir(root)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .env("MEDRUN_REPRODUCE_REBUILT", "1");
    if let Some(s) = only {
        cmd.arg("--stage").arg(s);
    }
    let out = cmd.output().map_err(|e| {
        problem(
            format!("cannot run the rebuilt medrun {}: {e}", bin.display()),
            "run reproduce again with --rebuild to build it again",
        )
    })?;
    Ok(ChildRun {
        code: out.status.code(),
        stdout: out.stdout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repository with `main` at commit B (parent A), tag `v1` at A, and commits that only a
    /// medrun branch, a remote-tracking branch or nothing (dangling) reaches.
    struct Repo {
        _dir: tempfile::TempDir,
        repo: git2::Repository,
    }

    impl Repo {
        fn new() -> Repo {
            let dir = tempfile::tempdir().unwrap();
            let repo = git2::Repository::init(dir.path()).unwrap();
            Repo { _dir: dir, repo }
        }

        fn commit(&self, refname: Option<&str>, parent: Option<git2::Oid>, msg: &str) -> git2::Oid {
            let sig = git2::Signature::new("t", "t@t", &git2::Time::new(1_700_000_000, 0)).unwrap();
            let mut idx = self.repo.index().unwrap();
            let tree = self.repo.find_tree(idx.write_tree().unwrap()).unwrap();
            let parents: Vec<git2::Commit> = parent
                .map(|p| self.repo.find_commit(p).unwrap())
                .into_iter()
                .collect();
            let refs: Vec<&git2::Commit> = parents.iter().collect();
            self.repo
                .commit(refname, &sig, &sig, msg, &tree, &refs)
                .unwrap()
        }
    }

    #[test]
    fn only_local_branches_tags_and_a_detached_head_make_a_commit_buildable() {
        let r = Repo::new();
        let a = r.commit(Some("refs/heads/main"), None, "a");
        let b = r.commit(Some("refs/heads/main"), Some(a), "b");
        r.repo.reference("refs/tags/v1", a, false, "test").unwrap();
        let dangling = r.commit(None, Some(b), "planted build.rs");
        let mine = r.commit(
            Some(&format!("refs/heads/{BRANCH_PREFIX}abc")),
            Some(b),
            "m",
        );
        let remote = r.commit(Some("refs/remotes/fork/evil"), Some(b), "r");
        let reach = |o| reachable_from(&r.repo, o).unwrap();
        assert_eq!(reach(b).as_deref(), Some("refs/heads/main"));
        assert_eq!(reach(a).as_deref(), Some("refs/heads/main"));
        assert_eq!(reach(dangling), None);
        assert_eq!(reach(mine), None, "medrun's own branches must not count");
        assert_eq!(
            reach(remote),
            None,
            "remote-tracking branches must not count"
        );
        // A tag counts, and so does a detached HEAD (the checkout itself).
        r.repo
            .reference("refs/tags/v2", remote, false, "test")
            .unwrap();
        assert_eq!(reach(remote).as_deref(), Some("refs/tags/v2"));
        r.repo.set_head_detached(dangling).unwrap();
        assert_eq!(reach(dangling).as_deref(), Some("HEAD (detached)"));
    }

    #[test]
    fn commit_ids_must_be_full_lower_hex() {
        assert!(is_commit_id(&"a".repeat(40)));
        assert!(is_commit_id(&"0".repeat(64)));
        assert!(!is_commit_id("abc123"));
        assert!(!is_commit_id(&"A".repeat(40)));
        assert!(!is_commit_id(&"g".repeat(40)));
    }

    #[test]
    fn commit_dates_are_in_the_commits_time_zone() {
        // 2024-03-01 12:00:00 UTC, written at +0130 and at -0500.
        let t = git2::Time::new(1_709_294_400, 90);
        assert_eq!(commit_date(&t), "2024-03-01 13:30:00 +0130");
        let t = git2::Time::new(1_709_294_400, -300);
        assert_eq!(commit_date(&t), "2024-03-01 07:00:00 -0500");
    }
}
