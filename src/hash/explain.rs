//! Why is a key different? Compares two key-input JSON documents and lists the fields that
//! changed, most significant first (like cargo's fingerprint `DirtyReason`).

use serde::Serialize;
use serde_json::Value;

/// One changed field: a dotted path, with the old and new values (`None` when absent).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub field: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Option<Value>| match v {
            None => "(absent)".to_string(),
            Some(v) => {
                let s = v.to_string();
                if s.len() > 80 {
                    format!(
                        "{}…",
                        &s[..s.char_indices().nth(77).map(|(i, _)| i).unwrap_or(s.len())]
                    )
                } else {
                    s
                }
            }
        };
        write!(
            f,
            "{}: {} → {}",
            self.field,
            show(&self.old),
            show(&self.new)
        )
    }
}

/// Top-level fields of stage key inputs, in the order a user cares about them.
const ORDER: &[&str] = &[
    "schema", "stage", "datasets", "run", "parent", "engine", "device",
];

fn rank(k: &str) -> usize {
    ORDER.iter().position(|o| *o == k).unwrap_or(ORDER.len())
}

/// Every leaf that differs between `old` and `new`, most significant first.
pub fn diff(old: &Value, new: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    walk("", old, new, &mut out, true);
    out
}

fn join(prefix: &str, k: &str) -> String {
    if prefix.is_empty() {
        k.to_string()
    } else {
        format!("{prefix}.{k}")
    }
}

fn walk(prefix: &str, old: &Value, new: &Value, out: &mut Vec<Change>, top: bool) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            if top {
                keys.sort_by_key(|k| (rank(k), (*k).clone()));
            }
            for k in keys {
                let p = join(prefix, k);
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => walk(&p, x, y, out, false),
                    (x, y) => out.push(Change {
                        field: p,
                        old: x.cloned(),
                        new: y.cloned(),
                    }),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                walk(&format!("{prefix}[{i}]"), x, y, out, false);
            }
        }
        (x, y) => {
            if x != y {
                out.push(Change {
                    field: prefix.to_string(),
                    old: Some(x.clone()),
                    new: Some(y.clone()),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stage_fields_come_before_engine() {
        let a = json!({"engine": {"v": 1}, "stage": {"optimizer": {"lr": 0.001}}, "parent": "x"});
        let b = json!({"engine": {"v": 2}, "stage": {"optimizer": {"lr": 0.0005}}, "parent": "x"});
        let d = diff(&a, &b);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].field, "stage.optimizer.lr");
        assert_eq!(d[1].field, "engine.v");
        assert_eq!(d[0].to_string(), "stage.optimizer.lr: 0.001 → 0.0005");
    }

    #[test]
    fn arrays_and_absent_fields() {
        let a = json!({"stage": {"datasets": ["a", "b"], "lora": null}});
        let b = json!({"stage": {"datasets": ["a", "c"]}});
        let d = diff(&a, &b);
        assert_eq!(d[0].field, "stage.datasets[1]");
        assert_eq!(d[1].field, "stage.lora");
        assert_eq!(d[1].new, None);
    }
}
