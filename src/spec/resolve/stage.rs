//! Validation of one training stage.

use std::collections::{BTreeMap, BTreeSet};

use super::super::SpecError;
use super::super::raw::*;
use super::super::types::*;
use super::Ctx;

/// Linear modules LoRA may target, per family.
pub fn lora_modules(family: Family) -> &'static [&'static str] {
    match family {
        Family::Baichuan2 => &["W_pack", "o_proj", "gate_proj", "up_proj", "down_proj"],
        Family::Llama | Family::Qwen2 => &[
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
    }
}

pub(super) fn stage(
    ctx: &Ctx<'_>,
    fam: Family,
    raw: &S<RawStage>,
    declared: &BTreeMap<String, DatasetSpec>,
) -> Result<Stage, SpecError> {
    let r = &raw.value;
    let name = ctx.name(&r.name, "stage")?;
    let kind = match ctx
        .one_of(&r.kind, "stage kind", &["pt", "sft", "dpo"])?
        .as_str()
    {
        "pt" => StageKind::Pt,
        "sft" => StageKind::Sft,
        _ => StageKind::Dpo,
    };
    if r.datasets.is_empty() {
        return Err(ctx.err(
            raw,
            format!("stage `{name}` lists no datasets"),
            "add at least one dataset name under `datasets:`",
        ));
    }
    let mut ds = Vec::new();
    for d in &r.datasets {
        let Some(spec) = declared.get(&d.value) else {
            let known: Vec<&str> = declared.keys().map(String::as_str).collect();
            return Err(ctx.err(
                d,
                format!(
                    "stage `{name}` uses dataset `{}`, which is not declared",
                    d.value
                ),
                if known.is_empty() {
                    "declare it under the top-level `datasets:`".to_string()
                } else {
                    format!(
                        "declare it under the top-level `datasets:` (declared: {})",
                        known.join(", ")
                    )
                },
            ));
        };
        if spec.format != kind.format() {
            return Err(ctx.err(
                d,
                format!(
                    "a {kind} stage needs `{}` data, but dataset `{}` has format `{}`",
                    kind.format(),
                    d.value,
                    spec.format
                ),
                format!(
                    "{kind} stages train on `format: {}` datasets",
                    kind.format()
                ),
            ));
        }
        if ds.contains(&d.value) {
            return Err(ctx.err(
                d,
                format!("stage `{name}` lists dataset `{}` twice", d.value),
                "list each dataset once",
            ));
        }
        ds.push(d.value.clone());
    }
    let length = match (&r.epochs, &r.max_steps) {
        (Some(e), None) => Length::Epochs(ctx.positive(e, "epochs")?),
        (None, Some(m)) => Length::MaxSteps(ctx.positive(m, "max_steps")?),
        (Some(_), Some(m)) => {
            return Err(ctx.err(
                m,
                format!("stage `{name}` sets both `epochs` and `max_steps`"),
                "keep exactly one of them",
            ));
        }
        (None, None) => {
            return Err(ctx.err(
                raw,
                format!("stage `{name}` sets neither `epochs` nor `max_steps`"),
                "add `epochs: N` or `max_steps: N`",
            ));
        }
    };
    let o = &r.optimizer.value;
    let betas = match &o.betas {
        None => [0.9, 0.999],
        Some(b) => {
            let ok = b.value.len() == 2
                && b.value
                    .iter()
                    .all(|x| x.is_finite() && (0.0..1.0).contains(x));
            if !ok {
                return Err(ctx.err(
                    b,
                    "`betas` must be two numbers in [0, 1)",
                    "for example `betas: [0.9, 0.999]`",
                ));
            }
            [b.value[0], b.value[1]]
        }
    };
    let optimizer = Optimizer {
        lr: ctx.range(&o.lr, "lr", 0.0, 10.0, true, false)?,
        betas,
        eps: match &o.eps {
            Some(e) => ctx.range(e, "eps", 0.0, 1.0, true, true)?,
            None => 1e-8,
        },
        weight_decay: match &o.weight_decay {
            Some(w) => ctx.range(w, "weight_decay", 0.0, 10.0, false, false)?,
            None => 0.0,
        },
    };
    let schedule = match &r.schedule {
        None => Schedule {
            kind: ScheduleKind::Cosine,
            warmup: 0,
        },
        Some(s) => {
            let kind = match ctx
                .one_of(
                    &s.value.kind,
                    "schedule kind",
                    &["constant", "cosine", "linear"],
                )?
                .as_str()
            {
                "constant" => ScheduleKind::Constant,
                "linear" => ScheduleKind::Linear,
                _ => ScheduleKind::Cosine,
            };
            let warmup = s.value.warmup.as_ref().map(|w| w.value).unwrap_or(0);
            if let (Length::MaxSteps(m), Some(w)) = (&length, &s.value.warmup)
                && w.value >= *m
            {
                return Err(ctx.err(
                    w,
                    format!(
                        "warmup of {} steps is not shorter than max_steps {m}",
                        w.value
                    ),
                    "warmup must end before training does",
                ));
            }
            Schedule { kind, warmup }
        }
    };
    let lora = match &r.lora {
        None => None,
        Some(l) => {
            let lv = &l.value;
            let allowed = lora_modules(fam);
            let targets = match &lv.targets {
                None => allowed.iter().map(|s| s.to_string()).collect(),
                Some(t) => {
                    if t.value.is_empty() {
                        return Err(ctx.err(
                            t,
                            "`targets` is empty",
                            format!("choose from: {}", allowed.join(", ")),
                        ));
                    }
                    let mut seen = BTreeSet::new();
                    for m in &t.value {
                        if !allowed.contains(&m.as_str()) {
                            return Err(ctx.err(
                                t,
                                format!("unknown LoRA target module {m:?} for this family"),
                                format!("choose from: {}", allowed.join(", ")),
                            ));
                        }
                        if !seen.insert(m.clone()) {
                            return Err(ctx.err(
                                t,
                                format!("LoRA target {m:?} listed twice"),
                                "list each module once",
                            ));
                        }
                    }
                    // Order of targets carries no meaning: canonicalise it.
                    seen.into_iter().collect()
                }
            };
            Some(Lora {
                r: ctx.positive(&lv.r, "r")?,
                alpha: ctx.range(&lv.alpha, "alpha", 0.0, f64::INFINITY, true, true)?,
                dropout: match &lv.dropout {
                    Some(d) => ctx.range(d, "dropout", 0.0, 1.0, false, true)?,
                    None => 0.0,
                },
                targets,
            })
        }
    };
    let beta = match (kind, &r.beta) {
        (StageKind::Dpo, Some(b)) => Some(ctx.range(b, "beta", 0.0, 100.0, true, false)?),
        (StageKind::Dpo, None) => Some(0.1),
        (_, Some(b)) => {
            return Err(ctx.err(
                b,
                format!("`beta` only applies to dpo stages, and `{name}` is a {kind} stage"),
                "remove `beta` from this stage",
            ));
        }
        (_, None) => None,
    };
    let val_fraction = match &r.val_fraction {
        Some(v) => ctx.range(v, "val_fraction", 0.0, 0.5, false, false)?,
        None => 0.0,
    };
    let eval_every = r.eval_every.as_ref().map(|e| e.value).unwrap_or(0);
    if let Some(e) = &r.eval_every
        && e.value > 0
        && val_fraction == 0.0
    {
        return Err(ctx.err(
            e,
            "`eval_every` needs a held-out split",
            "set `val_fraction` (for example 0.05) or drop `eval_every`",
        ));
    }
    Ok(Stage {
        name,
        kind,
        datasets: ds,
        length,
        batch_size: ctx.positive(&r.batch_size, "batch_size")?,
        grad_accum: match &r.grad_accum {
            Some(g) => ctx.positive(g, "grad_accum")?,
            None => 1,
        },
        max_len: ctx.positive(&r.max_len, "max_len")?,
        optimizer,
        schedule,
        clip_grad: match &r.clip_grad {
            Some(c) => ctx.range(c, "clip_grad", 0.0, f64::INFINITY, false, true)?,
            None => 1.0,
        },
        lora,
        checkpoint_every: r.checkpoint_every.as_ref().map(|c| c.value).unwrap_or(100),
        eval_every,
        val_fraction,
        beta,
        max_samples: match &r.max_samples {
            Some(m) => Some(ctx.positive(m, "max_samples")?),
            None => None,
        },
    })
}
