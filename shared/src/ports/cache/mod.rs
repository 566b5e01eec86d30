//! Cache port: embeddings, job state and heartbeats. Values are opaque bytes with an optional TTL.
//!
//! Adapters: [`RedisCache`] (production, tests) and [`MemoryCache`] (an LRU with the same TTL semantics,
//! snapshotted to the data directory so the embedded mode survives a restart). Both pass the contract
//! tests in `tests/cache_contract.rs`.

mod memory;
mod metered;
mod redis;

pub use self::redis::RedisCache;
pub use memory::MemoryCache;
pub use metered::MeteredCache;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub type SharedCache = Arc<dyn Cache>;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{backend} at {address} is unreachable: {detail}")]
    Unreachable {
        backend: &'static str,
        address: String,
        detail: String,
    },
    #[error("{backend} {operation} failed: {detail}")]
    Backend {
        backend: &'static str,
        operation: &'static str,
        detail: String,
    },
    #[error("cache snapshot {path}: {detail}")]
    Snapshot { path: String, detail: String },
}

#[async_trait]
pub trait Cache: Send + Sync + std::fmt::Debug {
    /// `redis` or `memory`, for logs and metric labels.
    fn backend(&self) -> &'static str;

    async fn get(&self, key: &str) -> Result<Option<Bytes>, CacheError>;

    /// Stores a value; `ttl` of `None` keeps it until evicted or deleted.
    async fn set(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<(), CacheError>;

    /// Reads many keys in one round trip (a pipeline on Redis), in the order given.
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>, CacheError>;

    /// Writes many entries in one round trip, all with the same TTL.
    async fn set_many(
        &self,
        entries: &[(String, Bytes)],
        ttl: Option<Duration>,
    ) -> Result<(), CacheError>;

    /// Removes a key; returns whether it existed.
    async fn delete(&self, key: &str) -> Result<bool, CacheError>;

    /// Removes every key starting with `prefix`; returns how many were removed.
    async fn delete_prefix(&self, prefix: &str) -> Result<u64, CacheError>;

    /// Every key starting with `prefix` (tests, `tenant forget` reports, heartbeat scans).
    async fn keys(&self, prefix: &str) -> Result<Vec<String>, CacheError>;

    /// Remaining time to live: `None` when the key is missing or has no TTL.
    async fn ttl(&self, key: &str) -> Result<Option<Duration>, CacheError>;

    /// Adds `by` to an integer counter (created at 0) and returns the new value; `ttl` is set when the
    /// counter is created. Used for delivery counts of poison-message detection.
    async fn increment(&self, key: &str, by: i64, ttl: Option<Duration>)
        -> Result<i64, CacheError>;

    /// Checks the cache answers (readiness probes).
    async fn ping(&self) -> Result<(), CacheError>;
}
