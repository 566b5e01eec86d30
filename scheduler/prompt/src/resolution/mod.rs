//! The third stage of prompt understanding: resolution of a parsed prompt against one tenant's
//! library.
//!
//! Every reference either resolves to library ids or becomes an [`Unresolved`] entry with a message
//! and the closest known names; nothing is dropped silently. Matching is case-, diacritic- and
//! spelling-insensitive ("jose" finds "José"), but never fuzzy: a typo is a suggestion, not a match,
//! because generating someone else's face is worse than asking. Subjects (people, groups, pets,
//! bare names) are resolved in `subjects`, the setting and the style in `setting`.

mod setting;
mod subjects;

use serde::{Deserialize, Serialize};

use super::catalog::canonical_pet_kind;
use super::{
    CatalogPerson, CatalogPet, CatalogPlace, LibraryCatalog, Light, ParsedPrompt, ReferenceKind,
    Unresolved,
};

/// A prompt tied to the library.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resolution {
    pub people: Vec<ResolvedPerson>,
    pub pets: Vec<ResolvedPet>,
    pub places: Vec<ResolvedPlace>,
    pub light: Vec<ResolvedLight>,
    pub scenes: Vec<ResolvedScene>,
    pub albums: Vec<ResolvedAlbum>,
    pub style: ResolvedStyle,
    /// How many people the picture should show, when the prompt said ("the three of us").
    pub group_size: Option<u32>,
    pub unresolved: Vec<Unresolved>,
}

impl Resolution {
    /// Whether every reference was found.
    pub fn is_complete(&self) -> bool {
        self.unresolved.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedPerson {
    pub id: String,
    pub name: String,
    /// The prompt's words that led here ("me", "my wife").
    pub via: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedPet {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub via: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedPlace {
    pub id: String,
    pub name: String,
    pub via: String,
    pub photo_count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedLight {
    pub light: Light,
    /// The library tag that matched.
    pub tag: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedScene {
    pub scene: String,
    /// Where the library mentions it: "keyword:beach", "album:Beach days", "title:...".
    pub evidence: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedAlbum {
    pub name: String,
    pub via: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedStyle {
    pub styles: Vec<String>,
    pub artists: Vec<String>,
    pub palette: Option<ResolvedPalette>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum ResolvedPalette {
    Library,
    Album { name: String },
    Place { id: String, name: String },
}

/// Resolves every reference of `parsed` against `catalog`.
pub fn resolve(parsed: &ParsedPrompt, catalog: &LibraryCatalog) -> Resolution {
    let mut resolver = Resolver {
        catalog,
        out: Resolution::default(),
    };
    resolver.people(&parsed.subjects.people);
    resolver.group(parsed);
    resolver.pets(&parsed.subjects.pets);
    for name in &parsed.subjects.names {
        resolver.bare_name(name);
    }
    for place in &parsed.setting.places {
        resolver.place(&place.name, &place.text);
    }
    for light in &parsed.setting.light {
        resolver.light(*light);
    }
    for scene in &parsed.setting.scenes {
        resolver.scene(scene);
    }
    for album in &parsed.albums {
        resolver.album(&album.name, &album.text);
    }
    resolver.style(parsed);
    resolver.out
}

struct Resolver<'a> {
    catalog: &'a LibraryCatalog,
    out: Resolution,
}

impl Resolver<'_> {
    fn unresolved(
        &mut self,
        kind: ReferenceKind,
        text: &str,
        message: String,
        suggestions: Vec<String>,
    ) {
        self.out.unresolved.push(Unresolved {
            kind,
            text: text.to_string(),
            message,
            suggestions,
        });
    }

    fn add_person(&mut self, person: &CatalogPerson, via: &str) {
        if !self.out.people.iter().any(|p| p.id == person.id) {
            self.out.people.push(ResolvedPerson {
                id: person.id.clone(),
                name: person.name.clone(),
                via: via.to_string(),
            });
        }
    }

    fn add_pet(&mut self, pet: &CatalogPet, via: &str) {
        if !self.out.pets.iter().any(|p| p.id == pet.id) {
            self.out.pets.push(ResolvedPet {
                id: pet.id.clone(),
                name: pet.name.clone(),
                kind: canonical_pet_kind(&pet.kind),
                via: via.to_string(),
            });
        }
    }

    fn add_place(&mut self, place: &CatalogPlace, via: &str) {
        if !self.out.places.iter().any(|p| p.id == place.id) {
            self.out.places.push(ResolvedPlace {
                id: place.id.clone(),
                name: place.name.clone(),
                via: via.to_string(),
                photo_count: place.photo_count,
            });
        }
    }

    fn add_album(&mut self, album: &str, via: &str) {
        if !self.out.albums.iter().any(|a| a.name == album) {
            self.out.albums.push(ResolvedAlbum {
                name: album.to_string(),
                via: via.to_string(),
            });
        }
    }
}
