//! Validation: raw wire types → resolved [`Spec`] / [`Suite`], with defaults filled in and every
//! cross-reference checked. Each failure names `file:line:column` and carries a hint.

use std::collections::BTreeMap;
use std::path::Path;

use super::SpecError;
use super::raw::*;
use super::types::*;
use crate::yaml::At;

mod evals;
mod stage;

use evals::gate;
pub(crate) use evals::suite;
pub use stage::lora_modules;
use stage::stage;

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
    let fetch = match (&m.fetch, &source) {
        (None, _) => None,
        (Some(f), ModelSource::From(_)) if !f.value.trim().is_empty() => Some(f.value.clone()),
        (Some(f), ModelSource::From(_)) => {
            return Err(ctx.err(
                f,
                "`model.fetch` is empty",
                "give the command that fetches `model.from`, or leave `fetch` out",
            ));
        }
        (Some(f), ModelSource::Init(_)) => {
            return Err(ctx.err(
                f,
                "`model.fetch` is set but the model is trained from scratch (`init`)",
                "`fetch` names the command that fetches `model.from`; remove it",
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
    if raw.stages.value.is_empty() {
        return Err(ctx.err(
            &raw.stages,
            "the spec has no stages",
            "add at least one stage under `stages:`",
        ));
    }
    let mut stages: Vec<Stage> = Vec::new();
    for s in &raw.stages.value {
        let st = stage(ctx, fam, s, &datasets)?;
        if st.name == BASE_STAGE {
            return Err(ctx.err(
                &s.value.name,
                format!("the stage name `{BASE_STAGE}` is reserved"),
                "`base` names the untrained model in evaluation tables and REFs (RUN:base); rename the stage",
            ));
        }
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
            fetch,
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
