//! `medrun export REF DIR`: write a stage's model as a directory that Hugging Face `transformers`
//! loads as it is (`model.safetensors`, `config.json`, `tokenizer.json`,
//! `tokenizer_config.json`; LoRA adapters are already merged into the weights).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::lineage::{Target, record, seal};
use crate::store::{Store, Tree};

/// Files copied into an exported directory when the output has them (`model.safetensors` is
/// required).
pub const EXPORT_FILES: &[&str] = &[
    "config.json",
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

/// Resolve a REF to a stage output: `RUN:STAGE`, a run (its last stage), a promotion channel in
/// `root`'s promotions.yaml, or a tree's hash.
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
    let bytes = store.get(&output)?;
    let tree = Tree::parse(&bytes).ok_or_else(|| {
        problem(
            format!("object {output} is not a stage output"),
            "pass a run id, RUN:STAGE, or the output hash that `medrun lineage` shows",
        )
    })?;
    Ok(Checkpoint {
        run_id,
        stage,
        output,
        tree,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub checkpoint: Checkpoint,
    pub dir: PathBuf,
    pub files: Vec<String>,
}

/// Write the checkpoint's model files into `dir`, which must not exist or be empty. The files are
/// written into a sibling temporary directory first and renamed into place, so `dir` is either
/// complete or absent.
pub fn export(project: &super::Project, reference: &str, dir: &Path) -> Result<ExportReport> {
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
        std::fs::remove_dir(dir)
            .map_err(|e| Error::Io(format!("cannot replace {}: {e}", dir.display())))?;
    }
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .map_err(|e| Error::Io(format!("cannot create {}: {e}", parent.display())))?;
    let tmp_path = parent.join(format!(
        ".medrun-export-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir(&tmp_path)
        .map_err(|e| Error::Io(format!("cannot write in {}: {e}", parent.display())))?;
    let result = fill(&store, &ck, &tmp_path);
    let files = match result {
        Ok(f) => f,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp_path);
            return Err(e);
        }
    };
    std::fs::rename(&tmp_path, dir).map_err(|e| {
        let _ = std::fs::remove_dir_all(&tmp_path);
        Error::Io(format!(
            "cannot move the export into {}: {e}",
            dir.display()
        ))
    })?;
    Ok(ExportReport {
        checkpoint: ck,
        dir: dir.to_path_buf(),
        files,
    })
}

fn fill(store: &Store, ck: &Checkpoint, tmp: &Path) -> Result<Vec<String>> {
    let mut files = Vec::new();
    for name in EXPORT_FILES {
        let Some(entry) = ck.tree.entries.get(*name) else {
            continue;
        };
        let bytes = store.get(&entry.object)?;
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
