//! One thin function per command: call `ops`, print the result.

use std::path::Path;

use super::{Cli, Command, LineageFormat, PromotionsAction};
use crate::error::{EXIT_OK, EXIT_USER, Error, Result};
use crate::lineage::{self, Target, render};
use crate::ops::{self, Project};
use crate::printer::Printer;
use crate::stage::Executors;
use crate::store::Store;

pub fn dispatch(cli: &Cli, executors: &Executors, p: &Printer) -> Result<u8> {
    let store = cli.store.as_deref();
    match &cli.command {
        Command::Lock { check, verify } => lock(store, *check, *verify, p),
        Command::Plan { spec, verify } => plan(spec, store, *verify, p),
        Command::Explain { spec } => explain(spec, store, p),
        Command::Run {
            spec,
            locked,
            allow_dirty,
            skip_bad_records,
        } => {
            let opts = ops::run::RunOptions {
                locked: *locked,
                allow_dirty: *allow_dirty,
                skip_bad_records: *skip_bad_records,
            };
            run(spec, store, &opts, executors, p)
        }
        Command::Eval {
            reference,
            suite,
            no_cache,
            no_share_prompt,
            batch_size,
        } => {
            let project = cwd_project(store)?;
            let opts = ops::eval::EvalOptions {
                no_cache: *no_cache,
                scoring: crate::eval::suite::ScoringOptions {
                    share_prompt: !*no_share_prompt,
                },
                batch_size: *batch_size,
            };
            let (ck, ev) = ops::eval::eval(&project, reference, suite, &opts, p)?;
            let incomplete = (!ev.results.complete()).then(|| Error::EvalIncomplete {
                message: format!(
                    "evaluation incomplete: {}",
                    ev.results.error.clone().unwrap_or_default()
                ),
                hint: "fix the failing task and run `medrun eval` again".into(),
            });
            if p.json {
                let mut doc = serde_json::json!({
                    "checkpoint": ck.output,
                    "results_output": ev.output,
                    "cached": ev.cached,
                    "complete": incomplete.is_none(),
                    "results": ev.results,
                });
                if let Some(e) = &incomplete {
                    doc["error"] = e.to_string().into();
                    doc["hint"] = e.hint().into();
                    doc["exit_code"] = e.exit_code().into();
                }
                p.json_value(&doc);
            } else {
                p.data(&crate::eval::suite::summary_markdown(&ev.results));
                p.data(&format!(
                    "results {}{}",
                    &ev.output[..12],
                    if ev.cached { " (cached)" } else { "" }
                ));
            }
            match incomplete {
                None => Ok(EXIT_OK),
                Some(e) => Err(e),
            }
        }
        Command::Promote {
            reference,
            channel,
            no_cache,
        } => {
            let project = cwd_project(store)?;
            clean_stale_temp_files(&project.root, p);
            let opts = ops::eval::EvalOptions {
                no_cache: *no_cache,
                ..Default::default()
            };
            let r = ops::promote::promote(&project, reference, channel, &opts, p)?;
            if r.already_holds {
                if p.json {
                    p.json_value(&serde_json::to_value(&r).unwrap_or_default());
                } else {
                    p.data(&format!(
                        "{} already holds `{}`; promotions.yaml is unchanged",
                        &r.checkpoint[..12],
                        r.channel
                    ));
                }
                return Ok(EXIT_OK);
            }
            if p.json {
                p.json_value(&serde_json::to_value(&r).unwrap_or_default());
            } else {
                p.data(&ops::promote::decision_table(&r.decision));
            }
            if r.promoted {
                if !p.json {
                    p.data(&format!(
                        "promoted {} ({}:{}) to `{}`; recorded in promotions.yaml (commit it)",
                        &r.checkpoint[..12],
                        &r.run[..12.min(r.run.len())],
                        r.stage,
                        r.channel
                    ));
                }
                Ok(EXIT_OK)
            } else {
                let failed: Vec<String> = r.decision.failed().map(|g| g.metric.clone()).collect();
                Err(Error::GateRejected {
                    message: format!(
                        "not promoted: {} gate(s) failed: {}",
                        failed.len(),
                        failed.join(", ")
                    ),
                    hint:
                        "promotions.yaml is unchanged; improve the checkpoint or revisit the gates"
                            .into(),
                })
            }
        }
        Command::Reproduce {
            reference,
            stage,
            rebuild,
        } => {
            let project = cwd_project(store)?;
            let opts = ops::reproduce::ReproduceOptions {
                only: stage.as_deref(),
                rebuild: *rebuild,
            };
            let r = ops::reproduce::reproduce(&project, reference, opts, executors, p)?;
            if p.json {
                p.json_value(&serde_json::to_value(&r).unwrap_or_default());
            }
            if r.identical {
                if !p.json {
                    p.data(&format!(
                        "reproduced run {}: {} stage(s) byte-identical to the record{}",
                        &r.run[..12.min(r.run.len())],
                        r.stages.len(),
                        r.rebuilt_from
                            .as_ref()
                            .map(|c| format!(" (rebuilt from commit {})", &c[..12.min(c.len())]))
                            .unwrap_or_default()
                    ));
                }
                Ok(EXIT_OK)
            } else {
                let first = r.stages.iter().find(|s| !s.identical);
                Err(Error::ReproDiffers {
                    message: match first {
                        Some(s) => format!(
                            "reproduction differs: stage `{}` produced {} instead of {} (files: {}){}",
                            s.stage,
                            &s.produced[..12],
                            &s.recorded[..12],
                            s.differing_files.join(", "),
                            s.first_divergent_step
                                .map(|n| format!("; parameters first differ at step {n}"))
                                .unwrap_or_default()
                        ),
                        None => "reproduction differs".into(),
                    },
                    hint: "same inputs and engine gave other bytes: report it with `medrun lineage RUN --json` and both outputs".into(),
                })
            }
        }
        Command::Generate {
            reference,
            prompt,
            chat,
            system,
            max_new_tokens,
            stop,
            temperature,
            seed,
        } => {
            let project = cwd_project(store)?;
            let opts = ops::generate::GenerateOptions {
                prompt: prompt.clone(),
                chat: *chat,
                system: system.clone(),
                max_new_tokens: *max_new_tokens,
                stop: stop.clone(),
                sample: temperature.map(|t| crate::eval::Sampling {
                    temperature: t,
                    seed: *seed,
                }),
            };
            let g = ops::generate::generate(&project, reference, &opts)?;
            if p.json {
                p.json_value(&serde_json::to_value(&g).unwrap_or_default());
            } else {
                p.data(&g.output);
            }
            Ok(EXIT_OK)
        }
        Command::DemoData { out } => {
            let r = crate::demo::generate(out).map_err(|e| Error::Problems {
                hint: e.hint(),
                message: e.to_string(),
            })?;
            if p.json {
                p.json_value(&serde_json::to_value(&r).unwrap_or_default());
            } else {
                let facts: usize = r.facts.values().sum();
                p.data(&format!(
                    "wrote {} files ({} bytes) to {} from {facts} facts (seed {})",
                    r.files.len(),
                    r.total_bytes,
                    out.display(),
                    r.seed
                ));
                for f in &r.files {
                    p.data(&format!(
                        "  {:<20} {:>6} records {:>9} bytes",
                        f.path, f.records, f.bytes
                    ));
                }
            }
            Ok(EXIT_OK)
        }
        Command::Export { reference, dir } => {
            let project = cwd_project(store)?;
            let r = ops::export::export(&project, reference, dir)?;
            if p.json {
                p.json_value(&serde_json::to_value(&r).unwrap_or_default());
            } else {
                p.data(&format!(
                    "exported {} ({}) to {}: {}",
                    match (&r.checkpoint.run_id, &r.checkpoint.stage) {
                        (Some(run), Some(s)) => format!("{}:{s}", &run[..12.min(run.len())]),
                        _ => "output".into(),
                    },
                    &r.checkpoint.output[..12],
                    r.dir.display(),
                    r.files.join(", ")
                ));
            }
            Ok(EXIT_OK)
        }
        Command::Lineage { reference, format } => {
            let f = format.unwrap_or(if cli.json {
                LineageFormat::Json
            } else {
                LineageFormat::Text
            });
            lineage(reference, store, f, p)
        }
        Command::Verify => verify(store, p),
        Command::Promotions {
            action: PromotionsAction::Verify,
        } => promotions_verify(store, p),
        Command::Gc { keep, dry_run } => gc(store, keep, *dry_run, p),
    }
}

fn cwd_project(store: Option<&Path>) -> Result<Project> {
    Project::discover(Path::new("."), store)
}

/// Remove the temp files that killed medrun processes left in the project (they would make the
/// work tree dirty or pile up), at the start of the commands that write project files.
fn clean_stale_temp_files(root: &Path, p: &Printer) {
    let cleaned = crate::tempfiles::clean_stale(root);
    for path in &cleaned.removed {
        p.status(&format!(
            "removed {}, left by a medrun process that no longer runs",
            path.strip_prefix(root).unwrap_or(path).display()
        ));
    }
    for (path, e) in &cleaned.failed {
        p.warn(&format!(
            "cannot remove the stale temp file {}: {e}; remove it by hand",
            path.display()
        ));
    }
}

fn lock(store: Option<&Path>, check: bool, verify: bool, p: &Printer) -> Result<u8> {
    let project = cwd_project(store)?;
    // `--check` writes nothing, not even a cleanup.
    if !check {
        clean_stale_temp_files(&project.root, p);
    }
    let report = ops::lock::lock(&project, check, verify)?;
    for a in &report.absent {
        p.warn(&format!(
            "`{}` is not in this checkout; its locked hash is kept (fetch it with `{}`)",
            a.path, a.fetch
        ));
    }
    if p.json {
        p.json_value(&serde_json::to_value(&report).unwrap_or_default());
    } else if check {
        p.status(&format!(
            "datasets.lock is up to date ({} entries)",
            report.entries
        ));
    } else if report.written {
        p.status(&format!(
            "wrote datasets.lock ({} entries, {} changed; {} hashed, {} from cache)",
            report.entries,
            report.changed.len(),
            report.hashed,
            report.cache_hits
        ));
    } else {
        p.status(&format!(
            "datasets.lock unchanged ({} entries)",
            report.entries
        ));
    }
    Ok(EXIT_OK)
}

fn plan(spec: &Path, store: Option<&Path>, verify: bool, p: &Printer) -> Result<u8> {
    let plan = ops::plan::plan(spec, store, verify)?;
    if p.json {
        p.json_value(&plan.to_json());
    } else {
        p.data(&plan.to_text());
    }
    Ok(EXIT_OK)
}

fn explain(spec: &Path, store: Option<&Path>, p: &Printer) -> Result<u8> {
    let ex = ops::explain::explain(spec, store)?;
    if p.json {
        p.json_value(&serde_json::to_value(&ex).unwrap_or_default());
    } else {
        p.data(&ops::explain::to_text(&ex));
    }
    Ok(EXIT_OK)
}

fn run(
    spec: &Path,
    store: Option<&Path>,
    opts: &ops::run::RunOptions,
    executors: &Executors,
    p: &Printer,
) -> Result<u8> {
    if let Ok(project) = Project::for_spec(spec, store) {
        clean_stale_temp_files(&project.root, p);
    }
    let report = ops::run::run(spec, store, opts, executors, p)?;
    if p.json {
        p.json_value(&serde_json::to_value(&report).unwrap_or_default());
    } else {
        let done = report
            .stages
            .iter()
            .filter(|s| s.status == "completed")
            .count();
        let cached = report.stages.len() - done;
        p.data(&format!(
            "run {} ok: {done} stage(s) run, {cached} cached\nstore {}\nlineage: medrun lineage {}",
            report.run_id,
            report.store,
            &report.run_id[..12]
        ));
        if !report.evals.is_empty() {
            p.data(&format!(
                "\n{}",
                ops::run::stage_table(&report.evals).trim_end()
            ));
        }
        for g in &report.gates {
            p.data(&format!(
                "\ngates of stage `{}`: {}\n{}",
                g.stage,
                if g.decision.passed { "pass" } else { "FAIL" },
                ops::promote::decision_table(&g.decision).trim_end()
            ));
        }
    }
    if report.gates_passed {
        Ok(EXIT_OK)
    } else {
        let failed: Vec<String> = report
            .gates
            .iter()
            .flat_map(|g| {
                g.decision
                    .failed()
                    .map(move |o| format!("{}:{}", g.stage, o.metric))
            })
            .collect();
        Err(Error::GateRejected {
            message: format!("training finished, but gates failed: {}", failed.join(", ")),
            hint: "the checkpoints are in the store; improve the run or revisit the gates before promoting".into(),
        })
    }
}

fn lineage(reference: &str, store: Option<&Path>, f: LineageFormat, p: &Printer) -> Result<u8> {
    let project = cwd_project(store)?;
    let store = Store::open_existing(&project.store_dir)?;
    let target = ops::promotions::resolve(&store, &project.root, reference)?;
    let runs = lineage::load_runs(&store)?;
    match (&target, f) {
        (Target::Run(r), LineageFormat::Text) => p.data(&render::run_text(r)),
        (Target::Stage(r, s), LineageFormat::Text) => p.data(&render::stage_text(r, s)),
        (Target::Run(r), LineageFormat::Json) => p.json_value(&render::run_json(r)),
        (Target::Stage(r, s), LineageFormat::Json) => p.json_value(&serde_json::json!({
            "kind": "stage",
            "run_id": r.id(),
            "stage": s,
            "record": r,
        })),
        (Target::Run(r), LineageFormat::Openlineage) => {
            for e in lineage::openlineage::events(r) {
                p.data(&serde_json::to_string(&e).unwrap_or_default());
            }
        }
        (Target::Stage(r, s), LineageFormat::Openlineage) => {
            let job = format!("{}.{s}", r.started.spec_name);
            for e in lineage::openlineage::events(r) {
                if e["job"]["name"] == job.as_str() {
                    p.data(&serde_json::to_string(&e).unwrap_or_default());
                }
            }
        }
        (Target::Object(id), f) => {
            let prods = lineage::producers(&store, &runs, id)?;
            if prods.is_empty() {
                return Err(Error::Problems {
                    message: format!("object {id} is in the store, but no run record produced it"),
                    hint: "it may be left over from an interrupted run; `medrun gc` removes such objects".into(),
                });
            }
            let (r, stage, file) = &prods[0];
            match f {
                LineageFormat::Text => {
                    let what = match file {
                        Some(name) => format!("artifact {name} ({id})"),
                        None => format!("output {id}"),
                    };
                    let mut text = format!("{what}\n");
                    if stage.is_empty() {
                        text.push_str(&render::run_text(r));
                    } else {
                        text.push_str(&render::stage_text(r, stage));
                    }
                    if prods.len() > 1 {
                        text.push_str(&format!(
                            "also recorded by {} other run stage(s)\n",
                            prods.len() - 1
                        ));
                    }
                    p.data(&text);
                }
                LineageFormat::Json => p.json_value(&serde_json::json!({
                    "kind": "object",
                    "object": id,
                    "producers": prods.iter().map(|(r, s, f)| serde_json::json!({
                        "run_id": r.id(), "stage": s, "file": f,
                    })).collect::<Vec<_>>(),
                    "record": r,
                })),
                LineageFormat::Openlineage => {
                    let job = format!("{}.{stage}", r.started.spec_name);
                    for e in lineage::openlineage::events(r) {
                        if e["job"]["name"] == job.as_str() {
                            p.data(&serde_json::to_string(&e).unwrap_or_default());
                        }
                    }
                }
            }
        }
    }
    Ok(EXIT_OK)
}

fn verify(store: Option<&Path>, p: &Printer) -> Result<u8> {
    let project = cwd_project(store)?;
    let report = ops::verify::verify(&project.store_dir)?;
    if p.json {
        p.json_value(&serde_json::json!({
            "ok": report.ok(),
            "report": report,
        }));
    } else {
        for (id, actual) in &report.corrupt {
            p.data(&format!("corrupt  {id}  (bytes hash to {actual})"));
        }
        for (id, from) in &report.missing {
            p.data(&format!("missing  {id}  (referenced by {from})"));
        }
        for (file, problem) in &report.tampered {
            p.data(&format!("tampered  {file}  ({problem})"));
        }
        for (file, note) in &report.unsealed {
            p.data(&format!("unsealed  {file}  ({note})"));
        }
        p.status(&format!(
            "checked {} objects ({} bytes): {} corrupt, {} missing; {} run records sealed, {} tampered, {} unsealed",
            report.objects,
            report.bytes,
            report.corrupt.len(),
            report.missing.len(),
            report.sealed_records,
            report.tampered.len(),
            report.unsealed.len()
        ));
    }
    if report.ok() {
        Ok(EXIT_OK)
    } else {
        if !p.json {
            let hint = if report.tampered.is_empty() {
                "run the spec that produced them again (`medrun run SPEC`; `medrun lineage HASH` names the producer): each stage or evaluation whose stored output is damaged runs again, and storing its bytes replaces the damaged objects"
            } else {
                "run records are never edited: restore a tampered record from the object that holds its sealed bytes (`cp .medrun/objects-v1/ab/cdef… .medrun/runs-v1/RUN.jsonl`), or from a copy of the store; run the spec again to replace damaged objects"
            };
            let first = report
                .tampered
                .first()
                .map(|(f, why)| format!(": {f}: {why}"))
                .unwrap_or_default();
            p.error(
                &format!(
                    "the store has {} corrupt and {} missing object(s), and {} tampered run record(s){first}",
                    report.corrupt.len(),
                    report.missing.len(),
                    report.tampered.len()
                ),
                Some(hint),
            );
        }
        Ok(EXIT_USER)
    }
}

fn promotions_verify(store: Option<&Path>, p: &Printer) -> Result<u8> {
    let project = cwd_project(store)?;
    let out = ops::promotions::verify_all(&project)?;
    if p.json {
        p.json_value(&serde_json::to_value(&out).unwrap_or_default());
    } else {
        for pr in &out.report.problems {
            p.data(&format!("{}: {}\n  hint: {}", pr.at, pr.message, pr.hint));
        }
        let h = &out.report.history;
        p.status(&format!(
            "verified {} promotion(s) of {} channel(s) against the store ({} bytes of checkpoints re-hashed) and {} commit(s) of git history{} in {:.2}s: {} problem(s)",
            out.report.entries,
            out.channels.len(),
            out.report.hashed_bytes,
            h.commits,
            if h.shallow { " (a shallow clone: older commits unseen)" } else { "" },
            out.seconds,
            out.report.problems.len()
        ));
    }
    if out.ok {
        Ok(EXIT_OK)
    } else {
        if !p.json
            && let Some(first) = out.report.problems.first()
        {
            let more = out.report.problems.len() - 1;
            p.error(
                &format!(
                    "promotions.yaml does not verify: {}: {}{}",
                    first.at,
                    first.message,
                    if more > 0 {
                        format!(" (and {more} more problem(s), listed above)")
                    } else {
                        String::new()
                    }
                ),
                Some(&format!(
                    "{}; no channel of this history can be used until it verifies",
                    first.hint
                )),
            );
        }
        Ok(EXIT_USER)
    }
}

fn gc(store: Option<&Path>, keep: &[String], dry_run: bool, p: &Printer) -> Result<u8> {
    let project = cwd_project(store)?;
    let report = ops::gc::gc(&project.root, &project.store_dir, keep, dry_run)?;
    if p.json {
        p.json_value(&serde_json::to_value(&report).unwrap_or_default());
    } else {
        let verb = if dry_run { "would delete" } else { "deleted" };
        p.status(&format!(
            "{verb} {} object(s) ({} bytes), kept {}; {} stale key record(s), {} temp file(s)",
            report.deleted.len(),
            report.deleted_bytes,
            report.kept,
            report.forgotten_keys.len(),
            report.temp_files_removed
        ));
    }
    Ok(EXIT_OK)
}
