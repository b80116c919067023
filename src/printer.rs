//! The only writer to stdout and stderr: data to stdout, diagnostics and progress to stderr,
//! JSON for machines with `--json`, no colour with `NO_COLOR` or when stderr is not a terminal.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{IsTerminal, Write};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

#[derive(Debug, Clone)]
pub struct Printer {
    pub json: bool,
    pub verbosity: Verbosity,
    pub color: bool,
}

impl Printer {
    pub fn new(json: bool, verbosity: Verbosity) -> Printer {
        let color = !crate::env::no_color() && std::io::stderr().is_terminal();
        Printer {
            json,
            verbosity,
            color,
        }
    }

    /// A printer for tests and embedding: no colour, no progress.
    pub fn plain(json: bool) -> Printer {
        Printer {
            json,
            verbosity: Verbosity::Normal,
            color: false,
        }
    }

    /// Result data (stdout).
    pub fn data(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        if !text.ends_with('\n') {
            let _ = out.write_all(b"\n");
        }
        let _ = out.flush();
    }

    /// A JSON document (stdout).
    pub fn json_value(&self, v: &serde_json::Value) {
        let text = serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".into());
        self.data(&text);
    }

    /// Progress and status (stderr), hidden with `-q` and `--json`.
    pub fn status(&self, text: &str) {
        if self.json || self.verbosity == Verbosity::Quiet {
            return;
        }
        eprintln!("{text}");
    }

    /// Something the user must see before medrun acts on it (stderr), shown even with `--json`
    /// and `-q`: for example the commit `reproduce --rebuild` is about to build and run.
    pub fn notice(&self, text: &str) {
        eprintln!("{text}");
    }

    pub fn warn(&self, text: &str) {
        if self.verbosity == Verbosity::Quiet {
            return;
        }
        if self.color {
            eprintln!("\x1b[33mwarning\x1b[0m: {text}");
        } else {
            eprintln!("warning: {text}");
        }
    }

    pub fn error(&self, text: &str, hint: Option<&str>) {
        if self.color {
            eprintln!("\x1b[31merror\x1b[0m: {text}");
        } else {
            eprintln!("error: {text}");
        }
        if let Some(h) = hint {
            eprintln!();
            eprintln!("hint: {h}");
        }
    }

    /// Whether progress bars and spinners are drawn: stderr is a terminal, no `--json`, no `-q`.
    pub fn shows_progress(&self) -> bool {
        !self.json && self.verbosity != Verbosity::Quiet && std::io::stderr().is_terminal()
    }

    /// A spinner for long work, or a no-op when progress is hidden.
    pub fn spinner(&self, msg: &str) -> Spinner {
        if !self.shows_progress() {
            return Spinner(None);
        }
        let pb = indicatif::ProgressBar::new_spinner();
        pb.set_message(msg.to_string());
        pb.enable_steady_tick(Duration::from_millis(120));
        Spinner(Some(pb))
    }
}

pub struct Spinner(Option<indicatif::ProgressBar>);

impl Spinner {
    pub fn finish(self) {
        if let Some(pb) = self.0 {
            pb.finish_and_clear();
        }
    }
}
