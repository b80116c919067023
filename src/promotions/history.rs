//! The git side of a promotion history: the committed file only ever grows.
//!
//! Every version of `promotions.yaml` committed in HEAD's history is a list of entry blocks (the
//! canonical text of each entry). The current file (the work tree's, which extends HEAD's) must
//! keep every block of every earlier version, byte for byte and in the same order; new entries
//! may only be added, at the end by a commit, or interleaved by a merge of two branches that each
//! appended. A version whose blocks are not all kept is a rewrite, and the commit that made it is
//! found by walking the history with git2: the first commit whose version does not keep its
//! parent's. Versions that are not readable as version 2 are handled as follows: a version-1 file
//! (or no file) before the first version-2 one starts the history afresh (the upgrade), a file
//! removed or turned back into version 1 after it is a rewrite, and a version that is not in the
//! canonical outline (a committed merge conflict, say) is looked through: the next readable
//! version must keep the blocks of the last readable one. A rewrite that a later commit undid (the
//! current file keeps every block again) is not reported.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

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
    let problems = blame(repo, &w, current)?;
    Ok((report, problems))
}

/// What the walk keeps per commit and per version of the file.
#[derive(Default)]
struct Walk {
    /// Commit → its version of the file (blob id).
    blob_of: HashMap<git2::Oid, Option<git2::Oid>>,
    /// Commit → the readable version-2 versions (blob ids) its descendants must keep.
    effective: HashMap<git2::Oid, Vec<git2::Oid>>,
    versions: HashMap<git2::Oid, Version>,
    /// Version → the first commit that did not keep it, and the block it dropped.
    dropped: HashMap<git2::Oid, (git2::Oid, usize)>,
}

impl Walk {
    /// Commit `id` (whose version is `blob`, whose walked parents are `parents`).
    fn step(&mut self, id: git2::Oid, blob: Option<git2::Oid>, parents: &[git2::Oid]) {
        let mut eff: Vec<git2::Oid> = Vec::new();
        let changed: Vec<&git2::Oid> = parents.iter().filter(|p| self.blob_of[p] != blob).collect();
        match blob.and_then(|b| self.versions.get(&b)) {
            Some(Version::V2(now)) => {
                for p in changed {
                    for e in &self.effective[p] {
                        if let Some(Version::V2(before)) = self.versions.get(e)
                            && let Err(i) = keeps(now, before)
                        {
                            self.dropped.entry(*e).or_insert((id, i));
                        }
                    }
                }
                eff.extend(blob);
            }
            Some(Version::Unreadable) => {
                for p in parents {
                    for e in &self.effective[p] {
                        if !eff.contains(e) {
                            eff.push(*e);
                        }
                    }
                }
            }
            None | Some(Version::V1) => {
                for p in changed {
                    for e in &self.effective[p] {
                        if let Some(Version::V2(before)) = self.versions.get(e)
                            && !before.is_empty()
                        {
                            self.dropped.entry(*e).or_insert((id, 0));
                        }
                    }
                }
            }
        }
        self.blob_of.insert(id, blob);
        self.effective.insert(id, eff);
    }
}

/// The earlier versions that the current file does not keep, each blamed on the commit that
/// first dropped it (or on the work tree): one problem per commit.
fn blame(repo: &Repo, w: &Walk, current: Option<&str>) -> Result<Vec<Problem>, PromotionError> {
    let now: Vec<String> = current
        .and_then(blocks)
        .map(|b| b.into_iter().map(str::to_string).collect())
        .unwrap_or_default();
    let mut problems = Vec::new();
    let mut seen: HashSet<git2::Oid> = HashSet::new();
    for v in w.blob_of.values().flatten() {
        if !seen.insert(*v) {
            continue;
        }
        let Some(Version::V2(before)) = w.versions.get(v) else {
            continue;
        };
        let Err(i) = keeps(&now, before) else {
            continue;
        };
        let block = &before[i];
        let (at, message) = match w.dropped.get(v) {
            Some((commit, _)) => {
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

    #[test]
    fn keeping_is_an_ordered_subsequence() {
        assert_eq!(keeps(&v(&["a", "b", "c"]), &v(&["a", "b"])), Ok(()));
        assert_eq!(keeps(&v(&["a", "x", "b"]), &v(&["a", "b"])), Ok(()));
        assert_eq!(keeps(&v(&["a"]), &v(&["a", "b"])), Err(1));
        assert_eq!(keeps(&v(&["b", "a"]), &v(&["a", "b"])), Err(1));
        assert_eq!(keeps(&v(&["a2", "b"]), &v(&["a", "b"])), Err(0));
    }
}
