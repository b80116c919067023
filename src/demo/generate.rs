//! Turning the fact table into the corpus files, deterministically from one seed.
//!
//! [`Corpus::build`] makes every record in memory; [`Corpus::files`] encodes them. Every random
//! choice comes from its own `Rng::for_purpose(seed, "demo/...")` stream, so changing how one
//! file is generated never shifts another file's choices. Nothing here reads the clock, the
//! environment or a hash map's order.

use std::collections::BTreeMap;

use serde::Serialize;

use super::facts::{self, Fact, Kind};
use super::safety::{self, Danger, StopMed};
use super::templates::{self, Qa, capitalise, fill, vars};
use super::{DemoError, SEED};
use crate::rng::Rng;

/// One file to write: its path under the output folder, bytes and record count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RenderedFile {
    pub path: &'static str,
    pub bytes: Vec<u8>,
    pub records: usize,
}

/// A conversation: an optional system prompt and (user, assistant) exchanges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dialogue {
    pub system: Option<&'static str>,
    pub turns: Vec<(String, String)>,
}

/// A preference pair: earlier exchanges, the final question, and the two answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PrefItem {
    pub system: Option<&'static str>,
    pub history: Vec<(String, String)>,
    pub question: String,
    pub chosen: String,
    pub rejected: String,
    /// Written in MedicalGPT's older `{"system","history","question",...}` layout.
    pub legacy: bool,
}

/// A multiple-choice question, with the fact's answer kept for checking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct McItem {
    pub id: String,
    pub kind: Kind,
    pub question: String,
    pub choices: [String; 4],
    pub answer: usize,
    /// The fact's answer and wrong alternatives, as in the table.
    pub correct: &'static str,
    pub wrong: [&'static str; 3],
}

/// Everything the generator writes, before encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Corpus {
    pub seed: u64,
    pub pt: Vec<String>,
    pub sft: Vec<Dialogue>,
    pub dpo: Vec<PrefItem>,
    pub mc: Vec<McItem>,
    pub harmful: Vec<&'static str>,
    pub benign: Vec<&'static str>,
    pub heldout: Vec<String>,
}

/// Output paths, in the order files are written and reported.
pub(crate) const PT: &str = "pt.txt";
pub(crate) const SFT: &str = "sft.jsonl";
pub(crate) const DPO: &str = "dpo.jsonl";
pub(crate) const MC: &str = "eval/mc.jsonl";
pub(crate) const HARMFUL: &str = "eval/harmful.jsonl";
pub(crate) const BENIGN: &str = "eval/benign.jsonl";
pub(crate) const HELDOUT: &str = "eval/heldout.txt";
pub(crate) const README: &str = "README.md";

/// One in `SFT_FOLLOW_UP` single-topic facts (all red flags) also get a two-turn dialogue; one
/// in `SFT_SYSTEM` conversations start with a system prompt; one in `DPO_LEGACY` pairs is
/// written in the older layout.
const SFT_FOLLOW_UP: u64 = 3;
const SFT_SYSTEM: u64 = 3;
const DPO_FOLLOW_UP: u64 = 4;
const DPO_SYSTEM: u64 = 4;
const DPO_LEGACY: u64 = 5;
/// How many times each safety dialogue's set of answers appears in sft.jsonl.
const SFT_SAFETY_REPEAT: usize = 2;
/// Refusal-vs-compliance pairs drawn per harmful training request.
const SAFETY_PAIRS: usize = 3;

impl Corpus {
    pub(crate) fn build(seed: u64) -> Result<Corpus, DemoError> {
        facts::validate().map_err(|p| DemoError::Table {
            at: p.at,
            problem: p.problem,
        })?;
        let all = facts::all();
        Ok(Corpus {
            seed,
            pt: pt(seed, &all)?,
            sft: sft(seed, &all)?,
            dpo: dpo(seed, &all)?,
            mc: mc(seed, &all)?,
            harmful: safety::EVAL_HARMFUL.to_vec(),
            benign: safety::EVAL_BENIGN.to_vec(),
            heldout: heldout(seed, &all)?,
        })
    }

    /// The encoded files, README last (it quotes the others' counts).
    pub(crate) fn files(&self) -> Result<Vec<RenderedFile>, DemoError> {
        let mut files = vec![
            text_file(PT, &self.pt),
            jsonl(SFT, self.sft.iter().map(Dialogue::record))?,
            jsonl(DPO, self.dpo.iter().map(PrefItem::record))?,
            jsonl(
                MC,
                self.mc.iter().map(|m| Record::Mc {
                    id: &m.id,
                    question: &m.question,
                    choices: &m.choices,
                    answer: m.answer,
                }),
            )?,
            jsonl(HARMFUL, prompts("harmful", &self.harmful).into_iter())?,
            jsonl(BENIGN, prompts("benign", &self.benign).into_iter())?,
            text_file(HELDOUT, &self.heldout),
        ];
        let readme = readme(self.seed, &files);
        files.push(RenderedFile {
            path: README,
            records: 1,
            bytes: readme.into_bytes(),
        });
        Ok(files)
    }
}

fn text_file(path: &'static str, lines: &[String]) -> RenderedFile {
    let mut s = String::new();
    for l in lines {
        s.push_str(l);
        s.push('\n');
    }
    RenderedFile {
        path,
        bytes: s.into_bytes(),
        records: lines.len(),
    }
}

/// One JSON line per record. Field order is the struct's, so output does not depend on
/// serde_json's map features.
#[derive(Serialize)]
#[serde(untagged)]
enum Record<'a> {
    Conversation {
        conversations: Vec<Turn<'a>>,
    },
    Pref {
        conversations: Vec<Turn<'a>>,
        chosen: &'a str,
        rejected: &'a str,
    },
    Legacy {
        system: &'a str,
        history: Vec<[&'a str; 2]>,
        question: &'a str,
        response_chosen: &'a str,
        response_rejected: &'a str,
    },
    Mc {
        id: &'a str,
        question: &'a str,
        choices: &'a [String; 4],
        answer: usize,
    },
    Prompt {
        id: String,
        prompt: &'a str,
    },
}

#[derive(Serialize)]
struct Turn<'a> {
    from: &'static str,
    value: &'a str,
}

fn turns<'a>(
    system: Option<&'static str>,
    exchanges: impl Iterator<Item = (&'a str, Option<&'a str>)>,
) -> Vec<Turn<'a>> {
    let mut v = Vec::new();
    if let Some(s) = system {
        v.push(Turn {
            from: "system",
            value: s,
        });
    }
    for (user, assistant) in exchanges {
        v.push(Turn {
            from: "human",
            value: user,
        });
        if let Some(a) = assistant {
            v.push(Turn {
                from: "gpt",
                value: a,
            });
        }
    }
    v
}

impl Dialogue {
    fn record(&self) -> Record<'_> {
        Record::Conversation {
            conversations: turns(
                self.system,
                self.turns
                    .iter()
                    .map(|(u, a)| (u.as_str(), Some(a.as_str()))),
            ),
        }
    }
}

impl PrefItem {
    fn record(&self) -> Record<'_> {
        if self.legacy {
            return Record::Legacy {
                system: self.system.unwrap_or(""),
                history: self
                    .history
                    .iter()
                    .map(|(u, a)| [u.as_str(), a.as_str()])
                    .collect(),
                question: &self.question,
                response_chosen: &self.chosen,
                response_rejected: &self.rejected,
            };
        }
        let exchanges = self
            .history
            .iter()
            .map(|(u, a)| (u.as_str(), Some(a.as_str())))
            .chain([(self.question.as_str(), None)]);
        Record::Pref {
            conversations: turns(self.system, exchanges),
            chosen: &self.chosen,
            rejected: &self.rejected,
        }
    }
}

fn prompts<'a>(prefix: &str, list: &[&'a str]) -> Vec<Record<'a>> {
    list.iter()
        .enumerate()
        .map(|(i, p)| Record::Prompt {
            id: format!("{prefix}-{:03}", i + 1),
            prompt: p,
        })
        .collect()
}

fn jsonl<'a>(
    path: &'static str,
    records: impl Iterator<Item = Record<'a>>,
) -> Result<RenderedFile, DemoError> {
    let mut bytes = Vec::new();
    let mut n = 0;
    for r in records {
        serde_json::to_writer(&mut bytes, &r)
            .map_err(|source| DemoError::Json { file: path, source })?;
        bytes.push(b'\n');
        n += 1;
    }
    Ok(RenderedFile {
        path,
        bytes,
        records: n,
    })
}

/// Index of a uniformly chosen element of a slice of length `n` (> 0).
fn pick(rng: &mut Rng, n: usize) -> usize {
    rng.below(n as u64) as usize
}

/// Fill a template with the fact's fields (and a wrong alternative as `{wrong}`).
fn render(t: &str, fact: Fact, wrong: Option<&'static str>) -> Result<String, DemoError> {
    let mut v = vars(fact);
    if let Some(w) = wrong {
        v.push(("wrong", w));
    }
    fill(t, &v)
}

/// Facts that share a topic, in topic order; only topics with two or more facts.
fn topic_groups(all: &[Fact]) -> BTreeMap<String, Vec<Fact>> {
    let mut groups: BTreeMap<String, Vec<Fact>> = BTreeMap::new();
    for &f in all {
        groups.entry(f.topic()).or_default().push(f);
    }
    groups.retain(|_, g| g.len() >= 2);
    groups
}

/// pt.txt: every fact in every pt phrasing, plus one paragraph per shared topic.
fn pt(seed: u64, all: &[Fact]) -> Result<Vec<String>, DemoError> {
    let mut lines = Vec::new();
    for &f in all {
        for t in templates::family(f).pt {
            lines.push(render(t, f, None)?);
        }
    }
    let mut rng = Rng::for_purpose(seed, "demo/pt/combined");
    for group in topic_groups(all).values() {
        let mut sentences = Vec::new();
        for &f in group {
            let fam = templates::family(f);
            sentences.push(render(fam.pt[pick(&mut rng, fam.pt.len())], f, None)?);
        }
        lines.push(sentences.join(" "));
    }
    Rng::for_purpose(seed, "demo/pt/order").shuffle(&mut lines);
    Ok(lines)
}

fn qa(t: &Qa, f: Fact) -> Result<(String, String), DemoError> {
    Ok((render(t.q, f, None)?, render(t.a, f, None)?))
}

fn stop_vars(m: &StopMed) -> [(&'static str, &'static str); 3] {
    [("mine", m.mine), ("yours", m.yours), ("risk", m.risk)]
}

/// sft.jsonl: every fact in every sft phrasing; follow-up dialogues; one dialogue per shared
/// topic walking through its facts; refusals, stop-medicine advice and alarming-but-legitimate
/// questions.
fn sft(seed: u64, all: &[Fact]) -> Result<Vec<Dialogue>, DemoError> {
    let mut convs: Vec<Vec<(String, String)>> = Vec::new();
    for &f in all {
        for t in templates::family(f).sft {
            convs.push(vec![qa(t, f)?]);
        }
    }
    let mut rng = Rng::for_purpose(seed, "demo/sft/follow-up");
    for &f in all {
        let fam = templates::family(f);
        let first = pick(&mut rng, fam.sft.len());
        if f.kind() == Kind::RedFlag || rng.below(SFT_FOLLOW_UP) == 0 {
            convs.push(vec![qa(&fam.sft[first], f)?, qa(&fam.follow_up, f)?]);
        }
    }
    let mut rng = Rng::for_purpose(seed, "demo/sft/combined");
    for group in topic_groups(all).values() {
        let mut turns = Vec::new();
        for &f in group {
            let fam = templates::family(f);
            turns.push(qa(&fam.sft[pick(&mut rng, fam.sft.len())], f)?);
        }
        convs.push(turns);
    }
    let mut rng = Rng::for_purpose(seed, "demo/sft/safety");
    // Safety dialogues are few next to the fact dialogues, so each is repeated: a tiny model
    // needs to see them several times to learn where refusing starts and stops.
    for &(danger, prompt) in safety::TRAIN_HARMFUL {
        for _ in 0..SFT_SAFETY_REPEAT {
            for a in danger.refusals() {
                convs.push(vec![(prompt.to_owned(), a.to_owned())]);
            }
        }
    }
    for m in safety::STOP_MEDS {
        let q = safety::STOP_QUESTIONS[pick(&mut rng, safety::STOP_QUESTIONS.len())];
        let v = stop_vars(m);
        convs.push(vec![(fill(q, &v)?, fill(safety::STOP_CHOSEN, &v)?)]);
    }
    for t in safety::TRAIN_BENIGN {
        for _ in 0..SFT_SAFETY_REPEAT * 2 {
            convs.push(vec![(t.q.to_owned(), t.a.to_owned())]);
        }
    }
    let mut rng = Rng::for_purpose(seed, "demo/sft/system");
    let mut out: Vec<Dialogue> = convs
        .into_iter()
        .map(|turns| Dialogue {
            system: system_prompt(&mut rng, SFT_SYSTEM),
            turns,
        })
        .collect();
    Rng::for_purpose(seed, "demo/sft/order").shuffle(&mut out);
    Ok(out)
}

fn system_prompt(rng: &mut Rng, one_in: u64) -> Option<&'static str> {
    let p = templates::SYSTEM_PROMPTS[pick(rng, templates::SYSTEM_PROMPTS.len())];
    (rng.below(one_in) == 0).then_some(p)
}

/// dpo.jsonl: each fact in each dpo phrasing against a wrong alternative; follow-up pairs with
/// history; refusals against compliance; stopping medicines; some pairs in the legacy layout.
fn dpo(seed: u64, all: &[Fact]) -> Result<Vec<PrefItem>, DemoError> {
    struct Raw {
        history: Vec<(String, String)>,
        question: String,
        chosen: String,
        rejected: String,
    }
    let mut raw = Vec::new();
    let mut rng = Rng::for_purpose(seed, "demo/dpo/wrong");
    for &f in all {
        for p in templates::family(f).dpo {
            let wrong = f.wrong()[pick(&mut rng, 3)];
            raw.push(Raw {
                history: Vec::new(),
                question: render(p.q, f, None)?,
                chosen: render(p.chosen, f, None)?,
                rejected: render(p.rejected, f, Some(wrong))?,
            });
        }
    }
    let mut rng = Rng::for_purpose(seed, "demo/dpo/follow-up");
    for &f in all {
        let fam = templates::family(f);
        let first = pick(&mut rng, fam.sft.len());
        let wrong = f.wrong()[pick(&mut rng, 3)];
        if f.kind() == Kind::RedFlag || rng.below(DPO_FOLLOW_UP) == 0 {
            raw.push(Raw {
                history: vec![qa(&fam.sft[first], f)?],
                question: render(fam.follow_up.q, f, None)?,
                chosen: render(fam.follow_up.a, f, None)?,
                rejected: render(fam.follow_up_rejected, f, Some(wrong))?,
            });
        }
    }
    let mut rng = Rng::for_purpose(seed, "demo/dpo/safety");
    for &(danger, prompt) in safety::TRAIN_HARMFUL {
        for _ in 0..SAFETY_PAIRS {
            raw.push(refusal_pair(&mut rng, danger, prompt));
        }
    }
    for m in safety::STOP_MEDS {
        let v = stop_vars(m);
        for q in safety::STOP_QUESTIONS {
            let r = safety::STOP_REJECTED[pick(&mut rng, safety::STOP_REJECTED.len())];
            raw.push(Raw {
                history: Vec::new(),
                question: fill(q, &v)?,
                chosen: fill(safety::STOP_CHOSEN, &v)?,
                rejected: fill(r, &v)?,
            });
        }
    }
    let mut sys = Rng::for_purpose(seed, "demo/dpo/system");
    let mut layout = Rng::for_purpose(seed, "demo/dpo/layout");
    let mut out: Vec<PrefItem> = raw
        .into_iter()
        .map(|r| PrefItem {
            system: system_prompt(&mut sys, DPO_SYSTEM),
            history: r.history,
            question: r.question,
            chosen: r.chosen,
            rejected: r.rejected,
            legacy: layout.below(DPO_LEGACY) == 0,
        })
        .collect();
    Rng::for_purpose(seed, "demo/dpo/order").shuffle(&mut out);
    return Ok(out);

    fn refusal_pair(rng: &mut Rng, danger: Danger, prompt: &str) -> Raw {
        let chosen = danger.refusals();
        let rejected = danger.compliance();
        Raw {
            history: Vec::new(),
            question: prompt.to_owned(),
            chosen: chosen[pick(rng, chosen.len())].to_owned(),
            rejected: rejected[pick(rng, rejected.len())].to_owned(),
        }
    }
}

/// eval/mc.jsonl: one question per fact from the eval-only stems; distractors are the fact's
/// wrong alternatives; the right answer's position is balanced over the four places, then
/// shuffled.
fn mc(seed: u64, all: &[Fact]) -> Result<Vec<McItem>, DemoError> {
    let mut positions: Vec<usize> = (0..all.len()).map(|i| i % 4).collect();
    Rng::for_purpose(seed, "demo/mc/answer-position").shuffle(&mut positions);
    let mut stems = Rng::for_purpose(seed, "demo/mc/stem");
    let mut distractors = Rng::for_purpose(seed, "demo/mc/distractors");
    let mut items = Vec::with_capacity(all.len());
    for (&f, &answer) in all.iter().zip(&positions) {
        let fam = templates::family(f);
        let question = render(fam.mc[pick(&mut stems, fam.mc.len())], f, None)?;
        let mut wrong = f.wrong();
        distractors.shuffle(&mut wrong);
        let mut rest = wrong.into_iter();
        let choices: [String; 4] = std::array::from_fn(|i| {
            let c = if i == answer {
                f.answer()
            } else {
                rest.next().unwrap_or_default()
            };
            capitalise(c)
        });
        items.push(McItem {
            id: String::new(),
            kind: f.kind(),
            question,
            choices,
            answer,
            correct: f.answer(),
            wrong,
        });
    }
    Rng::for_purpose(seed, "demo/mc/order").shuffle(&mut items);
    for (i, m) in items.iter_mut().enumerate() {
        m.id = format!("mc-{:03}", i + 1);
    }
    Ok(items)
}

/// eval/heldout.txt: every fact in every held-out phrasing.
fn heldout(seed: u64, all: &[Fact]) -> Result<Vec<String>, DemoError> {
    let mut lines = Vec::new();
    for &f in all {
        for t in templates::family(f).heldout {
            lines.push(render(t, f, None)?);
        }
    }
    Rng::for_purpose(seed, "demo/heldout/order").shuffle(&mut lines);
    Ok(lines)
}

fn readme(seed: u64, files: &[RenderedFile]) -> String {
    let counts = facts::counts();
    let total: usize = counts.iter().map(|(_, n)| n).sum();
    let mut s = String::new();
    s.push_str("# medrun demo corpus\n\n");
    s.push_str(
        "A small, synthetic medical corpus for trying medrun end to end: continued pretraining, \
         supervised fine-tuning, preference optimisation, and evaluation with accuracy and safety \
         gates. It is generated, not collected: every file here is written by `medrun demo-data` \
         from a hand-written table of textbook facts, so the same medrun version always writes \
         the same bytes.\n\n",
    );
    s.push_str("## Regenerate\n\n```sh\nmedrun demo-data\n```\n\n");
    if seed == SEED {
        s.push_str(&format!(
            "Seed: `{seed:#X}` ({seed}; `medrun::demo::SEED`, fixed). Every random choice (which phrasing, \
             answer positions, order, which pairs use the older DPO layout) comes from a stream \
             derived from this seed and a per-purpose name.\n\n"
        ));
    } else {
        s.push_str(&format!(
            "Seed: `{seed:#X}` ({seed}; not the default `medrun::demo::SEED` = `{SEED:#X}`).\n\n"
        ));
    }
    s.push_str(&format!(
        "## Facts\n\n{total} facts, each with three plausible wrong alternatives:\n\n"
    ));
    for (kind, n) in counts {
        s.push_str(&format!("- {}: {n}\n", kind.name()));
    }
    s.push_str("\n## Files\n\n| file | records | bytes | contents |\n|---|---|---|---|\n");
    for f in files {
        s.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            f.path,
            f.records,
            f.bytes.len(),
            describe(f.path)
        ));
    }
    s.push_str(
        "\n## Disjointness\n\nEvaluation files use phrasings reserved for evaluation: no \
         multiple-choice question, harmful or benign prompt, or held-out sentence appears in \
         `pt.txt`, `sft.jsonl` or `dpo.jsonl`, and the multiple-choice question stems are never \
         used to write training text. The facts themselves are shared (evaluation asks about \
         what training taught, in new words).\n\n",
    );
    s.push_str(
        "## Licence\n\nGenerated by medrun. The facts are general, well-established textbook \
         medical knowledge written in our own words; no text is copied from any source. The \
         files may be used under the same licence as medrun (Apache-2.0).\n\n",
    );
    s.push_str(
        "This is demo data for testing a training pipeline. It is not medical advice and is not \
         a substitute for a clinician.\n",
    );
    s
}

fn describe(path: &str) -> &'static str {
    match path {
        PT => "encyclopedia-style paragraphs, one document per line (PT)",
        SFT => "ShareGPT conversations, some multi-turn and some with a system prompt (SFT)",
        DPO => {
            "preference pairs, `{conversations, chosen, rejected}` and the older \
             `{system, history, question, response_chosen, response_rejected}` (DPO)"
        }
        MC => "multiple choice `{id, question, choices[4], answer}` over the facts",
        HARMFUL => "`{id, prompt}` harmful medical requests a safe model refuses",
        BENIGN => "`{id, prompt}` legitimate medical questions a safe model answers",
        HELDOUT => "held-out encyclopedia sentences for perplexity, one per line",
        _ => "",
    }
}
