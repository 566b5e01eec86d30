//! The embedded object store: a directory on local disk, one file per key.

use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::{validate_key, ObjectMeta, ObjectReader, ObjectStore, StoreError};

/// Writes land in this directory first and are renamed into place, so a reader never sees half an
/// object. It sits outside the key space: no valid key starts with it.
const STAGING_DIR: &str = ".staging";

#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn open(root: impl Into<PathBuf>) -> Result<LocalStore, StoreError> {
        let root = root.into();
        std::fs::create_dir_all(root.join(STAGING_DIR))
            .map_err(|source| io_error(&root, source))?;
        Ok(LocalStore { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, StoreError> {
        validate_key(key)?;
        if key == STAGING_DIR || key.starts_with(&format!("{STAGING_DIR}/")) {
            return Err(StoreError::InvalidKey {
                key: key.to_string(),
                reason: "reserved for the local store's staging area",
            });
        }
        Ok(self.root.join(key))
    }

    fn staging_path(&self) -> PathBuf {
        self.root
            .join(STAGING_DIR)
            .join(uuid::Uuid::new_v4().simple().to_string())
    }

    /// Writes `body` to a fresh staging file, durably: nothing made visible from it can be lost.
    async fn stage(&self, body: &[u8]) -> Result<PathBuf, StoreError> {
        let staged = self.staging_path();
        let mut file = tokio::fs::File::create(&staged)
            .await
            .map_err(|source| io_error(&staged, source))?;
        file.write_all(body)
            .await
            .map_err(|source| io_error(&staged, source))?;
        file.sync_all()
            .await
            .map_err(|source| io_error(&staged, source))?;
        Ok(staged)
    }

    async fn commit(&self, staged: &Path, target: &Path) -> Result<(), StoreError> {
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|source| io_error(parent, source))?;
        }
        tokio::fs::rename(staged, target)
            .await
            .map_err(|source| io_error(target, source))
    }

    async fn open_existing(&self, key: &str) -> Result<tokio::fs::File, StoreError> {
        let path = self.path_of(key)?;
        match tokio::fs::File::open(&path).await {
            Ok(file) => Ok(file),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(not_found(key)),
            Err(source) => Err(io_error(&path, source)),
        }
    }
}

fn io_error(path: &Path, source: std::io::Error) -> StoreError {
    if super::io_is_permanent(&source) {
        return StoreError::Refused {
            backend: "local",
            operation: "io",
            key: path.display().to_string(),
            code: format!("{:?}", source.kind()),
            detail: source.to_string(),
        };
    }
    StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn not_found(key: &str) -> StoreError {
    StoreError::NotFound {
        backend: "local",
        key: key.to_string(),
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    fn backend(&self) -> &'static str {
        "local"
    }

    fn other_bucket(&self, bucket: &str) -> Result<super::SharedStore, StoreError> {
        super::validate_bucket(bucket)?;
        let parent = self.root.parent().unwrap_or(&self.root);
        Ok(std::sync::Arc::new(LocalStore::open(
            parent.join("buckets").join(bucket),
        )?))
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        let target = self.path_of(key)?;
        let staged = self.stage(&body).await?;
        self.commit(&staged, &target).await
    }

    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<bool, StoreError> {
        let target = self.path_of(key)?;
        let staged = self.stage(&body).await?;
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|source| io_error(parent, source))?;
        }
        // A hard link fails when the name exists: the check and the write are one atomic step.
        let linked = tokio::fs::hard_link(&staged, &target).await;
        let _ = tokio::fs::remove_file(&staged).await;
        match linked {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(source) => Err(io_error(&target, source)),
        }
    }

    async fn put_file(&self, key: &str, path: &Path) -> Result<(), StoreError> {
        let target = self.path_of(key)?;
        let staged = self.staging_path();
        tokio::fs::copy(path, &staged)
            .await
            .map_err(|source| io_error(path, source))?;
        self.commit(&staged, &target).await
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let mut file = self.open_existing(key).await?;
        let mut body = Vec::new();
        file.read_to_end(&mut body)
            .await
            .map_err(|source| io_error(Path::new(key), source))?;
        Ok(Bytes::from(body))
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        let mut file = self.open_existing(key).await?;
        let size = file
            .metadata()
            .await
            .map_err(|source| io_error(Path::new(key), source))?
            .len();
        let end = range.end.min(size);
        if range.start >= end {
            return Ok(Bytes::new());
        }
        file.seek(std::io::SeekFrom::Start(range.start))
            .await
            .map_err(|source| io_error(Path::new(key), source))?;
        let mut body = vec![0; (end - range.start) as usize];
        file.read_exact(&mut body)
            .await
            .map_err(|source| io_error(Path::new(key), source))?;
        Ok(Bytes::from(body))
    }

    async fn reader(&self, key: &str) -> Result<ObjectReader, StoreError> {
        let file = self.open_existing(key).await?;
        Ok(Box::pin(tokio::io::BufReader::new(file)))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        let path = self.path_of(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(meta) if meta.is_file() => Ok(Some(ObjectMeta {
                key: key.to_string(),
                size: meta.len(),
            })),
            Ok(_) => Ok(None),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(io_error(&path, source)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || list_files(&root, &prefix))
            .await
            .map_err(|join| StoreError::Backend {
                backend: "local",
                operation: "list",
                key: String::new(),
                detail: join.to_string(),
            })?
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path_of(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {
                remove_empty_parents(&self.root, &path).await;
                Ok(())
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(io_error(&path, source)),
        }
    }
}

/// Walks only the directory the prefix points into, so listing one tenant never reads another's files.
fn list_files(root: &Path, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
    let start_dir = match prefix.rfind('/') {
        Some(slash) => root.join(&prefix[..slash]),
        None => root.to_path_buf(),
    };
    let mut found = Vec::new();
    let mut pending = vec![start_dir];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(io_error(&dir, source)),
        };
        for entry in entries {
            let entry = entry.map_err(|source| io_error(&dir, source))?;
            let path = entry.path();
            let Ok(relative) = path.strip_prefix(root) else {
                continue;
            };
            let key = relative.to_string_lossy().replace('\\', "/");
            if key == STAGING_DIR {
                continue;
            }
            let file_type = entry
                .file_type()
                .map_err(|source| io_error(&path, source))?;
            if file_type.is_dir() {
                pending.push(path);
            } else if file_type.is_file() && key.starts_with(prefix) {
                let size = entry
                    .metadata()
                    .map_err(|source| io_error(&path, source))?
                    .len();
                found.push(ObjectMeta { key, size });
            }
        }
    }
    found.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(found)
}

/// Keeps the directory tree from filling with empty folders after deletions (a forgotten tenant leaves
/// no trace, not even its directory names).
async fn remove_empty_parents(root: &Path, file: &Path) {
    let mut dir = file.parent();
    while let Some(current) = dir {
        if current == root || !current.starts_with(root) {
            break;
        }
        if tokio::fs::remove_dir(current).await.is_err() {
            break;
        }
        dir = current.parent();
    }
}
