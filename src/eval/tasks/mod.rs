//! Tasks: a resolved [`Task`] and its records → backend requests → per-sample results and
//! metrics. Nothing here knows about models; a [`Backend`] answers the requests.
//!
//! How a prompt is built (every kind but `perplexity`):
//! 1. the user text is `description` + (few-shot examples, multiple choice only) + the kind's
//!    prompt template, each rendered over the record;
//! 2. with `chat: true` it becomes one user turn through [`Backend::chat_prompt`] (with `system`);
//!    otherwise it is the context as is.
//!
//! All requests of a task go to the backend in one call (the backend batches internally and
//! must answer each request independently of its batch), so results never depend on how a
//! suite is split into calls.
//!
//! Every sample carries a `doc_hash` (blake3 of the record's canonical JSON: keys sorted,
//! compact) so paired tests can match items across checkpoints, and the task's `task_hash`
//! says whether two results are comparable at all: blake3 over a version tag, the kind, the
//! scoring settings that no prompt shows (generation length, stop strings, checks), the refusal
//! lexicon version when refusals are detected, and, in order, every sample's
//! (`doc_hash`, prompt, target). The target is the JSON [`Sample::target`].

mod generate;
mod likelihood;
mod mc;
pub mod prompt;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::data::Record;
use super::metrics::Metric;
use super::{Backend, BackendError};
use crate::spec::{Task, TaskKind, TaskParams};
use prompt::Templates;

pub const TASK_HASH_VERSION: &str = "medrun-task-hash-v1";

/// The result of one task on one checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    pub name: String,
    pub kind: TaskKind,
    /// By metric name (`acc`, `acc_norm`, `pass_rate`, …).
    pub metrics: BTreeMap<String, Metric>,
    pub samples: Vec<Sample>,
    pub task_hash: String,
    /// Number of samples (for `refusal`: harmful plus benign).
    pub n: usize,
}

/// Which dataset of a `refusal` task a sample comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleSet {
    Harmful,
    Benign,
}

/// A scored continuation (multiple choice: each choice; preference: chosen, then rejected).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChoiceScore {
    /// The continuation as scored, delimiter included.
    pub continuation: String,
    /// −∞ for an impossible continuation, written `"-inf"` ([`crate::eval::number`]).
    #[serde(with = "crate::eval::number::float")]
    pub logprob: f64,
    /// Every token of the continuation was the argmax.
    pub greedy: bool,
    pub tokens: usize,
    /// Characters of the choice text without the delimiter (the normaliser of `acc_norm`).
    pub chars: usize,
}

/// Rolling log-likelihood of one text, with the units its perplexities divide by.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RollingCounts {
    #[serde(with = "crate::eval::number::float")]
    pub logprob: f64,
    pub tokens: usize,
    pub words: usize,
    pub bytes: usize,
}

/// One evaluated record, with enough to recompute every metric offline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// 0-based position of the record in its dataset (file order, before `limit`).
    pub index: usize,
    /// `file:line` of the record.
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<SampleSet>,
    pub doc_hash: String,
    /// The context or prompt exactly as sent to the backend.
    pub prompt: String,
    pub prompt_hash: String,
    /// What the sample is scored against, as hashed into the task hash: multiple choice
    /// `{"gold", "continuations"}`, generate `{"exact"}` (null without an `exact` check),
    /// refusal `"refuse"` / `"answer"`, preference `{"chosen", "rejected"}` (continuations),
    /// perplexity `null` (the text is the prompt).
    pub target: Value,
    /// Multiple choice: index of the gold choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gold: Option<usize>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<ChoiceScore>,
    /// Multiple choice: argmax of log-likelihood, and of log-likelihood per character.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pred: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pred_norm: Option<usize>,
    /// Generated text (generate, refusal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Generate: each configured check's outcome (`must_include`, `must_not_include`, `exact`,
    /// `refusal`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checks: BTreeMap<String, bool>,
    /// Whether the output was detected as a refusal, and the phrase that decided it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal_match: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling: Option<RollingCounts>,
    /// This sample's value of each mean-aggregated metric (0/1 for accuracies and rates); the
    /// task metric is the mean over the samples that have it. Perplexity samples have none
    /// (see `rolling`).
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        with = "crate::eval::number::map"
    )]
    pub scores: BTreeMap<String, f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("task `{task}`: {at}: cannot render `{field}`: {detail}")]
    Render {
        task: String,
        at: String,
        field: &'static str,
        detail: String,
        #[source]
        source: minijinja::Error,
    },
    #[error("task `{task}`: {at}: field `{field}`: {message}")]
    Record {
        task: String,
        at: String,
        field: String,
        message: String,
        hint: String,
    },
    #[error(
        "task `{task}`: {needed} few-shot examples needed for {at}, but only {available} other records exist"
    )]
    FewShot {
        task: String,
        at: String,
        needed: u64,
        available: usize,
    },
    #[error("task `{task}`: no records to evaluate")]
    Empty { task: String },
    #[error("task `{task}`: a `{kind}` task needs its benign records")]
    NoBenign { task: String, kind: TaskKind },
    #[error("task `{task}`: pattern {pattern:?}: {source}")]
    Regex {
        task: String,
        pattern: String,
        #[source]
        source: regex::Error,
    },
    #[error("task `{task}`: the backend failed: {source}")]
    Backend {
        task: String,
        #[source]
        source: BackendError,
    },
    #[error("task `{task}`: the backend answered {got} for {expected}")]
    BackendShape {
        task: String,
        expected: String,
        got: String,
    },
    #[error("task `{task}`: {at}: the backend returned {what} {value}")]
    BadNumber {
        task: String,
        at: String,
        what: &'static str,
        value: String,
    },
}

impl EvalError {
    pub fn hint(&self) -> String {
        match self {
            EvalError::Render { .. } => "every record must have the fields the task's templates use; check the field names (CSV headers, JSON keys) of that record".into(),
            EvalError::Record { hint, .. } => hint.clone(),
            EvalError::FewShot { .. } => "lower `num_fewshot` or use a larger dataset".into(),
            EvalError::Empty { .. } => "check the dataset and the task's `limit`".into(),
            EvalError::NoBenign { .. } => "pass the records of the task's `benign_dataset`".into(),
            EvalError::Regex { .. } => "the suite should have been resolved first: run `medrun plan`".into(),
            EvalError::Backend { .. } => "see the cause above; the model backend could not score the requests".into(),
            EvalError::BackendShape { .. } | EvalError::BadNumber { .. } => {
                "this is a bug in the model backend: please report it".into()
            }
        }
    }
}

/// Evaluate `task` on `records` (its dataset, in file order; `limit` is applied here) and, for a
/// `refusal` task, `benign` (its benign dataset). `seed` is the run's seed: decoding is greedy
/// and few-shot draws use the task's `fewshot_seed`, so that checkpoints from different runs are
/// scored on identical prompts; no result depends on it today.
pub fn run_task(
    task: &Task,
    records: &[Record],
    benign: Option<&[Record]>,
    backend: &mut dyn Backend,
    seed: u64,
) -> Result<TaskResult, EvalError> {
    let _ = seed;
    let mut run = Run::new(task, backend)?;
    let take = |rs: &[Record]| -> usize {
        let n = rs.len();
        task.limit
            .map(|l| usize::try_from(l).unwrap_or(usize::MAX).min(n))
            .unwrap_or(n)
    };
    let n = take(records);
    if n == 0 {
        return Err(run.empty());
    }
    let (samples, metrics, scoring) = match &task.params {
        TaskParams::MultipleChoice(p) => mc::run_mc(&mut run, p, records, n)?,
        TaskParams::Generate(p) => generate::run_generate(&mut run, p, records, n)?,
        TaskParams::Refusal(p) => {
            let Some(benign) = benign else {
                return Err(EvalError::NoBenign {
                    task: task.name.clone(),
                    kind: task.kind,
                });
            };
            let nb = take(benign);
            if nb == 0 {
                return Err(run.empty());
            }
            generate::run_refusal(&mut run, p, records, n, &benign[..nb])?
        }
        TaskParams::Preference(p) => likelihood::run_preference(&mut run, p, records, n)?,
        TaskParams::Perplexity(_) => likelihood::run_perplexity(&mut run, records, n)?,
    };
    let task_hash = task_hash(task.kind, &scoring, &samples);
    Ok(TaskResult {
        name: task.name.clone(),
        kind: task.kind,
        metrics,
        n: samples.len(),
        samples,
        task_hash,
    })
}

/// Kind-specific settings that change results without showing in any prompt or target, and
/// whether refusals are detected (then the lexicon version is hashed too).
pub(crate) struct Scoring {
    pub settings: Value,
    pub uses_lexicon: bool,
}

type Outcome = (Vec<Sample>, BTreeMap<String, Metric>, Scoring);

fn frame(h: &mut blake3::Hasher, bytes: &[u8]) {
    h.update(&(bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

fn task_hash(kind: TaskKind, scoring: &Scoring, samples: &[Sample]) -> String {
    let mut h = blake3::Hasher::new();
    frame(&mut h, TASK_HASH_VERSION.as_bytes());
    frame(&mut h, kind.name().as_bytes());
    frame(&mut h, scoring.settings.to_string().as_bytes());
    if scoring.uses_lexicon {
        frame(
            &mut h,
            format!("refusal-lexicon-{}", super::refusal::LEXICON_VERSION).as_bytes(),
        );
    }
    h.update(&(samples.len() as u64).to_le_bytes());
    for s in samples {
        frame(&mut h, s.doc_hash.as_bytes());
        frame(&mut h, s.prompt.as_bytes());
        frame(&mut h, s.target.to_string().as_bytes());
    }
    h.finalize().to_hex().to_string()
}

/// blake3 of the record's canonical JSON (keys sorted, compact).
pub fn doc_hash(record: &Record) -> String {
    let json = Value::Object(record.fields.clone()).to_string();
    blake3::hash(json.as_bytes()).to_hex().to_string()
}

pub(crate) fn text_hash(text: &str) -> String {
    blake3::hash(text.as_bytes()).to_hex().to_string()
}

/// A sample with the fields every kind fills.
pub(crate) fn sample(index: usize, record: &Record, prompt: String, target: Value) -> Sample {
    Sample {
        index,
        source: record.to_string(),
        set: None,
        doc_hash: doc_hash(record),
        prompt_hash: text_hash(&prompt),
        prompt,
        target,
        gold: None,
        choices: Vec::new(),
        pred: None,
        pred_norm: None,
        output: None,
        checks: BTreeMap::new(),
        refused: None,
        refusal_match: None,
        rolling: None,
        scores: BTreeMap::new(),
    }
}

/// One task being run: its compiled templates and the backend.
pub(crate) struct Run<'a> {
    pub task: &'a Task,
    templates: Templates,
    pub backend: &'a mut dyn Backend,
}

impl<'a> Run<'a> {
    fn new(task: &'a Task, backend: &'a mut dyn Backend) -> Result<Run<'a>, EvalError> {
        let mut templates = Templates::new();
        let mut sources: Vec<(&'static str, &str)> = vec![("description", &task.description)];
        match &task.params {
            TaskParams::MultipleChoice(p) => sources.push(("prompt", &p.prompt)),
            TaskParams::Generate(p) => {
                sources.push(("prompt", &p.prompt));
                if let Some(e) = &p.exact {
                    sources.push(("exact", e));
                }
            }
            TaskParams::Refusal(p) => {
                sources.push(("prompt", &p.prompt));
                sources.push(("benign_prompt", &p.benign_prompt));
            }
            TaskParams::Preference(p) => {
                sources.push(("prompt", &p.prompt));
                sources.push(("chosen", &p.chosen));
                sources.push(("rejected", &p.rejected));
            }
            TaskParams::Perplexity(p) => sources.push(("text", &p.text)),
        }
        for (field, source) in sources {
            templates
                .add(field, source)
                .map_err(|e| EvalError::Render {
                    task: task.name.clone(),
                    at: "the suite".into(),
                    field,
                    detail: prompt::describe(&e),
                    source: e,
                })?;
        }
        Ok(Run {
            task,
            templates,
            backend,
        })
    }

    fn empty(&self) -> EvalError {
        EvalError::Empty {
            task: self.task.name.clone(),
        }
    }

    /// Render template `field` over `record`.
    pub fn render(&self, field: &'static str, record: &Record) -> Result<String, EvalError> {
        self.templates
            .render(field, &record.fields)
            .map_err(|e| EvalError::Render {
                task: self.task.name.clone(),
                at: record.to_string(),
                field,
                detail: prompt::describe(&e),
                source: e,
            })
    }

    /// `description` + `body` as the user text, then the chat template when `chat` is on.
    pub fn context(&self, record: &Record, body: &str) -> Result<String, EvalError> {
        let user = format!("{}{body}", self.render("description", record)?);
        if self.task.chat {
            self.backend
                .chat_prompt(&user, self.task.system.as_deref())
                .map_err(|e| self.backend_error(e))
        } else {
            Ok(user)
        }
    }

    pub fn backend_error(&self, source: BackendError) -> EvalError {
        EvalError::Backend {
            task: self.task.name.clone(),
            source,
        }
    }

    pub fn shape(&self, expected: String, got: String) -> EvalError {
        EvalError::BackendShape {
            task: self.task.name.clone(),
            expected,
            got,
        }
    }

    pub fn record_error(
        &self,
        record: &Record,
        field: &str,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> EvalError {
        EvalError::Record {
            task: self.task.name.clone(),
            at: record.to_string(),
            field: field.into(),
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// A log-probability must be a number (−∞ is allowed: an impossible continuation).
    pub fn check_logprob(&self, record: &Record, value: f64) -> Result<f64, EvalError> {
        if value.is_nan() || value == f64::INFINITY {
            return Err(EvalError::BadNumber {
                task: self.task.name.clone(),
                at: record.to_string(),
                what: "log-probability",
                value: value.to_string(),
            });
        }
        Ok(value)
    }
}
