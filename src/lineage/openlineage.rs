//! OpenLineage 2-0-2 RunEvents: per stage, a START event, then COMPLETE or FAIL. Datasets are
//! inputs (versioned by their blake3), artifacts are outputs (versioned by their object id), and
//! each stage's run points at the medrun run through the parent facet.

use serde_json::{Value, json};

use super::record::{RunRecord, StageState};

pub const SCHEMA_URL: &str =
    "https://openlineage.io/spec/2-0-2/OpenLineage.json#/definitions/RunEvent";
const PARENT_FACET: &str =
    "https://openlineage.io/spec/facets/1-0-1/ParentRunFacet.json#/$defs/ParentRunFacet";
const VERSION_FACET: &str = "https://openlineage.io/spec/facets/1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet";
pub const NAMESPACE: &str = "medrun";

fn producer() -> String {
    format!(
        "https://github.com/medrun/medrun/tree/v{}",
        env!("CARGO_PKG_VERSION")
    )
}

/// A UUID (version 8, RFC 9562 custom) derived from `seed`, so event ids are stable.
pub fn uuid_from(seed: &str) -> String {
    let h = blake3::hash(seed.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h.as_bytes()[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x: String = b.iter().map(|v| format!("{v:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..]
    )
}

fn version_facet(v: &str) -> Value {
    json!({"version": {"_producer": producer(), "_schemaURL": VERSION_FACET, "datasetVersion": v}})
}

/// The RunEvents of every stage of `r`, in order.
pub fn events(r: &RunRecord) -> Vec<Value> {
    let s = &r.started;
    let parent_run = uuid_from(&s.run_id);
    let mut out = Vec::new();
    for (p, st) in &r.stages {
        let run_id = uuid_from(&format!("{}/{}", s.run_id, p.name));
        let job = json!({"namespace": NAMESPACE, "name": format!("{}.{}", s.spec_name, p.name)});
        let run = json!({
            "runId": run_id,
            "facets": {"parent": {
                "_producer": producer(),
                "_schemaURL": PARENT_FACET,
                "run": {"runId": parent_run},
                "job": {"namespace": NAMESPACE, "name": s.spec_name},
            }},
        });
        let inputs: Vec<Value> = p
            .datasets
            .iter()
            .filter_map(|d| s.inputs.get(d))
            .map(|i| json!({"namespace": "file", "name": i.path, "facets": version_facet(&i.blake3)}))
            .collect();
        let event = |kind: &str, time: &str, outputs: Vec<Value>| {
            json!({
                "eventType": kind,
                "eventTime": time,
                "producer": producer(),
                "schemaURL": SCHEMA_URL,
                "run": run,
                "job": job,
                "inputs": inputs,
                "outputs": outputs,
            })
        };
        match st {
            StageState::Planned => {}
            StageState::Running { started_at } => out.push(event("START", started_at, vec![])),
            StageState::Cached { output, at } => {
                out.push(event("START", at, vec![]));
                out.push(event(
                    "COMPLETE",
                    at,
                    vec![json!({"namespace": "medrun-store", "name": output, "facets": version_facet(output)})],
                ));
            }
            StageState::Completed(c) => {
                out.push(event("START", &c.started_at, vec![]));
                let outputs = c
                    .artifacts
                    .iter()
                    .map(|(n, id)| {
                        json!({"namespace": "medrun-store", "name": format!("{}/{n}", c.output), "facets": version_facet(id)})
                    })
                    .collect();
                out.push(event("COMPLETE", &c.finished_at, outputs));
            }
            StageState::Failed { at, .. } => {
                out.push(event("START", at, vec![]));
                out.push(event("FAIL", at, vec![]));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_shape() {
        let u = uuid_from("x");
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "8");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"));
        assert_eq!(u, uuid_from("x"));
    }
}
