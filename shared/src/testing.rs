//! Where the integration tests of every crate find the real services (scripts/test starts them and
//! exports these variables; the defaults are the usual loopback ports), and how they get names no other
//! test run uses. Test support only: nothing in a running farm calls it.

use crate::ports::cache::RedisCache;
use crate::ports::queue::AmqpQueue;
use crate::ports::store::{S3Config, S3Store};

pub fn amqp_url() -> String {
    std::env::var("REVERIE_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub fn redis_url() -> String {
    std::env::var("REVERIE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub fn s3_endpoint() -> String {
    std::env::var("REVERIE_TEST_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:8014".into())
}

/// A name no other test run uses: `prefix-<12 hex digits>`.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// The test S3 server's settings for `bucket`.
pub fn s3_config(bucket: &str) -> S3Config {
    S3Config {
        endpoint: Some(s3_endpoint()),
        region: "us-east-1".into(),
        bucket: bucket.into(),
        prefix: String::new(),
        access_key: Some(
            std::env::var("REVERIE_TEST_S3_ACCESS_KEY").unwrap_or_else(|_| "reverie".into()),
        ),
        secret_key: Some(
            std::env::var("REVERIE_TEST_S3_SECRET_KEY").unwrap_or_else(|_| "reverie-secret".into()),
        ),
        path_style: true,
        multipart_threshold: 5 * 1024 * 1024,
    }
}

/// A fresh bucket named `prefix-…` on the test S3 server; the caller removes it at the end.
pub async fn s3_store(prefix: &str) -> S3Store {
    let store = S3Store::connect(s3_config(&unique(prefix))).await;
    if let Err(e) = store.ensure_bucket().await {
        panic!(
            "S3 server at {} is not reachable (run scripts/test): {e}",
            s3_endpoint()
        );
    }
    store
}

pub async fn amqp() -> AmqpQueue {
    AmqpQueue::connect(&amqp_url()).await.unwrap_or_else(|e| {
        panic!(
            "RabbitMQ at {} is not reachable (run scripts/test): {e}",
            amqp_url()
        )
    })
}

pub async fn redis() -> RedisCache {
    RedisCache::connect(&redis_url()).await.unwrap_or_else(|e| {
        panic!(
            "Redis at {} is not reachable (run scripts/test): {e}",
            redis_url()
        )
    })
}

/// Byte-level edits for the fuzz targets (proptest): valid inputs mutated into the near-misses a
/// hostile or broken peer sends. Each target draws `Edit`s with its own strategy (the bytes worth
/// inserting differ by format) and adds edits of its own format beside them.
#[derive(Debug, Clone)]
pub enum Edit {
    Flip { at: usize, bit: u8 },
    Insert { at: usize, byte: u8 },
    Delete { at: usize, len: usize },
    Truncate { at: usize },
    Repeat { at: usize, len: usize, times: usize },
}

impl Edit {
    /// Applies the edit; positions wrap around the input, so every drawn edit lands somewhere.
    pub fn apply(&self, bytes: &mut Vec<u8>) {
        let n = bytes.len().max(1);
        match *self {
            Edit::Flip { at, bit } => {
                if !bytes.is_empty() {
                    bytes[at % n] ^= 1 << (bit % 8);
                }
            }
            Edit::Insert { at, byte } => bytes.insert(at % (bytes.len() + 1), byte),
            Edit::Delete { at, len } => {
                let start = at % n;
                let end = (start + len).min(bytes.len());
                if start < end {
                    bytes.drain(start..end);
                }
            }
            Edit::Truncate { at } => bytes.truncate(at % n),
            Edit::Repeat { at, len, times } => {
                let start = at % n;
                let end = (start + len).min(bytes.len());
                if start < end {
                    let piece = bytes[start..end].to_vec();
                    for _ in 0..times {
                        bytes.splice(end..end, piece.iter().copied());
                    }
                }
            }
        }
    }
}

/// `bytes` with every edit applied in order.
pub fn edited(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        edit.apply(&mut bytes);
    }
    bytes
}
