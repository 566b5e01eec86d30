//! Resolving who is in the picture: self references, people by name or relation, groups, pets by
//! name or kind, and the bare names the grammar could not classify.

use std::collections::BTreeSet;

use super::Resolver;
use crate::answers::did_you_mean;
use crate::catalog::{alias_key, canonical_pet_kind, key};
use crate::fuzzy::suggest;
use crate::lexicon::{artist_names, relation_synonyms};
use crate::tokens::singular;
use crate::{CatalogPerson, CatalogPet, ParsedPrompt, PersonMention, PetMention, ReferenceKind};

impl Resolver<'_> {
    pub(super) fn people(&mut self, mentions: &[PersonMention]) {
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

    fn named_person(&mut self, name: &str, via: &str) {
        let found: Vec<&CatalogPerson> = self.catalog.people_named(name);
        match found.as_slice() {
            [person] => self.add_person(person, via),
            [] => {
                let suggestions = suggest(name, self.catalog.person_names());
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
            let suggestions = suggest(relation, catalog.person_names());
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

    pub(super) fn group(&mut self, parsed: &ParsedPrompt) {
        let Some(group) = &parsed.subjects.group else {
            return;
        };
        self.out.group_size = group.size;
        let already_self = parsed.subjects.people.iter().any(|p| p.is_self);
        if group.includes_self && !already_self {
            self.resolve_self(&group.text);
        }
    }

    pub(super) fn pets(&mut self, mentions: &[PetMention]) {
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
        let found = catalog.pets_named(name);
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
    pub(super) fn bare_name(&mut self, name: &str) {
        let people = self.catalog.people_named(name);
        if people.len() > 1 {
            self.named_person(name, name);
            return;
        }
        if let Some(person) = people.first() {
            self.add_person(person, name);
            return;
        }
        if let Some(pet) = self.catalog.pets_named(name).first() {
            self.add_pet(pet, name);
            return;
        }
        if let Some(place) = self.catalog.place_named(name) {
            self.add_place(place, name);
            return;
        }
        if let Some(album) = self.catalog.album_named(name) {
            let album = album.clone();
            self.add_album(&album, name);
            return;
        }
        let candidates: Vec<&str> = self
            .catalog
            .person_names()
            .into_iter()
            .chain(self.catalog.pet_names())
            .chain(self.catalog.place_names())
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
}
