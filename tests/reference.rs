//! An exported from-scratch checkpoint gives the same logits under candle-transformers' own Llama
//! inference as under medrun's model, and the same sequence log-likelihood as medrun's fused
//! training kernels. Run with `cargo test --features reference --test reference`.

#![cfg(feature = "reference")]

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::llama as ct;
use medrun::model::checkpoint::write_model_dir;
use medrun::model::transformer::Forward;
use medrun::model::{ModelConfig, Params, Transformer};
use medrun::spec::{Family, InitConfig, Position};

#[test]
fn exported_checkpoint_matches_candle_transformers_llama() {
    for tie in [true, false] {
        let init = InitConfig {
            hidden_size: 64,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            intermediate_size: 96,
            max_position: 64,
            rope_theta: 10000.0,
            norm_eps: 1e-5,
            tie_embeddings: tie,
            init_std: 0.05,
            position: Position::Rope,
        };
        let cfg = ModelConfig::from_init(Family::Llama, &init, 101);
        let dev = Device::Cpu;
        let params = Params::init(&cfg, 42, &dev).unwrap();
        let dir = tempfile::tempdir().unwrap();
        write_model_dir(dir.path(), &cfg, &params).unwrap();

        let ids: Vec<u32> = (0..12).map(|i| (i * 37 % 101) as u32).collect();
        let input = Tensor::from_vec(ids.clone(), (1, ids.len()), &dev).unwrap();
        let ours = Transformer::new(cfg.clone(), &dev)
            .unwrap()
            .forward(&params, &input, &mut Forward::eval())
            .unwrap()
            .squeeze(0)
            .unwrap()
            .get(ids.len() - 1)
            .unwrap();

        let text = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
        let lc: ct::LlamaConfig = serde_json::from_str(&text).unwrap();
        let config = lc.into_config(false);
        let files = [dir.path().join("model.safetensors")];
        let vb = unsafe {
            candle_nn::VarBuilder::from_mmaped_safetensors(&files, DType::F32, &dev).unwrap()
        };
        let llama = ct::Llama::load(vb, &config).unwrap();
        let mut cache = ct::Cache::new(false, DType::F32, &config, &dev).unwrap();
        let theirs = llama
            .forward(&input, 0, &mut cache)
            .unwrap()
            .squeeze(0)
            .unwrap();

        let diff = (ours - theirs)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        eprintln!("tie={tie}: max |logit difference| = {diff:e}");
        assert!(diff < 1e-4, "logits differ by {diff}");

        // The fused training kernels give the same log-likelihood of the sequence as
        // candle-transformers (which returns the last position's logits: score each prefix).
        let mut fused = medrun::model::fused::FusedModel::new(&cfg, &params, None).unwrap();
        let n = ids.len() - 1;
        let batch = medrun::train::engine::Batch {
            rows: 1,
            len: n,
            inputs: ids[..n].to_vec(),
            targets: ids[1..].to_vec(),
            mask: vec![1.0; n],
            ref_logps: vec![],
        };
        let ours = fused.score(&batch).unwrap()[0];
        let mut theirs = 0f64;
        for end in 1..=n {
            let prefix = Tensor::from_vec(ids[..end].to_vec(), (1, end), &dev).unwrap();
            let mut cache = ct::Cache::new(false, DType::F32, &config, &dev).unwrap();
            let logits = llama
                .forward(&prefix, 0, &mut cache)
                .unwrap()
                .squeeze(0)
                .unwrap();
            let logp = candle_nn::ops::log_softmax(&logits, 0).unwrap();
            theirs += logp
                .get(ids[end] as usize)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64;
        }
        eprintln!("tie={tie}: log-likelihood fused {ours:.6}, candle-transformers {theirs:.6}");
        assert!(
            (ours - theirs).abs() < 1e-4 * theirs.abs().max(1.0),
            "fused {ours} vs candle-transformers {theirs}"
        );
    }
}
