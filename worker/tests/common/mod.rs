//! Real services for the cross-crate tests (started by scripts/test), and helpers that give each test its
//! own queues, cache prefix and bucket so runs never collide.

#![allow(dead_code, unused_imports)]

use std::sync::Arc;

use reverie_shared::ports::cache::MeteredCache;
use reverie_shared::ports::queue::MeteredQueue;
use reverie_shared::ports::store::{MeteredStore, S3Store};
use reverie_shared::queues::QueueNames;
use reverie_shared::Backends;

pub use reverie_shared::testing::unique;

/// The real services, with names private to one test.
pub struct RealFarm {
    pub backends: Backends,
    pub queues: QueueNames,
    pub cache_prefix: String,
    pub s3: S3Store,
}

impl RealFarm {
    pub async fn start() -> RealFarm {
        let queue = reverie_shared::testing::amqp().await;
        let cache = reverie_shared::testing::redis().await;
        let s3 = reverie_shared::testing::s3_store("reverie-it").await;
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
