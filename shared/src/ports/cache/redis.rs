//! Redis through redis-rs: one multiplexed async connection (a `ConnectionManager`, which reconnects by
//! itself), pipelines for batch calls, SCAN (never KEYS) for prefix walks.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;

use super::{Cache, CacheError};

#[derive(Clone)]
pub struct RedisCache {
    connection: ConnectionManager,
    address: String,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("address", &self.address)
            .finish()
    }
}

/// SCAN page size: large enough to be quick, small enough not to block Redis.
const SCAN_COUNT: usize = 500;

impl RedisCache {
    /// Connects once; callers wrap this in `retry::with_backoff` to wait for a Redis that is starting.
    pub async fn connect(url: &str) -> Result<RedisCache, CacheError> {
        let address = redact(url);
        let unreachable = |detail: String| CacheError::Unreachable {
            backend: "redis",
            address: address.clone(),
            detail,
        };
        let client = redis::Client::open(url).map_err(|e| unreachable(e.to_string()))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_number_of_retries(3);
        let connection = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(RedisCache {
            connection,
            address,
        })
    }

    fn fail(&self, operation: &'static str, error: redis::RedisError) -> CacheError {
        if error.is_io_error()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
            || error.is_timeout()
        {
            CacheError::Unreachable {
                backend: "redis",
                address: self.address.clone(),
                detail: error.to_string(),
            }
        } else {
            CacheError::Backend {
                backend: "redis",
                operation,
                detail: error.to_string(),
            }
        }
    }
}

/// Keeps passwords out of logs: `redis://:secret@host` becomes `redis://***@host`.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// Redis MATCH patterns treat `*?[]\` specially; our prefixes are literal.
fn escape_glob(prefix: &str) -> String {
    let mut escaped = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped.push('*');
    escaped
}

#[async_trait]
impl Cache for RedisCache {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, CacheError> {
        let mut connection = self.connection.clone();
        let value: Option<Vec<u8>> = connection.get(key).await.map_err(|e| self.fail("get", e))?;
        Ok(value.map(Bytes::from))
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<(), CacheError> {
        let mut connection = self.connection.clone();
        let result: redis::RedisResult<()> = match ttl {
            Some(ttl) => {
                connection
                    .pset_ex(key, value.as_ref(), ttl_millis(ttl))
                    .await
            }
            None => connection.set(key, value.as_ref()).await,
        };
        result.map_err(|e| self.fail("set", e))
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>, CacheError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut connection = self.connection.clone();
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.get(key);
        }
        let values: Vec<Option<Vec<u8>>> = pipe
            .query_async(&mut connection)
            .await
            .map_err(|e| self.fail("get_many", e))?;
        Ok(values.into_iter().map(|v| v.map(Bytes::from)).collect())
    }

    async fn set_many(
        &self,
        entries: &[(String, Bytes)],
        ttl: Option<Duration>,
    ) -> Result<(), CacheError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut connection = self.connection.clone();
        let mut pipe = redis::pipe();
        for (key, value) in entries {
            match ttl {
                Some(ttl) => pipe.pset_ex(key, value.as_ref(), ttl_millis(ttl)).ignore(),
                None => pipe.set(key, value.as_ref()).ignore(),
            };
        }
        pipe.query_async::<()>(&mut connection)
            .await
            .map_err(|e| self.fail("set_many", e))
    }

    async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        let mut connection = self.connection.clone();
        let removed: u64 = connection
            .del(key)
            .await
            .map_err(|e| self.fail("delete", e))?;
        Ok(removed > 0)
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, CacheError> {
        let keys = self.keys(prefix).await?;
        let mut removed = 0;
        let mut connection = self.connection.clone();
        for chunk in keys.chunks(SCAN_COUNT) {
            let count: u64 = connection
                .del(chunk)
                .await
                .map_err(|e| self.fail("delete_prefix", e))?;
            removed += count;
        }
        Ok(removed)
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, CacheError> {
        let mut connection = self.connection.clone();
        let pattern = escape_glob(prefix);
        let mut cursor: u64 = 0;
        let mut found = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(&mut connection)
                .await
                .map_err(|e| self.fail("scan", e))?;
            found.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        found.sort();
        found.dedup();
        Ok(found)
    }

    async fn ttl(&self, key: &str) -> Result<Option<Duration>, CacheError> {
        let mut connection = self.connection.clone();
        let millis: i64 = connection
            .pttl(key)
            .await
            .map_err(|e| self.fail("ttl", e))?;
        // PTTL answers -2 for a missing key and -1 for a key without expiry.
        Ok((millis >= 0).then(|| Duration::from_millis(millis as u64)))
    }

    async fn increment(
        &self,
        key: &str,
        by: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, CacheError> {
        let mut connection = self.connection.clone();
        let mut pipe = redis::pipe();
        pipe.atomic().incr(key, by);
        if let Some(ttl) = ttl {
            // NX: only a new counter gets the TTL, so repeated deliveries don't keep it alive forever.
            pipe.cmd("PEXPIRE")
                .arg(key)
                .arg(ttl_millis(ttl))
                .arg("NX")
                .ignore();
        }
        let (value,): (i64,) = pipe
            .query_async(&mut connection)
            .await
            .map_err(|e| self.fail("increment", e))?;
        Ok(value)
    }

    async fn ping(&self) -> Result<(), CacheError> {
        let mut connection = self.connection.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
            .map(|_| ())
            .map_err(|e| self.fail("ping", e))
    }
}

fn ttl_millis(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("redis://:hunter2@cache:6379"),
            "redis://***@cache:6379"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(escape_glob("reverie:a*b:"), "reverie:a\\*b:*");
    }
}
