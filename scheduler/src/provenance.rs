//! The provenance index: which outputs each of a tenant's photos went into (`GET
//! /v1/photos/{photo}/outputs`), under `tenants/{t}/provenance/{photo}/`. Entries recorded together are
//! group-committed ([`crate::group_commit`]): one object per photo and commit, `{"entries": [...]}`. A
//! listing reads them with the one-entry objects of earlier versions and lists a job once even if a
//! redelivered result recorded it twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use reverie_shared::ids::{JobId, RequestId, TenantId};
use reverie_shared::keys;
use reverie_shared::metrics;
use reverie_shared::ports::store::SharedStore;
use serde::{Deserialize, Serialize};

use crate::error::{from_json, to_json, Result, SchedulerError};
use crate::group_commit::{process_epoch, Commit, GroupCommit};

/// The index of one store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ProvenanceIndex {
    store: SharedStore,
    commits: Arc<GroupCommit<ProvenanceItem, Writer>>,
}

impl ProvenanceIndex {
    pub fn new(store: SharedStore) -> ProvenanceIndex {
        let commits = GroupCommit::new(Arc::new(Writer {
            store: store.clone(),
            epoch: process_epoch(),
            sequence: AtomicU64::new(0),
        }));
        ProvenanceIndex { store, commits }
    }

    /// Records that an output was made from a photo; returns once it is durable. Entries recorded at
    /// the same time are group-committed: one object per photo and commit.
    pub async fn record(
        &self,
        tenant: &TenantId,
        photo: &str,
        entry: &ProvenanceEntry,
    ) -> Result<()> {
        let item = ProvenanceItem {
            tenant: tenant.clone(),
            photo: photo.to_string(),
            entry: entry.clone(),
        };
        self.commits.submit(item).await.map_err(|detail| {
            SchedulerError::Unavailable(format!("provenance index not written: {detail}"))
        })
    }

    /// The outputs made from a photo, oldest first; an output recorded twice (a redelivered result)
    /// is listed once.
    pub async fn outputs_of_photo(
        &self,
        tenant: &TenantId,
        photo: &str,
    ) -> Result<Vec<ProvenanceEntry>> {
        let mut by_job: HashMap<JobId, ProvenanceEntry> = HashMap::new();
        for object in self.store.list(&provenance_prefix(tenant, photo)).await? {
            let bytes = self.store.get(&object.key).await?;
            let file: ProvenanceFile = from_json(&object.key, &bytes)?;
            for entry in file.into_entries() {
                by_job.insert(entry.job.clone(), entry);
            }
        }
        let mut entries: Vec<ProvenanceEntry> = by_job.into_values().collect();
        entries.sort_by(|a, b| (&a.created_at, &a.job).cmp(&(&b.created_at, &b.job)));
        Ok(entries)
    }
}

fn provenance_prefix(tenant: &TenantId, photo: &str) -> String {
    format!("{}provenance/{photo}/", keys::tenant_prefix(tenant))
}

/// The provenance index's writer: entries of many results, committed together.
struct Writer {
    store: SharedStore,
    epoch: String,
    sequence: AtomicU64,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProvenanceWriter")
            .field("epoch", &self.epoch)
            .finish()
    }
}

/// One entry waiting for a commit, with where it is filed.
struct ProvenanceItem {
    tenant: TenantId,
    photo: String,
    entry: ProvenanceEntry,
}

/// A provenance object: `{"entries": [...]}` as written now, or the single entry of earlier versions
/// (`tenants/{t}/provenance/{photo}/{job}.json`).
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum ProvenanceFile {
    Many { entries: Vec<ProvenanceEntry> },
    One(ProvenanceEntry),
}

impl ProvenanceFile {
    fn into_entries(self) -> Vec<ProvenanceEntry> {
        match self {
            ProvenanceFile::Many { entries } => entries,
            ProvenanceFile::One(entry) => vec![entry],
        }
    }
}

#[async_trait::async_trait]
impl Commit<ProvenanceItem> for Writer {
    /// Writes one commit: an object per (tenant, photo), side by side.
    async fn commit(&self, batch: Vec<ProvenanceItem>) -> std::result::Result<(), String> {
        metrics::global()
            .commit_size
            .with_label_values(&["provenance"])
            .observe(batch.len() as f64);
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        let mut files: BTreeMap<(TenantId, String), Vec<ProvenanceEntry>> = BTreeMap::new();
        for item in batch {
            files
                .entry((item.tenant, item.photo))
                .or_default()
                .push(item.entry);
        }
        let writes = files.into_iter().map(|((tenant, photo), entries)| {
            let key = format!(
                "{}{}-{sequence:x}.json",
                provenance_prefix(&tenant, &photo),
                self.epoch
            );
            async move {
                let body = to_json("provenance entries", &ProvenanceFile::Many { entries })?;
                self.store.put(&key, Bytes::from(body)).await?;
                Ok::<(), SchedulerError>(())
            }
        });
        futures::future::try_join_all(writes)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// One output made from a photo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProvenanceEntry {
    #[schema(value_type = String)]
    pub request: RequestId,
    #[schema(value_type = String)]
    pub job: JobId,
    pub outputs: Vec<String>,
    pub created_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(job: &str, created_at: &str) -> ProvenanceEntry {
        ProvenanceEntry {
            request: RequestId::new("r1").unwrap(),
            job: JobId::new(job).unwrap(),
            outputs: vec![format!("tenants/t1/results/r1/{job}.png")],
            created_at: created_at.to_string(),
        }
    }

    #[tokio::test]
    async fn provenance_entries_recorded_together_share_objects_and_read_back_once_each() {
        use reverie_shared::ports::store::LocalStore;
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(LocalStore::open(dir.path()).unwrap());
        let index = ProvenanceIndex::new(store.clone());
        let tenant = TenantId::new("t1").unwrap();
        // An entry of an earlier version, one object per job.
        let old = entry("r1.0", "2026-01-01T00:00:00Z");
        store
            .put(
                "tenants/t1/provenance/p1/r1.0.json",
                Bytes::from(serde_json::to_vec(&old).unwrap()),
            )
            .await
            .unwrap();
        let writes = (1..=40).map(|i| {
            let (index, tenant) = (index.clone(), tenant.clone());
            async move {
                let e = entry(&format!("r1.{i}"), &format!("2026-01-02T00:00:{:02}Z", i));
                index.record(&tenant, "p1", &e).await
            }
        });
        for result in futures::future::join_all(writes).await {
            result.unwrap();
        }
        // A redelivered result records its entry again: still listed once.
        let again = entry("r1.7", "2026-01-02T00:00:07Z");
        index.record(&tenant, "p1", &again).await.unwrap();
        let objects = store.list("tenants/t1/provenance/p1/").await.unwrap();
        assert!(
            objects.len() < 41,
            "40 concurrent entries are group-committed: {} objects",
            objects.len()
        );
        let listed = index.outputs_of_photo(&tenant, "p1").await.unwrap();
        assert_eq!(listed.len(), 41);
        assert_eq!(
            listed[0], old,
            "oldest first, earlier versions' entries included"
        );
        assert!(index
            .outputs_of_photo(&tenant, "p2")
            .await
            .unwrap()
            .is_empty());
    }
}
