//! Where a stage's passes run: the fused CPU model ([`crate::model::fused`], the default on the
//! CPU) or the composite candle model with autograd ([`crate::model::Transformer`], used on
//! CUDA and kept as the reference the fused model is tested against).
//!
//! Both compute each batch row's summed log-probability of its supervised targets; the stage's
//! task turns those into a loss and its gradient with respect to them
//! ([`super::engine::Objective`]), and the backend carries that gradient back to the
//! parameters, clips, and applies AdamW. Both give the same gradients to float rounding, but not
//! the same bits, so which one ran is part of the engine (and of every stage key through the
//! engine's source hash and the device class).

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};

use super::engine::Batch;
use super::optim::{self, AdamW};
use crate::model::fused::FusedModel;
use crate::model::kernels::adamw::Hyper;
use crate::model::transformer::{Forward, LoraForward, masked_logprobs};
use crate::model::{ModelConfig, ModelError, Params, Transformer};
use crate::rng::Rng;
use crate::spec::Optimizer;

/// Which implementation runs the passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    /// Hand-written forward and backward passes over fused CPU kernels.
    Fused,
    /// candle's tensor ops and autograd (any device).
    Composite,
}

impl Kernels {
    /// The fused kernels on the CPU, candle elsewhere.
    pub fn for_device(dev: &Device) -> Kernels {
        if dev.is_cpu() {
            Kernels::Fused
        } else {
            Kernels::Composite
        }
    }
}

/// A model under training: passes, gradients and optimizer state.
pub trait Backend {
    /// Each row's `Σ mask · log p(target)`, keeping what the backward pass needs. `rng` draws
    /// dropout masks.
    fn forward(&mut self, batch: &Batch, rng: Option<&mut Rng>) -> Result<Vec<f64>, ModelError>;
    /// Carries `d loss / d row sum` back to the parameters, adding to the gradients gathered
    /// since the last [`Backend::step`].
    fn backward(&mut self, d_rows: &[f64]) -> Result<(), ModelError>;
    /// Row sums without gradients or dropout (held-out loss, reference log-probabilities).
    fn score(&mut self, batch: &Batch) -> Result<Vec<f64>, ModelError>;
    /// Global L2 norm of the gathered gradients.
    fn grad_norm(&mut self) -> Result<f64, ModelError>;
    /// One AdamW update with the gradients multiplied by `clip` (≤ 1); clears them.
    fn step(&mut self, lr: f64, clip: f64) -> Result<(), ModelError>;
    /// The parameters (trainable ones as variables), sorted by name.
    fn params(&self) -> Result<Params, ModelError>;
    /// The optimizer state, for checkpoints.
    fn optimizer(&self) -> Result<AdamW, ModelError>;
    /// [`Params::fingerprint`] of the current parameters.
    fn fingerprint(&self) -> Result<String, ModelError>;
}

/// A backend for `params` (their trainable/frozen split is kept), resuming `opt`'s state.
pub fn build(
    kernels: Kernels,
    cfg: &ModelConfig,
    device: &Device,
    params: &Params,
    lora: Option<LoraForward>,
    opt: &AdamW,
) -> Result<Box<dyn Backend>, ModelError> {
    Ok(match kernels {
        Kernels::Fused if device.is_cpu() => Box::new(Fused::new(cfg, params, lora, opt)?),
        _ => Box::new(Composite::new(
            cfg,
            device,
            params.clone(),
            lora,
            opt.clone(),
        )?),
    })
}

/// A backend that only scores (the DPO reference): every parameter frozen.
pub fn scorer(
    kernels: Kernels,
    cfg: &ModelConfig,
    device: &Device,
    params: &Params,
) -> Result<Box<dyn Backend>, ModelError> {
    let frozen = params.frozen()?;
    let opt = AdamW::new(Optimizer {
        lr: 0.0,
        betas: [0.9, 0.999],
        eps: 1e-8,
        weight_decay: 0.0,
    });
    build(kernels, cfg, device, &frozen, None, &opt)
}

/// The fused CPU model with AdamW moments in flat buffers laid out like its gradients.
pub struct Fused {
    model: FusedModel,
    m: Vec<f32>,
    v: Vec<f32>,
    cfg: Optimizer,
    step: u64,
}

impl Fused {
    pub fn new(
        cfg: &ModelConfig,
        params: &Params,
        lora: Option<LoraForward>,
        opt: &AdamW,
    ) -> Result<Fused, ModelError> {
        let model = FusedModel::new(cfg, params, lora)?;
        let n = model.trainable_len();
        let (mut m, mut v) = (vec![0f32; n], vec![0f32; n]);
        for (name, shape, go) in model.trainable_slots() {
            let len: usize = shape.iter().product();
            if let Some((mt, vt)) = opt.moments.get(name) {
                for (dst, t, what) in [(&mut m, mt, "exp_avg"), (&mut v, vt, "exp_avg_sq")] {
                    let vals = t.flatten_all()?.to_vec1::<f32>()?;
                    if vals.len() != len {
                        return Err(ModelError::Config(format!(
                            "optimizer state `{name}.{what}` has {} values, the parameter {len}",
                            vals.len()
                        )));
                    }
                    dst[go..go + len].copy_from_slice(&vals);
                }
            }
        }
        Ok(Fused {
            model,
            m,
            v,
            cfg: opt.cfg.clone(),
            step: opt.step,
        })
    }
}

impl Backend for Fused {
    fn forward(&mut self, batch: &Batch, rng: Option<&mut Rng>) -> Result<Vec<f64>, ModelError> {
        self.model.forward(batch, rng)
    }

    fn backward(&mut self, d_rows: &[f64]) -> Result<(), ModelError> {
        self.model.backward(d_rows)
    }

    fn score(&mut self, batch: &Batch) -> Result<Vec<f64>, ModelError> {
        self.model.score(batch)
    }

    fn grad_norm(&mut self) -> Result<f64, ModelError> {
        Ok(self.model.grad_sum_squares().sqrt())
    }

    fn step(&mut self, lr: f64, clip: f64) -> Result<(), ModelError> {
        self.step += 1;
        let [b1, b2] = self.cfg.betas;
        let t = self.step as i32;
        let (bc1, bc2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        let wd = self.cfg.weight_decay;
        let base = Hyper {
            lr: lr as f32,
            beta1: b1 as f32,
            beta2: b2 as f32,
            eps: self.cfg.eps as f32,
            decay: 0.0,
            inv_bc1: (1.0 / bc1) as f32,
            inv_bc2: (1.0 / bc2) as f32,
            clip: clip as f32,
        };
        let hyper = |name: &str| Hyper {
            decay: if wd > 0.0 && optim::decays(name) {
                (lr * wd) as f32
            } else {
                0.0
            },
            ..base
        };
        self.model.adamw(&mut self.m, &mut self.v, &hyper);
        Ok(())
    }

    fn params(&self) -> Result<Params, ModelError> {
        self.model.params()
    }

    fn optimizer(&self) -> Result<AdamW, ModelError> {
        let mut opt = AdamW::new(self.cfg.clone());
        opt.step = self.step;
        if self.step > 0 {
            for (name, shape, go) in self.model.trainable_slots() {
                let len: usize = shape.iter().product();
                let t = |b: &[f32]| Tensor::from_slice(&b[go..go + len], shape, &Device::Cpu);
                opt.moments
                    .insert(name.to_string(), (t(&self.m)?, t(&self.v)?));
            }
        }
        Ok(opt)
    }

    fn fingerprint(&self) -> Result<String, ModelError> {
        Ok(self.model.fingerprint())
    }
}

/// candle's composite model with autograd.
pub struct Composite {
    model: Transformer,
    params: Params,
    lora: Option<LoraForward>,
    opt: AdamW,
    grads: BTreeMap<String, Tensor>,
    /// Row sums of the last forward pass, still attached to their graph.
    pending: Option<Tensor>,
}

impl Composite {
    pub fn new(
        cfg: &ModelConfig,
        device: &Device,
        params: Params,
        lora: Option<LoraForward>,
        opt: AdamW,
    ) -> Result<Composite, ModelError> {
        Ok(Composite {
            model: Transformer::new(cfg.clone(), device)?,
            params,
            lora,
            opt,
            grads: BTreeMap::new(),
            pending: None,
        })
    }

    fn row_sums(
        &self,
        batch: &Batch,
        params: &Params,
        f: &mut Forward<'_>,
    ) -> Result<Tensor, ModelError> {
        let (inp, tgt, mask) = batch.tensors(&self.model.device)?;
        let logits = self.model.forward(params, &inp, f)?;
        masked_logprobs(&logits, &tgt, &mask)
    }
}

fn host_f64(t: &Tensor) -> Result<Vec<f64>, ModelError> {
    Ok(t.to_dtype(DType::F64)?.to_vec1::<f64>()?)
}

impl Backend for Composite {
    fn forward(&mut self, batch: &Batch, rng: Option<&mut Rng>) -> Result<Vec<f64>, ModelError> {
        let mut f = Forward {
            lora: self.lora.as_ref(),
            rng,
        };
        let sums = self.row_sums(batch, &self.params, &mut f)?;
        let out = host_f64(&sums)?;
        self.pending = Some(sums);
        Ok(out)
    }

    fn backward(&mut self, d_rows: &[f64]) -> Result<(), ModelError> {
        let sums = self.pending.take().ok_or_else(|| {
            ModelError::Config("backward pass without a forward pass to go with it".into())
        })?;
        // A surrogate with the same gradient: Σ_r (d loss/d sum_r) · sum_r.
        let d: Vec<f32> = d_rows.iter().map(|&x| x as f32).collect();
        let d = Tensor::from_vec(d, d_rows.len(), sums.device())?;
        let g = (sums * d)?.sum_all()?.backward()?;
        for (name, var) in self.params.trainable() {
            let Some(gt) = g.get(var.as_tensor()) else {
                continue;
            };
            let acc = match self.grads.remove(name.as_str()) {
                Some(prev) => (prev + gt)?,
                None => gt.clone(),
            };
            self.grads.insert(name.clone(), acc);
        }
        Ok(())
    }

    fn score(&mut self, batch: &Batch) -> Result<Vec<f64>, ModelError> {
        let frozen = self.params.frozen()?;
        let mut f = Forward {
            lora: self.lora.as_ref(),
            rng: None,
        };
        host_f64(&self.row_sums(batch, &frozen, &mut f)?)
    }

    fn grad_norm(&mut self) -> Result<f64, ModelError> {
        for (name, var) in self.params.trainable() {
            if !self.grads.contains_key(name.as_str()) {
                self.grads
                    .insert(name.clone(), var.as_tensor().zeros_like()?);
            }
        }
        optim::global_norm(&self.grads)
    }

    fn step(&mut self, lr: f64, clip: f64) -> Result<(), ModelError> {
        if clip != 1.0 {
            for g in self.grads.values_mut() {
                *g = (&*g * clip)?;
            }
        }
        let trainable = self.params.trainable();
        self.opt.step(&trainable, &self.grads, lr)?;
        self.grads.clear();
        Ok(())
    }

    fn params(&self) -> Result<Params, ModelError> {
        Ok(self.params.clone())
    }

    fn optimizer(&self) -> Result<AdamW, ModelError> {
        Ok(self.opt.clone())
    }

    fn fingerprint(&self) -> Result<String, ModelError> {
        self.params.fingerprint()
    }
}
