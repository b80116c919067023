//! The built-in demo corpus: a deterministic generator for small PT, SFT and DPO training files
//! and disjoint evaluation sets, written from a hand-written table of textbook medical facts.
//!
//! - [`facts`] holds the table: five kinds of fact (symptoms, treatments and drug classes,
//!   contraindications, specialists, red flags), each with wrong alternatives.
//! - `templates` holds the phrasings, split into training and evaluation-only templates.
//! - `safety` holds hand-written harmful requests, refusals, medicines not to stop alone, and the
//!   harmful/benign evaluation prompts.
//! - `generate` turns all of it into files from one seed.
//!
//! [`generate`] writes the files under `out` (normally `data/demo/`), each atomically, and
//! returns a [`Report`]. The output depends only on [`SEED`] and this module's source: no clock,
//! environment or map order, so two runs give byte-identical files.

pub mod facts;
mod generate;
mod safety;
mod templates;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use safety::{EVAL_BENIGN, EVAL_HARMFUL};

/// The demo corpus's seed. Fixed so that `medrun demo-data` always writes the same bytes; the
/// digits spell "demo data" in hex-speak (`DE70 DA7A`).
pub const SEED: u64 = 0xDE70_DA7A;

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The output folder as given.
    pub out: PathBuf,
    pub seed: u64,
    /// Facts per kind (`symptom`, `treatment`, `contraindication`, `specialist`, `red-flag`).
    pub facts: BTreeMap<&'static str, usize>,
    /// Every file written, in a fixed order.
    pub files: Vec<FileReport>,
    /// Sum of the files' sizes.
    pub total_bytes: u64,
}

/// One written file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileReport {
    /// Relative to the output folder, with `/` separators: `pt.txt`, `eval/mc.jsonl`.
    pub path: &'static str,
    /// Lines of data (documents, conversations, pairs, questions, prompts, sentences); 1 for
    /// the README.
    pub records: usize,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot create directory `{}`: {source}", .path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write `{}`: {source}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot encode a record of `{file}`: {source}")]
    Json {
        file: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("demo template {template:?}: {problem}")]
    Template { template: String, problem: String },
    #[error("demo fact table, {at}: {problem}")]
    Table { at: String, problem: String },
}

impl DemoError {
    pub fn hint(&self) -> String {
        match self {
            DemoError::CreateDir { .. } | DemoError::Write { .. } => {
                "check that the output folder is writable, or pass another one".into()
            }
            DemoError::Json { .. } | DemoError::Template { .. } | DemoError::Table { .. } => {
                "this is a bug in medrun's demo generator; please report it".into()
            }
        }
    }
}

/// Write the demo corpus under `out` with the fixed [`SEED`].
pub fn generate(out: &Path) -> Result<Report, DemoError> {
    generate_with_seed(out, SEED)
}

/// Write the demo corpus under `out` from `seed` (another seed gives other phrasings, orders and
/// answer positions over the same facts).
pub fn generate_with_seed(out: &Path, seed: u64) -> Result<Report, DemoError> {
    let corpus = generate::Corpus::build(seed)?;
    let files = corpus.files()?;
    let mut reports = Vec::with_capacity(files.len());
    for f in &files {
        let path = out.join(f.path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| DemoError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        crate::store::atomic_write(&path, &f.bytes)
            .map_err(|source| DemoError::Write { path, source })?;
        reports.push(FileReport {
            path: f.path,
            records: f.records,
            bytes: f.bytes.len() as u64,
        });
    }
    Ok(Report {
        out: out.to_path_buf(),
        seed,
        facts: facts::counts()
            .into_iter()
            .map(|(k, n)| (k.name(), n))
            .collect(),
        total_bytes: reports.iter().map(|r| r.bytes).sum(),
        files: reports,
    })
}

#[cfg(test)]
mod tests;
