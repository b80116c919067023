//! Stage tasks over tokenised examples: language modelling (PT blocks, SFT conversations with an
//! assistant-only mask) and DPO (sigmoid loss against cached reference log-probabilities).
//!
//! Examples are visited in a fresh seeded order each epoch (`shuffle/<stage>/<epoch>`); a batch
//! takes the next `batch_size` examples, crossing into the next epoch when one runs out. Rows are
//! right-padded to the longest row of the batch with a zero mask, which a causal model cannot see
//! from earlier positions.

use std::collections::BTreeMap;

use candle_core::{D, Device, Tensor};

use super::engine::{Batch, Cursor, StageTask};
use crate::model::transformer::{Forward, masked_logprobs};
use crate::model::{ModelError, Params, Transformer};
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
    /// LoRA settings, so the held-out loss is measured with the adapters on.
    pub lora: Option<crate::model::transformer::LoraForward>,
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

    fn loss(
        &mut self,
        model: &Transformer,
        params: &Params,
        batch: &Batch,
        f: &mut Forward<'_>,
    ) -> Result<(Tensor, BTreeMap<String, f64>), ModelError> {
        Ok((
            super::engine::lm_loss(model, params, batch, f)?,
            BTreeMap::new(),
        ))
    }

    fn eval_loss(
        &mut self,
        model: &Transformer,
        params: &Params,
    ) -> Result<Option<f64>, ModelError> {
        if self.val.is_empty() {
            return Ok(None);
        }
        // One example at a time: the result cannot depend on batch composition.
        let mut total = 0f64;
        let mut count = 0f64;
        for ex in &self.val {
            let b = lm_batch(&[ex], self.pad);
            let (inp, tgt, mask) = b.tensors(&model.device)?;
            let mut f = Forward {
                lora: self.lora.as_ref(),
                rng: None,
            };
            let logits = model.forward(&params.frozen()?, &inp, &mut f)?;
            let lp = masked_logprobs(&logits, &tgt, &mask)?
                .sum_all()?
                .to_scalar::<f32>()?;
            total -= lp as f64;
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
pub fn pair_logps(
    model: &Transformer,
    params: &Params,
    e: &PrefExample,
    f: &mut Forward<'_>,
) -> Result<Tensor, ModelError> {
    let (c, r) = pref_rows(e);
    let b = lm_batch(&[&c, &r], 0);
    let (inp, tgt, mask) = b.tensors(&model.device)?;
    let logits = model.forward(params, &inp, f)?;
    masked_logprobs(&logits, &tgt, &mask)
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
    /// Compute the reference log-probs, one pair at a time (independent of batching).
    pub fn cache_reference(
        model: &Transformer,
        reference: &Params,
        lora: Option<&crate::model::transformer::LoraForward>,
        examples: &[PrefExample],
    ) -> Result<Vec<(f32, f32)>, ModelError> {
        // With LoRA the reference is the base model: adapters off.
        let _ = lora;
        let mut out = Vec::with_capacity(examples.len());
        for e in examples {
            let lp = pair_logps(model, reference, e, &mut Forward::eval())?.to_vec1::<f32>()?;
            out.push((lp[0], lp[1]));
        }
        Ok(out)
    }
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

    fn loss(
        &mut self,
        model: &Transformer,
        params: &Params,
        batch: &Batch,
        f: &mut Forward<'_>,
    ) -> Result<(Tensor, BTreeMap<String, f64>), ModelError> {
        let dev: &Device = &model.device;
        let (inp, tgt, mask) = batch.tensors(dev)?;
        let logits = model.forward(params, &inp, f)?;
        let lp = masked_logprobs(&logits, &tgt, &mask)?;
        let half = batch.rows / 2;
        let refs = Tensor::from_vec(batch.ref_logps.clone(), batch.rows, dev)?;
        let diff = (lp - refs)?; // policy − reference, per row
        let chosen = diff.narrow(0, 0, half)?;
        let rejected = diff.narrow(0, half, half)?;
        let margin = ((&chosen - &rejected)? * self.beta)?;
        // log σ(x) = min(x, 0) − log(1 + e^{−|x|}), stable for large |x|.
        let log_sig =
            (margin.minimum(0f32)? - margin.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?)?;
        let loss = log_sig.mean(D::Minus1)?.neg()?;
        let m = margin.to_vec1::<f32>()?;
        let rc = (chosen * self.beta)?.to_vec1::<f32>()?;
        let rr = (rejected * self.beta)?.to_vec1::<f32>()?;
        let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len().max(1) as f64;
        let mut extra = BTreeMap::new();
        extra.insert("rewards/chosen".into(), mean(&rc));
        extra.insert("rewards/rejected".into(), mean(&rr));
        extra.insert("rewards/margins".into(), mean(&m) / 1.0);
        extra.insert(
            "rewards/accuracy".into(),
            m.iter().filter(|&&x| x > 0.0).count() as f64 / m.len().max(1) as f64,
        );
        Ok((loss, extra))
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
        use crate::model::ModelConfig;
        use crate::spec::{
            Family, InitConfig, Length, Optimizer, Position, Schedule, ScheduleKind, Stage,
            StageKind,
        };
        use crate::train::engine::{self, LoopConfig, LoopState, TrainError};
        use crate::train::optim::AdamW;
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
        let model = Transformer::new(cfg.clone(), &dev).unwrap();
        let params = Params::init(&cfg, 4, &dev).unwrap();
        let reference = params.frozen().unwrap();
        let examples: Vec<PrefExample> = (0..8u32)
            .map(|i| PrefExample {
                prompt: vec![1, 2 + i % 5, 3],
                chosen: vec![10, 11, 12, 19],
                rejected: vec![15, 14, 13, 19],
            })
            .collect();
        let refs = DpoTask::cache_reference(&model, &reference, None, &examples).unwrap();
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
        let mut opt = AdamW::new(stage.optimizer.clone());
        let mut state = engine::fresh_state(1, "dpo");
        let mut ck = |_: &Params, _: &AdamW, _: &LoopState| -> Result<(), TrainError> { Ok(()) };
        engine::run(
            &lc,
            &model,
            &params,
            None,
            &mut opt,
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
