//! Album runs: an album of the tenant's photos turned into art, one job per photo, written where a
//! resumed run overwrites instead of duplicating.

use reverie_shared::ids::{RequestId, TenantId};
use reverie_shared::jobs::{PhotoRef, Priority};
use serde::{Deserialize, Serialize};

use super::{variant_seed, Plan};

/// An album turned into art: every photo of `album` painted in `style`, written to
/// `tenants/{t}/albums/{to}/{photo}.png` so a resumed run overwrites instead of duplicating.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlbumRun {
    pub album: String,
    pub to: String,
    /// The album photos, in job order (job `i` paints photo `i`).
    pub photos: Vec<PhotoRef>,
}

/// Where an album run's outputs go: an album of the tenant's store named after `to`, or, when `to` is
/// an `s3://` URL, that prefix of a bucket the tenant registered (checked at intake and by the worker).
pub fn album_output_prefix(tenant: &TenantId, to: &str) -> String {
    if reverie_shared::destinations::Destination::is_url(to) {
        return format!("{}/", to.trim_end_matches('/'));
    }
    format!(
        "{}albums/{}/",
        reverie_shared::keys::tenant_prefix(tenant),
        album_slug(to)
    )
}

/// An album name as one safe key segment ("Hawaii 2024 / best" -> "hawaii-2024-best").
pub fn album_slug(name: &str) -> String {
    let mut slug = String::new();
    for c in name.trim().chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let slug = slug.trim_end_matches('-').to_string();
    if slug.is_empty() {
        "album".to_string()
    } else {
        slug
    }
}

/// Turns an ordinary plan into an album run: every album photo becomes a background and a seed.
pub fn album_plan(mut plan: Plan, run: AlbumRun, request: &RequestId) -> Plan {
    plan.seeds = (0..run.photos.len() as u32)
        .map(|i| variant_seed(request, i, None))
        .collect();
    plan.references = run.photos.clone();
    plan.priority = Priority::Batch;
    plan.explanation.push(format!(
        "album run: {} photos of album {:?} in style {:?}, to album {:?}",
        run.photos.len(),
        run.album,
        plan.style,
        run.to
    ));
    plan.album_run = Some(run);
    plan
}
