//! The importer: the state of one import while it runs. Each group of byte-identical files becomes
//! one photo (the union of their metadata), edited copies are linked to their originals, and new
//! photos are packed into shards as they accumulate (each shard stored before the manifest names it).

use std::collections::{BTreeMap, BTreeSet};

use reverie_shared::ids::{PhotoId, TenantId};
use reverie_shared::keys;
use reverie_shared::ports::store::ObjectStore;

use super::describe::{album_of, describe, inspect, merge_takeout, merge_xmp, Known};
use super::listing::{Listing, Location};
use super::read::{read, Opened};
use super::{blocking, EditedCopy, ImportOptions, ImportReport, Merged, Skipped};
use crate::error::{Damage, LibraryError};
use crate::exif_read::{read_exif, ExifFacts};
use crate::manifest::{LibraryManifest, PhotoEntry, ShardEntry};
use crate::shards::{shard_id, write_shard, PendingPhoto};
use crate::takeout::{edited_original, parse_sidecar, sidecar_for, TakeoutFacts};
use crate::xmp::{parse_xmp, XmpFacts};

/// The state of one import while it runs.
pub(super) struct Importer<'a> {
    pub(super) store: &'a dyn ObjectStore,
    pub(super) tenant: &'a TenantId,
    pub(super) options: &'a ImportOptions,
    pub(super) manifest: LibraryManifest,
    pub(super) pending: Vec<PendingPhoto>,
    pub(super) pending_bytes: u64,
    pub(super) report: ImportReport,
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

impl Importer<'_> {
    fn skip(&mut self, file: &str, reason: Damage) {
        tracing::warn!(file, %reason, "skipped");
        self.report.skipped.push(Skipped {
            file: file.to_string(),
            reason,
        });
    }

    /// Reads a photo's bytes, or reports it skipped.
    pub(super) async fn read_photo(
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
    pub(super) async fn add(
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
        let inspected = match inspected {
            Ok(inspected) => inspected,
            Err(damage) => {
                self.skip(&primary, damage);
                return Ok(());
            }
        };
        for rejected in &inspected.exif.rejected {
            self.note(&primary, Damage::ImpossibleMetadata(rejected.clone()));
        }
        let meta = describe(&primary, inspected, id, albums, known);
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

    /// Writes the pending photos as one shard (shard first, manifest later).
    pub(super) async fn flush(&mut self) -> Result<(), LibraryError> {
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
