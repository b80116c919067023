//! DPO preference pairs in both of MedicalGPT's formats, recognised line by line:
//!
//! - current: `{"conversations": [...prompt turns...], "chosen": str, "rejected": str}`. The prompt
//!   turns read like ShareGPT turns (same aliases, same role order: an optional system turn
//!   first, then user and assistant alternating from a user turn), and the prompt must end with
//!   the user turn that `chosen` and `rejected` answer.
//! - legacy (before 2026-04): `{"system": str?, "history": [[q, a], ...]?, "question": str,
//!   "response_chosen": str, "response_rejected": str}`. The prompt becomes: the system turn (left
//!   out when `system` is empty, missing or null), each history pair as a user and an assistant
//!   turn, then the question as a user turn.
//!
//! A record holding keys of both formats is refused rather than guessed at (a top-level `system`
//! beside `conversations` would otherwise be dropped without a word). Responses are strings in
//! both formats, as in every MedicalGPT file; an empty (or whitespace-only) response, or a chosen
//! response identical to the rejected one, is a bad record.

use serde_json::Value;

use super::json::{self, Object};
use super::sharegpt::turns;
use super::source::{self, Line};
use super::{DataError, PrefPair, Problem, Read, ReadOptions, Role, Turn};
use crate::fsx::Input;

const CURRENT_KEYS: [&str; 3] = ["conversations", "chosen", "rejected"];
const LEGACY_KEYS: [&str; 5] = [
    "system",
    "history",
    "question",
    "response_chosen",
    "response_rejected",
];

/// Read preference pairs from a file or a directory of shards.
pub fn read_preference(input: &Input, opts: ReadOptions) -> Result<Read<PrefPair>, DataError> {
    source::read_lines(input, opts, |_| pair)
}

fn pair(line: Line<'_>) -> Result<PrefPair, Problem> {
    let obj = json::parse_object(line)?;
    let has = |keys: &[&str]| keys.iter().any(|k| obj.contains_key(*k));
    let (prompt, (chosen, rejected)) = match (has(&CURRENT_KEYS), has(&LEGACY_KEYS)) {
        (true, false) => (
            current_prompt(&obj)?,
            responses(&obj, "chosen", "rejected")?,
        ),
        (false, true) => (
            legacy_prompt(&obj)?,
            responses(&obj, "response_chosen", "response_rejected")?,
        ),
        (true, true) => return Err(Problem::MixedPreference),
        (false, false) => return Err(Problem::NotPreference),
    };
    Ok(PrefPair {
        line: line.number,
        prompt,
        chosen: chosen.to_owned(),
        rejected: rejected.to_owned(),
    })
}

fn current_prompt(obj: &Object) -> Result<Vec<Turn>, Problem> {
    let prompt = turns(obj, "conversations")?;
    if !prompt.iter().any(|t| t.role == Role::User) {
        return Err(Problem::NoUser {
            field: "conversations".into(),
        });
    }
    if prompt.last().is_some_and(|t| t.role != Role::User) {
        let last = prompt.len() - 1;
        return Err(Problem::RoleOrder {
            field: format!("conversations[{last}]"),
            message: "the prompt ends with an assistant turn: its last turn must be the user turn that `chosen` and `rejected` answer".into(),
        });
    }
    Ok(prompt)
}

fn legacy_prompt(obj: &Object) -> Result<Vec<Turn>, Problem> {
    let mut prompt = Vec::new();
    if let Some(v) = json::optional(obj, "system") {
        let system = json::as_str(v, "system")?;
        if !system.is_empty() {
            prompt.push(turn(Role::System, system));
        }
    }
    if let Some(v) = json::optional(obj, "history") {
        let Value::Array(pairs) = v else {
            return Err(Problem::WrongType {
                field: "history".into(),
                expected: "an array of [question, answer] pairs",
                found: json::kind(v),
            });
        };
        for (i, p) in pairs.iter().enumerate() {
            let field = format!("history[{i}]");
            let (q, a) = match p.as_array().map(Vec::as_slice) {
                Some([q, a]) => (q, a),
                _ => {
                    return Err(Problem::WrongType {
                        field,
                        expected: "a [question, answer] pair",
                        found: match p {
                            Value::Array(_) => "an array of another length",
                            other => json::kind(other),
                        },
                    });
                }
            };
            prompt.push(turn(Role::User, json::as_str(q, &format!("{field}[0]"))?));
            prompt.push(turn(
                Role::Assistant,
                json::as_str(a, &format!("{field}[1]"))?,
            ));
        }
    }
    prompt.push(turn(Role::User, json::required_str(obj, "question")?));
    Ok(prompt)
}

fn responses<'a>(
    obj: &'a Object,
    chosen: &'static str,
    rejected: &'static str,
) -> Result<(&'a str, &'a str), Problem> {
    let c = json::non_empty_str(obj, chosen)?;
    let r = json::non_empty_str(obj, rejected)?;
    if c == r {
        return Err(Problem::Identical { chosen, rejected });
    }
    Ok((c, r))
}

fn turn(role: Role, content: &str) -> Turn {
    Turn {
        role,
        content: content.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{err, file, input};
    use super::*;

    #[test]
    fn current_format() {
        let (_d, p) = file(
            "dpo.jsonl",
            concat!(
                "{\"conversations\": [{\"from\": \"human\", \"value\": \"发烧怎么办？\"}], \"chosen\": \"多喝水，及时就医。\", \"rejected\": \"吃抗生素。\"}\n",
                "{\"conversations\": [{\"from\": \"system\", \"value\": \"你是医生\"}, {\"from\": \"human\", \"value\": \"q1\"}, {\"from\": \"gpt\", \"value\": \"a1\"}, {\"role\": \"user\", \"content\": \"q2\"}], \"chosen\": \"c\", \"rejected\": \"r\"}\n",
            ),
        );
        let read = read_preference(&input(&p, "dpo.jsonl"), ReadOptions::default()).unwrap();
        assert_eq!(
            read.records,
            [
                PrefPair {
                    line: 1,
                    prompt: vec![turn(Role::User, "发烧怎么办？")],
                    chosen: "多喝水，及时就医。".into(),
                    rejected: "吃抗生素。".into(),
                },
                PrefPair {
                    line: 2,
                    prompt: vec![
                        turn(Role::System, "你是医生"),
                        turn(Role::User, "q1"),
                        turn(Role::Assistant, "a1"),
                        turn(Role::User, "q2"),
                    ],
                    chosen: "c".into(),
                    rejected: "r".into(),
                },
            ]
        );
    }

    #[test]
    fn legacy_format_and_mixed_files() {
        let (_d, p) = file(
            "dpo.jsonl",
            concat!(
                "{\"system\":\"\",\"history\":[],\"question\":\"q\",\"response_chosen\":\"c\",\"response_rejected\":\"r\"}\r\n",
                "{\"system\":\"sys\",\"history\":[[\"q1\",\"a1\"],[\"q2\",\"a2\"]],\"question\":\"q3\",\"response_chosen\":\"c\",\"response_rejected\":\"r\"}\r\n",
                "{\"question\":\"q\",\"response_chosen\":\"c\",\"response_rejected\":\"r\",\"system\":null,\"history\":null}\r\n",
                "{\"conversations\":[{\"from\":\"human\",\"value\":\"q\"}],\"chosen\":\"c\",\"rejected\":\"r\"}",
            ),
        );
        let read = read_preference(&input(&p, "dpo.jsonl"), ReadOptions::default()).unwrap();
        let prompts: Vec<_> = read.records.iter().map(|r| r.prompt.clone()).collect();
        assert_eq!(
            prompts,
            [
                vec![turn(Role::User, "q")],
                vec![
                    turn(Role::System, "sys"),
                    turn(Role::User, "q1"),
                    turn(Role::Assistant, "a1"),
                    turn(Role::User, "q2"),
                    turn(Role::Assistant, "a2"),
                    turn(Role::User, "q3"),
                ],
                vec![turn(Role::User, "q")],
                vec![turn(Role::User, "q")],
            ]
        );
        assert!(
            read.records
                .iter()
                .all(|r| r.chosen == "c" && r.rejected == "r")
        );
        assert_eq!(
            read.records.iter().map(|r| r.line).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
    }

    #[test]
    fn bad_records() {
        let cases = [
            (
                "{\"conversations\":[{\"from\":\"human\",\"value\":\"q\"}],\"chosen\":\"\",\"rejected\":\"r\"}",
                "field \"chosen\": empty (or only whitespace)",
            ),
            (
                "{\"conversations\":[{\"from\":\"human\",\"value\":\"q\"}],\"chosen\":\"c\",\"rejected\":\" \\n\"}",
                "field \"rejected\": empty (or only whitespace)",
            ),
            (
                "{\"conversations\":[{\"from\":\"human\",\"value\":\"q\"}],\"chosen\":\"same\",\"rejected\":\"same\"}",
                "fields \"chosen\" and \"rejected\" are identical",
            ),
            (
                "{\"conversations\":[{\"from\":\"human\",\"value\":\"q\"}],\"chosen\":[{\"from\":\"gpt\",\"value\":\"c\"}],\"rejected\":\"r\"}",
                "field \"chosen\": expected a string, found an array",
            ),
            (
                "{\"conversations\":[{\"from\":\"human\",\"value\":\"q\"}],\"rejected\":\"r\"}",
                "field \"chosen\": missing",
            ),
            (
                "{\"conversations\":[],\"chosen\":\"c\",\"rejected\":\"r\"}",
                "field \"conversations\": empty conversation",
            ),
            (
                "{\"conversations\":[{\"from\":\"system\",\"value\":\"s\"}],\"chosen\":\"c\",\"rejected\":\"r\"}",
                "field \"conversations\": the prompt has no user turn",
            ),
            (
                "{\"conversations\":[{\"from\":\"human\",\"value\":\"q\"},{\"from\":\"bot\",\"value\":\"q\"}],\"chosen\":\"c\",\"rejected\":\"r\"}",
                "field \"conversations[1].from\": unknown role \"bot\" (expected human, gpt, system, user or assistant)",
            ),
            (
                "{\"conversations\":[{\"from\":\"human\",\"value\":\"q\"},{\"from\":\"gpt\",\"value\":\"a\"}],\"chosen\":\"c\",\"rejected\":\"r\"}",
                "field \"conversations[1]\": the prompt ends with an assistant turn: its last turn must be the user turn that `chosen` and `rejected` answer",
            ),
            (
                "{\"conversations\":[{\"from\":\"human\",\"value\":\"q\"},{\"from\":\"human\",\"value\":\"q2\"}],\"chosen\":\"c\",\"rejected\":\"r\"}",
                "field \"conversations[1].from\": two user turns in a row (conversations[0] and conversations[1])",
            ),
            (
                "{\"conversations\":[{\"from\":\"human\",\"value\":\"q\"}],\"chosen\":\"c\",\"rejected\":\"r\",\"chosen\":\"x\"}",
                "duplicate key \"chosen\"",
            ),
            (
                "{\"question\":\"q\",\"response_chosen\":\"c\",\"response_rejected\":\"c\"}",
                "fields \"response_chosen\" and \"response_rejected\" are identical",
            ),
            (
                "{\"question\":\"q\",\"response_chosen\":\"c\"}",
                "field \"response_rejected\": missing",
            ),
            (
                "{\"history\":[],\"response_chosen\":\"c\",\"response_rejected\":\"r\"}",
                "field \"question\": missing",
            ),
            (
                "{\"system\":1,\"question\":\"q\",\"response_chosen\":\"c\",\"response_rejected\":\"r\"}",
                "field \"system\": expected a string, found a number",
            ),
            (
                "{\"history\":\"q a\",\"question\":\"q\",\"response_chosen\":\"c\",\"response_rejected\":\"r\"}",
                "field \"history\": expected an array of [question, answer] pairs, found a string",
            ),
            (
                "{\"history\":[[\"q\",\"a\"],[\"q\"]],\"question\":\"q\",\"response_chosen\":\"c\",\"response_rejected\":\"r\"}",
                "field \"history[1]\": expected a [question, answer] pair, found an array of another length",
            ),
            (
                "{\"history\":[[\"q\",2]],\"question\":\"q\",\"response_chosen\":\"c\",\"response_rejected\":\"r\"}",
                "field \"history[0][1]\": expected a string, found a number",
            ),
            (
                "{\"system\":\"s\",\"conversations\":[{\"from\":\"human\",\"value\":\"q\"}],\"chosen\":\"c\",\"rejected\":\"r\"}",
                "mixes the current keys (\"conversations\", \"chosen\", \"rejected\") with legacy ones (\"system\", \"history\", \"question\", \"response_chosen\", \"response_rejected\")",
            ),
            (
                "{\"prompt\":\"q\",\"chosen_response\":\"c\"}",
                "not a preference record: expected \"conversations\", \"chosen\" and \"rejected\", or the legacy \"question\", \"response_chosen\" and \"response_rejected\"",
            ),
        ];
        let ok = "{\"question\":\"q\",\"response_chosen\":\"c\",\"response_rejected\":\"r\"}";
        for (bad, message) in cases {
            let e = err(read_preference, "dpo.jsonl", &format!("{ok}\n{bad}\n"));
            let shown = e.to_string();
            // A duplicate key's message carries the column where the parser saw it.
            let shown = match shown.split_once(": duplicate") {
                Some((at, rest)) => format!(
                    "{}: duplicate{rest}",
                    at.rsplit_once(':').map_or(at, |(a, _)| a)
                ),
                None => shown,
            };
            assert_eq!(shown, format!("dpo.jsonl:2: {message}"));
            assert!(e.hint().contains("--skip-bad-records"), "{}", e.hint());
        }
    }
}
