//! The object-store layout and cache keys, in one place so every role agrees on them.
//!
//! Everything of a tenant lives under `tenants/{tenant}/` in the store and `reverie:{tenant}:` in the cache,
//! which is what makes `tenant forget` complete: two prefix deletions.

use crate::ids::{PhotoId, RequestId, ShardId, TenantId};

pub fn tenant_prefix(tenant: &TenantId) -> String {
    format!("tenants/{tenant}/")
}

/// The tenant's registered output buckets (see `destinations`).
pub fn tenant_destinations(tenant: &TenantId) -> String {
    format!("tenants/{tenant}/destinations.json")
}

pub fn library_manifest(tenant: &TenantId) -> String {
    format!("tenants/{tenant}/library/manifest.json")
}

pub fn shard(tenant: &TenantId, shard: &ShardId) -> String {
    format!("tenants/{tenant}/shards/{shard}.tar")
}

pub fn shards_prefix(tenant: &TenantId) -> String {
    format!("tenants/{tenant}/shards/")
}

/// Where the analysis (faces, palettes, fingerprints) of one shard is persisted, `what` naming the part.
pub fn shard_analysis(tenant: &TenantId, shard: &ShardId, what: &str) -> String {
    format!("tenants/{tenant}/analysis/{shard}/{what}")
}

/// Every shard analysis of a tenant.
pub fn shard_analysis_prefix(tenant: &TenantId) -> String {
    format!("tenants/{tenant}/analysis/")
}

/// The tenant's people: face clusters, names, who is "me".
pub fn people(tenant: &TenantId) -> String {
    format!("tenants/{tenant}/people/people.json")
}

/// The tenant's pets: every cat and dog sighting grouped into animals, names and edits.
pub fn pets(tenant: &TenantId) -> String {
    format!("tenants/{tenant}/pets/pets.json")
}

/// Which shards the tenant's people were last grouped from (the library analysis's progress record).
pub fn people_grouped(tenant: &TenantId) -> String {
    format!("tenants/{tenant}/people/grouped.json")
}

/// The tenant's palettes: favourite palettes and one palette per album and place, aggregated from the
/// photos' analysed palettes (written next to the people file by the same library analysis).
pub fn library_palettes(tenant: &TenantId) -> String {
    format!("tenants/{tenant}/palettes/palettes.json")
}

pub fn result_image(tenant: &TenantId, request: &RequestId, index: u32) -> String {
    format!("tenants/{tenant}/results/{request}/{index}.png")
}

pub fn result_provenance(tenant: &TenantId, request: &RequestId, index: u32) -> String {
    format!("tenants/{tenant}/results/{request}/{index}.json")
}

pub fn results_prefix(tenant: &TenantId, request: &RequestId) -> String {
    format!("tenants/{tenant}/results/{request}/")
}

/// The index of a tenant's LoRAs (`reverie_shared::tenant_loras`).
pub fn tenant_loras(tenant: &TenantId) -> String {
    format!("tenants/{tenant}/adapters/loras.json")
}

/// A tenant's LoRA file, by its SHA-256.
pub fn tenant_lora_file(tenant: &TenantId, sha256: &str) -> String {
    format!("tenants/{tenant}/adapters/loras/{sha256}.safetensors")
}

pub fn model_prefix(name: &str, sha256: &str) -> String {
    format!("models/{name}/{sha256}/")
}

/// Cache key of an embedding (`kind` = face, style, palette) of one photo under one model version.
pub fn embedding_cache_key(
    tenant: &TenantId,
    kind: &str,
    model_hash: &str,
    photo: &PhotoId,
) -> String {
    format!("reverie:{tenant}:emb:{kind}:{model_hash}:{photo}")
}

pub fn tenant_cache_prefix(tenant: &TenantId) -> String {
    format!("reverie:{tenant}:")
}

pub fn job_cache_key(tenant: &TenantId, job: &str) -> String {
    format!("reverie:{tenant}:job:{job}")
}

/// The farm's own cache keys live under `reverie::`, which no tenant's prefix (`reverie:{tenant}:`, the
/// tenant id never empty) can be: a tenant named "worker" must neither be counted as a worker nor wipe the
/// heartbeats when it is forgotten.
const SYSTEM_CACHE_PREFIX: &str = "reverie::";

pub fn worker_heartbeat_key(worker: &str) -> String {
    format!("{SYSTEM_CACHE_PREFIX}worker:{worker}")
}

/// A scheduler's membership heartbeat on a sharded farm (`scheduler.shards` > 1): which scheduler it
/// is, where it answers, which shards it holds. It expires unless renewed.
pub fn scheduler_member_key(queue_prefix: &str, member: &str) -> String {
    format!("{SYSTEM_CACHE_PREFIX}scheduler:{queue_prefix}:{member}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_tenant_shares_a_namespace_with_the_system() {
        for name in [
            "worker", "reverie", "models", "tenants", "emb", "job", "_", "-",
        ] {
            let tenant = TenantId::new(name).unwrap();
            let cache = tenant_cache_prefix(&tenant);
            let heartbeats = worker_heartbeat_key("");
            assert!(
                !heartbeats.starts_with(&cache) && !cache.starts_with(&heartbeats),
                "tenant {name:?}: {cache} overlaps the heartbeats {heartbeats}"
            );
            assert!(!model_prefix("m", "0").starts_with(&tenant_prefix(&tenant)));
        }
    }
}
