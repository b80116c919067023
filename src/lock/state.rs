//! The local state cache (like DVC's state DB): `(path, size, mtime, ctime, inode) → digest`, so an
//! unchanged file is not hashed again. It lives in the store (outside git) and is only a hint:
//! anyone who can write the store can write it, so it is trusted only by the commands that merely
//! report (`plan`, `explain`, `lock`, `lock --check`). The digests that go into stage keys, run
//! records, results keys and `--locked` checks (`run`, `eval`, `promote`) are hashed fresh
//! ([`StateCache::fresh`]): those commands update the cache but never read it. `medrun lock
//! --verify` ignores it. Entries whose mtime is within two seconds of the moment they were hashed
//! are not trusted later (a write in the same clock tick could go unseen), the same "racily clean"
//! rule git uses. The cache is only ever written into a medrun store (a directory whose `VERSION`
//! this medrun reads), never into a directory that is not one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub const STATE_FILE: &str = "state-v1.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stat {
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub inode: u64,
}

impl Stat {
    pub fn of(meta: &std::fs::Metadata) -> Stat {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Stat {
                size: meta.len(),
                mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
                ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
                inode: meta.ino(),
            }
        }
        #[cfg(not(unix))]
        {
            let mtime_ns = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_nanos() as i128)
                .unwrap_or(0);
            Stat {
                size: meta.len(),
                mtime_ns,
                ctime_ns: 0,
                inode: 0,
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedDigest {
    pub stat: Stat,
    pub blake3: String,
    /// Record counts by counting method (`lines`, `json`, `csv`, `csv-noheader`).
    #[serde(default)]
    pub records: BTreeMap<String, u64>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct StateCache {
    version: u32,
    entries: BTreeMap<PathBuf, CachedDigest>,
    #[serde(skip)]
    dirty: bool,
    /// Whether `get` may answer from the entries (false: every file is hashed fresh).
    #[serde(skip)]
    trusted: bool,
    #[serde(skip)]
    pub hits: u64,
    #[serde(skip)]
    pub misses: u64,
}

impl StateCache {
    /// Load the cache from `store_dir`; a missing or unreadable cache is an empty one.
    pub fn load(store_dir: &Path) -> StateCache {
        let path = store_dir.join(STATE_FILE);
        let loaded = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<StateCache>(&b).ok())
            .filter(|c| c.version == 1);
        match loaded {
            Some(c) => StateCache { trusted: true, ..c },
            None => {
                if path.exists() {
                    tracing::warn!(path = %path.display(), "state cache unreadable; starting empty");
                }
                StateCache {
                    version: 1,
                    trusted: true,
                    ..StateCache::default()
                }
            }
        }
    }

    /// The cache of `store_dir`, never read: every file is hashed fresh, and the fresh digests
    /// are saved for the commands that do trust the cache. For every digest that decides what is
    /// trained or evaluated, or is recorded.
    pub fn fresh(store_dir: &Path) -> StateCache {
        StateCache {
            trusted: false,
            ..StateCache::load(store_dir)
        }
    }

    /// An empty cache that is never saved (for `--verify`).
    pub fn disabled() -> StateCache {
        StateCache {
            version: 0,
            ..StateCache::default()
        }
    }

    pub fn get(&mut self, path: &Path, stat: &Stat) -> Option<&CachedDigest> {
        if self.version == 0 || !self.trusted {
            self.misses += 1;
            return None;
        }
        let hit = self.entries.get(path).filter(|c| &c.stat == stat);
        if hit.is_some() {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
        hit
    }

    pub fn put(&mut self, path: &Path, digest: CachedDigest) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        // ctime is part of the stat comparison, so an edit that restores the old mtime is still
        // seen; only the mtime needs the racy-clean rule.
        let racy = now - digest.stat.mtime_ns < 2_000_000_000;
        if racy {
            if self.entries.remove(path).is_some() {
                self.dirty = true;
            }
            return;
        }
        if self.entries.get(path) != Some(&digest) {
            self.entries.insert(path.to_path_buf(), digest);
            self.dirty = true;
        }
    }

    /// Write the cache atomically if it changed, but only into a medrun store (a directory
    /// whose `VERSION` this medrun reads): before the store exists, or with `--store` pointing
    /// at some other directory, nothing is written. Failing to write a cache is not an error.
    pub fn save(&mut self, store_dir: &Path) {
        if !self.dirty || self.version == 0 {
            return;
        }
        if crate::store::Store::open_existing(store_dir).is_err() {
            tracing::debug!(dir = %store_dir.display(), "no medrun store here; the state cache is not saved");
            return;
        }
        let Ok(bytes) = serde_json::to_vec(self) else {
            return;
        };
        if let Err(e) = crate::store::atomic_write(&store_dir.join(STATE_FILE), &bytes) {
            tracing::warn!(error = %e, "could not save the state cache");
        } else {
            self.dirty = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Format, RelPath};

    /// A project file older than the racy-clean window, and its real digest.
    fn old_file(dir: &Path) -> (PathBuf, std::fs::Metadata) {
        let p = dir.join("data.txt");
        std::fs::write(&p, "the real bytes\n").unwrap();
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(SystemTime::now() - std::time::Duration::from_secs(60))
            .unwrap();
        drop(f);
        let meta = std::fs::metadata(&p).unwrap();
        (std::fs::canonicalize(&p).unwrap(), meta)
    }

    fn poison(store: &Path, path: &Path, meta: &std::fs::Metadata, blake3: &str) {
        let mut c = StateCache::load(store);
        c.put(
            path,
            CachedDigest {
                stat: Stat::of(meta),
                blake3: blake3.into(),
                records: BTreeMap::from([("lines".to_string(), 1)]),
            },
        );
        c.save(store);
        assert!(store.join(STATE_FILE).is_file());
    }

    #[test]
    fn a_poisoned_entry_fools_only_the_trusting_cache() {
        let project = tempfile::tempdir().unwrap();
        let store = project.path().join(".medrun");
        crate::store::Store::open(&store).unwrap();
        let (path, meta) = old_file(project.path());
        let lie = "0".repeat(64);
        poison(&store, &path, &meta, &lie);
        let rel = RelPath("data.txt".into());
        let digest = |cache: &mut StateCache| {
            crate::lock::digest(project.path(), &rel, Format::Text, "corpus", cache)
                .unwrap()
                .blake3
        };
        let truth = blake3::hash(b"the real bytes\n").to_hex().to_string();
        assert_eq!(digest(&mut StateCache::load(&store)), lie);
        let mut fresh = StateCache::fresh(&store);
        assert_eq!(digest(&mut fresh), truth);
        assert_eq!((fresh.hits, fresh.misses), (0, 1));
        // The fresh digest replaces the lie for the commands that do read the cache.
        fresh.save(&store);
        assert_eq!(digest(&mut StateCache::load(&store)), truth);
    }

    #[test]
    fn the_cache_is_saved_only_into_a_medrun_store() {
        let project = tempfile::tempdir().unwrap();
        let (path, meta) = old_file(project.path());
        let entry = CachedDigest {
            stat: Stat::of(&meta),
            blake3: "1".repeat(64),
            records: BTreeMap::new(),
        };
        // No store yet, an unrelated directory, a store of another version: nothing written.
        let absent = project.path().join(".medrun");
        let unrelated = project.path().join("notes");
        std::fs::create_dir_all(&unrelated).unwrap();
        std::fs::write(unrelated.join("todo.txt"), "x").unwrap();
        let other = project.path().join("other");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("VERSION"), "medrun-store 9\n").unwrap();
        for dir in [&absent, &unrelated, &other] {
            let mut c = StateCache::load(dir);
            c.put(&path, entry.clone());
            c.save(dir);
            assert!(!dir.join(STATE_FILE).exists(), "{}", dir.display());
        }
        assert!(!absent.exists());
        crate::store::Store::open(&absent).unwrap();
        let mut c = StateCache::load(&absent);
        c.put(&path, entry.clone());
        c.save(&absent);
        assert!(absent.join(STATE_FILE).is_file());
    }
}

#[cfg(test)]
mod speed {
    use std::time::Instant;

    use super::*;
    use crate::spec::{Format, RelPath};

    /// What hashing a dataset fresh costs next to a state-cache hit (figures in
    /// docs/reference/lock.md). `MEDRUN_PROBE_MB` sets the dataset size (default 1024).
    #[test]
    #[ignore = "timing probe, run by hand: cargo test --release --lib lock::state::speed -- --ignored --nocapture"]
    fn probe() {
        let mb: usize = std::env::var("MEDRUN_PROBE_MB")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1024);
        let project = tempfile::tempdir().unwrap();
        let store = project.path().join(".medrun");
        crate::store::Store::open(&store).unwrap();
        let line = b"Community-acquired pneumonia presents with fever, productive cough and pleuritic chest pain.\n";
        let data: Vec<u8> = line.iter().copied().cycle().take(mb << 20).collect();
        let path = project.path().join("corpus.txt");
        std::fs::write(&path, &data).unwrap();
        drop(data);
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(SystemTime::now() - std::time::Duration::from_secs(60))
            .unwrap();
        drop(f);
        let rel = RelPath("corpus.txt".into());
        for format in [Format::Text, Format::File] {
            let digest = |cache: &mut StateCache| {
                let t = Instant::now();
                crate::lock::digest(project.path(), &rel, format, "corpus", cache).unwrap();
                t.elapsed().as_secs_f64()
            };
            let mut c = StateCache::load(&store);
            digest(&mut c);
            c.save(&store);
            for round in 0..2 {
                let hit = digest(&mut StateCache::load(&store));
                let fresh = digest(&mut StateCache::fresh(&store));
                eprintln!(
                    "{format:?} round {round}, {mb} MiB: cache hit {hit:.3} s, fresh {fresh:.3} s"
                );
            }
        }
    }
}
