//! Pretraining text: `.txt` with one document per line, or JSON lines `{"text": "..."}`.
//!
//! The format is chosen per file: `.txt` is always plain text (as in MedicalGPT, even when a line
//! happens to start with `{`), `.json` and `.jsonl` are always JSON lines, and any other name is
//! JSON lines when its first non-blank character is `{`. A plain-text line is kept as written
//! (only its line ending is dropped); in JSON lines, keys other than `text` are ignored and an
//! empty `text` is a bad record.

use std::path::Path;

use super::json;
use super::source::{self, Line};
use super::{DataError, Problem, Read, ReadOptions, TextDoc};
use crate::fsx::Input;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Lines,
    JsonLines,
}

fn mode_by_extension(path: &Path) -> Option<Mode> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "txt" => Some(Mode::Lines),
        "json" | "jsonl" => Some(Mode::JsonLines),
        _ => None,
    }
}

/// Read PT documents from a file or a directory of shards.
pub fn read_text(input: &Input, opts: ReadOptions) -> Result<Read<TextDoc>, DataError> {
    source::read_lines(input, opts, |file| {
        // By the name the user gave the file (a symlink's own name, not its target's).
        let mut mode = mode_by_extension(Path::new(&file.display));
        move |line: Line<'_>| {
            let mode = *mode.get_or_insert(if line.text.trim_start().starts_with('{') {
                Mode::JsonLines
            } else {
                Mode::Lines
            });
            match mode {
                Mode::Lines => Ok(TextDoc {
                    line: line.number,
                    text: line.text.to_owned(),
                }),
                Mode::JsonLines => json_doc(line),
            }
        }
    })
}

fn json_doc(line: Line<'_>) -> Result<TextDoc, Problem> {
    let obj = json::parse_object(line)?;
    Ok(TextDoc {
        line: line.number,
        text: json::non_empty_str(&obj, "text")?.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{err, file, input};
    use super::*;

    fn texts(read: &Read<TextDoc>) -> Vec<(u64, &str)> {
        read.records
            .iter()
            .map(|d| (d.line, d.text.as_str()))
            .collect()
    }

    #[test]
    fn txt_one_document_per_line_blank_lines_skipped() {
        let (_d, p) = file(
            "pt.txt",
            "第一章\n\n  \n发热是指体温升高。\nlast line without newline",
        );
        let read = read_text(&input(&p, "pt.txt"), ReadOptions::default()).unwrap();
        assert_eq!(
            texts(&read),
            [
                (1, "第一章"),
                (4, "发热是指体温升高。"),
                (5, "last line without newline")
            ]
        );
        assert!(read.skipped.is_empty());
    }

    #[test]
    fn txt_crlf_and_bom_are_dropped() {
        let (_d, p) = file("pt.txt", "\u{feff}one\r\n\r\ntwo \r\n");
        let read = read_text(&input(&p, "pt.txt"), ReadOptions::default()).unwrap();
        assert_eq!(texts(&read), [(1, "one"), (3, "two ")]);
    }

    #[test]
    fn txt_keeps_lines_that_look_like_json() {
        let (_d, p) = file("pt.txt", "{\"text\": \"x\"}\nplain\n");
        let read = read_text(&input(&p, "pt.txt"), ReadOptions::default()).unwrap();
        assert_eq!(texts(&read), [(1, "{\"text\": \"x\"}"), (2, "plain")]);
    }

    #[test]
    fn txt_long_line() {
        let long = "热".repeat(100_000);
        let (_d, p) = file("pt.txt", format!("a\n{long}\nb\n"));
        let read = read_text(&input(&p, "pt.txt"), ReadOptions::default()).unwrap();
        assert_eq!(read.records.len(), 3);
        assert_eq!(read.records[1].text.chars().count(), 100_000);
        assert_eq!(read.records[1].line, 2);
    }

    #[test]
    fn jsonl_by_extension() {
        let (_d, p) = file(
            "pt.jsonl",
            "\u{feff}{\"text\": \"发热\", \"id\": 7}\r\n\n{\"text\":\"b\"}\n",
        );
        let read = read_text(&input(&p, "pt.jsonl"), ReadOptions::default()).unwrap();
        assert_eq!(texts(&read), [(1, "发热"), (3, "b")]);
    }

    #[test]
    fn jsonl_sniffed_without_extension() {
        let (_d, p) = file("shard-0001", "\n  {\"text\": \"a\"}\n");
        let read = read_text(&input(&p, "shard-0001"), ReadOptions::default()).unwrap();
        assert_eq!(texts(&read), [(2, "a")]);
        let (_d, p) = file("shard-0002", "plain {\"text\": \"a\"}\n");
        let read = read_text(&input(&p, "shard-0002"), ReadOptions::default()).unwrap();
        assert_eq!(texts(&read), [(1, "plain {\"text\": \"a\"}")]);
    }

    #[test]
    fn jsonl_errors_name_line_and_field() {
        let e = err(
            read_text,
            "pt.jsonl",
            "{\"text\": \"a\"}\n{\"txt\": \"b\"}\n",
        );
        assert_eq!(e.to_string(), "pt.jsonl:2: field \"text\": missing");
        assert_eq!(
            e.hint(),
            "fix the record or pass --skip-bad-records to skip it"
        );
        let e = err(read_text, "pt.jsonl", "{\"text\": \"a\"}\n{\"text\": 3}\n");
        assert_eq!(
            e.to_string(),
            "pt.jsonl:2: field \"text\": expected a string, found a number"
        );
        let e = err(
            read_text,
            "pt.jsonl",
            "{\"text\": \"a\"}\n{\"text\": \" \"}\n",
        );
        assert_eq!(
            e.to_string(),
            "pt.jsonl:2: field \"text\": empty (or only whitespace)"
        );
        let e = err(
            read_text,
            "pt.jsonl",
            "{\"text\": \"a\"}\n\"just a string\"\n",
        );
        assert_eq!(
            e.to_string(),
            "pt.jsonl:2: expected a JSON object, found a string"
        );
    }

    #[test]
    fn invalid_json_names_line_column_and_serde_message() {
        let e = err(
            read_text,
            "pt.jsonl",
            "{\"text\": \"a\"}\n\n{\"text\": \"b\",}\n",
        );
        assert_eq!(e.to_string(), "pt.jsonl:3:14: invalid JSON: trailing comma");
        // Columns count characters, not bytes.
        let e = err(read_text, "pt.jsonl", "{\"text\": \"发热\",}\n");
        assert_eq!(e.to_string(), "pt.jsonl:1:15: invalid JSON: trailing comma");
        let e = err(read_text, "pt.jsonl", "{\"text\": \"发热\" \"x\"}\n");
        assert_eq!(
            e.to_string(),
            "pt.jsonl:1:15: invalid JSON: expected `,` or `}`"
        );
    }

    #[test]
    fn json_array_file_is_refused_even_when_skipping() {
        let (_d, p) = file("pt.json", "[{\"text\": \"a\"}, {\"text\": \"b\"}]\n");
        let skip = ReadOptions {
            skip_bad_records: true,
            ..ReadOptions::default()
        };
        let e = read_text(&input(&p, "pt.json"), skip).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("pt.json:1: the file starts with `[`"),
            "{e}"
        );
        assert!(e.hint().contains("jq -c"), "{}", e.hint());
    }

    #[test]
    fn invalid_utf8_names_line() {
        let (_d, p) = file("pt.txt", b"ok\nbad \xff here\n".as_slice());
        let e = read_text(&input(&p, "pt.txt"), ReadOptions::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "pt.txt:2: invalid UTF-8 at byte 5 of the line"
        );
        let skip = ReadOptions {
            skip_bad_records: true,
            ..ReadOptions::default()
        };
        let read = read_text(&input(&p, "pt.txt"), skip).unwrap();
        assert_eq!(texts(&read), [(1, "ok")]);
        assert_eq!(read.skipped.len(), 1);
        assert_eq!(read.skipped[0].line, 2);
        assert_eq!(read.skipped[0].field, None);
    }
}
