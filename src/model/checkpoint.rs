//! Checkpoint files with canonical bytes.
//!
//! Safetensors is written by hand so the bytes depend only on the tensors: the header is JSON
//! with keys in sorted order (`__metadata__` first, holding only `{"format":"pt"}`), padded with
//! spaces to a multiple of 8 bytes, followed by the tensors' little-endian data in the same sorted
//! order. (The `safetensors` crate writes metadata from a `HashMap`, whose order varies per
//! process.) `config.json` is written with sorted keys in the Hugging Face layout.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use serde_json::{Value, json};

use super::ModelError;
use super::config::ModelConfig;
use super::params::{Param, Params};
use crate::spec::{Family, Position};

/// Canonical safetensors bytes of `tensors` (name → (shape, f32 values)), sorted by name.
pub fn safetensors_bytes(tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
    let mut sorted: Vec<&(String, Vec<usize>, Vec<f32>)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut header = String::from("{\"__metadata__\":{\"format\":\"pt\"}");
    let mut offset = 0usize;
    for (name, shape, values) in &sorted {
        let len = values.len() * 4;
        let shape_s: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        header.push_str(&format!(
            ",{}:{{\"dtype\":\"F32\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
            serde_json::to_string(name).unwrap_or_default(),
            shape_s.join(","),
            offset,
            offset + len
        ));
        offset += len;
    }
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut out = Vec::with_capacity(8 + header.len() + offset);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for (_, _, values) in sorted {
        for v in values {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// Read a safetensors file (any dtype candle reads) into f32 tensors by name.
pub fn read_safetensors(
    path: &Path,
    device: &Device,
) -> Result<BTreeMap<String, Tensor>, ModelError> {
    let map = candle_core::safetensors::load(path, device)?;
    let mut out = BTreeMap::new();
    for (k, v) in map {
        out.insert(k, v.to_dtype(DType::F32)?);
    }
    Ok(out)
}

/// Params from tensors, every one trainable.
pub fn params_from(tensors: BTreeMap<String, Tensor>) -> Result<Params, ModelError> {
    let mut p = Params::default();
    for (k, t) in tensors {
        p.insert(k, Param::Trainable(Var::from_tensor(&t)?));
    }
    Ok(p)
}

/// Hugging Face `config.json` for this model.
pub fn hf_config(cfg: &ModelConfig) -> Value {
    let (arch, model_type) = match cfg.family {
        Family::Llama => ("LlamaForCausalLM", "llama"),
        Family::Qwen2 => ("Qwen2ForCausalLM", "qwen2"),
        Family::Baichuan2 => ("BaichuanForCausalLM", "baichuan"),
    };
    let mut v = json!({
        "architectures": [arch],
        "model_type": model_type,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        "max_position_embeddings": cfg.max_position_embeddings,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "hidden_act": "silu",
        "initializer_range": cfg.initializer_range,
        "torch_dtype": "float32",
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_id,
        "pad_token_id": cfg.pad_token_id,
    });
    if cfg.family == Family::Llama {
        v["attention_bias"] = json!(false);
        v["mlp_bias"] = json!(false);
    }
    if cfg.family == Family::Baichuan2 {
        v["model_max_length"] = json!(cfg.max_position_embeddings);
        v["medrun_position"] = json!(match cfg.position {
            Position::Rope => "rope",
            Position::Alibi => "alibi",
        });
    }
    v
}

/// Parse a Hugging Face `config.json`.
pub fn parse_hf_config(v: &Value, family: Family) -> Result<ModelConfig, ModelError> {
    let get = |k: &str| -> Result<usize, ModelError> {
        v.get(k)
            .and_then(Value::as_u64)
            .map(|x| x as usize)
            .ok_or_else(|| ModelError::Config(format!("config.json has no integer `{k}`")))
    };
    let heads = get("num_attention_heads")?;
    let position = if family == Family::Baichuan2
        && (v.get("medrun_position").and_then(Value::as_str) == Some("alibi")
            || get("hidden_size")? == 5120)
    {
        Position::Alibi
    } else {
        Position::Rope
    };
    let id = |k: &str| match v.get(k) {
        Some(Value::Number(n)) => n.as_u64().map(|x| x as u32),
        Some(Value::Array(a)) => a.first().and_then(Value::as_u64).map(|x| x as u32),
        _ => None,
    };
    Ok(ModelConfig {
        family,
        vocab_size: get("vocab_size")?,
        hidden_size: get("hidden_size")?,
        num_hidden_layers: get("num_hidden_layers")?,
        num_attention_heads: heads,
        num_key_value_heads: v
            .get("num_key_value_heads")
            .and_then(Value::as_u64)
            .map(|x| x as usize)
            .unwrap_or(heads),
        intermediate_size: get("intermediate_size")?,
        max_position_embeddings: v
            .get("max_position_embeddings")
            .or_else(|| v.get("model_max_length"))
            .and_then(Value::as_u64)
            .map(|x| x as usize)
            .unwrap_or(4096),
        rope_theta: v
            .get("rope_theta")
            .and_then(Value::as_f64)
            .unwrap_or(10000.0),
        rms_norm_eps: v
            .get("rms_norm_eps")
            .and_then(Value::as_f64)
            .unwrap_or(1e-6),
        tie_word_embeddings: v
            .get("tie_word_embeddings")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        initializer_range: v
            .get("initializer_range")
            .and_then(Value::as_f64)
            .unwrap_or(0.02),
        position,
        bos_token_id: id("bos_token_id"),
        eos_token_id: id("eos_token_id"),
        pad_token_id: id("pad_token_id"),
    })
}

/// Write an exportable model directory: `model.safetensors` and `config.json` (the tokenizer is
/// written by the caller). Files are written atomically.
pub fn write_model_dir(dir: &Path, cfg: &ModelConfig, params: &Params) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::Io(dir.display().to_string(), e))?;
    let tensors: Vec<_> = params
        .to_f32()?
        .into_iter()
        .filter(|(n, _, _)| !(cfg.tie_word_embeddings && n == "lm_head.weight"))
        .collect();
    let st = dir.join("model.safetensors");
    crate::store::atomic_write(&st, &safetensors_bytes(&tensors))
        .map_err(|e| ModelError::Io(st.display().to_string(), e))?;
    let cj = dir.join("config.json");
    let mut text = serde_json::to_vec_pretty(&hf_config(cfg)).unwrap_or_default();
    text.write_all(b"\n").ok();
    crate::store::atomic_write(&cj, &text).map_err(|e| ModelError::Io(cj.display().to_string(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safetensors_roundtrip_and_canonical() {
        let t = vec![
            ("b".to_string(), vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]),
            ("a".to_string(), vec![3], vec![0.5, -1.0, 7.0]),
        ];
        let bytes = safetensors_bytes(&t);
        let mut rev = t.clone();
        rev.reverse();
        assert_eq!(
            bytes,
            safetensors_bytes(&rev),
            "order of input must not matter"
        );
        let hlen = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!(hlen % 8, 0);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        std::fs::write(&p, &bytes).unwrap();
        let back = read_safetensors(&p, &Device::Cpu).unwrap();
        assert_eq!(back["a"].to_vec1::<f32>().unwrap(), vec![0.5, -1.0, 7.0]);
        assert_eq!(back["b"].dims(), &[2, 2]);
    }
}
