//! The generation loop: pull jobs, batch the compatible ones, fetch their photos, render, write the
//! outputs, report, and only then acknowledge.
//!
//! Order of effects for one job, which is what makes it safe to crash anywhere: outputs written (keys
//! derived from the job, so a rerun overwrites) → `Succeeded` event confirmed by the broker → ack. A crash
//! before the ack redelivers the job; the rerun produces the same files and a duplicate event that the
//! scheduler ignores because the job is already succeeded.
//!
//! A job's life, in the order it happens (this module tells it; each step is a child module):
//! - `intake`: deliveries taken into a batch, decoded and screened (wrong kind, poison, cancelled);
//! - `load`: the batch's photos fetched and decoded upright;
//! - `rendering`: the renderer run (with cut-outs, identity and live previews), `Started` announced
//!   for slow batches; `image_prompts`: image prompt embeddings read from the cache before it and
//!   the computed ones cached after;
//! - `results`: outputs written with provenance, the batch's results confirmed in one message, acks;
//! - `failures`: what a job that did not make it becomes (retry, outage wait, dead letter), every
//!   final failure reported before it is settled.

mod failures;
mod image_prompts;
mod intake;
mod load;
mod rendering;
mod results;

use std::sync::Arc;
use std::time::{Duration, Instant};

use reverie_shared::jobs::{GenerateJob, Job, JobEvent};
use reverie_shared::metrics;
use reverie_shared::ports::queue::{Delivery, QueueError};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::batcher::{group_compatible, BatchLimits};
use crate::context::WorkerContext;

pub use failures::STORE_REFUSED;

use failures::fail;
use intake::{admit, collect_batch};
use load::load_group;
use rendering::{announce_if_slow, render};
use results::{report_succeeded, write_result, Written};

/// A decoded job with the delivery that must be settled for it.
struct Held {
    job: Job,
    spec: GenerateJob,
    delivery: Delivery,
    /// The envelope version the job came in: its result is reported (and a retry republished) in the
    /// layout of that version, which is the one its scheduler reads.
    version: u8,
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
