//! Reading a listed file whole within its limits: refused unread when its listed size is over the
//! limit, and never read past it (nor past an object's listed or a zip entry's declared size).

use std::sync::Arc;

use reverie_shared::ports::store::ObjectStore;

use super::blocking;
use super::listing::Location;
use crate::archive::ZipSource;
use crate::error::Damage;

/// Memory reserved up front for one file at most; larger files grow as they are actually read.
const PREALLOCATE_MAX: u64 = 16 * 1024 * 1024;

/// The opened source that locations are read from.
pub(super) enum Opened<'a> {
    Folder,
    Objects(&'a dyn ObjectStore),
    Zip(Arc<ZipSource>),
}

/// Reads a file whole, refusing it unread when its size is over `limit`, and never reading more than
/// `limit` bytes (nor, for objects and zip entries, more than their listed or declared size).
pub(super) async fn read(
    location: &Location,
    source: &Opened<'_>,
    limit: u64,
    max_zip_ratio: u64,
) -> Result<Vec<u8>, Damage> {
    let unreadable = |e: &dyn std::fmt::Display| Damage::Unreadable(e.to_string());
    match (location, source) {
        (Location::Local { path, .. }, _) => {
            let file = tokio::fs::File::open(path)
                .await
                .map_err(|e| unreadable(&e))?;
            let size = file.metadata().await.map_err(|e| unreadable(&e))?.len();
            if size > limit {
                return Err(Damage::FileTooLarge { bytes: size, limit });
            }
            // A file that grew since its size was read is still cut at the limit.
            let bytes = read_at_most(file, size, limit)
                .await
                .map_err(|e| unreadable(&e))?;
            if bytes.len() as u64 > limit {
                return Err(Damage::FileTooLarge {
                    bytes: bytes.len() as u64,
                    limit,
                });
            }
            Ok(bytes)
        }
        (Location::Object { key, size }, Opened::Objects(store)) => {
            if *size > limit {
                return Err(Damage::FileTooLarge {
                    bytes: *size,
                    limit,
                });
            }
            // Streamed, never more than the listed size (plus one byte to notice more).
            let reader = store.reader(key).await.map_err(|e| unreadable(&e))?;
            let bytes = read_at_most(reader, *size, *size)
                .await
                .map_err(|e| unreadable(&e))?;
            if bytes.len() as u64 > *size {
                return Err(Damage::Unreadable(format!(
                    "the object holds more than the {size} bytes it was listed with (it changed \
                     after the listing); it was not read further"
                )));
            }
            Ok(bytes)
        }
        (Location::Zipped(member), Opened::Zip(zip)) => {
            let (zip, member) = (zip.clone(), member.clone());
            blocking(move || zip.read(&member, limit, max_zip_ratio)).await
        }
        _ => Err(Damage::Unreadable(
            "the file's source is not the one opened".into(),
        )),
    }
}

/// Reads at most `most + 1` bytes (so a longer stream shows), reserving memory for `expected`.
async fn read_at_most(
    reader: impl tokio::io::AsyncRead + Unpin,
    expected: u64,
    most: u64,
) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut bytes = Vec::with_capacity(expected.min(most).min(PREALLOCATE_MAX) as usize);
    reader
        .take(most.saturating_add(1))
        .read_to_end(&mut bytes)
        .await?;
    Ok(bytes)
}
