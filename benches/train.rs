//! Training throughput of the 5.3 M-parameter Llama used as the reference workload (vocab 4096,
//! hidden 256, 4 layers, 8 heads, intermediate 688, untied head, sequence 128, batch 8, f32),
//! through medrun's own step loop (AdamW, clipping; fingerprints off), on the kernels
//! `medrun run` uses on the CPU (fused) and on the composite candle model kept as the
//! reference.
//!
//! Run by hand on a quiet machine, back to back with the PyTorch peer (see benches/README.md):
//!
//! ```text
//! RAYON_NUM_THREADS=2 cargo bench --bench train -- [WARMUP] [STEPS] [MODE]
//! ```
//!
//! MODE is `all` (default: fused full fine-tuning with its forward/backward split, fused LoRA,
//! composite full fine-tuning), or one of `fused`, `lora`, `composite` to time only that one, so
//! the process's peak RSS (printed last) belongs to it; `attention` times the attention kernels
//! alone; `serve` runs bursts of fused steps on request (one stdin line `N` per burst, answered
//! `burst N MEDIAN_MS`) for `compare.py`, which alternates them with the PyTorch peer's.

use std::time::Instant;

use candle_core::Device;
use medrun::model::transformer::LoraForward;
use medrun::model::{ModelConfig, ModelError, Params, lora};
use medrun::rng::Rng;
use medrun::spec::{
    Family, InitConfig, Length, Lora, Optimizer, Position, Schedule, ScheduleKind, Stage, StageKind,
};
use medrun::train::backend::{self, Kernels};
use medrun::train::engine::{
    self, Batch, Cursor, LoopConfig, LoopState, Objective, StageTask, TrainError, lm_objective,
};
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

    fn objective(&mut self, batch: &Batch, rows: &[f64]) -> Result<Objective, ModelError> {
        Ok(lm_objective(batch, rows))
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

/// Median seconds per full training step (forward, backward, clip, AdamW) and the last loss.
fn time_steps(
    kernels: Kernels,
    cfg: &ModelConfig,
    params: &Params,
    lora: Option<LoraForward>,
    st: Stage,
    warmup: u64,
    steps: u64,
) -> Result<(f64, f64), TrainError> {
    let lc = LoopConfig {
        stage: st.clone(),
        total_steps: warmup + steps,
        seed: 1,
        fingerprint_every: 0,
    };
    let opt = AdamW::new(st.optimizer.clone());
    let mut model = backend::build(kernels, cfg, &Device::Cpu, params, lora, &opt)?;
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
        &lc,
        model.as_mut(),
        &mut state,
        &mut task,
        &mut ck,
        &mut progress,
    )?;
    let loss = state.metrics.last().map(|m| m.loss).unwrap_or(f64::NAN);
    Ok((median(times), loss))
}

/// Median seconds of each part of a fused training step, measured inside real steps:
/// forward, backward, gradient norm, AdamW update.
fn time_phases(cfg: &ModelConfig, params: &Params, n: usize) -> Result<[f64; 4], ModelError> {
    use medrun::train::backend::Backend;
    let mut task = RandomTokens {
        rng: Rng::for_purpose(1, "bench-data"),
    };
    let st = stage(n as u64, None);
    let opt = AdamW::new(st.optimizer.clone());
    let mut model = backend::Fused::new(cfg, params, None, &opt)?;
    let mut c = Cursor::default();
    let mut parts: [Vec<f64>; 4] = Default::default();
    for _ in 0..n {
        let b = task.next_batch(&mut c)?;
        let t0 = Instant::now();
        let rows = model.forward(&b, None)?;
        let t1 = Instant::now();
        model.backward(&lm_objective(&b, &rows).d_rows)?;
        let t2 = Instant::now();
        let norm = model.grad_norm()?;
        let t3 = Instant::now();
        model.step(3e-4, engine::clip_factor(norm, 1.0))?;
        let t4 = Instant::now();
        for (p, (a, b)) in parts
            .iter_mut()
            .zip([(t0, t1), (t1, t2), (t2, t3), (t3, t4)])
        {
            p.push((b - a).as_secs_f64());
        }
    }
    Ok(parts.map(median))
}

/// Median milliseconds of `f` over `reps` calls (after one warm-up call).
fn time_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut v = Vec::new();
    for _ in 0..reps {
        let t0 = Instant::now();
        f();
        v.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    median(v)
}

/// Where a fused step's time goes: each kernel at the benchmark's shapes, times its count per
/// step.
fn kernel_breakdown(step_ms: f64) {
    use medrun::model::kernels::gemm::{Mat, MatMut, Par, matmul};
    use medrun::model::kernels::{adamw, attention, norm, rope, swiglu, xent};
    let (h, nh, hd, inter, layers, m) = (256usize, 8usize, 32usize, 688usize, 4usize, B * T);
    let wq = 3 * h;
    let mut rng = Rng::for_purpose(5, "bench-kernels");
    let mut data = |n: usize| rng.normal_vec(n, 0.5);
    let x = data(m * h);
    let w = vec![1f32; h];
    let mut y = vec![0f32; m * h];
    let mut inv = vec![0f32; m];
    let mut rows: Vec<(String, f64, usize)> = Vec::new();
    rows.push((
        "RMSNorm forward".into(),
        time_ms(20, || norm::forward(&x, &w, 1e-5, &mut y, &mut inv)),
        2 * layers + 1,
    ));
    let dy = data(m * h);
    let mut dx = vec![0f32; m * h];
    let mut dw = vec![0f32; h];
    rows.push((
        "RMSNorm backward".into(),
        time_ms(20, || {
            norm::backward(&dy, &x, &inv, &w, &mut dx, true, Some(&mut dw), true)
        }),
        2 * layers + 1,
    ));
    let mut qkv = data(m * wq);
    let tables = rope::Tables::new(T, hd, 10000.0);
    rows.push((
        "RoPE (forward or backward)".into(),
        time_ms(20, || rope::apply(&mut qkv, wq, T, 2 * nh, &tables, false)),
        2 * layers,
    ));
    let sh = attention::Shape {
        rows: B,
        seq: T,
        heads: nh,
        kv_heads: nh,
        head_dim: hd,
    };
    let mut att = vec![0f32; m * h];
    let mut lse = vec![0f32; B * nh * T];
    rows.push((
        "attention forward".into(),
        time_ms(10, || {
            attention::forward(sh, &qkv, None, &mut att, &mut lse)
        }),
        layers,
    ));
    let mut dqkv = vec![0f32; m * wq];
    rows.push((
        "attention backward".into(),
        time_ms(10, || {
            attention::backward(sh, &qkv, None, &att, &lse, &dy, &mut dqkv)
        }),
        layers,
    ));
    let gu = data(m * 2 * inter);
    let mut hbuf = vec![0f32; m * inter];
    rows.push((
        "SwiGLU forward".into(),
        time_ms(20, || swiglu::forward(&gu, &mut hbuf, inter)),
        layers,
    ));
    let mut dgu = vec![0f32; m * 2 * inter];
    rows.push((
        "SwiGLU backward".into(),
        time_ms(20, || swiglu::backward(&hbuf, &gu, &mut dgu, inter)),
        layers,
    ));
    let logits0 = data(m * V);
    let targets: Vec<u32> = (0..m as u32).map(|i| (i * 7) % V as u32).collect();
    let mut logits = logits0.clone();
    let (mut lp, mut is) = (vec![0f32; m], vec![0f32; m]);
    rows.push((
        "cross-entropy forward".into(),
        time_ms(10, || {
            logits.copy_from_slice(&logits0);
            xent::forward(&mut logits, V, &targets, &mut lp, &mut is)
        }),
        1,
    ));
    let wt = vec![1e-3f32; m];
    rows.push((
        "cross-entropy backward".into(),
        time_ms(10, || xent::backward(&mut logits, V, &targets, &is, &wt)),
        1,
    ));
    let n = 5_261_568;
    let (mut p, g, mut m1, mut v1) = (data(n), data(n), vec![0f32; n], vec![0f32; n]);
    let hy = adamw::Hyper {
        lr: 1e-4,
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        decay: 1e-5,
        inv_bc1: 10.0,
        inv_bc2: 20.0,
        clip: 1.0,
    };
    rows.push((
        "AdamW (all parameters)".into(),
        time_ms(10, || adamw::step(&mut p, &g, &mut m1, &mut v1, hy)),
        1,
    ));
    // Matrix products: (name, m, n, k, count per step); forward x·Wᵀ, input gradient dy·W,
    // weight gradient dyᵀ·x.
    let shapes = [
        ("q/k/v", wq, h, layers),
        ("o", h, h, layers),
        ("gate/up", 2 * inter, h, layers),
        ("down", h, inter, layers),
        ("head", V, h, 1),
    ];
    for (name, out, inp, count) in shapes {
        let wt = data(out * inp);
        let xin = data(m * inp);
        let dyo = data(m * out);
        let mut yo = vec![0f32; m * out];
        let mut dxi = vec![0f32; m * inp];
        let mut dwt = vec![0f32; out * inp];
        // The forward product, and the backward pair (input gradient ‖ weight gradient).
        let mut forward = |par: Par| {
            time_ms(10, || {
                matmul(
                    MatMut::new(&mut yo, m, out),
                    Mat::new(&xin, m, inp),
                    Mat::new(&wt, out, inp).t(),
                    1.0,
                    false,
                    par,
                )
            })
        };
        let (fwd, single) = (forward(Par::Pool), forward(Par::Single));
        let mut backward = |par: Par| {
            time_ms(10, || {
                rayon::join(
                    || {
                        matmul(
                            MatMut::new(&mut dxi, m, inp),
                            Mat::new(&dyo, m, out),
                            Mat::new(&wt, out, inp),
                            1.0,
                            false,
                            par,
                        )
                    },
                    || {
                        matmul(
                            MatMut::new(&mut dwt, out, inp),
                            Mat::new(&dyo, m, out).t(),
                            Mat::new(&xin, m, inp),
                            1.0,
                            false,
                            par,
                        )
                    },
                );
            })
        };
        let (bwd, pair_single) = (backward(Par::Pool), backward(Par::Single));
        let gf = 2.0 * (m * out * inp) as f64 / 1e6;
        println!(
            "  ({name}: forward on one thread {:.0} GFLOP/s, backward pair one thread each {:.0} GFLOP/s)",
            gf / single,
            2.0 * gf / pair_single
        );
        rows.push((
            format!("matmul {name} forward ({:.0} GFLOP/s)", gf / fwd),
            fwd,
            count,
        ));
        rows.push((
            format!(
                "matmul {name} backward pair ({:.0} GFLOP/s)",
                2.0 * gf / bwd
            ),
            bwd,
            count,
        ));
    }
    println!("fused kernels alone, per step:");
    let mut total = 0.0;
    for (name, t, n) in &rows {
        let per = t * *n as f64;
        total += per;
        println!(
            "  {name:<44} {n:>2} x {t:>6.2} ms = {per:>6.1} ms ({:>4.1}% of a step)",
            100.0 * per / step_ms
        );
    }
    println!(
        "  {:<44}                {total:>6.1} ms ({:>4.1}% of a step)",
        "all of the above",
        100.0 * total / step_ms
    );
}

/// Peak resident set size of this process (Linux `VmHWM`), in MB.
fn peak_rss_mb() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let nums: Vec<u64> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let mode = args
        .iter()
        .find(|a| a.parse::<u64>().is_err() && !a.starts_with('-'))
        .map(String::as_str)
        .unwrap_or("all");
    let warmup = nums.first().copied().unwrap_or(3);
    let steps = nums.get(1).copied().unwrap_or(20);
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
    let params = Params::init(&cfg, 1, &Device::Cpu)?;
    let tokens = (B * T) as f64;
    println!(
        "model: llama, {} parameters, batch {B} x seq {T}, f32, {} rayon threads, kernels {:?}",
        cfg.parameter_count(),
        rayon::current_num_threads(),
        medrun::model::kernels::isa()
    );

    if mode == "serve" {
        // Bursts on request, for a harness that alternates with a peer process (compare.py):
        // each stdin line `N` runs one warm-up step and N timed steps of `medrun run`'s loop on
        // the fused kernels and answers `burst N median_ms`. Ends at end of input.
        use std::io::{BufRead, Write};
        let mut out = std::io::stdout();
        writeln!(out, "ready")?;
        out.flush()?;
        for line in std::io::stdin().lock().lines() {
            let n: u64 = line?.trim().parse()?;
            let (t, _) = time_steps(
                Kernels::Fused,
                &cfg,
                &params,
                None,
                stage(1 + n, None),
                1,
                n,
            )?;
            writeln!(out, "burst {n} {:.3}", t * 1e3)?;
            out.flush()?;
        }
        if let Some(mb) = peak_rss_mb() {
            println!("peak RSS: {mb:.0} MB");
        }
        return Ok(());
    }
    if mode == "attention" {
        // Attention alone in a loop (for a profiler).
        use medrun::model::kernels::attention;
        let sh = attention::Shape {
            rows: B,
            seq: T,
            heads: 8,
            kv_heads: 8,
            head_dim: 32,
        };
        let mut rng = Rng::for_purpose(5, "bench-kernels");
        let qkv = rng.normal_vec(B * T * 768, 0.5);
        let dy = rng.normal_vec(B * T * 256, 0.5);
        let mut att = vec![0f32; B * T * 256];
        let mut lse = vec![0f32; B * 8 * T];
        let mut d = vec![0f32; B * T * 768];
        let t0 = Instant::now();
        let n = 200;
        for _ in 0..n {
            attention::forward(sh, &qkv, None, &mut att, &mut lse);
        }
        let f = t0.elapsed().as_secs_f64() / n as f64;
        let t0 = Instant::now();
        for _ in 0..n {
            attention::backward(sh, &qkv, None, &att, &lse, &dy, &mut d);
        }
        let b = t0.elapsed().as_secs_f64() / n as f64;
        println!(
            "attention forward {:.3} ms, backward {:.3} ms",
            f * 1e3,
            b * 1e3
        );
        return Ok(());
    }
    if mode == "all" || mode == "fused" {
        let (full, loss) = time_steps(
            Kernels::Fused,
            &cfg,
            &params,
            None,
            stage(warmup + steps, None),
            warmup,
            steps,
        )?;
        println!(
            "full fine-tuning (fused): {:>7.1} ms/step  {:>7.0} tokens/s  (loss {loss:.3})",
            full * 1e3,
            tokens / full
        );
        if mode == "all" {
            let parts = time_phases(&cfg, &params, 12)?;
            for (name, t) in ["forward + loss", "backward", "gradient norm", "AdamW"]
                .iter()
                .zip(parts)
            {
                println!(
                    "  {name:<15} {:>7.1} ms ({:.0}%)",
                    t * 1e3,
                    100.0 * t / full
                );
            }
            kernel_breakdown(full * 1e3);
        }
    }
    if mode == "all" || mode == "lora" {
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
        let (lp, lf) = lora::attach(&params, &cfg, &l, 2, &Device::Cpu)?;
        let (t, _) = time_steps(
            Kernels::Fused,
            &cfg,
            &lp,
            Some(lf),
            stage(warmup + steps, Some(l)),
            warmup,
            steps,
        )?;
        println!(
            "LoRA r=8, all linears (fused, frozen base): {:>7.1} ms/step  {:>7.0} tokens/s",
            t * 1e3,
            tokens / t
        );
    }
    if mode == "all" || mode == "composite" {
        let n = steps.min(8);
        let (t, loss) = time_steps(
            Kernels::Composite,
            &cfg,
            &params,
            None,
            stage(warmup.min(2) + n, None),
            warmup.min(2),
            n,
        )?;
        println!(
            "full fine-tuning (composite candle reference): {:>7.1} ms/step  {:>7.0} tokens/s  (loss {loss:.3})",
            t * 1e3,
            tokens / t
        );
    }
    if let Some(mb) = peak_rss_mb() {
        println!("peak RSS: {mb:.0} MB");
    }
    Ok(())
}
