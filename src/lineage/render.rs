//! Text and JSON views of provenance.

use std::fmt::Write as _;

use serde_json::json;

use super::record::{RunRecord, StageState};

fn short(id: &str) -> &str {
    &id[..12.min(id.len())]
}

/// The provenance of a whole run, as indented text.
pub fn run_text(r: &RunRecord) -> String {
    let s = &r.started;
    let mut o = String::new();
    let _ = writeln!(o, "run {}  {}  {}", s.run_id, s.spec_name, r.status());
    let _ = writeln!(
        o,
        "  spec     {}  (object {})",
        s.spec_path,
        short(&s.spec_object)
    );
    let _ = writeln!(o, "  run key  {}", s.run_key);
    let _ = writeln!(o, "  started  {}", s.started_at);
    if let Some((_, at)) = &r.finished {
        let _ = writeln!(o, "  finished {at}");
    }
    let seal = match &r.seal {
        super::Seal::Sealed { object } => format!("sealed (object {})", short(object)),
        super::Seal::Unsealed => "not sealed (interrupted or still running)".into(),
        super::Seal::Broken { problem, .. } => format!("FAILS ITS SEAL: {problem}"),
    };
    let _ = writeln!(o, "  record   {seal}");
    let _ = writeln!(
        o,
        "  code     git {}{}",
        s.git.short(),
        if s.allow_dirty { ", --allow-dirty" } else { "" }
    );
    let _ = writeln!(o, "  engine   {}", s.engine.short());
    let _ = writeln!(o, "  device   {}", s.device.short());
    let _ = writeln!(o, "  host     {} ({} cpus)", s.host.hostname, s.host.cpus);
    if !s.inputs.is_empty() {
        let _ = writeln!(o, "  inputs");
        let w = s.inputs.keys().map(|k| k.len()).max().unwrap_or(0);
        for (name, i) in &s.inputs {
            let rec = i
                .records
                .map(|n| format!(", {n} records"))
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "    {name:<w$}  {}  {}  blake3 {}  {} bytes{rec}",
                i.path,
                i.format,
                short(&i.blake3),
                i.bytes
            );
        }
    }
    let _ = writeln!(o, "  stages");
    for (p, st) in &r.stages {
        stage_lines(&mut o, r, &p.name, st, "    ");
    }
    for n in &r.nondeterminism {
        if let super::Event::Nondeterminism {
            stage,
            recorded,
            produced,
            ..
        } = n
        {
            let _ = writeln!(
                o,
                "  NONDETERMINISM in stage {stage}: recorded output {}, this run produced {}",
                short(recorded),
                short(produced)
            );
        }
    }
    if r.torn_lines > 0 {
        let _ = writeln!(o, "  ({} torn record line(s) ignored)", r.torn_lines);
    }
    o
}

fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// One aligned line per named input: name, path, format, hash, size, records.
fn input_lines(o: &mut String, r: &RunRecord, names: &[&String], ind: &str) {
    let inputs: Vec<(&String, &super::record::RecordedInput)> = names
        .iter()
        .filter_map(|n| r.started.inputs.get(*n).map(|i| (*n, i)))
        .collect();
    let wn = inputs.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let wp = inputs.iter().map(|(_, i)| i.path.len()).max().unwrap_or(0);
    let wf = inputs
        .iter()
        .map(|(_, i)| i.format.len())
        .max()
        .unwrap_or(0);
    for (name, i) in inputs {
        let rec = i
            .records
            .map(|n| format!(", {}", plural(n, "record")))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "{ind}{name:<wn$}  {:<wp$}  {:<wf$}  blake3 {}  {}{rec}",
            i.path,
            i.format,
            short(&i.blake3),
            plural(i.bytes, "byte")
        );
    }
}

fn stage_lines(o: &mut String, r: &RunRecord, name: &str, st: &StageState, ind: &str) {
    let Some((p, _)) = r.stage(name) else {
        return;
    };
    let parent = r
        .stages
        .iter()
        .find(|(q, _)| Some(&q.key) == p.parent.as_ref())
        .map(|(q, _)| q.name.as_str());
    let _ = write!(
        o,
        "{ind}{} ({})  {}  key {}",
        p.name,
        p.kind,
        st.label(),
        short(&p.key)
    );
    if let Some(out) = st.output() {
        let _ = write!(o, "  output {}", short(out));
    }
    o.push('\n');
    if let Some(par) = parent {
        let _ = writeln!(o, "{ind}  from stage {par}");
    }
    if !p.datasets.is_empty() {
        let _ = writeln!(o, "{ind}  datasets");
        let names: Vec<&String> = p.datasets.iter().collect();
        input_lines(o, r, &names, &format!("{ind}    "));
    }
    match st {
        StageState::Completed(c) => {
            let _ = writeln!(o, "{ind}  took {:.1}s on {}", c.seconds, c.host.hostname);
            for (n, id) in &c.artifacts {
                let _ = writeln!(o, "{ind}  artifact {n}  {}", short(id));
            }
            for (n, id) in &c.logs {
                let _ = writeln!(o, "{ind}  log {n}  {}", short(id));
            }
        }
        StageState::Failed { error, .. } => {
            let _ = writeln!(o, "{ind}  error: {error}");
        }
        _ => {}
    }
}

/// The provenance of one stage: the stage, then its ancestors, then the run's inputs.
pub fn stage_text(r: &RunRecord, stage: &str) -> String {
    let mut o = String::new();
    let s = &r.started;
    let _ = writeln!(
        o,
        "stage {stage} of run {}  {}  {}",
        s.run_id,
        s.spec_name,
        r.status()
    );
    let mut cur = r.stage(stage).cloned();
    let mut ind = String::from("  ");
    while let Some((p, st)) = cur {
        stage_lines(&mut o, r, &p.name, &st, &ind);
        ind.push_str("  ");
        cur = r
            .stages
            .iter()
            .find(|(q, _)| Some(&q.key) == p.parent.as_ref())
            .cloned();
    }
    let _ = writeln!(o, "  spec     {}  git {}", s.spec_path, s.git.short());
    let _ = writeln!(o, "  engine   {}", s.engine.short());
    let _ = writeln!(o, "  device   {}", s.device.short());
    o
}

pub fn run_json(r: &RunRecord) -> serde_json::Value {
    json!({
        "kind": "run",
        "run_id": r.id(),
        "status": r.status(),
        "record": r,
    })
}
