//! Model parameters by Hugging Face name, always iterated in sorted order (candle's `VarMap` is a
//! `HashMap`, whose order changes per process and breaks byte identity).
//!
//! Initialisation (from scratch), matching Hugging Face's Llama `_init_weights`: every linear and
//! embedding weight ~ N(0, initializer_range²), every RMSNorm weight = 1, every bias = 0. Values are
//! drawn from medrun's own RNG with one stream per parameter name (`init/<name>` forked from the
//! spec seed), never from candle's unseedable generator, so the result does not depend on the
//! order in which parameters are created.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var};

use super::ModelError;
use super::config::ModelConfig;
use crate::rng::Rng;

/// A named parameter: trainable (`Var`) or frozen (plain tensor, no gradient tracked).
#[derive(Debug, Clone)]
pub enum Param {
    Trainable(Var),
    Frozen(Tensor),
}

impl Param {
    pub fn tensor(&self) -> &Tensor {
        match self {
            Param::Trainable(v) => v.as_tensor(),
            Param::Frozen(t) => t,
        }
    }
}

/// A tensor copied to the host: name, shape, f32 values.
pub type HostTensor = (String, Vec<usize>, Vec<f32>);

#[derive(Debug, Clone, Default)]
pub struct Params {
    map: BTreeMap<String, Param>,
}

impl Params {
    pub fn get(&self, name: &str) -> Result<&Tensor, ModelError> {
        self.map
            .get(name)
            .map(Param::tensor)
            .ok_or_else(|| ModelError::MissingTensor(name.to_string()))
    }

    pub fn try_get(&self, name: &str) -> Option<&Tensor> {
        self.map.get(name).map(Param::tensor)
    }

    /// Takes the tensor `name` out (so its memory goes when the caller drops it).
    pub fn take(&mut self, name: &str) -> Result<Tensor, ModelError> {
        self.map
            .remove(name)
            .map(|p| p.tensor().clone())
            .ok_or_else(|| ModelError::MissingTensor(name.to_string()))
    }

    /// The parameter itself (trainable or frozen).
    pub fn param(&self, name: &str) -> Option<&Param> {
        self.map.get(name)
    }

    pub fn insert(&mut self, name: impl Into<String>, p: Param) {
        self.map.insert(name.into(), p);
    }

    /// Every parameter, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Param)> {
        self.map.iter()
    }

    /// Trainable parameters, sorted by name.
    pub fn trainable(&self) -> Vec<(&String, &Var)> {
        self.map
            .iter()
            .filter_map(|(n, p)| match p {
                Param::Trainable(v) => Some((n, v)),
                Param::Frozen(_) => None,
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Freeze every parameter (for a reference model or a LoRA base).
    pub fn frozen(&self) -> Result<Params, ModelError> {
        let mut out = Params::default();
        for (n, p) in &self.map {
            out.insert(n.clone(), Param::Frozen(p.tensor().detach()));
        }
        Ok(out)
    }

    /// Make every parameter trainable (copies the values into fresh variables).
    pub fn trainable_copy(&self) -> Result<Params, ModelError> {
        let mut out = Params::default();
        for (n, p) in &self.map {
            out.insert(
                n.clone(),
                Param::Trainable(Var::from_tensor(&p.tensor().detach())?),
            );
        }
        Ok(out)
    }

    /// Initialise a model from scratch (see the module docs for the distribution).
    pub fn init(cfg: &ModelConfig, seed: u64, device: &Device) -> Result<Params, ModelError> {
        let mut out = Params::default();
        for (name, shape) in cfg.parameter_shapes() {
            let n: usize = shape.iter().product();
            let values = if name.ends_with("norm.weight") {
                vec![1f32; n]
            } else if name.ends_with(".bias") {
                vec![0f32; n]
            } else {
                Rng::for_purpose(seed, &format!("init/{name}")).normal_vec(n, cfg.initializer_range)
            };
            let t = Tensor::from_vec(values, shape.as_slice(), device)?;
            out.insert(name, Param::Trainable(Var::from_tensor(&t)?));
        }
        Ok(out)
    }

    /// f32 values of every parameter, sorted by name (for checkpoints and fingerprints).
    pub fn to_f32(&self) -> Result<Vec<HostTensor>, ModelError> {
        let mut out = Vec::with_capacity(self.map.len());
        for (n, p) in &self.map {
            let t = p.tensor().to_dtype(DType::F32)?;
            let shape = t.dims().to_vec();
            let v = t.flatten_all()?.to_vec1::<f32>()?;
            out.push((n.clone(), shape, v));
        }
        Ok(out)
    }

    /// blake3 over every parameter's name, shape and f32 bytes, in sorted order.
    pub fn fingerprint(&self) -> Result<String, ModelError> {
        let mut h = blake3::Hasher::new();
        for (n, shape, v) in self.to_f32()? {
            hash_tensor(&mut h, &n, &shape, &v);
        }
        Ok(h.finalize().to_hex().to_string())
    }
}

/// Feeds one tensor to a parameter fingerprint: its name, a zero byte, each dimension as a
/// little-endian u64, then its values as little-endian f32.
pub fn hash_tensor(h: &mut blake3::Hasher, name: &str, shape: &[usize], values: &[f32]) {
    h.update(name.as_bytes());
    h.update(&[0]);
    for d in shape {
        h.update(&(*d as u64).to_le_bytes());
    }
    let mut buf = Vec::with_capacity(4 * values.len().min(1 << 16));
    for chunk in values.chunks(1 << 16) {
        buf.clear();
        for x in chunk {
            buf.extend_from_slice(&x.to_le_bytes());
        }
        if buf.len() >= 1 << 17 {
            h.update_rayon(&buf);
        } else {
            h.update(&buf);
        }
    }
}
