//! Library resolution: a prompt's [`Resolution`] becomes the library photos it offers the plan, by
//! role (subjects, backgrounds, palettes), each scored by how well it fits.

use std::collections::BTreeSet;

use reverie_shared::jobs::{PhotoRef, ReferenceRole};

use super::{CatalogFace, CatalogPhoto, TenantLibrary};
use crate::plan::{Candidate, FALLBACK_ANSWER};
use crate::prompt::{Resolution, ResolvedPalette};

/// A reference to a catalog photo in a role.
pub fn photo_ref(
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

/// The catalog ids of the people and pets a photo shows.
fn shown(photo: &CatalogPhoto) -> Vec<String> {
    let mut ids: Vec<String> = photo
        .faces
        .iter()
        .map(|f| f.person.clone())
        .chain(photo.pets.iter().cloned())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

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
            shows: shown(photo),
            close_up: photo.close_up,
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
                    shows: vec![person.id.clone()],
                    close_up: photo.close_up,
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
                shows: vec![pet.id.clone()],
                close_up: photo.close_up,
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
                shows: shown(photo),
                close_up: photo.close_up,
            });
        }
    }
    if offered.backgrounds.is_empty() && offered.subjects.is_empty() {
        offer_fallback_backgrounds(library, &mut offered);
    }
    if let Some(palette) = &resolution.style.palette {
        offered.palettes = palette_candidates(library, palette);
    }
    offered
}

/// The photos a palette request takes its colours from. When the library was analysed, these are the
/// members of the aggregated palette (the favourite palette for "my colours", the album's or place's
/// palette otherwise), scored by how much the tenant likes them; the renderer blends their palettes.
/// Before analysis, every matching photo is offered, most colourful first.
fn palette_candidates(library: &TenantLibrary, palette: &ResolvedPalette) -> Vec<Candidate> {
    let (group, answers) = match palette {
        ResolvedPalette::Library => (
            library.palettes.favourites.first(),
            "palette (your favourite colours)".to_string(),
        ),
        ResolvedPalette::Album { name } => (
            library.palettes.albums.get(name),
            format!("palette (album {name})"),
        ),
        ResolvedPalette::Place { id, name } => (
            library.palettes.places.get(id),
            format!("palette (place {name})"),
        ),
    };
    let candidate = |photo: &CatalogPhoto, score: f32| Candidate {
        reference: photo_ref(photo, ReferenceRole::Palette, None, None),
        score,
        albums: photo.albums.clone(),
        answers: answers.clone(),
        shows: shown(photo),
        close_up: photo.close_up,
    };
    let members: Vec<Candidate> = group
        .map(|group| {
            group
                .members
                .iter()
                .filter_map(|member| {
                    let photo = library
                        .photos
                        .iter()
                        .find(|p| p.photo.as_str() == member.photo)?;
                    // Ties in liking go to the more colourful photo.
                    Some(candidate(photo, member.weight + 0.01 * photo.colourfulness))
                })
                .collect()
        })
        .unwrap_or_default();
    if !members.is_empty() {
        return members;
    }
    library
        .photos
        .iter()
        .filter(|p| palette_matches(palette, p))
        .map(|photo| candidate(photo, photo.colourfulness))
        .collect()
}

fn palette_matches(palette: &ResolvedPalette, photo: &CatalogPhoto) -> bool {
    match palette {
        ResolvedPalette::Library => true,
        ResolvedPalette::Album { name } => photo.albums.iter().any(|a| a == name),
        ResolvedPalette::Place { id, .. } => photo.place.as_deref() == Some(id.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::library::{LibraryPalettes, PaletteGroup, PaletteMember};
    use crate::plan::{jobs_for, make_plan, PlanInput, PlannerSettings};
    use crate::prompt::LibraryCatalog;
    use reverie_shared::ids::{PhotoId, RequestId, ShardId, TenantId};

    fn photo(name: &str, album: &str, colourfulness: f32) -> CatalogPhoto {
        CatalogPhoto {
            photo: PhotoId::of_bytes(name.as_bytes()),
            shard: ShardId::new("s1").unwrap(),
            offset: 0,
            length: 1,
            albums: vec![album.to_string()],
            place: None,
            light: Vec::new(),
            scenes: Vec::new(),
            keywords: Vec::new(),
            faces: Vec::new(),
            pets: Vec::new(),
            colourfulness,
            close_up: false,
        }
    }

    fn member(photo: &CatalogPhoto, weight: f32) -> PaletteMember {
        PaletteMember {
            photo: photo.photo.to_string(),
            weight,
        }
    }

    fn library() -> TenantLibrary {
        let (a, b, c) = (
            photo("a", "Hawaii", 0.9),
            photo("b", "Hawaii", 0.1),
            photo("c", "Winter", 0.5),
        );
        let mut palettes = LibraryPalettes::default();
        // The liked, low-colour photo b leads the album's palette; c alone is the favourite palette.
        palettes.albums.insert(
            "Hawaii".into(),
            PaletteGroup {
                members: vec![member(&b, 4.0), member(&a, 1.0)],
            },
        );
        palettes.favourites.push(PaletteGroup {
            members: vec![member(&c, 3.0)],
        });
        TenantLibrary {
            catalog: LibraryCatalog::default(),
            photos: vec![a, b, c],
            palettes,
            loras: Vec::new(),
        }
    }

    fn palette_refs(library: &TenantLibrary, palette: ResolvedPalette) -> Vec<String> {
        let mut resolution = Resolution::default();
        resolution.style.palette = Some(palette);
        let offered = candidates(library, &resolution);
        let input = PlanInput {
            palette_transfer: true,
            palettes: offered.palettes,
            backgrounds: offered.backgrounds,
            ..PlanInput::default()
        };
        let request = RequestId::new("r1").unwrap();
        let settings = PlannerSettings::default();
        let plan = make_plan(&input, &request, &settings);
        let jobs = jobs_for(&plan, &TenantId::new("t").unwrap(), &request, &settings);
        assert!(jobs.iter().all(|j| j.render.palette_transfer));
        plan.references
            .iter()
            .filter(|r| r.role == ReferenceRole::Palette)
            .map(|r| r.photo.to_string())
            .collect()
    }

    #[test]
    fn palette_requests_send_the_photos_behind_the_aggregated_palette() {
        let library = library();
        let id = |name: &str| PhotoId::of_bytes(name.as_bytes()).to_string();
        let album = ResolvedPalette::Album {
            name: "Hawaii".into(),
        };
        assert_eq!(
            palette_refs(&library, album.clone()),
            vec![id("b"), id("a")]
        );
        assert_eq!(
            palette_refs(&library, ResolvedPalette::Library),
            vec![id("c")]
        );
        // Before the library is analysed: the album's photos, most colourful first.
        let mut unanalysed = library.clone();
        unanalysed.palettes = LibraryPalettes::default();
        assert_eq!(palette_refs(&unanalysed, album), vec![id("a"), id("b")]);
    }
}
