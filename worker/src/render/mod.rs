//! The renderer port: one trait for every way of turning a job into an image, taking a whole batch so
//! that renderers which gain from batching (diffusion) can, and those which don't (painterly) needn't.

pub mod diffusion;
pub mod identity;
mod painterly;

pub use diffusion::{DiffusionRenderer, ImagePromptSource, ModelSource, RendererOptions};
pub use painterly::{PainterlyRenderer, DEFAULT_STYLE};

use std::collections::BTreeMap;

use image::{DynamicImage, RgbImage};
use reverie_paint::{Rect, Subject, SubjectKind};
use reverie_shared::jobs::{PhotoRef, ReferenceRole, RenderSpec, RendererKind};

/// One job's input to a renderer: the fixed parameters and the decoded reference photos.
#[derive(Debug, Clone)]
pub struct RenderRequest {
    pub spec: RenderSpec,
    pub photos: Vec<(PhotoRef, DynamicImage)>,
    /// The people the picture must show: each person's planned face box in output pixels and their
    /// reference descriptor (the worker's `identity` module), filled by the runner before
    /// rendering; empty for pictures without people or when this worker has no face models. What
    /// identity guidance (`spec.identity_strength`) steers toward.
    pub identity: Vec<reverie_faces::identity::IdentityTarget>,
    /// The job's LoRA files (`spec.adapters.loras`), read from its tenant's storage by the runner.
    pub loras: Vec<LoadedLora>,
    /// The job's image prompt embeddings as the cache keeps them, read by the runner under the
    /// key of [`Renderer::image_prompt_source`]; `None` has the renderer compute them.
    pub cached_image_prompt: Option<bytes::Bytes>,
    /// The detected boxes of the pets among the subjects (from the tenant's pets file, filled by
    /// the runner), so the compositor places and masks the animal rather than the whole photo.
    pub pet_boxes: Vec<PetBox>,
}

/// Where a pet subject is in its photo.
#[derive(Debug, Clone, PartialEq)]
pub struct PetBox {
    pub photo: reverie_shared::ids::PhotoId,
    /// The subject's label as planned ("Rex", or "dog 3" for a pet not named yet).
    pub label: String,
    /// Photo pixels, `[left, top, right, bottom)`.
    pub bbox: [i64; 4],
}

/// A LoRA a job uses, with its bytes (checked against its SHA-256).
#[derive(Debug, Clone)]
pub struct LoadedLora {
    pub usage: reverie_shared::jobs::LoraUse,
    pub bytes: std::sync::Arc<Vec<u8>>,
}

impl RenderRequest {
    /// The job's subject photos (people, pets) as the compositor takes them, face boxes included.
    pub fn subjects(&self) -> Vec<Subject> {
        self.photos
            .iter()
            .filter(|(reference, _)| reference.role == ReferenceRole::Subject)
            .map(|(reference, image)| Subject {
                image: image.clone(),
                kind: match self.pet_box(reference) {
                    Some([l, t, r, b]) => SubjectKind::Pet {
                        bbox: Some(Rect {
                            x: l as f32,
                            y: t as f32,
                            width: (r - l).max(1) as f32,
                            height: (b - t).max(1) as f32,
                        }),
                    },
                    None => SubjectKind::Person {
                        face: reference.face_box.map(|[l, t, r, b]| Rect {
                            x: l as f32,
                            y: t as f32,
                            width: r.saturating_sub(l) as f32,
                            height: b.saturating_sub(t) as f32,
                        }),
                    },
                },
            })
            .collect()
    }

    /// The detected box of a subject that is a pet: the one its label names in that photo.
    pub fn pet_box(&self, reference: &PhotoRef) -> Option<[i64; 4]> {
        if reference.role != ReferenceRole::Subject || reference.face_box.is_some() {
            return None;
        }
        let label = reference.label.as_deref()?;
        self.pet_boxes
            .iter()
            .find(|p| p.photo == reference.photo && p.label.eq_ignore_ascii_case(label))
            .map(|p| p.bbox)
    }
}

/// One rendered image with what the renderer wants recorded about it.
#[derive(Debug, Clone)]
pub struct RenderedImage {
    pub image: RgbImage,
    /// The content hash of the model that made it, when a model did.
    pub model_hash: Option<String>,
    /// Renderer-specific provenance (style parameters, scheduler, ...).
    pub details: BTreeMap<String, String>,
    /// Image prompt embeddings computed for this job (not read from the cache), for the runner to
    /// cache under the key of [`Renderer::image_prompt_source`].
    pub computed_image_prompt: Option<bytes::Bytes>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum RenderError {
    /// The request can never render (bad parameters, unknown style): do not retry.
    #[error("invalid render request: {0}")]
    Invalid(String),
    /// A model is missing or corrupt: an operator must act; do not retry.
    #[error("model unavailable: {0}")]
    ModelUnavailable(String),
    /// Anything else (out of memory, a device error): worth another attempt.
    #[error("render failed: {0}")]
    Failed(String),
}

impl RenderError {
    pub fn retryable(&self) -> bool {
        matches!(self, RenderError::Failed(_))
    }
}

/// Where a renderer reports progress while it works: steps of each job of the batch (by index) and, when
/// asked, a live preview of the picture forming.
pub trait ProgressSink: Sync {
    /// Job `index` of the batch finished `step` of `total`.
    fn step(&self, index: usize, step: u32, total: u32);

    /// Whether a preview of job `index` is wanted with its next step (the sink throttles; drawing one
    /// costs the renderer a little, so it asks first).
    fn wants_preview(&self, _index: usize) -> bool {
        false
    }

    /// A step with a preview of the picture at that step (for diffusion, the latents mapped to colour).
    fn step_with_preview(&self, index: usize, step: u32, total: u32, _preview: image::RgbImage) {
        self.step(index, step, total);
    }
}

/// Any `Fn(index, step, total)` is a sink that never wants previews.
impl<F: Fn(usize, u32, u32) + Sync> ProgressSink for F {
    fn step(&self, index: usize, step: u32, total: u32) {
        self(index, step, total)
    }
}

/// A sink that ignores everything.
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn step(&self, _index: usize, _step: u32, _total: u32) {}
}

/// How a renderer reports progress.
pub type Progress<'a> = &'a dyn ProgressSink;

pub trait Renderer: Send + Sync {
    fn kind(&self) -> RendererKind;

    /// Renders every request; each gets its own result so one bad job does not fail its batch-mates.
    /// A request must render to the same image whatever batch it is in.
    fn render_batch(
        &self,
        requests: &[RenderRequest],
        progress: Progress<'_>,
    ) -> Vec<Result<RenderedImage, RenderError>>;

    /// What `request`'s image prompt is read from, when it has one: the key its embeddings are
    /// cached under. Renderers without image prompts have none.
    fn image_prompt_source(&self, _request: &RenderRequest) -> Option<ImagePromptSource> {
        None
    }
}
