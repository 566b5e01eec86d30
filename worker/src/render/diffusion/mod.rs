//! The diffusion renderer: a Stable Diffusion checkpoint (SD 1.x / 2.x / Turbo in the diffusers
//! layout), resolved through the model registry and loaded once per worker; every batch shares it.
//!
//! How a job becomes a generation:
//! - the text is the job's prompt followed by its style words ("me at the beach" + "watercolour");
//! - with a background photo (settings, album-to-art runs) the photo, fitted to the output size, is
//!   the img2img init image at the job's strength;
//! - with subject photos (people, pets) they are composed onto the background (or a neutral canvas),
//!   the same composite the painterly renderer paints, and then:
//!   - with identity guidance (`identity_strength > 0`, the job's people known and this worker's face
//!     models loaded) the whole composite is restyled by img2img at the job's strength — subjects
//!     and scene alike, so the picture is generated rather than pasted — while guidance holds each
//!     planned face toward its person's descriptor;
//!   - without it (`identity_strength = 0`, the option that keeps subjects' photographic pixels) a
//!     masked img2img keeps the subjects and repaints the rest;
//! - otherwise text-to-image.
//!
//! A batch shares model, size, steps, scheduler and LoRA set (the batch key); jobs that differ in
//! init image use or strength run as sub-batches. A tenant's LoRAs are fused into a copy of the
//! model built for that LoRA set and kept (a few, least recently used) for the next batch of it.
//! A job's image prompt embeddings come from the farm's cache when the runner found them there,
//! else from the few this worker keeps, else they are computed and handed back for the cache. Each
//! sample's noise comes from its own seed, so a job renders the same image alone or in any batch.
//!
//! Here: the renderer (loading, sub-batches, the pipeline run, what each image reports). Beside it:
//! `source` (where model and adapter files come from), `device` (`cpu` / `cuda`, with the CPU
//! fallback, and the dtype), `init` (what a job gives the pipeline: its text, its init picture and
//! mask) and `image_prompts` (which part of which photo an image prompt reads, and its cached form).

mod device;
mod image_prompts;
mod init;
mod source;

pub use device::{
    choose_device, open_cuda, parse_device, parse_dtype, ChosenDevice, DeviceRequest,
};
pub use image_prompts::ImagePromptSource;
pub use source::ModelSource;

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use candle_core::{DType, Device, Tensor};
use image::RgbImage;
use lru::LruCache;
use reverie_diffusion::ip_adapter::ImagePrompt;
use reverie_diffusion::lora::{LoraSource, LoraSpec};
use reverie_diffusion::pipeline::guidance::default_repeats;
use reverie_diffusion::pipeline::images::{mask_to_tensor, rgb_to_tensor, tensor_to_rgb};
use reverie_diffusion::pipeline::{
    Adapters, GenerationRequest, IdentityGuidance, SampleSpec, StableDiffusion,
};
use reverie_diffusion::registry::{AdapterKind, ResolvedAdapter, ResolvedModel};
use reverie_diffusion::SchedulerKind;
use reverie_shared::jobs::{
    ReferenceRole, RendererKind, IMAGE_PROMPT_ADAPTER_DETAIL, IMAGE_PROMPT_DETAIL,
};

use reverie_faces::FaceModels;

use super::identity::IdentityGuide;
use super::{Progress, RenderError, RenderRequest, RenderedImage, Renderer};
use image_prompts::{as_cached, from_cached, image_prompt_crop, to_cached};
use init::{group_key, init_picture, init_picture_strength, prompt_text};

/// What the renderer loads beside the checkpoint.
#[derive(Debug, Clone)]
pub struct RendererOptions {
    /// The IP-Adapter attached to every model: a registered adapter's name or a .safetensors file
    /// (its `image_encoder/` beside it).
    pub ip_adapter: Option<String>,
    /// Models with a LoRA set fused in kept loaded beside the base model.
    pub lora_models: usize,
}

impl Default for RendererOptions {
    fn default() -> RendererOptions {
        RendererOptions {
            ip_adapter: None,
            lora_models: 2,
        }
    }
}

/// One loaded checkpoint serving every batch of this worker.
pub struct DiffusionRenderer {
    model: ResolvedModel,
    /// The name jobs use for it (the registry name or the folder given in the configuration).
    name: String,
    pipeline: Arc<StableDiffusion>,
    device: Device,
    dtype: DType,
    /// The IP-Adapter every model carries, fixed for the worker's life.
    ip_adapter: Option<ResolvedAdapter>,
    /// Models with a LoRA set fused in, by the set's key (`RenderAdapters::lora_key`).
    with_loras: Mutex<LruCache<String, Arc<StableDiffusion>>>,
    /// Image prompt embeddings (positive halves, f16) this worker computed or read lately, in front
    /// of the farm's cache: best-of candidates and the next batches of a person reuse them, and a
    /// cache outage does not mean encoding every batch again.
    image_prompts: Mutex<LruCache<ImagePromptSource, Tensor>>,
    /// The face models identity guidance differentiates; `None` renders without guidance.
    faces: Option<FaceModels>,
}

impl std::fmt::Debug for DiffusionRenderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiffusionRenderer")
            .field("model", &self.name)
            .field("identity", &self.model.identity)
            .finish()
    }
}

impl DiffusionRenderer {
    /// Resolves and loads `model` (blocking: weights are memory-mapped and checked here, once).
    pub fn load(
        source: &ModelSource,
        model: &str,
        device: &Device,
        dtype: DType,
    ) -> Result<DiffusionRenderer, RenderError> {
        Self::load_with(source, model, device, dtype, RendererOptions::default())
    }

    /// [`Self::load`] with an IP-Adapter and the LoRA model cache size.
    pub fn load_with(
        source: &ModelSource,
        model: &str,
        device: &Device,
        dtype: DType,
        options: RendererOptions,
    ) -> Result<DiffusionRenderer, RenderError> {
        let resolved = source.resolve(model)?;
        let ip_adapter = options
            .ip_adapter
            .as_deref()
            .map(|adapter| source.resolve_adapter(adapter, AdapterKind::IpAdapter, model))
            .transpose()?;
        let adapters = Adapters {
            loras: Vec::new(),
            ip_adapter: ip_adapter.as_ref().map(|a| a.path.clone()),
        };
        let pipeline = StableDiffusion::from_dir_with(&resolved.dir, device, dtype, &adapters)
            .map_err(|e| {
                RenderError::ModelUnavailable(format!(
                    "loading {model} from {}: {e}",
                    resolved.dir.display()
                ))
            })?;
        tracing::info!(model, identity = %resolved.identity, dir = %resolved.dir.display(), ip_adapter = ?ip_adapter.as_ref().map(|a| &a.name), "diffusion model loaded");
        let cached = NonZeroUsize::new(options.lora_models.max(1)).unwrap_or(NonZeroUsize::MIN);
        Ok(DiffusionRenderer {
            model: resolved,
            name: model.to_string(),
            pipeline: Arc::new(pipeline),
            device: device.clone(),
            dtype,
            ip_adapter,
            with_loras: Mutex::new(LruCache::new(cached)),
            image_prompts: Mutex::new(LruCache::new(IMAGE_PROMPTS_KEPT)),
            faces: None,
        })
    }

    /// The model a sub-batch renders with: the base model, or one with the batch's LoRA set fused
    /// in (built from the LoRA bytes the runner read, then kept for later batches of that set).
    fn pipeline_for(&self, request: &RenderRequest) -> Result<Arc<StableDiffusion>, RenderError> {
        let key = request.spec.adapters.lora_key();
        if key.is_empty() {
            return Ok(self.pipeline.clone());
        }
        if request.loras.len() != request.spec.adapters.loras.len() {
            return Err(RenderError::Failed(format!(
                "the job names {} LoRAs but {} were read",
                request.spec.adapters.loras.len(),
                request.loras.len()
            )));
        }
        let mut cache = self.with_loras.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pipeline) = cache.get(&key) {
            return Ok(pipeline.clone());
        }
        let started = std::time::Instant::now();
        let adapters = Adapters {
            loras: request
                .loras
                .iter()
                .map(|lora| LoraSpec {
                    source: LoraSource::Bytes {
                        name: format!("LoRA {} ({})", lora.usage.name, lora.usage.sha256),
                        bytes: lora.bytes.clone(),
                    },
                    weight: f64::from(lora.usage.weight),
                })
                .collect(),
            ip_adapter: self.ip_adapter.as_ref().map(|a| a.path.clone()),
        };
        // A LoRA that does not fit this model will never fit it: the job is invalid, not retried.
        let pipeline =
            StableDiffusion::from_dir_with(&self.model.dir, &self.device, self.dtype, &adapters)
                .map_err(|e| RenderError::Invalid(e.to_string()))?;
        tracing::info!(loras = %key, load_ms = started.elapsed().as_millis() as u64, "model with LoRAs loaded");
        let pipeline = Arc::new(pipeline);
        cache.put(key, pipeline.clone());
        Ok(pipeline)
    }

    /// Enables identity guidance with these face models, when the model can be guided (its VAE
    /// decodes in f32; otherwise jobs render unguided, keeping their subjects, and this says so
    /// once here rather than failing batches).
    pub fn with_face_models(mut self, faces: Option<FaceModels>) -> Self {
        if faces.is_some() && !self.pipeline.supports_identity_guidance() {
            tracing::warn!(
                model = %self.name,
                vae_dtype = ?self.pipeline.vae_dtype(),
                "identity guidance disabled: it differentiates the VAE in f32 (set diffusion.dtype = \"f32\")"
            );
            self.faces = None;
            return self;
        }
        self.faces = faces;
        self
    }

    /// Whether `request` is restyled whole under identity guidance (else subjects are kept).
    fn guides(&self, request: &RenderRequest) -> bool {
        self.faces.is_some() && request.spec.identity_strength > 0.0 && !request.identity.is_empty()
    }

    pub fn model_identity(&self) -> &str {
        &self.model.identity
    }

    fn check_model(&self, request: &RenderRequest) -> Result<(), RenderError> {
        match request.spec.model.as_deref() {
            None => Ok(()),
            Some(name) if name == self.name || name == self.model.name => Ok(()),
            Some(other) => Err(RenderError::ModelUnavailable(format!(
                "this worker serves model {:?}, the job asks for {other:?}",
                self.name
            ))),
        }
    }

    /// Renders requests that share size, steps, scheduler, LoRA set, init-image use and strength
    /// in one pass; each image comes with the image prompt embeddings computed for it.
    fn render_group(
        &self,
        requests: &[&RenderRequest],
        indices: &[usize],
        progress: Progress<'_>,
    ) -> Result<Vec<(RgbImage, Option<Bytes>)>, RenderError> {
        let first = &requests[0].spec;
        let pipeline = self.pipeline_for(requests[0])?;
        let prepared = requests
            .iter()
            .map(|r| self.sample(&pipeline, r))
            .collect::<Result<Vec<_>, _>>()?;
        let computed: Vec<Option<Bytes>> = prepared
            .iter()
            .map(|p| p.computed_image_prompt.clone())
            .collect();
        let strength = prepared.first().and_then(|p| p.strength).unwrap_or(1.0);
        let size = (first.width as usize, first.height as usize);
        let guidance = self.guidance(requests, &prepared, size);
        let mut generation =
            GenerationRequest::new(prepared.into_iter().map(|p| p.sample).collect());
        generation.width = first.width as usize;
        generation.height = first.height as usize;
        generation.steps = first.steps as usize;
        generation.strength = strength;
        generation.scheduler = first
            .scheduler
            .as_deref()
            .map(SchedulerKind::from_name)
            .transpose()
            .map_err(|e| RenderError::Invalid(e.to_string()))?;
        generation.identity = guidance.map(|mut guidance| {
            let run_steps = generation.steps - generation.first_step().unwrap_or(0);
            guidance.repeats = default_repeats(run_steps);
            guidance
        });
        generation
            .validate()
            .map_err(|e| RenderError::Invalid(e.to_string()))?;
        let step_time = &reverie_shared::metrics::global().diffusion_step;
        let mut step_started = std::time::Instant::now();
        let result = pipeline.generate(&generation, &mut |step| {
            step_time
                .with_label_values::<&str>(&[])
                .observe(step_started.elapsed().as_secs_f64());
            step_started = std::time::Instant::now();
            for (sample, &index) in indices.iter().enumerate() {
                let (at, total) = (step.step as u32, step.total as u32);
                // The last step's result follows at once: no preview of it.
                let preview = (at < total && progress.wants_preview(index))
                    .then(|| step.preview(sample).ok())
                    .flatten();
                match preview {
                    Some(picture) => progress.step_with_preview(index, at, total, picture),
                    None => progress.step(index, at, total),
                }
            }
            ControlFlow::Continue(())
        });
        let generation = result.map_err(|e| RenderError::Failed(e.to_string()))?;
        for warning in &generation.warnings {
            tracing::warn!(%warning, "diffusion");
        }
        let decoded = pipeline
            .decode(&generation.latents)
            .and_then(|images| tensor_to_rgb(&images))
            .map_err(|e| RenderError::Failed(e.to_string()))?;
        Ok(decoded.into_iter().zip(computed).collect())
    }

    /// The job as one sample, with the init picture it starts from and that picture's strength.
    fn sample(
        &self,
        pipeline: &StableDiffusion,
        request: &RenderRequest,
    ) -> Result<PreparedSample, RenderError> {
        let spec = &request.spec;
        let mut sample = SampleSpec::new(prompt_text(request), spec.seed, f64::from(spec.guidance));
        if !spec.negative_prompt.is_empty() {
            sample.negative_prompt = Some(spec.negative_prompt.clone());
        }
        let guided = self.guides(request);
        if guided {
            sample.identity_strength = f64::from(spec.identity_strength);
        }
        let (image_prompt, computed_image_prompt) = match self.image_prompt(pipeline, request)? {
            Some((prompt, computed)) => (Some(prompt), computed),
            None => (None, None),
        };
        sample.image_prompt = image_prompt;
        let Some((picture, mask, strength)) = init_picture(request, guided)? else {
            return Ok(PreparedSample {
                sample,
                strength: None,
                init: None,
                computed_image_prompt,
            });
        };
        let device = pipeline.device();
        sample.init_image =
            Some(rgb_to_tensor(&picture, device).map_err(|e| RenderError::Failed(e.to_string()))?);
        if let Some(mask) = mask {
            sample.mask = Some(
                mask_to_tensor(&mask, device).map_err(|e| RenderError::Failed(e.to_string()))?,
            );
        }
        Ok(PreparedSample {
            sample,
            strength: Some(strength),
            init: Some(picture),
            computed_image_prompt,
        })
    }

    /// The job's image prompt: its first subject photo (around the face where it has one) through
    /// the model's IP-Adapter at the job's scale; `None` when the job asks for none or the model
    /// has no adapter. The embeddings come from the farm's cache when the runner found them there
    /// (nothing to write back); otherwise from this worker's own, or computed, and returned as the
    /// cache keeps them for the runner to write.
    fn image_prompt(
        &self,
        pipeline: &StableDiffusion,
        request: &RenderRequest,
    ) -> Result<Option<(ImagePrompt, Option<Bytes>)>, RenderError> {
        let (Some(source), Some(adapter)) = (self.source_of(request), pipeline.ip_adapter()) else {
            return Ok(None);
        };
        let scale = f64::from(request.spec.adapters.image_prompt_scale);
        if let Some(embeds) = self.read_from_farm_cache(request, adapter, pipeline.device()) {
            return Ok(Some((ImagePrompt { embeds, scale }, None)));
        }
        let failed = |e: &dyn std::fmt::Display| RenderError::Failed(format!("image prompt: {e}"));
        let kept = self.kept_image_prompt(&source);
        let positive = match kept {
            Some(positive) => positive,
            None => {
                let [left, top, width, height] = source.crop;
                let (_, photo) =
                    first_subject(request).ok_or_else(|| failed(&"no subject photo"))?;
                let picture = photo.crop_imm(left, top, width, height).to_rgb8();
                let fresh = pipeline
                    .encode_image_prompt(&picture)
                    .map_err(|e| failed(&e))?;
                let positive = as_cached(&fresh.positive).map_err(|e| failed(&e))?;
                self.keep_image_prompt(source, &positive);
                positive
            }
        };
        let bytes = to_cached(&positive).map_err(|e| failed(&e))?;
        let embeds = adapter.embeds_of(positive).map_err(|e| failed(&e))?;
        Ok(Some((ImagePrompt { embeds, scale }, Some(bytes))))
    }

    /// The embeddings the runner read from the farm's cache for `request`, when they fit the
    /// adapter (an unreadable or misfit entry is said and computed again).
    fn read_from_farm_cache(
        &self,
        request: &RenderRequest,
        adapter: &reverie_diffusion::ip_adapter::IpAdapter,
        device: &Device,
    ) -> Option<reverie_diffusion::ip_adapter::ImagePromptEmbeds> {
        let bytes = request.cached_image_prompt.as_deref()?;
        let Some(positive) = from_cached(bytes, device) else {
            tracing::warn!("cached image prompt unreadable; computing it again");
            return None;
        };
        match adapter.embeds_of(positive) {
            Ok(embeds) => Some(embeds),
            Err(error) => {
                tracing::warn!(%error, "cached image prompt unusable; computing it again");
                None
            }
        }
    }

    /// A positive this worker kept, as f32.
    fn kept_image_prompt(&self, source: &ImagePromptSource) -> Option<Tensor> {
        let kept = self
            .image_prompts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(source)
            .cloned()?;
        kept.to_dtype(DType::F32).ok()
    }

    /// Keeps a positive (already through f16) as f16, half the memory.
    fn keep_image_prompt(&self, source: ImagePromptSource, positive: &Tensor) {
        if let Ok(half) = positive.to_dtype(DType::F16) {
            self.image_prompts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .put(source, half);
        }
    }

    /// What `request`'s image prompt reads: its first subject photo, when it asks for an image
    /// prompt and this worker's models carry an IP-Adapter.
    fn source_of(&self, request: &RenderRequest) -> Option<ImagePromptSource> {
        let adapter = self.ip_adapter.as_ref()?;
        if request.spec.adapters.image_prompt_scale <= 0.0 {
            return None;
        }
        let (reference, photo) = first_subject(request)?;
        Some(ImagePromptSource {
            adapter_identity: adapter.identity.clone(),
            photo: reference.photo.clone(),
            crop: image_prompt_crop(photo.width(), photo.height(), reference.face_box),
        })
    }

    /// Identity guidance for a sub-batch: each guided sample's people, anchored on its init
    /// picture (the composite, where each planned face is a real face); `None` when no sample is
    /// guided.
    fn guidance(
        &self,
        requests: &[&RenderRequest],
        prepared: &[PreparedSample],
        size: (usize, usize),
    ) -> Option<IdentityGuidance> {
        let faces = self.faces.as_ref()?;
        if !requests.iter().any(|r| self.guides(r)) {
            return None;
        }
        let targets = requests
            .iter()
            .map(|r| match self.guides(r) {
                true => r.identity.clone(),
                false => Vec::new(),
            })
            .collect();
        let inits: Vec<Option<&RgbImage>> = prepared.iter().map(|p| p.init.as_ref()).collect();
        Some(IdentityGuide::anchored(faces, targets, &inits, size).into_guidance())
    }
}

/// Image prompt embeddings a worker keeps: an IP-Adapter Plus on ViT-H's are 650 KB each in f16,
/// a plain adapter's 2 KB.
const IMAGE_PROMPTS_KEPT: NonZeroUsize = match NonZeroUsize::new(64) {
    Some(n) => n,
    None => NonZeroUsize::MIN,
};

/// A job's first subject photo, the one its image prompt reads.
fn first_subject(
    request: &RenderRequest,
) -> Option<&(reverie_shared::jobs::PhotoRef, image::DynamicImage)> {
    request
        .photos
        .iter()
        .find(|(reference, _)| reference.role == ReferenceRole::Subject)
}

/// One job ready for the pipeline.
struct PreparedSample {
    sample: SampleSpec,
    /// The img2img strength (`None` for text-to-image).
    strength: Option<f64>,
    init: Option<RgbImage>,
    /// Image prompt embeddings computed for it, as the cache keeps them.
    computed_image_prompt: Option<Bytes>,
}

impl Renderer for DiffusionRenderer {
    fn kind(&self) -> RendererKind {
        RendererKind::Diffusion
    }

    fn render_batch(
        &self,
        requests: &[RenderRequest],
        progress: Progress<'_>,
    ) -> Vec<Result<RenderedImage, RenderError>> {
        let mut results: Vec<Option<Result<RenderedImage, RenderError>>> =
            (0..requests.len()).map(|_| None).collect();
        let mut groups: BTreeMap<(String, bool, u32), Vec<usize>> = BTreeMap::new();
        for (index, request) in requests.iter().enumerate() {
            match self.check_model(request) {
                Ok(()) => {
                    let (init, strength) = group_key(request, self.guides(request));
                    let loras = request.spec.adapters.lora_key();
                    groups
                        .entry((loras, init, strength))
                        .or_default()
                        .push(index)
                }
                Err(error) => results[index] = Some(Err(error)),
            }
        }
        for indices in groups.values() {
            let members: Vec<&RenderRequest> = indices.iter().map(|&i| &requests[i]).collect();
            match self.render_group(&members, indices, progress) {
                Ok(images) => {
                    for (&index, (image, computed)) in indices.iter().zip(images) {
                        let mut rendered = self.rendered(&requests[index], image);
                        rendered.computed_image_prompt = computed;
                        results[index] = Some(Ok(rendered));
                    }
                }
                Err(error) => {
                    for &index in indices {
                        results[index] = Some(Err(error.clone()));
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(RenderError::Failed("not rendered".into()))))
            .collect()
    }

    fn image_prompt_source(&self, request: &RenderRequest) -> Option<ImagePromptSource> {
        self.source_of(request)
    }
}

impl DiffusionRenderer {
    fn rendered(&self, request: &RenderRequest, image: RgbImage) -> RenderedImage {
        let scheduler = request
            .spec
            .scheduler
            .clone()
            .unwrap_or_else(|| self.pipeline.default_scheduler().name().to_string());
        let mut details = BTreeMap::from([
            ("model".to_string(), self.name.clone()),
            ("scheduler".to_string(), scheduler),
            ("text".to_string(), prompt_text(request)),
        ]);
        let guided = self.guides(request);
        if let Some(strength) = init_picture_strength(request, guided) {
            details.insert("strength".to_string(), strength.to_string());
        }
        if let Some(source) = self.source_of(request) {
            details.insert(IMAGE_PROMPT_DETAIL.to_string(), source.photo.to_string());
            details.insert(
                IMAGE_PROMPT_ADAPTER_DETAIL.to_string(),
                source.adapter_identity,
            );
        }

        if !request.identity.is_empty() {
            let (how, strength) = match guided {
                true => (
                    "restyled whole, faces held by identity guidance",
                    request.spec.identity_strength,
                ),
                false => ("subjects' pixels kept, the rest repainted", 0.0),
            };
            details.insert("subjects".to_string(), how.to_string());
            details.insert("identity_strength".to_string(), strength.to_string());
        }
        RenderedImage {
            image,
            model_hash: Some(self.model.identity.clone()),
            details,
            computed_image_prompt: None,
        }
    }
}
