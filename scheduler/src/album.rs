//! The end of an album-to-art run: the output album gets a manifest (which photo became which image,
//! and what failed) and a contact sheet of every image, next to the images themselves.

use bytes::Bytes;
use image::imageops::FilterType;
use image::{Rgb, RgbImage};
use reverie_shared::destinations::{Destination, OutputPlace};
use reverie_shared::ports::store::ObjectStore;
use serde::Serialize;

use crate::error::Result;
use crate::plan::{album_output_prefix, AlbumRun};
use crate::records::{JobState, RequestRecord};

/// Thumbnail cell of the contact sheet, in pixels.
const CELL: u32 = 160;
const GAP: u32 = 8;
const COLUMNS: u32 = 6;

#[derive(Debug, Serialize)]
struct ManifestEntry {
    photo: String,
    state: JobState,
    image: Option<String>,
    provenance: Option<String>,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct AlbumManifest<'a> {
    request: &'a str,
    source_album: &'a str,
    album: &'a str,
    style: &'a str,
    photos: Vec<ManifestEntry>,
    done: usize,
    failed: usize,
}

/// Writes `manifest.json` and `contact-sheet.png` into the run's output album.
pub async fn finish_album(
    store: &dyn ObjectStore,
    record: &RequestRecord,
    run: &AlbumRun,
) -> Result<()> {
    let prefix = album_output_prefix(&record.tenant, &run.to);
    let mut entries = Vec::new();
    for (job, photo) in record.jobs.iter().zip(&run.photos) {
        let image = job.outputs.iter().find(|k| k.ends_with(".png")).cloned();
        let provenance = job.outputs.iter().find(|k| k.ends_with(".json")).cloned();
        entries.push(ManifestEntry {
            photo: photo.photo.to_string(),
            state: job.state,
            image,
            provenance,
            error: job.error.clone(),
        });
    }
    let images: Vec<String> = entries.iter().filter_map(|e| e.image.clone()).collect();
    let manifest = AlbumManifest {
        request: record.request.as_str(),
        source_album: &run.album,
        album: &run.to,
        style: &record.plan.style,
        done: entries
            .iter()
            .filter(|e| e.state == JobState::Succeeded)
            .count(),
        failed: entries
            .iter()
            .filter(|e| e.state == JobState::Failed)
            .count(),
        photos: entries,
    };
    // The output album is in the tenant's store or in a registered bucket of theirs.
    let place = OutputPlace::resolve(store, &record.tenant, &prefix).await?;
    let json = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    let (target, key) = place.locate(store, "manifest.json");
    target.put(&key, Bytes::from(json)).await?;
    if let Some(sheet) = contact_sheet(store, &images).await? {
        let (target, key) = place.locate(store, "contact-sheet.png");
        target.put(&key, Bytes::from(sheet)).await?;
    }
    tracing::info!(album = %run.to, images = images.len(), "album run finished");
    Ok(())
}

async fn contact_sheet(store: &dyn ObjectStore, images: &[String]) -> Result<Option<Vec<u8>>> {
    if images.is_empty() {
        return Ok(None);
    }
    let columns = COLUMNS.min(images.len() as u32);
    let rows = (images.len() as u32).div_ceil(columns);
    let width = columns * (CELL + GAP) + GAP;
    let height = rows * (CELL + GAP) + GAP;
    let mut sheet = RgbImage::from_pixel(width, height, Rgb([246, 244, 240]));
    for (index, location) in images.iter().enumerate() {
        // Where the worker said it wrote the image: a key of this store or s3://bucket/key.
        let bytes = if Destination::is_url(location) {
            let destination = Destination::parse(location)?;
            store
                .other_bucket(&destination.bucket)?
                .get(&destination.prefix)
                .await?
        } else {
            store.get(location).await?
        };
        // A damaged output leaves its cell empty rather than failing the whole album.
        let Ok(image) = image::load_from_memory(&bytes) else {
            continue;
        };
        let thumb = image.resize(CELL, CELL, FilterType::Triangle).to_rgb8();
        let (column, row) = (index as u32 % columns, index as u32 / columns);
        let x = GAP + column * (CELL + GAP) + (CELL - thumb.width()) / 2;
        let y = GAP + row * (CELL + GAP) + (CELL - thumb.height()) / 2;
        image::imageops::overlay(&mut sheet, &thumb, i64::from(x), i64::from(y));
    }
    let mut png = Vec::new();
    if sheet
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .is_err()
    {
        return Ok(None);
    }
    Ok(Some(png))
}
