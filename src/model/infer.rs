//! Inference with a key/value cache: the decoder's forward pass over frozen parameters,
//! continuing from the keys and values of earlier positions instead of recomputing them.
//!
//! The projections and the MLP are the training forward's own ([`Transformer`]'s `linear` and
//! `mlp`), so every family it supports works here: Llama (RoPE, GQA, tied or untied head),
//! Qwen2 (q/k/v biases), Baichuan2 (`W_pack`, NormHead, RoPE or ALiBi). Without gradients to
//! keep, RMSNorm, RoPE and softmax use candle's fused kernels (the training forward cannot:
//! they drop gradients), and grouped-query attention multiplies each key/value head with its
//! group of query heads at once instead of copying keys and values per head. These agree with
//! the training forward to float rounding (the tests hold them to 1e-4). New positions start
//! at the cache's length `P` (RoPE rows `P..P+L`, ALiBi distances to the absolute key
//! positions); their keys are the cached ones followed by their own, with a causal mask inside
//! the new block.
//!
//! - [`Infer`] owns the model, the frozen parameters and the output head (normalised once for
//!   NormHead). [`Infer::forward`] runs `rows` sequences of equal length after a shared (or
//!   per-row) cache and returns final hidden states and the extended cache; [`Infer::logits`]
//!   applies the head to whichever rows are needed.
//! - [`Session`] is one sequence: [`Session::prefill`] / [`Session::extend`] return logits,
//!   [`Session::fork`] copies the (reference-counted) cache so one context can be continued in
//!   several ways, and [`Session::extend_rows`] scores several continuations of the cached
//!   context in one batched pass without changing the session.
//!
//! Right padding is allowed in a batch (rows of a sequence past its real end): causal masking
//! keeps real positions from seeing them. Such rows must not be extended further, which is why
//! [`Infer::forward`] returns the cache but callers that pad use it only for scoring.
//!
//! # Batching without changing results
//! A batched forward stacks the rows of every sequence into one matrix for each linear layer,
//! so the row count of those matrix products depends on the batch. [`Infer::min_stack_rows`]
//! gives the smallest per-sequence length for which that cannot change any sequence's values;
//! see its documentation and `eval::backend` for how the evaluation backend uses it.

use candle_core::{DType, Device, Tensor};

use super::ModelError;
use super::config::ModelConfig;
use super::params::Params;
use super::transformer::{Forward, Transformer, alibi_slopes};
use crate::spec::{Family, Position};

/// Queries are processed in blocks of this many rows, so attention scores for a long sequence
/// take `heads × QUERY_BLOCK × keys` floats instead of `heads × len × keys`.
const QUERY_BLOCK: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("inference: {0}")]
    Candle(#[from] candle_core::Error),
    #[error(
        "the parameters hold the LoRA adapter `{0}`: merge the adapters into the base weights before inference"
    )]
    Adapter(String),
    #[error("{ids} token ids do not form {rows} rows of equal length")]
    Shape { ids: usize, rows: usize },
    #[error("nothing to run: no token ids")]
    Empty,
    #[error("the cache holds {cache} rows but {rows} rows continue it")]
    CacheRows { cache: usize, rows: usize },
    #[error("token id {id} is outside the model's vocabulary of {vocab}")]
    Id { id: u32, vocab: usize },
}

type R<T> = Result<T, InferError>;

/// Keys and values of every layer for the positions seen so far, `[rows, kv_heads, len,
/// head_dim]` each, keys after RoPE. Cloning is cheap (tensors are reference-counted).
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<(Tensor, Tensor)>,
    rows: usize,
    len: usize,
}

impl KvCache {
    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of sequences (batch rows) the cache holds.
    pub fn rows(&self) -> usize {
        self.rows
    }
}

/// A model ready for inference: frozen parameters and the output head computed once.
pub struct Infer {
    model: Transformer,
    params: Params,
    /// [V, H]: tied embeddings or `lm_head`, row-normalised for NormHead.
    head: Tensor,
    /// RoPE tables [max_positions, head_dim / 2] (the fused kernel's layout).
    cos: Tensor,
    sin: Tensor,
    min_rows: usize,
}

impl std::fmt::Debug for Infer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Infer")
            .field("config", &self.model.cfg)
            .field("min_stack_rows", &self.min_rows)
            .finish_non_exhaustive()
    }
}

/// The smallest row count `M` of a stacked `[M, k] × [k, n]` product for which gemm 0.19 (the
/// matrix kernel under candle 0.11 on CPU) computes every output element the same way whatever
/// `M` is, for every linear layer of `cfg`. See [`Infer::min_stack_rows`].
fn min_stack_rows(cfg: &ModelConfig) -> usize {
    let (h, kv, i) = (cfg.hidden_size, cfg.kv_dim(), cfg.intermediate_size);
    // (k, n) of every linear layer in the decoder body.
    let mut shapes = vec![(h, h), (h, i), (i, h)];
    match cfg.family {
        Family::Baichuan2 => shapes.push((h, 3 * h)),
        Family::Llama | Family::Qwen2 => shapes.push((h, kv)),
    }
    let mut rows = 2;
    for (k, n) in shapes {
        // Not the "horizontal" kernel, which gemm uses when M·n <= 256.
        rows = rows.max(256 / n.max(1) + 1);
        // k is split into blocks of min(k, 512) when both sides are <= 64, otherwise into
        // blocks from the cache sizes: the same split only when k <= 512.
        if k > 512 && n <= 64 {
            rows = rows.max(65);
        }
    }
    rows
}

impl Infer {
    /// Freeze `params` (detached copies, no gradient graph) and prepare the head. LoRA adapter
    /// tensors are refused: merge them first (`model::lora::merge`).
    pub fn new(model: Transformer, params: &Params) -> R<Infer> {
        if let Some((name, _)) = params.iter().find(|(n, _)| n.contains("lora_")) {
            return Err(InferError::Adapter(name.clone()));
        }
        let params = params.frozen()?;
        let head = model.head(&params)?.contiguous()?;
        let min_rows = min_stack_rows(&model.cfg);
        let half = model.cfg.head_dim() / 2;
        let (cos, sin) = model.rope_tables();
        let (cos, sin) = (
            cos.narrow(1, 0, half)?.contiguous()?,
            sin.narrow(1, 0, half)?.contiguous()?,
        );
        Ok(Infer {
            model,
            params,
            head,
            cos,
            sin,
            min_rows,
        })
    }

    pub fn model(&self) -> &Transformer {
        &self.model
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn config(&self) -> &ModelConfig {
        &self.model.cfg
    }

    pub fn device(&self) -> &Device {
        &self.model.device
    }

    /// The least number of rows each sequence must contribute to a batched forward pass for its
    /// results to be bit-identical whatever else shares the batch.
    ///
    /// Why: in a batch, each linear layer multiplies all sequences' rows stacked, `[M, k]` by
    /// `[k, n]`, with `M` the batch's total row count; candle hands that to the `gemm` crate
    /// (0.19) as one product. gemm computes each output element as a sequential fused
    /// multiply-add over `k`, in blocks of `kc` whose size depends on `k` alone — on its main
    /// path. It leaves that path, changing the summation order, when `M·n <= 256` (a
    /// "horizontal" dot-product kernel), when `M <= 1` (matrix-vector kernels), and it picks
    /// `kc = min(k, 512)` instead of its cache-derived block when `M <= 64` and `n <= 64`.
    /// With every sequence at least this long, every `M` that can occur takes the main path
    /// with the same `kc`, so a row's output depends only on that row. Everything else in the
    /// forward pass is row-wise (norms, activations, softmax) or one product per sequence and
    /// head (attention), whose shape depends on the sequence alone.
    pub fn min_stack_rows(&self) -> usize {
        self.min_rows
    }

    /// Run `ids` — `rows` sequences of equal length, row-major — after `past` (positions
    /// `0..P`, every position real; a one-row cache is shared by all rows). Returns the final
    /// hidden states `[rows, len, hidden]` and the cache extended by these positions.
    pub fn forward(
        &self,
        ids: &[u32],
        rows: usize,
        past: Option<&KvCache>,
    ) -> R<(Tensor, KvCache)> {
        if ids.is_empty() || rows == 0 {
            return Err(InferError::Empty);
        }
        if !ids.len().is_multiple_of(rows) {
            return Err(InferError::Shape {
                ids: ids.len(),
                rows,
            });
        }
        let cfg = &self.model.cfg;
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= cfg.vocab_size) {
            return Err(InferError::Id {
                id,
                vocab: cfg.vocab_size,
            });
        }
        let len = ids.len() / rows;
        let start = past.map_or(0, KvCache::len);
        if let Some(p) = past
            && p.rows != 1
            && p.rows != rows
        {
            return Err(InferError::CacheRows {
                cache: p.rows,
                rows,
            });
        }
        if start + len > cfg.max_position_embeddings {
            return Err(ModelError::TooLong {
                len: start + len,
                max: cfg.max_position_embeddings,
            }
            .into());
        }
        let dev = &self.model.device;
        let p = &self.params;
        let ids_t = Tensor::from_vec(ids.to_vec(), ids.len(), dev)?;
        let emb = p.get("model.embed_tokens.weight")?;
        let mut x = emb
            .index_select(&ids_t, 0)?
            .reshape((rows, len, cfg.hidden_size))?;
        let bias = self.attn_bias(start, len)?;
        let mut f = Forward::eval();
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let n1 = p.get(&format!("model.layers.{l}.input_layernorm.weight"))?;
            let cached = past.map(|c| &c.layers[l]);
            let (a, kv) = self.attention(l, &self.rms_norm(&x, n1)?, cached, &bias)?;
            layers.push(kv);
            x = (x + a)?;
            let n2 = p.get(&format!("model.layers.{l}.post_attention_layernorm.weight"))?;
            let m = self.model.mlp(p, l, &self.rms_norm(&x, n2)?, &mut f)?;
            x = (x + m)?;
        }
        let hidden = self.rms_norm(&x, p.get("model.norm.weight")?)?;
        Ok((
            hidden,
            KvCache {
                layers,
                rows,
                len: start + len,
            },
        ))
    }

    /// Logits `[..., vocab]` of hidden states `[..., hidden]`.
    pub fn logits(&self, hidden: &Tensor) -> R<Tensor> {
        Ok(hidden.contiguous()?.broadcast_matmul(&self.head.t()?)?)
    }

    /// An empty one-sequence session.
    pub fn session(&self) -> Session<'_> {
        Session {
            infer: self,
            cache: None,
        }
    }

    /// RMSNorm with candle's fused kernel (per row, whatever the number of rows).
    fn rms_norm(&self, x: &Tensor, w: &Tensor) -> R<Tensor> {
        let eps = self.model.cfg.rms_norm_eps as f32;
        Ok(candle_nn::ops::rms_norm(&x.contiguous()?, w, eps)?)
    }

    /// Rotary embedding of `x` [B, heads, T, D] at positions `start..start+T` (fused kernel).
    fn rope(&self, x: &Tensor, start: usize) -> R<Tensor> {
        let t = x.dim(2)?;
        let cos = self.cos.narrow(0, start, t)?;
        let sin = self.sin.narrow(0, start, t)?;
        Ok(candle_nn::rotary_emb::rope(&x.contiguous()?, &cos, &sin)?)
    }

    /// Additive bias `[1 or heads, len, start + len]` for queries at positions
    /// `start..start+len` over keys at `0..start+len`: causal mask, plus ALiBi when configured
    /// (slope × (key position − query position), as in the training forward).
    fn attn_bias(&self, start: usize, len: usize) -> R<Tensor> {
        let keys = start + len;
        let dev = &self.model.device;
        match self.model.cfg.position {
            Position::Rope => {
                let mut m = vec![0f32; len * keys];
                for i in 0..len {
                    for j in start + i + 1..keys {
                        m[i * keys + j] = f32::NEG_INFINITY;
                    }
                }
                Ok(Tensor::from_vec(m, (1, len, keys), dev)?)
            }
            Position::Alibi => {
                let heads = self.model.cfg.num_attention_heads;
                let slopes = alibi_slopes(heads);
                let mut m = vec![0f32; heads * len * keys];
                for (h, s) in slopes.iter().enumerate() {
                    for i in 0..len {
                        let q = start + i;
                        for j in 0..keys {
                            m[(h * len + i) * keys + j] = if j > q {
                                f32::NEG_INFINITY
                            } else {
                                (s * (j as f64 - q as f64)) as f32
                            };
                        }
                    }
                }
                Ok(Tensor::from_vec(m, (heads, len, keys), dev)?)
            }
        }
    }

    /// One attention block over `x` [B, L, H] after the cached keys and values of this layer.
    /// Returns the block's output and this layer's keys/values for all positions.
    fn attention(
        &self,
        l: usize,
        x: &Tensor,
        past: Option<&(Tensor, Tensor)>,
        bias: &Tensor,
    ) -> R<(Tensor, (Tensor, Tensor))> {
        let (b, t, h) = x.dims3()?;
        let cfg = &self.model.cfg;
        let (nh, nkv, hd) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim(),
        );
        let p = &self.params;
        let mut f = Forward::eval();
        let pre = format!("model.layers.{l}.self_attn");
        let (q, k, v) = match cfg.family {
            Family::Baichuan2 => {
                let qkv = self.model.linear(p, &format!("{pre}.W_pack"), x, &mut f)?;
                (
                    qkv.narrow(2, 0, h)?,
                    qkv.narrow(2, h, h)?,
                    qkv.narrow(2, 2 * h, h)?,
                )
            }
            Family::Llama | Family::Qwen2 => (
                self.model.linear(p, &format!("{pre}.q_proj"), x, &mut f)?,
                self.model.linear(p, &format!("{pre}.k_proj"), x, &mut f)?,
                self.model.linear(p, &format!("{pre}.v_proj"), x, &mut f)?,
            ),
        };
        let q = q.reshape((b, t, nh, hd))?.transpose(1, 2)?.contiguous()?;
        let k = k.reshape((b, t, nkv, hd))?.transpose(1, 2)?.contiguous()?;
        let v = v.reshape((b, t, nkv, hd))?.transpose(1, 2)?.contiguous()?;
        let start = past.map_or(Ok(0), |(pk, _)| pk.dim(2))?;
        let (q, k) = if cfg.position == Position::Rope {
            (self.rope(&q, start)?, self.rope(&k, start)?)
        } else {
            (q, k)
        };
        let (k, v) = match past {
            None => (k, v),
            Some((pk, pv)) => {
                let rows = |z: &Tensor| -> R<Tensor> {
                    Ok(z.broadcast_as((b, nkv, start, hd))?.contiguous()?)
                };
                (
                    Tensor::cat(&[&rows(pk)?, &k], 2)?,
                    Tensor::cat(&[&rows(pv)?, &v], 2)?,
                )
            }
        };
        // Query head h reads key/value head h / rep (Hugging Face's `repeat_kv`): multiply each
        // key/value head with its `rep` query heads stacked, [B, nkv, rep·n, hd].
        let rep = nh / nkv;
        let kt = k.t()?.contiguous()?;
        let scale = 1.0 / (hd as f64).sqrt();
        let mut outs = Vec::with_capacity(t.div_ceil(QUERY_BLOCK));
        let mut q0 = 0;
        while q0 < t {
            let n = QUERY_BLOCK.min(t - q0);
            // Keys after the block's last query are masked anyway: leave them out.
            let visible = start + q0 + n;
            let (qb, kb, vb, bb) = if n == t {
                (q.clone(), kt.clone(), v.clone(), bias.clone())
            } else {
                (
                    q.narrow(2, q0, n)?.contiguous()?,
                    kt.narrow(3, 0, visible)?.contiguous()?,
                    v.narrow(2, 0, visible)?.contiguous()?,
                    bias.narrow(1, q0, n)?.narrow(2, 0, visible)?,
                )
            };
            let qb = qb.reshape((b, nkv, rep * n, hd))?;
            let scores = (qb.matmul(&kb)?.reshape((b, nh, n, visible))? * scale)?;
            let scores = scores.broadcast_add(&bb)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let out = probs.reshape((b, nkv, rep * n, visible))?.matmul(&vb)?;
            outs.push(out.reshape((b, nh, n, hd))?);
            q0 += n;
        }
        let out = if outs.len() == 1 {
            outs.remove(0)
        } else {
            Tensor::cat(&outs, 2)?
        };
        let out = out.transpose(1, 2)?.reshape((b, t, h))?;
        let out = self
            .model
            .linear(p, &format!("{pre}.o_proj"), &out, &mut f)?;
        Ok((out, (k, v)))
    }
}

/// One sequence being decoded: the cache of what it has seen so far.
#[derive(Clone)]
pub struct Session<'a> {
    infer: &'a Infer,
    cache: Option<KvCache>,
}

impl std::fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("len", &self.len()).finish()
    }
}

impl<'a> Session<'a> {
    /// Number of positions seen.
    pub fn len(&self) -> usize {
        self.cache.as_ref().map_or(0, KvCache::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn cache(&self) -> Option<&KvCache> {
        self.cache.as_ref()
    }

    /// Run the first tokens of the sequence; logits `[len, vocab]`. The same as [`extend`]
    /// on an empty session.
    ///
    /// [`extend`]: Session::extend
    pub fn prefill(&mut self, ids: &[u32]) -> R<Tensor> {
        self.extend(ids)
    }

    /// Append `ids` to the sequence; logits `[len, vocab]` of the new positions.
    pub fn extend(&mut self, ids: &[u32]) -> R<Tensor> {
        let hidden = self.advance(ids)?;
        self.infer.logits(&hidden)
    }

    /// Append `ids`; logits `[vocab]` of the last new position only (for decoding).
    pub fn extend_last(&mut self, ids: &[u32]) -> R<Tensor> {
        let hidden = self.advance(ids)?;
        let last = hidden.narrow(0, hidden.dim(0)? - 1, 1)?;
        Ok(self.infer.logits(&last)?.squeeze(0)?)
    }

    /// Append `ids`; final hidden states `[len, hidden]` of the new positions.
    pub fn advance(&mut self, ids: &[u32]) -> R<Tensor> {
        let (hidden, cache) = self.infer.forward(ids, 1, self.cache.as_ref())?;
        self.cache = Some(cache);
        Ok(hidden.squeeze(0)?)
    }

    /// An independent copy that shares the cached prefix (no tensor is copied).
    pub fn fork(&self) -> Session<'a> {
        self.clone()
    }

    /// Hidden states `[rows, len, hidden]` of `rows` continuations of equal length (row-major
    /// ids, right-padded by the caller if needed), each following this session's positions.
    /// The session itself is left unchanged.
    pub fn extend_rows(&self, ids: &[u32], rows: usize) -> R<Tensor> {
        Ok(self.infer.forward(ids, rows, self.cache.as_ref())?.0)
    }
}

/// Index of the largest value (the first one on ties), as `argmax` in PyTorch.
pub fn argmax(values: &[f32]) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &v) in values.iter().enumerate() {
        if !v.is_nan() && best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map(|(i, _)| i)
}

/// `log_softmax(row)[target]`, in f64 over the f32 logits.
pub fn log_prob(row: &[f32], target: usize) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
    row.get(target)
        .map_or(f64::NEG_INFINITY, |&x| x as f64 - max - sum.ln())
}

/// Logits rows `[n, vocab]` on the host.
pub fn host_rows(logits: &Tensor) -> R<Vec<Vec<f32>>> {
    Ok(logits.to_dtype(DType::F32)?.to_vec2::<f32>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Param;
    use crate::rng::Rng;
    use crate::spec::InitConfig;

    const V: usize = 97;

    /// Small random models; weights with std 0.3 so attention is far from uniform and a
    /// position off by one shows in the logits.
    fn cfg(
        family: Family,
        position: Position,
        heads: u64,
        kv_heads: u64,
        tie: bool,
    ) -> ModelConfig {
        let init = InitConfig {
            hidden_size: 8 * heads,
            layers: 2,
            heads,
            kv_heads,
            intermediate_size: 48,
            max_position: 64,
            rope_theta: 10000.0,
            norm_eps: 1e-5,
            tie_embeddings: tie,
            init_std: 0.3,
            position,
        };
        ModelConfig::from_init(family, &init, V)
    }

    fn configs() -> Vec<ModelConfig> {
        vec![
            cfg(Family::Llama, Position::Rope, 4, 2, false),
            cfg(Family::Llama, Position::Rope, 4, 4, true),
            cfg(Family::Qwen2, Position::Rope, 4, 2, false),
            cfg(Family::Baichuan2, Position::Rope, 4, 4, false),
            cfg(Family::Baichuan2, Position::Alibi, 4, 4, false),
            cfg(Family::Baichuan2, Position::Alibi, 6, 6, true),
        ]
    }

    /// `Params::init`, with random (non-zero) biases so Qwen2's are exercised.
    pub(crate) fn infer_for(c: &ModelConfig, seed: u64) -> Infer {
        let dev = Device::Cpu;
        let base = Params::init(c, seed, &dev).unwrap();
        let mut params = Params::default();
        for (name, p) in base.iter() {
            let t = p.tensor();
            if name.ends_with(".bias") {
                let values = Rng::for_purpose(seed, name).normal_vec(t.elem_count(), 0.3);
                let b = Tensor::from_vec(values, t.dims(), &dev).unwrap();
                params.insert(name.clone(), Param::Frozen(b));
            } else {
                params.insert(name.clone(), p.clone());
            }
        }
        let model = Transformer::new(c.clone(), &dev).unwrap();
        Infer::new(model, &params).unwrap()
    }

    fn tokens(seed: u64, n: usize) -> Vec<u32> {
        let mut rng = Rng::new(seed);
        (0..n).map(|_| rng.below(V as u64) as u32).collect()
    }

    /// Logits of one uncached training-forward pass over `ids`.
    fn full(infer: &Infer, ids: &[u32]) -> Vec<Vec<f32>> {
        let t = Tensor::from_vec(ids.to_vec(), (1, ids.len()), &Device::Cpu).unwrap();
        let logits = infer
            .model()
            .forward(infer.params(), &t, &mut Forward::eval())
            .unwrap();
        host_rows(&logits.squeeze(0).unwrap()).unwrap()
    }

    fn rows(t: &Tensor) -> Vec<Vec<f32>> {
        host_rows(t).unwrap()
    }

    fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
            .fold(0.0, f32::max)
    }

    #[test]
    fn prefill_then_extend_matches_one_full_forward() {
        for c in configs() {
            let infer = infer_for(&c, 3);
            let ids = tokens(1, 12);
            let want = full(&infer, &ids);
            let mut s = infer.session();
            let mut got = rows(&s.prefill(&ids[..5]).unwrap());
            got.extend(rows(&s.extend(&ids[5..9]).unwrap()));
            // Two continuations of the same 9-token context: one in one step, one token by token.
            let mut a = s.fork();
            let mut b = s.fork();
            let mut ga = got.clone();
            ga.extend(rows(&a.extend(&ids[9..12]).unwrap()));
            let mut gb = got.clone();
            for i in 9..12 {
                gb.extend(rows(&b.extend(&ids[i..i + 1]).unwrap()));
            }
            let (da, db) = (max_diff(&ga, &want), max_diff(&gb, &want));
            assert!(
                da < 1e-4 && db < 1e-4,
                "{:?}/{:?}: {da} {db}",
                c.family,
                c.position
            );
            assert_eq!(s.len(), 9);
            assert_eq!(a.len(), 12);

            // Several continuations of the cached context in one batched pass.
            let other = tokens(2, 3);
            let mut both = ids[9..12].to_vec();
            both.extend(&other);
            let h = s.extend_rows(&both, 2).unwrap();
            let r0 = rows(&infer.logits(&h.get(0).unwrap()).unwrap());
            let r1 = rows(&infer.logits(&h.get(1).unwrap()).unwrap());
            let mut alt = ids[..9].to_vec();
            alt.extend(&other);
            let want_alt = full(&infer, &alt);
            assert!(max_diff(&r0, &want[9..]) < 1e-4);
            assert!(max_diff(&r1, &want_alt[9..]) < 1e-4);
            assert_eq!(s.len(), 9, "extend_rows leaves the session as it was");

            // Control: the continuation without its context is different, so the comparison
            // above does see positions and cached keys.
            let alone = rows(&infer.session().prefill(&ids[5..9]).unwrap());
            assert!(max_diff(&alone, &want[5..9]) > 1e-2);
        }
    }

    #[test]
    fn cached_greedy_decode_equals_uncached_greedy_decode() {
        for c in configs() {
            let infer = infer_for(&c, 5);
            let prompt = tokens(9, 4);
            let mut uncached = prompt.clone();
            for _ in 0..20 {
                let logits = full(&infer, &uncached);
                let last = logits.last().unwrap();
                uncached.push(argmax(last).unwrap() as u32);
            }
            let mut s = infer.session();
            let mut cached = prompt.clone();
            let mut next = prompt.clone();
            for _ in 0..20 {
                let logits = s.extend_last(&next).unwrap().to_vec1::<f32>().unwrap();
                let tok = argmax(&logits).unwrap() as u32;
                cached.push(tok);
                next = vec![tok];
            }
            assert_eq!(cached, uncached, "{:?}/{:?}", c.family, c.position);
            // Not a degenerate sequence that repeats one token.
            assert!(cached[4..].iter().any(|&t| t != cached[4]));
        }
    }

    #[test]
    fn long_inputs_in_query_blocks_match_the_full_forward() {
        let mut c = cfg(Family::Baichuan2, Position::Alibi, 4, 4, false);
        c.max_position_embeddings = 1200;
        let infer = infer_for(&c, 4);
        let ids = tokens(4, 1100);
        let want = full(&infer, &ids);
        let mut s = infer.session();
        let mut got = rows(&s.prefill(&ids[..1030]).unwrap());
        got.extend(rows(&s.extend(&ids[1030..]).unwrap()));
        assert!(max_diff(&got, &want) < 1e-4);
    }

    #[test]
    fn positions_past_the_model_maximum_are_refused() {
        let c = cfg(Family::Llama, Position::Rope, 4, 2, false);
        let infer = infer_for(&c, 1);
        let mut s = infer.session();
        s.prefill(&tokens(1, 64)).unwrap();
        let err = s.extend(&[1]).unwrap_err();
        assert!(matches!(
            err,
            InferError::Model(ModelError::TooLong { len: 65, max: 64 })
        ));
        let err = infer.session().prefill(&[V as u32]).unwrap_err();
        assert!(matches!(err, InferError::Id { .. }), "{err}");
    }

    #[test]
    fn lora_adapters_are_refused() {
        let c = cfg(Family::Llama, Position::Rope, 4, 2, false);
        let dev = Device::Cpu;
        let mut p = Params::init(&c, 1, &dev).unwrap();
        let a = Tensor::zeros((2, 32), DType::F32, &dev).unwrap();
        p.insert(
            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
            Param::Frozen(a),
        );
        let err = Infer::new(Transformer::new(c, &dev).unwrap(), &p).unwrap_err();
        assert!(err.to_string().contains("merge the adapters"), "{err}");
    }

    #[test]
    fn stacked_row_minimum_follows_the_layer_shapes() {
        // Tiny test model: k/v projections have 16 outputs, so 17 rows keep 17·16 > 256.
        let c = cfg(Family::Llama, Position::Rope, 4, 2, false);
        assert_eq!(min_stack_rows(&c), 17);
        // SmolLM2-135M: hidden 576, 3 kv heads of 64, intermediate 1536.
        let mut s = c.clone();
        s.hidden_size = 576;
        s.num_attention_heads = 9;
        s.num_key_value_heads = 3;
        s.intermediate_size = 1536;
        assert_eq!(min_stack_rows(&s), 2);
        // A down projection with k > 512 into <= 64 outputs needs more than 64 rows.
        let mut w = c;
        w.intermediate_size = 600;
        assert_eq!(min_stack_rows(&w), 65);
    }
}
