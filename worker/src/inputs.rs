//! Pulling a job's photos: ranged reads of the image bytes inside their shard, through a bounded local
//! disk cache (LRU by bytes) so photos that many jobs use (a person's best face, a favourite background)
//! are read from the object store once per worker.
//!
//! Ranged reads rather than whole shards: a generation job needs one to four photos of a 64 MB shard, so
//! fetching the shard would move ~100× the bytes; analysis jobs, which read every photo of a shard,
//! stream the whole shard instead (see `analysis`).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;
use lru::LruCache;
use reverie_shared::ids::TenantId;
use reverie_shared::jobs::PhotoRef;
use reverie_shared::keys;
use reverie_shared::ports::store::{ObjectStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("photo {photo} is no longer in shard {shard} (deleted or re-imported)")]
    Missing { photo: String, shard: String },
    #[error("photo {photo} from shard {shard} is damaged: {detail}")]
    Corrupt {
        photo: String,
        shard: String,
        detail: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl InputError {
    pub fn retryable(&self) -> bool {
        matches!(self, InputError::Store(error) if error.is_transient())
    }
}

/// A directory of cached photo bytes, evicting least recently used files past `max_bytes`.
pub struct PhotoCache {
    dir: PathBuf,
    max_bytes: u64,
    index: Mutex<(LruCache<String, u64>, u64)>,
}

impl PhotoCache {
    pub fn open(dir: &Path, max_bytes: u64) -> std::io::Result<PhotoCache> {
        std::fs::create_dir_all(dir)?;
        // A restarted worker starts with an empty index and a clean directory: cached bytes are cheap to
        // refetch, and an index that disagrees with the disk would break the byte budget.
        for entry in std::fs::read_dir(dir)? {
            let _ = std::fs::remove_file(entry?.path());
        }
        Ok(PhotoCache {
            dir: dir.to_path_buf(),
            max_bytes,
            index: Mutex::new((LruCache::unbounded(), 0)),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn get(&self, name: &str) -> Option<Bytes> {
        let known = {
            let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
            index.0.get(name).is_some()
        };
        if !known {
            return None;
        }
        std::fs::read(self.path(name)).ok().map(Bytes::from)
    }

    fn put(&self, name: &str, bytes: &[u8]) {
        if bytes.len() as u64 > self.max_bytes || std::fs::write(self.path(name), bytes).is_err() {
            return;
        }
        let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        let (entries, total) = &mut *index;
        if let Some(old) = entries.put(name.to_string(), bytes.len() as u64) {
            *total -= old;
        }
        *total += bytes.len() as u64;
        while *total > self.max_bytes {
            let Some((evicted, size)) = entries.pop_lru() else {
                break;
            };
            *total -= size;
            let _ = std::fs::remove_file(self.path(&evicted));
        }
    }

    /// Bytes held on disk.
    pub fn size_bytes(&self) -> u64 {
        self.index.lock().unwrap_or_else(|p| p.into_inner()).1
    }
}

/// Reads one referenced photo's original bytes.
pub async fn fetch_photo(
    store: &dyn ObjectStore,
    cache: Option<&PhotoCache>,
    tenant: &TenantId,
    photo: &PhotoRef,
) -> Result<Bytes, InputError> {
    let name = photo.photo.as_str();
    if let Some(bytes) = cache.and_then(|c| c.get(name)) {
        return Ok(bytes);
    }
    let key = keys::shard(tenant, &photo.shard);
    let bytes = match store
        .get_range(&key, photo.offset..photo.offset + photo.length)
        .await
    {
        Ok(bytes) => bytes,
        Err(StoreError::NotFound { .. }) => {
            return Err(InputError::Missing {
                photo: photo.photo.to_string(),
                shard: photo.shard.to_string(),
            })
        }
        Err(error) => return Err(error.into()),
    };
    // The content hash is the photo's identity: bytes that do not hash to it are not that photo.
    let actual = reverie_shared::ids::PhotoId::of_bytes(&bytes);
    if actual != photo.photo {
        return Err(InputError::Corrupt {
            photo: photo.photo.to_string(),
            shard: photo.shard.to_string(),
            detail: format!(
                "bytes {}..{} hash to {}",
                photo.offset,
                photo.offset + photo.length,
                actual.short()
            ),
        });
    }
    if let Some(cache) = cache {
        cache.put(name, &bytes);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_evicts_by_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let cache = PhotoCache::open(dir.path(), 250).unwrap();
        cache.put("a", &[1; 100]);
        cache.put("b", &[2; 100]);
        assert!(cache.get("a").is_some());
        cache.put("c", &[3; 100]);
        assert!(cache.get("b").is_none(), "b was least recently used");
        assert_eq!(cache.get("a").unwrap().len(), 100);
        assert_eq!(cache.size_bytes(), 200);
        cache.put("huge", &[0; 1000]);
        assert!(cache.get("huge").is_none(), "larger than the whole cache");
    }
}
