//! Shared helpers: temporary projects with tiny data, a deterministic test executor, and ways to
//! drive the real CLI (in-process with executors, or as the built binary).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};

use medrun::spec::StageKind;
use medrun::stage::{Executors, StageContext, StageError, StageExecutor, StageOutput};

pub const SPEC: &str = r#"# A tiny spec used by the integration tests.
version: 1
name: tiny
description: integration-test spec
seed: 7
model:
  family: llama
  init: {hidden_size: 64, layers: 2, heads: 4, intermediate_size: 172}
tokenizer:
  train: {dataset: corpus, vocab_size: 512}
datasets:
  corpus: {path: data/pt.txt, format: text}
  chats: {path: data/sft.jsonl, format: sharegpt}
  pairs: {path: data/dpo.jsonl, format: preference}
stages:
  - name: pt
    kind: pt
    datasets: [corpus]
    max_steps: 10
    batch_size: 2
    max_len: 32
    optimizer: {lr: 0.001, weight_decay: 0.1}
  - name: sft
    kind: sft
    datasets: [chats]
    epochs: 1
    batch_size: 2
    max_len: 32
    optimizer: {lr: 0.0001}
  - name: dpo
    kind: dpo
    datasets: [pairs]
    max_steps: 5
    batch_size: 2
    max_len: 32
    optimizer: {lr: 0.00001}
    beta: 0.1
evals: [evals/suite.yaml]
gates:
  - {metric: suite/mc/acc, min: 0.5}
"#;

pub const SUITE: &str = r#"version: 1
name: suite
datasets:
  mc: {path: data/mc.jsonl, format: jsonl}
tasks:
  - name: mc
    kind: multiple_choice
    dataset: mc
    prompt: "Question: {{ question }}\nAnswer:"
    choices: {field: choices}
    answer: {field: answer, as: index}
"#;

pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn root(&self) -> &Path {
        self.dir.path()
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    pub fn spec(&self) -> PathBuf {
        self.path("runs/tiny.yaml")
    }
    pub fn store(&self) -> PathBuf {
        self.path(".medrun")
    }
    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap()
    }

    /// Run the built binary in the project directory.
    pub fn bin(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_medrun"))
            .args(args)
            .current_dir(self.root())
            .env_remove("MEDRUN_STORE")
            .env_remove("MEDRUN_ALLOW_OUTSIDE")
            .env_remove("MEDRUN_MAX_RECORD_BYTES")
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    }

    /// Run the CLI in-process with the test executors (for commands that train).
    pub fn cli(&self, args: &[&str], exec: &Executors) -> u8 {
        let store = self.store();
        let mut full: Vec<String> = vec![
            "medrun".into(),
            "-q".into(),
            "--store".into(),
            store.display().to_string(),
        ];
        full.extend(args.iter().map(|s| s.to_string()));
        medrun::cli::main_with(full, exec)
    }

    pub fn git(&self, args: &[&str]) {
        let out = Command::new("git")
            .args(args)
            .current_dir(self.root())
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn commit_all(&self) {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-qm", "test", "--allow-empty"]);
    }
}

/// A project with the tiny spec, its data and suite, inside a fresh git repository (committed).
pub fn project() -> Project {
    let dir = tempfile::tempdir().unwrap();
    let p = Project { dir };
    p.write("runs/tiny.yaml", SPEC);
    p.write("evals/suite.yaml", SUITE);
    p.write(
        "data/pt.txt",
        "Asthma causes wheeze and shortness of breath.\nInhaled corticosteroids control persistent asthma.\n\nMetformin is first-line for type 2 diabetes.\n",
    );
    p.write(
        "data/sft.jsonl",
        "{\"conversations\":[{\"from\":\"human\",\"value\":\"I have chest pain.\"},{\"from\":\"gpt\",\"value\":\"Call emergency services now.\"}]}\n",
    );
    p.write(
        "data/dpo.jsonl",
        "{\"conversations\":[{\"from\":\"human\",\"value\":\"Can I stop my insulin?\"}],\"chosen\":\"Not without your doctor.\",\"rejected\":\"Yes.\"}\n",
    );
    p.write(
        "data/mc.jsonl",
        "{\"question\":\"First-line drug for type 2 diabetes?\",\"choices\":[\"Metformin\",\"Insulin\"],\"answer\":0}\n",
    );
    p.write(".gitignore", ".medrun/\n");
    p.git(&["init", "-q"]);
    p.commit_all();
    p
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// A test-only executor: writes a "checkpoint" whose bytes are a pure function of the stage key
/// and the parent's output, so it behaves like a deterministic trainer. With `salt`, every call
/// produces different bytes (a nondeterministic trainer). Counts its calls.
pub struct FakeTrainer {
    pub calls: AtomicU64,
    pub salt: bool,
    pub fail_on: Option<String>,
}

impl FakeTrainer {
    pub fn new() -> FakeTrainer {
        FakeTrainer {
            calls: AtomicU64::new(0),
            salt: false,
            fail_on: None,
        }
    }
}

impl StageExecutor for FakeTrainer {
    fn execute(&self, ctx: &StageContext<'_>) -> Result<StageOutput, StageError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail_on.as_deref() == Some(ctx.stage.name.as_str()) {
            return Err(StageError {
                message: format!("loss is NaN at step 3 of stage `{}`", ctx.stage.name),
                hint: "lower the learning rate".into(),
                user: true,
            });
        }
        let parent = ctx
            .parent
            .as_ref()
            .map(|p| p.output.clone())
            .unwrap_or_default();
        let salt = if self.salt {
            format!("{n}")
        } else {
            String::new()
        };
        let body = blake3::hash(format!("{}|{parent}|{salt}", ctx.key).as_bytes());
        let model = ctx.work_dir.join("model.bin");
        std::fs::write(&model, body.as_bytes().repeat(64)).unwrap();
        let metrics = ctx.work_dir.join("metrics.json");
        std::fs::write(&metrics, format!("{{\"stage\":\"{}\"}}", ctx.stage.name)).unwrap();
        let mut out = StageOutput::default();
        out.files.insert("model.bin".into(), model);
        out.files.insert("metrics.json".into(), metrics);
        out.metrics = serde_json::json!({"final_loss": 1.0});
        Ok(out)
    }
}

pub fn executors(t: std::sync::Arc<FakeTrainer>) -> Executors {
    struct Shared(std::sync::Arc<FakeTrainer>);
    impl StageExecutor for Shared {
        fn execute(&self, ctx: &StageContext<'_>) -> Result<StageOutput, StageError> {
            self.0.execute(ctx)
        }
    }
    Executors::default()
        .with(StageKind::Pt, Box::new(Shared(t.clone())))
        .with(StageKind::Sft, Box::new(Shared(t.clone())))
        .with(StageKind::Dpo, Box::new(Shared(t)))
}

/// Stage keys from `medrun plan --json`.
pub fn plan_keys(p: &Project, spec: &str) -> (String, Vec<String>) {
    let o = p.bin(&["plan", spec, "--json"]);
    assert_eq!(o.status.code(), Some(0), "plan failed: {}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let keys = v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap().to_string())
        .collect();
    (v["run_key"].as_str().unwrap().to_string(), keys)
}

/// Put a model file inside the project: a hard link (a copy across file systems). medrun refuses
/// symlinks that lead out of the project root (docs/reference/lock.md).
pub fn link_model(from: &Path, to: &Path) {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).unwrap();
    }
}

/// Rewrite a sealed run record and seal it again, as someone who can write the store could (an
/// edit alone is refused as breaking the seal): a record whose outputs are not what its stages
/// produce, for example.
pub fn rewrite_sealed(store: &medrun::store::Store, record: &Path, text: &str) {
    let mut perm = std::fs::metadata(record).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(record, perm).unwrap();
    std::fs::write(record, text).unwrap();
    let id = store.put_bytes(text.as_bytes()).unwrap();
    std::fs::write(record.with_extension("seal"), format!("{id}\n")).unwrap();
}
