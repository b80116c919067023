//! Where each parameter lives in the fused model's flat buffers.
//!
//! Every parameter gets a slot in one `f32` buffer, in an order chosen for the matrix products:
//! the q/k/v weights of a layer are adjacent (so `[q; k; v]` is one `[q + 2·kv, hidden]` matrix,
//! as Baichuan2's `W_pack` already is), and so are gate and up. Trainable parameters also get a
//! slot in the gradient buffer, in the same order, so a fused group that is trainable as a whole
//! gets its weight gradient from one product too.

use std::collections::BTreeMap;

use crate::model::config::ModelConfig;
use crate::model::{ModelError, Param, Params};
use crate::spec::Family;

/// One parameter.
#[derive(Debug, Clone)]
pub struct Slot {
    pub name: String,
    pub shape: Vec<usize>,
    /// Offset in the weight buffer.
    pub off: usize,
    pub len: usize,
    /// Offset in the gradient buffer, for trainable parameters.
    pub grad: Option<usize>,
}

/// One Hugging Face linear module inside a fused group.
#[derive(Debug, Clone)]
pub struct Member {
    /// Slot of `<module>.weight` (`[out, in]`).
    pub weight: usize,
    /// First column of this module's output in the group's output rows.
    pub col: usize,
    pub out: usize,
    /// Slot of `<module>.bias`, if the model has one.
    pub bias: Option<usize>,
    /// Slots of the LoRA `A` (`[r, in]`) and `B` (`[out, r]`) adapters, if attached.
    pub lora: Option<(usize, usize)>,
}

/// Linear modules that read the same input, with weights adjacent in the weight buffer: one
/// product computes all their outputs side by side.
#[derive(Debug, Clone)]
pub struct Linear {
    pub inp: usize,
    pub out: usize,
    pub members: Vec<Member>,
}

impl Linear {
    /// Offset of the group's `[out, in]` weight.
    pub fn w_off(&self, slots: &[Slot]) -> usize {
        self.members
            .first()
            .map(|m| slots[m.weight].off)
            .unwrap_or(0)
    }

    /// Offset of the group's weight gradient when every member is trainable (then the
    /// gradients are adjacent too).
    pub fn whole_grad(&self, slots: &[Slot]) -> Option<usize> {
        let first = slots[self.members.first()?.weight].grad?;
        let mut next = first;
        for m in &self.members {
            let s = &slots[m.weight];
            if s.grad != Some(next) {
                return None;
            }
            next += s.len;
        }
        Some(first)
    }
}

#[derive(Debug, Clone)]
pub struct Layer {
    pub norm1: usize,
    pub norm2: usize,
    pub qkv: Linear,
    pub o: Linear,
    pub gate_up: Linear,
    pub down: Linear,
}

#[derive(Debug, Clone)]
pub struct Layout {
    pub slots: Vec<Slot>,
    /// Slot index by name (sorted, for fingerprints and checkpoints).
    pub by_name: BTreeMap<String, usize>,
    pub layers: Vec<Layer>,
    pub embed: usize,
    pub norm: usize,
    /// `lm_head.weight`, or the embedding when tied.
    pub head: usize,
    /// Trainable parameters the forward pass does not read: their gradient is zero.
    pub unused_trainable: Vec<usize>,
    pub weights_len: usize,
    pub grads_len: usize,
}

struct Builder<'a> {
    params: &'a Params,
    slots: Vec<Slot>,
    by_name: BTreeMap<String, usize>,
    trainable: Vec<bool>,
    off: usize,
}

impl Builder<'_> {
    fn take(&mut self, name: &str) -> Result<usize, ModelError> {
        if let Some(&i) = self.by_name.get(name) {
            return Ok(i);
        }
        let p = self
            .params
            .param(name)
            .ok_or_else(|| ModelError::MissingTensor(name.to_string()))?;
        let shape = p.tensor().dims().to_vec();
        let len = shape.iter().product();
        let i = self.slots.len();
        self.slots.push(Slot {
            name: name.to_string(),
            shape,
            off: self.off,
            len,
            grad: None,
        });
        self.trainable.push(matches!(p, Param::Trainable(_)));
        self.by_name.insert(name.to_string(), i);
        self.off += len;
        Ok(i)
    }

    fn try_take(&mut self, name: &str) -> Result<Option<usize>, ModelError> {
        if self.params.try_get(name).is_some() {
            self.take(name).map(Some)
        } else {
            Ok(None)
        }
    }

    fn expect(&self, slot: usize, shape: &[usize]) -> Result<(), ModelError> {
        let s = &self.slots[slot];
        if s.shape != shape {
            return Err(ModelError::Config(format!(
                "tensor `{}` has shape {:?}, the model config expects {:?}",
                s.name, s.shape, shape
            )));
        }
        Ok(())
    }

    /// A group of modules `(path, out)` reading inputs of `inp`: weights first (adjacent).
    fn linear(&mut self, modules: &[(String, usize)], inp: usize) -> Result<Linear, ModelError> {
        let mut members = Vec::new();
        let mut col = 0;
        for (path, out) in modules {
            let w = self.take(&format!("{path}.weight"))?;
            self.expect(w, &[*out, inp])?;
            members.push(Member {
                weight: w,
                col,
                out: *out,
                bias: None,
                lora: None,
            });
            col += out;
        }
        Ok(Linear {
            inp,
            out: col,
            members,
        })
    }

    /// Biases and adapters of a group, placed after every layer's weights.
    fn extras(&mut self, lin: &mut Linear, paths: &[String], lora: bool) -> Result<(), ModelError> {
        for (m, path) in lin.members.iter_mut().zip(paths) {
            if let Some(b) = self.try_take(&format!("{path}.bias"))? {
                self.expect(b, &[m.out])?;
                m.bias = Some(b);
            }
            if lora {
                let a = self.try_take(&format!("base_model.model.{path}.lora_A.weight"))?;
                let bb = self.try_take(&format!("base_model.model.{path}.lora_B.weight"))?;
                if let (Some(a), Some(bb)) = (a, bb) {
                    let r = self.slots[a].shape.first().copied().unwrap_or(0);
                    self.expect(a, &[r, lin.inp])?;
                    self.expect(bb, &[m.out, r])?;
                    m.lora = Some((a, bb));
                }
            }
        }
        Ok(())
    }
}

impl Layout {
    /// Lays out `params` for `cfg`. With `lora`, adapters under PEFT names join their modules.
    pub fn build(cfg: &ModelConfig, params: &Params, lora: bool) -> Result<Layout, ModelError> {
        let mut b = Builder {
            params,
            slots: Vec::new(),
            by_name: BTreeMap::new(),
            trainable: Vec::new(),
            off: 0,
        };
        let (h, kv, inter) = (cfg.hidden_size, cfg.kv_dim(), cfg.intermediate_size);
        let mut layers = Vec::new();
        let mut paths = Vec::new();
        for l in 0..cfg.num_hidden_layers {
            let pre = format!("model.layers.{l}");
            let attn: Vec<(String, usize)> = match cfg.family {
                Family::Baichuan2 => vec![(format!("{pre}.self_attn.W_pack"), 3 * h)],
                Family::Llama | Family::Qwen2 => vec![
                    (format!("{pre}.self_attn.q_proj"), h),
                    (format!("{pre}.self_attn.k_proj"), kv),
                    (format!("{pre}.self_attn.v_proj"), kv),
                ],
            };
            let o = vec![(format!("{pre}.self_attn.o_proj"), h)];
            let gu = vec![
                (format!("{pre}.mlp.gate_proj"), inter),
                (format!("{pre}.mlp.up_proj"), inter),
            ];
            let down = vec![(format!("{pre}.mlp.down_proj"), h)];
            let qkv = b.linear(&attn, h)?;
            let o_l = b.linear(&o, h)?;
            let gu_l = b.linear(&gu, h)?;
            let down_l = b.linear(&down, inter)?;
            let norm1 = b.take(&format!("{pre}.input_layernorm.weight"))?;
            let norm2 = b.take(&format!("{pre}.post_attention_layernorm.weight"))?;
            b.expect(norm1, &[h])?;
            b.expect(norm2, &[h])?;
            layers.push(Layer {
                norm1,
                norm2,
                qkv,
                o: o_l,
                gate_up: gu_l,
                down: down_l,
            });
            paths.push([attn, o, gu, down]);
        }
        for (layer, p) in layers.iter_mut().zip(&paths) {
            let names =
                |v: &Vec<(String, usize)>| v.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
            b.extras(&mut layer.qkv, &names(&p[0]), lora)?;
            b.extras(&mut layer.o, &names(&p[1]), lora)?;
            b.extras(&mut layer.gate_up, &names(&p[2]), lora)?;
            b.extras(&mut layer.down, &names(&p[3]), lora)?;
        }
        let embed = b.take("model.embed_tokens.weight")?;
        b.expect(embed, &[cfg.vocab_size, h])?;
        let norm = b.take("model.norm.weight")?;
        b.expect(norm, &[h])?;
        let head = if cfg.tie_word_embeddings {
            embed
        } else {
            let s = b.take("lm_head.weight")?;
            b.expect(s, &[cfg.vocab_size, h])?;
            s
        };
        // Whatever else the parameters hold (adapters of modules the model does not have, say)
        // is carried along unchanged.
        let mut unused = Vec::new();
        let rest: Vec<String> = params
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| !b.by_name.contains_key(n))
            .collect();
        for n in rest {
            let i = b.take(&n)?;
            unused.push(i);
        }
        let mut g = 0;
        for (s, &t) in b.slots.iter_mut().zip(&b.trainable) {
            if t {
                s.grad = Some(g);
                g += s.len;
            }
        }
        let unused_trainable = unused
            .into_iter()
            .filter(|&i| b.slots[i].grad.is_some())
            .collect();
        Ok(Layout {
            weights_len: b.off,
            grads_len: g,
            slots: b.slots,
            by_name: b.by_name,
            layers,
            embed,
            norm,
            head,
            unused_trainable,
        })
    }

    pub fn slot(&self, i: usize) -> &Slot {
        &self.slots[i]
    }

    /// Whether slot `i` is trainable.
    pub fn trains(&self, i: usize) -> bool {
        self.slots[i].grad.is_some()
    }
}
