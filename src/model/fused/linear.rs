//! Linear modules of the fused model: one matrix product per group of modules that read the
//! same input (q/k/v, gate/up), their biases and LoRA adapters, forward and backward.

use super::grow;
use super::layout::{Layout, Linear};
use crate::model::kernels;
use crate::model::kernels::gemm::{Mat, MatMut, Par, matmul};
use crate::model::transformer::LoraForward;
use crate::rng::Rng;

/// How each product of a backward pair (input gradient ‖ weight gradient, run side by side)
/// uses the pool: with two threads, one each (no splitting overhead); with more, the pool.
/// The bits are the same either way (the products do not depend on the thread count).
pub(super) fn pair_par() -> Par {
    if rayon::current_num_threads() <= 2 {
        Par::Single
    } else {
        Par::Pool
    }
}

/// What a LoRA adapter keeps from the forward pass.
#[derive(Debug, Default)]
pub(super) struct AdapterActs {
    /// Dropout mask over the input (`0` or `1/(1−p)`); empty without dropout.
    pub(super) mask: Vec<f32>,
    /// `x Aᵀ`, `[tokens, r]`.
    pub(super) u: Vec<f32>,
}

/// Read-only view of the weights for the linear helpers.
pub(super) struct Ctx<'a> {
    pub(super) w: &'a [f32],
    pub(super) layout: &'a Layout,
    pub(super) lora: Option<&'a LoraForward>,
}

impl Ctx<'_> {
    pub(super) fn slot(&self, i: usize) -> &[f32] {
        let s = self.layout.slot(i);
        &self.w[s.off..s.off + s.len]
    }

    /// `y = x Wᵀ` (+ bias, + LoRA) for a group; adds to `y` when `accumulate`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn linear(
        &self,
        lin: &Linear,
        x: &[f32],
        m: usize,
        y: &mut [f32],
        accumulate: bool,
        acts: &mut Vec<AdapterActs>,
        rng: &mut Option<&mut Rng>,
        xd: &mut Vec<f32>,
    ) {
        let slots = &self.layout.slots;
        let off = lin.w_off(slots);
        let w = Mat::new(&self.w[off..off + lin.out * lin.inp], lin.out, lin.inp);
        let xm = Mat::new(&x[..m * lin.inp], m, lin.inp);
        matmul(
            MatMut::new(&mut y[..m * lin.out], m, lin.out),
            xm,
            w.t(),
            1.0,
            accumulate,
            Par::Pool,
        );
        acts.resize_with(lin.members.len(), AdapterActs::default);
        for (mem, a) in lin.members.iter().zip(acts.iter_mut()) {
            if let Some(b) = mem.bias {
                let bias = self.slot(b);
                let (col, out) = (mem.col, mem.out);
                kernels::par_rows(&mut y[..m * lin.out], lin.out, |_, rows| {
                    for r in rows.chunks_exact_mut(lin.out) {
                        kernels::add_into(&mut r[col..col + out], bias);
                    }
                });
            }
            a.mask.clear();
            let (Some((sa, sb)), Some(lf)) = (mem.lora, self.lora) else {
                continue;
            };
            let r = self.layout.slot(sa).shape[0];
            let input: &[f32] = match rng.as_deref_mut() {
                Some(rng) if lf.dropout > 0.0 => {
                    let n = m * lin.inp;
                    let keep = (1.0 / (1.0 - lf.dropout)) as f32;
                    a.mask.clear();
                    a.mask.extend((0..n).map(|_| {
                        if rng.next_f64() < lf.dropout {
                            0.0
                        } else {
                            keep
                        }
                    }));
                    grow(xd, n);
                    kernels::product(&mut xd[..n], &x[..n], &a.mask);
                    &xd[..n]
                }
                _ => &x[..m * lin.inp],
            };
            grow(&mut a.u, m * r);
            matmul(
                MatMut::new(&mut a.u, m, r),
                Mat::new(input, m, lin.inp),
                Mat::new(self.slot(sa), r, lin.inp).t(),
                1.0,
                false,
                Par::Pool,
            );
            matmul(
                MatMut::strided(&mut y[mem.col..m * lin.out], m, mem.out, lin.out),
                Mat::new(&a.u, m, r),
                Mat::new(self.slot(sb), mem.out, r).t(),
                lf.scale as f32,
                true,
                Par::Pool,
            );
        }
    }

    /// Backward of [`Ctx::linear`]: writes `dx` (input gradient) and writes or adds (`!fresh`)
    /// the gradients of the group's trainable parameters into `g`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn linear_backward(
        &self,
        g: &mut [f32],
        fresh: bool,
        lin: &Linear,
        dy: &[f32],
        x: &[f32],
        m: usize,
        dx: &mut [f32],
        acts: &[AdapterActs],
        du: &mut Vec<f32>,
        xd: &mut Vec<f32>,
    ) {
        let slots = &self.layout.slots;
        let off = lin.w_off(slots);
        let w = Mat::new(&self.w[off..off + lin.out * lin.inp], lin.out, lin.inp);
        let dym = Mat::new(&dy[..m * lin.out], m, lin.out);
        let xm = Mat::new(&x[..m * lin.inp], m, lin.inp);
        let dx = &mut dx[..m * lin.inp];
        // The input gradient and the weight gradient are independent products of the same
        // size: run them side by side.
        let weight_grads = |g: &mut [f32]| {
            if let Some(go) = lin.whole_grad(slots) {
                matmul(
                    MatMut::new(&mut g[go..go + lin.out * lin.inp], lin.out, lin.inp),
                    dym.t(),
                    xm,
                    1.0,
                    !fresh,
                    pair_par(),
                );
            } else {
                for mem in &lin.members {
                    if let Some(go) = slots[mem.weight].grad {
                        matmul(
                            MatMut::new(&mut g[go..go + mem.out * lin.inp], mem.out, lin.inp),
                            Mat::strided(&dy[mem.col..], m, mem.out, lin.out).t(),
                            xm,
                            1.0,
                            !fresh,
                            pair_par(),
                        );
                    }
                }
            }
        };
        rayon::join(
            || {
                matmul(
                    MatMut::new(&mut *dx, m, lin.inp),
                    dym,
                    w,
                    1.0,
                    false,
                    pair_par(),
                )
            },
            || weight_grads(&mut *g),
        );
        for (mem, a) in lin.members.iter().zip(acts) {
            if let Some(go) = mem.bias.and_then(|b| slots[b].grad) {
                kernels::column_sums(
                    &dy[..m * lin.out],
                    lin.out,
                    mem.col,
                    mem.out,
                    &mut g[go..go + mem.out],
                    !fresh,
                );
            }
            let (Some((sa, sb)), Some(lf)) = (mem.lora, self.lora) else {
                continue;
            };
            let r = self.layout.slot(sa).shape[0];
            let scale = lf.scale as f32;
            let dym_m = Mat::strided(&dy[mem.col..m * lin.out], m, mem.out, lin.out);
            let n = m * lin.inp;
            let input: &[f32] = if a.mask.is_empty() {
                &x[..n]
            } else {
                grow(xd, n);
                kernels::product(&mut xd[..n], &x[..n], &a.mask);
                &xd[..n]
            };
            if let Some(gb) = slots[sb].grad {
                matmul(
                    MatMut::new(&mut g[gb..gb + mem.out * r], mem.out, r),
                    dym_m.t(),
                    Mat::new(&a.u, m, r),
                    scale,
                    !fresh,
                    Par::Pool,
                );
            }
            grow(du, m * r);
            matmul(
                MatMut::new(&mut du[..m * r], m, r),
                dym_m,
                Mat::new(self.slot(sb), mem.out, r),
                scale,
                false,
                Par::Pool,
            );
            if let Some(ga) = slots[sa].grad {
                matmul(
                    MatMut::new(&mut g[ga..ga + r * lin.inp], r, lin.inp),
                    Mat::new(&du[..m * r], m, r).t(),
                    Mat::new(input, m, lin.inp),
                    1.0,
                    !fresh,
                    Par::Pool,
                );
            }
            let a_mat = Mat::new(self.slot(sa), r, lin.inp);
            if a.mask.is_empty() {
                matmul(
                    MatMut::new(dx, m, lin.inp),
                    Mat::new(&du[..m * r], m, r),
                    a_mat,
                    1.0,
                    true,
                    Par::Pool,
                );
            } else {
                // Through the dropout mask: dx += (du A) ⊙ mask.
                grow(xd, n);
                matmul(
                    MatMut::new(&mut xd[..n], m, lin.inp),
                    Mat::new(&du[..m * r], m, r),
                    a_mat,
                    1.0,
                    false,
                    Par::Pool,
                );
                kernels::add_product(dx, &xd[..n], &a.mask);
            }
        }
    }
}
