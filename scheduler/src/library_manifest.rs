//! The scheduler's view of a tenant library built from what import wrote: the library manifest
//! (photos, albums, places, light, keywords, names from sidecars). This is the `LibrarySource` production
//! uses; `StoreLibrary` (a catalog JSON) remains for tests and for services that curate their own catalog.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use reverie_library::{load_manifest, LibraryManifest, PhotoEntry};
use reverie_shared::ids::TenantId;
use reverie_shared::ports::store::SharedStore;

use crate::error::Result;
use crate::library::{CatalogFace, CatalogPhoto, LibrarySource, StoreLibrary, TenantLibrary};
use crate::prompt::{CatalogPerson, CatalogPlace, LibraryCatalog};

/// Reads the library manifest; a tenant with a curated `catalog.json` and no manifest gets the catalog.
#[derive(Debug, Clone)]
pub struct ManifestLibrary {
    store: SharedStore,
    fallback: StoreLibrary,
}

impl ManifestLibrary {
    pub fn new(store: SharedStore) -> ManifestLibrary {
        ManifestLibrary {
            fallback: StoreLibrary::new(store.clone()),
            store,
        }
    }
}

#[async_trait]
impl LibrarySource for ManifestLibrary {
    async fn load(&self, tenant: &TenantId) -> Result<TenantLibrary> {
        let manifest = load_manifest(&*self.store, tenant)
            .await
            .map_err(|e| crate::error::SchedulerError::Unavailable(e.to_string()))?;
        if manifest.photos.is_empty() {
            return self.fallback.load(tenant).await;
        }
        Ok(library_of(&manifest))
    }
}

fn person_id(name: &str) -> String {
    let slug: String = name
        .to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { '-' })
        .collect();
    format!("person-{}", slug.trim_matches('-'))
}

/// Words a photo can be found by: its keywords, and the words of its title, description and albums.
fn words_of(photo: &PhotoEntry) -> BTreeSet<String> {
    let meta = &photo.meta;
    let mut words: BTreeSet<String> = meta.keywords.iter().map(|k| k.to_lowercase()).collect();
    let texts = meta.title.iter().chain(&meta.description).chain(&meta.albums);
    for text in texts {
        for word in text.split(|c: char| !c.is_alphanumeric()) {
            if word.len() > 2 {
                words.insert(word.to_lowercase());
            }
        }
    }
    words
}

/// A sidecar region (fractions of the image) as a pixel box.
fn face_box(area: [f64; 4], width: u32, height: u32) -> [u32; 4] {
    let [left, top, w, h] = area;
    let (fw, fh) = (f64::from(width), f64::from(height));
    [
        (left * fw) as u32,
        (top * fh) as u32,
        ((left + w) * fw).min(fw) as u32,
        ((top + h) * fh).min(fh) as u32,
    ]
}

pub fn library_of(manifest: &LibraryManifest) -> TenantLibrary {
    let mut people: BTreeMap<String, CatalogPerson> = BTreeMap::new();
    let mut photos = Vec::with_capacity(manifest.photos.len());
    let mut catalog = LibraryCatalog {
        albums: manifest.albums().into_keys().collect(),
        photo_count: manifest.photos.len() as u64,
        ..LibraryCatalog::default()
    };
    let mut light_tags = BTreeSet::new();
    let mut keywords = BTreeSet::new();
    for photo in &manifest.photos {
        let meta = &photo.meta;
        let mut faces = Vec::new();
        for region in &meta.people {
            let id = person_id(&region.name);
            people.entry(id.clone()).or_insert_with(|| CatalogPerson {
                id: id.clone(),
                name: region.name.clone(),
                aliases: Vec::new(),
                is_self: false,
            });
            if let Some(area) = region.area {
                faces.push(CatalogFace {
                    person: id,
                    face_box: face_box(area, meta.width, meta.height),
                    sharpness: (meta.stats.sharpness / 50.0).clamp(0.0, 1.0),
                    frontal: 0.5,
                });
            }
        }
        light_tags.extend(meta.light.iter().cloned());
        keywords.extend(meta.keywords.iter().cloned());
        catalog.titles.extend(meta.title.iter().cloned());
        catalog.descriptions.extend(meta.description.iter().cloned());
        photos.push(CatalogPhoto {
            photo: meta.id.clone(),
            shard: photo.shard.clone(),
            offset: photo.offset,
            length: photo.length,
            albums: meta.albums.iter().cloned().collect(),
            place: manifest.place_of(photo).map(|p| p.id.clone()),
            light: meta.light.clone(),
            scenes: Vec::new(),
            keywords: words_of(photo).into_iter().collect(),
            faces,
            pets: Vec::new(),
            colourfulness: meta.stats.colourfulness,
        });
    }
    catalog.people = people.into_values().collect();
    catalog.places = manifest
        .places
        .iter()
        .map(|place| {
            let city = place.label.split(',').next().unwrap_or_default().trim().to_string();
            let mut aliases = vec![place.label.clone()];
            if !city.is_empty() && city != place.name {
                aliases.push(city);
            }
            CatalogPlace {
                id: place.id.clone(),
                name: place.name.clone(),
                aliases,
                photo_count: place.photos as u64,
            }
        })
        .collect();
    catalog.light_tags = light_tags.into_iter().collect();
    catalog.keywords = keywords.into_iter().collect();
    TenantLibrary { catalog, photos }
}
