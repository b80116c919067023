//! Inference with a key/value cache: the decoder's forward pass over frozen parameters,
//! continuing from the keys and values of earlier positions instead of recomputing them.
//!
//! Every family of [`Transformer`] works here: Llama (RoPE, GQA, tied or untied head), Qwen2
//! (q/k/v biases), Baichuan2 (`W_pack`, NormHead, RoPE or ALiBi). New positions start at the
//! cache's length `P` (RoPE rows `P..P+L`, ALiBi distances to the absolute key positions);
//! their keys are the cached ones followed by their own, with a causal mask inside the new
//! block. It computes what the training forward computes, laid out for speed instead of
//! gradients, and agrees with it to float rounding (the tests hold it to 1e-4):
//! - q/k/v are fused into one product (as Baichuan2's `W_pack` already is) and gate/up into
//!   another, and on the CPU every weight (the head too) is packed once into the panels the
//!   matrix kernel streams ([`crate::model::kernels::packed`]);
//! - RMSNorm, RoPE and softmax use candle's fused kernels (which the training forward cannot:
//!   they drop gradients);
//! - whole sequences scored from position 0 without keeping their keys and values
//!   ([`Infer::hidden`], the evaluation's whole-sequence mode) run RoPE and attention on the
//!   training kernels instead, one sequence per task, never materialising scores for keys a
//!   query cannot see ([`crate::model::kernels::attention`]);
//! - grouped-query attention multiplies each key/value head with its group of query heads at
//!   once, instead of copying keys and values per head.
//!
//! - [`Infer`] holds the model's weights in that layout and the output head (normalised once
//!   for NormHead). [`Infer::forward`] runs `rows` sequences of equal length after a shared (or
//!   per-row) cache and returns final hidden states and the extended cache; [`Infer::logits`]
//!   applies the head to whichever rows are needed.
//! - [`Session`] is one sequence: [`Session::prefill`] / [`Session::extend`] return logits,
//!   [`Session::fork`] copies the (reference-counted) cache so one context can be continued in
//!   several ways, and [`Session::extend_rows`] runs several continuations of the cached
//!   context in one batched pass without changing the session.
//!
//! Right padding is allowed in a batch (rows of a sequence past its real end): causal masking
//! keeps real positions from seeing them. Such rows must not be extended further, which is why
//! callers that pad use the returned cache for nothing.
//!
//! # Batching without changing results
//! A batched forward stacks the rows of every sequence into one matrix for each linear layer,
//! so the row count of those matrix products depends on the batch. On the CPU the weights are
//! packed once for [`crate::model::kernels::packed`], whose results never depend on the row
//! count (one row, as in token-by-token decoding, gives the bits it gets in any batch). With
//! candle's matmul (other devices), [`Infer::min_stack_rows`] gives the smallest per-sequence
//! length for which the row count cannot change any sequence's values, and
//! [`Infer::min_head_rows`] the same for the output head; see their documentation and
//! `eval::backend` for how the evaluation backend uses them.

use candle_core::{DType, Device, Tensor};

use super::ModelError;
use super::config::ModelConfig;
use super::kernels::packed::{self, PackedWt};
use super::kernels::{attention as attn_kernel, rope, swiglu};
use super::params::Params;
use super::transformer::{Transformer, alibi_slopes};
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
    #[error("{ids} token ids, but the segments add up to {total}")]
    Segments { ids: usize, total: usize },
    #[error("token id {id} is outside the model's vocabulary of {vocab}")]
    Id { id: u32, vocab: usize },
}

type R<T> = Result<T, InferError>;

mod ops;
use ops::{CausalAttention, PackedTimes, SwiGlu};

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

/// A linear layer's weight `[out, in]`: on the CPU packed once for
/// [`crate::model::kernels::packed`], elsewhere a contiguous tensor for candle's matmul.
enum Weight {
    Packed(PackedWt),
    Dense(Tensor),
}

/// `x Wᵀ + b`.
struct Linear {
    w: Weight,
    bias: Option<Tensor>,
}

impl Weight {
    /// Packs `w` (`[out, in]`) for the CPU kernel when it is an f32 CPU tensor.
    fn new(w: Tensor) -> R<Weight> {
        if w.device().is_cpu() && w.dtype() == DType::F32 {
            let (out, inp) = w.dims2()?;
            let values = w.flatten_all()?.to_vec1::<f32>()?;
            Ok(Weight::Packed(PackedWt::new(&values, out, inp)))
        } else {
            Ok(Weight::Dense(w.contiguous()?))
        }
    }

    /// `x Wᵀ` for `x` `[.., in]`.
    fn times(&self, x: &Tensor) -> R<Tensor> {
        match self {
            Weight::Packed(w) => Ok(x.contiguous()?.apply_op1_no_bwd(&PackedTimes { w })?),
            Weight::Dense(w) => Ok(x.contiguous()?.broadcast_matmul(&w.t()?)?),
        }
    }

    /// `(in, out)`.
    fn shape(&self) -> R<(usize, usize)> {
        match self {
            Weight::Packed(w) => Ok((w.k(), w.n())),
            Weight::Dense(w) => {
                let (out, inp) = w.dims2()?;
                Ok((inp, out))
            }
        }
    }
}

impl Linear {
    /// Output features `[.., out]` of `x` `[.., in]`.
    fn forward(&self, x: &Tensor) -> R<Tensor> {
        let y = self.w.times(x)?;
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }

    /// `(in, out)`.
    fn shape(&self) -> R<(usize, usize)> {
        self.w.shape()
    }
}

struct Layer {
    input_norm: Tensor,
    post_norm: Tensor,
    /// q, k, v outputs side by side.
    qkv: Linear,
    o: Linear,
    /// gate, up outputs side by side.
    gate_up: Linear,
    down: Linear,
}

/// The weights `[out, in]` of the modules `names` stacked by output (one product instead of
/// several), with their biases (zeros for a module without one, when another has one). The
/// weights are taken out of `p`, so only the packed copy stays.
fn fused(p: &mut Params, names: &[String]) -> R<Linear> {
    let mut ws = Vec::with_capacity(names.len());
    let mut bs = Vec::with_capacity(names.len());
    for n in names {
        ws.push(p.take(&format!("{n}.weight"))?);
        bs.push(p.try_get(&format!("{n}.bias")).cloned());
    }
    let bias = if bs.iter().any(Option::is_some) {
        let mut parts = Vec::with_capacity(bs.len());
        for (b, w) in bs.into_iter().zip(&ws) {
            parts.push(match b {
                Some(b) => b,
                None => Tensor::zeros(w.dim(0)?, w.dtype(), w.device())?,
            });
        }
        Some(Tensor::cat(&parts, 0)?)
    } else {
        None
    };
    let w = if ws.len() == 1 {
        ws.remove(0)
    } else {
        Tensor::cat(&ws, 0)?
    };
    Ok(Linear {
        w: Weight::new(w)?,
        bias,
    })
}

/// Where the new tokens of a pass sit: the position of each, and its segment (a token sees
/// every cached position and the earlier tokens of its own segment).
struct Placement {
    positions: Vec<usize>,
    segments: Vec<usize>,
}

impl Placement {
    /// `rows` sequences of equal length in `ids` (row-major), at positions `start..start + len`.
    fn rows(ids: &[u32], rows: usize, start: usize) -> R<Placement> {
        if ids.is_empty() || rows == 0 {
            return Err(InferError::Empty);
        }
        if !ids.len().is_multiple_of(rows) {
            return Err(InferError::Shape {
                ids: ids.len(),
                rows,
            });
        }
        let len = ids.len() / rows;
        Ok(Placement {
            positions: (start..start + len).collect(),
            segments: vec![0; len],
        })
    }
}

/// What every layer of one pass shares.
struct PassContext {
    /// Cached positions.
    start: usize,
    /// Attention bias per query block.
    biases: Vec<Tensor>,
    /// RoPE `(cos, sin)` rows of the new positions, `[len, head_dim / 2]`.
    rope: Option<(Tensor, Tensor)>,
    /// Whole sequences from position 0 whose keys and values are not wanted: on the CPU,
    /// attention runs on the fused kernel ([`CausalAttention`]).
    fused: bool,
}

/// A model ready for inference: its weights in the inference layout (see the module docs).
pub struct Infer {
    model: Transformer,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    /// [V, H]: tied embeddings or `lm_head`, row-normalised for NormHead.
    head: Weight,
    /// RoPE tables [max_positions, head_dim / 2] (the fused kernel's layout).
    cos: Tensor,
    sin: Tensor,
    /// The same tables and the ALiBi slopes for [`CausalAttention`] (CPU, f32 only).
    cpu_rope: Option<rope::Tables>,
    cpu_alibi: Option<Vec<f32>>,
    /// Whether [`CausalAttention`] can run (CPU, f32 weights).
    cpu_attention: bool,
    min_rows: usize,
    min_head_rows: usize,
}

impl std::fmt::Debug for Infer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Infer")
            .field("config", &self.model.cfg)
            .field("min_stack_rows", &self.min_rows)
            .field("min_head_rows", &self.min_head_rows)
            .finish_non_exhaustive()
    }
}

/// The smallest row count `M` of stacked `[M, k] × [k, n]` products for which gemm 0.19 (the
/// matrix kernel under candle 0.11 on CPU) computes every output element the same way whatever
/// `M` is, for every `(k, n)` of `shapes`. See [`Infer::min_stack_rows`].
fn min_rows_for(shapes: &[(usize, usize)]) -> usize {
    let mut rows = 2;
    for &(k, n) in shapes {
        // Not the "horizontal" kernel, which gemm may use when M·n <= 256.
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
    /// Move the weights of `params` into the inference layout (each weight is released once
    /// packed, so the model is not held twice). LoRA adapter tensors are refused: merge them
    /// first (`model::lora::merge`).
    pub fn new(model: Transformer, params: Params) -> R<Infer> {
        if let Some((name, _)) = params.iter().find(|(n, _)| n.contains("lora_")) {
            return Err(InferError::Adapter(name.clone()));
        }
        let mut p = params.frozen()?;
        drop(params);
        let cfg = &model.cfg;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let pre = format!("model.layers.{l}");
            let attn = |m: &str| format!("{pre}.self_attn.{m}");
            let mlp = |m: &str| format!("{pre}.mlp.{m}");
            let qkv = match cfg.family {
                Family::Baichuan2 => vec![attn("W_pack")],
                Family::Llama | Family::Qwen2 => {
                    vec![attn("q_proj"), attn("k_proj"), attn("v_proj")]
                }
            };
            layers.push(Layer {
                input_norm: p.get(&format!("{pre}.input_layernorm.weight"))?.clone(),
                post_norm: p
                    .get(&format!("{pre}.post_attention_layernorm.weight"))?
                    .clone(),
                qkv: fused(&mut p, &qkv)?,
                o: fused(&mut p, &[attn("o_proj")])?,
                gate_up: fused(&mut p, &[mlp("gate_proj"), mlp("up_proj")])?,
                down: fused(&mut p, &[mlp("down_proj")])?,
            });
        }
        let mut shapes = Vec::new();
        let mut packed = true;
        for layer in &layers {
            for lin in [&layer.qkv, &layer.o, &layer.gate_up, &layer.down] {
                shapes.push(lin.shape()?);
                packed &= matches!(lin.w, Weight::Packed(_));
            }
        }
        let head = Weight::new(model.head(&p)?)?;
        let (width, vocab) = head.shape()?;
        // The packed kernel's results never depend on the row count; candle's matmul needs
        // enough rows (see `min_stack_rows`).
        let min_rows = if packed { 1 } else { min_rows_for(&shapes) };
        let min_head_rows = match head {
            Weight::Packed(_) => 1,
            Weight::Dense(_) => min_rows_for(&[(width, vocab)]),
        };
        let half = cfg.head_dim() / 2;
        let (cos, sin) = model.rope_tables();
        let (cos, sin) = (
            cos.narrow(1, 0, half)?.contiguous()?,
            sin.narrow(1, 0, half)?.contiguous()?,
        );
        let cpu_attention = packed && cos.device().is_cpu() && cos.dtype() == DType::F32;
        let cpu_rope = match cfg.position {
            Position::Rope if cpu_attention => Some(rope::Tables {
                half,
                cos: cos.flatten_all()?.to_vec1()?,
                sin: sin.flatten_all()?.to_vec1()?,
            }),
            _ => None,
        };
        let cpu_alibi = match cfg.position {
            Position::Alibi => Some(
                alibi_slopes(cfg.num_attention_heads)
                    .iter()
                    .map(|&s| s as f32)
                    .collect(),
            ),
            Position::Rope => None,
        };
        Ok(Infer {
            embed: p.get("model.embed_tokens.weight")?.clone(),
            norm: p.get("model.norm.weight")?.clone(),
            model,
            layers,
            head,
            cos,
            sin,
            cpu_rope,
            cpu_alibi,
            cpu_attention,
            min_rows,
            min_head_rows,
        })
    }

    pub fn model(&self) -> &Transformer {
        &self.model
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
    /// On the CPU this is 1: the weights are packed for [`crate::model::kernels::packed`], which
    /// computes every output element in the same order whatever the number of rows. On other
    /// devices (candle's matmul), and in the tests that check the rule, it is as follows. In a
    /// batch, each linear layer multiplies all sequences' rows stacked, `[M, k]` by
    /// `[k, n]`, with `M` the batch's total row count; candle hands that to the `gemm` crate
    /// (0.19) as one product. gemm computes each output element as a sequential fused
    /// multiply-add over `k`, in blocks of `kc` whose size depends on `k` alone — on its main
    /// path. It leaves that path, changing the summation order, when `M·n <= 256` (a
    /// "horizontal" dot-product kernel), when `M <= 1` (matrix-vector kernels), and it picks
    /// `kc = min(k, 512)` instead of its cache-derived block when `M <= 64` and `n <= 64`.
    /// With every sequence at least this long, every `M` that can occur takes the main path
    /// with the same `kc`, so a row's output depends only on that row. Everything else in the
    /// forward pass is row-wise (norms, activations, softmax, RoPE) or one product per
    /// sequence and key/value head (attention), whose shape depends on the sequence alone.
    pub fn min_stack_rows(&self) -> usize {
        self.min_rows
    }

    /// [`Infer::min_stack_rows`] for the output head: the least number of rows per sequence
    /// when rows of several sequences go through [`Infer::logits`] together.
    pub fn min_head_rows(&self) -> usize {
        self.min_head_rows
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
        let start = past.map_or(0, KvCache::len);
        let placement = Placement::rows(ids, rows, start)?;
        let len = placement.positions.len();
        let (hidden, layers) = self.run(ids, rows, past, &placement, true)?;
        Ok((
            hidden,
            KvCache {
                layers,
                rows,
                len: start + len,
            },
        ))
    }

    /// The final hidden states `[rows, len, hidden]` of `rows` whole sequences of equal length
    /// from position 0, when their keys and values are not wanted (scoring whole sequences): on
    /// the CPU, attention then runs on the fused kernel. Each row's result depends on that row
    /// alone, as with [`Infer::forward`], and agrees with it to float rounding.
    pub fn hidden(&self, ids: &[u32], rows: usize) -> R<Tensor> {
        let placement = Placement::rows(ids, rows, 0)?;
        Ok(self.run(ids, rows, None, &placement, false)?.0)
    }

    /// Run several sequences packed into one row after a one-row `past`: `ids` holds segments
    /// of `lens` tokens one after the other, each at positions `P..P+len` and seeing the cached
    /// positions and the earlier tokens of its own segment only — as if each extended `past`
    /// alone, without padding. Returns the final hidden states `[sum of lens, hidden]`.
    pub fn forward_packed(&self, ids: &[u32], lens: &[usize], past: Option<&KvCache>) -> R<Tensor> {
        if ids.is_empty() {
            return Err(InferError::Empty);
        }
        if lens.iter().sum::<usize>() != ids.len() {
            return Err(InferError::Segments {
                ids: ids.len(),
                total: lens.iter().sum(),
            });
        }
        let start = past.map_or(0, KvCache::len);
        let mut placement = Placement {
            positions: Vec::with_capacity(ids.len()),
            segments: Vec::with_capacity(ids.len()),
        };
        for (seg, &n) in lens.iter().enumerate() {
            placement.positions.extend(start..start + n);
            placement.segments.extend(std::iter::repeat_n(seg, n));
        }
        let (hidden, _) = self.run(ids, 1, past, &placement, false)?;
        Ok(hidden.squeeze(0)?)
    }

    /// The forward pass proper: `rows` rows of `placement.positions.len()` new tokens. Returns
    /// each layer's keys and values when `keep_cache`.
    fn run(
        &self,
        ids: &[u32],
        rows: usize,
        past: Option<&KvCache>,
        placement: &Placement,
        keep_cache: bool,
    ) -> R<(Tensor, Vec<(Tensor, Tensor)>)> {
        let cfg = &self.model.cfg;
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= cfg.vocab_size) {
            return Err(InferError::Id {
                id,
                vocab: cfg.vocab_size,
            });
        }
        if let Some(p) = past
            && p.rows != 1
            && p.rows != rows
        {
            return Err(InferError::CacheRows {
                cache: p.rows,
                rows,
            });
        }
        let start = past.map_or(0, KvCache::len);
        let end = placement.positions.iter().max().map_or(start, |p| p + 1);
        if end > cfg.max_position_embeddings {
            return Err(ModelError::TooLong {
                len: end,
                max: cfg.max_position_embeddings,
            }
            .into());
        }
        let len = placement.positions.len();
        let dev = &self.model.device;
        let ids_t = Tensor::from_vec(ids.to_vec(), ids.len(), dev)?;
        let mut x = self
            .embed
            .index_select(&ids_t, 0)?
            .reshape((rows, len, cfg.hidden_size))?;
        let fused = !keep_cache
            && past.is_none()
            && self.cpu_attention
            && x.dtype() == DType::F32
            && placement.segments.iter().all(|&s| s == 0);
        let ctx = PassContext {
            start,
            fused,
            biases: if fused {
                Vec::new()
            } else {
                self.attn_biases(start, placement)?
            },
            rope: match cfg.position {
                Position::Rope => {
                    let pos: Vec<u32> = placement.positions.iter().map(|&p| p as u32).collect();
                    let pos = Tensor::from_vec(pos, len, dev)?;
                    Some((
                        self.cos.index_select(&pos, 0)?,
                        self.sin.index_select(&pos, 0)?,
                    ))
                }
                Position::Alibi => None,
            },
        };
        let mut caches = Vec::with_capacity(self.layers.len());
        for (l, layer) in self.layers.iter().enumerate() {
            let cached = past.map(|c| &c.layers[l]);
            let h = self.rms_norm(&x, &layer.input_norm)?;
            let (a, kv) = self.attention(layer, &h, cached, &ctx)?;
            if keep_cache {
                caches.extend(kv);
            }
            x = (x + a)?;
            let h = self.rms_norm(&x, &layer.post_norm)?;
            x = (x + self.mlp(layer, &h)?)?;
        }
        Ok((self.rms_norm(&x, &self.norm)?, caches))
    }

    /// Logits `[..., vocab]` of hidden states `[..., hidden]`.
    pub fn logits(&self, hidden: &Tensor) -> R<Tensor> {
        self.head.times(hidden)
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

    /// SwiGLU: `down(silu(gate(x)) · up(x))`; on the CPU in one pass over the gate/up product
    /// ([`crate::model::kernels::swiglu`]).
    fn mlp(&self, layer: &Layer, x: &Tensor) -> R<Tensor> {
        let gu = layer.gate_up.forward(x)?;
        let i = self.model.cfg.intermediate_size;
        let h = if gu.device().is_cpu() && gu.dtype() == DType::F32 {
            gu.contiguous()?.apply_op1_no_bwd(&SwiGlu { inter: i })?
        } else {
            let g = gu.narrow(2, 0, i)?;
            let u = gu.narrow(2, i, i)?;
            (candle_nn::ops::silu(&g)? * u)?
        };
        layer.down.forward(&h)
    }

    /// Additive attention bias of each query block (see [`QUERY_BLOCK`]), `[1 or heads, n,
    /// keys]` with `keys` up to the block's last query: a query sees every cached position and
    /// the new tokens of its own segment at positions up to its own; ALiBi adds slope × (key
    /// position − query position), as in the training forward.
    fn attn_biases(&self, start: usize, pl: &Placement) -> R<Vec<Tensor>> {
        let len = pl.positions.len();
        let dev = &self.model.device;
        let slopes = match self.model.cfg.position {
            Position::Rope => vec![0.0],
            Position::Alibi => alibi_slopes(self.model.cfg.num_attention_heads),
        };
        let mut out = Vec::with_capacity(len.div_ceil(QUERY_BLOCK));
        let mut q0 = 0;
        while q0 < len {
            let n = QUERY_BLOCK.min(len - q0);
            let keys = start + q0 + n;
            let mut m = vec![f32::NEG_INFINITY; slopes.len() * n * keys];
            for i in 0..n {
                let (qp, qs) = (pl.positions[q0 + i], pl.segments[q0 + i]);
                for j in 0..keys {
                    let kp = if j < start {
                        j
                    } else {
                        let jj = j - start;
                        if pl.segments[jj] != qs || pl.positions[jj] > qp {
                            continue;
                        }
                        pl.positions[jj]
                    };
                    for (h, sl) in slopes.iter().enumerate() {
                        m[(h * n + i) * keys + j] = (sl * (kp as f64 - qp as f64)) as f32;
                    }
                }
            }
            out.push(Tensor::from_vec(m, (slopes.len(), n, keys), dev)?);
            q0 += n;
        }
        Ok(out)
    }

    /// One attention block over `x` [B, L, H] after the cached keys and values of this layer.
    /// Returns the block's output and this layer's keys/values for all positions (none on the
    /// fused path, which keeps none).
    fn attention(
        &self,
        layer: &Layer,
        x: &Tensor,
        past: Option<&(Tensor, Tensor)>,
        ctx: &PassContext,
    ) -> R<(Tensor, Option<(Tensor, Tensor)>)> {
        let (b, t, h) = x.dims3()?;
        let cfg = &self.model.cfg;
        let (nh, nkv, hd) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim(),
        );
        let kv = nkv * hd;
        let qkv = layer.qkv.forward(x)?;
        if ctx.fused {
            let op = CausalAttention {
                shape: attn_kernel::Shape {
                    rows: b,
                    seq: t,
                    heads: nh,
                    kv_heads: nkv,
                    head_dim: hd,
                },
                rope: self.cpu_rope.as_ref(),
                alibi: self.cpu_alibi.as_deref(),
            };
            let out = qkv.contiguous()?.apply_op1_no_bwd(&op)?;
            return Ok((layer.o.forward(&out)?, None));
        }
        let q = qkv.narrow(2, 0, h)?;
        let k = qkv.narrow(2, h, kv)?;
        let v = qkv.narrow(2, h + kv, kv)?;
        let q = q.reshape((b, t, nh, hd))?.transpose(1, 2)?.contiguous()?;
        let k = k.reshape((b, t, nkv, hd))?.transpose(1, 2)?.contiguous()?;
        let v = v.reshape((b, t, nkv, hd))?.transpose(1, 2)?.contiguous()?;
        let start = ctx.start;
        let (q, k) = match &ctx.rope {
            Some((cos, sin)) => (
                candle_nn::rotary_emb::rope(&q, cos, sin)?,
                candle_nn::rotary_emb::rope(&k, cos, sin)?,
            ),
            None => (q, k),
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
        for bb in &ctx.biases {
            let n = QUERY_BLOCK.min(t - q0);
            // Keys after the block's last query are masked anyway: leave them out.
            let visible = start + q0 + n;
            let (qb, kb, vb) = if n == t {
                (q.clone(), kt.clone(), v.clone())
            } else {
                (
                    q.narrow(2, q0, n)?.contiguous()?,
                    kt.narrow(3, 0, visible)?.contiguous()?,
                    v.narrow(2, 0, visible)?.contiguous()?,
                )
            };
            let qb = qb.reshape((b, nkv, rep * n, hd))?;
            let scores = (qb.matmul(&kb)?.reshape((b, nh, n, visible))? * scale)?;
            let scores = scores.broadcast_add(bb)?;
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
        Ok((layer.o.forward(&out)?, Some((k, v))))
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

    /// Hidden states `[sum of lens, hidden]` of several continuations of this session's
    /// positions, packed one after the other without padding (see [`Infer::forward_packed`]).
    /// The session itself is left unchanged.
    pub fn extend_packed(&self, ids: &[u32], lens: &[usize]) -> R<Tensor> {
        self.infer.forward_packed(ids, lens, self.cache.as_ref())
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
mod tests;
