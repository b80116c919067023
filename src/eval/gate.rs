//! The promotion gate: a pure function from (gates, candidate scores, channel holder scores) to
//! a [`Decision`] that lists every gate with its values, p-value, verdict and reason. No I/O, no
//! model: the caller loads the results and the promotion history, this module only judges.
//!
//! # Inputs
//!
//! [`Scores`] is the gate's view of one results artifact: its `status` (only `complete` results
//! can pass), each metric's value and direction (`suite/task/metric` → value, higher or lower is
//! better), and for each metric the per-item outcomes keyed by a stable item id (the document
//! hash), each a binary `correct` and/or a float `score`. Per-item outcomes are keyed by metric,
//! not by task, because a task's metrics disagree per item (`acc` and `acc_norm` pick different
//! choices).
//!
//! # Rules
//!
//! Every gate is judged, in order; the decision passes when every gate passes (so a list of no
//! gates passes). Callers pass the gates of the stage being judged
//! (`spec.gates.iter().filter(|g| g.stage == stage)`).
//!
//! - **Incomplete results** (status not `complete`) fail every gate.
//! - **A missing metric fails**, as does a NaN (`nan`: no number at all).
//! - **`Threshold { min, max }`**: passes when `value ≥ min` and `value ≤ max` (both inclusive;
//!   an absent bound is not checked). An infinite value is compared like any other: `inf`
//!   passes every `min` and fails every `max`, `-inf` the reverse (a `word_perplexity` of `inf`,
//!   from a text without spaces, fails `max: 50` as it should).
//! - **`NoWorseThan { channel, max_drop, test, alpha }`** compares the candidate with the
//!   checkpoint that currently holds `channel`, on the **same items**:
//!   - nobody holds the channel yet: the gate passes with the note "first promotion on channel";
//!   - the holder's results are incomplete, lack the metric, disagree on its direction, or either
//!     side has no per-item outcomes for it: the gate fails (nothing sound can be compared);
//!   - items are matched by id; items present on one side only are reported (counts and the
//!     first few ids) and left out; no shared item at all fails the gate;
//!   - with `s = +1` when higher is better and `−1` when lower is better, the **drop** on the
//!     `n` shared items is `Δ̂ = s · (mean(holder) − mean(candidate))` (positive = candidate
//!     worse);
//!   - the gate **fails exactly when `Δ̂ > max_drop` and `p ≤ alpha`**, with `p` from the test:
//!     - `mcnemar` (binary `correct` on every shared item, on both sides): `b` = items the holder
//!       gets right and the candidate wrong, `c` = the reverse (with "right" flipped for
//!       lower-is-better metrics), `Δ̂ = (b − c)/n`. H0: both checkpoints have the same
//!       probability of a right answer on this item population (`b ~ Binomial(b + c, ½)` given
//!       `b + c`); H1: they differ; `p` is the exact two-sided McNemar p-value
//!       (`stats::mcnemar_exact`), as statsmodels' `mcnemar(exact=True)` reports it. Because the
//!       gate only fails on the side where the candidate is worse, the chance of failing a
//!       candidate that is truly as good as the holder is at most `alpha / 2`. The margin enters
//!       through `Δ̂ > max_drop`, not through the null hypothesis;
//!     - `paired_bootstrap`: per-item differences `d_i = s · (holder_i − candidate_i)` of the
//!       `score` values (or of `correct` as 0/1 when some shared item has no score). H0: the
//!       true drop `Δ ≤ max_drop`; H1: `Δ > max_drop`; `p = (1 + #{Δ*_b ≤ max_drop}) / (B + 1)`
//!       over `B` seeded resamples (`stats::paired_bootstrap`), i.e. the gate fails when the
//!       one-sided `1 − alpha` percentile lower confidence bound of the drop exceeds `max_drop`.
//!       The reported interval is the central `1 − 2·alpha` one, whose lower end is that bound;
//!     - `mcnemar` asked for a metric without binary outcomes on every shared item (a float
//!       metric such as a perplexity, where the spec's default test does not fit) uses the paired
//!       bootstrap instead and says so in the reason.
//!
//! The bootstrap stream is `Rng::for_purpose(options.seed, "gate/paired_bootstrap/CHANNEL/METRIC")`
//! with a fixed default seed, so the same pair of results always gets the same decision,
//! independently of the training seed.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::stats;
use crate::rng::Rng;
use crate::spec::{Gate, GateRule, PairedTest};

/// Whether a results artifact covers every item of every task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Complete,
    /// Interrupted or partial (some tasks or items were not scored).
    Incomplete,
    Failed,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Complete => "complete",
            Status::Incomplete => "incomplete",
            Status::Failed => "failed",
        }
    }
}

/// Which way a metric improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Higher,
    Lower,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metric {
    #[serde(with = "super::number::float")]
    pub value: f64,
    pub better: Better,
}

/// One item's outcome for one metric.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correct: Option<bool>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "super::number::option"
    )]
    pub score: Option<f64>,
}

/// The gate's view of one results artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scores {
    pub status: Status,
    /// `suite/task/metric` → value.
    pub metrics: BTreeMap<String, Metric>,
    /// `suite/task/metric` → item id (document hash) → outcome.
    #[serde(default)]
    pub items: BTreeMap<String, BTreeMap<String, Outcome>>,
}

/// The scores of the checkpoints currently holding the channels that comparison gates name.
#[derive(Debug, Clone)]
pub enum Holders<'a> {
    /// The holder of the one channel the gates compare against (`None`: nobody holds it yet).
    /// Comparison gates naming two or more channels fail: use `PerChannel`.
    One(Option<&'a Scores>),
    /// Channel → its holder's scores (`None`: nobody holds it yet). A comparison gate whose
    /// channel is not a key fails, so a forgotten channel is never taken for a first promotion.
    PerChannel(BTreeMap<String, Option<&'a Scores>>),
}

/// Knobs of the paired bootstrap. Its cost is `resamples × shared items` draws (10⁸ for
/// 10 000 items at the default 10 000 resamples, well under a second in a release build); the
/// smallest p-value it can report is `1 / (resamples + 1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub seed: u64,
    pub resamples: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            seed: 0,
            resamples: 10_000,
        }
    }
}

/// How a comparison gate compared.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub channel: String,
    /// The test that ran (may differ from the gate's when `mcnemar` fell back to the bootstrap).
    pub test: PairedTest,
    /// Items scored on both sides.
    pub shared: usize,
    /// Items only the candidate's results have, and only the holder's (counts, then the first
    /// few ids of each).
    pub only_candidate: usize,
    pub only_holder: usize,
    pub only_candidate_ids: Vec<String>,
    pub only_holder_ids: Vec<String>,
    /// Means on the shared items (`"nan"` when the comparison stopped before computing them).
    #[serde(serialize_with = "super::number::float::serialize")]
    pub candidate_mean: f64,
    #[serde(serialize_with = "super::number::float::serialize")]
    pub holder_mean: f64,
    /// Oriented drop on the shared items (positive = candidate worse).
    #[serde(serialize_with = "super::number::float::serialize")]
    pub drop: f64,
    /// McNemar's discordant counts: holder right / candidate wrong, and the reverse.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discordant: Option<[u64; 2]>,
    /// Bootstrap interval of the drop and its coverage.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "super::number::pair::serialize"
    )]
    pub ci: Option<[f64; 2]>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "super::number::option::serialize"
    )]
    pub ci_level: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateOutcome {
    pub metric: String,
    pub stage: String,
    /// The rule in words, e.g. `>= 0.6` or `no worse than channel `prod` by more than 0.02 …`.
    pub rule: String,
    /// Values are numbers, or `"inf"`, `"-inf"`, `"nan"` ([`super::number`]).
    #[serde(serialize_with = "super::number::option::serialize")]
    pub value: Option<f64>,
    #[serde(serialize_with = "super::number::option::serialize")]
    pub holder_value: Option<f64>,
    #[serde(serialize_with = "super::number::option::serialize")]
    pub p_value: Option<f64>,
    pub passed: bool,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Comparison>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub passed: bool,
    pub gates: Vec<GateOutcome>,
}

impl Decision {
    pub fn failed(&self) -> impl Iterator<Item = &GateOutcome> {
        self.gates.iter().filter(|g| !g.passed)
    }
}

/// How many ids of unmatched items a comparison lists.
const LISTED_IDS: usize = 5;

/// Judge `gates` for `candidate` against `holder`, the scores of the checkpoint currently
/// holding the channel the comparison gates name (`None`: nobody holds it yet), with the default
/// bootstrap options. See the module docs for the rules.
pub fn decide(gates: &[Gate], candidate: &Scores, holder: Option<&Scores>) -> Decision {
    decide_with(gates, candidate, &Holders::One(holder), &Options::default())
}

/// [`decide`] with a holder per channel and explicit bootstrap options.
pub fn decide_with(
    gates: &[Gate],
    candidate: &Scores,
    holders: &Holders<'_>,
    options: &Options,
) -> Decision {
    let channels: BTreeSet<&str> = gates
        .iter()
        .filter_map(|g| match &g.rule {
            GateRule::NoWorseThan { channel, .. } => Some(channel.as_str()),
            GateRule::Threshold { .. } => None,
        })
        .collect();
    let outcomes: Vec<GateOutcome> = gates
        .iter()
        .map(|g| judge(g, candidate, holders, &channels, options))
        .collect();
    Decision {
        passed: outcomes.iter().all(|o| o.passed),
        gates: outcomes,
    }
}

/// A gate rule in words.
pub fn describe(rule: &GateRule) -> String {
    match rule {
        GateRule::Threshold { min, max } => match (min, max) {
            (Some(lo), Some(hi)) => format!(">= {lo} and <= {hi}"),
            (Some(lo), None) => format!(">= {lo}"),
            (None, Some(hi)) => format!("<= {hi}"),
            (None, None) => "no condition".into(),
        },
        GateRule::NoWorseThan {
            channel,
            max_drop,
            test,
            alpha,
        } => format!(
            "no worse than channel `{channel}` by more than {max_drop} ({}, alpha {alpha})",
            test_name(*test)
        ),
    }
}

fn test_name(t: PairedTest) -> &'static str {
    match t {
        PairedTest::Mcnemar => "mcnemar",
        PairedTest::PairedBootstrap => "paired_bootstrap",
    }
}

fn num(x: f64) -> String {
    super::number::show(x, 4)
}

fn pval(p: f64) -> String {
    if p != 0.0 && p < 1e-4 {
        format!("{p:.2e}")
    } else {
        format!("{p:.4}")
    }
}

fn judge(
    gate: &Gate,
    candidate: &Scores,
    holders: &Holders<'_>,
    channels: &BTreeSet<&str>,
    options: &Options,
) -> GateOutcome {
    let metric = candidate.metrics.get(&gate.metric);
    let mut out = GateOutcome {
        metric: gate.metric.clone(),
        stage: gate.stage.clone(),
        rule: describe(&gate.rule),
        value: metric.map(|m| m.value),
        holder_value: None,
        p_value: None,
        passed: false,
        reason: String::new(),
        comparison: None,
    };
    if candidate.status != Status::Complete {
        out.reason = format!(
            "the candidate's results are {} (not complete), so every gate fails",
            candidate.status.name()
        );
        return out;
    }
    let Some(m) = metric else {
        out.reason = format!(
            "metric `{}` is missing from the candidate's results",
            gate.metric
        );
        return out;
    };
    if m.value.is_nan() {
        out.reason = format!(
            "the candidate's `{}` is nan, not a number, so no gate on it can pass",
            gate.metric
        );
        return out;
    }
    match &gate.rule {
        GateRule::Threshold { min, max } => {
            let v = m.value;
            let mut why = Vec::new();
            let mut ok = true;
            if let Some(lo) = min {
                if v >= *lo {
                    why.push(format!("{} >= min {lo}", num(v)));
                } else {
                    ok = false;
                    why.push(format!("{} < min {lo}", num(v)));
                }
            }
            if let Some(hi) = max {
                if v <= *hi {
                    why.push(format!("{} <= max {hi}", num(v)));
                } else {
                    ok = false;
                    why.push(format!("{} > max {hi}", num(v)));
                }
            }
            out.passed = ok && (min.is_some() || max.is_some());
            out.reason = if why.is_empty() {
                "the threshold has neither `min` nor `max`".into()
            } else {
                why.join(", ")
            };
        }
        GateRule::NoWorseThan {
            channel,
            max_drop,
            test,
            alpha,
        } => {
            let holder = match holders {
                Holders::One(_) if channels.len() > 1 => {
                    out.reason = format!(
                        "the gates compare against {} channels ({}) but one holder's scores were given",
                        channels.len(),
                        channels.iter().copied().collect::<Vec<_>>().join(", ")
                    );
                    return out;
                }
                Holders::One(h) => *h,
                Holders::PerChannel(map) => match map.get(channel) {
                    Some(h) => *h,
                    None => {
                        out.reason =
                            format!("no holder information was given for channel `{channel}`");
                        return out;
                    }
                },
            };
            compare(
                &mut out,
                m,
                candidate,
                holder,
                &Compare {
                    channel,
                    max_drop: *max_drop,
                    test: *test,
                    alpha: *alpha,
                },
                options,
            );
        }
    }
    out
}

struct Compare<'a> {
    channel: &'a str,
    max_drop: f64,
    test: PairedTest,
    alpha: f64,
}

/// Matched per-item values on the shared items, plus what did not match.
struct Paired<'a> {
    shared: Vec<(&'a Outcome, &'a Outcome)>,
    only_candidate: Vec<&'a str>,
    only_holder: Vec<&'a str>,
}

fn pair<'a>(
    cand: &'a BTreeMap<String, Outcome>,
    hold: &'a BTreeMap<String, Outcome>,
) -> Paired<'a> {
    let mut p = Paired {
        shared: Vec::new(),
        only_candidate: Vec::new(),
        only_holder: Vec::new(),
    };
    for (id, c) in cand {
        match hold.get(id) {
            Some(h) => p.shared.push((c, h)),
            None => p.only_candidate.push(id),
        }
    }
    p.only_holder = hold
        .keys()
        .filter(|id| !cand.contains_key(*id))
        .map(String::as_str)
        .collect();
    p
}

fn compare(
    out: &mut GateOutcome,
    m: &Metric,
    candidate: &Scores,
    holder: Option<&Scores>,
    c: &Compare<'_>,
    options: &Options,
) {
    let channel = c.channel;
    let metric = out.metric.clone();
    let Some(h) = holder else {
        out.passed = true;
        out.reason = format!("first promotion on channel `{channel}`: nothing to compare against");
        return;
    };
    out.holder_value = h.metrics.get(&metric).map(|x| x.value);
    if h.status != Status::Complete {
        out.reason = format!(
            "the results of the holder of `{channel}` are {} (not complete)",
            h.status.name()
        );
        return;
    }
    let Some(hm) = h.metrics.get(&metric) else {
        out.reason = format!(
            "metric `{metric}` is missing from the results of the holder of `{channel}`; evaluate the holder with the current suite"
        );
        return;
    };
    if hm.better != m.better {
        out.reason = format!(
            "`{metric}` is {:?}-is-better for the candidate but {:?}-is-better for the holder of `{channel}`",
            m.better, hm.better
        );
        return;
    }
    let (Some(ci), Some(hi)) = (candidate.items.get(&metric), h.items.get(&metric)) else {
        let side = if candidate.items.contains_key(&metric) {
            format!("the holder of `{channel}`")
        } else {
            "the candidate".into()
        };
        out.reason =
            format!("{side} has no per-item outcomes for `{metric}`, which the paired test needs");
        return;
    };
    let p = pair(ci, hi);
    let unmatched = unmatched_note(&p);
    let n = p.shared.len();
    if n == 0 {
        out.reason = format!("no item is scored in both results{unmatched}");
        return;
    }
    let sign = match m.better {
        Better::Higher => 1.0,
        Better::Lower => -1.0,
    };
    let binary: Option<Vec<(bool, bool)>> = p
        .shared
        .iter()
        .map(|(c, h)| Some((c.correct?, h.correct?)))
        .collect();
    let scores: Option<Vec<(f64, f64)>> = p
        .shared
        .iter()
        .map(|(c, h)| Some((c.score?, h.score?)))
        .collect();
    let mut note = String::new();
    let test = match (c.test, &binary) {
        (PairedTest::Mcnemar, Some(_)) => PairedTest::Mcnemar,
        (PairedTest::Mcnemar, None) => {
            note = "; mcnemar needs a binary `correct` on every shared item, so the paired bootstrap ran".into();
            PairedTest::PairedBootstrap
        }
        (PairedTest::PairedBootstrap, _) => PairedTest::PairedBootstrap,
    };
    let mut cmp = Comparison {
        channel: channel.to_string(),
        test,
        shared: n,
        only_candidate: p.only_candidate.len(),
        only_holder: p.only_holder.len(),
        only_candidate_ids: p
            .only_candidate
            .iter()
            .take(LISTED_IDS)
            .map(|s| s.to_string())
            .collect(),
        only_holder_ids: p
            .only_holder
            .iter()
            .take(LISTED_IDS)
            .map(|s| s.to_string())
            .collect(),
        candidate_mean: f64::NAN,
        holder_mean: f64::NAN,
        drop: f64::NAN,
        discordant: None,
        ci: None,
        ci_level: None,
    };
    let p_value = match (test, binary) {
        (PairedTest::Mcnemar, Some(pairs)) => {
            let good = |x: bool| if m.better == Better::Higher { x } else { !x };
            let (mut b, mut cc) = (0u64, 0u64);
            let (mut c_right, mut h_right) = (0u64, 0u64);
            for (cv, hv) in pairs {
                c_right += u64::from(cv);
                h_right += u64::from(hv);
                match (good(hv), good(cv)) {
                    (true, false) => b += 1,
                    (false, true) => cc += 1,
                    _ => {}
                }
            }
            cmp.candidate_mean = c_right as f64 / n as f64;
            cmp.holder_mean = h_right as f64 / n as f64;
            cmp.drop = (b as f64 - cc as f64) / n as f64;
            cmp.discordant = Some([b, cc]);
            stats::mcnemar_exact(b, cc)
        }
        (_, binary) => {
            let values: Vec<(f64, f64)> = match (scores, binary) {
                (Some(s), _) => s,
                (None, Some(b)) => b
                    .into_iter()
                    .map(|(c, h)| (f64::from(u8::from(c)), f64::from(u8::from(h))))
                    .collect(),
                (None, None) => {
                    out.reason = format!(
                        "some shared items of `{metric}` lack a `score` (or a `correct`) on one side, so they cannot be paired{unmatched}"
                    );
                    out.comparison = Some(cmp);
                    return;
                }
            };
            if values.iter().any(|(c, h)| !c.is_finite() || !h.is_finite()) {
                out.reason =
                    format!("some per-item scores of `{metric}` are not finite numbers{unmatched}");
                out.comparison = Some(cmp);
                return;
            }
            let diffs: Vec<f64> = values.iter().map(|(c, h)| sign * (h - c)).collect();
            let cs: Vec<f64> = values.iter().map(|(c, _)| *c).collect();
            let hs: Vec<f64> = values.iter().map(|(_, h)| *h).collect();
            cmp.candidate_mean = stats::mean(&cs).unwrap_or(f64::NAN);
            cmp.holder_mean = stats::mean(&hs).unwrap_or(f64::NAN);
            let level = 1.0 - 2.0 * c.alpha;
            let mut rng = Rng::for_purpose(
                options.seed,
                &format!("gate/paired_bootstrap/{channel}/{metric}"),
            );
            let Some(bs) =
                stats::paired_bootstrap(&diffs, c.max_drop, options.resamples, level, &mut rng)
            else {
                out.reason = format!(
                    "the paired bootstrap could not run (resamples = {})",
                    options.resamples
                );
                out.comparison = Some(cmp);
                return;
            };
            cmp.drop = bs.drop;
            cmp.ci = Some([bs.ci_low, bs.ci_high]);
            cmp.ci_level = Some(level);
            bs.p_value
        }
    };
    out.p_value = Some(p_value);
    let drop = cmp.drop;
    let means = format!(
        "{} vs {} on {n} shared item{}",
        num(cmp.candidate_mean),
        num(cmp.holder_mean),
        if n == 1 { "" } else { "s" }
    );
    let tname = test_name(test);
    let significant = p_value <= c.alpha;
    let too_big = drop > c.max_drop;
    out.passed = !(too_big && significant);
    out.reason = if too_big && significant {
        format!(
            "worse than `{channel}` by {} ({means}), more than max_drop {}, and significant ({tname} p = {} <= alpha {})",
            num(drop),
            c.max_drop,
            pval(p_value),
            c.alpha
        )
    } else if too_big {
        format!(
            "drop vs `{channel}` of {} ({means}) exceeds max_drop {} but is not significant ({tname} p = {} > alpha {})",
            num(drop),
            c.max_drop,
            pval(p_value),
            c.alpha
        )
    } else {
        format!(
            "drop vs `{channel}` is {} ({means}), within max_drop {} ({tname} p = {})",
            num(drop),
            c.max_drop,
            pval(p_value)
        )
    };
    out.reason.push_str(&note);
    out.reason.push_str(&unmatched);
    out.comparison = Some(cmp);
}

fn unmatched_note(p: &Paired<'_>) -> String {
    let list = |ids: &[&str]| {
        let shown: Vec<&str> = ids.iter().take(LISTED_IDS).copied().collect();
        let more = if ids.len() > LISTED_IDS { ", …" } else { "" };
        format!("{}{more}", shown.join(", "))
    };
    let mut parts = Vec::new();
    if !p.only_candidate.is_empty() {
        parts.push(format!(
            "{} item(s) only in the candidate's results ({})",
            p.only_candidate.len(),
            list(&p.only_candidate)
        ));
    }
    if !p.only_holder.is_empty() {
        parts.push(format!(
            "{} item(s) only in the holder's results ({})",
            p.only_holder.len(),
            list(&p.only_holder)
        ));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("; left out: {}", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRIC: &str = "medical/mc/acc";

    fn threshold(min: Option<f64>, max: Option<f64>) -> Gate {
        Gate {
            metric: METRIC.into(),
            stage: "sft".into(),
            rule: GateRule::Threshold { min, max },
        }
    }

    fn vs(channel: &str, max_drop: f64, test: PairedTest, alpha: f64) -> Gate {
        Gate {
            metric: METRIC.into(),
            stage: "sft".into(),
            rule: GateRule::NoWorseThan {
                channel: channel.into(),
                max_drop,
                test,
                alpha,
            },
        }
    }

    fn scores(value: f64) -> Scores {
        let mut metrics = BTreeMap::new();
        metrics.insert(
            METRIC.to_string(),
            Metric {
                value,
                better: Better::Higher,
            },
        );
        Scores {
            status: Status::Complete,
            metrics,
            items: BTreeMap::new(),
        }
    }

    /// Scores whose per-item `correct` outcomes are `right` (item ids `d000`, `d001`, …).
    fn binary(right: &[bool]) -> Scores {
        let mut s = scores(right.iter().filter(|&&r| r).count() as f64 / right.len() as f64);
        let items = right
            .iter()
            .enumerate()
            .map(|(i, &r)| {
                (
                    format!("d{i:03}"),
                    Outcome {
                        correct: Some(r),
                        score: None,
                    },
                )
            })
            .collect();
        s.items.insert(METRIC.into(), items);
        s
    }

    fn floats(values: &[f64]) -> Scores {
        let mut s = scores(stats::mean(values).unwrap_or(0.0));
        let items = values
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                (
                    format!("d{i:03}"),
                    Outcome {
                        correct: None,
                        score: Some(v),
                    },
                )
            })
            .collect();
        s.items.insert(METRIC.into(), items);
        s
    }

    /// Holder right on all `n` items; the candidate wrong on the first `b`, then right; and
    /// the candidate right where the holder is wrong on `c` extra items at the end.
    fn discordant(n: usize, b: usize, c: usize) -> (Scores, Scores) {
        let holder: Vec<bool> = (0..n).map(|i| i < n - c).collect();
        let cand: Vec<bool> = (0..n).map(|i| i >= b).collect();
        (binary(&cand), binary(&holder))
    }

    #[test]
    fn threshold_min_max_inclusive() {
        let d = decide(&[threshold(Some(0.6), None)], &scores(0.6), None);
        assert!(d.passed, "{d:?}");
        assert_eq!(d.gates[0].reason, "0.6000 >= min 0.6");
        assert_eq!(d.gates[0].rule, ">= 0.6");
        let d = decide(&[threshold(Some(0.6), None)], &scores(0.59), None);
        assert!(!d.passed);
        assert_eq!(d.gates[0].reason, "0.5900 < min 0.6");
        let d = decide(&[threshold(None, Some(0.1))], &scores(0.2), None);
        assert!(!d.passed);
        let g = threshold(Some(0.5), Some(0.9));
        assert!(decide(std::slice::from_ref(&g), &scores(0.9), None).passed);
        assert!(!decide(&[g], &scores(0.95), None).passed);
    }

    #[test]
    fn missing_metric_fails() {
        let mut s = scores(0.9);
        s.metrics.clear();
        let d = decide(&[threshold(Some(0.1), None)], &s, None);
        assert!(!d.passed);
        assert_eq!(d.gates[0].value, None);
        assert!(
            d.gates[0].reason.contains("missing"),
            "{}",
            d.gates[0].reason
        );
        // Also for comparisons, even when nobody holds the channel.
        let d = decide(&[vs("prod", 0.0, PairedTest::Mcnemar, 0.05)], &s, None);
        assert!(!d.passed);
    }

    #[test]
    fn nan_value_fails_and_infinities_meet_their_bounds() {
        for g in [threshold(None, Some(10.0)), threshold(Some(0.0), None)] {
            let d = decide(&[g], &scores(f64::NAN), None);
            assert!(!d.passed);
            assert!(d.gates[0].reason.contains("not a number"));
        }
        let judge = |x: f64, min, max| decide(&[threshold(min, max)], &scores(x), None);
        let d = judge(f64::INFINITY, None, Some(50.0));
        assert!(!d.passed);
        assert_eq!(d.gates[0].reason, "inf > max 50");
        assert!(judge(f64::INFINITY, Some(0.5), None).passed);
        assert!(!judge(f64::NEG_INFINITY, Some(0.5), None).passed);
        assert!(judge(f64::NEG_INFINITY, None, Some(0.5)).passed);
    }

    #[test]
    fn incomplete_results_fail_every_gate() {
        let mut s = scores(0.9);
        s.status = Status::Incomplete;
        let gates = [
            threshold(Some(0.1), None),
            vs("prod", 0.0, PairedTest::Mcnemar, 0.05),
        ];
        let d = decide(&gates, &s, None);
        assert!(!d.passed);
        assert_eq!(d.gates.len(), 2);
        for g in &d.gates {
            assert!(!g.passed);
            assert_eq!(g.value, Some(0.9), "values are still reported");
            assert!(g.reason.contains("incomplete"), "{}", g.reason);
        }
    }

    #[test]
    fn no_gates_pass_vacuously() {
        let d = decide(&[], &scores(0.0), None);
        assert!(d.passed && d.gates.is_empty());
    }

    #[test]
    fn first_promotion_on_a_channel_passes_with_a_note() {
        let (cand, _) = discordant(50, 10, 0);
        let d = decide(&[vs("prod", 0.0, PairedTest::Mcnemar, 0.05)], &cand, None);
        assert!(d.passed);
        assert_eq!(
            d.gates[0].reason,
            "first promotion on channel `prod`: nothing to compare against"
        );
        assert_eq!(d.gates[0].p_value, None);
    }

    #[test]
    fn mcnemar_significant_drop_fails() {
        // b = 10, c = 2 on 100 items: drop 0.08, p = 158/4096 = 0.0386 < 0.05.
        let (cand, holder) = discordant(100, 10, 2);
        let gate = vs("prod", 0.02, PairedTest::Mcnemar, 0.05);
        let d = decide(std::slice::from_ref(&gate), &cand, Some(&holder));
        let g = &d.gates[0];
        assert!(!d.passed, "{g:?}");
        let cmp = g.comparison.as_ref().expect("comparison");
        assert_eq!(cmp.discordant, Some([10, 2]));
        assert!((cmp.drop - 0.08).abs() < 1e-12);
        assert!((g.p_value.unwrap_or(1.0) - 158.0 / 4096.0).abs() < 1e-12);
        assert_eq!(g.holder_value, Some(0.98));
        assert_eq!(
            g.reason,
            "worse than `prod` by 0.0800 (0.9000 vs 0.9800 on 100 shared items), more than max_drop 0.02, and significant (mcnemar p = 0.0386 <= alpha 0.05)"
        );
        // The same drop at alpha 0.01 is not significant: pass.
        let d = decide(
            &[vs("prod", 0.02, PairedTest::Mcnemar, 0.01)],
            &cand,
            Some(&holder),
        );
        assert!(d.passed);
        assert!(d.gates[0].reason.contains("not significant"));
        // A margin larger than the drop passes whatever the p-value.
        let d = decide(
            &[vs("prod", 0.1, PairedTest::Mcnemar, 0.05)],
            &cand,
            Some(&holder),
        );
        assert!(d.passed);
        assert!(d.gates[0].reason.contains("within max_drop"));
    }

    #[test]
    fn mcnemar_insignificant_drop_passes() {
        // b = 5, c = 3: drop 0.02 > max_drop 0 but p = 0.7266.
        let (cand, holder) = discordant(100, 5, 3);
        let d = decide(
            &[vs("prod", 0.0, PairedTest::Mcnemar, 0.05)],
            &cand,
            Some(&holder),
        );
        assert!(d.passed, "{:?}", d.gates[0]);
        assert!((d.gates[0].p_value.unwrap_or(0.0) - 0.7265625).abs() < 1e-12);
    }

    #[test]
    fn improvement_passes_even_when_significant() {
        let (holder, cand) = {
            let (a, b) = discordant(100, 20, 0);
            (a, b)
        };
        let d = decide(
            &[vs("prod", 0.0, PairedTest::Mcnemar, 0.05)],
            &cand,
            Some(&holder),
        );
        assert!(d.passed);
        assert!(d.gates[0].p_value.unwrap_or(1.0) < 1e-5);
    }

    #[test]
    fn lower_is_better_flips_the_drop() {
        // `correct` marks an over-refusal (lower is better): the candidate refuses 12 more.
        let (holder, cand) = discordant(100, 12, 0);
        let mut holder = holder;
        let mut cand = cand;
        for s in [&mut holder, &mut cand] {
            if let Some(m) = s.metrics.get_mut(METRIC) {
                m.better = Better::Lower;
            }
        }
        let d = decide(
            &[vs("prod", 0.0, PairedTest::Mcnemar, 0.05)],
            &cand,
            Some(&holder),
        );
        assert!(!d.passed, "{:?}", d.gates[0]);
        let cmp = d.gates[0].comparison.as_ref().expect("comparison");
        assert!((cmp.drop - 0.12).abs() < 1e-12);
        // Orientation mismatch between the two results fails.
        if let Some(m) = holder.metrics.get_mut(METRIC) {
            m.better = Better::Higher;
        }
        let d = decide(
            &[vs("prod", 0.0, PairedTest::Mcnemar, 0.05)],
            &cand,
            Some(&holder),
        );
        assert!(!d.passed);
        assert!(d.gates[0].reason.contains("is-better"));
    }

    #[test]
    fn bootstrap_significant_vs_insignificant() {
        // 200 items; the candidate loses 0.3 on 60 of them: drop 0.09, SE ≈ 0.0095.
        let holder: Vec<f64> = (0..200).map(|i| 0.5 + (i % 7) as f64 * 0.05).collect();
        let big: Vec<f64> = holder
            .iter()
            .enumerate()
            .map(|(i, h)| if i % 10 < 3 { h - 0.3 } else { *h })
            .collect();
        let gate = vs("prod", 0.05, PairedTest::PairedBootstrap, 0.05);
        let d = decide(
            std::slice::from_ref(&gate),
            &floats(&big),
            Some(&floats(&holder)),
        );
        let g = &d.gates[0];
        assert!(!d.passed, "{g:?}");
        assert!(g.p_value.unwrap_or(1.0) < 0.01);
        let cmp = g.comparison.as_ref().expect("comparison");
        assert!((cmp.drop - 0.09).abs() < 1e-12);
        assert_eq!(cmp.ci_level, Some(0.9));
        let [lo, hi] = cmp.ci.expect("ci");
        assert!(lo > 0.05 && hi < 0.12, "{lo} {hi}");
        // Deterministic: the same inputs give the same p-value.
        let again = decide(&[gate], &floats(&big), Some(&floats(&holder)));
        assert_eq!(again, d);
        // A noisy drop of 0.06 on 20 items, max_drop 0.05: not significant.
        let holder: Vec<f64> = (0..20).map(|i| (i % 5) as f64 * 0.2).collect();
        let small: Vec<f64> = holder
            .iter()
            .enumerate()
            .map(|(i, h)| match i % 4 {
                0 => h - 0.6,
                1 => h + 0.3,
                _ => *h,
            })
            .collect();
        let d = decide(
            &[vs("prod", 0.05, PairedTest::PairedBootstrap, 0.05)],
            &floats(&small),
            Some(&floats(&holder)),
        );
        let g = &d.gates[0];
        assert!(d.passed, "{g:?}");
        assert!(g.p_value.unwrap_or(0.0) > 0.3, "{g:?}");
        assert!(g.reason.contains("not significant"), "{}", g.reason);
    }

    #[test]
    fn mcnemar_on_float_scores_falls_back_to_the_bootstrap() {
        let holder = floats(&[1.0; 40]);
        let cand = floats(&[0.5; 40]);
        let d = decide(
            &[vs("prod", 0.1, PairedTest::Mcnemar, 0.05)],
            &cand,
            Some(&holder),
        );
        let g = &d.gates[0];
        assert!(!d.passed);
        let cmp = g.comparison.as_ref().expect("comparison");
        assert_eq!(cmp.test, PairedTest::PairedBootstrap);
        assert!(g.reason.contains("paired bootstrap ran"), "{}", g.reason);
    }

    #[test]
    fn mismatched_items_are_reported_and_left_out() {
        let (mut cand, mut holder) = discordant(100, 10, 2);
        let extra = Outcome {
            correct: Some(false),
            score: None,
        };
        // Items only one side scored (e.g. the suite changed): reported, not compared.
        if let Some(items) = cand.items.get_mut(METRIC) {
            items.insert("new1".into(), extra);
            items.insert("new2".into(), extra);
        }
        if let Some(items) = holder.items.get_mut(METRIC) {
            items.remove("d050");
        }
        let d = decide(
            &[vs("prod", 0.02, PairedTest::Mcnemar, 0.05)],
            &cand,
            Some(&holder),
        );
        let g = &d.gates[0];
        let cmp = g.comparison.as_ref().expect("comparison");
        assert_eq!(cmp.shared, 99);
        assert_eq!(cmp.only_candidate, 3);
        assert_eq!(cmp.only_holder, 0);
        assert_eq!(cmp.only_candidate_ids, ["d050", "new1", "new2"]);
        assert!(
            g.reason.ends_with(
                "; left out: 3 item(s) only in the candidate's results (d050, new1, new2)"
            ),
            "{}",
            g.reason
        );
        assert_eq!(cmp.discordant, Some([10, 2]));
        // No item in common: fail.
        let other = {
            let mut s = binary(&[true; 5]);
            let items = s.items.remove(METRIC).unwrap_or_default();
            s.items.insert(
                METRIC.into(),
                items
                    .into_iter()
                    .map(|(k, v)| (format!("x{k}"), v))
                    .collect(),
            );
            s
        };
        let d = decide(
            &[vs("prod", 0.02, PairedTest::Mcnemar, 0.05)],
            &cand,
            Some(&other),
        );
        assert!(!d.passed);
        assert!(
            d.gates[0]
                .reason
                .starts_with("no item is scored in both results")
        );
    }

    #[test]
    fn holder_problems_fail_the_comparison() {
        let (cand, holder) = discordant(20, 0, 0);
        let gate = vs("prod", 0.0, PairedTest::Mcnemar, 0.05);
        let mut h = holder.clone();
        h.status = Status::Failed;
        assert!(!decide(std::slice::from_ref(&gate), &cand, Some(&h)).passed);
        let mut h = holder.clone();
        h.metrics.clear();
        let d = decide(std::slice::from_ref(&gate), &cand, Some(&h));
        assert!(!d.passed);
        assert!(
            d.gates[0]
                .reason
                .contains("missing from the results of the holder")
        );
        let mut h = holder.clone();
        h.items.clear();
        let d = decide(std::slice::from_ref(&gate), &cand, Some(&h));
        assert!(!d.passed);
        assert!(d.gates[0].reason.contains("no per-item outcomes"));
        // The equal-scores baseline passes.
        assert!(decide(&[gate], &cand, Some(&holder)).passed);
    }

    #[test]
    fn channels_need_their_own_holder() {
        let (cand, holder) = discordant(20, 0, 0);
        let gates = [
            vs("prod", 0.0, PairedTest::Mcnemar, 0.05),
            vs("staging", 0.0, PairedTest::Mcnemar, 0.05),
        ];
        let d = decide(&gates, &cand, Some(&holder));
        assert!(!d.passed);
        assert!(d.gates[0].reason.contains("2 channels (prod, staging)"));
        let mut map = BTreeMap::new();
        map.insert("prod".to_string(), Some(&holder));
        let d = decide_with(
            &gates,
            &cand,
            &Holders::PerChannel(map.clone()),
            &Options::default(),
        );
        assert!(d.gates[0].passed);
        assert!(
            !d.gates[1].passed,
            "a forgotten channel is not a first promotion"
        );
        map.insert("staging".to_string(), None);
        let d = decide_with(
            &gates,
            &cand,
            &Holders::PerChannel(map),
            &Options::default(),
        );
        assert!(d.passed, "{d:?}");
    }

    #[test]
    fn decision_serializes_every_gate() {
        let (cand, holder) = discordant(100, 10, 2);
        let gates = [
            threshold(Some(0.5), None),
            vs("prod", 0.02, PairedTest::Mcnemar, 0.05),
        ];
        let d = decide(&gates, &cand, Some(&holder));
        let v = serde_json::to_value(&d).expect("json");
        assert_eq!(v["passed"], false);
        assert_eq!(v["gates"].as_array().map(Vec::len), Some(2));
        assert_eq!(v["gates"][0]["passed"], true);
        assert_eq!(v["gates"][0]["holder_value"], serde_json::Value::Null);
        assert_eq!(v["gates"][1]["comparison"]["discordant"][0], 10);
        assert_eq!(v["gates"][1]["comparison"]["test"], "mcnemar");
        assert_eq!(d.failed().count(), 1);
    }

    #[test]
    fn scores_round_trip_through_json() {
        let (cand, _) = discordant(3, 1, 0);
        let text = serde_json::to_string(&cand).expect("json");
        assert!(text.contains(r#""d000":{"correct":false}"#), "{text}");
        let back: Scores = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, cand);
        assert!(
            serde_json::from_str::<Scores>(r#"{"status":"complete","metrics":{},"x":1}"#).is_err()
        );
    }
}
