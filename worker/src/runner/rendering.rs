//! Rendering a loaded batch: the renderer its kind names, people cut out of their photos, identity
//! targets and checks, live previews relayed as `Progress` events; `Started` announced only for
//! batches that are still rendering after `worker.started_after_ms`.

use std::sync::Arc;
use std::time::Duration;

use reverie_shared::jobs::JobEvent;

use super::{image_prompts, Held};
use crate::context::WorkerContext;
use crate::identity::{render_with_identity, Outcome};
use crate::previews::StepReport;
use crate::render::{RenderError, RenderRequest};

/// Runs `work`; once it has run `worker.started_after_ms`, the batch's `Started` events are published
/// (and confirmed) while it goes on. A render that finishes sooner announces nothing: its result says
/// that it ran, and the two messages per job that a millisecond render would otherwise cost are saved.
/// Either way `Started` precedes the result, which is published after `work` returns.
pub(super) async fn announce_if_slow<T>(
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

/// Renders a loaded batch off the async runtime with the renderer its kind names: people cut out of
/// their photos where a segmenter is loaded, identity targets and checks where face models are, and
/// previews relayed as `Progress` events while it runs. A renderer panic fails the batch's attempt,
/// not the worker.
pub(super) async fn render(
    ctx: &Arc<WorkerContext>,
    ready: &[(Held, RenderRequest)],
) -> Vec<Result<Outcome, RenderError>> {
    let kind = ready[0].0.spec.render.renderer;
    let renderer = match ctx.renderers.get(kind) {
        Ok(renderer) => renderer,
        Err(error) => return ready.iter().map(|_| Err(error.clone())).collect(),
    };
    let mut requests: Vec<RenderRequest> =
        ready.iter().map(|(_, request)| request.clone()).collect();
    let image_prompt_keys = image_prompts::read_cached(ctx, &*renderer, ready, &mut requests).await;
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
        Ok(results) => {
            image_prompts::write_computed(ctx, &image_prompt_keys, &results);
            results
        }
        Err(panic) => {
            // A renderer panic fails this batch's attempt, not the worker; the jobs are retried.
            let reason = format!("renderer panicked: {panic}");
            (0..count)
                .map(|_| Err(RenderError::Failed(reason.clone())))
                .collect()
        }
    }
}
