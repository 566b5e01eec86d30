//! Counts and times every object-store call, whatever the adapter, and logs failures with the key.

use std::ops::Range;
use std::path::Path;

use async_trait::async_trait;
use bytes::Bytes;

use super::{ObjectMeta, ObjectReader, ObjectStore, StoreError};
use crate::metrics::{self, CallTimer};

#[derive(Debug)]
pub struct MeteredStore<S> {
    inner: S,
}

impl<S: ObjectStore> MeteredStore<S> {
    pub fn new(inner: S) -> MeteredStore<S> {
        MeteredStore { inner }
    }

    fn record<T>(&self, op: &'static str, timer: CallTimer, result: &Result<T, StoreError>) {
        let backend = self.inner.backend();
        let outcome = match result {
            Ok(_) => "ok",
            Err(StoreError::NotFound { .. }) => "not_found",
            Err(error) => {
                tracing::warn!(backend, op, %error, "object store call failed");
                "error"
            }
        };
        let m = metrics::global();
        m.store_operations
            .with_label_values(&[backend, op, outcome])
            .inc();
        m.store_seconds
            .with_label_values(&[backend, op])
            .observe(timer.elapsed_seconds());
    }

    fn count_bytes(&self, op: &'static str, bytes: u64) {
        metrics::global()
            .store_bytes
            .with_label_values(&[self.inner.backend(), op])
            .inc_by(bytes);
    }
}

#[async_trait]
impl<S: ObjectStore> ObjectStore for MeteredStore<S> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn other_bucket(&self, bucket: &str) -> Result<super::SharedStore, StoreError> {
        Ok(std::sync::Arc::new(MeteredStore::new(
            self.inner.other_bucket(bucket)?,
        )))
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        let timer = CallTimer::start();
        let size = body.len() as u64;
        let result = self.inner.put(key, body).await;
        self.record("put", timer, &result);
        if result.is_ok() {
            self.count_bytes("put", size);
        }
        result
    }

    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<bool, StoreError> {
        let timer = CallTimer::start();
        let size = body.len() as u64;
        let result = self.inner.put_if_absent(key, body).await;
        self.record("put", timer, &result);
        if matches!(result, Ok(true)) {
            self.count_bytes("put", size);
        }
        result
    }

    async fn put_file(&self, key: &str, path: &Path) -> Result<(), StoreError> {
        let timer = CallTimer::start();
        let result = self.inner.put_file(key, path).await;
        self.record("put", timer, &result);
        if result.is_ok() {
            if let Ok(meta) = tokio::fs::metadata(path).await {
                self.count_bytes("put", meta.len());
            }
        }
        result
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let timer = CallTimer::start();
        let result = self.inner.get(key).await;
        self.record("get", timer, &result);
        if let Ok(body) = &result {
            self.count_bytes("get", body.len() as u64);
        }
        result
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        let timer = CallTimer::start();
        let result = self.inner.get_range(key, range).await;
        self.record("get_range", timer, &result);
        if let Ok(body) = &result {
            self.count_bytes("get", body.len() as u64);
        }
        result
    }

    async fn reader(&self, key: &str) -> Result<ObjectReader, StoreError> {
        let timer = CallTimer::start();
        let result = self.inner.reader(key).await;
        self.record("get", timer, &result);
        result
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        let timer = CallTimer::start();
        let result = self.inner.head(key).await;
        self.record("head", timer, &result);
        result
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let timer = CallTimer::start();
        let result = self.inner.list(prefix).await;
        self.record("list", timer, &result);
        result
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let timer = CallTimer::start();
        let result = self.inner.delete(key).await;
        self.record("delete", timer, &result);
        result
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, StoreError> {
        let timer = CallTimer::start();
        let result = self.inner.delete_prefix(prefix).await;
        self.record("delete", timer, &result);
        result
    }
}
