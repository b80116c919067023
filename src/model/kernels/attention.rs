//! Causal multi-head attention (grouped-query, optional ALiBi) over the fused q/k/v rows, in the
//! manner of FlashAttention: the forward pass keeps only each query's log-sum-exp, and the
//! backward pass recomputes the probabilities from it, so memory is linear in the sequence
//! length. Queries go in blocks of [`QUERY_BLOCK`] rows, and a block only looks at the keys it
//! can see (causal), which skips most of the masked half of the score matrix.
//!
//! Layout: `qkv` is `[rows · seq, (heads + 2 · kv_heads) · head_dim]` with query heads first,
//! then key heads, then value heads; the output is `[rows · seq, heads · head_dim]`. Query head
//! `h` reads key/value head `h / (heads / kv_heads)`.
//!
//! On CPUs with AVX-512 the per-head products run on register tiles ([`avx512`]); elsewhere
//! they go through the general matrix product. Both follow the same algorithm; their results
//! differ in rounding, like any two kernels (the device class in the stage key holds the ISA).
//!
//! Parallel tasks are (sequence, key/value head) pairs: each writes only its own query heads'
//! output columns and, in the backward pass, its own q/k/v gradient columns of its own rows, so
//! the result does not depend on the thread count.

use rayon::prelude::*;

use super::exp;
use super::gemm::{Mat, Par, Shared, matmul_raw};
use super::multiversion;

/// Query rows per block.
pub const QUERY_BLOCK: usize = 64;

/// Shape of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub rows: usize,
    pub seq: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl Shape {
    fn width(&self) -> usize {
        (self.heads + 2 * self.kv_heads) * self.head_dim
    }

    fn out_width(&self) -> usize {
        self.heads * self.head_dim
    }

    fn q_col(&self, h: usize) -> usize {
        h * self.head_dim
    }

    fn k_col(&self, g: usize) -> usize {
        (self.heads + g) * self.head_dim
    }

    fn v_col(&self, g: usize) -> usize {
        (self.heads + self.kv_heads + g) * self.head_dim
    }

    fn scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }
}

multiversion! {
    /// Scores of a query block → probabilities, in place (`s` is `[rows, n]`, query `r` at
    /// position `i0 + r` sees keys `0..=i0 + r`); writes each row's log-sum-exp. Masked
    /// entries become `-inf` first, so every loop runs over the whole row (no scalar tails).
    fn softmax_block(s: &mut [f32], n: usize, i0: usize, slope: f32, lse: &mut [f32]) {
        for (r, (row, l)) in s.chunks_exact_mut(n).zip(lse.iter_mut()).enumerate() {
            let i = i0 + r;
            for (j, v) in row.iter_mut().enumerate() {
                let b = slope * (j as f32 - i as f32);
                *v = if j > i { f32::NEG_INFINITY } else { *v + b };
            }
            let m = super::simd::max(row);
            let sum = super::simd::exp_sub_sum(row, m);
            let inv = 1.0 / sum;
            for v in row.iter_mut() {
                *v *= inv;
            }
            *l = m + sum.ln();
        }
    }
}

multiversion! {
    /// Recomputes probabilities from scores and the saved log-sum-exp (backward pass).
    fn probs_block(s: &mut [f32], n: usize, i0: usize, slope: f32, lse: &[f32]) {
        for (r, (row, &l)) in s.chunks_exact_mut(n).zip(lse).enumerate() {
            let i = i0 + r;
            for (j, v) in row.iter_mut().enumerate() {
                let b = slope * (j as f32 - i as f32);
                let x = if j > i { f32::NEG_INFINITY } else { (*v + b) - l };
                *v = exp(x);
            }
        }
    }
}

multiversion! {
    /// `dS = P ⊙ (dP − D)` in place in `dp`, with `D[r] = dO[r] · O[r]`.
    fn dscores_block(p: &[f32], dp: &mut [f32], n: usize, d_o: &[f32], o: &[f32], hd: usize, stride: usize) {
        for (r, (prow, dprow)) in p.chunks_exact(n).zip(dp.chunks_exact_mut(n)).enumerate() {
            let d = super::simd::dot(&d_o[r * stride..r * stride + hd], &o[r * stride..r * stride + hd]);
            for (g, &pv) in dprow.iter_mut().zip(prow) {
                *g = pv * (*g - d);
            }
        }
    }
}

fn slope_of(alibi: Option<&[f32]>, h: usize) -> f32 {
    alibi.and_then(|s| s.get(h)).copied().unwrap_or(0.0)
}

/// Forward pass: writes `out` and `lse` (`[rows, heads, seq]`).
pub fn forward(sh: Shape, qkv: &[f32], alibi: Option<&[f32]>, out: &mut [f32], lse: &mut [f32]) {
    let (w, ow, t) = (sh.width(), sh.out_width(), sh.seq);
    assert!(qkv.len() >= sh.rows * t * w && out.len() >= sh.rows * t * ow);
    assert!(lse.len() >= sh.rows * sh.heads * t);
    #[cfg(target_arch = "x86_64")]
    if super::isa() == super::Isa::V4 {
        // SAFETY: the CPU has AVX-512 (`isa()` checked).
        unsafe { avx512::forward(sh, qkv, alibi, out, lse) };
        return;
    }
    forward_portable(sh, qkv, alibi, out, lse);
}

/// [`forward`] through general matrix products (any CPU).
fn forward_portable(
    sh: Shape,
    qkv: &[f32],
    alibi: Option<&[f32]>,
    out: &mut [f32],
    lse: &mut [f32],
) {
    let (w, ow, hd, t) = (sh.width(), sh.out_width(), sh.head_dim, sh.seq);
    let rep = sh.heads / sh.kv_heads.max(1);
    let out_s = Shared::new(out);
    let lse_s = Shared::new(lse);
    let scale = sh.scale();
    (0..sh.rows * sh.kv_heads).into_par_iter().for_each(|task| {
        let (b, g) = (task / sh.kv_heads, task % sh.kv_heads);
        let base = b * t;
        let mut s = vec![0f32; QUERY_BLOCK * t];
        for h in g * rep..(g + 1) * rep {
            let slope = slope_of(alibi, h);
            let mut i0 = 0;
            while i0 < t {
                let i1 = (i0 + QUERY_BLOCK).min(t);
                let (m, n) = (i1 - i0, i1);
                let q = Mat::strided(&qkv[(base + i0) * w + sh.q_col(h)..], m, hd, w);
                let k = Mat::strided(&qkv[base * w + sh.k_col(g)..], n, hd, w);
                let v = Mat::strided(&qkv[base * w + sh.v_col(g)..], n, hd, w);
                let sv = &mut s[..m * n];
                let sraw = Shared::new(sv).view(0, m, n, n);
                // SAFETY: `s` is this task's own scratch.
                unsafe { matmul_raw(sraw, q, k.t(), scale, false, Par::Single) };
                let lrow = lse_s.view((b * sh.heads + h) * t + i0, 1, m, m);
                // SAFETY: the log-sum-exp of (b, h, i0..i1) belongs to this task only.
                let l = unsafe { std::slice::from_raw_parts_mut(lrow.ptr, m) };
                softmax_block(sv, n, i0, slope, l);
                let o = out_s.view((base + i0) * ow + sh.q_col(h), m, hd, ow);
                // SAFETY: rows of sequence b, columns of head h: written by this task only.
                unsafe { matmul_raw(o, Mat::new(sv, m, n), v, 1.0, false, Par::Single) };
                i0 = i1;
            }
        }
    });
}

/// Backward pass: writes the q/k/v gradients into `dqkv` (same layout as `qkv`). `qkv`, `out`
/// and `lse` are what [`forward`] used and produced; `d_out` is the output's gradient.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    sh: Shape,
    qkv: &[f32],
    alibi: Option<&[f32]>,
    out: &[f32],
    lse: &[f32],
    d_out: &[f32],
    dqkv: &mut [f32],
) {
    let (w, ow, t) = (sh.width(), sh.out_width(), sh.seq);
    assert!(dqkv.len() >= sh.rows * t * w && d_out.len() >= sh.rows * t * ow);
    assert!(out.len() >= sh.rows * t * ow && lse.len() >= sh.rows * sh.heads * t);
    #[cfg(target_arch = "x86_64")]
    if super::isa() == super::Isa::V4 {
        // SAFETY: the CPU has AVX-512 (`isa()` checked).
        unsafe { avx512::backward(sh, qkv, alibi, out, lse, d_out, dqkv) };
        return;
    }
    backward_portable(sh, qkv, alibi, out, lse, d_out, dqkv);
}

/// [`backward`] through general matrix products (any CPU).
#[allow(clippy::too_many_arguments)]
fn backward_portable(
    sh: Shape,
    qkv: &[f32],
    alibi: Option<&[f32]>,
    out: &[f32],
    lse: &[f32],
    d_out: &[f32],
    dqkv: &mut [f32],
) {
    let (w, ow, hd, t) = (sh.width(), sh.out_width(), sh.head_dim, sh.seq);
    let rep = sh.heads / sh.kv_heads.max(1);
    let d_s = Shared::new(dqkv);
    let scale = sh.scale();
    (0..sh.rows * sh.kv_heads).into_par_iter().for_each(|task| {
        let (b, g) = (task / sh.kv_heads, task % sh.kv_heads);
        let base = b * t;
        let mut p = vec![0f32; QUERY_BLOCK * t];
        let mut dp = vec![0f32; QUERY_BLOCK * t];
        let dk = d_s.view(base * w + sh.k_col(g), t, hd, w);
        let dv = d_s.view(base * w + sh.v_col(g), t, hd, w);
        // SAFETY: the dk/dv columns of kv head g in sequence b's rows are this task's alone.
        unsafe {
            zero(dk);
            zero(dv);
        }
        for h in g * rep..(g + 1) * rep {
            let slope = slope_of(alibi, h);
            let mut i0 = 0;
            while i0 < t {
                let i1 = (i0 + QUERY_BLOCK).min(t);
                let (m, n) = (i1 - i0, i1);
                let q = Mat::strided(&qkv[(base + i0) * w + sh.q_col(h)..], m, hd, w);
                let kn = Mat::strided(&qkv[base * w + sh.k_col(g)..], n, hd, w);
                let vn = Mat::strided(&qkv[base * w + sh.v_col(g)..], n, hd, w);
                let orow = &out[(base + i0) * ow + sh.q_col(h)..];
                let dorow = &d_out[(base + i0) * ow + sh.q_col(h)..];
                let d_o = Mat::strided(dorow, m, hd, ow);
                let pv = &mut p[..m * n];
                let dpv = &mut dp[..m * n];
                // SAFETY (all raw products below): `p` and `dp` are this task's scratch; the
                // dq columns of head h and the dk/dv columns of kv head g in sequence b's rows
                // are written by this task only.
                unsafe {
                    matmul_raw(
                        Shared::new(pv).view(0, m, n, n),
                        q,
                        kn.t(),
                        scale,
                        false,
                        Par::Single,
                    );
                    matmul_raw(
                        Shared::new(dpv).view(0, m, n, n),
                        d_o,
                        vn.t(),
                        1.0,
                        false,
                        Par::Single,
                    );
                }
                let l = &lse[(b * sh.heads + h) * t + i0..(b * sh.heads + h) * t + i1];
                probs_block(pv, n, i0, slope, l);
                dscores_block(pv, dpv, n, dorow, orow, hd, ow);
                let pm = Mat::new(pv, m, n);
                let dsm = Mat::new(dpv, m, n);
                let dq = d_s.view((base + i0) * w + sh.q_col(h), m, hd, w);
                // This block contributes to keys and values 0..n.
                let (dkn, dvn) = (
                    super::gemm::RawMut { rows: n, ..dk },
                    super::gemm::RawMut { rows: n, ..dv },
                );
                unsafe {
                    matmul_raw(dq, dsm, kn, scale, false, Par::Single);
                    matmul_raw(dkn, dsm.t(), q, scale, true, Par::Single);
                    matmul_raw(dvn, pm.t(), d_o, 1.0, true, Par::Single);
                }
                i0 = i1;
            }
        }
    });
}

/// Zeroes every element of a raw view.
///
/// # Safety
/// As for [`matmul_raw`]: the view's elements are the caller's alone.
unsafe fn zero(v: super::gemm::RawMut) {
    for i in 0..v.rows {
        for j in 0..v.cols {
            // SAFETY: (i, j) is inside the view.
            unsafe { *v.ptr.add(i * v.rs + j * v.cs) = 0.0 };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512;

#[cfg(test)]
mod tests;
