//! Evaluation: suites of tasks scored on a checkpoint, the pure promotion gate, and the
//! results that promotion reads.
//!
//! The layers, from the model up:
//! - a [`Backend`] answers three kinds of request (log-likelihood of continuations after a
//!   context, greedy or seeded generation, rolling log-likelihood of a text) — the model-side
//!   implementation lives in `backend.rs`;
//! - `tasks` turns a task's records into requests and the answers into per-sample results and
//!   metrics, independent of any model;
//! - `suite` runs a whole suite on a checkpoint and writes the results artifacts;
//! - `gate` decides promotion from metrics, as a pure function.

pub mod backend;
pub mod checkpoint;
pub mod data;
pub mod gate;
pub mod metrics;
pub mod number;
pub mod refusal;
pub mod scores;
pub mod stats;
pub mod suite;
pub mod tasks;

use serde::{Deserialize, Serialize};

/// Log-likelihood of each continuation after one shared context (lm-evaluation-harness
/// `loglikelihood`), tokenised as lm-eval's `_encode_pair` does (see `backend`'s module docs):
/// a choice `" Paris"` is scored on the tokens that follow the context's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LlRequest {
    pub context: String,
    pub continuations: Vec<String>,
}

/// The answer for one continuation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LlScore {
    /// Sum of the continuation tokens' log-probabilities (natural log).
    pub logprob: f64,
    /// Whether every continuation token is the argmax at its position (lm-eval's `is_greedy`).
    pub greedy: bool,
    /// Number of continuation tokens.
    pub tokens: usize,
}

/// Decoding: greedy when `sample` is `None`, otherwise temperature sampling from a seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenRequest {
    pub prompt: String,
    pub max_new_tokens: usize,
    /// Generation stops before the first occurrence of any of these strings (not included).
    pub stop: Vec<String>,
    pub sample: Option<Sampling>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    pub temperature: f64,
    pub seed: u64,
}

/// Rolling log-likelihood of a whole text (perplexity), in windows of the model's context.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RollingScore {
    pub logprob: f64,
    pub tokens: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct BackendError {
    pub message: String,
}

/// What scores requests. Answers must not depend on how requests are grouped into calls or
/// batches: the same request always gets bit-identical numbers.
pub trait Backend {
    fn loglikelihood(&mut self, reqs: &[LlRequest]) -> Result<Vec<Vec<LlScore>>, BackendError>;
    fn generate(&mut self, reqs: &[GenRequest]) -> Result<Vec<String>, BackendError>;
    fn rolling(&mut self, texts: &[String]) -> Result<Vec<RollingScore>, BackendError>;
    /// Render a one-turn user message with the model's chat template, ending with the
    /// generation prompt (for tasks with `chat: true`).
    fn chat_prompt(&self, user: &str, system: Option<&str>) -> Result<String, BackendError>;
}
