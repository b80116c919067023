//! Small statistics for the promotion gate: the exact McNemar test on paired binary outcomes,
//! a seeded paired bootstrap for a drop in a mean, and mean / standard-error helpers.
//!
//! Everything here is deterministic: the bootstrap draws from a caller-supplied
//! [`crate::rng::Rng`], so the same inputs and stream always give bit-identical results.
//!
//! # Exact McNemar test
//!
//! Two models answer the same `n` items. Only the discordant items carry information: `b` items
//! that the first model gets right and the second wrong, `c` the other way round. Under the null
//! hypothesis that both models have the same probability of being right (marginal homogeneity),
//! conditionally on `b + c`, `b ~ Binomial(b + c, 1/2)`. The two-sided exact p-value is
//! `min(1, 2 · P(X ≤ min(b, c)))` for `X ~ Binomial(b + c, 1/2)` (the same definition as R's
//! `binom.test(b, b + c)` and statsmodels' `mcnemar(exact=True)`).
//!
//! The tail is summed in a numerically stable way for `b + c` up to millions: the largest term,
//! `P(X = k)`, is computed in log space with Loader's saddle-point form (Stirling-series
//! corrections plus the `bd0` deviance term, which avoids the cancellation of
//! `ln n! − ln k! − ln (n−k)!`), and the smaller terms follow from it by the exact ratio
//! `P(X = i−1) / P(X = i) = i / (n − i + 1)`, stopping once they no longer change the sum.
//!
//! # Paired bootstrap for a drop
//!
//! Given per-item differences `d_i = holder_i − candidate_i` (a positive mean is a drop), the
//! observed drop is `mean(d)`. Each of `B` resamples draws `n` items with replacement and takes
//! the mean. For the one-sided null hypothesis "the true drop is at most `margin`" against "the
//! true drop exceeds `margin`", the p-value is the percentile-bootstrap one,
//! `(1 + #{resampled drop ≤ margin}) / (B + 1)`: rejecting at level α is the same as the one-sided
//! (1 − α) percentile lower confidence bound of the drop lying above `margin` (up to the `+1`,
//! which keeps the p-value away from an impossible 0).

use crate::rng::Rng;

/// Mean of `xs`; `None` when empty.
pub fn mean(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    Some(xs.iter().sum::<f64>() / xs.len() as f64)
}

/// Standard error of the mean: the sample standard deviation (`n − 1` denominator) over `√n`,
/// as lm-evaluation-harness reports it. `None` for fewer than two values.
pub fn std_error(xs: &[f64]) -> Option<f64> {
    let n = xs.len();
    if n < 2 {
        return None;
    }
    let m = mean(xs)?;
    // Two passes: the squared deviations are summed around the mean, not around zero.
    let ss: f64 = xs.iter().map(|x| (x - m) * (x - m)).sum();
    let var = ss / (n - 1) as f64;
    Some((var / n as f64).sqrt())
}

/// `ln(m!) − ((m + ½)·ln m − m + ½·ln 2π)`: the error of Stirling's formula for `m!`, `m ≥ 1`.
fn stirling_error(m: u64) -> f64 {
    const HALF_LN_2PI: f64 = 0.918_938_533_204_672_8;
    let x = m as f64;
    if m <= 15 {
        let ln_fact: f64 = (2..=m).map(|i| (i as f64).ln()).sum();
        return ln_fact - ((x + 0.5) * x.ln() - x + HALF_LN_2PI);
    }
    // Asymptotic series 1/(12x) − 1/(360x³) + 1/(1260x⁵) − 1/(1680x⁷); for x > 15 the next
    // term is below 1e-14.
    let x2 = x * x;
    (1.0 / 12.0 - (1.0 / 360.0 - (1.0 / 1260.0 - 1.0 / (1680.0 * x2)) / x2) / x2) / x
}

/// `x·ln(x / m) + m − x`, computed without cancellation when `x` is close to `m` (both > 0).
fn deviance(x: f64, m: f64) -> f64 {
    if (x - m).abs() < 0.1 * (x + m) {
        // With v = (x − m)/(x + m): x·ln(x/m) = 2x·(v + v³/3 + v⁵/5 + …) and m − x = −v(x + m),
        // so the result is v(x − m) + 2x·Σ_{j≥1} v^(2j+1)/(2j+1).
        let v = (x - m) / (x + m);
        let mut sum = v * (x - m);
        let v2 = v * v;
        let mut term = 2.0 * x * v;
        let mut j = 1.0;
        loop {
            term *= v2;
            let next = sum + term / (2.0 * j + 1.0);
            if next == sum {
                return sum;
            }
            sum = next;
            j += 1.0;
        }
    }
    x * (x / m).ln() + m - x
}

/// `ln P(X = k)` for `X ~ Binomial(n, 1/2)`.
fn ln_binom_half_pmf(k: u64, n: u64) -> f64 {
    let ln2 = std::f64::consts::LN_2;
    if k == 0 || k == n {
        return -(n as f64) * ln2;
    }
    let (nf, kf, rf) = (n as f64, k as f64, (n - k) as f64);
    let half = nf / 2.0;
    stirling_error(n)
        - stirling_error(k)
        - stirling_error(n - k)
        - deviance(kf, half)
        - deviance(rf, half)
        + 0.5 * (nf / (std::f64::consts::TAU * kf * rf)).ln()
}

/// `ln P(X ≤ k)` for `X ~ Binomial(n, 1/2)`, `k ≤ n`.
fn ln_binom_half_cdf(k: u64, n: u64) -> f64 {
    // Sum P(X = i)/P(X = k) for i = k, k−1, …, 0, largest first, while it still matters.
    let mut sum = 1.0_f64;
    let mut term = 1.0_f64;
    let mut i = k;
    while i > 0 {
        term *= i as f64 / (n - i + 1) as f64;
        let next = sum + term;
        if next == sum {
            break;
        }
        sum = next;
        i -= 1;
    }
    ln_binom_half_pmf(k, n) + sum.ln()
}

/// Two-sided exact McNemar p-value from the discordant counts `b` and `c` (see the module docs).
/// `1.0` when there are no discordant pairs.
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // |b − c| ≤ 1: P(X ≤ k) ≥ ½ by symmetry, so the p-value is exactly 1.
    if 2 * k + 1 >= n {
        return 1.0;
    }
    let ln_p = std::f64::consts::LN_2 + ln_binom_half_cdf(k, n);
    ln_p.exp().min(1.0)
}

/// The result of [`paired_bootstrap`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Bootstrap {
    /// Observed drop: the mean of the differences.
    pub drop: f64,
    /// Standard error of that mean (0 for a single item).
    pub std_error: f64,
    /// One-sided p-value for "the true drop exceeds the margin".
    pub p_value: f64,
    /// Central percentile interval of the drop at `level`.
    pub ci_low: f64,
    pub ci_high: f64,
    pub level: f64,
    pub resamples: usize,
}

/// Type-7 quantile (linear interpolation, numpy's default) of sorted, non-empty `xs`.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Paired bootstrap for a drop in a mean (see the module docs). `diffs` are the per-item
/// `holder − candidate` differences, oriented so that a positive value is worse for the
/// candidate. `level` is the coverage of the returned central interval, in [0, 1). `None` when
/// `diffs` is empty, `resamples` is 0 or a difference is not finite.
pub fn paired_bootstrap(
    diffs: &[f64],
    margin: f64,
    resamples: usize,
    level: f64,
    rng: &mut Rng,
) -> Option<Bootstrap> {
    if diffs.is_empty() || resamples == 0 || diffs.iter().any(|d| !d.is_finite()) {
        return None;
    }
    let n = diffs.len();
    let drop = mean(diffs)?;
    let mut means = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        let mut s = 0.0;
        for _ in 0..n {
            s += diffs[rng.below(n as u64) as usize];
        }
        means.push(s / n as f64);
    }
    let at_most = means.iter().filter(|&&m| m <= margin).count();
    means.sort_by(f64::total_cmp);
    let tail = (1.0 - level.clamp(0.0, 1.0)) / 2.0;
    Some(Bootstrap {
        drop,
        std_error: std_error(diffs).unwrap_or(0.0),
        p_value: (1 + at_most) as f64 / (resamples + 1) as f64,
        ci_low: quantile(&means, tail),
        ci_high: quantile(&means, 1.0 - tail),
        level,
        resamples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(f64::MIN_POSITIVE)
    }

    /// P(X = k) by exact rational arithmetic for small n: C(n, k) / 2^n.
    fn pmf_exact(k: u64, n: u64) -> f64 {
        let mut c: u128 = 1;
        for i in 0..k {
            c = c * (n - i) as u128 / (i + 1) as u128;
        }
        c as f64 / 2f64.powi(n as i32)
    }

    #[test]
    fn mcnemar_hand_computed() {
        // b = 10, c = 2: P(X ≤ 2 | 12) = (1 + 12 + 66) / 4096 = 79/4096; two-sided 158/4096.
        let p = mcnemar_exact(10, 2);
        assert!(close(p, 158.0 / 4096.0, 1e-13), "{p}");
        assert!((p - 0.0386).abs() < 5e-5);
        // Symmetric in b and c.
        assert_eq!(p, mcnemar_exact(2, 10));
        // b = c gives 1; no discordant pairs gives 1.
        assert_eq!(mcnemar_exact(7, 7), 1.0);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // All discordant pairs one way: 2 · 2^-n.
        assert!(close(mcnemar_exact(5, 0), 2.0 / 32.0, 1e-14));
        // b = 6, c = 5: 2 · P(X ≤ 5 | 11) = 2 · ½ = 1 exactly.
        assert_eq!(mcnemar_exact(6, 5), 1.0);
    }

    #[test]
    fn pmf_matches_exact_binomial_for_small_n() {
        for n in 1..=60u64 {
            for k in 0..=n {
                let got = ln_binom_half_pmf(k, n).exp();
                let want = pmf_exact(k, n);
                assert!(close(got, want, 1e-12), "n={n} k={k}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn mcnemar_large_counts_are_stable() {
        // Reference values from Python's exact integer arithmetic:
        //   from fractions import Fraction; from math import comb
        //   float(2 * Fraction(sum(comb(n, i) for i in range(k + 1)), 2**n))
        // n = 2000, k = 950 → 0.026824146240280695
        let p = mcnemar_exact(1050, 950);
        assert!(close(p, 0.026_824_146_240_280_695, 1e-12), "{p}");
        // n = 1_000_000, k = 499_000 → 0.04560829986538208 (near the normal tail at z = 2)
        let p = mcnemar_exact(501_000, 499_000);
        assert!(close(p, 0.045_608_299_865_382_08, 1e-12), "{p}");
        // n = 1_000_000, k = 497_000 → 1.9851497639230208e-09
        let p = mcnemar_exact(503_000, 497_000);
        assert!(close(p, 1.985_149_763_923_020_8e-9, 1e-12), "{p}");
        // Far tails underflow gracefully to 0 instead of NaN.
        let p = mcnemar_exact(1_000_000, 0);
        assert_eq!(p, 0.0);
        // b = c at a million is exactly 1.
        assert_eq!(mcnemar_exact(500_000, 500_000), 1.0);
    }

    #[test]
    fn mean_and_std_error() {
        assert_eq!(mean(&[]), None);
        assert_eq!(mean(&[1.0, 2.0, 3.0, 4.0]), Some(2.5));
        assert_eq!(std_error(&[1.0]), None);
        // Sample variance of 1..4 is 5/3; SE = sqrt(5/3 / 4).
        let se = std_error(&[1.0, 2.0, 3.0, 4.0]).unwrap_or(f64::NAN);
        assert!(close(se, (5.0f64 / 12.0).sqrt(), 1e-15), "{se}");
        // Binary outcomes: p = 0.5, n = 4 → sqrt(p(1−p)/(n−1)) = sqrt(1/12).
        let se = std_error(&[1.0, 0.0, 1.0, 0.0]).unwrap_or(f64::NAN);
        assert!(close(se, (1.0f64 / 12.0).sqrt(), 1e-15), "{se}");
    }

    #[test]
    fn bootstrap_is_seeded_and_tests_the_margin() {
        // 200 items, the candidate is worse on 40 and better on 10: drop = 30/200 = 0.15.
        let mut d = vec![0.0; 150];
        d.extend(std::iter::repeat_n(1.0, 40));
        d.extend(std::iter::repeat_n(-1.0, 10));
        let run = |margin: f64, seed: u64| {
            let mut rng = Rng::for_purpose(seed, "test");
            paired_bootstrap(&d, margin, 2000, 0.9, &mut rng).expect("non-empty")
        };
        let a = run(0.0, 1);
        assert_eq!(a, run(0.0, 1), "same seed, same result");
        assert!((a.drop - 0.15).abs() < 1e-15);
        // SE of the drop ≈ 0.034 (90% interval ≈ 0.15 ± 0.056): a drop of 0.15 is far from 0 …
        assert!(a.p_value < 0.001, "{}", a.p_value);
        assert!(
            a.ci_low > 0.08 && a.ci_low < 0.11 && a.ci_high > 0.19 && a.ci_high < 0.22,
            "{a:?}"
        );
        // … and not significantly above a margin of 0.15 (p ≈ 0.5) or 0.25 (p ≈ 1).
        let b = run(0.15, 1);
        assert!(b.p_value > 0.3 && b.p_value < 0.7, "{}", b.p_value);
        assert!(run(0.25, 1).p_value > 0.99);
        // The smallest possible p-value is 1/(B + 1).
        assert_eq!(a.p_value, 1.0 / 2001.0);
    }

    #[test]
    fn bootstrap_rejects_empty_and_non_finite() {
        let mut rng = Rng::new(0);
        assert!(paired_bootstrap(&[], 0.0, 10, 0.9, &mut rng).is_none());
        assert!(paired_bootstrap(&[1.0], 0.0, 0, 0.9, &mut rng).is_none());
        assert!(paired_bootstrap(&[1.0, f64::NAN], 0.0, 10, 0.9, &mut rng).is_none());
    }

    #[test]
    fn quantile_interpolates() {
        let xs = [0.0, 1.0, 2.0, 3.0];
        assert_eq!(quantile(&xs, 0.0), 0.0);
        assert_eq!(quantile(&xs, 1.0), 3.0);
        assert_eq!(quantile(&xs, 0.5), 1.5);
    }
}
