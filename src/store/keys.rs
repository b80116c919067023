//! Stage key records: `keys-v1/ab/<key>.json` (the inputs a key was computed from),
//! `<key>.out` (the output it produced) and `<key>.ckpt` (its latest resume checkpoint).

use std::io::Write;
use std::path::PathBuf;

use super::{
    CachedOutput, KeyOutcome, KeyOutput, Store, StoreError, atomic_write, io_at, is_object_id,
    sync_dir,
};

impl Store {
    fn key_path(&self, key: &str, ext: &str) -> PathBuf {
        self.root
            .join("keys-v1")
            .join(&key[..2.min(key.len())])
            .join(format!("{key}.{ext}"))
    }

    /// The output recorded for a stage key, if any.
    pub fn key_output(&self, key: &str) -> Result<Option<KeyOutput>, StoreError> {
        let p = self.key_path(key, "out");
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| StoreError::Malformed {
                    what: format!("key record {}", p.display()),
                    message: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_at(&p)(e)),
        }
    }

    /// The inputs JSON a key was computed from, if stored.
    pub fn key_inputs(&self, key: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let p = self.key_path(key, "json");
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| StoreError::Malformed {
                    what: format!("key inputs {}", p.display()),
                    message: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_at(&p)(e)),
        }
    }

    /// Store the inputs JSON of a key (idempotent).
    pub fn put_key_inputs(&self, key: &str, inputs: &serde_json::Value) -> Result<(), StoreError> {
        let p = self.key_path(key, "json");
        if p.is_file() {
            return Ok(());
        }
        let dir = p.parent().unwrap_or(&self.root).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        let bytes = serde_json::to_vec_pretty(inputs).map_err(|e| StoreError::Malformed {
            what: "key inputs".into(),
            message: e.to_string(),
        })?;
        atomic_write(&p, &bytes).map_err(io_at(&p))
    }

    /// Record that `key` produced `output`. Never overwrites a different earlier output that is
    /// intact; a record whose output is damaged (or that is unreadable) is replaced.
    pub fn record_key_output(&self, key: &str, out: &KeyOutput) -> Result<KeyOutcome, StoreError> {
        let p = self.key_path(key, "out");
        let dir = p.parent().unwrap_or(&self.root).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        let bytes = serde_json::to_vec(out).map_err(|e| StoreError::Malformed {
            what: "key output".into(),
            message: e.to_string(),
        })?;
        let (tmp, mut f) = self.tmp_file()?;
        f.write_all(&bytes).map_err(io_at(&tmp))?;
        f.sync_all().map_err(io_at(&tmp))?;
        drop(f);
        let linked = std::fs::hard_link(&tmp, &p);
        let result = match linked {
            Ok(()) => Ok(KeyOutcome::New),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if let Ok(Some(k)) = self.key_output(key)
                    && k.output == out.output
                {
                    Ok(KeyOutcome::Same)
                } else {
                    match self.cached_output(key)? {
                        CachedOutput::Intact { output, .. } if output == out.output => {
                            Ok(KeyOutcome::Same)
                        }
                        CachedOutput::Intact { output, .. } => {
                            Ok(KeyOutcome::Different { existing: output })
                        }
                        CachedOutput::Damaged { output, problem } => {
                            std::fs::rename(&tmp, &p).map_err(io_at(&p))?;
                            Ok(KeyOutcome::Repaired {
                                previous: output,
                                problem,
                            })
                        }
                        CachedOutput::None => {
                            std::fs::rename(&tmp, &p).map_err(io_at(&p))?;
                            Ok(KeyOutcome::New)
                        }
                    }
                }
            }
            Err(e) => Err(io_at(&p)(e)),
        };
        let _ = std::fs::remove_file(&tmp);
        if result.is_ok() {
            sync_dir(&dir);
        }
        result
    }

    /// Remove a key's output record (gc, when the output object is gone).
    pub(crate) fn forget_key_output(&self, key: &str) -> Result<(), StoreError> {
        let p = self.key_path(key, "out");
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_at(&p)(e)),
        }
    }

    /// The latest mid-stage checkpoint (a tree id) saved for `key`, if any. Training resumes
    /// from it after a crash.
    pub fn resume_point(&self, key: &str) -> Result<Option<String>, StoreError> {
        let p = self.key_path(key, "ckpt");
        match std::fs::read_to_string(&p) {
            Ok(s) => {
                let id = s.trim().to_string();
                Ok(is_object_id(&id).then_some(id))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_at(&p)(e)),
        }
    }

    /// Point `key`'s resume checkpoint at tree `id` (atomically replacing the previous one).
    pub fn set_resume_point(&self, key: &str, id: &str) -> Result<(), StoreError> {
        let p = self.key_path(key, "ckpt");
        let dir = p.parent().unwrap_or(&self.root).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        atomic_write(&p, format!("{id}\n").as_bytes()).map_err(io_at(&p))
    }

    /// Forget `key`'s resume checkpoint (the stage finished); gc may then reclaim it.
    pub fn clear_resume_point(&self, key: &str) -> Result<(), StoreError> {
        let p = self.key_path(key, "ckpt");
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_at(&p)(e)),
        }
    }

    /// Every resume checkpoint (gc roots).
    pub fn list_resume_points(&self) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        let base = self.root.join("keys-v1");
        let Ok(rd) = std::fs::read_dir(&base) else {
            return Ok(out);
        };
        for bucket in rd.flatten() {
            let Ok(files) = std::fs::read_dir(bucket.path()) else {
                continue;
            };
            for f in files.flatten() {
                let name = f.file_name().to_string_lossy().to_string();
                if let Some(key) = name.strip_suffix(".ckpt")
                    && let Some(id) = self.resume_point(key)?
                {
                    out.push(id);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// All stage keys with a recorded output.
    pub fn list_key_outputs(&self) -> Result<Vec<(String, KeyOutput)>, StoreError> {
        let mut out = Vec::new();
        let base = self.root.join("keys-v1");
        let Ok(rd) = std::fs::read_dir(&base) else {
            return Ok(out);
        };
        for bucket in rd.flatten() {
            let Ok(files) = std::fs::read_dir(bucket.path()) else {
                continue;
            };
            for f in files.flatten() {
                let name = f.file_name().to_string_lossy().to_string();
                if let Some(key) = name.strip_suffix(".out")
                    && let Some(k) = self.key_output(key)?
                {
                    out.push((key.to_string(), k));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Tree;

    #[test]
    fn key_outputs_are_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let key = "ab".repeat(32);
        // Two different intact outputs.
        let tree_with = |bytes: &[u8]| {
            let mut t = Tree::default();
            t.entries.insert(
                "model.bin".into(),
                crate::store::tree::TreeEntry {
                    object: s.put_bytes(bytes).unwrap(),
                    bytes: bytes.len() as u64,
                },
            );
            t.put(&s).unwrap()
        };
        let a = KeyOutput {
            output: tree_with(b"first"),
            run: "r1".into(),
        };
        let b = KeyOutput {
            output: tree_with(b"second"),
            run: "r2".into(),
        };
        assert_eq!(s.record_key_output(&key, &a).unwrap(), KeyOutcome::New);
        assert_eq!(s.record_key_output(&key, &a).unwrap(), KeyOutcome::Same);
        assert_eq!(
            s.record_key_output(&key, &b).unwrap(),
            KeyOutcome::Different {
                existing: a.output.clone()
            }
        );
        assert_eq!(s.key_output(&key).unwrap().unwrap().output, a.output);
    }

    #[test]
    fn a_key_record_naming_a_damaged_output_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let key = "cd".repeat(32);
        // Recorded output that was never stored (a planted or stale record).
        let ghost = KeyOutput {
            output: "3".repeat(64),
            run: "r0".into(),
        };
        assert_eq!(s.record_key_output(&key, &ghost).unwrap(), KeyOutcome::New);
        let real = KeyOutput {
            output: Tree::default().put(&s).unwrap(),
            run: "r1".into(),
        };
        match s.record_key_output(&key, &real).unwrap() {
            KeyOutcome::Repaired { previous, problem } => {
                assert_eq!(previous.as_deref(), Some(ghost.output.as_str()));
                assert!(problem.contains("missing"), "{problem}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.key_output(&key).unwrap().unwrap().output, real.output);
        // Garbage in place of the record: replaced too.
        std::fs::write(s.key_path(&key, "out"), b"{not json").unwrap();
        assert!(matches!(
            s.record_key_output(&key, &real).unwrap(),
            KeyOutcome::Repaired { previous: None, .. }
        ));
        assert_eq!(s.key_output(&key).unwrap().unwrap().output, real.output);
        assert_eq!(std::fs::read_dir(s.tmp_dir()).unwrap().count(), 0);
    }
}
