//! The backward pass of the fused model.

use super::linear::{Ctx, pair_par};
use super::{Dims, FusedModel, R, grow};
use crate::model::ModelError;
use crate::model::kernels::gemm::{Mat, MatMut, matmul};
use crate::model::kernels::{self, attention, norm, rope, swiglu, xent};
use crate::spec::Family;

impl FusedModel {
    /// Backward pass of the last [`FusedModel::forward`], given `d loss / d row sum` per row.
    /// Gradients are written on the first call after [`FusedModel::clear_gradients`] and added
    /// on later calls (gradient accumulation).
    pub fn backward(&mut self, d_rows: &[f64]) -> R<()> {
        if !self.ready {
            return Err(ModelError::Config(
                "backward pass without a forward pass to go with it".into(),
            ));
        }
        self.ready = false;
        let cfg = &self.cfg;
        let Dims {
            h,
            nh,
            nkv,
            hd,
            inter,
            vocab,
        } = Dims::of(cfg);
        let wq = (nh + 2 * nkv) * hd;
        let ctx = Ctx {
            w: &self.w,
            layout: &self.layout,
            lora: self.lora.as_ref(),
        };
        let layout = &self.layout;
        let g = &mut self.g;
        let fresh = self.fresh;
        let a = &mut self.acts;
        let (rows, t) = (a.rows, a.len);
        if d_rows.len() != rows {
            return Err(ModelError::Config(format!(
                "{} row gradients for a batch of {rows} rows",
                d_rows.len()
            )));
        }
        let m = rows * t;
        let s = a.sel.len();

        // Head and cross-entropy.
        a.weights.clear();
        a.weights.extend(
            a.sel
                .iter()
                .map(|&i| (d_rows[i / t.max(1)] * a.mask[i] as f64) as f32),
        );
        xent::backward(
            &mut a.logits[..s * vocab],
            vocab,
            &a.sel_targets,
            &a.inv_sum[..s],
            &a.weights,
        );
        let normhead = cfg.family == Family::Baichuan2;
        let head_w: &[f32] = if normhead {
            &a.head_n
        } else {
            ctx.slot(layout.head)
        };
        grow(&mut a.dxs, s * h);
        if normhead {
            grow(&mut a.dhead, vocab * h);
        }
        let dlogits = Mat::new(&a.logits[..s * vocab], s, vocab);
        let xs = Mat::new(&a.xs[..s * h], s, h);
        let head_grad = layout.slot(layout.head).grad;
        let (dxs, dhead) = (&mut a.dxs, &mut a.dhead);
        rayon::join(
            || {
                matmul(
                    MatMut::new(&mut dxs[..s * h], s, h),
                    dlogits,
                    Mat::new(head_w, vocab, h),
                    1.0,
                    false,
                    pair_par(),
                )
            },
            || match head_grad {
                Some(_) if normhead => matmul(
                    MatMut::new(&mut dhead[..vocab * h], vocab, h),
                    dlogits.t(),
                    xs,
                    1.0,
                    false,
                    pair_par(),
                ),
                Some(go) => matmul(
                    MatMut::new(&mut g[go..go + vocab * h], vocab, h),
                    dlogits.t(),
                    xs,
                    1.0,
                    !fresh,
                    pair_par(),
                ),
                None => {}
            },
        );
        if let (Some(go), true) = (head_grad, normhead) {
            norm::head_normalize_backward(
                &a.dhead[..vocab * h],
                &a.head_n,
                &a.head_norms,
                h,
                &mut g[go..go + vocab * h],
                !fresh,
            );
        }
        // Scatter the selected rows' gradient back over every position.
        grow(&mut a.dtmp, m * h);
        {
            // Position → its row among the selected ones.
            let mut at = vec![usize::MAX; m];
            for (k, &i) in a.sel.iter().enumerate() {
                at[i] = k;
            }
            let dxs = &a.dxs;
            kernels::par_rows(&mut a.dtmp[..m * h], h, |i0, out| {
                for (i, row) in out.chunks_exact_mut(h).enumerate() {
                    match at[i0 + i] {
                        usize::MAX => row.fill(0.0),
                        k => row.copy_from_slice(&dxs[k * h..k * h + h]),
                    }
                }
            });
        }
        grow(&mut a.dx, m * h);
        let norm_slot = layout.slot(layout.norm);
        let ng = norm_slot.grad;
        {
            let gn = grad_of(g, ng, h);
            norm::backward(
                &a.dtmp[..m * h],
                &a.xf[..m * h],
                &a.invf[..m],
                ctx.slot(layout.norm),
                &mut a.dx[..m * h],
                false,
                gn,
                !fresh,
            );
        }

        grow(&mut a.dh, m * inter);
        grow(&mut a.dbig, m * (2 * inter).max(wq));
        let shape = attention::Shape {
            rows,
            seq: t,
            heads: nh,
            kv_heads: nkv,
            head_dim: hd,
        };
        for l in (0..cfg.num_hidden_layers).rev() {
            let la = &a.layers[l];
            let lay = &layout.layers[l];
            // MLP: x_next = x2 + down(silu(gate) ⊙ up).
            ctx.linear_backward(
                g,
                fresh,
                &lay.down,
                &a.dx,
                &la.h,
                m,
                &mut a.dh,
                &la.adapters[3],
                &mut a.du,
                &mut a.xd,
            );
            swiglu::backward(
                &a.dh[..m * inter],
                &la.gu[..m * 2 * inter],
                &mut a.dbig[..m * 2 * inter],
                inter,
            );
            ctx.linear_backward(
                g,
                fresh,
                &lay.gate_up,
                &a.dbig,
                &la.xn2,
                m,
                &mut a.dtmp,
                &la.adapters[2],
                &mut a.du,
                &mut a.xd,
            );
            {
                let gn = grad_of(g, layout.slot(lay.norm2).grad, h);
                norm::backward(
                    &a.dtmp[..m * h],
                    &la.x2[..m * h],
                    &la.inv2[..m],
                    ctx.slot(lay.norm2),
                    &mut a.dx[..m * h],
                    true,
                    gn,
                    !fresh,
                );
            }
            // Attention: x2 = x + o(attention(rope(qkv(norm1(x))))).
            ctx.linear_backward(
                g,
                fresh,
                &lay.o,
                &a.dx,
                &la.att,
                m,
                &mut a.dtmp,
                &la.adapters[1],
                &mut a.du,
                &mut a.xd,
            );
            attention::backward(
                shape,
                &la.qkv,
                self.alibi.as_deref(),
                &la.att,
                &la.lse,
                &a.dtmp,
                &mut a.dbig[..m * wq],
            );
            if let Some(tables) = &self.rope {
                rope::apply(&mut a.dbig[..m * wq], wq, t, nh + nkv, tables, true);
            }
            ctx.linear_backward(
                g,
                fresh,
                &lay.qkv,
                &a.dbig,
                &la.xn1,
                m,
                &mut a.dtmp,
                &la.adapters[0],
                &mut a.du,
                &mut a.xd,
            );
            {
                let gn = grad_of(g, layout.slot(lay.norm1).grad, h);
                norm::backward(
                    &a.dtmp[..m * h],
                    &la.x[..m * h],
                    &la.inv1[..m],
                    ctx.slot(lay.norm1),
                    &mut a.dx[..m * h],
                    true,
                    gn,
                    !fresh,
                );
            }
        }

        // Embedding rows, in token order (after the head's gradient when tied).
        if let Some(ge) = layout.slot(layout.embed).grad {
            let ge = &mut g[ge..ge + vocab * h];
            let clear = fresh && layout.embed != layout.head;
            let (ids, dx) = (&a.ids[..m], &a.dx);
            // Pieces of vocabulary rows in parallel; each adds its tokens in token order.
            kernels::par_rows(ge, h, |v0, rows| {
                if clear {
                    rows.fill(0.0);
                }
                let v1 = v0 + rows.len() / h;
                for (i, &id) in ids.iter().enumerate() {
                    let id = id as usize;
                    if (v0..v1).contains(&id) {
                        let r = id - v0;
                        kernels::add_into(&mut rows[r * h..r * h + h], &dx[i * h..i * h + h]);
                    }
                }
            });
        }
        if fresh {
            for &i in &layout.unused_trainable {
                if let Some(go) = layout.slot(i).grad {
                    g[go..go + layout.slot(i).len].fill(0.0);
                }
            }
        }
        self.fresh = false;
        Ok(())
    }
}

/// The gradient slice of a `len`-element parameter at `grad`, if it is trainable.
fn grad_of(g: &mut [f32], grad: Option<usize>, len: usize) -> Option<&mut [f32]> {
    grad.map(|go| &mut g[go..go + len])
}
