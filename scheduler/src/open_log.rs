//! The open log: which requests still have unfinished jobs, kept durable so that a restarted scheduler
//! knows what to keep following, written in **group commits**.
//!
//! Accepting a request used to cost an empty marker object (`tenants/{t}/open/{r}`) and finishing it a
//! delete of that marker: two store calls per request, on the hot path of every job. Here the requests
//! accepted while one write is in flight are written together as one *segment*
//! (`scheduler/open/{epoch}-{seq}.json`, a list of tenant and request ids), and a segment is deleted
//! once every request in it finished. Unloaded, a segment holds one request and costs what the marker did;
//! under load one write and one delete serve everything accepted in the same few milliseconds.
//!
//! Segments name no more than tenant and request ids; a forgotten tenant's entries are removed from the
//! segments that hold them ([`OpenLog::forget`]). Markers written by earlier versions are read by
//! [`OpenLog::recover`] as one-entry segments and deleted the same way.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex as SyncMutex};

use async_trait::async_trait;
use bytes::Bytes;
use reverie_shared::ids::{RequestId, TenantId};
use reverie_shared::metrics;
use reverie_shared::ports::store::SharedStore;
use serde::{Deserialize, Serialize};

use crate::error::{from_json, Result, SchedulerError};
use crate::group_commit::{Commit, GroupCommit};
use crate::lock;

/// Where segments live in the object store.
pub const SEGMENT_PREFIX: &str = "scheduler/open/";
/// Where earlier versions kept one marker per open request (`tenants/{t}/open/{r}`).
const LEGACY_MARKERS_PREFIX: &str = "tenants/";

pub type OpenKey = (TenantId, RequestId);

/// One segment as stored. On a sharded farm each shard keeps its segments under a prefix of its own
/// (`scheduler/open/shard-{k}/`), so the scheduler that takes a shard over recovers that shard's
/// requests and no other.
#[derive(Debug, Serialize, Deserialize)]
struct Segment {
    requests: Vec<SegmentEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SegmentEntry {
    tenant: TenantId,
    request: RequestId,
}

#[derive(Default)]
struct State {
    /// Each durable segment (by object key) and the requests in it that are still open.
    segments: HashMap<String, BTreeSet<OpenKey>>,
    /// The segment that holds each open request.
    segment_of: HashMap<OpenKey, String>,
    next_sequence: u64,
}

/// The scheduler's durable set of open requests. Cheap to clone.
#[derive(Clone)]
pub struct OpenLog {
    commits: Arc<GroupCommit<OpenKey, Segments>>,
}

/// The segments in the store and which open requests each holds; writes a group commit as a segment.
struct Segments {
    store: SharedStore,
    /// Where this log's segments live (`SEGMENT_PREFIX`, or a shard's prefix below it).
    prefix: String,
    /// Distinguishes this process's segments from those of earlier runs (sequence numbers restart).
    epoch: String,
    state: SyncMutex<State>,
}

impl std::fmt::Debug for OpenLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenLog")
            .field("epoch", &self.segments().epoch)
            .finish()
    }
}

impl OpenLog {
    pub fn new(store: SharedStore) -> OpenLog {
        OpenLog::at(store, SEGMENT_PREFIX)
    }

    /// An open log keeping its segments under `prefix`.
    pub fn at(store: SharedStore, prefix: &str) -> OpenLog {
        let segments = Segments {
            store,
            prefix: prefix.to_string(),
            epoch: crate::group_commit::process_epoch(),
            state: SyncMutex::new(State::default()),
        };
        OpenLog {
            commits: GroupCommit::new(Arc::new(segments)),
        }
    }

    fn segments(&self) -> &Segments {
        self.commits.writer()
    }

    /// Makes a request durably open; returns once the segment holding it is written. A request that is
    /// already open returns at once.
    pub async fn add(&self, tenant: &TenantId, request: &RequestId) -> Result<()> {
        let key = (tenant.clone(), request.clone());
        if lock(&self.segments().state).segment_of.contains_key(&key) {
            return Ok(());
        }
        self.commits.submit(key).await.map_err(|detail| {
            SchedulerError::Unavailable(format!("open log not written: {detail}"))
        })
    }

    /// The request finished (or is gone): it leaves the log; its segment is deleted once empty.
    pub fn remove(&self, tenant: &TenantId, request: &RequestId) {
        let segments = self.segments();
        let key = (tenant.clone(), request.clone());
        let emptied = {
            let mut state = lock(&segments.state);
            match state.segment_of.remove(&key) {
                Some(segment) => detach(&mut state, &segment, &key),
                None => None,
            }
        };
        segments.delete_in_background(emptied.into_iter().collect());
    }

    /// Removes every entry of a forgotten tenant, rewriting the segments that also hold other tenants'
    /// requests so that no object keeps its ids.
    pub async fn forget(&self, tenant: &TenantId) -> Result<()> {
        let segments = self.segments();
        let (emptied, rewrites) = {
            let mut state = lock(&segments.state);
            let keys: Vec<OpenKey> = state
                .segment_of
                .keys()
                .filter(|(t, _)| t == tenant)
                .cloned()
                .collect();
            let mut emptied = Vec::new();
            let mut touched = BTreeSet::new();
            for key in keys {
                if let Some(segment) = state.segment_of.remove(&key) {
                    touched.insert(segment.clone());
                    emptied.extend(detach(&mut state, &segment, &key));
                }
            }
            let rewrites: Vec<(String, BTreeSet<OpenKey>)> = touched
                .into_iter()
                .filter_map(|s| state.segments.get(&s).map(|m| (s, m.clone())))
                .collect();
            (emptied, rewrites)
        };
        for segment in &emptied {
            segments.store.delete(segment).await?;
        }
        for (segment, members) in rewrites {
            segments.write(&segment, &members).await?;
        }
        Ok(())
    }

    /// Reads every segment (and marker of earlier versions) after a restart: the requests that may
    /// still be open. They are followed as open until [`OpenLog::remove`]d, so the caller removes the
    /// ones it finds finished or gone, and their segments are deleted as they empty out.
    pub async fn recover(&self) -> Result<Vec<OpenKey>> {
        let segments = self.segments();
        let mut found = Vec::new();
        for object in segments.store.list(&segments.prefix).await? {
            if self.is_other_shards(&object.key) {
                continue;
            }
            let bytes = match segments.store.get(&object.key).await {
                Ok(bytes) => bytes,
                // Deleted between the listing and the read: nothing in it is open any more.
                Err(error) if error.is_not_found() => continue,
                Err(error) => return Err(error.into()),
            };
            let segment: Segment = from_json(&object.key, &bytes)?;
            let members = segment
                .requests
                .into_iter()
                .map(|e| (e.tenant, e.request))
                .collect();
            found.push((object.key, members));
        }
        // Markers of versions before the open log: only a farm that does not shard had them.
        let legacy = if segments.prefix == SEGMENT_PREFIX {
            segments.store.list(LEGACY_MARKERS_PREFIX).await?
        } else {
            Vec::new()
        };
        for object in legacy {
            if let Some(key) = legacy_marker(&object.key) {
                found.push((object.key, BTreeSet::from([key])));
            }
        }
        let mut open = Vec::new();
        for (segment, members) in found {
            open.extend(members.iter().cloned());
            segments.register(segment, members);
        }
        open.sort();
        open.dedup();
        Ok(open)
    }

    /// Whether `key`, listed under this log's prefix, is a segment of a shard's log below it: the log
    /// of a farm that does not shard (`scheduler/open/`) leaves `scheduler/open/shard-{k}/` to the
    /// shards' owners.
    fn is_other_shards(&self, key: &str) -> bool {
        let rest = key.strip_prefix(&self.segments().prefix).unwrap_or(key);
        rest.contains('/')
    }

    /// Whether a request is durably open here (tests and diagnostics).
    pub fn is_open(&self, tenant: &TenantId, request: &RequestId) -> bool {
        lock(&self.segments().state)
            .segment_of
            .contains_key(&(tenant.clone(), request.clone()))
    }
}

#[async_trait]
impl Commit<OpenKey> for Segments {
    /// Writes one group commit as a new segment and follows it.
    async fn commit(&self, batch: Vec<OpenKey>) -> std::result::Result<(), String> {
        let segment = {
            let mut state = lock(&self.state);
            state.next_sequence += 1;
            format!(
                "{}{}-{:x}.json",
                self.prefix, self.epoch, state.next_sequence
            )
        };
        let members: BTreeSet<OpenKey> = batch.into_iter().collect();
        metrics::global()
            .commit_size
            .with_label_values(&["open"])
            .observe(members.len() as f64);
        self.write(&segment, &members)
            .await
            .map_err(|e| e.to_string())?;
        self.register(segment, members);
        Ok(())
    }
}

impl Segments {
    async fn write(&self, segment: &str, members: &BTreeSet<OpenKey>) -> Result<()> {
        let body = Segment {
            requests: members
                .iter()
                .map(|(tenant, request)| SegmentEntry {
                    tenant: tenant.clone(),
                    request: request.clone(),
                })
                .collect(),
        };
        let json = serde_json::to_vec(&body).map_err(|e| SchedulerError::Encode {
            what: "open log segment",
            detail: e.to_string(),
        })?;
        self.store.put(segment, Bytes::from(json)).await?;
        Ok(())
    }

    /// Notes a durable segment. A request found in an older segment too (it was added again) now
    /// belongs to the new one, so the old one can still empty out.
    fn register(&self, segment: String, members: BTreeSet<OpenKey>) {
        let emptied = {
            let mut state = lock(&self.state);
            let mut emptied = Vec::new();
            for key in &members {
                if let Some(previous) = state.segment_of.insert(key.clone(), segment.clone()) {
                    emptied.extend(detach(&mut state, &previous, key));
                }
            }
            state.segments.insert(segment, members);
            emptied
        };
        self.delete_in_background(emptied);
    }

    /// Deletes emptied segments in the background: a delete that fails leaves a segment whose requests
    /// are all finished, which the next recovery reads, finds finished and deletes.
    fn delete_in_background(&self, segments: Vec<String>) {
        for segment in segments {
            let store = self.store.clone();
            tokio::spawn(async move {
                if let Err(error) = store.delete(&segment).await {
                    tracing::warn!(%error, %segment, "could not delete an emptied open-log segment");
                }
            });
        }
    }
}

/// Takes `key` out of `segment`; returns the segment when that emptied it.
fn detach(state: &mut State, segment: &str, key: &OpenKey) -> Option<String> {
    let members = state.segments.get_mut(segment)?;
    members.remove(key);
    if members.is_empty() {
        state.segments.remove(segment);
        return Some(segment.to_string());
    }
    None
}

/// `tenants/{t}/open/{r}` → (t, r).
fn legacy_marker(key: &str) -> Option<OpenKey> {
    let mut parts = key.split('/');
    let (Some("tenants"), Some(tenant), Some("open"), Some(request), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    Some((TenantId::new(tenant).ok()?, RequestId::new(request).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reverie_shared::ports::store::LocalStore;

    fn local_store() -> (tempfile::TempDir, SharedStore) {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(LocalStore::open(dir.path()).unwrap());
        (dir, store)
    }

    fn key(tenant: &str, request: &str) -> OpenKey {
        (
            TenantId::new(tenant).unwrap(),
            RequestId::new(request).unwrap(),
        )
    }

    async fn segment_keys(store: &SharedStore) -> Vec<String> {
        let mut keys: Vec<String> = store
            .list(SEGMENT_PREFIX)
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        keys.sort();
        keys
    }

    /// Deletes run in spawned tasks: let them finish.
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    #[tokio::test]
    async fn requests_added_together_share_one_segment_which_goes_when_all_finish() {
        let (_dir, store) = local_store();
        let log = OpenLog::new(store.clone());
        let adds = (0..50).map(|i| {
            let log = log.clone();
            async move {
                let (t, r) = key("t1", &format!("r{i}"));
                log.add(&t, &r).await
            }
        });
        for result in futures::future::join_all(adds).await {
            result.unwrap();
        }
        let segments = segment_keys(&store).await;
        assert!(
            !segments.is_empty() && segments.len() < 50,
            "50 concurrent adds are group-committed: {segments:?}"
        );
        for i in 0..49 {
            let (t, r) = key("t1", &format!("r{i}"));
            log.remove(&t, &r);
        }
        settle().await;
        assert_eq!(segment_keys(&store).await.len(), 1, "r49's segment stays");
        let (t, r) = key("t1", "r49");
        log.remove(&t, &r);
        settle().await;
        assert!(segment_keys(&store).await.is_empty());
    }

    #[tokio::test]
    async fn a_restart_recovers_what_is_open_and_deletes_segments_as_they_empty() {
        let (_dir, store) = local_store();
        let before = OpenLog::new(store.clone());
        for (t, r) in [key("t1", "a"), key("t2", "b")] {
            before.add(&t, &r).await.unwrap();
        }
        // A marker of an earlier version is read too.
        store.put("tenants/t3/open/c", Bytes::new()).await.unwrap();
        let after = OpenLog::new(store.clone());
        let open = after.recover().await.unwrap();
        assert_eq!(open, vec![key("t1", "a"), key("t2", "b"), key("t3", "c")]);
        for (t, r) in &open {
            assert!(after.is_open(t, r));
            after.remove(t, r);
        }
        settle().await;
        assert!(segment_keys(&store).await.is_empty());
        assert_eq!(store.head("tenants/t3/open/c").await.unwrap(), None);
    }

    #[tokio::test]
    async fn adding_an_open_request_again_costs_nothing_and_a_re_add_moves_it() {
        let (_dir, store) = local_store();
        let log = OpenLog::new(store.clone());
        let (t, r) = key("t1", "a");
        log.add(&t, &r).await.unwrap();
        log.add(&t, &r).await.unwrap();
        assert_eq!(segment_keys(&store).await.len(), 1);
        // Recovered by a new process, then added again (an adopted duplicate): one segment remains.
        let again = OpenLog::new(store.clone());
        again.recover().await.unwrap();
        again.remove(&t, &r);
        again.add(&t, &r).await.unwrap();
        settle().await;
        assert_eq!(segment_keys(&store).await.len(), 1);
    }

    #[tokio::test]
    async fn forgetting_a_tenant_leaves_no_segment_naming_it() {
        let (_dir, store) = local_store();
        let log = OpenLog::new(store.clone());
        let adds = [key("gone", "a"), key("kept", "b")].map(|(t, r)| {
            let log = log.clone();
            async move { log.add(&t, &r).await }
        });
        for result in futures::future::join_all(adds).await {
            result.unwrap();
        }
        log.forget(&TenantId::new("gone").unwrap()).await.unwrap();
        settle().await;
        for segment in segment_keys(&store).await {
            let text = String::from_utf8(store.get(&segment).await.unwrap().to_vec()).unwrap();
            assert!(!text.contains("\"gone\""), "{segment}: {text}");
        }
        let recovered = OpenLog::new(store.clone()).recover().await.unwrap();
        assert_eq!(recovered, vec![key("kept", "b")]);
    }
}
