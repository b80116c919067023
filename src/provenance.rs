//! Code provenance through git2: the HEAD commit, whether the work tree is dirty, a hash of the
//! dirty diff, and whether the spec file itself is committed. Recorded in every run; `medrun run`
//! refuses a dirty tree or an uncommitted spec unless `--allow-dirty`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitState {
    /// Whether the project is inside a git repository at all.
    pub repo: bool,
    /// HEAD commit id; `None` before the first commit.
    pub commit: Option<String>,
    /// Any tracked change or untracked (non-ignored) file.
    pub dirty: bool,
    /// blake3 of the diff from HEAD to the work tree (untracked files included), when dirty.
    pub diff_hash: Option<String>,
    /// Files that make the tree dirty (first 20).
    pub dirty_files: Vec<String>,
    /// The spec is committed and unmodified.
    pub spec_committed: bool,
}

impl GitState {
    fn none() -> GitState {
        GitState {
            repo: false,
            commit: None,
            dirty: true,
            diff_hash: None,
            dirty_files: Vec::new(),
            spec_committed: false,
        }
    }

    pub fn short(&self) -> String {
        match (&self.commit, self.repo) {
            (_, false) => "not a git repository".into(),
            (None, true) => "no commits yet".into(),
            (Some(c), true) => format!(
                "{}{}",
                &c[..12.min(c.len())],
                if self.dirty { " (dirty)" } else { " (clean)" }
            ),
        }
    }
}

/// Inspect the repository containing `root`. `spec` is the spec path (absolute or relative to
/// the current directory). Errors inside git are treated as "no provenance" and logged.
pub fn inspect(root: &Path, spec: Option<&Path>) -> GitState {
    match inspect_inner(root, spec) {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "no git provenance");
            GitState::none()
        }
    }
}

fn inspect_inner(root: &Path, spec: Option<&Path>) -> Result<GitState, git2::Error> {
    let repo = git2::Repository::discover(root)?;
    let Some(workdir) = repo.workdir().map(Path::to_path_buf) else {
        return Ok(GitState::none());
    };
    let head_tree = repo.head().ok().and_then(|h| h.peel_to_tree().ok());
    let commit = repo
        .head()
        .ok()
        .and_then(|h| h.peel_to_commit().ok())
        .map(|c| c.id().to_string());
    let mut opts = git2::StatusOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false)
        .exclude_submodules(true);
    let statuses = repo.statuses(Some(&mut opts))?;
    // promotions.yaml is medrun's own append-only output (the promotion history), not an input:
    // a promotion waiting to be committed does not make the next run dirty.
    let promotions = {
        let wd = std::fs::canonicalize(&workdir).unwrap_or_else(|_| workdir.clone());
        let r = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
        r.strip_prefix(&wd)
            .map(|rel| rel.join(crate::promotions::PROMOTIONS_FILE))
            .unwrap_or_else(|_| PathBuf::from(crate::promotions::PROMOTIONS_FILE))
    };
    let mut dirty_files = Vec::new();
    let mut dirty = false;
    for e in statuses.iter() {
        let s = e.status();
        if s.is_ignored() || s == git2::Status::CURRENT {
            continue;
        }
        if e.path().is_ok_and(|p| Path::new(p) == promotions) {
            continue;
        }
        dirty = true;
        if dirty_files.len() < 20 {
            dirty_files.push(e.path().unwrap_or("?").to_string());
        }
    }
    let diff_hash = if dirty {
        let mut dopts = git2::DiffOptions::new();
        dopts
            .include_untracked(true)
            .recurse_untracked_dirs(true)
            .show_untracked_content(true);
        let diff = repo.diff_tree_to_workdir_with_index(head_tree.as_ref(), Some(&mut dopts))?;
        let mut h = blake3::Hasher::new();
        diff.print(git2::DiffFormat::Patch, |delta, _, line| {
            if delta.new_file().path() == Some(promotions.as_path()) {
                return true;
            }
            h.update(&[line.origin() as u8]);
            h.update(line.content());
            true
        })?;
        Some(h.finalize().to_hex().to_string())
    } else {
        None
    };
    let spec_committed = match spec {
        None => true,
        Some(p) => {
            let abs = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
            let wd = std::fs::canonicalize(&workdir).unwrap_or(workdir);
            match abs.strip_prefix(&wd) {
                Err(_) => false,
                Ok(rel) => match repo.status_file(rel) {
                    Ok(s) => s == git2::Status::CURRENT,
                    Err(_) => false,
                },
            }
        }
    };
    Ok(GitState {
        repo: true,
        commit,
        dirty,
        diff_hash,
        dirty_files,
        spec_committed,
    })
}
