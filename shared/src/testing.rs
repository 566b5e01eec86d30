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
