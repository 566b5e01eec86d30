//! A tenant's palettes, aggregated over the library from the photos' analysed palettes and kept in the
//! object store (`tenants/{t}/palettes/palettes.json`, next to the people file):
//!
//! - favourite palettes: the photo palettes grouped by palette distance, each photo weighted by how much
//!   the tenant likes it (1 + 0.3 per XMP star + 2 for a favourite); a group scores the sum of its
//!   photos' weights, so recurrence (many photos) and liking (ratings, favourites) both raise it;
//! - one palette per album and per recurring place, blended over all its photos with the same weights.
//!
//! The scheduler reads the file to pick the photos a render takes its colours from ("in my colours", "in
//! the colours of my Hawaii album"); `reverie library show` prints it.

use std::collections::BTreeMap;

use bytes::Bytes;
use reverie_library::LibraryManifest;
use reverie_paint::{blend_palettes, favourite_palettes, Palette, PaletteVote};
use reverie_shared::ids::TenantId;
use reverie_shared::keys;
use reverie_shared::ports::store::{ObjectStore, StoreError};
use serde::{Deserialize, Serialize};

use crate::analysis::ShardAnalysis;

/// Bump when the file's meaning changes.
pub const PALETTES_VERSION: u32 = 1;
/// Favourite palette groups kept per tenant.
pub const FAVOURITE_GROUPS: usize = 4;
/// Colours in every aggregated palette.
pub const AGGREGATE_COLOURS: usize = 6;
/// Fixed seed: the same library always aggregates to the same palettes.
const SEED: u64 = 0x9a1e77e;

/// A photo that contributed to an aggregated palette, and with what weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaletteMember {
    pub photo: String,
    pub weight: f32,
}

/// An aggregated palette and the photos behind it (heaviest first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregatePalette {
    pub palette: Palette,
    /// Sum of the member photos' weights.
    pub score: f32,
    pub members: Vec<PaletteMember>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LibraryPalettes {
    pub version: u32,
    /// Photos with an analysed palette.
    pub photos: usize,
    /// Best first.
    pub favourites: Vec<AggregatePalette>,
    /// By album name.
    pub albums: BTreeMap<String, AggregatePalette>,
    /// By recurring place id (the manifest's place ids, which the scheduler's catalog uses).
    pub places: BTreeMap<String, AggregatePalette>,
}

/// One analysed photo's palette with the signals from the manifest.
struct Vote {
    photo: String,
    albums: Vec<String>,
    place: Option<String>,
    vote: PaletteVote,
}

fn votes_of(manifest: &LibraryManifest, analyses: &[ShardAnalysis]) -> Vec<Vote> {
    let palettes: BTreeMap<&str, &Palette> = analyses
        .iter()
        .flat_map(|a| a.photos.iter())
        .filter_map(|p| {
            p.palette
                .as_ref()
                .map(|palette| (p.photo.as_str(), palette))
        })
        .collect();
    manifest
        .photos
        .iter()
        .filter_map(|entry| {
            let palette = palettes.get(entry.meta.id.as_str())?;
            Some(Vote {
                photo: entry.meta.id.to_string(),
                albums: entry.meta.albums.iter().cloned().collect(),
                place: manifest.place_of(entry).map(|p| p.id.clone()),
                vote: PaletteVote {
                    palette: (*palette).clone(),
                    rating: entry.meta.rating.map(f32::from),
                    favourite: entry.meta.favourite,
                },
            })
        })
        .collect()
}

/// Blends the votes picked by `indices` into one palette with its members.
fn aggregate(votes: &[Vote], indices: &[usize]) -> Option<AggregatePalette> {
    let picked: Vec<PaletteVote> = indices.iter().map(|&i| votes[i].vote.clone()).collect();
    let palette = blend_palettes(&picked, AGGREGATE_COLOURS, SEED)?;
    Some(AggregatePalette {
        palette,
        score: indices.iter().map(|&i| weight(&votes[i])).sum(),
        members: members(votes, indices),
    })
}

fn weight(vote: &Vote) -> f32 {
    reverie_paint::palette::vote_weight(&vote.vote)
}

fn members(votes: &[Vote], indices: &[usize]) -> Vec<PaletteMember> {
    let mut members: Vec<PaletteMember> = indices
        .iter()
        .map(|&i| PaletteMember {
            photo: votes[i].photo.clone(),
            weight: weight(&votes[i]),
        })
        .collect();
    members.sort_by(|a, b| b.weight.total_cmp(&a.weight).then(a.photo.cmp(&b.photo)));
    members
}

/// The tenant's palettes from the manifest (ratings, favourites, albums, places) and the analyses.
pub fn library_palettes(manifest: &LibraryManifest, analyses: &[ShardAnalysis]) -> LibraryPalettes {
    let votes = votes_of(manifest, analyses);
    let plain: Vec<PaletteVote> = votes.iter().map(|v| v.vote.clone()).collect();
    let favourites = favourite_palettes(&plain, FAVOURITE_GROUPS, AGGREGATE_COLOURS, SEED)
        .into_iter()
        .map(|group| AggregatePalette {
            palette: group.palette,
            score: group.score,
            members: members(&votes, &group.members),
        })
        .collect();
    let mut by_album: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut by_place: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, vote) in votes.iter().enumerate() {
        for album in &vote.albums {
            by_album.entry(album.clone()).or_default().push(i);
        }
        if let Some(place) = &vote.place {
            by_place.entry(place.clone()).or_default().push(i);
        }
    }
    let blend_each = |groups: BTreeMap<String, Vec<usize>>| {
        groups
            .into_iter()
            .filter_map(|(name, indices)| aggregate(&votes, &indices).map(|a| (name, a)))
            .collect()
    };
    LibraryPalettes {
        version: PALETTES_VERSION,
        photos: votes.len(),
        favourites,
        albums: blend_each(by_album),
        places: blend_each(by_place),
    }
}

/// The persisted palettes; `None` when the library was not analysed yet. An unreadable file counts as
/// absent (it is recomputed by the next analysis), with a warning.
pub async fn load_palettes(
    store: &dyn ObjectStore,
    tenant: &TenantId,
) -> Result<Option<LibraryPalettes>, StoreError> {
    match store.get(&keys::library_palettes(tenant)).await {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(palettes) => Ok(Some(palettes)),
            Err(error) => {
                tracing::warn!(%tenant, %error, "palettes file unreadable; ignoring it");
                Ok(None)
            }
        },
        Err(error) if error.is_not_found() => Ok(None),
        Err(error) => Err(error),
    }
}

pub async fn save_palettes(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    palettes: &LibraryPalettes,
) -> Result<(), StoreError> {
    let json = serde_json::to_vec(palettes).unwrap_or_default();
    store
        .put(&keys::library_palettes(tenant), Bytes::from(json))
        .await
}

fn hex(rgb: [u8; 3]) -> String {
    format!("#{:02x}{:02x}{:02x}", rgb[0], rgb[1], rgb[2])
}

/// A palette as `#rrggbb 34%, #... 20%`.
pub fn palette_text(palette: &Palette) -> String {
    palette
        .colours
        .iter()
        .map(|c| format!("{} {:.0}%", hex(c.rgb), c.weight * 100.0))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The favourite palettes as `reverie library show` prints them.
pub fn favourites_text(palettes: &LibraryPalettes) -> String {
    let mut text = format!(
        "favourite palettes (from {} analysed photos):\n",
        palettes.photos
    );
    for (rank, favourite) in palettes.favourites.iter().enumerate() {
        text.push_str(&format!(
            "  {}. {}  (score {:.1}, {} photos)\n",
            rank + 1,
            palette_text(&favourite.palette),
            favourite.score,
            favourite.members.len()
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use reverie_library::manifest::ShardEntry;
    use reverie_library::PhotoEntry;

    fn photo_entry(id: &str, album: &str, rating: Option<u8>, favourite: bool) -> PhotoEntry {
        PhotoEntry {
            meta: reverie_library::PhotoMeta {
                id: reverie_shared::ids::PhotoId::of_bytes(id.as_bytes()),
                original: format!("{id}.jpg"),
                format: "jpeg".to_string(),
                width: 10,
                height: 10,
                orientation: 1,
                captured: None,
                gps: None,
                place: None,
                camera: None,
                title: None,
                description: None,
                keywords: Default::default(),
                rating,
                favourite,
                albums: [album.to_string()].into_iter().collect(),
                people: Vec::new(),
                pets: Vec::new(),
                light: Vec::new(),
                sun_elevation: None,
                stats: reverie_library::metadata::ImageStats {
                    mean_rgb: [0, 0, 0],
                    brightness: 0.5,
                    sharpness: 1.0,
                    colourfulness: 0.5,
                },
            },
            shard: reverie_shared::ids::ShardId::new("s1").unwrap(),
            offset: 0,
            length: 1,
        }
    }

    #[test]
    fn liked_recurring_colours_win_and_albums_get_their_own_palette() {
        let warm = Palette::from_rgb(&[([220, 120, 40], 0.6), ([250, 220, 150], 0.4)]);
        let cold = Palette::from_rgb(&[([30, 60, 160], 0.7), ([200, 220, 240], 0.3)]);
        let mut manifest = LibraryManifest::default();
        manifest.shards.push(ShardEntry {
            id: reverie_shared::ids::ShardId::new("s1").unwrap(),
            photos: 6,
            bytes: 6,
        });
        let mut photos = Vec::new();
        for i in 0..6 {
            let liked = i < 3;
            let album = if liked { "Hawaii" } else { "Winter" };
            let entry = photo_entry(&format!("p{i}"), album, liked.then_some(5), liked);
            photos.push(crate::analysis::PhotoAnalysis {
                photo: entry.meta.id.clone(),
                width: 10,
                height: 10,
                faces: Vec::new(),
                palette: Some(if liked { warm.clone() } else { cold.clone() }),
                fingerprint: None,
                pets: Vec::new(),
                bodies: Vec::new(),
            });
            manifest.photos.push(entry);
        }
        let analysis = ShardAnalysis {
            version: crate::analysis::ANALYSIS_VERSION,
            shard: reverie_shared::ids::ShardId::new("s1").unwrap(),
            face_model: None,
            faces_skipped: None,
            pet_model: None,
            pets_skipped: None,
            photos,
        };
        let palettes = library_palettes(&manifest, &[analysis]);
        assert_eq!(palettes.photos, 6);
        let best = &palettes.favourites[0];
        assert!(reverie_paint::palette_distance(&best.palette, &warm) < 3.0);
        assert_eq!(best.members.len(), 3);
        assert!(best.score > palettes.favourites[1].score);
        let hawaii = &palettes.albums["Hawaii"];
        assert!(reverie_paint::palette_distance(&hawaii.palette, &warm) < 3.0);
        let winter = &palettes.albums["Winter"];
        assert!(reverie_paint::palette_distance(&winter.palette, &cold) < 3.0);
        assert!(favourites_text(&palettes).contains("3 photos"));
    }
}
