//! Loading a stage output (a store tree) for inference: the model, frozen, with its tokenizer
//! (special tokens as `tokenizer_config.json` names them), chat template and end tokens (from
//! `generation_config.json`, `config.json` and the tokenizer, see [`crate::generation`]).

use candle_core::Device;
use serde_json::Value;

use crate::generation::{self, EndTokens};
use crate::model::checkpoint::{params_from, parse_hf_config};
use crate::model::{ModelConfig, Params, Transformer};
use crate::spec::Family;
use crate::store::{Store, Tree};
use crate::template::ChatTemplate;
use crate::tokenizer::Tokenizer;

/// A checkpoint ready for scoring and generation.
pub struct LoadedModel {
    pub config: ModelConfig,
    pub model: Transformer,
    pub params: Params,
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
    /// The ids that end a generation.
    pub end_tokens: EndTokens,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("checkpoint {output}: {message}")]
    Bad { output: String, message: String },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl LoadError {
    pub fn hint(&self) -> String {
        match self {
            LoadError::Bad { .. } => {
                "pass a training stage's output (RUN:STAGE); run `medrun verify` if the store may be damaged".into()
            }
            LoadError::Store(e) => e.hint(),
        }
    }
}

/// The model family named by a `config.json`'s `model_type`.
pub fn family_of(config: &Value) -> Option<Family> {
    match config.get("model_type").and_then(Value::as_str)? {
        "llama" | "mistral" => Some(Family::Llama),
        "qwen2" => Some(Family::Qwen2),
        "baichuan" => Some(Family::Baichuan2),
        _ => None,
    }
}

pub fn load(
    store: &Store,
    output: &str,
    tree: &Tree,
    device: &Device,
) -> Result<LoadedModel, LoadError> {
    let bad = |message: String| LoadError::Bad {
        output: output[..12.min(output.len())].to_string(),
        message,
    };
    let file = |name: &str| -> Result<Vec<u8>, LoadError> {
        let e = tree
            .entries
            .get(name)
            .ok_or_else(|| bad(format!("has no `{name}`")))?;
        Ok(store.get(&e.object)?)
    };
    let config: Value = serde_json::from_slice(&file("config.json")?)
        .map_err(|e| bad(format!("config.json: {e}")))?;
    let family = family_of(&config)
        .ok_or_else(|| bad("config.json names no model_type medrun knows".into()))?;
    let cfg = parse_hf_config(&config, family).map_err(|e| bad(e.to_string()))?;
    let weights = file("model.safetensors")?;
    let tensors = candle_core::safetensors::load_buffer(&weights, device)
        .map_err(|e| bad(format!("model.safetensors: {e}")))?;
    let params = params_from(tensors.into_iter().collect())
        .and_then(|p| p.frozen())
        .map_err(|e| bad(e.to_string()))?;
    let tokenizer = Tokenizer::from_bytes(&file("tokenizer.json")?, "tokenizer.json")
        .map_err(|e| bad(e.to_string()))?;
    let json_file = |name: &str| -> Result<Option<Value>, LoadError> {
        match tree.entries.get(name) {
            Some(_) => serde_json::from_slice(&file(name)?)
                .map(Some)
                .map_err(|e| bad(format!("{name}: {e}"))),
            None => Ok(None),
        }
    };
    let tc = json_file("tokenizer_config.json")?;
    // Special tokens as tokenizer_config.json names them (as the training stage used them).
    let tokenizer = match &tc {
        Some(tc) => {
            tokenizer
                .configured(tc, "tokenizer_config.json")
                .map_err(|e| bad(e.to_string()))?
                .0
        }
        None => tokenizer,
    };
    let gc = json_file("generation_config.json")?;
    let end_tokens = generation::end_tokens(
        gc.as_ref().map(|v| (v, "generation_config.json")),
        Some((&config, "config.json")),
        &tokenizer,
    )
    .map_err(|e| bad(e.to_string()))?;
    let tc = tc.unwrap_or(Value::Null);
    let eos = tokenizer
        .id_to_token(tokenizer.eos_id())
        .unwrap_or_default();
    let bos = tokenizer.bos_id().and_then(|b| tokenizer.id_to_token(b));
    let template = if let Some(name) = tc.get("medrun_template").and_then(Value::as_str) {
        ChatTemplate::builtin(name, &eos, bos.as_deref())
    } else if let Some(src) = tc.get("chat_template").and_then(Value::as_str) {
        ChatTemplate::jinja(src, &eos, bos.as_deref(), "tokenizer_config.json")
    } else {
        ChatTemplate::builtin("chatml", &eos, bos.as_deref())
    }
    .map_err(|e| bad(e.to_string()))?;
    let model = Transformer::new(cfg.clone(), device).map_err(|e| bad(e.to_string()))?;
    Ok(LoadedModel {
        config: cfg,
        model,
        params,
        tokenizer,
        template,
        end_tokens,
    })
}
