//! SwiGLU, `h = silu(g) ⊙ u` over rows holding `[g | u]` (the fused gate/up product), and its
//! backward: `dg = dh ⊙ u ⊙ σ(g)(1 + g(1 − σ(g)))`, `du = dh ⊙ silu(g)`.

use rayon::prelude::*;

use super::{ROW_PIECE, exp, multiversion};

multiversion! {
    fn forward_rows(gu: &[f32], h: &mut [f32], inter: usize) {
        for (row, out) in gu.chunks_exact(2 * inter).zip(h.chunks_exact_mut(inter)) {
            let (g, u) = row.split_at(inter);
            for ((o, &a), &b) in out.iter_mut().zip(g).zip(u) {
                let s = 1.0 / (1.0 + exp(-a));
                *o = (a * s) * b;
            }
        }
    }
}

/// `h = silu(g) ⊙ u` for rows `[g | u]` of `2 · inter`.
pub fn forward(gu: &[f32], h: &mut [f32], inter: usize) {
    if inter == 0 {
        return;
    }
    h.par_chunks_mut(ROW_PIECE * inter)
        .zip(gu.par_chunks(ROW_PIECE * 2 * inter))
        .for_each(|(h, gu)| forward_rows(gu, h, inter));
}

multiversion! {
    fn backward_rows(dh: &[f32], gu: &[f32], dgu: &mut [f32], inter: usize) {
        for ((d, row), out) in dh
            .chunks_exact(inter)
            .zip(gu.chunks_exact(2 * inter))
            .zip(dgu.chunks_exact_mut(2 * inter))
        {
            let (g, u) = row.split_at(inter);
            let (dg, du) = out.split_at_mut(inter);
            for i in 0..inter {
                let a = g[i];
                let s = 1.0 / (1.0 + exp(-a));
                let silu = a * s;
                dg[i] = (d[i] * u[i]) * (s * (1.0 + a * (1.0 - s)));
                du[i] = d[i] * silu;
            }
        }
    }
}

/// Backward of [`forward`]: `dgu` (rows of `2 · inter`) from `dh` and the saved `[g | u]`.
pub fn backward(dh: &[f32], gu: &[f32], dgu: &mut [f32], inter: usize) {
    if inter == 0 {
        return;
    }
    dgu.par_chunks_mut(ROW_PIECE * 2 * inter)
        .zip(dh.par_chunks(ROW_PIECE * inter))
        .zip(gu.par_chunks(ROW_PIECE * 2 * inter))
        .for_each(|((dgu, dh), gu)| backward_rows(dh, gu, dgu, inter));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradients_match_finite_differences() {
        let (rows, inter) = (19, 6);
        let gu: Vec<f32> = (0..rows * 2 * inter)
            .map(|i| ((i * 37) % 23) as f32 / 4.0 - 2.5)
            .collect();
        let dh: Vec<f32> = (0..rows * inter)
            .map(|i| ((i * 11) % 7) as f32 - 3.0)
            .collect();
        let mut dgu = vec![0f32; gu.len()];
        backward(&dh, &gu, &mut dgu, inter);
        let loss = |gu: &[f32]| -> f64 {
            let mut h = vec![0f32; rows * inter];
            forward(gu, &mut h, inter);
            h.iter()
                .zip(&dh)
                .map(|(a, b)| (*a as f64) * (*b as f64))
                .sum()
        };
        for i in (0..gu.len()).step_by(7) {
            let mut a = gu.clone();
            a[i] += 1e-2;
            let mut b = gu.clone();
            b[i] -= 1e-2;
            let num = (loss(&a) - loss(&b)) / 2e-2;
            assert!(
                (num - dgu[i] as f64).abs() < 2e-2 * (1.0 + num.abs()),
                "{i}: {num} vs {}",
                dgu[i]
            );
        }
    }
}
