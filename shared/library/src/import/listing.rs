//! Listing a source: every file under its root with the size the listing gave (media and sidecars
//! alike, in name order), what cannot be imported safely reported, and the import's limits applied
//! before anything is read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use reverie_shared::ports::store::ObjectStore;

use super::{ImportOptions, Skipped};
use crate::archive::{ZipMember, ZipSource};
use crate::error::{Damage, LibraryError};

/// A file of the source: its path relative to the source root, and how to read it.
#[derive(Debug, Clone)]
pub(super) enum Location {
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
    pub(super) fn listed_size(&self) -> u64 {
        match self {
            Location::Local { size, .. } | Location::Object { size, .. } => *size,
            Location::Zipped(member) => member.size,
        }
    }
}

pub(super) struct Listing {
    /// Relative path → location, sorted, media and sidecars alike.
    pub(super) files: BTreeMap<String, Location>,
    pub(super) skipped: Vec<Skipped>,
}

const SIDECAR_EXTENSIONS: &[&str] = &["json", "xmp"];

pub(super) fn extension(name: &str) -> String {
    name.rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default()
}

pub(super) fn is_sidecar(name: &str) -> bool {
    SIDECAR_EXTENSIONS.contains(&extension(name).as_str())
}

/// Applies `max_files` and `max_total_bytes` to a listing, in name order. Files over the per-file
/// limit are left for reading to refuse (they will not be read, so they count towards neither);
/// sidecars are read only for the photos kept, so they count neither. Everything from the first photo
/// over a limit on is dropped and reported as one entry naming that photo, so a later import (with
/// higher limits, or of what is left) knows where to go on.
pub(super) fn apply_limits(listing: &mut Listing, options: &ImportOptions) {
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

pub(super) fn list_folder(root: &Path) -> Result<Listing, LibraryError> {
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

pub(super) async fn list_objects(
    store: &dyn ObjectStore,
    prefix: &str,
) -> Result<Listing, LibraryError> {
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
pub(super) fn list_zip(path: &Path) -> Result<(Listing, ZipSource), LibraryError> {
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

pub(super) fn sidecars_by_dir(listing: &Listing) -> BTreeMap<String, Vec<String>> {
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
