//! A plan becomes the jobs workers render: one per variant, or one per album photo for an album
//! run. The only place a plan is converted into `GenerateJob`s.

use reverie_shared::ids::{JobId, RequestId, TenantId};
use reverie_shared::jobs::{GenerateJob, OutputTarget, ReferenceRole, RenderSpec};

use super::album::{album_output_prefix, AlbumRun};
use super::{Plan, PlannerSettings};

/// The jobs that render a plan, one per variant.
pub fn jobs_for(
    plan: &Plan,
    tenant: &TenantId,
    request: &RequestId,
    settings: &PlannerSettings,
) -> Vec<GenerateJob> {
    let has_background = plan
        .references
        .iter()
        .any(|r| r.role == ReferenceRole::Background);
    let palette_transfer = plan
        .references
        .iter()
        .any(|r| r.role == ReferenceRole::Palette);
    if let Some(run) = &plan.album_run {
        return album_jobs(plan, run, tenant, request);
    }
    plan.seeds
        .iter()
        .enumerate()
        .map(|(index, &seed)| {
            let index = index as u32;
            GenerateJob {
                job: JobId::for_request(request, index),
                request: request.clone(),
                tenant: tenant.clone(),
                index,
                render: render_spec(
                    plan,
                    seed,
                    if has_background {
                        settings.background_strength
                    } else {
                        1.0
                    },
                    palette_transfer,
                ),
                references: plan.references.clone(),
                output: OutputTarget::default(),
                batch_run: None,
            }
        })
        .collect()
}

/// What a worker needs to render one image of a plan.
fn render_spec(plan: &Plan, seed: u64, strength: f32, palette_transfer: bool) -> RenderSpec {
    RenderSpec {
        renderer: plan.renderer,
        prompt: plan.model_prompt.clone(),
        negative_prompt: plan.negative_prompt.clone(),
        style: plan.style.clone(),
        model: plan.model.clone(),
        width: plan.width,
        height: plan.height,
        steps: plan.steps,
        guidance: plan.guidance,
        scheduler: plan.scheduler.clone(),
        seed,
        strength,
        palette_transfer,
        // identity guidance: the strength travels per job; the worker wires it into sampling.
        identity_strength: plan.identity_strength,
        best_of: plan.best_of.max(1),
        adapters: plan.adapters.clone(),
    }
}

fn album_jobs(
    plan: &Plan,
    run: &AlbumRun,
    tenant: &TenantId,
    request: &RequestId,
) -> Vec<GenerateJob> {
    let destination = album_output_prefix(tenant, &run.to);
    run.photos
        .iter()
        .zip(&plan.seeds)
        .enumerate()
        .map(|(index, (photo, &seed))| {
            let index = index as u32;
            let mut reference = photo.clone();
            reference.role = ReferenceRole::Background;
            GenerateJob {
                job: JobId::for_request(request, index),
                request: request.clone(),
                tenant: tenant.clone(),
                index,
                // img2img keeps the photo recognisable; the painter paints over it anyway.
                render: render_spec(plan, seed, 0.6, false),
                references: vec![reference],
                output: OutputTarget {
                    destination: Some(destination.trim_end_matches('/').to_string()),
                    name: Some(photo.photo.to_string()),
                },
                batch_run: Some(request.to_string()),
            }
        })
        .collect()
}
