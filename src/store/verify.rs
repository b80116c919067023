//! Verify on read: every object is checked against its address before medrun relies on it.
//!
//! Reading an object (`Store::get`) hashes the bytes it returns. Objects that a command relies on
//! without reading them (a cached stage output, cached evaluation results, a checkpoint about to
//! be promoted) are re-hashed on disk with `verify_object` / `verify_tree`: memory-mapped and
//! hashed on all cores, so a 500 MB checkpoint costs a fraction of a second. Each object is hashed
//! at most once per process for such checks (objects are immutable; the set lives in the `Store`
//! value and dies with the command).

use std::path::Path;

use super::{KeyOutput, Store, StoreError, Tree, io_at, is_object_id};

/// Buffers at least this large are hashed on all cores.
const PARALLEL_HASH_BYTES: usize = 1 << 20;

/// The blake3 of `bytes`, hashed in parallel when large.
pub(crate) fn hash_bytes(bytes: &[u8]) -> String {
    if bytes.len() >= PARALLEL_HASH_BYTES {
        let mut h = blake3::Hasher::new();
        h.update_rayon(bytes);
        h.finalize().to_hex().to_string()
    } else {
        blake3::hash(bytes).to_hex().to_string()
    }
}

/// The blake3 of a file's bytes: memory-mapped and hashed in parallel when large (objects are
/// never modified in place, so the map cannot change under us short of outside damage).
pub(crate) fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut h = blake3::Hasher::new();
    h.update_mmap_rayon(path)?;
    Ok(h.finalize().to_hex().to_string())
}

/// What a damaged object "hashes to" when it is a directory or symlink, not a plain file.
pub(crate) const NOT_A_FILE: &str = "nothing (it is not a plain file)";

pub(crate) fn not_a_file(id: &str) -> StoreError {
    StoreError::Corrupt {
        id: id.to_string(),
        actual: NOT_A_FILE.into(),
        what: String::new(),
    }
}

/// What a stage or results key's record says, once its output has been checked.
#[derive(Debug, Clone)]
pub enum CachedOutput {
    /// No output recorded for the key.
    None,
    /// The recorded output: its tree and every object the tree lists hash to their addresses.
    Intact { output: String, tree: Tree },
    /// A record exists but cannot be used: the key record is unreadable, or its output tree or
    /// one of its objects is missing or corrupt. The stage (or evaluation) must run again.
    Damaged {
        output: Option<String>,
        problem: String,
    },
}

impl Store {
    pub(super) fn remember_verified(&self, id: &str) {
        if let Ok(mut set) = self.verified.lock() {
            set.insert(id.to_string());
        }
    }

    fn already_verified(&self, id: &str) -> bool {
        self.verified.lock().is_ok_and(|set| set.contains(id))
    }

    /// Check that object `id` exists, is a plain file and hashes to `id`, without loading it
    /// whole. `Missing` or `Corrupt` otherwise.
    pub fn verify_object(&self, id: &str) -> Result<(), StoreError> {
        let missing = || StoreError::Missing {
            id: id.to_string(),
            what: String::new(),
        };
        if !is_object_id(id) {
            return Err(missing());
        }
        if self.already_verified(id) {
            return Ok(());
        }
        let p = self.object_path(id);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Err(not_a_file(id)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
            Err(e) => return Err(io_at(&p)(e)),
        }
        let actual = hash_file(&p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                missing()
            } else {
                io_at(&p)(e)
            }
        })?;
        if actual != id {
            return Err(StoreError::Corrupt {
                id: id.to_string(),
                actual,
                what: String::new(),
            });
        }
        self.remember_verified(id);
        Ok(())
    }

    /// Load tree `id` and check it and every object it lists against their addresses. Errors
    /// name the damaged entry (`model.safetensors of output 25ece9ff47ef`).
    pub fn verify_tree(&self, id: &str) -> Result<Tree, StoreError> {
        let short = &id[..12.min(id.len())];
        let tree =
            Tree::load(self, id).map_err(|e| e.within(format!("the tree of output {short}")))?;
        for (name, e) in &tree.entries {
            self.verify_object(&e.object)
                .map_err(|err| err.within(format!("`{name}` of output {short}")))?;
        }
        Ok(tree)
    }

    /// The output recorded for `key`, checked: usable only when the tree and every object it
    /// lists hash right. A damaged record or output is reported, not an error: the caller runs
    /// the stage (or evaluation) again, which restores the objects. I/O errors are errors.
    pub fn cached_output(&self, key: &str) -> Result<CachedOutput, StoreError> {
        let record: KeyOutput = match self.key_output(key) {
            Ok(Some(k)) => k,
            Ok(None) => return Ok(CachedOutput::None),
            Err(e) if e.is_damage() => {
                return Ok(CachedOutput::Damaged {
                    output: None,
                    problem: e.to_string(),
                });
            }
            Err(e) => return Err(e),
        };
        match self.verify_tree(&record.output) {
            Ok(tree) => Ok(CachedOutput::Intact {
                output: record.output,
                tree,
            }),
            Err(e) if e.is_damage() => Ok(CachedOutput::Damaged {
                output: Some(record.output),
                problem: e.to_string(),
            }),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tree::TreeEntry;

    fn writable(p: &Path) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }

    fn flip(p: &Path) {
        writable(p);
        let mut b = std::fs::read(p).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 1;
        std::fs::write(p, b).unwrap();
    }

    /// A store holding one output tree (`model.safetensors`, `config.json`) recorded for `key`.
    fn stage_output(s: &Store, key: &str) -> (String, String) {
        let model = s.put_bytes(&vec![7u8; 3 << 20]).unwrap();
        let config = s.put_bytes(b"{\"model_type\":\"llama\"}").unwrap();
        let mut tree = Tree::default();
        for (name, id) in [("model.safetensors", &model), ("config.json", &config)] {
            tree.entries.insert(
                name.into(),
                TreeEntry {
                    object: id.clone(),
                    bytes: 0,
                },
            );
        }
        let out = tree.put(s).unwrap();
        s.record_key_output(
            key,
            &KeyOutput {
                output: out.clone(),
                run: "r".into(),
            },
        )
        .unwrap();
        (out, model)
    }

    #[test]
    fn a_flipped_byte_in_a_checkpoint_makes_the_cached_output_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let key = "ab".repeat(32);
        let (out, model) = stage_output(&Store::open(dir.path()).unwrap(), &key);
        // A fresh Store value: nothing verified yet in this "process".
        let s = Store::open(dir.path()).unwrap();
        assert!(matches!(
            s.cached_output(&key).unwrap(),
            CachedOutput::Intact { output, .. } if output == out
        ));
        let s = Store::open(dir.path()).unwrap();
        flip(&s.object_path(&model));
        match s.cached_output(&key).unwrap() {
            CachedOutput::Damaged { output, problem } => {
                assert_eq!(output.as_deref(), Some(out.as_str()));
                assert!(problem.contains(&model), "{problem}");
                assert!(
                    problem.contains("`model.safetensors` of output"),
                    "{problem}"
                );
                assert!(problem.contains("is corrupt"), "{problem}");
            }
            other => panic!("{other:?}"),
        }
        let err = s.verify_tree(&out).unwrap_err();
        assert!(err.is_user_error() && err.is_damage());
    }

    #[test]
    fn missing_truncated_and_replaced_objects_are_damage() {
        let dir = tempfile::tempdir().unwrap();
        let key = "cd".repeat(32);
        let (out, model) = stage_output(&Store::open(dir.path()).unwrap(), &key);
        let s = Store::open(dir.path()).unwrap();
        let p = s.object_path(&model);
        writable(&p);
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 1]).unwrap();
        assert!(matches!(
            s.verify_object(&model),
            Err(StoreError::Corrupt { .. })
        ));
        std::fs::remove_file(&p).unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert!(matches!(
            s.verify_tree(&out),
            Err(StoreError::Missing { ref what, .. }) if what.contains("model.safetensors")
        ));
        // A directory where the object should be is not the object, for every reader.
        std::fs::create_dir_all(&p).unwrap();
        assert!(matches!(
            s.verify_object(&model),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(s.get(&model), Err(StoreError::Corrupt { .. })));
        assert_eq!(s.check_object(&model).unwrap().as_deref(), Some(NOT_A_FILE));
        // The tree itself corrupted.
        flip(&s.object_path(&out));
        assert!(matches!(
            s.cached_output(&key).unwrap(),
            CachedOutput::Damaged { problem, .. } if problem.contains("the tree of output")
        ));
    }

    #[test]
    fn a_garbage_key_record_is_damage_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let key = "ef".repeat(32);
        let p = dir.path().join("keys-v1/ef").join(format!("{key}.out"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"\x00garbage").unwrap();
        assert!(matches!(
            s.cached_output(&key).unwrap(),
            CachedOutput::Damaged { output: None, .. }
        ));
        std::fs::write(
            &p,
            format!("{{\"output\":\"{}\",\"run\":\"x\"}}", "0".repeat(64)),
        )
        .unwrap();
        assert!(matches!(
            s.cached_output(&key).unwrap(),
            CachedOutput::Damaged { output: Some(_), problem } if problem.contains("missing")
        ));
        assert!(matches!(
            s.cached_output(&"12".repeat(32)).unwrap(),
            CachedOutput::None
        ));
    }

    #[test]
    fn publishing_again_repairs_a_damaged_object_and_keeps_an_intact_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let bytes = vec![42u8; 2 << 20];
        let id = s.put_bytes(&bytes).unwrap();
        let p = s.object_path(&id);
        let inode = |p: &Path| {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(p).unwrap().ino()
        };
        // Intact: kept as it is (same inode), even from a fresh process.
        let before = inode(&p);
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.put_bytes(&bytes).unwrap(), id);
        assert_eq!(inode(&p), before);
        // Corrupt: replaced.
        flip(&p);
        let s = Store::open(dir.path()).unwrap();
        assert!(s.check_object(&id).unwrap().is_some());
        assert_eq!(s.put_bytes(&bytes).unwrap(), id);
        assert!(s.check_object(&id).unwrap().is_none());
        assert_eq!(s.get(&id).unwrap(), bytes);
        // Truncated to nothing, and a symlink to the right bytes elsewhere: both replaced by a
        // plain file.
        writable(&p);
        std::fs::write(&p, b"").unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.put_bytes(&bytes).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), bytes);
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, &bytes).unwrap();
        std::fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &p).unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert!(s.verify_object(&id).is_err());
        s.put_bytes(&bytes).unwrap();
        assert!(std::fs::symlink_metadata(&p).unwrap().is_file());
        assert_eq!(std::fs::read_dir(s.tmp_dir()).unwrap().count(), 0);
    }
}

#[cfg(test)]
mod speed {
    use std::time::Instant;

    use super::*;

    /// What verify on read costs on a large checkpoint (figures in docs/reference/store.md).
    /// `MEDRUN_PROBE_MB` sets the object size (default 512).
    #[test]
    #[ignore = "timing probe, run by hand: cargo test --release --lib store::verify::speed -- --ignored --nocapture"]
    fn probe() {
        let mb: usize = std::env::var("MEDRUN_PROBE_MB")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(512);
        let data: Vec<u8> = (0..mb << 20)
            .map(|i| ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8)
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let time = |what: &str, f: &mut dyn FnMut()| {
            let t = Instant::now();
            f();
            eprintln!("{what:<44} {:>8.3} s", t.elapsed().as_secs_f64());
        };
        let fresh = || Store::open(dir.path()).unwrap();
        let mut id = String::new();
        time("put (new object)", &mut || {
            id = fresh().put_bytes(&data).unwrap()
        });
        for round in 0..2 {
            eprintln!("round {round}, {mb} MiB object");
            time("put again (intact: re-hashed, kept)", &mut || {
                fresh().put_bytes(&data).unwrap();
            });
            time("verify_object (mmap, all cores)", &mut || {
                fresh().verify_object(&id).unwrap()
            });
            time("verify_object again, same process", &mut || {
                let s = fresh();
                s.verify_object(&id).unwrap();
                s.verify_object(&id).unwrap();
            });
            time("get (read whole + hash)", &mut || {
                fresh().get(&id).unwrap();
            });
            time("std::fs::read alone", &mut || {
                std::fs::read(fresh().object_path(&id)).unwrap();
            });
            let p = fresh().object_path(&id);
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
                let mut b = std::fs::read(&p).unwrap();
                b[7] ^= 1;
                std::fs::write(&p, b).unwrap();
            }
            time("put again (corrupt: re-hashed, replaced)", &mut || {
                fresh().put_bytes(&data).unwrap();
            });
            assert!(fresh().check_object(&id).unwrap().is_none());
        }
    }
}
