//! Loop tests on synthetic data: the loss falls, two runs are bit-identical, and a run resumed
//! from a mid-stage checkpoint ends with exactly the same parameters, optimizer state and metrics
//! as an uninterrupted one.

use candle_core::Device;

use super::backend::{Kernels, build};
use super::checkpoint;
use super::engine::{
    self, Batch, Cursor, LoopConfig, LoopState, Objective, StageTask, TrainError, lm_objective,
};
use super::optim::AdamW;
use crate::model::{ModelConfig, ModelError, Params};
use crate::spec::{
    Family, InitConfig, Length, Optimizer, Position, Schedule, ScheduleKind, Stage, StageKind,
};

/// Rows of a fixed cyclic pattern with a per-row offset chosen by the cursor.
struct Cyclic {
    vocab: u32,
    rows: usize,
    len: usize,
}

impl StageTask for Cyclic {
    fn next_batch(&mut self, c: &mut Cursor) -> Result<Batch, ModelError> {
        let mut inputs = Vec::new();
        let mut targets = Vec::new();
        for r in 0..self.rows {
            let start = (c.pos as usize * 7 + r * 3) as u32;
            for i in 0..self.len as u32 {
                inputs.push((start + i) % self.vocab);
                targets.push((start + i + 1) % self.vocab);
            }
        }
        c.pos += 1;
        Ok(Batch {
            rows: self.rows,
            len: self.len,
            inputs,
            targets,
            mask: vec![1.0; self.rows * self.len],
            ref_logps: vec![],
        })
    }
    fn objective(&mut self, batch: &Batch, rows: &[f64]) -> Result<Objective, ModelError> {
        Ok(lm_objective(batch, rows))
    }
}

fn setup(steps: u64, checkpoint_every: u64) -> (LoopConfig, ModelConfig, Params) {
    let init = InitConfig {
        hidden_size: 32,
        layers: 2,
        heads: 4,
        kv_heads: 2,
        intermediate_size: 64,
        max_position: 32,
        rope_theta: 10000.0,
        norm_eps: 1e-5,
        tie_embeddings: true,
        init_std: 0.02,
        position: Position::Rope,
    };
    let cfg = ModelConfig::from_init(Family::Llama, &init, 31);
    let stage = Stage {
        name: "pt".into(),
        kind: StageKind::Pt,
        datasets: vec![],
        length: Length::MaxSteps(steps),
        batch_size: 4,
        grad_accum: 2,
        max_len: 16,
        optimizer: Optimizer {
            lr: 1e-2,
            betas: [0.9, 0.95],
            eps: 1e-8,
            weight_decay: 0.1,
        },
        schedule: Schedule {
            kind: ScheduleKind::Cosine,
            warmup: 3,
        },
        clip_grad: 1.0,
        lora: None,
        checkpoint_every,
        eval_every: 0,
        val_fraction: 0.0,
        beta: None,
        max_samples: None,
    };
    let params = Params::init(&cfg, 9, &Device::Cpu).unwrap();
    (
        LoopConfig {
            stage,
            total_steps: steps,
            seed: 9,
            fingerprint_every: 5,
        },
        cfg,
        params,
    )
}

fn train(
    kernels: Kernels,
    steps: u64,
    every: u64,
    saved: &mut Vec<checkpoint::CheckpointBytes>,
) -> (Params, AdamW, LoopState) {
    let (cfg, mc, params) = setup(steps, every);
    let opt = AdamW::new(cfg.stage.optimizer.clone());
    let mut model = build(kernels, &mc, &Device::Cpu, &params, None, &opt).unwrap();
    let mut state = engine::fresh_state(cfg.seed, "pt");
    let mut task = Cyclic {
        vocab: 31,
        rows: 4,
        len: 16,
    };
    let mut ck = |p: &Params, o: &AdamW, s: &LoopState| -> Result<(), TrainError> {
        saved.push(checkpoint::save(p, o, s)?);
        Ok(())
    };
    engine::run(
        &cfg,
        model.as_mut(),
        &mut state,
        &mut task,
        &mut ck,
        &mut |_| {},
    )
    .unwrap();
    (model.params().unwrap(), model.optimizer().unwrap(), state)
}

#[test]
fn loss_falls_and_runs_are_bit_identical() {
    for kernels in [Kernels::Fused, Kernels::Composite] {
        loss_falls_and_runs_are_bit_identical_with(kernels);
    }
}

fn loss_falls_and_runs_are_bit_identical_with(kernels: Kernels) {
    let mut a_ck = Vec::new();
    let (pa, oa, sa) = train(kernels, 30, 0, &mut a_ck);
    let first = sa.metrics[0].loss;
    let last = sa.metrics.last().unwrap().loss;
    assert!(last < first * 0.7, "loss did not fall: {first} -> {last}");
    let mut b_ck = Vec::new();
    let (pb, ob, sb) = train(kernels, 30, 0, &mut b_ck);
    assert_eq!(pa.fingerprint().unwrap(), pb.fingerprint().unwrap());
    assert_eq!(sa, sb);
    assert_eq!(
        checkpoint::save(&pa, &oa, &sa).unwrap(),
        checkpoint::save(&pb, &ob, &sb).unwrap(),
        "checkpoint bytes differ between identical runs"
    );
    // The starting parameters (step 0), then every fingerprint interval up to the last step.
    let steps: Vec<u64> = sa.trajectory.iter().map(|t| t.0).collect();
    assert_eq!(steps, vec![0, 5, 10, 15, 20, 25, 30]);
}

#[test]
fn resume_from_a_checkpoint_is_bit_identical() {
    for kernels in [Kernels::Fused, Kernels::Composite] {
        resume_from_a_checkpoint_is_bit_identical_with(kernels);
    }
}

fn resume_from_a_checkpoint_is_bit_identical_with(kernels: Kernels) {
    let mut saved = Vec::new();
    let (pa, oa, sa) = train(kernels, 12, 5, &mut saved);
    assert_eq!(saved.len(), 2, "checkpoints at steps 5 and 10");
    let full = checkpoint::save(&pa, &oa, &sa).unwrap();
    // "Crash" after the step-5 checkpoint: restore it and finish.
    let (cfg, mc, _) = setup(12, 5);
    let (params, opt, mut state) =
        checkpoint::load(&saved[0], &cfg.stage.optimizer, &Device::Cpu, &|_| true).unwrap();
    assert_eq!(state.step, 5);
    let mut task = Cyclic {
        vocab: 31,
        rows: 4,
        len: 16,
    };
    let mut ck = |_: &Params, _: &AdamW, _: &LoopState| -> Result<(), TrainError> { Ok(()) };
    let mut model = build(kernels, &mc, &Device::Cpu, &params, None, &opt).unwrap();
    engine::run(
        &cfg,
        model.as_mut(),
        &mut state,
        &mut task,
        &mut ck,
        &mut |_| {},
    )
    .unwrap();
    let resumed = checkpoint::save(
        &model.params().unwrap(),
        &model.optimizer().unwrap(),
        &state,
    )
    .unwrap();
    let h = |b: &[u8]| blake3::hash(b).to_hex().to_string();
    assert_eq!(
        h(&resumed.state),
        h(&full.state),
        "trainer state differs: {}\nvs\n{}",
        String::from_utf8_lossy(&resumed.state),
        String::from_utf8_lossy(&full.state)
    );
    assert_eq!(
        h(&resumed.optimizer),
        h(&full.optimizer),
        "optimizer state differs"
    );
    assert_eq!(h(&resumed.model), h(&full.model), "model differs");
}

#[test]
fn nan_loss_names_the_step() {
    let (cfg, mc, params) = setup(5, 0);
    let mut bad = cfg.clone();
    bad.stage.optimizer.lr = 1e30;
    bad.stage.clip_grad = 0.0;
    bad.stage.schedule.warmup = 0;
    let opt = AdamW::new(bad.stage.optimizer.clone());
    let mut model = build(Kernels::Fused, &mc, &Device::Cpu, &params, None, &opt).unwrap();
    let mut state = engine::fresh_state(1, "pt");
    let mut task = Cyclic {
        vocab: 31,
        rows: 4,
        len: 16,
    };
    let mut ck = |_: &Params, _: &AdamW, _: &LoopState| -> Result<(), TrainError> { Ok(()) };
    let err = engine::run(
        &bad,
        model.as_mut(),
        &mut state,
        &mut task,
        &mut ck,
        &mut |_| {},
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("at step") && msg.contains("stage `pt`"),
        "{msg}"
    );
}
