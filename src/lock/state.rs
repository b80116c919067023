//! The local state cache (like DVC's state DB): `(path, size, mtime, ctime, inode) → digest`, so an
//! unchanged file is not hashed again. It lives in the store (outside git) and is only a hint:
//! `medrun lock --verify` ignores it. Entries whose mtime is within two seconds of the moment they
//! were hashed are not trusted later (a write in the same clock tick could go unseen), the same
//! "racily clean" rule git uses.

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

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct StateCache {
    version: u32,
    entries: BTreeMap<PathBuf, CachedDigest>,
    #[serde(skip)]
    dirty: bool,
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
            Some(c) => c,
            None => {
                if path.exists() {
                    tracing::warn!(path = %path.display(), "state cache unreadable; starting empty");
                }
                StateCache {
                    version: 1,
                    ..StateCache::default()
                }
            }
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
        if self.version == 0 {
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
            self.entries.remove(path);
            return;
        }
        if self.entries.get(path) != Some(&digest) {
            self.entries.insert(path.to_path_buf(), digest);
            self.dirty = true;
        }
    }

    /// Write the cache atomically if it changed. Failing to write a cache is not an error.
    pub fn save(&mut self, store_dir: &Path) {
        if !self.dirty || self.version == 0 {
            return;
        }
        let Ok(bytes) = serde_json::to_vec(self) else {
            return;
        };
        if let Err(e) = std::fs::create_dir_all(store_dir)
            .and_then(|_| crate::store::atomic_write(&store_dir.join(STATE_FILE), &bytes))
        {
            tracing::warn!(error = %e, "could not save the state cache");
        } else {
            self.dirty = false;
        }
    }
}
