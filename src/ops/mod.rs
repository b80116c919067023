//! What each command does, as library functions (the CLI files only parse arguments and print).

pub mod eval;
pub mod explain;
pub mod export;
pub mod gc;
pub mod generate;
pub mod lock;
pub mod plan;
pub mod promote;
pub mod promotions;
pub mod reproduce;
pub mod run;
mod run_eval;
pub mod verify;

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::lock::LOCK_FILE;
use crate::store::DEFAULT_STORE_DIR;

/// Where the project and its store are.
#[derive(Debug, Clone)]
pub struct Project {
    /// The project root: spec and dataset paths are relative to it.
    pub root: PathBuf,
    /// The store directory (`--store`, `MEDRUN_STORE`, or `ROOT/.medrun`).
    pub store_dir: PathBuf,
}

impl Project {
    /// Find the project root from `start`: the nearest ancestor holding `datasets.lock`, a
    /// `runs/` directory or `.git`; `start` itself if none does.
    pub fn discover(start: &Path, store: Option<&Path>) -> Result<Project> {
        let start = std::fs::canonicalize(start).map_err(|e| {
            crate::error::Error::Io(format!("cannot resolve {}: {e}", start.display()))
        })?;
        let mut root = start.clone();
        let mut cur = Some(start.as_path());
        while let Some(d) = cur {
            if d.join(LOCK_FILE).is_file() || d.join("runs").is_dir() || d.join(".git").exists() {
                root = d.to_path_buf();
                break;
            }
            cur = d.parent();
        }
        let store_dir = match store
            .map(Path::to_path_buf)
            .or_else(crate::env::store_override)
        {
            Some(s) if s.is_absolute() => s,
            Some(s) => std::env::current_dir().map(|c| c.join(&s)).unwrap_or(s),
            None => root.join(DEFAULT_STORE_DIR),
        };
        Ok(Project { root, store_dir })
    }

    /// Project for a command about `spec`: discovered from the spec's directory.
    pub fn for_spec(spec: &Path, store: Option<&Path>) -> Result<Project> {
        let dir = spec
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let dir = if dir.exists() { dir } else { Path::new(".") };
        Project::discover(dir, store)
    }
}
