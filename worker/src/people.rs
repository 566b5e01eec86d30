//! A tenant's people, kept in the object store (`tenants/{t}/people/people.json`) and updated from
//! shard analyses: new faces are added and the whole library is grouped again (`reverie_faces::people`:
//! the same people whatever order the faces come in); names given by the user or by sidecars, "me",
//! and the user's merges and splits survive re-imports and re-grouping.

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use reverie_faces::people::{FaceRecord, NamedRegion, People};
use reverie_faces::FaceBox;
use reverie_library::LibraryManifest;
use reverie_shared::ids::TenantId;
use reverie_shared::keys;
use reverie_shared::ports::store::{ObjectStore, StoreError};
use serde::Serialize;

use crate::analysis::ShardAnalysis;

pub async fn load_people(store: &dyn ObjectStore, tenant: &TenantId) -> Result<People, StoreError> {
    match store.get(&keys::people(tenant)).await {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).unwrap_or_else(|error| {
            tracing::warn!(%tenant, %error, "people file unreadable; starting a new one");
            People::new()
        })),
        Err(error) if error.is_not_found() => Ok(People::new()),
        Err(error) => Err(error),
    }
}

pub async fn save_people(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    people: &People,
) -> Result<(), StoreError> {
    let json = serde_json::to_vec(people).unwrap_or_default();
    store.put(&keys::people(tenant), Bytes::from(json)).await
}

fn face_key(photo: &str, face: &FaceBox) -> (String, i64, i64, i64, i64) {
    (
        photo.to_string(),
        face.left,
        face.top,
        face.right,
        face.bottom,
    )
}

/// Adds the faces of `analyses` that `people` has not seen, then names people from sidecar regions.
/// Returns how many faces were new.
pub fn update_people(
    people: &mut People,
    manifest: &LibraryManifest,
    analyses: &[ShardAnalysis],
) -> usize {
    let known: HashSet<_> = people
        .people
        .iter()
        .flat_map(|p| p.faces.iter())
        .chain(people.pending.iter())
        .map(|f| face_key(&f.photo, &f.bbox))
        .collect();
    let mut new_faces = Vec::new();
    let mut sizes = BTreeMap::new();
    for analysis in analyses {
        for photo in &analysis.photos {
            sizes.insert(photo.photo.to_string(), (photo.width, photo.height));
            for face in &photo.faces {
                if known.contains(&face_key(photo.photo.as_str(), &face.face.bbox)) {
                    continue;
                }
                new_faces.push(FaceRecord {
                    photo: photo.photo.to_string(),
                    bbox: face.face.bbox,
                    descriptor: face.face.descriptor.clone(),
                    quality: face.quality,
                });
            }
        }
    }
    let added = new_faces.len();
    people.add_faces(new_faces);
    people.apply_named_regions(&sidecar_regions(manifest, &sizes));
    added
}

/// Named regions from Takeout and XMP sidecars, in pixels of the oriented photo.
fn sidecar_regions(
    manifest: &LibraryManifest,
    sizes: &BTreeMap<String, (u32, u32)>,
) -> Vec<NamedRegion> {
    let mut regions = Vec::new();
    for entry in &manifest.photos {
        let Some(&(width, height)) = sizes.get(entry.meta.id.as_str()) else {
            continue;
        };
        for region in &entry.meta.people {
            let Some([left, top, w, h]) = region.area else {
                continue;
            };
            let (fw, fh) = (f64::from(width), f64::from(height));
            regions.push(NamedRegion {
                photo: entry.meta.id.to_string(),
                name: region.name.clone(),
                bbox: FaceBox {
                    left: (left * fw) as i64,
                    top: (top * fh) as i64,
                    right: ((left + w) * fw) as i64,
                    bottom: ((top + h) * fh) as i64,
                },
            });
        }
    }
    regions
}

/// One person as `reverie people list --json` prints it.
#[derive(Debug, Serialize)]
pub struct PersonView {
    pub id: u64,
    pub name: Option<String>,
    pub is_me: bool,
    pub faces: Vec<FaceView>,
    /// Index into `faces` of the representative face (sharp, frontal, large).
    pub representative: usize,
}

#[derive(Debug, Serialize)]
pub struct FaceView {
    /// The photo's original file name or path.
    pub photo: String,
    pub photo_id: String,
    #[serde(rename = "box")]
    pub bbox: FaceBox,
}

pub fn people_view(people: &People, manifest: &LibraryManifest) -> Vec<PersonView> {
    let originals: BTreeMap<&str, &str> = manifest
        .photos
        .iter()
        .map(|p| (p.meta.id.as_str(), p.meta.original.as_str()))
        .collect();
    people
        .people
        .iter()
        .map(|person| PersonView {
            id: person.id,
            name: person.name.clone(),
            is_me: people.self_person == Some(person.id),
            representative: person.representative,
            faces: person
                .faces
                .iter()
                .map(|f| FaceView {
                    photo: originals
                        .get(f.photo.as_str())
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| f.photo.clone()),
                    photo_id: f.photo.clone(),
                    bbox: f.bbox,
                })
                .collect(),
        })
        .collect()
}
