//! AdamW (Loshchilov & Hutter) with f32 moments that live in the checkpoint, so a resumed run
//! continues bit for bit. Weight decay is decoupled and, by default, skips norms, biases and
//! embeddings. Updates follow PyTorch's `torch.optim.AdamW` order: decay, then the Adam step.
//! Parameters are always visited in sorted name order.

use std::collections::BTreeMap;

use candle_core::{Tensor, Var};

use crate::model::ModelError;
use crate::spec::Optimizer;

/// Whether weight decay applies to a parameter (by Hugging Face name).
pub fn decays(name: &str) -> bool {
    !(name.ends_with("norm.weight") || name.ends_with(".bias") || name.contains("embed_tokens"))
}

#[derive(Debug, Clone)]
pub struct AdamW {
    pub cfg: Optimizer,
    /// Completed optimizer steps.
    pub step: u64,
    /// name → (first moment, second moment).
    pub moments: BTreeMap<String, (Tensor, Tensor)>,
}

impl AdamW {
    pub fn new(cfg: Optimizer) -> AdamW {
        AdamW {
            cfg,
            step: 0,
            moments: BTreeMap::new(),
        }
    }

    /// One update with learning rate `lr`. `grads` holds one gradient per parameter name.
    pub fn step(
        &mut self,
        params: &[(&String, &Var)],
        grads: &BTreeMap<String, Tensor>,
        lr: f64,
    ) -> Result<(), ModelError> {
        self.step += 1;
        let [b1, b2] = self.cfg.betas;
        let t = self.step as i32;
        let bc1 = 1.0 - b1.powi(t);
        let bc2 = 1.0 - b2.powi(t);
        for (name, var) in params {
            let Some(g) = grads.get(name.as_str()) else {
                return Err(ModelError::Config(format!(
                    "parameter `{name}` got no gradient"
                )));
            };
            let (m, v) = match self.moments.get(name.as_str()) {
                Some((m, v)) => (
                    ((m * b1)? + (g * (1.0 - b1))?)?,
                    ((v * b2)? + (g.sqr()? * (1.0 - b2))?)?,
                ),
                None => ((g * (1.0 - b1))?, (g.sqr()? * (1.0 - b2))?),
            };
            let mut p = var.as_tensor().detach();
            if self.cfg.weight_decay > 0.0 && decays(name) {
                p = (p * (1.0 - lr * self.cfg.weight_decay))?;
            }
            let denom = (v.affine(1.0 / bc2, 0.0)?.sqrt()? + self.cfg.eps)?;
            let update = (m.affine(1.0 / bc1, 0.0)? / denom)?;
            p = (p - (update * lr)?)?;
            var.set(&p)?;
            self.moments.insert((*name).clone(), (m, v));
        }
        Ok(())
    }
}

/// Global L2 norm of all gradients (f64 accumulation over sorted names).
pub fn global_norm(grads: &BTreeMap<String, Tensor>) -> Result<f64, ModelError> {
    let mut total = 0f64;
    for g in grads.values() {
        total += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    }
    Ok(total.sqrt())
}

/// Scale gradients so their global norm is at most `max_norm` (PyTorch's `clip_grad_norm_`
/// rule: factor `max_norm / (norm + 1e-6)` when below 1). Returns the norm before clipping.
pub fn clip(grads: &mut BTreeMap<String, Tensor>, max_norm: f64) -> Result<f64, ModelError> {
    let norm = global_norm(grads)?;
    if max_norm > 0.0 {
        let factor = max_norm / (norm + 1e-6);
        if factor < 1.0 {
            for g in grads.values_mut() {
                *g = (&*g * factor)?;
            }
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_a_hand_computed_adamw_step() {
        // One parameter, one step: p1 = p0*(1 - lr*wd) - lr * m̂/(sqrt(v̂)+eps), with m̂ = g and
        // v̂ = g² after bias correction, so the Adam step is lr * g/(|g|+eps).
        let cfg = Optimizer {
            lr: 0.1,
            betas: [0.9, 0.999],
            eps: 1e-8,
            weight_decay: 0.5,
        };
        let var = Var::from_tensor(&Tensor::new(&[1.0f32, -2.0], &Device::Cpu).unwrap()).unwrap();
        let name = "model.layers.0.mlp.up_proj.weight".to_string();
        let mut grads = BTreeMap::new();
        grads.insert(
            name.clone(),
            Tensor::new(&[0.5f32, -0.25], &Device::Cpu).unwrap(),
        );
        let mut opt = AdamW::new(cfg);
        opt.step(&[(&name, &var)], &grads, 0.1).unwrap();
        let got = var.as_tensor().to_vec1::<f32>().unwrap();
        let expect = [1.0 * (1.0 - 0.05) - 0.1, -2.0 * (1.0 - 0.05) + 0.1];
        for (g, e) in got.iter().zip(expect) {
            assert!((*g as f64 - e).abs() < 1e-6, "{got:?} vs {expect:?}");
        }
    }

    #[test]
    fn no_decay_for_norms_biases_embeddings() {
        assert!(!decays("model.norm.weight"));
        assert!(!decays("model.layers.0.input_layernorm.weight"));
        assert!(!decays("model.layers.0.self_attn.q_proj.bias"));
        assert!(!decays("model.embed_tokens.weight"));
        assert!(decays("lm_head.weight"));
        assert!(decays(
            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
        ));
    }

    #[test]
    fn clipping_scales_to_max_norm() {
        let mut g = BTreeMap::new();
        g.insert(
            "a".to_string(),
            Tensor::new(&[3.0f32, 4.0], &Device::Cpu).unwrap(),
        );
        let n = clip(&mut g, 1.0).unwrap();
        assert!((n - 5.0).abs() < 1e-9);
        let after = global_norm(&g).unwrap();
        assert!((after - 1.0).abs() < 1e-5, "{after}");
    }
}
