//! `medrun generate REF --prompt TEXT [--chat]`: try a checkpoint. Greedy by default, or seeded
//! temperature sampling; the same code path as the `generate` eval tasks, ending at the
//! checkpoint's end tokens ([`crate::generation`]).

use candle_core::Device;

use super::Project;
use super::export::checkpoint_of;
use crate::error::{Error, Result};
use crate::eval::backend::{ModelBackend, Stopped};
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
    /// The prompt's token ids (after left truncation to fit the model).
    pub prompt_ids: Vec<u32>,
    /// The generated token ids (an end token the generation stopped at is not included).
    pub output_ids: Vec<u32>,
    /// Why the generation ended (`end_token` with its `id`, `stop_string`, `max_new_tokens`,
    /// `context`).
    pub stopped: Stopped,
    /// The checkpoint's end tokens.
    pub end_tokens: Vec<u32>,
}

pub fn generate(project: &Project, reference: &str, opts: &GenerateOptions) -> Result<Generated> {
    let store = Store::open_existing(&project.store_dir)?;
    let ck = checkpoint_of(&store, &project.root, reference)?;
    let loaded = crate::eval::checkpoint::load(&store, &ck.output, &ck.tree, &Device::Cpu)
        .map_err(|e| Error::Problems {
            hint: e.hint(),
            message: e.to_string(),
        })?;
    let backend = ModelBackend::from_loaded(loaded).map_err(|e| Error::Problems {
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
    let g = backend.generate_one(&req).map_err(backend_err)?;
    Ok(Generated {
        checkpoint: ck.output,
        prompt,
        output: g.text,
        prompt_ids: g.prompt_ids,
        output_ids: g.tokens,
        stopped: g.stopped,
        end_tokens: backend.end_tokens().to_vec(),
    })
}
