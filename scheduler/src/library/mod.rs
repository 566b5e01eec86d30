//! Where the scheduler learns about a tenant's library: the names the prompt resolver needs
//! ([`LibraryCatalog`]) and, for planning, the photos with what was found in them (modelled here).
//!
//! `source` is where a library is read from: [`LibrarySource`] is the seam the library crate plugs
//! into, [`StoreLibrary`] reads a JSON document from the object store at
//! `tenants/{t}/library/catalog.json` (the shape of [`TenantLibrary`]; what tests seed, and a valid
//! export format for any library implementation), and intake reads through a [`CachedLibrary`].
//! `offers` is library resolution: a prompt's resolution becomes the scored photos a plan chooses
//! from ([`candidates`]).

mod offers;
mod source;

use reverie_shared::ids::{PhotoId, ShardId};
use serde::{Deserialize, Serialize};

use crate::prompt::LibraryCatalog;

pub use offers::{candidates, photo_ref, Offered};
pub use source::{catalog_key, tenant_loras, CachedLibrary, LibrarySource, Loaded, StoreLibrary};

/// A face found in a photo, with what makes it a good reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogFace {
    /// The person's id in the catalog.
    pub person: String,
    /// left, top, right, bottom in pixels.
    pub face_box: [u32; 4],
    /// 0..1: variance of the Laplacian, normalised by the library.
    #[serde(default)]
    pub sharpness: f32,
    /// 0..1: 1 is looking straight at the camera.
    #[serde(default)]
    pub frontal: f32,
}

/// One photo of the library and what is known about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogPhoto {
    pub photo: PhotoId,
    pub shard: ShardId,
    pub offset: u64,
    pub length: u64,
    #[serde(default)]
    pub albums: Vec<String>,
    /// The catalog id of the place it was taken.
    #[serde(default)]
    pub place: Option<String>,
    #[serde(default)]
    pub light: Vec<String>,
    #[serde(default)]
    pub scenes: Vec<String>,
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default)]
    pub faces: Vec<CatalogFace>,
    /// Catalog ids of the pets in it.
    #[serde(default)]
    pub pets: Vec<String>,
    /// 0..1: how much colour it has (saturation spread): the best palette sources score high.
    #[serde(default)]
    pub colourfulness: f32,
    /// A close-up: some face in it is at least [`CLOSE_UP_FACE_SHARE`] of the photo's height. Such
    /// a photo is someone's portrait, never the setting people are placed into (whoever it shows,
    /// even a person the grouping has not joined with the subject).
    #[serde(default)]
    pub close_up: bool,
}

/// The face height, as a share of the photo's height, from which a photo is a close-up portrait.
pub const CLOSE_UP_FACE_SHARE: f32 = 0.25;

/// Whether faces of these boxes make a photo `height` pixels tall a close-up.
pub fn is_close_up(faces: &[CatalogFace], height: u32) -> bool {
    height > 0
        && faces.iter().any(|f| {
            let face_height = f.face_box[3].saturating_sub(f.face_box[1]) as f32;
            face_height >= CLOSE_UP_FACE_SHARE * height as f32
        })
}

/// A tenant's library as the scheduler sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantLibrary {
    #[serde(default)]
    pub catalog: LibraryCatalog,
    #[serde(default)]
    pub photos: Vec<CatalogPhoto>,
    /// Aggregated palettes from the library analysis (empty until the library is analysed).
    #[serde(default)]
    pub palettes: LibraryPalettes,
    /// The tenant's registered LoRAs (`tenants/{t}/adapters/loras.json`, read beside the library).
    #[serde(default)]
    pub loras: Vec<reverie_shared::tenant_loras::TenantLora>,
}

/// The parts of the palettes file (`tenants/{t}/palettes/palettes.json`, written by the worker's library
/// analysis) the scheduler plans with: which photos make up each aggregated palette.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LibraryPalettes {
    /// The tenant's favourite palettes, best first.
    #[serde(default)]
    pub favourites: Vec<PaletteGroup>,
    #[serde(default)]
    pub albums: std::collections::BTreeMap<String, PaletteGroup>,
    /// By place id.
    #[serde(default)]
    pub places: std::collections::BTreeMap<String, PaletteGroup>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PaletteGroup {
    /// The photos whose colours make the palette, heaviest first.
    #[serde(default)]
    pub members: Vec<PaletteMember>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaletteMember {
    pub photo: String,
    /// 1 + 0.3 per star + 2 for a favourite.
    pub weight: f32,
}
