//! Settling: what happens to a request's jobs after dispatch, into its record. A worker's event is
//! applied to a copy of the record (the one conversion of an event into record state), saved — a
//! result with its provenance beside it — and only then does the followed record change; the
//! requester hears of it through the reply router. A request whose last job settles gets its album
//! manifest, its final reply, and leaves the open log. Cancellation settles jobs the same way.

use std::sync::Arc;

use chrono::Utc;
use reverie_shared::ids::{JobId, RequestId, TenantId};
use reverie_shared::jobs::JobEvent;
use reverie_shared::keys;
use reverie_shared::metrics;
use reverie_shared::ports::store::SharedStore;
use tracing::Instrument;

use super::dispatch::Dispatch;
use super::state::{OpenRequests, Quotas};
use super::streams::ReplyRouter;
use crate::error::Result;
use crate::records::{JobRecord, JobState, ProvenanceEntry, Records, RequestRecord};
use crate::replies::{self, Reply};
use crate::tenants::Tenants;

pub(crate) struct Settler {
    store: SharedStore,
    records: Records,
    tenants: Tenants,
    open: Arc<OpenRequests>,
    quotas: Arc<Quotas>,
    dispatch: Arc<Dispatch>,
    replies: Arc<ReplyRouter>,
}

impl Settler {
    pub fn new(
        store: SharedStore,
        records: Records,
        tenants: Tenants,
        open: Arc<OpenRequests>,
        quotas: Arc<Quotas>,
        dispatch: Arc<Dispatch>,
        replies: Arc<ReplyRouter>,
    ) -> Settler {
        Settler {
            store,
            records,
            tenants,
            open,
            quotas,
            dispatch,
            replies,
        }
    }

    /// Applies a worker's event to its job's record and relays it to the requester.
    pub async fn handle_event(&self, event: JobEvent) -> Result<()> {
        let (job, tenant) = (event.job().clone(), event.tenant().clone());
        let span = tracing::info_span!("event", job = %job, tenant = %tenant);
        self.settle_event(event, job, tenant).instrument(span).await
    }

    async fn settle_event(&self, event: JobEvent, job: JobId, tenant: TenantId) -> Result<()> {
        let Some(request) = crate::records::request_of(&job) else {
            // Library analysis jobs (`analyse-{shard}`, published by imports) belong to no request:
            // their outcome is the stored analysis, which `people list` reads.
            if job.as_str().starts_with("analyse-") {
                tracing::debug!("library analysis event");
            } else {
                tracing::warn!("event for a job id that names no request; ignored");
            }
            return Ok(());
        };
        let Some(entry) = self.open.get(&tenant, &request) else {
            return self.stray_event(&event, &tenant, &request).await;
        };
        if self.tenants.get(&tenant).await?.is_none() {
            // Forgotten (possibly by another process): stop following it and write nothing back.
            entry.lock().await.retired = true;
            self.open.close(&tenant, &request);
            self.dispatch.forget(&tenant);
            self.quotas.forget(&tenant);
            return self.stray_event(&event, &tenant, &request).await;
        }
        let mut open = entry.lock().await;
        if open.retired {
            drop(open);
            return self.stray_event(&event, &tenant, &request).await;
        }
        // The event is applied to a copy, which replaces the followed record only once it is saved: a
        // failed save leaves the record as it was, so the redelivered event applies in full.
        let mut next = open.record.clone();
        let Some(change) = apply_event(&mut next, &event, &job, Utc::now()) else {
            if let JobEvent::Succeeded { outputs, .. } = &event {
                if next
                    .job_mut(&job)
                    .is_some_and(|j| j.state == JobState::Cancelled)
                {
                    // Work that finished after it was cancelled is not delivered; its outputs go.
                    delete_outputs(&self.store, &tenant, outputs).await;
                }
            }
            return Ok(());
        };
        let finishing = next.is_finished() && !next.final_reply_sent;
        if finishing {
            next.final_reply_sent = true;
            if let Some(run) = next.plan.album_run.clone() {
                if let Err(error) = crate::album::finish_album(&*self.store, &next, &run).await {
                    // An outage is retried (the event is requeued); a refusal would be refused again on
                    // every redelivery, so the run finishes without its manifest and contact sheet.
                    if !error.is_permanent() {
                        return Err(error);
                    }
                    tracing::error!(%error, album = %run.to, "the store refuses the album's manifest and contact sheet; the run finishes without them");
                }
            }
        }
        let succeeded = matches!(event, JobEvent::Succeeded { .. }) && change.finished_job;
        match change.write {
            Write::None => {}
            Write::Cache => self.records.save_cached(&next).await?,
            Write::Durable if succeeded => {
                // The provenance entries and the record go side by side: both are idempotent puts, and
                // the event is acked only when both stand.
                tokio::try_join!(
                    self.write_provenance(&next, &job),
                    self.records.save_update(&next),
                )?;
            }
            Write::Durable => self.records.save_update(&next).await?,
        }
        open.record = next;
        if change.finished_job {
            self.job_finished(&open.record, &job, &event);
        }
        let final_reply = if finishing {
            open.retired = true;
            self.open.close(&tenant, &request);
            if open.record.plan.album_run.is_some() {
                metrics::global().batch_runs_active.dec();
            }
            Some(replies::final_reply(&open.record))
        } else {
            None
        };
        let route = open.record.reply.clone();
        drop(open);
        if let Some(reply) = change.relay {
            self.replies
                .relay(&tenant, &request, route.as_ref(), &reply);
        }
        if let Some(reply) = final_reply {
            self.replies
                .relay(&tenant, &request, route.as_ref(), &reply);
            // Last step: until it leaves the open log, recovery finds the record finished and skips it.
            self.records.mark_closed(&tenant, &request);
        }
        Ok(())
    }

    /// Bookkeeping once a job's final state is saved: metrics, the tenant's quota, the fairness feeder.
    fn job_finished(&self, record: &RequestRecord, job: &JobId, event: &JobEvent) {
        let succeeded = matches!(event, JobEvent::Succeeded { .. });
        metrics::global()
            .jobs
            .with_label_values(&["generate", if succeeded { "succeeded" } else { "failed" }])
            .inc();
        let in_album_run = record
            .jobs
            .iter()
            .any(|j| &j.job == job && j.spec.batch_run.is_some());
        if in_album_run {
            metrics::global()
                .batch_run_photos
                .with_label_values(&[if succeeded { "done" } else { "failed" }])
                .inc();
        }
        self.quotas.release(&record.tenant, 1);
        self.dispatch.finished(&record.tenant, job);
    }

    /// The provenance of a job's result: one entry per photo it used (the one conversion of a job
    /// record into provenance).
    async fn write_provenance(&self, record: &RequestRecord, job: &JobId) -> Result<()> {
        let Some(record_job) = record.jobs.iter().find(|j| &j.job == job) else {
            return Ok(());
        };
        let entry = ProvenanceEntry {
            request: record.request.clone(),
            job: job.clone(),
            outputs: record_job.outputs.clone(),
            created_at: Utc::now().to_rfc3339(),
        };
        let writes = record_job.spec.references.iter().map(|reference| {
            self.records
                .record_provenance(&record.tenant, reference.photo.as_str(), &entry)
        });
        futures::future::try_join_all(writes).await?;
        Ok(())
    }

    /// An event for a request the scheduler is not following: a duplicate after the end, or work of a
    /// tenant that was forgotten (whose late outputs are deleted so nothing of it remains).
    async fn stray_event(
        &self,
        event: &JobEvent,
        tenant: &TenantId,
        request: &RequestId,
    ) -> Result<()> {
        let JobEvent::Succeeded { outputs, job, .. } = event else {
            return Ok(());
        };
        let record = self.records.load(tenant, request).await?;
        let tenant_exists = self.tenants.get(tenant).await?.is_some();
        let cancelled = record
            .as_ref()
            .and_then(|r| r.jobs.iter().find(|j| &j.job == job))
            .is_some_and(|j| j.state == JobState::Cancelled);
        if !tenant_exists || cancelled {
            delete_outputs(&self.store, tenant, outputs).await;
        }
        Ok(())
    }

    /// Cancels the unfinished jobs of a request for which `which` says so; returns how many.
    pub async fn cancel_jobs(
        &self,
        tenant: &TenantId,
        request: &RequestId,
        reason: &str,
        which: impl Fn(&JobRecord) -> bool,
    ) -> Result<u64> {
        let Some(entry) = self.open.get(tenant, request) else {
            return Ok(0);
        };
        let mut open = entry.lock().await;
        if open.retired {
            return Ok(0);
        }
        // Changed on a copy that replaces the record once saved (see `settle_event`).
        let now = Utc::now();
        let mut next = open.record.clone();
        let mut cancelled = Vec::new();
        for job in next.jobs.iter_mut() {
            if !job.state.is_final() && which(job) {
                job.transition(JobState::Cancelled, now);
                job.error = Some(reason.to_string());
                cancelled.push(job.job.clone());
            }
        }
        if cancelled.is_empty() {
            return Ok(0);
        }
        let finishing = next.is_finished() && !next.final_reply_sent;
        next.final_reply_sent |= finishing;
        next.updated_at = now;
        self.records.save(&next).await?;
        open.record = next;
        self.dispatch.cancelled(tenant, &cancelled);
        self.quotas.release(tenant, cancelled.len());
        metrics::global()
            .jobs
            .with_label_values(&["generate", "cancelled"])
            .inc_by(cancelled.len() as u64);
        let final_reply = finishing.then(|| {
            open.retired = true;
            self.open.close(tenant, request);
            replies::final_reply(&open.record)
        });
        let route = open.record.reply.clone();
        drop(open);
        if let Some(reply) = final_reply {
            self.replies.relay(tenant, request, route.as_ref(), &reply);
        }
        Ok(cancelled.len() as u64)
    }
}

/// How far the change an event made must be written before the event is acked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    None,
    /// Only the cache copies: a job started running. A crash loses that state, which the job's next
    /// event (its result) brings back; the durable record is not rewritten for it.
    Cache,
    Durable,
}

/// What applying an event changed.
#[derive(Debug)]
struct Change {
    relay: Option<Reply>,
    write: Write,
    /// The job reached a final state with this event.
    finished_job: bool,
}

/// Applies a worker's event to `record`; `None` when it changes nothing (a late or duplicate event, or
/// an event for a job the request does not have).
fn apply_event(
    record: &mut RequestRecord,
    event: &JobEvent,
    job: &JobId,
    now: chrono::DateTime<Utc>,
) -> Option<Change> {
    let Some(record_job) = record.job_mut(job) else {
        tracing::warn!("event for a job the request does not have; ignored");
        return None;
    };
    match event {
        JobEvent::Started {
            worker, attempt, ..
        } => {
            if record_job.state.is_final() {
                return None;
            }
            record_job.attempts = record_job.attempts.max(*attempt);
            record_job.worker = Some(worker.clone());
            record_job.transition(JobState::Running, now);
            Some(Change {
                relay: Some(replies::progress(job, None, None)),
                write: Write::Cache,
                finished_job: false,
            })
        }
        JobEvent::Progress {
            step,
            total,
            preview_png,
            ..
        } => {
            if record_job.state.is_final() {
                return None;
            }
            let step = Some((*step, *total));
            Some(Change {
                relay: Some(replies::progress(job, step, preview_png.as_deref())),
                write: Write::None,
                finished_job: false,
            })
        }
        JobEvent::Succeeded {
            outputs,
            render_ms,
            identity,
            ..
        } => {
            // A duplicate result, or one for a cancelled job, changes nothing.
            if !record_job.transition(JobState::Succeeded, now) {
                return None;
            }
            record_job.outputs = outputs.clone();
            record_job.render_ms = Some(*render_ms);
            record_job.identity = identity.clone();
            Some(Change {
                relay: None,
                write: Write::Durable,
                finished_job: true,
            })
        }
        JobEvent::Failed {
            reason,
            retryable,
            attempt,
            ..
        } => {
            if record_job.state.is_final() {
                return None;
            }
            record_job.attempts = record_job.attempts.max(*attempt);
            record_job.error = Some(reason.clone());
            if *retryable {
                // The worker republishes it with the next attempt; it is queued again.
                record_job.state = JobState::Queued;
                record_job.updated_at = now;
            } else {
                record_job.transition(JobState::Failed, now);
            }
            Some(Change {
                relay: None,
                write: Write::Durable,
                finished_job: !*retryable,
            })
        }
    }
}

/// Deletes output objects a worker wrote, but only inside the tenant's own prefix.
async fn delete_outputs(store: &SharedStore, tenant: &TenantId, outputs: &[String]) {
    let prefix = keys::tenant_prefix(tenant);
    for key in outputs.iter().filter(|k| k.starts_with(&prefix)) {
        if let Err(error) = store.delete(key).await {
            tracing::warn!(%error, key, "could not delete an undelivered output");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testing;
    use reverie_shared::jobs::Priority;

    fn succeeded(job: &JobId, tenant: &TenantId, output: &str) -> JobEvent {
        JobEvent::Succeeded {
            job: job.clone(),
            tenant: tenant.clone(),
            outputs: vec![output.to_string()],
            render_ms: 5,
            identity: None,
        }
    }

    #[test]
    fn an_event_changes_a_record_once_and_a_retryable_failure_queues_the_job_again() {
        let mut record = testing::record("t1", "r1", 1, Priority::Interactive);
        let (tenant, job) = (record.tenant.clone(), record.jobs[0].job.clone());
        let now = Utc::now();
        let failed = JobEvent::Failed {
            job: job.clone(),
            tenant: tenant.clone(),
            reason: "renderer error".into(),
            retryable: true,
            attempt: 1,
        };
        let change = apply_event(&mut record, &failed, &job, now).unwrap();
        assert_eq!((change.write, change.finished_job), (Write::Durable, false));
        assert_eq!(record.jobs[0].state, JobState::Queued);
        let result = succeeded(&job, &tenant, "tenants/t1/results/r1/0.png");
        let change = apply_event(&mut record, &result, &job, now).unwrap();
        assert!(change.finished_job && record.is_finished());
        assert!(
            apply_event(&mut record, &result, &job, now).is_none(),
            "a duplicate result changes nothing"
        );
    }

    #[tokio::test]
    async fn a_last_result_settles_the_request_and_its_final_reply_reaches_subscribers() {
        let embedded = testing::embedded().await;
        let open = Arc::new(OpenRequests::default());
        let quotas = Arc::new(Quotas::default());
        let replies = Arc::new(ReplyRouter::new(embedded.backends.queue.clone()));
        let dispatch = Arc::new(Dispatch::new(
            embedded.backends.queue.clone(),
            embedded.queues.clone(),
            embedded.queues.shard(0, 1),
            embedded.records.clone(),
            open.clone(),
            1,
        ));
        let tenants = Tenants::new(
            embedded.backends.store.clone(),
            embedded.backends.cache.clone(),
        );
        let settler = Settler::new(
            embedded.backends.store.clone(),
            embedded.records.clone(),
            tenants.clone(),
            open.clone(),
            quotas.clone(),
            dispatch,
            replies.clone(),
        );
        let record = testing::record("t1", "r1", 1, Priority::Interactive);
        let (tenant, request) = (record.tenant.clone(), record.request.clone());
        let job = record.jobs[0].job.clone();
        tenants.create(&tenant).await.unwrap();
        embedded.records.save_new(&record).await.unwrap();
        quotas.count(&tenant, 1);
        open.open(record);
        let mut stream = replies.subscribe(&tenant, &request);
        settler
            .handle_event(succeeded(&job, &tenant, "tenants/t1/results/r1/0.png"))
            .await
            .unwrap();
        assert!(open.get(&tenant, &request).is_none(), "no longer followed");
        assert_eq!(quotas.unfinished(&tenant), 0);
        assert!(!embedded.records.open_log().is_open(&tenant, &request));
        let stored = embedded
            .records
            .load_stored(&tenant, &request)
            .await
            .unwrap();
        assert_eq!(stored.unwrap().jobs[0].state, JobState::Succeeded);
        assert_eq!(stream.recv().await.unwrap().reply.kind(), "done");
        // The same result again is a stray duplicate: nothing changes, nothing is deleted.
        settler
            .handle_event(succeeded(&job, &tenant, "tenants/t1/results/r1/0.png"))
            .await
            .unwrap();
        assert_eq!(quotas.unfinished(&tenant), 0);
    }
}
