//! reverie-library: bringing a person's photo library into Reverie.
//!
//! [`import`] walks a source (a folder, a Google Takeout export unpacked or as a `.zip`, or an
//! object-store prefix), reads each photo's metadata (EXIF, Takeout JSON sidecars, XMP sidecars), reverse-geocodes
//! GPS offline, works out the light from the sun's position, computes cheap image statistics, skips and
//! reports damaged files, deduplicates by content hash, and packs new photos into WebDataset-style tar
//! shards listed by a [`LibraryManifest`]. [`read_samples`] streams a shard back.

pub mod archive;
pub mod decode;
pub mod error;
pub mod exif_read;
pub mod import;
pub mod manifest;
pub mod metadata;
pub mod places;
pub mod shards;
pub mod stats;
pub mod summary;
pub mod sun;
pub mod takeout;
pub mod xmp;

pub use decode::decode;
pub use error::{Damage, LibraryError};
pub use import::{import, EditedCopy, ImportOptions, ImportReport, ImportSource, Merged};
pub use manifest::{load_manifest, save_manifest, LibraryManifest, PhotoEntry};
pub use metadata::PhotoMeta;
pub use shards::read_samples;
pub use summary::{summarise, LibrarySummary};
