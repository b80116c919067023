//! Models: configuration, parameters (init, load, save) and the transformer itself.

pub mod checkpoint;
pub mod config;
pub mod frozen;
pub mod fused;
pub mod gguf;
pub mod hf;
pub mod infer;
pub mod kernels;
pub mod lora;
pub mod params;
pub mod transformer;

pub use config::ModelConfig;
pub use params::{Param, Params};
pub use transformer::Transformer;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("the model has no tensor `{0}`")]
    MissingTensor(String),
    #[error("sequence of {len} tokens is longer than the model's {max} positions")]
    TooLong { len: usize, max: usize },
    #[error("model config: {0}")]
    Config(String),
    #[error("cannot write {0}: {1}")]
    Io(String, #[source] std::io::Error),
}

#[cfg(test)]
mod tests;
