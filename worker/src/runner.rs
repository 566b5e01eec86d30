//! The generation loop: pull jobs, batch the compatible ones, fetch their photos, render, write the
//! outputs, report, and only then acknowledge.
//!
//! Order of effects for one job, which is what makes it safe to crash anywhere: outputs written (keys
//! derived from the job, so a rerun overwrites) → `Succeeded` event confirmed by the broker → ack. A crash
//! before the ack redelivers the job; the rerun produces the same files and a duplicate event that the
//! scheduler ignores because the job is already succeeded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use image::DynamicImage;
use reverie_shared::consume::decode_or_dead_letter;
use reverie_shared::envelope;
use reverie_shared::jobs::{GenerateJob, Job, JobEvent, JobSpec, Provenance};
use reverie_shared::metrics;
use reverie_shared::ports::queue::{Consumer, Delivery, Message, MessageProps, QueueError};
use reverie_shared::retry::Backoff;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::batcher::{group_compatible, should_close, BatchLimits};
use crate::context::WorkerContext;
use crate::identity::{render_with_identity, Outcome};
use crate::inputs::{fetch_photo, InputError};
use crate::outputs::write_outputs;
use crate::previews::StepReport;
use crate::render::{RenderError, RenderRequest};

/// A decoded job with the delivery that must be settled for it.
struct Held {
    job: Job,
    spec: GenerateJob,
    delivery: Delivery,
    /// The envelope version the job came in: its result is reported (and a retry republished) in the
    /// layout of that version, which is the one its scheduler reads.
    version: u8,
}

/// Why a job did not produce its image.
struct JobFailure {
    reason: String,
    retryable: bool,
    /// A dependency (the object store) is away: retried without spending the job's attempts, at most
    /// `worker.max_outage_retries` times.
    infrastructure: bool,
    /// The dead-letter reason when it fails for good without retries: `invalid`, or `store_refused`
    /// for a store that refuses (access denied, a missing bucket) and will refuse again.
    final_reason: &'static str,
}

/// Dead-letter reason of a job whose store refuses for good (docs/architecture.md, dead letters).
pub const STORE_REFUSED: &str = "store_refused";

impl JobFailure {
    /// A failure of the object store, classified where it happened: an outage is waited out (bounded),
    /// a refusal fails the job at once.
    fn of_store(error: &reverie_shared::ports::store::StoreError, reason: String) -> JobFailure {
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

/// Consumes the generation queue until `shutdown` turns true, then drains within the grace period.
///
/// Up to `batches_in_flight` batches are held at once: while one renders, the next is fetching its
/// photos and the previous one is writing its outputs and confirming its results. Render passes never
/// overlap (the render slot), so a worker's render memory is that of one batch.
pub async fn run_generation(
    ctx: Arc<WorkerContext>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), QueueError> {
    let limits = BatchLimits {
        max_size: ctx.settings.batch_max,
        max_wait: Duration::from_millis(ctx.settings.batch_wait_ms),
    };
    let depth = ctx.settings.batches_in_flight.max(1);
    // Enough prefetch for every batch held; never more, so a dying worker hands back little.
    let prefetch = u16::try_from(ctx.settings.batch_max.max(1) * depth).unwrap_or(u16::MAX);
    let batch_slots = Arc::new(Semaphore::new(depth));
    let render_slot = Arc::new(Semaphore::new(1));
    let mut held_batches = JoinSet::new();
    let mut consumer = ctx
        .consume(&ctx.queues.generate, prefetch, &mut shutdown)
        .await?;
    loop {
        // A free batch slot first: no delivery is taken that no batch could hold.
        let slot = tokio::select! {
            _ = shutdown.changed() => break,
            slot = batch_slots.clone().acquire_owned() => slot,
        };
        let Ok(slot) = slot else { break };
        while held_batches.try_join_next().is_some() {}
        let first = tokio::select! {
            _ = shutdown.changed() => break,
            next = consumer.next() => next,
        };
        let first = match first {
            Ok(delivery) => delivery,
            Err(error) => {
                tracing::warn!(%error, "job consumer lost; reconnecting");
                consumer = ctx
                    .consume(&ctx.queues.generate, prefetch, &mut shutdown)
                    .await?;
                continue;
            }
        };
        let held = collect_batch(&mut *consumer, first, limits, &shutdown).await;
        // Every delivery of the batch is settled when handle_deliveries returns.
        let count = held.len() as i64;
        metrics::global().worker_jobs_held.add(count);
        let (ctx, render_slot) = (ctx.clone(), render_slot.clone());
        held_batches.spawn(async move {
            handle_deliveries(ctx, held, render_slot).await;
            metrics::global().worker_jobs_held.sub(count);
            drop(slot);
        });
        if *shutdown.borrow() {
            break;
        }
    }
    drain(&ctx, held_batches).await;
    tracing::info!(worker = %ctx.worker_id, "generation loop stopped");
    Ok(())
}

/// Finishes the batches held within the grace period; what is not finished by then is dropped
/// unacknowledged, which hands it back to the queue for another worker.
async fn drain(ctx: &WorkerContext, mut held_batches: JoinSet<()>) {
    let grace = Duration::from_secs(ctx.settings.drain_grace_s);
    let finished = tokio::time::timeout(grace, async {
        while held_batches.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            grace_s = grace.as_secs(),
            "drain grace period over; requeueing held jobs"
        );
        held_batches.shutdown().await;
    }
}

async fn collect_batch(
    consumer: &mut dyn Consumer,
    first: Delivery,
    limits: BatchLimits,
    shutdown: &watch::Receiver<bool>,
) -> Vec<Delivery> {
    let started = Instant::now();
    let mut held = vec![first];
    loop {
        // Whatever the broker already delivered joins the batch without waiting: with
        // `batch_wait_ms = 0` this is continuous batching (under load the prefetch fills while the
        // previous batch renders), and a lone job still starts at once.
        while held.len() < limits.max_size {
            match consumer.next().now_or_never() {
                Some(Ok(delivery)) => held.push(delivery),
                Some(Err(_)) | None => break,
            }
        }
        if should_close(limits, held.len(), started.elapsed(), *shutdown.borrow()).is_some() {
            return held;
        }
        let left = limits.max_wait.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, consumer.next()).await {
            Ok(Ok(delivery)) => held.push(delivery),
            Ok(Err(_)) | Err(_) => return held,
        }
    }
}

async fn handle_deliveries(
    ctx: Arc<WorkerContext>,
    deliveries: Vec<Delivery>,
    render_slot: Arc<Semaphore>,
) {
    // Screened side by side (each may ask the cache whether its job was cancelled); order is kept.
    let admitted = futures::future::join_all(deliveries.into_iter().map(|d| admit(&ctx, d))).await;
    let jobs: Vec<Held> = admitted.into_iter().flatten().collect();
    for group in group_compatible(jobs, |held| held.spec.render.batch_key()) {
        render_group(&ctx, group, &render_slot).await;
    }
}

/// Decodes a delivery and screens out what must never be rendered: undecodable messages, jobs of the
/// wrong kind, and poison messages that were delivered too often (each delivery that crashed a worker).
async fn admit(ctx: &WorkerContext, delivery: Delivery) -> Option<Held> {
    let ((job, version), delivery) =
        match decode_or_dead_letter(delivery, envelope::decode_job_versioned).await {
            Ok(Some(decoded)) => decoded,
            Ok(None) => return None,
            Err(error) => {
                tracing::warn!(%error, "could not dead-letter an undecodable job");
                return None;
            }
        };
    let spec = match &job.spec {
        JobSpec::Generate(spec) => spec.clone(),
        other => {
            let detail = format!("a {} job on the generation queue", other.kind());
            let _ = delivery.dead_letter("invalid", &detail).await;
            return None;
        }
    };
    if delivery.redelivered
        && ctx.delivery_count(&job).await >= u64::from(ctx.settings.max_deliveries)
    {
        let reason = format!(
            "delivered {} times without finishing (it crashes or stalls workers)",
            ctx.settings.max_deliveries
        );
        if !ctx.report_final_failure(&job, &reason).await {
            // The scheduler has not heard of the failure: the request would never finish. Keep the
            // message (it is counted again on its next delivery) and try again after a pause.
            requeue_unreported(&spec.job, delivery).await;
            return None;
        }
        match delivery.dead_letter("poison", &reason).await {
            Ok(()) => metrics::global()
                .jobs
                .with_label_values(&["generate", "dead_lettered"])
                .inc(),
            Err(error) => {
                tracing::warn!(job = %spec.job, %error, "could not dead-letter a poison job")
            }
        }
        return None;
    }
    if ctx.is_cancelled(&spec).await {
        tracing::info!(job = %spec.job, "job was cancelled while queued; skipping it");
        metrics::global()
            .jobs
            .with_label_values(&["generate", "cancelled"])
            .inc();
        if let Err(error) = delivery.ack().await {
            tracing::warn!(job = %spec.job, %error, "could not ack a cancelled job");
        }
        return None;
    }
    Some(Held {
        job,
        spec,
        delivery,
        version,
    })
}

async fn render_group(ctx: &Arc<WorkerContext>, group: Vec<Held>, render_slot: &Semaphore) {
    let span =
        tracing::info_span!("batch", size = group.len(), key = %group[0].spec.render.batch_key());
    async {
        let ready = load_group(ctx, group).await;
        if ready.is_empty() {
            return;
        }
        let announcements: Vec<JobEvent> = ready
            .iter()
            .map(|(held, _)| JobEvent::Started {
                job: held.spec.job.clone(),
                tenant: held.spec.tenant.clone(),
                worker: ctx.worker_id.clone(),
                attempt: held.job.attempt,
            })
            .collect();
        let rendering = async {
            // A closed semaphore never happens (it lives as long as the loop); render regardless.
            let _slot = render_slot.acquire().await.ok();
            let started = Instant::now();
            let results = render(ctx, &ready).await;
            (results, started.elapsed())
        };
        let (results, render_time) = announce_if_slow(ctx, &announcements, rendering).await;
        let render_ms = render_time.as_millis() as u64;
        let m = metrics::global();
        let renderer = ready[0].0.spec.render.renderer.label();
        m.batch_size
            .with_label_values(&[renderer])
            .observe(ready.len() as f64);
        m.worker_busy_seconds.inc_by(render_time.as_secs_f64());
        // The jobs of the batch write their outputs side by side; their results are then confirmed in
        // one message, and only then is each acked.
        let settles = ready
            .into_iter()
            .zip(results)
            .map(|((held, _), result)| async move {
                match result {
                    Ok(rendered) => write_result(ctx, held, rendered, render_ms).await,
                    Err(error) => {
                        fail(ctx, held, error.into()).await;
                        None
                    }
                }
            });
        let written: Vec<Written> = futures::future::join_all(settles)
            .await
            .into_iter()
            .flatten()
            .collect();
        report_succeeded(ctx, written, render_ms).await;
    }
    .instrument(span)
    .await
}

/// Fetches and decodes the photos of a batch's jobs side by side; jobs whose photos fail are failed
/// here and left out.
async fn load_group(ctx: &Arc<WorkerContext>, group: Vec<Held>) -> Vec<(Held, RenderRequest)> {
    let loads = group.into_iter().map(|held| async move {
        record_queue_wait(&held.job);
        let loaded = load_request(ctx, &held.spec).await;
        (held, loaded)
    });
    let mut ready = Vec::new();
    for (held, loaded) in futures::future::join_all(loads).await {
        match loaded {
            Ok(request) => ready.push((held, request)),
            Err(failure) => fail(ctx, held, failure).await,
        }
    }
    ready
}

/// Runs `work`; once it has run `worker.started_after_ms`, the batch's `Started` events are published
/// (and confirmed) while it goes on. A render that finishes sooner announces nothing: its result says
/// that it ran, and the two messages per job that a millisecond render would otherwise cost are saved.
/// Either way `Started` precedes the result, which is published after `work` returns.
async fn announce_if_slow<T>(
    ctx: &WorkerContext,
    announcements: &[JobEvent],
    work: impl std::future::Future<Output = T>,
) -> T {
    let delay = Duration::from_millis(ctx.settings.started_after_ms);
    let announce = async {
        tokio::time::sleep(delay).await;
        futures::future::join_all(announcements.iter().map(|e| ctx.publish_event(e))).await;
    };
    tokio::pin!(work);
    tokio::select! {
        biased;
        output = &mut work => output,
        () = announce => work.await,
    }
}

fn record_queue_wait(job: &Job) {
    let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
    let waited = now_ms.saturating_sub(job.accepted_ms) as f64 / 1000.0;
    metrics::global()
        .job_queue_wait
        .with_label_values(&[job.spec.kind()])
        .observe(waited);
}

async fn load_request(
    ctx: &WorkerContext,
    spec: &GenerateJob,
) -> Result<RenderRequest, JobFailure> {
    let mut photos = Vec::with_capacity(spec.references.len());
    for reference in &spec.references {
        let bytes = fetch_photo(
            &*ctx.backends.store,
            ctx.photo_cache.as_deref(),
            &spec.tenant,
            reference,
        )
        .await?;
        let image = decode_photo(&bytes).map_err(|detail| {
            JobFailure::from(InputError::Corrupt {
                photo: reference.photo.to_string(),
                shard: reference.shard.to_string(),
                detail,
            })
        })?;
        photos.push((reference.clone(), image));
    }
    Ok(RenderRequest {
        spec: spec.render.clone(),
        photos,
        // Filled just before rendering, where the face models run (off the async runtime).
        identity: Vec::new(),
    })
}

/// Decodes a stored photo the way analysis does — EXIF orientation applied, the same pixel bound — so the
/// face boxes the library found land on the same pixels here (a phone photo is stored sideways with
/// orientation 6; decoded as stored, every face box would point at the wrong place).
fn decode_photo(bytes: &[u8]) -> Result<DynamicImage, String> {
    let orientation = reverie_library::exif_read::read_exif(bytes)
        .orientation
        .unwrap_or(1);
    reverie_library::decode(bytes, crate::analysis::MAX_PIXELS, orientation)
        .map_err(|e| e.to_string())
}

async fn render(
    ctx: &Arc<WorkerContext>,
    ready: &[(Held, RenderRequest)],
) -> Vec<Result<Outcome, RenderError>> {
    let kind = ready[0].0.spec.render.renderer;
    let renderer = match ctx.renderers.get(kind) {
        Ok(renderer) => renderer,
        Err(error) => return ready.iter().map(|_| Err(error.clone())).collect(),
    };
    let requests: Vec<RenderRequest> = ready.iter().map(|(_, request)| request.clone()).collect();
    let (progress_tx, mut progress_rx) = tokio::sync::mpsc::unbounded_channel::<StepReport>();
    let jobs: Vec<(reverie_shared::ids::JobId, reverie_shared::ids::TenantId)> = ready
        .iter()
        .map(|(held, _)| (held.spec.job.clone(), held.spec.tenant.clone()))
        .collect();
    let relay_ctx = ctx.clone();
    let relay = tokio::spawn(async move {
        while let Some(report) = progress_rx.recv().await {
            // The last step's progress is followed at once by the result: not worth two messages.
            if report.step >= report.total {
                continue;
            }
            if let Some((job, tenant)) = jobs.get(report.index) {
                relay_ctx
                    .publish_event(&JobEvent::Progress {
                        job: job.clone(),
                        tenant: tenant.clone(),
                        step: report.step,
                        total: report.total,
                        preview_png: report.preview_png,
                    })
                    .await;
            }
        }
    });
    let count = requests.len();
    let preview_interval = std::time::Duration::from_millis(ctx.settings.preview_interval_ms);
    let analyser = ctx.analyser.clone();
    let rendered = tokio::task::spawn_blocking(move || {
        let progress = crate::previews::RelaySink::new(progress_tx, count, preview_interval);
        let faces = match analyser.as_deref() {
            Some(analyser) => analyser
                .faces
                .as_deref()
                .map_err(|reason| format!("face models unavailable ({reason})")),
            None => Err("this worker has no face models loaded".to_string()),
        };
        let faces = match &faces {
            Ok(analyzer) => Ok(*analyzer),
            Err(reason) => Err(reason.as_str()),
        };
        let mut requests = requests;
        if let Some(segmenter) = analyser.as_deref().and_then(|a| a.segmenter.as_deref()) {
            crate::cutout::cut_out_people(&mut requests, segmenter);
        }
        render_with_identity(&*renderer, requests, faces, &progress)
    })
    .await;
    let _ = relay.await;
    match rendered {
        Ok(results) => results,
        Err(panic) => {
            // A renderer panic fails this batch's attempt, not the worker; the jobs are retried.
            let reason = format!("renderer panicked: {panic}");
            (0..count)
                .map(|_| Err(RenderError::Failed(reason.clone())))
                .collect()
        }
    }
}

/// A job whose outputs are durable, with the event that reports them.
struct Written {
    held: Held,
    event: JobEvent,
}

/// Writes a rendered job's outputs; a job whose outputs cannot be written is failed here (`None`).
async fn write_result(
    ctx: &WorkerContext,
    held: Held,
    outcome: Outcome,
    render_ms: u64,
) -> Option<Written> {
    let Outcome {
        rendered,
        seed,
        identity,
    } = outcome;
    let spec = &held.spec;
    if let Some(report) = &identity {
        let histogram = metrics::global()
            .identity_distance
            .with_label_values(&[spec.render.renderer.label()]);
        for person in &report.people {
            if let Some(distance) = person.distance {
                histogram.observe(f64::from(distance));
            }
        }
    }
    let provenance = Provenance {
        job: spec.job.clone(),
        request: spec.request.clone(),
        tenant: spec.tenant.clone(),
        renderer: spec.render.renderer,
        prompt: spec.render.prompt.clone(),
        negative_prompt: spec.render.negative_prompt.clone(),
        style: spec.render.style.clone(),
        model: spec.render.model.clone(),
        model_hash: rendered.model_hash.clone(),
        seed,
        steps: spec.render.steps,
        guidance: spec.render.guidance,
        scheduler: spec.render.scheduler.clone(),
        width: rendered.image.width(),
        height: rendered.image.height(),
        references: spec.references.iter().map(|r| r.photo.clone()).collect(),
        created_at: chrono::Utc::now().to_rfc3339(),
        worker: ctx.worker_id.clone(),
        extra: rendered.details.clone(),
        identity: identity.clone(),
        identity_references: spec
            .references
            .iter()
            .filter(|r| r.role == reverie_shared::jobs::ReferenceRole::Identity)
            .map(|r| r.photo.clone())
            .collect(),
    };
    let outputs =
        match write_outputs(&*ctx.backends.store, spec, &rendered.image, &provenance).await {
            Ok(outputs) => outputs,
            Err(error) => {
                let failure = match &error {
                    crate::outputs::OutputError::Store(store)
                    | crate::outputs::OutputError::Destination(
                        reverie_shared::destinations::DestinationError::Store(store),
                    ) => JobFailure::of_store(store, error.to_string()),
                    _ => JobFailure {
                        reason: error.to_string(),
                        retryable: false,
                        infrastructure: false,
                        final_reason: "invalid",
                    },
                };
                fail(ctx, held, failure).await;
                return None;
            }
        };
    let event = JobEvent::Succeeded {
        job: spec.job.clone(),
        tenant: spec.tenant.clone(),
        outputs,
        render_ms,
        identity,
    };
    Some(Written { held, event })
}

/// Reports a batch's written jobs in one confirmed message, then acks each. Without the confirm no job
/// of the batch is done: all are requeued, and their reruns overwrite the same outputs.
async fn report_succeeded(ctx: &WorkerContext, written: Vec<Written>, render_ms: u64) {
    if written.is_empty() {
        return;
    }
    let events: Vec<JobEvent> = written.iter().map(|w| w.event.clone()).collect();
    // The current layout only when every job came from a scheduler that reads it.
    let current = written
        .iter()
        .all(|w| w.held.version >= envelope::JOB_VERSION);
    if !ctx.publish_events_in(&events, current).await {
        for job in written {
            let _ = job.held.delivery.requeue().await;
        }
        return;
    }
    let m = metrics::global();
    let acks = written.into_iter().map(|Written { held, .. }| async move {
        let spec = &held.spec;
        m.images_generated
            .with_label_values(&[spec.render.renderer.label()])
            .inc();
        m.jobs.with_label_values(&["generate", "succeeded"]).inc();
        m.job_duration
            .with_label_values(&["generate"])
            .observe(render_ms as f64 / 1000.0);
        if let Err(error) = held.delivery.ack().await {
            tracing::warn!(job = %spec.job, %error, "ack failed; the job will be redelivered and overwrite its outputs");
        }
        tracing::info!(job = %spec.job, render_ms, "job succeeded");
    });
    futures::future::join_all(acks).await;
}

async fn fail(ctx: &WorkerContext, held: Held, failure: JobFailure) {
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
        // The retry is published before the original is acked, so the job exists on the broker throughout.
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            match republish(&backends.queue, &queue, &retry, version).await {
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
async fn requeue_unreported(job: &reverie_shared::ids::JobId, delivery: Delivery) {
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
    tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        match republish_with(&queue, &name, &job, version, retries + 1).await {
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
) -> Result<(), QueueError> {
    republish_with(queue, name, job, version, 0).await
}

/// Republishes a job in the envelope version it came in, so whichever worker takes it next answers
/// its scheduler in a layout that scheduler reads.
async fn republish_with(
    queue: &reverie_shared::ports::queue::SharedQueue,
    name: &str,
    job: &Job,
    version: u8,
    infra_retries: u32,
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
    queue
        .publish(name, Message::new(body).with_props(props))
        .await
}

#[cfg(test)]
mod tests {
    use super::decode_photo;

    #[test]
    fn photos_are_decoded_upright_as_analysis_sees_them() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/library/folder/Family/sideways.jpg"
        );
        let bytes = std::fs::read(path).unwrap();
        let (stored_w, stored_h) = image::load_from_memory(&bytes)
            .map(|i| (i.width(), i.height()))
            .unwrap();
        let upright = decode_photo(&bytes).unwrap();
        assert_eq!(
            (upright.width(), upright.height()),
            (stored_h, stored_w),
            "EXIF orientation 6 must turn the stored pixels upright"
        );
    }
}
