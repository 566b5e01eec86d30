//! Loading a batch's inputs: each job's reference photos fetched (through the shard cache) and
//! decoded upright, the way analysis saw them.

use std::sync::Arc;

use image::DynamicImage;
use reverie_shared::jobs::{GenerateJob, Job, PhotoRef, ReferenceRole};
use reverie_shared::metrics;

use super::failures::{fail, JobFailure};
use super::Held;
use crate::context::WorkerContext;
use std::collections::HashMap;

use reverie_shared::ids::TenantId;
use reverie_shared::jobs::LoraUse;

use crate::inputs::{fetch_lora, fetch_photo, InputError};
use crate::render::{LoadedLora, PetBox, RenderRequest};

/// Fetches and decodes the photos of a batch's jobs side by side; jobs whose photos fail are failed
/// here and left out.
pub(super) async fn load_group(
    ctx: &Arc<WorkerContext>,
    group: Vec<Held>,
) -> Vec<(Held, RenderRequest)> {
    // A batch shares its LoRA set (the batch key): each file is read once for all its jobs.
    let loras = LoraBytes::default();
    let loras = &loras;
    let loads = group.into_iter().map(|held| async move {
        record_queue_wait(&held.job);
        let loaded = load_request(ctx, &held.spec, loras).await;
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

/// A LoRA file's owner and SHA-256.
type LoraKey = (TenantId, String);

/// LoRA files read for one batch.
#[derive(Default)]
struct LoraBytes(tokio::sync::Mutex<HashMap<LoraKey, Arc<Vec<u8>>>>);

impl LoraBytes {
    async fn get(
        &self,
        ctx: &WorkerContext,
        tenant: &TenantId,
        lora: &LoraUse,
    ) -> Result<Arc<Vec<u8>>, InputError> {
        let mut held = self.0.lock().await;
        let key = (tenant.clone(), lora.sha256.clone());
        if let Some(bytes) = held.get(&key) {
            return Ok(bytes.clone());
        }
        let bytes = Arc::new(fetch_lora(&*ctx.backends.store, tenant, lora).await?);
        held.insert(key, bytes.clone());
        Ok(bytes)
    }
}

async fn load_request(
    ctx: &WorkerContext,
    spec: &GenerateJob,
    lora_bytes: &LoraBytes,
) -> Result<RenderRequest, JobFailure> {
    let mut loras = Vec::with_capacity(spec.render.adapters.loras.len());
    for usage in &spec.render.adapters.loras {
        let bytes = lora_bytes.get(ctx, &spec.tenant, usage).await?;
        loras.push(LoadedLora {
            usage: usage.clone(),
            bytes,
        });
    }
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
    let pet_boxes = pet_boxes(ctx, spec).await;
    Ok(RenderRequest {
        spec: spec.render.clone(),
        photos,
        // Filled just before rendering, where the face models run (off the async runtime).
        identity: Vec::new(),
        loras,
        // Read from the cache just before rendering, when the renderer says which key.
        cached_image_prompt: None,
        pet_boxes,
    })
}

/// The detected boxes of the job's pet subjects (subjects without a face box whose label names a
/// pet seen in that photo), from the tenant's pets file. A pets file that cannot be read only costs
/// the placement: the pet is then composed as a whole photo, as before pets were detected.
async fn pet_boxes(ctx: &WorkerContext, spec: &GenerateJob) -> Vec<PetBox> {
    let wanted: Vec<(&PhotoRef, &str)> = spec
        .references
        .iter()
        .filter(|r| r.role == ReferenceRole::Subject && r.face_box.is_none())
        .filter_map(|r| r.label.as_deref().map(|label| (r, label)))
        .collect();
    if wanted.is_empty() {
        return Vec::new();
    }
    let pets = match crate::pets::load_pets(&*ctx.backends.store, &spec.tenant).await {
        Ok(pets) => pets,
        Err(error) => {
            tracing::warn!(job = %spec.job, %error, "pets file unreadable: pets are placed as whole photos");
            return Vec::new();
        }
    };
    let mut boxes = Vec::new();
    for (reference, label) in wanted {
        // Two pets may share a label (a cat and a dog both called Max): the one seen in this photo.
        let sighting = pets
            .pets
            .iter()
            .filter(|p| {
                let unnamed = format!("{} {}", p.species.label(), p.id);
                p.name
                    .as_deref()
                    .unwrap_or(&unnamed)
                    .eq_ignore_ascii_case(label)
            })
            .find_map(|p| {
                p.sightings
                    .iter()
                    .find(|s| s.photo == reference.photo.as_str())
            });
        if let Some(sighting) = sighting {
            boxes.push(PetBox {
                photo: reference.photo.clone(),
                label: label.to_string(),
                bbox: sighting.bbox,
            });
        }
    }
    boxes
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
