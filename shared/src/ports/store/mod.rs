//! Object store port: where photo shards, analyses, results and models live.
//!
//! Keys are `/`-separated relative paths (`tenants/{tenant}/shards/{shard}.tar`). The two adapters are
//! [`S3Store`] (any S3-compatible server) and [`LocalStore`] (a directory); both pass the same contract
//! tests in `tests/store_contract.rs`.

mod local;
mod metered;
mod s3;

pub use local::LocalStore;
pub use metered::MeteredStore;
pub use s3::{S3Config, S3Store};

use std::ops::Range;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::AsyncRead;

/// A readable byte stream of one object, consumed without holding it all in memory.
pub type ObjectReader = Pin<Box<dyn AsyncRead + Send>>;

/// The store as the rest of Reverie holds it.
pub type SharedStore = Arc<dyn ObjectStore>;

/// What a listing or a head request says about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object {key:?} not found in {backend}")]
    NotFound { backend: &'static str, key: String },
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    #[error("{backend} at {address} is unreachable: {detail}")]
    Unreachable {
        backend: &'static str,
        address: String,
        detail: String,
    },
    #[error("{backend} {operation} of {key:?} failed: {detail}")]
    Backend {
        backend: &'static str,
        operation: &'static str,
        key: String,
        detail: String,
    },
    #[error("local store I/O on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The store refused and will refuse again until someone changes its configuration: access denied,
    /// a missing bucket, unknown or bad credentials, a read-only directory. Never worth a retry.
    #[error("{backend} refused {operation} of {key:?} ({code}): {detail}")]
    Refused {
        backend: &'static str,
        operation: &'static str,
        key: String,
        /// `AccessDenied`, `NoSuchBucket`, `InvalidAccessKeyId`, `PermissionDenied`, ...
        code: String,
        detail: String,
    },
}

/// S3 error codes no retry can change (the configuration or the credentials must): a 403 or a missing
/// bucket. Throttling (`SlowDown`), `InternalError`, `ServiceUnavailable` and timeouts are not here.
pub const PERMANENT_S3_CODES: &[&str] = &[
    "AccessDenied",
    "AllAccessDisabled",
    "AccountProblem",
    "InvalidAccessKeyId",
    "InvalidBucketName",
    "InvalidSecurity",
    "NoSuchBucket",
    "NotSignedUp",
    "SignatureDoesNotMatch",
    "UnauthorizedAccess",
    "Forbidden",
];

/// The permanent S3 error code an error's text names, if any.
pub fn permanent_code(detail: &str) -> Option<&'static str> {
    PERMANENT_S3_CODES
        .iter()
        .copied()
        .find(|code| detail.contains(code))
}

/// Whether a local I/O error is one no retry can change (permissions, a read-only file system).
pub fn io_is_permanent(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
    )
}

impl StoreError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }

    /// Transient failures are worth a retry (the store is away, a 5xx, throttling); a missing object, a
    /// bad key or a refusal ([`StoreError::is_permanent`]) is not.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Unreachable { .. } => true,
            // A refusal that reached us as a plain backend error (an adapter or wrapper that did not
            // classify it) is still a refusal.
            StoreError::Backend { detail, .. } => permanent_code(detail).is_none(),
            _ => false,
        }
    }

    /// A refusal no retry can change: access denied, a missing bucket, bad credentials, a read-only or
    /// forbidden directory. Callers give up at once and say why (dead letter reason `store_refused`).
    pub fn is_permanent(&self) -> bool {
        match self {
            StoreError::Refused { .. } => true,
            StoreError::Backend { detail, .. } => permanent_code(detail).is_some(),
            StoreError::Io { source, .. } => io_is_permanent(source),
            _ => false,
        }
    }
}

/// The object store port. Implementations count and time every call (see `metrics`).
#[async_trait]
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// A short name for logs and metric labels: `s3` or `local`.
    fn backend(&self) -> &'static str;

    /// The same kind of store on another bucket (a tenant's own output bucket), sharing this store's
    /// connection and credentials; its keys are not prefixed. The local adapter keeps each bucket in a
    /// directory `buckets/{bucket}` beside its own root.
    fn other_bucket(&self, bucket: &str) -> Result<SharedStore, StoreError>;

    /// Writes a whole object, replacing any previous one atomically (readers see old or new, never half).
    async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError>;

    /// Writes a whole object only if none exists under `key` (S3's conditional `If-None-Match: *` put;
    /// atomic on AWS S3 and in the local adapter, check-then-write on some S3 test servers). Returns
    /// `false`, writing nothing, when the key was taken: how a request's first record claims its id
    /// without reading first.
    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<bool, StoreError>;

    /// Uploads a file; large files go up in parts (multipart upload on S3) without being read into memory.
    async fn put_file(&self, key: &str, path: &Path) -> Result<(), StoreError>;

    /// Reads a whole object.
    async fn get(&self, key: &str) -> Result<Bytes, StoreError>;

    /// Reads the bytes `range` (end exclusive) of an object.
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError>;

    /// Opens a streaming reader on an object.
    async fn reader(&self, key: &str) -> Result<ObjectReader, StoreError>;

    /// Size of an object, or `None` when it does not exist.
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError>;

    /// Every object whose key starts with `prefix`, sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError>;

    /// Deletes an object; deleting a missing object is not an error.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Deletes every object under `prefix` and returns how many were deleted.
    async fn delete_prefix(&self, prefix: &str) -> Result<u64, StoreError> {
        let objects = self.list(prefix).await?;
        for object in &objects {
            self.delete(&object.key).await?;
        }
        Ok(objects.len() as u64)
    }
}

/// A shared store is a store: lets wrappers such as [`MeteredStore`] hold one.
#[async_trait]
impl ObjectStore for SharedStore {
    fn backend(&self) -> &'static str {
        (**self).backend()
    }
    fn other_bucket(&self, bucket: &str) -> Result<SharedStore, StoreError> {
        (**self).other_bucket(bucket)
    }
    async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        (**self).put(key, body).await
    }
    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<bool, StoreError> {
        (**self).put_if_absent(key, body).await
    }
    async fn put_file(&self, key: &str, path: &Path) -> Result<(), StoreError> {
        (**self).put_file(key, path).await
    }
    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        (**self).get(key).await
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        (**self).get_range(key, range).await
    }
    async fn reader(&self, key: &str) -> Result<ObjectReader, StoreError> {
        (**self).reader(key).await
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        (**self).head(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        (**self).list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        (**self).delete(key).await
    }
}

/// Checks a bucket name by S3's rules (3-63 characters: lowercase letters, digits, dots, hyphens).
pub fn validate_bucket(bucket: &str) -> Result<(), StoreError> {
    let valid = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && !bucket.starts_with(['.', '-'])
        && !bucket.ends_with(['.', '-']);
    if valid {
        Ok(())
    } else {
        Err(StoreError::InvalidKey {
            key: bucket.to_string(),
            reason: "not a valid bucket name (3-63 lowercase letters, digits, dots or hyphens)",
        })
    }
}

/// Rejects keys that could escape a tenant's prefix or a local root directory.
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    let invalid = |reason| {
        Err(StoreError::InvalidKey {
            key: key.to_string(),
            reason,
        })
    };
    if key.is_empty() {
        return invalid("empty");
    }
    if key.starts_with('/') {
        return invalid("absolute");
    }
    if key
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return invalid("empty, '.' or '..' path segment");
    }
    if key.chars().any(|c| c.is_control() || c == '\\') {
        return invalid("control character or backslash");
    }
    Ok(())
}
