//! One configurable decoder-only transformer (Llama, Qwen2, Baichuan2), built only from candle ops
//! that propagate gradients (see CANDLE-NOTES: the fused norm / softmax / RoPE kernels silently
//! drop them). Tensor names follow Hugging Face.
//!
//! - Llama: RMSNorm, RoPE (rotate-half), SwiGLU, grouped-query attention, tied or untied head.
//! - Qwen2: Llama plus biases on q/k/v.
//! - Baichuan2: fused `W_pack` q/k/v projection, NormHead (head rows L2-normalised in every
//!   forward pass), RoPE (7B) or ALiBi (13B).
//!
//! LoRA adapters, when present in the parameters under PEFT names
//! (`base_model.model.<module>.lora_A.weight` / `lora_B.weight`), add `(α/r)·(x Aᵀ) Bᵀ` to the
//! module's output.

use candle_core::{D, DType, Device, Tensor};

use super::ModelError;
use super::config::ModelConfig;
use super::params::Params;
use crate::rng::Rng;
use crate::spec::{Family, Position};

type R<T> = Result<T, ModelError>;

/// LoRA settings used by the forward pass.
#[derive(Debug, Clone)]
pub struct LoraForward {
    pub scale: f64,
    pub dropout: f64,
}

/// Per-call options of the forward pass.
pub struct Forward<'a> {
    pub lora: Option<&'a LoraForward>,
    /// Source of dropout masks (training only). `None` disables dropout.
    pub rng: Option<&'a mut Rng>,
}

impl Forward<'_> {
    pub fn eval() -> Forward<'static> {
        Forward {
            lora: None,
            rng: None,
        }
    }
}

pub struct Transformer {
    pub cfg: ModelConfig,
    pub device: Device,
    /// RoPE tables [max_pos, head_dim].
    cos: Tensor,
    sin: Tensor,
}

/// ALiBi slopes for `n` heads (Press et al.), with the usual interleave when `n` is not a power
/// of two.
pub fn alibi_slopes(n: usize) -> Vec<f64> {
    fn pow2(n: usize) -> Vec<f64> {
        let start = 2f64.powf(-(2f64.powf(-((n as f64).log2() - 3.0))));
        (0..n).map(|i| start * start.powi(i as i32)).collect()
    }
    if n.is_power_of_two() {
        return pow2(n);
    }
    let m = 1usize << (usize::BITS - 1 - n.leading_zeros());
    let mut out = pow2(m);
    let extra = pow2(2 * m);
    out.extend(extra.iter().step_by(2).take(n - m));
    out
}

impl Transformer {
    pub fn new(cfg: ModelConfig, device: &Device) -> R<Transformer> {
        let d = cfg.head_dim();
        let max = cfg.max_position_embeddings;
        let half = d / 2;
        let mut cos = Vec::with_capacity(max * d);
        let mut sin = Vec::with_capacity(max * d);
        for t in 0..max {
            let row: Vec<f64> = (0..half)
                .map(|k| t as f64 * cfg.rope_theta.powf(-(2.0 * k as f64) / d as f64))
                .collect();
            for _ in 0..2 {
                cos.extend(row.iter().map(|a| a.cos() as f32));
                sin.extend(row.iter().map(|a| a.sin() as f32));
            }
        }
        Ok(Transformer {
            cos: Tensor::from_vec(cos, (max, d), device)?,
            sin: Tensor::from_vec(sin, (max, d), device)?,
            cfg,
            device: device.clone(),
        })
    }

    /// The RoPE tables `(cos, sin)`, `[max_positions, head_dim]` each (both halves of a row
    /// are equal).
    pub(crate) fn rope_tables(&self) -> (&Tensor, &Tensor) {
        (&self.cos, &self.sin)
    }

    fn linear(&self, p: &Params, module: &str, x: &Tensor, f: &mut Forward<'_>) -> R<Tensor> {
        let w = p.get(&format!("{module}.weight"))?;
        let mut y = matmul_t(x, w)?;
        if let Some(b) = p.try_get(&format!("{module}.bias")) {
            y = y.broadcast_add(b)?;
        }
        if let Some(lora) = f.lora {
            let a = p.try_get(&format!("base_model.model.{module}.lora_A.weight"));
            let b = p.try_get(&format!("base_model.model.{module}.lora_B.weight"));
            if let (Some(a), Some(b)) = (a, b) {
                let xin = match f.rng.as_deref_mut() {
                    Some(rng) if lora.dropout > 0.0 => dropout(x, lora.dropout, rng)?,
                    _ => x.clone(),
                };
                let delta = xin.broadcast_matmul(&a.t()?)?.broadcast_matmul(&b.t()?)?;
                y = (y + delta.affine(lora.scale, 0.0)?)?;
            }
        }
        Ok(y)
    }

    fn rms_norm(&self, x: &Tensor, w: &Tensor) -> R<Tensor> {
        let eps = self.cfg.rms_norm_eps;
        let inv = x
            .sqr()?
            .mean_keepdim(D::Minus1)?
            .affine(1.0, eps)?
            .sqrt()?
            .recip()?;
        Ok(x.broadcast_mul(&inv)?.broadcast_mul(w)?)
    }

    fn rope(&self, x: &Tensor, t: usize) -> R<Tensor> {
        // x: [B, heads, T, D]
        let d = self.cfg.head_dim();
        let cos = self.cos.narrow(0, 0, t)?;
        let sin = self.sin.narrow(0, 0, t)?;
        let x1 = x.narrow(D::Minus1, 0, d / 2)?;
        let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
        let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
        Ok((x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?)?)
    }

    /// Additive attention bias [1 or heads, T, T]: causal mask, plus ALiBi when configured.
    fn attn_bias(&self, t: usize) -> R<Tensor> {
        let heads = self.cfg.num_attention_heads;
        match self.cfg.position {
            Position::Rope => {
                let mut m = vec![0f32; t * t];
                for i in 0..t {
                    for j in i + 1..t {
                        m[i * t + j] = f32::NEG_INFINITY;
                    }
                }
                Ok(Tensor::from_vec(m, (1, t, t), &self.device)?)
            }
            Position::Alibi => {
                let slopes = alibi_slopes(heads);
                let mut m = vec![0f32; heads * t * t];
                for (h, s) in slopes.iter().enumerate() {
                    for i in 0..t {
                        for j in 0..t {
                            m[(h * t + i) * t + j] = if j > i {
                                f32::NEG_INFINITY
                            } else {
                                (s * (j as f64 - i as f64)) as f32
                            };
                        }
                    }
                }
                Ok(Tensor::from_vec(m, (heads, t, t), &self.device)?)
            }
        }
    }

    fn attention(
        &self,
        p: &Params,
        l: usize,
        x: &Tensor,
        bias: &Tensor,
        f: &mut Forward<'_>,
    ) -> R<Tensor> {
        let (b, t, h) = x.dims3()?;
        let cfg = &self.cfg;
        let (nh, nkv, hd) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim(),
        );
        let pre = format!("model.layers.{l}.self_attn");
        let (q, k, v) = match cfg.family {
            Family::Baichuan2 => {
                let qkv = self.linear(p, &format!("{pre}.W_pack"), x, f)?;
                (
                    qkv.narrow(2, 0, h)?,
                    qkv.narrow(2, h, h)?,
                    qkv.narrow(2, 2 * h, h)?,
                )
            }
            Family::Llama | Family::Qwen2 => (
                self.linear(p, &format!("{pre}.q_proj"), x, f)?,
                self.linear(p, &format!("{pre}.k_proj"), x, f)?,
                self.linear(p, &format!("{pre}.v_proj"), x, f)?,
            ),
        };
        let q = q.reshape((b, t, nh, hd))?.transpose(1, 2)?.contiguous()?;
        let k = k.reshape((b, t, nkv, hd))?.transpose(1, 2)?.contiguous()?;
        let v = v.reshape((b, t, nkv, hd))?.transpose(1, 2)?.contiguous()?;
        let (q, k) = if cfg.position == Position::Rope {
            (self.rope(&q, t)?, self.rope(&k, t)?)
        } else {
            (q, k)
        };
        let (k, v) = if nkv != nh {
            let rep = nh / nkv;
            let expand = |z: &Tensor| -> R<Tensor> {
                Ok(z.unsqueeze(2)?
                    .broadcast_as((b, nkv, rep, t, hd))?
                    .reshape((b, nh, t, hd))?)
            };
            (expand(&k)?, expand(&v)?)
        } else {
            (k, v)
        };
        let scores = (q.matmul(&k.t()?.contiguous()?)? * (1.0 / (hd as f64).sqrt()))?;
        let scores = scores.broadcast_add(bias)?;
        let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let out = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, h))?;
        self.linear(p, &format!("{pre}.o_proj"), &out, f)
    }

    fn mlp(&self, p: &Params, l: usize, x: &Tensor, f: &mut Forward<'_>) -> R<Tensor> {
        let pre = format!("model.layers.{l}.mlp");
        let g = self.linear(p, &format!("{pre}.gate_proj"), x, f)?;
        let u = self.linear(p, &format!("{pre}.up_proj"), x, f)?;
        let hmid = (candle_nn::ops::silu(&g)? * u)?;
        self.linear(p, &format!("{pre}.down_proj"), &hmid, f)
    }

    /// Final hidden states [B, T, H] for token ids [B, T].
    pub fn hidden(&self, p: &Params, ids: &Tensor, f: &mut Forward<'_>) -> R<Tensor> {
        let (b, t) = ids.dims2()?;
        if t > self.cfg.max_position_embeddings {
            return Err(ModelError::TooLong {
                len: t,
                max: self.cfg.max_position_embeddings,
            });
        }
        let emb = p.get("model.embed_tokens.weight")?;
        let mut x =
            emb.index_select(&ids.flatten_all()?, 0)?
                .reshape((b, t, self.cfg.hidden_size))?;
        let bias = self.attn_bias(t)?;
        for l in 0..self.cfg.num_hidden_layers {
            let n1 = p.get(&format!("model.layers.{l}.input_layernorm.weight"))?;
            let a = self.attention(p, l, &self.rms_norm(&x, n1)?, &bias, f)?;
            x = (x + a)?;
            let n2 = p.get(&format!("model.layers.{l}.post_attention_layernorm.weight"))?;
            let m = self.mlp(p, l, &self.rms_norm(&x, n2)?, f)?;
            x = (x + m)?;
        }
        self.rms_norm(&x, p.get("model.norm.weight")?)
    }

    /// The output head weight [V, H]: tied embeddings or `lm_head`, row-normalised for NormHead.
    pub fn head(&self, p: &Params) -> R<Tensor> {
        let w = if self.cfg.tie_word_embeddings {
            p.get("model.embed_tokens.weight")?.clone()
        } else {
            p.get("lm_head.weight")?.clone()
        };
        if self.cfg.family == Family::Baichuan2 {
            let norm = w.sqr()?.sum_keepdim(1)?.sqrt()?.affine(1.0, 1e-12)?;
            Ok(w.broadcast_div(&norm)?)
        } else {
            Ok(w)
        }
    }

    /// Logits [B, T, V].
    pub fn forward(&self, p: &Params, ids: &Tensor, f: &mut Forward<'_>) -> R<Tensor> {
        let hs = self.hidden(p, ids, f)?;
        let head = self.head(p)?;
        matmul_t(&hs, &head)
    }
}

/// `x Wᵀ`; a weight outside the autograd graph (frozen) gets no gradient work.
fn matmul_t(x: &Tensor, w: &Tensor) -> R<Tensor> {
    if w.track_op() {
        Ok(x.broadcast_matmul(&w.t()?)?)
    } else {
        Ok(super::frozen::frozen_linear(x, w)?)
    }
}

/// Inverted dropout with a mask from our RNG: keep with probability 1-p, scale by 1/(1-p).
pub fn dropout(x: &Tensor, p: f64, rng: &mut Rng) -> R<Tensor> {
    let n = x.elem_count();
    let scale = (1.0 / (1.0 - p)) as f32;
    let mask: Vec<f32> = (0..n)
        .map(|_| if rng.next_f64() < p { 0.0 } else { scale })
        .collect();
    let m = Tensor::from_vec(mask, x.dims(), x.device())?.to_dtype(x.dtype())?;
    Ok(x.mul(&m)?)
}

/// Sum of log-probabilities of `targets` [B, T] under `logits` [B, T, V], weighted by `mask`
/// [B, T] (0/1 f32). Returns ([B] summed log-probs, total mask count).
pub fn masked_logprobs(logits: &Tensor, targets: &Tensor, mask: &Tensor) -> R<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let idx = targets.contiguous()?.unsqueeze(D::Minus1)?;
    let picked = logp.gather(&idx, D::Minus1)?.squeeze(D::Minus1)?;
    Ok(picked.mul(mask)?.sum(D::Minus1)?)
}

/// Mean next-token cross-entropy over the positions where `mask` is 1.
pub fn masked_cross_entropy(logits: &Tensor, targets: &Tensor, mask: &Tensor) -> R<Tensor> {
    let total = masked_logprobs(logits, targets, mask)?.sum_all()?;
    let count = mask.sum_all()?.to_dtype(DType::F32)?;
    Ok(total.neg()?.div(&count.maximum(1f32)?)?)
}
