//! Counts every cache call with its result (hit, miss, ok, error) and times it.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::{Cache, CacheError};
use crate::metrics::{self, CallTimer};

#[derive(Debug)]
pub struct MeteredCache<C> {
    inner: C,
}

impl<C: Cache> MeteredCache<C> {
    pub fn new(inner: C) -> MeteredCache<C> {
        MeteredCache { inner }
    }

    fn record(&self, op: &'static str, timer: CallTimer, result: &'static str) {
        let backend = self.inner.backend();
        let m = metrics::global();
        m.cache_requests
            .with_label_values(&[backend, op, result])
            .inc();
        m.cache_seconds
            .with_label_values(&[backend, op])
            .observe(timer.elapsed_seconds());
    }

    fn outcome<T>(&self, op: &'static str, result: &Result<T, CacheError>) -> &'static str {
        match result {
            Ok(_) => "ok",
            Err(error) => {
                tracing::warn!(backend = self.inner.backend(), op, %error, "cache call failed");
                "error"
            }
        }
    }
}

#[async_trait]
impl<C: Cache> Cache for MeteredCache<C> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, CacheError> {
        let timer = CallTimer::start();
        let result = self.inner.get(key).await;
        let label = match &result {
            Ok(Some(_)) => "hit",
            Ok(None) => "miss",
            Err(_) => self.outcome("get", &result),
        };
        self.record("get", timer, label);
        result
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<(), CacheError> {
        let timer = CallTimer::start();
        let result = self.inner.set(key, value, ttl).await;
        self.record("set", timer, self.outcome("set", &result));
        result
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>, CacheError> {
        let timer = CallTimer::start();
        let result = self.inner.get_many(keys).await;
        match &result {
            Ok(values) => {
                // One count per key, so the hit ratio means the same for single and batch reads.
                let hits = values.iter().filter(|v| v.is_some()).count() as u64;
                let backend = self.inner.backend();
                let m = metrics::global();
                m.cache_requests
                    .with_label_values(&[backend, "get", "hit"])
                    .inc_by(hits);
                m.cache_requests
                    .with_label_values(&[backend, "get", "miss"])
                    .inc_by(values.len() as u64 - hits);
                m.cache_seconds
                    .with_label_values(&[backend, "get_many"])
                    .observe(timer.elapsed_seconds());
            }
            Err(_) => self.record("get_many", timer, self.outcome("get_many", &result)),
        }
        result
    }

    async fn set_many(
        &self,
        entries: &[(String, Bytes)],
        ttl: Option<Duration>,
    ) -> Result<(), CacheError> {
        let timer = CallTimer::start();
        let result = self.inner.set_many(entries, ttl).await;
        self.record("set_many", timer, self.outcome("set_many", &result));
        result
    }

    async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        let timer = CallTimer::start();
        let result = self.inner.delete(key).await;
        self.record("delete", timer, self.outcome("delete", &result));
        result
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, CacheError> {
        let timer = CallTimer::start();
        let result = self.inner.delete_prefix(prefix).await;
        self.record(
            "delete_prefix",
            timer,
            self.outcome("delete_prefix", &result),
        );
        result
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, CacheError> {
        let timer = CallTimer::start();
        let result = self.inner.keys(prefix).await;
        self.record("keys", timer, self.outcome("keys", &result));
        result
    }

    async fn ttl(&self, key: &str) -> Result<Option<Duration>, CacheError> {
        let timer = CallTimer::start();
        let result = self.inner.ttl(key).await;
        self.record("ttl", timer, self.outcome("ttl", &result));
        result
    }

    async fn increment(
        &self,
        key: &str,
        by: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, CacheError> {
        let timer = CallTimer::start();
        let result = self.inner.increment(key, by, ttl).await;
        self.record("increment", timer, self.outcome("increment", &result));
        result
    }

    async fn ping(&self) -> Result<(), CacheError> {
        let timer = CallTimer::start();
        let result = self.inner.ping().await;
        self.record("ping", timer, self.outcome("ping", &result));
        result
    }
}
