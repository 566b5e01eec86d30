//! What a tenant's library offers the resolver ([`LibraryCatalog`]), and looking references up in
//! it by normal form: case-, diacritic- and spelling-insensitive ("jose" finds "José"), never fuzzy.

use serde::{Deserialize, Serialize};

use super::lexicon::{PET_KINDS, SCENE_PHRASES};
use super::tokens::{normalise_phrase, singular};

/// What the resolver knows about a tenant's library. The scheduler fills it from the library's
/// people, pets, places, albums and photo metadata.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LibraryCatalog {
    #[serde(default)]
    pub people: Vec<CatalogPerson>,
    #[serde(default)]
    pub pets: Vec<CatalogPet>,
    #[serde(default)]
    pub places: Vec<CatalogPlace>,
    #[serde(default)]
    pub albums: Vec<String>,
    /// Photo keywords, titles and descriptions: where scene words are looked for.
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default)]
    pub titles: Vec<String>,
    #[serde(default)]
    pub descriptions: Vec<String>,
    /// Light tags present in the library ("sunset", "golden_hour").
    #[serde(default)]
    pub light_tags: Vec<String>,
    /// Scene tags from analysis, when the library has them ("beach", "snow").
    #[serde(default)]
    pub scene_tags: Vec<String>,
    /// Photos in the library; a palette needs at least one.
    #[serde(default)]
    pub photo_count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogPerson {
    pub id: String,
    pub name: String,
    /// Other names and relations: "Mum", "my wife", "Annie".
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The tenant themself: what "me" means.
    #[serde(default)]
    pub is_self: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogPet {
    pub id: String,
    pub name: String,
    /// "dog", "cat", ...; synonyms such as "puppy" are understood.
    pub kind: String,
    #[serde(default)]
    pub aliases: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogPlace {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub photo_count: u64,
}

impl LibraryCatalog {
    /// Names, first names and aliases of everyone, for suggestions ("Anan" -> "Anna").
    pub(super) fn person_names(&self) -> Vec<&str> {
        self.people
            .iter()
            .flat_map(|p| {
                let first = p.name.split_whitespace().next().filter(|f| *f != p.name);
                std::iter::once(p.name.as_str())
                    .chain(first)
                    .chain(p.aliases.iter().map(String::as_str))
            })
            .collect()
    }

    pub(super) fn pet_names(&self) -> Vec<&str> {
        self.pets
            .iter()
            .flat_map(|p| {
                std::iter::once(p.name.as_str()).chain(p.aliases.iter().map(String::as_str))
            })
            .collect()
    }

    pub(super) fn place_names(&self) -> Vec<&str> {
        self.places
            .iter()
            .flat_map(|p| {
                std::iter::once(p.name.as_str()).chain(p.aliases.iter().map(String::as_str))
            })
            .collect()
    }

    /// People whose full name, alias, or (when no full match exists) first name equals `name`.
    pub(super) fn people_named(&self, name: &str) -> Vec<&CatalogPerson> {
        let wanted = key(name);
        let full: Vec<&CatalogPerson> = self
            .people
            .iter()
            .filter(|p| key(&p.name) == wanted || p.aliases.iter().any(|a| alias_key(a) == wanted))
            .collect();
        if !full.is_empty() {
            return full;
        }
        self.people
            .iter()
            .filter(|p| key(&p.name).split(' ').next() == Some(wanted.as_str()))
            .collect()
    }

    pub(super) fn pets_named(&self, name: &str) -> Vec<&CatalogPet> {
        let wanted = key(name);
        self.pets
            .iter()
            .filter(|p| key(&p.name) == wanted || p.aliases.iter().any(|a| alias_key(a) == wanted))
            .collect()
    }

    pub(super) fn place_named(&self, name: &str) -> Option<&CatalogPlace> {
        let wanted = key(name);
        self.places
            .iter()
            .find(|p| key(&p.name) == wanted || p.aliases.iter().any(|a| alias_key(a) == wanted))
    }

    /// An album equal to `name`, or the only album whose name contains it as whole words.
    pub(super) fn album_named(&self, name: &str) -> Option<&String> {
        let wanted = key(name);
        if wanted.is_empty() {
            return None;
        }
        if let Some(exact) = self.albums.iter().find(|a| key(a) == wanted) {
            return Some(exact);
        }
        let containing: Vec<&String> = self
            .albums
            .iter()
            .filter(|a| contains_words(&key(a), &wanted))
            .collect();
        match containing.as_slice() {
            [only] => Some(only),
            _ => None,
        }
    }

    /// Where the library mentions a scene, by its canonical word or a synonym.
    pub(super) fn scene_evidence(&self, scene: &str) -> Vec<String> {
        let words: Vec<String> = SCENE_PHRASES
            .iter()
            .filter(|(_, canonical)| *canonical == scene)
            .map(|(phrase, _)| (*phrase).to_string())
            .chain(std::iter::once(scene.to_string()))
            .collect();
        let mentions = |text: &str| {
            let text = key(text);
            words
                .iter()
                .any(|w| contains_words(&text, w) || contains_words(&text, &format!("{w}s")))
        };
        let sources: [(&str, &Vec<String>); 5] = [
            ("scene", &self.scene_tags),
            ("keyword", &self.keywords),
            ("album", &self.albums),
            ("title", &self.titles),
            ("description", &self.descriptions),
        ];
        let mut evidence = Vec::new();
        for (source, texts) in sources {
            for text in texts.iter().filter(|t| mentions(t)) {
                let entry = format!("{source}:{text}");
                if !evidence.contains(&entry) {
                    evidence.push(entry);
                }
                if evidence.len() >= 5 {
                    return evidence;
                }
            }
        }
        evidence
    }
}

/// The key two names are compared by: lower case, folded, American spelling, single spaces.
pub(super) fn key(text: &str) -> String {
    normalise_phrase(text)
}

/// An alias key without a leading "my "/"our ", so the alias "my wife" matches the relation "wife".
pub(super) fn alias_key(alias: &str) -> String {
    let key = key(alias);
    for prefix in ["my ", "our ", "the "] {
        if let Some(rest) = key.strip_prefix(prefix) {
            return rest.to_string();
        }
    }
    key
}

/// Whether `haystack` contains `needle` as whole words (both already keys).
pub(super) fn contains_words(haystack: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return false;
    }
    haystack == needle
        || haystack.starts_with(&format!("{needle} "))
        || haystack.ends_with(&format!(" {needle}"))
        || haystack.contains(&format!(" {needle} "))
}

/// The canonical kind of a library pet kind ("Puppy" -> "dog").
pub(super) fn canonical_pet_kind(kind: &str) -> String {
    let wanted = singular(&key(kind));
    PET_KINDS
        .iter()
        .find(|(word, _)| *word == wanted)
        .map(|(_, canonical)| (*canonical).to_string())
        .unwrap_or(wanted)
}
