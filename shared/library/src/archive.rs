//! Zip archives as an import source (a Google Takeout export is one or more `.zip` files): entries are
//! listed from the central directory and read one at a time into memory — nothing is extracted to disk,
//! so no entry name is ever used as a path on this machine. Names that would escape an extraction folder
//! (`../`, absolute paths) and symbolic links are refused and reported all the same, because they mark an
//! archive that was crafted or damaged, and because the sidecar rules would otherwise see a name that no
//! unpacked folder could hold.
//!
//! Zip bombs are bounded three ways: an entry is never inflated past its declared size (nor past the
//! file-size limit), an entry whose declared size is an extreme multiple of its compressed size is
//! refused unread, and entries whose data overlaps another entry's (the overlapping-entries bomb, where
//! thousands of names share one inflating kernel) are refused. Together they bound what an archive can
//! inflate to by its own size times the ratio limit. Nested archives are not unpacked (see
//! [`crate::decode::probe`]).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use zip::ZipArchive;

use crate::error::{Damage, LibraryError};

/// Unix file-type bits of a zip entry's mode (stored in the high half of the external attributes).
const FILE_TYPE_MASK: u32 = 0o170_000;
const SYMLINK_TYPE: u32 = 0o120_000;

/// Entries up to this size are never refused for their compression ratio (sidecars, thumbnails).
pub const RATIO_EXEMPT_BYTES: u64 = 1024 * 1024;

/// The fixed part of a local file header: an entry's data starts at least this far after its header.
const LOCAL_HEADER_BYTES: u64 = 30;

/// Memory reserved up front for one entry at most; larger entries grow as they actually inflate.
const PREALLOCATE_MAX: u64 = 16 * 1024 * 1024;

/// One regular file of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipMember {
    /// The entry's name, normalised to `/` separators without `./` parts: the same relative path an
    /// unpacked copy of the archive would give the file.
    pub relative: String,
    pub index: usize,
    /// Uncompressed size as the central directory declares it; reading never goes past it.
    pub size: u64,
    /// Compressed size as the central directory declares it.
    pub compressed: u64,
}

/// What the central directory lists: the files to import and the entries refused (name, why).
#[derive(Debug, Default)]
pub struct ZipListing {
    pub members: Vec<ZipMember>,
    pub refused: Vec<(String, Damage)>,
}

/// An open archive; entries are read through a lock because the zip reader seeks in one file handle.
pub struct ZipSource {
    path: PathBuf,
    archive: Mutex<ZipArchive<BufReader<File>>>,
}

impl ZipSource {
    /// Opens `path` and lists its entries (the central directory only; no data is read yet).
    pub fn open(path: &Path) -> Result<(ZipSource, ZipListing), LibraryError> {
        let source = |detail: String| LibraryError::Source {
            path: path.display().to_string(),
            detail,
        };
        let file = File::open(path).map_err(|e| source(e.to_string()))?;
        let archive = ZipArchive::new(BufReader::new(file))
            .map_err(|e| source(format!("not a readable zip archive: {e}")))?;
        let listing = list(&archive);
        Ok((
            ZipSource {
                path: path.to_path_buf(),
                archive: Mutex::new(archive),
            },
            listing,
        ))
    }

    /// Reads one member into memory. Refused unread: members declared larger than `limit` bytes, and
    /// members over [`RATIO_EXEMPT_BYTES`] declared more than `max_ratio` times their compressed size.
    /// Reading stops one byte past the declared size, so a lying header cannot inflate any further.
    pub fn read(&self, member: &ZipMember, limit: u64, max_ratio: u64) -> Result<Vec<u8>, Damage> {
        if member.size > limit {
            return Err(Damage::FileTooLarge {
                bytes: member.size,
                limit,
            });
        }
        check_ratio(member, max_ratio)?;
        let mut archive = self
            .archive
            .lock()
            .map_err(|_| Damage::Unreadable(format!("{}: reader poisoned", self.path.display())))?;
        let entry = archive
            .by_index(member.index)
            .map_err(|e| Damage::Unreadable(format!("zip entry: {e}")))?;
        let mut bytes = Vec::with_capacity(member.size.min(PREALLOCATE_MAX) as usize);
        let read = entry.take(member.size + 1).read_to_end(&mut bytes);
        let past_declared = || {
            Damage::SuspiciousArchive(format!(
                "inflates past its declared size of {} bytes",
                member.size
            ))
        };
        match read {
            // The zip reader checks the declared size itself (and the CRC at the end).
            Err(e) if e.to_string().contains("larger than its declared") => Err(past_declared()),
            Err(e) => Err(Damage::Corrupt(format!(
                "zip entry does not decompress: {e}"
            ))),
            Ok(_) if bytes.len() as u64 > member.size => Err(past_declared()),
            Ok(_) => Ok(bytes),
        }
    }
}

/// Refuses a member whose declared size is more than `max_ratio` times its compressed size (photos
/// barely compress; zeros compress about 1000:1), unless it is small.
pub fn check_ratio(member: &ZipMember, max_ratio: u64) -> Result<(), Damage> {
    if member.size > RATIO_EXEMPT_BYTES && member.size > member.compressed.saturating_mul(max_ratio)
    {
        return Err(Damage::SuspiciousArchive(format!(
            "{} bytes compressed into {} (a compression ratio of {}:1; the limit is {max_ratio}:1, \
             max_zip_ratio)",
            member.size,
            member.compressed,
            member.size / member.compressed.max(1)
        )));
    }
    Ok(())
}

/// Where one entry's bytes lie in the archive: its local header, and (at least) its data after it.
struct Span {
    index: usize,
    start: u64,
    end: u64,
}

fn list<R: Read + std::io::Seek>(archive: &ZipArchive<R>) -> ZipListing {
    let mut listing = ZipListing::default();
    let mut spans = Vec::new();
    for index in 0..archive.len() {
        let Ok(entry) = archive.by_index_data(index) else {
            listing.refused.push((
                format!("entry #{index}"),
                Damage::Unreadable("central directory entry does not parse".into()),
            ));
            continue;
        };
        let name = match entry.name() {
            Ok(name) => name.into_owned(),
            Err(e) => {
                listing.refused.push((
                    format!("entry #{index}"),
                    Damage::Unreadable(format!("name does not decode: {e}")),
                ));
                continue;
            }
        };
        let is_symlink = entry.is_symlink()
            || entry.unix_mode().map(|m| m & FILE_TYPE_MASK) == Some(SYMLINK_TYPE);
        spans.push(Span {
            index,
            start: entry.header_start(),
            end: entry
                .header_start()
                .saturating_add(LOCAL_HEADER_BYTES)
                .saturating_add(entry.compressed_size()),
        });
        match classify(&name, is_symlink) {
            Ok(Some(relative)) if !entry.is_dir() => listing.members.push(ZipMember {
                relative,
                index,
                size: entry.size(),
                compressed: entry.compressed_size(),
            }),
            Ok(_) => {}
            Err(damage) => listing.refused.push((name, damage)),
        }
    }
    let overlapping = overlaps(spans, archive.central_directory_start());
    if !overlapping.is_empty() {
        listing
            .members
            .retain(|member| match overlapping.get(&member.index) {
                Some(why) => {
                    listing.refused.push((
                        member.relative.clone(),
                        Damage::SuspiciousArchive(why.clone()),
                    ));
                    false
                }
                None => true,
            });
    }
    listing
}

/// The entries whose bytes overlap another entry's or run into the central directory, with why. No
/// zip writer produces them; the overlapping-entries bomb is made of them. The local header's fixed 30
/// bytes are the least an entry spans besides its data, so a valid archive never trips this.
fn overlaps(
    mut spans: Vec<Span>,
    directory_start: u64,
) -> std::collections::BTreeMap<usize, String> {
    let mut overlapping = std::collections::BTreeMap::new();
    spans.sort_by_key(|span| (span.start, span.end));
    let why = |other: usize| format!("its data overlaps that of entry #{other}");
    // The furthest any entry so far reaches, and which entry that is.
    let mut reach: Option<(u64, usize)> = None;
    for span in &spans {
        if let Some((end, owner)) = reach {
            if span.start < end {
                overlapping.entry(owner).or_insert_with(|| why(span.index));
                overlapping.entry(span.index).or_insert_with(|| why(owner));
            }
        }
        if reach.is_none_or(|(end, _)| span.end > end) {
            reach = Some((span.end, span.index));
        }
    }
    for span in &spans {
        if span.end > directory_start {
            overlapping
                .entry(span.index)
                .or_insert_with(|| "its data overlaps the central directory".to_string());
        }
    }
    overlapping
}

/// Decides what an entry name is: a safe relative path (`Some`), nothing to import (`None`: folders,
/// hidden files such as `__MACOSX/._IMG.jpg` or `.DS_Store`), or unsafe.
pub fn classify(name: &str, is_symlink: bool) -> Result<Option<String>, Damage> {
    if is_symlink {
        return Err(Damage::UnsafePath("symbolic link in archive".into()));
    }
    if name.contains('\0') {
        return Err(Damage::UnsafePath("NUL byte in name".into()));
    }
    // Zips written on Windows may use backslashes; an extractor there treats them as separators.
    let name = name.replace('\\', "/");
    let drive_letter =
        name.len() >= 2 && name.as_bytes()[1] == b':' && name.as_bytes()[0].is_ascii_alphabetic();
    if name.starts_with('/') || drive_letter {
        return Err(Damage::UnsafePath("absolute path".into()));
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(Damage::UnsafePath("path traversal (..)".into())),
            part => parts.push(part),
        }
    }
    if parts.is_empty()
        || name.ends_with('/')
        || parts.iter().any(|p| p.starts_with('.'))
        || parts[0] == "__MACOSX"
    {
        return Ok(None);
    }
    Ok(Some(parts.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(name: &str, symlink: bool) -> String {
        match classify(name, symlink) {
            Err(Damage::UnsafePath(why)) => why,
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn unsafe_names_are_refused_with_their_reason() {
        assert_eq!(
            reason("../../etc/cron.d/x.jpg", false),
            "path traversal (..)"
        );
        assert_eq!(reason("Takeout/../../x.jpg", false), "path traversal (..)");
        assert_eq!(reason("..\\x.jpg", false), "path traversal (..)");
        assert_eq!(reason("/etc/passwd", false), "absolute path");
        assert_eq!(reason("\\\\server\\share\\x.jpg", false), "absolute path");
        assert_eq!(reason("C:/Windows/x.jpg", false), "absolute path");
        assert_eq!(reason("Takeout/link.jpg", true), "symbolic link in archive");
    }

    #[test]
    fn overlapping_spans_are_found_whatever_their_order_and_nesting() {
        let span = |index, start, end| Span { index, start, end };
        // #0 holds #2 inside it and reaches into #3; #1 overlaps nothing; #4 runs into the directory.
        let spans = vec![
            span(3, 150, 190),
            span(0, 0, 160),
            span(2, 40, 60),
            span(1, 200, 230),
            span(4, 230, 1_000),
        ];
        let overlapping = overlaps(spans, 500);
        assert_eq!(
            overlapping.keys().copied().collect::<Vec<_>>(),
            [0, 2, 3, 4]
        );
        assert!(overlapping[&2].contains("#0"), "{overlapping:?}");
        assert!(overlapping[&4].contains("central directory"));
        assert!(overlaps(vec![span(0, 0, 30), span(1, 30, 60)], 60).is_empty());
    }

    #[test]
    fn safe_names_become_the_relative_path_of_an_unpacked_copy() {
        assert_eq!(
            classify("./Takeout//Google Photos/IMG.jpg", false),
            Ok(Some("Takeout/Google Photos/IMG.jpg".into()))
        );
        assert_eq!(classify("Takeout/Google Photos/", false), Ok(None));
        assert_eq!(classify("__MACOSX/Takeout/._IMG.jpg", false), Ok(None));
        assert_eq!(classify("Takeout/.DS_Store", false), Ok(None));
        assert_eq!(
            classify("Takeout/a..b.jpg", false),
            Ok(Some("Takeout/a..b.jpg".into()))
        );
    }
}
