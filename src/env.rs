//! The only reader of host facts and environment variables: the engine fingerprint (baked in at
//! build time by `build.rs`), the device class, and host facts for lineage records.

use serde::{Deserialize, Serialize};

use crate::spec::DeviceSpec;

/// What built this medrun. Part of every stage key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineFingerprint {
    pub version: String,
    /// blake3 over medrun's sources, build script, manifest and Cargo.lock.
    pub source_hash: String,
    pub features: Vec<String>,
    pub target: String,
    pub rustc: String,
}

impl EngineFingerprint {
    pub fn current() -> EngineFingerprint {
        let features = env!("MEDRUN_FEATURES");
        EngineFingerprint {
            version: env!("CARGO_PKG_VERSION").to_string(),
            source_hash: env!("MEDRUN_SOURCE_HASH").to_string(),
            features: if features.is_empty() {
                Vec::new()
            } else {
                features.split(',').map(str::to_string).collect()
            },
            target: env!("MEDRUN_TARGET").to_string(),
            rustc: env!("MEDRUN_RUSTC_VERSION").to_string(),
        }
    }

    pub fn short(&self) -> String {
        format!(
            "medrun {} (src {}), {}, {}",
            self.version,
            &self.source_hash[..12.min(self.source_hash.len())],
            self.target,
            self.rustc
        )
    }
}

/// The class of machine a stage runs on: outputs are only promised to be bit-identical within
/// one class (see docs/concepts/keys.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceClass {
    /// `cpu` or `cuda`.
    pub kind: String,
    /// CPU model name, or GPU model name.
    pub model: String,
    /// Instruction-set features that change kernel choice (x86: avx, avx2, fma, avx512f, f16c).
    pub isa: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(
        "the spec asks for device {device}, but this medrun was built without the `cuda` feature"
    )]
    NoCuda { device: String },
    #[error("the spec asks for device {device}, but no such CUDA GPU is visible: {reason}")]
    CudaUnavailable { device: String, reason: String },
}

impl DeviceError {
    pub fn hint(&self) -> String {
        match self {
            DeviceError::NoCuda { .. } => "rebuild with `cargo build --release --features cuda` (needs nvcc and CUDA_COMPUTE_CAP), or set `device: cpu`".into(),
            DeviceError::CudaUnavailable { .. } => "check `nvidia-smi` and the index in `device: cuda:N`, or set `device: cpu`".into(),
        }
    }
}

impl DeviceClass {
    pub fn detect(device: DeviceSpec) -> Result<DeviceClass, DeviceError> {
        match device {
            DeviceSpec::Cpu => Ok(DeviceClass {
                kind: "cpu".into(),
                model: cpu_model(),
                isa: cpu_isa(),
            }),
            DeviceSpec::Cuda(n) => cuda_class(n, device),
        }
    }

    pub fn short(&self) -> String {
        format!("{} {} [{}]", self.kind, self.model, self.isa.join(" "))
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda_class(_n: u32, device: DeviceSpec) -> Result<DeviceClass, DeviceError> {
    Err(DeviceError::NoCuda {
        device: device.to_string(),
    })
}

/// GPU model and compute capability from `nvidia-smi` (no CUDA library call: planning must stay
/// cheap and must not initialise the GPU).
#[cfg(feature = "cuda")]
fn cuda_class(n: u32, device: DeviceSpec) -> Result<DeviceClass, DeviceError> {
    let unavailable = |reason: String| DeviceError::CudaUnavailable {
        device: device.to_string(),
        reason,
    };
    let out = std::process::Command::new("nvidia-smi")
        .args([
            "--query-gpu=name,compute_cap",
            "--format=csv,noheader",
            &format!("--id={n}"),
        ])
        .output()
        .map_err(|e| unavailable(format!("cannot run nvidia-smi: {e}")))?;
    if !out.status.success() {
        return Err(unavailable(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next().unwrap_or("").trim();
    let (name, cap) = line
        .rsplit_once(',')
        .map(|(a, b)| (a.trim().to_string(), b.trim().to_string()))
        .ok_or_else(|| unavailable(format!("unexpected nvidia-smi output `{line}`")))?;
    Ok(DeviceClass {
        kind: "cuda".into(),
        model: name,
        isa: vec![format!("sm_{}", cap.replace('.', ""))],
    })
}

fn cpu_model() -> String {
    if let Ok(text) = std::fs::read_to_string("/proc/cpuinfo") {
        for line in text.lines() {
            if let Some((k, v)) = line.split_once(':') {
                let k = k.trim();
                if k == "model name" || k == "Model" || k == "cpu model" {
                    return v.trim().to_string();
                }
            }
        }
    }
    format!("unknown {}", std::env::consts::ARCH)
}

#[allow(unused_mut)]
fn cpu_isa() -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx") {
            v.push("avx".into());
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            v.push("avx2".into());
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            v.push("avx512f".into());
        }
        if std::arch::is_x86_feature_detected!("f16c") {
            v.push("f16c".into());
        }
        if std::arch::is_x86_feature_detected!("fma") {
            v.push("fma".into());
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            v.push("neon".into());
        }
    }
    v.push(std::env::consts::ARCH.to_string());
    v.sort();
    v
}

/// Facts about the host for lineage records. Never hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    pub hostname: String,
    pub os: String,
    pub arch: String,
    pub cpus: usize,
    pub threads: Option<String>,
}

impl HostFacts {
    pub fn detect() -> HostFacts {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| "unknown".into());
        HostFacts {
            hostname,
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            threads: std::env::var("RAYON_NUM_THREADS").ok(),
        }
    }
}

/// `MEDRUN_STORE`, if set.
pub fn store_override() -> Option<std::path::PathBuf> {
    std::env::var_os("MEDRUN_STORE")
        .filter(|s| !s.is_empty())
        .map(Into::into)
}

/// Whether colour is disabled by `NO_COLOR` (any non-empty value).
pub fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}
