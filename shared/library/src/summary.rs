//! `reverie library show`: what a library holds, in a stable JSON schema (docs/library.md).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::manifest::LibraryManifest;

#[derive(Debug, Serialize)]
pub struct LibrarySummary {
    pub schema: &'static str,
    pub photos: usize,
    pub shards: usize,
    pub bytes: u64,
    pub first_capture: Option<String>,
    pub last_capture: Option<String>,
    pub albums: Vec<AlbumSummary>,
    pub places: Vec<PlaceSummary>,
    pub light: BTreeMap<String, usize>,
    pub people: Vec<String>,
    pub cameras: BTreeMap<String, usize>,
}

#[derive(Debug, Serialize)]
pub struct AlbumSummary {
    pub name: String,
    pub photos: usize,
}

#[derive(Debug, Serialize)]
pub struct PlaceSummary {
    pub name: String,
    pub label: String,
    pub photos: usize,
    pub first: Option<String>,
    pub last: Option<String>,
}

pub fn summarise(manifest: &LibraryManifest) -> LibrarySummary {
    let mut light: BTreeMap<String, usize> = BTreeMap::new();
    let mut cameras: BTreeMap<String, usize> = BTreeMap::new();
    let mut times: Vec<&str> = Vec::new();
    for photo in &manifest.photos {
        for tag in &photo.meta.light {
            *light.entry(tag.clone()).or_default() += 1;
        }
        if let Some(camera) = &photo.meta.camera {
            *cameras.entry(camera.clone()).or_default() += 1;
        }
        if let Some(captured) = &photo.meta.captured {
            times.push(&captured.local);
        }
    }
    times.sort_unstable();
    LibrarySummary {
        schema: "reverie.library-summary.v1",
        photos: manifest.photos.len(),
        shards: manifest.shards.len(),
        bytes: manifest.shards.iter().map(|s| s.bytes).sum(),
        first_capture: times.first().map(|t| t.to_string()),
        last_capture: times.last().map(|t| t.to_string()),
        albums: manifest
            .albums()
            .into_iter()
            .map(|(name, photos)| AlbumSummary {
                name,
                photos: photos.len(),
            })
            .collect(),
        places: manifest
            .places
            .iter()
            .map(|p| PlaceSummary {
                name: p.name.clone(),
                label: p.label.clone(),
                photos: p.photos,
                first: p.first.clone(),
                last: p.last.clone(),
            })
            .collect(),
        light,
        people: manifest.people_names().into_iter().collect(),
        cameras,
    }
}

impl LibrarySummary {
    /// The human-readable form.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{} photos in {} shards ({:.1} MB)\n",
            self.photos,
            self.shards,
            self.bytes as f64 / 1e6
        );
        if let (Some(first), Some(last)) = (&self.first_capture, &self.last_capture) {
            out.push_str(&format!("taken {first} .. {last}\n"));
        }
        out.push_str("albums:\n");
        for album in &self.albums {
            out.push_str(&format!("  {} ({} photos)\n", album.name, album.photos));
        }
        out.push_str("places:\n");
        for place in &self.places {
            out.push_str(&format!(
                "  {} — {} ({} photos)\n",
                place.name, place.label, place.photos
            ));
        }
        out.push_str("light:\n");
        for (tag, count) in &self.light {
            out.push_str(&format!("  {tag}: {count}\n"));
        }
        out.push_str(&format!(
            "people named in sidecars: {}\n",
            self.people.join(", ")
        ));
        out
    }
}
