//! Where generation stops: a model's end tokens, read as Hugging Face `transformers` reads them,
//! and the `generation_config.json` that medrun writes for its own checkpoints.
//!
//! # Which ids end a generation
//! Generation (the `generate` and `refusal` eval tasks, `medrun generate`, plain or `--chat`)
//! stops at the first generated token that is one of the model's end tokens; that token is not
//! part of the output text. A model may have several (Qwen2.5 and Llama 3 instruct models list
//! two or three). For a model directory or a stage output they come from, in this order:
//!
//! 1. `generation_config.json`: `eos_token_id`, an id or a list of ids, when the file exists
//!    and sets it;
//! 2. `config.json`: `eos_token_id` (an id or a list);
//! 3. the tokenizer's end-of-sequence token: `tokenizer_config.json`'s `eos_token` (a string or
//!    an `AddedToken` object), else the first of [`crate::tokenizer::EOS_CANDIDATES`] in the
//!    vocabulary.
//!
//! The first source that names at least one id wins; sources are not merged. Steps 1 and 2 are
//! what `transformers`' `generate()` does (its model loader takes `generation_config.json`, and
//! builds the generation config from `config.json` when that file is absent; `generate()` then
//! stops at every id of `eos_token_id`). `transformers` never consults the tokenizer, so step 3
//! only decides for a model whose configs name no end token; there `transformers` would generate
//! to the length limit. For the same reason, a `generation_config.json` that exists but sets no
//! `eos_token_id` leaves `transformers` without an end token, while medrun goes on to step 2.
//!
//! A GGUF file has one source: its `tokenizer.ggml.eos_token_id`, which is also the id
//! `transformers`' GGUF loader puts in the model config.
//!
//! # What medrun writes
//! Every training stage writes `generation_config.json` beside `config.json`
//! ([`generation_config`]): `eos_token_id` lists the end tokens of the model the stage started
//! from, followed by the chat template's end-of-turn token when it is a different single token
//! (`<|im_end|>` for `chatml` and `qwen`, `<|eot_id|>` for `llama3`; see
//! [`template_end_of_turn`]), because SFT teaches the model to end its answers with it. So a
//! model trained from scratch with `chatml` stops at `<|endoftext|>` and at `<|im_end|>`, in
//! medrun and in `transformers` alike.

use std::path::Path;

use serde_json::{Value, json};

use crate::template::{ChatTemplate, Turn};
use crate::tokenizer::Tokenizer;

/// A model's end tokens and the file (and field) they were read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndTokens {
    /// Distinct ids, in the order their source lists them. Never empty.
    pub ids: Vec<u32>,
    /// Where they come from, e.g. `generation_config.json (eos_token_id)`.
    pub source: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{origin}: {problem}")]
pub struct EndTokenError {
    pub origin: String,
    pub problem: String,
}

impl EndTokenError {
    pub fn hint(&self) -> String {
        "`eos_token_id` must be a token id of the model's tokenizer or a list of them; fix the \
         file, or export the model again"
            .into()
    }
}

/// `eos_token_id` of a parsed `generation_config.json` or `config.json` (`origin` names the file
/// in errors): `None` when it is absent, `null` or an empty list.
pub fn eos_ids(config: &Value, origin: &str) -> Result<Option<Vec<u32>>, EndTokenError> {
    let bad = |problem: String| EndTokenError {
        origin: origin.to_string(),
        problem,
    };
    let one = |v: &Value| -> Result<u32, EndTokenError> {
        v.as_u64()
            .and_then(|x| u32::try_from(x).ok())
            .ok_or_else(|| bad(format!("`eos_token_id` holds {v}, which is not a token id")))
    };
    let ids = match config.get("eos_token_id") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(list)) => list.iter().map(one).collect::<Result<Vec<u32>, _>>()?,
        Some(v) => vec![one(v)?],
    };
    let mut out: Vec<u32> = Vec::with_capacity(ids.len());
    for id in ids {
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

/// The end tokens of a model from its parsed `generation_config.json` and `config.json` (each
/// with the name shown in errors, `None` when the model has no such file) and its tokenizer,
/// whose EOS must already reflect `tokenizer_config.json` (see [`Tokenizer::configured`]). See
/// the module docs for the order. Every id must be in the tokenizer's vocabulary.
pub fn end_tokens(
    generation_config: Option<(&Value, &str)>,
    config: Option<(&Value, &str)>,
    tokenizer: &Tokenizer,
) -> Result<EndTokens, EndTokenError> {
    for (value, origin) in [generation_config, config].into_iter().flatten() {
        if let Some(ids) = eos_ids(value, origin)? {
            if let Some(id) = ids.iter().find(|&&id| tokenizer.id_to_token(id).is_none()) {
                return Err(EndTokenError {
                    origin: origin.to_string(),
                    problem: format!(
                        "`eos_token_id` names token id {id}, which the tokenizer (vocabulary of {}) does not have",
                        tokenizer.vocab_size()
                    ),
                });
            }
            return Ok(EndTokens {
                ids,
                source: format!("{origin} (eos_token_id)"),
            });
        }
    }
    Ok(EndTokens {
        ids: vec![tokenizer.eos_id()],
        source: "the tokenizer's end-of-sequence token".into(),
    })
}

/// [`end_tokens`] of a Hugging Face model directory: its `generation_config.json` and
/// `config.json`, each when present.
pub fn end_tokens_of_dir(dir: &Path, tokenizer: &Tokenizer) -> Result<EndTokens, EndTokenError> {
    let read = |name: &str| -> Result<Option<(Value, String)>, EndTokenError> {
        let path = dir.join(name);
        let shown = path.display().to_string();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(EndTokenError {
                    origin: shown,
                    problem: format!("cannot be read: {e}"),
                });
            }
        };
        let value = serde_json::from_slice(&bytes).map_err(|e| EndTokenError {
            origin: shown.clone(),
            problem: format!("is not valid JSON: {e}"),
        })?;
        Ok(Some((value, shown)))
    };
    let gc = read("generation_config.json")?;
    let cfg = read("config.json")?;
    end_tokens(
        gc.as_ref().map(|(v, o)| (v, o.as_str())),
        cfg.as_ref().map(|(v, o)| (v, o.as_str())),
        tokenizer,
    )
}

/// The token a chat template closes every assistant turn with, when that is a single token of
/// `tokenizer`: the text that follows the answer in the template's supervised segment, without
/// surrounding whitespace (`<|im_end|>` for `chatml`, `<|eot_id|>` for `llama3`, the EOS text
/// for `llama2` and `baichuan2`). `None` when the template puts nothing there, puts more than
/// one token, or cannot render a one-exchange conversation.
pub fn template_end_of_turn(template: &ChatTemplate, tokenizer: &Tokenizer) -> Option<u32> {
    const PROBE: &str = "Probe answer from medrun";
    let turns = [Turn::user("Probe question?"), Turn::assistant(PROBE)];
    let segments = template.render(&turns).ok()?;
    let answer = segments
        .iter()
        .find(|s| s.train && s.text.contains(PROBE))?;
    let start = answer.text.find(PROBE)? + PROBE.len();
    let closing = answer.text[start..].trim();
    if closing.is_empty() {
        return None;
    }
    tokenizer.token_to_id(closing)
}

/// The end tokens of a stage output: those of the model it started from, then the template's
/// end-of-turn token when it is not among them.
pub fn with_end_of_turn(base: &[u32], end_of_turn: Option<u32>) -> Vec<u32> {
    let mut ids = base.to_vec();
    if let Some(t) = end_of_turn
        && !ids.contains(&t)
    {
        ids.push(t);
    }
    ids
}

/// `generation_config.json` of a stage output: `bos_token_id`, `eos_token_id` (one id as a
/// number, several as a list, as Hugging Face writes them) and `pad_token_id`.
pub fn generation_config(end: &[u32], bos: Option<u32>, pad: Option<u32>) -> Value {
    let eos = match end {
        [one] => json!(one),
        many => json!(many),
    };
    json!({
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": pad,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::DEFAULT_SPECIALS;

    fn tokenizer() -> Tokenizer {
        let docs = ["a medical text about fever and cough", "another one"];
        Tokenizer::train_bpe(&docs, 300, 1, DEFAULT_SPECIALS).unwrap()
    }

    #[test]
    fn eos_token_id_is_an_id_or_a_list() {
        let o = "generation_config.json";
        assert_eq!(
            eos_ids(&json!({"eos_token_id": 2}), o).unwrap(),
            Some(vec![2])
        );
        assert_eq!(
            eos_ids(&json!({"eos_token_id": [2, 0, 2]}), o).unwrap(),
            Some(vec![2, 0])
        );
        assert_eq!(eos_ids(&json!({"eos_token_id": null}), o).unwrap(), None);
        assert_eq!(eos_ids(&json!({"eos_token_id": []}), o).unwrap(), None);
        assert_eq!(eos_ids(&json!({}), o).unwrap(), None);
        for bad in [
            json!("2"),
            json!(-1),
            json!(2.5),
            json!([1, "x"]),
            json!(1u64 << 40),
        ] {
            let e = eos_ids(&json!({ "eos_token_id": bad }), o).unwrap_err();
            assert!(e.to_string().starts_with(o), "{e}");
        }
    }

    #[test]
    fn generation_config_wins_over_config_then_the_tokenizer() {
        let tok = tokenizer();
        let gc = json!({"eos_token_id": [2, 0]});
        let cfg = json!({"eos_token_id": 0});
        let g = Some((&gc, "generation_config.json"));
        let c = Some((&cfg, "config.json"));
        let e = end_tokens(g, c, &tok).unwrap();
        assert_eq!(e.ids, vec![2, 0]);
        assert!(e.source.starts_with("generation_config.json"));
        // A generation config without eos_token_id falls through to config.json.
        let empty = json!({"bos_token_id": 1});
        let e = end_tokens(Some((&empty, "generation_config.json")), c, &tok).unwrap();
        assert_eq!(
            (e.ids, e.source.as_str()),
            (vec![0], "config.json (eos_token_id)")
        );
        let e = end_tokens(None, None, &tok).unwrap();
        assert_eq!(e.ids, vec![tok.eos_id()]);
        let tok2 = tok
            .clone()
            .with_specials(Some("<|im_end|>"), None, None)
            .unwrap();
        assert_eq!(end_tokens(None, None, &tok2).unwrap().ids, vec![2]);
        let out_of_vocab = json!({"eos_token_id": 100000});
        let err = end_tokens(Some((&out_of_vocab, "g.json")), c, &tok).unwrap_err();
        assert!(err.to_string().contains("100000"), "{err}");
    }

    #[test]
    fn a_model_directory_is_read_like_transformers_reads_it() {
        let tok = tokenizer();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(end_tokens_of_dir(d, &tok).unwrap().ids, vec![tok.eos_id()]);
        std::fs::write(d.join("config.json"), r#"{"eos_token_id": 2}"#).unwrap();
        assert_eq!(end_tokens_of_dir(d, &tok).unwrap().ids, vec![2]);
        std::fs::write(
            d.join("generation_config.json"),
            r#"{"eos_token_id": [1, 2]}"#,
        )
        .unwrap();
        assert_eq!(end_tokens_of_dir(d, &tok).unwrap().ids, vec![1, 2]);
        std::fs::write(d.join("generation_config.json"), "{").unwrap();
        let e = end_tokens_of_dir(d, &tok).unwrap_err();
        assert!(e.to_string().contains("generation_config.json"), "{e}");
    }

    #[test]
    fn end_of_turn_of_each_builtin_template() {
        let tok = tokenizer();
        let eos = tok.id_to_token(tok.eos_id()).unwrap();
        let of = |name: &str| {
            let t = ChatTemplate::builtin(name, &eos, None).unwrap();
            template_end_of_turn(&t, &tok)
        };
        let im_end = tok.token_to_id("<|im_end|>");
        assert_eq!(of("chatml"), im_end);
        assert_eq!(of("qwen"), im_end);
        assert_eq!(of("llama2"), Some(tok.eos_id()));
        assert_eq!(of("baichuan2"), Some(tok.eos_id()));
        // `<|eot_id|>` is not a token of this vocabulary: plain text, so no end token.
        assert_eq!(of("llama3"), None);
        let jinja = ChatTemplate::jinja(
            "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}\
             {% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
            &eos,
            None,
            "test",
        )
        .unwrap();
        assert_eq!(template_end_of_turn(&jinja, &tok), im_end);
    }

    #[test]
    fn stage_output_lists_base_ends_then_the_turn_end() {
        assert_eq!(with_end_of_turn(&[0], Some(2)), vec![0, 2]);
        assert_eq!(with_end_of_turn(&[2], Some(2)), vec![2]);
        assert_eq!(with_end_of_turn(&[0], None), vec![0]);
        assert_eq!(
            generation_config(&[0], Some(1), Some(0)),
            json!({"bos_token_id": 1, "eos_token_id": 0, "pad_token_id": 0})
        );
        assert_eq!(
            generation_config(&[0, 2], None, Some(0))["eos_token_id"],
            json!([0, 2])
        );
    }
}
