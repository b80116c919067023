//! Generation with the KV cache, one prompt at a time: greedy or seeded sampling, stopped by the
//! model's end tokens ([`crate::generation`]), a stop string, `max_new_tokens` or the model's
//! context.

use serde::Serialize;

use super::{ModelBackend, R, ScoreError, infer_err};
use crate::eval::{BackendError, GenRequest, Sampling};
use crate::model::infer::argmax;
use crate::rng::Rng;

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Stopped {
    /// The model produced one of its end tokens (not part of the output).
    EndToken { id: u32 },
    /// A stop string occurred; the text ends before it.
    StopString,
    /// `max_new_tokens` tokens were generated.
    MaxNewTokens,
    /// The model's context is full.
    Context,
    /// The logits held no number to pick.
    NoLogits,
}

/// A generated text with its tokens.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Generation {
    pub text: String,
    /// Tokens generated (an end token is not included; tokens after a stop string are).
    pub tokens: Vec<u32>,
    /// The prompt's token ids after left truncation.
    pub prompt_ids: Vec<u32>,
    pub stopped: Stopped,
}

impl ModelBackend {
    /// The ids that end a generation (see [`crate::generation`]); never empty.
    pub fn end_tokens(&self) -> &[u32] {
        &self.end_tokens
    }

    /// Replace the end tokens; an empty list keeps the current ones.
    pub fn set_end_tokens(&mut self, ids: &[u32]) {
        if !ids.is_empty() {
            self.end_tokens = ids.to_vec();
        }
    }

    /// Generate for one request (see [`crate::eval::Backend::generate`]), with its tokens.
    pub fn generate_one(&self, req: &GenRequest) -> Result<Generation, BackendError> {
        Ok(self.generate_impl(req, 0)?)
    }

    pub(super) fn generate_impl(&self, req: &GenRequest, index: usize) -> R<Generation> {
        let max_len = self.max_len()?;
        let what = format!("generation request {index}");
        let mut rng = match req.sample {
            Some(Sampling { temperature, seed }) => {
                if !(temperature > 0.0 && temperature.is_finite()) {
                    return Err(ScoreError::Temperature { index, temperature });
                }
                Some((Rng::for_purpose(seed, "eval/generate"), temperature))
            }
            None => None,
        };
        let mut prompt = self.encode(&req.prompt, || format!("{what}: prompt"))?;
        if prompt.is_empty() {
            prompt.push(self.prefix_id());
        }
        // Leave room for the answer, as lm-eval does (at least one prompt token stays).
        let keep = max_len.saturating_sub(req.max_new_tokens).max(1);
        if prompt.len() > keep {
            prompt.drain(..prompt.len() - keep);
        }
        let mut out = Generation {
            text: String::new(),
            tokens: Vec::new(),
            prompt_ids: prompt.clone(),
            stopped: Stopped::MaxNewTokens,
        };
        if req.max_new_tokens == 0 {
            return Ok(out);
        }
        let stops: Vec<&str> = req
            .stop
            .iter()
            .map(String::as_str)
            .filter(|s| !s.is_empty())
            .collect();
        let mut session = self.infer.session();
        let mut next = prompt;
        loop {
            let logits = session
                .extend_last(&next)
                .and_then(|l| Ok(l.to_vec1::<f32>()?))
                .map_err(infer_err(&what))?;
            let tok = match rng.as_mut() {
                Some((r, t)) => sample(&logits, *t, r),
                None => argmax(&logits),
            };
            let Some(tok) = tok.map(|t| t as u32) else {
                out.stopped = Stopped::NoLogits;
                break;
            };
            if self.end_tokens.contains(&tok) {
                out.stopped = Stopped::EndToken { id: tok };
                break;
            }
            out.tokens.push(tok);
            if !stops.is_empty() {
                let text = self.decode(&out.tokens, &what)?;
                if let Some(cut) = stops.iter().filter_map(|s| text.find(s)).min() {
                    out.text = text[..cut].to_string();
                    out.stopped = Stopped::StopString;
                    return Ok(out);
                }
            }
            if out.tokens.len() >= req.max_new_tokens {
                out.stopped = Stopped::MaxNewTokens;
                break;
            }
            if session.len() + 1 > max_len {
                out.stopped = Stopped::Context;
                break;
            }
            next = vec![tok];
        }
        out.text = self.decode(&out.tokens, &what)?;
        Ok(out)
    }

    fn decode(&self, ids: &[u32], what: &str) -> R<String> {
        self.tokenizer
            .decode(ids)
            .map_err(|source| ScoreError::Tokenizer {
                what: format!("{what}: decoding"),
                source,
            })
    }
}

/// Draw from `softmax(logits / temperature)` (f64 on the host).
fn sample(logits: &[f32], temperature: f64, rng: &mut Rng) -> Option<usize> {
    let max = logits
        .iter()
        .copied()
        .filter(|x| !x.is_nan())
        .fold(f32::NEG_INFINITY, f32::max) as f64;
    if !max.is_finite() {
        return argmax(logits);
    }
    let weights: Vec<f64> = logits
        .iter()
        .map(|&x| {
            if x.is_nan() {
                0.0
            } else {
                ((x as f64 - max) / temperature).exp()
            }
        })
        .collect();
    let total: f64 = weights.iter().sum();
    let mut u = rng.next_f64() * total;
    let mut last = None;
    for (i, w) in weights.iter().enumerate() {
        if *w > 0.0 {
            if u < *w {
                return Some(i);
            }
            u -= w;
            last = Some(i);
        }
    }
    last
}
