//! AdamW in one pass over a parameter, its gradient and both moments (PyTorch's order:
//! decoupled decay, then the Adam step), with the gradient-clipping factor folded in.

use rayon::prelude::*;

use super::multiversion;

/// One update's constants.
#[derive(Debug, Clone, Copy)]
pub struct Hyper {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// `lr · weight_decay`, 0 for parameters that do not decay.
    pub decay: f32,
    /// `1 / (1 − β₁ᵗ)` and `1 / (1 − β₂ᵗ)`.
    pub inv_bc1: f32,
    pub inv_bc2: f32,
    /// Gradient multiplier from clipping (1 when the norm is within bounds).
    pub clip: f32,
}

multiversion! {
    fn update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], hy: Hyper) {
        let (b1, b2) = (hy.beta1, hy.beta2);
        let (c1, c2) = (1.0 - b1, 1.0 - b2);
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            let g = if hy.clip != 1.0 { g * hy.clip } else { g };
            let mn = b1 * *m + c1 * g;
            let vn = b2 * *v + c2 * (g * g);
            *m = mn;
            *v = vn;
            let mut x = *p;
            if hy.decay != 0.0 {
                x *= 1.0 - hy.decay;
            }
            let denom = (vn * hy.inv_bc2).sqrt() + hy.eps;
            *p = x - hy.lr * ((mn * hy.inv_bc1) / denom);
        }
    }
}

/// Updates `p`, `m` and `v` in place from `g`, in fixed chunks (thread-count independent: every
/// element's update involves that element only).
pub fn step(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], hy: Hyper) {
    const CHUNK: usize = 1 << 13;
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .for_each(|(((p, g), m), v)| update(p, g, m, v, hy));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_textbook_update() {
        let hy = Hyper {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            decay: 0.05,
            inv_bc1: 1.0 / (1.0 - 0.9),
            inv_bc2: 1.0 / (1.0 - 0.999),
            clip: 1.0,
        };
        let mut p = vec![1.0f32, -2.0];
        let g = vec![0.5f32, -0.25];
        let mut m = vec![0f32; 2];
        let mut v = vec![0f32; 2];
        step(&mut p, &g, &mut m, &mut v, hy);
        // First step: m̂ = g, v̂ = g², so the Adam step is lr · g/(|g| + eps).
        let want = [1.0 * 0.95 - 0.1, -2.0 * 0.95 + 0.1];
        for (a, b) in p.iter().zip(want) {
            assert!((*a as f64 - b).abs() < 1e-6, "{p:?}");
        }
        assert!((m[0] - 0.05).abs() < 1e-7 && (v[1] - 0.001 * 0.0625).abs() < 1e-9);
    }
}
