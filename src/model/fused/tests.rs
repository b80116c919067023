//! The fused model against the composite one (candle autograd): same row log-probabilities and
//! same gradients, to float rounding, for every family and option; and its own results are the
//! same bits whatever the thread count.

use candle_core::{Device, Tensor, Var};

use super::*;
use crate::model::transformer::{Forward, masked_logprobs};
use crate::model::{Transformer, lora};
use crate::spec::{InitConfig, Lora};

struct Case {
    name: &'static str,
    cfg: ModelConfig,
    lora: Option<(Vec<&'static str>, f64)>,
}

fn cfg(family: Family, position: Position, heads: u64, kv: u64, tie: bool) -> ModelConfig {
    let init = InitConfig {
        hidden_size: 32,
        layers: 2,
        heads,
        kv_heads: kv,
        intermediate_size: 40,
        max_position: 96,
        rope_theta: 10000.0,
        norm_eps: 1e-5,
        tie_embeddings: tie,
        init_std: 0.02,
        position,
    };
    ModelConfig::from_init(family, &init, 53)
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "llama untied",
            cfg: cfg(Family::Llama, Position::Rope, 4, 4, false),
            lora: None,
        },
        Case {
            name: "llama tied, grouped-query",
            cfg: cfg(Family::Llama, Position::Rope, 4, 2, true),
            lora: None,
        },
        Case {
            name: "qwen2 (q/k/v biases), grouped-query",
            cfg: cfg(Family::Qwen2, Position::Rope, 4, 1, false),
            lora: None,
        },
        Case {
            name: "baichuan2 ALiBi (W_pack, NormHead)",
            cfg: cfg(Family::Baichuan2, Position::Alibi, 4, 4, false),
            lora: None,
        },
        Case {
            name: "baichuan2 RoPE",
            cfg: cfg(Family::Baichuan2, Position::Rope, 2, 2, false),
            lora: None,
        },
        Case {
            name: "llama LoRA on every linear, dropout",
            cfg: cfg(Family::Llama, Position::Rope, 4, 2, true),
            lora: Some((
                vec![
                    "q_proj",
                    "k_proj",
                    "v_proj",
                    "o_proj",
                    "gate_proj",
                    "up_proj",
                    "down_proj",
                ],
                0.25,
            )),
        },
        Case {
            name: "qwen2 LoRA on q/v, no dropout",
            cfg: cfg(Family::Qwen2, Position::Rope, 4, 2, false),
            lora: Some((vec!["q_proj", "v_proj"], 0.0)),
        },
        Case {
            name: "baichuan2 LoRA on W_pack",
            cfg: cfg(Family::Baichuan2, Position::Alibi, 4, 4, false),
            lora: Some((vec!["W_pack"], 0.1)),
        },
    ]
}

/// Parameters with every tensor random (norm weights around 1, LoRA B non-zero), so no
/// gradient is trivially zero.
fn params(case: &Case, seed: u64) -> (Params, Option<LoraForward>) {
    let dev = Device::Cpu;
    let mut p = Params::default();
    for (name, shape) in case.cfg.parameter_shapes() {
        let n: usize = shape.iter().product();
        let mut r = Rng::for_purpose(seed, &name);
        let mut v = r.normal_vec(n, 0.2);
        if name.ends_with("norm.weight") {
            v.iter_mut().for_each(|x| *x += 1.0);
        }
        let t = Tensor::from_vec(v, shape.as_slice(), &dev).unwrap();
        p.insert(name, Param::Trainable(Var::from_tensor(&t).unwrap()));
    }
    let Some((targets, dropout)) = &case.lora else {
        return (p, None);
    };
    let spec = Lora {
        r: 4,
        alpha: 8.0,
        dropout: *dropout,
        targets: targets.iter().map(|s| s.to_string()).collect(),
    };
    let (with, lf) = lora::attach(&p, &case.cfg, &spec, seed, &dev).unwrap();
    let mut out = Params::default();
    for (n, prm) in with.iter() {
        if n.ends_with("lora_B.weight") {
            let dims = prm.tensor().dims().to_vec();
            let v = Rng::for_purpose(seed, n).normal_vec(dims.iter().product(), 0.2);
            let t = Tensor::from_vec(v, dims.as_slice(), &dev).unwrap();
            out.insert(n.clone(), Param::Trainable(Var::from_tensor(&t).unwrap()));
        } else {
            out.insert(n.clone(), prm.clone());
        }
    }
    (out, Some(lf))
}

/// Three rows of 70 tokens (past one query block): the second row is padded after 50 tokens,
/// the first supervises only its second half (an SFT prompt), the third everything.
fn batch(vocab: usize) -> Batch {
    let (rows, len) = (3, 70);
    let mut r = Rng::new(17);
    let ids: Vec<u32> = (0..rows * (len + 1))
        .map(|_| r.below(vocab as u64) as u32)
        .collect();
    let mut b = Batch {
        rows,
        len,
        inputs: Vec::new(),
        targets: Vec::new(),
        mask: Vec::new(),
        ref_logps: Vec::new(),
    };
    for row in 0..rows {
        let seq = &ids[row * (len + 1)..(row + 1) * (len + 1)];
        b.inputs.extend_from_slice(&seq[..len]);
        b.targets.extend_from_slice(&seq[1..]);
        b.mask.extend((0..len).map(|i| match row {
            0 => f32::from(i >= len / 2),
            1 => f32::from(i < 50),
            _ => 1.0,
        }));
    }
    b
}

const D_ROWS: [f64; 3] = [-0.37, 0.81, -1.3];

fn composite(
    case: &Case,
    p: &Params,
    lf: Option<&LoraForward>,
    b: &Batch,
) -> (Vec<f64>, Vec<(String, Vec<f32>)>) {
    let dev = Device::Cpu;
    let model = Transformer::new(case.cfg.clone(), &dev).unwrap();
    let (inp, tgt, mask) = b.tensors(&dev).unwrap();
    let mut rng = Rng::new(99);
    let mut f = Forward {
        lora: lf,
        rng: Some(&mut rng),
    };
    let logits = model.forward(p, &inp, &mut f).unwrap();
    let sums = masked_logprobs(&logits, &tgt, &mask).unwrap();
    let d: Vec<f32> = D_ROWS.iter().map(|&x| x as f32).collect();
    let d = Tensor::from_vec(d, b.rows, &dev).unwrap();
    let g = (&sums * d).unwrap().sum_all().unwrap().backward().unwrap();
    let grads = p
        .trainable()
        .into_iter()
        .map(|(n, v)| {
            let gt = g
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("{}: composite has no gradient for {n}", case.name));
            (
                n.clone(),
                gt.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            )
        })
        .collect();
    let s = sums
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|&x| x as f64)
        .collect();
    (s, grads)
}

fn fused(
    case: &Case,
    p: &Params,
    lf: Option<&LoraForward>,
    b: &Batch,
) -> (Vec<f64>, Vec<(String, Vec<f32>)>) {
    let mut m = FusedModel::new(&case.cfg, p, lf.cloned()).unwrap();
    let mut rng = Rng::new(99);
    let sums = m.forward(b, Some(&mut rng)).unwrap();
    m.backward(&D_ROWS).unwrap();
    (sums, m.gradients())
}

#[test]
fn gradients_match_the_composite_model() {
    for case in cases() {
        let (p, lf) = params(&case, 7);
        let b = batch(case.cfg.vocab_size);
        let (cs, cg) = composite(&case, &p, lf.as_ref(), &b);
        let (fs, fg) = fused(&case, &p, lf.as_ref(), &b);
        for (a, c) in fs.iter().zip(&cs) {
            assert!(
                (a - c).abs() <= 1e-4 * c.abs().max(1.0),
                "{}: row log-prob {a} vs composite {c}",
                case.name
            );
        }
        assert_eq!(
            fg.iter().map(|g| &g.0).collect::<Vec<_>>(),
            cg.iter().map(|g| &g.0).collect::<Vec<_>>(),
            "{}: the same trainable parameters",
            case.name
        );
        if case.lora.is_some() {
            assert!(fg.iter().all(|(n, _)| n.contains("lora_")), "{}", case.name);
        }
        for ((name, a), (_, c)) in fg.iter().zip(&cg) {
            let scale = c.iter().fold(0f32, |m, x| m.max(x.abs()));
            assert!(scale > 0.0, "{}: {name} has a zero gradient", case.name);
            let worst = a.iter().zip(c).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(
                worst <= 2e-4 * scale,
                "{}: gradient of {name} differs by {worst} (largest entry {scale})",
                case.name
            );
        }
    }
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    for case in cases() {
        let (p, lf) = params(&case, 3);
        let b = batch(case.cfg.vocab_size);
        let one = in_pool(1, || fused(&case, &p, lf.as_ref(), &b));
        for threads in [2, 3] {
            let other = in_pool(threads, || fused(&case, &p, lf.as_ref(), &b));
            assert!(
                one == other,
                "{}: {threads} threads give other bits than 1",
                case.name
            );
        }
    }
}

#[test]
fn accumulation_adds_and_a_fresh_step_overwrites() {
    let case = &cases()[2];
    let (p, _) = params(case, 5);
    let b = batch(case.cfg.vocab_size);
    let mut m = FusedModel::new(&case.cfg, &p, None).unwrap();
    m.forward(&b, None).unwrap();
    m.backward(&D_ROWS).unwrap();
    let once = m.gradients();
    // Two half-weighted passes add up to one full pass.
    m.clear_gradients();
    let half: Vec<f64> = D_ROWS.iter().map(|x| x / 2.0).collect();
    for _ in 0..2 {
        m.forward(&b, None).unwrap();
        m.backward(&half).unwrap();
    }
    for ((n, a), (_, c)) in m.gradients().iter().zip(&once) {
        for (x, y) in a.iter().zip(c) {
            assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{n}: {x} vs {y}");
        }
    }
    // After clearing, the next pass overwrites: the same bits as the first time.
    m.clear_gradients();
    m.forward(&b, None).unwrap();
    m.backward(&D_ROWS).unwrap();
    assert!(m.gradients() == once);
    // A backward pass needs its forward pass.
    assert!(m.backward(&D_ROWS).is_err());
}

#[test]
fn fingerprint_and_params_round_trip() {
    for case in cases() {
        let (p, lf) = params(&case, 1);
        let m = FusedModel::new(&case.cfg, &p, lf).unwrap();
        assert_eq!(m.fingerprint(), p.fingerprint().unwrap(), "{}", case.name);
        let back = m.params().unwrap();
        assert_eq!(back.fingerprint().unwrap(), p.fingerprint().unwrap());
        assert_eq!(
            back.trainable().iter().map(|t| t.0).collect::<Vec<_>>(),
            p.trainable().iter().map(|t| t.0).collect::<Vec<_>>()
        );
    }
}

#[test]
fn bad_batches_are_errors() {
    let case = &cases()[0];
    let (p, _) = params(case, 1);
    let mut m = FusedModel::new(&case.cfg, &p, None).unwrap();
    let mut b = batch(case.cfg.vocab_size);
    b.inputs[4] = case.cfg.vocab_size as u32;
    let e = m.forward(&b, None).unwrap_err().to_string();
    assert!(e.contains("outside the model's vocabulary"), "{e}");
    let mut long = batch(case.cfg.vocab_size);
    long.len = 200;
    long.rows = 1;
    long.inputs = vec![1; 200];
    long.targets = vec![1; 200];
    long.mask = vec![1.0; 200];
    assert!(matches!(
        m.forward(&long, None),
        Err(ModelError::TooLong { .. })
    ));
}
