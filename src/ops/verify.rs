//! `medrun verify`: re-hash every object and report corrupt ones, objects that run records, key
//! records or trees reference but that are missing, and run records that fail their seal (or
//! have none).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

use serde::Serialize;

use crate::error::Result;
use crate::lineage::{Seal, load_runs, seal};
use crate::store::{Store, Tree};

#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub objects: u64,
    pub bytes: u64,
    pub corrupt: Vec<(String, String)>,
    pub missing: Vec<(String, String)>,
    /// Run records that are sealed and match their seal.
    pub sealed_records: u64,
    /// Run records without a seal (interrupted or still running): (record file, note). Not an
    /// error: such a run's outputs are only usable by hash.
    pub unsealed: Vec<(String, String)>,
    /// Run records that fail their seal, or whose seal was removed or replaced: (record file,
    /// problem).
    pub tampered: Vec<(String, String)>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.corrupt.is_empty() && self.missing.is_empty() && self.tampered.is_empty()
    }
}

/// The run a stored object is the sealed record of, if it is one.
fn sealed_record_of(store: &Store, id: &str) -> Option<String> {
    const PREFIX: &[u8] = b"{\"event\":\"run_started\",\"run_id\":\"";
    let mut head = [0u8; 128];
    let mut f = std::fs::File::open(store.object_path(id)).ok()?;
    let n = f.read(&mut head).ok()?;
    let rest = head[..n].strip_prefix(PREFIX)?;
    let end = rest.iter().position(|&b| b == b'"')?;
    let run = std::str::from_utf8(&rest[..end]).ok()?;
    (!run.is_empty() && run.bytes().all(|b| b.is_ascii_hexdigit())).then(|| run.to_string())
}

/// Check every run record against its seal, and every sealed record object against the seal of
/// its run: an object that no seal names is a record sealed once and then rewritten or
/// unsealed (or a sealing that a crash cut short, when the record still matches it).
fn records(store: &Store, present: &BTreeSet<String>, report: &mut VerifyReport) -> Result<()> {
    let shown = |run: &str| format!("runs-v1/{run}.jsonl");
    let mut sealed: BTreeMap<String, String> = BTreeMap::new();
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for r in load_runs(store)? {
        let run = r.id().to_string();
        match &r.seal {
            Seal::Sealed { object } => {
                report.sealed_records += 1;
                sealed.insert(run.clone(), object.clone());
            }
            Seal::Unsealed => {}
            Seal::Broken { problem, .. } => {
                report.tampered.push((shown(&run), problem.clone()));
            }
        }
        if let Ok(bytes) = std::fs::read(seal::record_path(store, &run)) {
            files.insert(run, bytes);
        }
    }
    let mut orphans: BTreeSet<String> = BTreeSet::new();
    for id in present {
        let Some(run) = sealed_record_of(store, id) else {
            continue;
        };
        if sealed.get(&run) == Some(id) || report.tampered.iter().any(|(f, _)| *f == shown(&run)) {
            continue;
        }
        orphans.insert(run.clone());
        let matches = files
            .get(&run)
            .is_some_and(|b| blake3::hash(b).to_hex().as_str() == id);
        let problem = match (sealed.get(&run), files.contains_key(&run)) {
            (Some(other), _) => format!(
                "it was sealed again: its seal names {other}, but object {id} holds the record as first sealed"
            ),
            (None, true) if matches => continue,
            (None, true) => format!(
                "its seal was removed and the record changed: object {id} holds the record as sealed"
            ),
            (None, false) => format!("the record was removed: object {id} holds it as sealed"),
        };
        report.tampered.push((shown(&run), problem));
    }
    for r in load_runs(store)? {
        if matches!(r.seal, Seal::Unsealed) {
            let note = if orphans.contains(r.id()) {
                "sealing was interrupted (the record matches its stored bytes)"
            } else if r.finished.is_some() {
                "finished, but not sealed"
            } else {
                "interrupted or still running"
            };
            report.unsealed.push((shown(r.id()), note.to_string()));
        }
    }
    report.tampered.sort();
    report.tampered.dedup();
    Ok(())
}

pub fn verify(store_dir: &Path) -> Result<VerifyReport> {
    let store = Store::open_existing(store_dir)?;
    let mut report = VerifyReport::default();
    let present: BTreeSet<String> = store.list_objects()?.into_iter().collect();
    for id in &present {
        report.objects += 1;
        report.bytes += std::fs::metadata(store.object_path(id))
            .map(|m| m.len())
            .unwrap_or(0);
        if let Some(actual) = store.check_object(id)? {
            report.corrupt.push((id.clone(), actual));
        }
    }
    let corrupt: BTreeSet<&String> = report.corrupt.iter().map(|(i, _)| i).collect();
    // References: run records, key outputs, and the entries of every intact tree they reach.
    let mut refs: Vec<(String, String)> = Vec::new();
    for r in load_runs(&store)? {
        for o in r.objects() {
            refs.push((o, format!("run {}", r.id())));
        }
    }
    for (key, out) in store.list_key_outputs()? {
        refs.push((out.output, format!("key {}", &key[..12])));
    }
    for id in store.list_resume_points()? {
        refs.push((id, "a resume checkpoint".to_string()));
    }
    let mut seen = BTreeSet::new();
    while let Some((id, from)) = refs.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        if !present.contains(&id) {
            report.missing.push((id, from));
            continue;
        }
        if corrupt.contains(&id) {
            continue;
        }
        if let Ok(bytes) = store.get(&id)
            && let Some(t) = Tree::parse(&bytes)
        {
            for (name, e) in t.entries {
                refs.push((e.object, format!("tree {} entry {name}", &id[..12])));
            }
        }
    }
    report.missing.sort();
    records(&store, &present, &mut report)?;
    Ok(report)
}
