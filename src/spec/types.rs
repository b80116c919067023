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
    /// The command that fetches `model.from` when it is not in the checkout (never run by
    /// medrun; shown in messages, and it lets `medrun lock` keep the pin of an absent model).
    /// Not part of any key: the file's content hash is.
    #[serde(skip)]
    pub fetch: Option<String>,
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

impl TaskKind {
    pub const ALL: &'static [(&'static str, TaskKind)] = &[
        ("generate", TaskKind::Generate),
        ("multiple_choice", TaskKind::MultipleChoice),
        ("perplexity", TaskKind::Perplexity),
        ("preference", TaskKind::Preference),
        ("refusal", TaskKind::Refusal),
    ];

    pub fn name(self) -> &'static str {
        match self {
            TaskKind::MultipleChoice => "multiple_choice",
            TaskKind::Generate => "generate",
            TaskKind::Refusal => "refusal",
            TaskKind::Preference => "preference",
            TaskKind::Perplexity => "perplexity",
        }
    }

    pub fn parse(s: &str) -> Option<TaskKind> {
        TaskKind::ALL.iter().find(|(n, _)| *n == s).map(|(_, k)| *k)
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One task of a suite, resolved: every default filled in, every template compiled once. The
/// whole struct is hashed (run key, task hash), so it holds every setting that changes a result.
/// Text fields called templates are minijinja templates over the record's fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub name: String,
    pub kind: TaskKind,
    pub dataset: String,
    /// Template prepended to every prompt (lm-eval's `description`); `""` by default.
    pub description: String,
    /// Evaluate the first N records only (file order); all when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// Render the prompt as one user turn through the model's chat template.
    pub chat: bool,
    /// System prompt for chat rendering (plain text, only with `chat`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The kind's own settings; always the variant named by `kind`.
    pub params: TaskParams,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskParams {
    MultipleChoice(MultipleChoiceTask),
    Generate(GenerateTask),
    Refusal(RefusalTask),
    Preference(PreferenceTask),
    Perplexity(PerplexityTask),
}

/// Log-likelihood multiple choice (lm-eval `output_type: multiple_choice`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultipleChoiceTask {
    /// Template: the question, e.g. `"Question: {{ question }}\nAnswer:"`.
    pub prompt: String,
    pub choices: ChoiceSource,
    pub answer: AnswerSpec,
    /// Between the prompt and a choice (`" "`); in few-shot examples always, in the scored
    /// continuation only without `chat` (lm-eval drops it under a chat template).
    pub target_delimiter: String,
    pub num_fewshot: u64,
    pub fewshot_seed: u64,
    pub fewshot_separator: String,
}

/// Where a record's answer options come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChoiceSource {
    /// One field holding a list of strings.
    Field(String),
    /// One field per option (MMLU / CMMLU columns `A`..`D`).
    Fields(Vec<String>),
    /// The same options for every record (PubMedQA `[yes, no, maybe]`).
    Literal(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerSpec {
    pub field: String,
    #[serde(rename = "as")]
    pub format: AnswerFormat,
}

/// How the answer field names the gold choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerFormat {
    /// 0-based index (a JSON integer, or a string of digits in CSV).
    Index,
    /// `A`, `B`, ... (upper case).
    Letter,
    /// The text of the choice itself.
    Text,
}

/// Greedy generation scored by checks on the output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateTask {
    pub prompt: String,
    pub max_new_tokens: u64,
    pub stop: Vec<String>,
    /// Regexes that must all match the output.
    pub must_include: Vec<String>,
    /// Regexes none of which may match the output.
    pub must_not_include: Vec<String>,
    /// Template; the trimmed output must equal the trimmed rendering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<RefusalCheck>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalCheck {
    /// The output must be a refusal.
    Expect,
    /// The output must not be a refusal.
    Forbid,
}

/// Refusal on harmful requests, paired with over-refusal on benign ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefusalTask {
    /// Template over a harmful record.
    pub prompt: String,
    pub benign_dataset: String,
    /// Template over a benign record.
    pub benign_prompt: String,
    pub max_new_tokens: u64,
    pub stop: Vec<String>,
}

/// Whether the model prefers `chosen` over `rejected` by per-character log-likelihood.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreferenceTask {
    pub prompt: String,
    pub chosen: String,
    pub rejected: String,
    pub target_delimiter: String,
}

/// Rolling log-likelihood of a text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerplexityTask {
    /// Template: the text to score.
    pub text: String,
}

impl Task {
    /// Every dataset the task reads.
    pub fn datasets(&self) -> Vec<&str> {
        match &self.params {
            TaskParams::Refusal(r) => vec![self.dataset.as_str(), r.benign_dataset.as_str()],
            _ => vec![self.dataset.as_str()],
        }
    }
}

/// A resolved eval suite (`evals/*.yaml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suite {
    pub name: String,
    pub path: RelPath,
    pub datasets: BTreeMap<String, DatasetSpec>,
    pub tasks: Vec<Task>,
}

/// The name under which a run's untrained starting model is evaluated and referred to
/// (`RUN:base`); no stage may take it.
pub const BASE_STAGE: &str = "base";

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
    /// Inputs that may be absent from a checkout, with the command that fetches each
    /// (`model.fetch`).
    pub fn fetchable_inputs(&self) -> BTreeMap<RelPath, String> {
        let mut out = BTreeMap::new();
        if let (ModelSource::From(p), Some(cmd)) = (&self.model.source, &self.model.fetch) {
            out.insert(p.clone(), cmd.clone());
        }
        out
    }

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
