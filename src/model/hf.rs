//! Loading a local Hugging Face model directory: `config.json`, weights in `model.safetensors` or
//! sharded through `model.safetensors.index.json`, `tokenizer.json`, and `tokenizer_config.json`
//! (chat template and special tokens).

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use super::ModelError;
use super::checkpoint::{parse_hf_config, read_safetensors};
use super::config::ModelConfig;
use crate::spec::Family;

pub struct HfModel {
    pub config: ModelConfig,
    pub tensors: BTreeMap<String, Tensor>,
    pub tokenizer_json: Option<Vec<u8>>,
    pub tokenizer_config: Option<serde_json::Value>,
}

fn read_json(path: &Path) -> Result<serde_json::Value, ModelError> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::Io(path.display().to_string(), e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ModelError::Config(format!("{}: {e}", path.display())))
}

pub fn load_dir(dir: &Path, family: Family, device: &Device) -> Result<HfModel, ModelError> {
    let config = parse_hf_config(&read_json(&dir.join("config.json"))?, family)?;
    let single = dir.join("model.safetensors");
    let index = dir.join("model.safetensors.index.json");
    let mut tensors = BTreeMap::new();
    if single.is_file() {
        tensors = read_safetensors(&single, device)?;
    } else if index.is_file() {
        let idx = read_json(&index)?;
        let map = idx
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| ModelError::Config(format!("{}: no `weight_map`", index.display())))?;
        let mut shards: Vec<&str> = map.values().filter_map(|v| v.as_str()).collect();
        shards.sort();
        shards.dedup();
        for shard in shards {
            if shard.contains('/') || shard.contains("..") {
                return Err(ModelError::Config(format!(
                    "shard name {shard:?} leaves the model directory"
                )));
            }
            // Hidden files are not part of the directory as `medrun lock` pins and checks it.
            if shard.starts_with('.') {
                return Err(ModelError::Config(format!(
                    "shard name {shard:?} is a hidden file, which datasets.lock does not pin"
                )));
            }
            tensors.extend(read_safetensors(&dir.join(shard), device)?);
        }
    } else {
        return Err(ModelError::Config(format!(
            "{} has neither model.safetensors nor model.safetensors.index.json",
            dir.display()
        )));
    }
    let tok = dir.join("tokenizer.json");
    let tokenizer_json = if tok.is_file() {
        Some(std::fs::read(&tok).map_err(|e| ModelError::Io(tok.display().to_string(), e))?)
    } else {
        None
    };
    let tc = dir.join("tokenizer_config.json");
    let tokenizer_config = if tc.is_file() {
        Some(read_json(&tc)?)
    } else {
        None
    };
    if config.tie_word_embeddings {
        tensors.remove("lm_head.weight");
    }
    Ok(HfModel {
        config,
        tensors,
        tokenizer_json,
        tokenizer_config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Params;
    use crate::model::checkpoint::write_model_dir;
    use crate::spec::{InitConfig, Position};

    #[test]
    fn exported_directory_loads_back_identically() {
        for (family, tie) in [
            (Family::Llama, true),
            (Family::Qwen2, false),
            (Family::Baichuan2, false),
        ] {
            let init = InitConfig {
                hidden_size: 16,
                layers: 1,
                heads: 2,
                kv_heads: 2,
                intermediate_size: 24,
                max_position: 32,
                rope_theta: 10000.0,
                norm_eps: 1e-6,
                tie_embeddings: tie,
                init_std: 0.02,
                position: Position::Rope,
            };
            let cfg = ModelConfig::from_init(family, &init, 40);
            let p = Params::init(&cfg, 1, &Device::Cpu).unwrap();
            let dir = tempfile::tempdir().unwrap();
            write_model_dir(dir.path(), &cfg, &p).unwrap();
            let back = load_dir(dir.path(), family, &Device::Cpu).unwrap();
            assert_eq!(back.config, cfg);
            let q = crate::model::checkpoint::params_from(back.tensors).unwrap();
            assert_eq!(q.fingerprint().unwrap(), p.fingerprint().unwrap());
        }
    }
}
