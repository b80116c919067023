//! Training checkpoints: model tensors and optimizer moments as canonical safetensors, and the
//! loop state (step, data cursor, RNG state, metrics, trajectory) as canonical JSON. Restoring
//! them resumes a stage bit for bit.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor, Var};

use super::engine::{LoopState, TrainError};
use super::optim::AdamW;
use crate::model::checkpoint::safetensors_bytes;
use crate::model::{Param, Params};
use crate::spec::Optimizer;

pub const MODEL_FILE: &str = "model.safetensors";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const STATE_FILE: &str = "trainer_state.json";

/// The three files of a checkpoint, as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointBytes {
    pub model: Vec<u8>,
    pub optimizer: Vec<u8>,
    pub state: Vec<u8>,
}

fn host(t: &Tensor) -> Result<(Vec<usize>, Vec<f32>), TrainError> {
    Ok((t.dims().to_vec(), t.flatten_all()?.to_vec1::<f32>()?))
}

pub fn save(
    params: &Params,
    opt: &AdamW,
    state: &LoopState,
) -> Result<CheckpointBytes, TrainError> {
    let model = safetensors_bytes(&params.to_f32()?);
    let mut moments = Vec::new();
    for (name, (m, v)) in &opt.moments {
        let (s, mv) = host(m)?;
        moments.push((format!("{name}.exp_avg"), s, mv));
        let (s, vv) = host(v)?;
        moments.push((format!("{name}.exp_avg_sq"), s, vv));
    }
    let optimizer = safetensors_bytes(&moments);
    let mut st = serde_json::to_value(state).map_err(|e| TrainError::Checkpoint(e.to_string()))?;
    st["optimizer_step"] = serde_json::json!(opt.step);
    let state = serde_json::to_vec(&st).map_err(|e| TrainError::Checkpoint(e.to_string()))?;
    Ok(CheckpointBytes {
        model,
        optimizer,
        state,
    })
}

fn read_tensors(bytes: &[u8], device: &Device) -> Result<BTreeMap<String, Tensor>, TrainError> {
    let map = candle_core::safetensors::load_buffer(bytes, device)?;
    Ok(map.into_iter().collect())
}

/// Restore a checkpoint. `is_trainable(name)` decides which tensors become variables (e.g. only
/// LoRA adapters).
pub fn load(
    bytes: &CheckpointBytes,
    opt_cfg: &Optimizer,
    device: &Device,
    is_trainable: &dyn Fn(&str) -> bool,
) -> Result<(Params, AdamW, LoopState), TrainError> {
    let mut params = Params::default();
    for (name, t) in read_tensors(&bytes.model, device)? {
        let p = if is_trainable(&name) {
            Param::Trainable(Var::from_tensor(&t)?)
        } else {
            Param::Frozen(t)
        };
        params.insert(name, p);
    }
    let mut opt = AdamW::new(opt_cfg.clone());
    let tensors = read_tensors(&bytes.optimizer, device)?;
    for (name, m) in &tensors {
        if let Some(base) = name.strip_suffix(".exp_avg") {
            let v = tensors.get(&format!("{base}.exp_avg_sq")).ok_or_else(|| {
                TrainError::Checkpoint(format!("optimizer state lacks `{base}.exp_avg_sq`"))
            })?;
            opt.moments.insert(base.to_string(), (m.clone(), v.clone()));
        }
    }
    let value: serde_json::Value =
        serde_json::from_slice(&bytes.state).map_err(|e| TrainError::Checkpoint(e.to_string()))?;
    opt.step = value
        .get("optimizer_step")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| TrainError::Checkpoint("trainer state lacks `optimizer_step`".into()))?;
    let state: LoopState =
        serde_json::from_value(value).map_err(|e| TrainError::Checkpoint(e.to_string()))?;
    Ok((params, opt, state))
}
