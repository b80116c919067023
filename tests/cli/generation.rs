//! Generation stops where `transformers` stops: at the model's end tokens, read from its
//! generation config (src/generation.rs).

use serde_json::Value;

use super::common::{Project, link_model, project, stderr};
use super::train::{medrun, smollm2_gguf};

/// Greedy generations of SmolLM2-135M-Instruct by transformers (scripts/fixtures/smollm2_greedy.py).
const FIXTURE: &str = include_str!("../fixtures/smollm2-greedy.json");

/// A LoRA stage whose single step moves no weight that matters (lr 1e-30 on adapters that start
/// at zero), so its output is SmolLM2 itself, as a medrun checkpoint.
const SPEC: &str = r#"version: 1
name: smollm2-greedy
seed: 1
model:
  family: llama
  from: models/smollm2.gguf
datasets:
  sft: {path: data/sft.jsonl, format: sharegpt}
stages:
  - name: sft
    kind: sft
    datasets: [sft]
    max_steps: 1
    batch_size: 1
    max_len: 32
    optimizer: {lr: 1.0e-30}
    lora: {r: 2, alpha: 4, dropout: 0.0, targets: [q_proj]}
"#;

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list of ids: {v}"))
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

fn generate_json(p: &Project, args: &[&str]) -> Value {
    let o = medrun(p, args, 2).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn smollm2_generations_stop_where_transformers_stops() {
    let Some(gguf) = smollm2_gguf() else {
        eprintln!("skipping: SmolLM2 GGUF not found (run scripts/fetch-smollm2.sh)");
        return;
    };
    let fixture: Value = serde_json::from_str(FIXTURE).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = Project { dir };
    p.write("runs/s.yaml", SPEC);
    p.write(
        "data/sft.jsonl",
        "{\"conversations\":[{\"from\":\"human\",\"value\":\"Hi\"},{\"from\":\"gpt\",\"value\":\"Hello.\"}]}\n",
    );
    link_model(&gguf, &p.path("models/smollm2.gguf"));
    p.write(".gitignore", ".medrun/\nmodels/\n");
    p.git(&["init", "-q"]);
    assert_eq!(p.bin(&["lock"]).status.code(), Some(0));
    p.commit_all();
    let o = medrun(&p, &["run", "runs/s.yaml"], 2).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    let max = fixture["generation_config"]["max_new_tokens"]
        .as_u64()
        .unwrap()
        .to_string();
    let ends = ids(&fixture["end_token_ids"]);
    let mut mismatches = Vec::new();
    for case in fixture["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let mut args = vec![
            "generate",
            "latest:sft",
            "--prompt",
            text,
            "--max-new-tokens",
            &max,
            "--json",
        ];
        if case["kind"] == "chat" {
            args.push("--chat");
        }
        let g = generate_json(&p, &args);
        assert_eq!(ids(&g["end_tokens"]), ends, "{g}");
        assert_eq!(
            g["prompt"], case["prompt"],
            "{text:?}: the prompt text differs"
        );
        assert_eq!(
            ids(&g["prompt_ids"]),
            ids(&case["prompt_ids"]),
            "{text:?}: the prompt tokens differ"
        );
        // transformers returns the end token it stopped at; medrun reports it apart.
        let mut got = ids(&g["output_ids"]);
        match g["stopped"]["reason"].as_str() {
            Some("end_token") => got.push(g["stopped"]["id"].as_u64().unwrap()),
            Some("max_new_tokens") => {}
            other => panic!("{text:?}: stopped by {other:?}: {g}"),
        }
        let want = ids(&case["output_ids"]);
        let stopped = if g["stopped"]["reason"] == "end_token" {
            "end_token"
        } else {
            "max_new_tokens"
        };
        assert_eq!(stopped, case["stopped"], "{text:?}: {g}");
        if got != want {
            let at = got.iter().zip(&want).take_while(|(a, b)| a == b).count();
            mismatches.push(format!(
                "{} {text:?}: first difference at generated token {at} (medrun {:?}, transformers {:?})",
                case["kind"],
                got.get(at),
                want.get(at)
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// A model medrun trains with the `chatml` template ends its chat turns with `<|im_end|>`, so
/// its generation config lists that token beside the tokenizer's EOS, for medrun and for
/// `transformers` (through the exported directory) alike.
#[test]
fn a_chatml_model_stops_at_its_turn_end_too() {
    let p = project();
    assert_eq!(p.bin(&["lock"]).status.code(), Some(0));
    p.commit_all();
    let o = medrun(&p, &["run", "runs/tiny.yaml"], 2).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = p.path("exported");
    let o = p.bin(&["export", "latest:sft", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let read = |name: &str| -> Value {
        serde_json::from_slice(&std::fs::read(out.join(name)).unwrap()).unwrap()
    };
    let tok = read("tokenizer.json");
    let vocab = &tok["added_tokens"];
    let id_of = |content: &str| {
        vocab
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["content"] == content)
            .and_then(|t| t["id"].as_u64())
            .unwrap()
    };
    let (eos, im_end) = (id_of("<|endoftext|>"), id_of("<|im_end|>"));
    let gc = read("generation_config.json");
    assert_eq!(ids(&gc["eos_token_id"]), vec![eos, im_end], "{gc}");
    assert_eq!(read("config.json")["eos_token_id"], eos);
    assert_eq!(read("tokenizer_config.json")["eos_token"], "<|endoftext|>");
    let g = generate_json(
        &p,
        &[
            "generate",
            "latest:sft",
            "--prompt",
            "I have chest pain.",
            "--chat",
            "--max-new-tokens",
            "4",
            "--json",
        ],
    );
    assert_eq!(ids(&g["end_tokens"]), vec![eos, im_end], "{g}");
    let n = ids(&g["output_ids"]).len();
    match g["stopped"]["reason"].as_str() {
        Some("end_token") => assert!(n < 4, "{g}"),
        Some("max_new_tokens") => assert_eq!(n, 4, "{g}"),
        other => panic!("stopped by {other:?}: {g}"),
    }
}
