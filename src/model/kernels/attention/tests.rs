use super::*;

fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut r = crate::rng::Rng::for_purpose(seed, "attention-test");
    r.normal_vec(n, 1.0)
}

/// Plain f64 attention: the output for every (sequence, head, position).
fn naive(sh: Shape, qkv: &[f32], alibi: Option<&[f32]>) -> Vec<f64> {
    let (w, ow, hd, t) = (sh.width(), sh.out_width(), sh.head_dim, sh.seq);
    let rep = sh.heads / sh.kv_heads;
    let scale = 1.0 / (hd as f64).sqrt();
    let mut out = vec![0f64; sh.rows * t * ow];
    for b in 0..sh.rows {
        for h in 0..sh.heads {
            let g = h / rep;
            let slope = alibi.map(|a| a[h] as f64).unwrap_or(0.0);
            for i in 0..t {
                let qi = &qkv[(b * t + i) * w + sh.q_col(h)..][..hd];
                let scores: Vec<f64> = (0..=i)
                    .map(|j| {
                        let kj = &qkv[(b * t + j) * w + sh.k_col(g)..][..hd];
                        let d: f64 = qi.iter().zip(kj).map(|(a, b)| *a as f64 * *b as f64).sum();
                        d * scale + slope * (j as f64 - i as f64)
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = scores.iter().map(|s| (s - m).exp()).sum();
                for (j, s) in scores.iter().enumerate() {
                    let p = (s - m).exp() / z;
                    let vj = &qkv[(b * t + j) * w + sh.v_col(g)..][..hd];
                    for d in 0..hd {
                        out[(b * t + i) * ow + sh.q_col(h) + d] += p * vj[d] as f64;
                    }
                }
            }
        }
    }
    out
}

fn shapes() -> Vec<(Shape, bool)> {
    vec![
        // Crosses a query block boundary, grouped-query, RoPE-style (no ALiBi).
        (
            Shape {
                rows: 2,
                seq: QUERY_BLOCK + 7,
                heads: 4,
                kv_heads: 2,
                head_dim: 8,
            },
            false,
        ),
        // Head size off the vector width, sequence off the tile sizes.
        (
            Shape {
                rows: 1,
                seq: 37,
                heads: 2,
                kv_heads: 1,
                head_dim: 20,
            },
            false,
        ),
        // Multi-head with ALiBi, short sequence.
        (
            Shape {
                rows: 3,
                seq: 5,
                heads: 3,
                kv_heads: 3,
                head_dim: 4,
            },
            true,
        ),
    ]
}

/// Every implementation this CPU can run: (name, forward, backward).
#[allow(clippy::type_complexity)]
fn paths() -> Vec<(
    &'static str,
    fn(Shape, &[f32], Option<&[f32]>, &mut [f32], &mut [f32]),
    fn(Shape, &[f32], Option<&[f32]>, &[f32], &[f32], &[f32], &mut [f32]),
)> {
    let mut v: Vec<(
        &'static str,
        fn(Shape, &[f32], Option<&[f32]>, &mut [f32], &mut [f32]),
        fn(Shape, &[f32], Option<&[f32]>, &[f32], &[f32], &[f32], &mut [f32]),
    )> = vec![("portable", forward_portable, backward_portable)];
    #[cfg(target_arch = "x86_64")]
    if crate::model::kernels::isa() == crate::model::kernels::Isa::V4 {
        fn f(sh: Shape, q: &[f32], a: Option<&[f32]>, o: &mut [f32], l: &mut [f32]) {
            // SAFETY: only listed when the CPU has AVX-512.
            unsafe { avx512::forward(sh, q, a, o, l) }
        }
        fn b(
            sh: Shape,
            q: &[f32],
            a: Option<&[f32]>,
            o: &[f32],
            l: &[f32],
            d: &[f32],
            dq: &mut [f32],
        ) {
            // SAFETY: as above.
            unsafe { avx512::backward(sh, q, a, o, l, d, dq) }
        }
        v.push(("avx512", f, b));
    }
    v
}

#[test]
fn forward_matches_plain_attention() {
    for (sh, with_alibi) in shapes() {
        let qkv = data(sh.rows * sh.seq * sh.width(), 1);
        let slopes = crate::model::transformer::alibi_slopes(sh.heads);
        let alibi: Vec<f32> = slopes.iter().map(|&s| s as f32).collect();
        let alibi = with_alibi.then_some(alibi.as_slice());
        let want = naive(sh, &qkv, alibi);
        for (name, fwd, _) in paths() {
            let mut out = vec![f32::NAN; sh.rows * sh.seq * sh.out_width()];
            let mut lse = vec![0f32; sh.rows * sh.heads * sh.seq];
            fwd(sh, &qkv, alibi, &mut out, &mut lse);
            for (a, b) in out.iter().zip(&want) {
                assert!((*a as f64 - b).abs() < 1e-5, "{name}: {a} vs {b}");
            }
        }
    }
}

#[test]
fn backward_matches_finite_differences_and_threads_do_not_matter() {
    for (sh, with_alibi) in shapes() {
        let qkv = data(sh.rows * sh.seq * sh.width(), 2);
        let up = data(sh.rows * sh.seq * sh.out_width(), 3);
        let slopes: Vec<f32> = crate::model::transformer::alibi_slopes(sh.heads)
            .iter()
            .map(|&s| s as f32)
            .collect();
        let alibi = with_alibi.then_some(slopes.as_slice());
        for (name, fwd, bwd) in paths() {
            let grads = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| {
                    let mut out = vec![0f32; up.len()];
                    let mut lse = vec![0f32; sh.rows * sh.heads * sh.seq];
                    fwd(sh, &qkv, alibi, &mut out, &mut lse);
                    let mut d = vec![f32::NAN; qkv.len()];
                    bwd(sh, &qkv, alibi, &out, &lse, &up, &mut d);
                    (out, d)
                })
            };
            let (_, d) = grads(1);
            assert_eq!(grads(2).1, d, "{name}");
            assert_eq!(grads(3).1, d, "{name}");
            let loss = |x: &[f32]| -> f64 {
                naive(sh, x, alibi)
                    .iter()
                    .zip(&up)
                    .map(|(a, b)| a * *b as f64)
                    .sum()
            };
            let n = qkv.len();
            for i in (0..n).step_by(n / 97 + 1) {
                let mut a = qkv.clone();
                a[i] += 1e-2;
                let mut b = qkv.clone();
                b[i] -= 1e-2;
                let num = (loss(&a) - loss(&b)) / 2e-2;
                assert!(
                    (num - d[i] as f64).abs() < 1e-3 * (1.0 + num.abs()),
                    "{name}: element {i}: finite difference {num}, kernel {}",
                    d[i]
                );
            }
        }
    }
}
