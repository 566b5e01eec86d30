//! Importing a photo library: walk the source, read each photo's metadata and sidecars, skip (and report)
//! what is damaged, deduplicate by content, pack new photos into shards, then write the manifest.
//!
//! The stages, each a child module: `listing` (the source listed, limits applied), `read` (a listed
//! file read within its limits), `importer` (byte-identical files made one photo, packed into shards)
//! and `describe` (what a photo is: decoded, measured, its EXIF and sidecars merged into its metadata).
//! [`import`] runs them in that order.

mod describe;
mod importer;
mod listing;
mod read;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::Utc;
use reverie_shared::ids::{PhotoId, TenantId};
use reverie_shared::ports::store::ObjectStore;
use serde::Serialize;

use crate::error::{Damage, LibraryError};
use crate::manifest::{load_manifest, save_manifest};
use importer::Importer;
use listing::{apply_limits, is_sidecar, list_folder, list_objects, list_zip, sidecars_by_dir};
use read::Opened;

/// Where photos come from.
pub enum ImportSource<'a> {
    /// A local folder, walked recursively (an unpacked Takeout export is a folder too).
    Folder(PathBuf),
    /// A zip archive (a Google Takeout export as downloaded), read entry by entry without unpacking.
    Zip(PathBuf),
    /// Objects under a prefix of an object store (`s3://bucket/prefix`).
    Objects {
        store: &'a dyn ObjectStore,
        prefix: String,
    },
}

/// The limits of one import. Whatever a limit refuses is reported by name (`skipped`) and the import
/// goes on; nothing imported before is touched.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Images with more pixels are refused before decoding (decompression bombs); decoders may use
    /// at most 16 bytes a pixel.
    pub max_pixels: u64,
    /// Files, zip entries and objects larger than this are refused unread: by their listed or declared
    /// size first, and never read past it (nor past a zip entry's declared size).
    pub max_file_bytes: u64,
    /// Sidecars (Takeout JSON, XMP) larger than this are ignored (and noted); real ones are kilobytes.
    pub max_sidecar_bytes: u64,
    /// At most this many photo files (sidecars aside) are read from one source, in name order; the rest
    /// are reported as one `limit_reached` entry naming the first file left out.
    pub max_files: usize,
    /// The photo files one import reads add up to at most this many bytes by their listed or declared
    /// sizes, in name order; the rest are reported like `max_files`.
    pub max_total_bytes: u64,
    /// A zip entry over 1 MiB whose declared size is more than this many times its compressed size is
    /// refused unread (photos barely compress; a zip bomb's zeros compress about 1000:1).
    pub max_zip_ratio: u64,
    pub shard_max_bytes: u64,
    pub shard_max_photos: usize,
}

impl Default for ImportOptions {
    fn default() -> ImportOptions {
        ImportOptions {
            max_pixels: 100_000_000,
            max_file_bytes: 512 * 1024 * 1024,
            max_sidecar_bytes: 16 * 1024 * 1024,
            max_files: 500_000,
            max_total_bytes: 1024 * 1024 * 1024 * 1024,
            max_zip_ratio: 100,
            shard_max_bytes: 64 * 1024 * 1024,
            shard_max_photos: 256,
        }
    }
}

/// One skipped or noted file.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub file: String,
    pub reason: Damage,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    pub imported: usize,
    /// Photos whose bytes were already in the library (re-imports, copies under another name).
    pub already_present: usize,
    pub shards_written: usize,
    pub skipped: Vec<Skipped>,
    /// Metadata that was present but impossible and was ignored; the photo itself was imported.
    pub notes: Vec<Skipped>,
    /// Byte-identical files of this import that became one photo (each also listed in `skipped` as a
    /// duplicate of the photo).
    pub merged: Vec<Merged>,
    /// Edited copies (`IMG-edited.jpg`) imported as their own photo next to their original.
    pub edits: Vec<EditedCopy>,
}

/// Files with the same bytes imported as one photo whose metadata is the union of theirs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Merged {
    /// The photo's `original`: the copy whose sidecars took precedence.
    pub photo: String,
    /// Every file merged into it, the photo's own first, in order of precedence.
    pub files: Vec<String>,
}

/// An edited copy and the original it was made from (both are photos of the library).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EditedCopy {
    pub edited: String,
    pub original: String,
}

impl ImportReport {
    pub fn count_by_reason(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for skipped in &self.skipped {
            let kind = serde_json::to_value(&skipped.reason)
                .ok()
                .and_then(|v| v["kind"].as_str().map(str::to_string))
                .unwrap_or_default();
            *counts.entry(kind).or_default() += 1;
        }
        counts
    }
}

/// Imports `source` into `tenant`'s library in `store`.
pub async fn import(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    source: ImportSource<'_>,
    options: &ImportOptions,
) -> Result<ImportReport, LibraryError> {
    let (mut listing, opened) = match &source {
        ImportSource::Folder(root) => {
            let root = root.clone();
            (blocking(move || list_folder(&root)).await?, Opened::Folder)
        }
        ImportSource::Zip(path) => {
            let path = path.clone();
            let (listing, zip) = blocking(move || list_zip(&path)).await?;
            (listing, Opened::Zip(Arc::new(zip)))
        }
        ImportSource::Objects { store, prefix } => {
            (list_objects(*store, prefix).await?, Opened::Objects(*store))
        }
    };
    apply_limits(&mut listing, options);
    let mut importer = Importer {
        store,
        tenant,
        options,
        manifest: load_manifest(store, tenant).await?,
        pending: Vec::new(),
        pending_bytes: 0,
        report: ImportReport {
            skipped: listing.skipped.clone(),
            ..ImportReport::default()
        },
    };
    let sidecars_by_dir = sidecars_by_dir(&listing);
    // First pass: the content hash of every photo, so that byte-identical files are known as one group
    // before any of them is described, whatever order they are walked in. This reads each file twice
    // (the bytes are not kept, so memory stays bounded by one file), the price of a merge that does not
    // depend on which copy comes first.
    let mut groups: BTreeMap<PhotoId, Vec<String>> = BTreeMap::new();
    let mut order = Vec::new();
    for (relative, location) in &listing.files {
        if is_sidecar(relative) {
            continue;
        }
        let Some(bytes) = importer.read_photo(relative, location, &opened).await else {
            continue;
        };
        let id = blocking(move || PhotoId::of_bytes(&bytes)).await;
        let members = groups.entry(id.clone()).or_default();
        if members.is_empty() {
            order.push(id);
        }
        members.push(relative.clone());
    }
    for id in order {
        let members = groups.remove(&id).unwrap_or_default();
        importer
            .add(id, members, &opened, &listing, &sidecars_by_dir)
            .await?;
    }
    importer.flush().await?;
    importer.manifest.refresh_places();
    importer.manifest.updated_at = Some(Utc::now().to_rfc3339());
    save_manifest(store, tenant, &importer.manifest).await?;
    tracing::info!(
        tenant = %tenant,
        imported = importer.report.imported,
        skipped = importer.report.skipped.len(),
        "import finished"
    );
    Ok(importer.report)
}

/// Runs CPU or blocking file work on tokio's blocking threads, so an import never stalls the runtime
/// it shares with a server (`reverie serve` imports while it answers the web app). A panic there is
/// the import's panic.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(error) => match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(error) => panic!("blocking import work did not finish: {error}"),
        },
    }
}
