//! Which files make an input: a file, or every regular file under a directory.

use std::fs;
use std::path::PathBuf;

use super::{Access, FsError, MAX_DEPTH, kind_of};

/// One input as the readers and `medrun lock` see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// The path as the spec or suite gives it (relative to the root), for messages.
    pub display: String,
    /// Where it resolves to (canonical).
    pub path: PathBuf,
    /// Whether it is a directory of files.
    pub dir: bool,
    /// Its files, sorted by [`InputFile::rel`]; one for a file input.
    pub files: Vec<InputFile>,
}

/// One regular file of an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    /// `/`-separated path relative to the input directory; empty for a file input.
    pub rel: String,
    /// Where it resolves to (canonical, inside the root or an allowed directory).
    pub path: PathBuf,
    /// How messages name it: the input's path, then `/rel` inside a directory.
    pub display: String,
    /// Its size when listed.
    pub len: u64,
}

impl Input {
    /// An input holding just `file` (to read one file of a directory on its own).
    pub fn single(file: &InputFile) -> Input {
        Input {
            display: file.display.clone(),
            path: file.path.clone(),
            dir: false,
            files: vec![InputFile {
                rel: String::new(),
                ..file.clone()
            }],
        }
    }
}

impl Access {
    /// The input at `rel`: the file itself, or every regular file under the directory
    /// (recursively, names starting with `.` skipped at every depth), sorted by relative path.
    /// Every file and directory on the way must resolve inside the root (or an allowed
    /// directory), and every entry that is not a directory must be a regular file.
    pub fn input(&self, rel: &str) -> Result<Input, FsError> {
        let path = self.resolve(rel)?;
        let meta = fs::metadata(&path).map_err(|source| FsError::Io {
            path: rel.to_owned(),
            source,
        })?;
        let display = rel.to_owned();
        if meta.is_file() {
            return Ok(Input {
                files: vec![InputFile {
                    rel: String::new(),
                    path: path.clone(),
                    display: display.clone(),
                    len: meta.len(),
                }],
                display,
                path,
                dir: false,
            });
        }
        if !meta.is_dir() {
            return Err(FsError::NotRegular {
                path: display,
                kind: kind_of(&meta.file_type()),
            });
        }
        let mut files = Vec::new();
        let mut ancestors = vec![path.clone()];
        self.walk(&display, &path, "", &mut ancestors, &mut files)?;
        files.sort_by(|a, b| a.rel.cmp(&b.rel));
        Ok(Input {
            display,
            path,
            dir: true,
            files,
        })
    }

    /// List the directory `dir` (canonical), which is `sub` inside the input `base`.
    fn walk(
        &self,
        base: &str,
        dir: &std::path::Path,
        sub: &str,
        ancestors: &mut Vec<PathBuf>,
        out: &mut Vec<InputFile>,
    ) -> Result<(), FsError> {
        let shown = |rel: &str| {
            if rel.is_empty() {
                base.to_owned()
            } else {
                format!("{}/{rel}", base.trim_end_matches('/'))
            }
        };
        if ancestors.len() > MAX_DEPTH {
            return Err(FsError::TooDeep { path: shown(sub) });
        }
        let io = |rel: &str| {
            let path = shown(rel);
            move |source| FsError::Io { path, source }
        };
        for entry in fs::read_dir(dir).map_err(io(sub))? {
            let entry = entry.map_err(io(sub))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let rel = if sub.is_empty() {
                name
            } else {
                format!("{sub}/{name}")
            };
            let here = entry.path();
            let lmeta = fs::symlink_metadata(&here).map_err(io(&rel))?;
            let (path, meta) = if lmeta.file_type().is_symlink() {
                let target = self.follow(&here, &shown(&rel))?;
                let meta = fs::metadata(&target).map_err(io(&rel))?;
                (target, meta)
            } else {
                (here, lmeta)
            };
            if meta.is_dir() {
                if let Some(a) = ancestors.iter().position(|a| *a == path) {
                    let ancestor = if a == 0 {
                        base.to_owned()
                    } else {
                        shown(&rel_of(&ancestors[0], &ancestors[a]))
                    };
                    return Err(FsError::Loop {
                        path: shown(&rel),
                        ancestor,
                    });
                }
                ancestors.push(path.clone());
                self.walk(base, &path, &rel, ancestors, out)?;
                ancestors.pop();
            } else if meta.is_file() {
                out.push(InputFile {
                    display: shown(&rel),
                    rel,
                    path,
                    len: meta.len(),
                });
            } else {
                return Err(FsError::NotRegular {
                    path: shown(&rel),
                    kind: kind_of(&meta.file_type()),
                });
            }
        }
        Ok(())
    }

    /// Follow the symlink `link` (shown as `shown`): its canonical target, which must exist and
    /// be allowed.
    fn follow(&self, link: &std::path::Path, shown: &str) -> Result<PathBuf, FsError> {
        match fs::canonicalize(link) {
            Ok(c) if self.permits(&c) => Ok(c),
            Ok(c) => Err(FsError::Outside {
                path: shown.to_owned(),
                link: shown.to_owned(),
                target: fs::read_link(link).unwrap_or_else(|_| c.clone()),
                resolved: c,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(FsError::Missing {
                path: shown.to_owned(),
                dangling: fs::read_link(link).ok().map(|t| (shown.to_owned(), t)),
            }),
            Err(source) => Err(FsError::Io {
                path: shown.to_owned(),
                source,
            }),
        }
    }
}

/// `/`-separated path of `inner` relative to `outer` (both canonical directories).
fn rel_of(outer: &std::path::Path, inner: &std::path::Path) -> String {
    inner
        .strip_prefix(outer)
        .map(|r| r.to_string_lossy().replace('\\', "/"))
        .unwrap_or_else(|_| inner.display().to_string())
}
