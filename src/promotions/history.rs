//! The git side of a promotion history: the committed file only ever grows.
//!
//! Every version of `promotions.yaml` committed in HEAD's history is a list of entry blocks (the
//! canonical text of each entry). A version is **clean** when it keeps every block of every clean
//! version before it (in its commit's ancestry), byte for byte and in the same order: new entries
//! are only added, at the end by a commit, or interleaved by a merge of two branches that each
//! appended. A version that drops, changes or moves a block of a clean version is a **rewrite**,
//! made by the first commit that did not keep it. The current file (the work tree's) must keep
//! every clean version of HEAD's history; each one it does not keep is reported with the commit
//! that dropped it (or the work tree, when no commit did). So every entry ever appended is still
//! there, in order; a rewrite that a later commit undid (restoring the entries, removing an edited
//! copy) is no longer reported, because a rewritten version is not clean and need not be kept.
//!
//! Versions not readable as version 2: a version-1 file (or no file) before the first clean
//! version starts the history afresh (the upgrade); a file removed or turned back into version 1
//! after one is a rewrite; a version not in the canonical outline (a committed merge conflict,
//! say) is looked through (neither clean nor a rewrite).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::format::blocks;
use super::verify::Problem;
use super::{PROMOTIONS_FILE, PromotionError};

/// The project's git repository.
pub struct Repo {
    pub(crate) repo: git2::Repository,
    /// The project root relative to the work tree, with a trailing `/` (empty at the top).
    prefix: String,
}

fn git_err(e: git2::Error) -> PromotionError {
    PromotionError::Unverified {
        at: PROMOTIONS_FILE.into(),
        message: format!("cannot read the git repository: {}", e.message()),
        hint: "promotions are verified against the project's git history: run medrun inside the repository's work tree".into(),
    }
}

impl Repo {
    /// The repository whose work tree holds `root`.
    pub fn open(root: &Path) -> Result<Repo, PromotionError> {
        let repo = git2::Repository::discover(root).map_err(|e| PromotionError::Unverified {
            at: PROMOTIONS_FILE.into(),
            message: format!("{} is not in a git repository ({})", root.display(), e.message()),
            hint: "promotions.yaml is verified against git history: keep the project in a git repository".into(),
        })?;
        let workdir = repo
            .workdir()
            .map(Path::to_path_buf)
            .ok_or_else(|| git_err(git2::Error::from_str("the repository has no work tree")))?;
        let wd = std::fs::canonicalize(&workdir).unwrap_or(workdir);
        let r = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
        let rel = r.strip_prefix(&wd).map_err(|_| {
            git_err(git2::Error::from_str(
                "the project root is outside the repository's work tree",
            ))
        })?;
        let mut prefix = rel.to_string_lossy().replace('\\', "/");
        if !prefix.is_empty() {
            prefix.push('/');
        }
        Ok(Repo { repo, prefix })
    }

    /// A project-relative path as a path in the repository's trees.
    pub fn path(&self, rel: &str) -> PathBuf {
        PathBuf::from(format!("{}{rel}", self.prefix))
    }

    /// The bytes of project-relative `rel` at `commit`; `None` when the commit has no such file.
    pub fn file_at(&self, commit: git2::Oid, rel: &str) -> Result<Option<Vec<u8>>, git2::Error> {
        let tree = self.repo.find_commit(commit)?.tree()?;
        let Ok(entry) = tree.get_path(&self.path(rel)) else {
            return Ok(None);
        };
        match entry.to_object(&self.repo)?.into_blob() {
            Ok(b) => Ok(Some(b.content().to_vec())),
            Err(_) => Ok(None),
        }
    }

    /// HEAD's commit, `None` before the first commit.
    pub fn head(&self) -> Option<git2::Oid> {
        self.repo.head().ok().and_then(|h| h.target())
    }

    /// Whether `commit` is HEAD or one of its ancestors (in the history medrun trusts).
    pub fn in_history(&self, commit: git2::Oid) -> bool {
        match self.head() {
            Some(h) if h == commit => true,
            Some(h) => self.repo.graph_descendant_of(h, commit).unwrap_or(false),
            None => false,
        }
    }
}

/// What the history check looked at.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct HistoryReport {
    /// Commits walked (HEAD and its ancestors).
    pub commits: usize,
    /// Commits whose version of the file differs from a parent's.
    pub changes: usize,
    /// The repository is a shallow clone: rewrites before its boundary cannot be seen.
    pub shallow: bool,
}

/// One committed version of the file, as the check sees it.
enum Version {
    /// A version-2 file: its entry blocks.
    V2(Vec<String>),
    /// A version-1 file (before the upgrade).
    V1,
    /// Not readable as either: looked through.
    Unreadable,
}

fn version(bytes: &[u8]) -> Version {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Version::Unreadable;
    };
    if let Some(b) = blocks(text) {
        return Version::V2(b.into_iter().map(str::to_string).collect());
    }
    let v1 = crate::yaml::check_version(text, Path::new(PROMOTIONS_FILE), PROMOTIONS_FILE, 1);
    if v1.is_ok() {
        Version::V1
    } else {
        Version::Unreadable
    }
}

/// Whether `all` keeps every block of `part` in order; `Err(i)`: block `i` of `part` is the
/// first one it does not keep.
fn keeps(all: &[String], part: &[String]) -> Result<(), usize> {
    let mut it = all.iter();
    for (i, b) in part.iter().enumerate() {
        if !it.any(|a| a == b) {
            return Err(i);
        }
    }
    Ok(())
}

/// How an entry block reads in a message: its channel and time.
fn describe(block: &str) -> String {
    let value = |key: &str| {
        block
            .lines()
            .find_map(|l| l.trim_start().trim_start_matches("- ").strip_prefix(key))
            .map(|v| v.trim().trim_matches('"').to_string())
            .unwrap_or_default()
    };
    format!(
        "the promotion to `{}` at {} (checkpoint {})",
        value("channel:"),
        value("promoted_at:"),
        &value("checkpoint:").chars().take(12).collect::<String>()
    )
}

const HINT: &str = "promotions.yaml is append-only: entries are never edited, removed or reordered, and a rollback is a new promotion of the older checkpoint (`medrun promote RUN:STAGE --to CHANNEL`). Restore the entries (`git show COMMIT^:promotions.yaml` shows them before the rewrite) and commit, then promote again";

/// Check that the file at `current` (the work tree's text, `None` when absent) keeps every
/// version committed in HEAD's history, and name the commit of each rewrite. Returns what was
/// walked, and the problems found.
pub fn check(
    repo: &Repo,
    current: Option<&str>,
) -> Result<(HistoryReport, Vec<Problem>), PromotionError> {
    let mut report = HistoryReport {
        shallow: repo.repo.is_shallow(),
        ..HistoryReport::default()
    };
    let Some(head) = repo.head() else {
        return Ok((report, Vec::new()));
    };
    let path = repo.path(PROMOTIONS_FILE);
    let mut walk = repo.repo.revwalk().map_err(git_err)?;
    walk.push(head).map_err(git_err)?;
    walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE)
        .map_err(git_err)?;
    let mut w = Walk::default();
    for id in walk {
        let id = id.map_err(git_err)?;
        let commit = repo.repo.find_commit(id).map_err(git_err)?;
        report.commits += 1;
        let blob = commit
            .tree()
            .ok()
            .and_then(|t| t.get_path(&path).ok())
            .filter(|e| e.kind() == Some(git2::ObjectType::Blob))
            .map(|e| e.id());
        if let Some(b) = blob
            && !w.versions.contains_key(&b)
        {
            let bytes = repo.repo.find_blob(b).map_err(git_err)?;
            w.versions.insert(b, version(bytes.content()));
        }
        let parents: Vec<git2::Oid> = commit
            .parent_ids()
            .filter(|p| w.blob_of.contains_key(p))
            .collect();
        if parents.iter().any(|p| w.blob_of[p] != blob) || (parents.is_empty() && blob.is_some()) {
            report.changes += 1;
        }
        w.step(id, blob, &parents);
    }
    let problems = blame(repo, &w, head, current)?;
    Ok((report, problems))
}

/// What the walk keeps per commit and per version of the file.
#[derive(Default)]
struct Walk {
    /// Commit → its version of the file (blob id).
    blob_of: HashMap<git2::Oid, Option<git2::Oid>>,
    /// Commit → the clean versions (blob ids) in its ancestry, its own included.
    clean: HashMap<git2::Oid, Rc<BTreeSet<git2::Oid>>>,
    /// Commit → the clean versions of its ancestry that its version does not keep.
    missing: HashMap<git2::Oid, Rc<BTreeSet<git2::Oid>>>,
    versions: HashMap<git2::Oid, Version>,
    /// Clean version → the latest commit that stopped keeping it (its parent kept it).
    dropped: HashMap<git2::Oid, git2::Oid>,
}

impl Walk {
    /// Commit `id` (whose version is `blob`, whose walked parents are `parents`).
    fn step(&mut self, id: git2::Oid, blob: Option<git2::Oid>, parents: &[git2::Oid]) {
        if let [p] = parents
            && self.blob_of[p] == blob
        {
            let (clean, missing) = (Rc::clone(&self.clean[p]), Rc::clone(&self.missing[p]));
            self.clean.insert(id, clean);
            self.missing.insert(id, missing);
            self.blob_of.insert(id, blob);
            return;
        }
        let mut clean: BTreeSet<git2::Oid> = BTreeSet::new();
        let mut inherited: BTreeSet<git2::Oid> = BTreeSet::new();
        for p in parents {
            clean.extend(self.clean[p].iter().copied());
            inherited.extend(self.missing[p].iter().copied());
        }
        let missing: BTreeSet<git2::Oid> = match blob.and_then(|b| self.versions.get(&b)) {
            Some(Version::V2(now)) => clean
                .iter()
                .filter(|v| matches!(self.versions.get(v), Some(Version::V2(before)) if keeps(now, before).is_err()))
                .copied()
                .collect(),
            // Looked through: it neither keeps nor drops anything new.
            Some(Version::Unreadable) => inherited,
            None | Some(Version::V1) => clean
                .iter()
                .filter(|v| matches!(self.versions.get(v), Some(Version::V2(before)) if !before.is_empty()))
                .copied()
                .collect(),
        };
        if matches!(
            blob.and_then(|b| self.versions.get(&b)),
            Some(Version::V2(_))
        ) && missing.is_empty()
        {
            clean.extend(blob);
        }
        for v in &missing {
            // A transition: some parent still kept `v` (or had not seen it as missing).
            if parents.iter().any(|p| !self.missing[p].contains(v)) {
                self.dropped.insert(*v, id);
            }
        }
        self.blob_of.insert(id, blob);
        self.clean.insert(id, Rc::new(clean));
        self.missing.insert(id, Rc::new(missing));
    }
}

/// The clean versions of HEAD's history that the current file does not keep, each blamed on the
/// commit that first dropped it (or on the work tree): one problem per commit.
fn blame(
    repo: &Repo,
    w: &Walk,
    head: git2::Oid,
    current: Option<&str>,
) -> Result<Vec<Problem>, PromotionError> {
    let now: Vec<String> = current
        .and_then(blocks)
        .map(|b| b.into_iter().map(str::to_string).collect())
        .unwrap_or_default();
    let mut problems = Vec::new();
    for v in w.clean.get(&head).map(|c| c.iter()).into_iter().flatten() {
        let Some(Version::V2(before)) = w.versions.get(v) else {
            continue;
        };
        let Err(i) = keeps(&now, before) else {
            continue;
        };
        let block = &before[i];
        let by_commit = w.missing.get(&head).is_some_and(|m| m.contains(v));
        let (at, message) = match w.dropped.get(v).filter(|_| by_commit) {
            Some(commit) => {
                let c = repo.repo.find_commit(*commit).map_err(git_err)?;
                let summary = c.summary().ok().flatten().unwrap_or("").to_string();
                (
                    format!("commit {}", &commit.to_string()[..12]),
                    format!(
                        "\"{summary}\" rewrote {PROMOTIONS_FILE}: {} is removed, changed or moved",
                        describe(block)
                    ),
                )
            }
            None => (
                PROMOTIONS_FILE.to_string(),
                format!(
                    "the uncommitted {PROMOTIONS_FILE} rewrites the committed history: {} is removed, changed or moved",
                    describe(block)
                ),
            ),
        };
        problems.push(Problem {
            at,
            message,
            hint: HINT.into(),
        });
    }
    problems.sort_by(|a, b| a.at.cmp(&b.at).then(a.message.cmp(&b.message)));
    problems.dedup_by(|a, b| a.at == b.at);
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(x: &[&str]) -> Vec<String> {
        x.iter().map(|s| s.to_string()).collect()
    }

    struct Git(tempfile::TempDir);

    impl Git {
        fn new() -> Git {
            let g = Git(tempfile::tempdir().expect("tempdir"));
            g.run(&["init", "-q", "-b", "main"]);
            g
        }

        fn run(&self, args: &[&str]) {
            let o = std::process::Command::new("git")
                .args(["-c", "user.name=t", "-c", "user.email=t@t"])
                .args(args)
                .current_dir(self.0.path())
                .output()
                .expect("git");
            assert!(
                o.status.success(),
                "git {args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }

        /// Commit `promotions.yaml` with the given entry names (`None`: no file; `Some(text)`
        /// with `raw`: that text as it is).
        fn commit(&self, entries: Option<&[&str]>, message: &str) {
            let path = self.0.path().join(PROMOTIONS_FILE);
            match entries {
                Some(names) => std::fs::write(&path, file(names)).expect("write"),
                None => {
                    let _ = std::fs::remove_file(&path);
                }
            }
            self.run(&["add", "-A"]);
            self.run(&["commit", "-q", "--allow-empty", "-m", message]);
        }

        /// Start merging `branch`; the conflict in promotions.yaml is resolved by the next commit.
        fn merge(&self, branch: &str) {
            let _ = std::process::Command::new("git")
                .args(["-c", "user.name=t", "-c", "user.email=t@t", "merge", "-q"])
                .args(["--no-commit", branch])
                .current_dir(self.0.path())
                .output()
                .expect("git");
            assert!(
                self.0.path().join(".git/MERGE_HEAD").exists(),
                "a merge in progress"
            );
        }

        fn raw(&self, text: &str, message: &str) {
            std::fs::write(self.0.path().join(PROMOTIONS_FILE), text).expect("write");
            self.run(&["add", "-A"]);
            self.run(&["commit", "-q", "-m", message]);
        }

        /// The problems for the work tree's file, as (at is a commit, message).
        fn check(&self) -> Vec<String> {
            let repo = Repo::open(self.0.path()).expect("repo");
            let current = std::fs::read_to_string(self.0.path().join(PROMOTIONS_FILE)).ok();
            let (report, problems) = check(&repo, current.as_deref()).expect("check");
            assert!(report.commits > 0);
            problems
                .into_iter()
                .map(|p| format!("{}: {}", p.at, p.message))
                .collect()
        }
    }

    fn file(names: &[&str]) -> String {
        let mut s = crate::promotions::header();
        for n in names {
            s.push_str(&format!(
                "  - channel: \"{n}\"\n    checkpoint: \"{n}{n}\"\n"
            ));
        }
        s
    }

    #[test]
    fn appends_merges_and_the_version_1_upgrade_are_not_rewrites() {
        let g = Git::new();
        g.raw("version: 1\npromotions:\n", "v1");
        g.commit(Some(&["a"]), "upgrade");
        g.commit(Some(&["a", "b"]), "b");
        g.run(&["checkout", "-q", "-b", "side"]);
        g.commit(Some(&["a", "b", "c"]), "c on side");
        g.run(&["checkout", "-q", "main"]);
        g.commit(Some(&["a", "b", "d"]), "d on main");
        // The merge interleaves both branches' appended blocks.
        g.merge("side");
        g.commit(Some(&["a", "b", "c", "d"]), "merge");
        // A conflicted version committed by mistake is looked through.
        g.raw(
            &format!("{}<<<<<<< HEAD\n", file(&["a", "b", "c", "d"])),
            "oops",
        );
        g.commit(Some(&["a", "b", "c", "d", "e"]), "fixed, and e");
        assert_eq!(g.check(), Vec::<String>::new());
        // An uncommitted append is fine; an uncommitted removal is not.
        std::fs::write(
            g.0.path().join(PROMOTIONS_FILE),
            file(&["a", "b", "c", "d", "e", "f"]),
        )
        .expect("write");
        assert_eq!(g.check(), Vec::<String>::new());
        std::fs::write(
            g.0.path().join(PROMOTIONS_FILE),
            file(&["a", "b", "d", "e"]),
        )
        .expect("write");
        let p = g.check();
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("promotions.yaml: the uncommitted"),
            "{p:?}"
        );
        assert!(p[0].contains("`c`"), "{p:?}");
    }

    #[test]
    fn a_rewrite_is_blamed_on_the_commit_that_made_it_until_it_is_undone() {
        let g = Git::new();
        g.commit(Some(&["a"]), "a");
        g.commit(Some(&["a", "b"]), "b");
        g.commit(Some(&["a"]), "roll back b");
        g.commit(Some(&["a", "c"]), "c");
        let p = g.check();
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("commit "), "{p:?}");
        assert!(
            p[0].contains("\"roll back b\" rewrote promotions.yaml"),
            "{p:?}"
        );
        assert!(p[0].contains("`b`"), "{p:?}");
        // Putting b back (and keeping c after it) undoes the rewrite.
        g.commit(Some(&["a", "b", "c"]), "restore b");
        assert_eq!(g.check(), Vec::<String>::new());
        // Reordering, editing, deleting the file, and going back to version 1 are rewrites, each
        // reported until a commit undoes it.
        for (bad, name) in [
            (Some(&["b", "a", "c"][..]), "reorder"),
            (Some(&["a", "x", "c"][..]), "edit"),
            (Some(&["a", "b"][..]), "drop the newest"),
            (None, "delete"),
        ] {
            g.commit(bad, name);
            let p = g.check();
            assert_eq!(p.len(), 1, "{name}: {p:?}");
            assert!(p[0].contains(&format!("\"{name}\" rewrote")), "{p:?}");
            g.commit(Some(&["a", "b", "c"]), "undo");
            assert_eq!(g.check(), Vec::<String>::new(), "after undoing {name}");
        }
        g.raw("version: 1\npromotions:\n", "downgrade");
        assert!(
            g.check()[0].contains("\"downgrade\" rewrote"),
            "{:?}",
            g.check()
        );
        // Appending on top of a rewrite does not launder it.
        g.commit(Some(&["a", "c", "d"]), "rewrite b away");
        g.commit(Some(&["a", "c", "d", "e"]), "append e");
        let p = g.check();
        assert!(p.iter().any(|m| m.contains("`b`")), "{p:?}");
    }

    #[test]
    fn keeping_is_an_ordered_subsequence() {
        assert_eq!(keeps(&v(&["a", "b", "c"]), &v(&["a", "b"])), Ok(()));
        assert_eq!(keeps(&v(&["a", "x", "b"]), &v(&["a", "b"])), Ok(()));
        assert_eq!(keeps(&v(&["a"]), &v(&["a", "b"])), Err(1));
        assert_eq!(keeps(&v(&["b", "a"]), &v(&["a", "b"])), Err(1));
        assert_eq!(keeps(&v(&["a2", "b"]), &v(&["a", "b"])), Err(0));
    }
}
