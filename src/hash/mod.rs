//! Run and stage keys.
//!
//! A **key** names the inputs of a piece of work before it runs; a **content address** names the
//! bytes it produced. Same key ⇒ same bytes (on the same device class), so a stage whose key is in
//! the store is not run again, and a re-run that produced other bytes is nondeterminism, reported
//! and never hidden.
//!
//! What a stage key covers (see [`StageKeyInputs`]):
//! - the resolved stage (every default filled in, so writing a default explicitly changes nothing);
//! - the run-level fields the stage depends on: seed, dtype, model, tokenizer, chat template;
//! - the content (blake3, size, format) of each dataset it reads, of a `model.from` directory or
//!   file, and of tokenizer / template files;
//! - the parent stage's key (a chain, like Nix derivations);
//! - the engine fingerprint (medrun version, hash of its sources and Cargo.lock, features, target,
//!   rustc);
//! - the device class (CPU model and ISA, or GPU model).
//!
//! What it deliberately does not cover: the YAML text (comments, key order, `1e-4` vs `0.0001`),
//! the spec's `name`, `description`, `evals` and `gates` (they do not change a checkpoint), paths
//! (a dataset moved with the same bytes is the same input), absolute paths, hostnames, times, the
//! device index (`cuda:0` vs `cuda:1` is the same class).
//!
//! Keys are the blake3 of a canonical JSON serialization: objects with sorted keys, no whitespace,
//! floats in their shortest round-trip form, `-0.0` written as `0.0`. The inputs JSON is kept
//! beside each key in the store so `medrun explain` can say which field changed.

pub mod explain;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::env::{DeviceClass, EngineFingerprint};
use crate::lock::Pin;
use crate::spec::{
    DType, Family, InitConfig, ModelSource, RelPath, Spec, Stage, TemplateSpec, TokenizerSpec,
};

pub const STAGE_KEY_SCHEMA: &str = "medrun-stage-key-v1";
pub const RUN_KEY_SCHEMA: &str = "medrun-run-key-v1";

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("input `{path}` is not pinned: it has no digest")]
    Unpinned { path: String },
    #[error("cannot serialize key inputs: {0}")]
    Serialize(#[from] serde_json::Error),
}

/// blake3 of `bytes`, lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Normalise a JSON value for hashing: `-0.0` → `0.0`. Objects are already sorted
/// (serde_json's map is a BTreeMap in this build).
fn normalize(v: &mut Value) {
    match v {
        Value::Number(n) => {
            if let Some(f) = n.as_f64()
                && f == 0.0
                && f.is_sign_negative()
            {
                *v = serde_json::json!(0.0);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(normalize),
        Value::Object(o) => o.values_mut().for_each(normalize),
        _ => {}
    }
}

/// Canonical JSON of a serializable value.
pub fn canonical_value<T: Serialize>(v: &T) -> Result<Value, HashError> {
    let mut value = serde_json::to_value(v)?;
    normalize(&mut value);
    Ok(value)
}

pub fn canonical_string<T: Serialize>(v: &T) -> Result<String, HashError> {
    Ok(serde_json::to_string(&canonical_value(v)?)?)
}

/// blake3 of the canonical JSON of `v`.
pub fn key_of<T: Serialize>(v: &T) -> Result<String, HashError> {
    Ok(hex(canonical_string(v)?.as_bytes()))
}

/// A pinned input as it enters a key: content only, never its path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Content {
    pub format: String,
    pub blake3: String,
    pub bytes: u64,
}

impl Content {
    fn of(pin: &Pin) -> Content {
        Content {
            format: pin.format.to_string(),
            blake3: pin.blake3.clone(),
            bytes: pin.bytes,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKey {
    Init(InitConfig),
    From(Content),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenizerKey {
    File(Content),
    Train {
        data: Content,
        vocab_size: u64,
        min_frequency: u64,
    },
    FromModel,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateKey {
    Builtin(String),
    File(Content),
    FromModel,
}

/// The run-level fields a stage depends on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunContext {
    pub seed: u64,
    pub dtype: DType,
    pub family: Family,
    pub model: ModelKey,
    pub tokenizer: TokenizerKey,
    pub template: TemplateKey,
}

/// Everything a stage key is computed from. Stored as JSON beside the key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageKeyInputs {
    pub schema: String,
    pub stage: Stage,
    /// Dataset name → content, for the datasets this stage reads.
    pub datasets: BTreeMap<String, Content>,
    pub run: RunContext,
    /// The parent stage's key; `None` for the first stage.
    pub parent: Option<String>,
    pub engine: EngineFingerprint,
    pub device: DeviceClass,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageKey {
    pub name: String,
    pub key: String,
    pub inputs: StageKeyInputs,
}

/// Keys for a whole spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunKeys {
    pub run_key: String,
    pub stages: Vec<StageKey>,
}

#[derive(Serialize)]
struct RunKeyInputs<'a> {
    schema: &'a str,
    stages: Vec<(&'a str, &'a str)>,
    evals: Vec<SuiteKey>,
    gates: &'a [crate::spec::Gate],
}

#[derive(Serialize)]
struct SuiteKey {
    name: String,
    tasks: Vec<crate::spec::Task>,
    datasets: BTreeMap<String, Content>,
}

fn pinned<'a>(pins: &'a BTreeMap<RelPath, Pin>, p: &RelPath) -> Result<&'a Pin, HashError> {
    pins.get(p).ok_or_else(|| HashError::Unpinned {
        path: p.to_string(),
    })
}

fn run_context(spec: &Spec, pins: &BTreeMap<RelPath, Pin>) -> Result<RunContext, HashError> {
    let model = match &spec.model.source {
        ModelSource::Init(c) => ModelKey::Init(c.clone()),
        ModelSource::From(p) => ModelKey::From(Content::of(pinned(pins, p)?)),
    };
    let tokenizer = match &spec.tokenizer {
        TokenizerSpec::Path(p) => TokenizerKey::File(Content::of(pinned(pins, p)?)),
        TokenizerSpec::Train {
            dataset,
            vocab_size,
            min_frequency,
        } => {
            let ds = spec
                .datasets
                .get(dataset)
                .ok_or_else(|| HashError::Unpinned {
                    path: dataset.clone(),
                })?;
            TokenizerKey::Train {
                data: Content::of(pinned(pins, &ds.path)?),
                vocab_size: *vocab_size,
                min_frequency: *min_frequency,
            }
        }
        TokenizerSpec::FromModel => TokenizerKey::FromModel,
    };
    let template = match &spec.template {
        TemplateSpec::Builtin(n) => TemplateKey::Builtin(n.clone()),
        TemplateSpec::File(p) => TemplateKey::File(Content::of(pinned(pins, p)?)),
        TemplateSpec::FromModel => TemplateKey::FromModel,
    };
    Ok(RunContext {
        seed: spec.seed,
        dtype: spec.dtype,
        family: spec.model.family,
        model,
        tokenizer,
        template,
    })
}

/// Compute every stage key and the run key of `spec`, given the digests of its inputs.
pub fn run_keys(
    spec: &Spec,
    pins: &BTreeMap<RelPath, Pin>,
    engine: &EngineFingerprint,
    device: &DeviceClass,
) -> Result<RunKeys, HashError> {
    let run = run_context(spec, pins)?;
    let mut stages: Vec<StageKey> = Vec::new();
    for stage in &spec.stages {
        let mut datasets = BTreeMap::new();
        for name in &stage.datasets {
            let ds = spec
                .datasets
                .get(name)
                .ok_or_else(|| HashError::Unpinned { path: name.clone() })?;
            datasets.insert(name.clone(), Content::of(pinned(pins, &ds.path)?));
        }
        let inputs = StageKeyInputs {
            schema: STAGE_KEY_SCHEMA.into(),
            stage: stage.clone(),
            datasets,
            run: run.clone(),
            parent: stages.last().map(|s| s.key.clone()),
            engine: engine.clone(),
            device: device.clone(),
        };
        stages.push(StageKey {
            name: stage.name.clone(),
            key: key_of(&inputs)?,
            inputs,
        });
    }
    let mut evals = Vec::new();
    for s in &spec.evals {
        let mut datasets = BTreeMap::new();
        for (n, d) in &s.datasets {
            datasets.insert(n.clone(), Content::of(pinned(pins, &d.path)?));
        }
        evals.push(SuiteKey {
            name: s.name.clone(),
            tasks: s.tasks.clone(),
            datasets,
        });
    }
    let run_key = key_of(&RunKeyInputs {
        schema: RUN_KEY_SCHEMA,
        stages: stages
            .iter()
            .map(|s| (s.name.as_str(), s.key.as_str()))
            .collect(),
        evals,
        gates: &spec.gates,
    })?;
    Ok(RunKeys { run_key, stages })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_spelling_does_not_matter() {
        let a: f64 = "1e-4".parse().unwrap();
        let b: f64 = "0.0001".parse().unwrap();
        assert_eq!(key_of(&a).unwrap(), key_of(&b).unwrap());
        assert_eq!(key_of(&-0.0f64).unwrap(), key_of(&0.0f64).unwrap());
        assert_ne!(key_of(&1e-4f64).unwrap(), key_of(&1e-5f64).unwrap());
    }

    #[test]
    fn canonical_sorts_keys() {
        let mut m = BTreeMap::new();
        m.insert("b", 1);
        m.insert("a", 2);
        assert_eq!(canonical_string(&m).unwrap(), r#"{"a":2,"b":1}"#);
    }
}
