//! Matrix-vector products `y = W x` for one row of activations (decoding one token at a time),
//! where the work is reading `W` once: output rows go in fixed pieces over the thread pool, so
//! every thread streams its own part of the weights and the product runs at the memory
//! bandwidth of all cores, not one. Each output is one fixed-order dot product, so the result
//! does not depend on the thread count.

use rayon::prelude::*;

use super::simd;

/// Output rows per piece.
const PIECE: usize = 64;

/// `y[i] = Σ_j w[i, j] · x[j]` for `w` row-major `[y.len(), x.len()]`.
pub fn gemv(x: &[f32], w: &[f32], y: &mut [f32]) {
    let k = x.len();
    assert!(
        w.len() >= y.len() * k,
        "gemv: weight of {} values for [{}, {k}]",
        w.len(),
        y.len()
    );
    if k == 0 {
        y.fill(0.0);
        return;
    }
    y.par_chunks_mut(PIECE)
        .zip(w.par_chunks(PIECE * k))
        .for_each(|(y, w)| simd::rows_dot(x, w, y));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_definition_and_ignores_the_thread_count() {
        let (n, k) = (203, 37);
        let x: Vec<f32> = (0..k).map(|i| (i as f32 * 0.3).sin()).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.7).cos()).collect();
        let run = |threads| {
            crate::model::fused::in_pool(threads, || {
                let mut y = vec![0f32; n];
                gemv(&x, &w, &mut y);
                y
            })
        };
        let y = run(1);
        assert_eq!(y, run(2));
        assert_eq!(y, run(3));
        for i in 0..n {
            let want: f64 = (0..k).map(|j| w[i * k + j] as f64 * x[j] as f64).sum();
            assert!((y[i] as f64 - want).abs() < 1e-4);
        }
    }
}
