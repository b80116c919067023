//! The top-level error, its exit code and its hint.
//!
//! Exit codes (docs/reference/exit-codes.md): 0 ok, 1 user or input error, 2 internal error,
//! 3 a promotion gate rejected the checkpoint, 4 a reproduction differs from its record.

use crate::env::DeviceError;
use crate::hash::HashError;
use crate::lineage::RefError;
use crate::lock::LockError;
use crate::spec::SpecError;
use crate::stage::StageError;
use crate::store::StoreError;

pub const EXIT_OK: u8 = 0;
pub const EXIT_USER: u8 = 1;
pub const EXIT_INTERNAL: u8 = 2;
pub const EXIT_GATE: u8 = 3;
pub const EXIT_REPRO: u8 = 4;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ref(#[from] RefError),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error("{message}")]
    Dirty { message: String },
    #[error("stage `{stage}` failed: {source}")]
    Stage {
        stage: String,
        #[source]
        source: StageError,
    },
    #[error("this medrun has no executor for stage kind `{kind}` (stage `{stage}`)")]
    NoExecutor { kind: String, stage: String },
    #[error("{message}")]
    Problems { message: String, hint: String },
    #[error(transparent)]
    Promotion(#[from] crate::promotions::PromotionError),
    /// A run record that fails its seal, or is not sealed where a sealed one is needed.
    #[error(transparent)]
    Seal(#[from] crate::lineage::SealError),
    /// A reproduction produced other bytes than the record (exit 4).
    #[error("{message}")]
    ReproDiffers { message: String, hint: String },
    /// An evaluation ended with a failed task; its (partial) results were reported (exit 1).
    #[error("{message}")]
    EvalIncomplete { message: String, hint: String },
    /// A promotion gate rejected the checkpoint (exit 3).
    #[error("{message}")]
    GateRejected { message: String, hint: String },
    #[error("{0}")]
    Io(String),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Spec(_)
            | Error::Lock(_)
            | Error::Ref(_)
            | Error::Device(_)
            | Error::Dirty { .. } => EXIT_USER,
            Error::Problems { .. }
            | Error::EvalIncomplete { .. }
            | Error::Promotion(_)
            | Error::Seal(_) => EXIT_USER,
            Error::GateRejected { .. } => EXIT_GATE,
            Error::ReproDiffers { .. } => EXIT_REPRO,
            Error::Store(e) if e.is_user_error() => EXIT_USER,
            Error::Store(_) => EXIT_INTERNAL,
            Error::Stage { source, .. } if source.user => EXIT_USER,
            Error::Stage { .. } => EXIT_INTERNAL,
            Error::Hash(_) | Error::NoExecutor { .. } | Error::Io(_) => EXIT_INTERNAL,
        }
    }

    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Error::Spec(e) => e.hint(),
            Error::Lock(e) => e.hint(),
            Error::Store(e) => e.hint(),
            Error::Ref(e) => e.hint(),
            Error::Hash(_) => "run `medrun lock`, then try again".into(),
            Error::Device(e) => e.hint(),
            Error::Dirty { .. } => {
                "commit your changes (spec, datasets.lock, code) so the run can be traced to a commit, or pass `--allow-dirty` to record the dirty state".into()
            }
            Error::Stage { source, .. } => source.hint.clone(),
            Error::NoExecutor { .. } => {
                "this build can plan, lock and record runs, but its training engine does not implement this stage kind".into()
            }
            Error::Problems { hint, .. }
            | Error::EvalIncomplete { hint, .. }
            | Error::GateRejected { hint, .. }
            | Error::ReproDiffers { hint, .. } => hint.clone(),
            Error::Promotion(e) => e.hint(),
            Error::Seal(e) => e.hint(),
            Error::Io(_) => return None,
        })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
