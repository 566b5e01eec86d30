//! Builds the three ports from configuration: real services when their addresses are configured, the
//! embedded adapters under the data directory otherwise. Every adapter is wrapped to count and time calls.

use std::sync::Arc;

use crate::config::{Config, ConfigError};
use crate::ports::cache::{CacheError, MemoryCache, MeteredCache, RedisCache, SharedCache};
use crate::ports::queue::{AmqpQueue, MemoryQueue, MeteredQueue, QueueError, SharedQueue};
use crate::ports::store::{LocalStore, MeteredStore, S3Config, S3Store, SharedStore, StoreError};
use crate::retry::{with_backoff, Backoff};

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The three ports, as every role holds them.
#[derive(Debug, Clone)]
pub struct Backends {
    pub queue: SharedQueue,
    pub cache: SharedCache,
    pub store: SharedStore,
}

impl Backends {
    /// Connects to what the configuration names, retrying unreachable services with backoff.
    pub async fn connect(config: &Config) -> Result<Backends, BackendError> {
        let backoff = Backoff::from(&config.retry);
        let queue = connect_queue(config, backoff).await?;
        let cache = connect_cache(config, backoff).await?;
        let store = connect_store(config, backoff).await?;
        Ok(Backends {
            queue,
            cache,
            store,
        })
    }

    /// A one-line description of what is in use, for start-up logs.
    pub fn describe(&self) -> String {
        format!(
            "queue={} cache={} store={}",
            self.queue.backend(),
            self.cache.backend(),
            self.store.backend()
        )
    }
}

pub async fn connect_queue(config: &Config, backoff: Backoff) -> Result<SharedQueue, BackendError> {
    Ok(match config.amqp_url()? {
        Some(url) => {
            let queue = with_backoff("RabbitMQ", backoff, QueueError::is_transient, || {
                AmqpQueue::connect(&url)
            })
            .await?;
            Arc::new(MeteredQueue::new(queue))
        }
        None => Arc::new(MeteredQueue::new(MemoryQueue::open(
            &config.data_dir.join("queues"),
        )?)),
    })
}

pub async fn connect_cache(config: &Config, backoff: Backoff) -> Result<SharedCache, BackendError> {
    Ok(match config.redis_url()? {
        Some(url) => {
            let cache = with_backoff(
                "Redis",
                backoff,
                |_: &CacheError| true,
                || RedisCache::connect(&url),
            )
            .await?;
            Arc::new(MeteredCache::new(cache))
        }
        None => {
            let snapshot = config.data_dir.join("cache").join("snapshot.bin");
            let cache = MemoryCache::open(&snapshot, config.cache.memory_mb * 1024 * 1024)?;
            Arc::new(MeteredCache::new(cache))
        }
    })
}

pub async fn connect_store(config: &Config, backoff: Backoff) -> Result<SharedStore, BackendError> {
    Ok(match &config.s3.bucket {
        Some(bucket) => {
            let s3 = S3Config {
                endpoint: config.s3.endpoint.clone(),
                region: config.s3.region.clone(),
                bucket: bucket.clone(),
                prefix: config.s3.prefix.trim_matches('/').to_string(),
                access_key: config.s3_access_key()?,
                secret_key: config.s3_secret_key()?,
                path_style: config.s3.path_style,
                multipart_threshold: config.s3.multipart_threshold_mb * 1024 * 1024,
            };
            let store = S3Store::connect(s3).await;
            with_backoff("S3", backoff, StoreError::is_transient, || {
                store.ensure_bucket()
            })
            .await?;
            Arc::new(MeteredStore::new(store))
        }
        None => Arc::new(MeteredStore::new(LocalStore::open(
            config.data_dir.join("store"),
        )?)),
    })
}

/// Parses `s3://bucket/prefix` into the bucket and the prefix.
pub fn parse_s3_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then(|| (bucket.to_string(), prefix.trim_matches('/').to_string()))
}
