//! Dispatch: an accepted request's jobs onto the broker. Interactive jobs are published at once, with
//! publisher confirms; batch jobs wait in the fairness feeder ([`crate::fairness`]), which publishes
//! them as their tenant gets room. The one conversion of a job record into a queue message is here.
//! Owns the feeder and its wake-up.

use std::sync::{Arc, Mutex as SyncMutex};

use chrono::Utc;
use reverie_shared::envelope;
use reverie_shared::ids::{JobId, RequestId, TenantId};
use reverie_shared::jobs::{GenerateJob, Job, JobSpec, Priority};
use reverie_shared::metrics;
use reverie_shared::ports::queue::{Message, MessageProps, SharedQueue};
use reverie_shared::queues::{QueueNames, ShardNames, EVENTS_HEADER};
use tokio::sync::Notify;
use tracing::Instrument;

use super::state::OpenRequests;
use crate::error::Result;
use crate::fairness::Feeder;
use crate::lock;
use crate::records::{Records, RequestRecord};

pub(crate) struct Dispatch {
    queue: SharedQueue,
    queues: QueueNames,
    shard: ShardNames,
    records: Records,
    open: Arc<OpenRequests>,
    feeder: SyncMutex<Feeder>,
    /// Woken when the feeder may have work: jobs pushed, or a tenant's batch job finished.
    wake: Notify,
}

impl Dispatch {
    pub fn new(
        queue: SharedQueue,
        queues: QueueNames,
        shard: ShardNames,
        records: Records,
        open: Arc<OpenRequests>,
        batch_in_flight_per_tenant: usize,
    ) -> Dispatch {
        Dispatch {
            queue,
            queues,
            shard,
            records,
            open,
            feeder: SyncMutex::new(Feeder::new(batch_in_flight_per_tenant)),
            wake: Notify::new(),
        }
    }

    /// Declares every queue the scheduler uses.
    pub async fn declare_queues(&self) -> Result<()> {
        for spec in self.queues.specs().into_iter().chain(self.shard.specs()) {
            self.queue.declare(&spec).await?;
        }
        Ok(())
    }

    /// Publishes (interactive) or hands to the feeder (batch) every unfinished, unpublished job of an
    /// open request. With `persist` the `published` flags are saved at once (duplicates, recovery);
    /// without, they ride along with the job's next durable write (its result): a crash before that
    /// republishes the job, and the rerun is harmless (same output keys, the duplicate result is
    /// ignored).
    pub async fn publish(
        &self,
        tenant: &TenantId,
        request: &RequestId,
        persist: bool,
    ) -> Result<()> {
        let Some(entry) = self.open.get(tenant, request) else {
            return Ok(());
        };
        let mut open = entry.lock().await;
        if open.retired {
            return Ok(());
        }
        let priority = open.record.plan.priority;
        let mut changed = false;
        for job in open.record.jobs.iter_mut() {
            if job.published || job.state.is_final() {
                continue;
            }
            let (message_job, message) = job_message(&job.spec, priority, &self.shard)?;
            match priority {
                Priority::Interactive => {
                    let span = tracing::info_span!("publish", job = %job.job);
                    self.queue
                        .publish(&self.queues.generate, message)
                        .instrument(span)
                        .await?;
                    metrics::global()
                        .jobs_published
                        .with_label_values(&["generate", priority.label()])
                        .inc();
                    job.published = true;
                    changed = true;
                }
                Priority::Batch => {
                    lock(&self.feeder).push(message_job);
                }
            }
        }
        if priority == Priority::Batch {
            self.wake.notify_one();
        }
        if changed && persist {
            open.record.updated_at = Utc::now();
            self.records.save(&open.record).await?;
        }
        Ok(())
    }

    /// Publishes the feeder's next batch job, if any has room. Returns whether one was published.
    pub async fn feed_one(&self) -> Result<bool> {
        let Some(job) = lock(&self.feeder).next_to_publish() else {
            return Ok(false);
        };
        let JobSpec::Generate(spec) = &job.spec else {
            return Ok(true);
        };
        let tenant = spec.tenant.clone();
        let Some(entry) = self.open.get(&tenant, &spec.request) else {
            lock(&self.feeder).finished(&tenant, &spec.job);
            return Ok(true);
        };
        let mut open = entry.lock().await;
        let wanted = !open.retired
            && open
                .record
                .jobs
                .iter()
                .any(|j| j.job == spec.job && !j.published && !j.state.is_final());
        if !wanted {
            lock(&self.feeder).finished(&tenant, &spec.job);
            return Ok(true);
        }
        let (_, message) = job_message(spec, Priority::Batch, &self.shard)?;
        let span = tracing::info_span!("publish", job = %spec.job);
        if let Err(error) = self
            .queue
            .publish(&self.queues.generate, message)
            .instrument(span)
            .await
        {
            lock(&self.feeder).push_front(job.clone());
            return Err(error.into());
        }
        metrics::global()
            .jobs_published
            .with_label_values(&["generate", Priority::Batch.label()])
            .inc();
        if let Some(record_job) = open.record.job_mut(&spec.job) {
            record_job.published = true;
        }
        open.record.updated_at = Utc::now();
        self.records.save(&open.record).await?;
        Ok(true)
    }

    /// Returns when the feeder may have work (or at once if it was woken since the last wait).
    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    /// A recovered request's batch jobs that were published but are unfinished still occupy their
    /// tenant's share of the broker.
    pub fn recovered(&self, record: &RequestRecord) {
        if record.plan.priority != Priority::Batch {
            return;
        }
        let mut feeder = lock(&self.feeder);
        for job in record
            .jobs
            .iter()
            .filter(|j| j.published && !j.state.is_final())
        {
            feeder.mark_in_flight(&record.tenant, &job.job);
        }
    }

    /// A job reached its final state: its tenant has room for another batch job.
    pub fn finished(&self, tenant: &TenantId, job: &JobId) {
        lock(&self.feeder).finished(tenant, job);
        self.wake.notify_one();
    }

    /// Jobs were cancelled: those still held are dropped, and their tenant has room again.
    pub fn cancelled(&self, tenant: &TenantId, jobs: &[JobId]) {
        {
            let mut feeder = lock(&self.feeder);
            feeder.remove_pending(tenant, |j| jobs.contains(j.spec.id()));
            for job in jobs {
                feeder.finished(tenant, job);
            }
        }
        self.wake.notify_one();
    }

    /// Drops everything the feeder holds of a forgotten tenant.
    pub fn forget(&self, tenant: &TenantId) {
        lock(&self.feeder).forget(tenant);
    }

    /// Batch jobs held back by the feeder.
    pub fn pending(&self) -> usize {
        lock(&self.feeder).pending_count()
    }
}

/// The job message of a job record's spec: the one conversion from job record to queue message.
/// A job as published. On a sharded farm it names its shard's events queue ([`EVENTS_HEADER`]), so
/// its worker answers the scheduler that follows the request.
fn job_message(
    spec: &GenerateJob,
    priority: Priority,
    shard: &ShardNames,
) -> Result<(Job, Message)> {
    let job = Job {
        spec: JobSpec::Generate(spec.clone()),
        attempt: 1,
        priority,
        accepted_ms: now_ms(),
    };
    let body = envelope::encode_job(&job)?;
    let props = MessageProps {
        message_id: Some(spec.job.to_string()),
        content_type: Some("application/x-reverie-job".to_string()),
        priority: priority.amqp(),
        ..MessageProps::default()
    };
    let mut message = Message::new(body).with_props(props);
    if shard.count > 1 {
        message = message.with_header(EVENTS_HEADER, shard.events.clone());
    }
    Ok((job, message))
}

fn now_ms() -> u64 {
    u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testing::{self, Embedded};

    fn dispatch(embedded: &Embedded, open: &Arc<OpenRequests>, per_tenant: usize) -> Dispatch {
        Dispatch::new(
            embedded.backends.queue.clone(),
            embedded.queues.clone(),
            embedded.queues.shard(0, 1),
            embedded.records.clone(),
            open.clone(),
            per_tenant,
        )
    }

    async fn depth(embedded: &Embedded) -> u64 {
        embedded
            .backends
            .queue
            .depth(&embedded.queues.generate)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn interactive_jobs_are_published_at_once_and_only_once() {
        let embedded = testing::embedded().await;
        let open = Arc::new(OpenRequests::default());
        let dispatch = dispatch(&embedded, &open, 1);
        let record = testing::record("t1", "r1", 2, Priority::Interactive);
        let (tenant, request) = (record.tenant.clone(), record.request.clone());
        open.open(record);
        dispatch.publish(&tenant, &request, false).await.unwrap();
        assert_eq!(depth(&embedded).await, 2);
        let entry = open.get(&tenant, &request).unwrap();
        assert!(entry.lock().await.record.jobs.iter().all(|j| j.published));
        dispatch.publish(&tenant, &request, true).await.unwrap();
        assert_eq!(
            depth(&embedded).await,
            2,
            "published jobs are not published again"
        );
        assert_eq!(dispatch.pending(), 0);
    }

    #[tokio::test]
    async fn batch_jobs_wait_in_the_feeder_for_their_tenants_room() {
        let embedded = testing::embedded().await;
        let open = Arc::new(OpenRequests::default());
        let dispatch = dispatch(&embedded, &open, 1);
        let record = testing::record("t1", "b1", 3, Priority::Batch);
        let (tenant, request) = (record.tenant.clone(), record.request.clone());
        open.open(record);
        dispatch.publish(&tenant, &request, false).await.unwrap();
        assert_eq!((depth(&embedded).await, dispatch.pending()), (0, 3));
        assert!(dispatch.feed_one().await.unwrap());
        assert!(
            !dispatch.feed_one().await.unwrap(),
            "one batch job of the tenant on the broker at once"
        );
        assert_eq!((depth(&embedded).await, dispatch.pending()), (1, 2));
        let first = {
            let entry = open.get(&tenant, &request).unwrap();
            let open = entry.lock().await;
            let published: Vec<_> = open.record.jobs.iter().filter(|j| j.published).collect();
            assert_eq!(published.len(), 1);
            published[0].job.clone()
        };
        dispatch.finished(&tenant, &first);
        assert!(dispatch.feed_one().await.unwrap());
        assert_eq!((depth(&embedded).await, dispatch.pending()), (2, 1));
        // A forgotten tenant's held jobs go.
        dispatch.forget(&tenant);
        assert_eq!(dispatch.pending(), 0);
    }
}
