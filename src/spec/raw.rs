//! Wire types of a run spec (`runs/*.yaml`, `version: 1`) and of an eval suite
//! (`evals/*.yaml`, `version: 1`), exactly as written. Nothing here has defaults filled or
//! cross-references checked: that is `resolve`'s job. Every struct denies unknown keys, because a
//! typo in a hashed spec would otherwise silently change an experiment.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

pub type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpec {
    pub version: S<u32>,
    pub name: S<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub seed: S<u64>,
    #[serde(default)]
    pub device: Option<S<String>>,
    #[serde(default)]
    pub dtype: Option<S<String>>,
    pub model: S<RawModel>,
    #[serde(default)]
    pub tokenizer: Option<S<RawTokenizer>>,
    #[serde(default)]
    pub template: Option<S<String>>,
    pub datasets: BTreeMap<String, S<RawDataset>>,
    pub stages: S<Vec<S<RawStage>>>,
    #[serde(default)]
    pub evals: Vec<S<String>>,
    #[serde(default)]
    pub gates: Vec<S<RawGate>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub family: S<String>,
    #[serde(default)]
    pub init: Option<S<RawInit>>,
    #[serde(default)]
    pub from: Option<S<String>>,
    #[serde(default)]
    pub fetch: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInit {
    pub hidden_size: S<u64>,
    pub layers: S<u64>,
    pub heads: S<u64>,
    #[serde(default)]
    pub kv_heads: Option<S<u64>>,
    pub intermediate_size: S<u64>,
    #[serde(default)]
    pub max_position: Option<S<u64>>,
    #[serde(default)]
    pub rope_theta: Option<S<f64>>,
    #[serde(default)]
    pub norm_eps: Option<S<f64>>,
    #[serde(default)]
    pub tie_embeddings: Option<bool>,
    #[serde(default)]
    pub init_std: Option<S<f64>>,
    #[serde(default)]
    pub position: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokenizer {
    #[serde(default)]
    pub path: Option<S<String>>,
    #[serde(default)]
    pub train: Option<S<RawTokenizerTrain>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokenizerTrain {
    pub dataset: S<String>,
    pub vocab_size: S<u64>,
    #[serde(default)]
    pub min_frequency: Option<S<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDataset {
    pub path: S<String>,
    pub format: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStage {
    pub name: S<String>,
    pub kind: S<String>,
    pub datasets: Vec<S<String>>,
    #[serde(default)]
    pub epochs: Option<S<u64>>,
    #[serde(default)]
    pub max_steps: Option<S<u64>>,
    pub batch_size: S<u64>,
    #[serde(default)]
    pub grad_accum: Option<S<u64>>,
    pub max_len: S<u64>,
    pub optimizer: S<RawOptimizer>,
    #[serde(default)]
    pub schedule: Option<S<RawSchedule>>,
    #[serde(default)]
    pub clip_grad: Option<S<f64>>,
    #[serde(default)]
    pub lora: Option<S<RawLora>>,
    #[serde(default)]
    pub checkpoint_every: Option<S<u64>>,
    #[serde(default)]
    pub eval_every: Option<S<u64>>,
    #[serde(default)]
    pub val_fraction: Option<S<f64>>,
    /// DPO only.
    #[serde(default)]
    pub beta: Option<S<f64>>,
    #[serde(default)]
    pub max_samples: Option<S<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOptimizer {
    pub lr: S<f64>,
    #[serde(default)]
    pub betas: Option<S<Vec<f64>>>,
    #[serde(default)]
    pub eps: Option<S<f64>>,
    #[serde(default)]
    pub weight_decay: Option<S<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    pub kind: S<String>,
    #[serde(default)]
    pub warmup: Option<S<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLora {
    pub r: S<u64>,
    pub alpha: S<f64>,
    #[serde(default)]
    pub dropout: Option<S<f64>>,
    #[serde(default)]
    pub targets: Option<S<Vec<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGate {
    pub metric: S<String>,
    #[serde(default)]
    pub stage: Option<S<String>>,
    #[serde(default)]
    pub min: Option<S<f64>>,
    #[serde(default)]
    pub max: Option<S<f64>>,
    #[serde(default)]
    pub vs_channel: Option<S<String>>,
    #[serde(default)]
    pub max_drop: Option<S<f64>>,
    #[serde(default)]
    pub test: Option<S<String>>,
    #[serde(default)]
    pub alpha: Option<S<f64>>,
}

/// An eval suite file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSuite {
    pub version: S<u32>,
    pub name: S<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub datasets: BTreeMap<String, S<RawDataset>>,
    pub tasks: Vec<S<RawTask>>,
}

/// One task as written. Every field but `name`, `kind` and `dataset` is optional here; which
/// ones a kind requires or accepts is checked in `resolve`, against the field's own position.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTask {
    pub name: S<String>,
    pub kind: S<String>,
    pub dataset: S<String>,
    #[serde(default)]
    pub description: Option<S<String>>,
    #[serde(default)]
    pub limit: Option<S<u64>>,
    #[serde(default)]
    pub chat: Option<S<bool>>,
    #[serde(default)]
    pub system: Option<S<String>>,
    #[serde(default)]
    pub prompt: Option<S<String>>,
    // multiple_choice
    #[serde(default)]
    pub choices: Option<S<RawChoices>>,
    #[serde(default)]
    pub answer: Option<S<RawAnswer>>,
    #[serde(default)]
    pub target_delimiter: Option<S<String>>,
    #[serde(default)]
    pub num_fewshot: Option<S<u64>>,
    #[serde(default)]
    pub fewshot_seed: Option<S<u64>>,
    #[serde(default)]
    pub fewshot_separator: Option<S<String>>,
    // generate, refusal
    #[serde(default)]
    pub max_new_tokens: Option<S<u64>>,
    #[serde(default)]
    pub stop: Option<S<Vec<S<String>>>>,
    // generate
    #[serde(default)]
    pub must_include: Option<S<Vec<S<String>>>>,
    #[serde(default)]
    pub must_not_include: Option<S<Vec<S<String>>>>,
    #[serde(default)]
    pub exact: Option<S<String>>,
    #[serde(default)]
    pub refusal: Option<S<String>>,
    // refusal
    #[serde(default)]
    pub benign_dataset: Option<S<String>>,
    #[serde(default)]
    pub benign_prompt: Option<S<String>>,
    // preference
    #[serde(default)]
    pub chosen: Option<S<String>>,
    #[serde(default)]
    pub rejected: Option<S<String>>,
    // perplexity
    #[serde(default)]
    pub text: Option<S<String>>,
}

/// `choices:` of a multiple-choice task: exactly one of the three keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChoices {
    #[serde(default)]
    pub field: Option<S<String>>,
    #[serde(default)]
    pub fields: Option<S<Vec<S<String>>>>,
    #[serde(default)]
    pub literal: Option<S<Vec<S<String>>>>,
}

/// `answer: {field: NAME, as: index|letter|text}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAnswer {
    pub field: S<String>,
    #[serde(rename = "as")]
    pub format: S<String>,
}
