//! The attention kernels with AVX-512 register tiles, for CPUs that have it. Same algorithm,
//! layout and parallel split as the portable path in the parent module, but the per-head
//! products (a few dozen rows by a few dozen columns each) run on register-blocked loops over
//! packed, zero-padded copies of one head's q, k, v, instead of general matrix products whose
//! packing and dispatch cost as much as the arithmetic at these sizes.
//!
//! Per (sequence, key/value head) task: K is packed transposed (`[head_dim, keys]`) for the
//! score tiles, V row by row for the output tiles; queries go in tiles of [`TQ`] rows, each
//! scoring only the key tiles it can see.

// Register tiles are indexed by row: index loops read clearer than zipped iterators here.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::{Shape, probs_block, slope_of, softmax_block};
use crate::model::kernels::gemm::Shared;

/// Query rows per tile.
const TQ: usize = 8;
/// Keys per score tile (two vectors).
const TK: usize = 32;

fn round_up(x: usize, m: usize) -> usize {
    x.div_ceil(m) * m
}

/// Copies `rows` rows of `cols` values (row stride `stride` in `src`) into `dst` as
/// `[rows_pad, cols_pad]`, zero-padded.
fn pack_rows(
    src: &[f32],
    stride: usize,
    rows: usize,
    cols: usize,
    dst: &mut Vec<f32>,
    rows_pad: usize,
    cols_pad: usize,
) {
    dst.clear();
    dst.resize(rows_pad * cols_pad, 0.0);
    for (d, s) in dst
        .chunks_exact_mut(cols_pad)
        .zip(src.chunks(stride))
        .take(rows)
    {
        for (a, b) in d[..cols].iter_mut().zip(&s[..cols]) {
            *a = *b;
        }
    }
}

/// Packs `rows` rows of `cols` values as the transpose `[cols, rows_pad]`, zero-padded, in
/// blocks of 16 rows so reads and writes both stay within a few cache lines.
fn pack_t(
    src: &[f32],
    stride: usize,
    rows: usize,
    cols: usize,
    dst: &mut Vec<f32>,
    rows_pad: usize,
) {
    dst.clear();
    dst.resize(cols * rows_pad, 0.0);
    for r0 in (0..rows).step_by(16) {
        let nr = 16.min(rows - r0);
        let mut block = [[0f32; 16]; 64];
        for c0 in (0..cols).step_by(64) {
            let nc = 64.min(cols - c0);
            for r in 0..nr {
                let row = &src[(r0 + r) * stride + c0..(r0 + r) * stride + c0 + nc];
                for (c, v) in row.iter().enumerate() {
                    block[c][r] = *v;
                }
            }
            for (c, b) in block.iter().enumerate().take(nc) {
                dst[(c0 + c) * rows_pad + r0..(c0 + c) * rows_pad + r0 + nr]
                    .copy_from_slice(&b[..nr]);
            }
        }
    }
}

/// `s[TQ, n] = scale · a[TQ, k] · bt[k, n]` where `a` rows are `lda` apart and `bt` rows
/// `ldb` apart; `n` is a multiple of [`TK`].
///
/// # Safety
/// AVX-512F must be available; the slices must hold the addressed elements (checked).
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn scores(
    a: &[f32],
    lda: usize,
    k: usize,
    bt: &[f32],
    ldb: usize,
    n: usize,
    s: &mut [f32],
    scale: f32,
) {
    assert!(a.len() >= (TQ - 1) * lda + k && s.len() >= TQ * n);
    assert!(n.is_multiple_of(TK) && (k == 0 || bt.len() >= (k - 1) * ldb + n));
    let sc = _mm512_set1_ps(scale);
    let (ap, bp, sp) = (a.as_ptr(), bt.as_ptr(), s.as_mut_ptr());
    for j0 in (0..n).step_by(TK) {
        let mut c0 = [_mm512_setzero_ps(); TQ];
        let mut c1 = [_mm512_setzero_ps(); TQ];
        for p in 0..k {
            // SAFETY: p < k and j0 + 32 <= n, inside `bt` (asserted); r < TQ, p < k inside `a`.
            unsafe {
                let b0 = _mm512_loadu_ps(bp.add(p * ldb + j0));
                let b1 = _mm512_loadu_ps(bp.add(p * ldb + j0 + 16));
                for r in 0..TQ {
                    let av = _mm512_set1_ps(*ap.add(r * lda + p));
                    c0[r] = _mm512_fmadd_ps(av, b0, c0[r]);
                    c1[r] = _mm512_fmadd_ps(av, b1, c1[r]);
                }
            }
        }
        for r in 0..TQ {
            // SAFETY: r < TQ, j0 + 32 <= n: inside `s` (asserted).
            unsafe {
                _mm512_storeu_ps(sp.add(r * n + j0), _mm512_mul_ps(c0[r], sc));
                _mm512_storeu_ps(sp.add(r * n + j0 + 16), _mm512_mul_ps(c1[r], sc));
            }
        }
    }
}

/// `o[TQ, dp] = p[TQ, n] · v[n, dp]` (`v` rows `dp` apart, `dp` a multiple of 16).
///
/// # Safety
/// AVX-512F must be available.
#[target_feature(enable = "avx512f")]
unsafe fn times_rows(p: &[f32], n: usize, v: &[f32], dp: usize, o: &mut [f32]) {
    assert!(p.len() >= TQ * n && v.len() >= n * dp && o.len() >= TQ * dp && dp.is_multiple_of(16));
    let (pp, vp, op) = (p.as_ptr(), v.as_ptr(), o.as_mut_ptr());
    let mut d0 = 0;
    while d0 < dp {
        if dp - d0 >= 32 {
            let mut c0 = [_mm512_setzero_ps(); TQ];
            let mut c1 = [_mm512_setzero_ps(); TQ];
            for j in 0..n {
                // SAFETY: j < n, d0 + 32 <= dp, r < TQ: inside the asserted lengths.
                unsafe {
                    let v0 = _mm512_loadu_ps(vp.add(j * dp + d0));
                    let v1 = _mm512_loadu_ps(vp.add(j * dp + d0 + 16));
                    for r in 0..TQ {
                        let pv = _mm512_set1_ps(*pp.add(r * n + j));
                        c0[r] = _mm512_fmadd_ps(pv, v0, c0[r]);
                        c1[r] = _mm512_fmadd_ps(pv, v1, c1[r]);
                    }
                }
            }
            for r in 0..TQ {
                // SAFETY: as above.
                unsafe {
                    _mm512_storeu_ps(op.add(r * dp + d0), c0[r]);
                    _mm512_storeu_ps(op.add(r * dp + d0 + 16), c1[r]);
                }
            }
            d0 += 32;
        } else {
            let mut c0 = [_mm512_setzero_ps(); TQ];
            for j in 0..n {
                // SAFETY: as above, one vector.
                unsafe {
                    let v0 = _mm512_loadu_ps(vp.add(j * dp + d0));
                    for r in 0..TQ {
                        let pv = _mm512_set1_ps(*pp.add(r * n + j));
                        c0[r] = _mm512_fmadd_ps(pv, v0, c0[r]);
                    }
                }
            }
            for r in 0..TQ {
                // SAFETY: as above.
                unsafe { _mm512_storeu_ps(op.add(r * dp + d0), c0[r]) };
            }
            d0 += 16;
        }
    }
}

/// `acc[n, dp] += w[TQ, n]ᵀ · x[TQ, dp]` (the key/value gradient update of one query tile).
///
/// # Safety
/// AVX-512F must be available.
#[target_feature(enable = "avx512f")]
unsafe fn add_t_times(w: &[f32], n: usize, x: &[f32], dp: usize, acc: &mut [f32]) {
    assert!(
        w.len() >= TQ * n && x.len() >= TQ * dp && acc.len() >= n * dp && dp.is_multiple_of(16)
    );
    let (wp, xp, ap) = (w.as_ptr(), x.as_ptr(), acc.as_mut_ptr());
    let mut d0 = 0;
    while d0 < dp {
        let two = dp - d0 >= 32;
        let mut x0 = [_mm512_setzero_ps(); TQ];
        let mut x1 = [_mm512_setzero_ps(); TQ];
        for r in 0..TQ {
            // SAFETY: r < TQ, d0 + 16 (or 32) <= dp: inside `x`.
            unsafe {
                x0[r] = _mm512_loadu_ps(xp.add(r * dp + d0));
                if two {
                    x1[r] = _mm512_loadu_ps(xp.add(r * dp + d0 + 16));
                }
            }
        }
        for j in 0..n {
            // SAFETY: j < n, r < TQ, columns as above: inside `w` and `acc`.
            unsafe {
                let mut a0 = _mm512_loadu_ps(ap.add(j * dp + d0));
                let mut a1 = if two {
                    _mm512_loadu_ps(ap.add(j * dp + d0 + 16))
                } else {
                    _mm512_setzero_ps()
                };
                for r in 0..TQ {
                    let wv = _mm512_set1_ps(*wp.add(r * n + j));
                    a0 = _mm512_fmadd_ps(wv, x0[r], a0);
                    if two {
                        a1 = _mm512_fmadd_ps(wv, x1[r], a1);
                    }
                }
                _mm512_storeu_ps(ap.add(j * dp + d0), a0);
                if two {
                    _mm512_storeu_ps(ap.add(j * dp + d0 + 16), a1);
                }
            }
        }
        d0 += if two { 32 } else { 16 };
    }
}

/// Keys a query tile starting at `i0` must score: up to its last row, rounded to [`TK`].
fn keys_for(i0: usize, tp: usize) -> usize {
    round_up(i0 + TQ, TK).min(tp)
}

/// Scratch buffers of one task.
#[derive(Default)]
struct Buf {
    q: Vec<f32>,
    kt: Vec<f32>,
    vt: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    d_o: Vec<f32>,
    o: Vec<f32>,
    s: Vec<f32>,
    dp: Vec<f32>,
    tile: Vec<f32>,
    dk: Vec<f32>,
    dv: Vec<f32>,
}

/// The AVX-512 forward pass; see [`super::forward`].
///
/// # Safety
/// The CPU must support AVX-512F.
pub unsafe fn forward(
    sh: Shape,
    qkv: &[f32],
    alibi: Option<&[f32]>,
    out: &mut [f32],
    lse: &mut [f32],
) {
    use rayon::prelude::*;
    let (w, ow, hd, t) = (sh.width(), sh.out_width(), sh.head_dim, sh.seq);
    let rep = sh.heads / sh.kv_heads.max(1);
    let (tp, dp, tq) = (round_up(t, TK), round_up(hd, 16), round_up(t, TQ));
    let out_s = Shared::new(out);
    let lse_s = Shared::new(lse);
    let scale = sh.scale();
    (0..sh.rows * sh.kv_heads).into_par_iter().for_each(|task| {
        let (b, g) = (task / sh.kv_heads, task % sh.kv_heads);
        let base = b * t;
        let mut bf = Buf::default();
        pack_t(&qkv[base * w + sh.k_col(g)..], w, t, hd, &mut bf.kt, tp);
        pack_rows(&qkv[base * w + sh.v_col(g)..], w, t, hd, &mut bf.v, tp, dp);
        bf.s.resize(TQ * tp, 0.0);
        bf.tile.resize(TQ * dp, 0.0);
        for h in g * rep..(g + 1) * rep {
            let slope = slope_of(alibi, h);
            pack_rows(&qkv[base * w + sh.q_col(h)..], w, t, hd, &mut bf.q, tq, hd);
            let lrow = lse_s.view((b * sh.heads + h) * t, 1, t, t);
            // SAFETY: the log-sum-exps of (b, h) belong to this task only.
            let l = unsafe { std::slice::from_raw_parts_mut(lrow.ptr, t) };
            for i0 in (0..t).step_by(TQ) {
                let n = keys_for(i0, tp);
                let s = &mut bf.s[..TQ * n];
                // SAFETY: AVX-512F (caller's contract).
                unsafe { scores(&bf.q[i0 * hd..], hd, hd, &bf.kt, tp, n, s, scale) };
                let mut tile_lse = [0f32; TQ];
                softmax_block(s, n, i0, slope, &mut tile_lse);
                let rows = TQ.min(t - i0);
                l[i0..i0 + rows].copy_from_slice(&tile_lse[..rows]);
                // SAFETY: AVX-512F.
                unsafe { times_rows(s, n, &bf.v, dp, &mut bf.tile) };
                for r in 0..rows {
                    let o = out_s.view((base + i0 + r) * ow + sh.q_col(h), 1, hd, hd);
                    // SAFETY: row i0 + r of sequence b, head h's columns: this task's alone.
                    let o = unsafe { std::slice::from_raw_parts_mut(o.ptr, hd) };
                    o.copy_from_slice(&bf.tile[r * dp..r * dp + hd]);
                }
            }
        }
    });
}

/// The AVX-512 backward pass; see [`super::backward`].
///
/// # Safety
/// The CPU must support AVX-512F.
#[allow(clippy::too_many_arguments)]
pub unsafe fn backward(
    sh: Shape,
    qkv: &[f32],
    alibi: Option<&[f32]>,
    out: &[f32],
    lse: &[f32],
    d_out: &[f32],
    dqkv: &mut [f32],
) {
    use rayon::prelude::*;
    let (w, ow, hd, t) = (sh.width(), sh.out_width(), sh.head_dim, sh.seq);
    let rep = sh.heads / sh.kv_heads.max(1);
    let (tp, dp, tq) = (round_up(t, TK), round_up(hd, 16), round_up(t, TQ));
    let d_s = Shared::new(dqkv);
    let scale = sh.scale();
    (0..sh.rows * sh.kv_heads).into_par_iter().for_each(|task| {
        let (b, g) = (task / sh.kv_heads, task % sh.kv_heads);
        let base = b * t;
        let mut bf = Buf::default();
        let kb = &qkv[base * w + sh.k_col(g)..];
        let vb = &qkv[base * w + sh.v_col(g)..];
        pack_t(kb, w, t, hd, &mut bf.kt, tp);
        pack_t(vb, w, t, hd, &mut bf.vt, tp);
        pack_rows(kb, w, t, hd, &mut bf.k, tp, dp);
        bf.dk.clear();
        bf.dk.resize(tp * dp, 0.0);
        bf.dv.clear();
        bf.dv.resize(tp * dp, 0.0);
        bf.s.resize(TQ * tp, 0.0);
        bf.dp.resize(TQ * tp, 0.0);
        bf.tile.resize(TQ * dp, 0.0);
        for h in g * rep..(g + 1) * rep {
            let slope = slope_of(alibi, h);
            pack_rows(&qkv[base * w + sh.q_col(h)..], w, t, hd, &mut bf.q, tq, dp);
            pack_rows(
                &d_out[base * ow + sh.q_col(h)..],
                ow,
                t,
                hd,
                &mut bf.d_o,
                tq,
                dp,
            );
            pack_rows(
                &out[base * ow + sh.q_col(h)..],
                ow,
                t,
                hd,
                &mut bf.o,
                tq,
                dp,
            );
            let l = &lse[(b * sh.heads + h) * t..(b * sh.heads + h) * t + t];
            for i0 in (0..t).step_by(TQ) {
                let n = keys_for(i0, tp);
                let rows = TQ.min(t - i0);
                let s = &mut bf.s[..TQ * n];
                let dpm = &mut bf.dp[..TQ * n];
                // SAFETY (all kernel calls below): AVX-512F (caller's contract).
                unsafe {
                    scores(&bf.q[i0 * dp..], dp, hd, &bf.kt, tp, n, s, scale);
                    scores(&bf.d_o[i0 * dp..], dp, hd, &bf.vt, tp, n, dpm, 1.0);
                }
                let mut tile_lse = [0f32; TQ];
                tile_lse[..rows].copy_from_slice(&l[i0..i0 + rows]);
                probs_block(s, n, i0, slope, &tile_lse);
                // Padding rows (past the sequence) contribute nothing.
                s[rows * n..].fill(0.0);
                super::dscores_block(s, dpm, n, &bf.d_o[i0 * dp..], &bf.o[i0 * dp..], dp, dp);
                unsafe {
                    times_rows(dpm, n, &bf.k, dp, &mut bf.tile);
                }
                for r in 0..rows {
                    let dq = d_s.view((base + i0 + r) * w + sh.q_col(h), 1, hd, hd);
                    // SAFETY: dq of row i0 + r of sequence b, head h: this task's alone.
                    let dq = unsafe { std::slice::from_raw_parts_mut(dq.ptr, hd) };
                    for (d, v) in dq.iter_mut().zip(&bf.tile[r * dp..r * dp + hd]) {
                        *d = v * scale;
                    }
                }
                unsafe {
                    add_t_times(dpm, n, &bf.q[i0 * dp..], dp, &mut bf.dk);
                    add_t_times(s, n, &bf.d_o[i0 * dp..], dp, &mut bf.dv);
                }
            }
        }
        for j in 0..t {
            let dk = d_s.view((base + j) * w + sh.k_col(g), 1, hd, hd);
            let dv = d_s.view((base + j) * w + sh.v_col(g), 1, hd, hd);
            // SAFETY: the dk/dv columns of kv head g in sequence b's rows: this task's alone.
            let (dk, dv) = unsafe {
                (
                    std::slice::from_raw_parts_mut(dk.ptr, hd),
                    std::slice::from_raw_parts_mut(dv.ptr, hd),
                )
            };
            for (d, v) in dk.iter_mut().zip(&bf.dk[j * dp..j * dp + hd]) {
                *d = v * scale;
            }
            dv.copy_from_slice(&bf.dv[j * dp..j * dp + hd]);
        }
    });
}
