//! Computes medrun's engine fingerprint at build time: a blake3 over its own sources, build
//! script, manifest and Cargo.lock, plus the rustc version, target and enabled features. Stage keys
//! include it, so a different engine never reuses another engine's outputs.

use std::path::{Path, PathBuf};
use std::process::Command;

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets this"));
    let mut files = Vec::new();
    collect(&manifest.join("src"), &mut files);
    for f in ["Cargo.toml", "Cargo.lock", "build.rs"] {
        files.push(manifest.join(f));
    }
    files.sort();
    let mut h = blake3::Hasher::new();
    h.update(b"medrun-source-v1\n");
    for f in &files {
        let rel = f.strip_prefix(&manifest).unwrap_or(f);
        let bytes = std::fs::read(f).unwrap_or_default();
        h.update(rel.to_string_lossy().replace('\\', "/").as_bytes());
        h.update(&[0]);
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    println!(
        "cargo:rustc-env=MEDRUN_SOURCE_HASH={}",
        h.finalize().to_hex()
    );
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=Cargo.toml");
    println!("cargo:rerun-if-changed=Cargo.lock");
    println!("cargo:rerun-if-changed=build.rs");

    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(rustc)
        .arg("-V")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=MEDRUN_RUSTC_VERSION={version}");
    println!(
        "cargo:rustc-env=MEDRUN_TARGET={}",
        std::env::var("TARGET").unwrap_or_default()
    );
    let mut features: Vec<String> = std::env::vars()
        .filter_map(|(k, _)| {
            k.strip_prefix("CARGO_FEATURE_")
                .map(|f| f.to_lowercase().replace('_', "-"))
        })
        .collect();
    features.sort();
    println!("cargo:rustc-env=MEDRUN_FEATURES={}", features.join(","));
}
