//! The step loop shared by every stage: micro-batches with gradient accumulation, global-norm
//! clipping, AdamW, the learning-rate schedule, NaN/inf detection, per-step metrics, a trajectory
//! fingerprint every K steps, and checkpoints that capture everything needed to resume bit for
//! bit (parameters, optimizer moments and step, RNG state, data cursor, metrics so far).

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::optim::{self, AdamW};
use super::schedule::lr_at;
use crate::model::transformer::{Forward, LoraForward};
use crate::model::{ModelError, Params, Transformer};
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

/// What a stage supplies to the loop.
pub trait StageTask {
    /// The next micro-batch at `cursor`, advancing it.
    fn next_batch(&mut self, cursor: &mut Cursor) -> Result<Batch, ModelError>;
    /// The loss of one micro-batch (a scalar tensor) plus extra metrics.
    fn loss(
        &mut self,
        model: &Transformer,
        params: &Params,
        batch: &Batch,
        f: &mut Forward<'_>,
    ) -> Result<(Tensor, BTreeMap<String, f64>), ModelError>;
    /// Held-out loss (mean over the validation set), if the stage has one.
    fn eval_loss(
        &mut self,
        _model: &Transformer,
        _params: &Params,
    ) -> Result<Option<f64>, ModelError> {
        Ok(None)
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

/// Run the loop from `state` to `cfg.total_steps`.
#[allow(clippy::too_many_arguments)]
pub fn run(
    cfg: &LoopConfig,
    model: &Transformer,
    params: &Params,
    lora: Option<&LoraForward>,
    opt: &mut AdamW,
    state: &mut LoopState,
    task: &mut dyn StageTask,
    checkpoint: &mut CheckpointFn<'_>,
    progress: &mut ProgressFn<'_>,
) -> Result<(), TrainError> {
    let trainable = params.trainable();
    let accum = cfg.stage.grad_accum.max(1);
    // Step 0: the parameters the stage starts from, so `reproduce` can tell a different start
    // (initialisation, parent checkpoint) from a divergence during training.
    if cfg.fingerprint_every > 0 && state.step == 0 && state.trajectory.is_empty() {
        state.trajectory.push((0, params.fingerprint()?));
    }
    while state.step < cfg.total_steps {
        let step = state.step;
        let lr = lr_at(
            cfg.stage.optimizer.lr,
            &cfg.stage.schedule,
            step,
            cfg.total_steps,
        );
        let mut grads: BTreeMap<String, Tensor> = BTreeMap::new();
        let mut loss_sum = 0f64;
        let mut tokens = 0u64;
        let mut extra_sum: BTreeMap<String, f64> = BTreeMap::new();
        for _ in 0..accum {
            let batch = task.next_batch(&mut state.cursor)?;
            tokens += batch.supervised() as u64;
            let mut f = Forward {
                lora,
                rng: Some(&mut state.rng),
            };
            let (loss, extra) = task.loss(model, params, &batch, &mut f)?;
            let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            if !value.is_finite() {
                return Err(TrainError::NonFinite {
                    what: "loss",
                    stage: cfg.stage.name.clone(),
                    step: step + 1,
                    value,
                });
            }
            loss_sum += value;
            for (k, v) in extra {
                *extra_sum.entry(k).or_insert(0.0) += v;
            }
            let scaled = if accum > 1 {
                loss.affine(1.0 / accum as f64, 0.0)?
            } else {
                loss
            };
            let g = scaled.backward().map_err(ModelError::from)?;
            for (name, var) in &trainable {
                let Some(gt) = g.get(var.as_tensor()) else {
                    continue;
                };
                let acc = match grads.remove(name.as_str()) {
                    Some(prev) => (prev + gt).map_err(ModelError::from)?,
                    None => gt.clone(),
                };
                grads.insert((*name).clone(), acc);
            }
        }
        for (name, var) in &trainable {
            if !grads.contains_key(name.as_str()) {
                grads.insert(
                    (*name).clone(),
                    var.as_tensor().zeros_like().map_err(ModelError::from)?,
                );
            }
        }
        let grad_norm = optim::clip(&mut grads, cfg.stage.clip_grad)?;
        if !grad_norm.is_finite() {
            return Err(TrainError::NonFinite {
                what: "gradient norm",
                stage: cfg.stage.name.clone(),
                step: step + 1,
                value: grad_norm,
            });
        }
        opt.step(&trainable, &grads, lr)?;
        drop(grads);
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
            && let Some(v) = task.eval_loss(model, params)?
        {
            state.eval.push((state.step, v));
        }
        if cfg.fingerprint_every > 0 && state.step.is_multiple_of(cfg.fingerprint_every) {
            state.trajectory.push((state.step, params.fingerprint()?));
        }
        let every = cfg.stage.checkpoint_every;
        if every > 0 && state.step.is_multiple_of(every) && state.step < cfg.total_steps {
            checkpoint(params, opt, state)?;
        }
    }
    if state.trajectory.last().map(|t| t.0) != Some(state.step) {
        state.trajectory.push((state.step, params.fingerprint()?));
    }
    Ok(())
}

/// Language-modelling loss (PT and SFT): masked next-token cross-entropy.
pub fn lm_loss(
    model: &Transformer,
    params: &Params,
    batch: &Batch,
    f: &mut Forward<'_>,
) -> Result<Tensor, ModelError> {
    let (inp, tgt, mask) = batch.tensors(&model.device)?;
    let logits = model.forward(params, &inp, f)?;
    crate::model::transformer::masked_cross_entropy(&logits, &tgt, &mask)
}
