//! Settling rendered jobs: outputs written with their provenance, then the batch's results confirmed
//! in one message, and only then each job acked.

use reverie_shared::envelope;
use reverie_shared::jobs::{JobEvent, Provenance};
use reverie_shared::metrics;

use super::failures::{fail, JobFailure};
use super::Held;
use crate::context::WorkerContext;
use crate::identity::Outcome;
use crate::outputs::write_outputs;

/// A job whose outputs are durable, with the event that reports them.
pub(super) struct Written {
    held: Held,
    event: JobEvent,
}

/// Writes a rendered job's outputs; a job whose outputs cannot be written is failed here (`None`).
pub(super) async fn write_result(
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
        loras: spec.render.adapters.loras.clone(),
        image_prompt: rendered
            .details
            .get(reverie_shared::jobs::IMAGE_PROMPT_DETAIL)
            .and_then(|photo| reverie_shared::ids::PhotoId::parse(photo).ok())
            .map(|photo| reverie_shared::jobs::ImagePromptUse {
                photo,
                scale: spec.render.adapters.image_prompt_scale,
                adapter: rendered
                    .details
                    .get(reverie_shared::jobs::IMAGE_PROMPT_ADAPTER_DETAIL)
                    .cloned(),
            }),
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
pub(super) async fn report_succeeded(ctx: &WorkerContext, written: Vec<Written>, render_ms: u64) {
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
