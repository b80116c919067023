//! The content-addressed store (default `.medrun/` at the project root).
//!
//! Layout, version 1 (see docs/reference/store.md):
//!
//! ```text
//! .medrun/
//!   VERSION                      "medrun-store 1"
//!   lock                         advisory file lock: shared for runs, exclusive for gc
//!   objects-v1/ab/cdef…          immutable blobs named by the blake3 of their bytes
//!   keys-v1/ab/<key>.json        the inputs a stage key was computed from (immutable)
//!   keys-v1/ab/<key>.out         the content address that key produced (created once)
//!   keys-v1/ab/<key>.ckpt        the latest mid-stage checkpoint of an unfinished stage
//!   runs-v1/<run id>.jsonl       append-only run records (see `lineage`)
//!   runs-v1/<run id>.seal        the sealed record's object id, once its run ends (`lineage::seal`)
//!   tmp/                         in-flight writes; never visible as objects
//!   state-v1.json                the dataset state cache (a hint, see `lock::state`)
//! ```
//!
//! Every write goes to a temp file in `tmp/` (same filesystem), is hashed while written, fsynced,
//! then renamed into place and the directory fsynced: a reader sees the whole object or nothing,
//! whatever happens to the writer. Objects are verified against their name when read.
//! Key outputs are created with `link(2)`, which fails if the name exists, so two processes can
//! never silently overwrite each other's result: a second, different output is nondeterminism.

mod atomic;
pub mod gc;
mod keys;
pub mod tree;
mod verify;

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

pub use atomic::{atomic_write, atomic_write_in};
pub(crate) use atomic::{nanos, sync_dir};
pub use tree::Tree;
pub use verify::CachedOutput;

pub const STORE_VERSION: &str = "medrun-store 1";
pub const DEFAULT_STORE_DIR: &str = ".medrun";

/// Names a store directory may contain.
const STORE_ENTRIES: &[&str] = &[
    "VERSION",
    "lock",
    "objects-v1",
    "keys-v1",
    "runs-v1",
    "tmp",
    "state-v1.json",
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O error at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a medrun store of a version this medrun reads (found {found:?})")]
    Version { path: PathBuf, found: String },
    /// `what` says which file of which output the object is, when the reader knows (else empty).
    #[error("object {id}{} is missing from the store", about(.what))]
    Missing { id: String, what: String },
    #[error("object {id}{} is corrupt: its bytes hash to {actual}", about(.what))]
    Corrupt {
        id: String,
        actual: String,
        what: String,
    },
    #[error("{what} in the store is malformed: {message}")]
    Malformed { what: String, message: String },
    #[error("no store at {path}")]
    NoStore { path: PathBuf },
}

impl StoreError {
    pub fn hint(&self) -> String {
        match self {
            StoreError::Io { source, .. } if source.raw_os_error() == Some(28) => {
                "the disk is full: free space (for example `medrun gc`) and run again; nothing already stored was lost".into()
            }
            StoreError::Io { .. } => "check the store path and its permissions (`--store`, MEDRUN_STORE)".into(),
            StoreError::Version { .. } => "point `--store` at a fresh directory, or use the medrun that wrote this store".into(),
            StoreError::Missing { .. } | StoreError::Corrupt { .. } | StoreError::Malformed { .. } => {
                "run `medrun verify` to list every damaged object; running the spec that produced it again (`medrun run SPEC`) rebuilds each stage or evaluation whose stored output is damaged and restores its objects".into()
            }
            StoreError::NoStore { .. } => "run `medrun run SPEC` first, or point `--store` / MEDRUN_STORE at an existing store".into(),
        }
    }

    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            StoreError::NoStore { .. }
                | StoreError::Missing { .. }
                | StoreError::Corrupt { .. }
                | StoreError::Malformed { .. }
                | StoreError::Version { .. }
        )
    }

    /// Whether the error says stored bytes are damaged (missing, corrupt or not what they should
    /// be), as opposed to the store being unusable.
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            StoreError::Missing { .. } | StoreError::Corrupt { .. } | StoreError::Malformed { .. }
        )
    }

    /// Say which file the damaged object is (`model.safetensors of output 25ece9ff47ef`), unless
    /// an inner reader already did.
    pub fn within(mut self, context: impl Into<String>) -> StoreError {
        match &mut self {
            StoreError::Missing { what, .. } | StoreError::Corrupt { what, .. }
                if what.is_empty() =>
            {
                *what = context.into();
            }
            StoreError::Malformed { what, .. } => {
                *what = format!("{what} ({})", context.into());
            }
            _ => {}
        }
        self
    }
}

fn about(what: &str) -> String {
    if what.is_empty() {
        String::new()
    } else {
        format!(" ({what})")
    }
}

pub(crate) fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether `s` looks like a full object id.
pub fn is_object_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A held store lock; released on drop.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

/// What recording a key's output found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOutcome {
    /// First output for this key.
    New,
    /// The key already had this same output.
    Same,
    /// The key already had a different output: nondeterminism.
    Different { existing: String },
    /// The key's record was unreadable, or named an output that is missing or corrupt: it now
    /// names the new output.
    Repaired {
        previous: Option<String>,
        problem: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyOutput {
    pub output: String,
    pub run: String,
}

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    /// Objects this process has already hashed and found intact (objects are immutable, so one
    /// check per command is enough for presence checks; bytes that are read are always hashed).
    verified: Arc<Mutex<BTreeSet<String>>>,
}

impl Store {
    /// Open the store at `root`, creating it if needed.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let s = Store::at(root);
        let v = root.join("VERSION");
        match std::fs::read_to_string(&v) {
            Ok(text) => s.check_version(&text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Refuse to turn an unrelated non-empty directory into a store. Entries that a
                // store being created by another medrun process right now would have are fine.
                if root.exists() {
                    for e in std::fs::read_dir(root).map_err(io_at(root))? {
                        let name = e
                            .map_err(io_at(root))?
                            .file_name()
                            .to_string_lossy()
                            .to_string();
                        let ours = STORE_ENTRIES.contains(&name.as_str()) || name.starts_with('.');
                        if !ours {
                            return Err(StoreError::Version {
                                path: root.to_path_buf(),
                                found: format!(
                                    "no VERSION file, and `{name}` is not a store entry"
                                ),
                            });
                        }
                    }
                }
                // The `.gitignore` comes first, so nothing in the store ever shows in `git
                // status` (a run refuses a dirty work tree), even in a project that does not
                // ignore the store itself.
                std::fs::create_dir_all(root).map_err(io_at(root))?;
                let gi = root.join(".gitignore");
                if !gi.exists() {
                    atomic_write(&gi, b"*\n").map_err(io_at(&gi))?;
                }
                for d in ["objects-v1", "keys-v1", "runs-v1", "tmp"] {
                    std::fs::create_dir_all(root.join(d)).map_err(io_at(root))?;
                }
                atomic_write(&v, format!("{STORE_VERSION}\n").as_bytes()).map_err(io_at(&v))?;
            }
            Err(e) => return Err(io_at(&v)(e)),
        }
        Ok(s)
    }

    /// Open an existing store; `NoStore` if there is none. Never creates anything.
    pub fn open_existing(root: &Path) -> Result<Store, StoreError> {
        let v = root.join("VERSION");
        match std::fs::read_to_string(&v) {
            Ok(text) => {
                let s = Store::at(root);
                s.check_version(&text)?;
                Ok(s)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::NoStore {
                path: root.to_path_buf(),
            }),
            Err(e) => Err(io_at(&v)(e)),
        }
    }

    fn at(root: &Path) -> Store {
        Store {
            root: root.to_path_buf(),
            verified: Arc::default(),
        }
    }

    fn check_version(&self, text: &str) -> Result<(), StoreError> {
        if text.trim() != STORE_VERSION {
            return Err(StoreError::Version {
                path: self.root.clone(),
                found: text.trim().to_string(),
            });
        }
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn lock_file(&self) -> Result<File, StoreError> {
        let p = self.root.join("lock");
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io_at(&p))
    }

    /// Shared lock: many runs at once, but no gc.
    pub fn lock_shared(&self) -> Result<StoreLock, StoreError> {
        let f = self.lock_file()?;
        if f.try_lock_shared().is_err() {
            tracing::info!("waiting for a medrun gc to finish");
            f.lock_shared().map_err(io_at(&self.root.join("lock")))?;
        }
        Ok(StoreLock { _file: f })
    }

    /// Exclusive lock: no other medrun process is using the store.
    pub fn lock_exclusive(&self) -> Result<StoreLock, StoreError> {
        let f = self.lock_file()?;
        if f.try_lock().is_err() {
            tracing::info!("waiting for other medrun processes to release the store");
            f.lock().map_err(io_at(&self.root.join("lock")))?;
        }
        Ok(StoreLock { _file: f })
    }

    pub fn object_path(&self, id: &str) -> PathBuf {
        self.root.join("objects-v1").join(&id[..2]).join(&id[2..])
    }

    pub fn contains(&self, id: &str) -> bool {
        is_object_id(id) && self.object_path(id).is_file()
    }

    pub(super) fn tmp_file(&self) -> Result<(PathBuf, File), StoreError> {
        let dir = self.root.join("tmp");
        std::fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        let p = dir.join(format!("put-{}-{}", std::process::id(), nanos()));
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&p)
            .map_err(io_at(&p))?;
        Ok((p, f))
    }

    /// Stream `reader` into the store. Returns the object id (blake3 of the bytes).
    pub fn put_reader(&self, mut reader: impl Read) -> Result<String, StoreError> {
        let (tmp, mut f) = self.tmp_file()?;
        let result = (|| {
            let mut h = blake3::Hasher::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(io_at(&tmp)(e)),
                };
                h.update(&buf[..n]);
                f.write_all(&buf[..n]).map_err(io_at(&tmp))?;
            }
            f.sync_all().map_err(io_at(&tmp))?;
            let id = h.finalize().to_hex().to_string();
            self.publish(&tmp, &id)?;
            Ok(id)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    pub fn put_bytes(&self, bytes: &[u8]) -> Result<String, StoreError> {
        self.put_reader(bytes)
    }

    pub fn put_file(&self, path: &Path) -> Result<String, StoreError> {
        let f = File::open(path).map_err(io_at(path))?;
        self.put_reader(std::io::BufReader::new(f))
    }

    /// Move a finished temp file into place as object `id`. An object already there is kept
    /// when its bytes hash to `id`; one that does not (corrupt, truncated, not a plain file) is
    /// replaced by the new bytes, atomically (rename over it): storing an object again repairs it.
    fn publish(&self, tmp: &Path, id: &str) -> Result<(), StoreError> {
        let dest = self.object_path(id);
        if let Ok(meta) = std::fs::symlink_metadata(&dest) {
            let intact = meta.is_file() && self.verify_object(id).is_ok();
            if intact {
                let _ = std::fs::remove_file(tmp);
                return Ok(());
            }
            tracing::info!(object = id, "replacing a damaged object with intact bytes");
            if meta.is_dir() {
                std::fs::remove_dir_all(&dest).map_err(io_at(&dest))?;
            }
        }
        let bucket = dest.parent().unwrap_or(&self.root).to_path_buf();
        std::fs::create_dir_all(&bucket).map_err(io_at(&bucket))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o444));
        }
        std::fs::rename(tmp, &dest).map_err(io_at(&dest))?;
        sync_dir(&bucket);
        self.remember_verified(id);
        Ok(())
    }

    /// Read and verify an object: the bytes returned are the bytes hashed.
    pub fn get(&self, id: &str) -> Result<Vec<u8>, StoreError> {
        let missing = || StoreError::Missing {
            id: id.to_string(),
            what: String::new(),
        };
        if !is_object_id(id) {
            return Err(missing());
        }
        let p = self.object_path(id);
        let bytes = match std::fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
            Err(e) if e.kind() == std::io::ErrorKind::IsADirectory => {
                return Err(verify::not_a_file(id));
            }
            Err(e) => return Err(io_at(&p)(e)),
        };
        let actual = verify::hash_bytes(&bytes);
        if actual != id {
            return Err(StoreError::Corrupt {
                id: id.to_string(),
                actual,
                what: String::new(),
            });
        }
        self.remember_verified(id);
        Ok(bytes)
    }

    /// Re-hash an object on disk without loading it whole. `Ok(None)` if it is intact, else the
    /// hash its bytes have.
    pub fn check_object(&self, id: &str) -> Result<Option<String>, StoreError> {
        let p = self.object_path(id);
        if std::fs::symlink_metadata(&p).is_ok_and(|m| !m.is_file()) {
            return Ok(Some(verify::NOT_A_FILE.into()));
        }
        let actual = verify::hash_file(&p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StoreError::Missing {
                    id: id.to_string(),
                    what: String::new(),
                }
            } else {
                io_at(&p)(e)
            }
        })?;
        Ok((actual != id).then_some(actual))
    }

    /// Every object id present, sorted.
    pub fn list_objects(&self) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        let base = self.root.join("objects-v1");
        let Ok(rd) = std::fs::read_dir(&base) else {
            return Ok(out);
        };
        for bucket in rd {
            let bucket = bucket.map_err(io_at(&base))?;
            let bname = bucket.file_name().to_string_lossy().to_string();
            if bname.len() != 2 || !bucket.path().is_dir() {
                continue;
            }
            for obj in std::fs::read_dir(bucket.path()).map_err(io_at(&bucket.path()))? {
                let obj = obj.map_err(io_at(&bucket.path()))?;
                let id = format!("{bname}{}", obj.file_name().to_string_lossy());
                if is_object_id(&id) {
                    out.push(id);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Object ids starting with `prefix`.
    pub fn objects_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        if prefix.len() < 2 {
            return Ok(Vec::new());
        }
        let bucket = self.root.join("objects-v1").join(&prefix[..2]);
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&bucket) {
            for obj in rd.flatten() {
                let id = format!("{}{}", &prefix[..2], obj.file_name().to_string_lossy());
                if is_object_id(&id) && id.starts_with(prefix) {
                    out.push(id);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    pub fn runs_dir(&self) -> PathBuf {
        self.root.join("runs-v1")
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn put_get_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let id = s.put_bytes(b"hello").unwrap();
        assert_eq!(id, blake3::hash(b"hello").to_hex().to_string());
        assert_eq!(s.get(&id).unwrap(), b"hello");
        let p = s.object_path(&id);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        std::fs::write(&p, b"hellO").unwrap();
        assert!(matches!(s.get(&id), Err(StoreError::Corrupt { .. })));
        assert!(s.check_object(&id).unwrap().is_some());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn put_get_roundtrip(blobs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..4096), 1..8)) {
            let dir = tempfile::tempdir().unwrap();
            let s = Store::open(dir.path()).unwrap();
            let mut ids = Vec::new();
            for b in &blobs {
                let id = s.put_bytes(b).unwrap();
                prop_assert_eq!(&id, &blake3::hash(b).to_hex().to_string());
                ids.push(id);
            }
            for (b, id) in blobs.iter().zip(&ids) {
                prop_assert_eq!(&s.get(id).unwrap(), b);
                prop_assert!(s.check_object(id).unwrap().is_none());
            }
            let mut uniq = ids.clone();
            uniq.sort();
            uniq.dedup();
            prop_assert_eq!(s.list_objects().unwrap(), uniq);
            // Nothing is left behind in tmp/.
            prop_assert_eq!(std::fs::read_dir(s.tmp_dir()).unwrap().count(), 0);
        }
    }
}
