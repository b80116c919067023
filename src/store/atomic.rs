//! Atomic small-file writes: a temp file, fsync, rename over the target, fsync the directory. A
//! reader sees the old file or the new one, whatever happens to the writer.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Write `bytes` to `path` atomically: temp file in the same directory, fsync, rename, fsync dir.
/// Used inside the store, whose directory git never shows; for files in the project use
/// [`atomic_write_in`] (through `tempfiles::write_project_file`).
pub fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}-{}", std::process::id(), nanos()));
    write_and_rename(&tmp, path, bytes)
}

/// Write `bytes` to `path` atomically through a temp file `tmp_dir/NAME.tmp-<pid>-<nanos>`:
/// fsync, rename over `path`, fsync both directories. `tmp_dir` must exist and be on the same
/// filesystem as `path` (otherwise the rename fails with `CrossesDevices` and nothing changes).
/// The pid in the name lets a later process tell a dead writer's temp file from a live one's.
pub fn atomic_write_in(path: &Path, bytes: &[u8], tmp_dir: &Path) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = tmp_dir.join(format!("{name}.tmp-{}-{}", std::process::id(), nanos()));
    write_and_rename(&tmp, path, bytes)?;
    if Some(tmp_dir) != path.parent() {
        sync_dir(tmp_dir);
    }
    Ok(())
}

/// Write `tmp`, fsync it, rename it to `path` and fsync `path`'s directory; `tmp` is removed on
/// failure.
fn write_and_rename(tmp: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let result = (|| {
        // create_new: never follow or truncate something already at the temp name.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(tmp, path)?;
        sync_dir(dir);
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    result
}

pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

pub(crate) fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}
