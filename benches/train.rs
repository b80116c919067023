//! Training throughput of the 5.3 M-parameter Llama used as the reference workload (vocab 4096,
//! hidden 256, 4 layers, 8 heads, intermediate 688, untied head, sequence 128, batch 8, f32),
//! through medrun's own step loop (AdamW, clipping, fingerprints off).
//!
//! Run by hand on a quiet machine, back to back with the PyTorch peer (see benches/README.md):
//!
//! ```text
//! RAYON_NUM_THREADS=2 cargo bench --bench train -- [WARMUP] [STEPS]
//! ```
//!
//! Besides full steps it times the forward pass alone and forward + backward, so the report says
//! where a step's time goes, and a LoRA step (frozen base weights, adapters on every linear).

use std::collections::BTreeMap;
use std::time::Instant;

use candle_core::{Device, Tensor};
use medrun::model::transformer::{Forward, LoraForward};
use medrun::model::{ModelConfig, ModelError, Params, Transformer, lora};
use medrun::rng::Rng;
use medrun::spec::{
    Family, InitConfig, Length, Lora, Optimizer, Position, Schedule, ScheduleKind, Stage, StageKind,
};
use medrun::train::engine::{self, Batch, Cursor, LoopConfig, LoopState, StageTask, TrainError};
use medrun::train::optim::AdamW;

const V: usize = 4096;
const T: usize = 128;
const B: usize = 8;

/// Random token rows from a fixed seed.
struct RandomTokens {
    rng: Rng,
}

impl StageTask for RandomTokens {
    fn next_batch(&mut self, c: &mut Cursor) -> Result<Batch, ModelError> {
        c.pos += 1;
        let mut inputs = Vec::with_capacity(B * T);
        let mut targets = Vec::with_capacity(B * T);
        for _ in 0..B {
            let row: Vec<u32> = (0..=T).map(|_| self.rng.below(V as u64) as u32).collect();
            inputs.extend_from_slice(&row[..T]);
            targets.extend_from_slice(&row[1..]);
        }
        Ok(Batch {
            rows: B,
            len: T,
            inputs,
            targets,
            mask: vec![1.0; B * T],
            ref_logps: Vec::new(),
        })
    }

    fn loss(
        &mut self,
        model: &Transformer,
        params: &Params,
        batch: &Batch,
        f: &mut Forward<'_>,
    ) -> Result<(Tensor, BTreeMap<String, f64>), ModelError> {
        Ok((engine::lm_loss(model, params, batch, f)?, BTreeMap::new()))
    }
}

fn stage(steps: u64, lora: Option<Lora>) -> Stage {
    Stage {
        name: "bench".into(),
        kind: StageKind::Pt,
        datasets: vec![],
        length: Length::MaxSteps(steps),
        batch_size: B as u64,
        grad_accum: 1,
        max_len: T as u64,
        optimizer: Optimizer {
            lr: 3e-4,
            betas: [0.9, 0.95],
            eps: 1e-8,
            weight_decay: 0.1,
        },
        schedule: Schedule {
            kind: ScheduleKind::Constant,
            warmup: 0,
        },
        clip_grad: 1.0,
        lora,
        checkpoint_every: 0,
        eval_every: 0,
        val_fraction: 0.0,
        beta: None,
        max_samples: None,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Median seconds per full training step (forward, backward, clip, AdamW).
fn time_steps(
    model: &Transformer,
    params: &Params,
    lora: Option<&LoraForward>,
    st: Stage,
    warmup: u64,
    steps: u64,
) -> Result<f64, TrainError> {
    let cfg = LoopConfig {
        stage: st.clone(),
        total_steps: warmup + steps,
        seed: 1,
        fingerprint_every: 0,
    };
    let mut opt = AdamW::new(st.optimizer.clone());
    let mut state = engine::fresh_state(1, "bench");
    let mut task = RandomTokens {
        rng: Rng::for_purpose(1, "bench-data"),
    };
    let mut times = Vec::new();
    let mut last = Instant::now();
    let mut ck = |_: &Params, _: &AdamW, _: &LoopState| -> Result<(), TrainError> { Ok(()) };
    let mut progress = |m: &engine::StepMetrics| {
        if m.step > warmup {
            times.push(last.elapsed().as_secs_f64());
        }
        last = Instant::now();
    };
    engine::run(
        &cfg,
        model,
        params,
        lora,
        &mut opt,
        &mut state,
        &mut task,
        &mut ck,
        &mut progress,
    )?;
    Ok(median(times))
}

/// Median seconds of the forward pass + loss, and of forward + backward.
fn time_phases(model: &Transformer, params: &Params, n: usize) -> Result<(f64, f64), ModelError> {
    let mut task = RandomTokens {
        rng: Rng::for_purpose(1, "bench-data"),
    };
    let mut c = Cursor::default();
    let (mut fwd, mut both) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let b = task.next_batch(&mut c)?;
        let t0 = Instant::now();
        let loss = engine::lm_loss(model, params, &b, &mut Forward::eval())?;
        let _ = loss.to_scalar::<f32>()?;
        fwd.push(t0.elapsed().as_secs_f64());
        let t0 = Instant::now();
        let loss = engine::lm_loss(model, params, &b, &mut Forward::eval())?;
        let _g = loss.backward()?;
        both.push(t0.elapsed().as_secs_f64());
    }
    Ok((median(fwd), median(both)))
}

/// Median seconds of forward + backward of `op` on a fresh variable of `shape` (the upstream
/// gradient is a fixed random tensor, as in a real step).
fn time_op(
    shape: &[usize],
    reps: usize,
    op: &dyn Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> candle_core::Result<f64> {
    let dev = Device::Cpu;
    let n: usize = shape.iter().product();
    let mut rng = Rng::for_purpose(3, "bench-op");
    let x = candle_core::Var::from_tensor(&Tensor::from_vec(rng.normal_vec(n, 1.0), shape, &dev)?)?;
    let mut times = Vec::new();
    for _ in 0..reps {
        let t0 = Instant::now();
        let y = op(x.as_tensor())?;
        let up = Tensor::ones_like(&y)?;
        let _g = (y * up)?.sum_all()?.backward()?;
        times.push(t0.elapsed().as_secs_f64());
    }
    Ok(median(times))
}

/// Forward + backward time of the composite (unfused) ops, times their count per step.
fn op_breakdown(step: f64) -> candle_core::Result<()> {
    use candle_core::D;
    let (h, nh, hd, inter, layers) = (256usize, 8usize, 32usize, 688usize, 4usize);
    let w = Tensor::ones(h, candle_core::DType::F32, &Device::Cpu)?;
    let rms = |x: &Tensor| -> candle_core::Result<Tensor> {
        let inv = x
            .sqr()?
            .mean_keepdim(D::Minus1)?
            .affine(1.0, 1e-5)?
            .sqrt()?
            .recip()?;
        x.broadcast_mul(&inv)?.broadcast_mul(&w)
    };
    let cos = Tensor::ones((T, hd), candle_core::DType::F32, &Device::Cpu)?;
    let sin = Tensor::ones((T, hd), candle_core::DType::F32, &Device::Cpu)?;
    let rope = |x: &Tensor| -> candle_core::Result<Tensor> {
        let x1 = x.narrow(D::Minus1, 0, hd / 2)?;
        let x2 = x.narrow(D::Minus1, hd / 2, hd / 2)?;
        let rot = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
        x.broadcast_mul(&cos)? + rot.broadcast_mul(&sin)?
    };
    let mut mask = vec![0f32; T * T];
    for i in 0..T {
        for j in i + 1..T {
            mask[i * T + j] = f32::NEG_INFINITY;
        }
    }
    let mask = Tensor::from_vec(mask, (1, T, T), &Device::Cpu)?;
    let softmax = |x: &Tensor| -> candle_core::Result<Tensor> {
        candle_nn::ops::softmax(&x.broadcast_add(&mask)?, D::Minus1)
    };
    let swiglu = |x: &Tensor| -> candle_core::Result<Tensor> {
        let g = x.narrow(D::Minus1, 0, inter)?;
        let u = x.narrow(D::Minus1, inter, inter)?;
        candle_nn::ops::silu(&g)? * u
    };
    let xent = |x: &Tensor| -> candle_core::Result<Tensor> {
        let lp = candle_nn::ops::log_softmax(x, D::Minus1)?;
        let idx = Tensor::zeros((B, T, 1), candle_core::DType::U32, &Device::Cpu)?;
        lp.gather(&idx, D::Minus1)?.sum_all()
    };
    let rows: Vec<(&str, f64, usize)> = vec![
        (
            "RMSNorm [8,128,256]",
            time_op(&[B, T, h], 5, &rms)?,
            2 * layers + 1,
        ),
        (
            "RoPE q/k [8,8,128,32]",
            time_op(&[B, nh, T, hd], 5, &rope)?,
            2 * layers,
        ),
        (
            "mask + softmax [8,8,128,128]",
            time_op(&[B, nh, T, T], 5, &softmax)?,
            layers,
        ),
        (
            "SwiGLU [8,128,688]",
            time_op(&[B, T, 2 * inter], 5, &swiglu)?,
            layers,
        ),
        (
            "log-softmax + gather [8,128,4096]",
            time_op(&[B, T, V], 3, &xent)?,
            1,
        ),
    ];
    println!("composite ops, forward + backward, per step:");
    let mut total = 0.0;
    for (name, t, n) in &rows {
        let per = t * *n as f64;
        total += per;
        println!(
            "  {name:<34} {n:>2} x {:>6.2} ms = {:>6.1} ms ({:>4.1}% of a step)",
            t * 1e3,
            per * 1e3,
            100.0 * per / step
        );
    }
    println!(
        "  {:<34}                {:>6.1} ms ({:>4.1}% of a step)",
        "all of the above",
        total * 1e3,
        100.0 * total / step
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let warmup = args.first().copied().unwrap_or(3);
    let steps = args.get(1).copied().unwrap_or(20);
    let init = InitConfig {
        hidden_size: 256,
        layers: 4,
        heads: 8,
        kv_heads: 8,
        intermediate_size: 688,
        max_position: T as u64,
        rope_theta: 10000.0,
        norm_eps: 1e-5,
        tie_embeddings: false,
        init_std: 0.02,
        position: Position::Rope,
    };
    let cfg = ModelConfig::from_init(Family::Llama, &init, V);
    let dev = Device::Cpu;
    let model = Transformer::new(cfg.clone(), &dev)?;
    let params = Params::init(&cfg, 1, &dev)?;
    let tokens = (B * T) as f64;
    println!(
        "model: llama, {} parameters, batch {B} x seq {T}, f32, {} rayon threads",
        cfg.parameter_count(),
        rayon::current_num_threads()
    );

    let (fwd, both) = time_phases(&model, &params, 5)?;
    let full = time_steps(
        &model,
        &params,
        None,
        stage(warmup + steps, None),
        warmup,
        steps,
    )?;
    println!(
        "full fine-tuning: {:>7.1} ms/step  {:>7.0} tokens/s",
        full * 1e3,
        tokens / full
    );
    println!(
        "  forward + loss  {:>7.1} ms ({:.0}%)",
        fwd * 1e3,
        100.0 * fwd / full
    );
    println!(
        "  backward        {:>7.1} ms ({:.0}%)",
        (both - fwd) * 1e3,
        100.0 * (both - fwd) / full
    );
    println!(
        "  the rest (clip, AdamW, batching; full step − forward − backward, measured apart): {:.1} ms",
        (full - both).max(0.0) * 1e3
    );
    op_breakdown(full)?;

    let l = Lora {
        r: 8,
        alpha: 16.0,
        dropout: 0.0,
        targets: [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    };
    let (lp, lf) = lora::attach(&params, &cfg, &l, 2, &dev)?;
    let t = time_steps(
        &model,
        &lp,
        Some(&lf),
        stage(warmup + steps, Some(l)),
        warmup,
        steps,
    )?;
    println!(
        "LoRA r=8, all linears (frozen base): {:>7.1} ms/step  {:>7.0} tokens/s",
        t * 1e3,
        tokens / t
    );
    Ok(())
}
