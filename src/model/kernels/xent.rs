//! Log-softmax cross-entropy over rows of logits, fused: the forward pass turns each row into
//! `e^(l − max)` in place and returns the target's log-probability; the backward pass turns the
//! same buffer into `d loss / d logits = w · (onehot(target) − softmax)` for a per-row weight
//! `w = d loss / d log p(target)`, with no second exponential.

use rayon::prelude::*;

use super::{ROW_PIECE, multiversion, simd};

multiversion! {
    fn forward_rows(logits: &mut [f32], vocab: usize, targets: &[u32], logp: &mut [f32], inv_sum: &mut [f32]) {
        for (((row, &t), lp), is) in logits
            .chunks_exact_mut(vocab)
            .zip(targets)
            .zip(logp.iter_mut())
            .zip(inv_sum.iter_mut())
        {
            let m = simd::max(row);
            let lt = row[t as usize] - m;
            let s = simd::exp_sub_sum(row, m);
            *lp = lt - s.ln();
            *is = 1.0 / s;
        }
    }
}

/// For each row of `logits` (`[rows, vocab]`): the log-probability of `targets[row]`, written
/// to `logp`; the row becomes `e^(l − max)` and `inv_sum` receives `1 / Σ e^(l − max)`.
pub fn forward(
    logits: &mut [f32],
    vocab: usize,
    targets: &[u32],
    logp: &mut [f32],
    inv_sum: &mut [f32],
) {
    if vocab == 0 {
        return;
    }
    logits
        .par_chunks_mut(ROW_PIECE * vocab)
        .zip(targets.par_chunks(ROW_PIECE))
        .zip(logp.par_chunks_mut(ROW_PIECE))
        .zip(inv_sum.par_chunks_mut(ROW_PIECE))
        .for_each(|(((l, t), lp), is)| forward_rows(l, vocab, t, lp, is));
}

multiversion! {
    fn backward_rows(buf: &mut [f32], vocab: usize, targets: &[u32], inv_sum: &[f32], weight: &[f32]) {
        for (((row, &t), &is), &w) in buf
            .chunks_exact_mut(vocab)
            .zip(targets)
            .zip(inv_sum)
            .zip(weight)
        {
            let k = -(w * is);
            for v in row.iter_mut() {
                *v *= k;
            }
            row[t as usize] += w;
        }
    }
}

/// Backward of [`forward`], in place: each row of `buf` (as [`forward`] left it) becomes the
/// gradient of the loss with respect to the logits, given `weight[row] = d loss / d log p`.
pub fn backward(buf: &mut [f32], vocab: usize, targets: &[u32], inv_sum: &[f32], weight: &[f32]) {
    if vocab == 0 {
        return;
    }
    buf.par_chunks_mut(ROW_PIECE * vocab)
        .zip(targets.par_chunks(ROW_PIECE))
        .zip(inv_sum.par_chunks(ROW_PIECE))
        .zip(weight.par_chunks(ROW_PIECE))
        .for_each(|(((b, t), is), w)| backward_rows(b, vocab, t, is, w));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_probs_and_gradients_match_the_definition() {
        let (rows, vocab) = (21, 37);
        let logits: Vec<f32> = (0..rows * vocab)
            .map(|i| ((i * 7919) % 101) as f32 / 10.0 - 5.0)
            .collect();
        let targets: Vec<u32> = (0..rows as u32).map(|r| (r * 5) % vocab as u32).collect();
        let weight: Vec<f32> = (0..rows).map(|r| r as f32 / 7.0 - 1.0).collect();
        let mut buf = logits.clone();
        let mut logp = vec![0f32; rows];
        let mut inv = vec![0f32; rows];
        forward(&mut buf, vocab, &targets, &mut logp, &mut inv);
        backward(&mut buf, vocab, &targets, &inv, &weight);
        for r in 0..rows {
            let row: Vec<f64> = logits[r * vocab..(r + 1) * vocab]
                .iter()
                .map(|&x| x as f64)
                .collect();
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = row.iter().map(|x| (x - m).exp()).sum();
            let want = row[targets[r] as usize] - m - z.ln();
            assert!(
                (logp[r] as f64 - want).abs() < 1e-5,
                "{} vs {want}",
                logp[r]
            );
            for j in 0..vocab {
                let p = (row[j] - m).exp() / z;
                let onehot = if j == targets[r] as usize { 1.0 } else { 0.0 };
                let g = weight[r] as f64 * (onehot - p);
                assert!((buf[r * vocab + j] as f64 - g).abs() < 1e-6);
            }
        }
    }
}
