//! Validation: raw wire types → resolved [`Spec`] / [`Suite`], with defaults filled in and every
//! cross-reference checked. Each failure names `file:line:column` and carries a hint.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::SpecError;
use super::raw::*;
use super::types::*;
use crate::yaml::At;

const SPEC_DOC: &str = "see docs/reference/spec.md";

pub(crate) struct Ctx<'a> {
    pub file: &'a Path,
}

impl Ctx<'_> {
    fn err<T>(&self, s: &S<T>, message: impl Into<String>, hint: impl Into<String>) -> SpecError {
        SpecError::Invalid {
            at: At::spanned(self.file, s),
            message: message.into(),
            hint: hint.into(),
        }
    }

    fn positive(&self, s: &S<u64>, field: &str) -> Result<u64, SpecError> {
        if s.value == 0 {
            return Err(self.err(s, format!("`{field}` must be at least 1"), SPEC_DOC));
        }
        Ok(s.value)
    }

    fn finite(&self, s: &S<f64>, field: &str) -> Result<f64, SpecError> {
        if !s.value.is_finite() {
            return Err(self.err(
                s,
                format!("`{field}` must be a finite number, got {}", s.value),
                SPEC_DOC,
            ));
        }
        Ok(s.value)
    }

    fn range(
        &self,
        s: &S<f64>,
        field: &str,
        lo: f64,
        hi: f64,
        lo_open: bool,
        hi_open: bool,
    ) -> Result<f64, SpecError> {
        let v = self.finite(s, field)?;
        let lo_ok = if lo_open { v > lo } else { v >= lo };
        let hi_ok = if hi_open { v < hi } else { v <= hi };
        if !(lo_ok && hi_ok) {
            let l = if lo_open { "(" } else { "[" };
            let h = if hi_open { ")" } else { "]" };
            let hi_s = if hi.is_infinite() {
                "inf".to_string()
            } else {
                hi.to_string()
            };
            return Err(self.err(
                s,
                format!("`{field}` must be in {l}{lo}, {hi_s}{h}, got {v}"),
                SPEC_DOC,
            ));
        }
        Ok(v)
    }

    fn name(&self, s: &S<String>, what: &str) -> Result<String, SpecError> {
        let v = &s.value;
        let ok = !v.is_empty()
            && v.len() <= 64
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            && !v.starts_with('.');
        if !ok {
            return Err(self.err(
                s,
                format!("invalid {what} name {v:?}"),
                "names use 1-64 characters from A-Z a-z 0-9 - _ . and do not start with a dot",
            ));
        }
        Ok(v.clone())
    }

    pub(crate) fn path(&self, s: &S<String>, field: &str) -> Result<RelPath, SpecError> {
        normalize_rel(&s.value).map_err(|why| {
            self.err(
                s,
                format!("`{field}`: {why}: {:?}", s.value),
                "paths in specs are relative to the project root and stay inside it",
            )
        })
    }

    fn one_of(&self, s: &S<String>, field: &str, allowed: &[&str]) -> Result<String, SpecError> {
        if allowed.contains(&s.value.as_str()) {
            Ok(s.value.clone())
        } else {
            Err(self.err(
                s,
                format!("unknown {field} {:?}", s.value),
                format!("expected one of: {}", allowed.join(", ")),
            ))
        }
    }
}

/// Normalise a relative path: `/`-separated, no `.` components, no `..` that escapes.
pub fn normalize_rel(p: &str) -> Result<RelPath, &'static str> {
    if p.is_empty() {
        return Err("empty path");
    }
    if p.contains('\0') {
        return Err("path contains a NUL byte");
    }
    if p.contains('\\') {
        return Err("use `/` as the path separator");
    }
    let b = p.as_bytes();
    if p.starts_with('/') || p.starts_with('~') || (b.len() >= 2 && b[1] == b':') {
        return Err("absolute paths are not allowed");
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err("path escapes the project root");
                }
            }
            other => parts.push(other),
        }
    }
    if parts.is_empty() {
        return Err("path names the project root itself");
    }
    Ok(RelPath(parts.join("/")))
}

fn datasets(
    ctx: &Ctx<'_>,
    raw: &BTreeMap<String, S<RawDataset>>,
) -> Result<BTreeMap<String, DatasetSpec>, SpecError> {
    let mut out = BTreeMap::new();
    for (name, d) in raw {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
        if !ok {
            return Err(ctx.err(
                d,
                format!("invalid dataset name {name:?}"),
                "dataset names use 1-64 characters from A-Z a-z 0-9 - _ .",
            ));
        }
        let path = ctx.path(&d.value.path, "path")?;
        let format = Format::parse(&d.value.format.value).ok_or_else(|| {
            let names: Vec<&str> = Format::ALL.iter().map(|(n, _)| *n).collect();
            ctx.err(
                &d.value.format,
                format!("unknown dataset format {:?}", d.value.format.value),
                format!("expected one of: {}", names.join(", ")),
            )
        })?;
        out.insert(name.clone(), DatasetSpec { path, format });
    }
    Ok(out)
}

fn init(ctx: &Ctx<'_>, family: Family, raw: &S<RawInit>) -> Result<InitConfig, SpecError> {
    let r = &raw.value;
    let hidden = ctx.positive(&r.hidden_size, "hidden_size")?;
    let layers = ctx.positive(&r.layers, "layers")?;
    let heads = ctx.positive(&r.heads, "heads")?;
    if hidden % heads != 0 {
        return Err(ctx.err(
            &r.heads,
            format!("`hidden_size` {hidden} is not divisible by `heads` {heads}"),
            "pick a head count that divides the hidden size",
        ));
    }
    let kv_heads = match &r.kv_heads {
        Some(k) => {
            let k2 = ctx.positive(k, "kv_heads")?;
            if heads % k2 != 0 {
                return Err(ctx.err(
                    k,
                    format!("`heads` {heads} is not divisible by `kv_heads` {k2}"),
                    "grouped-query attention needs heads to be a multiple of kv_heads",
                ));
            }
            if family == Family::Baichuan2 && k2 != heads {
                return Err(ctx.err(
                    k,
                    "baichuan2 has no grouped-query attention",
                    "drop `kv_heads` or set it equal to `heads`",
                ));
            }
            k2
        }
        None => heads,
    };
    let intermediate = ctx.positive(&r.intermediate_size, "intermediate_size")?;
    let max_position = match &r.max_position {
        Some(m) => ctx.positive(m, "max_position")?,
        None => 2048,
    };
    let rope_theta = match &r.rope_theta {
        Some(t) => ctx.range(t, "rope_theta", 0.0, f64::INFINITY, true, true)?,
        None => 10000.0,
    };
    let norm_eps = match &r.norm_eps {
        Some(t) => ctx.range(t, "norm_eps", 0.0, 1.0, true, true)?,
        None if family == Family::Baichuan2 => 1e-6,
        None => 1e-5,
    };
    let init_std = match &r.init_std {
        Some(t) => ctx.range(t, "init_std", 0.0, 1.0, true, false)?,
        None => 0.02,
    };
    let position = match &r.position {
        None => Position::Rope,
        Some(p) => match ctx
            .one_of(p, "position encoding", &["rope", "alibi"])?
            .as_str()
        {
            "alibi" => {
                if family != Family::Baichuan2 {
                    return Err(ctx.err(
                        p,
                        "ALiBi positions are only used by the baichuan2 family",
                        "use `position: rope`, or `family: baichuan2`",
                    ));
                }
                Position::Alibi
            }
            _ => Position::Rope,
        },
    };
    Ok(InitConfig {
        hidden_size: hidden,
        layers,
        heads,
        kv_heads,
        intermediate_size: intermediate,
        max_position,
        rope_theta,
        norm_eps,
        tie_embeddings: r.tie_embeddings.unwrap_or(false),
        init_std,
        position,
    })
}

fn family(ctx: &Ctx<'_>, s: &S<String>) -> Result<Family, SpecError> {
    Ok(
        match ctx
            .one_of(s, "model family", &["baichuan2", "llama", "qwen2"])?
            .as_str()
        {
            "llama" => Family::Llama,
            "qwen2" => Family::Qwen2,
            _ => Family::Baichuan2,
        },
    )
}

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

fn stage(
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
    })
}

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

/// Reads and resolves an eval suite named at a location in the spec.
pub(crate) type SuiteLoader<'a> = dyn FnMut(&S<String>, RelPath) -> Result<Suite, SpecError> + 'a;

/// Resolve a raw spec. `load_suite` reads and resolves an eval suite by its relative path.
pub(crate) fn spec(
    ctx: &Ctx<'_>,
    raw: RawSpec,
    load_suite: &mut SuiteLoader<'_>,
) -> Result<Spec, SpecError> {
    let name = ctx.name(&raw.name, "run")?;
    let device = match &raw.device {
        None => DeviceSpec::Cpu,
        Some(d) => parse_device(&d.value).ok_or_else(|| {
            ctx.err(
                d,
                format!("unknown device {:?}", d.value),
                "use `cpu`, `cuda` or `cuda:N`",
            )
        })?,
    };
    let dtype = match &raw.dtype {
        None => DType::F32,
        Some(d) => match ctx.one_of(d, "dtype", &["bf16", "f16", "f32"])?.as_str() {
            "bf16" => DType::Bf16,
            "f16" => DType::F16,
            _ => DType::F32,
        },
    };
    let m = &raw.model.value;
    let fam = family(ctx, &m.family)?;
    let source = match (&m.init, &m.from) {
        (Some(i), None) => ModelSource::Init(init(ctx, fam, i)?),
        (None, Some(f)) => ModelSource::From(ctx.path(f, "model.from")?),
        (Some(_), Some(f)) => {
            return Err(ctx.err(
                f,
                "`model` sets both `init` and `from`",
                "use `init` to train from scratch or `from` to start from a local model, not both",
            ));
        }
        (None, None) => {
            return Err(ctx.err(
                &raw.model,
                "`model` needs either `init` (train from scratch) or `from` (a local model)",
                SPEC_DOC,
            ));
        }
    };
    let datasets = datasets(ctx, &raw.datasets)?;
    let tokenizer = match &raw.tokenizer {
        None => match source {
            ModelSource::From(_) => TokenizerSpec::FromModel,
            ModelSource::Init(_) => {
                return Err(ctx.err(
                    &raw.model,
                    "a model trained from scratch needs a `tokenizer`",
                    "add `tokenizer: {train: {dataset: NAME, vocab_size: N}}` or `tokenizer: {path: FILE}`",
                ));
            }
        },
        Some(t) => match (&t.value.path, &t.value.train) {
            (Some(p), None) => TokenizerSpec::Path(ctx.path(p, "tokenizer.path")?),
            (None, Some(tr)) => {
                let d = &tr.value.dataset;
                match datasets.get(&d.value) {
                    None => {
                        return Err(ctx.err(
                            d,
                            format!(
                                "tokenizer trains on dataset `{}`, which is not declared",
                                d.value
                            ),
                            "declare it under the top-level `datasets:`",
                        ));
                    }
                    Some(ds) if ds.format != Format::Text => {
                        return Err(ctx.err(
                            d,
                            format!(
                                "tokenizer training needs `text` data, but `{}` has format `{}`",
                                d.value, ds.format
                            ),
                            "train the tokenizer on a `format: text` dataset",
                        ));
                    }
                    Some(_) => {}
                }
                let vocab = tr.value.vocab_size.value;
                if !(260..=1_000_000).contains(&vocab) {
                    return Err(ctx.err(
                        &tr.value.vocab_size,
                        format!("`vocab_size` {vocab} is out of range"),
                        "a byte-level BPE needs at least 256 byte tokens plus specials: use 260..=1000000",
                    ));
                }
                TokenizerSpec::Train {
                    dataset: d.value.clone(),
                    vocab_size: vocab,
                    min_frequency: tr
                        .value
                        .min_frequency
                        .as_ref()
                        .map(|m| m.value)
                        .unwrap_or(2),
                }
            }
            _ => {
                return Err(ctx.err(
                    t,
                    "`tokenizer` needs exactly one of `path` or `train`",
                    SPEC_DOC,
                ));
            }
        },
    };
    let template = match &raw.template {
        None => match source {
            ModelSource::From(_) => TemplateSpec::FromModel,
            ModelSource::Init(_) => TemplateSpec::Builtin("chatml".into()),
        },
        Some(t) if t.value == "model" => {
            if !matches!(source, ModelSource::From(_)) {
                return Err(ctx.err(
                    t,
                    "`template: model` needs a model loaded with `model.from`",
                    format!("pick a built-in template: {}", BUILTIN_TEMPLATES.join(", ")),
                ));
            }
            TemplateSpec::FromModel
        }
        Some(t) if BUILTIN_TEMPLATES.contains(&t.value.as_str()) => {
            TemplateSpec::Builtin(t.value.clone())
        }
        Some(t) if t.value.ends_with(".jinja") || t.value.ends_with(".j2") => {
            TemplateSpec::File(ctx.path(t, "template")?)
        }
        Some(t) => {
            return Err(ctx.err(
                t,
                format!("unknown chat template {:?}", t.value),
                format!(
                    "use a built-in name ({}), `model`, or a path to a .jinja file",
                    BUILTIN_TEMPLATES.join(", ")
                ),
            ));
        }
    };
    if raw.stages.is_empty() {
        return Err(ctx.err(
            &raw.name,
            "the spec has no stages",
            "add at least one stage under `stages:`",
        ));
    }
    let mut stages: Vec<Stage> = Vec::new();
    for s in &raw.stages {
        let st = stage(ctx, fam, s, &datasets)?;
        if stages.iter().any(|o| o.name == st.name) {
            return Err(ctx.err(
                &s.value.name,
                format!("duplicate stage name `{}`", st.name),
                "stage names must be unique within a spec",
            ));
        }
        stages.push(st);
    }
    let mut evals: Vec<Suite> = Vec::new();
    for e in &raw.evals {
        let p = ctx.path(e, "evals")?;
        let suite = load_suite(e, p)?;
        if evals.iter().any(|o| o.name == suite.name) {
            return Err(ctx.err(
                e,
                format!("two eval suites are named `{}`", suite.name),
                "suite names must be unique within a spec",
            ));
        }
        evals.push(suite);
    }
    let mut gates = Vec::new();
    for g in &raw.gates {
        gates.push(gate(ctx, g, &stages, &evals)?);
    }
    Ok(Spec {
        name,
        description: raw.description.unwrap_or_default(),
        seed: raw.seed.value,
        device,
        dtype,
        model: ModelSpec {
            family: fam,
            source,
        },
        tokenizer,
        template,
        datasets,
        stages,
        evals,
        gates,
    })
}

fn parse_device(s: &str) -> Option<DeviceSpec> {
    match s {
        "cpu" => Some(DeviceSpec::Cpu),
        "cuda" => Some(DeviceSpec::Cuda(0)),
        _ => {
            let n = s.strip_prefix("cuda:")?;
            if n.is_empty() || n.len() > 3 || !n.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            n.parse().ok().map(DeviceSpec::Cuda)
        }
    }
}

fn gate(
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
    use super::*;

    #[test]
    fn normalize_paths() {
        assert_eq!(normalize_rel("data/./x.txt").unwrap().0, "data/x.txt");
        assert_eq!(normalize_rel("data/../y/x.txt").unwrap().0, "y/x.txt");
        assert!(normalize_rel("../x").is_err());
        assert!(normalize_rel("a/../../x").is_err());
        assert!(normalize_rel("/etc/passwd").is_err());
        assert!(normalize_rel("C:/x").is_err());
        assert!(normalize_rel("~/x").is_err());
        assert!(normalize_rel("a\\b").is_err());
        assert!(normalize_rel(".").is_err());
        assert!(normalize_rel("").is_err());
    }

    #[test]
    fn devices() {
        assert_eq!(parse_device("cpu"), Some(DeviceSpec::Cpu));
        assert_eq!(parse_device("cuda:1"), Some(DeviceSpec::Cuda(1)));
        assert_eq!(parse_device("cuda:"), None);
        assert_eq!(parse_device("cuda:x"), None);
        assert_eq!(parse_device("tpu"), None);
    }
}
