use std::os::unix::fs::symlink;
use std::path::Path;

use super::*;

/// A project root and a directory outside it, both temporary.
struct Fixture {
    root: tempfile::TempDir,
    outside: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let f = Fixture {
            root: tempfile::tempdir().unwrap(),
            outside: tempfile::tempdir().unwrap(),
        };
        f.write("data/pt.txt", "inside\n");
        std::fs::write(f.outside.path().join("secret.txt"), "secret\n").unwrap();
        f
    }
    fn write(&self, rel: &str, text: &str) {
        let p = self.root.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    fn link(&self, target: &Path, rel: &str) {
        let p = self.root.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        symlink(target, p).unwrap();
    }
    fn access(&self) -> Access {
        Access::with(self.root.path(), Vec::new(), DEFAULT_MAX_RECORD_BYTES).unwrap()
    }
    fn secret(&self) -> std::path::PathBuf {
        self.outside.path().join("secret.txt")
    }
}

#[test]
fn symlink_inside_the_root_keeps_working() {
    let f = Fixture::new();
    f.link(Path::new("pt.txt"), "data/alias.txt");
    f.link(Path::new("../data"), "more/linked");
    let a = f.access();
    let p = a.file("data/alias.txt").unwrap();
    assert_eq!(p, a.root().join("data/pt.txt"));
    let input = a.input("more/linked").unwrap();
    let rels: Vec<&str> = input.files.iter().map(|f| f.rel.as_str()).collect();
    assert_eq!(rels, ["alias.txt", "pt.txt"]);
    assert_eq!(input.files[0].display, "more/linked/alias.txt");
    assert_eq!(input.files[0].path, a.root().join("data/pt.txt"));
}

#[test]
fn dataset_symlinked_out_names_the_link_and_target() {
    let f = Fixture::new();
    f.link(&f.secret(), "data/evil.txt");
    let e = f.access().input("data/evil.txt").unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with(
            "`data/evil.txt` leads outside the project root: `data/evil.txt` is a symlink to"
        ),
        "{msg}"
    );
    assert!(msg.contains("secret.txt"), "{msg}");
    assert!(e.hint().contains("--allow-outside"));
}

#[test]
fn parent_directory_symlinked_out() {
    let f = Fixture::new();
    f.link(f.outside.path(), "ext");
    let e = f.access().file("ext/secret.txt").unwrap_err();
    let FsError::Outside { link, path, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!((link.as_str(), path.as_str()), ("ext", "ext/secret.txt"));
}

#[test]
fn dotdot_through_a_symlink_is_caught() {
    let f = Fixture::new();
    // `data/up` is inside, but `..` from it climbs above the root.
    f.link(Path::new("../.."), "data/up");
    let top = f
        .root
        .path()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let e = f
        .access()
        .file(&format!("data/up/{top}/data/pt.txt"))
        .map(|p| p.display().to_string());
    // Resolving through `data/up` lands back in the root: allowed.
    assert!(e.is_ok(), "{e:?}");
    let e = f.access().input("data/up").unwrap_err();
    assert!(
        matches!(e, FsError::Outside { ref link, .. } if link == "data/up"),
        "{e}"
    );
}

#[test]
fn symlink_inside_a_shard_directory_pointing_out() {
    let f = Fixture::new();
    f.write("data/shards/a.txt", "a\n");
    f.link(&f.secret(), "data/shards/b.txt");
    let e = f.access().input("data/shards").unwrap_err();
    let FsError::Outside { link, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(link, "data/shards/b.txt");
}

#[test]
fn allowed_outside_directory_is_read() {
    let f = Fixture::new();
    f.link(&f.secret(), "models/cached.txt");
    let allow = vec![std::fs::canonicalize(f.outside.path()).unwrap()];
    let a = Access::with(f.root.path(), allow, 10).unwrap();
    let input = a.input("models").unwrap();
    assert_eq!(input.files.len(), 1);
    assert_eq!(a.read("models/cached.txt").unwrap(), b"secret\n");
}

#[test]
fn fifo_is_refused_before_open() {
    let f = Fixture::new();
    let fifo = f.root.path().join("data/pipe.txt");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let a = f.access();
    // Each of these would block forever in open() if it tried.
    let e = a.file("data/pipe.txt").unwrap_err();
    assert_eq!(
        e.to_string(),
        "`data/pipe.txt` is a FIFO (named pipe), not a regular file"
    );
    assert!(matches!(
        open_regular(&fifo, "p"),
        Err(FsError::NotRegular { .. })
    ));
    let e = a.input("data").unwrap_err();
    assert!(
        e.to_string().starts_with("`data/pipe.txt` is a FIFO"),
        "{e}"
    );
    assert!(a.input("data/pipe.txt").is_err());
}

#[test]
fn device_is_refused_even_when_allowed() {
    let f = Fixture::new();
    f.link(Path::new("/dev/zero"), "data/zero.txt");
    let e = f.access().input("data/zero.txt").unwrap_err();
    assert!(matches!(e, FsError::Outside { .. }), "{e}");
    let a = Access::with(f.root.path(), vec!["/dev".into()], 10).unwrap();
    let e = a.input("data/zero.txt").unwrap_err();
    assert_eq!(
        e.to_string(),
        "`data/zero.txt` is a character device, not a regular file"
    );
}

#[test]
fn missing_and_dangling() {
    let f = Fixture::new();
    let e = f.access().input("data/nope.txt").unwrap_err();
    assert_eq!(e.to_string(), "`data/nope.txt` does not exist");
    f.link(Path::new("/nonexistent/medrun"), "data/gone.txt");
    let e = f.access().input("data/gone.txt").unwrap_err();
    assert_eq!(
        e.to_string(),
        "`data/gone.txt` does not exist (`data/gone.txt` is a symlink to `/nonexistent/medrun`, which does not exist)"
    );
}

#[test]
fn directory_loop_and_hidden_entries() {
    let f = Fixture::new();
    f.write("data/d/x.txt", "x\n");
    f.write("data/d/.hidden", "h\n");
    f.link(Path::new("/nonexistent"), "data/d/.dangling");
    f.link(Path::new(".."), "data/d/sub/up");
    let e = f.access().input("data/d").unwrap_err();
    assert_eq!(
        e.to_string(),
        "`data/d/sub/up` is a symlink loop: it leads back to `data/d`, a directory that holds it"
    );
    std::fs::remove_file(f.root.path().join("data/d/sub/up")).unwrap();
    let input = f.access().input("data/d").unwrap();
    assert_eq!(input.files.len(), 1);
    assert!(input.dir);
}

#[test]
fn socket_in_a_directory_is_refused() {
    let f = Fixture::new();
    let path = f.root.path().join("data/sock");
    let _l = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let e = f.access().input("data").unwrap_err();
    assert_eq!(e.to_string(), "`data/sock` is a socket, not a regular file");
}

#[test]
fn byte_counts_parse() {
    assert_eq!(parse_bytes("4194304"), Ok(4 << 20));
    assert_eq!(parse_bytes("4M"), Ok(4 << 20));
    assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
    assert_eq!(parse_bytes("1G"), Ok(1 << 30));
    assert!(parse_bytes("x").is_err());
    assert!(parse_bytes("5T").is_err());
    assert!(parse_bytes("99999999999999999999G").is_err());
}
