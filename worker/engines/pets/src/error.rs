//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while fetching, loading or running the pet models.
#[derive(Debug, thiserror::Error)]
pub enum PetError {
    #[error("model file {path} is missing; run `reverie models fetch` to download it")]
    ModelMissing { path: PathBuf },
    #[error(
        "model file {path} has sha256 {actual}, expected {expected}; it is corrupt or a different \
         version — delete it and run `reverie models fetch`"
    )]
    ModelHashMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("model fetch failed: {0}")]
    Fetch(String),
    #[error("malformed TFJS graph model: {0}")]
    TfjsFormat(String),
    #[error("the TFJS graph is not the NanoDet network this crate implements: {0}")]
    Graph(String),
    #[error("tensor error in {context}: {source}")]
    Tensor {
        context: String,
        #[source]
        source: candle_core::Error,
    },
    #[error("invalid image: {0}")]
    Image(String),
}

pub type Result<T> = std::result::Result<T, PetError>;

/// Adds a context string to candle errors.
pub(crate) trait TensorContext<T> {
    fn ctx(self, context: &str) -> Result<T>;
}

impl<T> TensorContext<T> for candle_core::Result<T> {
    fn ctx(self, context: &str) -> Result<T> {
        self.map_err(|source| PetError::Tensor {
            context: context.to_string(),
            source,
        })
    }
}

pub(crate) fn io_error(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> PetError + '_ {
    move |source| PetError::Io {
        path: path.to_path_buf(),
        source,
    }
}
