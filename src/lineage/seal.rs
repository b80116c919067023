//! Sealed run records: when a run ends, the bytes of its record (`runs-v1/<run id>.jsonl`) are
//! stored as an object and the object's id is written to `runs-v1/<run id>.seal`. From then on
//! the record is checked against that address whenever it is read: a record edited after it was
//! sealed is refused where the run is used, and `medrun verify` reports it.
//!
//! # Why a seal file beside the record
//!
//! A run record is written while the run goes (one fsynced line per event), so it cannot be named
//! by its hash until the run ends: the file has to stay where it is for the crash safety of the
//! appends, and for `medrun lineage` to show a run in progress. Sealing keeps that file and adds
//! two things at the end:
//!
//! - the final bytes as an ordinary object, so they are hashed on every read like any object,
//!   survive an edit of the file (the original can be restored from the store) and can be named
//!   by other files: a `promotions.yaml` entry names the record its checkpoint came from, and git
//!   then pins that address;
//! - `<run id>.seal`, one line with that object id, created once with `link(2)` (which fails if
//!   the name exists), so a record is sealed exactly once.
//!
//! A record without a seal is a run that was interrupted (or is still running): it stays
//! readable, but nothing ships its outputs by run name (`export` and `promote` want a sealed
//! record). A seal only proves that the record has not changed since medrun sealed it; someone
//! who can write the store can also write a new record, object and seal that agree. What anchors
//! a record beyond the store is git: a promotion entry records the record's address, and
//! `medrun promotions verify` checks it (docs/concepts/promotions.md).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::store::{Store, StoreError, io_at, is_object_id};

/// Where a record stands against its seal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Seal {
    /// The record's bytes hash to the address in its seal (the object holding them).
    Sealed { object: String },
    /// No seal: the run was interrupted, or is still running.
    Unsealed,
    /// The record no longer matches its seal, or the seal itself is damaged.
    Broken {
        problem: String,
        /// The address the seal names, when it names one.
        #[serde(skip_serializing_if = "Option::is_none")]
        sealed: Option<String>,
    },
}

/// A run record that cannot be used as it is.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("run record {} cannot be trusted: {problem}", .path.display())]
    Broken {
        run: String,
        path: PathBuf,
        problem: String,
        /// The object the seal names (the record's bytes when it was sealed).
        sealed: Option<PathBuf>,
    },
    #[error(
        "run record {} is not sealed: run {run} was interrupted or is still running",
        .path.display()
    )]
    Unsealed { run: String, path: PathBuf },
}

impl SealError {
    pub fn hint(&self) -> String {
        match self {
            SealError::Broken {
                path,
                sealed: Some(obj),
                ..
            } => format!(
                "run records are never edited: the sealed bytes are {obj}; see what changed with `diff {obj} {path}` and restore the record with `cp {obj} {path}`, then run `medrun verify`",
                obj = obj.display(),
                path = path.display()
            ),
            SealError::Broken { .. } => {
                "run records are never edited: restore the record and its `.seal` file from a copy of the store, or run the spec again (its stages are cached) and use the new run; `medrun verify` lists every damaged record".into()
            }
            SealError::Unsealed { .. } => {
                "wait for the run to finish, or run the spec again (its completed stages are cached): a run's record is sealed when it ends; a stage output can still be named by its hash".into()
            }
        }
    }
}

/// Path of `run_id`'s seal file.
pub fn seal_path(store: &Store, run_id: &str) -> PathBuf {
    store.runs_dir().join(format!("{run_id}.seal"))
}

/// Path of `run_id`'s record file.
pub fn record_path(store: &Store, run_id: &str) -> PathBuf {
    store.runs_dir().join(format!("{run_id}.jsonl"))
}

/// Seal a finished record: store its bytes as an object, then create `<run id>.seal` naming
/// it (once: an existing seal is an error). The record is made read-only. Returns the address.
pub fn seal(store: &Store, run_id: &str) -> Result<String, StoreError> {
    let record = record_path(store, run_id);
    let bytes = std::fs::read(&record).map_err(io_at(&record))?;
    let object = store.put_bytes(&bytes)?;
    let seal = seal_path(store, run_id);
    let tmp = store.tmp_dir().join(format!(
        "seal-{run_id}-{}-{}",
        std::process::id(),
        crate::store::nanos()
    ));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(format!("{object}\n").as_bytes())?;
        f.sync_all()
    })();
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, &seal));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(StoreError::Malformed {
                what: format!("run record {}", record.display()),
                message: format!("it is already sealed ({} exists)", seal.display()),
            });
        }
        Err(e) => return Err(io_at(&seal)(e)),
    }
    if let Ok(d) = std::fs::File::open(store.runs_dir()) {
        let _ = d.sync_all();
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&record, std::fs::Permissions::from_mode(0o444));
    }
    Ok(object)
}

/// Read a seal file: `Ok(None)` when there is none.
pub fn read_seal(path: &Path) -> Result<Option<Result<String, String>>, StoreError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let id = text.strip_suffix('\n').unwrap_or(&text);
            Ok(Some(if is_object_id(id) {
                Ok(id.to_string())
            } else {
                Err(format!(
                    "its seal {} does not hold an object id",
                    path.display()
                ))
            }))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_at(path)(e)),
    }
}

/// Where the record of `run_id`, whose file holds `bytes`, stands against its seal.
pub fn state(store: &Store, run_id: &str, bytes: &[u8]) -> Result<Seal, StoreError> {
    let Some(seal) = read_seal(&seal_path(store, run_id))? else {
        return Ok(Seal::Unsealed);
    };
    Ok(match seal {
        Err(problem) => Seal::Broken {
            problem,
            sealed: None,
        },
        Ok(id) => {
            let actual = blake3::hash(bytes).to_hex().to_string();
            if actual == id {
                Seal::Sealed { object: id }
            } else {
                Seal::Broken {
                    problem: format!(
                        "it was changed after it was sealed (its bytes hash to {actual}, its seal names {id})"
                    ),
                    sealed: Some(id),
                }
            }
        }
    })
}

/// The error for a record in state `seal`, or `None` when it is sealed and intact.
pub fn problem(store: &Store, run_id: &str, seal: &Seal, path: &Path) -> Option<SealError> {
    match seal {
        Seal::Sealed { .. } => None,
        Seal::Unsealed => Some(SealError::Unsealed {
            run: run_id.to_string(),
            path: path.to_path_buf(),
        }),
        Seal::Broken { problem, sealed } => Some(SealError::Broken {
            run: run_id.to_string(),
            path: path.to_path_buf(),
            problem: problem.clone(),
            sealed: sealed
                .as_ref()
                .map(|id| store.object_path(id))
                .filter(|p| p.is_file()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("s")).expect("store");
        std::fs::create_dir_all(store.runs_dir()).expect("runs dir");
        (dir, store)
    }

    #[test]
    fn a_sealed_record_reads_as_sealed_until_it_is_edited() {
        let (_d, store) = store();
        let rec = record_path(&store, "ab12");
        std::fs::write(&rec, b"{\"event\":\"x\"}\n").expect("write");
        assert_eq!(
            state(&store, "ab12", b"anything").expect("state"),
            Seal::Unsealed
        );
        let id = seal(&store, "ab12").expect("seal");
        assert_eq!(store.get(&id).expect("object"), b"{\"event\":\"x\"}\n");
        let bytes = std::fs::read(&rec).expect("read");
        assert_eq!(
            state(&store, "ab12", &bytes).expect("state"),
            Seal::Sealed { object: id.clone() }
        );
        let edited = state(&store, "ab12", b"{\"event\":\"y\"}\n").expect("state");
        let Seal::Broken { problem, sealed } = &edited else {
            panic!("{edited:?}");
        };
        assert!(problem.contains("changed after it was sealed"), "{problem}");
        assert_eq!(sealed.as_deref(), Some(id.as_str()));
        let err = super::problem(&store, "ab12", &edited, &rec).expect("an error");
        assert!(err.to_string().contains("ab12.jsonl"), "{err}");
        assert!(err.hint().contains("cp "), "{}", err.hint());
        // Sealing twice is refused: a record is sealed once.
        assert!(seal(&store, "ab12").is_err());
    }

    #[test]
    fn a_damaged_seal_is_broken() {
        let (_d, store) = store();
        std::fs::write(seal_path(&store, "cd34"), b"not an id\n").expect("write");
        let st = state(&store, "cd34", b"").expect("state");
        assert!(matches!(st, Seal::Broken { sealed: None, .. }), "{st:?}");
    }
}
