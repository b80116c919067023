//! Reading the user's input files: which paths medrun may read, and which files make an input.
//!
//! Every input a spec or suite names (a dataset, a tokenizer or template file, a `model.from`
//! directory or file, a suite and its data) is a path relative to the project root. This module
//! is the one place that turns such a path into files to read, and every reader goes through it:
//!
//! - **Inside the root.** A path is resolved as the kernel will resolve it, every symlink
//!   followed ([`Access::resolve`]), and the result must lie inside the project root or inside a
//!   directory the user named with `--allow-outside`. A symlink that leads elsewhere (a dataset
//!   linked to `/etc/passwd`, a parent directory linked to `$HOME`) is refused, and the error
//!   names the link and its target. Symlinks that stay inside the root keep working.
//! - **Regular files only.** FIFOs, sockets and devices are refused from their `stat`, before any
//!   `open` (opening a FIFO blocks until a writer appears), and the open itself is non-blocking
//!   and checked again ([`open_regular`]).
//! - **One listing.** A directory input is the list of regular files under it, recursively,
//!   sorted by relative path, names starting with `.` skipped at every depth, each entry checked
//!   as above ([`Access::input`]). `medrun lock` hashes exactly this list and the dataset readers
//!   read exactly this list, so the lock pins the bytes that are read.
//! - **Bounded lines.** Line-oriented records are read through [`lines::LineReader`], which
//!   never holds more than `--max-record-bytes` of one line ([`Settings::max_record_bytes`]).
//!
//! Why `--allow-outside` exists: model weights are large and usually live in a shared cache
//! outside any one project (the Hugging Face hub cache, `~/.cache/medrun`), linked into the
//! project (`models/smollm2.gguf -> ~/.cache/...`). Copying gigabytes into every project is not a
//! fix, and a hard link cannot cross file systems. The flag keeps the choice with the person who
//! runs medrun: the project's files (which anyone who can open a pull request can change) can
//! never widen what medrun reads, only the command line or the environment of the invocation
//! can. The bytes read from outside are pinned in `datasets.lock` like any other input.
//!
//! These settings are per invocation ([`configure`], from the CLI) and never change an output:
//! they decide only whether an input may be read, so they are not part of any key.

pub mod input;
pub mod lines;

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

pub use input::{Input, InputFile};

/// Default for [`Settings::max_record_bytes`]: 4 MiB, far above any real record (the longest
/// record in MedicalGPT's sample data is a 130 KB chat) and small enough that the work done on
/// one record stays in hundreds of megabytes.
pub const DEFAULT_MAX_RECORD_BYTES: u64 = 4 << 20;

/// Directory nesting past this is refused (a loop the ancestor check missed, or abuse).
pub(crate) const MAX_DEPTH: usize = 32;

/// What one invocation of medrun may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Directories (or files) outside the project root that inputs may resolve into, canonical.
    pub allow_outside: Vec<PathBuf>,
    /// The longest line (JSON-lines record, text document, CSV row) or JSON record, in bytes.
    pub max_record_bytes: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            allow_outside: Vec::new(),
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        }
    }
}

static SETTINGS: RwLock<Settings> = RwLock::new(Settings {
    allow_outside: Vec::new(),
    max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
});

/// Set this process's settings (the CLI does, once per command, from `--allow-outside` and
/// `--max-record-bytes`). Each allowed path must exist; it is stored canonical.
pub fn configure(allow_outside: &[PathBuf], max_record_bytes: Option<u64>) -> Result<(), FsError> {
    let mut allow = Vec::with_capacity(allow_outside.len());
    for p in allow_outside {
        let c = fs::canonicalize(p).map_err(|source| FsError::AllowOutside {
            path: p.clone(),
            source,
        })?;
        allow.push(c);
    }
    let max = max_record_bytes.unwrap_or(DEFAULT_MAX_RECORD_BYTES);
    if max == 0 {
        return Err(FsError::ZeroLimit);
    }
    let mut s = SETTINGS.write().unwrap_or_else(|e| e.into_inner());
    *s = Settings {
        allow_outside: allow,
        max_record_bytes: max,
    };
    Ok(())
}

/// This process's settings.
pub fn settings() -> Settings {
    SETTINGS.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// This process's record size limit.
pub fn max_record_bytes() -> u64 {
    SETTINGS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .max_record_bytes
}

/// Parse a byte count: digits, optionally followed by `K`, `M`, `G` (or `KiB`, `MiB`, `GiB`),
/// powers of 1024.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a byte count (e.g. 4194304, 4M or 4MiB)"))?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "K" | "KiB" | "k" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        other => return Err(format!("unknown unit {other:?} (use K, M or G)")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Why an input cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("`{path}` does not exist{}", dangling_note(.dangling))]
    Missing {
        path: String,
        /// The symlink on the way whose target is missing, and that target.
        dangling: Option<(String, PathBuf)>,
    },
    #[error(
        "`{path}` leads outside the project root: `{link}` is a symlink to `{}`{}",
        target.display(),
        resolved_note(target, resolved)
    )]
    Outside {
        path: String,
        /// The symlink (relative to the root) that leaves it.
        link: String,
        /// The symlink's own target, as written in the link.
        target: PathBuf,
        /// Where the path resolves to.
        resolved: PathBuf,
    },
    #[error("`{path}` is {kind}, not a regular file")]
    NotRegular { path: String, kind: &'static str },
    #[error("`{path}` is not valid UTF-8 (first bad byte at offset {offset})")]
    NotUtf8 { path: String, offset: usize },
    #[error("`{path}`: directories nested deeper than {MAX_DEPTH} levels")]
    TooDeep { path: String },
    #[error("`{path}` is a symlink loop: it leads back to `{ancestor}`, a directory that holds it")]
    Loop { path: String, ancestor: String },
    #[error("cannot read `{path}`: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("--allow-outside {}: {source}", path.display())]
    AllowOutside {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("--max-record-bytes must be at least 1")]
    ZeroLimit,
}

fn dangling_note(d: &Option<(String, PathBuf)>) -> String {
    match d {
        Some((link, target)) => format!(
            " (`{link}` is a symlink to `{}`, which does not exist)",
            target.display()
        ),
        None => String::new(),
    }
}

fn resolved_note(target: &Path, resolved: &Path) -> String {
    if target == resolved {
        String::new()
    } else {
        format!("; the path resolves to `{}`", resolved.display())
    }
}

impl FsError {
    pub fn hint(&self) -> String {
        match self {
            FsError::Missing { dangling: Some(_), .. } => {
                "point the symlink at a file that exists inside the project, or fix the path".into()
            }
            FsError::Missing { .. } => {
                "restore the file, or fix the path in the spec or suite that names it".into()
            }
            FsError::Outside { .. } => {
                "medrun reads only files inside the project: copy the file into the project, or, if you trust that location, pass `--allow-outside DIR` (or set MEDRUN_ALLOW_OUTSIDE)".into()
            }
            FsError::NotRegular { .. } => {
                "inputs must be regular files: replace it with a file, or rename it to start with `.` so that a directory listing skips it".into()
            }
            FsError::TooDeep { .. } | FsError::Loop { .. } => {
                "remove the symlink that makes the directory contain itself".into()
            }
            FsError::Io { .. } => "check the path and its permissions".into(),
            FsError::NotUtf8 { .. } => "save the file as UTF-8".into(),
            FsError::AllowOutside { .. } => "name a directory that exists".into(),
            FsError::ZeroLimit => "give a byte count such as 4194304, 4M or 64M".into(),
        }
    }
}

/// What a file type is called in messages.
pub(crate) fn kind_of(ft: &fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if ft.is_socket() {
            return "a socket";
        }
        if ft.is_char_device() {
            return "a character device";
        }
        if ft.is_block_device() {
            return "a block device";
        }
    }
    if ft.is_dir() {
        "a directory"
    } else if ft.is_symlink() {
        "a symlink"
    } else {
        "not a regular file"
    }
}

/// Open a regular file for reading without ever blocking: `stat` it first (following
/// symlinks) and refuse anything but a regular file, then open it non-blocking and check the
/// opened file again (in case it was swapped in between). `display` names it in errors.
pub fn open_regular(path: &Path, display: &str) -> Result<File, FsError> {
    let io = |source| FsError::Io {
        path: display.to_owned(),
        source,
    };
    let meta = fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(FsError::NotRegular {
            path: display.to_owned(),
            kind: kind_of(&meta.file_type()),
        });
    }
    let mut opts = fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NONBLOCK);
    }
    let file = opts.open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(FsError::NotRegular {
            path: display.to_owned(),
            kind: kind_of(&meta.file_type()),
        });
    }
    Ok(file)
}

/// Read a whole regular file (see [`open_regular`]).
pub fn read_regular(path: &Path, display: &str) -> Result<Vec<u8>, FsError> {
    use std::io::Read as _;
    let mut f = open_regular(path, display)?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    f.read_to_end(&mut out).map_err(|source| FsError::Io {
        path: display.to_owned(),
        source,
    })?;
    Ok(out)
}

/// The project root as a boundary: resolves the user's relative paths and refuses any that
/// leave it (or the directories allowed outside it).
#[derive(Debug, Clone)]
pub struct Access {
    root: PathBuf,
    allow: Vec<PathBuf>,
    max_record_bytes: u64,
}

impl Access {
    /// The boundary of the project at `root`, with this process's [`settings`].
    pub fn new(root: &Path) -> Result<Access, FsError> {
        let s = settings();
        Access::with(root, s.allow_outside, s.max_record_bytes)
    }

    /// The boundary of the project at `root`, with explicit settings (`allow` canonical).
    pub fn with(
        root: &Path,
        allow: Vec<PathBuf>,
        max_record_bytes: u64,
    ) -> Result<Access, FsError> {
        let root = fs::canonicalize(root).map_err(|source| FsError::Io {
            path: root.display().to_string(),
            source,
        })?;
        Ok(Access {
            root,
            allow,
            max_record_bytes,
        })
    }

    /// The canonical project root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn max_record_bytes(&self) -> u64 {
        self.max_record_bytes
    }

    /// Whether a canonical path may be read.
    fn permits(&self, canonical: &Path) -> bool {
        canonical.starts_with(&self.root) || self.allow.iter().any(|a| canonical.starts_with(a))
    }

    /// `rel` (relative to the root, `/`-separated) resolved with every symlink followed: the
    /// canonical path, which must exist and lie inside the root or an allowed directory.
    pub fn resolve(&self, rel: &str) -> Result<PathBuf, FsError> {
        match fs::canonicalize(self.root.join(rel)) {
            Ok(c) if self.permits(&c) => Ok(c),
            Ok(c) => Err(self.escape(rel, c)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(FsError::Missing {
                path: rel.to_owned(),
                dangling: self.dangling(rel),
            }),
            Err(source) => Err(FsError::Io {
                path: rel.to_owned(),
                source,
            }),
        }
    }

    /// `rel` resolved ([`Access::resolve`]) and checked to be a regular file.
    pub fn file(&self, rel: &str) -> Result<PathBuf, FsError> {
        let path = self.resolve(rel)?;
        let meta = fs::metadata(&path).map_err(|source| FsError::Io {
            path: rel.to_owned(),
            source,
        })?;
        if !meta.is_file() {
            return Err(FsError::NotRegular {
                path: rel.to_owned(),
                kind: kind_of(&meta.file_type()),
            });
        }
        Ok(path)
    }

    /// Read the whole regular file at `rel`, inside the root.
    pub fn read(&self, rel: &str) -> Result<Vec<u8>, FsError> {
        read_regular(&self.file(rel)?, rel)
    }

    /// Read the whole regular file at `rel`, inside the root, as UTF-8 text.
    pub fn read_text(&self, rel: &str) -> Result<String, FsError> {
        String::from_utf8(self.read(rel)?).map_err(|e| FsError::NotUtf8 {
            path: rel.to_owned(),
            offset: e.utf8_error().valid_up_to(),
        })
    }

    /// The error for `rel`, which resolves to `resolved` outside: the first symlink on the way
    /// that leads out.
    fn escape(&self, rel: &str, resolved: PathBuf) -> FsError {
        let mut at = self.root.clone();
        let mut shown = String::new();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            at.push(part);
            if !shown.is_empty() {
                shown.push('/');
            }
            shown.push_str(part);
            let is_link = fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink());
            if !is_link {
                continue;
            }
            let leaves = fs::canonicalize(&at).map_or(true, |c| !self.permits(&c));
            if leaves {
                return FsError::Outside {
                    path: rel.to_owned(),
                    link: shown,
                    target: fs::read_link(&at).unwrap_or_else(|_| resolved.clone()),
                    resolved,
                };
            }
        }
        // No single link on the way leaves (a chain through `..` only does as a whole).
        FsError::Outside {
            path: rel.to_owned(),
            link: rel.to_owned(),
            target: resolved.clone(),
            resolved,
        }
    }

    /// The first symlink on the way to `rel` whose target does not exist, if any.
    fn dangling(&self, rel: &str) -> Option<(String, PathBuf)> {
        let mut at = self.root.clone();
        let mut shown = String::new();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            at.push(part);
            if !shown.is_empty() {
                shown.push('/');
            }
            shown.push_str(part);
            let meta = fs::symlink_metadata(&at).ok()?;
            if meta.file_type().is_symlink() && fs::metadata(&at).is_err() {
                return fs::read_link(&at).ok().map(|t| (shown, t));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests;
