//! SFT conversations in MedicalGPT's ShareGPT JSON lines:
//! `{"conversations": [{"from": "human", "value": "..."}, {"from": "gpt", "value": "..."}]}`.
//!
//! Accepted aliases, because converted datasets use them: `user`/`assistant` as `from` values
//! (beside `human`/`gpt`/`system`), and OpenAI-style `role`/`content` keys in place of
//! `from`/`value` (a turn holding both spellings of one key is an error). Role names are exact and
//! lower-case; anything else (`function_call`, `observation`, `Human`) is an error naming the field.
//!
//! Role order. The turns must read as one dialogue: an optional `system` turn, first and only
//! once, then user and assistant turns alternating, starting with a user turn. A conversation
//! may end on a user turn (MedicalGPT's ShareGPT sample has 6 such chats that also have an
//! answer; the trailing question is context with nothing to learn). Anything else is a bad
//! record naming the turn: two user turns in a row, two answers in a row, an answer before any
//! question, a system turn after the first. MedicalGPT's trainer repairs these silently (it
//! joins the two turns, or drops the answer), which changes what is trained without a word, so
//! medrun asks for the data to say what it means. Turns are otherwise kept as written.
//!
//! A turn with an empty `value` is allowed (MedicalGPT's own ShareGPT sample has some); an empty
//! conversation, or one with no assistant turn (nothing to train on), is a bad record.

use serde_json::Value;

use super::json::{self, Object};
use super::source::{self, Line};
use super::{Conversation, DataError, Problem, Read, ReadOptions, Role, Turn};
use crate::fsx::Input;

/// Read SFT conversations from a file or a directory of shards.
pub fn read_sharegpt(input: &Input, opts: ReadOptions) -> Result<Read<Conversation>, DataError> {
    source::read_lines(input, opts, |_| conversation)
}

fn conversation(line: Line<'_>) -> Result<Conversation, Problem> {
    let obj = json::parse_object(line)?;
    let turns = turns(&obj, "conversations")?;
    if !turns.iter().any(|t| t.role == Role::Assistant) {
        return Err(Problem::NoAssistant {
            field: "conversations".into(),
        });
    }
    Ok(Conversation {
        line: line.number,
        turns,
    })
}

/// `obj[key]` as a non-empty list of turns in dialogue order (see the module's "Role order").
pub(crate) fn turns(obj: &Object, key: &str) -> Result<Vec<Turn>, Problem> {
    let v = json::required(obj, key, key)?;
    let Value::Array(items) = v else {
        return Err(Problem::WrongType {
            field: key.to_owned(),
            expected: "an array of turns",
            found: json::kind(v),
        });
    };
    if items.is_empty() {
        return Err(Problem::EmptyConversation {
            field: key.to_owned(),
        });
    }
    let mut out: Vec<Turn> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("{key}[{i}]");
        let (t, role_key) = turn(item, &at)?;
        let previous = out.iter().rposition(|p| p.role != Role::System);
        let problem = match (t.role, previous.map(|p| (p, out[p].role))) {
            (Role::System, _) if i > 0 => Some("a system turn must be the first turn".to_owned()),
            (Role::Assistant, None) => Some(
                "the conversation opens with an assistant turn: it must open with a user turn (after an optional system turn)".to_owned(),
            ),
            (Role::User | Role::Assistant, Some((p, prev))) if prev == t.role => Some(format!(
                "two {} turns in a row ({key}[{p}] and {key}[{i}])",
                t.role
            )),
            _ => None,
        };
        if let Some(message) = problem {
            return Err(Problem::RoleOrder {
                field: format!("{at}.{role_key}"),
                message,
            });
        }
        out.push(t);
    }
    Ok(out)
}

fn turn(v: &Value, at: &str) -> Result<(Turn, &'static str), Problem> {
    let Value::Object(o) = v else {
        return Err(Problem::WrongType {
            field: at.to_owned(),
            expected: "an object with \"from\" and \"value\"",
            found: json::kind(v),
        });
    };
    let (key, name) = either(o, at, "from", "role")?;
    let field = format!("{at}.{key}");
    let name = json::as_str(name, &field)?;
    let role = Role::from_name(name).ok_or_else(|| Problem::UnknownRole {
        field,
        value: shorten(name),
    })?;
    let (value_key, content) = either(o, at, "value", "content")?;
    let content = json::as_str(content, &format!("{at}.{value_key}"))?;
    Ok((
        Turn {
            role,
            content: content.to_owned(),
        },
        key,
    ))
}

/// The value under `main` or its alias `alt`: exactly one of them must be present.
fn either<'a>(
    o: &'a Object,
    at: &str,
    main: &'static str,
    alt: &'static str,
) -> Result<(&'static str, &'a Value), Problem> {
    match (o.get(main), o.get(alt)) {
        (Some(v), None) => Ok((main, v)),
        (None, Some(v)) => Ok((alt, v)),
        (Some(_), Some(_)) => Err(Problem::Both {
            field: at.to_owned(),
            a: main,
            b: alt,
        }),
        (None, None) => Err(Problem::Missing {
            field: format!("{at}.{main}"),
        }),
    }
}

/// A user's value quoted in a message, cut to a readable length.
fn shorten(s: &str) -> String {
    const MAX: usize = 40;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{err, file, input};
    use super::*;

    fn t(role: Role, content: &str) -> Turn {
        Turn {
            role,
            content: content.into(),
        }
    }

    #[test]
    fn reads_sharegpt_in_order() {
        let (_d, p) = file(
            "sft.jsonl",
            concat!(
                "{\"conversations\":[{\"from\":\"system\",\"value\":\"你是医生\"},{\"from\":\"human\",\"value\":\"头痛怎么办？\"},{\"from\":\"gpt\",\"value\":\"多休息。\"},{\"from\":\"human\",\"value\":\"还有呢\"},{\"from\":\"gpt\",\"value\":\"\"}]}\n",
                "\n",
                "{\"conversations\":[{\"from\":\"human\",\"value\":\"a\"},{\"from\":\"gpt\",\"value\":\"b\"},{\"from\":\"human\",\"value\":\"c\"}],\"id\":\"x\"}\n",
            ),
        );
        let read = read_sharegpt(&input(&p, "sft.jsonl"), ReadOptions::default()).unwrap();
        assert_eq!(
            read.records,
            [
                Conversation {
                    line: 1,
                    turns: vec![
                        t(Role::System, "你是医生"),
                        t(Role::User, "头痛怎么办？"),
                        t(Role::Assistant, "多休息。"),
                        t(Role::User, "还有呢"),
                        t(Role::Assistant, ""),
                    ],
                },
                // A conversation may end on a user turn (context, nothing to learn).
                Conversation {
                    line: 3,
                    turns: vec![
                        t(Role::User, "a"),
                        t(Role::Assistant, "b"),
                        t(Role::User, "c")
                    ],
                },
            ]
        );
    }

    #[test]
    fn aliases() {
        let (_d, p) = file(
            "sft.jsonl",
            "\u{feff}{\"conversations\":[{\"role\":\"user\",\"content\":\"q\"},{\"from\":\"assistant\",\"content\":\"a\"}]}\r\n",
        );
        let read = read_sharegpt(&input(&p, "sft.jsonl"), ReadOptions::default()).unwrap();
        assert_eq!(
            read.records[0].turns,
            [t(Role::User, "q"), t(Role::Assistant, "a")]
        );
    }

    #[test]
    fn unknown_role_names_field_and_value() {
        let e = err(
            read_sharegpt,
            "sft.jsonl",
            "{\"conversations\":[{\"from\":\"human\",\"value\":\"q\"},{\"from\":\"gpt\",\"value\":\"a\"},{\"from\":\"function_call\",\"value\":\"{}\"}]}\n",
        );
        assert_eq!(
            e.to_string(),
            "sft.jsonl:1: field \"conversations[2].from\": unknown role \"function_call\" (expected human, gpt, system, user or assistant)"
        );
        assert!(e.hint().contains("--skip-bad-records"), "{}", e.hint());
        let e = err(
            read_sharegpt,
            "sft.jsonl",
            &format!(
                "{{\"conversations\":[{{\"role\":\"{}\",\"value\":\"q\"}}]}}\n",
                "病".repeat(100)
            ),
        );
        assert!(
            e.to_string().ends_with(&format!(
                "\"{}…\" (expected human, gpt, system, user or assistant)",
                "病".repeat(40)
            )),
            "{e}"
        );
    }

    #[test]
    fn role_order_violations_name_the_turn() {
        let turn = |from: &str| format!("{{\"from\":\"{from}\",\"value\":\"x\"}}");
        let conv = |froms: &[&str]| {
            let turns: Vec<String> = froms.iter().map(|f| turn(f)).collect();
            format!("{{\"conversations\":[{}]}}\n", turns.join(","))
        };
        let cases: [(&[&str], &str); 5] = [
            (
                &["human", "human", "gpt"],
                "field \"conversations[1].from\": two user turns in a row (conversations[0] and conversations[1])",
            ),
            (
                &["system", "human", "gpt", "gpt"],
                "field \"conversations[3].from\": two assistant turns in a row (conversations[2] and conversations[3])",
            ),
            (
                &["gpt", "human", "gpt"],
                "field \"conversations[0].from\": the conversation opens with an assistant turn: it must open with a user turn (after an optional system turn)",
            ),
            (
                &["system", "gpt", "human", "gpt"],
                "field \"conversations[1].from\": the conversation opens with an assistant turn: it must open with a user turn (after an optional system turn)",
            ),
            (
                &["human", "gpt", "system", "human", "gpt"],
                "field \"conversations[2].from\": a system turn must be the first turn",
            ),
        ];
        for (froms, message) in cases {
            let e = err(read_sharegpt, "sft.jsonl", &conv(froms));
            assert_eq!(
                e.to_string(),
                format!("sft.jsonl:1: {message}"),
                "{froms:?}"
            );
            assert!(e.hint().contains("alternating"), "{}", e.hint());
        }
        // The `role` spelling is named as written; two system turns are caught at the second.
        let e = err(
            read_sharegpt,
            "sft.jsonl",
            "{\"conversations\":[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"system\",\"content\":\"t\"}]}\n",
        );
        assert_eq!(
            e.to_string(),
            "sft.jsonl:1: field \"conversations[1].role\": a system turn must be the first turn"
        );
    }

    #[test]
    fn duplicate_keys_are_bad_records() {
        let e = err(
            read_sharegpt,
            "sft.jsonl",
            "{\"conversations\":[{\"from\":\"human\",\"value\":\"q\"},{\"from\":\"gpt\",\"value\":\"a\",\"value\":\"b\"}]}\n",
        );
        assert_eq!(
            e.to_string(),
            "sft.jsonl:1:80: duplicate key \"value\" in conversations[1]"
        );
        assert!(matches!(
            e,
            DataError::BadRecord { problem: Problem::DuplicateKey { ref field, .. }, .. }
                if field == "conversations[1].value"
        ));
    }

    #[test]
    fn field_errors() {
        let cases = [
            ("{\"id\": 1}", "field \"conversations\": missing"),
            (
                "{\"conversations\": {}}",
                "field \"conversations\": expected an array of turns, found an object",
            ),
            (
                "{\"conversations\": []}",
                "field \"conversations\": empty conversation",
            ),
            (
                "{\"conversations\": [\"hi\"]}",
                "field \"conversations[0]\": expected an object with \"from\" and \"value\", found a string",
            ),
            (
                "{\"conversations\": [{\"value\": \"q\"}]}",
                "field \"conversations[0].from\": missing",
            ),
            (
                "{\"conversations\": [{\"from\": \"human\"}]}",
                "field \"conversations[0].value\": missing",
            ),
            (
                "{\"conversations\": [{\"from\": \"human\", \"value\": \"q\"}, {\"from\": \"gpt\", \"value\": null}]}",
                "field \"conversations[1].value\": expected a string, found null",
            ),
            (
                "{\"conversations\": [{\"from\": 1, \"value\": \"q\"}]}",
                "field \"conversations[0].from\": expected a string, found a number",
            ),
            (
                "{\"conversations\": [{\"from\": \"human\", \"role\": \"user\", \"value\": \"q\"}]}",
                "field \"conversations[0]\": has both \"from\" and \"role\"; keep one",
            ),
            (
                "{\"conversations\": [{\"from\": \"system\", \"value\": \"s\"}, {\"from\": \"human\", \"value\": \"q\"}]}",
                "field \"conversations\": the conversation has no assistant turn",
            ),
        ];
        let ok = "{\"conversations\":[{\"from\":\"human\",\"value\":\"q\"},{\"from\":\"gpt\",\"value\":\"a\"}]}";
        for (bad, message) in cases {
            let e = err(
                read_sharegpt,
                "data/sft.jsonl",
                &format!("{ok}\n{ok}\n{bad}\n"),
            );
            assert_eq!(e.to_string(), format!("data/sft.jsonl:3: {message}"));
        }
    }
}
