//! The analysis jobs: the worker's second queue. One shard at a time is analysed (or its persisted
//! analysis reused and the cache refilled), a `Succeeded` event naming the analysis is confirmed, and
//! only then is the job acked; the worker that stores a library's last missing analysis groups its
//! people.
//!
//! The analysis itself is [`crate::analysis`]; this module is its queue consumer, kept apart so that
//! the analysis depends on no part of the worker's plumbing (the context holds an `Analyser`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use reverie_shared::consume::decode_or_dead_letter;
use reverie_shared::envelope;
use reverie_shared::ids::TenantId;
use reverie_shared::jobs::{JobEvent, JobSpec};
use reverie_shared::metrics;
use reverie_shared::ports::queue::QueueError;
use tokio::sync::watch;

use crate::analysis::{analyse_shard, analysis_key, Analyser};
use crate::context::WorkerContext;
use crate::library_analysis::group_when_complete;

/// Consumes the analysis queue until shutdown: one shard at a time, results persisted and cached, then
/// a `Succeeded` event naming the analysis, then the ack.
pub async fn run_analysis(
    ctx: Arc<WorkerContext>,
    analyser: Arc<Analyser>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), QueueError> {
    let mut consumer = ctx.consume(&ctx.queues.analyse, 1, &mut shutdown).await?;
    loop {
        let delivery = tokio::select! {
            _ = shutdown.changed() => break,
            next = consumer.next() => next,
        };
        let delivery = match delivery {
            Ok(delivery) => delivery,
            Err(error) => {
                tracing::warn!(%error, "analysis consumer lost; reconnecting");
                consumer = ctx.consume(&ctx.queues.analyse, 1, &mut shutdown).await?;
                continue;
            }
        };
        let Ok(Some((job, delivery))) = decode_or_dead_letter(delivery, envelope::decode_job).await
        else {
            continue;
        };
        let JobSpec::Analyse(spec) = &job.spec else {
            let _ = delivery
                .dead_letter("invalid", "a generate job on the analysis queue")
                .await;
            continue;
        };
        let span = tracing::info_span!("analyse", job = %spec.job, shard = %spec.shard);
        let _entered = span.enter();
        let started = Instant::now();
        let result = analyse_shard(
            &analyser,
            &*ctx.backends.store,
            &*ctx.backends.cache,
            &spec.tenant,
            &spec.shard,
        )
        .await;
        let m = metrics::global();
        m.job_duration
            .with_label_values(&["analyse"])
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok((_, outcome)) => {
                tracing::info!(?outcome, "shard analysed");
                let event = JobEvent::Succeeded {
                    job: spec.job.clone(),
                    tenant: spec.tenant.clone(),
                    outputs: vec![analysis_key(&spec.tenant, &spec.shard)],
                    render_ms: started.elapsed().as_millis() as u64,
                    identity: None,
                };
                if ctx.publish_event(&event).await {
                    m.jobs.with_label_values(&["analyse", "succeeded"]).inc();
                    let _ = delivery.ack().await;
                    group_if_last(&ctx, &spec.tenant).await;
                } else {
                    let _ = delivery.requeue().await;
                }
            }
            Err(error) if error.retryable() && !delivery.redelivered => {
                // One more try on another delivery; a second failure is final.
                tracing::warn!(%error, "analysis failed; requeueing once");
                m.job_retries.with_label_values(&["analyse"]).inc();
                let _ = delivery.requeue().await;
            }
            Err(error) => {
                if !ctx.report_final_failure(&job, &error.to_string()).await {
                    // Unheard, the failure would leave its waiter waiting: settle only once it is
                    // confirmed; until then the message goes back, after a pause.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let _ = delivery.requeue().await;
                    continue;
                }
                m.jobs.with_label_values(&["analyse", "failed"]).inc();
                let reason = if error.retryable() {
                    "retries_exhausted"
                } else {
                    "invalid"
                };
                let _ = delivery.dead_letter(reason, &error.to_string()).await;
            }
        }
    }
    Ok(())
}

/// After a shard's analysis: the worker that stored the last missing one groups the library's people. A
/// failure here is logged, not fatal: the next analysed shard, or `reverie analyse`, groups again.
async fn group_if_last(ctx: &WorkerContext, tenant: &TenantId) {
    match group_when_complete(&*ctx.backends.store, tenant).await {
        Ok(Some(grouping)) => tracing::info!(
            %tenant,
            people = grouping.people,
            new_faces = grouping.new_faces,
            "library analysed: people grouped"
        ),
        Ok(None) => {}
        Err(error) => tracing::warn!(%tenant, %error, "grouping the library's people failed"),
    }
}
