//! Run and stage keys: reformatting never changes them; a change of meaning changes exactly the
//! stage it touches and every later stage.

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::common::{SPEC, plan_keys, project};

#[test]
fn plan_json_prints_run_and_stage_keys() {
    let p = project();
    let (run_key, keys) = plan_keys(&p, "runs/tiny.yaml");
    assert_eq!(run_key.len(), 64);
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().all(|k| k.len() == 64));
    // Stable across invocations.
    assert_eq!(plan_keys(&p, "runs/tiny.yaml"), (run_key, keys));
}

#[test]
fn reformatting_keeps_keys_cli() {
    let p = project();
    let base = plan_keys(&p, "runs/tiny.yaml");
    // Reordered keys, comments, other number spellings, flow vs block style.
    let reformatted = SPEC
        .replace(
            "optimizer: {lr: 0.001, weight_decay: 0.1}",
            "optimizer:   # AdamW\n      weight_decay: 1.0e-1\n      lr: 1e-3",
        )
        .replace(
            "    optimizer: {lr: 0.0001}\n",
            "    optimizer: {lr: 1E-4}   # SFT\n",
        )
        .replace("seed: 7\n", "# the seed\nseed: 0x7\n")
        .replace("version: 1\nname: tiny\n", "name: tiny\nversion: 1\n");
    assert_ne!(reformatted, SPEC);
    p.write("runs/reformatted.yaml", &reformatted);
    assert_eq!(plan_keys(&p, "runs/reformatted.yaml"), base);
    // Writing a default explicitly is not a change of meaning either.
    p.write(
        "runs/defaults.yaml",
        &SPEC.replace(
            "    max_len: 32\n    optimizer: {lr: 0.0001}",
            "    max_len: 32\n    grad_accum: 1\n    optimizer: {lr: 0.0001, betas: [0.9, 0.999]}",
        ),
    );
    assert_eq!(plan_keys(&p, "runs/defaults.yaml"), base);
}

#[test]
fn hyper_parameter_change_moves_that_stage_and_later_only() {
    let p = project();
    let (run0, base) = plan_keys(&p, "runs/tiny.yaml");
    p.write(
        "runs/changed.yaml",
        &SPEC.replace("optimizer: {lr: 0.0001}", "optimizer: {lr: 0.0002}"),
    );
    let (run1, changed) = plan_keys(&p, "runs/changed.yaml");
    assert_eq!(changed[0], base[0], "pt must not change");
    assert_ne!(changed[1], base[1], "sft must change");
    assert_ne!(changed[2], base[2], "dpo (after sft) must change");
    assert_ne!(run0, run1);
    // Description and gates do not touch stage keys; gates do touch the run key.
    p.write(
        "runs/desc.yaml",
        &SPEC
            .replace("integration-test spec", "another description")
            .replace("min: 0.5", "min: 0.6"),
    );
    let (run2, desc) = plan_keys(&p, "runs/desc.yaml");
    assert_eq!(desc, base);
    assert_ne!(run2, run0);
}

#[test]
fn data_change_moves_keys_of_stages_reading_it() {
    let p = project();
    let (_, base) = plan_keys(&p, "runs/tiny.yaml");
    p.write(
        "data/sft.jsonl",
        &(p.read("data/sft.jsonl") + "{\"conversations\":[]}\n"),
    );
    let (_, after) = plan_keys(&p, "runs/tiny.yaml");
    assert_eq!(after[0], base[0]);
    assert_ne!(after[1], base[1]);
    assert_ne!(after[2], base[2]);
    // The tokenizer trains on the PT corpus: changing it changes every stage.
    p.write("data/pt.txt", "Different corpus.\n");
    let (_, after2) = plan_keys(&p, "runs/tiny.yaml");
    assert!(after2.iter().zip(&after).all(|(a, b)| a != b));
}

// ---- proptest, at the library level (same code path as `plan`, without process overhead) ----

/// Stage hyper-parameters we vary: (stage index, field, values).
fn fields() -> Vec<(usize, &'static str)> {
    vec![
        (0, "lr"),
        (0, "weight_decay"),
        (0, "batch_size"),
        (1, "lr"),
        (1, "max_len"),
        (2, "lr"),
        (2, "beta"),
    ]
}

#[derive(Debug, Clone)]
struct Stage {
    name: &'static str,
    kind: &'static str,
    dataset: &'static str,
    length: (&'static str, u64),
    nums: BTreeMap<&'static str, f64>,
}

fn stages() -> Vec<Stage> {
    let mk = |name, kind, dataset, length, lr: f64, extra: &[(&'static str, f64)]| {
        let mut nums = BTreeMap::new();
        nums.insert("lr", lr);
        nums.insert("batch_size", 2.0);
        nums.insert("max_len", 32.0);
        nums.insert("weight_decay", 0.0);
        for (k, v) in extra {
            nums.insert(*k, *v);
        }
        Stage {
            name,
            kind,
            dataset,
            length,
            nums,
        }
    };
    vec![
        mk(
            "pt",
            "pt",
            "corpus",
            ("max_steps", 10),
            1e-3,
            &[("weight_decay", 0.1)],
        ),
        mk("sft", "sft", "chats", ("epochs", 1), 1e-4, &[]),
        mk(
            "dpo",
            "dpo",
            "pairs",
            ("max_steps", 5),
            1e-5,
            &[("beta", 0.1)],
        ),
    ]
}

/// Spell a float in one of several equivalent ways.
fn spell(v: f64, style: u8) -> String {
    if v.fract() == 0.0 && v.abs() < 1e9 {
        return match style % 3 {
            0 => format!("{}", v as i64),
            1 => format!("{:.1}", v),
            _ => format!("{}.0", v as i64),
        };
    }
    match style % 4 {
        0 => format!("{v}"),
        1 => format!("{v:e}"),
        2 => format!("{v:E}"),
        _ => {
            let e = format!("{v:e}");
            let (m, x) = e.split_once('e').unwrap();
            let m = if m.contains('.') {
                m.to_string()
            } else {
                format!("{m}.0")
            };
            format!("{m}e{x}")
        }
    }
}

/// Render a spec as YAML: `perm` permutes key order, `comments` adds comments, `style` picks
/// number spellings and flow vs block mappings.
fn render(st: &[Stage], perm: u64, comments: bool, style: u8) -> String {
    let mut rng = perm;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let c = |s: &str| {
        if comments {
            format!("  # {s}")
        } else {
            String::new()
        }
    };
    let mut top: Vec<String> = vec![
        format!("version: 1{}", c("format version")),
        "name: tiny".into(),
        format!("seed: {}", if style.is_multiple_of(2) { "7" } else { "0o7" }),
        "model:\n  family: llama\n  init: {hidden_size: 64, layers: 2, heads: 4, intermediate_size: 172}".into(),
        "tokenizer:\n  train: {dataset: corpus, vocab_size: 512}".into(),
        "datasets:\n  corpus: {path: data/pt.txt, format: text}\n  chats: {format: sharegpt, path: data/sft.jsonl}\n  pairs: {path: ./data/dpo.jsonl, format: preference}".into(),
    ];
    let mut stage_text = String::from("stages:");
    for (i, s) in st.iter().enumerate() {
        let mut fields: Vec<String> = vec![
            format!("name: {}", s.name),
            format!("kind: {}", s.kind),
            format!("datasets: [{}]", s.dataset),
            format!("{}: {}", s.length.0, s.length.1),
            format!("batch_size: {}", s.nums["batch_size"] as u64),
            format!("max_len: {}", s.nums["max_len"] as u64),
        ];
        let sp = |v: f64, k: u8| spell(v, style.wrapping_add(k).wrapping_add(i as u8));
        let opt = if style.is_multiple_of(3) {
            format!(
                "optimizer: {{weight_decay: {}, lr: {}}}",
                sp(s.nums["weight_decay"], 1),
                sp(s.nums["lr"], 2)
            )
        } else {
            format!(
                "optimizer:{}\n      lr: {}\n      weight_decay: {}",
                c("adamw"),
                sp(s.nums["lr"], 2),
                sp(s.nums["weight_decay"], 1)
            )
        };
        fields.push(opt);
        if let Some(b) = s.nums.get("beta") {
            fields.push(format!("beta: {}", sp(*b, 3)));
        }
        for j in (1..fields.len()).rev() {
            let k = (next() % (j as u64 + 1)) as usize;
            fields.swap(j, k);
        }
        stage_text.push_str("\n  - ");
        stage_text.push_str(&fields.join("\n    "));
        if comments {
            stage_text.push_str(&format!("\n    # end of stage {i}"));
        }
    }
    top.push(stage_text);
    for j in (1..top.len()).rev() {
        let k = (next() % (j as u64 + 1)) as usize;
        top.swap(j, k);
    }
    let mut out = String::new();
    if comments {
        out.push_str("# generated by the key proptest\n");
    }
    out.push_str(&top.join("\n"));
    out.push('\n');
    out
}

fn keys_of(p: &crate::common::Project, name: &str, text: &str) -> Vec<String> {
    let path = p.path(&format!("runs/{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    let loaded = medrun::spec::load_spec(p.root(), &path).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let mut cache = medrun::lock::state::StateCache::disabled();
    let proj = medrun::ops::Project {
        root: p.root().to_path_buf(),
        store_dir: p.store(),
    };
    let pins = medrun::ops::plan::digest_inputs(&proj, &loaded, &mut cache).unwrap();
    let engine = medrun::env::EngineFingerprint::current();
    let device = medrun::env::DeviceClass::detect(loaded.spec.device).unwrap();
    medrun::hash::run_keys(&loaded.spec, &pins, &engine, &device)
        .unwrap()
        .stages
        .into_iter()
        .map(|s| s.key)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn formatting_never_changes_keys(perm in 1u64.., comments: bool, style: u8) {
        let p = project();
        let st = stages();
        let base = keys_of(&p, "base", &render(&st, 0x9e37_79b9, false, 0));
        let other = keys_of(&p, "other", &render(&st, perm, comments, style));
        prop_assert_eq!(base, other);
    }

    #[test]
    fn a_change_moves_its_stage_and_later_ones(field in 0usize..7, factor in prop_oneof![Just(0.5), Just(2.0), Just(3.0)], perm in 1u64.., style: u8) {
        let p = project();
        let st = stages();
        let base = keys_of(&p, "base", &render(&st, perm, false, style));
        let (idx, name) = fields()[field];
        let mut changed = st.clone();
        let v = changed[idx].nums.get_mut(name).unwrap();
        *v = if *v == 0.0 { 0.05 } else { (*v * factor).round_ties_even_if_int() };
        let after = keys_of(&p, "changed", &render(&changed, perm.wrapping_mul(31), true, style.wrapping_add(1)));
        for i in 0..3 {
            if i < idx {
                prop_assert_eq!(&after[i], &base[i], "stage {} before the change moved", i);
            } else {
                prop_assert_ne!(&after[i], &base[i], "stage {} at/after the change kept its key", i);
            }
        }
    }
}

trait RoundInt {
    fn round_ties_even_if_int(self) -> f64;
}
impl RoundInt for f64 {
    /// Integer-valued fields (batch_size, max_len) stay integers.
    fn round_ties_even_if_int(self) -> f64 {
        if self >= 1.0 && self.fract().abs() < 1e-9 {
            self.round()
        } else if self > 1.0 {
            self.ceil()
        } else {
            self
        }
    }
}
