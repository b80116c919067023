//! The training stages behind `medrun run`: one [`StageExecutor`] for `pt`, `sft` and `dpo`.
//!
//! A stage starts from its parent's output (or, for the first stage, from the spec's model and
//! tokenizer), reads and tokenises its datasets, resumes from its last checkpoint if the store has
//! one for this stage key, runs the shared step loop, and writes its output files:
//!
//! | file | content |
//! |---|---|
//! | `model.safetensors`, `config.json` | the model (LoRA merged), loadable by `transformers` |
//! | `tokenizer.json`, `tokenizer_config.json` | tokenizer, special tokens, chat template |
//! | `generation_config.json` | the end tokens generation stops at ([`crate::generation`]) |
//! | `adapter_model.safetensors`, `adapter_config.json` | the LoRA adapter alone (LoRA stages) |
//! | `metrics.jsonl` | per step: loss, lr, grad norm, supervised tokens, stage extras |
//! | `trajectory.json` | parameter fingerprints by step, held-out losses |
//! | `data.json` | what the data readers produced and skipped |
//!
//! All of these are a pure function of the stage key. Wall-clock figures (seconds and tokens/s
//! per step) go to the `timings.jsonl` log, outside the content address.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Device;
use serde_json::{Value, json};

use super::backend::{self, Kernels};
use super::checkpoint::{self as ckpt, CheckpointBytes};
use super::engine::{self, LoopConfig, LoopState, StageTask, StepMetrics, TrainError};
use super::optim::AdamW;
use super::tasks::{DpoTask, LmExample, LmTask, PrefExample, Sampler, epoch_order};
use super::{dpo, pt, sft};
use crate::data::{self, ReadOptions, Skipped};
use crate::fsx;
use crate::model::checkpoint::{hf_config, params_from, parse_hf_config, safetensors_bytes};
use crate::model::{ModelConfig, ModelError, Param, Params, gguf, hf, lora};
use crate::rng::Rng;
use crate::spec::{
    DType, DeviceSpec, Format, Length, ModelSource, Spec, Stage, StageKind, TemplateSpec,
    TokenizerSpec,
};
use crate::stage::{StageContext, StageError, StageExecutor, StageOutput};
use crate::store::Tree;
use crate::store::tree::TreeEntry;
use crate::template::{ChatTemplate, Role as TRole, Turn as TTurn};
use crate::tokenizer::Tokenizer;

/// The training engine as a stage executor (one for all three kinds).
#[derive(Debug, Clone, Copy, Default)]
pub struct TrainExecutor;

fn user(message: impl Into<String>, hint: impl Into<String>) -> StageError {
    StageError {
        message: message.into(),
        hint: hint.into(),
        user: true,
    }
}

fn internal(message: impl Into<String>) -> StageError {
    StageError {
        message: message.into(),
        hint: "this is a bug in medrun; please report it with the output of `medrun -v run ...`"
            .into(),
        user: false,
    }
}

fn model_err(what: &str) -> impl Fn(ModelError) -> StageError + '_ {
    move |e| match e {
        ModelError::Config(m) => user(
            format!("{what}: {m}"),
            "check the model files and `model.family` in the spec",
        ),
        ModelError::TooLong { len, max } => user(
            format!("{what}: a sequence of {len} tokens exceeds the model's {max} positions"),
            "lower the stage's `max_len` to at most the model's `max_position`",
        ),
        ModelError::Io(p, e) => user(format!("{what}: {p}: {e}"), "check the path and disk space"),
        other => internal(format!("{what}: {other}")),
    }
}

fn store_err(e: crate::store::StoreError) -> StageError {
    let hint = e.hint();
    StageError {
        message: e.to_string(),
        hint,
        user: e.is_user_error(),
    }
}

/// The device a spec asks for. CUDA needs a build with the `cuda` feature; there is no silent
/// fallback to the CPU.
pub fn device_for(spec: &Spec) -> Result<Device, StageError> {
    if spec.dtype != DType::F32 {
        return Err(user(
            format!(
                "dtype `{}` is not supported for training in this build",
                format!("{:?}", spec.dtype).to_lowercase()
            ),
            "set `dtype: f32` (medrun trains with f32 master weights)",
        ));
    }
    match spec.device {
        DeviceSpec::Cpu => Ok(Device::Cpu),
        DeviceSpec::Cuda(n) => cuda_device(n),
    }
}

#[cfg(feature = "cuda")]
fn cuda_device(n: u32) -> Result<Device, StageError> {
    Device::new_cuda(n as usize).map_err(|e| {
        user(
            format!("cannot open CUDA device {n}: {e}"),
            "check `nvidia-smi` and the device index in `device:`",
        )
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(n: u32) -> Result<Device, StageError> {
    Err(user(
        format!("the spec asks for `device: cuda:{n}`, but this medrun was built without CUDA"),
        "rebuild with `cargo build --release --features cuda` (needs nvcc), or set `device: cpu`",
    ))
}

/// The model a stage starts from.
struct Base {
    cfg: ModelConfig,
    params: Params,
    tokenizer: Tokenizer,
    /// A Jinja chat template shipped with the model or the parent's output.
    model_template: Option<String>,
    /// The ids that end the starting model's generations ([`crate::generation`]).
    end_tokens: Vec<u32>,
}

fn read_store_file(ctx: &StageContext<'_>, tree: &Tree, name: &str) -> Result<Vec<u8>, StageError> {
    let entry = tree.entries.get(name).ok_or_else(|| {
        user(
            format!(
                "the output of stage `{}` has no `{name}`",
                ctx.parent.as_ref().map(|p| p.stage.as_str()).unwrap_or("?")
            ),
            "run `medrun verify`; the parent stage's output is incomplete",
        )
    })?;
    let parent = ctx.parent.as_ref().map(|p| p.stage.as_str()).unwrap_or("?");
    ctx.store
        .get(&entry.object)
        .map_err(|e| store_err(e.within(format!("`{name}` of the output of stage `{parent}`"))))
}

fn load_parent(ctx: &StageContext<'_>, dev: &Device) -> Result<Option<Base>, StageError> {
    let Some(parent) = &ctx.parent else {
        return Ok(None);
    };
    let what = format!("output of stage `{}`", parent.stage);
    let config: Value = serde_json::from_slice(&read_store_file(ctx, &parent.tree, "config.json")?)
        .map_err(|e| internal(format!("{what}: config.json: {e}")))?;
    let cfg = parse_hf_config(&config, ctx.spec.model.family).map_err(model_err(&what))?;
    let weights = read_store_file(ctx, &parent.tree, "model.safetensors")?;
    let tensors = candle_core::safetensors::load_buffer(&weights, dev)
        .map_err(|e| internal(format!("{what}: model.safetensors: {e}")))?;
    let mut params = params_from(tensors.into_iter().collect()).map_err(model_err(&what))?;
    if cfg.tie_word_embeddings {
        params = drop_tensor(params, "lm_head.weight");
    }
    let tok_bytes = read_store_file(ctx, &parent.tree, "tokenizer.json")?;
    let tokenizer = Tokenizer::from_bytes(&tok_bytes, &format!("{what}: tokenizer.json"))
        .map_err(|e| user(e.to_string(), "run `medrun verify`"))?;
    let parsed = |name: &str| -> Result<Option<Value>, StageError> {
        match parent.tree.entries.get(name) {
            Some(_) => serde_json::from_slice(&read_store_file(ctx, &parent.tree, name)?)
                .map(Some)
                .map_err(|e| internal(format!("{what}: {name}: {e}"))),
            None => Ok(None),
        }
    };
    // The parent's special tokens, as its tokenizer_config.json names them: the same EOS, BOS
    // and padding as the parent trained with.
    let (tokenizer, model_template) = match parsed("tokenizer_config.json")? {
        Some(tc) => {
            let tok = tokenizer
                .configured(&tc, &format!("{what}: tokenizer_config.json"))
                .map_err(|e| user(e.to_string(), "run `medrun verify`"))?
                .0;
            let template = tc
                .get("chat_template")
                .and_then(Value::as_str)
                .map(str::to_string);
            (tok, template)
        }
        None => (tokenizer, None),
    };
    let gc = parsed("generation_config.json")?;
    let end_tokens = crate::generation::end_tokens(
        gc.as_ref().map(|v| (v, "generation_config.json")),
        Some((&config, "config.json")),
        &tokenizer,
    )
    .map_err(|e| user(format!("{what}: {e}"), e.hint()))?
    .ids;
    Ok(Some(Base {
        cfg,
        params,
        tokenizer,
        model_template,
        end_tokens,
    }))
}

fn drop_tensor(p: Params, name: &str) -> Params {
    let mut out = Params::default();
    for (n, v) in p.iter() {
        if n != name {
            out.insert(n.clone(), v.clone());
        }
    }
    out
}

/// A dataset's files, as `medrun lock` pinned them (see [`fsx`]).
fn dataset_path(
    ctx: &StageContext<'_>,
    name: &str,
) -> Result<(fsx::Input, String, Format), StageError> {
    let d = ctx.spec.datasets.get(name).ok_or_else(|| {
        internal(format!(
            "dataset `{name}` is not declared (the spec validator should have caught this)"
        ))
    })?;
    let input = fsx::Access::new(ctx.root)?.input(&d.path.0)?;
    Ok((input, d.path.0.clone(), d.format))
}

fn data_err(e: data::DataError) -> StageError {
    let hint = e.hint();
    user(e.to_string(), hint)
}

fn train_tokenizer(
    ctx: &StageContext<'_>,
    dataset: &str,
    vocab_size: u64,
    min_frequency: u64,
    opts: &ReadOptions,
) -> Result<Tokenizer, StageError> {
    let (input, display, _) = dataset_path(ctx, dataset)?;
    let read = data::read_text(&input, *opts).map_err(data_err)?;
    let docs: Vec<&str> = read.records.iter().map(|d| d.text.as_str()).collect();
    Tokenizer::train_bpe(
        &docs,
        vocab_size as usize,
        min_frequency,
        crate::tokenizer::DEFAULT_SPECIALS,
    )
    .map_err(|e| {
        user(
            format!("training the tokenizer on dataset `{dataset}` ({display}): {e}"),
            "check `tokenizer.train` (vocab_size, min_frequency) and the dataset",
        )
    })
}

fn load_spec_base(
    ctx: &StageContext<'_>,
    dev: &Device,
    opts: &ReadOptions,
) -> Result<Base, StageError> {
    let spec = ctx.spec;
    let family = spec.model.family;
    // The model's own files, when it comes from disk; a model directory also names its end
    // tokens (generation_config.json, config.json).
    let mut model_dir = None;
    let (mut from_model, tok_json, tc_template, tok_config) = match &spec.model.source {
        ModelSource::Init(_) => (None, None, None, None),
        ModelSource::From(p) => {
            // Every file of it inside the project root (or allowed), as `medrun lock` pinned it.
            let path = fsx::Access::new(ctx.root)?.input(&p.0)?.path;
            let what = format!("model `{}`", p.0);
            if Path::new(&p.0)
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
            {
                let g = gguf::load(&path, family, dev).map_err(model_err(&what))?;
                let tj = serde_json::to_vec(&g.tokenizer_json)
                    .map_err(|e| internal(format!("{what}: tokenizer: {e}")))?;
                (Some((g.config, g.tensors)), Some(tj), g.chat_template, None)
            } else {
                let h = hf::load_dir(&path, family, dev).map_err(model_err(&what))?;
                model_dir = Some(path.clone());
                let tmpl = h.tokenizer_config.as_ref().and_then(chat_template_of);
                let tc = h.tokenizer_config.clone();
                (Some((h.config, h.tensors)), h.tokenizer_json, tmpl, tc)
            }
        }
    };
    let tokenizer = match &spec.tokenizer {
        TokenizerSpec::Path(p) => Tokenizer::from_file(&fsx::Access::new(ctx.root)?.file(&p.0)?)
            .map_err(|e| user(e.to_string(), "check `tokenizer.path`"))?,
        TokenizerSpec::Train {
            dataset,
            vocab_size,
            min_frequency,
        } => train_tokenizer(ctx, dataset, *vocab_size, *min_frequency, opts)?,
        TokenizerSpec::FromModel => {
            let bytes = tok_json.ok_or_else(|| {
                user(
                    "the spec sets no `tokenizer`, so the model's own is used, but the model directory has no tokenizer.json",
                    "add tokenizer.json to the model directory or set `tokenizer.path`",
                )
            })?;
            let bad = |e: crate::tokenizer::TokenizerError| {
                user(e.to_string(), "check the model's tokenizer files")
            };
            let tok = Tokenizer::from_bytes(&bytes, "the model's tokenizer").map_err(bad)?;
            // Special tokens: tokenizer_config.json (HF directory) or the model's own config
            // (GGUF metadata) name them; guessing from the vocabulary is the last resort.
            match &tok_config {
                Some(tc) => {
                    tok.configured(tc, "the model's tokenizer_config.json")
                        .map_err(bad)?
                        .0
                }
                None => {
                    // EOS and BOS as the model's config names them (ids the vocabulary lacks
                    // are ignored), as the GGUF backend of `medrun eval` reads them.
                    let cfg = from_model.as_ref().map(|m| &m.0);
                    let name = |id: Option<u32>| id.and_then(|i| tok.id_to_token(i));
                    let eos = name(cfg.and_then(|c| c.eos_token_id));
                    let bos = name(cfg.and_then(|c| c.bos_token_id));
                    tok.with_specials(eos.as_deref(), bos.as_deref(), None)
                        .map_err(bad)?
                }
            }
        }
    };
    let end_tokens = match (&spec.tokenizer, &model_dir) {
        (TokenizerSpec::FromModel, Some(dir)) => {
            crate::generation::end_tokens_of_dir(dir, &tokenizer)
                .map_err(|e| user(e.to_string(), e.hint()))?
                .ids
        }
        _ => vec![tokenizer.eos_id()],
    };
    let (cfg, params) = match (&spec.model.source, from_model.take()) {
        (ModelSource::Init(init), _) => {
            let mut cfg = ModelConfig::from_init(family, init, tokenizer.vocab_size());
            cfg.eos_token_id = Some(tokenizer.eos_id());
            cfg.pad_token_id = Some(tokenizer.pad_id());
            cfg.bos_token_id = tokenizer.bos_id();
            let params = Params::init(&cfg, spec.seed, dev).map_err(model_err("model init"))?;
            (cfg, params)
        }
        (_, Some((cfg, tensors))) => {
            let mut params = params_from(tensors).map_err(model_err("model"))?;
            if cfg.tie_word_embeddings {
                params = drop_tensor(params, "lm_head.weight");
            }
            (cfg, params)
        }
        (_, None) => return Err(internal("model source without weights")),
    };
    if tokenizer.vocab_size() > cfg.vocab_size {
        return Err(user(
            format!(
                "the tokenizer has {} tokens but the model's embedding has {} rows",
                tokenizer.vocab_size(),
                cfg.vocab_size
            ),
            "use the model's own tokenizer (leave `tokenizer` out of the spec)",
        ));
    }
    Ok(Base {
        cfg,
        params,
        tokenizer,
        model_template: tc_template,
        end_tokens,
    })
}

/// The chat template in a `tokenizer_config.json`: a string, or a list of named templates of which
/// the one named `default` is used.
fn chat_template_of(tc: &Value) -> Option<String> {
    match tc.get("chat_template")? {
        Value::String(s) => Some(s.clone()),
        Value::Array(list) => list
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .and_then(|t| t.get("template"))
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => None,
    }
}

fn template_for(spec: &Spec, base: &Base, root: &Path) -> Result<ChatTemplate, StageError> {
    let tok = &base.tokenizer;
    let eos = tok.id_to_token(tok.eos_id()).unwrap_or_default();
    let bos = tok.bos_id().and_then(|b| tok.id_to_token(b));
    let bad = |e: crate::template::TemplateError| user(e.to_string(), "fix the chat template");
    match &spec.template {
        TemplateSpec::Builtin(name) => {
            ChatTemplate::builtin(name, &eos, bos.as_deref()).map_err(bad)
        }
        TemplateSpec::File(p) => {
            let src = fsx::Access::new(root)?.read_text(&p.0)?;
            ChatTemplate::jinja(&src, &eos, bos.as_deref(), &p.0).map_err(bad)
        }
        TemplateSpec::FromModel => {
            let src = base.model_template.as_deref().ok_or_else(|| {
                user(
                    "`template: model` (the default with `model.from`) but the model ships no chat template",
                    "name a built-in template (chatml, qwen, llama2, llama3, baichuan2) or a Jinja file",
                )
            })?;
            ChatTemplate::jinja(src, &eos, bos.as_deref(), "the model's chat_template").map_err(bad)
        }
    }
}

fn to_template_turns(turns: &[data::Turn]) -> Vec<TTurn> {
    turns
        .iter()
        .map(|t| TTurn {
            role: match t.role {
                data::Role::System => TRole::System,
                data::Role::User => TRole::User,
                data::Role::Assistant => TRole::Assistant,
            },
            content: t.content.clone(),
        })
        .collect()
}

/// What the data readers did, per dataset; written to `data.json`.
#[derive(Debug, Default, serde::Serialize)]
struct DataReport {
    datasets: BTreeMap<String, DatasetReport>,
    train_examples: u64,
    val_examples: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    packing: Option<pt::PackReport>,
}

#[derive(Debug, Default, serde::Serialize)]
struct DatasetReport {
    path: String,
    records: u64,
    /// Records left out because nothing to train on survived truncation.
    truncated_away: u64,
    skipped: Vec<SkippedRecord>,
}

#[derive(Debug, serde::Serialize)]
struct SkippedRecord {
    file: String,
    line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    reason: String,
}

fn skipped(v: &[Skipped]) -> Vec<SkippedRecord> {
    v.iter()
        .map(|s| SkippedRecord {
            file: s.file.clone(),
            line: s.line,
            field: s.field.clone(),
            reason: s.reason.clone(),
        })
        .collect()
}

fn encode(tok: &Tokenizer, text: &str, at: &str) -> Result<Vec<u32>, StageError> {
    tok.encode(text).map_err(|e| {
        user(
            format!("{at}: cannot tokenise: {e}"),
            "check the record's text",
        )
    })
}

/// Split examples into train and validation by the stage's seed.
fn split_val<T>(items: Vec<T>, fraction: f64, seed: u64, stage: &str) -> (Vec<T>, Vec<T>) {
    let n = items.len();
    let n_val = ((n as f64) * fraction).floor() as usize;
    let n_val = n_val.min(n.saturating_sub(1));
    if n_val == 0 {
        return (items, Vec::new());
    }
    let order = epoch_order(n, seed, &format!("val-split/{stage}"), 0);
    let val_set: std::collections::BTreeSet<usize> = order[..n_val].iter().copied().collect();
    let mut train = Vec::with_capacity(n - n_val);
    let mut val = Vec::with_capacity(n_val);
    for (i, x) in items.into_iter().enumerate() {
        if val_set.contains(&i) {
            val.push(x);
        } else {
            train.push(x);
        }
    }
    (train, val)
}

fn first_n<T>(mut v: Vec<T>, n: Option<u64>) -> Vec<T> {
    if let Some(n) = n {
        v.truncate(n as usize);
    }
    v
}

enum Prepared {
    Lm(Vec<LmExample>, Vec<LmExample>),
    Pref(Vec<PrefExample>),
}

fn prepare(
    ctx: &StageContext<'_>,
    base: &Base,
    opts: &ReadOptions,
    report: &mut DataReport,
) -> Result<Prepared, StageError> {
    let stage = ctx.stage;
    let tok = &base.tokenizer;
    let max_len = stage.max_len as usize;
    match stage.kind {
        StageKind::Pt => {
            let mut docs = Vec::new();
            for name in &stage.datasets {
                let (input, display, _) = dataset_path(ctx, name)?;
                let read = data::read_text(&input, *opts).map_err(data_err)?;
                for d in &read.records {
                    docs.push(encode(tok, &d.text, &format!("{display}:{}", d.line))?);
                }
                report.datasets.insert(
                    name.clone(),
                    DatasetReport {
                        path: display,
                        records: read.records.len() as u64,
                        truncated_away: 0,
                        skipped: skipped(&read.skipped),
                    },
                );
            }
            let (blocks, pack) = pt::pack(&docs, tok.eos_id(), max_len);
            if blocks.is_empty() {
                return Err(user(
                    format!(
                        "stage `{}`: the PT corpus has {} tokens, fewer than one block of max_len {}",
                        stage.name, pack.tokens, max_len
                    ),
                    "lower the stage's `max_len` or add text",
                ));
            }
            report.packing = Some(pack);
            let blocks = first_n(blocks, stage.max_samples);
            let (train, val) = split_val(blocks, stage.val_fraction, ctx.spec.seed, &stage.name);
            Ok(Prepared::Lm(train, val))
        }
        StageKind::Sft => {
            let template = template_for(ctx.spec, base, ctx.root)?;
            let mut examples = Vec::new();
            for name in &stage.datasets {
                let (input, display, _) = dataset_path(ctx, name)?;
                let read = data::read_sharegpt(&input, *opts).map_err(data_err)?;
                let mut dropped = 0u64;
                for c in &read.records {
                    let at = format!("{display}:{}", c.line);
                    let segs = template.render(&to_template_turns(&c.turns)).map_err(|e| {
                        user(
                            format!("{at}: {e}"),
                            "check the conversation and the template",
                        )
                    })?;
                    let mut toks = Vec::with_capacity(segs.len());
                    for s in &segs {
                        toks.push((encode(tok, &s.text, &at)?, s.train));
                    }
                    match sft::example(&toks, max_len) {
                        Some(e) => examples.push(e),
                        None => dropped += 1,
                    }
                }
                report.datasets.insert(
                    name.clone(),
                    DatasetReport {
                        path: display,
                        records: read.records.len() as u64,
                        truncated_away: dropped,
                        skipped: skipped(&read.skipped),
                    },
                );
            }
            if examples.is_empty() {
                return Err(user(
                    format!("stage `{}` has no SFT example left to train on", stage.name),
                    "raise `max_len` (answers were truncated away) or check the data",
                ));
            }
            let examples = first_n(examples, stage.max_samples);
            let (train, val) = split_val(examples, stage.val_fraction, ctx.spec.seed, &stage.name);
            Ok(Prepared::Lm(train, val))
        }
        StageKind::Dpo => {
            let template = template_for(ctx.spec, base, ctx.root)?;
            let mut pairs = Vec::new();
            for name in &stage.datasets {
                let (input, display, _) = dataset_path(ctx, name)?;
                let read = data::read_preference(&input, *opts).map_err(data_err)?;
                let mut dropped = 0u64;
                for p in &read.records {
                    let at = format!("{display}:{}", p.line);
                    let prompt = template
                        .render_prompt(&to_template_turns(&p.prompt))
                        .map_err(|e| {
                            user(
                                format!("{at}: {e}"),
                                "check the prompt turns and the template",
                            )
                        })?;
                    let e = dpo::example(
                        &encode(tok, &prompt, &at)?,
                        &encode(tok, &p.chosen, &at)?,
                        &encode(tok, &p.rejected, &at)?,
                        tok.eos_id(),
                        max_len,
                    );
                    match e {
                        Some(e) => pairs.push(e),
                        None => dropped += 1,
                    }
                }
                report.datasets.insert(
                    name.clone(),
                    DatasetReport {
                        path: display,
                        records: read.records.len() as u64,
                        truncated_away: dropped,
                        skipped: skipped(&read.skipped),
                    },
                );
            }
            if pairs.is_empty() {
                return Err(user(
                    format!(
                        "stage `{}` has no preference pair left to train on",
                        stage.name
                    ),
                    "raise `max_len` or check the data",
                ));
            }
            Ok(Prepared::Pref(first_n(pairs, stage.max_samples)))
        }
    }
}

fn total_steps(stage: &Stage, n_examples: usize) -> u64 {
    match stage.length {
        Length::MaxSteps(n) => n,
        Length::Epochs(e) => {
            let per_step = (stage.batch_size * stage.grad_accum.max(1)).max(1);
            e * (n_examples as u64).div_ceil(per_step).max(1)
        }
    }
}

fn is_adapter(name: &str) -> bool {
    name.starts_with("base_model.model.")
}

/// Only the parameters the optimizer updates (what a checkpoint must hold).
fn trainable_only(p: &Params) -> Params {
    let mut out = Params::default();
    for (n, v) in p.trainable() {
        out.insert(n.clone(), Param::Trainable(v.clone()));
    }
    out
}

fn put_tree(ctx: &StageContext<'_>, files: &[(&str, &[u8])]) -> Result<String, StageError> {
    let mut tree = Tree::default();
    for (name, bytes) in files {
        let id = ctx.store.put_bytes(bytes).map_err(store_err)?;
        tree.entries.insert(
            name.to_string(),
            TreeEntry {
                object: id,
                bytes: bytes.len() as u64,
            },
        );
    }
    tree.put(ctx.store).map_err(store_err)
}

fn load_resume(
    ctx: &StageContext<'_>,
    dev: &Device,
    base: &Params,
    lora: bool,
) -> Result<Option<(Params, AdamW, LoopState)>, StageError> {
    let Some(id) = ctx.store.resume_point(ctx.key).map_err(store_err)? else {
        return Ok(None);
    };
    let corrupt = |m: String| {
        user(
            format!(
                "the resume checkpoint of stage `{}` ({id}) is unusable: {m}",
                ctx.stage.name
            ),
            format!(
                "run `medrun verify`; to start the stage over, delete {}",
                ctx.store
                    .root()
                    .join("keys-v1")
                    .join(&ctx.key[..2.min(ctx.key.len())])
                    .join(format!("{}.ckpt", ctx.key))
                    .display()
            ),
        )
    };
    let tree = Tree::load(ctx.store, &id).map_err(|e| corrupt(e.to_string()))?;
    let get = |name: &str| -> Result<Vec<u8>, StageError> {
        let e = tree
            .entries
            .get(name)
            .ok_or_else(|| corrupt(format!("no `{name}`")))?;
        ctx.store.get(&e.object).map_err(|e| corrupt(e.to_string()))
    };
    let bytes = CheckpointBytes {
        model: get(ckpt::MODEL_FILE)?,
        optimizer: get(ckpt::OPTIMIZER_FILE)?,
        state: get(ckpt::STATE_FILE)?,
    };
    let (saved, opt, state) = ckpt::load(&bytes, &ctx.stage.optimizer, dev, &|_| true)
        .map_err(|e| corrupt(e.to_string()))?;
    // LoRA checkpoints hold the adapters only; the frozen base comes from the parent.
    let mut params = if lora {
        base.frozen().map_err(model_err("resume"))?
    } else {
        Params::default()
    };
    for (n, p) in saved.iter() {
        params.insert(n.clone(), p.clone());
    }
    Ok(Some((params, opt, state)))
}

fn write(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    files: &mut BTreeMap<String, PathBuf>,
) -> Result<(), StageError> {
    let p = dir.join(name);
    crate::store::atomic_write(&p, bytes).map_err(|e| {
        user(
            format!("cannot write {}: {e}", p.display()),
            "check free disk space",
        )
    })?;
    files.insert(name.to_string(), p);
    Ok(())
}

fn json_bytes(v: &Value) -> Vec<u8> {
    let mut b = serde_json::to_vec_pretty(v).unwrap_or_default();
    b.push(b'\n');
    b
}

/// `tokenizer_config.json` for the output directory: special tokens, and the chat template when
/// it is Jinja (built-in templates are recorded by name).
fn tokenizer_config(spec: &Spec, base: &Base, max_len: u64) -> Value {
    let tok = &base.tokenizer;
    let name = |id: Option<u32>| id.and_then(|i| tok.id_to_token(i));
    let mut v = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": name(Some(tok.eos_id())),
        "pad_token": name(Some(tok.pad_id())),
        "model_max_length": max_len,
        "clean_up_tokenization_spaces": false,
    });
    if let Some(b) = name(tok.bos_id()) {
        v["bos_token"] = json!(b);
    }
    match &spec.template {
        TemplateSpec::Builtin(n) => v["medrun_template"] = json!(n),
        TemplateSpec::File(_) | TemplateSpec::FromModel => {
            if let Some(t) = &base.model_template {
                v["chat_template"] = json!(t);
            }
        }
    }
    v
}

/// `generation_config.json` for the output directory: the starting model's end tokens plus the
/// chat template's end-of-turn token (see [`crate::generation`]), BOS and padding.
fn generation_config(ctx: &StageContext<'_>, base: &Base) -> Value {
    let tok = &base.tokenizer;
    let turn_end = template_for(ctx.spec, base, ctx.root)
        .ok()
        .and_then(|t| crate::generation::template_end_of_turn(&t, tok));
    let ends = crate::generation::with_end_of_turn(&base.end_tokens, turn_end);
    crate::generation::generation_config(&ends, tok.bos_id(), Some(tok.pad_id()))
}

impl StageExecutor for TrainExecutor {
    fn check(&self, spec: &Spec, _stage: &Stage) -> Result<(), StageError> {
        device_for(spec).map(|_| ())
    }

    /// A from-scratch spec's untrained model: `Params::init` from the spec's seed (host-generated,
    /// so the same values on every device) with the first stage's config and tokenizer: exactly
    /// the parameters that stage started training from (its trajectory's step 0). A spec that
    /// starts from a pretrained model gets none here: `medrun eval` scores that model directly
    /// once it is a stage output.
    fn initial_model(
        &self,
        spec: &Spec,
        first: &Tree,
        store: &crate::store::Store,
    ) -> Result<Option<Tree>, StageError> {
        if !matches!(spec.model.source, ModelSource::Init(_)) {
            return Ok(None);
        }
        let entry = |name: &str| {
            first.entries.get(name).cloned().ok_or_else(|| {
                internal(format!(
                    "the first stage's output has no `{name}` to build the base model from"
                ))
            })
        };
        let config_entry = entry("config.json")?;
        let bytes = store
            .get(&config_entry.object)
            .map_err(|e| store_err(e.within("`config.json` of the first stage's output")))?;
        let config: Value = serde_json::from_slice(&bytes)
            .map_err(|e| internal(format!("the first stage's config.json: {e}")))?;
        let cfg = parse_hf_config(&config, spec.model.family).map_err(model_err("config.json"))?;
        let params =
            Params::init(&cfg, spec.seed, &Device::Cpu).map_err(model_err("model init"))?;
        let mut tensors = params.to_f32().map_err(model_err("model init"))?;
        tensors.retain(|(n, _, _)| !(cfg.tie_word_embeddings && n == "lm_head.weight"));
        let weights = safetensors_bytes(&tensors);
        let object = store.put_bytes(&weights).map_err(store_err)?;
        let mut tree = Tree::default();
        tree.entries.insert("config.json".into(), config_entry);
        for name in ["tokenizer.json", "tokenizer_config.json"] {
            tree.entries.insert(name.into(), entry(name)?);
        }
        tree.entries.insert(
            "model.safetensors".into(),
            TreeEntry {
                object,
                bytes: weights.len() as u64,
            },
        );
        Ok(Some(tree))
    }

    fn execute(&self, ctx: &StageContext<'_>) -> Result<StageOutput, StageError> {
        let dev = device_for(ctx.spec)?;
        let stage = ctx.stage;
        let opts = ReadOptions {
            skip_bad_records: ctx.skip_bad_records,
            ..ReadOptions::default()
        };
        tracing::info!(stage = %stage.name, "loading the base model");
        let mut base = match load_parent(ctx, &dev)? {
            Some(b) => b,
            None => load_spec_base(ctx, &dev, &opts)?,
        };
        if let TemplateSpec::File(p) = &ctx.spec.template {
            base.model_template = Some(fsx::Access::new(ctx.root)?.read_text(&p.0)?);
        }
        let mut report = DataReport::default();
        let prepared = prepare(ctx, &base, &opts, &mut report)?;
        let kernels = Kernels::for_device(&dev);
        let seed = ctx.spec.seed;
        let batch = stage.batch_size as usize;
        let pad = base.tokenizer.pad_id();

        // Trainable parameters: LoRA adapters over a frozen base, or every weight.
        let (params, lora_fwd) = match &stage.lora {
            Some(l) => {
                let lseed = Rng::for_purpose(seed, &format!("lora/{}", stage.name)).next_u64();
                let (p, f) = lora::attach(&base.params, &base.cfg, l, lseed, &dev)
                    .map_err(model_err("LoRA"))?;
                (p, Some(f))
            }
            None => (
                base.params.trainable_copy().map_err(model_err("model"))?,
                None,
            ),
        };
        let (mut task, n_examples): (Box<dyn StageTask>, usize) = match prepared {
            Prepared::Lm(train, val) => {
                report.train_examples = train.len() as u64;
                report.val_examples = val.len() as u64;
                let n = train.len();
                (
                    Box::new(LmTask {
                        examples: train,
                        val,
                        batch_size: batch,
                        pad,
                        sampler: Sampler::new(n, seed, &stage.name),
                    }),
                    n,
                )
            }
            Prepared::Pref(pairs) => {
                report.train_examples = pairs.len() as u64;
                // The reference is the stage's starting model (with LoRA: adapters off).
                tracing::info!(pairs = pairs.len(), "caching reference log-probs");
                let mut reference = backend::scorer(kernels, &base.cfg, &dev, &base.params)
                    .map_err(model_err("reference"))?;
                let cached = DpoTask::cache_reference(reference.as_mut(), &pairs)
                    .map_err(model_err("reference log-probs"))?;
                drop(reference);
                let n = pairs.len();
                (
                    Box::new(DpoTask {
                        examples: pairs,
                        reference: cached,
                        beta: stage.beta.unwrap_or(0.1),
                        batch_size: batch,
                        pad,
                        sampler: Sampler::new(n, seed, &stage.name),
                    }),
                    n,
                )
            }
        };
        let total = total_steps(stage, n_examples);
        let n_params: usize = params
            .to_f32()
            .map(|v| v.iter().map(|t| t.2.len()).sum())
            .unwrap_or(0);
        let n_trainable: usize = params
            .trainable()
            .iter()
            .map(|(_, v)| v.as_tensor().elem_count())
            .sum();
        let cfg = LoopConfig {
            stage: stage.clone(),
            total_steps: total,
            seed,
            fingerprint_every: if n_params <= 20_000_000 {
                1
            } else {
                (total / 50).max(1)
            },
        };

        let (params, opt, mut state) =
            match load_resume(ctx, &dev, &base.params, stage.lora.is_some())? {
                Some((p, o, s)) => {
                    tracing::info!(step = s.step, "resuming from checkpoint");
                    (p, o, s)
                }
                None => (
                    params,
                    AdamW::new(stage.optimizer.clone()),
                    engine::fresh_state(seed, &stage.name),
                ),
            };
        let resumed_at = state.step;
        let mut model = backend::build(kernels, &base.cfg, &dev, &params, lora_fwd.clone(), &opt)
            .map_err(model_err("model"))?;
        drop((params, opt));

        // Progress and timings.
        let bar = if ctx.progress {
            let pb = indicatif::ProgressBar::new(total);
            pb.set_style(
                indicatif::ProgressStyle::with_template(
                    "  {prefix:<8} [{bar:30}] {pos}/{len} {msg} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            pb.set_prefix(stage.name.clone());
            pb.set_position(resumed_at);
            Some(pb)
        } else {
            None
        };
        let mut timings: Vec<Value> = Vec::new();
        let mut last = Instant::now();
        let started = Instant::now();
        let mut progress = |m: &StepMetrics| {
            let dt = last.elapsed().as_secs_f64();
            last = Instant::now();
            let tps = if dt > 0.0 { m.tokens as f64 / dt } else { 0.0 };
            timings.push(json!({"step": m.step, "seconds": dt, "tokens_per_second": tps}));
            if let Some(pb) = &bar {
                pb.set_position(m.step);
                pb.set_message(format!("loss {:.4}  {:.0} tok/s", m.loss, tps));
            }
            tracing::debug!(
                step = m.step,
                loss = m.loss,
                lr = m.lr,
                grad_norm = m.grad_norm,
                "step"
            );
        };
        let lora_mode = stage.lora.is_some();
        let mut checkpoint = |p: &Params, o: &AdamW, s: &LoopState| -> Result<(), TrainError> {
            let saved = if lora_mode {
                trainable_only(p)
            } else {
                p.clone()
            };
            let b = ckpt::save(&saved, o, s)?;
            let id = put_tree(
                ctx,
                &[
                    (ckpt::MODEL_FILE, &b.model),
                    (ckpt::OPTIMIZER_FILE, &b.optimizer),
                    (ckpt::STATE_FILE, &b.state),
                ],
            )
            .map_err(|e| TrainError::Checkpoint(e.message))?;
            ctx.store
                .set_resume_point(ctx.key, &id)
                .map_err(|e| TrainError::Checkpoint(e.to_string()))?;
            tracing::info!(step = s.step, checkpoint = %id, "checkpoint");
            Ok(())
        };
        let result = engine::run(
            &cfg,
            model.as_mut(),
            &mut state,
            task.as_mut(),
            &mut checkpoint,
            &mut progress,
        );
        if let Some(pb) = &bar {
            pb.finish_and_clear();
        }
        if let Err(e) = result {
            let kept = ctx.store.resume_point(ctx.key).ok().flatten();
            return Err(match e {
                TrainError::NonFinite {
                    what,
                    stage: s,
                    step,
                    value,
                } => user(
                    format!("{what} is {value} at step {step} of stage `{s}`; training stopped"),
                    match kept {
                        Some(id) => format!(
                            "the last good checkpoint ({}) is kept; lower `optimizer.lr` or set `clip_grad`, then run again",
                            &id[..12.min(id.len())]
                        ),
                        None => "no checkpoint was written yet; lower `optimizer.lr`, set `clip_grad`, or set `checkpoint_every`".into(),
                    },
                ),
                TrainError::Model(m) => model_err(&format!("stage `{}`", stage.name))(m),
                TrainError::Checkpoint(m) => user(
                    format!("stage `{}`: writing a checkpoint failed: {m}", stage.name),
                    "check free disk space; the previous checkpoint is kept and a re-run resumes from it",
                ),
            });
        }
        let elapsed = started.elapsed().as_secs_f64();

        // Outputs.
        let params = model.params().map_err(model_err("output"))?;
        drop(model);
        let work = ctx.work_dir;
        let mut files = BTreeMap::new();
        let merged = match &lora_fwd {
            Some(f) => lora::merge(&params, f.scale).map_err(model_err("LoRA merge"))?,
            None => params.clone(),
        };
        let mut tensors = merged.to_f32().map_err(model_err("output"))?;
        tensors.retain(|(n, _, _)| !(base.cfg.tie_word_embeddings && n == "lm_head.weight"));
        write(
            work,
            "model.safetensors",
            &safetensors_bytes(&tensors),
            &mut files,
        )?;
        write(
            work,
            "config.json",
            &json_bytes(&hf_config(&base.cfg)),
            &mut files,
        )?;
        let tj = base
            .tokenizer
            .to_json()
            .map_err(|e| internal(format!("tokenizer: {e}")))?;
        write(work, "tokenizer.json", &tj, &mut files)?;
        write(
            work,
            "tokenizer_config.json",
            &json_bytes(&tokenizer_config(ctx.spec, &base, stage.max_len)),
            &mut files,
        )?;
        write(
            work,
            "generation_config.json",
            &json_bytes(&generation_config(ctx, &base)),
            &mut files,
        )?;
        if let Some(l) = &stage.lora {
            let mut adapter = trainable_only(&params)
                .to_f32()
                .map_err(model_err("adapter"))?;
            adapter.retain(|(n, _, _)| is_adapter(n));
            write(
                work,
                "adapter_model.safetensors",
                &safetensors_bytes(&adapter),
                &mut files,
            )?;
            let modules = lora::target_modules(&base.cfg, &l.targets);
            let mut leaves: Vec<String> = modules
                .iter()
                .filter_map(|m| m.rsplit('.').next().map(str::to_string))
                .collect();
            leaves.sort();
            leaves.dedup();
            let ac = json!({
                "peft_type": "LORA",
                "task_type": "CAUSAL_LM",
                "r": l.r,
                "lora_alpha": l.alpha,
                "lora_dropout": l.dropout,
                "target_modules": leaves,
                "bias": "none",
                "fan_in_fan_out": false,
                "inference_mode": true,
                "base_model_name_or_path": null,
            });
            write(work, "adapter_config.json", &json_bytes(&ac), &mut files)?;
        }
        let mut metrics = Vec::new();
        for m in &state.metrics {
            let line = serde_json::to_vec(m).map_err(|e| internal(e.to_string()))?;
            metrics.extend_from_slice(&line);
            metrics.push(b'\n');
        }
        write(work, "metrics.jsonl", &metrics, &mut files)?;
        let traj = json!({
            "fingerprint": "blake3 over parameter names, shapes and f32 bytes, sorted by name",
            "every": cfg.fingerprint_every,
            "steps": state.trajectory.iter().map(|(s, h)| json!({"step": s, "params": h})).collect::<Vec<_>>(),
            "eval_loss": state.eval.iter().map(|(s, l)| json!({"step": s, "loss": l})).collect::<Vec<_>>(),
        });
        write(work, "trajectory.json", &json_bytes(&traj), &mut files)?;
        let data_json = serde_json::to_value(&report).map_err(|e| internal(e.to_string()))?;
        write(work, "data.json", &json_bytes(&data_json), &mut files)?;

        let mut logs = BTreeMap::new();
        let mut tl = Vec::new();
        for t in &timings {
            tl.extend_from_slice(t.to_string().as_bytes());
            tl.push(b'\n');
        }
        let tp = work.join("timings.jsonl");
        std::fs::write(&tp, &tl).map_err(|e| {
            user(
                format!("cannot write {}: {e}", tp.display()),
                "check free disk space",
            )
        })?;
        logs.insert("timings.jsonl".to_string(), tp);

        let summary = summarize(
            &state,
            &report,
            total,
            resumed_at,
            n_trainable,
            elapsed,
            &timings,
        );
        Ok(StageOutput {
            files,
            logs,
            metrics: summary,
        })
    }
}

fn summarize(
    state: &LoopState,
    report: &DataReport,
    total: u64,
    resumed_at: u64,
    n_params: usize,
    elapsed: f64,
    timings: &[Value],
) -> Value {
    let mean_of = |ms: &[StepMetrics], f: &dyn Fn(&StepMetrics) -> Option<f64>| {
        let v: Vec<f64> = ms.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let k = (state.metrics.len() / 10).max(1);
    let head = &state.metrics[..k.min(state.metrics.len())];
    let tail = &state.metrics[state.metrics.len().saturating_sub(k)..];
    let tokens: u64 = state.metrics.iter().map(|m| m.tokens).sum();
    let trained_here: u64 = timings
        .iter()
        .filter_map(|t| t.get("step").and_then(Value::as_u64))
        .count() as u64;
    let mut v = json!({
        "steps": total,
        "resumed_at_step": resumed_at,
        "trainable_parameters": n_params,
        "train_examples": report.train_examples,
        "val_examples": report.val_examples,
        "supervised_tokens": tokens,
        "loss_first": mean_of(head, &|m| Some(m.loss)),
        "loss_last": mean_of(tail, &|m| Some(m.loss)),
        "seconds": elapsed,
        "skipped_records": report.datasets.values().map(|d| d.skipped.len()).sum::<usize>(),
    });
    if trained_here > 0 && elapsed > 0.0 {
        let here: u64 = state
            .metrics
            .iter()
            .rev()
            .take(trained_here as usize)
            .map(|m| m.tokens)
            .sum();
        v["tokens_per_second"] = json!(here as f64 / elapsed);
    }
    if let Some((_, l)) = state.eval.last() {
        v["eval_loss"] = json!(l);
    }
    for key in [
        "rewards/accuracy",
        "rewards/margins",
        "rewards/chosen",
        "rewards/rejected",
    ] {
        if let Some(x) = mean_of(tail, &|m| m.extra.get(key).copied()) {
            v[key] = json!(x);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_split_is_seeded_and_disjoint() {
        let items: Vec<u32> = (0..20).collect();
        let (t1, v1) = split_val(items.clone(), 0.2, 7, "sft");
        let (t2, v2) = split_val(items.clone(), 0.2, 7, "sft");
        assert_eq!((t1.clone(), v1.clone()), (t2, v2));
        assert_eq!(v1.len(), 4);
        assert_eq!(t1.len() + v1.len(), 20);
        assert!(v1.iter().all(|x| !t1.contains(x)));
        let (_, v3) = split_val(items, 0.2, 8, "sft");
        assert_ne!(v1, v3, "another seed picks another split");
        let (t, v) = split_val(vec![1], 0.5, 1, "x");
        assert_eq!((t.len(), v.len()), (1, 0), "never leaves training empty");
    }
}
