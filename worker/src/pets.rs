//! A tenant's pets, kept in the object store (`tenants/{t}/pets/pets.json`) and re-grouped from the
//! shard analyses (`reverie_pets::grouping`): every cat and dog sighting of the library, named by
//! sidecars (MWG `Pet` regions, `Pets|Name` keywords) and by the user, whose merges and splits survive
//! re-imports and re-grouping.

use std::collections::BTreeMap;

use bytes::Bytes;
use reverie_library::metadata::NamedRegion;
use reverie_library::LibraryManifest;
use reverie_pets::{BoxF, Pets, Sighting};
use reverie_shared::ids::TenantId;
use reverie_shared::keys;
use reverie_shared::ports::store::{ObjectStore, StoreError};
use serde::Serialize;

use crate::analysis::{AnalysedPet, ShardAnalysis};

/// How much a sidecar's pet region must overlap a detected pet to name it.
const REGION_MIN_IOU: f32 = 0.3;

pub async fn load_pets(store: &dyn ObjectStore, tenant: &TenantId) -> Result<Pets, StoreError> {
    match store.get(&keys::pets(tenant)).await {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).unwrap_or_else(|error| {
            tracing::warn!(%tenant, %error, "pets file unreadable; starting a new one");
            Pets::default()
        })),
        Err(error) if error.is_not_found() => Ok(Pets::default()),
        Err(error) => Err(error),
    }
}

pub async fn save_pets(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    pets: &Pets,
) -> Result<(), StoreError> {
    let json = serde_json::to_vec(pets).unwrap_or_default();
    store.put(&keys::pets(tenant), Bytes::from(json)).await
}

/// Re-groups the pets from every sighting in `analyses` (the whole library) with the sidecars' names.
/// Returns how many sightings there are.
pub fn update_pets(
    pets: &mut Pets,
    manifest: &LibraryManifest,
    analyses: &[ShardAnalysis],
) -> usize {
    let names: BTreeMap<&str, &[NamedRegion]> = manifest
        .photos
        .iter()
        .map(|p| (p.meta.id.as_str(), p.meta.pets.as_slice()))
        .collect();
    let mut sightings = Vec::new();
    for analysis in analyses {
        for photo in &analysis.photos {
            let regions = names.get(photo.photo.as_str()).copied().unwrap_or_default();
            let named = sidecar_names(regions, &photo.pets, photo.width, photo.height);
            for (pet, named) in photo.pets.iter().zip(named) {
                sightings.push(Sighting {
                    photo: photo.photo.to_string(),
                    bbox: pet.bbox,
                    species: pet.species,
                    score: pet.score,
                    appearance: pet.appearance.clone(),
                    named,
                });
            }
        }
    }
    let count = sightings.len();
    pets.set_sightings(sightings);
    count
}

/// Which detected pet each sidecar name belongs to: a region names the pet it overlaps most; a name
/// without a region (a keyword) names the photo's only pet.
fn sidecar_names(
    regions: &[NamedRegion],
    pets: &[AnalysedPet],
    width: u32,
    height: u32,
) -> Vec<Option<String>> {
    let mut named = vec![None; pets.len()];
    // A name without a position (a keyword) is trusted only when it is the photo's only one: two
    // keywords and one detected pet cannot say which name is the pet's.
    let keywords = regions.iter().filter(|r| r.area.is_none()).count();
    for region in regions {
        let target = match region.area {
            Some([left, top, w, h]) => {
                let (fw, fh) = (f64::from(width), f64::from(height));
                let area = pixel_box([left * fw, top * fh, (left + w) * fw, (top + h) * fh]);
                pets.iter()
                    .enumerate()
                    .map(|(i, p)| (i, area.iou(&pixel_box(p.bbox.map(|v| v as f64)))))
                    .filter(|(_, overlap)| *overlap >= REGION_MIN_IOU)
                    .max_by(|a, b| a.1.total_cmp(&b.1))
                    .map(|(i, _)| i)
            }
            None => (pets.len() == 1 && keywords == 1).then_some(0),
        };
        if let Some(i) = target {
            named[i].get_or_insert_with(|| region.name.clone());
        }
    }
    named
}

fn pixel_box([left, top, right, bottom]: [f64; 4]) -> BoxF {
    BoxF {
        left: left as f32,
        top: top as f32,
        right: right as f32,
        bottom: bottom as f32,
    }
}

/// One pet as `reverie pets list --json` prints it.
#[derive(Debug, Serialize)]
pub struct PetView {
    pub id: u64,
    pub name: Option<String>,
    pub species: &'static str,
    pub photos: Vec<PetPhotoView>,
    /// Index into `photos` of the sighting that shows the pet best.
    pub representative: usize,
}

#[derive(Debug, Serialize)]
pub struct PetPhotoView {
    /// The photo's original file name or path.
    pub photo: String,
    pub photo_id: String,
    #[serde(rename = "box")]
    pub bbox: BoxView,
    pub score: f32,
}

#[derive(Debug, Serialize)]
pub struct BoxView {
    pub left: i64,
    pub top: i64,
    pub right: i64,
    pub bottom: i64,
}

pub fn pets_view(pets: &Pets, manifest: &LibraryManifest) -> Vec<PetView> {
    let originals: BTreeMap<&str, &str> = manifest
        .photos
        .iter()
        .map(|p| (p.meta.id.as_str(), p.meta.original.as_str()))
        .collect();
    pets.pets
        .iter()
        .map(|pet| PetView {
            id: pet.id,
            name: pet.name.clone(),
            species: pet.species.label(),
            representative: pet.representative,
            photos: pet
                .sightings
                .iter()
                .map(|s| PetPhotoView {
                    photo: originals
                        .get(s.photo.as_str())
                        .map(|o| o.to_string())
                        .unwrap_or_else(|| s.photo.clone()),
                    photo_id: s.photo.clone(),
                    bbox: BoxView {
                        left: s.bbox[0],
                        top: s.bbox[1],
                        right: s.bbox[2],
                        bottom: s.bbox[3],
                    },
                    score: s.score,
                })
                .collect(),
        })
        .collect()
}
