//! A tenant's library analysis as one thing: every shard's analysis (computed by [`crate::analysis`],
//! in-process or as analysis jobs on a farm), then the grouping of their faces into people and the
//! library's palettes.
//!
//! Progress is derived from what is stored — which shards have an analysis, which shards the people were
//! last grouped from (`tenants/{t}/people/grouped.json`) — so a CLI, `reverie serve` and every worker
//! see the same state without a coordinator, and a process that dies mid-way leaves a state the next one
//! continues from.

use std::collections::BTreeSet;
use std::time::Instant;

use bytes::Bytes;
use reverie_library::{load_manifest, LibraryManifest};
use reverie_shared::ids::{ShardId, TenantId};
use reverie_shared::keys;
use reverie_shared::ports::store::{ObjectStore, StoreError};
use reverie_shared::Backends;
use serde::{Deserialize, Serialize};

use crate::analysis::{
    analyse_shard, analysis_key, Analyser, AnalysisError, Outcome, ShardAnalysis,
};
use crate::people::{load_people, save_people, update_people};

/// Where a library's analysis stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnalysisState {
    /// The tenant has not consented to the analysis of its library: nothing is analysed.
    NoConsent,
    /// Shards wait for their analysis and none has been analysed yet.
    Pending,
    /// Some shards are analysed, or all are and the people are not yet grouped from them.
    Running,
    /// People and palettes are grouped from every shard of the library.
    Done,
}

/// A library's analysis progress, as `people list` and the import report print it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisStatus {
    pub analysis: AnalysisState,
    pub shards: usize,
    pub shards_analysed: usize,
    /// Why faces were not analysed (no face models where the analysis ran), when that is so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faces_skipped: Option<String>,
}

/// What the last grouping covered.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Grouped {
    shards: BTreeSet<ShardId>,
    faces_skipped: Option<String>,
}

async fn load_grouped(store: &dyn ObjectStore, tenant: &TenantId) -> Result<Grouped, StoreError> {
    match store.get(&keys::people_grouped(tenant)).await {
        // An unreadable record only means the next grouping runs again.
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).unwrap_or_default()),
        Err(error) if error.is_not_found() => Ok(Grouped::default()),
        Err(error) => Err(error),
    }
}

/// The shards of `manifest` that have a stored analysis (one listing, not one request per shard).
async fn analysed_shards(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    manifest: &LibraryManifest,
) -> Result<BTreeSet<ShardId>, StoreError> {
    let stored: BTreeSet<String> = store
        .list(&keys::shard_analysis_prefix(tenant))
        .await?
        .into_iter()
        .map(|object| object.key)
        .collect();
    Ok(manifest
        .shards
        .iter()
        .filter(|shard| stored.contains(&analysis_key(tenant, &shard.id)))
        .map(|shard| shard.id.clone())
        .collect())
}

/// Where the analysis of `tenant`'s library stands. `consented`: whether the tenant consented to the
/// analysis of its library (the tenant registry knows; the caller asks it).
pub async fn analysis_status(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    manifest: &LibraryManifest,
    consented: bool,
) -> Result<AnalysisStatus, StoreError> {
    let grouped = load_grouped(store, tenant).await?;
    let shards = manifest.shards.len();
    let all_grouped = manifest
        .shards
        .iter()
        .all(|shard| grouped.shards.contains(&shard.id));
    let shards_analysed = if all_grouped {
        shards
    } else {
        analysed_shards(store, tenant, manifest).await?.len()
    };
    let analysis = if all_grouped {
        AnalysisState::Done
    } else if !consented {
        AnalysisState::NoConsent
    } else if shards_analysed == 0 {
        AnalysisState::Pending
    } else {
        AnalysisState::Running
    };
    Ok(AnalysisStatus {
        analysis,
        shards,
        shards_analysed,
        faces_skipped: grouped.faces_skipped,
    })
}

/// What one grouping did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Grouping {
    pub new_faces: usize,
    pub people: usize,
    pub pets: usize,
}

/// Groups the faces of `analyses` (every shard of `manifest`) into the tenant's people, names them from
/// sidecars, computes the library's palettes, and records which shards the grouping covered.
pub async fn group_library(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    manifest: &LibraryManifest,
    analyses: &[ShardAnalysis],
) -> Result<Grouping, StoreError> {
    let mut people = load_people(store, tenant).await?;
    let new_faces = update_people(&mut people, manifest, analyses);
    save_people(store, tenant, &people).await?;
    let mut pets = crate::pets::load_pets(store, tenant).await?;
    let sightings = crate::pets::update_pets(&mut pets, manifest, analyses);
    crate::pets::save_pets(store, tenant, &pets).await?;
    tracing::info!(%tenant, sightings, pets = pets.pets.len(), "pets grouped");
    let palettes = crate::palettes::library_palettes(manifest, analyses);
    crate::palettes::save_palettes(store, tenant, &palettes).await?;
    // Written last: a grouping cut short is not recorded, so it runs again.
    let grouped = Grouped {
        shards: analyses.iter().map(|a| a.shard.clone()).collect(),
        faces_skipped: analyses.iter().find_map(|a| a.faces_skipped.clone()),
    };
    let json = serde_json::to_vec(&grouped).unwrap_or_default();
    store
        .put(&keys::people_grouped(tenant), Bytes::from(json))
        .await?;
    Ok(Grouping {
        new_faces,
        people: people.people.len(),
        pets: pets.pets.len(),
    })
}

/// On a farm, shards are analysed by analysis jobs on any worker: the worker that stores the last
/// missing analysis groups the library. Returns `None` while shards are still missing or the people
/// already cover every shard. Two workers finishing at once may both group; grouping is deterministic in
/// the analyses, so they write the same people.
pub async fn group_when_complete(
    store: &dyn ObjectStore,
    tenant: &TenantId,
) -> Result<Option<Grouping>, AnalysisError> {
    let manifest = load_manifest(store, tenant).await?;
    let grouped = load_grouped(store, tenant).await?;
    if manifest
        .shards
        .iter()
        .all(|shard| grouped.shards.contains(&shard.id))
    {
        return Ok(None);
    }
    let analysed = analysed_shards(store, tenant, &manifest).await?;
    if analysed.len() < manifest.shards.len() {
        return Ok(None);
    }
    let mut analyses = Vec::with_capacity(manifest.shards.len());
    for shard in &manifest.shards {
        let bytes = store.get(&analysis_key(tenant, &shard.id)).await?;
        let analysis: ShardAnalysis =
            serde_json::from_slice(&bytes).map_err(|e| AnalysisError::Shard {
                shard: shard.id.to_string(),
                detail: format!("stored analysis unreadable: {e}"),
            })?;
        analyses.push(analysis);
    }
    Ok(Some(
        group_library(store, tenant, &manifest, &analyses).await?,
    ))
}

/// What an in-process analysis of a library did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AnalysisSummary {
    pub shards: usize,
    /// Shards analysed now, and shards whose analysis was already stored.
    pub computed: usize,
    pub reused: usize,
    pub faces: usize,
    pub new_faces: usize,
    pub people: usize,
    /// Cats and dogs seen, and the individual pets they were grouped into.
    pub pet_sightings: usize,
    pub pets: usize,
    pub seconds: f64,
}

impl std::fmt::Display for AnalysisSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "analysed {} shards ({} computed, {} already analysed) in {:.1}s: {} faces ({} new), {} people, {} pets ({} sightings)",
            self.shards, self.computed, self.reused, self.seconds, self.faces, self.new_faces, self.people,
            self.pets, self.pet_sightings
        )
    }
}

/// The analysis of a whole library in one process, shard after shard, then the grouping (the demo,
/// `reverie analyse`, imports on the embedded default and `reverie serve` use it). `progress(done, total)` follows the shards.
pub async fn analyse_library(
    backends: &Backends,
    tenant: &TenantId,
    analyser: &Analyser,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<AnalysisSummary, AnalysisError> {
    let manifest = load_manifest(&*backends.store, tenant).await?;
    let started = Instant::now();
    let mut summary = AnalysisSummary {
        shards: manifest.shards.len(),
        ..AnalysisSummary::default()
    };
    let mut analyses = Vec::new();
    for (done, shard) in manifest.shards.iter().enumerate() {
        progress(done, manifest.shards.len());
        let (analysis, outcome) = analyse_shard(
            analyser,
            &*backends.store,
            &*backends.cache,
            tenant,
            &shard.id,
        )
        .await?;
        match outcome {
            Outcome::Computed => summary.computed += 1,
            Outcome::Persisted { .. } => summary.reused += 1,
        }
        summary.faces += analysis.photos.iter().map(|p| p.faces.len()).sum::<usize>();
        summary.pet_sightings += analysis.photos.iter().map(|p| p.pets.len()).sum::<usize>();
        analyses.push(analysis);
    }
    progress(manifest.shards.len(), manifest.shards.len());
    let grouping = group_library(&*backends.store, tenant, &manifest, &analyses).await?;
    summary.new_faces = grouping.new_faces;
    summary.people = grouping.people;
    summary.pets = grouping.pets;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}
