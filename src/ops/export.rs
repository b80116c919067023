//! `medrun export REF DIR`: write a stage's model as a directory that Hugging Face `transformers`
//! loads as it is (`model.safetensors`, `config.json`, `generation_config.json`,
//! `tokenizer.json`, `tokenizer_config.json`; LoRA adapters are already merged into the weights).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::lineage::{self, Target, record, seal};
use crate::store::{Store, Tree};

/// Files copied into an exported directory when the output has them (`model.safetensors` is
/// required).
pub const EXPORT_FILES: &[&str] = &[
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
];

/// A stage output chosen by a REF.
#[derive(Debug, Clone, Serialize)]
pub struct Checkpoint {
    pub run_id: Option<String>,
    pub stage: Option<String>,
    /// Content address of the stage's output tree.
    pub output: String,
    #[serde(skip)]
    pub tree: Tree,
}

fn problem(message: String, hint: &str) -> Error {
    Error::Problems {
        message,
        hint: hint.into(),
    }
}

/// Check a checkpoint's tree and every object it lists against their addresses. A damaged one
/// is an error (exit 1) naming the object, the file and the checkpoint, whose hint says how to
/// restore it.
pub fn verify_checkpoint(store: &Store, ck: &Checkpoint) -> Result<()> {
    match store.verify_tree(&ck.output) {
        Ok(_) => Ok(()),
        Err(e) if e.is_damage() => Err(damaged(store, ck, &e)),
        Err(e) => Err(e.into()),
    }
}

fn damaged(store: &Store, ck: &Checkpoint, e: &crate::store::StoreError) -> Error {
    let short = |s: &str| s[..12.min(s.len())].to_string();
    let which = match (&ck.run_id, &ck.stage) {
        (Some(r), Some(s)) => format!("checkpoint {}:{s} (output {})", short(r), short(&ck.output)),
        _ => format!("checkpoint {}", short(&ck.output)),
    };
    let spec = ck.run_id.as_ref().and_then(|r| {
        lineage::load_runs(store)
            .ok()?
            .into_iter()
            .find(|x| x.id() == r)
            .map(|x| x.started.spec_path.clone())
    });
    let rerun = match spec {
        Some(p) => format!("`medrun run {p}`"),
        None => "`medrun run SPEC` with the spec that produced it (`medrun lineage` names its run)"
            .into(),
    };
    problem(
        format!("{which} is damaged: {e}"),
        &format!(
            "nothing damaged is loaded, evaluated, promoted or exported; run {rerun} again: it rebuilds the damaged stage and restores the object byte for byte (`medrun verify` lists every damaged object)"
        ),
    )
}

/// Resolve a REF to a stage output: `RUN:STAGE`, a run (its last stage), a promotion channel in
/// `root`'s promotions.yaml, or a tree's hash. The checkpoint is verified: its tree and every
/// object it lists hash to their addresses.
pub fn checkpoint_of(store: &Store, root: &Path, reference: &str) -> Result<Checkpoint> {
    let (run_id, stage, output) = match super::promotions::resolve(store, root, reference)? {
        Target::Stage(r, s) => {
            let out = r
                .stage(&s)
                .and_then(|(_, st)| st.output().map(str::to_string))
                .or_else(|| r.base.clone().filter(|_| s == crate::spec::BASE_STAGE))
                .ok_or_else(|| {
                    problem(
                        format!("stage `{s}` of run {} has no output", r.id()),
                        "the stage failed or did not finish; run the spec again",
                    )
                })?;
            (Some(r.id().to_string()), Some(s), out)
        }
        Target::Run(r) => {
            let (p, st) = r.stages.last().ok_or_else(|| {
                problem(
                    format!("run {} has no stages", r.id()),
                    "name a stage: RUN:STAGE",
                )
            })?;
            let out = st.output().map(str::to_string).ok_or_else(|| {
                problem(
                    format!(
                        "the last stage (`{}`) of run {} has no output",
                        p.name,
                        r.id()
                    ),
                    "name a stage that completed (RUN:STAGE), or run the spec again",
                )
            })?;
            (Some(r.id().to_string()), Some(p.name.clone()), out)
        }
        Target::Object(id) => (None, None, id),
    };
    let mut ck = Checkpoint {
        run_id,
        stage,
        output,
        tree: Tree::default(),
    };
    let bytes = match store.get(&ck.output) {
        Ok(b) => b,
        Err(e) if e.is_damage() => {
            let e = e.within(format!(
                "the tree of output {}",
                &ck.output[..12.min(ck.output.len())]
            ));
            return Err(damaged(store, &ck, &e));
        }
        Err(e) => return Err(e.into()),
    };
    ck.tree = Tree::parse(&bytes).ok_or_else(|| {
        problem(
            format!("object {} is not a stage output", ck.output),
            "pass a run id, RUN:STAGE, or the output hash that `medrun lineage` shows",
        )
    })?;
    verify_checkpoint(store, &ck)?;
    Ok(ck)
}

#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub checkpoint: Checkpoint,
    pub dir: PathBuf,
    pub files: Vec<String>,
}

/// Write the checkpoint's model files into `dir`, which must not exist or be empty. The files are
/// written into a sibling staging directory `.medrun-export-<pid>-<nanos>/` first and renamed into
/// place, so `dir` is either complete or as it was. A failing export leaves nothing behind (the
/// staging directory and any parent directories it created are removed); staging directories of
/// killed exports beside `dir` are removed at the next export there.
pub fn export(project: &super::Project, reference: &str, dir: &Path) -> Result<ExportReport> {
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // Staging directories of killed exports go first, whatever happens to this one.
    if parent.is_dir() {
        let cleaned = crate::tempfiles::clean_stale_exports(parent);
        for (path, e) in &cleaned.failed {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a stale export directory");
        }
    }
    let store = Store::open_existing(&project.store_dir)?;
    let ck = checkpoint_of(&store, &project.root, reference)?;
    // Shipping weights by run name trusts the run's record: it must be sealed and intact.
    if let Some(run) = &ck.run_id {
        let path = seal::record_path(&store, run);
        if let Ok(r) = record::read_record(&store, &path)? {
            r.sealed(&store)?;
        }
    }
    if !ck.tree.entries.contains_key("model.safetensors") {
        return Err(problem(
            format!(
                "output {} holds no model",
                &ck.output[..12.min(ck.output.len())]
            ),
            "export a training stage's output",
        ));
    }
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty {
            return Err(problem(
                format!("{} exists and is not empty", dir.display()),
                "choose a new directory, or remove this one first",
            ));
        }
    }
    let created = create_parents(parent)
        .map_err(|e| Error::Io(format!("cannot create {}: {e}", parent.display())))?;
    let tmp_path = parent.join(crate::tempfiles::export_dir_name());
    let result = std::fs::create_dir(&tmp_path)
        .map_err(|e| Error::Io(format!("cannot write in {}: {e}", parent.display())))
        .and_then(|_| fill(&store, &ck, &tmp_path))
        .and_then(|files| {
            // Renaming a directory over an empty one replaces it; `dir` is untouched on failure.
            std::fs::rename(&tmp_path, dir).map_err(|e| {
                Error::Io(format!(
                    "cannot move the export into {}: {e}",
                    dir.display()
                ))
            })?;
            Ok(files)
        });
    let files = match result {
        Ok(f) => f,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp_path);
            for d in created.iter().rev() {
                let _ = std::fs::remove_dir(d);
            }
            return Err(e);
        }
    };
    Ok(ExportReport {
        checkpoint: ck,
        dir: dir.to_path_buf(),
        files,
    })
}

/// Create `dir` and its missing ancestors; returns the directories created, outermost first.
fn create_parents(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        missing.push(d.to_path_buf());
        cur = d.parent();
    }
    missing.reverse();
    for (i, d) in missing.iter().enumerate() {
        if let Err(e) = std::fs::create_dir(d)
            && !(e.kind() == std::io::ErrorKind::AlreadyExists && d.is_dir())
        {
            for made in missing[..i].iter().rev() {
                let _ = std::fs::remove_dir(made);
            }
            return Err(e);
        }
    }
    Ok(missing)
}

fn fill(store: &Store, ck: &Checkpoint, tmp: &Path) -> Result<Vec<String>> {
    let mut files = Vec::new();
    for name in EXPORT_FILES {
        let Some(entry) = ck.tree.entries.get(*name) else {
            continue;
        };
        // The bytes written are the bytes hashed: nothing that does not match its address is
        // ever shipped, even if the object was damaged after `checkpoint_of` verified it.
        let bytes = match store.get(&entry.object) {
            Ok(b) => b,
            Err(e) if e.is_damage() => {
                let short = &ck.output[..12.min(ck.output.len())];
                return Err(damaged(
                    store,
                    ck,
                    &e.within(format!("`{name}` of output {short}")),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        let p = tmp.join(name);
        crate::store::atomic_write(&p, &bytes).map_err(|e| {
            Error::Io(format!(
                "cannot write {}: {e}; check free disk space",
                p.display()
            ))
        })?;
        files.push(name.to_string());
    }
    Ok(files)
}
