//! Likelihood-only tasks: `preference` (does the model prefer the safe reference response?) and
//! `perplexity` (rolling log-likelihood of a text).
//!
//! Preference: `chosen` and `rejected` are scored as continuations (`target_delimiter` + text,
//! no delimiter with chat) after the context, and each log-probability is divided by its text's
//! length in characters (delimiter excluded), as `acc_norm` does, so a longer response is not
//! penalised for its length. `acc` is the fraction of records where chosen scores strictly
//! higher; `margin` the mean of (chosen − rejected) per-character log-probabilities, with the
//! standard error of a mean.
//!
//! Perplexity (lm-eval's definitions, over the whole set): `word_perplexity` =
//! exp(−Σ log p / Σ words), `byte_perplexity` = exp(−Σ log p / Σ UTF-8 bytes), `bits_per_byte` =
//! −Σ log p / Σ bytes / ln 2, `token_perplexity` = exp(−Σ log p / Σ tokens scored by the
//! backend). Words are counted like Python's `len(re.split(r"\s+", text))`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{ChoiceScore, EvalError, Outcome, RollingCounts, Run, Scoring, sample};
use crate::eval::LlRequest;
use crate::eval::data::Record;
use crate::eval::metrics::{
    bits_per_byte, count_bytes, count_words, mean, proportion, weighted_perplexity,
};
use crate::spec::PreferenceTask;

pub(crate) fn run_preference(
    run: &mut Run<'_>,
    p: &PreferenceTask,
    records: &[Record],
    n: usize,
) -> Result<Outcome, EvalError> {
    let delimiter = if run.task.chat {
        ""
    } else {
        p.target_delimiter.as_str()
    };
    let mut samples = Vec::with_capacity(n);
    let mut requests = Vec::with_capacity(n);
    let mut texts = Vec::with_capacity(n);
    for (i, record) in records[..n].iter().enumerate() {
        let body = run.render("prompt", record)?;
        let context = run.context(record, &body)?;
        let chosen = run.render("chosen", record)?;
        let rejected = run.render("rejected", record)?;
        for (field, t) in [("chosen", &chosen), ("rejected", &rejected)] {
            if t.is_empty() {
                return Err(run.record_error(
                    record,
                    field,
                    "renders to an empty response, which cannot be scored per character",
                    "check the template and the record",
                ));
            }
        }
        if chosen == rejected {
            return Err(run.record_error(
                record,
                "chosen",
                "chosen and rejected render to the same text",
                "the two responses must differ",
            ));
        }
        let continuations = vec![
            format!("{delimiter}{chosen}"),
            format!("{delimiter}{rejected}"),
        ];
        let target = json!({"chosen": continuations[0], "rejected": continuations[1]});
        samples.push(sample(i, record, context.clone(), target));
        requests.push(LlRequest {
            context,
            continuations,
        });
        texts.push([chosen, rejected]);
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
    let mut margins = Vec::with_capacity(n);
    for (((s, req), pair), scores) in samples.iter_mut().zip(&requests).zip(&texts).zip(answers) {
        if scores.len() != 2 {
            return Err(run.shape(
                format!("2 continuations at {}", s.source),
                format!("{} scores", scores.len()),
            ));
        }
        let record = &records[s.index];
        let mut norm = [0.0f64; 2];
        for (k, ((text, cont), sc)) in pair.iter().zip(&req.continuations).zip(&scores).enumerate()
        {
            let lp = run.check_logprob(record, sc.logprob)?;
            let chars = text.chars().count();
            norm[k] = lp / chars as f64;
            s.choices.push(ChoiceScore {
                continuation: cont.clone(),
                logprob: lp,
                greedy: sc.greedy,
                tokens: sc.tokens,
                chars,
            });
        }
        let prefers = norm[0] > norm[1];
        let margin = norm[0] - norm[1];
        s.pred = Some(usize::from(!prefers));
        s.scores.insert("acc".into(), f64::from(u8::from(prefers)));
        if margin.is_finite() {
            s.scores.insert("margin".into(), margin);
            margins.push(margin);
        }
        acc.push(prefers);
    }
    let mut metrics = BTreeMap::new();
    metrics.insert("acc".into(), proportion(&acc));
    metrics.insert("margin".into(), mean(&margins));
    Ok((
        samples,
        metrics,
        Scoring {
            settings: json!({}),
            uses_lexicon: false,
        },
    ))
}

pub(crate) fn run_perplexity(
    run: &mut Run<'_>,
    records: &[Record],
    n: usize,
) -> Result<Outcome, EvalError> {
    let mut samples = Vec::with_capacity(n);
    let mut texts = Vec::with_capacity(n);
    for (i, record) in records[..n].iter().enumerate() {
        let text = run.render("text", record)?;
        if text.is_empty() {
            return Err(run.record_error(
                record,
                "text",
                "renders to an empty text",
                "perplexity needs at least one byte per record",
            ));
        }
        samples.push(sample(i, record, text.clone(), Value::Null));
        texts.push(text);
    }
    let scores = run
        .backend
        .rolling(&texts)
        .map_err(|e| run.backend_error(e))?;
    if scores.len() != texts.len() {
        return Err(run.shape(
            format!("{} texts", texts.len()),
            format!("{} rolling scores", scores.len()),
        ));
    }
    let (mut lps, mut words, mut bytes, mut tokens) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for ((s, text), sc) in samples.iter_mut().zip(&texts).zip(scores) {
        let record = &records[s.index];
        let lp = run.check_logprob(record, sc.logprob)?;
        if !lp.is_finite() || sc.tokens == 0 {
            return Err(EvalError::BadNumber {
                task: run.task.name.clone(),
                at: record.to_string(),
                what: "a rolling score of",
                value: format!("{lp} over {} tokens", sc.tokens),
            });
        }
        let counts = RollingCounts {
            logprob: lp,
            tokens: sc.tokens,
            words: count_words(text),
            bytes: count_bytes(text),
        };
        lps.push(counts.logprob);
        words.push(counts.words);
        bytes.push(counts.bytes);
        tokens.push(counts.tokens);
        s.rolling = Some(counts);
    }
    let mut metrics = BTreeMap::new();
    metrics.insert("word_perplexity".into(), weighted_perplexity(&lps, &words));
    metrics.insert("byte_perplexity".into(), weighted_perplexity(&lps, &bytes));
    metrics.insert("bits_per_byte".into(), bits_per_byte(&lps, &bytes));
    metrics.insert(
        "token_perplexity".into(),
        weighted_perplexity(&lps, &tokens),
    );
    Ok((
        samples,
        metrics,
        Scoring {
            settings: json!({}),
            uses_lexicon: false,
        },
    ))
}
