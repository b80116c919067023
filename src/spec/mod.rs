//! Run specs (`runs/*.yaml`) and eval suites (`evals/*.yaml`): strict parsing into raw wire types,
//! then validation into resolved types with every default filled in. Only resolved types are
//! hashed. See `docs/reference/spec.md` for the schema.

pub mod raw;
pub mod resolve;
pub mod types;

use std::path::{Path, PathBuf};

pub use types::*;

use crate::fsx::Access;
use crate::yaml::{self, At, YamlError};

pub const SPEC_VERSION: u32 = 1;
pub const SUITE_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error(transparent)]
    Yaml(#[from] YamlError),
    #[error("{at}: {message}")]
    Invalid {
        at: At,
        message: String,
        hint: String,
    },
    #[error(transparent)]
    Path(#[from] crate::fsx::FsError),
}

impl SpecError {
    pub fn hint(&self) -> String {
        match self {
            SpecError::Invalid { hint, .. } => hint.clone(),
            SpecError::Path(e) => e.hint(),
            SpecError::Yaml(YamlError::Version { .. }) => {
                "upgrade medrun, or write the file in the version this medrun reads".into()
            }
            SpecError::Yaml(YamlError::NoVersion { .. }) => {
                "add `version: 1` at the top of the file".into()
            }
            SpecError::Yaml(YamlError::Io { .. }) => "check the path and its permissions".into(),
            SpecError::Yaml(YamlError::TooLarge { .. }) => {
                "a spec is a few KiB of YAML: check that the path names the spec, not a data file".into()
            }
            SpecError::Yaml(YamlError::NotUtf8 { .. }) => {
                "save the file as UTF-8 (the position names the first invalid byte)".into()
            }
            SpecError::Yaml(YamlError::Syntax { message, .. }) if message.starts_with("budget breached") => {
                "medrun refuses YAML whose anchors, aliases or nesting expand past its budget: write the values out".into()
            }
            SpecError::Yaml(_) => "fix the YAML; the schema is in docs/reference/spec.md".into(),
        }
    }
}

/// A spec as loaded: the resolved form, plus the bytes it came from (for the lineage record).
#[derive(Debug, Clone)]
pub struct LoadedSpec {
    pub spec: Spec,
    /// Path relative to the project root when inside it, as given otherwise.
    pub display: PathBuf,
    pub text: String,
}

/// How to show `path` to the user: relative to `root` when it is inside.
pub fn display_path(root: &Path, path: &Path) -> PathBuf {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|c| c.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    let canon_root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let canon = std::fs::canonicalize(&abs).unwrap_or(abs);
    canon
        .strip_prefix(&canon_root)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| path.to_path_buf())
}

/// Load and resolve an eval suite from a path relative to `root` (which must resolve inside it,
/// see [`crate::fsx`]).
pub fn load_suite(root: &Path, rel: RelPath) -> Result<Suite, SpecError> {
    let display = PathBuf::from(rel.as_str());
    let path = Access::new(root)?.file(rel.as_str())?;
    let (raw, _text): (raw::RawSuite, String) =
        yaml::load(&path, &display, "suite", SUITE_VERSION)?;
    let ctx = resolve::Ctx { file: &display };
    resolve::suite(&ctx, rel, raw)
}

/// Load and resolve the run spec at `path` (relative to the current directory or absolute). A
/// spec named inside the project root must resolve inside it (see [`crate::fsx`]).
pub fn load_spec(root: &Path, path: &Path) -> Result<LoadedSpec, SpecError> {
    let display = display_path(root, path);
    let path = inside_root(root, path)?;
    let (raw, text): (raw::RawSpec, String) = yaml::load(&path, &display, "spec", SPEC_VERSION)?;
    let ctx = resolve::Ctx { file: &display };
    let mut suites = |at: &raw::S<String>, rel: RelPath| -> Result<Suite, SpecError> {
        if !rel.to_path(root).is_file() {
            return Err(SpecError::Invalid {
                at: At::spanned(&display, at),
                message: format!("eval suite `{rel}` does not exist"),
                hint: "create the suite file or fix the path in `evals:`".into(),
            });
        }
        load_suite(root, rel)
    };
    let spec = resolve::spec(&ctx, raw, &mut suites)?;
    Ok(LoadedSpec {
        spec,
        display,
        text,
    })
}

/// `path`, resolved through [`Access::file`] when it names a file inside `root` (as a path,
/// before symlinks): a spec in `runs/` that is a symlink out of the project is refused. A path
/// given outside the root is the caller's own choice and is read as given.
fn inside_root(root: &Path, path: &Path) -> Result<PathBuf, SpecError> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        match std::env::current_dir() {
            Ok(c) => c.join(path),
            Err(_) => return Ok(path.to_path_buf()),
        }
    };
    let access = Access::new(root)?;
    match abs.strip_prefix(access.root()) {
        Ok(rel) => match access.file(&rel.to_string_lossy()) {
            Ok(p) => Ok(p),
            // Reported by the YAML reader, as for any spec path.
            Err(crate::fsx::FsError::Missing { .. }) => Ok(path.to_path_buf()),
            Err(e) => Err(e.into()),
        },
        Err(_) => Ok(path.to_path_buf()),
    }
}

/// Resolve a spec from its text, reading its eval suites through `read` (project-relative path →
/// the suite file's text) instead of the work tree: `medrun promotions verify` resolves the spec
/// exactly as it was committed, with the suites of the same commit.
pub fn resolve_text(
    display: &Path,
    text: &str,
    read: &mut dyn FnMut(&RelPath) -> Result<String, String>,
) -> Result<Spec, SpecError> {
    let too_large = |d: &Path, t: &str| {
        (t.len() > yaml::MAX_YAML_BYTES).then(|| {
            SpecError::Yaml(YamlError::TooLarge {
                at: At::file(d),
                size: t.len() as u64,
                limit: yaml::MAX_YAML_BYTES,
            })
        })
    };
    if let Some(e) = too_large(display, text) {
        return Err(e);
    }
    yaml::check_version(text, display, "spec", SPEC_VERSION)?;
    let raw: raw::RawSpec = yaml::parse(text, display)?;
    let ctx = resolve::Ctx { file: display };
    let mut suites = |at: &raw::S<String>, rel: RelPath| -> Result<Suite, SpecError> {
        let sd = PathBuf::from(rel.as_str());
        let stext = read(&rel).map_err(|m| SpecError::Invalid {
            at: At::spanned(display, at),
            message: format!("eval suite `{rel}`: {m}"),
            hint: "the suite must be committed with the spec".into(),
        })?;
        if let Some(e) = too_large(&sd, &stext) {
            return Err(e);
        }
        yaml::check_version(&stext, &sd, "suite", SUITE_VERSION)?;
        let raw: raw::RawSuite = yaml::parse(&stext, &sd)?;
        resolve::suite(&resolve::Ctx { file: &sd }, rel, raw)
    };
    resolve::spec(&ctx, raw, &mut suites)
}

/// Every spec under `root/runs` and every suite under `root/evals`, sorted by path.
pub fn discover(root: &Path, dir: &str) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let base = root.join(dir);
    if !base.is_dir() {
        return Ok(out);
    }
    let mut stack = vec![base];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let ft = entry.file_type()?;
            let p = entry.path();
            if ft.is_dir() {
                stack.push(p);
            } else if matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml") | Some("yml")
            ) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const MINIMAL: &str = r#"
version: 1
name: tiny
seed: 7
model:
  family: llama
  init: {hidden_size: 64, layers: 2, heads: 4, intermediate_size: 172}
tokenizer:
  train: {dataset: corpus, vocab_size: 512}
datasets:
  corpus: {path: data/pt.txt, format: text}
  chats: {path: data/sft.jsonl, format: sharegpt}
  pairs: {path: data/dpo.jsonl, format: preference}
stages:
  - {name: pt, kind: pt, datasets: [corpus], max_steps: 10, batch_size: 2, max_len: 32, optimizer: {lr: 1e-3}}
  - {name: sft, kind: sft, datasets: [chats], epochs: 1, batch_size: 2, max_len: 32, optimizer: {lr: 1e-4}}
  - {name: dpo, kind: dpo, datasets: [pairs], max_steps: 5, batch_size: 2, max_len: 32, optimizer: {lr: 1e-5}}
"#;

    fn load_text(text: &str) -> Result<Spec, SpecError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.yaml");
        std::fs::write(&p, text).unwrap();
        load_spec(dir.path(), &p).map(|l| l.spec)
    }

    #[test]
    fn minimal_resolves_with_defaults() {
        let s = load_text(MINIMAL).unwrap();
        assert_eq!(s.stages.len(), 3);
        assert_eq!(s.stages[0].grad_accum, 1);
        assert_eq!(s.stages[0].optimizer.betas, [0.9, 0.999]);
        assert_eq!(s.stages[2].beta, Some(0.1));
        assert_eq!(s.stages[0].beta, None);
        assert_eq!(s.template, TemplateSpec::Builtin("chatml".into()));
        assert_eq!(s.device, DeviceSpec::Cpu);
    }

    fn err_of(text: &str) -> String {
        load_text(text).expect_err("must fail").to_string()
    }

    #[test]
    fn dpo_on_text_data_is_refused_with_location() {
        let t = MINIMAL.replace("datasets: [pairs]", "datasets: [corpus]");
        let e = err_of(&t);
        assert!(e.starts_with("s.yaml:17:39:"), "{e}");
        assert!(e.contains("needs `preference` data"), "{e}");
    }

    #[test]
    fn undeclared_dataset() {
        let e = err_of(&MINIMAL.replace("datasets: [chats]", "datasets: [chatz]"));
        assert!(e.contains("`chatz`, which is not declared"), "{e}");
        assert!(e.starts_with("s.yaml:16:39:"), "{e}");
    }

    #[test]
    fn duplicate_stage() {
        let e = err_of(&MINIMAL.replace("{name: sft,", "{name: pt,"));
        assert!(e.contains("duplicate stage name `pt`"), "{e}");
    }

    #[test]
    fn unknown_kind_and_key() {
        let e = err_of(&MINIMAL.replace("kind: sft", "kind: ppo"));
        assert!(e.contains("unknown stage kind \"ppo\""), "{e}");
        let e = err_of(&MINIMAL.replace("seed: 7", "seed: 7\nsed: 8"));
        assert!(e.starts_with("s.yaml:5:1: unknown field `sed`"), "{e}");
    }
}
