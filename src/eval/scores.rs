//! The gate's view of stored results: metric values with their direction, and per-item outcomes
//! (from `samples.jsonl`) keyed by document hash, so a paired test compares the same items.

use std::collections::BTreeMap;

use serde_json::Value;

use super::gate::{Better, Metric, Outcome, Scores, Status};
use super::suite::Results;

/// Which way a metric improves: rates of wrong behaviour and perplexities go down.
pub fn better(metric: &str) -> Better {
    let leaf = metric.rsplit('/').next().unwrap_or(metric);
    if leaf.contains("perplexity") || leaf == "bits_per_byte" || leaf.starts_with("over_refusal") {
        Better::Lower
    } else {
        Better::Higher
    }
}

/// Scores of one or more suites' results on the same checkpoint. `samples` holds, per suite,
/// the parsed lines of its `samples.jsonl` grouped by task.
pub fn scores_of(results: &[(&Results, &BTreeMap<String, Vec<Value>>)]) -> Scores {
    let mut status = Status::Complete;
    let mut metrics = BTreeMap::new();
    let mut items: BTreeMap<String, BTreeMap<String, Outcome>> = BTreeMap::new();
    for (r, samples) in results {
        if !r.complete() {
            status = Status::Incomplete;
        }
        for (name, value) in &r.metrics {
            metrics.insert(
                name.clone(),
                Metric {
                    value: *value,
                    better: better(name),
                },
            );
        }
        for (task, lines) in samples.iter() {
            for s in lines {
                let Some(doc) = s.get("doc_hash").and_then(Value::as_str) else {
                    continue;
                };
                let Some(per) = s.get("scores").and_then(Value::as_object) else {
                    continue;
                };
                for (m, v) in per {
                    // Numbers, or "inf", "-inf", "nan" (crate::eval::number).
                    let Some(x) = super::number::from_json(v) else {
                        continue;
                    };
                    let binary = x == 0.0 || x == 1.0;
                    items
                        .entry(format!("{}/{task}/{m}", r.suite))
                        .or_default()
                        .insert(
                            doc.to_string(),
                            Outcome {
                                correct: binary.then_some(x == 1.0),
                                score: Some(x),
                            },
                        );
                }
            }
        }
    }
    Scores {
        status,
        metrics,
        items,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directions() {
        assert_eq!(better("s/mc/acc"), Better::Higher);
        assert_eq!(better("s/ref/over_refusal_rate"), Better::Lower);
        assert_eq!(better("s/ppl/word_perplexity"), Better::Lower);
        assert_eq!(better("s/ppl/bits_per_byte"), Better::Lower);
        assert_eq!(better("s/ref/gap"), Better::Higher);
    }
}
