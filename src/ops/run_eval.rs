//! Scoring each stage of a `medrun run` and judging its gates, and the table of the scores by
//! stage that `run` prints at the end.

use super::run::{StageEval, StageGates};
use crate::error::Result;
use crate::printer::Printer;
use crate::store::{Store, Tree};

/// Score a stage's checkpoint with the spec's suites and judge its gates, printing as it goes.
#[allow(clippy::too_many_arguments)]
pub(super) fn evaluate_stage(
    project: &super::Project,
    store: &Store,
    spec: &crate::spec::Spec,
    run_id: &str,
    stage: &str,
    output: &str,
    tree: &Tree,
    printer: &Printer,
    evals: &mut Vec<StageEval>,
    gates: &mut Vec<StageGates>,
) -> Result<()> {
    if spec.evals.is_empty() {
        return Ok(());
    }
    if !tree.entries.contains_key("model.safetensors") {
        printer.warn(&format!(
            "stage `{stage}`: its output holds no model, so it is not evaluated and its gates are not judged"
        ));
        return Ok(());
    }
    let ck = super::export::Checkpoint {
        run_id: Some(run_id.to_string()),
        stage: Some(stage.to_string()),
        output: output.to_string(),
        tree: tree.clone(),
    };
    let opts = super::eval::EvalOptions::default();
    let evs = super::eval::eval_suites(project, store, &ck, &spec.evals, &opts, printer)?;
    for ev in &evs {
        let shown: Vec<String> = ev
            .results
            .metrics
            .iter()
            .map(|(k, v)| {
                let short = k.split_once('/').map(|x| x.1).unwrap_or(k);
                format!("{short} {}", crate::eval::number::show(*v, 3))
            })
            .collect();
        printer.status(&format!(
            "  {:<8} eval {}{}: {}",
            stage,
            ev.results.suite,
            if ev.cached { " (cached)" } else { "" },
            shown.join("  ")
        ));
        evals.push(StageEval {
            stage: stage.to_string(),
            suite: ev.results.suite.clone(),
            results: ev.output.clone(),
            cached: ev.cached,
            status: ev.results.status.clone(),
            metrics: ev.results.metrics.clone(),
        });
    }
    if spec.gates.iter().any(|g| g.stage == stage) {
        let d = super::promote::judge(project, store, spec, stage, &evs, &opts, printer)?;
        let failed: Vec<String> = d.failed().map(|g| g.metric.clone()).collect();
        printer.status(&format!(
            "  {:<8} gates {}",
            stage,
            if failed.is_empty() {
                format!("pass ({} of {})", d.gates.len(), d.gates.len())
            } else {
                format!("FAIL: {}", failed.join(", "))
            }
        ));
        gates.push(StageGates {
            stage: stage.to_string(),
            decision: d,
        });
    }
    Ok(())
}

/// The stages' metrics side by side, one table per suite: a row per metric, a column per
/// stage in run order, each value with its change from the stage before (so the gain of each
/// stage reads across a row). Stages whose evaluation did not complete show `-`.
pub fn stage_table(evals: &[StageEval]) -> String {
    use crate::eval::number::{show, show_signed};
    let mut suites: Vec<&str> = Vec::new();
    for e in evals {
        if !suites.contains(&e.suite.as_str()) {
            suites.push(&e.suite);
        }
    }
    let mut out = String::new();
    for suite in suites {
        let rows: Vec<&StageEval> = evals.iter().filter(|e| e.suite == suite).collect();
        let mut metrics: Vec<&String> = rows.iter().flat_map(|e| e.metrics.keys()).collect();
        metrics.sort();
        metrics.dedup();
        let width = metrics.iter().map(|m| m.len()).max().unwrap_or(6).max(6);
        let mut header = format!("{:<width$}", "metric");
        for e in &rows {
            header.push_str(&format!("  {:>18}", e.stage));
        }
        out.push_str(&format!(
            "evaluation by stage ({suite}):\n{}\n",
            header.trim_end()
        ));
        for m in metrics {
            let mut line = format!("{m:<width$}");
            let mut prev: Option<f64> = None;
            for e in &rows {
                let cell = match e.metrics.get(m) {
                    Some(v) => {
                        // A change is shown unless it is no number (inf − inf, or a NaN).
                        let shown = show(*v, 3);
                        let cell = match prev.map(|p| v - p).filter(|d| !d.is_nan()) {
                            Some(d) => format!("{shown} ({})", show_signed(d, 3)),
                            None => shown,
                        };
                        prev = Some(*v);
                        cell
                    }
                    None => "-".to_string(),
                };
                line.push_str(&format!("  {cell:>18}"));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod table_tests {
    use super::*;

    fn ev(stage: &str, m: &[(&str, f64)]) -> StageEval {
        StageEval {
            stage: stage.into(),
            suite: "s".into(),
            results: String::new(),
            cached: false,
            status: "complete".into(),
            metrics: m.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    #[test]
    fn stage_table_shows_each_stage_and_its_change() {
        let t = stage_table(&[
            ev("pt", &[("mc/acc", 0.3), ("refusal/rate", 0.0)]),
            ev("sft", &[("mc/acc", 0.45), ("refusal/rate", 0.25)]),
            ev("dpo", &[("mc/acc", 0.4)]),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "evaluation by stage (s):");
        assert!(
            lines[1].starts_with("metric") && lines[1].ends_with("dpo"),
            "{t}"
        );
        assert!(
            lines[2].starts_with("mc/acc")
                && lines[2].contains("0.300")
                && lines[2].contains("0.450 (+0.150)")
                && lines[2].ends_with("0.400 (-0.050)"),
            "{t}"
        );
        assert!(
            lines[3].contains("0.250 (+0.250)") && lines[3].ends_with('-'),
            "{t}"
        );
    }

    #[test]
    fn stage_table_shows_infinities_and_no_change_between_them() {
        let w = "zh/word_perplexity";
        let t = stage_table(&[
            ev("pt", &[(w, 812.5)]),
            ev("sft", &[(w, f64::INFINITY)]),
            ev("dpo", &[(w, f64::INFINITY)]),
        ]);
        let row = t.lines().nth(2).unwrap();
        assert!(
            row.contains("812.500") && row.contains("inf (+inf)") && row.ends_with(" inf"),
            "{t}"
        );
    }
}
