//! LoRA adapters (Hu et al.): for a target linear `W` [out, in], `A` [r, in] and `B` [out, r]
//! with `y = x Wᵀ + (α/r)·(x Aᵀ) Bᵀ`. `A` is drawn like PEFT's default (Kaiming-uniform with
//! a = √5, i.e. U(−1/√in, 1/√in)) from medrun's RNG; `B` starts at zero, so training starts from
//! the base model exactly. Tensor names follow PEFT: `base_model.model.<module>.lora_A.weight`.

use candle_core::{Device, Tensor, Var};

use super::ModelError;
use super::config::ModelConfig;
use super::params::{Param, Params};
use super::transformer::LoraForward;
use crate::rng::Rng;
use crate::spec::Lora;

/// Module paths (without `.weight`) of every linear that `targets` selects.
pub fn target_modules(cfg: &ModelConfig, targets: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for (name, _) in cfg.parameter_shapes() {
        let Some(module) = name.strip_suffix(".weight") else {
            continue;
        };
        let leaf = module.rsplit('.').next().unwrap_or("");
        if module.starts_with("model.layers.") && targets.iter().any(|t| t == leaf) {
            out.push(module.to_string());
        }
    }
    out
}

/// Freeze `base` and add trainable adapters for `lora`'s targets.
pub fn attach(
    base: &Params,
    cfg: &ModelConfig,
    lora: &Lora,
    seed: u64,
    device: &Device,
) -> Result<(Params, LoraForward), ModelError> {
    let mut p = base.frozen()?;
    let r = lora.r as usize;
    for module in target_modules(cfg, &lora.targets) {
        let w = base.get(&format!("{module}.weight"))?;
        let (out_dim, in_dim) = w.dims2()?;
        let bound = 1.0 / (in_dim as f64).sqrt();
        let mut rng = Rng::for_purpose(seed, &format!("lora-init/{module}"));
        let a: Vec<f32> = (0..r * in_dim)
            .map(|_| ((rng.next_f64() * 2.0 - 1.0) * bound) as f32)
            .collect();
        let a = Tensor::from_vec(a, (r, in_dim), device)?;
        let b = Tensor::zeros((out_dim, r), candle_core::DType::F32, device)?;
        p.insert(
            format!("base_model.model.{module}.lora_A.weight"),
            Param::Trainable(Var::from_tensor(&a)?),
        );
        p.insert(
            format!("base_model.model.{module}.lora_B.weight"),
            Param::Trainable(Var::from_tensor(&b)?),
        );
    }
    Ok((
        p,
        LoraForward {
            scale: lora.alpha / lora.r as f64,
            dropout: lora.dropout,
        },
    ))
}

/// Fold the adapters into the base weights (`W + (α/r)·B A`) and drop them.
pub fn merge(p: &Params, scale: f64) -> Result<Params, ModelError> {
    let mut out = Params::default();
    for (name, param) in p.iter() {
        if name.starts_with("base_model.model.") {
            continue;
        }
        let mut t = param.tensor().detach();
        if let Some(module) = name.strip_suffix(".weight") {
            let a = p.try_get(&format!("base_model.model.{module}.lora_A.weight"));
            let b = p.try_get(&format!("base_model.model.{module}.lora_B.weight"));
            if let (Some(a), Some(b)) = (a, b) {
                t = (t + b.matmul(a)?.affine(scale, 0.0)?)?;
            }
        }
        out.insert(name.clone(), Param::Trainable(Var::from_tensor(&t)?));
    }
    Ok(out)
}
