//! `medrun verify`: re-hash every object and report corrupt ones, and objects that run records,
//! key records or trees reference but that are missing.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Serialize;

use crate::error::Result;
use crate::lineage::load_runs;
use crate::store::{Store, Tree};

#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub objects: u64,
    pub bytes: u64,
    pub corrupt: Vec<(String, String)>,
    pub missing: Vec<(String, String)>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.corrupt.is_empty() && self.missing.is_empty()
    }
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
    Ok(report)
}
