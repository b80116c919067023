//! Metric values with standard errors, following lm-evaluation-harness:
//! - a mean metric's standard error is the sample standard deviation (n − 1 in the denominator)
//!   over √n (lm-eval's `mean_stderr`); for a 0/1 metric with mean p that is √(p(1−p)/(n−1));
//!   with fewer than two items it is `None`;
//! - perplexities are corpus-level (lm-eval's `weighted_perplexity` / `bits_per_byte`):
//!   exp(−Σ log p / Σ units), not a mean of per-document perplexities; they get no standard error
//!   (lm-eval bootstraps one; a seeded bootstrap belongs with the paired tests of the gate);
//! - a difference of two means over independent items (refusal − over-refusal) has standard
//!   error √(se₁² + se₂²).
//!
//! Sums run in item order, so results are bit-identical for the same inputs.

use serde::{Deserialize, Serialize};

/// One aggregated metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// Written as a number, or `"inf"`, `"-inf"`, `"nan"` (see [`super::number`]).
    #[serde(with = "super::number::float")]
    pub value: f64,
    #[serde(with = "super::number::option")]
    pub stderr: Option<f64>,
    /// Items it was computed over.
    pub n: usize,
}

/// Mean of per-item values, with lm-eval's standard error of the mean.
pub fn mean(xs: &[f64]) -> Metric {
    let n = xs.len();
    if n == 0 {
        return Metric {
            value: f64::NAN,
            stderr: None,
            n,
        };
    }
    let m = xs.iter().sum::<f64>() / n as f64;
    let stderr = (n >= 2).then(|| {
        let ss: f64 = xs.iter().map(|x| (x - m) * (x - m)).sum();
        (ss / (n - 1) as f64).sqrt() / (n as f64).sqrt()
    });
    Metric {
        value: m,
        stderr,
        n,
    }
}

/// Fraction of `true`, as the mean of 0/1 values.
pub fn proportion(flags: &[bool]) -> Metric {
    let xs: Vec<f64> = flags.iter().map(|b| f64::from(u8::from(*b))).collect();
    mean(&xs)
}

/// `a − b` for means over independent items; `n` is the items of both.
pub fn difference(a: &Metric, b: &Metric) -> Metric {
    Metric {
        value: a.value - b.value,
        stderr: match (a.stderr, b.stderr) {
            (Some(x), Some(y)) => Some((x * x + y * y).sqrt()),
            _ => None,
        },
        n: a.n + b.n,
    }
}

/// exp(−Σ logprob / Σ units): word, byte or token perplexity of a corpus.
pub fn weighted_perplexity(logprobs: &[f64], units: &[usize]) -> Metric {
    Metric {
        value: (-logprobs.iter().sum::<f64>() / total(units)).exp(),
        stderr: None,
        n: logprobs.len(),
    }
}

/// −Σ logprob / Σ bytes / ln 2.
pub fn bits_per_byte(logprobs: &[f64], bytes: &[usize]) -> Metric {
    Metric {
        value: -logprobs.iter().sum::<f64>() / total(bytes) / std::f64::consts::LN_2,
        stderr: None,
        n: logprobs.len(),
    }
}

fn total(units: &[usize]) -> f64 {
    units.iter().map(|u| *u as f64).sum()
}

/// Words as lm-eval counts them: `len(re.split(r"\s+", text))`, i.e. one more than the number
/// of whitespace runs (so leading or trailing whitespace adds an empty "word", as in Python).
/// Whitespace is Unicode whitespace plus the separators U+001C–U+001F, which Python's `\s`
/// also matches.
pub fn count_words(text: &str) -> usize {
    let mut runs = 0;
    let mut in_run = false;
    for c in text.chars() {
        let ws = c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c);
        if ws && !in_run {
            runs += 1;
        }
        in_run = ws;
    }
    runs + 1
}

/// UTF-8 bytes (lm-eval's `len(doc.encode("utf-8"))`).
pub fn count_bytes(text: &str) -> usize {
    text.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn proportion_stderr_is_lm_eval_mean_stderr() {
        // 3 of 4: p = 0.75, sqrt(p(1-p)/(n-1)) = sqrt(0.1875/3) = 0.25.
        let m = proportion(&[true, true, false, true]);
        assert_eq!(m.value, 0.75);
        assert!(close(m.stderr.unwrap(), 0.25));
        assert_eq!(m.n, 4);
        let one = proportion(&[true]);
        assert_eq!((one.value, one.stderr), (1.0, None));
        assert!(mean(&[]).value.is_nan());
    }

    #[test]
    fn mean_stderr_on_known_values() {
        // 1, 2, 3, 4: mean 2.5, sample variance 5/3, stderr sqrt(5/3)/2.
        let m = mean(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m.value, 2.5);
        assert!(close(m.stderr.unwrap(), (5.0f64 / 3.0).sqrt() / 2.0));
    }

    #[test]
    fn difference_of_independent_means() {
        let a = proportion(&[true, true, false, true]);
        let b = proportion(&[false, false, false, true]);
        let d = difference(&a, &b);
        assert_eq!(d.value, 0.5);
        assert!(close(d.stderr.unwrap(), (0.25f64 * 0.25 * 2.0).sqrt()));
        assert_eq!(d.n, 8);
    }

    #[test]
    fn perplexity_formulas() {
        // Two documents: logprobs -2 and -4 over 3 and 5 units: exp(6/8).
        let p = weighted_perplexity(&[-2.0, -4.0], &[3, 5]);
        assert!(close(p.value, (0.75f64).exp()));
        let b = bits_per_byte(&[-2.0, -4.0], &[3, 5]);
        assert!(close(b.value, 0.75 / std::f64::consts::LN_2));
        // bits per byte is log2 of byte perplexity.
        assert!(close(b.value, p.value.log2()));
    }

    #[test]
    fn words_like_python_re_split() {
        assert_eq!(count_words("a b  c"), 3);
        assert_eq!(count_words(" a"), 2);
        assert_eq!(count_words("a\n\tb "), 3);
        assert_eq!(count_words(""), 1);
        assert_eq!(count_words("发热 是"), 2);
        assert_eq!(count_bytes("发热"), 6);
    }
}
