//! Gradient coverage: after one backward pass, every trainable parameter has a non-zero gradient,
//! for each family, in full fine-tuning and with LoRA. (Several fused candle ops silently drop
//! gradients; this test is what catches one sneaking in.)

use candle_core::{DType, Device, Tensor};

use super::lora;
use super::transformer::{Forward, masked_cross_entropy};
use super::*;
use crate::rng::Rng;
use crate::spec::{Family, InitConfig, Lora, Position};

fn cfg(family: Family, position: Position, tie: bool) -> ModelConfig {
    let init = InitConfig {
        hidden_size: 32,
        layers: 2,
        heads: 4,
        kv_heads: if family == Family::Baichuan2 { 4 } else { 2 },
        intermediate_size: 48,
        max_position: 64,
        rope_theta: 10000.0,
        norm_eps: 1e-5,
        tie_embeddings: tie,
        init_std: 0.02,
        position,
    };
    ModelConfig::from_init(family, &init, 97)
}

fn batch(dev: &Device) -> (Tensor, Tensor, Tensor) {
    let mut rng = Rng::new(5);
    let ids: Vec<u32> = (0..2 * 9).map(|_| rng.below(97) as u32).collect();
    let all = Tensor::from_vec(ids, (2, 9), dev).unwrap();
    let inp = all.narrow(1, 0, 8).unwrap();
    let tgt = all.narrow(1, 1, 8).unwrap();
    let mask = Tensor::ones((2, 8), DType::F32, dev).unwrap();
    (inp, tgt, mask)
}

fn check(cfg: ModelConfig, with_lora: bool) {
    let dev = Device::Cpu;
    let model = Transformer::new(cfg.clone(), &dev).unwrap();
    let base = Params::init(&cfg, 11, &dev).unwrap();
    let (params, lf) = if with_lora {
        let spec = Lora {
            r: 4,
            alpha: 8.0,
            dropout: 0.0,
            targets: crate::spec::resolve::lora_modules(cfg.family)
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        let (p, lf) = lora::attach(&base, &cfg, &spec, 11, &dev).unwrap();
        // B starts at zero, which would zero A's gradient: give B a value for this check.
        let mut p2 = Params::default();
        for (n, prm) in p.iter() {
            if n.ends_with("lora_B.weight") {
                let t = prm.tensor().affine(0.0, 0.01).unwrap();
                p2.insert(
                    n.clone(),
                    Param::Trainable(candle_core::Var::from_tensor(&t).unwrap()),
                );
            } else {
                p2.insert(n.clone(), prm.clone());
            }
        }
        (p2, Some(lf))
    } else {
        (base, None)
    };
    let (inp, tgt, mask) = batch(&dev);
    let mut f = Forward {
        lora: lf.as_ref(),
        rng: None,
    };
    let logits = model.forward(&params, &inp, &mut f).unwrap();
    let loss = masked_cross_entropy(&logits, &tgt, &mask).unwrap();
    let grads = loss.backward().unwrap();
    let trainable = params.trainable();
    assert!(!trainable.is_empty());
    if with_lora {
        assert!(
            trainable.iter().all(|(n, _)| n.contains("lora_")),
            "base must be frozen"
        );
    }
    for (name, var) in trainable {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{:?}: no gradient for {name}", cfg.family));
        let norm = g
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(
            norm > 0.0 && norm.is_finite(),
            "{:?}: zero or non-finite gradient for {name}",
            cfg.family
        );
    }
}

#[test]
fn every_parameter_gets_a_gradient_full() {
    check(cfg(Family::Llama, Position::Rope, false), false);
    check(cfg(Family::Llama, Position::Rope, true), false);
    check(cfg(Family::Qwen2, Position::Rope, false), false);
    check(cfg(Family::Baichuan2, Position::Rope, false), false);
    check(cfg(Family::Baichuan2, Position::Alibi, false), false);
}

#[test]
fn every_adapter_gets_a_gradient_lora() {
    check(cfg(Family::Llama, Position::Rope, false), true);
    check(cfg(Family::Qwen2, Position::Rope, true), true);
    check(cfg(Family::Baichuan2, Position::Alibi, false), true);
}

#[test]
fn alibi_slopes_match_the_reference_values() {
    let s = super::transformer::alibi_slopes(8);
    let expect: Vec<f64> = (1..=8).map(|i| 2f64.powi(-i)).collect();
    for (a, b) in s.iter().zip(&expect) {
        assert!((a - b).abs() < 1e-12);
    }
    // 12 heads: 8 slopes of the power-of-two set, then every other slope of the 16-head set.
    let s12 = super::transformer::alibi_slopes(12);
    assert_eq!(s12.len(), 12);
    assert!((s12[8] - 2f64.powf(-0.5)).abs() < 1e-12);
}

#[test]
fn init_is_seeded_and_order_independent() {
    let c = cfg(Family::Llama, Position::Rope, false);
    let a = Params::init(&c, 3, &Device::Cpu)
        .unwrap()
        .fingerprint()
        .unwrap();
    let b = Params::init(&c, 3, &Device::Cpu)
        .unwrap()
        .fingerprint()
        .unwrap();
    let d = Params::init(&c, 4, &Device::Cpu)
        .unwrap()
        .fingerprint()
        .unwrap();
    assert_eq!(a, b);
    assert_ne!(a, d);
}

#[test]
fn merged_lora_matches_adapter_forward() {
    let c = cfg(Family::Qwen2, Position::Rope, false);
    let dev = Device::Cpu;
    let model = Transformer::new(c.clone(), &dev).unwrap();
    let base = Params::init(&c, 2, &dev).unwrap();
    let spec = Lora {
        r: 2,
        alpha: 4.0,
        dropout: 0.0,
        targets: vec!["q_proj".into(), "down_proj".into()],
    };
    let (p, lf) = lora::attach(&base, &c, &spec, 2, &dev).unwrap();
    let mut p2 = Params::default();
    for (n, prm) in p.iter() {
        let t = if n.ends_with("lora_B.weight") {
            prm.tensor().affine(0.0, 0.05).unwrap()
        } else {
            prm.tensor().clone()
        };
        p2.insert(n.clone(), Param::Frozen(t));
    }
    let (inp, _, _) = batch(&dev);
    let a = model
        .forward(
            &p2,
            &inp,
            &mut Forward {
                lora: Some(&lf),
                rng: None,
            },
        )
        .unwrap();
    let merged = lora::merge(&p2, lf.scale).unwrap();
    let b = model.forward(&merged, &inp, &mut Forward::eval()).unwrap();
    let diff = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff < 1e-4, "{diff}");
}
