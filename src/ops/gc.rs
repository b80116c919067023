//! `medrun gc`: delete objects that no run record, promotion or `--keep` root reaches. A sealed
//! record's object (its sealed bytes) is one of the objects the record reaches.

use std::collections::BTreeSet;
use std::path::Path;

use crate::error::Result;
use crate::lineage::{self, Target, load_runs};
use crate::store::Store;
use crate::store::gc::{self, GcReport};

/// 64-hex tokens in the promotion history (`promotions.yaml`), which are always kept.
fn promotion_roots(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Ok(text) = std::fs::read_to_string(root.join("promotions.yaml")) else {
        return out;
    };
    for tok in text.split(|c: char| !c.is_ascii_hexdigit()) {
        if crate::store::is_object_id(tok) {
            out.insert(tok.to_string());
        }
    }
    out
}

pub fn gc(root: &Path, store_dir: &Path, keep: &[String], dry_run: bool) -> Result<GcReport> {
    let store = Store::open_existing(store_dir)?;
    let _lock = store.lock_exclusive()?;
    let mut roots: BTreeSet<String> = BTreeSet::new();
    for r in load_runs(&store)? {
        // gc deletes what no record names: a record that fails its seal cannot say what that is.
        r.check_intact(&store)?;
        roots.extend(r.objects());
    }
    roots.extend(promotion_roots(root));
    // Mid-stage checkpoints of unfinished stages: a resumed run needs them.
    roots.extend(store.list_resume_points()?);
    for k in keep {
        match lineage::resolve(&store, k)? {
            Target::Run(r) => roots.extend(r.objects()),
            Target::Stage(r, s) => {
                if let Some(o) = r
                    .stage(&s)
                    .and_then(|(_, st)| st.output().map(str::to_string))
                {
                    roots.insert(o);
                }
            }
            Target::Object(o) => {
                roots.insert(o);
            }
        }
    }
    Ok(gc::collect(&store, &roots, dry_run)?)
}
