//! The scheduler's view of a tenant library built from what import wrote: the library manifest
//! (photos, albums, places, light, keywords, names from sidecars). This is the `LibrarySource` production
//! uses; `StoreLibrary` (a catalog JSON) remains for tests and for services that curate their own catalog.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use reverie_library::{load_manifest, LibraryManifest, PhotoEntry};
use reverie_shared::ids::TenantId;
use reverie_shared::ports::store::SharedStore;

use crate::error::Result;
use crate::library::{
    is_close_up, CatalogFace, CatalogPhoto, LibrarySource, StoreLibrary, TenantLibrary,
    CLOSE_UP_FACE_SHARE,
};
use crate::prompt::{CatalogPerson, CatalogPet, CatalogPlace, LibraryCatalog};

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
        let people = match self.store.get(&reverie_shared::keys::people(tenant)).await {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Err(error) if error.is_not_found() => PeopleFile::default(),
            Err(error) => return Err(error.into()),
        };
        let mut library = library_with_people(&manifest, &people);
        let pets = match self.store.get(&reverie_shared::keys::pets(tenant)).await {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Err(error) if error.is_not_found() => PetsFile::default(),
            Err(error) => return Err(error.into()),
        };
        add_pets(&mut library, &pets);
        library.palettes = match self
            .store
            .get(&reverie_shared::keys::library_palettes(tenant))
            .await
        {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Err(error) if error.is_not_found() => Default::default(),
            Err(error) => return Err(error.into()),
        };
        library.loras = crate::library::tenant_loras(&self.store, tenant).await?;
        Ok(library)
    }
}

/// The parts of the people file (written by the worker's face clustering) the scheduler plans with.
#[derive(Debug, Default, serde::Deserialize)]
pub struct PeopleFile {
    #[serde(default)]
    pub people: Vec<PersonEntry>,
    #[serde(default)]
    pub self_person: Option<u64>,
}

#[derive(Debug, serde::Deserialize)]
pub struct PersonEntry {
    pub id: u64,
    pub name: Option<String>,
    #[serde(default)]
    pub faces: Vec<FaceEntry>,
}

#[derive(Debug, serde::Deserialize)]
pub struct FaceEntry {
    pub photo: String,
    #[serde(rename = "box")]
    pub bbox: BoxEntry,
    pub quality: QualityEntry,
}

#[derive(Debug, serde::Deserialize)]
pub struct BoxEntry {
    pub left: i64,
    pub top: i64,
    pub right: i64,
    pub bottom: i64,
}

#[derive(Debug, serde::Deserialize)]
pub struct QualityEntry {
    pub sharpness: f32,
    pub frontalness: f32,
}

/// The parts of the pets file (written by the worker's pet grouping) the scheduler plans with.
#[derive(Debug, Default, serde::Deserialize)]
pub struct PetsFile {
    #[serde(default)]
    pub pets: Vec<PetEntry>,
}

#[derive(Debug, serde::Deserialize)]
pub struct PetEntry {
    pub id: u64,
    pub name: Option<String>,
    /// "dog" or "cat".
    pub species: String,
    #[serde(default)]
    pub sightings: Vec<SightingEntry>,
}

#[derive(Debug, serde::Deserialize)]
pub struct SightingEntry {
    pub photo: String,
}

/// Adds the analysed pets to the catalog, each on the photos it was seen in. A pet nobody named yet
/// is still the tenant's ("my dog" finds the only dog); it is called by its species and id ("dog 3")
/// until it is named, so an ambiguity message can list it. A sidecar-named pet of the same name and
/// species is the same animal: one catalog entry.
pub fn add_pets(library: &mut TenantLibrary, pets: &PetsFile) {
    for pet in &pets.pets {
        let name = pet
            .name
            .clone()
            .unwrap_or_else(|| format!("{} {}", pet.species, pet.id));
        let existing = library.catalog.pets.iter().position(|p| {
            p.name.eq_ignore_ascii_case(&name) && p.kind.eq_ignore_ascii_case(&pet.species)
        });
        let id = match existing {
            Some(index) => library.catalog.pets[index].id.clone(),
            None => {
                let id = format!("pet-{}", pet.id);
                library.catalog.pets.push(CatalogPet {
                    id: id.clone(),
                    name,
                    kind: pet.species.clone(),
                    aliases: Vec::new(),
                });
                id
            }
        };
        for sighting in &pet.sightings {
            if let Some(photo) = library
                .photos
                .iter_mut()
                .find(|p| p.photo.as_str() == sighting.photo)
            {
                if !photo.pets.contains(&id) {
                    photo.pets.push(id.clone());
                }
            }
        }
    }
}

/// The library with the tenant's people: named people (and the one marked as "me") become catalog people
/// whose detected faces are subject candidates.
pub fn library_with_people(manifest: &LibraryManifest, people: &PeopleFile) -> TenantLibrary {
    let mut library = library_of(manifest);
    mark_close_ups(&mut library, manifest, people);
    for person in &people.people {
        let is_self = people.self_person == Some(person.id);
        let name = match (&person.name, is_self) {
            (Some(name), _) => name.clone(),
            (None, true) => "me".to_string(),
            (None, false) => continue,
        };
        let id = format!("face-person-{}", person.id);
        // A sidecar already named this person: one catalog entry, with the detected faces added to it.
        let existing = library
            .catalog
            .people
            .iter()
            .position(|p| p.name.eq_ignore_ascii_case(&name));
        let id = match existing {
            Some(index) => {
                library.catalog.people[index].is_self |= is_self;
                library.catalog.people[index].id.clone()
            }
            None => {
                library.catalog.people.push(CatalogPerson {
                    id: id.clone(),
                    name,
                    aliases: Vec::new(),
                    is_self,
                });
                id
            }
        };
        for face in &person.faces {
            if let Some(photo) = library
                .photos
                .iter_mut()
                .find(|p| p.photo.as_str() == face.photo)
            {
                let b = &face.bbox;
                photo.faces.push(CatalogFace {
                    person: id.clone(),
                    face_box: [
                        b.left.max(0) as u32,
                        b.top.max(0) as u32,
                        b.right.max(0) as u32,
                        b.bottom.max(0) as u32,
                    ],
                    // dlib chips: a variance of the Laplacian around 100 is already crisp.
                    sharpness: (face.quality.sharpness / 100.0).clamp(0.0, 1.0),
                    frontal: face.quality.frontalness.clamp(0.0, 1.0),
                });
            }
        }
    }
    library
}

/// Marks photos in which any analysed face — named or not — is a close-up: a person the grouping
/// has not joined with anyone is still someone's portrait.
fn mark_close_ups(library: &mut TenantLibrary, manifest: &LibraryManifest, people: &PeopleFile) {
    let heights: BTreeMap<&str, u32> = manifest
        .photos
        .iter()
        .map(|p| (p.meta.id.as_str(), p.meta.height))
        .collect();
    for face in people.people.iter().flat_map(|p| &p.faces) {
        let Some(&height) = heights.get(face.photo.as_str()) else {
            continue;
        };
        let face_height = (face.bbox.bottom - face.bbox.top).max(0) as f32;
        if height > 0 && face_height >= CLOSE_UP_FACE_SHARE * height as f32 {
            if let Some(photo) = library
                .photos
                .iter_mut()
                .find(|p| p.photo.as_str() == face.photo)
            {
                photo.close_up = true;
            }
        }
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
    let texts = meta
        .title
        .iter()
        .chain(&meta.description)
        .chain(&meta.albums);
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
        catalog
            .descriptions
            .extend(meta.description.iter().cloned());
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
            pets: Vec::new(),
            colourfulness: meta.stats.colourfulness,
            close_up: is_close_up(&faces, meta.height),
            faces,
        });
    }
    catalog.people = people.into_values().collect();
    catalog.places = manifest
        .places
        .iter()
        .map(|place| {
            let city = place
                .label
                .split(',')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string();
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
    TenantLibrary {
        catalog,
        photos,
        palettes: Default::default(),
        loras: Vec::new(),
    }
}
