//! Rotary position embedding, rotate-half layout (Hugging Face Llama): for each head the first
//! and second halves `(x₁, x₂)` become `(x₁ cos − x₂ sin, x₂ cos + x₁ sin)`. The backward pass
//! is the inverse rotation. Applied in place to the query and key columns of the fused q/k/v
//! rows.

use super::{multiversion, par_rows};

/// Rotation tables `[positions, head_dim / 2]`.
#[derive(Debug, Clone)]
pub struct Tables {
    pub half: usize,
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
}

impl Tables {
    /// Angles `t · θ^(−2k/d)`, computed in f64 (as the composite model and Hugging Face do).
    pub fn new(positions: usize, head_dim: usize, theta: f64) -> Tables {
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(positions * half);
        let mut sin = Vec::with_capacity(positions * half);
        for t in 0..positions {
            for k in 0..half {
                let a = t as f64 * theta.powf(-(2.0 * k as f64) / head_dim as f64);
                cos.push(a.cos() as f32);
                sin.push(a.sin() as f32);
            }
        }
        Tables { half, cos, sin }
    }
}

multiversion! {
    fn rotate_rows(
        rows: &mut [f32],
        first_row: usize,
        width: usize,
        seq_len: usize,
        heads: usize,
        cos: &[f32],
        sin: &[f32],
        half: usize,
        inverse: bool,
    ) {
        let hd = 2 * half;
        for (i, row) in rows.chunks_exact_mut(width).enumerate() {
            let pos = (first_row + i) % seq_len;
            let c = &cos[pos * half..pos * half + half];
            let s = &sin[pos * half..pos * half + half];
            for head in row[..heads * hd].chunks_exact_mut(hd) {
                let (x1, x2) = head.split_at_mut(half);
                if inverse {
                    for k in 0..half {
                        let (a, b) = (x1[k], x2[k]);
                        x1[k] = a * c[k] + b * s[k];
                        x2[k] = b * c[k] - a * s[k];
                    }
                } else {
                    for k in 0..half {
                        let (a, b) = (x1[k], x2[k]);
                        x1[k] = a * c[k] - b * s[k];
                        x2[k] = b * c[k] + a * s[k];
                    }
                }
            }
        }
    }
}

/// Rotates the first `heads` heads of every row of `buf` (rows of `width`; row `r` is at
/// position `r % seq_len`). `inverse` applies the backward pass.
pub fn apply(
    buf: &mut [f32],
    width: usize,
    seq_len: usize,
    heads: usize,
    t: &Tables,
    inverse: bool,
) {
    par_rows(buf, width, |first, rows| {
        rotate_rows(
            rows, first, width, seq_len, heads, &t.cos, &t.sin, t.half, inverse,
        )
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_undoes_forward_and_position_zero_is_identity() {
        let (hd, heads, extra, seq) = (8, 3, 5, 6);
        let width = heads * hd + extra;
        let t = Tables::new(16, hd, 10000.0);
        let x: Vec<f32> = (0..width * 2 * seq)
            .map(|i| (i as f32 * 0.37).sin())
            .collect();
        let mut y = x.clone();
        apply(&mut y, width, seq, heads, &t, false);
        // Position 0 (rows 0 and seq) is not rotated; the extra columns never are.
        assert_eq!(y[..width], x[..width]);
        assert_eq!(
            y[seq * width..(seq + 1) * width],
            x[seq * width..(seq + 1) * width]
        );
        for r in 0..2 * seq {
            assert_eq!(
                y[r * width + heads * hd..(r + 1) * width],
                x[r * width + heads * hd..(r + 1) * width]
            );
        }
        assert_ne!(y[width..2 * width], x[width..2 * width]);
        apply(&mut y, width, seq, heads, &t, true);
        for (a, b) in y.iter().zip(&x) {
            assert!((a - b).abs() < 1e-6);
        }
    }
}
