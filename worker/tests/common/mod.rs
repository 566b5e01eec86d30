//! Real services for the cross-crate tests (started by scripts/test), and helpers that give each test its
//! own queues, cache prefix and bucket so runs never collide.

#![allow(dead_code)]

use std::sync::Arc;

use reverie_shared::ports::cache::{MeteredCache, RedisCache};
use reverie_shared::ports::queue::{AmqpQueue, MeteredQueue};
use reverie_shared::ports::store::{MeteredStore, S3Config, S3Store};
use reverie_shared::queues::QueueNames;
use reverie_shared::Backends;

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

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

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
        multipart_threshold: 8 * 1024 * 1024,
    }
}

/// The real services, with names private to one test.
pub struct RealFarm {
    pub backends: Backends,
    pub queues: QueueNames,
    pub cache_prefix: String,
    pub s3: S3Store,
}

impl RealFarm {
    pub async fn start() -> RealFarm {
        let queue = AmqpQueue::connect(&amqp_url())
            .await
            .unwrap_or_else(|e| panic!("RabbitMQ is not reachable (run scripts/test): {e}"));
        let cache = RedisCache::connect(&redis_url())
            .await
            .unwrap_or_else(|e| panic!("Redis is not reachable (run scripts/test): {e}"));
        let s3 = S3Store::connect(s3_config(&unique("reverie-it"))).await;
        s3.ensure_bucket().await.unwrap_or_else(|e| {
            panic!(
                "S3 server at {} is not reachable (run scripts/test): {e}",
                s3_endpoint()
            )
        });
        let queues = QueueNames::new(&unique("reverie-it"));
        let backends = Backends {
            queue: Arc::new(MeteredQueue::new(queue)),
            cache: Arc::new(MeteredCache::new(cache)),
            store: Arc::new(MeteredStore::new(s3.clone())),
        };
        for spec in queues.specs() {
            backends.queue.declare(&spec).await.unwrap();
        }
        RealFarm {
            backends,
            cache_prefix: unique("reverie-it"),
            queues,
            s3,
        }
    }

    /// Deletes the test's queues, cache keys and bucket.
    pub async fn stop(self) {
        for spec in self.queues.specs() {
            let _ = self.backends.queue.delete(&spec.name).await;
        }
        let _ = self.backends.cache.delete_prefix(&self.cache_prefix).await;
        let _ = self.s3.remove_bucket().await;
    }
}
