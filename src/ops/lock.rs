//! `medrun lock`: pin every input of every spec in `runs/` and suite in `evals/`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::Project;
use crate::error::Result;
use crate::lock::state::StateCache;
use crate::lock::{self, LockError, Lockfile, Stale};
use crate::spec::{self, Format, RelPath};

#[derive(Debug, Clone, Serialize)]
pub struct LockReport {
    pub entries: usize,
    /// Inputs absent from this checkout whose spec says how to fetch them: their pins were kept.
    pub absent: Vec<Absent>,
    pub written: bool,
    pub changed: Vec<Stale>,
    pub cache_hits: u64,
    pub hashed: u64,
}

/// A fetchable input (`model.fetch`) missing from the checkout, whose locked pin was kept.
#[derive(Debug, Clone, Serialize)]
pub struct Absent {
    pub path: RelPath,
    pub fetch: String,
}

/// Every input path of the project, with its format and the names that use it.
pub fn collect_inputs(project: &Project) -> Result<Inputs> {
    Ok(collect(project)?.0)
}

/// Input paths with their format and the names that use them.
type Inputs = BTreeMap<RelPath, (Format, Vec<String>)>;

/// Every input of the project, and every fetchable input of the specs in `runs/` with its
/// fetch command.
fn collect(project: &Project) -> Result<(Inputs, BTreeMap<RelPath, String>)> {
    let mut fetchable = BTreeMap::new();
    let mut all: Inputs = BTreeMap::new();
    let mut add = |path: RelPath, format: Format, name: String| -> Result<()> {
        match all.get_mut(&path) {
            Some((f, names)) => {
                if *f != format {
                    return Err(LockError::Conflict {
                        path,
                        a: *f,
                        b: format,
                    }
                    .into());
                }
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            None => {
                all.insert(path, (format, vec![name]));
            }
        }
        Ok(())
    };
    let io = |e: std::io::Error| crate::error::Error::Io(format!("cannot list specs: {e}"));
    for spec_path in spec::discover(&project.root, "runs").map_err(io)? {
        let loaded = spec::load_spec(&project.root, &spec_path)?;
        let names = super::plan::input_names(&loaded.spec);
        fetchable.extend(loaded.spec.fetchable_inputs());
        for (path, format) in loaded.spec.all_inputs() {
            let n = names.get(&path).map(|v| v.join(",")).unwrap_or_default();
            add(path, format, format!("{}: {n}", loaded.display.display()))?;
        }
    }
    for suite_path in spec::discover(&project.root, "evals").map_err(io)? {
        let display = spec::display_path(&project.root, &suite_path);
        let rel = spec::resolve::normalize_rel(&display.to_string_lossy())
            .map_err(|why| crate::error::Error::Io(format!("{}: {why}", display.display())))?;
        let suite = spec::load_suite(&project.root, rel)?;
        for (n, d) in &suite.datasets {
            add(d.path.clone(), d.format, format!("{}: {n}", suite.path))?;
        }
    }
    Ok((all, fetchable))
}

pub fn lock(project: &Project, check: bool, verify: bool) -> Result<LockReport> {
    let (inputs, fetchable) = collect(project)?;
    let existing = Lockfile::read(&project.root)?;
    // `lock` writes the record of which bytes each commit expects, so it hashes fresh (the
    // state cache is updated, never read); only `lock --check`, which writes nothing, takes the
    // cache's word. `--verify` neither reads nor writes it.
    let mut cache = if verify {
        StateCache::disabled()
    } else if check {
        StateCache::load(&project.store_dir)
    } else {
        StateCache::fresh(&project.store_dir)
    };
    let mut fresh = Lockfile::default();
    let mut names = BTreeMap::new();
    let mut absent = Vec::new();
    for (path, (format, users)) in &inputs {
        let what = format!("input used by {}", users.join("; "));
        let pin = match lock::digest(&project.root, path, *format, &what, &mut cache) {
            Ok(pin) => pin,
            // A model the spec fetches with a script may be absent from a checkout: its pin
            // stays as locked (`medrun run` still refuses to start without the file).
            Err(LockError::Missing { .. })
                if fetchable.contains_key(path)
                    && existing
                        .as_ref()
                        .and_then(|l| l.entries.get(path))
                        .is_some_and(|p| p.format == *format) =>
            {
                absent.push(Absent {
                    path: path.clone(),
                    fetch: fetchable[path].clone(),
                });
                existing
                    .as_ref()
                    .map(|l| l.entries[path].clone())
                    .ok_or_else(|| {
                        crate::error::Error::Io(format!("datasets.lock lost `{path}`"))
                    })?
            }
            Err(e) => return Err(super::plan::with_fetch(e, &fetchable).into()),
        };
        fresh.entries.insert(path.clone(), pin);
        names.insert(path.clone(), users.clone());
    }
    if !check {
        cache.save(&project.store_dir);
    }
    let mut changed = lock::compare(existing.as_ref(), &fresh.entries, &names);
    if let Some(old) = &existing {
        for (path, pin) in &old.entries {
            if !fresh.entries.contains_key(path) {
                changed.push(Stale {
                    names: vec!["(no longer used)".into()],
                    path: path.clone(),
                    old: Some((pin.bytes, pin.blake3.clone())),
                    new: None,
                });
            }
        }
    }
    let report = |written| LockReport {
        entries: fresh.entries.len(),
        absent: absent.clone(),
        written,
        changed: changed.clone(),
        cache_hits: cache.hits,
        hashed: cache.misses,
    };
    if check {
        if !changed.is_empty() || existing.is_none() {
            if existing.is_none() {
                return Err(LockError::Stale(
                    fresh
                        .entries
                        .iter()
                        .map(|(p, pin)| Stale {
                            names: names.get(p).cloned().unwrap_or_default(),
                            path: p.clone(),
                            old: None,
                            new: Some((pin.bytes, pin.blake3.clone())),
                        })
                        .collect(),
                )
                .into());
            }
            return Err(LockError::Stale(changed).into());
        }
        return Ok(report(false));
    }
    let written = fresh.write_if_changed(&project.root)?;
    Ok(report(written))
}

/// Update the lock entries of the given inputs, keeping all others (used by `medrun run`
/// without `--locked`).
pub fn update_entries(root: &Path, pins: &BTreeMap<RelPath, lock::Pin>) -> Result<bool> {
    let mut l = Lockfile::read(root)?.unwrap_or_default();
    for (p, pin) in pins {
        l.entries.insert(p.clone(), pin.clone());
    }
    Ok(l.write_if_changed(root)?)
}
