//! The reductions the kernels lean on (dot product, maximum, `exp` with its sum), written with
//! explicit AVX-512 and AVX2 instructions. The compiler's own vectorisation of the portable
//! versions (in the parent module) turned out to use 128-bit registers for these fixed-lane
//! reductions, a quarter of what AVX-512 offers.
//!
//! Every version computes exactly what the portable one does: 16 lanes (one AVX-512 register,
//! two AVX2 registers), multiplies and adds kept apart (no FMA), the same fixed tree to fold the
//! lanes, the same scalar tail. So results do not depend on which one a CPU runs, and the tests
//! compare them bit for bit.

use super::{Isa, LANES, fold, isa};

/// `Σ a[i]·b[i]`; see [`super::dot`] for the order.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    match isa() {
        // SAFETY: the CPU has the features (`isa()` checked).
        Isa::V4 => return unsafe { x86::dot_v4(a, b) },
        Isa::V3 => return unsafe { x86::dot_v3(a, b) },
        Isa::Generic => {}
    }
    super::dot(a, b)
}

/// The largest element; see [`super::max`].
#[inline(always)]
pub fn max(a: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    match isa() {
        // SAFETY: as above.
        Isa::V4 => return unsafe { x86::max_v4(a) },
        Isa::V3 => return unsafe { x86::max_v3(a) },
        Isa::Generic => {}
    }
    super::max(a)
}

/// `a[i] = e^(a[i] − m)` in place; returns `Σ a[i]` (16 lanes, the fixed fold, then the tail).
#[inline(always)]
pub fn exp_sub_sum(a: &mut [f32], m: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    match isa() {
        // SAFETY: as above.
        Isa::V4 => return unsafe { x86::exp_sub_sum_v4(a, m) },
        Isa::V3 => return unsafe { x86::exp_sub_sum_v3(a, m) },
        Isa::Generic => {}
    }
    exp_sub_sum_portable(a, m)
}

/// The portable [`exp_sub_sum`].
#[inline(always)]
pub fn exp_sub_sum_portable(a: &mut [f32], m: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = a.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for k in 0..LANES {
            let e = super::exp(c[k] - m);
            c[k] = e;
            acc[k] += e;
        }
    }
    let mut s = fold(acc);
    for v in chunks.into_remainder() {
        let e = super::exp(*v - m);
        *v = e;
        s += e;
    }
    s
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::super::{LANES, fold, fold_max};

    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0;
    const P: [f32; 6] = [
        1.987_569_1e-4,
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ];

    #[inline(always)]
    fn lanes(v: [f32; LANES]) -> f32 {
        fold(v)
    }

    // ---- AVX-512: one register is the 16 lanes.

    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn store16(v: __m512) -> [f32; LANES] {
        let mut out = [0f32; LANES];
        // SAFETY: `out` holds 16 floats.
        unsafe { _mm512_storeu_ps(out.as_mut_ptr(), v) };
        out
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) unsafe fn dot_v4(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let full = n / LANES * LANES;
        let mut acc = _mm512_setzero_ps();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut i = 0;
        while i < full {
            // SAFETY: i + 16 <= n.
            unsafe {
                let p = _mm512_mul_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)));
                acc = _mm512_add_ps(acc, p);
            }
            i += LANES;
        }
        // SAFETY: AVX-512F is enabled here.
        let mut s = lanes(unsafe { store16(acc) });
        for j in full..n {
            s += a[j] * b[j];
        }
        s
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) unsafe fn max_v4(a: &[f32]) -> f32 {
        let full = a.len() / LANES * LANES;
        let mut acc = _mm512_set1_ps(f32::NEG_INFINITY);
        let mut i = 0;
        while i < full {
            // SAFETY: i + 16 <= len. `max(x, acc)` keeps acc unless x > acc, like the portable
            // `if x > acc { x } else { acc }` (NaN x and equal zeros included).
            unsafe { acc = _mm512_max_ps(_mm512_loadu_ps(a.as_ptr().add(i)), acc) };
            i += LANES;
        }
        // SAFETY: AVX-512F is enabled here.
        fold_max(unsafe { store16(acc) }, &a[full..])
    }

    /// The scalar `exp` of the parent module on 16 lanes, operation for operation.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn exp_v4(x: __m512) -> __m512 {
        let lo = _mm512_set1_ps(-87.0);
        let hi = _mm512_set1_ps(88.0);
        // clamp: NaN stays NaN (max/min return their second operand for NaN).
        let xc = _mm512_min_ps(hi, _mm512_max_ps(lo, x));
        let round = _mm512_set1_ps(ROUND);
        let t = _mm512_add_ps(_mm512_mul_ps(xc, _mm512_set1_ps(LOG2E)), round);
        let n = _mm512_sub_ps(t, round);
        let r = _mm512_sub_ps(
            _mm512_sub_ps(xc, _mm512_mul_ps(n, _mm512_set1_ps(LN2_HI))),
            _mm512_mul_ps(n, _mm512_set1_ps(LN2_LO)),
        );
        let mut p = _mm512_set1_ps(P[0]);
        for c in &P[1..] {
            p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(*c));
        }
        let y = _mm512_add_ps(
            _mm512_add_ps(_mm512_mul_ps(p, _mm512_mul_ps(r, r)), r),
            _mm512_set1_ps(1.0),
        );
        let bits = _mm512_slli_epi32::<23>(_mm512_add_epi32(
            _mm512_sub_epi32(
                _mm512_castps_si512(t),
                _mm512_set1_epi32(ROUND.to_bits() as i32),
            ),
            _mm512_set1_epi32(127),
        ));
        let v = _mm512_mul_ps(y, _mm512_castsi512_ps(bits));
        let under = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, lo);
        let over = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, hi);
        let v = _mm512_mask_blend_ps(under, v, _mm512_setzero_ps());
        _mm512_mask_blend_ps(over, v, _mm512_set1_ps(f32::INFINITY))
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) unsafe fn exp_sub_sum_v4(a: &mut [f32], m: f32) -> f32 {
        let full = a.len() / LANES * LANES;
        let mv = _mm512_set1_ps(m);
        let mut acc = _mm512_setzero_ps();
        let p = a.as_mut_ptr();
        let mut i = 0;
        while i < full {
            // SAFETY: i + 16 <= len; AVX-512F is enabled here.
            unsafe {
                let e = exp_v4(_mm512_sub_ps(_mm512_loadu_ps(p.add(i)), mv));
                _mm512_storeu_ps(p.add(i), e);
                acc = _mm512_add_ps(acc, e);
            }
            i += LANES;
        }
        // SAFETY: AVX-512F is enabled here.
        let mut s = lanes(unsafe { store16(acc) });
        for v in &mut a[full..] {
            let e = super::super::exp(*v - m);
            *v = e;
            s += e;
        }
        s
    }

    // ---- AVX2: two registers, lanes 0..8 and 8..16.

    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn store8x2(lo: __m256, hi: __m256) -> [f32; LANES] {
        let mut out = [0f32; LANES];
        // SAFETY: `out` holds 16 floats.
        unsafe {
            _mm256_storeu_ps(out.as_mut_ptr(), lo);
            _mm256_storeu_ps(out.as_mut_ptr().add(8), hi);
        }
        out
    }

    #[target_feature(enable = "avx2")]
    #[inline]
    pub(super) unsafe fn dot_v3(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let full = n / LANES * LANES;
        let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut i = 0;
        while i < full {
            // SAFETY: i + 16 <= n.
            unsafe {
                lo = _mm256_add_ps(
                    lo,
                    _mm256_mul_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i))),
                );
                hi = _mm256_add_ps(
                    hi,
                    _mm256_mul_ps(
                        _mm256_loadu_ps(pa.add(i + 8)),
                        _mm256_loadu_ps(pb.add(i + 8)),
                    ),
                );
            }
            i += LANES;
        }
        // SAFETY: AVX2 is enabled here.
        let mut s = lanes(unsafe { store8x2(lo, hi) });
        for j in full..n {
            s += a[j] * b[j];
        }
        s
    }

    #[target_feature(enable = "avx2")]
    #[inline]
    pub(super) unsafe fn max_v3(a: &[f32]) -> f32 {
        let full = a.len() / LANES * LANES;
        let (mut lo, mut hi) = (
            _mm256_set1_ps(f32::NEG_INFINITY),
            _mm256_set1_ps(f32::NEG_INFINITY),
        );
        let mut i = 0;
        while i < full {
            // SAFETY: i + 16 <= len; operand order as in `max_v4`.
            unsafe {
                lo = _mm256_max_ps(_mm256_loadu_ps(a.as_ptr().add(i)), lo);
                hi = _mm256_max_ps(_mm256_loadu_ps(a.as_ptr().add(i + 8)), hi);
            }
            i += LANES;
        }
        // SAFETY: AVX2 is enabled here.
        fold_max(unsafe { store8x2(lo, hi) }, &a[full..])
    }

    /// [`exp_v4`] on 8 lanes.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn exp_v3(x: __m256) -> __m256 {
        let lo = _mm256_set1_ps(-87.0);
        let hi = _mm256_set1_ps(88.0);
        let xc = _mm256_max_ps(lo, x);
        let xc = _mm256_min_ps(hi, xc);
        let round = _mm256_set1_ps(ROUND);
        let t = _mm256_add_ps(_mm256_mul_ps(xc, _mm256_set1_ps(LOG2E)), round);
        let n = _mm256_sub_ps(t, round);
        let r = _mm256_sub_ps(
            _mm256_sub_ps(xc, _mm256_mul_ps(n, _mm256_set1_ps(LN2_HI))),
            _mm256_mul_ps(n, _mm256_set1_ps(LN2_LO)),
        );
        let mut p = _mm256_set1_ps(P[0]);
        for c in &P[1..] {
            p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(*c));
        }
        let y = _mm256_add_ps(
            _mm256_add_ps(_mm256_mul_ps(p, _mm256_mul_ps(r, r)), r),
            _mm256_set1_ps(1.0),
        );
        let bits = _mm256_slli_epi32::<23>(_mm256_add_epi32(
            _mm256_sub_epi32(
                _mm256_castps_si256(t),
                _mm256_set1_epi32(ROUND.to_bits() as i32),
            ),
            _mm256_set1_epi32(127),
        ));
        let v = _mm256_mul_ps(y, _mm256_castsi256_ps(bits));
        let under = _mm256_cmp_ps::<_CMP_LT_OQ>(x, lo);
        let over = _mm256_cmp_ps::<_CMP_GT_OQ>(x, hi);
        let v = _mm256_blendv_ps(v, _mm256_setzero_ps(), under);
        _mm256_blendv_ps(v, _mm256_set1_ps(f32::INFINITY), over)
    }

    #[target_feature(enable = "avx2")]
    #[inline]
    pub(super) unsafe fn exp_sub_sum_v3(a: &mut [f32], m: f32) -> f32 {
        let full = a.len() / LANES * LANES;
        let mv = _mm256_set1_ps(m);
        let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let p = a.as_mut_ptr();
        let mut i = 0;
        while i < full {
            // SAFETY: i + 16 <= len; AVX2 is enabled here.
            unsafe {
                let e0 = exp_v3(_mm256_sub_ps(_mm256_loadu_ps(p.add(i)), mv));
                let e1 = exp_v3(_mm256_sub_ps(_mm256_loadu_ps(p.add(i + 8)), mv));
                _mm256_storeu_ps(p.add(i), e0);
                _mm256_storeu_ps(p.add(i + 8), e1);
                lo = _mm256_add_ps(lo, e0);
                hi = _mm256_add_ps(hi, e1);
            }
            i += LANES;
        }
        // SAFETY: AVX2 is enabled here.
        let mut s = lanes(unsafe { store8x2(lo, hi) });
        for v in &mut a[full..] {
            let e = super::super::exp(*v - m);
            *v = e;
            s += e;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u64) -> Vec<f32> {
        let mut v = crate::rng::Rng::for_purpose(seed, "simd-test").normal_vec(n, 30.0);
        // Edge values: beyond exp's range both ways, zeros of both signs, NaN-free.
        for (i, x) in [-1000.0, 1000.0, -0.0, 0.0, 88.5, -87.5, 87.9, -86.9]
            .into_iter()
            .enumerate()
        {
            let len = v.len();
            if i < len {
                v[i * 7 % len] = x;
            }
        }
        v
    }

    #[test]
    fn every_instruction_set_gives_the_portable_bits() {
        for n in [0usize, 1, 15, 16, 17, 100, 576, 1000] {
            let a = data(n, 1);
            let b = data(n, 2);
            assert_eq!(
                dot(&a, &b).to_bits(),
                super::super::dot(&a, &b).to_bits(),
                "dot {n}"
            );
            assert_eq!(
                max(&a).to_bits(),
                super::super::max(&a).to_bits(),
                "max {n}"
            );
            let m = max(&a);
            let mut x = a.clone();
            let mut y = a.clone();
            let sx = exp_sub_sum(&mut x, m);
            let sy = exp_sub_sum_portable(&mut y, m);
            assert_eq!(sx.to_bits(), sy.to_bits(), "exp sum {n}");
            assert!(
                x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()),
                "exp {n}"
            );
            // Off the max, so values run past exp's range both ways.
            let mut x = a.clone();
            let mut y = a.clone();
            exp_sub_sum(&mut x, 0.0);
            exp_sub_sum_portable(&mut y, 0.0);
            assert!(
                x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()),
                "exp range {n}"
            );
        }
        let mut z = [f32::NAN, 1.0];
        let s = exp_sub_sum(&mut z, 0.0);
        assert!(s.is_nan() && z[0].is_nan());
    }
}
