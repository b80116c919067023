//! Tests of the inference forward against the training forward, and of its batching.

use super::*;
use crate::model::Param;
use crate::model::transformer::Forward;
use crate::rng::Rng;
use crate::spec::InitConfig;

const V: usize = 97;

/// Small random models; weights with std 0.3 so attention is far from uniform and a
/// position off by one shows in the logits.
fn cfg(family: Family, position: Position, heads: u64, kv_heads: u64, tie: bool) -> ModelConfig {
    let init = InitConfig {
        hidden_size: 8 * heads,
        layers: 2,
        heads,
        kv_heads,
        intermediate_size: 48,
        max_position: 64,
        rope_theta: 10000.0,
        norm_eps: 1e-5,
        tie_embeddings: tie,
        init_std: 0.3,
        position,
    };
    ModelConfig::from_init(family, &init, V)
}

fn configs() -> Vec<ModelConfig> {
    vec![
        cfg(Family::Llama, Position::Rope, 4, 2, false),
        cfg(Family::Llama, Position::Rope, 4, 4, true),
        cfg(Family::Qwen2, Position::Rope, 4, 2, false),
        cfg(Family::Baichuan2, Position::Rope, 4, 4, false),
        cfg(Family::Baichuan2, Position::Alibi, 4, 4, false),
        cfg(Family::Baichuan2, Position::Alibi, 6, 6, true),
    ]
}

/// `Params::init`, with random (non-zero) biases so Qwen2's are exercised.
fn infer_for(c: &ModelConfig, seed: u64) -> (Infer, Params) {
    let dev = Device::Cpu;
    let base = Params::init(c, seed, &dev).unwrap();
    let mut params = Params::default();
    for (name, p) in base.iter() {
        let t = p.tensor();
        if name.ends_with(".bias") {
            let values = Rng::for_purpose(seed, name).normal_vec(t.elem_count(), 0.3);
            let b = Tensor::from_vec(values, t.dims(), &dev).unwrap();
            params.insert(name.clone(), Param::Frozen(b));
        } else {
            params.insert(name.clone(), p.clone());
        }
    }
    let model = Transformer::new(c.clone(), &dev).unwrap();
    (Infer::new(model, params.clone()).unwrap(), params)
}

fn tokens(seed: u64, n: usize) -> Vec<u32> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| rng.below(V as u64) as u32).collect()
}

/// Logits of one uncached training-forward pass over `ids`.
fn full((infer, params): &(Infer, Params), ids: &[u32]) -> Vec<Vec<f32>> {
    let t = Tensor::from_vec(ids.to_vec(), (1, ids.len()), &Device::Cpu).unwrap();
    let logits = infer
        .model()
        .forward(params, &t, &mut Forward::eval())
        .unwrap();
    host_rows(&logits.squeeze(0).unwrap()).unwrap()
}

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    host_rows(t).unwrap()
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f32::max)
}

#[test]
fn whole_sequence_hidden_states_match_the_forward_and_ignore_batch_partners() {
    // `hidden` runs RoPE and attention on the training kernels; `forward` on candle's ops.
    for (i, c) in configs().iter().enumerate() {
        let ip = infer_for(c, 40 + i as u64);
        let (infer, _) = &ip;
        let len = 48;
        let ids = tokens(50 + i as u64, 3 * len);
        let fused = infer.hidden(&ids, 3).unwrap();
        let (composite, _) = infer.forward(&ids, 3, None).unwrap();
        let (fused, composite) = (
            rows(&fused.reshape((3 * len, c.hidden_size)).unwrap()),
            rows(&composite.reshape((3 * len, c.hidden_size)).unwrap()),
        );
        let d = max_diff(&fused, &composite);
        assert!(d < 1e-4, "{:?} {:?}: {d}", c.family, c.position);
        // Against the training forward, through the head.
        let want = full(&ip, &ids[len..2 * len]);
        let h = Tensor::new(fused[len..2 * len].to_vec(), &Device::Cpu).unwrap();
        let got = rows(&infer.logits(&h).unwrap());
        let d = max_diff(&got, &want);
        assert!(d < 1e-4, "{:?} {:?}: logits {d}", c.family, c.position);
        // Each sequence alone gives its bits in the batch.
        for r in 0..3 {
            let alone = infer.hidden(&ids[r * len..(r + 1) * len], 1).unwrap();
            let alone = rows(&alone.squeeze(0).unwrap());
            assert_eq!(alone, fused[r * len..(r + 1) * len], "row {r}");
        }
    }
}

#[test]
fn prefill_then_extend_matches_one_full_forward() {
    for c in configs() {
        let pair = infer_for(&c, 3);
        let infer = &pair.0;
        let ids = tokens(1, 12);
        let want = full(&pair, &ids);
        let mut s = infer.session();
        let mut got = rows(&s.prefill(&ids[..5]).unwrap());
        got.extend(rows(&s.extend(&ids[5..9]).unwrap()));
        // Two continuations of the same 9-token context: one in one step, one token by token.
        let mut a = s.fork();
        let mut b = s.fork();
        let mut ga = got.clone();
        ga.extend(rows(&a.extend(&ids[9..12]).unwrap()));
        let mut gb = got.clone();
        for i in 9..12 {
            gb.extend(rows(&b.extend(&ids[i..i + 1]).unwrap()));
        }
        let (da, db) = (max_diff(&ga, &want), max_diff(&gb, &want));
        assert!(
            da < 1e-4 && db < 1e-4,
            "{:?}/{:?}: {da} {db}",
            c.family,
            c.position
        );
        assert_eq!(s.len(), 9);
        assert_eq!(a.len(), 12);

        // Several continuations of the cached context in one batched pass.
        let other = tokens(2, 3);
        let mut both = ids[9..12].to_vec();
        both.extend(&other);
        let h = s.extend_rows(&both, 2).unwrap();
        let r0 = rows(&infer.logits(&h.get(0).unwrap()).unwrap());
        let r1 = rows(&infer.logits(&h.get(1).unwrap()).unwrap());
        let mut alt = ids[..9].to_vec();
        alt.extend(&other);
        let want_alt = full(&pair, &alt);
        assert!(max_diff(&r0, &want[9..]) < 1e-4);
        assert!(max_diff(&r1, &want_alt[9..]) < 1e-4);
        assert_eq!(s.len(), 9, "extend_rows leaves the session as it was");

        // Three continuations of different lengths packed into one row, no padding.
        let (c1, c2) = (tokens(3, 1), tokens(4, 4));
        let mut packed = ids[9..12].to_vec();
        packed.extend(&c1);
        packed.extend(&c2);
        let h = s.extend_packed(&packed, &[3, 1, 4]).unwrap();
        let got = rows(&infer.logits(&h).unwrap());
        assert!(max_diff(&got[..3], &want[9..]) < 1e-4);
        for (cont, at) in [(&c1, 3), (&c2, 4)] {
            let mut alt = ids[..9].to_vec();
            alt.extend(cont.iter());
            let w = full(&pair, &alt);
            let d = max_diff(&got[at..at + cont.len()], &w[9..]);
            assert!(d < 1e-4, "{:?}/{:?}: packed {d}", c.family, c.position);
        }

        // Control: the continuation without its context is different, so the comparison
        // above does see positions and cached keys.
        let alone = rows(&infer.session().prefill(&ids[5..9]).unwrap());
        assert!(max_diff(&alone, &want[5..9]) > 1e-2);
    }
}

#[test]
fn cached_greedy_decode_equals_uncached_greedy_decode() {
    for c in configs() {
        let pair = infer_for(&c, 5);
        let infer = &pair.0;
        let prompt = tokens(9, 4);
        let mut uncached = prompt.clone();
        for _ in 0..20 {
            let logits = full(&pair, &uncached);
            let last = logits.last().unwrap();
            uncached.push(argmax(last).unwrap() as u32);
        }
        let mut s = infer.session();
        let mut cached = prompt.clone();
        let mut next = prompt.clone();
        for _ in 0..20 {
            let logits = s.extend_last(&next).unwrap().to_vec1::<f32>().unwrap();
            let tok = argmax(&logits).unwrap() as u32;
            cached.push(tok);
            next = vec![tok];
        }
        assert_eq!(cached, uncached, "{:?}/{:?}", c.family, c.position);
        // Not a degenerate sequence that repeats one token.
        assert!(cached[4..].iter().any(|&t| t != cached[4]));
    }
}

#[test]
fn long_inputs_in_query_blocks_match_the_full_forward() {
    let mut c = cfg(Family::Baichuan2, Position::Alibi, 4, 4, false);
    c.max_position_embeddings = 1200;
    let pair = infer_for(&c, 4);
    let infer = &pair.0;
    let ids = tokens(4, 1100);
    let want = full(&pair, &ids);
    let mut s = infer.session();
    let mut got = rows(&s.prefill(&ids[..1030]).unwrap());
    got.extend(rows(&s.extend(&ids[1030..]).unwrap()));
    assert!(max_diff(&got, &want) < 1e-4);
}

#[test]
fn positions_past_the_model_maximum_are_refused() {
    let c = cfg(Family::Llama, Position::Rope, 4, 2, false);
    let pair = infer_for(&c, 1);
    let infer = &pair.0;
    let mut s = infer.session();
    s.prefill(&tokens(1, 64)).unwrap();
    let err = s.extend(&[1]).unwrap_err();
    assert!(matches!(
        err,
        InferError::Model(ModelError::TooLong { len: 65, max: 64 })
    ));
    let err = infer.session().prefill(&[V as u32]).unwrap_err();
    assert!(matches!(err, InferError::Id { .. }), "{err}");
}

#[test]
fn lora_adapters_are_refused() {
    let c = cfg(Family::Llama, Position::Rope, 4, 2, false);
    let dev = Device::Cpu;
    let mut p = Params::init(&c, 1, &dev).unwrap();
    let a = Tensor::zeros((2, 32), DType::F32, &dev).unwrap();
    p.insert(
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
        Param::Frozen(a),
    );
    let err = Infer::new(Transformer::new(c, &dev).unwrap(), p).unwrap_err();
    assert!(err.to_string().contains("merge the adapters"), "{err}");
}

#[test]
fn stacked_row_minimum_follows_the_layer_shapes() {
    // On the CPU the weights are packed and any row count gives the same bits.
    let c = cfg(Family::Llama, Position::Rope, 4, 2, false);
    let i = infer_for(&c, 1).0;
    assert_eq!((i.min_stack_rows(), i.min_head_rows()), (1, 1));
    // The rule for candle's matmul (other devices). Tiny test model: o_proj and down_proj
    // have 32 outputs, so 9 rows keep 9·32 > 256; the head has 97 outputs.
    let (h, m) = (c.hidden_size, c.intermediate_size);
    let q = c.num_attention_heads * c.head_dim();
    let kv = c.num_key_value_heads * c.head_dim();
    let layer = |h: usize, m: usize| vec![(h, q + 2 * kv), (q, h), (h, 2 * m), (m, h)];
    assert_eq!(min_rows_for(&layer(h, m)), 9);
    assert_eq!(min_rows_for(&[(h, 97)]), 3);
    // SmolLM2-135M's shapes: hidden 576, 9 heads and 3 kv heads of 64, intermediate 1536.
    assert_eq!(
        min_rows_for(&[(576, 576 + 2 * 192), (576, 576), (576, 3072), (1536, 576)]),
        2
    );
    // A down projection with k > 512 into <= 64 outputs needs more than 64 rows.
    assert_eq!(min_rows_for(&[(600, 32)]), 65);
}
