//! Failed jobs: classified where they happened (retryable, a dependency away, final), retried with a
//! backoff by republishing before the original is acked, waited out while the store is away, and
//! dead-lettered with their reason only once their `Failed` event is confirmed.

use std::time::Duration;

use reverie_shared::envelope;
use reverie_shared::jobs::Job;
use reverie_shared::metrics;
use reverie_shared::ports::queue::{Delivery, Message, MessageProps, QueueError};
use reverie_shared::queues::EVENTS_HEADER;
use reverie_shared::retry::Backoff;

use super::Held;
use crate::context::WorkerContext;
use crate::inputs::InputError;
use crate::render::RenderError;

/// Why a job did not produce its image.
pub(super) struct JobFailure {
    pub(super) reason: String,
    pub(super) retryable: bool,
    /// A dependency (the object store) is away: retried without spending the job's attempts, at most
    /// `worker.max_outage_retries` times.
    pub(super) infrastructure: bool,
    /// The dead-letter reason when it fails for good without retries: `invalid`, or `store_refused`
    /// for a store that refuses (access denied, a missing bucket) and will refuse again.
    pub(super) final_reason: &'static str,
}

/// Dead-letter reason of a job whose store refuses for good (docs/architecture.md, dead letters).
pub const STORE_REFUSED: &str = "store_refused";

impl JobFailure {
    /// A failure of the object store, classified where it happened: an outage is waited out (bounded),
    /// a refusal fails the job at once.
    pub(super) fn of_store(
        error: &reverie_shared::ports::store::StoreError,
        reason: String,
    ) -> JobFailure {
        let transient = error.is_transient();
        JobFailure {
            reason,
            retryable: transient,
            infrastructure: transient,
            final_reason: if error.is_permanent() {
                STORE_REFUSED
            } else {
                "invalid"
            },
        }
    }
}

impl From<InputError> for JobFailure {
    fn from(error: InputError) -> JobFailure {
        match &error {
            InputError::Store(store) => JobFailure::of_store(store, error.to_string()),
            _ => JobFailure {
                retryable: error.retryable(),
                infrastructure: error.retryable(),
                reason: error.to_string(),
                final_reason: "invalid",
            },
        }
    }
}

impl From<RenderError> for JobFailure {
    fn from(error: RenderError) -> JobFailure {
        JobFailure {
            retryable: error.retryable(),
            infrastructure: false,
            reason: error.to_string(),
            final_reason: "invalid",
        }
    }
}

pub(super) async fn fail(ctx: &WorkerContext, held: Held, failure: JobFailure) {
    let Held {
        job,
        spec,
        delivery,
        version,
    } = held;
    let m = metrics::global();
    if failure.infrastructure {
        let retries = outage_retries(&delivery);
        if retries < ctx.settings.max_outage_retries {
            return wait_for_infrastructure(ctx, job, version, delivery, retries, &failure.reason);
        }
        // The dependency has been away for every retry allowed: give up, say why.
        let reason = format!(
            "{} (still failing after {retries} retries while the store was away)",
            failure.reason
        );
        return fail_for_good(ctx, job, delivery, "retries_exhausted", &reason).await;
    }
    if failure.retryable && job.attempt < ctx.settings.max_attempts {
        m.job_retries.with_label_values(&["generate"]).inc();
        m.jobs.with_label_values(&["generate", "retried"]).inc();
        let backoff = Backoff::from(&ctx.retry);
        let wait = backoff.delay(job.attempt, 0.5);
        tracing::warn!(job = %spec.job, attempt = job.attempt, retry_in_ms = wait.as_millis() as u64, reason = %failure.reason, "job failed; retrying");
        let retry = Job {
            attempt: job.attempt + 1,
            ..job
        };
        let queue = ctx.queues.generate.clone();
        let backends = ctx.backends.clone();
        let events_route = events_route_of(&delivery);
        // The retry is published before the original is acked, so the job exists on the broker throughout.
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            match republish(&backends.queue, &queue, &retry, version, events_route).await {
                Ok(()) => {
                    let _ = delivery.ack().await;
                }
                Err(error) => {
                    tracing::warn!(%error, "could not republish a retry; requeueing the original");
                    let _ = delivery.requeue().await;
                }
            }
        });
        return;
    }
    let reason_label = if failure.retryable {
        "retries_exhausted"
    } else {
        failure.final_reason
    };
    fail_for_good(ctx, job, delivery, reason_label, &failure.reason).await;
}

/// A job's final failure: the `Failed` event first (confirmed), then the dead letter. Without the
/// confirm the scheduler never hears of it (the request would never finish), so the job is requeued
/// instead and its next delivery tries again; repeated deliveries end as `poison`, reported the same way.
async fn fail_for_good(
    ctx: &WorkerContext,
    job: Job,
    delivery: Delivery,
    reason_label: &str,
    reason: &str,
) {
    let m = metrics::global();
    let id = job.spec.id().clone();
    tracing::warn!(job = %id, attempt = job.attempt, reason, "job failed for good");
    if !ctx.report_final_failure(&job, reason).await {
        requeue_unreported(&id, delivery).await;
        return;
    }
    m.jobs.with_label_values(&["generate", "failed"]).inc();
    match delivery.dead_letter(reason_label, reason).await {
        Ok(()) => m
            .jobs
            .with_label_values(&["generate", "dead_lettered"])
            .inc(),
        Err(error) => tracing::warn!(job = %id, %error, "could not dead-letter a failed job"),
    }
}

/// How long a job whose final event could not be confirmed waits before it goes back to the queue.
const UNREPORTED_PAUSE: Duration = Duration::from_millis(500);

/// Puts back a job whose final `Failed` event was not confirmed, so it is settled on a later delivery.
pub(super) async fn requeue_unreported(job: &reverie_shared::ids::JobId, delivery: Delivery) {
    tracing::warn!(job = %job, "final failure not confirmed by the events queue; requeueing the job");
    tokio::time::sleep(UNREPORTED_PAUSE).await;
    if let Err(error) = delivery.requeue().await {
        tracing::warn!(job = %job, %error, "could not requeue a job whose failure was not reported");
    }
}

/// Header counting how often a job was put back because a dependency was away.
const INFRA_RETRIES_HEADER: &str = "x-reverie-infra-retries";

/// How often a job was already put back because a dependency was away.
fn outage_retries(delivery: &Delivery) -> u32 {
    delivery
        .props()
        .headers
        .get(INFRA_RETRIES_HEADER)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Republishes the job unchanged (same attempt) after a backoff that grows with each outage retry, then
/// acks the original: an outage of the object store delays jobs but does not fail them, up to
/// `worker.max_outage_retries` times (the header counts them; see [`fail`]).
fn wait_for_infrastructure(
    ctx: &WorkerContext,
    job: Job,
    version: u8,
    delivery: Delivery,
    retries: u32,
    reason: &str,
) {
    let wait = Backoff::from(&ctx.retry).delay(retries + 1, 0.5);
    metrics::global()
        .job_retries
        .with_label_values(&["generate"])
        .inc();
    metrics::global()
        .jobs
        .with_label_values(&["generate", "retried"])
        .inc();
    tracing::warn!(job = %job.spec.id(), retries, retry_in_ms = wait.as_millis() as u64, reason, "dependency unavailable; job will be retried");
    let queue = ctx.backends.queue.clone();
    let name = ctx.queues.generate.clone();
    let events_route = events_route_of(&delivery);
    tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        match republish_with(&queue, &name, &job, version, retries + 1, events_route).await {
            Ok(()) => {
                let _ = delivery.ack().await;
            }
            Err(error) => {
                tracing::warn!(%error, "could not republish; requeueing the original");
                let _ = delivery.requeue().await;
            }
        }
    });
}

async fn republish(
    queue: &reverie_shared::ports::queue::SharedQueue,
    name: &str,
    job: &Job,
    version: u8,
    events_route: Option<String>,
) -> Result<(), QueueError> {
    republish_with(queue, name, job, version, 0, events_route).await
}

/// The events queue the original job named ([`EVENTS_HEADER`]), which a republished job keeps.
fn events_route_of(delivery: &Delivery) -> Option<String> {
    delivery.props().headers.get(EVENTS_HEADER).cloned()
}

/// Republishes a job in the envelope version it came in, so whichever worker takes it next answers
/// its scheduler in a layout that scheduler reads.
async fn republish_with(
    queue: &reverie_shared::ports::queue::SharedQueue,
    name: &str,
    job: &Job,
    version: u8,
    infra_retries: u32,
    events_route: Option<String>,
) -> Result<(), QueueError> {
    let encoded = match version {
        envelope::CURRENT_VERSION => {
            envelope::encode_job_v1(job).unwrap_or_else(|| envelope::encode_job(job))
        }
        _ => envelope::encode_job(job),
    };
    let body = encoded.map_err(|e| QueueError::Backend {
        backend: "worker",
        operation: "encode",
        queue: name.to_string(),
        detail: e.to_string(),
    })?;
    let mut props = MessageProps {
        message_id: Some(format!("{}#{}", job.spec.id(), job.attempt)),
        priority: job.priority.amqp(),
        ..MessageProps::default()
    };
    if infra_retries > 0 {
        props
            .headers
            .insert(INFRA_RETRIES_HEADER.to_string(), infra_retries.to_string());
    }
    if let Some(route) = events_route {
        props.headers.insert(EVENTS_HEADER.to_string(), route);
    }
    queue
        .publish(name, Message::new(body).with_props(props))
        .await
}
