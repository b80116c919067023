//! The command line: clap types and one thin function per command.

mod commands;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::error::EXIT_OK;
use crate::printer::{Printer, Verbosity};
use crate::stage::Executors;

#[derive(Debug, Parser)]
#[command(
    name = "medrun",
    version,
    about = "Reproducible, eval-gated training of medical LLMs",
    long_about = "medrun trains medical LLMs from versioned run specs, pins every input by content hash, \
                  keeps every artifact in a content-addressed store with its lineage, and promotes a \
                  checkpoint only when its evaluation gates pass."
)]
pub struct Cli {
    /// More logging (repeat for trace). `RUST_LOG` overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Machine-readable JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Store directory [default: ROOT/.medrun].
    #[arg(long, global = true, env = "MEDRUN_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Let inputs (datasets, models, tokenizer and template files, suites) resolve into PATH
    /// outside the project root, through a symlink (repeatable; `:`-separated in the variable).
    /// Without it, an input that leads out of the root is refused.
    #[arg(
        long = "allow-outside",
        global = true,
        env = "MEDRUN_ALLOW_OUTSIDE",
        value_name = "PATH",
        value_delimiter = ':'
    )]
    pub allow_outside: Vec<PathBuf>,
    /// The longest record read from a dataset or eval data: a line, a CSV row, or one record
    /// of a JSON document (e.g. 4194304, 4M, 64M) [default: 4M].
    #[arg(
        long,
        global = true,
        env = "MEDRUN_MAX_RECORD_BYTES",
        value_name = "BYTES",
        value_parser = crate::fsx::parse_bytes
    )]
    pub max_record_bytes: Option<u64>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LineageFormat {
    Text,
    Json,
    Openlineage,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pin the content of every input of runs/*.yaml and evals/*.yaml in datasets.lock.
    Lock {
        /// Do not write: exit 1 if datasets.lock is missing or out of date.
        #[arg(long)]
        check: bool,
        /// Re-hash everything, ignoring the state cache.
        #[arg(long)]
        verify: bool,
    },
    /// Show a spec's run key and stage keys, and which stages are already in the store.
    Plan {
        spec: PathBuf,
        /// Re-hash inputs, ignoring the state cache.
        #[arg(long)]
        verify: bool,
    },
    /// For each stage not in the store, say what changed since the last run of the spec.
    Explain { spec: PathBuf },
    /// Run a spec: each stage whose key is not in the store is executed and recorded.
    Run {
        spec: PathBuf,
        /// Refuse to run if any input differs from datasets.lock.
        #[arg(long)]
        locked: bool,
        /// Run even with uncommitted changes (the dirty state is recorded).
        #[arg(long)]
        allow_dirty: bool,
        /// Skip malformed training records instead of failing; each is reported in the stage's
        /// data.json.
        #[arg(long)]
        skip_bad_records: bool,
    },
    /// Print the provenance of a run, a stage (RUN:STAGE) or an artifact.
    Lineage {
        /// A run id or prefix, `latest`, `RUN:STAGE`, or an artifact hash.
        reference: String,
        /// Output format (`--json` is the same as `--format json`).
        #[arg(long, value_enum)]
        format: Option<LineageFormat>,
    },
    /// Score a checkpoint with an eval suite (results are cached by checkpoint, suite and engine).
    Eval {
        /// `RUN:STAGE`, a run id or prefix (its last stage), `latest`, a channel, or an output hash.
        reference: String,
        /// The suite file (evals/*.yaml).
        #[arg(long)]
        suite: PathBuf,
        /// Evaluate again even if results are cached.
        #[arg(long)]
        no_cache: bool,
        /// Score every choice as its own full sequence instead of sharing the prompt's pass.
        #[arg(long)]
        no_share_prompt: bool,
        /// Sequences per forward pass (speed only: results are identical for any value).
        #[arg(long, default_value_t = 8)]
        batch_size: usize,
    },
    /// Evaluate a checkpoint, judge its run's gates against the channel's holder, and record the
    /// promotion in promotions.yaml if every gate passes (exit 3 otherwise).
    Promote {
        /// `RUN:STAGE`, a run id or prefix (its last stage), `latest`, a channel, or an output hash.
        reference: String,
        /// The channel to promote to (e.g. `production`).
        #[arg(long = "to")]
        channel: String,
        /// Evaluate again even if results are cached.
        #[arg(long)]
        no_cache: bool,
    },
    /// Re-execute a recorded run from its recorded inputs with the cache off and compare every
    /// stage's output with the record (exit 4 if any differs).
    Reproduce {
        /// A run id or prefix, `latest`, `RUN:STAGE`, a channel, or an output hash.
        reference: String,
        /// Reproduce only this stage (from its recorded parent output).
        #[arg(long)]
        stage: Option<String>,
        /// When the run was recorded by another medrun build: allow building the recorded commit
        /// (which must be on a branch or tag of the project) and running the result.
        #[arg(long)]
        rebuild: bool,
    },
    /// Generate text from a checkpoint (greedy unless --temperature is given).
    Generate {
        /// `RUN:STAGE`, a run id or prefix (its last stage), `latest`, a channel, or an output hash.
        reference: String,
        #[arg(long)]
        prompt: String,
        /// Render the prompt as a user turn with the checkpoint's chat template.
        #[arg(long)]
        chat: bool,
        /// System prompt (with --chat).
        #[arg(long)]
        system: Option<String>,
        #[arg(long, default_value_t = 128)]
        max_new_tokens: usize,
        /// Stop before this string (repeatable).
        #[arg(long)]
        stop: Vec<String>,
        /// Sample with this temperature instead of greedy decoding (seeded by --seed).
        #[arg(long)]
        temperature: Option<f64>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Write the built-in demo corpus (PT text, SFT dialogues, DPO pairs, eval sets), generated
    /// deterministically from medrun's table of textbook medical facts.
    DemoData {
        /// Output directory.
        #[arg(long, default_value = "data/demo")]
        out: PathBuf,
    },
    /// Write a stage's model (LoRA merged) as a Hugging Face directory that `transformers` loads.
    Export {
        /// `RUN:STAGE`, a run id or prefix (its last stage), `latest`, a channel, or an output hash.
        reference: String,
        /// The directory to create (must not exist, or be empty).
        dir: PathBuf,
    },
    /// Re-hash every object in the store and check every run record against its seal; exit 1 if
    /// an object is corrupt or missing, or a record was tampered with.
    Verify,
    /// Work with the promotion history (promotions.yaml).
    Promotions {
        #[command(subcommand)]
        action: PromotionsAction,
    },
    /// Delete objects that no run record, promotion or --keep root reaches.
    Gc {
        /// Also keep what this REF reaches (repeatable).
        #[arg(long, value_name = "REF")]
        keep: Vec<String>,
        /// Report what would be deleted without deleting it.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PromotionsAction {
    /// Re-derive every promotion from the store and git: sealed run records, the spec's gates at
    /// the run's commit, the stored results re-judged, the checkpoints re-hashed, and the file's
    /// git history append-only. Exit 1 on any problem.
    Verify,
}

fn init_tracing(verbose: u8, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "medrun=debug,info",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(!crate::env::no_color())
        .without_time()
        .try_init();
}

/// Run the CLI with these arguments and stage executors; returns the exit code.
pub fn main_with<I, T>(args: I, executors: &Executors) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                crate::error::EXIT_USER
            } else {
                EXIT_OK
            };
            let _ = e.print();
            return code;
        }
    };
    init_tracing(cli.verbose, cli.quiet);
    // What this invocation may read (process-wide: see `fsx::configure`).
    if let Err(e) = crate::fsx::configure(&cli.allow_outside, cli.max_record_bytes) {
        Printer::new(cli.json, Verbosity::Normal).error(&e.to_string(), Some(&e.hint()));
        return crate::error::EXIT_USER;
    }
    let verbosity = if cli.quiet {
        Verbosity::Quiet
    } else if cli.verbose > 0 {
        Verbosity::Verbose
    } else {
        Verbosity::Normal
    };
    let printer = Printer::new(cli.json, verbosity);
    match commands::dispatch(&cli, executors, &printer) {
        Ok(code) => code,
        Err(e) => {
            printer.error(&e.to_string(), e.hint().as_deref());
            // A gate rejection, a differing reproduction and an incomplete evaluation have
            // already printed their report (with the failure in it) as the one JSON document
            // on stdout.
            if cli.json
                && !matches!(
                    e,
                    crate::error::Error::GateRejected { .. }
                        | crate::error::Error::ReproDiffers { .. }
                        | crate::error::Error::EvalIncomplete { .. }
                )
            {
                printer.json_value(&serde_json::json!({
                    "error": e.to_string(),
                    "hint": e.hint(),
                    "exit_code": e.exit_code(),
                }));
            }
            e.exit_code()
        }
    }
}
