//! Resolved spec types: every default filled in, every cross-reference checked, every path
//! normalised relative to the project root. Only these types are hashed.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A path relative to the project root, normalised (`/`-separated, no `.` or `..`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RelPath(pub String);

impl RelPath {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn to_path(&self, root: &std::path::Path) -> std::path::PathBuf {
        root.join(&self.0)
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceSpec {
    Cpu,
    Cuda(u32),
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F32,
    F16,
    Bf16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Llama,
    Qwen2,
    Baichuan2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Position {
    Rope,
    Alibi,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitConfig {
    pub hidden_size: u64,
    pub layers: u64,
    pub heads: u64,
    pub kv_heads: u64,
    pub intermediate_size: u64,
    pub max_position: u64,
    pub rope_theta: f64,
    pub norm_eps: f64,
    pub tie_embeddings: bool,
    pub init_std: f64,
    pub position: Position,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelSource {
    /// Trained from scratch with these sizes.
    Init(InitConfig),
    /// A local Hugging Face directory or GGUF file.
    From(RelPath),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub family: Family,
    pub source: ModelSource,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenizerSpec {
    /// A `tokenizer.json` file.
    Path(RelPath),
    /// Byte-level BPE trained on a declared text dataset.
    Train {
        dataset: String,
        vocab_size: u64,
        min_frequency: u64,
    },
    /// The tokenizer shipped with `model.from`.
    FromModel,
}

pub const BUILTIN_TEMPLATES: &[&str] = &["baichuan2", "chatml", "llama2", "llama3", "qwen"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateSpec {
    Builtin(String),
    /// A Jinja file.
    File(RelPath),
    /// The `chat_template` in the model's `tokenizer_config.json`.
    FromModel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// `.txt` (one document per line) or JSONL `{"text"}`.
    Text,
    /// ShareGPT JSONL `{"conversations": [...]}`.
    Sharegpt,
    /// MedicalGPT preference pairs (JSONL).
    Preference,
    /// A JSON document (eval data).
    Json,
    /// JSON lines (eval data).
    Jsonl,
    /// CSV with a header row (eval data).
    Csv,
    /// CSV without a header row (eval data).
    CsvNoheader,
    /// Base model weights (`model.from`): a Hugging Face directory or a GGUF file.
    Model,
    /// Any other pinned input file (a `tokenizer.json`, a Jinja template).
    File,
}

impl Format {
    pub const ALL: &'static [(&'static str, Format)] = &[
        ("csv", Format::Csv),
        ("csv-noheader", Format::CsvNoheader),
        ("json", Format::Json),
        ("jsonl", Format::Jsonl),
        ("preference", Format::Preference),
        ("sharegpt", Format::Sharegpt),
        ("text", Format::Text),
    ];

    pub fn name(self) -> &'static str {
        match self {
            Format::Model => "model",
            Format::File => "file",
            _ => Format::ALL
                .iter()
                .find(|(_, f)| *f == self)
                .map(|(n, _)| *n)
                .unwrap_or("?"),
        }
    }

    /// Whether record counts make sense for this format.
    pub fn has_records(self) -> bool {
        !matches!(self, Format::Model | Format::File)
    }

    pub fn parse(s: &str) -> Option<Format> {
        Format::ALL.iter().find(|(n, _)| *n == s).map(|(_, f)| *f)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DatasetSpec {
    pub path: RelPath,
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageKind {
    Pt,
    Sft,
    Dpo,
}

impl StageKind {
    pub fn name(self) -> &'static str {
        match self {
            StageKind::Pt => "pt",
            StageKind::Sft => "sft",
            StageKind::Dpo => "dpo",
        }
    }
    /// The dataset format a stage of this kind trains on.
    pub fn format(self) -> Format {
        match self {
            StageKind::Pt => Format::Text,
            StageKind::Sft => Format::Sharegpt,
            StageKind::Dpo => Format::Preference,
        }
    }
}

impl fmt::Display for StageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Length {
    Epochs(u64),
    MaxSteps(u64),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Optimizer {
    pub lr: f64,
    pub betas: [f64; 2],
    pub eps: f64,
    pub weight_decay: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    Cosine,
    Linear,
    Constant,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub kind: ScheduleKind,
    pub warmup: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lora {
    pub r: u64,
    pub alpha: f64,
    pub dropout: f64,
    pub targets: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    pub name: String,
    pub kind: StageKind,
    pub datasets: Vec<String>,
    pub length: Length,
    pub batch_size: u64,
    pub grad_accum: u64,
    pub max_len: u64,
    pub optimizer: Optimizer,
    pub schedule: Schedule,
    pub clip_grad: f64,
    pub lora: Option<Lora>,
    pub checkpoint_every: u64,
    pub eval_every: u64,
    pub val_fraction: f64,
    /// DPO's β; `None` for other kinds.
    pub beta: Option<f64>,
    /// Train on the first N examples only (in file order, after tokenisation), like
    /// MedicalGPT's `max_train_samples`. Left out of the canonical form when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_samples: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateRule {
    /// `metric >= min` and/or `metric <= max`.
    Threshold { min: Option<f64>, max: Option<f64> },
    /// No statistically significant drop larger than `max_drop` against the checkpoint
    /// currently promoted on `channel`.
    NoWorseThan {
        channel: String,
        max_drop: f64,
        test: PairedTest,
        alpha: f64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairedTest {
    Mcnemar,
    PairedBootstrap,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    /// `suite/task/metric`.
    pub metric: String,
    /// The stage whose checkpoint is gated.
    pub stage: String,
    pub rule: GateRule,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    MultipleChoice,
    Generate,
    Refusal,
    Preference,
    Perplexity,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub name: String,
    pub kind: TaskKind,
    pub dataset: String,
}

/// A resolved eval suite (`evals/*.yaml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suite {
    pub name: String,
    pub path: RelPath,
    pub datasets: BTreeMap<String, DatasetSpec>,
    pub tasks: Vec<Task>,
}

/// A resolved run spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    pub name: String,
    pub description: String,
    pub seed: u64,
    pub device: DeviceSpec,
    pub dtype: DType,
    pub model: ModelSpec,
    pub tokenizer: TokenizerSpec,
    pub template: TemplateSpec,
    pub datasets: BTreeMap<String, DatasetSpec>,
    pub stages: Vec<Stage>,
    pub evals: Vec<Suite>,
    pub gates: Vec<Gate>,
}

impl Spec {
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// Every input this spec pins in `datasets.lock`: its datasets, its eval suites' data, the
    /// base model, and tokenizer / template files.
    pub fn all_inputs(&self) -> BTreeMap<RelPath, Format> {
        let mut out = BTreeMap::new();
        if let ModelSource::From(p) = &self.model.source {
            out.insert(p.clone(), Format::Model);
        }
        if let TokenizerSpec::Path(p) = &self.tokenizer {
            out.insert(p.clone(), Format::File);
        }
        if let TemplateSpec::File(p) = &self.template {
            out.insert(p.clone(), Format::File);
        }
        for d in self.datasets.values() {
            out.insert(d.path.clone(), d.format);
        }
        for s in &self.evals {
            for d in s.datasets.values() {
                out.insert(d.path.clone(), d.format);
            }
        }
        out
    }
}
