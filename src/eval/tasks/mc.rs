//! Multiple choice by log-likelihood (lm-eval `output_type: multiple_choice`).
//!
//! Each choice is scored as the continuation `delimiter + choice` after the context, where the
//! delimiter is `target_delimiter` without chat and empty with chat (as lm-eval does under a
//! chat template). `acc` takes the argmax of the summed log-probabilities; `acc_norm` the argmax
//! of log-probability divided by the choice's length in characters (Unicode scalar values of the
//! choice text, delimiter excluded: lm-eval's `len(choice)`). Ties go to the first choice
//! (`np.argmax`).
//!
//! Few-shot: `num_fewshot` examples drawn from the whole dataset (not only the first `limit`
//! records), never the record itself nor a record with identical content, with a generator
//! seeded by `fewshot_seed` and the record's `doc_hash`, so each record's examples depend on
//! nothing else (not on `limit`, not on the order of evaluation). An example is its prompt +
//! `target_delimiter` + its gold choice; examples are joined and followed by
//! `fewshot_separator`, then the record's own prompt.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{ChoiceScore, EvalError, Outcome, Run, Scoring, doc_hash, sample};
use crate::eval::LlRequest;
use crate::eval::data::Record;
use crate::eval::metrics::proportion;
use crate::rng::Rng;
use crate::spec::{AnswerFormat, ChoiceSource, MultipleChoiceTask};

/// A record's options and the index of its gold one.
pub(crate) struct Item {
    pub choices: Vec<String>,
    pub gold: usize,
}

/// Text of a scalar field value (strings as they are, numbers and booleans as JSON writes them).
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn field<'r>(run: &Run<'_>, record: &'r Record, name: &str) -> Result<&'r Value, EvalError> {
    record.fields.get(name).ok_or_else(|| {
        run.record_error(
            record,
            name,
            "missing",
            format!(
                "the record's fields are: {}",
                record
                    .fields
                    .keys()
                    .map(|k| format!("{k:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })
}

pub(crate) fn item(
    run: &Run<'_>,
    p: &MultipleChoiceTask,
    record: &Record,
) -> Result<Item, EvalError> {
    let choices: Vec<String> = match &p.choices {
        ChoiceSource::Literal(l) => l.clone(),
        ChoiceSource::Fields(names) => {
            let mut out = Vec::with_capacity(names.len());
            for n in names {
                let v = field(run, record, n)?;
                out.push(scalar(v).ok_or_else(|| {
                    run.record_error(
                        record,
                        n,
                        "expected text for a choice",
                        "each choice field holds the option's text",
                    )
                })?);
            }
            out
        }
        ChoiceSource::Field(name) => {
            let v = field(run, record, name)?;
            let list = match v {
                Value::Array(a) => a.clone(),
                Value::String(s) => match serde_json::from_str::<Value>(s) {
                    Ok(Value::Array(a)) => a,
                    _ => {
                        return Err(run.record_error(
                            record,
                            name,
                            "expected a list of choices (or a string holding a JSON list)",
                            "use `choices: {fields: [...]}` when each option has its own column",
                        ));
                    }
                },
                _ => {
                    return Err(run.record_error(
                        record,
                        name,
                        "expected a list of choices",
                        "use `choices: {fields: [...]}` when each option has its own column",
                    ));
                }
            };
            let mut out = Vec::with_capacity(list.len());
            for (i, c) in list.iter().enumerate() {
                out.push(scalar(c).ok_or_else(|| {
                    run.record_error(
                        record,
                        &format!("{name}[{i}]"),
                        "expected text for a choice",
                        "choices are strings",
                    )
                })?);
            }
            if out.len() < 2 {
                return Err(run.record_error(
                    record,
                    name,
                    format!("{} choice(s); a question needs at least two", out.len()),
                    "fix the record",
                ));
            }
            out
        }
    };
    if let Some(i) = choices.iter().position(String::is_empty) {
        return Err(run.record_error(
            record,
            "choices",
            format!("choice {i} is empty, and cannot be scored per character"),
            "fix the record",
        ));
    }
    let name = &p.answer.field;
    let v = field(run, record, name)?;
    let n = choices.len();
    let bad = |message: String, hint: &str| run.record_error(record, name, message, hint);
    let gold = match p.answer.format {
        AnswerFormat::Index => {
            let idx = match v {
                Value::Number(x) => x.as_u64(),
                Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                    s.parse::<u64>().ok()
                }
                _ => None,
            };
            match idx.and_then(|i| usize::try_from(i).ok()) {
                Some(i) if i < n => i,
                _ => {
                    return Err(bad(
                        format!("{v} is not a choice index (0..{n})"),
                        "`as: index` reads a 0-based integer; use `as: letter` for A/B/C/D",
                    ));
                }
            }
        }
        AnswerFormat::Letter => {
            let s = v.as_str().unwrap_or("");
            let mut cs = s.chars();
            match (cs.next(), cs.next()) {
                (Some(c @ 'A'..='Z'), None) if ((c as u8 - b'A') as usize) < n => {
                    (c as u8 - b'A') as usize
                }
                _ => {
                    return Err(bad(
                        format!(
                            "{v} is not a choice letter (A..{})",
                            char::from(b'A' + n.min(26) as u8 - 1)
                        ),
                        "`as: letter` reads one upper-case letter; use `as: index` for 0-based numbers",
                    ));
                }
            }
        }
        AnswerFormat::Text => {
            let text = scalar(v).unwrap_or_default();
            match choices.iter().position(|c| *c == text) {
                Some(i) => i,
                None => {
                    return Err(bad(
                        format!("{v} is not one of the choices {choices:?}"),
                        "`as: text` must match a choice exactly (case and spaces included)",
                    ));
                }
            }
        }
    };
    Ok(Item { choices, gold })
}

/// Indices of `k` few-shot examples for record `i`: seeded by `seed` and the record's hash,
/// skipping every record whose hash equals it. `order` is scratch space holding 0..n, returned
/// as it was given.
fn draw(
    k: usize,
    seed: u64,
    hashes: &[String],
    i: usize,
    order: &mut [usize],
) -> Option<Vec<usize>> {
    let mut rng = Rng::for_purpose(seed, &format!("fewshot/{}", hashes[i]));
    let mut picked = Vec::with_capacity(k);
    let mut swaps = Vec::new();
    let mut m = order.len();
    while picked.len() < k && m > 0 {
        let r = rng.below(m as u64) as usize;
        let j = order[r];
        order.swap(r, m - 1);
        swaps.push((r, m - 1));
        m -= 1;
        if hashes[j] != hashes[i] {
            picked.push(j);
        }
    }
    for (a, b) in swaps.into_iter().rev() {
        order.swap(a, b);
    }
    (picked.len() == k).then_some(picked)
}

pub(crate) fn run_mc(
    run: &mut Run<'_>,
    p: &MultipleChoiceTask,
    records: &[Record],
    n: usize,
) -> Result<Outcome, EvalError> {
    let k = usize::try_from(p.num_fewshot).unwrap_or(usize::MAX);
    let hashes: Vec<String> = if k > 0 {
        records.iter().map(doc_hash).collect()
    } else {
        Vec::new()
    };
    let mut order: Vec<usize> = (0..if k > 0 { records.len() } else { 0 }).collect();
    let delimiter = if run.task.chat {
        ""
    } else {
        p.target_delimiter.as_str()
    };
    let mut requests = Vec::with_capacity(n);
    let mut items = Vec::with_capacity(n);
    let mut samples = Vec::with_capacity(n);
    for (i, record) in records[..n].iter().enumerate() {
        let it = item(run, p, record)?;
        let mut body = String::new();
        if k > 0 {
            let shots = draw(k, p.fewshot_seed, &hashes, i, &mut order).ok_or_else(|| {
                EvalError::FewShot {
                    task: run.task.name.clone(),
                    at: record.to_string(),
                    needed: p.num_fewshot,
                    available: hashes.iter().filter(|h| **h != hashes[i]).count(),
                }
            })?;
            for j in shots {
                let shot = &records[j];
                let si = item(run, p, shot)?;
                body.push_str(&run.render("prompt", shot)?);
                body.push_str(&p.target_delimiter);
                body.push_str(&si.choices[si.gold]);
                body.push_str(&p.fewshot_separator);
            }
        }
        body.push_str(&run.render("prompt", record)?);
        let context = run.context(record, &body)?;
        let continuations: Vec<String> = it
            .choices
            .iter()
            .map(|c| format!("{delimiter}{c}"))
            .collect();
        let target = json!({"gold": it.gold, "continuations": continuations});
        let mut s = sample(i, record, context.clone(), target);
        s.gold = Some(it.gold);
        samples.push(s);
        requests.push(LlRequest {
            context,
            continuations,
        });
        items.push(it);
    }
    let answers = run
        .backend
        .loglikelihood(&requests)
        .map_err(|e| run.backend_error(e))?;
    if answers.len() != requests.len() {
        return Err(run.shape(
            format!("{} requests", requests.len()),
            format!("{} results", answers.len()),
        ));
    }
    let mut acc = Vec::with_capacity(n);
    let mut acc_norm = Vec::with_capacity(n);
    for (((s, it), req), scores) in samples.iter_mut().zip(&items).zip(&requests).zip(answers) {
        if scores.len() != it.choices.len() {
            return Err(run.shape(
                format!("{} continuations at {}", it.choices.len(), s.source),
                format!("{} scores", scores.len()),
            ));
        }
        let record = &records[s.index];
        let mut best = (0usize, f64::NEG_INFINITY);
        let mut best_norm = (0usize, f64::NEG_INFINITY);
        for (c, ((choice, cont), sc)) in it
            .choices
            .iter()
            .zip(&req.continuations)
            .zip(&scores)
            .enumerate()
        {
            let lp = run.check_logprob(record, sc.logprob)?;
            let chars = choice.chars().count();
            let norm = lp / chars as f64;
            if c == 0 || lp > best.1 {
                best = (c, lp);
            }
            if c == 0 || norm > best_norm.1 {
                best_norm = (c, norm);
            }
            s.choices.push(ChoiceScore {
                continuation: cont.clone(),
                logprob: lp,
                greedy: sc.greedy,
                tokens: sc.tokens,
                chars,
            });
        }
        s.pred = Some(best.0);
        s.pred_norm = Some(best_norm.0);
        let a = best.0 == it.gold;
        let an = best_norm.0 == it.gold;
        s.scores.insert("acc".into(), f64::from(u8::from(a)));
        s.scores.insert("acc_norm".into(), f64::from(u8::from(an)));
        acc.push(a);
        acc_norm.push(an);
    }
    let mut metrics = BTreeMap::new();
    metrics.insert("acc".into(), proportion(&acc));
    metrics.insert("acc_norm".into(), proportion(&acc_norm));
    Ok((
        samples,
        metrics,
        Scoring {
            settings: json!({}),
            uses_lexicon: false,
        },
    ))
}
