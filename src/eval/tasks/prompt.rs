//! Prompt templates: minijinja over one record's fields, configured like lm-evaluation-harness's
//! Jinja environment (undefined variables are errors, a trailing newline is kept, nothing is
//! HTML-escaped), plus Python string methods (`.strip()`, `.upper()`, ...) through
//! minijinja-contrib's pycompat.
//!
//! Every field of the record is a top-level variable (`{{ question }}`); fields whose names are
//! not identifiers (CSV columns such as `0` or an empty header) are reached through `doc`
//! (`{{ doc["0"] }}`), which is the whole record, unless the record has a field called `doc`.

use std::collections::BTreeMap;

use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};
use serde_json::Map;

/// The environment every eval template is compiled and rendered in.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    let mut syntax = minijinja::syntax::SyntaxConfig::builder();
    syntax.keep_trailing_newline(true);
    // `build` fails only on conflicting custom delimiters, which are not set here.
    if let Ok(s) = syntax.build() {
        env.set_syntax(s);
    }
    env
}

/// Whether `source` compiles; the error says where in the template (its own line) and why.
pub fn check(source: &str) -> Result<(), String> {
    let env = environment();
    env.template_from_str(source)
        .map(|_| ())
        .map_err(|e| describe(&e))
}

/// A one-line description of a template error: kind, detail and the template's own line.
pub fn describe(e: &minijinja::Error) -> String {
    let mut out = e.kind().to_string();
    if let Some(d) = e.detail() {
        out.push_str(": ");
        out.push_str(d);
    }
    if let Some(l) = e.line() {
        out.push_str(&format!(" (template line {l})"));
    }
    out
}

/// A set of named templates compiled once.
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    pub fn new() -> Templates {
        Templates { env: environment() }
    }

    pub fn add(&mut self, name: &str, source: &str) -> Result<(), minijinja::Error> {
        self.env
            .add_template_owned(name.to_string(), source.to_string())
    }

    /// Render template `name` over a record's fields.
    pub fn render(
        &self,
        name: &str,
        fields: &Map<String, serde_json::Value>,
    ) -> Result<String, minijinja::Error> {
        self.env.get_template(name)?.render(context(fields))
    }
}

impl Default for Templates {
    fn default() -> Self {
        Templates::new()
    }
}

/// The template context of a record: its fields, and `doc` for the whole record.
pub fn context(fields: &Map<String, serde_json::Value>) -> Value {
    let mut ctx: BTreeMap<String, Value> = fields
        .iter()
        .map(|(k, v)| (k.clone(), to_value(v)))
        .collect();
    if !ctx.contains_key("doc") {
        ctx.insert(
            "doc".into(),
            to_value(&serde_json::Value::Object(fields.clone())),
        );
    }
    Value::from(ctx)
}

fn to_value(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::from(()),
        J::Bool(b) => Value::from(*b),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        J::String(s) => Value::from(s.as_str()),
        J::Array(a) => Value::from(a.iter().map(to_value).collect::<Vec<_>>()),
        J::Object(o) => Value::from(
            o.iter()
                .map(|(k, v)| (k.clone(), to_value(v)))
                .collect::<BTreeMap<_, _>>(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(src: &str, rec: serde_json::Value) -> Result<String, minijinja::Error> {
        let mut t = Templates::new();
        t.add("t", src).unwrap();
        t.render("t", rec.as_object().unwrap())
    }

    #[test]
    fn fields_join_strip_and_doc() {
        let r = json!({"CONTEXTS": ["a", "b"], "QUESTION": " q? ", "0": "x"});
        let out = render(
            "Abstract: {{ CONTEXTS | join(\"\\n\") }}\nQuestion: {{ QUESTION.strip() }} {{ doc[\"0\"] }}\n",
            r,
        )
        .unwrap();
        assert_eq!(out, "Abstract: a\nb\nQuestion: q? x\n");
    }

    #[test]
    fn undefined_field_is_an_error_and_nothing_is_escaped() {
        let e = render("{{ missing }}", json!({"a": 1})).unwrap_err();
        assert_eq!(e.kind(), minijinja::ErrorKind::UndefinedError);
        assert_eq!(render("{{ a }}", json!({"a": "<&'>"})).unwrap(), "<&'>");
        assert_eq!(render("{{ a }}\n", json!({"a": 1})).unwrap(), "1\n");
    }

    #[test]
    fn check_names_the_template_line() {
        assert!(check("{{ a }}").is_ok());
        let e = check("ok\n{{ a ").unwrap_err();
        assert!(e.contains("template line 2"), "{e}");
    }
}
