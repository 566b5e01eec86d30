//! The library manifest: every shard, photo and album of a tenant, and its recurring places. Written
//! last by an import (after the shards), so a manifest never names a shard that is not there.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use reverie_shared::ids::{PhotoId, ShardId, TenantId};
use reverie_shared::keys;
use reverie_shared::ports::store::ObjectStore;
use serde::{Deserialize, Serialize};

use crate::error::LibraryError;
use crate::metadata::PhotoMeta;
use crate::places::{recurring_places, RecurringPlace, Sighting};

pub const MANIFEST_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardEntry {
    pub id: ShardId,
    pub photos: usize,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhotoEntry {
    pub meta: PhotoMeta,
    pub shard: ShardId,
    /// Where the photo's bytes are inside the shard tar.
    pub offset: u64,
    pub length: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LibraryManifest {
    pub version: u32,
    pub tenant: Option<TenantId>,
    pub updated_at: Option<String>,
    pub shards: Vec<ShardEntry>,
    pub photos: Vec<PhotoEntry>,
    pub places: Vec<RecurringPlace>,
}

impl LibraryManifest {
    pub fn contains(&self, photo: &PhotoId) -> bool {
        self.photos.iter().any(|p| &p.meta.id == photo)
    }

    pub fn photo_mut(&mut self, photo: &PhotoId) -> Option<&mut PhotoEntry> {
        self.photos.iter_mut().find(|p| &p.meta.id == photo)
    }

    /// Album name → photos, from the photos' own album lists.
    pub fn albums(&self) -> BTreeMap<String, Vec<PhotoId>> {
        let mut albums: BTreeMap<String, Vec<PhotoId>> = BTreeMap::new();
        for photo in &self.photos {
            for album in &photo.meta.albums {
                albums
                    .entry(album.clone())
                    .or_default()
                    .push(photo.meta.id.clone());
            }
        }
        albums
    }

    /// Recomputes the recurring places from the photos' positions.
    pub fn refresh_places(&mut self) {
        let sightings: Vec<Sighting<'_>> = self
            .photos
            .iter()
            .filter_map(|p| {
                Some(Sighting {
                    place: p.meta.place.as_ref()?,
                    point: p.meta.gps.as_ref()?,
                    date: p.meta.captured.as_ref().map(|c| c.local.as_str()),
                })
            })
            .collect();
        self.places = recurring_places(&sightings);
    }

    /// The recurring place a photo belongs to.
    pub fn place_of(&self, photo: &PhotoEntry) -> Option<&RecurringPlace> {
        let label = photo.meta.place.as_ref()?.label();
        self.places.iter().find(|p| p.label == label)
    }

    pub fn people_names(&self) -> BTreeSet<String> {
        self.photos
            .iter()
            .flat_map(|p| p.meta.people.iter().map(|r| r.name.clone()))
            .collect()
    }
}

pub async fn load_manifest(
    store: &dyn ObjectStore,
    tenant: &TenantId,
) -> Result<LibraryManifest, LibraryError> {
    let key = keys::library_manifest(tenant);
    match store.get(&key).await {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| LibraryError::Manifest {
            tenant: tenant.to_string(),
            detail: e.to_string(),
        }),
        Err(error) if error.is_not_found() => Ok(LibraryManifest {
            version: MANIFEST_VERSION,
            tenant: Some(tenant.clone()),
            ..LibraryManifest::default()
        }),
        Err(error) => Err(error.into()),
    }
}

pub async fn save_manifest(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    manifest: &LibraryManifest,
) -> Result<(), LibraryError> {
    let bytes = serde_json::to_vec(manifest).map_err(|e| LibraryError::Manifest {
        tenant: tenant.to_string(),
        detail: e.to_string(),
    })?;
    store
        .put(&keys::library_manifest(tenant), Bytes::from(bytes))
        .await?;
    Ok(())
}
