//! Validation of eval suites and promotion gates.
//!
//! A task is checked field by field against its kind: a kind's required fields must be there,
//! fields that do not apply to it are errors (at the field), templates must compile and regexes
//! must parse, so that a suite that resolves can only fail later on its data.

use std::collections::BTreeSet;

use super::super::SpecError;
use super::super::raw::*;
use super::super::types::*;
use super::{Ctx, datasets};
use crate::eval::tasks::prompt;
use crate::yaml::At;

const EVALS_DOC: &str = "see docs/reference/evals.md";

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
        tasks.push(task(ctx, t, tname, &datasets)?);
    }
    Ok(Suite {
        name,
        path,
        datasets,
        tasks,
    })
}

/// The fields a task of each kind accepts besides `name`, `kind`, `dataset` and `limit`.
fn kind_fields(kind: TaskKind) -> &'static [&'static str] {
    match kind {
        TaskKind::MultipleChoice => &[
            "description",
            "chat",
            "system",
            "prompt",
            "choices",
            "answer",
            "target_delimiter",
            "num_fewshot",
            "fewshot_seed",
            "fewshot_separator",
        ],
        TaskKind::Generate => &[
            "description",
            "chat",
            "system",
            "prompt",
            "max_new_tokens",
            "stop",
            "must_include",
            "must_not_include",
            "exact",
            "refusal",
        ],
        TaskKind::Refusal => &[
            "description",
            "chat",
            "system",
            "prompt",
            "benign_dataset",
            "benign_prompt",
            "max_new_tokens",
            "stop",
        ],
        TaskKind::Preference => &[
            "description",
            "chat",
            "system",
            "prompt",
            "chosen",
            "rejected",
            "target_delimiter",
        ],
        TaskKind::Perplexity => &["text"],
    }
}

/// Every optional field written in a task, with where it was written.
fn written(file: &std::path::Path, t: &RawTask) -> Vec<(&'static str, At)> {
    let mut out = Vec::new();
    macro_rules! field {
        ($($f:ident),*) => {$(
            if let Some(v) = &t.$f {
                out.push((stringify!($f), At::spanned(file, v)));
            }
        )*};
    }
    field!(
        description,
        limit,
        chat,
        system,
        prompt,
        choices,
        answer,
        target_delimiter,
        num_fewshot,
        fewshot_seed,
        fewshot_separator,
        max_new_tokens,
        stop,
        must_include,
        must_not_include,
        exact,
        refusal,
        benign_dataset,
        benign_prompt,
        chosen,
        rejected,
        text
    );
    out
}

fn task(
    ctx: &Ctx<'_>,
    t: &S<RawTask>,
    name: String,
    datasets: &std::collections::BTreeMap<String, DatasetSpec>,
) -> Result<Task, SpecError> {
    let tv = &t.value;
    let names: Vec<&str> = TaskKind::ALL.iter().map(|(n, _)| *n).collect();
    let kind = TaskKind::parse(&ctx.one_of(&tv.kind, "task kind", &names)?)
        .unwrap_or(TaskKind::MultipleChoice);
    let declared = |d: &S<String>| -> Result<String, SpecError> {
        if !datasets.contains_key(&d.value) {
            return Err(ctx.err(
                d,
                format!(
                    "task `{name}` uses dataset `{}`, which is not declared",
                    d.value
                ),
                "declare it under the suite's `datasets:`",
            ));
        }
        Ok(d.value.clone())
    };
    let dataset = declared(&tv.dataset)?;
    let allowed = kind_fields(kind);
    for (field, at) in written(ctx.file, tv) {
        if field != "limit" && !allowed.contains(&field) {
            let mut fields = vec!["name", "kind", "dataset", "limit"];
            fields.extend_from_slice(allowed);
            return Err(SpecError::Invalid {
                at,
                message: format!("`{field}` does not apply to a `{kind}` task"),
                hint: format!("a {kind} task takes: {}; {EVALS_DOC}", fields.join(", ")),
            });
        }
    }
    let need = |v: &Option<S<String>>, field: &str| -> Result<String, SpecError> {
        match v {
            Some(s) => template(ctx, s, field),
            None => Err(ctx.err(
                t,
                format!("{kind} task `{name}` needs `{field}`"),
                format!("add `{field}:` (a template over the record's fields); {EVALS_DOC}"),
            )),
        }
    };
    let description = match &tv.description {
        Some(d) => template(ctx, d, "description")?,
        None => String::new(),
    };
    let limit = match &tv.limit {
        Some(l) => Some(ctx.positive(l, "limit")?),
        None => None,
    };
    let chat = tv
        .chat
        .as_ref()
        .map(|c| c.value)
        .unwrap_or(kind == TaskKind::Refusal);
    let system = match &tv.system {
        Some(s) if !chat => {
            return Err(ctx.err(
                s,
                "`system` only applies with `chat: true`",
                "add `chat: true`, or put the text in `description`",
            ));
        }
        Some(s) => Some(s.value.clone()),
        None => None,
    };
    let stop = |default_chat: bool| -> Result<Vec<String>, SpecError> {
        match &tv.stop {
            None if default_chat => Ok(Vec::new()),
            None => Ok(vec!["\n\n".to_string()]),
            Some(list) => list
                .value
                .iter()
                .map(|s| {
                    if s.value.is_empty() {
                        Err(ctx.err(
                            s,
                            "an empty `stop` string would stop before the first token",
                            "remove it; `stop: []` means no stop strings",
                        ))
                    } else {
                        Ok(s.value.clone())
                    }
                })
                .collect(),
        }
    };
    let max_new_tokens = |default: u64| -> Result<u64, SpecError> {
        match &tv.max_new_tokens {
            Some(m) => ctx.positive(m, "max_new_tokens"),
            None => Ok(default),
        }
    };
    let delimiter = tv
        .target_delimiter
        .as_ref()
        .map(|d| d.value.clone())
        .unwrap_or_else(|| " ".into());
    let params = match kind {
        TaskKind::MultipleChoice => {
            let prompt = need(&tv.prompt, "prompt")?;
            let choices = match &tv.choices {
                Some(c) => choices(ctx, c)?,
                None => {
                    return Err(ctx.err(
                        t,
                        format!("multiple_choice task `{name}` needs `choices`"),
                        "add `choices: {field: NAME}`, `{fields: [A, B, C, D]}` or `{literal: [yes, no]}`",
                    ));
                }
            };
            let answer = match &tv.answer {
                Some(a) => answer(ctx, a, &choices)?,
                None => {
                    return Err(ctx.err(
                        t,
                        format!("multiple_choice task `{name}` needs `answer`"),
                        "add `answer: {field: NAME, as: index}` (or `as: letter` / `as: text`)",
                    ));
                }
            };
            TaskParams::MultipleChoice(MultipleChoiceTask {
                prompt,
                choices,
                answer,
                target_delimiter: delimiter,
                num_fewshot: tv.num_fewshot.as_ref().map(|n| n.value).unwrap_or(0),
                fewshot_seed: tv.fewshot_seed.as_ref().map(|n| n.value).unwrap_or(1234),
                fewshot_separator: tv
                    .fewshot_separator
                    .as_ref()
                    .map(|s| s.value.clone())
                    .unwrap_or_else(|| "\n\n".into()),
            })
        }
        TaskKind::Generate => {
            let prompt = need(&tv.prompt, "prompt")?;
            let must_include = regexes(ctx, &tv.must_include, "must_include")?;
            let must_not_include = regexes(ctx, &tv.must_not_include, "must_not_include")?;
            let exact = match &tv.exact {
                Some(e) => Some(template(ctx, e, "exact")?),
                None => None,
            };
            let refusal = match &tv.refusal {
                Some(r) => Some(
                    match ctx
                        .one_of(r, "refusal expectation", &["expect", "forbid"])?
                        .as_str()
                    {
                        "expect" => RefusalCheck::Expect,
                        _ => RefusalCheck::Forbid,
                    },
                ),
                None => None,
            };
            if must_include.is_empty()
                && must_not_include.is_empty()
                && exact.is_none()
                && refusal.is_none()
            {
                return Err(ctx.err(
                    t,
                    format!("generate task `{name}` has no checks, so every output would pass"),
                    "add `must_include`, `must_not_include`, `exact` or `refusal`",
                ));
            }
            TaskParams::Generate(GenerateTask {
                prompt,
                max_new_tokens: max_new_tokens(128)?,
                stop: stop(chat)?,
                must_include,
                must_not_include,
                exact,
                refusal,
            })
        }
        TaskKind::Refusal => {
            let prompt = need(&tv.prompt, "prompt")?;
            let benign_dataset = match &tv.benign_dataset {
                Some(d) => declared(d)?,
                None => {
                    return Err(ctx.err(
                        t,
                        format!("refusal task `{name}` needs `benign_dataset`"),
                        "refusal is measured together with over-refusal: name a dataset of benign medical questions",
                    ));
                }
            };
            TaskParams::Refusal(RefusalTask {
                prompt,
                benign_dataset,
                benign_prompt: need(&tv.benign_prompt, "benign_prompt")?,
                max_new_tokens: max_new_tokens(64)?,
                stop: stop(chat)?,
            })
        }
        TaskKind::Preference => TaskParams::Preference(PreferenceTask {
            prompt: need(&tv.prompt, "prompt")?,
            chosen: need(&tv.chosen, "chosen")?,
            rejected: need(&tv.rejected, "rejected")?,
            target_delimiter: delimiter,
        }),
        TaskKind::Perplexity => TaskParams::Perplexity(PerplexityTask {
            text: need(&tv.text, "text")?,
        }),
    };
    Ok(Task {
        name,
        kind,
        dataset,
        description,
        limit,
        chat,
        system,
        params,
    })
}

fn template(ctx: &Ctx<'_>, s: &S<String>, field: &str) -> Result<String, SpecError> {
    prompt::check(&s.value).map_err(|why| {
        ctx.err(
            s,
            format!("`{field}` is not a valid template: {why}"),
            "templates are minijinja (Jinja2) over the record's fields, e.g. `{{ question }}`; write `{{ '{{' }}` for literal braces",
        )
    })?;
    Ok(s.value.clone())
}

fn regexes(
    ctx: &Ctx<'_>,
    list: &Option<S<Vec<S<String>>>>,
    field: &str,
) -> Result<Vec<String>, SpecError> {
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    list.value
        .iter()
        .map(|p| match regex::Regex::new(&p.value) {
            Ok(_) => Ok(p.value.clone()),
            Err(e) => Err(ctx.err(
                p,
                format!(
                    "`{field}` pattern {:?} is not a valid regex: {}",
                    p.value,
                    regex_reason(&e)
                ),
                "patterns use Rust `regex` syntax (no look-around or back-references); `(?i)` makes one case-insensitive",
            )),
        })
        .collect()
}

/// The last line of a regex error ("unclosed group"), without its position drawing.
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text.lines().last().unwrap_or_default().trim();
    last.strip_prefix("error: ").unwrap_or(last).to_string()
}

fn field_name(ctx: &Ctx<'_>, s: &S<String>, what: &str) -> Result<String, SpecError> {
    if s.value.is_empty() {
        return Err(ctx.err(
            s,
            format!("empty {what} name"),
            "name a field of the records",
        ));
    }
    Ok(s.value.clone())
}

fn choices(ctx: &Ctx<'_>, c: &S<RawChoices>) -> Result<ChoiceSource, SpecError> {
    let r = &c.value;
    let list = |l: &S<Vec<S<String>>>, what: &str, names: bool| -> Result<Vec<String>, SpecError> {
        if l.value.len() < 2 {
            return Err(ctx.err(
                l,
                format!("`choices.{what}` needs at least two entries"),
                "a multiple-choice question has two or more options",
            ));
        }
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for s in &l.value {
            let v = if names {
                field_name(ctx, s, "field")?
            } else if s.value.is_empty() {
                return Err(ctx.err(
                    s,
                    "an empty choice cannot be scored (acc_norm divides by its length)",
                    "write the option's text",
                ));
            } else {
                s.value.clone()
            };
            if !seen.insert(v.clone()) {
                return Err(ctx.err(
                    s,
                    format!("`choices.{what}` lists {v:?} twice"),
                    "each option must be distinct",
                ));
            }
            out.push(v);
        }
        Ok(out)
    };
    match (&r.field, &r.fields, &r.literal) {
        (Some(f), None, None) => Ok(ChoiceSource::Field(field_name(ctx, f, "field")?)),
        (None, Some(l), None) => Ok(ChoiceSource::Fields(list(l, "fields", true)?)),
        (None, None, Some(l)) => Ok(ChoiceSource::Literal(list(l, "literal", false)?)),
        _ => Err(ctx.err(
            c,
            "`choices` needs exactly one of `field`, `fields` or `literal`",
            "`{field: NAME}` (a list in each record), `{fields: [A, B, C, D]}` (one field per option) or `{literal: [yes, no, maybe]}`",
        )),
    }
}

fn answer(
    ctx: &Ctx<'_>,
    a: &S<RawAnswer>,
    choices: &ChoiceSource,
) -> Result<AnswerSpec, SpecError> {
    let field = field_name(ctx, &a.value.field, "answer field")?;
    let format = match ctx
        .one_of(
            &a.value.format,
            "answer format",
            &["index", "letter", "text"],
        )?
        .as_str()
    {
        "index" => AnswerFormat::Index,
        "letter" => AnswerFormat::Letter,
        _ => AnswerFormat::Text,
    };
    let fixed = match choices {
        ChoiceSource::Fields(l) | ChoiceSource::Literal(l) => l.len(),
        ChoiceSource::Field(_) => 0,
    };
    if format == AnswerFormat::Letter && fixed > 26 {
        return Err(ctx.err(
            &a.value.format,
            format!("`as: letter` names at most 26 choices, this task has {fixed}"),
            "use `as: index` or `as: text`",
        ));
    }
    Ok(AnswerSpec { field, format })
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

#[cfg(test)]
mod tests {
    use super::super::super::{SpecError, load_suite};
    use super::*;

    const HEAD: &str = "version: 1\nname: s\ndatasets:\n  d: {path: d.jsonl, format: jsonl}\n  b: {path: b.csv, format: csv}\ntasks:\n";

    fn load(tasks: &str) -> Result<Suite, SpecError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("evals")).unwrap();
        std::fs::write(dir.path().join("evals/s.yaml"), format!("{HEAD}{tasks}")).unwrap();
        load_suite(dir.path(), RelPath("evals/s.yaml".into()))
    }

    fn err(tasks: &str) -> (String, String) {
        let e = load(tasks).expect_err("must fail");
        (e.to_string(), e.hint())
    }

    const MC: &str = "  - name: mc\n    kind: multiple_choice\n    dataset: d\n    prompt: \"Q: {{ q }}\\nA:\"\n    choices: {literal: [yes, no, maybe]}\n    answer: {field: final_decision, as: text}\n";

    #[test]
    fn multiple_choice_defaults_are_filled() {
        let s = load(MC).unwrap();
        let t = &s.tasks[0];
        assert_eq!(t.kind, TaskKind::MultipleChoice);
        assert_eq!((t.description.as_str(), t.limit, t.chat), ("", None, false));
        let TaskParams::MultipleChoice(p) = &t.params else {
            panic!("{t:?}")
        };
        assert_eq!(p.prompt, "Q: {{ q }}\nA:");
        assert_eq!(
            p.choices,
            ChoiceSource::Literal(vec!["yes".into(), "no".into(), "maybe".into()])
        );
        assert_eq!(p.answer.format, AnswerFormat::Text);
        assert_eq!(p.target_delimiter, " ");
        assert_eq!((p.num_fewshot, p.fewshot_seed), (0, 1234));
        assert_eq!(p.fewshot_separator, "\n\n");
        let json = serde_json::to_value(t).unwrap();
        assert_eq!(json["params"]["multiple_choice"]["answer"]["as"], "text");
        assert!(json.get("limit").is_none());
    }

    #[test]
    fn generate_refusal_preference_perplexity_defaults() {
        let s = load(
            "  - {name: g, kind: generate, dataset: d, prompt: \"{{ q }}\", refusal: forbid}\n  - {name: gc, kind: generate, dataset: d, prompt: \"{{ q }}\", chat: true, exact: \"{{ a }}\"}\n  - {name: r, kind: refusal, dataset: d, benign_dataset: b, prompt: \"{{ q }}\", benign_prompt: \"{{ q }}\"}\n  - {name: p, kind: preference, dataset: d, prompt: \"{{ q }}\", chosen: \"{{ a }}\", rejected: \"Sure: {{ q }}\"}\n  - {name: x, kind: perplexity, dataset: d, text: \"{{ text }}\", limit: 5}\n",
        )
        .unwrap();
        let TaskParams::Generate(g) = &s.tasks[0].params else {
            panic!()
        };
        assert_eq!(
            (g.max_new_tokens, g.stop.clone()),
            (128, vec!["\n\n".into()])
        );
        assert_eq!(g.refusal, Some(RefusalCheck::Forbid));
        let TaskParams::Generate(gc) = &s.tasks[1].params else {
            panic!()
        };
        assert!(gc.stop.is_empty(), "no stop strings by default with chat");
        let r = &s.tasks[2];
        assert!(r.chat, "refusal tasks default to chat");
        let TaskParams::Refusal(rp) = &r.params else {
            panic!()
        };
        assert_eq!((rp.max_new_tokens, rp.stop.len()), (64, 0));
        assert_eq!(r.datasets(), ["d", "b"]);
        let TaskParams::Preference(p) = &s.tasks[3].params else {
            panic!()
        };
        assert_eq!(p.target_delimiter, " ");
        assert_eq!(s.tasks[4].limit, Some(5));
    }

    #[test]
    fn unknown_kind_names_the_position() {
        let (e, hint) = err(&MC.replace("multiple_choice", "mcq"));
        assert_eq!(e, "evals/s.yaml:8:11: unknown task kind \"mcq\"");
        assert!(hint.contains("multiple_choice"), "{hint}");
    }

    #[test]
    fn undeclared_dataset() {
        let (e, _) = err(&MC.replace("dataset: d", "dataset: pubmedqa"));
        assert_eq!(
            e,
            "evals/s.yaml:9:14: task `mc` uses dataset `pubmedqa`, which is not declared"
        );
        let (e, _) = err(
            "  - {name: r, kind: refusal, dataset: d, benign_dataset: nope, prompt: x, benign_prompt: y}\n",
        );
        assert!(
            e.contains("uses dataset `nope`, which is not declared"),
            "{e}"
        );
    }

    #[test]
    fn field_of_another_kind_is_refused_at_the_field() {
        let (e, hint) = err(&format!("{MC}    max_new_tokens: 10\n"));
        assert_eq!(
            e,
            "evals/s.yaml:13:21: `max_new_tokens` does not apply to a `multiple_choice` task"
        );
        assert!(hint.contains("num_fewshot"), "{hint}");
        let (e, _) = err("  - {name: x, kind: perplexity, dataset: d, text: t, chat: true}\n");
        assert!(
            e.contains("`chat` does not apply to a `perplexity` task"),
            "{e}"
        );
        let (e, _) = err(&format!("{MC}    typo: 1\n"));
        assert!(e.contains("unknown field `typo`"), "{e}");
    }

    #[test]
    fn templates_must_compile() {
        let (e, hint) = err(&MC.replace("\"Q: {{ q }}\\nA:\"", "\"Q: {{ q \""));
        assert!(
            e.starts_with("evals/s.yaml:10:13: `prompt` is not a valid template: syntax error"),
            "{e}"
        );
        assert!(hint.contains("minijinja"), "{hint}");
        let (e, _) = err(&format!("{MC}    description: \"{{% if %}}\"\n"));
        assert!(e.contains("`description` is not a valid template"), "{e}");
    }

    #[test]
    fn regexes_must_parse() {
        let (e, _) =
            err("  - {name: g, kind: generate, dataset: d, prompt: x, must_include: [\"a(\"]}\n");
        assert!(
            e == "evals/s.yaml:7:69: `must_include` pattern \"a(\" is not a valid regex: unclosed group",
            "{e}"
        );
    }

    #[test]
    fn required_fields_and_combinations() {
        let (e, _) = err(
            "  - {name: mc, kind: multiple_choice, dataset: d, prompt: x, answer: {field: a, as: index}}\n",
        );
        assert_eq!(
            e,
            "evals/s.yaml:7:5: multiple_choice task `mc` needs `choices`"
        );
        let (e, _) = err("  - {name: g, kind: generate, dataset: d, prompt: x}\n");
        assert!(e.contains("has no checks"), "{e}");
        let (e, _) = err("  - {name: r, kind: refusal, dataset: d, prompt: x, benign_prompt: y}\n");
        assert!(e.contains("needs `benign_dataset`"), "{e}");
        let (e, _) = err("  - {name: p, kind: preference, dataset: d, prompt: x, chosen: y}\n");
        assert!(e.contains("needs `rejected`"), "{e}");
        let (e, _) = err(&format!("{MC}    system: Be brief.\n"));
        assert!(e.contains("`system` only applies with `chat: true`"), "{e}");
        let (e, _) = err(&MC.replace("{literal: [yes, no, maybe]}", "{field: c, literal: [a, b]}"));
        assert!(
            e.contains("exactly one of `field`, `fields` or `literal`"),
            "{e}"
        );
        let (e, _) = err(&MC.replace("[yes, no, maybe]", "[yes]"));
        assert!(e.contains("needs at least two entries"), "{e}");
        let (e, _) = err(&MC.replace("as: text", "as: number"));
        assert!(e.contains("unknown answer format \"number\""), "{e}");
        let (e, _) = err(&format!("{MC}    limit: 0\n"));
        assert!(e.contains("`limit` must be at least 1"), "{e}");
        let (e, _) = err("  - {name: g, kind: generate, dataset: d, prompt: x, refusal: maybe}\n");
        assert!(e.contains("unknown refusal expectation \"maybe\""), "{e}");
        let (e, _) =
            err("  - {name: g, kind: generate, dataset: d, prompt: x, exact: y, stop: [\"\"]}\n");
        assert!(e.contains("empty `stop` string"), "{e}");
    }
}
