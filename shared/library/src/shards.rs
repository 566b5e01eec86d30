//! WebDataset-style shards: one tar per shard holding, per photo, the original bytes
//! (`{photo}.{ext}`) and its metadata (`{photo}.json`). Members are 512-byte aligned, so the manifest can
//! record where each photo's bytes start and workers can read one photo with a ranged GET.

use std::io::{Read, Write};

use reverie_shared::ids::{PhotoId, ShardId};
use sha2::{Digest, Sha256};

use crate::error::LibraryError;
use crate::metadata::PhotoMeta;

const BLOCK: u64 = 512;

/// One photo ready to be written into a shard.
pub struct PendingPhoto {
    pub meta: PhotoMeta,
    pub bytes: Vec<u8>,
}

/// Where a photo ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub photo: PhotoId,
    pub offset: u64,
    pub length: u64,
}

/// A shard's id derives from the photos in it, so re-running an interrupted import rewrites the same
/// shard instead of adding a second copy.
pub fn shard_id(photos: &[PendingPhoto]) -> ShardId {
    let mut hasher = Sha256::new();
    for photo in photos {
        hasher.update(photo.meta.id.as_str().as_bytes());
    }
    let digest = hex::encode(hasher.finalize());
    ShardId::new(format!("s-{}", &digest[..20])).expect("hex shard ids are valid")
}

fn padded(length: u64) -> u64 {
    length.div_ceil(BLOCK) * BLOCK
}

/// Writes the shard tar to `out`; returns where each photo's bytes are.
pub fn write_shard(photos: &[PendingPhoto], out: impl Write) -> Result<Vec<Placed>, LibraryError> {
    let failed = |e: std::io::Error| LibraryError::Shard {
        shard: "new".into(),
        detail: e.to_string(),
    };
    let mut builder = tar::Builder::new(out);
    let mut position = 0u64;
    let mut placed = Vec::with_capacity(photos.len());
    for photo in photos {
        let json = serde_json::to_vec(&photo.meta).map_err(|e| LibraryError::Shard {
            shard: "new".into(),
            detail: e.to_string(),
        })?;
        let image_name = format!("{}.{}", photo.meta.id, photo.meta.format);
        append(&mut builder, &image_name, &photo.bytes).map_err(failed)?;
        placed.push(Placed {
            photo: photo.meta.id.clone(),
            offset: position + BLOCK,
            length: photo.bytes.len() as u64,
        });
        position += BLOCK + padded(photo.bytes.len() as u64);
        append(&mut builder, &format!("{}.json", photo.meta.id), &json).map_err(failed)?;
        position += BLOCK + padded(json.len() as u64);
    }
    builder.finish().map_err(failed)?;
    Ok(placed)
}

fn append<W: Write>(builder: &mut tar::Builder<W>, name: &str, data: &[u8]) -> std::io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_path(name)?;
    header.set_cksum();
    builder.append(&header, data)
}

/// One sample read back from a shard.
#[derive(Debug, Clone)]
pub struct Sample {
    pub photo: PhotoId,
    pub image: Vec<u8>,
    pub meta: PhotoMeta,
}

/// Streams the samples of a shard, one at a time, without holding the whole tar in memory.
pub fn read_samples(
    reader: impl Read,
    mut each: impl FnMut(Sample) -> Result<(), LibraryError>,
) -> Result<usize, LibraryError> {
    let corrupt = |detail: String| LibraryError::Shard {
        shard: "read".into(),
        detail,
    };
    let mut archive = tar::Archive::new(reader);
    let mut image: Option<(String, Vec<u8>)> = None;
    let mut count = 0;
    for entry in archive.entries().map_err(|e| corrupt(e.to_string()))? {
        let mut entry = entry.map_err(|e| corrupt(e.to_string()))?;
        let name = entry
            .path()
            .map_err(|e| corrupt(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let mut data = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut data)
            .map_err(|e| corrupt(e.to_string()))?;
        let (stem, ext) = name
            .rsplit_once('.')
            .ok_or_else(|| corrupt(format!("member {name:?} has no extension")))?;
        if ext == "json" {
            let Some((image_stem, bytes)) = image.take().filter(|(s, _)| s == stem) else {
                return Err(corrupt(format!("metadata {name:?} without its image")));
            };
            let meta: PhotoMeta =
                serde_json::from_slice(&data).map_err(|e| corrupt(format!("{name}: {e}")))?;
            let photo = PhotoId::parse(&image_stem).map_err(|e| corrupt(e.to_string()))?;
            each(Sample {
                photo,
                image: bytes,
                meta,
            })?;
            count += 1;
        } else {
            image = Some((stem.to_string(), data));
        }
    }
    Ok(count)
}
