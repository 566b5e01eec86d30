//! Zip archives as an import source (a Google Takeout export is one or more `.zip` files): entries are
//! listed from the central directory and read one at a time into memory — nothing is extracted to disk,
//! so no entry name is ever used as a path on this machine. Names that would escape an extraction folder
//! (`../`, absolute paths) and symbolic links are refused and reported all the same, because they mark an
//! archive that was crafted or damaged, and because the sidecar rules would otherwise see a name that no
//! unpacked folder could hold.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use zip::ZipArchive;

use crate::error::{Damage, LibraryError};

/// Unix file-type bits of a zip entry's mode (stored in the high half of the external attributes).
const FILE_TYPE_MASK: u32 = 0o170_000;
const SYMLINK_TYPE: u32 = 0o120_000;

/// One regular file of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipMember {
    /// The entry's name, normalised to `/` separators without `./` parts: the same relative path an
    /// unpacked copy of the archive would give the file.
    pub relative: String,
    pub index: usize,
    /// Uncompressed size as the central directory declares it.
    pub size: u64,
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

    /// Reads one member into memory, refusing members larger than `limit` bytes — by the declared size
    /// first, and by what actually decompresses, so a lying header cannot inflate past the limit.
    pub fn read(&self, member: &ZipMember, limit: u64) -> Result<Vec<u8>, Damage> {
        if member.size > limit {
            return Err(Damage::FileTooLarge {
                bytes: member.size,
                limit,
            });
        }
        let mut archive = self
            .archive
            .lock()
            .map_err(|_| Damage::Unreadable(format!("{}: reader poisoned", self.path.display())))?;
        let entry = archive
            .by_index(member.index)
            .map_err(|e| Damage::Unreadable(format!("zip entry: {e}")))?;
        let mut bytes = Vec::with_capacity(member.size.min(limit) as usize);
        entry
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Damage::Corrupt(format!("zip entry does not decompress: {e}")))?;
        if bytes.len() as u64 > limit {
            return Err(Damage::FileTooLarge {
                bytes: bytes.len() as u64,
                limit,
            });
        }
        Ok(bytes)
    }
}

fn list<R: Read + std::io::Seek>(archive: &ZipArchive<R>) -> ZipListing {
    let mut listing = ZipListing::default();
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
        match classify(&name, is_symlink) {
            Ok(Some(relative)) if !entry.is_dir() => listing.members.push(ZipMember {
                relative,
                index,
                size: entry.size(),
            }),
            Ok(_) => {}
            Err(damage) => listing.refused.push((name, damage)),
        }
    }
    listing
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
