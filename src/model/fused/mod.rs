//! The decoder's training step on the CPU, written out by hand: a forward pass that keeps what
//! the backward pass needs, and a backward pass that computes exactly the gradients the
//! composite candle model ([`crate::model::Transformer`]) gets from autograd, from the fused
//! kernels of [`crate::model::kernels`].
//!
//! Every family and option of the composite model is covered: Llama, Qwen2 (q/k/v biases),
//! Baichuan2 (`W_pack`, NormHead, RoPE or ALiBi), grouped-query attention, tied or untied
//! heads, LoRA adapters with dropout (masks drawn from the same RNG in the same order, so both
//! models see the same masks), and any mix of trainable and frozen parameters.
//!
//! What it does differently, for speed:
//! - parameters, gradients and activations live in flat `f32` buffers that are reused from step
//!   to step (no allocation or zero-filling per step); q/k/v and gate/up each run as one matrix
//!   product, and their weight gradients too;
//! - frozen weights get no weight-gradient product at all (LoRA bases, the DPO reference);
//! - the first gradient of a step is written, not added to zeros;
//! - attention keeps one log-sum-exp per query instead of the probability matrix and skips
//!   masked key blocks; RMSNorm, RoPE, SwiGLU and cross-entropy are one pass each;
//! - the output head and its cross-entropy run only on positions whose loss counts (an SFT
//!   batch's prompt tokens cost no vocabulary-sized work).
//!
//! The loss is not fixed here: [`FusedModel::forward`] returns each row's summed
//! log-probability of its supervised targets, and [`FusedModel::backward`] takes the gradient
//! of the loss with respect to those sums. Language modelling and DPO are both functions of
//! them (`crate::train::tasks`).

mod backward;
pub mod layout;
mod linear;
#[cfg(test)]
mod tests;

use candle_core::{Device, Tensor, Var};

use super::config::ModelConfig;
use super::kernels::gemm::{Mat, MatMut, Par, matmul};
use super::kernels::{self, attention, norm, rope, swiglu, xent};
use super::transformer::{LoraForward, alibi_slopes};
use super::{ModelError, Param, Params};
use crate::rng::Rng;
use crate::spec::{Family, Position};
use crate::train::engine::Batch;
use layout::Layout;
use linear::{AdapterActs, Ctx};

type R<T> = Result<T, ModelError>;

/// One layer's saved activations (`m` tokens).
#[derive(Debug, Default)]
struct LayerActs {
    /// Input of the layer (residual stream), `[m, h]`.
    x: Vec<f32>,
    inv1: Vec<f32>,
    xn1: Vec<f32>,
    /// q/k/v after RoPE, `[m, (heads + 2·kv_heads)·head_dim]`.
    qkv: Vec<f32>,
    /// Attention output before `o_proj`, `[m, h]`.
    att: Vec<f32>,
    lse: Vec<f32>,
    /// Residual stream after attention.
    x2: Vec<f32>,
    inv2: Vec<f32>,
    xn2: Vec<f32>,
    /// `[gate | up]`, `[m, 2·inter]`.
    gu: Vec<f32>,
    /// `silu(gate) ⊙ up`, `[m, inter]`.
    h: Vec<f32>,
    /// Adapters of the qkv, o, gate/up and down groups, per member.
    adapters: [Vec<AdapterActs>; 4],
}

#[derive(Debug, Default)]
struct Acts {
    rows: usize,
    len: usize,
    ids: Vec<u32>,
    mask: Vec<f32>,
    /// Positions whose loss counts, in order.
    sel: Vec<usize>,
    sel_targets: Vec<u32>,
    layers: Vec<LayerActs>,
    /// Residual stream after the last layer, its norm and the normed rows.
    xf: Vec<f32>,
    invf: Vec<f32>,
    xnf: Vec<f32>,
    /// Normed rows of the selected positions, `[s, h]`.
    xs: Vec<f32>,
    /// Logits of the selected positions (`e^(l − max)` after the forward pass), `[s, vocab]`.
    logits: Vec<f32>,
    inv_sum: Vec<f32>,
    logp: Vec<f32>,
    /// NormHead: the normalised head and its row norms.
    head_n: Vec<f32>,
    head_norms: Vec<f32>,
    // Backward scratch.
    dx: Vec<f32>,
    dtmp: Vec<f32>,
    dbig: Vec<f32>,
    dh: Vec<f32>,
    dxs: Vec<f32>,
    dhead: Vec<f32>,
    weights: Vec<f32>,
    du: Vec<f32>,
    xd: Vec<f32>,
}

/// The fused model: parameters, their gradients, and the activations of the last forward pass.
pub struct FusedModel {
    cfg: ModelConfig,
    lora: Option<LoraForward>,
    layout: Layout,
    w: Vec<f32>,
    g: Vec<f32>,
    rope: Option<rope::Tables>,
    alibi: Option<Vec<f32>>,
    acts: Acts,
    /// The next backward pass writes gradients instead of adding to them.
    fresh: bool,
    /// A forward pass's activations are waiting for their backward pass.
    ready: bool,
}

impl std::fmt::Debug for FusedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FusedModel")
            .field("parameters", &self.layout.weights_len)
            .field("trainable", &self.layout.grads_len)
            .finish()
    }
}

/// The sizes the passes use, from the config.
struct Dims {
    h: usize,
    nh: usize,
    nkv: usize,
    hd: usize,
    inter: usize,
    vocab: usize,
}

impl Dims {
    fn of(cfg: &ModelConfig) -> Dims {
        Dims {
            h: cfg.hidden_size,
            nh: cfg.num_attention_heads,
            nkv: cfg.num_key_value_heads,
            hd: cfg.head_dim(),
            inter: cfg.intermediate_size,
            vocab: cfg.vocab_size,
        }
    }
}

fn grow(v: &mut Vec<f32>, n: usize) {
    v.resize(n, 0.0);
}

impl FusedModel {
    /// Lays out `params` (trainable or frozen, as they are) for `cfg`; with `lora`, adapters
    /// under PEFT names are applied with its scale and dropout.
    pub fn new(cfg: &ModelConfig, params: &Params, lora: Option<LoraForward>) -> R<FusedModel> {
        let layout = Layout::build(cfg, params, lora.is_some())?;
        let mut w = vec![0f32; layout.weights_len];
        for s in &layout.slots {
            let t = params.get(&s.name)?;
            let v = t
                .to_dtype(candle_core::DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            w[s.off..s.off + s.len].copy_from_slice(&v);
        }
        let hd = cfg.head_dim();
        if cfg.num_attention_heads == 0
            || cfg.num_key_value_heads == 0
            || !cfg
                .num_attention_heads
                .is_multiple_of(cfg.num_key_value_heads)
            || hd * cfg.num_attention_heads != cfg.hidden_size
        {
            return Err(ModelError::Config(format!(
                "{} attention heads over {} key/value heads do not divide hidden size {}",
                cfg.num_attention_heads, cfg.num_key_value_heads, cfg.hidden_size
            )));
        }
        let (rope, alibi) = match cfg.position {
            Position::Rope => (
                Some(rope::Tables::new(
                    cfg.max_position_embeddings,
                    hd,
                    cfg.rope_theta,
                )),
                None,
            ),
            Position::Alibi => (
                None,
                Some(
                    alibi_slopes(cfg.num_attention_heads)
                        .iter()
                        .map(|&s| s as f32)
                        .collect(),
                ),
            ),
        };
        Ok(FusedModel {
            cfg: cfg.clone(),
            lora,
            g: vec![0f32; layout.grads_len],
            layout,
            w,
            rope,
            alibi,
            acts: Acts::default(),
            fresh: true,
            ready: false,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Trainable parameters sorted by name: (name, shape, offset in the gradient buffer).
    pub fn trainable_slots(&self) -> Vec<(&str, &[usize], usize)> {
        self.layout
            .by_name
            .iter()
            .filter_map(|(name, &i)| {
                let s = self.layout.slot(i);
                s.grad.map(|go| (name.as_str(), s.shape.as_slice(), go))
            })
            .collect()
    }

    /// `Σ g²` over every trainable parameter's gradient, in name order (f64).
    pub fn grad_sum_squares(&self) -> f64 {
        let mut total = 0f64;
        for (_, shape, go) in self.trainable_slots() {
            let n: usize = shape.iter().product();
            total += kernels::sum_squares(&self.g[go..go + n]);
        }
        total
    }

    /// One AdamW update of every trainable parameter from its gradient; `m` and `v` are the
    /// moments, laid out like the gradient buffer; `hyper(name)` gives each parameter's
    /// constants. Clears the gradients for the next step.
    pub fn adamw(
        &mut self,
        m: &mut [f32],
        v: &mut [f32],
        hyper: &dyn Fn(&str) -> kernels::adamw::Hyper,
    ) {
        for s in &self.layout.slots {
            let Some(go) = s.grad else { continue };
            kernels::adamw::step(
                &mut self.w[s.off..s.off + s.len],
                &self.g[go..go + s.len],
                &mut m[go..go + s.len],
                &mut v[go..go + s.len],
                hyper(&s.name),
            );
        }
        self.fresh = true;
    }

    /// Number of trainable values.
    pub fn trainable_len(&self) -> usize {
        self.layout.grads_len
    }

    /// Every parameter as candle tensors (trainable ones as variables), sorted by name.
    pub fn params(&self) -> R<Params> {
        let mut out = Params::default();
        for (name, &i) in &self.layout.by_name {
            let s = self.layout.slot(i);
            let t = Tensor::from_slice(
                &self.w[s.off..s.off + s.len],
                s.shape.as_slice(),
                &Device::Cpu,
            )?;
            let p = if s.grad.is_some() {
                Param::Trainable(Var::from_tensor(&t)?)
            } else {
                Param::Frozen(t)
            };
            out.insert(name.clone(), p);
        }
        Ok(out)
    }

    /// The gradient of each trainable parameter, sorted by name (for tests).
    pub fn gradients(&self) -> Vec<(String, Vec<f32>)> {
        let mut out = Vec::new();
        for (name, &i) in &self.layout.by_name {
            let s = self.layout.slot(i);
            if let Some(go) = s.grad {
                out.push((name.clone(), self.g[go..go + s.len].to_vec()));
            }
        }
        out
    }

    /// blake3 over every parameter's name, shape and f32 bytes in sorted order: the same digest
    /// as [`Params::fingerprint`].
    pub fn fingerprint(&self) -> String {
        let mut h = blake3::Hasher::new();
        for (name, &i) in &self.layout.by_name {
            let s = self.layout.slot(i);
            super::params::hash_tensor(&mut h, name, &s.shape, &self.w[s.off..s.off + s.len]);
        }
        h.finalize().to_hex().to_string()
    }

    /// Starts a new accumulation: the next backward pass writes the gradients.
    pub fn clear_gradients(&mut self) {
        self.fresh = true;
    }

    fn check(&self, batch: &Batch) -> R<()> {
        let m = batch.rows * batch.len;
        if batch.inputs.len() != m || batch.targets.len() != m || batch.mask.len() != m {
            return Err(ModelError::Config(format!(
                "batch of {} rows x {} tokens holds {} inputs, {} targets, {} mask values",
                batch.rows,
                batch.len,
                batch.inputs.len(),
                batch.targets.len(),
                batch.mask.len()
            )));
        }
        if batch.len > self.cfg.max_position_embeddings {
            return Err(ModelError::TooLong {
                len: batch.len,
                max: self.cfg.max_position_embeddings,
            });
        }
        let v = self.cfg.vocab_size as u32;
        if let Some(bad) = batch.inputs.iter().chain(&batch.targets).find(|&&t| t >= v) {
            return Err(ModelError::Config(format!(
                "token id {bad} is outside the model's vocabulary of {v}"
            )));
        }
        Ok(())
    }

    /// Forward pass over `batch`: each row's summed log-probability of its supervised targets
    /// (`Σ mask · log p(target)`). Keeps the activations for [`FusedModel::backward`]. `rng`
    /// draws LoRA dropout masks (training); `None` turns dropout off.
    pub fn forward(&mut self, batch: &Batch, mut rng: Option<&mut Rng>) -> R<Vec<f64>> {
        self.check(batch)?;
        let cfg = &self.cfg;
        let (rows, t) = (batch.rows, batch.len);
        let m = rows * t;
        let Dims {
            h,
            nh,
            nkv,
            hd,
            inter,
            vocab,
        } = Dims::of(cfg);
        let eps = cfg.rms_norm_eps as f32;
        let wq = (nh + 2 * nkv) * hd;
        let nl = cfg.num_hidden_layers;
        let ctx = Ctx {
            w: &self.w,
            layout: &self.layout,
            lora: self.lora.as_ref(),
        };
        let a = &mut self.acts;
        a.rows = rows;
        a.len = t;
        a.ids.clear();
        a.ids.extend_from_slice(&batch.inputs);
        a.mask.clear();
        a.mask.extend_from_slice(&batch.mask);
        a.layers.resize_with(nl, LayerActs::default);
        let Acts {
            layers,
            xf,
            invf,
            xnf,
            xd,
            ..
        } = a;

        // Embedding.
        let first = match layers.first_mut() {
            Some(l) => &mut l.x,
            None => &mut *xf,
        };
        grow(first, m * h);
        let emb = ctx.slot(self.layout.embed);
        let ids = &batch.inputs;
        kernels::par_rows(&mut first[..m * h], h, |r0, out| {
            for (i, row) in out.chunks_exact_mut(h).enumerate() {
                let id = ids[r0 + i] as usize;
                row.copy_from_slice(&emb[id * h..id * h + h]);
            }
        });

        let shape = attention::Shape {
            rows,
            seq: t,
            heads: nh,
            kv_heads: nkv,
            head_dim: hd,
        };
        // Each layer's output is its input plus the two branches; the additions are fused into
        // the norms that read the sums (`add_forward`): `x2 = x + o(...)` in the second norm,
        // and `x_next = x2 + down(...)` in the next layer's first norm (or the final norm).
        for l in 0..nl {
            let (done, rest) = layers.split_at_mut(l + 1);
            let (prev, cur) = done.split_at_mut(l);
            let la = &mut cur[0];
            let lay = &self.layout.layers[l];
            for (v, n) in [
                (&mut la.inv1, m),
                (&mut la.xn1, m * h),
                (&mut la.qkv, m * wq),
                (&mut la.att, m * h),
                (&mut la.lse, rows * nh * t),
                (&mut la.x2, m * h),
                (&mut la.inv2, m),
                (&mut la.xn2, m * h),
                (&mut la.gu, m * 2 * inter),
                (&mut la.h, m * inter),
            ] {
                grow(v, n);
            }
            match prev.last() {
                // x = previous x2 + previous down(...), already in `la.x`.
                Some(p) => norm::add_forward(
                    &mut la.x[..m * h],
                    &p.x2[..m * h],
                    ctx.slot(lay.norm1),
                    eps,
                    &mut la.xn1,
                    &mut la.inv1,
                ),
                None => norm::forward(
                    &la.x[..m * h],
                    ctx.slot(lay.norm1),
                    eps,
                    &mut la.xn1,
                    &mut la.inv1,
                ),
            }
            ctx.linear(
                &lay.qkv,
                &la.xn1,
                m,
                &mut la.qkv,
                false,
                &mut la.adapters[0],
                &mut rng,
                xd,
            );
            if let Some(tables) = &self.rope {
                rope::apply(&mut la.qkv[..m * wq], wq, t, nh + nkv, tables, false);
            }
            attention::forward(
                shape,
                &la.qkv,
                self.alibi.as_deref(),
                &mut la.att,
                &mut la.lse,
            );
            ctx.linear(
                &lay.o,
                &la.att,
                m,
                &mut la.x2,
                false,
                &mut la.adapters[1],
                &mut rng,
                xd,
            );
            norm::add_forward(
                &mut la.x2[..m * h],
                &la.x[..m * h],
                ctx.slot(lay.norm2),
                eps,
                &mut la.xn2,
                &mut la.inv2,
            );
            ctx.linear(
                &lay.gate_up,
                &la.xn2,
                m,
                &mut la.gu,
                false,
                &mut la.adapters[2],
                &mut rng,
                xd,
            );
            swiglu::forward(&la.gu[..m * 2 * inter], &mut la.h[..m * inter], inter);
            let next = match rest.first_mut() {
                Some(n) => &mut n.x,
                None => &mut *xf,
            };
            grow(next, m * h);
            ctx.linear(
                &lay.down,
                &la.h,
                m,
                next,
                false,
                &mut la.adapters[3],
                &mut rng,
                xd,
            );
        }

        // Final norm, then the head on supervised positions only.
        grow(invf, m);
        grow(xnf, m * h);
        match layers.last() {
            Some(last) => norm::add_forward(
                &mut xf[..m * h],
                &last.x2[..m * h],
                ctx.slot(self.layout.norm),
                eps,
                xnf,
                invf,
            ),
            None => norm::forward(&xf[..m * h], ctx.slot(self.layout.norm), eps, xnf, invf),
        }
        let a = &mut self.acts;
        a.sel.clear();
        a.sel.extend((0..m).filter(|&i| batch.mask[i] > 0.0));
        let s = a.sel.len();
        a.sel_targets.clear();
        a.sel_targets
            .extend(a.sel.iter().map(|&i| batch.targets[i]));
        grow(&mut a.xs, s * h);
        let (sel, xnf) = (&a.sel, &a.xnf);
        kernels::par_rows(&mut a.xs[..s * h], h, |k0, out| {
            for (k, row) in out.chunks_exact_mut(h).enumerate() {
                let i = sel[k0 + k];
                row.copy_from_slice(&xnf[i * h..i * h + h]);
            }
        });
        let head = ctx.slot(self.layout.head);
        let head: &[f32] = if cfg.family == Family::Baichuan2 {
            grow(&mut a.head_n, vocab * h);
            grow(&mut a.head_norms, vocab);
            norm::head_normalize(head, h, &mut a.head_n, &mut a.head_norms);
            &a.head_n
        } else {
            head
        };
        grow(&mut a.logits, s * vocab);
        grow(&mut a.inv_sum, s);
        grow(&mut a.logp, s);
        matmul(
            MatMut::new(&mut a.logits[..s * vocab], s, vocab),
            Mat::new(&a.xs[..s * h], s, h),
            Mat::new(head, vocab, h).t(),
            1.0,
            false,
            Par::Pool,
        );
        xent::forward(
            &mut a.logits[..s * vocab],
            vocab,
            &a.sel_targets,
            &mut a.logp[..s],
            &mut a.inv_sum[..s],
        );
        let mut sums = vec![0f64; rows];
        for (k, &i) in a.sel.iter().enumerate() {
            sums[i / t.max(1)] += a.logp[k] as f64 * batch.mask[i] as f64;
        }
        self.ready = true;
        Ok(sums)
    }

    /// Row sums without keeping anything for a backward pass (evaluation; dropout off).
    pub fn score(&mut self, batch: &Batch) -> R<Vec<f64>> {
        let out = self.forward(batch, None);
        self.ready = false;
        out
    }
}

/// Runs `f` in a rayon pool of `threads` threads (tests run the same work under several pool
/// sizes).
#[cfg(test)]
pub(crate) fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map(|p| p.install(f))
        .unwrap_or_else(|e| panic!("thread pool: {e}"))
}
