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
    #[error("LoRA {name} ({sha256}) is no longer in the tenant's storage (removed with `reverie loras remove`?)")]
    LoraMissing { name: String, sha256: String },
    #[error(
        "LoRA {name} in the tenant's storage is damaged: its bytes hash to {actual}, not {sha256}"
    )]
    LoraDamaged {
        name: String,
        sha256: String,
        actual: String,
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
    /// Numbers the files being written, so concurrent writers of one photo never share one.
    staged: std::sync::atomic::AtomicU64,
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
            staged: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The cached bytes of a photo, if held and intact: bytes that no longer hash to the photo's id (a
    /// damaged disk) are a miss, so the photo is fetched again rather than reported damaged.
    fn get(&self, name: &str) -> Option<Bytes> {
        let known = {
            let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
            index.0.get(name).is_some()
        };
        if !known {
            return None;
        }
        let bytes = std::fs::read(self.path(name)).ok()?;
        let intact = reverie_shared::ids::PhotoId::of_bytes(&bytes).as_str() == name;
        intact.then(|| Bytes::from(bytes))
    }

    /// Caches a photo's bytes. The file is written beside its final name and renamed into place, so a
    /// job reading the photo while another job caches it again (jobs of one batch often share a photo)
    /// sees the whole file or none, never a truncated one.
    fn put(&self, name: &str, bytes: &[u8]) {
        if bytes.len() as u64 > self.max_bytes {
            return;
        }
        let staging = self.dir.join(format!(
            ".{name}.{}",
            self.staged
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let written = std::fs::write(&staging, bytes)
            .and_then(|()| std::fs::rename(&staging, self.path(name)));
        if written.is_err() {
            let _ = std::fs::remove_file(&staging);
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
/// A job's LoRA from its tenant's own storage (`keys::tenant_lora_file`), checked against its hash.
pub async fn fetch_lora(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    lora: &reverie_shared::jobs::LoraUse,
) -> Result<Vec<u8>, InputError> {
    let key = keys::tenant_lora_file(tenant, &lora.sha256);
    let bytes = match store.get(&key).await {
        Ok(bytes) => bytes,
        Err(StoreError::NotFound { .. }) => {
            return Err(InputError::LoraMissing {
                name: lora.name.clone(),
                sha256: lora.sha256.clone(),
            })
        }
        Err(error) => return Err(error.into()),
    };
    use sha2::Digest;
    let actual = hex::encode(sha2::Sha256::digest(&bytes));
    if actual != lora.sha256 {
        return Err(InputError::LoraDamaged {
            name: lora.name.clone(),
            sha256: lora.sha256.clone(),
            actual,
        });
    }
    Ok(bytes.to_vec())
}

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
    use reverie_shared::ids::PhotoId;

    /// Bytes and the name the cache files them under (the photo id, their hash).
    fn photo(byte: u8, len: usize) -> (String, Vec<u8>) {
        let bytes = vec![byte; len];
        (PhotoId::of_bytes(&bytes).to_string(), bytes)
    }

    #[test]
    fn cache_evicts_by_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let cache = PhotoCache::open(dir.path(), 250).unwrap();
        let (a, b, c) = (photo(1, 100), photo(2, 100), photo(3, 100));
        cache.put(&a.0, &a.1);
        cache.put(&b.0, &b.1);
        assert!(cache.get(&a.0).is_some());
        cache.put(&c.0, &c.1);
        assert!(cache.get(&b.0).is_none(), "b was least recently used");
        assert_eq!(cache.get(&a.0).unwrap().len(), 100);
        assert_eq!(cache.size_bytes(), 200);
        let huge = photo(0, 1000);
        cache.put(&huge.0, &huge.1);
        assert!(cache.get(&huge.0).is_none(), "larger than the whole cache");
    }

    #[test]
    fn damaged_cached_bytes_are_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let cache = PhotoCache::open(dir.path(), 1 << 20).unwrap();
        let (name, bytes) = photo(7, 1000);
        cache.put(&name, &bytes);
        std::fs::write(dir.path().join(&name), b"not that photo").unwrap();
        assert!(cache.get(&name).is_none());
    }

    /// Jobs of one batch share photos: one caching a photo again while others read it must never hand
    /// a reader a truncated file (before the write-and-rename, readers saw empty or partial photos).
    #[test]
    fn a_photo_cached_again_while_read_is_never_seen_partial() {
        let dir = tempfile::tempdir().unwrap();
        let cache = std::sync::Arc::new(PhotoCache::open(dir.path(), 64 << 20).unwrap());
        let (name, bytes) = photo(9, 4 << 20);
        cache.put(&name, &bytes);
        let writer = {
            let (cache, name, bytes) = (cache.clone(), name.clone(), bytes.clone());
            std::thread::spawn(move || {
                for _ in 0..30 {
                    cache.put(&name, &bytes);
                }
            })
        };
        let mut reads = 0;
        while !writer.is_finished() {
            let read = cache.get(&name).expect("a cached photo stays readable");
            assert_eq!(read.len(), bytes.len());
            reads += 1;
        }
        writer.join().unwrap();
        assert!(reads > 0);
        assert_eq!(cache.size_bytes(), bytes.len() as u64);
    }
}
