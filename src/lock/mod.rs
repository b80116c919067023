//! `datasets.lock`: the content hash, size, record count and format of every input that any spec
//! in `runs/` or suite in `evals/` reads. Versioned (`version: 1`), written in one canonical
//! layout (sorted by path), and not rewritten when unchanged. See docs/reference/lock.md.

pub mod digest;
pub mod state;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::fsx::{self, Access, FsError, InputFile};
use crate::spec::resolve::normalize_rel;
use crate::spec::{Format, RelPath};
use crate::yaml::{self, At, Pos, YamlError};
use state::{CachedDigest, Stat, StateCache};

pub const LOCK_FILE: &str = "datasets.lock";
pub const LOCK_VERSION: u32 = 1;

/// The digest of one input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub format: Format,
    pub blake3: String,
    pub bytes: u64,
    /// Records (lines, rows, JSON items); `None` for models and plain files.
    pub records: Option<u64>,
    /// Number of files when the input is a directory.
    pub files: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lockfile {
    pub entries: BTreeMap<RelPath, Pin>,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(transparent)]
    Yaml(#[from] YamlError),
    #[error("{at}: {message}")]
    Invalid { at: At, message: String },
    #[error("{what} `{path}` does not exist")]
    Missing {
        path: RelPath,
        what: String,
        /// The spec's command that fetches this input (`model.fetch`), if it names one.
        fetch: Option<String>,
    },
    #[error("cannot read `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` is used as `{a}` and as `{b}`")]
    Conflict { path: RelPath, a: Format, b: Format },
    #[error("`{path}` is not valid {format}: {message}")]
    BadContent {
        path: RelPath,
        format: Format,
        message: String,
    },
    #[error("{}", stale_message(.0))]
    Stale(Vec<Stale>),
    #[error(transparent)]
    Path(#[from] FsError),
}

impl LockError {
    pub fn hint(&self) -> String {
        match self {
            LockError::Yaml(_) | LockError::Invalid { .. } => {
                "datasets.lock is generated: delete it and run `medrun lock` to write it again"
                    .into()
            }
            LockError::Missing {
                fetch: Some(cmd), ..
            } => format!("fetch it with `{cmd}` (the spec's `model.fetch`), then run again"),
            LockError::Missing { fetch: None, .. } => {
                "restore the file, or fix the path in the spec or suite that names it".into()
            }
            LockError::Io { .. } => "check the path and its permissions".into(),
            LockError::Conflict { .. } => {
                "give each file a single format in every spec and suite that uses it".into()
            }
            LockError::BadContent { .. } => "fix the file, or declare the right `format`".into(),
            LockError::Stale(_) => {
                "if the change is intended, run `medrun lock` and commit datasets.lock".into()
            }
            LockError::Path(e) => e.hint(),
        }
    }
}

/// One difference between the lock file and the bytes on disk.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stale {
    /// Dataset names that use this path (`runs/x.yaml: corpus`), for the message.
    pub names: Vec<String>,
    pub path: RelPath,
    pub old: Option<(u64, String)>,
    pub new: Option<(u64, String)>,
}

fn stale_message(v: &[Stale]) -> String {
    let mut s = String::new();
    let n = v.len();
    let _ = write!(
        s,
        "{n} input{} differ{} from datasets.lock:",
        if n == 1 { "" } else { "s" },
        if n == 1 { "s" } else { "" }
    );
    for st in v {
        let names = if st.names.is_empty() {
            String::new()
        } else {
            format!("{} ", st.names.join(", "))
        };
        let show = |x: &Option<(u64, String)>| match x {
            None => "not locked".to_string(),
            Some((b, h)) => format!("{b} bytes, blake3 {}", &h[..16.min(h.len())]),
        };
        let _ = write!(
            s,
            "\n  {names}at {}: locked {}; now {}",
            st.path,
            show(&st.old),
            show(&st.new)
        );
    }
    s
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LockError + '_ {
    move |source| LockError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Counting method for a format's records.
fn method(format: Format) -> Option<&'static str> {
    match format {
        Format::Text | Format::Sharegpt | Format::Preference | Format::Jsonl => Some("lines"),
        Format::Json => Some("json"),
        Format::Csv => Some("csv"),
        Format::CsvNoheader => Some("csv-noheader"),
        Format::Model | Format::File => None,
    }
}

fn count_other(
    rel: &RelPath,
    file: &InputFile,
    format: Format,
    method: &str,
) -> Result<u64, LockError> {
    let bytes = fsx::read_regular(&file.path, &file.display)?;
    match method {
        "json" => digest::json_records(&bytes).map_err(|e| LockError::BadContent {
            path: rel.clone(),
            format,
            message: e.to_string(),
        }),
        "csv" => Ok(digest::csv_rows(&bytes).saturating_sub(1)),
        "csv-noheader" => Ok(digest::csv_rows(&bytes)),
        _ => Ok(digest::line_records(&bytes)),
    }
}

/// Digest one regular file of an input, using and updating the state cache.
fn digest_file(
    rel: &RelPath,
    file: &InputFile,
    format: Format,
    cache: &mut StateCache,
) -> Result<(String, u64, Option<u64>), LockError> {
    let path = file.path.as_path();
    let meta = std::fs::metadata(path).map_err(io(path))?;
    let stat = Stat::of(&meta);
    // `file.path` is canonical: the cache key.
    let abs = path;
    let m = method(format);
    if let Some(hit) = cache.get(abs, &stat).cloned() {
        match m {
            None => return Ok((hit.blake3, stat.size, None)),
            Some(m) => {
                if let Some(r) = hit.records.get(m) {
                    return Ok((hit.blake3, stat.size, Some(*r)));
                }
                let r = count_other(rel, file, format, m)?;
                let mut upd = hit.clone();
                upd.records.insert(m.into(), r);
                cache.put(abs, upd);
                return Ok((hit.blake3, stat.size, Some(r)));
            }
        }
    }
    let opened = fsx::open_regular(path, &file.display)?;
    let (hash, size, lines) = digest::hash_open(opened, m == Some("lines")).map_err(io(path))?;
    let records = match m {
        None => None,
        Some("lines") => lines,
        Some(other) => Some(count_other(rel, file, format, other)?),
    };
    let mut rec = BTreeMap::new();
    if let (Some(m), Some(r)) = (m, records) {
        rec.insert(m.to_string(), r);
    }
    // Only cache when the file did not change while we read it.
    let after = std::fs::metadata(path).map(|m| Stat::of(&m)).ok();
    if after.as_ref() == Some(&stat) && size == stat.size {
        cache.put(
            abs,
            CachedDigest {
                stat,
                blake3: hash.clone(),
                records: rec,
            },
        );
    }
    Ok((hash, size, records))
}

/// Digest an input (file or directory of shards) at `root/rel`: the files [`fsx`] lists for it
/// (inside the project root, regular files only), which are the files the readers read.
pub fn digest(
    root: &Path,
    rel: &RelPath,
    format: Format,
    what: &str,
    cache: &mut StateCache,
) -> Result<Pin, LockError> {
    let input = match Access::new(root).and_then(|a| a.input(rel.as_str())) {
        Ok(input) => input,
        // The input itself is absent (or a dangling link): a `model.fetch` may put it there.
        Err(FsError::Missing { path, .. }) if path == rel.as_str() => {
            return Err(LockError::Missing {
                path: rel.clone(),
                what: what.to_string(),
                fetch: None,
            });
        }
        Err(e) => return Err(e.into()),
    };
    if input.dir {
        let mut listing = String::from("medrun-dir-v1\n");
        let mut bytes = 0u64;
        let mut records = method(format).map(|_| 0u64);
        for file in &input.files {
            let sub = RelPath(format!("{rel}/{}", file.rel));
            let (h, size, rec) = digest_file(&sub, file, format, cache)?;
            let _ = writeln!(listing, "{}\0{size}\0{h}", file.rel);
            bytes += size;
            if let (Some(total), Some(n)) = (records.as_mut(), rec) {
                *total += n;
            }
        }
        Ok(Pin {
            format,
            blake3: blake3::hash(listing.as_bytes()).to_hex().to_string(),
            bytes,
            records,
            files: Some(input.files.len() as u64),
        })
    } else {
        let mut pin = Pin {
            format,
            blake3: String::new(),
            bytes: 0,
            records: None,
            files: None,
        };
        // A file input lists exactly itself.
        for file in &input.files {
            (pin.blake3, pin.bytes, pin.records) = digest_file(rel, file, format, cache)?;
        }
        Ok(pin)
    }
}

// ---------------------------------------------------------------------------------------------
// Reading and writing the lock file.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLock {
    #[allow(dead_code)]
    version: Spanned<u32>,
    #[serde(default)]
    entries: Entries,
}

/// A mapping kept in file order with the position of every key (serde maps lose key spans).
#[derive(Default)]
struct Entries(Vec<(Spanned<String>, Spanned<RawEntry>)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a mapping from paths to lock entries")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Entries, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = m.next_key::<Spanned<String>>()? {
                    let v = m.next_value::<Spanned<RawEntry>>()?;
                    out.push((k, v));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    format: Spanned<String>,
    blake3: Spanned<String>,
    bytes: u64,
    #[serde(default)]
    records: Option<u64>,
    #[serde(default)]
    files: Option<u64>,
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Lockfile {
    /// Parse lock text; `display` names the file in errors.
    pub fn parse(text: &str, display: &Path) -> Result<Lockfile, LockError> {
        yaml::check_version(text, display, "datasets.lock", LOCK_VERSION)?;
        let raw: RawLock = yaml::parse(text, display)?;
        let mut entries = BTreeMap::new();
        for (key, e) in raw.entries.0 {
            let at = At::spanned(display, &key);
            let path = key.value;
            let rel = normalize_rel(&path).map_err(|why| LockError::Invalid {
                at: at.clone(),
                message: format!("entry {path:?}: {why}"),
            })?;
            if rel.as_str() != path {
                return Err(LockError::Invalid {
                    at,
                    message: format!("entry {path:?} is not in normal form (expected \"{rel}\")"),
                });
            }
            let e = e.value;
            let format = match e.format.value.as_str() {
                "model" => Format::Model,
                "file" => Format::File,
                f => Format::parse(f).ok_or_else(|| LockError::Invalid {
                    at: At::spanned(display, &e.format),
                    message: format!("unknown format {f:?}"),
                })?,
            };
            if !is_hex64(&e.blake3.value) {
                return Err(LockError::Invalid {
                    at: At::spanned(display, &e.blake3),
                    message: format!(
                        "`blake3` must be 64 lowercase hex digits, got {:?}",
                        e.blake3.value
                    ),
                });
            }
            if entries.contains_key(&rel) {
                return Err(LockError::Invalid {
                    at,
                    message: format!("entry {path:?} appears twice"),
                });
            }
            if format.has_records() != e.records.is_some() {
                return Err(LockError::Invalid {
                    at: At::spanned(display, &e.format),
                    message: if format.has_records() {
                        format!("entry {path:?} of format `{format}` has no `records`")
                    } else {
                        format!("entry {path:?} of format `{format}` cannot have `records`")
                    },
                });
            }
            entries.insert(
                rel,
                Pin {
                    format,
                    blake3: e.blake3.value,
                    bytes: e.bytes,
                    records: e.records,
                    files: e.files,
                },
            );
        }
        Ok(Lockfile { entries })
    }

    /// Read `root/datasets.lock`; `None` when there is none.
    pub fn read(root: &Path) -> Result<Option<Lockfile>, LockError> {
        let path = root.join(LOCK_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let text = yaml::read_text(&path, Path::new(LOCK_FILE))?;
        Lockfile::parse(&text, Path::new(LOCK_FILE)).map(Some)
    }

    /// The canonical text of this lock file.
    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str(
            "# datasets.lock: content hashes of every input that the specs in runs/ and the\n",
        );
        s.push_str("# suites in evals/ read. Written by `medrun lock`; do not edit by hand.\n");
        let _ = writeln!(s, "version: {LOCK_VERSION}");
        if self.entries.is_empty() {
            s.push_str("entries: {}\n");
            return s;
        }
        s.push_str("entries:\n");
        for (path, pin) in &self.entries {
            // JSON string escaping is valid YAML double-quoted syntax.
            let quoted = serde_json::to_string(path.as_str()).unwrap_or_default();
            let _ = writeln!(s, "  {quoted}:");
            let _ = writeln!(s, "    format: {}", pin.format);
            let _ = writeln!(s, "    blake3: {}", pin.blake3);
            let _ = writeln!(s, "    bytes: {}", pin.bytes);
            if let Some(r) = pin.records {
                let _ = writeln!(s, "    records: {r}");
            }
            if let Some(f) = pin.files {
                let _ = writeln!(s, "    files: {f}");
            }
        }
        s
    }

    /// Write the lock file if its canonical text differs from what is on disk. Returns whether
    /// it wrote.
    pub fn write_if_changed(&self, root: &Path) -> Result<bool, LockError> {
        let path = root.join(LOCK_FILE);
        let text = self.render();
        if std::fs::read(&path).ok().as_deref() == Some(text.as_bytes()) {
            return Ok(false);
        }
        crate::tempfiles::write_project_file(root, &path, text.as_bytes()).map_err(io(&path))?;
        Ok(true)
    }
}

/// Differences between a lock and freshly computed pins, for the paths in `current`.
pub fn compare(
    lock: Option<&Lockfile>,
    current: &BTreeMap<RelPath, Pin>,
    names: &BTreeMap<RelPath, Vec<String>>,
) -> Vec<Stale> {
    let mut out = Vec::new();
    for (path, pin) in current {
        let old = lock.and_then(|l| l.entries.get(path));
        let same = old.is_some_and(|o| {
            o.blake3 == pin.blake3 && o.bytes == pin.bytes && o.format == pin.format
        });
        if !same {
            out.push(Stale {
                names: names.get(path).cloned().unwrap_or_default(),
                path: path.clone(),
                old: old.map(|o| (o.bytes, o.blake3.clone())),
                new: Some((pin.bytes, pin.blake3.clone())),
            });
        }
    }
    out
}

/// Position helper for callers that report on the lock file as a whole.
pub fn lock_at() -> At {
    At::new(Path::new(LOCK_FILE), Pos::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(h: char) -> Pin {
        Pin {
            format: Format::Text,
            blake3: h.to_string().repeat(64),
            bytes: 10,
            records: Some(2),
            files: None,
        }
    }

    #[test]
    fn render_parse_roundtrip() {
        let mut l = Lockfile::default();
        l.entries.insert(RelPath("data/b.txt".into()), pin('b'));
        l.entries
            .insert(RelPath("data/a \"q\".txt".into()), pin('a'));
        let text = l.render();
        let back = Lockfile::parse(&text, Path::new("datasets.lock")).unwrap();
        assert_eq!(back, l);
        assert!(text.find("a \\\"q\\\"").unwrap() < text.find("b.txt").unwrap());
    }

    #[test]
    fn bad_hash_is_located() {
        let text = "version: 1\nentries:\n  data/a.txt:\n    format: text\n    blake3: xyz\n    bytes: 1\n    records: 1\n";
        let e = Lockfile::parse(text, Path::new("datasets.lock")).unwrap_err();
        assert!(e.to_string().starts_with("datasets.lock:5:13:"), "{e}");
    }

    #[test]
    fn directory_digest_is_listing_based_and_cached() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("shards/sub")).unwrap();
        std::fs::write(dir.path().join("shards/a.txt"), "x\ny\n").unwrap();
        std::fs::write(dir.path().join("shards/sub/b.txt"), "z\n").unwrap();
        std::fs::write(dir.path().join("shards/.hidden"), "ignored").unwrap();
        let mut cache = StateCache::disabled();
        let rel = RelPath("shards".into());
        let p = digest(dir.path(), &rel, Format::Text, "dataset", &mut cache).unwrap();
        assert_eq!(p.records, Some(3));
        assert_eq!(p.files, Some(2));
        assert_eq!(p.bytes, 6);
        std::fs::write(dir.path().join("shards/sub/b.txt"), "w\n").unwrap();
        let q = digest(dir.path(), &rel, Format::Text, "dataset", &mut cache).unwrap();
        assert_ne!(p.blake3, q.blake3);
    }
}
