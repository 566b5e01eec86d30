use reverie_shared::ports::store::StoreError;

/// Why one file was skipped. Reported with the file's name; the import goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum Damage {
    #[error("not an image: {0}")]
    NotAnImage(String),
    #[error("unsupported format: {0}")]
    Unsupported(String),
    #[error("corrupt image: {0}")]
    Corrupt(String),
    #[error("unreadable: {0}")]
    Unreadable(String),
    #[error("{width}x{height} pixels exceeds the limit of {limit} (a decompression bomb or a panorama too large to import)")]
    TooLarge { width: u32, height: u32, limit: u64 },
    #[error("{bytes} bytes exceeds the file size limit of {limit} (a zip bomb or a file too large to import)")]
    FileTooLarge { bytes: u64, limit: u64 },
    #[error("unsafe path: {0}")]
    UnsafePath(String),
    /// A zip entry built to make the reader do far more work than its size suggests: an extreme
    /// compression ratio, data overlapping another entry's, or more bytes than its header declares.
    #[error("suspicious archive entry: {0}")]
    SuspiciousArchive(String),
    /// An import-wide limit (file count, total bytes) was reached; the file was not read.
    #[error("import limit reached: {0}")]
    LimitReached(String),
    #[error("sidecar does not parse: {0}")]
    BadSidecar(String),
    #[error("duplicate of {0} (same bytes)")]
    Duplicate(String),
    #[error("impossible metadata ignored: {0}")]
    ImpossibleMetadata(String),
    #[error("empty file")]
    Empty,
}

#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    #[error("import source {path}: {detail}")]
    Source { path: String, detail: String },
    #[error("library manifest of tenant {tenant}: {detail}")]
    Manifest { tenant: String, detail: String },
    #[error("shard {shard}: {detail}")]
    Shard { shard: String, detail: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}
