//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong in the diffusion engine.
#[derive(Debug, thiserror::Error)]
pub enum DiffusionError {
    #[error("tensor operation failed: {0}")]
    Tensor(#[from] candle_core::Error),

    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("invalid JSON in {path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },

    #[error("invalid scheduler setting `{field}`: {reason}")]
    SchedulerConfig { field: &'static str, reason: String },

    #[error("weights {path}, tensor `{tensor}`: {reason}")]
    Weights {
        path: PathBuf,
        tensor: String,
        reason: String,
    },

    #[error("model config {path}: {reason}")]
    ModelConfig { path: PathBuf, reason: String },

    #[error("invalid input: {0}")]
    InvalidInput(String),

    #[error("tokenizer {path}: {reason}")]
    Tokenizer { path: PathBuf, reason: String },

    #[error("scheduler step index {index} is outside the {len} planned steps")]
    StepOutOfRange { index: usize, len: usize },

    #[error("scheduler step {index} adds noise but the caller passed none")]
    MissingNoise { index: usize },

    #[error("generation cancelled")]
    Cancelled,

    #[error("identity guidance: {0}")]
    Guidance(String),

    #[error("LoRA {path}: {reason}")]
    Lora { path: PathBuf, reason: String },

    #[error("IP-Adapter {path}: {reason}")]
    IpAdapter { path: PathBuf, reason: String },

    /// About one registry entry: `entry` is "model `sd15`" or "adapter `ip-plus`".
    #[error("{entry}: {reason}")]
    Registry { entry: String, reason: String },
}

pub type Result<T> = std::result::Result<T, DiffusionError>;

/// Reads a JSON file of a checkpoint (a `config.json`, `model_index.json`, ...) with errors that name it.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|source| DiffusionError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| DiffusionError::Json {
        path: path.to_path_buf(),
        source,
    })
}
