//! Resolving where, when and how: places, light, scenes, albums, and the style's artists and
//! palette.

use std::collections::BTreeSet;

use super::{ResolvedLight, ResolvedScene, Resolver};
use crate::answers::did_you_mean;
use crate::catalog::{contains_words, key};
use crate::fuzzy::suggest;
use crate::lexicon::{artist_names, light_neighbours, related_scenes, SCENE_PHRASES};
use crate::{Light, PaletteRequest, ParsedPrompt, ReferenceKind, ResolvedPalette};

impl Resolver<'_> {
    pub(super) fn place(&mut self, name: &str, via: &str) {
        if let Some(place) = self.catalog.place_named(name) {
            let place = place.clone();
            self.add_place(&place, via);
            return;
        }
        if let Some(album) = self.catalog.album_named(name) {
            let album = album.clone();
            self.add_album(&album, via);
            return;
        }
        let suggestions = suggest(name, self.catalog.place_names());
        let message = format!(
            "no place named '{name}' in your library{}",
            did_you_mean(&suggestions)
        );
        self.unresolved(ReferenceKind::Place, via, message, suggestions);
    }

    pub(super) fn light(&mut self, light: Light) {
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

    pub(super) fn scene(&mut self, scene: &str) {
        let evidence = self.catalog.scene_evidence(scene);
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
            .filter(|c| *c != scene && !self.catalog.scene_evidence(c).is_empty())
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

    pub(super) fn album(&mut self, name: &str, via: &str) {
        if let Some(album) = self.catalog.album_named(name) {
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

    pub(super) fn style(&mut self, parsed: &ParsedPrompt) {
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
            PaletteRequest::Album { name } => match catalog.album_named(name) {
                Some(album) => Some(ResolvedPalette::Album {
                    name: album.clone(),
                }),
                None => {
                    self.album(name, name);
                    None
                }
            },
            PaletteRequest::Named { name } => {
                if let Some(album) = catalog.album_named(name) {
                    Some(ResolvedPalette::Album {
                        name: album.clone(),
                    })
                } else if let Some(place) = catalog.place_named(name) {
                    Some(ResolvedPalette::Place {
                        id: place.id.clone(),
                        name: place.name.clone(),
                    })
                } else {
                    let candidates: Vec<&str> = catalog
                        .albums
                        .iter()
                        .map(String::as_str)
                        .chain(catalog.place_names())
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
