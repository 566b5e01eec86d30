//! Intake: deliveries taken into a batch, decoded, and screened for what must never be rendered.

use std::time::Instant;

use futures::FutureExt;
use reverie_shared::consume::decode_or_dead_letter;
use reverie_shared::envelope;
use reverie_shared::jobs::JobSpec;
use reverie_shared::metrics;
use reverie_shared::ports::queue::{Consumer, Delivery};
use tokio::sync::watch;

use super::failures::requeue_unreported;
use super::Held;
use crate::batcher::{should_close, BatchLimits};
use crate::context::WorkerContext;

pub(super) async fn collect_batch(
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

/// Decodes a delivery and screens out what must never be rendered: undecodable messages, jobs of the
/// wrong kind, and poison messages that were delivered too often (each delivery that crashed a worker).
pub(super) async fn admit(ctx: &WorkerContext, delivery: Delivery) -> Option<Held> {
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
    ctx.event_routes
        .note(&spec.job, delivery.props(), &ctx.queues);
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
        ctx.event_routes.forget(&spec.job);
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
