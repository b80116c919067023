//! The built-in demo end to end on its small CI variant (`runs/ci.yaml`): generate the data,
//! lock, run PT → SFT → DPO with evaluation and gates, promote, and reproduce the run
//! byte for byte. Also checks that the committed `data/demo` is what the generator writes.

use std::path::Path;

use serde_json::Value;

use super::train::medrun;
use crate::common::{Project, rewrite_sealed, stderr};

fn repo(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn json_out(o: &std::process::Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", String::from_utf8_lossy(&o.stdout), stderr(o)))
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            for f in files_under(&p) {
                out.push(format!("{}/{f}", e.file_name().to_string_lossy()));
            }
        } else {
            out.push(e.file_name().to_string_lossy().to_string());
        }
    }
    out.sort();
    out
}

#[test]
fn ci_spec_runs_evaluates_promotes_and_reproduces_identically() {
    let dir = tempfile::tempdir().unwrap();
    let p = Project { dir };
    for f in ["runs/ci.yaml", "evals/medical-demo.yaml"] {
        p.write(f, &std::fs::read_to_string(repo(f)).unwrap());
    }
    // The generator writes exactly the committed demo corpus.
    let o = p.bin(&["demo-data"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let generated = files_under(&p.path("data/demo"));
    assert_eq!(generated, files_under(&repo("data/demo")));
    for f in &generated {
        assert!(
            std::fs::read(p.path(&format!("data/demo/{f}"))).unwrap()
                == std::fs::read(repo(&format!("data/demo/{f}"))).unwrap(),
            "data/demo/{f} differs from `medrun demo-data`: regenerate and commit it"
        );
    }
    p.write(".gitignore", ".medrun/\n");
    p.git(&["init", "-q"]);
    assert_eq!(p.bin(&["lock"]).status.code(), Some(0));
    p.commit_all();

    // run: three stages, each scored, and the dpo gates pass.
    let o = medrun(&p, &["run", "runs/ci.yaml", "--json"], 2)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let report = json_out(&o);
    assert_eq!(report["gates_passed"], true, "{report}");
    // Four columns: the untrained model, then each stage.
    let evals = report["evals"].as_array().unwrap();
    let columns: Vec<&str> = evals.iter().map(|e| e["stage"].as_str().unwrap()).collect();
    assert_eq!(columns, ["base", "pt", "sft", "dpo"], "{report}");

    // A second run is all cache hits (stages and eval results) and prints the evaluation table
    // with the untrained model's column first, then the gates.
    let o = medrun(&p, &["run", "runs/ci.yaml"], 2).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(text.contains("0 stage(s) run, 3 cached"), "{text}");
    let header = text
        .lines()
        .skip_while(|l| !l.starts_with("evaluation by stage (medical-demo):"))
        .nth(1)
        .unwrap_or_else(|| panic!("no evaluation table: {text}"));
    let cols: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(cols, ["metric", "base", "pt", "sft", "dpo"], "{text}");
    assert!(text.contains("gates of stage `dpo`: pass"), "{text}");

    // The base model is exactly what PT started from: its parameters' fingerprint is the first
    // entry (step 0) of PT's trajectory.
    let store = medrun::store::Store::open(&p.store()).unwrap();
    let load = |id: &str| medrun::store::Tree::load(&store, id).unwrap();
    let file =
        |tree: &medrun::store::Tree, name: &str| store.get(&tree.entries[name].object).unwrap();
    let base = load(report["base"].as_str().unwrap());
    let tensors = candle_core::safetensors::load_buffer(
        &file(&base, "model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let params = medrun::model::checkpoint::params_from(tensors.into_iter().collect()).unwrap();
    let stages = report["stages"].as_array().unwrap();
    let pt_tree = load(stages[0]["output"].as_str().unwrap());
    let traj: Value = serde_json::from_slice(&file(&pt_tree, "trajectory.json")).unwrap();
    assert_eq!(traj["steps"][0]["step"], 0);
    assert_eq!(
        traj["steps"][0]["params"].as_str().unwrap(),
        params.fingerprint().unwrap()
    );

    // promote: appends one entry.
    let o = medrun(&p, &["promote", "latest:dpo", "--to", "demo", "--json"], 2)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(json_out(&o)["promoted"], true);
    assert_eq!(p.read("promotions.yaml").matches("- channel:").count(), 1);

    // reproduce: every stage again with the cache off, byte-identical.
    let o = medrun(&p, &["reproduce", "latest", "--json"], 2)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r = json_out(&o);
    assert_eq!(r["identical"], true, "{r}");
    assert_eq!(r["stages"].as_array().unwrap().len(), 3);

    // A record that does not match what the stage produces: exit 4, naming the stage, the
    // differing files and the first step whose parameters differ.
    let (pt, sft) = (
        stages[0]["output"].as_str().unwrap(),
        stages[1]["output"].as_str().unwrap(),
    );
    let run_id = report["run_id"].as_str().unwrap();
    let runs = p.store().join("runs-v1");
    let record = runs.join(format!("{run_id}.jsonl"));
    let text = std::fs::read_to_string(&record).unwrap();
    rewrite_sealed(&store, &record, &text.replace(pt, sft));
    let o = medrun(&p, &["reproduce", run_id, "--stage", "pt"], 2)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("stage `pt`"), "{err}");
    assert!(err.contains("model.safetensors"), "{err}");
    // The swapped-in output started from other parameters (PT's result, not the seeded init).
    assert!(err.contains("parameters first differ at step 0"), "{err}");
    rewrite_sealed(&store, &record, &text);

    // A tampered trajectory fingerprint: the record's PT output has every file PT produces, but
    // the fingerprint recorded for one step is wrong. reproduce names the stage, the file and
    // that step.
    let mut traj = traj;
    let tampered_step = traj["steps"][2]["step"].as_u64().unwrap();
    assert!(tampered_step > 0);
    traj["steps"][2]["params"] = Value::String("0".repeat(64));
    let mut bad = pt_tree.clone();
    let bytes = serde_json::to_vec_pretty(&traj).unwrap();
    bad.entries.get_mut("trajectory.json").unwrap().object = store.put_bytes(&bytes).unwrap();
    bad.entries.get_mut("trajectory.json").unwrap().bytes = bytes.len() as u64;
    let bad_id = bad.put(&store).unwrap();
    rewrite_sealed(&store, &record, &text.replace(pt, &bad_id));
    let o = medrun(&p, &["reproduce", run_id, "--stage", "pt"], 2)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("stage `pt`"), "{err}");
    assert!(err.contains("trajectory.json"), "{err}");
    assert!(!err.contains("model.safetensors"), "{err}");
    assert!(
        err.contains(&format!("parameters first differ at step {tampered_step}")),
        "{err}"
    );
    rewrite_sealed(&store, &record, &text);

    // A changed input is refused before any work.
    let mut pairs = p.read("data/demo/dpo.jsonl");
    pairs.push('\n');
    p.write("data/demo/dpo.jsonl", &pairs);
    let o = medrun(&p, &["reproduce", "latest", "--stage", "dpo"], 2)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("data/demo/dpo.jsonl"), "{}", stderr(&o));
}
