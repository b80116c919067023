//! `medrun generate REF --prompt TEXT [--chat]`: try a checkpoint. Greedy by default, or seeded
//! temperature sampling; the same code path as the `generate` eval tasks.

use candle_core::Device;

use super::Project;
use super::export::checkpoint_of;
use crate::error::{Error, Result};
use crate::eval::backend::ModelBackend;
use crate::eval::{Backend, GenRequest, Sampling};
use crate::store::Store;

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub prompt: String,
    pub chat: bool,
    pub system: Option<String>,
    pub max_new_tokens: usize,
    pub stop: Vec<String>,
    pub sample: Option<Sampling>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Generated {
    pub checkpoint: String,
    /// The text the model was given (after the chat template, with `--chat`).
    pub prompt: String,
    pub output: String,
}

pub fn generate(project: &Project, reference: &str, opts: &GenerateOptions) -> Result<Generated> {
    let store = Store::open_existing(&project.store_dir)?;
    let ck = checkpoint_of(&store, &project.root, reference)?;
    let loaded = crate::eval::checkpoint::load(&store, &ck.output, &ck.tree, &Device::Cpu)
        .map_err(|e| Error::Problems {
            hint: e.hint(),
            message: e.to_string(),
        })?;
    let mut backend = ModelBackend::new(
        loaded.model,
        loaded.params,
        loaded.tokenizer,
        loaded.template,
    )
    .map_err(|e| Error::Problems {
        message: e.to_string(),
        hint: "the checkpoint's tokenizer and model do not fit together".into(),
    })?;
    let backend_err = |e: crate::eval::BackendError| Error::Problems {
        message: e.to_string(),
        hint: "check the prompt and the checkpoint".into(),
    };
    let prompt = if opts.chat {
        backend
            .chat_prompt(&opts.prompt, opts.system.as_deref())
            .map_err(backend_err)?
    } else {
        opts.prompt.clone()
    };
    let req = GenRequest {
        prompt: prompt.clone(),
        max_new_tokens: opts.max_new_tokens,
        stop: opts.stop.clone(),
        sample: opts.sample,
    };
    let output = backend
        .generate(std::slice::from_ref(&req))
        .map_err(backend_err)?
        .pop()
        .unwrap_or_default();
    Ok(Generated {
        checkpoint: ck.output,
        prompt,
        output,
    })
}
