//! Task tests on a scripted backend: every expected number below is computed by hand in the
//! comment next to it.

use std::collections::BTreeMap;

use super::*;
use crate::eval::data::parse_records;
use crate::eval::{GenRequest, LlRequest, LlScore, RollingScore};
use crate::spec::{Format, RelPath, Suite};

type LlFn = Box<dyn Fn(&str, &str) -> f64>;
type GenFn = Box<dyn Fn(&str) -> String>;
type RollingFn = Box<dyn Fn(&str) -> (f64, usize)>;

/// Answers from closures, and remembers every call.
struct Fake {
    ll: LlFn,
    gen_fn: GenFn,
    rolling: RollingFn,
    ll_calls: Vec<Vec<LlRequest>>,
    gen_calls: Vec<Vec<GenRequest>>,
    rolling_calls: usize,
}

impl Fake {
    fn new() -> Fake {
        Fake {
            ll: Box::new(|_, _| -1.0),
            gen_fn: Box::new(|_| String::new()),
            rolling: Box::new(|_| (-1.0, 1)),
            ll_calls: Vec::new(),
            gen_calls: Vec::new(),
            rolling_calls: 0,
        }
    }
    fn ll(mut self, f: impl Fn(&str, &str) -> f64 + 'static) -> Fake {
        self.ll = Box::new(f);
        self
    }
    fn gen_with(mut self, f: impl Fn(&str) -> String + 'static) -> Fake {
        self.gen_fn = Box::new(f);
        self
    }
}

impl Backend for Fake {
    fn loglikelihood(&mut self, reqs: &[LlRequest]) -> Result<Vec<Vec<LlScore>>, BackendError> {
        self.ll_calls.push(reqs.to_vec());
        Ok(reqs
            .iter()
            .map(|r| {
                r.continuations
                    .iter()
                    .map(|c| LlScore {
                        logprob: (self.ll)(&r.context, c),
                        greedy: false,
                        tokens: c.chars().count(),
                    })
                    .collect()
            })
            .collect())
    }
    fn generate(&mut self, reqs: &[GenRequest]) -> Result<Vec<String>, BackendError> {
        self.gen_calls.push(reqs.to_vec());
        Ok(reqs.iter().map(|r| (self.gen_fn)(&r.prompt)).collect())
    }
    fn rolling(&mut self, texts: &[String]) -> Result<Vec<RollingScore>, BackendError> {
        self.rolling_calls += 1;
        Ok(texts
            .iter()
            .map(|t| {
                let (logprob, tokens) = (self.rolling)(t);
                RollingScore { logprob, tokens }
            })
            .collect())
    }
    fn chat_prompt(&self, user: &str, system: Option<&str>) -> Result<String, BackendError> {
        Ok(format!(
            "<sys>{}</sys><user>{user}</user><bot>",
            system.unwrap_or("")
        ))
    }
}

/// Resolve a suite whose `tasks:` list is `tasks` (datasets `d` and `b` declared).
fn suite(tasks: &str) -> Suite {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("evals")).unwrap();
    let text = format!(
        "version: 1\nname: s\ndatasets:\n  d: {{path: d.jsonl, format: jsonl}}\n  b: {{path: b.jsonl, format: jsonl}}\ntasks:\n{tasks}"
    );
    std::fs::write(dir.path().join("evals/s.yaml"), text).unwrap();
    crate::spec::load_suite(dir.path(), RelPath("evals/s.yaml".into())).unwrap()
}

fn task(yaml: &str) -> Task {
    suite(yaml).tasks.remove(0)
}

fn records(lines: &[serde_json::Value]) -> Vec<Record> {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    parse_records(text.as_bytes(), "d.jsonl", Format::Jsonl).unwrap()
}

fn metric(r: &TaskResult, name: &str) -> Metric {
    r.metrics[name]
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

const YES_NO: &str = "  - name: mc\n    kind: multiple_choice\n    dataset: d\n    prompt: \"Q: {{ q }}\\nA:\"\n    choices: {literal: [\"yes\", \"absolutely not\"]}\n    answer: {field: a, as: text}\n";

#[test]
fn acc_and_acc_norm_disagree_on_choices_of_different_length() {
    let t = task(YES_NO);
    let recs = records(&[
        serde_json::json!({"q": "first", "a": "absolutely not"}),
        serde_json::json!({"q": "second", "a": "yes"}),
    ]);
    // Record 1: " yes" -2, " absolutely not" -7. acc picks yes (wrong); per character
    // -2/3 = -0.667 < -7/14 = -0.5, so acc_norm picks "absolutely not" (right).
    // Record 2: -1 and -10. Both pick yes: -1/3 = -0.333 > -10/14 = -0.714 (right).
    let mut b = Fake::new().ll(|ctx, cont| match (ctx.contains("first"), cont) {
        (true, " yes") => -2.0,
        (true, _) => -7.0,
        (false, " yes") => -1.0,
        (false, _) => -10.0,
    });
    let r = run_task(&t, &recs, None, &mut b, 0).unwrap();
    // acc = 1/2, stderr sqrt(0.25/1) = 0.5; acc_norm = 2/2, stderr 0.
    assert_eq!(metric(&r, "acc").value, 0.5);
    assert!(close(metric(&r, "acc").stderr.unwrap(), 0.5));
    assert_eq!(metric(&r, "acc_norm").value, 1.0);
    assert_eq!(metric(&r, "acc_norm").stderr, Some(0.0));
    assert_eq!(metric(&r, "acc").n, 2);
    let s = &r.samples[0];
    assert_eq!((s.gold, s.pred, s.pred_norm), (Some(1), Some(0), Some(1)));
    assert_eq!(s.prompt, "Q: first\nA:");
    assert_eq!(s.choices[1].continuation, " absolutely not");
    assert_eq!(s.choices[1].chars, 14);
    assert_eq!(s.scores["acc"], 0.0);
    assert_eq!(s.scores["acc_norm"], 1.0);
    // One backend call for the whole task.
    assert_eq!(b.ll_calls.len(), 1);
    assert_eq!(b.ll_calls[0].len(), 2);
}

#[test]
fn ties_go_to_the_first_choice_like_numpy_argmax() {
    let t = task(YES_NO);
    let recs = records(&[serde_json::json!({"q": "x", "a": "yes"})]);
    let mut b = Fake::new().ll(|_, _| -3.0);
    let r = run_task(&t, &recs, None, &mut b, 0).unwrap();
    assert_eq!(r.samples[0].pred, Some(0));
    assert_eq!(metric(&r, "acc").stderr, None);
}

fn fewshot_task(k: u64, seed: u64, limit: &str) -> Task {
    task(&format!(
        "  - name: mc\n    kind: multiple_choice\n    dataset: d\n    description: \"Medicine.\\n\\n\"\n    prompt: \"Q: {{{{ q }}}}\\nA:\"\n    choices: {{field: options}}\n    answer: {{field: label, as: index}}\n    num_fewshot: {k}\n    fewshot_seed: {seed}\n{limit}"
    ))
}

fn fewshot_records() -> Vec<Record> {
    let mut v: Vec<serde_json::Value> = (0..8)
        .map(|i| serde_json::json!({"q": format!("q{i}"), "options": ["red", "blue"], "label": i % 2}))
        .collect();
    // An exact duplicate of record 0: it must never be a few-shot example for record 0.
    v.push(v[0].clone());
    records(&v)
}

fn prompts(t: &Task, recs: &[Record]) -> Vec<String> {
    let mut b = Fake::new();
    let r = run_task(t, recs, None, &mut b, 0).unwrap();
    r.samples.into_iter().map(|s| s.prompt).collect()
}

#[test]
fn fewshot_is_deterministic_and_excludes_the_record_itself() {
    let recs = fewshot_records();
    let t = fewshot_task(3, 1234, "");
    let a = prompts(&t, &recs);
    assert_eq!(a, prompts(&t, &recs), "same seed, same prompts");
    for (i, p) in a.iter().enumerate() {
        let own = format!("Q: {}\nA:", recs[i].fields["q"].as_str().unwrap());
        assert!(p.starts_with("Medicine.\n\n"), "{p}");
        assert!(p.ends_with(&own), "{p}");
        let shots = &p[..p.len() - own.len()];
        assert_eq!(shots.matches("\nA: ").count(), 3, "{p}");
        assert!(
            !shots.contains(&format!("{own} ")),
            "record {i} is its own example: {p}"
        );
        assert!(shots.ends_with("\n\n"));
    }
    // Record 0 and its duplicate (8) never see "q0" as an example.
    assert!(!a[0][..a[0].len() - 8].contains("Q: q0\n"));
    assert!(!a[8][..a[8].len() - 8].contains("Q: q0\n"));
    // An example is prompt + delimiter + gold choice: q1 has label 1 = "blue".
    let with_q1 = a.iter().find(|p| p.contains("Q: q1\nA: ")).unwrap();
    assert!(with_q1.contains("Q: q1\nA: blue\n\n"), "{with_q1}");
    // Another seed draws other examples; `limit` does not change the first records' prompts.
    assert_ne!(a, prompts(&fewshot_task(3, 99, ""), &recs));
    let limited = prompts(&fewshot_task(3, 1234, "    limit: 2\n"), &recs);
    assert_eq!(limited, a[..2]);
}

#[test]
fn too_few_records_for_fewshot_is_an_error() {
    let recs = fewshot_records();
    let t = fewshot_task(8, 1, "");
    // Record 0 has 9 - 2 = 7 other distinct records.
    let e = run_task(&t, &recs, None, &mut Fake::new(), 0).unwrap_err();
    assert_eq!(
        e.to_string(),
        "task `mc`: 8 few-shot examples needed for d.jsonl:1, but only 7 other records exist"
    );
}

#[test]
fn chat_renders_one_user_turn_and_drops_the_delimiter() {
    let t = task(&format!("{YES_NO}    chat: true\n    system: Be brief.\n"));
    let recs = records(&[serde_json::json!({"q": "x", "a": "yes"})]);
    let mut b = Fake::new();
    let r = run_task(&t, &recs, None, &mut b, 0).unwrap();
    assert_eq!(
        r.samples[0].prompt,
        "<sys>Be brief.</sys><user>Q: x\nA:</user><bot>"
    );
    assert_eq!(b.ll_calls[0][0].continuations, ["yes", "absolutely not"]);
}

#[test]
fn letter_answers_and_field_choices_and_record_errors() {
    let t = task(
        "  - name: mmlu\n    kind: multiple_choice\n    dataset: d\n    prompt: \"{{ Question }}\\nA. {{ A }}\\nB. {{ B }}\\nAnswer:\"\n    choices: {literal: [A, B]}\n    answer: {field: Answer, as: letter}\n",
    );
    let recs = records(&[
        serde_json::json!({"Question": "q", "A": "x", "B": "y", "Answer": "B"}),
        serde_json::json!({"Question": "q", "A": "x", "B": "y", "Answer": "C"}),
    ]);
    let e = run_task(&t, &recs, None, &mut Fake::new(), 0).unwrap_err();
    assert_eq!(
        e.to_string(),
        "task `mmlu`: d.jsonl:2: field `Answer`: \"C\" is not a choice letter (A..B)"
    );
    let mut b = Fake::new().ll(|_, c| if c == " B" { -0.5 } else { -1.0 });
    let r = run_task(&t, &recs[..1], None, &mut b, 0).unwrap();
    assert_eq!(r.samples[0].gold, Some(1));
    assert_eq!(metric(&r, "acc").value, 1.0);
    // A template field the record lacks names the record and the template field.
    let recs = records(&[serde_json::json!({"Question": "q", "Answer": "A"})]);
    let e = run_task(&t, &recs, None, &mut Fake::new(), 0).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("task `mmlu`: d.jsonl:1: cannot render `prompt`: undefined value"),
        "{e}"
    );
}

const GEN: &str = "  - name: gen\n    kind: generate\n    dataset: d\n    prompt: \"{{ q }}\"\n    must_include: [\"(?i)metformin\"]\n    must_not_include: [insulin]\n    exact: \"{{ a }}\"\n";

#[test]
fn generate_checks_and_rates() {
    let t = task(GEN);
    let recs = records(&[
        serde_json::json!({"q": "1", "a": "Metformin"}),
        serde_json::json!({"q": "2", "a": "metformin first"}),
        serde_json::json!({"q": "3", "a": "x"}),
        serde_json::json!({"q": "4", "a": "insulin"}),
    ]);
    let mut b = Fake::new().gen_with(|p| match p {
        "1" => " Metformin\n".into(),
        "2" => "metformin then insulin".into(),
        "3" => "nothing".into(),
        _ => "insulin".into(),
    });
    let r = run_task(&t, &recs, None, &mut b, 0).unwrap();
    // must_include: yes, yes, no, no -> 0.5; must_not_include: yes, no, yes, no -> 0.5;
    // exact (trimmed): yes, no, no, yes -> 0.5; all three: only record 1 -> 0.25.
    assert_eq!(metric(&r, "check_must_include").value, 0.5);
    assert_eq!(metric(&r, "check_must_not_include").value, 0.5);
    assert_eq!(metric(&r, "check_exact").value, 0.5);
    let pass = metric(&r, "pass_rate");
    assert_eq!(pass.value, 0.25);
    // sqrt(0.25 * 0.75 / 3) = 0.25
    assert!(close(pass.stderr.unwrap(), 0.25));
    assert_eq!(pass.n, 4);
    assert!(!r.samples[1].checks["must_not_include"]);
    assert_eq!(r.samples[0].output.as_deref(), Some(" Metformin\n"));
    let req = &b.gen_calls[0][0];
    assert_eq!(
        (req.max_new_tokens, req.stop.clone()),
        (128, vec!["\n\n".to_string()])
    );
    assert_eq!(req.sample, None);
}

const REFUSAL: &str = "  - name: safety\n    kind: refusal\n    dataset: d\n    benign_dataset: b\n    prompt: \"{{ harmful_medical_request }}\"\n    benign_prompt: \"{{ question }}\"\n";

#[test]
fn refusal_gap_pairs_refusal_with_over_refusal() {
    let t = task(REFUSAL);
    let harmful = records(&[
        serde_json::json!({"harmful_medical_request": "h1"}),
        serde_json::json!({"harmful_medical_request": "h2"}),
        serde_json::json!({"harmful_medical_request": "h3"}),
        serde_json::json!({"harmful_medical_request": "h4"}),
    ]);
    let benign = records(&[
        serde_json::json!({"question": "b1"}),
        serde_json::json!({"question": "b2"}),
        serde_json::json!({"question": "b3"}),
        serde_json::json!({"question": "b4"}),
    ]);
    let mut b = Fake::new().gen_with(|p| {
        if p.contains("h4") {
            "Sure, here is how.".into()
        } else if p.contains(">h") || p.contains("b1") {
            "I'm sorry, but I can't help with that.".into()
        } else {
            "Rest and fluids; please seek care if it gets worse.".into()
        }
    });
    let r = run_task(&t, &harmful, Some(&benign), &mut b, 0).unwrap();
    // refusal 3/4 (stderr sqrt(.1875/3) = .25), over-refusal 1/4 (.25), gap .5 with
    // stderr sqrt(.25^2 + .25^2).
    assert_eq!(metric(&r, "refusal_rate").value, 0.75);
    assert_eq!(metric(&r, "over_refusal_rate").value, 0.25);
    let gap = metric(&r, "gap");
    assert_eq!(gap.value, 0.5);
    assert!(close(gap.stderr.unwrap(), (0.125f64).sqrt()));
    assert_eq!(gap.n, 8);
    assert_eq!(r.n, 8);
    // chat is on by default for refusal tasks, and stop strings are off with chat.
    assert!(r.samples[0].prompt.starts_with("<sys></sys><user>h1"));
    assert_eq!(b.gen_calls.len(), 1);
    assert_eq!(b.gen_calls[0][0].max_new_tokens, 64);
    assert!(b.gen_calls[0][0].stop.is_empty());
    assert_eq!(r.samples[4].set, Some(SampleSet::Benign));
    assert_eq!(r.samples[4].refused, Some(true));
    let e = run_task(&t, &harmful, None, &mut Fake::new(), 0).unwrap_err();
    assert!(matches!(e, EvalError::NoBenign { .. }));
}

#[test]
fn preference_prefers_by_per_character_loglikelihood() {
    let t = task(
        "  - name: pref\n    kind: preference\n    dataset: d\n    prompt: \"Request: {{ r }}\\nResponse:\"\n    chosen: \"{{ safe }}\"\n    rejected: \"Sure, here is how: {{ r }}\"\n",
    );
    let recs = records(&[
        serde_json::json!({"r": "x", "safe": "No."}),
        serde_json::json!({"r": "y", "safe": "I cannot."}),
    ]);
    // Record 1: chosen "No." (3 chars) -3 -> -1.0; rejected "Sure, here is how: x" (20) -10
    // -> -0.5: rejected preferred, margin -0.5.
    // Record 2: chosen "I cannot." (9) -4.5 -> -0.5; rejected (20) -20 -> -1.0: chosen,
    // margin +0.5.
    let mut b = Fake::new().ll(
        |ctx, c| match (ctx.contains(": x"), c.starts_with(" Sure")) {
            (true, false) => -3.0,
            (true, true) => -10.0,
            (false, false) => -4.5,
            (false, true) => -20.0,
        },
    );
    let r = run_task(&t, &recs, None, &mut b, 0).unwrap();
    assert_eq!(metric(&r, "acc").value, 0.5);
    let m = metric(&r, "margin");
    assert!(close(m.value, 0.0));
    // values -0.5, 0.5: sample sd = sqrt(0.5) -> stderr sqrt(0.5)/sqrt(2) = 0.5
    assert!(close(m.stderr.unwrap(), 0.5));
    assert_eq!(r.samples[0].pred, Some(1));
    assert_eq!(r.samples[1].choices[0].continuation, " I cannot.");
}

#[test]
fn perplexity_metrics() {
    let t = task("  - name: ppl\n    kind: perplexity\n    dataset: d\n    text: \"{{ text }}\"\n");
    let recs = records(&[
        serde_json::json!({"text": "a bb"}),
        serde_json::json!({"text": "发热 c"}),
    ]);
    let mut b = Fake::new();
    b.rolling = Box::new(|t| if t == "a bb" { (-3.0, 2) } else { (-5.0, 3) });
    let r = run_task(&t, &recs, None, &mut b, 0).unwrap();
    // Σlogp = -8; words 2 + 2 = 4; bytes 4 + 8 = 12; tokens 5.
    assert!(close(
        metric(&r, "word_perplexity").value,
        (8.0f64 / 4.0).exp()
    ));
    assert!(close(
        metric(&r, "byte_perplexity").value,
        (8.0f64 / 12.0).exp()
    ));
    assert!(close(
        metric(&r, "bits_per_byte").value,
        8.0 / 12.0 / std::f64::consts::LN_2
    ));
    assert!(close(
        metric(&r, "token_perplexity").value,
        (8.0f64 / 5.0).exp()
    ));
    assert_eq!(metric(&r, "word_perplexity").stderr, None);
    assert_eq!(b.rolling_calls, 1);
    let c = r.samples[1].rolling.unwrap();
    assert_eq!((c.words, c.bytes, c.tokens), (2, 8, 3));
}

#[test]
fn task_hash_is_stable_and_sensitive() {
    let recs = records(&[
        serde_json::json!({"q": "1", "a": "x"}),
        serde_json::json!({"q": "2", "a": "y"}),
    ]);
    let hash = |t: &Task, recs: &[Record]| {
        run_task(t, recs, None, &mut Fake::new(), 0)
            .unwrap()
            .task_hash
    };
    let base = task(GEN);
    let h = hash(&base, &recs);
    assert_eq!(h.len(), 64);
    assert_eq!(h, hash(&base, &recs), "stable");
    // Not changed by the task's name, by a `limit` that keeps every record, or by the seed.
    let mut renamed = base.clone();
    renamed.name = "other".into();
    assert_eq!(h, hash(&renamed, &recs));
    let mut limited = base.clone();
    limited.limit = Some(2);
    assert_eq!(h, hash(&limited, &recs));
    assert_eq!(
        h,
        run_task(&base, &recs, None, &mut Fake::new(), 99)
            .unwrap()
            .task_hash
    );
    // Changed by the data, the prompt, the target, the order, the item set and scoring settings.
    let other = records(&[
        serde_json::json!({"q": "1", "a": "x", "extra": 1}),
        serde_json::json!({"q": "2", "a": "y"}),
    ]);
    assert_ne!(h, hash(&base, &other));
    let mut prompt = base.clone();
    prompt.description = "Answer briefly. ".into();
    assert_ne!(h, hash(&prompt, &recs));
    let swapped: Vec<Record> = recs.iter().rev().cloned().collect();
    assert_ne!(h, hash(&base, &swapped));
    let mut one = base.clone();
    one.limit = Some(1);
    assert_ne!(h, hash(&one, &recs));
    let mut longer = base.clone();
    if let TaskParams::Generate(g) = &mut longer.params {
        g.max_new_tokens = 256;
    }
    assert_ne!(h, hash(&longer, &recs));
    let mut target = base.clone();
    if let TaskParams::Generate(g) = &mut target.params {
        g.exact = Some("{{ q }}".into());
    }
    assert_ne!(h, hash(&target, &recs));
}

#[test]
fn samples_serialise_and_doc_hash_ignores_key_order() {
    let a = records(&[serde_json::json!({"q": "1", "a": "yes"})]);
    let b = parse_records(
        b"{\"a\": \"yes\",  \"q\": \"1\"}\n",
        "other.jsonl",
        Format::Jsonl,
    )
    .unwrap();
    assert_eq!(doc_hash(&a[0]), doc_hash(&b[0]));
    let r = run_task(&task(YES_NO), &a, None, &mut Fake::new(), 0).unwrap();
    let json = serde_json::to_string(&r).unwrap();
    let back: TaskResult = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
    let keys: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(&serde_json::to_string(&r.samples[0]).unwrap()).unwrap();
    for k in [
        "index",
        "source",
        "doc_hash",
        "prompt",
        "prompt_hash",
        "target",
        "gold",
        "choices",
        "pred",
        "pred_norm",
        "scores",
    ] {
        assert!(keys.contains_key(k), "{k} missing from {keys:?}");
    }
}

#[test]
fn backend_answering_the_wrong_shape_is_an_error() {
    struct Short;
    impl Backend for Short {
        fn loglikelihood(&mut self, _: &[LlRequest]) -> Result<Vec<Vec<LlScore>>, BackendError> {
            Ok(vec![vec![
                LlScore {
                    logprob: f64::NAN,
                    greedy: false,
                    tokens: 1
                };
                2
            ]])
        }
        fn generate(&mut self, _: &[GenRequest]) -> Result<Vec<String>, BackendError> {
            Err(BackendError {
                message: "out of memory".into(),
            })
        }
        fn rolling(&mut self, _: &[String]) -> Result<Vec<RollingScore>, BackendError> {
            Ok(Vec::new())
        }
        fn chat_prompt(&self, u: &str, _: Option<&str>) -> Result<String, BackendError> {
            Ok(u.into())
        }
    }
    let two = records(&[
        serde_json::json!({"q": "1", "a": "yes"}),
        serde_json::json!({"q": "2", "a": "yes"}),
    ]);
    let e = run_task(&task(YES_NO), &two, None, &mut Short, 0).unwrap_err();
    assert_eq!(
        e.to_string(),
        "task `mc`: the backend answered 1 results for 2 requests"
    );
    let e = run_task(&task(YES_NO), &two[..1], None, &mut Short, 0).unwrap_err();
    assert_eq!(
        e.to_string(),
        "task `mc`: d.jsonl:1: the backend returned log-probability NaN"
    );
    let e = run_task(&task(GEN), &two, None, &mut Short, 0).unwrap_err();
    assert_eq!(
        e.to_string(),
        "task `gen`: the backend failed: out of memory"
    );
}

/// The example suites of docs/reference/evals.md (fenced blocks starting `# evals/`).
fn doc_examples() -> Vec<(String, String)> {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/reference/evals.md"),
    )
    .unwrap();
    doc.split("```yaml\n")
        .skip(1)
        .filter_map(|block| {
            let body = block.split("```").next()?;
            let first = body.lines().next()?;
            let path = first.strip_prefix("# ")?;
            path.starts_with("evals/")
                .then(|| (path.to_string(), body.to_string()))
        })
        .collect()
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

#[test]
fn doc_examples_resolve_and_run_on_the_sample_data() {
    let examples = doc_examples();
    assert_eq!(examples.len(), 3, "{examples:?}");
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/evals");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("evals")).unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let have_data = shared.is_dir();
    if have_data {
        // A copy: medrun refuses symlinks that lead out of the project root.
        copy_tree(&shared, &dir.path().join("data/evals"));
    } else {
        eprintln!("data not run: {} is absent", shared.display());
    }
    let mut first_prompts = BTreeMap::new();
    for (path, text) in examples {
        std::fs::write(dir.path().join(&path), &text).unwrap();
        let suite = crate::spec::load_suite(dir.path(), RelPath(path.clone()))
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        if !have_data {
            continue;
        }
        for t in &suite.tasks {
            let load = |name: &str| {
                crate::eval::data::load_dataset(dir.path(), &suite.datasets[name]).unwrap()
            };
            let recs = load(&t.dataset);
            let benign = match &t.params {
                TaskParams::Refusal(r) => Some(load(&r.benign_dataset)),
                _ => None,
            };
            let mut b = Fake::new()
                .ll(|_, c| -(c.chars().count() as f64))
                .gen_with(|_| "I'm sorry, but I can't help with that.".into());
            let r = run_task(t, &recs, benign.as_deref(), &mut b, 0)
                .unwrap_or_else(|e| panic!("{path} {}: {e}", t.name));
            let expected = t
                .limit
                .map(|l| l as usize)
                .unwrap_or(recs.len())
                .min(recs.len())
                + benign.as_ref().map_or(0, Vec::len);
            assert_eq!(r.n, expected, "{path} {}", t.name);
            assert!(!r.metrics.is_empty());
            first_prompts.insert(
                format!("{}/{}", suite.name, t.name),
                r.samples[0].prompt.clone(),
            );
        }
    }
    if !have_data {
        return;
    }
    let pubmedqa = &first_prompts["pubmedqa/pubmedqa"];
    assert!(pubmedqa.starts_with("Abstract: "), "{pubmedqa}");
    assert!(pubmedqa.ends_with("\nAnswer:"), "{pubmedqa}");
    assert!(pubmedqa.contains("\nQuestion: "), "{pubmedqa}");
    // CONTEXTS joined by newlines: the abstract spans several lines.
    assert!(pubmedqa.lines().count() > 3, "{pubmedqa}");
    assert_eq!(
        first_prompts["cmmlu-medical/anatomy"],
        "以下是关于解剖学的单项选择题，请直接给出正确答案的选项。\n\n卵圆窝位于\nA. 右心室\nB. 左心房\nC. 左心室\nD. 右心房\n答案："
    );
    let five = &first_prompts["cmmlu-medical/clinical-5shot"];
    assert_eq!(five.matches("答案：").count(), 6, "{five}");
    assert!(
        first_prompts["cmmlu-medical/all-chat"].starts_with("<sys>你是一名医学专家。</sys><user>")
    );
}
