use std::process::Command;

use super::*;

/// The pid of a process that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

fn git(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t")
        .output()
        .unwrap();
    assert!(o.status.success(), "git {args:?}: {o:?}");
    String::from_utf8(o.stdout).unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn temp_names_give_their_owner() {
    assert_eq!(temp_owner("datasets.lock.tmp-123-456"), Some(123));
    assert_eq!(temp_owner(".promotions.yaml.tmp-7-8"), Some(7));
    assert_eq!(temp_owner("a.tmp-b.tmp-9-10"), Some(9));
    for not in [
        "datasets.lock",
        "x.tmp-12",
        "x.tmp-a-1",
        "x.tmp--1",
        "x.tmp-1-",
        "x.tmp-1-2x",
    ] {
        assert_eq!(temp_owner(not), None, "{not}");
    }
}

#[test]
fn liveness_of_processes() {
    assert!(pid_alive(std::process::id()));
    assert!(!pid_alive(dead_pid()));
    // Unprovable pids count as alive, so their files are kept.
    assert!(pid_alive(0));
    assert!(pid_alive(u32::MAX));
}

#[test]
fn project_files_are_written_through_the_git_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    git(root, &["init", "-q"]);
    let target = root.join("datasets.lock");
    write_project_file(root, &target, b"version: 1\n").unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"version: 1\n");
    assert_eq!(names(root), [".git", "datasets.lock"]);
    assert!(names(&root.join(".git").join(GIT_TMP_DIR)).is_empty());
    // A temp file left there by a kill never shows in git.
    std::fs::write(
        root.join(".git")
            .join(GIT_TMP_DIR)
            .join("datasets.lock.tmp-1-2"),
        b"x",
    )
    .unwrap();
    assert_eq!(
        git(root, &["status", "--porcelain", "-uall", "--ignored"]),
        "?? datasets.lock\n"
    );
}

#[test]
fn outside_git_the_temp_dir_ignores_itself() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let target = root.join("promotions.yaml");
    write_project_file(root, &target, b"a\n").unwrap();
    assert_eq!(names(root), [PROJECT_TMP_DIR, "promotions.yaml"]);
    let tmp = root.join(PROJECT_TMP_DIR);
    assert_eq!(names(&tmp), [".gitignore"]);
    assert_eq!(std::fs::read(tmp.join(".gitignore")).unwrap(), b"*\n");
    // Made a repository later, with a stale temp file inside: git shows neither the directory
    // nor its files as untracked, even with -uall; --ignored lists them as ignored.
    git(root, &["init", "-q"]);
    std::fs::write(tmp.join("promotions.yaml.tmp-1-2"), b"x").unwrap();
    git(root, &["add", "promotions.yaml"]);
    git(root, &["commit", "-qm", "x"]);
    assert_eq!(git(root, &["status", "--porcelain", "-uall"]), "");
    let ignored = git(root, &["status", "--porcelain", "--ignored"]);
    assert_eq!(ignored, "!! .medrun-tmp/\n");
    // git clean -fd (without -x) leaves it; a repository write still goes through .git.
    write_project_file(root, &target, b"b\n").unwrap();
    assert_eq!(names(&tmp), [".gitignore", "promotions.yaml.tmp-1-2"]);
}

#[test]
fn a_damaged_gitignore_is_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let tmp = root.join(PROJECT_TMP_DIR);
    std::fs::create_dir(&tmp).unwrap();
    std::fs::write(tmp.join(".gitignore"), b"").unwrap();
    write_project_file(root, &root.join("f"), b"x").unwrap();
    assert_eq!(std::fs::read(tmp.join(".gitignore")).unwrap(), b"*\n");
}

#[test]
fn stale_temp_files_of_dead_processes_are_removed_and_live_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    git(root, &["init", "-q"]);
    let (dead, me) = (dead_pid(), std::process::id());
    let git_tmp = root.join(".git").join(GIT_TMP_DIR);
    let root_tmp = root.join(PROJECT_TMP_DIR);
    std::fs::create_dir_all(&git_tmp).unwrap();
    std::fs::create_dir_all(&root_tmp).unwrap();
    let outside = tempfile::tempdir().unwrap();
    let precious = outside.path().join("precious");
    std::fs::write(&precious, b"keep").unwrap();
    let stale = [
        git_tmp.join(format!("datasets.lock.tmp-{dead}-1")),
        root_tmp.join(format!("promotions.yaml.tmp-{dead}-2")),
        root.join(format!(".datasets.lock.tmp-{dead}-3")),
        root.join(format!(".promotions.yaml.tmp-{dead}-4")),
    ];
    let kept = [
        git_tmp.join(format!("datasets.lock.tmp-{me}-5")),
        root.join(format!(".promotions.yaml.tmp-{me}-6")),
        // not medrun's names
        root.join(format!("notes.tmp-{dead}-7")),
        root.join(".datasets.lock.tmp-old"),
        root_tmp.join(".gitignore"),
    ];
    for p in stale.iter().chain(&kept) {
        std::fs::write(p, b"x").unwrap();
    }
    // A directory with a temp-like name is not a temp file; a symlink is removed, not its target.
    std::fs::create_dir(root_tmp.join(format!("d.tmp-{dead}-8"))).unwrap();
    let link = root_tmp.join(format!("l.tmp-{dead}-9"));
    std::os::unix::fs::symlink(&precious, &link).unwrap();

    let c = clean_stale(root);
    assert!(c.failed.is_empty(), "{:?}", c.failed);
    assert_eq!(c.removed.len(), stale.len() + 1, "{:?}", c.removed);
    for p in &stale {
        assert!(!p.exists(), "{} kept", p.display());
    }
    for p in &kept {
        assert!(p.exists(), "{} removed", p.display());
    }
    assert!(root_tmp.join(format!("d.tmp-{dead}-8")).is_dir());
    assert!(link.symlink_metadata().is_err());
    assert_eq!(std::fs::read(&precious).unwrap(), b"keep");
    // Nothing left to do the second time.
    assert!(clean_stale(root).removed.is_empty());
}

#[test]
fn stale_export_directories_are_removed_and_live_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (dead, me) = (dead_pid(), std::process::id());
    let stale = d.join(format!("{EXPORT_PREFIX}{dead}-1"));
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join("model.safetensors"), b"half").unwrap();
    let live = d.join(format!("{EXPORT_PREFIX}{me}-2"));
    std::fs::create_dir(&live).unwrap();
    let other = d.join(format!("{EXPORT_PREFIX}notes"));
    std::fs::create_dir(&other).unwrap();
    let target = tempfile::tempdir().unwrap();
    std::fs::write(target.path().join("keep"), b"keep").unwrap();
    let link = d.join(format!("{EXPORT_PREFIX}{dead}-3"));
    std::os::unix::fs::symlink(target.path(), &link).unwrap();
    let c = clean_stale_exports(d);
    assert!(c.failed.is_empty(), "{:?}", c.failed);
    assert!(!stale.exists() && live.is_dir() && other.is_dir());
    assert!(link.symlink_metadata().is_err());
    assert!(target.path().join("keep").is_file());
    assert!(export_dir_name().starts_with(&format!("{EXPORT_PREFIX}{me}-")));
}
