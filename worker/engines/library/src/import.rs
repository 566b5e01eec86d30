//! Importing a photo library: walk the source, read each photo's metadata and sidecars, skip (and report)
//! what is damaged, deduplicate by content, pack new photos into shards, then write the manifest.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use reverie_shared::ids::{PhotoId, TenantId};
use reverie_shared::keys;
use reverie_shared::ports::store::ObjectStore;
use serde::Serialize;

use crate::archive::{ZipMember, ZipSource};
use crate::decode::{decode, oriented_size, probe};
use crate::error::{Damage, LibraryError};
use crate::exif_read::{read_exif, ExifFacts};
use crate::manifest::{load_manifest, save_manifest, PhotoEntry, ShardEntry};
use crate::metadata::{CaptureTime, PhotoMeta};
use crate::places::reverse_geocode;
use crate::shards::{shard_id, write_shard, PendingPhoto};
use crate::stats::image_stats;
use crate::sun::{light_tags, sun_position};
use crate::takeout::{edited_original, parse_sidecar, sidecar_for, TakeoutFacts};
use crate::xmp::{parse_xmp, XmpFacts};

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

/// What is known of a photo besides its own bytes.
struct Known {
    /// The union of its copies' Takeout sidecars.
    takeout: Option<TakeoutFacts>,
    /// The union of its copies' XMP sidecars.
    xmp: Option<XmpFacts>,
    /// For an edited copy, its original's EXIF.
    original_exif: Option<ExifFacts>,
}

/// One file of a group of byte-identical files, with what its own sidecars said.
struct FileCopy {
    relative: String,
    takeout: Option<TakeoutFacts>,
    xmp: Option<XmpFacts>,
}

impl FileCopy {
    fn has_sidecar(&self) -> bool {
        self.takeout.is_some() || self.xmp.is_some()
    }
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

/// A file of the source: its path relative to the source root, and how to read it.
#[derive(Debug, Clone)]
enum Location {
    /// A file and its size when the folder was listed.
    Local {
        path: PathBuf,
        size: u64,
    },
    /// An object and its size in the store's listing.
    Object {
        key: String,
        size: u64,
    },
    Zipped(ZipMember),
}

impl Location {
    /// The size the listing gave: what the limits are applied to before anything is read.
    fn listed_size(&self) -> u64 {
        match self {
            Location::Local { size, .. } | Location::Object { size, .. } => *size,
            Location::Zipped(member) => member.size,
        }
    }
}

/// Memory reserved up front for one file at most; larger files grow as they are actually read.
const PREALLOCATE_MAX: u64 = 16 * 1024 * 1024;

/// The opened source that locations are read from.
enum Opened<'a> {
    Folder,
    Objects(&'a dyn ObjectStore),
    Zip(Arc<ZipSource>),
}

struct Listing {
    /// Relative path → location, sorted, media and sidecars alike.
    files: BTreeMap<String, Location>,
    skipped: Vec<Skipped>,
}

const SIDECAR_EXTENSIONS: &[&str] = &["json", "xmp"];

fn extension(name: &str) -> String {
    name.rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default()
}

fn is_sidecar(name: &str) -> bool {
    SIDECAR_EXTENSIONS.contains(&extension(name).as_str())
}

/// Applies `max_files` and `max_total_bytes` to a listing, in name order. Files over the per-file
/// limit are left for [`read`] to refuse (they will not be read, so they count towards neither);
/// sidecars are read only for the photos kept, so they count neither. Everything from the first photo
/// over a limit on is dropped and reported as one entry naming that photo, so a later import (with
/// higher limits, or of what is left) knows where to go on.
fn apply_limits(listing: &mut Listing, options: &ImportOptions) {
    let mut kept = 0usize;
    let mut total = 0u64;
    let mut cut: Option<(String, String)> = None;
    let mut dropped = Vec::new();
    for (relative, location) in &listing.files {
        if is_sidecar(relative) {
            continue;
        }
        let size = location.listed_size();
        if cut.is_none() && size <= options.max_file_bytes {
            if kept >= options.max_files {
                cut = Some((
                    relative.clone(),
                    format!(
                        "an import reads at most {} photo files (max_files)",
                        options.max_files
                    ),
                ));
            } else if total.saturating_add(size) > options.max_total_bytes {
                cut = Some((
                    relative.clone(),
                    format!(
                        "the files before it add up to {total} bytes and an import reads at most {} \
                         (max_total_bytes)",
                        options.max_total_bytes
                    ),
                ));
            } else {
                kept += 1;
                total += size;
            }
        }
        if cut.is_some() {
            dropped.push(relative.clone());
        }
    }
    let Some((first, why)) = cut else { return };
    for relative in &dropped {
        listing.files.remove(relative);
    }
    let after = dropped.len() - 1;
    tracing::warn!(first = %first, after, %why, "import limit reached");
    listing.skipped.push(Skipped {
        file: first,
        reason: Damage::LimitReached(format!(
            "this file and the {after} after it (in name order) were not read: {why}"
        )),
    });
}

fn list_folder(root: &Path) -> Result<Listing, LibraryError> {
    let source = |detail: String| LibraryError::Source {
        path: root.display().to_string(),
        detail,
    };
    if !root.is_dir() {
        return Err(source("is not a folder".into()));
    }
    let mut listing = Listing {
        files: BTreeMap::new(),
        skipped: Vec::new(),
    };
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).map_err(|e| source(format!("{}: {e}", dir.display())))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let relative = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('\\', "/");
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_symlink() {
                // Following links could read outside the library (or loop); never silently.
                listing.skipped.push(Skipped {
                    file: relative,
                    reason: Damage::UnsafePath("symbolic link".into()),
                });
            } else if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() && !relative.split('/').any(|part| part.starts_with('.')) {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                listing
                    .files
                    .insert(relative, Location::Local { path, size });
            }
        }
    }
    Ok(listing)
}

async fn list_objects(store: &dyn ObjectStore, prefix: &str) -> Result<Listing, LibraryError> {
    let prefix = if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    };
    let mut files = BTreeMap::new();
    for object in store.list(&prefix).await? {
        // A store returns keys under the prefix; one that does not is not part of this import.
        let Some(relative) = object.key.strip_prefix(&prefix).filter(|r| !r.is_empty()) else {
            continue;
        };
        files.insert(
            relative.to_string(),
            Location::Object {
                size: object.size,
                key: object.key,
            },
        );
    }
    Ok(Listing {
        files,
        skipped: Vec::new(),
    })
}

/// Lists a zip's members under their relative names; refused entries and repeated names are reported.
fn list_zip(path: &Path) -> Result<(Listing, ZipSource), LibraryError> {
    let (zip, entries) = ZipSource::open(path)?;
    let mut listing = Listing {
        files: BTreeMap::new(),
        skipped: entries
            .refused
            .into_iter()
            .map(|(file, reason)| Skipped { file, reason })
            .collect(),
    };
    for member in entries.members {
        if listing.files.contains_key(&member.relative) {
            // Unzipping would overwrite the first with the second; importing either would be a guess.
            listing.skipped.push(Skipped {
                file: member.relative.clone(),
                reason: Damage::UnsafePath(
                    "a second entry with the same name in the archive".into(),
                ),
            });
            continue;
        }
        listing
            .files
            .insert(member.relative.clone(), Location::Zipped(member));
    }
    Ok((listing, zip))
}

/// Reads a file whole, refusing it unread when its size is over `limit`, and never reading more than
/// `limit` bytes (nor, for objects and zip entries, more than their listed or declared size).
async fn read(
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

/// "Photos from 2023" folders in Takeout are years, not albums.
fn album_of(relative: &str) -> Option<String> {
    let (dir, _) = relative.rsplit_once('/')?;
    let name = dir.rsplit('/').next()?.trim();
    let is_year_folder = name
        .strip_prefix("Photos from ")
        .is_some_and(|y| y.len() == 4 && y.chars().all(|c| c.is_ascii_digit()));
    (!name.is_empty() && !is_year_folder).then(|| name.to_string())
}

/// The state of one import while it runs.
struct Importer<'a> {
    store: &'a dyn ObjectStore,
    tenant: &'a TenantId,
    options: &'a ImportOptions,
    manifest: crate::manifest::LibraryManifest,
    pending: Vec<PendingPhoto>,
    pending_bytes: u64,
    report: ImportReport,
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

fn sidecars_by_dir(listing: &Listing) -> BTreeMap<String, Vec<String>> {
    let mut by_dir: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for relative in listing.files.keys() {
        if extension(relative) == "json" {
            let (dir, name) = relative.rsplit_once('/').unwrap_or(("", relative));
            by_dir
                .entry(dir.to_string())
                .or_default()
                .push(name.to_string());
        }
    }
    by_dir
}

/// What decoding a photo tells: its format, stored size, EXIF, orientation and image statistics.
struct Inspected {
    format: &'static str,
    stored_width: u32,
    stored_height: u32,
    exif: crate::exif_read::ExifFacts,
    orientation: u8,
    stats: crate::metadata::ImageStats,
}

/// Decodes a photo and measures it: CPU work, run on a blocking thread.
fn inspect(bytes: &[u8], max_pixels: u64) -> Result<Inspected, Damage> {
    let (format, stored_width, stored_height) = probe(bytes)?;
    let exif = read_exif(bytes);
    // HEIF carries its rotation in the container and decoding applies it; EXIF's would turn it twice.
    let orientation = if format == crate::decode::HEIC {
        1
    } else {
        exif.orientation.unwrap_or(1)
    };
    let image = decode(bytes, max_pixels, orientation)?;
    Ok(Inspected {
        format,
        stored_width,
        stored_height,
        exif,
        orientation,
        stats: image_stats(&image),
    })
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

impl Importer<'_> {
    fn skip(&mut self, file: &str, reason: Damage) {
        tracing::warn!(file, %reason, "skipped");
        self.report.skipped.push(Skipped {
            file: file.to_string(),
            reason,
        });
    }

    /// Reads a photo's bytes, or reports it skipped.
    async fn read_photo(
        &mut self,
        relative: &str,
        location: &Location,
        opened: &Opened<'_>,
    ) -> Option<Vec<u8>> {
        match read(
            location,
            opened,
            self.options.max_file_bytes,
            self.options.max_zip_ratio,
        )
        .await
        {
            Ok(bytes) if bytes.is_empty() => {
                self.skip(relative, Damage::Empty);
                None
            }
            Ok(bytes) => Some(bytes),
            Err(damage) => {
                self.skip(relative, damage);
                None
            }
        }
    }

    /// Imports the byte-identical files `members` (walk order) as one photo with the union of their
    /// metadata. Between copies, a copy with a sidecar (Takeout JSON or XMP) comes before one without,
    /// then paths in lexicographic order; the first copy that knows a value gives it.
    async fn add(
        &mut self,
        id: PhotoId,
        members: Vec<String>,
        opened: &Opened<'_>,
        listing: &Listing,
        sidecars: &BTreeMap<String, Vec<String>>,
    ) -> Result<(), LibraryError> {
        let albums: BTreeSet<String> = members.iter().filter_map(|m| album_of(m)).collect();
        if self.manifest.contains(&id) {
            self.report.already_present += 1;
            for album in albums {
                self.add_album(&id, Some(album));
            }
            return Ok(());
        }
        let mut copies = Vec::with_capacity(members.len());
        for relative in members {
            let takeout = self.takeout_for(&relative, opened, listing, sidecars).await;
            let xmp = self.xmp_for(&relative, listing, opened).await;
            copies.push(FileCopy {
                relative,
                takeout,
                xmp,
            });
        }
        copies
            .sort_by(|a, b| (!a.has_sidecar(), &a.relative).cmp(&(!b.has_sidecar(), &b.relative)));
        let primary = copies[0].relative.clone();
        let Some(bytes) = self
            .read_photo(&primary, &listing.files[&primary], opened)
            .await
        else {
            return Ok(());
        };
        // Hashing again and decoding are CPU work: off the async runtime, which may be serving others.
        let max_pixels = self.options.max_pixels;
        let expected = id.clone();
        let (bytes, inspected) = blocking(move || {
            let same = PhotoId::of_bytes(&bytes) == expected;
            let inspected = same.then(|| inspect(&bytes, max_pixels));
            (bytes, inspected)
        })
        .await;
        let Some(inspected) = inspected else {
            self.skip(
                &primary,
                Damage::Unreadable("the file changed while it was imported".into()),
            );
            return Ok(());
        };
        let takeout = merge_takeout(copies.iter().filter_map(|c| c.takeout.clone()));
        let xmp = merge_xmp(copies.iter().filter_map(|c| c.xmp.clone()));
        let (original, original_exif) = self
            .original_of_edit(&primary, opened, listing)
            .await
            .unzip();
        let known = Known {
            takeout,
            xmp,
            original_exif,
        };
        let meta = match inspected.and_then(|i| self.describe(&primary, i, id, albums, known)) {
            Ok(meta) => meta,
            Err(damage) => {
                self.skip(&primary, damage);
                return Ok(());
            }
        };
        if let Some(original) = original {
            self.report.edits.push(EditedCopy {
                edited: primary.clone(),
                original,
            });
        }
        if copies.len() > 1 {
            for copy in &copies[1..] {
                self.skip(&copy.relative, Damage::Duplicate(primary.clone()));
            }
            tracing::info!(photo = %primary, copies = copies.len(), "merged byte-identical copies");
            self.report.merged.push(Merged {
                photo: primary,
                files: copies.into_iter().map(|c| c.relative).collect(),
            });
        }
        self.pending_bytes += bytes.len() as u64;
        self.pending.push(PendingPhoto { meta, bytes });
        self.report.imported += 1;
        if self.pending.len() >= self.options.shard_max_photos
            || self.pending_bytes >= self.options.shard_max_bytes
        {
            self.flush().await?;
        }
        Ok(())
    }

    /// The Takeout sidecar of one file, noted (and ignored) when it does not parse.
    async fn takeout_for(
        &mut self,
        relative: &str,
        opened: &Opened<'_>,
        listing: &Listing,
        sidecars: &BTreeMap<String, Vec<String>>,
    ) -> Option<TakeoutFacts> {
        let (dir, name) = relative.rsplit_once('/').unwrap_or(("", relative));
        let sidecar = sidecars
            .get(dir)
            .and_then(|names| sidecar_for(name, names))?;
        let key = if dir.is_empty() {
            sidecar.to_string()
        } else {
            format!("{dir}/{sidecar}")
        };
        match self.read_sidecar(&key, listing, opened).await {
            Ok(bytes) => match parse_sidecar(&bytes) {
                Ok(facts) => Some(facts),
                Err(detail) => {
                    self.note(relative, Damage::BadSidecar(format!("{key}: {detail}")));
                    None
                }
            },
            Err(damage) => {
                self.note(relative, damage);
                None
            }
        }
    }

    /// For an edited copy (`IMG-edited.jpg`) whose original is in the same folder: the original's path
    /// and EXIF, which fill in what the editor dropped from the edit's own EXIF.
    async fn original_of_edit(
        &mut self,
        relative: &str,
        opened: &Opened<'_>,
        listing: &Listing,
    ) -> Option<(String, ExifFacts)> {
        let (dir, name) = relative.rsplit_once('/').unwrap_or(("", relative));
        let original = edited_original(name)?;
        let key = if dir.is_empty() {
            original
        } else {
            format!("{dir}/{original}")
        };
        let location = listing.files.get(&key)?;
        // Damage to the original is reported when the original itself is imported.
        let bytes = read(
            location,
            opened,
            self.options.max_file_bytes,
            self.options.max_zip_ratio,
        )
        .await
        .ok()?;
        Some((key, read_exif(&bytes)))
    }

    fn note(&mut self, file: &str, reason: Damage) {
        tracing::warn!(file, %reason, "metadata ignored");
        self.report.notes.push(Skipped {
            file: file.to_string(),
            reason,
        });
    }

    async fn read_sidecar(
        &self,
        key: &str,
        listing: &Listing,
        opened: &Opened<'_>,
    ) -> Result<Vec<u8>, Damage> {
        match listing.files.get(key) {
            Some(location) => {
                read(
                    location,
                    opened,
                    self.options.max_sidecar_bytes,
                    self.options.max_zip_ratio,
                )
                .await
            }
            None => Err(Damage::BadSidecar(format!("{key} vanished"))),
        }
    }

    /// `IMG.jpg.xmp` (darktable, digiKam) or `IMG.xmp` (Lightroom).
    async fn xmp_for(
        &mut self,
        relative: &str,
        listing: &Listing,
        opened: &Opened<'_>,
    ) -> Option<XmpFacts> {
        let stem = relative
            .rsplit_once('.')
            .map(|(s, _)| s)
            .unwrap_or(relative);
        let candidates = [
            format!("{relative}.xmp"),
            format!("{stem}.xmp"),
            format!("{stem}.XMP"),
        ];
        let key = candidates.iter().find(|c| listing.files.contains_key(*c))?;
        let bytes = match read(
            &listing.files[key],
            opened,
            self.options.max_sidecar_bytes,
            self.options.max_zip_ratio,
        )
        .await
        {
            Ok(bytes) => bytes,
            Err(damage) => {
                self.note(relative, damage);
                return None;
            }
        };
        match parse_xmp(&String::from_utf8_lossy(&bytes)) {
            Ok(facts) => Some(facts),
            Err(detail) => {
                self.note(relative, Damage::BadSidecar(format!("{key}: {detail}")));
                None
            }
        }
    }

    fn add_album(&mut self, id: &PhotoId, album: Option<String>) {
        let Some(album) = album else { return };
        if let Some(entry) = self.manifest.photo_mut(id) {
            entry.meta.albums.insert(album);
        } else if let Some(pending) = self.pending.iter_mut().find(|p| &p.meta.id == id) {
            pending.meta.albums.insert(album);
        }
    }

    fn describe(
        &mut self,
        relative: &str,
        inspected: Inspected,
        id: PhotoId,
        albums: BTreeSet<String>,
        known: Known,
    ) -> Result<PhotoMeta, Damage> {
        let Known {
            takeout,
            xmp,
            original_exif,
        } = known;
        let original_exif = original_exif.as_ref();
        let Inspected {
            format,
            stored_width,
            stored_height,
            exif,
            orientation,
            stats,
        } = inspected;
        for rejected in &exif.rejected {
            self.note(relative, Damage::ImpossibleMetadata(rejected.clone()));
        }
        let (width, height) = oriented_size(stored_width, stored_height, orientation);
        let takeout = takeout.unwrap_or_default();
        let xmp = xmp.unwrap_or_default();
        // An edit's EXIF may have lost what its original's still has.
        let exif_captured = exif
            .captured
            .clone()
            .or_else(|| original_exif.and_then(|o| o.captured.clone()));
        let exif_gps = exif.gps.or_else(|| original_exif.and_then(|o| o.gps));
        let camera = exif
            .camera
            .clone()
            .or_else(|| original_exif.and_then(|o| o.camera.clone()));
        // Sidecars win over EXIF: Takeout's instant is the UTC time (EXIF keeps the local wall clock
        // and so gives the offset), and its position is the one the person corrected in Google Photos.
        let captured = capture_time(exif_captured, takeout.taken);
        let gps = takeout.gps.or(exif_gps);
        let sun = match (&captured, &gps) {
            (Some(CaptureTime { utc: Some(utc), .. }), Some(point)) => {
                DateTime::parse_from_rfc3339(utc)
                    .ok()
                    .map(|t| sun_position(t.with_timezone(&Utc), point.latitude, point.longitude))
            }
            _ => None,
        };
        let mut people = takeout.people;
        people.extend(xmp.people);
        Ok(PhotoMeta {
            id,
            original: relative.to_string(),
            format: format.to_string(),
            width,
            height,
            orientation,
            captured,
            place: gps.as_ref().and_then(reverse_geocode),
            gps,
            camera,
            title: takeout.title,
            description: takeout.description.or(xmp.description),
            keywords: xmp.keywords.into_iter().collect::<BTreeSet<_>>(),
            rating: xmp.rating,
            favourite: takeout.favourite,
            albums,
            people,
            light: sun.as_ref().map(light_tags).unwrap_or_default(),
            sun_elevation: sun.map(|s| s.elevation),
            stats,
        })
    }

    /// Writes the pending photos as one shard (shard first, manifest later).
    async fn flush(&mut self) -> Result<(), LibraryError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let photos = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let shard = shard_id(&photos);
        let (tar, placed, photos) = tokio::task::spawn_blocking(move || {
            let mut tar = Vec::new();
            let placed = write_shard(&photos, &mut tar)?;
            Ok::<_, LibraryError>((tar, placed, photos))
        })
        .await
        .map_err(|e| LibraryError::Shard {
            shard: shard.to_string(),
            detail: e.to_string(),
        })??;
        let size = tar.len() as u64;
        self.store
            .put(&keys::shard(self.tenant, &shard), bytes::Bytes::from(tar))
            .await?;
        for (photo, place) in photos.into_iter().zip(placed) {
            self.manifest.photos.push(PhotoEntry {
                meta: photo.meta,
                shard: shard.clone(),
                offset: place.offset,
                length: place.length,
            });
        }
        let photos_in_shard = self
            .manifest
            .photos
            .iter()
            .filter(|p| p.shard == shard)
            .count();
        self.manifest.shards.retain(|s| s.id != shard);
        self.manifest.shards.push(ShardEntry {
            id: shard,
            photos: photos_in_shard,
            bytes: size,
        });
        self.report.shards_written += 1;
        Ok(())
    }
}

/// The union of the Takeout sidecars of byte-identical copies, given in order of precedence: the first
/// copy that knows a value gives it; people and favourites add up.
fn merge_takeout(copies: impl Iterator<Item = TakeoutFacts>) -> Option<TakeoutFacts> {
    copies.reduce(|mut merged, next| {
        merged.title = merged.title.or(next.title);
        merged.description = merged.description.or(next.description);
        merged.taken = merged.taken.or(next.taken);
        merged.gps = merged.gps.or(next.gps);
        merged.favourite |= next.favourite;
        add_people(&mut merged.people, next.people);
        merged
    })
}

/// [`merge_takeout`] for XMP sidecars; keywords add up.
fn merge_xmp(copies: impl Iterator<Item = XmpFacts>) -> Option<XmpFacts> {
    copies.reduce(|mut merged, next| {
        merged.description = merged.description.or(next.description);
        merged.rating = merged.rating.or(next.rating);
        for keyword in next.keywords {
            if !merged.keywords.contains(&keyword) {
                merged.keywords.push(keyword);
            }
        }
        add_people(&mut merged.people, next.people);
        merged
    })
}

/// Adds the people of a later copy that the earlier ones did not name.
fn add_people(
    people: &mut Vec<crate::metadata::NamedRegion>,
    more: Vec<crate::metadata::NamedRegion>,
) {
    for person in more {
        if !people.iter().any(|p| p.name == person.name) {
            people.push(person);
        }
    }
}

/// Combines EXIF's local time (with or without offset) and Takeout's UTC instant: together they give
/// the offset (rounded to a quarter hour, as time zones are).
fn capture_time(exif: Option<CaptureTime>, takeout_utc: Option<i64>) -> Option<CaptureTime> {
    let utc = takeout_utc.and_then(|t| Utc.timestamp_opt(t, 0).single());
    match (exif, utc) {
        (Some(local), _) if local.utc.is_some() => Some(local),
        (Some(local), Some(utc)) => {
            let naive = NaiveDateTime::parse_from_str(&local.local, "%Y-%m-%dT%H:%M:%S").ok()?;
            let minutes = (naive - utc.naive_utc()).num_minutes();
            let offset = ((minutes as f64 / 15.0).round() * 15.0) as i32;
            if offset.abs() > 14 * 60 {
                // Camera clock far off: trust Takeout's instant, keep the camera's local time.
                return Some(CaptureTime {
                    utc: Some(utc.to_rfc3339()),
                    ..local
                });
            }
            Some(CaptureTime {
                utc_offset_minutes: Some(offset),
                utc: Some(utc.to_rfc3339()),
                ..local
            })
        }
        (Some(local), None) => Some(local),
        (None, Some(utc)) => Some(CaptureTime {
            local: utc.format("%Y-%m-%dT%H:%M:%S").to_string(),
            utc_offset_minutes: Some(0),
            utc: Some(utc.to_rfc3339()),
        }),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn albums_come_from_folders_but_not_year_folders() {
        assert_eq!(
            album_of("Hawaii 2023/IMG_1.jpg").as_deref(),
            Some("Hawaii 2023")
        );
        assert_eq!(
            album_of("Takeout/Google Photos/Photos from 2023/IMG_1.jpg"),
            None
        );
        assert_eq!(album_of("IMG_1.jpg"), None);
    }

    #[test]
    fn exif_local_time_and_takeout_instant_give_the_offset() {
        let local = CaptureTime {
            local: "2023-07-14T19:42:05".into(),
            utc_offset_minutes: None,
            utc: None,
        };
        let combined = capture_time(Some(local), Some(1_689_399_725)).unwrap();
        assert_eq!(combined.utc_offset_minutes, Some(-600));
        let takeout_only = capture_time(None, Some(1_689_399_725)).unwrap();
        assert_eq!(takeout_only.utc_offset_minutes, Some(0));
    }
}
