//! The embedded cache: an in-process LRU bounded by bytes, with Redis' TTL semantics, snapshotted to a
//! file in the data directory so a restarted process finds what it cached.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use lru::LruCache;
use serde::{Deserialize, Serialize};

use super::{Cache, CacheError};

/// How often a changed cache is written to its snapshot file.
const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
struct Entry {
    value: Bytes,
    /// Milliseconds since the Unix epoch; wall-clock so that TTLs survive a restart like Redis' do.
    expires_at_ms: Option<u64>,
}

#[derive(Debug)]
struct State {
    entries: LruCache<String, Entry>,
    bytes: usize,
    max_bytes: usize,
    dirty: bool,
}

#[derive(Debug, Clone)]
pub struct MemoryCache {
    state: Arc<Mutex<State>>,
    snapshot: Option<PathBuf>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotEntry {
    key: String,
    value: Vec<u8>,
    expires_at_ms: Option<u64>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn entry_size(key: &str, entry: &Entry) -> usize {
    key.len() + entry.value.len() + 32
}

impl State {
    fn live(&mut self, key: &str) -> Option<&Entry> {
        let expired = match self.entries.peek(key) {
            Some(entry) => entry.expires_at_ms.is_some_and(|at| at <= now_ms()),
            None => return None,
        };
        if expired {
            self.remove(key);
            return None;
        }
        self.entries.get(key)
    }

    fn insert(&mut self, key: String, entry: Entry) {
        self.remove(&key);
        self.bytes += entry_size(&key, &entry);
        self.entries.put(key, entry);
        while self.bytes > self.max_bytes {
            match self.entries.pop_lru() {
                Some((old_key, old)) => self.bytes -= entry_size(&old_key, &old),
                None => break,
            }
        }
        self.dirty = true;
    }

    fn remove(&mut self, key: &str) -> bool {
        match self.entries.pop(key) {
            Some(old) => {
                self.bytes -= entry_size(key, &old);
                self.dirty = true;
                true
            }
            None => false,
        }
    }

    fn live_keys(&mut self, prefix: &str) -> Vec<String> {
        let now = now_ms();
        let mut keys: Vec<String> = self
            .entries
            .iter()
            .filter(|(key, entry)| {
                key.starts_with(prefix) && entry.expires_at_ms.is_none_or(|at| at > now)
            })
            .map(|(key, _)| key.clone())
            .collect();
        keys.sort();
        keys
    }
}

impl MemoryCache {
    /// A cache that lives only as long as the process (tests).
    pub fn ephemeral(max_bytes: usize) -> MemoryCache {
        MemoryCache {
            state: Arc::new(Mutex::new(State {
                entries: LruCache::unbounded(),
                bytes: 0,
                max_bytes,
                dirty: false,
            })),
            snapshot: None,
        }
    }

    /// A cache restored from (and kept in) `snapshot`; a missing file starts empty.
    pub fn open(snapshot: &Path, max_bytes: usize) -> Result<MemoryCache, CacheError> {
        let mut cache = MemoryCache::ephemeral(max_bytes);
        cache.snapshot = Some(snapshot.to_path_buf());
        cache.restore(snapshot)?;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(flush_periodically(
                Arc::downgrade(&cache.state),
                snapshot.to_path_buf(),
            ));
        }
        Ok(cache)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the LRU half-updated in a way that matters for a
        // cache, so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn restore(&self, path: &Path) -> Result<(), CacheError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(snapshot_error(path, error)),
        };
        let (entries, _): (Vec<SnapshotEntry>, usize) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard())
                .map_err(|error| snapshot_error(path, error))?;
        let mut state = self.lock();
        let now = now_ms();
        // The snapshot lists entries least recently used first, so re-inserting keeps the LRU order.
        for entry in entries {
            if entry.expires_at_ms.is_some_and(|at| at <= now) {
                continue;
            }
            state.insert(
                entry.key,
                Entry {
                    value: Bytes::from(entry.value),
                    expires_at_ms: entry.expires_at_ms,
                },
            );
        }
        state.dirty = false;
        Ok(())
    }

    /// Writes the snapshot now if anything changed since the last one.
    pub fn persist(&self) -> Result<(), CacheError> {
        match &self.snapshot {
            Some(path) => write_snapshot(&self.state, path),
            None => Ok(()),
        }
    }
}

fn snapshot_error(path: &Path, error: impl std::fmt::Display) -> CacheError {
    CacheError::Snapshot {
        path: path.display().to_string(),
        detail: error.to_string(),
    }
}

fn write_snapshot(state: &Mutex<State>, path: &Path) -> Result<(), CacheError> {
    let entries: Vec<SnapshotEntry> = {
        let mut state = state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !state.dirty {
            return Ok(());
        }
        state.dirty = false;
        state
            .entries
            .iter()
            .rev()
            .map(|(key, entry)| SnapshotEntry {
                key: key.clone(),
                value: entry.value.to_vec(),
                expires_at_ms: entry.expires_at_ms,
            })
            .collect()
    };
    let encoded = bincode::serde::encode_to_vec(&entries, bincode::config::standard())
        .map_err(|error| snapshot_error(path, error))?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|error| snapshot_error(path, error))?;
    }
    let staged = path.with_extension("tmp");
    std::fs::write(&staged, encoded).map_err(|error| snapshot_error(path, error))?;
    std::fs::rename(&staged, path).map_err(|error| snapshot_error(path, error))
}

async fn flush_periodically(state: Weak<Mutex<State>>, path: PathBuf) {
    loop {
        tokio::time::sleep(SNAPSHOT_INTERVAL).await;
        let Some(state) = state.upgrade() else { return };
        if let Err(error) = write_snapshot(&state, &path) {
            tracing::warn!(%error, "could not write the memory cache snapshot");
        }
    }
}

impl Drop for MemoryCache {
    fn drop(&mut self) {
        // The last handle writes the final snapshot (the flusher only holds a weak reference).
        if Arc::strong_count(&self.state) == 1 {
            if let Err(error) = self.persist() {
                tracing::warn!(%error, "could not write the memory cache snapshot on shutdown");
            }
        }
    }
}

fn expiry(ttl: Option<Duration>) -> Option<u64> {
    ttl.map(|ttl| now_ms() + (ttl.as_millis() as u64).max(1))
}

#[async_trait]
impl Cache for MemoryCache {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, CacheError> {
        Ok(self.lock().live(key).map(|entry| entry.value.clone()))
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<(), CacheError> {
        let entry = Entry {
            value,
            expires_at_ms: expiry(ttl),
        };
        self.lock().insert(key.to_string(), entry);
        Ok(())
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>, CacheError> {
        let mut state = self.lock();
        Ok(keys
            .iter()
            .map(|key| state.live(key).map(|entry| entry.value.clone()))
            .collect())
    }

    async fn set_many(
        &self,
        entries: &[(String, Bytes)],
        ttl: Option<Duration>,
    ) -> Result<(), CacheError> {
        let expires_at_ms = expiry(ttl);
        let mut state = self.lock();
        for (key, value) in entries {
            state.insert(
                key.clone(),
                Entry {
                    value: value.clone(),
                    expires_at_ms,
                },
            );
        }
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        let mut state = self.lock();
        let existed = state.live(key).is_some();
        state.remove(key);
        Ok(existed)
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, CacheError> {
        let mut state = self.lock();
        let keys = state.live_keys(prefix);
        for key in &keys {
            state.remove(key);
        }
        Ok(keys.len() as u64)
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, CacheError> {
        Ok(self.lock().live_keys(prefix))
    }

    async fn ttl(&self, key: &str) -> Result<Option<Duration>, CacheError> {
        let mut state = self.lock();
        Ok(state
            .live(key)
            .and_then(|entry| entry.expires_at_ms)
            .map(|at| Duration::from_millis(at.saturating_sub(now_ms()))))
    }

    async fn increment(
        &self,
        key: &str,
        by: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, CacheError> {
        let mut state = self.lock();
        let (current, expires_at_ms) = match state.live(key) {
            Some(entry) => {
                let text = std::str::from_utf8(&entry.value).unwrap_or("");
                let value = text.parse::<i64>().map_err(|_| CacheError::Backend {
                    backend: "memory",
                    operation: "increment",
                    detail: format!("value of {key:?} is not an integer"),
                })?;
                (value, entry.expires_at_ms)
            }
            None => (0, expiry(ttl)),
        };
        let next = current + by;
        state.insert(
            key.to_string(),
            Entry {
                value: Bytes::from(next.to_string()),
                expires_at_ms,
            },
        );
        Ok(next)
    }

    async fn ping(&self) -> Result<(), CacheError> {
        Ok(())
    }
}

impl MemoryCache {
    /// Bytes currently held (keys, values and bookkeeping).
    pub fn size_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// How many entries are held; expired entries still count until touched.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
