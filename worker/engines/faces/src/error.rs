//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while fetching, loading or running the face models.
#[derive(Debug, thiserror::Error)]
pub enum FaceError {
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
    #[error("unknown model name {0:?}")]
    UnknownModel(String),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("model fetch failed: {0}")]
    Fetch(String),
    #[error("malformed dlib file {file} at byte {offset}: {what}")]
    Format {
        file: String,
        offset: usize,
        what: String,
    },
    #[error("unexpected network layout in {file}: {what}")]
    Layout { file: String, what: String },
    #[error("tensor error in {context}: {source}")]
    Tensor {
        context: String,
        #[source]
        source: candle_core::Error,
    },
    #[error("invalid image: {0}")]
    Image(String),
    #[error("malformed TFLite file at byte {offset}: {what}")]
    TfliteFormat { offset: usize, what: String },
    #[error("TFLite graph is not the {model} network this crate implements: {what}")]
    TfliteGraph { model: String, what: String },
}

pub type Result<T> = std::result::Result<T, FaceError>;

/// Adds a context string to candle errors.
pub(crate) trait TensorContext<T> {
    fn ctx(self, context: &str) -> Result<T>;
}

impl<T> TensorContext<T> for candle_core::Result<T> {
    fn ctx(self, context: &str) -> Result<T> {
        self.map_err(|source| FaceError::Tensor {
            context: context.to_string(),
            source,
        })
    }
}

/// Why a reference descriptor could not be taken from an identity image.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "no face found in the identity image; use a photo where the person's face is clearly \
         visible and at least about 80 pixels wide"
    )]
    NoFace,
    #[error(
        "the identity image shows {count} faces, so whose identity it carries is ambiguous; crop \
         it to the one person (or ask for the largest face explicitly)"
    )]
    SeveralFaces { count: usize },
    #[error(transparent)]
    Face(#[from] FaceError),
}
