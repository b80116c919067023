//! The step loop shared by every stage: micro-batches with gradient accumulation, global-norm
//! clipping, AdamW, the learning-rate schedule, NaN/inf detection, per-step metrics, a trajectory
//! fingerprint every K steps, and checkpoints that capture everything needed to resume bit for
//! bit (parameters, optimizer moments and step, RNG state, data cursor, metrics so far).

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::backend::Backend;
use super::optim::AdamW;
use super::schedule::lr_at;
use crate::model::{ModelError, Params};
use crate::rng::Rng;
use crate::spec::Stage;

/// A host-side batch of equal-length rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub rows: usize,
    pub len: usize,
    pub inputs: Vec<u32>,
    pub targets: Vec<u32>,
    /// 1.0 where the target counts toward the loss.
    pub mask: Vec<f32>,
    /// DPO: the reference model's summed response log-prob per row (empty otherwise).
    pub ref_logps: Vec<f32>,
}

impl Batch {
    pub fn tensors(&self, dev: &Device) -> Result<(Tensor, Tensor, Tensor), ModelError> {
        let shape = (self.rows, self.len);
        Ok((
            Tensor::from_vec(self.inputs.clone(), shape, dev)?,
            Tensor::from_vec(self.targets.clone(), shape, dev)?,
            Tensor::from_vec(self.mask.clone(), shape, dev)?,
        ))
    }

    /// Tokens whose loss counts.
    pub fn supervised(&self) -> usize {
        self.mask.iter().filter(|&&m| m > 0.0).count()
    }
}

/// Where the data stream is: epoch and position in that epoch's order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub epoch: u64,
    pub pos: u64,
}

/// One step's deterministic metrics (no timings: they go to the logs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    pub step: u64,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub tokens: u64,
    /// Stage-specific extras (DPO rewards, accuracy), sorted by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, f64>,
}

/// Everything besides tensors that a checkpoint holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoopState {
    pub step: u64,
    pub cursor: Cursor,
    pub rng: Rng,
    pub metrics: Vec<StepMetrics>,
    /// (step, blake3 of the parameters) every `fingerprint_every` steps.
    pub trajectory: Vec<(u64, String)>,
    pub eval: Vec<(u64, f64)>,
}

/// A micro-batch's loss as a function of its rows' summed target log-probabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct Objective {
    pub loss: f64,
    /// `d loss / d row sum`, one per row.
    pub d_rows: Vec<f64>,
    /// Stage-specific metrics (DPO rewards, accuracy).
    pub extra: BTreeMap<String, f64>,
}

/// What a stage supplies to the loop.
pub trait StageTask {
    /// The next micro-batch at `cursor`, advancing it.
    fn next_batch(&mut self, cursor: &mut Cursor) -> Result<Batch, ModelError>;
    /// The loss of a micro-batch from each row's `Σ mask · log p(target)`.
    fn objective(&mut self, batch: &Batch, row_logps: &[f64]) -> Result<Objective, ModelError>;
    /// Held-out loss (mean over the validation set), if the stage has one.
    fn eval_loss(&mut self, _model: &mut dyn Backend) -> Result<Option<f64>, ModelError> {
        Ok(None)
    }
}

/// Language modelling (PT and SFT): the mean negative log-likelihood of the supervised tokens.
pub fn lm_objective(batch: &Batch, row_logps: &[f64]) -> Objective {
    let count = (batch.supervised() as f64).max(1.0);
    Objective {
        loss: -row_logps.iter().sum::<f64>() / count,
        d_rows: vec![-1.0 / count; row_logps.len()],
        extra: BTreeMap::new(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{what} is {value} at step {step} of stage `{stage}`")]
    NonFinite {
        /// `loss` or `gradient norm`.
        what: &'static str,
        stage: String,
        step: u64,
        value: f64,
    },
    #[error("checkpoint: {0}")]
    Checkpoint(String),
}

impl From<candle_core::Error> for TrainError {
    fn from(e: candle_core::Error) -> Self {
        TrainError::Model(ModelError::from(e))
    }
}

/// Loop settings derived from the stage.
#[derive(Debug, Clone)]
pub struct LoopConfig {
    pub stage: Stage,
    pub total_steps: u64,
    pub seed: u64,
    pub fingerprint_every: u64,
}

/// Called with the state after step `state.step` when a checkpoint is due.
pub type CheckpointFn<'a> = dyn FnMut(&Params, &AdamW, &LoopState) -> Result<(), TrainError> + 'a;
/// Called after every step with its metrics and the number of supervised tokens (for timings).
pub type ProgressFn<'a> = dyn FnMut(&StepMetrics) + 'a;

pub fn fresh_state(seed: u64, stage: &str) -> LoopState {
    LoopState {
        step: 0,
        cursor: Cursor::default(),
        rng: Rng::for_purpose(seed, &format!("dropout/{stage}")),
        metrics: Vec::new(),
        trajectory: Vec::new(),
        eval: Vec::new(),
    }
}

/// Run the loop from `state` to `cfg.total_steps`, training `model`.
pub fn run(
    cfg: &LoopConfig,
    model: &mut dyn Backend,
    state: &mut LoopState,
    task: &mut dyn StageTask,
    checkpoint: &mut CheckpointFn<'_>,
    progress: &mut ProgressFn<'_>,
) -> Result<(), TrainError> {
    let accum = cfg.stage.grad_accum.max(1);
    // Step 0: the parameters the stage starts from, so `reproduce` can tell a different start
    // (initialisation, parent checkpoint) from a divergence during training.
    if cfg.fingerprint_every > 0 && state.step == 0 && state.trajectory.is_empty() {
        state.trajectory.push((0, model.fingerprint()?));
    }
    while state.step < cfg.total_steps {
        let step = state.step;
        let lr = lr_at(
            cfg.stage.optimizer.lr,
            &cfg.stage.schedule,
            step,
            cfg.total_steps,
        );
        let mut loss_sum = 0f64;
        let mut tokens = 0u64;
        let mut extra_sum: BTreeMap<String, f64> = BTreeMap::new();
        for _ in 0..accum {
            let batch = task.next_batch(&mut state.cursor)?;
            tokens += batch.supervised() as u64;
            let rows = model.forward(&batch, Some(&mut state.rng))?;
            let obj = task.objective(&batch, &rows)?;
            if !obj.loss.is_finite() {
                return Err(TrainError::NonFinite {
                    what: "loss",
                    stage: cfg.stage.name.clone(),
                    step: step + 1,
                    value: obj.loss,
                });
            }
            loss_sum += obj.loss;
            for (k, v) in obj.extra {
                *extra_sum.entry(k).or_insert(0.0) += v;
            }
            let d: Vec<f64> = obj.d_rows.iter().map(|g| g / accum as f64).collect();
            model.backward(&d)?;
        }
        let grad_norm = model.grad_norm()?;
        if !grad_norm.is_finite() {
            return Err(TrainError::NonFinite {
                what: "gradient norm",
                stage: cfg.stage.name.clone(),
                step: step + 1,
                value: grad_norm,
            });
        }
        model.step(lr, clip_factor(grad_norm, cfg.stage.clip_grad))?;
        state.step += 1;
        let m = StepMetrics {
            step: state.step,
            loss: loss_sum / accum as f64,
            lr,
            grad_norm,
            tokens,
            extra: extra_sum
                .into_iter()
                .map(|(k, v)| (k, v / accum as f64))
                .collect(),
        };
        progress(&m);
        state.metrics.push(m);
        if cfg.stage.eval_every > 0
            && state.step.is_multiple_of(cfg.stage.eval_every)
            && let Some(v) = task.eval_loss(model)?
        {
            state.eval.push((state.step, v));
        }
        if cfg.fingerprint_every > 0 && state.step.is_multiple_of(cfg.fingerprint_every) {
            state.trajectory.push((state.step, model.fingerprint()?));
        }
        let every = cfg.stage.checkpoint_every;
        if every > 0 && state.step.is_multiple_of(every) && state.step < cfg.total_steps {
            checkpoint(&model.params()?, &model.optimizer()?, state)?;
        }
    }
    if state.trajectory.last().map(|t| t.0) != Some(state.step) {
        state.trajectory.push((state.step, model.fingerprint()?));
    }
    Ok(())
}

/// The gradient multiplier of global-norm clipping (PyTorch's `clip_grad_norm_` rule: factor
/// `max_norm / (norm + 1e-6)` when below 1; `max_norm` 0 turns clipping off).
pub fn clip_factor(norm: f64, max_norm: f64) -> f64 {
    if max_norm > 0.0 {
        let f = max_norm / (norm + 1e-6);
        if f < 1.0 {
            return f;
        }
    }
    1.0
}
