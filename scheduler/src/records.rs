//! Request and job records: the lifecycle of everything the scheduler accepted.
//!
//! The durable record of a request (with its jobs and plan) is `tenants/{t}/requests/{r}.json` in the
//! object store; the cache holds a copy at `reverie:{t}:request:{r}` and one entry per job at
//! [`keys::job_cache_key`] (what workers and dashboards read). While a request has unfinished jobs it is
//! in the [`OpenLog`] (group-committed segments under `scheduler/open/`): a restarted scheduler reads the
//! log to find the work it must keep tracking (and the jobs it must still publish).

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use reverie_shared::ids::{JobId, RequestId, TenantId};
use reverie_shared::jobs::GenerateJob;
use reverie_shared::keys;
use reverie_shared::ports::cache::SharedCache;
use reverie_shared::ports::store::SharedStore;
use serde::{Deserialize, Serialize};

use crate::error::{from_json, to_json, Result};
use crate::open_log::OpenLog;
use crate::plan::Plan;
pub use crate::provenance::ProvenanceEntry;
use crate::provenance::ProvenanceIndex;

/// Finished records stay in the cache this long; the store keeps them until the tenant is forgotten.
const FINISHED_CACHE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }

    pub fn label(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Ingress {
    Amqp,
    Http,
}

impl Ingress {
    pub fn label(self) -> &'static str {
        match self {
            Ingress::Amqp => "amqp",
            Ingress::Http => "http",
        }
    }
}

/// Where AMQP replies for a request go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyRoute {
    pub reply_to: String,
    pub correlation_id: Option<String>,
    /// The requester asked for the final reply only (`x-reverie-replies: final`): no `accepted`, no
    /// `progress`. Absent in records of earlier versions: every reply.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub final_only: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub job: JobId,
    pub index: u32,
    pub state: JobState,
    /// Highest attempt a worker reported.
    pub attempts: u32,
    /// Whether the broker confirmed the job's message (false while it waits in the fairness feeder).
    pub published: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub worker: Option<String>,
    pub outputs: Vec<String>,
    pub error: Option<String>,
    pub render_ms: Option<u64>,
    /// The identity check of the output (pictures with people; absent in earlier records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<reverie_shared::jobs::IdentityReport>,
    /// What the worker is told: fixed by the plan so a retry renders the same image.
    pub spec: GenerateJob,
}

impl JobRecord {
    pub fn new(spec: GenerateJob, now: DateTime<Utc>) -> JobRecord {
        JobRecord {
            job: spec.job.clone(),
            index: spec.index,
            state: JobState::Queued,
            attempts: 0,
            published: false,
            created_at: now,
            updated_at: now,
            started_at: None,
            finished_at: None,
            worker: None,
            outputs: Vec::new(),
            error: None,
            render_ms: None,
            identity: None,
            spec,
        }
    }

    /// Moves to `state` unless the job already finished (late or duplicate events change nothing).
    /// Returns whether anything changed.
    pub fn transition(&mut self, state: JobState, now: DateTime<Utc>) -> bool {
        if self.state.is_final() || self.state == state {
            return false;
        }
        self.state = state;
        self.updated_at = now;
        if state == JobState::Running && self.started_at.is_none() {
            self.started_at = Some(now);
        }
        if state.is_final() {
            self.finished_at = Some(now);
        }
        true
    }
}

/// The cache entry of one job: what a worker needs to know (cancelled or not) and a status summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSummary {
    pub job: JobId,
    pub request: RequestId,
    pub state: JobState,
    pub attempts: u32,
    pub updated_at: DateTime<Utc>,
    pub outputs: Vec<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub request: RequestId,
    pub tenant: TenantId,
    pub ingress: Ingress,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The request as received (validated), for explanation and refinement.
    pub prompt: String,
    pub body: serde_json::Value,
    pub parent: Option<RequestId>,
    pub reply: Option<ReplyRoute>,
    pub plan: Plan,
    pub jobs: Vec<JobRecord>,
    /// Set once the final reply (done / failed / cancelled) was sent, so it is sent once.
    #[serde(default)]
    pub final_reply_sent: bool,
}

impl RequestRecord {
    /// The request's state: the least finished of its jobs, and once all are finished, succeeded when
    /// all succeeded, cancelled when any was cancelled and none failed, failed otherwise.
    pub fn state(&self) -> JobState {
        let states: Vec<JobState> = self.jobs.iter().map(|j| j.state).collect();
        if states.contains(&JobState::Running) {
            JobState::Running
        } else if states.contains(&JobState::Queued) {
            JobState::Queued
        } else if states.iter().all(|s| *s == JobState::Succeeded) {
            JobState::Succeeded
        } else if states.contains(&JobState::Failed) {
            JobState::Failed
        } else {
            JobState::Cancelled
        }
    }

    pub fn is_finished(&self) -> bool {
        self.jobs.iter().all(|j| j.state.is_final())
    }

    pub fn job_mut(&mut self, job: &JobId) -> Option<&mut JobRecord> {
        self.jobs.iter_mut().find(|j| &j.job == job)
    }

    pub fn unfinished_jobs(&self) -> usize {
        self.jobs.iter().filter(|j| !j.state.is_final()).count()
    }
}

pub fn request_key(tenant: &TenantId, request: &RequestId) -> String {
    format!("{}requests/{request}.json", keys::tenant_prefix(tenant))
}

fn request_cache_key(tenant: &TenantId, request: &RequestId) -> String {
    format!("{}request:{request}", keys::tenant_cache_prefix(tenant))
}

/// The request a job belongs to: job ids are `{request}.{index}`.
pub fn request_of(job: &JobId) -> Option<RequestId> {
    let (request, index) = job.as_str().rsplit_once('.')?;
    index.parse::<u32>().ok()?;
    RequestId::new(request).ok()
}

#[derive(Debug, Clone)]
pub struct Records {
    store: SharedStore,
    cache: SharedCache,
    open_log: OpenLog,
    provenance: ProvenanceIndex,
}

impl Records {
    pub fn new(store: SharedStore, cache: SharedCache) -> Records {
        Records::with_open_log(store, cache, crate::open_log::SEGMENT_PREFIX)
    }

    /// Records whose open log keeps its segments under `open_log_prefix` (one shard's).
    pub fn with_open_log(store: SharedStore, cache: SharedCache, open_log_prefix: &str) -> Records {
        let open_log = OpenLog::at(store.clone(), open_log_prefix);
        let provenance = ProvenanceIndex::new(store.clone());
        Records {
            store,
            cache,
            open_log,
            provenance,
        }
    }

    /// The durable set of open requests.
    pub fn open_log(&self) -> &OpenLog {
        &self.open_log
    }

    /// Reads a request record through the cache; `None` when it does not exist for this tenant.
    pub async fn load(
        &self,
        tenant: &TenantId,
        request: &RequestId,
    ) -> Result<Option<RequestRecord>> {
        if let Some(record) = self.load_cached(tenant, request).await {
            return Ok(Some(record));
        }
        self.load_stored(tenant, request).await
    }

    /// The cache copy of a record, if the cache has one (a miss says nothing about the store).
    pub async fn load_cached(
        &self,
        tenant: &TenantId,
        request: &RequestId,
    ) -> Option<RequestRecord> {
        match self.cache.get(&request_cache_key(tenant, request)).await {
            Ok(Some(bytes)) => serde_json::from_slice::<RequestRecord>(&bytes).ok(),
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, request = %request, "record cache read failed");
                None
            }
        }
    }

    /// The durable record, read from the store alone.
    pub async fn load_stored(
        &self,
        tenant: &TenantId,
        request: &RequestId,
    ) -> Result<Option<RequestRecord>> {
        let key = request_key(tenant, request);
        match self.store.get(&key).await {
            Ok(bytes) => Ok(Some(from_json(&key, &bytes)?)),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Writes the durable record first, then its place in the open log (kept while unfinished, removed
    /// once finished), then the cache copies. The general write, for paths off the hot one.
    pub async fn save(&self, record: &RequestRecord) -> Result<()> {
        let bytes = self.put_record(record).await?;
        if record.is_finished() {
            self.open_log.remove(&record.tenant, &record.request);
        } else {
            self.open_log.add(&record.tenant, &record.request).await?;
        }
        self.write_cache(record, bytes).await;
        Ok(())
    }

    /// The first write of a newly accepted request: its record, written only if no record of that id
    /// exists (the durable idempotency check, without a read first), and its open-log entry, side by side
    /// (an entry without a record is skipped by recovery, so neither order needs to come first).
    /// Returns `false` when a record of that id already existed; it was left as it was.
    pub async fn save_new(&self, record: &RequestRecord) -> Result<bool> {
        let bytes = Bytes::from(to_json("request record", record)?);
        let key = request_key(&record.tenant, &record.request);
        let (created, ()) = tokio::try_join!(
            async { Ok(self.store.put_if_absent(&key, bytes.clone()).await?) },
            self.open_log.add(&record.tenant, &record.request),
        )?;
        if created {
            self.write_cache(record, bytes).await;
        }
        Ok(created)
    }

    /// An update of a record the scheduler follows: one durable write. The open log is left alone: the
    /// request is in it while open, and a finished request leaves it afterwards with
    /// [`Records::mark_closed`] (recovery skips finished records still in the log).
    pub async fn save_update(&self, record: &RequestRecord) -> Result<()> {
        let bytes = self.put_record(record).await?;
        self.write_cache(record, bytes).await;
        Ok(())
    }

    /// Writes only the cache copies: for changes that may be lost in a crash (a job started running).
    pub async fn save_cached(&self, record: &RequestRecord) -> Result<()> {
        let bytes = Bytes::from(to_json("request record", record)?);
        self.write_cache(record, bytes).await;
        Ok(())
    }

    /// Takes a finished (or vanished) request out of the open log.
    pub fn mark_closed(&self, tenant: &TenantId, request: &RequestId) {
        self.open_log.remove(tenant, request);
    }

    /// Puts a request in the open log (adopting one whose first save was cut short).
    pub async fn mark_open(&self, tenant: &TenantId, request: &RequestId) -> Result<()> {
        self.open_log.add(tenant, request).await
    }

    async fn put_record(&self, record: &RequestRecord) -> Result<Bytes> {
        let bytes = Bytes::from(to_json("request record", record)?);
        self.store
            .put(&request_key(&record.tenant, &record.request), bytes.clone())
            .await?;
        Ok(bytes)
    }

    /// The cache copies of a record (the request and one summary per job). The cache is a copy: when it
    /// is away, readers fall back to the store, so a failed write is logged, not returned.
    async fn write_cache(&self, record: &RequestRecord, bytes: Bytes) {
        let ttl = record.is_finished().then_some(FINISHED_CACHE_TTL);
        let mut entries = vec![(request_cache_key(&record.tenant, &record.request), bytes)];
        for job in &record.jobs {
            let summary = JobSummary {
                job: job.job.clone(),
                request: record.request.clone(),
                state: job.state,
                attempts: job.attempts,
                updated_at: job.updated_at,
                outputs: job.outputs.clone(),
                error: job.error.clone(),
            };
            match to_json("job summary", &summary) {
                Ok(json) => entries.push((
                    keys::job_cache_key(&record.tenant, job.job.as_str()),
                    Bytes::from(json),
                )),
                Err(error) => tracing::warn!(%error, job = %job.job, "job summary not encoded"),
            }
        }
        if let Err(error) = self.cache.set_many(&entries, ttl).await {
            tracing::warn!(%error, request = %record.request, "record cache write failed");
        }
    }

    /// Every request that may have unfinished jobs, for recovery after a restart (the caller takes the
    /// finished and vanished ones out with [`Records::mark_closed`]).
    pub async fn open_requests(&self) -> Result<Vec<(TenantId, RequestId)>> {
        self.open_log.recover().await
    }

    /// Records that an output was made from a photo (provenance listing); returns once it is durable.
    /// Entries recorded at the same time are group-committed: one object per photo and commit.
    pub async fn record_provenance(
        &self,
        tenant: &TenantId,
        photo: &str,
        entry: &ProvenanceEntry,
    ) -> Result<()> {
        self.provenance.record(tenant, photo, entry).await
    }

    /// The outputs made from a photo, oldest first; an output recorded twice (a redelivered result)
    /// is listed once.
    pub async fn outputs_of_photo(
        &self,
        tenant: &TenantId,
        photo: &str,
    ) -> Result<Vec<ProvenanceEntry>> {
        self.provenance.outputs_of_photo(tenant, photo).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_lead_back_to_requests() {
        let request = RequestId::new("req.with.dots").unwrap();
        let job = JobId::for_request(&request, 7);
        assert_eq!(request_of(&job), Some(request));
        assert_eq!(request_of(&JobId::new("nodot").unwrap()), None);
    }
}
