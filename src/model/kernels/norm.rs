//! RMSNorm, `y = x · r · w` with `r = 1/√(mean(x²) + ε)` per row, and its backward:
//! `dx = r · (g − x̂ · mean(g ⊙ x̂))` with `g = dy ⊙ w`, `x̂ = x · r`, and `dw = Σ_rows dy ⊙ x̂`.

use rayon::prelude::*;

use super::{ROW_PIECE, multiversion, reduce_partials, simd};

multiversion! {
    fn forward_rows(x: &[f32], w: &[f32], eps: f32, y: &mut [f32], inv: &mut [f32]) {
        let h = w.len();
        for ((xr, yr), r) in x.chunks_exact(h).zip(y.chunks_exact_mut(h)).zip(inv.iter_mut()) {
            let ms = simd::dot(xr, xr) / h as f32;
            let s = 1.0 / (ms + eps).sqrt();
            *r = s;
            for ((o, a), b) in yr.iter_mut().zip(xr).zip(w) {
                *o = (a * s) * b;
            }
        }
    }
}

/// `y = rmsnorm(x) · w` for rows of `w.len()`; `inv` receives each row's `r`.
pub fn forward(x: &[f32], w: &[f32], eps: f32, y: &mut [f32], inv: &mut [f32]) {
    let h = w.len();
    y.par_chunks_mut(ROW_PIECE * h)
        .zip(x.par_chunks(ROW_PIECE * h))
        .zip(inv.par_chunks_mut(ROW_PIECE))
        .for_each(|((y, x), inv)| forward_rows(x, w, eps, y, inv));
}

multiversion! {
    fn add_forward_rows(x: &mut [f32], res: &[f32], w: &[f32], eps: f32, y: &mut [f32], inv: &mut [f32]) {
        let h = w.len();
        for (((xr, rr), yr), r) in x
            .chunks_exact_mut(h)
            .zip(res.chunks_exact(h))
            .zip(y.chunks_exact_mut(h))
            .zip(inv.iter_mut())
        {
            for (a, b) in xr.iter_mut().zip(rr) {
                *a += *b;
            }
            let ms = simd::dot(xr, xr) / h as f32;
            let s = 1.0 / (ms + eps).sqrt();
            *r = s;
            for ((o, a), b) in yr.iter_mut().zip(xr.iter()).zip(w) {
                *o = (a * s) * b;
            }
        }
    }
}

/// The residual add fused with the next norm: `x += res`, then [`forward`] of the sum.
pub fn add_forward(
    x: &mut [f32],
    res: &[f32],
    w: &[f32],
    eps: f32,
    y: &mut [f32],
    inv: &mut [f32],
) {
    let h = w.len();
    if h == 0 {
        return;
    }
    x.par_chunks_mut(ROW_PIECE * h)
        .zip(res.par_chunks(ROW_PIECE * h))
        .zip(y.par_chunks_mut(ROW_PIECE * h))
        .zip(inv.par_chunks_mut(ROW_PIECE))
        .for_each(|(((x, r), y), inv)| add_forward_rows(x, r, w, eps, y, inv));
}

multiversion! {
    fn backward_rows(
        dy: &[f32],
        x: &[f32],
        inv: &[f32],
        w: &[f32],
        dx: &mut [f32],
        accumulate: bool,
        dw: &mut [f32],
        want_dw: bool,
    ) {
        let h = w.len();
        for (((dyr, xr), &r), dxr) in dy
            .chunks_exact(h)
            .zip(x.chunks_exact(h))
            .zip(inv)
            .zip(dx.chunks_exact_mut(h))
        {
            // mean(g ⊙ x̂) = r · Σ(dy ⊙ w ⊙ x) / h
            let mut acc = [0f32; 16];
            let mut cd = dyr.chunks_exact(16);
            let mut cx = xr.chunks_exact(16);
            let mut cw = w.chunks_exact(16);
            for ((a, b), c) in (&mut cd).zip(&mut cx).zip(&mut cw) {
                for i in 0..16 {
                    acc[i] += (a[i] * c[i]) * b[i];
                }
            }
            let mut s = super::fold(acc);
            for ((a, b), c) in cd.remainder().iter().zip(cx.remainder()).zip(cw.remainder()) {
                s += (a * c) * b;
            }
            let c = (s * r) / h as f32;
            if accumulate {
                for (((o, a), b), ww) in dxr.iter_mut().zip(dyr).zip(xr).zip(w) {
                    *o += r * ((a * ww) - (b * r) * c);
                }
            } else {
                for (((o, a), b), ww) in dxr.iter_mut().zip(dyr).zip(xr).zip(w) {
                    *o = r * ((a * ww) - (b * r) * c);
                }
            }
            if want_dw {
                for ((o, a), b) in dw.iter_mut().zip(dyr).zip(xr) {
                    *o += a * (b * r);
                }
            }
        }
    }
}

/// Backward of [`forward`]: writes (or, with `accumulate`, adds) `dx`; when `dw` is given,
/// writes or adds the weight gradient there (`dw_accumulate`).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    dy: &[f32],
    x: &[f32],
    inv: &[f32],
    w: &[f32],
    dx: &mut [f32],
    accumulate: bool,
    dw: Option<&mut [f32]>,
    dw_accumulate: bool,
) {
    let h = w.len();
    if h == 0 {
        return;
    }
    let piece = ROW_PIECE * h;
    let pieces = dy.len().div_ceil(piece);
    let want = dw.is_some();
    // One partial weight gradient per piece (a 1-element dummy when none is wanted).
    let width = if want { h } else { 1 };
    let mut partials = vec![0f32; pieces * width];
    dx.par_chunks_mut(piece)
        .zip(partials.par_chunks_mut(width))
        .enumerate()
        .for_each(|(i, (dx, p))| {
            let rows = dx.len() / h;
            let at = i * piece;
            let r0 = i * ROW_PIECE;
            backward_rows(
                &dy[at..at + rows * h],
                &x[at..at + rows * h],
                &inv[r0..r0 + rows],
                w,
                dx,
                accumulate,
                p,
                want,
            )
        });
    if let Some(dw) = dw {
        reduce_partials(&partials, h, dw, dw_accumulate);
    }
}

multiversion! {
    fn head_rows(w: &[f32], h: usize, out: &mut [f32], norms: &mut [f32]) {
        for ((row, o), n) in w.chunks_exact(h).zip(out.chunks_exact_mut(h)).zip(norms.iter_mut()) {
            let d = simd::dot(row, row).sqrt() + 1e-12;
            *n = d;
            for (a, b) in o.iter_mut().zip(row) {
                *a = b / d;
            }
        }
    }
}

/// Baichuan2's NormHead: each row of the head weight `[vocab, h]` divided by its L2 norm
/// (+1e-12). `norms` receives the divisors.
pub fn head_normalize(w: &[f32], h: usize, out: &mut [f32], norms: &mut [f32]) {
    if h == 0 {
        return;
    }
    out.par_chunks_mut(ROW_PIECE * h)
        .zip(w.par_chunks(ROW_PIECE * h))
        .zip(norms.par_chunks_mut(ROW_PIECE))
        .for_each(|((o, w), n)| head_rows(w, h, o, n));
}

multiversion! {
    fn head_back_rows(g: &[f32], wn: &[f32], norms: &[f32], h: usize, dst: &mut [f32], accumulate: bool) {
        for (((gr, wr), &n), d) in g
            .chunks_exact(h)
            .zip(wn.chunks_exact(h))
            .zip(norms)
            .zip(dst.chunks_exact_mut(h))
        {
            let c = simd::dot(gr, wr);
            let inv = 1.0 / n;
            if accumulate {
                for ((o, a), b) in d.iter_mut().zip(gr).zip(wr) {
                    *o += (a - b * c) * inv;
                }
            } else {
                for ((o, a), b) in d.iter_mut().zip(gr).zip(wr) {
                    *o = (a - b * c) * inv;
                }
            }
        }
    }
}

/// Backward of [`head_normalize`]: from the gradient `g` of the normalised weight `wn`, the
/// gradient of the raw weight, `(g − wn · (g · wn)) / norm` per row, written or added to `dst`.
pub fn head_normalize_backward(
    g: &[f32],
    wn: &[f32],
    norms: &[f32],
    h: usize,
    dst: &mut [f32],
    accumulate: bool,
) {
    if h == 0 {
        return;
    }
    dst.par_chunks_mut(ROW_PIECE * h)
        .zip(g.par_chunks(ROW_PIECE * h))
        .zip(wn.par_chunks(ROW_PIECE * h))
        .zip(norms.par_chunks(ROW_PIECE))
        .for_each(|(((d, g), wn), n)| head_back_rows(g, wn, n, h, d, accumulate));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    fn loss(x: &[f32], w: &[f32], up: &[f32]) -> f64 {
        let h = w.len();
        let mut y = vec![0f32; x.len()];
        let mut inv = vec![0f32; x.len() / h];
        forward(x, w, 1e-5, &mut y, &mut inv);
        y.iter()
            .zip(up)
            .map(|(a, b)| (*a as f64) * (*b as f64))
            .sum()
    }

    #[test]
    fn gradients_match_finite_differences() {
        let (rows, h) = (37, 24);
        let x = data(rows * h, 1);
        let w: Vec<f32> = data(h, 2).iter().map(|v| 1.0 + v * 0.5).collect();
        let up = data(rows * h, 3);
        let mut y = vec![0f32; rows * h];
        let mut inv = vec![0f32; rows];
        forward(&x, &w, 1e-5, &mut y, &mut inv);
        let mut dx = vec![0f32; rows * h];
        let mut dw = vec![0f32; h];
        backward(&up, &x, &inv, &w, &mut dx, false, Some(&mut dw), false);
        let eps = 1e-2f32;
        for &i in &[0usize, 5, 100, rows * h - 1] {
            let mut a = x.clone();
            a[i] += eps;
            let mut b = x.clone();
            b[i] -= eps;
            let num = (loss(&a, &w, &up) - loss(&b, &w, &up)) / (2.0 * eps as f64);
            assert!(
                (num - dx[i] as f64).abs() < 2e-3,
                "dx[{i}]: {num} vs {}",
                dx[i]
            );
        }
        for i in [0usize, 7, h - 1] {
            let mut a = w.clone();
            a[i] += eps;
            let mut b = w.clone();
            b[i] -= eps;
            let num = (loss(&x, &a, &up) - loss(&x, &b, &up)) / (2.0 * eps as f64);
            assert!(
                (num - dw[i] as f64).abs() < 2e-3,
                "dw[{i}]: {num} vs {}",
                dw[i]
            );
        }
        // Accumulating adds exactly the same amounts.
        let mut dx2 = vec![1f32; rows * h];
        backward(&up, &x, &inv, &w, &mut dx2, true, None, false);
        for (a, b) in dx2.iter().zip(&dx) {
            assert_eq!(*a, 1.0 + b);
        }
    }
}
