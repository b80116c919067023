//! Garbage collection: delete every object that no root reaches. Roots are given by the caller
//! (run records, promotions, `--keep`); trees among the reachable objects reach their entries.
//! Runs under the exclusive store lock, so no writer is mid-flight; leftover temp files from
//! killed writers are removed too.

use std::collections::BTreeSet;

use serde::Serialize;

use super::{Store, StoreError, Tree, io_at};

#[derive(Debug, Default, Clone, Serialize)]
pub struct GcReport {
    pub kept: u64,
    pub deleted: Vec<String>,
    pub deleted_bytes: u64,
    pub forgotten_keys: Vec<String>,
    pub temp_files_removed: u64,
    pub dry_run: bool,
}

/// Expand `roots` through trees to the full reachable set.
pub fn reachable(store: &Store, roots: &BTreeSet<String>) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<String> = roots.iter().cloned().collect();
    while let Some(id) = stack.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        let p = store.object_path(&id);
        let small = std::fs::metadata(&p)
            .map(|m| m.len() < (4 << 20))
            .unwrap_or(false);
        if small
            && let Ok(bytes) = std::fs::read(&p)
            && let Some(tree) = Tree::parse(&bytes)
        {
            stack.extend(tree.entries.into_values().map(|e| e.object));
        }
    }
    seen
}

/// Delete unreachable objects. The caller must hold the exclusive lock.
pub fn collect(
    store: &Store,
    roots: &BTreeSet<String>,
    dry_run: bool,
) -> Result<GcReport, StoreError> {
    let live = reachable(store, roots);
    let mut report = GcReport {
        dry_run,
        ..GcReport::default()
    };
    for id in store.list_objects()? {
        if live.contains(&id) {
            report.kept += 1;
            continue;
        }
        let p = store.object_path(&id);
        report.deleted_bytes += std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        if !dry_run {
            std::fs::remove_file(&p).map_err(io_at(&p))?;
        }
        report.deleted.push(id);
    }
    let deleted: BTreeSet<&String> = report.deleted.iter().collect();
    for (key, out) in store.list_key_outputs()? {
        if deleted.contains(&out.output) || !store.contains(&out.output) && !dry_run {
            if !dry_run {
                store.forget_key_output(&key)?;
            }
            report.forgotten_keys.push(key);
        }
    }
    let tmp = store.tmp_dir();
    if let Ok(rd) = std::fs::read_dir(&tmp) {
        // gc holds the store's exclusive lock, so no run is using these: leftovers of killed
        // writers (temp files) and killed stages (work directories).
        for e in rd.flatten() {
            if !dry_run {
                let p = e.path();
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    std::fs::remove_dir_all(&p).map_err(io_at(&p))?;
                } else {
                    std::fs::remove_file(&p).map_err(io_at(&p))?;
                }
            }
            report.temp_files_removed += 1;
        }
    }
    Ok(report)
}
