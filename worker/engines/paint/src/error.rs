//! The single error type of the paint engine.

use thiserror::Error;

/// Everything that can go wrong while painting, extracting palettes or composing.
#[derive(Debug, Error)]
pub enum PaintError {
    /// The input image has no pixels at all.
    #[error("image `{what}` is empty ({width}x{height}); it needs at least one pixel")]
    EmptyImage {
        what: &'static str,
        width: u32,
        height: u32,
    },
    /// The input image is larger than the renderer accepts.
    #[error("image `{what}` has {pixels} pixels, more than the limit of {limit}")]
    TooLarge {
        what: &'static str,
        pixels: u64,
        limit: u64,
    },
    /// A style name did not match any preset.
    #[error("unknown style `{0}`; known styles: {1}")]
    UnknownStyle(String, String),
    /// A parameter is outside its documented range.
    #[error("style parameter `{field}` = {value} is invalid: {reason}")]
    InvalidParameter {
        field: &'static str,
        value: f64,
        reason: &'static str,
    },
    /// A palette with no colours was given where colours are needed.
    #[error("palette `{0}` has no colours")]
    EmptyPalette(&'static str),
    /// A serialised fingerprint has the wrong length or version.
    #[error("fingerprint bytes are invalid: {0}")]
    BadFingerprint(String),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, PaintError>;
