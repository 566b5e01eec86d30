//! Where the scheduler learns about a tenant's library: the names the prompt resolver needs
//! ([`LibraryCatalog`]) and, for planning, the photos with what was found in them.
//!
//! [`LibrarySource`] is the seam the library crate plugs into. [`StoreLibrary`] reads a JSON document
//! from the object store at `tenants/{t}/library/catalog.json` (the shape of [`TenantLibrary`]); it is
//! what tests seed, and a valid export format for any library implementation.

use std::collections::BTreeSet;

use async_trait::async_trait;
use reverie_shared::ids::{PhotoId, ShardId, TenantId};
use reverie_shared::jobs::{PhotoRef, ReferenceRole};
use reverie_shared::keys;
use reverie_shared::ports::store::SharedStore;
use serde::{Deserialize, Serialize};

use crate::error::{from_json, Result};
use crate::plan::Candidate;
use crate::prompt::{LibraryCatalog, Resolution, ResolvedPalette};

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
}

/// A tenant's library as the scheduler sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantLibrary {
    #[serde(default)]
    pub catalog: LibraryCatalog,
    #[serde(default)]
    pub photos: Vec<CatalogPhoto>,
}

#[async_trait]
pub trait LibrarySource: Send + Sync + std::fmt::Debug {
    /// The tenant's library; an empty one when the tenant imported nothing yet.
    async fn load(&self, tenant: &TenantId) -> Result<TenantLibrary>;
}

/// Where [`StoreLibrary`] reads a tenant's library.
pub fn catalog_key(tenant: &TenantId) -> String {
    format!("{}library/catalog.json", keys::tenant_prefix(tenant))
}

/// Reads `tenants/{t}/library/catalog.json` from the object store.
#[derive(Debug, Clone)]
pub struct StoreLibrary {
    store: SharedStore,
}

impl StoreLibrary {
    pub fn new(store: SharedStore) -> StoreLibrary {
        StoreLibrary { store }
    }
}

#[async_trait]
impl LibrarySource for StoreLibrary {
    async fn load(&self, tenant: &TenantId) -> Result<TenantLibrary> {
        let key = catalog_key(tenant);
        match self.store.get(&key).await {
            Ok(bytes) => from_json(&key, &bytes),
            Err(error) if error.is_not_found() => Ok(TenantLibrary::default()),
            Err(error) => Err(error.into()),
        }
    }
}

fn photo_ref(
    photo: &CatalogPhoto,
    role: ReferenceRole,
    face_box: Option<[u32; 4]>,
    label: Option<String>,
) -> PhotoRef {
    PhotoRef {
        photo: photo.photo.clone(),
        shard: photo.shard.clone(),
        offset: photo.offset,
        length: photo.length,
        role,
        face_box,
        label,
    }
}

/// How good a face is as an identity reference: sharp, frontal and large.
fn face_score(face: &CatalogFace) -> f32 {
    let [left, top, right, bottom] = face.face_box;
    let side = ((right.saturating_sub(left)) as f32 * (bottom.saturating_sub(top)) as f32).sqrt();
    // 256 px faces and larger are as good as it gets for a 512 px render.
    let size = (side / 256.0).min(1.0);
    0.4 * face.sharpness.clamp(0.0, 1.0) + 0.3 * face.frontal.clamp(0.0, 1.0) + 0.3 * size
}

/// What fallback backgrounds answer: the plan uses them only for renderers that must paint over a photo.
pub const FALLBACK_ANSWER: &str = "fallback: no setting or subject named";

/// When a prompt names no setting and no subject ("a lighthouse in a storm"), the painterly renderer still
/// needs a photo to paint over: offer the library's photos, favouring colourful ones without people (a
/// scenic picture rather than someone's portrait).
fn offer_fallback_backgrounds(library: &TenantLibrary, offered: &mut Offered) {
    for photo in &library.photos {
        let score =
            0.5 * photo.colourfulness.clamp(0.0, 1.0) + 0.5 / (1.0 + photo.faces.len() as f32);
        offered.backgrounds.push(Candidate {
            reference: photo_ref(photo, ReferenceRole::Background, None, None),
            score,
            albums: photo.albums.clone(),
            answers: FALLBACK_ANSWER.to_string(),
        });
    }
}

/// The reference photos a resolution offers, scored, by role.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Offered {
    pub subjects: Vec<Candidate>,
    pub backgrounds: Vec<Candidate>,
    pub palettes: Vec<Candidate>,
}

/// Turns a resolution into scored candidates from the library's photos.
pub fn candidates(library: &TenantLibrary, resolution: &Resolution) -> Offered {
    let mut offered = Offered::default();
    for person in &resolution.people {
        for photo in &library.photos {
            for face in photo.faces.iter().filter(|f| f.person == person.id) {
                offered.subjects.push(Candidate {
                    reference: photo_ref(
                        photo,
                        ReferenceRole::Subject,
                        Some(face.face_box),
                        Some(person.name.clone()),
                    ),
                    score: face_score(face),
                    albums: photo.albums.clone(),
                    answers: format!("person:{}", person.name),
                });
            }
        }
    }
    for pet in &resolution.pets {
        for photo in library.photos.iter().filter(|p| p.pets.contains(&pet.id)) {
            // Fewer other things in the picture makes a clearer reference.
            let score = 1.0 / (1.0 + photo.faces.len() as f32 + photo.pets.len() as f32 - 1.0);
            offered.subjects.push(Candidate {
                reference: photo_ref(photo, ReferenceRole::Subject, None, Some(pet.name.clone())),
                score,
                albums: photo.albums.clone(),
                answers: format!("pet:{}", pet.name),
            });
        }
    }
    let places: BTreeSet<&str> = resolution.places.iter().map(|p| p.id.as_str()).collect();
    let lights: BTreeSet<String> = resolution.light.iter().map(|l| l.tag.clone()).collect();
    let scenes: BTreeSet<&str> = resolution.scenes.iter().map(|s| s.scene.as_str()).collect();
    let albums: BTreeSet<&str> = resolution.albums.iter().map(|a| a.name.as_str()).collect();
    if !(places.is_empty() && lights.is_empty() && scenes.is_empty() && albums.is_empty()) {
        for photo in &library.photos {
            // A named place must match; light, scene and album each add to the fit.
            let place_match = photo.place.as_deref().is_some_and(|p| places.contains(p));
            if !places.is_empty() && !place_match {
                continue;
            }
            let matched_light: Vec<&String> =
                photo.light.iter().filter(|l| lights.contains(*l)).collect();
            let matched_scenes: Vec<&String> = photo
                .scenes
                .iter()
                .chain(&photo.keywords)
                .filter(|s| scenes.contains(s.as_str()))
                .collect();
            let album = photo
                .albums
                .iter()
                .filter(|a| albums.contains(a.as_str()))
                .count();
            let score = 2.0 * f32::from(u8::from(place_match))
                + matched_light.len() as f32
                + matched_scenes.len() as f32
                + album as f32
                - 0.1 * photo.faces.len() as f32;
            if score <= 0.0 {
                continue;
            }
            // What made it fit, for the plan's explanation and the output's provenance.
            let place_name = resolution
                .places
                .iter()
                .find(|p| photo.place.as_deref() == Some(p.id.as_str()))
                .map(|p| p.name.clone());
            let why: Vec<String> = place_name
                .into_iter()
                .chain(matched_light.iter().map(|l| l.to_string()))
                .chain(matched_scenes.iter().map(|s| s.to_string()))
                .collect();
            offered.backgrounds.push(Candidate {
                reference: photo_ref(photo, ReferenceRole::Background, None, Some(why.join(", "))),
                score,
                albums: photo.albums.clone(),
                answers: format!("setting ({})", why.join(", ")),
            });
        }
    }
    if offered.backgrounds.is_empty() && offered.subjects.is_empty() {
        offer_fallback_backgrounds(library, &mut offered);
    }
    if let Some(palette) = &resolution.style.palette {
        for photo in library
            .photos
            .iter()
            .filter(|p| palette_matches(palette, p))
        {
            offered.palettes.push(Candidate {
                reference: photo_ref(photo, ReferenceRole::Palette, None, None),
                score: photo.colourfulness,
                albums: photo.albums.clone(),
                answers: "palette".to_string(),
            });
        }
    }
    offered
}

fn palette_matches(palette: &ResolvedPalette, photo: &CatalogPhoto) -> bool {
    match palette {
        ResolvedPalette::Library => true,
        ResolvedPalette::Album { name } => photo.albums.iter().any(|a| a == name),
        ResolvedPalette::Place { id, .. } => photo.place.as_deref() == Some(id.as_str()),
    }
}
