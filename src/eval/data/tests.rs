use super::*;
use serde_json::json;
use std::path::{Path, PathBuf};

fn parse(text: &str, format: Format) -> Result<Vec<Record>, EvalDataError> {
    parse_records(text.as_bytes(), "d", format)
}

fn lines(r: &[Record]) -> Vec<usize> {
    r.iter().map(|r| r.line).collect()
}

#[test]
fn json_array_with_lines() {
    let r = parse(
        "\u{feff}[\n  {\"q\": \"a,]}\\\"\"},\n\n  {\"q\": [1, {\"x\": 2}]}\n]\n",
        Format::Json,
    )
    .unwrap();
    assert_eq!(lines(&r), [2, 4]);
    assert_eq!(r[0].fields["q"], json!("a,]}\""));
    assert_eq!(r[1].fields["q"], json!([1, {"x": 2}]));
}

#[test]
fn json_object_of_ids_is_sorted_by_key_with_id_field() {
    let text = "{\n \"9\": {\"a\": 1},\n \"10\": {\n  \"a\": 2\n },\n \"k\\\"\": {\"a\": 3}\n}";
    let r = parse(text, Format::Json).unwrap();
    let ids: Vec<_> = r.iter().map(|r| r.fields["id"].clone()).collect();
    assert_eq!(ids, [json!("10"), json!("9"), json!("k\"")]);
    assert_eq!(lines(&r), [3, 2, 6]);
}

#[test]
fn json_errors_name_the_line() {
    let e = parse("{\"a\": {\"x\": 1},\n \"a\": {\"x\": 2}}", Format::Json).unwrap_err();
    assert_eq!(e.to_string(), "d:2:4: duplicate key \"a\"");
    let e = parse("[{\"a\": 1},\n 3]", Format::Json).unwrap_err();
    assert_eq!(
        e.to_string(),
        "d:2: element 1 of the array is a number, not an object"
    );
    let e = parse("{\"a\": {\"id\": 1}}", Format::Json).unwrap_err();
    assert!(e.to_string().contains("has its own `id` field"), "{e}");
    let e = parse("[\n{\"a\": 1,}\n]", Format::Json).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("d:2:9: invalid JSON: trailing comma"),
        "{e}"
    );
    let e = parse("\"x\"", Format::Json).unwrap_err();
    assert!(e.to_string().contains("not an array or object"), "{e}");
}

#[test]
fn jsonl_skips_blank_lines_and_names_bad_ones() {
    let r = parse("{\"a\":1}\r\n\n  \n{\"a\":2}", Format::Jsonl).unwrap();
    assert_eq!(lines(&r), [1, 4]);
    let e = parse("{\"a\":1}\n[1]\n", Format::Jsonl).unwrap_err();
    assert!(
        e.to_string().starts_with("d:2: expected a JSON object"),
        "{e}"
    );
    let e = parse("{\"a\":1}\n{\"a\" 1}\n", Format::Jsonl).unwrap_err();
    assert!(e.to_string().starts_with("d:2:6: invalid JSON"), "{e}");
}

#[test]
fn csv_header_quotes_and_newlines() {
    let text = ",Question,A\n0,\"multi\nline, with \"\"quotes\"\"\",x\n\n1,q2,y\n";
    let r = parse(text, Format::Csv).unwrap();
    assert_eq!(lines(&r), [2, 5]);
    assert_eq!(r[0].fields[""], json!("0"));
    assert_eq!(
        r[0].fields["Question"],
        json!("multi\nline, with \"quotes\"")
    );
    let r = parse("h\r\n1\r\n\r\n2\r\n3\r\n", Format::Csv).unwrap();
    assert_eq!(lines(&r), [2, 4, 5]);
    let r = parse("h\n1\n\n\n2\n3\n", Format::Csv).unwrap();
    assert_eq!(lines(&r), [2, 5, 6]);
    let r = parse("a,b\r\nc,d\r\n", Format::CsvNoheader).unwrap();
    assert_eq!(r[1].fields["0"], json!("c"));
    assert_eq!(r[1].fields["1"], json!("d"));
}

#[test]
fn csv_errors() {
    let e = parse("a,b\n1,2\n\n1,2,3\n", Format::Csv).unwrap_err();
    assert_eq!(
        e.to_string(),
        "d:4: row has 3 fields, but the first row has 2"
    );
    let e = parse("a,a\n1,2\n", Format::Csv).unwrap_err();
    assert!(e.to_string().contains("names column \"a\" twice"), "{e}");
    let e = parse_records(b"a\n\xff\n", "d", Format::Csv).unwrap_err();
    assert!(
        e.to_string().starts_with("d:2: field 1 is not valid UTF-8"),
        "{e}"
    );
}

#[test]
fn directories_read_in_path_order_and_empty_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("b")).unwrap();
    std::fs::write(dir.path().join("b/x.jsonl"), "{\"n\":2}\n").unwrap();
    std::fs::write(dir.path().join("a.jsonl"), "{\"n\":1}\n").unwrap();
    std::fs::write(dir.path().join(".hidden"), "junk").unwrap();
    let r = read_path(dir.path(), "data/d/", Format::Jsonl).unwrap();
    let files: Vec<&str> = r.iter().map(|r| &*r.file).collect();
    assert_eq!(files, ["data/d/a.jsonl", "data/d/b/x.jsonl"]);
    std::fs::write(dir.path().join("e.csv"), "h1,h2\n").unwrap();
    let e = read_path(&dir.path().join("e.csv"), "e.csv", Format::Csv).unwrap_err();
    assert_eq!(e.to_string(), "`e.csv` has no records");
}

#[test]
fn text_format_reads_documents() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.txt");
    std::fs::write(&p, "first doc\n\nsecond doc\n").unwrap();
    let r = read_path(&p, "t.txt", Format::Text).unwrap();
    assert_eq!(lines(&r), [1, 3]);
    assert_eq!(r[1].fields["text"], json!("second doc"));
}

fn shared() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/evals");
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!("skipped: {} is absent", p.display());
        None
    }
}

#[test]
fn real_pubmedqa_reads() {
    let Some(base) = shared() else { return };
    let r = read_path(
        &base.join("pubmedqa/pqal_dev_sample_300.json"),
        "pubmedqa.json",
        Format::Json,
    )
    .unwrap();
    assert_eq!(r.len(), 300);
    let mut ids: Vec<&str> = r.iter().map(|r| r.fields["id"].as_str().unwrap()).collect();
    let sorted = {
        let mut s = ids.clone();
        s.sort();
        s
    };
    assert_eq!(ids, sorted);
    ids.dedup();
    assert_eq!(ids.len(), 300);
    let mut labels = std::collections::BTreeMap::new();
    for rec in &r {
        assert!(rec.fields["QUESTION"].is_string());
        assert!(rec.fields["CONTEXTS"].is_array());
        *labels
            .entry(rec.fields["final_decision"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    assert_eq!(labels["yes"], 166);
    assert_eq!(labels["no"], 101);
    assert_eq!(labels["maybe"], 33);
    // The first key in the file is on line 2; lines grow with the key order of the file.
    assert!(r.iter().any(|rec| rec.line == 2));
}

#[test]
fn real_cmmlu_reads() {
    let Some(base) = shared() else { return };
    let test = read_path(
        &base.join("cmmlu_medical/data/test"),
        "cmmlu/test",
        Format::Csv,
    )
    .unwrap();
    assert_eq!(test.len(), 300);
    for rec in &test {
        let keys: Vec<&str> = rec.fields.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["", "A", "Answer", "B", "C", "D", "Question"],
            "{rec}"
        );
        assert!(["A", "B", "C", "D"].contains(&rec.fields["Answer"].as_str().unwrap()));
    }
    let dev = read_path(
        &base.join("cmmlu_medical/data/dev"),
        "cmmlu/dev",
        Format::Csv,
    )
    .unwrap();
    assert_eq!(dev.len(), 35);
}

#[test]
fn real_medsafetybench_reads() {
    let Some(base) = shared() else { return };
    let r = read_path(
        &base.join("medsafetybench/datasets/train"),
        "msb",
        Format::Csv,
    )
    .unwrap();
    assert_eq!(r.len(), 300);
    for rec in &r {
        let keys: Vec<&str> = rec.fields.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["", "harmful_medical_request", "safe_response"],
            "{rec}"
        );
        assert!(!rec.fields["safe_response"].as_str().unwrap().is_empty());
    }
    let files: std::collections::BTreeSet<&str> = r.iter().map(|r| &*r.file).collect();
    assert_eq!(files.len(), 18);
}
