//! Chat templates: a conversation rendered as text segments, each marked as supervised
//! (`train: true`, an assistant answer and its end marker) or not (everything else).
//!
//! Conversations are first normalised the way MedicalGPT does ([`normalize`]). Builtin templates
//! produce their segments directly. A Jinja template (a Hugging Face `chat_template`) is rendered
//! with minijinja, configured like transformers' sandbox (`trim_blocks`, `lstrip_blocks`, loop
//! controls, `raise_exception`, Python string methods); its segments are found by rendering
//! prefixes of the conversation, see [`ChatTemplate::render`].
//!
//! Whitespace that separates turns always stays unsupervised and with the text after an answer,
//! so each segment can be tokenized on its own without a BPE merge across a segment boundary
//! swallowing the answer's first byte: leading spaces belong to the answer (`llama2`), trailing
//! newlines to the next turn (`chatml`).

use std::collections::BTreeMap;

use minijinja::value::Kwargs;
use minijinja::{AutoEscape, Environment, Error, ErrorKind, Value};

use crate::spec::BUILTIN_TEMPLATES;

/// Bumped whenever a builtin template's rendering changes, so hashes that include
/// [`ChatTemplate::hash_input`] change with it.
const BUILTIN_VERSION: u32 = 1;

/// Qwen's system prompt when the conversation gives none.
pub const QWEN_DEFAULT_SYSTEM: &str = "You are a helpful assistant.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    /// The role's name in chat templates.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub role: Role,
    pub content: String,
}

impl Turn {
    pub fn new(role: Role, content: impl Into<String>) -> Turn {
        Turn {
            role,
            content: content.into(),
        }
    }

    pub fn system(content: impl Into<String>) -> Turn {
        Turn::new(Role::System, content)
    }

    pub fn user(content: impl Into<String>) -> Turn {
        Turn::new(Role::User, content)
    }

    pub fn assistant(content: impl Into<String>) -> Turn {
        Turn::new(Role::Assistant, content)
    }
}

/// A piece of rendered text; `train` marks the tokens that carry the loss.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub text: String,
    pub train: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error(
        "unknown chat template `{name}`: the builtin templates are {}; for others give a Jinja file",
        BUILTIN_TEMPLATES.join(", ")
    )]
    UnknownBuiltin { name: String },
    #[error("chat template {origin}{}: {message}", line_suffix(*.line))]
    Jinja {
        origin: String,
        line: Option<usize>,
        message: String,
        #[source]
        source: Error,
    },
    #[error(
        "chat template {origin}: the conversation rendered up to assistant turn {turn} {what}, so \
         the supervised text cannot be located; the template must render every earlier part of a \
         conversation as a prefix of the whole (use a builtin template, or fix the template)"
    )]
    NotAPrefix {
        origin: String,
        /// 1-based, counting assistant turns of the normalised conversation.
        turn: usize,
        what: &'static str,
    },
    #[error(
        "a prompt must end with a user turn, but after normalisation the conversation {}",
        match last { Some(r) => format!("ends with a turn of role `{}`", r.as_str()), None => "is empty".to_string() }
    )]
    PromptEnd { last: Option<Role> },
}

fn line_suffix(line: Option<usize>) -> String {
    line.map(|l| format!(", line {l}")).unwrap_or_default()
}

fn jinja_error(origin: &str, source: Error) -> TemplateError {
    let message = match source.detail() {
        Some(d) => format!("{}: {d}", source.kind()),
        None => source.kind().to_string(),
    };
    TemplateError::Jinja {
        origin: origin.to_string(),
        line: source.line(),
        message,
        source,
    }
}

/// Normalise a conversation as MedicalGPT does:
/// - a system turn sets the system prompt (the last one wins); it is moved to the front;
/// - consecutive user turns are joined with `"\n"`;
/// - an assistant turn that does not follow a user turn is dropped (a conversation opening with
///   the assistant, or a second answer in a row).
pub fn normalize(turns: &[Turn]) -> Vec<Turn> {
    let mut system = None;
    let mut out: Vec<Turn> = Vec::with_capacity(turns.len());
    for t in turns {
        match t.role {
            Role::System => system = Some(t.content.clone()),
            Role::User => match out.last_mut() {
                Some(last) if last.role == Role::User => {
                    last.content.push('\n');
                    last.content.push_str(&t.content);
                }
                _ => out.push(t.clone()),
            },
            Role::Assistant => {
                if out.last().is_some_and(|l| l.role == Role::User) {
                    out.push(t.clone());
                }
            }
        }
    }
    if let Some(s) = system {
        out.insert(0, Turn::system(s));
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Builtin {
    ChatMl,
    Qwen,
    Llama2,
    Llama3,
    Baichuan2,
}

impl Builtin {
    fn parse(name: &str) -> Option<Builtin> {
        Some(match name {
            "chatml" => Builtin::ChatMl,
            "qwen" => Builtin::Qwen,
            "llama2" => Builtin::Llama2,
            "llama3" => Builtin::Llama3,
            "baichuan2" => Builtin::Baichuan2,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Builtin::ChatMl => "chatml",
            Builtin::Qwen => "qwen",
            Builtin::Llama2 => "llama2",
            Builtin::Llama3 => "llama3",
            Builtin::Baichuan2 => "baichuan2",
        }
    }
}

enum Kind {
    Builtin(Builtin),
    Jinja {
        source: String,
        origin: String,
        env: Box<Environment<'static>>,
    },
}

/// A chat template with the tokenizer's end-of-sequence (and optional beginning-of-sequence)
/// token text.
pub struct ChatTemplate {
    kind: Kind,
    eos: String,
    bos: Option<String>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("name", &self.name())
            .field("eos", &self.eos)
            .field("bos", &self.bos)
            .finish_non_exhaustive()
    }
}

/// Accumulates segments, merging neighbours of the same kind and skipping empty text.
#[derive(Default)]
struct Segments(Vec<Segment>);

impl Segments {
    fn push(&mut self, text: &str, train: bool) {
        if text.is_empty() {
            return;
        }
        match self.0.last_mut() {
            Some(last) if last.train == train => last.text.push_str(text),
            _ => self.0.push(Segment {
                text: text.to_string(),
                train,
            }),
        }
    }

    fn context(&mut self, text: &str) {
        self.push(text, false);
    }

    fn answer(&mut self, text: &str) {
        self.push(text, true);
    }
}

/// Concatenated text of segments.
pub fn join(segments: &[Segment]) -> String {
    segments.iter().map(|s| s.text.as_str()).collect()
}

impl ChatTemplate {
    /// A builtin template by its spec name (see [`BUILTIN_TEMPLATES`]):
    /// - `chatml`: `<|im_start|>{role}\n{content}<|im_end|>\n` per turn; the answer and its
    ///   `<|im_end|>` are supervised, the newline after it is not. No default system prompt.
    /// - `qwen`: `chatml` with the system prompt [`QWEN_DEFAULT_SYSTEM`] when none is given.
    /// - `llama2`: `{bos}[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {answer} {eos}` per
    ///   exchange (the system block only in the first; `bos` is omitted when `None`); supervised:
    ///   ` {answer} {eos}`.
    /// - `llama3`: `<|begin_of_text|>`, then per turn
    ///   `<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>`; supervised:
    ///   `{answer}<|eot_id|>`. The generation prompt is the assistant header.
    /// - `baichuan2`: `{system}<reserved_106>{user}<reserved_107>{answer}{eos}`; supervised:
    ///   `{answer}{eos}`. EOS follows *every* answer, as in MedicalGPT (Baichuan2's own
    ///   fine-tuning code puts one EOS at the very end); this is medrun's deliberate choice.
    ///
    /// Contents are used as given (not trimmed). `bos` is used by `llama2` only; `llama3` always
    /// writes `<|begin_of_text|>`, its markers being part of the format.
    pub fn builtin(
        name: &str,
        eos: &str,
        bos: Option<&str>,
    ) -> Result<ChatTemplate, TemplateError> {
        let b = Builtin::parse(name).ok_or_else(|| TemplateError::UnknownBuiltin {
            name: name.to_string(),
        })?;
        Ok(ChatTemplate {
            kind: Kind::Builtin(b),
            eos: eos.to_string(),
            bos: bos.map(str::to_string),
        })
    }

    /// A Jinja chat template (Hugging Face's `chat_template`); `origin` (a file name) names it in
    /// errors. The template sees `messages` (`[{role, content}]`), `add_generation_prompt`,
    /// `eos_token`, `bos_token` (undefined when `None`), and the functions `raise_exception` and
    /// `strftime_now`. `strftime_now` formats a fixed date, 26 Jul 2024 00:00:00, not the clock:
    /// training data must not depend on the day it was rendered.
    pub fn jinja(
        source: &str,
        eos: &str,
        bos: Option<&str>,
        origin: &str,
    ) -> Result<ChatTemplate, TemplateError> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| jinja_error(origin, e))?;
        env.set_syntax(syntax);
        // The name is a file name such as `tokenizer_config.json`; never escape by extension.
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_template_owned(origin.to_string(), source.to_string())
            .map_err(|e| jinja_error(origin, e))?;
        Ok(ChatTemplate {
            kind: Kind::Jinja {
                source: source.to_string(),
                origin: origin.to_string(),
                env: Box::new(env),
            },
            eos: eos.to_string(),
            bos: bos.map(str::to_string),
        })
    }

    /// The builtin's name, or the Jinja template's origin.
    pub fn name(&self) -> &str {
        match &self.kind {
            Kind::Builtin(b) => b.name(),
            Kind::Jinja { origin, .. } => origin,
        }
    }

    /// Text that identifies the template for hashing: the builtin name (with a version of the
    /// builtin renderers) or the full Jinja source, plus the EOS and BOS texts. The origin (a
    /// path) is deliberately left out.
    pub fn hash_input(&self) -> String {
        let head = match &self.kind {
            Kind::Builtin(b) => format!("builtin-v{BUILTIN_VERSION}:{}", b.name()),
            Kind::Jinja { .. } => "jinja".to_string(),
        };
        let mut s = format!(
            "chat-template\n{head}\neos:{:?}\nbos:{:?}\n",
            self.eos, self.bos
        );
        if let Kind::Jinja { source, .. } = &self.kind {
            s.push_str(source);
        }
        s
    }

    /// The whole (normalised) conversation as segments; their concatenation is the full render.
    ///
    /// For a Jinja template, the supervised text of assistant turn `i` is the difference between
    /// the conversation rendered up to and including turn `i` and the one before it rendered
    /// with the generation prompt; whitespace trailing that difference is left unsupervised (it
    /// separates turns). Each shorter render must be a prefix of the longer one.
    pub fn render(&self, turns: &[Turn]) -> Result<Vec<Segment>, TemplateError> {
        let turns = normalize(turns);
        match &self.kind {
            Kind::Builtin(b) => Ok(self.builtin_segments(*b, &turns, false)),
            Kind::Jinja { origin, .. } => self.jinja_segments(&turns, origin),
        }
    }

    /// The conversation (which must end with a user turn after normalisation) followed by the
    /// generation prompt: the prompt for DPO and for evaluation.
    pub fn render_prompt(&self, turns: &[Turn]) -> Result<String, TemplateError> {
        let turns = normalize(turns);
        let last = turns.last().map(|t| t.role);
        if last != Some(Role::User) {
            return Err(TemplateError::PromptEnd { last });
        }
        match &self.kind {
            Kind::Builtin(b) => Ok(join(&self.builtin_segments(*b, &turns, true))),
            Kind::Jinja { .. } => self.jinja_render(&turns, true),
        }
    }

    fn builtin_segments(
        &self,
        b: Builtin,
        turns: &[Turn],
        generation_prompt: bool,
    ) -> Vec<Segment> {
        let mut out = Segments::default();
        match b {
            Builtin::ChatMl | Builtin::Qwen => {
                let has_system = turns.first().is_some_and(|t| t.role == Role::System);
                if b == Builtin::Qwen && !has_system {
                    out.context(&format!(
                        "<|im_start|>system\n{QWEN_DEFAULT_SYSTEM}<|im_end|>\n"
                    ));
                }
                for t in turns {
                    let head = format!("<|im_start|>{}\n", t.role.as_str());
                    if t.role == Role::Assistant {
                        out.context(&head);
                        out.answer(&format!("{}<|im_end|>", t.content));
                        out.context("\n");
                    } else {
                        out.context(&format!("{head}{}<|im_end|>\n", t.content));
                    }
                }
                if generation_prompt {
                    out.context("<|im_start|>assistant\n");
                }
            }
            Builtin::Llama2 => {
                let bos = self.bos.as_deref().unwrap_or("");
                let mut system = turns
                    .first()
                    .filter(|t| t.role == Role::System)
                    .map(|t| format!("<<SYS>>\n{}\n<</SYS>>\n\n", t.content));
                for t in turns {
                    match t.role {
                        Role::System => {}
                        Role::User => {
                            let sys = system.take().unwrap_or_default();
                            out.context(&format!("{bos}[INST] {sys}{} [/INST]", t.content));
                        }
                        Role::Assistant => out.answer(&format!(" {} {}", t.content, self.eos)),
                    }
                }
            }
            Builtin::Llama3 => {
                out.context("<|begin_of_text|>");
                for t in turns {
                    let head = format!(
                        "<|start_header_id|>{}<|end_header_id|>\n\n",
                        t.role.as_str()
                    );
                    if t.role == Role::Assistant {
                        out.context(&head);
                        out.answer(&format!("{}<|eot_id|>", t.content));
                    } else {
                        out.context(&format!("{head}{}<|eot_id|>", t.content));
                    }
                }
                if generation_prompt {
                    out.context("<|start_header_id|>assistant<|end_header_id|>\n\n");
                }
            }
            Builtin::Baichuan2 => {
                for t in turns {
                    match t.role {
                        Role::System => out.context(&t.content),
                        Role::User => {
                            out.context(&format!("<reserved_106>{}<reserved_107>", t.content))
                        }
                        Role::Assistant => out.answer(&format!("{}{}", t.content, self.eos)),
                    }
                }
            }
        }
        out.0
    }

    fn jinja_render(
        &self,
        turns: &[Turn],
        generation_prompt: bool,
    ) -> Result<String, TemplateError> {
        let Kind::Jinja { origin, env, .. } = &self.kind else {
            return Ok(String::new());
        };
        let messages: Vec<Value> = turns
            .iter()
            .map(|t| {
                let mut m = BTreeMap::new();
                m.insert("role".to_string(), Value::from(t.role.as_str()));
                m.insert("content".to_string(), Value::from(t.content.as_str()));
                Value::from(m)
            })
            .collect();
        let mut ctx = BTreeMap::new();
        ctx.insert("messages".to_string(), Value::from(messages));
        ctx.insert(
            "add_generation_prompt".to_string(),
            Value::from(generation_prompt),
        );
        ctx.insert("eos_token".to_string(), Value::from(self.eos.as_str()));
        if let Some(bos) = &self.bos {
            ctx.insert("bos_token".to_string(), Value::from(bos.as_str()));
        }
        env.get_template(origin)
            .and_then(|t| t.render(Value::from(ctx)))
            .map_err(|e| jinja_error(origin, e))
    }

    fn jinja_segments(&self, turns: &[Turn], origin: &str) -> Result<Vec<Segment>, TemplateError> {
        let full = self.jinja_render(turns, false)?;
        let mut out = Segments::default();
        let mut pos = 0;
        let mut answer_no = 0;
        for (i, t) in turns.iter().enumerate() {
            if t.role != Role::Assistant {
                continue;
            }
            answer_no += 1;
            let not_prefix = |what| TemplateError::NotAPrefix {
                origin: origin.to_string(),
                turn: answer_no,
                what,
            };
            let before = self.jinja_render(&turns[..i], true)?;
            let upto = self.jinja_render(&turns[..=i], false)?;
            if !upto.starts_with(&before) {
                return Err(not_prefix(
                    "(with the generation prompt) is not a prefix of it rendered with that turn",
                ));
            }
            if !full.starts_with(&upto) {
                return Err(not_prefix("is not a prefix of the whole conversation"));
            }
            if before.len() < pos {
                return Err(not_prefix(
                    "(with the generation prompt) is shorter than the render up to the previous answer",
                ));
            }
            let answer = upto[before.len()..].trim_end();
            out.context(&full[pos..before.len()]);
            out.answer(answer);
            pos = before.len() + answer.len();
        }
        out.context(&full[pos..]);
        Ok(out.0)
    }
}

/// `raise_exception(message)`: how Hugging Face templates reject a conversation.
fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// `strftime_now(format)` on a fixed date (Friday 26 Jul 2024, 00:00:00), for reproducibility.
fn strftime_now(format: String) -> Result<Value, Error> {
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(d) = chars.next() else {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "strftime_now: format ends with a lone `%`",
            ));
        };
        out.push_str(match d {
            'd' => "26",
            'e' => "26",
            'm' => "07",
            'Y' => "2024",
            'y' => "24",
            'b' | 'h' => "Jul",
            'B' => "July",
            'a' => "Fri",
            'A' => "Friday",
            'j' => "208",
            'H' | 'M' | 'S' | 'I' => {
                if d == 'I' {
                    "12"
                } else {
                    "00"
                }
            }
            'p' => "AM",
            '%' => "%",
            other => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("strftime_now: unsupported directive %{other}"),
                ));
            }
        });
    }
    Ok(Value::from(out))
}

/// `tojson` as transformers defines it: Python's `json.dumps(x, ensure_ascii=False, indent=...,
/// separators=..., sort_keys=...)`, without minijinja's HTML escaping of `<`, `>`, `&` and `'`.
fn tojson(value: &Value, indent: Option<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let indent = match indent {
        Some(v) => Some(v),
        None => kwargs.get::<Option<Value>>("indent")?,
    };
    let indent = match indent {
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => Some(usize::try_from(v)?),
        None => None,
    };
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    let ensure_ascii = kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false);
    let separators = kwargs.get::<Option<Vec<String>>>("separators")?;
    kwargs.assert_all_used()?;
    let (item_sep, key_sep) = match separators {
        Some(s) if s.len() == 2 => (s[0].clone(), s[1].clone()),
        Some(_) => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be a pair (item, key)",
            ));
        }
        None if indent.is_some() => (",".to_string(), ": ".to_string()),
        None => (", ".to_string(), ": ".to_string()),
    };
    let style = JsonStyle {
        indent,
        item_sep,
        key_sep,
        sort_keys,
        ensure_ascii,
    };
    let mut out = String::new();
    style.write(&mut out, value, 0)?;
    Ok(Value::from_safe_string(out))
}

struct JsonStyle {
    indent: Option<usize>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
    ensure_ascii: bool,
}

impl JsonStyle {
    fn newline(&self, out: &mut String, depth: usize) {
        if let Some(n) = self.indent {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', n * depth));
        }
    }

    fn string(&self, out: &mut String, s: &str) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{08}' => out.push_str("\\b"),
                '\u{0c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 || (self.ensure_ascii && !c.is_ascii()) => {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{u:04x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }

    fn items(
        &self,
        out: &mut String,
        depth: usize,
        open: char,
        close: char,
        items: Vec<(Option<Value>, Value)>,
    ) -> Result<(), Error> {
        out.push(open);
        if items.is_empty() {
            out.push(close);
            return Ok(());
        }
        let sep = if self.indent.is_some() {
            self.item_sep.trim_end().to_string()
        } else {
            self.item_sep.clone()
        };
        for (i, (key, v)) in items.iter().enumerate() {
            if i > 0 {
                out.push_str(&sep);
            }
            self.newline(out, depth + 1);
            if let Some(k) = key {
                match k.as_str() {
                    Some(s) => self.string(out, s),
                    None => self.string(out, &k.to_string()),
                }
                out.push_str(&self.key_sep);
            }
            self.write(out, v, depth + 1)?;
        }
        self.newline(out, depth);
        out.push(close);
        Ok(())
    }

    fn write(&self, out: &mut String, value: &Value, depth: usize) -> Result<(), Error> {
        use minijinja::value::ValueKind;
        match value.kind() {
            ValueKind::Undefined | ValueKind::None => out.push_str("null"),
            ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
            ValueKind::Number => {
                if value.is_integer() {
                    out.push_str(&value.to_string());
                } else {
                    let f = f64::try_from(value.clone())?;
                    if f.is_nan() {
                        out.push_str("NaN");
                    } else if f.is_infinite() {
                        out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
                    } else {
                        out.push_str(&format!("{f:?}"));
                    }
                }
            }
            ValueKind::String => self.string(out, value.as_str().unwrap_or_default()),
            ValueKind::Map => {
                let mut keys: Vec<Value> = value.try_iter()?.collect();
                if self.sort_keys {
                    keys.sort();
                }
                let mut items = Vec::with_capacity(keys.len());
                for k in keys {
                    let v = value.get_item(&k)?;
                    items.push((Some(k), v));
                }
                self.items(out, depth, '{', '}', items)?;
            }
            ValueKind::Seq | ValueKind::Iterable => {
                let items = value.try_iter()?.map(|v| (None, v)).collect();
                self.items(out, depth, '[', ']', items)?;
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("tojson: cannot serialize a {} value", value.kind()),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dialogue() -> Vec<Turn> {
        vec![
            Turn::system("You are a careful doctor."),
            Turn::user("My child has a fever."),
            Turn::assistant("How old is the child?"),
            Turn::user("One year old."),
            Turn::assistant("See a paediatrician."),
        ]
    }

    fn trained(segments: &[Segment]) -> Vec<&str> {
        segments
            .iter()
            .filter(|s| s.train)
            .map(|s| s.text.as_str())
            .collect()
    }

    fn check(name: &str, eos: &str, bos: Option<&str>, full: &str, answers: &[&str]) {
        let t = ChatTemplate::builtin(name, eos, bos).unwrap();
        let segs = t.render(&dialogue()).unwrap();
        assert_eq!(join(&segs), full, "{name}");
        assert_eq!(trained(&segs), answers, "{name}");
        // Alternating, never empty.
        assert!(segs.iter().all(|s| !s.text.is_empty()));
        assert!(segs.windows(2).all(|w| w[0].train != w[1].train));
    }

    #[test]
    fn chatml() {
        check(
            "chatml",
            "<|im_end|>",
            None,
            "<|im_start|>system\nYou are a careful doctor.<|im_end|>\n\
             <|im_start|>user\nMy child has a fever.<|im_end|>\n\
             <|im_start|>assistant\nHow old is the child?<|im_end|>\n\
             <|im_start|>user\nOne year old.<|im_end|>\n\
             <|im_start|>assistant\nSee a paediatrician.<|im_end|>\n",
            &[
                "How old is the child?<|im_end|>",
                "See a paediatrician.<|im_end|>",
            ],
        );
    }

    #[test]
    fn qwen_adds_default_system_only_when_missing() {
        check(
            "qwen",
            "<|endoftext|>",
            None,
            "<|im_start|>system\nYou are a careful doctor.<|im_end|>\n\
             <|im_start|>user\nMy child has a fever.<|im_end|>\n\
             <|im_start|>assistant\nHow old is the child?<|im_end|>\n\
             <|im_start|>user\nOne year old.<|im_end|>\n\
             <|im_start|>assistant\nSee a paediatrician.<|im_end|>\n",
            &[
                "How old is the child?<|im_end|>",
                "See a paediatrician.<|im_end|>",
            ],
        );
        let t = ChatTemplate::builtin("qwen", "<|endoftext|>", None).unwrap();
        let p = t.render_prompt(&[Turn::user("发烧怎么办？")]).unwrap();
        assert_eq!(
            p,
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n\
             <|im_start|>user\n发烧怎么办？<|im_end|>\n<|im_start|>assistant\n"
        );
        let t = ChatTemplate::builtin("chatml", "<|im_end|>", None).unwrap();
        let p = t.render_prompt(&[Turn::user("hi")]).unwrap();
        assert_eq!(p, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn llama2() {
        check(
            "llama2",
            "</s>",
            Some("<s>"),
            "<s>[INST] <<SYS>>\nYou are a careful doctor.\n<</SYS>>\n\nMy child has a fever. [/INST] \
             How old is the child? </s>\
             <s>[INST] One year old. [/INST] See a paediatrician. </s>",
            &[" How old is the child? </s>", " See a paediatrician. </s>"],
        );
        let t = ChatTemplate::builtin("llama2", "</s>", None).unwrap();
        let p = t.render_prompt(&[Turn::user("hi")]).unwrap();
        assert_eq!(p, "[INST] hi [/INST]");
    }

    #[test]
    fn llama3() {
        check(
            "llama3",
            "<|eot_id|>",
            Some("<|begin_of_text|>"),
            "<|begin_of_text|>\
             <|start_header_id|>system<|end_header_id|>\n\nYou are a careful doctor.<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nMy child has a fever.<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\nHow old is the child?<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nOne year old.<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\nSee a paediatrician.<|eot_id|>",
            &[
                "How old is the child?<|eot_id|>",
                "See a paediatrician.<|eot_id|>",
            ],
        );
        let t = ChatTemplate::builtin("llama3", "<|eot_id|>", None).unwrap();
        let p = t.render_prompt(&[Turn::user("hi")]).unwrap();
        assert_eq!(
            p,
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\n"
        );
    }

    #[test]
    fn baichuan2_puts_eos_after_every_answer() {
        check(
            "baichuan2",
            "</s>",
            Some("<s>"),
            "You are a careful doctor.<reserved_106>My child has a fever.<reserved_107>\
             How old is the child?</s><reserved_106>One year old.<reserved_107>See a paediatrician.</s>",
            &["How old is the child?</s>", "See a paediatrician.</s>"],
        );
        let t = ChatTemplate::builtin("baichuan2", "</s>", None).unwrap();
        let p = t.render_prompt(&[Turn::user("发烧怎么办？")]).unwrap();
        assert_eq!(p, "<reserved_106>发烧怎么办？<reserved_107>");
    }

    #[test]
    fn every_spec_builtin_is_known() {
        for name in BUILTIN_TEMPLATES {
            let t = ChatTemplate::builtin(name, "</s>", None).unwrap();
            assert_eq!(t.name(), *name);
        }
        let err = ChatTemplate::builtin("vicuna", "</s>", None).unwrap_err();
        assert!(err.to_string().contains("baichuan2, chatml"), "{err}");
    }

    #[test]
    fn normalisation_rules() {
        let turns = vec![
            Turn::assistant("dropped: no user before it"),
            Turn::user("first"),
            Turn::user("second"),
            Turn::system("be brief"),
            Turn::assistant("answer"),
            Turn::assistant("dropped: second answer in a row"),
            Turn::user("more"),
        ];
        assert_eq!(
            normalize(&turns),
            vec![
                Turn::system("be brief"),
                Turn::user("first\nsecond"),
                Turn::assistant("answer"),
                Turn::user("more"),
            ]
        );
        assert_eq!(
            normalize(&[Turn::system("a"), Turn::system("b")]),
            vec![Turn::system("b")]
        );
        assert!(normalize(&[]).is_empty());
        // A trailing user turn is rendered as unsupervised text.
        let t = ChatTemplate::builtin("chatml", "<|im_end|>", None).unwrap();
        let segs = t.render(&turns).unwrap();
        assert_eq!(trained(&segs), ["answer<|im_end|>"]);
        assert!(join(&segs).ends_with("<|im_start|>user\nmore<|im_end|>\n"));
    }

    #[test]
    fn prompt_must_end_with_user() {
        let t = ChatTemplate::builtin("chatml", "<|im_end|>", None).unwrap();
        let err = t
            .render_prompt(&[Turn::user("q"), Turn::assistant("a")])
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("ends with a turn of role `assistant`"),
            "{err}"
        );
        let err = t.render_prompt(&[]).unwrap_err();
        assert!(err.to_string().contains("is empty"), "{err}");
    }

    /// A ChatML template in the Hugging Face style, written for this test.
    const CHATML_JINJA: &str = r#"{#- ChatML: every message framed by im_start/im_end -#}
{% for m in messages %}
    {% if m.role not in ['system', 'user', 'assistant'] %}
        {{ raise_exception('Unexpected role: ' ~ m.role) }}
    {% endif %}
    {{- '<|im_start|>' ~ m.role ~ '\n' ~ m['content'] ~ '<|im_end|>\n' -}}
{% endfor %}
{% if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' -}}
{% endif %}
"#;

    #[test]
    fn jinja_chatml_matches_builtin() {
        let jinja = ChatTemplate::jinja(CHATML_JINJA, "<|im_end|>", None, "chatml.jinja").unwrap();
        let builtin = ChatTemplate::builtin("chatml", "<|im_end|>", None).unwrap();
        for turns in [
            dialogue(),
            dialogue()[1..].to_vec(),
            vec![Turn::user("发烧怎么办？"), Turn::assistant("多喝水。\n")],
        ] {
            assert_eq!(
                jinja.render(&turns).unwrap(),
                builtin.render(&turns).unwrap()
            );
        }
        let prompt = vec![Turn::system("s"), Turn::user("q")];
        assert_eq!(
            jinja.render_prompt(&prompt).unwrap(),
            builtin.render_prompt(&prompt).unwrap()
        );
    }

    #[test]
    fn jinja_sees_hf_variables_and_helpers() {
        let src = "{{ bos_token }}|{{ eos_token }}|{{ messages | length }}|\
                   {{ messages[0].content.strip().upper() }}|{{ strftime_now('%d %b %Y') }}|\
                   {% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m.role }}{% endfor %}|\
                   {{ {'a': '<b>&', 'n': [1, 2.5, none, true]} | tojson }}";
        let t = ChatTemplate::jinja(src, "</s>", Some("<s>"), "t.json").unwrap();
        let segs = t.render(&[Turn::user("  hi ")]).unwrap();
        assert_eq!(
            join(&segs),
            "<s>|</s>|1|HI|26 Jul 2024|user|{\"a\": \"<b>&\", \"n\": [1, 2.5, null, true]}"
        );
        // `bos_token` is undefined without a BOS, which renders as nothing.
        let t = ChatTemplate::jinja("[{{ bos_token }}]", "</s>", None, "t").unwrap();
        assert_eq!(join(&t.render(&[Turn::user("x")]).unwrap()), "[]");
    }

    #[test]
    fn jinja_errors_name_origin_and_line() {
        let err = ChatTemplate::jinja(
            "{% for m in messages %}\n{{ m.content }}\n",
            "</s>",
            None,
            "broken.jinja",
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("chat template broken.jinja, line "),
            "{msg}"
        );
        assert!(msg.contains("syntax error"), "{msg}");

        // `raise_exception` reports the template's message and where it was raised.
        let src = "\n{% if messages[0].role != 'system' %}{{ raise_exception('a system prompt is required') }}{% endif %}";
        let t = ChatTemplate::jinja(src, "</s>", None, "strict.jinja").unwrap();
        let err = t.render(&[Turn::user("q")]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("strict.jinja, line 2") && msg.contains("a system prompt is required"),
            "{msg}"
        );
    }

    #[test]
    fn jinja_non_prefix_render_is_an_error() {
        // The generation prompt goes first: the shorter render is not a prefix of the longer.
        let src = "{% if add_generation_prompt %}>>{% endif %}{% for m in messages %}{{ m.content }};{% endfor %}";
        let t = ChatTemplate::jinja(src, "</s>", None, "odd.jinja").unwrap();
        let err = t
            .render(&[Turn::user("q"), Turn::assistant("a")])
            .unwrap_err();
        assert!(
            matches!(err, TemplateError::NotAPrefix { turn: 1, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("odd.jinja"), "{err}");
    }

    #[test]
    fn hash_input_changes_with_identity_only() {
        let a = ChatTemplate::builtin("chatml", "<|im_end|>", None).unwrap();
        let b = ChatTemplate::builtin("qwen", "<|im_end|>", None).unwrap();
        let c = ChatTemplate::builtin("chatml", "</s>", None).unwrap();
        assert_ne!(a.hash_input(), b.hash_input());
        assert_ne!(a.hash_input(), c.hash_input());
        let j1 = ChatTemplate::jinja(CHATML_JINJA, "<|im_end|>", None, "/a/x.jinja").unwrap();
        let j2 = ChatTemplate::jinja(CHATML_JINJA, "<|im_end|>", None, "/b/y.jinja").unwrap();
        assert_eq!(j1.hash_input(), j2.hash_input());
        let j3 = ChatTemplate::jinja("{{ 1 }}", "<|im_end|>", None, "/a/x.jinja").unwrap();
        assert_ne!(j1.hash_input(), j3.hash_input());
    }
}
