//! Loading a batch's inputs: each job's reference photos fetched (through the shard cache) and
//! decoded upright, the way analysis saw them.

use std::sync::Arc;

use image::DynamicImage;
use reverie_shared::jobs::{GenerateJob, Job};
use reverie_shared::metrics;

use super::failures::{fail, JobFailure};
use super::Held;
use crate::context::WorkerContext;
use crate::inputs::{fetch_photo, InputError};
use crate::render::RenderRequest;

/// Fetches and decodes the photos of a batch's jobs side by side; jobs whose photos fail are failed
/// here and left out.
pub(super) async fn load_group(
    ctx: &Arc<WorkerContext>,
    group: Vec<Held>,
) -> Vec<(Held, RenderRequest)> {
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
