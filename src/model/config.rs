//! The configuration of a decoder-only transformer, in Hugging Face `config.json` terms.

use serde::{Deserialize, Serialize};

use crate::spec::{Family, InitConfig, Position};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub family: Family,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub rope_theta: f64,
    pub rms_norm_eps: f64,
    pub tie_word_embeddings: bool,
    pub initializer_range: f64,
    pub position: Position,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
    pub pad_token_id: Option<u32>,
}

impl ModelConfig {
    pub fn from_init(family: Family, c: &InitConfig, vocab_size: usize) -> ModelConfig {
        ModelConfig {
            family,
            vocab_size,
            hidden_size: c.hidden_size as usize,
            num_hidden_layers: c.layers as usize,
            num_attention_heads: c.heads as usize,
            num_key_value_heads: c.kv_heads as usize,
            intermediate_size: c.intermediate_size as usize,
            max_position_embeddings: c.max_position as usize,
            rope_theta: c.rope_theta,
            rms_norm_eps: c.norm_eps,
            tie_word_embeddings: c.tie_embeddings,
            initializer_range: c.init_std,
            position: c.position,
            bos_token_id: None,
            eos_token_id: None,
            pad_token_id: None,
        }
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    pub fn kv_dim(&self) -> usize {
        self.num_key_value_heads * self.head_dim()
    }

    /// Parameter names and shapes, sorted by name, as Hugging Face names them.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (h, i, v, kv) = (
            self.hidden_size,
            self.intermediate_size,
            self.vocab_size,
            self.kv_dim(),
        );
        let mut out = vec![
            ("model.embed_tokens.weight".to_string(), vec![v, h]),
            ("model.norm.weight".to_string(), vec![h]),
        ];
        if !self.tie_word_embeddings {
            out.push(("lm_head.weight".to_string(), vec![v, h]));
        }
        for l in 0..self.num_hidden_layers {
            let p = format!("model.layers.{l}");
            out.push((format!("{p}.input_layernorm.weight"), vec![h]));
            out.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
            match self.family {
                Family::Baichuan2 => {
                    out.push((format!("{p}.self_attn.W_pack.weight"), vec![3 * h, h]));
                }
                Family::Llama | Family::Qwen2 => {
                    out.push((format!("{p}.self_attn.q_proj.weight"), vec![h, h]));
                    out.push((format!("{p}.self_attn.k_proj.weight"), vec![kv, h]));
                    out.push((format!("{p}.self_attn.v_proj.weight"), vec![kv, h]));
                    if self.family == Family::Qwen2 {
                        out.push((format!("{p}.self_attn.q_proj.bias"), vec![h]));
                        out.push((format!("{p}.self_attn.k_proj.bias"), vec![kv]));
                        out.push((format!("{p}.self_attn.v_proj.bias"), vec![kv]));
                    }
                }
            }
            out.push((format!("{p}.self_attn.o_proj.weight"), vec![h, h]));
            out.push((format!("{p}.mlp.gate_proj.weight"), vec![i, h]));
            out.push((format!("{p}.mlp.up_proj.weight"), vec![i, h]));
            out.push((format!("{p}.mlp.down_proj.weight"), vec![h, i]));
        }
        out.sort();
        out
    }

    pub fn parameter_count(&self) -> usize {
        self.parameter_shapes()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }
}
