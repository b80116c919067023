//! Running a suite on a checkpoint: results cached by (checkpoint, suite, data, engine, device,
//! scoring options), stored as a tree of `results.json`, `samples.jsonl` and `summary.md`.
//!
//! A run that stops part-way is recorded with `status: "partial"` and the number of tasks that
//! completed; it is never cached under the key and can never promote.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::Device;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Backend;
use super::backend::ModelBackend;
use super::checkpoint::{self, LoadError};
use super::metrics::Metric;
use super::tasks::{self, TaskResult};
use crate::env::{DeviceClass, EngineFingerprint};
use crate::lock::Pin;
use crate::spec::{RelPath, Suite};
use crate::store::tree::TreeEntry;
use crate::store::{KeyOutput, Store, StoreError, Tree};

pub const RESULTS_SCHEMA: &str = "medrun-results-1";

/// How requests are scored. Part of the results key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoringOptions {
    /// Score the choices of a question from one shared context pass (KV cache).
    pub share_prompt: bool,
}

impl Default for ScoringOptions {
    fn default() -> Self {
        ScoringOptions { share_prompt: true }
    }
}

/// The results of one suite on one checkpoint (`results.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub schema: String,
    pub suite: String,
    /// Path of the suite file, relative to the project root.
    pub suite_path: String,
    /// blake3 of the resolved suite (tasks and dataset pins).
    pub suite_hash: String,
    /// Content address of the checkpoint (a stage output tree).
    pub checkpoint: String,
    pub engine: EngineFingerprint,
    pub device: DeviceClass,
    pub scoring: ScoringOptions,
    /// `complete` or `partial`.
    pub status: String,
    pub completed: usize,
    pub total: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Per task: kind, resolved config, task hash, metrics.
    pub tasks: BTreeMap<String, TaskSummary>,
    /// Flat `suite/task/metric` → value, what gates read. Non-finite values are written as
    /// `"inf"`, `"-inf"` or `"nan"` ([`super::number`]).
    #[serde(with = "super::number::map")]
    pub metrics: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSummary {
    pub kind: String,
    pub config: Value,
    pub task_hash: String,
    pub n: usize,
    pub metrics: BTreeMap<String, Metric>,
}

impl Results {
    pub fn complete(&self) -> bool {
        self.status == "complete" && self.completed == self.total
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Data(super::data::EvalDataError),
    #[error("{0}")]
    Other(String),
}

impl SuiteError {
    pub fn hint(&self) -> String {
        match self {
            SuiteError::Load(e) => e.hint(),
            SuiteError::Store(e) => e.hint(),
            SuiteError::Data(e) => e.hint(),
            SuiteError::Other(_) => "see the message above".into(),
        }
    }
}

/// The key under which a suite's results on a checkpoint are cached, and its inputs.
pub fn results_key(
    checkpoint: &str,
    suite: &Suite,
    pins: &BTreeMap<RelPath, Pin>,
    engine: &EngineFingerprint,
    device: &DeviceClass,
    scoring: ScoringOptions,
) -> Result<(String, Value), SuiteError> {
    let data: BTreeMap<String, Value> = suite
        .datasets
        .iter()
        .map(|(n, d)| {
            let pin = pins.get(&d.path);
            (
                n.clone(),
                json!({"path": d.path.0, "blake3": pin.map(|p| p.blake3.clone()), "bytes": pin.map(|p| p.bytes)}),
            )
        })
        .collect();
    let inputs = json!({
        "kind": "eval",
        "checkpoint": checkpoint,
        "suite": suite,
        "data": data,
        "engine": engine,
        "device": device,
        "scoring": scoring,
    });
    let canon =
        crate::hash::canonical_string(&inputs).map_err(|e| SuiteError::Other(e.to_string()))?;
    Ok((blake3::hash(canon.as_bytes()).to_hex().to_string(), inputs))
}

/// A suite's results as stored.
#[derive(Debug, Clone)]
pub struct Evaluated {
    /// Content address of the results tree.
    pub output: String,
    pub results: Results,
    pub cached: bool,
}

/// Everything evaluation needs from the project.
pub struct EvalContext<'a> {
    pub root: &'a Path,
    pub store: &'a Store,
    pub pins: &'a BTreeMap<RelPath, Pin>,
    pub engine: &'a EngineFingerprint,
    pub device_class: &'a DeviceClass,
    pub device: &'a Device,
    pub scoring: ScoringOptions,
    /// Sequences per forward pass. Never changes a result, so it is not part of the key.
    pub batch_size: usize,
    /// Re-evaluate even when results are cached.
    pub no_cache: bool,
    /// Seed for few-shot sampling and bootstrap (the suite's results depend on it).
    pub seed: u64,
}

/// Read a stored results tree.
pub fn read_results(store: &Store, output: &str) -> Result<Results, SuiteError> {
    let tree = Tree::load(store, output)?;
    let e = tree
        .entries
        .get("results.json")
        .ok_or_else(|| SuiteError::Other(format!("{output} is not a results tree")))?;
    serde_json::from_slice(&store.get(&e.object)?)
        .map_err(|e| SuiteError::Other(format!("results.json in {output}: {e}")))
}

/// Per-sample records of a stored results tree (`samples.jsonl`), by task.
pub fn read_samples(
    store: &Store,
    output: &str,
) -> Result<BTreeMap<String, Vec<Value>>, SuiteError> {
    let tree = Tree::load(store, output)?;
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let Some(e) = tree.entries.get("samples.jsonl") else {
        return Ok(out);
    };
    let bytes = store.get(&e.object)?;
    for line in String::from_utf8_lossy(&bytes).lines() {
        let v: Value = serde_json::from_str(line)
            .map_err(|e| SuiteError::Other(format!("samples.jsonl in {output}: {e}")))?;
        let task = v
            .get("task")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        out.entry(task).or_default().push(v);
    }
    Ok(out)
}

/// Evaluate `suite` on the checkpoint `output` (a stage output tree), or reuse cached results.
pub fn evaluate(
    cx: &EvalContext<'_>,
    output: &str,
    tree: &Tree,
    suite: &Suite,
    progress: &mut dyn FnMut(&str),
) -> Result<Evaluated, SuiteError> {
    let (key, inputs) = results_key(
        output,
        suite,
        cx.pins,
        cx.engine,
        cx.device_class,
        cx.scoring,
    )?;
    // Cached results count only when their tree and its objects hash right; damaged ones are
    // computed again, which restores them.
    if !cx.no_cache {
        match cx.store.cached_output(&key)? {
            crate::store::CachedOutput::Intact { output: out, .. } => {
                let results = read_results(cx.store, &out)?;
                return Ok(Evaluated {
                    output: out,
                    results,
                    cached: true,
                });
            }
            crate::store::CachedOutput::Damaged { problem, .. } => tracing::warn!(
                "the cached results of suite `{}` are damaged ({problem}); evaluating again, which restores them",
                suite.name
            ),
            crate::store::CachedOutput::None => {}
        }
    }
    // Read every dataset before loading the model: a malformed record fails fast.
    let mut data: BTreeMap<String, Vec<super::data::Record>> = BTreeMap::new();
    for task in &suite.tasks {
        let mut names = vec![task.dataset.clone()];
        if let crate::spec::TaskParams::Refusal(r) = &task.params {
            names.push(r.benign_dataset.clone());
        }
        for name in names {
            if data.contains_key(&name) {
                continue;
            }
            let d = suite.datasets.get(&name).ok_or_else(|| {
                SuiteError::Other(format!(
                    "dataset `{name}` is not declared in suite `{}`",
                    suite.name
                ))
            })?;
            let records = super::data::load_dataset(cx.root, d).map_err(SuiteError::Data)?;
            data.insert(name, records);
        }
    }
    let loaded = checkpoint::load(cx.store, output, tree, cx.device)?;
    let mut backend =
        ModelBackend::from_loaded(loaded).map_err(|e| SuiteError::Other(e.to_string()))?;
    backend.share_prompt = cx.scoring.share_prompt;
    backend.batch_size = cx.batch_size.max(1);
    let mut done: Vec<TaskResult> = Vec::new();
    let mut error = None;
    for task in &suite.tasks {
        progress(&task.name);
        match run_one(cx, task, &data, &mut backend) {
            Ok(r) => done.push(r),
            Err(e) => {
                error = Some(format!("task `{}`: {e}", task.name));
                break;
            }
        }
    }
    let results = assemble(cx, output, suite, &done, error);
    let out = store_results(cx.store, &results, &done)?;
    if results.complete() {
        cx.store.put_key_inputs(
            &key,
            &crate::hash::canonical_value(&inputs).map_err(|e| SuiteError::Other(e.to_string()))?,
        )?;
        cx.store.record_key_output(
            &key,
            &KeyOutput {
                output: out.clone(),
                run: String::new(),
            },
        )?;
    }
    Ok(Evaluated {
        output: out,
        results,
        cached: false,
    })
}

fn run_one(
    cx: &EvalContext<'_>,
    task: &crate::spec::Task,
    data: &BTreeMap<String, Vec<super::data::Record>>,
    backend: &mut dyn Backend,
) -> Result<TaskResult, String> {
    let get = |name: &str| {
        data.get(name)
            .map(Vec::as_slice)
            .ok_or_else(|| format!("dataset `{name}` was not read"))
    };
    let records = get(&task.dataset)?;
    let benign = match &task.params {
        crate::spec::TaskParams::Refusal(r) => Some(get(&r.benign_dataset)?),
        _ => None,
    };
    tasks::run_task(task, records, benign, backend, cx.seed)
        .map_err(|e| format!("{e} (hint: {})", e.hint()))
}

fn assemble(
    cx: &EvalContext<'_>,
    output: &str,
    suite: &Suite,
    done: &[TaskResult],
    error: Option<String>,
) -> Results {
    let suite_hash = crate::hash::canonical_string(suite)
        .map(|s| blake3::hash(s.as_bytes()).to_hex().to_string())
        .unwrap_or_default();
    let mut tasks_map = BTreeMap::new();
    let mut metrics = BTreeMap::new();
    for r in done {
        let config = suite
            .tasks
            .iter()
            .find(|t| t.name == r.name)
            .and_then(|t| serde_json::to_value(t).ok())
            .unwrap_or(Value::Null);
        for (m, v) in &r.metrics {
            metrics.insert(format!("{}/{}/{m}", suite.name, r.name), v.value);
        }
        tasks_map.insert(
            r.name.clone(),
            TaskSummary {
                kind: config
                    .get("kind")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                config,
                task_hash: r.task_hash.clone(),
                n: r.n,
                metrics: r.metrics.clone(),
            },
        );
    }
    let total = suite.tasks.len();
    Results {
        schema: RESULTS_SCHEMA.into(),
        suite: suite.name.clone(),
        suite_path: suite.path.0.clone(),
        suite_hash,
        checkpoint: output.to_string(),
        engine: cx.engine.clone(),
        device: cx.device_class.clone(),
        scoring: cx.scoring,
        status: if error.is_none() && done.len() == total {
            "complete".into()
        } else {
            "partial".into()
        },
        completed: done.len(),
        total,
        error,
        tasks: tasks_map,
        metrics,
    }
}

/// Markdown summary: one table row per metric.
pub fn summary_markdown(r: &Results) -> String {
    let mut s = format!(
        "# {} on {}\n\nstatus: {} ({} of {} tasks)\n\n| task | metric | value | stderr | n |\n|---|---|---|---|---|\n",
        r.suite,
        &r.checkpoint[..12.min(r.checkpoint.len())],
        r.status,
        r.completed,
        r.total
    );
    for (name, t) in &r.tasks {
        for (m, v) in &t.metrics {
            s.push_str(&format!(
                "| {name} | {m} | {} | {} | {} |\n",
                super::number::show(v.value, 4),
                v.stderr
                    .map(|e| super::number::show(e, 4))
                    .unwrap_or_else(|| "-".into()),
                v.n
            ));
        }
    }
    if let Some(e) = &r.error {
        s.push_str(&format!("\nstopped: {e}\n"));
    }
    s
}

fn store_results(store: &Store, r: &Results, done: &[TaskResult]) -> Result<String, SuiteError> {
    let mut tree = Tree::default();
    let mut put = |name: &str, bytes: Vec<u8>| -> Result<(), SuiteError> {
        let id = store.put_bytes(&bytes)?;
        tree.entries.insert(
            name.to_string(),
            TreeEntry {
                object: id,
                bytes: bytes.len() as u64,
            },
        );
        Ok(())
    };
    let mut json = serde_json::to_vec_pretty(r).map_err(|e| SuiteError::Other(e.to_string()))?;
    json.push(b'\n');
    put("results.json", json)?;
    let mut lines = Vec::new();
    for t in done {
        for s in &t.samples {
            let mut v = serde_json::to_value(s).map_err(|e| SuiteError::Other(e.to_string()))?;
            if let Value::Object(m) = &mut v {
                m.insert("task".into(), json!(t.name));
            }
            lines.extend_from_slice(v.to_string().as_bytes());
            lines.push(b'\n');
        }
    }
    put("samples.jsonl", lines)?;
    put("summary.md", summary_markdown(r).into_bytes())?;
    Ok(tree.put(store)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::gate::{self, Better};
    use crate::spec::{Gate, GateRule};
    use proptest::prelude::*;

    /// Results of one perplexity task whose metrics are all `x`.
    fn results(x: f64) -> Results {
        let metric = Metric {
            value: x,
            stderr: Some(x),
            n: 2,
        };
        let names = ["word_perplexity", "bits_per_byte"];
        Results {
            schema: RESULTS_SCHEMA.into(),
            suite: "s".into(),
            suite_path: "evals/s.yaml".into(),
            suite_hash: "0".repeat(64),
            checkpoint: "1".repeat(64),
            engine: EngineFingerprint::current(),
            device: DeviceClass {
                kind: "cpu".into(),
                model: "test".into(),
                isa: Vec::new(),
            },
            scoring: ScoringOptions::default(),
            status: "complete".into(),
            completed: 1,
            total: 1,
            error: None,
            tasks: [(
                "zh".to_string(),
                TaskSummary {
                    kind: "perplexity".into(),
                    config: json!({"kind": "perplexity"}),
                    task_hash: "2".repeat(64),
                    n: 2,
                    metrics: names.iter().map(|m| (m.to_string(), metric)).collect(),
                },
            )]
            .into(),
            metrics: names.iter().map(|m| (format!("s/zh/{m}"), x)).collect(),
        }
    }

    /// Written as `store_results` writes it, read as `read_results` reads it.
    fn through_the_file(r: &Results) -> (Results, String) {
        let bytes = serde_json::to_vec_pretty(r).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        (serde_json::from_slice(&bytes).unwrap(), text)
    }

    fn same(a: f64, b: f64) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.to_bits() == f64::NAN.to_bits())
    }

    #[test]
    fn an_infinite_word_perplexity_reads_back_and_is_gated() {
        let (back, text) = through_the_file(&results(f64::INFINITY));
        assert!(text.contains("\"s/zh/word_perplexity\": \"inf\""), "{text}");
        assert!(!text.contains("null"), "{text}");
        assert_eq!(back, results(f64::INFINITY));
        assert_eq!(summary_markdown(&back).matches("| inf | inf |").count(), 2);
        let scores = crate::eval::scores::scores_of(&[(&back, &BTreeMap::new())]);
        let m = &scores.metrics["s/zh/word_perplexity"];
        assert_eq!((m.value, m.better), (f64::INFINITY, Better::Lower));
        let gate = |min, max| Gate {
            metric: "s/zh/word_perplexity".into(),
            stage: "sft".into(),
            rule: GateRule::Threshold { min, max },
        };
        let d = gate::decide(&[gate(None, Some(50.0))], &scores, None);
        assert!(!d.passed, "{d:?}");
        assert_eq!(d.gates[0].value, Some(f64::INFINITY));
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["gates"][0]["value"], "inf");
        assert!(gate::decide(&[gate(Some(1.0), None)], &scores, None).passed);
        let (nan, _) = through_the_file(&results(f64::NAN));
        let scores = crate::eval::scores::scores_of(&[(&nan, &BTreeMap::new())]);
        for g in [gate(None, Some(50.0)), gate(Some(1.0), None)] {
            assert!(!gate::decide(&[g], &scores, None).passed);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5_000))]
        /// Every f64 survives results.json bit for bit; NaNs come back as the canonical NaN.
        #[test]
        fn every_metric_value_round_trips_through_results_json(bits in any::<u64>()) {
            let x = f64::from_bits(bits);
            let (back, _) = through_the_file(&results(x));
            for v in back.metrics.values() {
                prop_assert!(same(x, *v), "{:#x} -> {:#x}", bits, v.to_bits());
            }
            for m in back.tasks["zh"].metrics.values() {
                prop_assert!(same(x, m.value) && same(x, m.stderr.unwrap_or(0.0)));
            }
        }
    }
}
