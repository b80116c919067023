//! Validation of eval suites and promotion gates.

use std::collections::BTreeSet;

use super::super::SpecError;
use super::super::raw::*;
use super::super::types::*;
use super::{Ctx, datasets};

pub(crate) fn suite(ctx: &Ctx<'_>, path: RelPath, raw: RawSuite) -> Result<Suite, SpecError> {
    let name = ctx.name(&raw.name, "suite")?;
    let datasets = datasets(ctx, &raw.datasets)?;
    let mut tasks = Vec::new();
    let mut names = BTreeSet::new();
    if raw.tasks.is_empty() {
        return Err(ctx.err(&raw.name, "the suite has no tasks", "add at least one task"));
    }
    for t in &raw.tasks {
        let tv = &t.value;
        let tname = ctx.name(&tv.name, "task")?;
        if !names.insert(tname.clone()) {
            return Err(ctx.err(
                &tv.name,
                format!("duplicate task name `{tname}`"),
                "task names must be unique within a suite",
            ));
        }
        let kind = match ctx
            .one_of(
                &tv.kind,
                "task kind",
                &[
                    "generate",
                    "multiple_choice",
                    "perplexity",
                    "preference",
                    "refusal",
                ],
            )?
            .as_str()
        {
            "generate" => TaskKind::Generate,
            "multiple_choice" => TaskKind::MultipleChoice,
            "perplexity" => TaskKind::Perplexity,
            "preference" => TaskKind::Preference,
            _ => TaskKind::Refusal,
        };
        if !datasets.contains_key(&tv.dataset.value) {
            return Err(ctx.err(
                &tv.dataset,
                format!(
                    "task `{tname}` uses dataset `{}`, which is not declared",
                    tv.dataset.value
                ),
                "declare it under the suite's `datasets:`",
            ));
        }
        tasks.push(Task {
            name: tname,
            kind,
            dataset: tv.dataset.value.clone(),
        });
    }
    Ok(Suite {
        name,
        path,
        datasets,
        tasks,
    })
}

pub(super) fn gate(
    ctx: &Ctx<'_>,
    g: &S<RawGate>,
    stages: &[Stage],
    evals: &[Suite],
) -> Result<Gate, SpecError> {
    let r = &g.value;
    let parts: Vec<&str> = r.metric.value.split('/').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(ctx.err(
            &r.metric,
            format!(
                "gate metric {:?} is not `suite/task/metric`",
                r.metric.value
            ),
            "for example `metric: medical-demo/mc/acc`",
        ));
    }
    let Some(suite) = evals.iter().find(|s| s.name == parts[0]) else {
        return Err(ctx.err(
            &r.metric,
            format!(
                "gate metric names suite `{}`, which is not in `evals`",
                parts[0]
            ),
            "add the suite file to `evals:` or fix the suite name",
        ));
    };
    if !suite.tasks.iter().any(|t| t.name == parts[1]) {
        return Err(ctx.err(
            &r.metric,
            format!("suite `{}` has no task `{}`", parts[0], parts[1]),
            format!(
                "tasks in {}: {}",
                suite.path,
                suite
                    .tasks
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let stage = match &r.stage {
        None => stages.last().map(|s| s.name.clone()).unwrap_or_default(),
        Some(s) => {
            if !stages.iter().any(|st| st.name == s.value) {
                return Err(ctx.err(
                    s,
                    format!(
                        "gate names stage `{}`, which the spec does not have",
                        s.value
                    ),
                    "use one of the spec's stage names",
                ));
            }
            s.value.clone()
        }
    };
    let threshold = r.min.is_some() || r.max.is_some();
    let rule = match (&r.vs_channel, threshold) {
        (Some(c), false) => {
            let max_drop = match &r.max_drop {
                Some(m) => ctx.range(m, "max_drop", 0.0, f64::INFINITY, false, true)?,
                None => 0.0,
            };
            let test = match &r.test {
                None => PairedTest::Mcnemar,
                Some(t) => match ctx
                    .one_of(t, "paired test", &["mcnemar", "paired_bootstrap"])?
                    .as_str()
                {
                    "mcnemar" => PairedTest::Mcnemar,
                    _ => PairedTest::PairedBootstrap,
                },
            };
            let alpha = match &r.alpha {
                Some(a) => ctx.range(a, "alpha", 0.0, 0.5, true, false)?,
                None => 0.05,
            };
            GateRule::NoWorseThan {
                channel: ctx.name(c, "channel")?,
                max_drop,
                test,
                alpha,
            }
        }
        (None, true) => {
            if let Some(extra) = [&r.max_drop, &r.alpha].into_iter().flatten().next() {
                return Err(ctx.err(
                    extra,
                    "`max_drop` and `alpha` only apply to `vs_channel` gates",
                    "remove them or add `vs_channel: CHANNEL`",
                ));
            }
            if let Some(t) = &r.test {
                return Err(ctx.err(
                    t,
                    "`test` only applies to `vs_channel` gates",
                    "remove it or add `vs_channel: CHANNEL`",
                ));
            }
            let min = r.min.as_ref().map(|m| ctx.finite(m, "min")).transpose()?;
            let max = r.max.as_ref().map(|m| ctx.finite(m, "max")).transpose()?;
            if let (Some(lo), Some(hi), Some(ms)) = (min, max, &r.max)
                && lo > hi
            {
                return Err(ctx.err(
                    ms,
                    format!("gate has min {lo} > max {hi}"),
                    "no value can pass",
                ));
            }
            GateRule::Threshold { min, max }
        }
        (Some(c), true) => {
            return Err(ctx.err(
                c,
                "a gate is either a threshold (`min`/`max`) or a comparison (`vs_channel`), not both",
                "split it into two gates",
            ));
        }
        (None, false) => {
            return Err(ctx.err(
                g,
                "gate has no condition",
                "add `min:`, `max:` or `vs_channel:`",
            ));
        }
    };
    Ok(Gate {
        metric: r.metric.value.clone(),
        stage,
        rule,
    })
}
