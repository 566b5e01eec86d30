//! Resolution of a parsed prompt against one tenant's library.
//!
//! Every reference either resolves to library ids or becomes an [`Unresolved`] entry with a message
//! and the closest known names; nothing is dropped silently. Matching is case-, diacritic- and
//! spelling-insensitive ("jose" finds "José"), but never fuzzy: a typo is a suggestion, not a match,
//! because generating someone else's face is worse than asking.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::fuzzy::suggest;
use super::lexicon::{
    artist_names, light_neighbours, related_scenes, relation_synonyms, PET_KINDS, SCENE_PHRASES,
};
use super::text::{normalise_phrase, singular};
use super::{Light, PaletteRequest, ParsedPrompt, PersonMention, PetMention};

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

/// What kind of reference could not be resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferenceKind {
    Person,
    Pet,
    /// A bare name that is neither a person, a pet nor a place.
    Name,
    Place,
    Light,
    Scene,
    Album,
    Artist,
    Palette,
}

/// A reference the library could not satisfy, with a sentence for the reply and suggestions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unresolved {
    pub kind: ReferenceKind,
    /// The prompt's words.
    pub text: String,
    pub message: String,
    pub suggestions: Vec<String>,
}

/// The key two names are compared by: lower case, folded, American spelling, single spaces.
fn key(text: &str) -> String {
    normalise_phrase(text)
}

/// An alias key without a leading "my "/"our ", so the alias "my wife" matches the relation "wife".
fn alias_key(alias: &str) -> String {
    let key = key(alias);
    for prefix in ["my ", "our ", "the "] {
        if let Some(rest) = key.strip_prefix(prefix) {
            return rest.to_string();
        }
    }
    key
}

fn did_you_mean(suggestions: &[String]) -> String {
    match suggestions {
        [] => String::new(),
        [only] => format!("; did you mean '{only}'?"),
        [init @ .., last] => {
            let quoted: Vec<String> = init.iter().map(|s| format!("'{s}'")).collect();
            format!("; did you mean {} or '{last}'?", quoted.join(", "))
        }
    }
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

impl<'a> Resolver<'a> {
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

    /// Names, first names and aliases of everyone, for suggestions ("Anan" -> "Anna").
    fn person_names(&self) -> Vec<&'a str> {
        let catalog = self.catalog;
        catalog
            .people
            .iter()
            .flat_map(|p| {
                let first = p.name.split_whitespace().next().filter(|f| *f != p.name);
                std::iter::once(p.name.as_str())
                    .chain(first)
                    .chain(p.aliases.iter().map(String::as_str))
            })
            .collect()
    }

    fn pet_names(&self) -> Vec<&'a str> {
        let catalog = self.catalog;
        catalog
            .pets
            .iter()
            .flat_map(|p| {
                std::iter::once(p.name.as_str()).chain(p.aliases.iter().map(String::as_str))
            })
            .collect()
    }

    fn place_names(&self) -> Vec<&'a str> {
        let catalog = self.catalog;
        catalog
            .places
            .iter()
            .flat_map(|p| {
                std::iter::once(p.name.as_str()).chain(p.aliases.iter().map(String::as_str))
            })
            .collect()
    }

    /// People whose full name, alias, or (when no full match exists) first name equals `name`.
    fn people_named(&self, name: &str) -> Vec<&'a CatalogPerson> {
        let catalog: &'a LibraryCatalog = self.catalog;
        let wanted = key(name);
        let full: Vec<&CatalogPerson> = catalog
            .people
            .iter()
            .filter(|p| key(&p.name) == wanted || p.aliases.iter().any(|a| alias_key(a) == wanted))
            .collect();
        if !full.is_empty() {
            return full;
        }
        catalog
            .people
            .iter()
            .filter(|p| key(&p.name).split(' ').next() == Some(wanted.as_str()))
            .collect()
    }

    fn pets_named(&self, name: &str) -> Vec<&'a CatalogPet> {
        let catalog: &'a LibraryCatalog = self.catalog;
        let wanted = key(name);
        catalog
            .pets
            .iter()
            .filter(|p| key(&p.name) == wanted || p.aliases.iter().any(|a| alias_key(a) == wanted))
            .collect()
    }

    fn place_named(&self, name: &str) -> Option<&'a CatalogPlace> {
        let catalog: &'a LibraryCatalog = self.catalog;
        let wanted = key(name);
        catalog
            .places
            .iter()
            .find(|p| key(&p.name) == wanted || p.aliases.iter().any(|a| alias_key(a) == wanted))
    }

    /// An album equal to `name`, or the only album whose name contains it as whole words.
    fn album_named(&self, name: &str) -> Option<&'a String> {
        let catalog: &'a LibraryCatalog = self.catalog;
        let wanted = key(name);
        if wanted.is_empty() {
            return None;
        }
        if let Some(exact) = catalog.albums.iter().find(|a| key(a) == wanted) {
            return Some(exact);
        }
        let containing: Vec<&String> = catalog
            .albums
            .iter()
            .filter(|a| contains_words(&key(a), &wanted))
            .collect();
        match containing.as_slice() {
            [only] => Some(only),
            _ => None,
        }
    }

    fn resolve_self(&mut self, via: &str) {
        let catalog = self.catalog;
        match catalog.people.iter().find(|p| p.is_self) {
            Some(me) => self.add_person(me, via),
            None => {
                let message = format!(
                    "'{via}' refers to you, but no person in your library is marked as you; mark your own person as self"
                );
                self.unresolved(ReferenceKind::Person, via, message, Vec::new());
            }
        }
    }

    fn people(&mut self, mentions: &[PersonMention]) {
        for mention in mentions {
            if mention.is_self {
                self.resolve_self(&mention.text);
            } else if let Some(name) = &mention.name {
                self.named_person(name, &mention.text);
            } else if let Some(relation) = &mention.relation {
                self.relation(mention, relation);
            }
        }
    }

    fn named_person(&mut self, name: &str, via: &str) {
        let found: Vec<&CatalogPerson> = self.people_named(name);
        match found.as_slice() {
            [person] => self.add_person(person, via),
            [] => {
                let suggestions = suggest(name, self.person_names());
                let message = format!("no person named '{name}'{}", did_you_mean(&suggestions));
                self.unresolved(ReferenceKind::Person, via, message, suggestions);
            }
            several => {
                let names: Vec<String> = several.iter().map(|p| p.name.clone()).collect();
                let message = format!(
                    "{} people are called '{name}': {}; say which",
                    names.len(),
                    names.join(", ")
                );
                self.unresolved(ReferenceKind::Person, via, message, names);
            }
        }
    }

    /// "my wife", "our kids", "Anna's husband": people whose aliases name the relation.
    fn relation(&mut self, mention: &PersonMention, relation: &str) {
        let catalog = self.catalog;
        let synonyms = relation_synonyms(relation);
        let owner_prefix = mention.owner.as_deref().map(|o| format!("{} ", key(o)));
        let matches: Vec<&CatalogPerson> = catalog
            .people
            .iter()
            .filter(|p| {
                p.aliases.iter().any(|alias| {
                    let alias = alias_key(alias);
                    let alias = match &owner_prefix {
                        // "Anna's husband" is stored as the alias "anna's husband" -> "anna husband".
                        Some(prefix) => match alias.strip_prefix(prefix.as_str()) {
                            Some(rest) => rest.to_string(),
                            None => return false,
                        },
                        None => alias,
                    };
                    let alias = singular(&alias);
                    alias == relation || synonyms.iter().any(|s| singular(s) == alias)
                })
            })
            .collect();
        let text = mention.text.as_str();
        let wanted = if mention.plural {
            mention.count
        } else {
            Some(1)
        };
        if matches.is_empty() {
            let suggestions = suggest(relation, self.person_names());
            let message = format!(
                "no person in your library is known as {text}; add '{relation}' as an alias of that person{}",
                did_you_mean(&suggestions)
            );
            self.unresolved(ReferenceKind::Person, text, message, suggestions);
            return;
        }
        match wanted {
            Some(1) if matches.len() > 1 => {
                let names: Vec<String> = matches.iter().map(|p| p.name.clone()).collect();
                let message = format!(
                    "'{text}' could be any of {}; name the one you mean",
                    names.join(", ")
                );
                self.unresolved(ReferenceKind::Person, text, message, names);
            }
            Some(n) if (n as usize) > matches.len() => {
                for person in &matches {
                    self.add_person(person, text);
                }
                let names: Vec<String> = matches.iter().map(|p| p.name.clone()).collect();
                let message = format!(
                    "'{text}' asks for {n}, but your library knows {} ({})",
                    matches.len(),
                    names.join(", ")
                );
                self.unresolved(ReferenceKind::Person, text, message, Vec::new());
            }
            _ => {
                for person in &matches {
                    self.add_person(person, text);
                }
            }
        }
    }

    fn group(&mut self, parsed: &ParsedPrompt) {
        let Some(group) = &parsed.subjects.group else {
            return;
        };
        self.out.group_size = group.size;
        let already_self = parsed.subjects.people.iter().any(|p| p.is_self);
        if group.includes_self && !already_self {
            self.resolve_self(&group.text);
        }
    }

    fn pets(&mut self, mentions: &[PetMention]) {
        for mention in mentions {
            match (&mention.name, &mention.kind) {
                (Some(name), kind) => self.named_pet(name, kind.as_deref(), &mention.text),
                (None, Some(kind)) => self.pets_by_kind(mention, kind),
                (None, None) => {}
            }
        }
    }

    fn named_pet(&mut self, name: &str, kind: Option<&str>, via: &str) {
        let catalog = self.catalog;
        let found = self.pets_named(name);
        let found: Vec<&CatalogPet> = match kind {
            // "my cat Rex" must not pick the dog Rex when a cat of that name exists.
            Some(kind) if found.iter().any(|p| canonical_pet_kind(&p.kind) == kind) => found
                .into_iter()
                .filter(|p| canonical_pet_kind(&p.kind) == kind)
                .collect(),
            _ => found,
        };
        if let Some(pet) = found.first() {
            self.add_pet(pet, via);
            return;
        }
        let suggestions = suggest(name, catalog.pets.iter().map(|p| p.name.as_str()));
        let message = format!("no pet named '{name}'{}", did_you_mean(&suggestions));
        self.unresolved(ReferenceKind::Pet, via, message, suggestions);
    }

    fn pets_by_kind(&mut self, mention: &PetMention, kind: &str) {
        let catalog = self.catalog;
        let of_kind: Vec<&CatalogPet> = catalog
            .pets
            .iter()
            .filter(|p| canonical_pet_kind(&p.kind) == kind)
            .collect();
        let text = mention.text.as_str();
        let names: Vec<String> = of_kind.iter().map(|p| p.name.clone()).collect();
        let wanted = mention
            .count
            .or(if mention.plural { None } else { Some(1) });
        if of_kind.is_empty() {
            // "a dog" that is not the tenant's may be any dog; "my dog" must exist.
            if mention.owned {
                let kinds: BTreeSet<String> = catalog
                    .pets
                    .iter()
                    .map(|p| canonical_pet_kind(&p.kind))
                    .collect();
                let message = if kinds.is_empty() {
                    format!("no pets in your library, so '{text}' cannot be resolved")
                } else {
                    format!(
                        "no {kind} in your library; your pets are {}",
                        catalog
                            .pets
                            .iter()
                            .map(|p| format!("{} ({})", p.name, p.kind))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                let suggestions = catalog
                    .pets
                    .iter()
                    .map(|p| p.name.clone())
                    .take(3)
                    .collect();
                self.unresolved(ReferenceKind::Pet, text, message, suggestions);
            }
            return;
        }
        match wanted {
            Some(1) if of_kind.len() > 1 && mention.owned => {
                let message = format!(
                    "you have {} {kind}s ({}); name the one you mean",
                    of_kind.len(),
                    names.join(", ")
                );
                self.unresolved(ReferenceKind::Pet, text, message, names);
            }
            Some(n) if (n as usize) > of_kind.len() && mention.owned => {
                for pet in &of_kind {
                    self.add_pet(pet, text);
                }
                let message = format!(
                    "'{text}' asks for {n}, but your library has {} ({})",
                    of_kind.len(),
                    names.join(", ")
                );
                self.unresolved(ReferenceKind::Pet, text, message, Vec::new());
            }
            Some(n) => {
                for pet in of_kind.iter().take(n as usize) {
                    self.add_pet(pet, text);
                }
            }
            None => {
                for pet in &of_kind {
                    self.add_pet(pet, text);
                }
            }
        }
    }

    /// A name the prompt did not classify: a person, a pet, a place or an album, in that order.
    fn bare_name(&mut self, name: &str) {
        let people = self.people_named(name);
        if people.len() > 1 {
            self.named_person(name, name);
            return;
        }
        if let Some(person) = people.first() {
            self.add_person(person, name);
            return;
        }
        if let Some(pet) = self.pets_named(name).first() {
            self.add_pet(pet, name);
            return;
        }
        if let Some(place) = self.place_named(name) {
            self.add_place(place, name);
            return;
        }
        if let Some(album) = self.album_named(name) {
            let album = album.clone();
            self.add_album(&album, name);
            return;
        }
        let candidates: Vec<&str> = self
            .person_names()
            .into_iter()
            .chain(self.pet_names())
            .chain(self.place_names())
            .collect();
        let mut suggestions = suggest(name, candidates);
        if suggestions.is_empty() {
            // Maybe an artist written without "inspired by".
            suggestions = suggest(name, artist_names());
        }
        let message = format!(
            "no person, pet or place named '{name}'{}",
            did_you_mean(&suggestions)
        );
        self.unresolved(ReferenceKind::Name, name, message, suggestions);
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

    fn place(&mut self, name: &str, via: &str) {
        if let Some(place) = self.place_named(name) {
            let place = place.clone();
            self.add_place(&place, via);
            return;
        }
        if let Some(album) = self.album_named(name) {
            let album = album.clone();
            self.add_album(&album, via);
            return;
        }
        let suggestions = suggest(name, self.place_names());
        let message = format!(
            "no place named '{name}' in your library{}",
            did_you_mean(&suggestions)
        );
        self.unresolved(ReferenceKind::Place, via, message, suggestions);
    }

    fn light(&mut self, light: Light) {
        let catalog = self.catalog;
        let available: Vec<(Light, &String)> = catalog
            .light_tags
            .iter()
            .filter_map(|tag| Light::from_tag(tag).map(|l| (l, tag)))
            .collect();
        if let Some((_, tag)) = available.iter().find(|(l, _)| *l == light) {
            self.out.light.push(ResolvedLight {
                light,
                tag: (*tag).clone(),
            });
            return;
        }
        let suggestions: Vec<String> = light_neighbours(light)
            .iter()
            .filter(|n| available.iter().any(|(l, _)| l == *n))
            .map(|n| n.tag().to_string())
            .collect();
        let closest = if suggestions.is_empty() {
            let tags: Vec<&str> = available.iter().map(|(l, _)| l.tag()).collect();
            if tags.is_empty() {
                "; your library has no light tags yet".to_string()
            } else {
                format!("; your library has {}", tags.join(", "))
            }
        } else {
            format!(
                "; the closest light in your library is {}",
                suggestions.join(", ")
            )
        };
        let message = format!(
            "no photos in your library are tagged '{}'{closest}",
            light.tag()
        );
        self.unresolved(ReferenceKind::Light, light.tag(), message, suggestions);
    }

    /// Where the library mentions a scene, by its canonical word or a synonym.
    fn scene_evidence(&self, scene: &str) -> Vec<String> {
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
        let catalog = self.catalog;
        let sources: [(&str, &Vec<String>); 5] = [
            ("scene", &catalog.scene_tags),
            ("keyword", &catalog.keywords),
            ("album", &catalog.albums),
            ("title", &catalog.titles),
            ("description", &catalog.descriptions),
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

    fn scene(&mut self, scene: &str) {
        let evidence = self.scene_evidence(scene);
        if !evidence.is_empty() {
            self.out.scenes.push(ResolvedScene {
                scene: scene.to_string(),
                evidence,
            });
            return;
        }
        // Related scenes first ("sea" for "beach"), then whatever else the library has.
        let canonical: BTreeSet<&str> = SCENE_PHRASES.iter().map(|(_, c)| *c).collect();
        let candidates = related_scenes(scene).iter().copied().chain(
            canonical
                .into_iter()
                .filter(|c| !related_scenes(scene).contains(c)),
        );
        let suggestions: Vec<String> = candidates
            .filter(|c| *c != scene && !self.scene_evidence(c).is_empty())
            .take(3)
            .map(str::to_string)
            .collect();
        let also = if suggestions.is_empty() {
            String::new()
        } else {
            format!("; your library has {}", suggestions.join(", "))
        };
        let message = format!(
            "nothing in your library mentions '{scene}' (no scene tag, keyword, album, title or description){also}"
        );
        self.unresolved(ReferenceKind::Scene, scene, message, suggestions);
    }

    fn album(&mut self, name: &str, via: &str) {
        if let Some(album) = self.album_named(name) {
            let album = album.clone();
            self.add_album(&album, via);
            return;
        }
        let catalog = self.catalog;
        let mut suggestions = suggest(name, catalog.albums.iter().map(String::as_str));
        if suggestions.is_empty() {
            // Album names are often longer than what people say: "Hawaii" for "Hawaii 2023".
            let wanted = key(name);
            suggestions = catalog
                .albums
                .iter()
                .filter(|a| contains_words(&key(a), &wanted))
                .take(3)
                .cloned()
                .collect();
        }
        let message = format!("no album named '{name}'{}", did_you_mean(&suggestions));
        self.unresolved(ReferenceKind::Album, via, message, suggestions);
    }

    fn style(&mut self, parsed: &ParsedPrompt) {
        let catalog = self.catalog;
        let known = artist_names();
        self.out.style.styles = parsed.style.styles.clone();
        self.out.style.artists = parsed.style.artists.clone();
        for artist in &parsed.style.artists {
            if known.contains(&artist.as_str()) {
                continue;
            }
            // An artist Reverie does not know still goes to the model; a likely typo is reported.
            let suggestions = suggest(artist, known.iter().copied());
            if !suggestions.is_empty() {
                let message = format!("unknown artist '{artist}'{}", did_you_mean(&suggestions));
                self.unresolved(ReferenceKind::Artist, artist, message, suggestions);
            }
        }
        let Some(palette) = &parsed.style.palette else {
            return;
        };
        let resolved = match palette {
            PaletteRequest::Library if catalog.photo_count > 0 => Some(ResolvedPalette::Library),
            PaletteRequest::Library => {
                let message = "your library has no photos yet to take colours from".to_string();
                self.unresolved(ReferenceKind::Palette, "my colours", message, Vec::new());
                None
            }
            PaletteRequest::Album { name } => match self.album_named(name) {
                Some(album) => Some(ResolvedPalette::Album {
                    name: album.clone(),
                }),
                None => {
                    self.album(name, name);
                    None
                }
            },
            PaletteRequest::Named { name } => {
                if let Some(album) = self.album_named(name) {
                    Some(ResolvedPalette::Album {
                        name: album.clone(),
                    })
                } else if let Some(place) = self.place_named(name) {
                    Some(ResolvedPalette::Place {
                        id: place.id.clone(),
                        name: place.name.clone(),
                    })
                } else {
                    let candidates: Vec<&str> = catalog
                        .albums
                        .iter()
                        .map(String::as_str)
                        .chain(self.place_names())
                        .collect();
                    let suggestions = suggest(name, candidates);
                    let message = format!(
                        "no album or place named '{name}' to take colours from{}",
                        did_you_mean(&suggestions)
                    );
                    self.unresolved(ReferenceKind::Palette, name, message, suggestions);
                    None
                }
            }
        };
        self.out.style.palette = resolved;
    }
}

/// Whether `haystack` contains `needle` as whole words (both already keys).
fn contains_words(haystack: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return false;
    }
    haystack == needle
        || haystack.starts_with(&format!("{needle} "))
        || haystack.ends_with(&format!(" {needle}"))
        || haystack.contains(&format!(" {needle} "))
}

/// The canonical kind of a library pet kind ("Puppy" -> "dog").
fn canonical_pet_kind(kind: &str) -> String {
    let wanted = singular(&key(kind));
    PET_KINDS
        .iter()
        .find(|(word, _)| *word == wanted)
        .map(|(_, canonical)| (*canonical).to_string())
        .unwrap_or(wanted)
}
