//! Temp files that medrun writes in the project (outside the store), and their cleanup after a
//! kill.
//!
//! `datasets.lock` and `promotions.yaml` are written atomically: a temp file, then a rename over
//! the target. The temp file must be on the target's filesystem (for the rename), and never where
//! `git status` sees it: a kill between the write and the rename would otherwise leave an
//! untracked file in the project root, and every later `medrun run` would refuse the dirty tree.
//! So it goes into
//!
//! 1. `GITDIR/medrun-tmp/` (git never shows its own directory), or, when the project is not in a
//!    git repository, that directory cannot be written, or it is on another filesystem,
//! 2. `ROOT/.medrun-tmp/`, which holds a `.gitignore` of `*`: the directory and everything in it
//!    are ignored, as the store's `.medrun/` is.
//!
//! Temp names end in `.tmp-<pid>-<nanos>`. At the start of `lock`, `promote` and `run`,
//! [`clean_stale`] removes those whose process is gone, in both directories, and the
//! `.datasets.lock.tmp-*` / `.promotions.yaml.tmp-*` files that earlier medrun versions left
//! beside their targets. A temp file whose process is alive is never removed. `medrun export`
//! stages its output in `.medrun-export-<pid>-<nanos>/` beside the target directory, and removes
//! such directories of dead processes there ([`clean_stale_exports`]).

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::store::atomic_write_in;

/// The fallback temp directory in the project root.
pub const PROJECT_TMP_DIR: &str = ".medrun-tmp";
/// The temp directory inside the git directory.
pub const GIT_TMP_DIR: &str = "medrun-tmp";
/// Project files that earlier versions wrote through a temp file beside them.
const OLD_STYLE: &[&str] = &[".datasets.lock.tmp-", ".promotions.yaml.tmp-"];
/// Prefix of `medrun export`'s staging directories.
pub const EXPORT_PREFIX: &str = ".medrun-export-";

/// `<pid>-<nanos>` → pid.
fn owner(tail: &str) -> Option<u32> {
    let (pid, nanos) = tail.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || !digits(nanos) {
        return None;
    }
    pid.parse().ok()
}

/// The pid in a temp file name `NAME.tmp-<pid>-<nanos>`, if it is one.
pub fn temp_owner(name: &str) -> Option<u32> {
    owner(name.rsplit_once(".tmp-")?.1)
}

/// Whether process `pid` may still be running. Errs on the side of "alive": a pid that cannot be
/// checked, or that another user owns, counts as alive, so its files are kept.
#[cfg(unix)]
pub fn pid_alive(pid: u32) -> bool {
    let Ok(p) = i32::try_from(pid) else {
        return true;
    };
    if p <= 0 {
        return true;
    }
    // SAFETY: signal 0 sends nothing; kill only checks that the process exists.
    let r = unsafe { libc::kill(p, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(not(unix))]
pub fn pid_alive(_pid: u32) -> bool {
    true
}

/// `GITDIR/medrun-tmp` of the repository holding `root`, if there is one.
fn git_tmp_dir(root: &Path) -> Option<PathBuf> {
    let repo = git2::Repository::discover(root).ok()?;
    Some(repo.path().join(GIT_TMP_DIR))
}

/// `ROOT/.medrun-tmp`, created with its `.gitignore` of `*` if needed.
fn root_tmp_dir(root: &Path) -> std::io::Result<PathBuf> {
    let dir = root.join(PROJECT_TMP_DIR);
    std::fs::create_dir_all(&dir)?;
    let gi = dir.join(".gitignore");
    if std::fs::read(&gi).ok().as_deref() != Some(b"*\n") {
        atomic_write_in(&gi, b"*\n", &dir)?;
    }
    Ok(dir)
}

/// Errors of the git-directory attempt after which the project-root directory is tried.
fn try_elsewhere(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::CrossesDevices
            | ErrorKind::PermissionDenied
            | ErrorKind::ReadOnlyFilesystem
            | ErrorKind::NotFound
            | ErrorKind::NotADirectory
    )
}

/// Write the project file `path` (under `root`) atomically, with its temp file where git never
/// shows it (see the module docs).
pub fn write_project_file(root: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = git_tmp_dir(root) {
        match std::fs::create_dir_all(&dir).and_then(|_| atomic_write_in(path, bytes, &dir)) {
            Ok(()) => return Ok(()),
            Err(e) if try_elsewhere(&e) => {
                tracing::debug!(error = %e, dir = %dir.display(), "temp dir unusable, using the project root's");
            }
            Err(e) => return Err(e),
        }
    }
    atomic_write_in(path, bytes, &root_tmp_dir(root)?)
}

/// What a cleanup removed, and what it could not.
#[derive(Debug, Default)]
pub struct Cleaned {
    pub removed: Vec<PathBuf>,
    pub failed: Vec<(PathBuf, std::io::Error)>,
}

impl Cleaned {
    fn remove(&mut self, path: PathBuf, dir: bool) {
        let r = if dir {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match r {
            Ok(()) => self.removed.push(path),
            // Another medrun cleaned it first.
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => self.failed.push((path, e)),
        }
    }
}

/// Files (not directories) in `dir` whose name `owner_of` maps to a dead process.
fn stale_files(dir: &Path, owner_of: impl Fn(&str) -> Option<u32>, out: &mut Cleaned) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(pid) = owner_of(&name) else {
            continue;
        };
        // file_type does not follow symlinks: a link is removed, never its target.
        if e.file_type().is_ok_and(|t| !t.is_dir()) && !pid_alive(pid) {
            out.remove(e.path(), false);
        }
    }
}

/// Remove the temp files that killed medrun processes left in the project: in both temp
/// directories, and the old-style ones beside `datasets.lock` and `promotions.yaml`. Never
/// touches a live process's file. Best effort: failures are returned, not raised.
pub fn clean_stale(root: &Path) -> Cleaned {
    let mut out = Cleaned::default();
    let dirs = git_tmp_dir(root)
        .into_iter()
        .chain(std::iter::once(root.join(PROJECT_TMP_DIR)));
    for dir in dirs {
        stale_files(&dir, temp_owner, &mut out);
    }
    stale_files(
        root,
        |name| {
            OLD_STYLE
                .iter()
                .find_map(|p| name.strip_prefix(p))
                .and_then(owner)
        },
        &mut out,
    );
    out
}

/// A fresh name for an export staging directory of this process.
pub fn export_dir_name() -> String {
    format!(
        "{EXPORT_PREFIX}{}-{}",
        std::process::id(),
        crate::store::nanos()
    )
}

/// Remove the export staging directories of dead processes in `dir`.
pub fn clean_stale_exports(dir: &Path) -> Cleaned {
    let mut out = Cleaned::default();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(pid) = name.strip_prefix(EXPORT_PREFIX).and_then(owner) else {
            continue;
        };
        if !pid_alive(pid) {
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            out.remove(e.path(), is_dir);
        }
    }
    out
}

#[cfg(test)]
mod tests;
