//! CPU kernels for training, over plain `f32` slices: each op has its forward and its backward,
//! fused into one pass where the composite candle version would take several (RMSNorm, RoPE,
//! causal attention with the softmax inside, SwiGLU, log-softmax + cross-entropy, AdamW).
//! [`crate::model::fused`] builds the decoder's training step from them.
//!
//! # Determinism
//! Every kernel gives the same bits whatever the thread count and whatever SIMD width the CPU
//! has:
//! - work is split into fixed-size pieces (rows, heads, chunks) whose boundaries do not depend
//!   on the number of threads, and each output element is written by exactly one piece;
//! - reductions inside a piece run in a fixed order (16 lanes, then a fixed tree), and
//!   reductions across pieces (norm-weight and bias gradients, the gradient norm) add
//!   per-piece partials in piece order;
//! - the code never fuses a multiply and an add into an FMA (Rust does not contract floating
//!   point), so the AVX-512, AVX2 and plain builds of a kernel ([`multiversion!`]) compute the
//!   same thing;
//! - `exp` is medrun's own polynomial ([`exp`]), not the C library's, so it is the same on
//!   every machine.
//!
//! Training's matrix products go through the `gemm` crate (the one candle uses), whose results
//! do not depend on the thread count either; they may depend on the CPU's instruction set,
//! which is why the device class in every stage key holds it. Inference multiplies by weights
//! packed once at load ([`packed`]): one FMA chain per output element, the same bits for any
//! row count, thread count or instruction set.

pub mod adamw;
pub mod attention;
pub mod gemm;
pub mod norm;
pub mod packed;
pub mod rope;
pub mod simd;
pub mod swiglu;
pub mod xent;

use rayon::prelude::*;

/// SIMD level the CPU offers, detected once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    Generic,
    /// AVX2 + FMA.
    V3,
    /// AVX-512 (F, BW, DQ, VL).
    V4,
}

/// The instruction-set level the kernels dispatch on.
pub fn isa() -> Isa {
    use std::sync::OnceLock;
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(detect)
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Isa {
    if std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512dq")
        && std::arch::is_x86_feature_detected!("avx512vl")
    {
        Isa::V4
    } else if std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
    {
        Isa::V3
    } else {
        Isa::Generic
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Isa {
    Isa::Generic
}

/// Defines a function whose body is compiled three times (AVX-512, AVX2, plain) and picks the
/// widest the CPU supports at run time. The body must call only `#[inline(always)]` helpers
/// (such as [`exp`], [`dot`]) so they are compiled with the same features. Results are the
/// same on every path: Rust never contracts `a * b + c` into an FMA.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn imp($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v4($($arg: $ty),*) $(-> $ret)? { imp($($arg),*) }
                #[target_feature(enable = "avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v3($($arg: $ty),*) $(-> $ret)? { imp($($arg),*) }
                match $crate::model::kernels::isa() {
                    // SAFETY: `isa()` found these features on this CPU.
                    $crate::model::kernels::Isa::V4 => return unsafe { v4($($arg),*) },
                    $crate::model::kernels::Isa::V3 => return unsafe { v3($($arg),*) },
                    $crate::model::kernels::Isa::Generic => {}
                }
            }
            imp($($arg),*)
        }
    };
}
pub(crate) use multiversion;

/// Lanes of the fixed-order reductions.
const LANES: usize = 16;

/// Adds 16 partial sums in a fixed tree.
#[inline(always)]
fn fold(acc: [f32; LANES]) -> f32 {
    let mut a = [0f32; 8];
    for i in 0..8 {
        a[i] = acc[i] + acc[i + 8];
    }
    let b = [a[0] + a[4], a[1] + a[5], a[2] + a[6], a[3] + a[7]];
    (b[0] + b[2]) + (b[1] + b[3])
}

/// `Σ a[i]·b[i]` in a fixed order (16 lanes, then the tail).
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s = fold(acc);
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        s += x * y;
    }
    s
}

/// `Σ a[i]` in a fixed order.
#[inline(always)]
pub fn sum(a: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let mut c = a.chunks_exact(LANES);
    for x in &mut c {
        for i in 0..LANES {
            acc[i] += x[i];
        }
    }
    let mut s = fold(acc);
    for x in c.remainder() {
        s += x;
    }
    s
}

/// Largest element (`-inf` for an empty slice). NaN elements are skipped: callers subtract the
/// maximum and exponentiate, which carries a NaN through anyway.
#[inline(always)]
pub fn max(a: &[f32]) -> f32 {
    #[inline(always)]
    fn mx(a: f32, b: f32) -> f32 {
        if b > a { b } else { a }
    }
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut c = a.chunks_exact(LANES);
    for x in &mut c {
        for i in 0..LANES {
            acc[i] = mx(acc[i], x[i]);
        }
    }
    fold_max(acc, c.remainder())
}

/// The maximum of 16 lane maxima (a fixed tree) and then of `tail` in order: the last steps of
/// [`max`], shared with its SIMD versions.
#[inline(always)]
fn fold_max(acc: [f32; LANES], tail: &[f32]) -> f32 {
    let mx = |a: f32, b: f32| if b > a { b } else { a };
    let mut h = [0f32; 8];
    for i in 0..8 {
        h[i] = mx(acc[i], acc[i + 8]);
    }
    let q = [
        mx(h[0], h[4]),
        mx(h[1], h[5]),
        mx(h[2], h[6]),
        mx(h[3], h[7]),
    ];
    let mut m = mx(mx(q[0], q[2]), mx(q[1], q[3]));
    for v in tail {
        m = mx(m, *v);
    }
    m
}

/// `e^x` for f32, to about 1 ulp (Cody–Waite range reduction and a degree-6 polynomial,
/// Cephes' `expf` coefficients), written so loops over it vectorise. 0 below −87, `+inf` above
/// 88, NaN for NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 · 2^23: adding and subtracting it rounds to the nearest integer (ties to even).
    const ROUND: f32 = 12_582_912.0;
    let xc = x.clamp(-87.0, 88.0);
    let t = xc * LOG2E + ROUND;
    let n = t - ROUND;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = (p * (r * r) + r) + 1.0;
    // 2^n from the integer held in t's low mantissa bits (t = 1.5·2^23 + n exactly), with
    // integer arithmetic only, so the loop vectorises (a float-to-int cast would not).
    let scale = f32::from_bits(t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127) << 23);
    let v = y * scale;
    if x < -87.0 {
        0.0
    } else if x > 88.0 {
        f32::INFINITY
    } else {
        // NaN inputs stay NaN through the arithmetic above.
        v
    }
}

/// Rows per piece of the row-parallel kernels: fixed, so the split never depends on the number
/// of threads.
pub const ROW_PIECE: usize = 16;

/// Runs `f(first_row, rows)` over pieces of [`ROW_PIECE`] rows of `out` (rows of `width`), in
/// parallel.
pub fn par_rows<F>(out: &mut [f32], width: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync + Send,
{
    if width == 0 {
        return;
    }
    out.par_chunks_mut(ROW_PIECE * width)
        .enumerate()
        .for_each(|(i, chunk)| f(i * ROW_PIECE, chunk));
}

/// Sums per-piece partial vectors (each of length `width`) in piece order into `dst`, adding to
/// it when `accumulate`, else overwriting it.
pub fn reduce_partials(partials: &[f32], width: usize, dst: &mut [f32], accumulate: bool) {
    if !accumulate {
        dst.fill(0.0);
    }
    for p in partials.chunks_exact(width.max(1)) {
        add_into(dst, p);
    }
}

multiversion! {
    /// `dst[i] += src[i]`.
    pub fn add_into(dst: &mut [f32], src: &[f32]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d += *s;
        }
    }
}

multiversion! {
    /// `dst[i] *= s`.
    pub fn scale_in_place(dst: &mut [f32], s: f32) {
        for d in dst.iter_mut() {
            *d *= s;
        }
    }
}

multiversion! {
    /// Sums of columns `col..col + width` of rows `stride` apart, added to `dst`.
    fn add_column_sums(dst: &mut [f32], rows: &[f32], stride: usize, col: usize, width: usize) {
        for r in rows.chunks(stride) {
            if r.len() >= col + width {
                for (d, s) in dst.iter_mut().zip(&r[col..col + width]) {
                    *d += *s;
                }
            }
        }
    }
}

/// Sums of columns `col..col + width` of a row-major matrix with rows `stride` apart,
/// deterministic: pieces of [`ROW_PIECE`] rows sum in parallel, then add up in piece order.
/// Writes or adds into `dst`.
pub fn column_sums(
    x: &[f32],
    stride: usize,
    col: usize,
    width: usize,
    dst: &mut [f32],
    accumulate: bool,
) {
    if width == 0 || stride == 0 {
        return;
    }
    let pieces = x.len().div_ceil(ROW_PIECE * stride);
    let mut partials = vec![0f32; pieces * width];
    partials
        .par_chunks_mut(width)
        .zip(x.par_chunks(ROW_PIECE * stride))
        .for_each(|(p, rows)| add_column_sums(p, rows, stride, col, width));
    reduce_partials(&partials, width, dst, accumulate);
}

multiversion! {
    /// `dst[i] += a[i] · b[i]`.
    pub fn add_product(dst: &mut [f32], a: &[f32], b: &[f32]) {
        for ((d, x), y) in dst.iter_mut().zip(a).zip(b) {
            *d += *x * *y;
        }
    }
}

multiversion! {
    /// `dst[i] = a[i] · b[i]`.
    pub fn product(dst: &mut [f32], a: &[f32], b: &[f32]) {
        for ((d, x), y) in dst.iter_mut().zip(a).zip(b) {
            *d = *x * *y;
        }
    }
}

multiversion! {
    /// `Σ x²` of a slice, in f64 over fixed pieces of f32 lane sums.
    fn sum_squares_piece(x: &[f32]) -> f64 {
        dot(x, x) as f64
    }
}

/// `Σ x²` over `x`, deterministic: fixed chunks in parallel, added in chunk order in f64.
pub fn sum_squares(x: &[f32]) -> f64 {
    const CHUNK: usize = 1 << 14;
    let parts: Vec<f64> = x.par_chunks(CHUNK).map(sum_squares_piece).collect();
    parts.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate_and_handles_the_edges() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let got = exp(x) as f64;
            let want = (x as f64).exp();
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 3e-7, "relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(100.0), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn reductions_are_exact_on_integers() {
        let v: Vec<f32> = (0..37).map(|i| i as f32).collect();
        assert_eq!(sum(&v), 666.0);
        assert_eq!(dot(&v, &v), (0..37).map(|i| (i * i) as f32).sum::<f32>());
        assert_eq!(max(&v), 36.0);
        let mut w = v.clone();
        w[3] = 99.0;
        assert_eq!(max(&w), 99.0);
        assert_eq!(max(&[]), f32::NEG_INFINITY);
    }

    #[test]
    fn column_sums_do_not_depend_on_the_thread_count() {
        let width = 7;
        let x: Vec<f32> = (0..width * 203)
            .map(|i| ((i * 7919) % 1000) as f32 / 997.0 - 0.5)
            .collect();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut d = vec![0f32; width];
                column_sums(&x, width, 0, width, &mut d, false);
                let mut e = vec![0f32; 3];
                column_sums(&x, width, 2, 3, &mut e, false);
                assert_eq!(e, d[2..5]);
                (d, sum_squares(&x))
            })
        };
        let one = run(1);
        assert_eq!(one, run(2));
        assert_eq!(one, run(3));
        for c in 0..width {
            let want: f64 = x.chunks(width).map(|r| r[c] as f64).sum();
            assert!((one.0[c] as f64 - want).abs() < 1e-4);
        }
    }
}
