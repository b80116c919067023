//! Stage tasks over tokenised examples: language modelling (PT blocks, SFT conversations with an
//! assistant-only mask) and DPO (sigmoid loss against cached reference log-probabilities).
//!
//! Examples are visited in a fresh seeded order each epoch (`shuffle/<stage>/<epoch>`); a batch
//! takes the next `batch_size` examples, crossing into the next epoch when one runs out. Rows are
//! right-padded to the longest row of the batch with a zero mask, which a causal model cannot see
//! from earlier positions.

use std::collections::BTreeMap;

use super::backend::Backend;
use super::engine::{Batch, Cursor, Objective, StageTask, lm_objective};
use crate::model::ModelError;
use crate::rng::Rng;

/// The order of `n` examples in `epoch` of `stage`, from the seed.
pub fn epoch_order(n: usize, seed: u64, stage: &str, epoch: u64) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    Rng::for_purpose(seed, &format!("shuffle/{stage}/{epoch}")).shuffle(&mut v);
    v
}

/// Walks examples epoch by epoch in seeded order.
#[derive(Debug, Clone)]
pub struct Sampler {
    n: usize,
    seed: u64,
    stage: String,
    orders: BTreeMap<u64, Vec<usize>>,
}

impl Sampler {
    pub fn new(n: usize, seed: u64, stage: &str) -> Sampler {
        Sampler {
            n,
            seed,
            stage: stage.to_string(),
            orders: BTreeMap::new(),
        }
    }

    /// The next example index, advancing `c`.
    pub fn next(&mut self, c: &mut Cursor) -> usize {
        if c.pos as usize >= self.n {
            c.epoch += 1;
            c.pos = 0;
        }
        let (n, seed, stage) = (self.n, self.seed, self.stage.clone());
        // Keep only the current epoch's order.
        self.orders.retain(|e, _| *e >= c.epoch);
        let order = self
            .orders
            .entry(c.epoch)
            .or_insert_with(|| epoch_order(n, seed, &stage, c.epoch));
        let i = order[c.pos as usize];
        c.pos += 1;
        i
    }
}

/// One supervised sequence: token ids and, per token, whether predicting it counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LmExample {
    pub ids: Vec<u32>,
    pub mask: Vec<bool>,
}

/// Rows → a padded batch of next-token pairs.
pub fn lm_batch(rows: &[&LmExample], pad: u32) -> Batch {
    let len = rows
        .iter()
        .map(|r| r.ids.len().saturating_sub(1))
        .max()
        .unwrap_or(0)
        .max(1);
    let mut b = Batch {
        rows: rows.len(),
        len,
        inputs: Vec::with_capacity(rows.len() * len),
        targets: Vec::with_capacity(rows.len() * len),
        mask: Vec::with_capacity(rows.len() * len),
        ref_logps: Vec::new(),
    };
    for r in rows {
        let n = r.ids.len().saturating_sub(1);
        for i in 0..len {
            if i < n {
                b.inputs.push(r.ids[i]);
                b.targets.push(r.ids[i + 1]);
                b.mask.push(if r.mask[i + 1] { 1.0 } else { 0.0 });
            } else {
                b.inputs.push(pad);
                b.targets.push(pad);
                b.mask.push(0.0);
            }
        }
    }
    b
}

/// PT and SFT: masked next-token cross-entropy.
pub struct LmTask {
    pub examples: Vec<LmExample>,
    pub val: Vec<LmExample>,
    pub batch_size: usize,
    pub pad: u32,
    pub sampler: Sampler,
}

impl StageTask for LmTask {
    fn next_batch(&mut self, c: &mut Cursor) -> Result<Batch, ModelError> {
        let idx: Vec<usize> = (0..self.batch_size).map(|_| self.sampler.next(c)).collect();
        let rows: Vec<&LmExample> = idx.iter().map(|&i| &self.examples[i]).collect();
        Ok(lm_batch(&rows, self.pad))
    }

    fn objective(&mut self, batch: &Batch, row_logps: &[f64]) -> Result<Objective, ModelError> {
        Ok(lm_objective(batch, row_logps))
    }

    /// Measured with LoRA adapters on (the backend's own), dropout off.
    fn eval_loss(&mut self, model: &mut dyn Backend) -> Result<Option<f64>, ModelError> {
        if self.val.is_empty() {
            return Ok(None);
        }
        // One example at a time: the result cannot depend on batch composition.
        let mut total = 0f64;
        let mut count = 0f64;
        for ex in &self.val {
            let b = lm_batch(&[ex], self.pad);
            total -= model.score(&b)?.iter().sum::<f64>();
            count += b.supervised() as f64;
        }
        Ok(Some(if count > 0.0 { total / count } else { 0.0 }))
    }
}

/// One preference pair, tokenised: the prompt, and each response (ending with EOS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefExample {
    pub prompt: Vec<u32>,
    pub chosen: Vec<u32>,
    pub rejected: Vec<u32>,
}

fn pref_rows(e: &PrefExample) -> (LmExample, LmExample) {
    let row = |resp: &[u32]| {
        let mut ids = e.prompt.clone();
        ids.extend_from_slice(resp);
        let mut mask = vec![false; e.prompt.len()];
        mask.extend(std::iter::repeat_n(true, resp.len()));
        LmExample { ids, mask }
    };
    (row(&e.chosen), row(&e.rejected))
}

/// Summed response log-probabilities of (chosen, rejected) for one pair.
pub fn pair_logps(model: &mut dyn Backend, e: &PrefExample) -> Result<(f64, f64), ModelError> {
    let (c, r) = pref_rows(e);
    let lp = model.score(&lm_batch(&[&c, &r], 0))?;
    Ok((lp[0], lp[1]))
}

/// DPO with the sigmoid loss: `-log σ(β·((πc − rc) − (πr − rr)))`, where π are the policy's
/// summed response log-probs and r the frozen reference's, computed once per pair and cached.
pub struct DpoTask {
    pub examples: Vec<PrefExample>,
    /// Reference (chosen, rejected) log-probs per example.
    pub reference: Vec<(f32, f32)>,
    pub beta: f64,
    pub batch_size: usize,
    pub pad: u32,
    pub sampler: Sampler,
}

impl DpoTask {
    /// The reference log-probs under `reference` (a scorer over the stage's starting model; with
    /// LoRA, the base without adapters), one pair at a time (independent of batching).
    pub fn cache_reference(
        reference: &mut dyn Backend,
        examples: &[PrefExample],
    ) -> Result<Vec<(f32, f32)>, ModelError> {
        examples
            .iter()
            .map(|e| pair_logps(reference, e).map(|(c, r)| (c as f32, r as f32)))
            .collect()
    }
}

/// `log σ(x)`, stable for large |x|.
fn log_sigmoid(x: f64) -> f64 {
    x.min(0.0) - (-x.abs()).exp().ln_1p()
}

impl StageTask for DpoTask {
    fn next_batch(&mut self, c: &mut Cursor) -> Result<Batch, ModelError> {
        let idx: Vec<usize> = (0..self.batch_size).map(|_| self.sampler.next(c)).collect();
        let pairs: Vec<(LmExample, LmExample)> =
            idx.iter().map(|&i| pref_rows(&self.examples[i])).collect();
        let mut rows: Vec<&LmExample> = pairs.iter().map(|p| &p.0).collect();
        rows.extend(pairs.iter().map(|p| &p.1));
        let mut b = lm_batch(&rows, self.pad);
        b.ref_logps = idx.iter().map(|&i| self.reference[i].0).collect();
        b.ref_logps.extend(idx.iter().map(|&i| self.reference[i].1));
        Ok(b)
    }

    fn objective(&mut self, batch: &Batch, lp: &[f64]) -> Result<Objective, ModelError> {
        let half = batch.rows / 2;
        if lp.len() != batch.rows || batch.ref_logps.len() != batch.rows || half == 0 {
            return Err(ModelError::Config(format!(
                "DPO batch of {} rows with {} log-probs and {} reference log-probs",
                batch.rows,
                lp.len(),
                batch.ref_logps.len()
            )));
        }
        let beta = self.beta;
        let mut d_rows = vec![0f64; batch.rows];
        let (mut loss, mut rc, mut rr, mut margins, mut right) = (0f64, 0f64, 0f64, 0f64, 0usize);
        for i in 0..half {
            // policy − reference, per response
            let c = lp[i] - batch.ref_logps[i] as f64;
            let r = lp[half + i] - batch.ref_logps[half + i] as f64;
            let margin = beta * (c - r);
            loss -= log_sigmoid(margin);
            // d(−log σ(x))/dx = −σ(−x)
            let g = -(1.0 / (1.0 + margin.exp())) * beta / half as f64;
            d_rows[i] = g;
            d_rows[half + i] = -g;
            rc += beta * c;
            rr += beta * r;
            margins += margin;
            right += usize::from(margin > 0.0);
        }
        let n = half as f64;
        let mut extra = BTreeMap::new();
        extra.insert("rewards/chosen".into(), rc / n);
        extra.insert("rewards/rejected".into(), rr / n);
        extra.insert("rewards/margins".into(), margins / n);
        extra.insert("rewards/accuracy".into(), right as f64 / n);
        Ok(Objective {
            loss: loss / n,
            d_rows,
            extra,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_visits_every_example_once_per_epoch() {
        let mut s = Sampler::new(7, 3, "sft");
        let mut c = Cursor::default();
        let mut first: Vec<usize> = (0..7).map(|_| s.next(&mut c)).collect();
        let mut second: Vec<usize> = (0..7).map(|_| s.next(&mut c)).collect();
        assert_eq!(c.epoch, 1);
        assert_ne!(first, second, "each epoch has its own order");
        first.sort();
        second.sort();
        assert_eq!(first, (0..7).collect::<Vec<_>>());
        assert_eq!(second, (0..7).collect::<Vec<_>>());
    }

    #[test]
    fn dpo_learns_to_prefer_chosen() {
        use crate::model::{ModelConfig, Params};
        use crate::spec::{
            Family, InitConfig, Length, Optimizer, Position, Schedule, ScheduleKind, Stage,
            StageKind,
        };
        use crate::train::backend::{Kernels, build, scorer};
        use crate::train::engine::{self, LoopConfig, LoopState, TrainError};
        use crate::train::optim::AdamW;
        use candle_core::Device;
        let init = InitConfig {
            hidden_size: 32,
            layers: 1,
            heads: 4,
            kv_heads: 4,
            intermediate_size: 48,
            max_position: 32,
            rope_theta: 10000.0,
            norm_eps: 1e-5,
            tie_embeddings: true,
            init_std: 0.02,
            position: Position::Rope,
        };
        let cfg = ModelConfig::from_init(Family::Llama, &init, 20);
        let dev = Device::Cpu;
        let params = Params::init(&cfg, 4, &dev).unwrap();
        let examples: Vec<PrefExample> = (0..8u32)
            .map(|i| PrefExample {
                prompt: vec![1, 2 + i % 5, 3],
                chosen: vec![10, 11, 12, 19],
                rejected: vec![15, 14, 13, 19],
            })
            .collect();
        let mut reference = scorer(Kernels::Fused, &cfg, &dev, &params).unwrap();
        let refs = DpoTask::cache_reference(reference.as_mut(), &examples).unwrap();
        let mut task = DpoTask {
            examples,
            reference: refs,
            beta: 0.1,
            batch_size: 4,
            pad: 0,
            sampler: Sampler::new(8, 1, "dpo"),
        };
        let stage = Stage {
            name: "dpo".into(),
            kind: StageKind::Dpo,
            datasets: vec![],
            length: Length::MaxSteps(15),
            batch_size: 4,
            grad_accum: 1,
            max_len: 16,
            optimizer: Optimizer {
                lr: 5e-3,
                betas: [0.9, 0.999],
                eps: 1e-8,
                weight_decay: 0.0,
            },
            schedule: Schedule {
                kind: ScheduleKind::Constant,
                warmup: 0,
            },
            clip_grad: 1.0,
            lora: None,
            checkpoint_every: 0,
            eval_every: 0,
            val_fraction: 0.0,
            beta: Some(0.1),
            max_samples: None,
        };
        let lc = LoopConfig {
            stage: stage.clone(),
            total_steps: 15,
            seed: 1,
            fingerprint_every: 0,
        };
        let opt = AdamW::new(stage.optimizer.clone());
        let mut model = build(Kernels::Fused, &cfg, &dev, &params, None, &opt).unwrap();
        let mut state = engine::fresh_state(1, "dpo");
        let mut ck = |_: &Params, _: &AdamW, _: &LoopState| -> Result<(), TrainError> { Ok(()) };
        engine::run(
            &lc,
            model.as_mut(),
            &mut state,
            &mut task,
            &mut ck,
            &mut |_| {},
        )
        .unwrap();
        let first = &state.metrics[0];
        let last = state.metrics.last().unwrap();
        assert!(
            (first.loss - std::f64::consts::LN_2).abs() < 1e-3,
            "policy = reference at step 1: {}",
            first.loss
        );
        assert!(
            last.loss < first.loss,
            "DPO loss must fall: {} -> {}",
            first.loss,
            last.loss
        );
        assert!(last.extra["rewards/accuracy"] > 0.5, "{:?}", last.extra);
        assert!(last.extra["rewards/margins"] > 0.0);
    }

    #[test]
    fn lm_batch_pads_with_zero_mask() {
        let a = LmExample {
            ids: vec![1, 2, 3, 4],
            mask: vec![false, false, true, true],
        };
        let b = LmExample {
            ids: vec![5, 6],
            mask: vec![false, true],
        };
        let batch = lm_batch(&[&a, &b], 0);
        assert_eq!(batch.len, 3);
        assert_eq!(batch.inputs, vec![1, 2, 3, 5, 0, 0]);
        assert_eq!(batch.targets, vec![2, 3, 4, 6, 0, 0]);
        assert_eq!(batch.mask, vec![0.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
    }
}
