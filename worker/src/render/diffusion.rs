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
//! A batch shares model, size, steps and scheduler (the batch key); jobs that differ in init image
//! use or strength run as sub-batches. Each sample's noise comes from its own seed, so a job renders
//! the same image alone or in any batch.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use image::{DynamicImage, GrayImage, Luma, Rgb, RgbImage};
use reverie_diffusion::pipeline::guidance::default_repeats;
use reverie_diffusion::pipeline::images::{mask_to_tensor, rgb_to_tensor, tensor_to_rgb};
use reverie_diffusion::pipeline::{
    GenerationRequest, IdentityGuidance, SampleSpec, StableDiffusion,
};
use reverie_diffusion::registry::{resolve_local_dir, BlobFetcher, ModelRegistry, ResolvedModel};
use reverie_diffusion::SchedulerKind;
use reverie_paint::compose;
use reverie_shared::jobs::{ReferenceRole, RendererKind};
use reverie_shared::ports::store::SharedStore;
use tokio::io::AsyncWriteExt;

use reverie_faces::FaceModels;

use super::identity::IdentityGuide;
use super::{Progress, RenderError, RenderRequest, RenderedImage, Renderer};

/// Where a worker finds diffusion models: a folder path, or a name in the registry whose files live
/// in a local folder or under an S3 prefix (fetched once into `cache_dir`, checked by SHA-256).
pub struct ModelSource {
    pub registry: PathBuf,
    pub cache_dir: PathBuf,
    /// The farm's store: registry entries in other buckets are read through `other_bucket`.
    pub store: Option<SharedStore>,
    pub runtime: tokio::runtime::Handle,
}

impl ModelSource {
    /// A verified local folder for `model` (a folder path or a registered name). Blocking: call it
    /// off the async runtime.
    pub fn resolve(&self, model: &str) -> Result<ResolvedModel, RenderError> {
        let unavailable = |detail: String| RenderError::ModelUnavailable(detail);
        let as_path = Path::new(model);
        if as_path.is_dir() {
            return resolve_local_dir(as_path)
                .map_err(|e| unavailable(format!("model folder {model}: {e}")));
        }
        if !self.registry.is_file() {
            return Err(unavailable(format!(
                "model {model:?} is neither a folder nor registered: no registry at {} \
                 (set diffusion.registry; docs/diffusion.md)",
                self.registry.display()
            )));
        }
        let registry = ModelRegistry::from_file(&self.registry)
            .map_err(|e| unavailable(format!("model registry: {e}")))?;
        let fetcher = self.store.as_ref().map(|store| StoreFetcher {
            store: store.clone(),
            runtime: self.runtime.clone(),
        });
        registry
            .resolve(
                model,
                &self.cache_dir,
                fetcher.as_ref().map(|f| f as &dyn BlobFetcher),
            )
            .map_err(|e| unavailable(e.to_string()))
    }
}

/// Reads registry objects through the object store port (counted and timed like every store call).
struct StoreFetcher {
    store: SharedStore,
    runtime: tokio::runtime::Handle,
}

impl BlobFetcher for StoreFetcher {
    fn fetch(&self, bucket: &str, key: &str, destination: &Path) -> Result<(), String> {
        let store = self.store.other_bucket(bucket).map_err(|e| e.to_string())?;
        self.runtime.block_on(async move {
            let mut reader = store.reader(key).await.map_err(|e| e.to_string())?;
            let mut file = tokio::fs::File::create(destination)
                .await
                .map_err(|e| format!("{}: {e}", destination.display()))?;
            tokio::io::copy(&mut reader, &mut file)
                .await
                .map_err(|e| format!("s3://{bucket}/{key}: {e}"))?;
            file.flush().await.map_err(|e| e.to_string())
        })
    }
}

/// A device setting (`diffusion.device`, `reverie generate --device`): `cpu`, `cuda` or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceRequest {
    Cpu,
    Cuda(usize),
}

impl DeviceRequest {
    pub fn parse(name: &str) -> Result<DeviceRequest, String> {
        match name {
            "cpu" => Ok(DeviceRequest::Cpu),
            "cuda" => Ok(DeviceRequest::Cuda(0)),
            other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(ordinal)) => Ok(DeviceRequest::Cuda(ordinal)),
                _ => Err(format!("unknown device {other:?} (cpu, cuda or cuda:N)")),
            },
        }
    }
}

/// The device a process runs on, and when CUDA was asked for but cannot be had here, the one line
/// that says so (the caller logs or prints it once).
#[derive(Debug)]
pub struct ChosenDevice {
    pub device: Device,
    pub fallback: Option<String>,
}

/// Opens the device `name` asks for. CUDA that cannot be opened (no driver, no GPU, a build without
/// the cuda feature) falls back to the CPU with one line saying why, so one binary serves GPU and CPU
/// machines alike; only an unknown name is an error.
pub fn parse_device(name: &str) -> Result<ChosenDevice, String> {
    Ok(choose_device(DeviceRequest::parse(name)?, open_cuda))
}

/// The fallback decision, given how to try to open CUDA device `ordinal`.
pub fn choose_device(
    request: DeviceRequest,
    open_cuda: impl FnOnce(usize) -> Result<Device, String>,
) -> ChosenDevice {
    match request {
        DeviceRequest::Cpu => ChosenDevice {
            device: Device::Cpu,
            fallback: None,
        },
        DeviceRequest::Cuda(ordinal) => match open_cuda(ordinal) {
            Ok(device) => ChosenDevice {
                device,
                fallback: None,
            },
            Err(reason) => ChosenDevice {
                device: Device::Cpu,
                fallback: Some(format!("CUDA unavailable ({reason}): running on the CPU")),
            },
        },
    }
}

/// Opens CUDA device `ordinal`, or says why not.
#[cfg(feature = "cuda")]
pub fn open_cuda(ordinal: usize) -> Result<Device, String> {
    use candle_core::cuda::cudarc::driver::sys as driver;
    // cudarc loads libcuda with dlopen at first use (vendor/README.md) and panics when it is not
    // there, so look for it first: no driver is the common case on a CPU machine and gets a plain
    // reason instead of a panic message.
    // SAFETY: only tries to dlopen the driver library under cudarc's candidate names.
    if !unsafe { driver::is_culib_present() } {
        return Err("no NVIDIA driver: libcuda.so.1 not found".to_string());
    }
    // The driver is there; any other failure (no device, wrong ordinal, a missing cuBLAS or cuRAND
    // library, which cudarc also loads by panicking) is an error or a panic caught here.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let opened = std::panic::catch_unwind(|| Device::new_cuda(ordinal));
    std::panic::set_hook(previous);
    match opened {
        Ok(Ok(device)) => Ok(device),
        Ok(Err(error)) => Err(format!("device cuda:{ordinal}: {error}")),
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "CUDA initialisation panicked".to_string())),
    }
}

/// Opens CUDA device `ordinal`, or says why not.
#[cfg(not(feature = "cuda"))]
pub fn open_cuda(_ordinal: usize) -> Result<Device, String> {
    Err("this binary was built without the cuda feature".to_string())
}

/// `f32`, `f16` or `bf16`.
pub fn parse_dtype(name: &str) -> Result<DType, String> {
    match name {
        "f32" => Ok(DType::F32),
        "f16" => Ok(DType::F16),
        "bf16" => Ok(DType::BF16),
        other => Err(format!("unknown dtype {other:?} (f32, f16 or bf16)")),
    }
}

/// One loaded checkpoint serving every batch of this worker.
pub struct DiffusionRenderer {
    model: ResolvedModel,
    /// The name jobs use for it (the registry name or the folder given in the configuration).
    name: String,
    pipeline: StableDiffusion,
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
        let resolved = source.resolve(model)?;
        let pipeline = StableDiffusion::from_dir(&resolved.dir, device, dtype).map_err(|e| {
            RenderError::ModelUnavailable(format!(
                "loading {model} from {}: {e}",
                resolved.dir.display()
            ))
        })?;
        tracing::info!(model, identity = %resolved.identity, dir = %resolved.dir.display(), "diffusion model loaded");
        Ok(DiffusionRenderer {
            model: resolved,
            name: model.to_string(),
            pipeline,
            faces: None,
        })
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

    /// Renders requests that share size, steps, scheduler, init-image use and strength in one pass.
    fn render_group(
        &self,
        requests: &[&RenderRequest],
        indices: &[usize],
        progress: Progress<'_>,
    ) -> Result<Vec<RgbImage>, RenderError> {
        let first = &requests[0].spec;
        let prepared = requests
            .iter()
            .map(|r| self.sample(r))
            .collect::<Result<Vec<_>, _>>()?;
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
        let result = self.pipeline.generate(&generation, &mut |step| {
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
        let decoded = self
            .pipeline
            .decode(&generation.latents)
            .and_then(|images| tensor_to_rgb(&images))
            .map_err(|e| RenderError::Failed(e.to_string()))?;
        Ok(decoded)
    }

    /// The job as one sample, with the init picture it starts from and that picture's strength.
    fn sample(&self, request: &RenderRequest) -> Result<PreparedSample, RenderError> {
        let spec = &request.spec;
        let mut sample = SampleSpec::new(prompt_text(request), spec.seed, f64::from(spec.guidance));
        if !spec.negative_prompt.is_empty() {
            sample.negative_prompt = Some(spec.negative_prompt.clone());
        }
        let guided = self.guides(request);
        if guided {
            sample.identity_strength = f64::from(spec.identity_strength);
        }
        let Some((picture, mask, strength)) = init_picture(request, guided)? else {
            return Ok(PreparedSample {
                sample,
                strength: None,
                init: None,
            });
        };
        let device = self.pipeline.device();
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

/// One job ready for the pipeline.
struct PreparedSample {
    sample: SampleSpec,
    /// The img2img strength (`None` for text-to-image).
    strength: Option<f64>,
    init: Option<RgbImage>,
}

/// The model's text: the prompt (references already removed by the planner) and the style words.
fn prompt_text(request: &RenderRequest) -> String {
    let spec = &request.spec;
    [spec.prompt.trim(), spec.style.trim()]
        .into_iter()
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The init picture, its mask (white = repaint) and the strength, when the job has photos.
type InitPicture = (RgbImage, Option<GrayImage>, f64);

fn init_picture(request: &RenderRequest, guided: bool) -> Result<Option<InitPicture>, RenderError> {
    let Some(strength) = init_picture_strength(request, guided) else {
        return Ok(None);
    };
    let strength = f64::from(strength);
    let spec = &request.spec;
    let (width, height) = (spec.width.max(8), spec.height.max(8));
    let background = request
        .photos
        .iter()
        .find(|(reference, _)| reference.role == ReferenceRole::Background)
        .map(|(_, image)| {
            image.resize_to_fill(width, height, image::imageops::FilterType::Triangle)
        });
    let subjects = request.subjects();
    if subjects.is_empty() {
        return Ok(background.map(|b| (b.to_rgb8(), None, strength)));
    }
    let canvas = background.unwrap_or_else(|| {
        DynamicImage::ImageRgb8(RgbImage::from_pixel(width, height, Rgb([128, 128, 128])))
    });
    let composite = compose(&canvas, &subjects).map_err(|e| RenderError::Invalid(e.to_string()))?;
    if guided {
        // Restyled whole: no mask, guidance holds the faces.
        return Ok(Some((composite.image, None, strength)));
    }
    // Subjects are kept and the rest repainted; with no background photo the canvas is neutral (and
    // the strength 1: the whole schedule runs on it).
    let repaint = GrayImage::from_fn(composite.mask.width(), composite.mask.height(), |x, y| {
        Luma([255 - composite.mask.get_pixel(x, y)[0]])
    });
    Ok(Some((composite.image, Some(repaint), strength)))
}

/// Sub-batches: text-to-image jobs together, img2img jobs by strength (a pipeline run has one).
fn group_key(request: &RenderRequest, guided: bool) -> (bool, u32) {
    match init_picture_strength(request, guided) {
        None => (false, 0),
        Some(strength) => (true, strength.to_bits()),
    }
}

/// The img2img strength a job runs at: `None` for text-to-image; the job's strength for a
/// background and for a guided restyle; 1 for kept subjects on a blank canvas.
fn init_picture_strength(request: &RenderRequest, guided: bool) -> Option<f32> {
    let has = |role| request.photos.iter().any(|(r, _)| r.role == role);
    match (has(ReferenceRole::Background), has(ReferenceRole::Subject)) {
        (false, false) => None,
        (false, true) if !guided => Some(1.0),
        _ => Some(request.spec.strength.clamp(0.05, 1.0)),
    }
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
        let mut groups: BTreeMap<(bool, u32), Vec<usize>> = BTreeMap::new();
        for (index, request) in requests.iter().enumerate() {
            match self.check_model(request) {
                Ok(()) => groups
                    .entry(group_key(request, self.guides(request)))
                    .or_default()
                    .push(index),
                Err(error) => results[index] = Some(Err(error)),
            }
        }
        for indices in groups.values() {
            let members: Vec<&RenderRequest> = indices.iter().map(|&i| &requests[i]).collect();
            match self.render_group(&members, indices, progress) {
                Ok(images) => {
                    for (&index, image) in indices.iter().zip(images) {
                        results[index] = Some(Ok(self.rendered(&requests[index], image)));
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reverie_shared::ids::{PhotoId, ShardId};
    use reverie_shared::jobs::{PhotoRef, RenderSpec};

    fn reference(role: ReferenceRole) -> PhotoRef {
        PhotoRef {
            photo: PhotoId::of_bytes(&[role as u8]),
            shard: ShardId::new("s").unwrap(),
            offset: 0,
            length: 0,
            role,
            face_box: None,
            label: None,
        }
    }

    #[test]
    fn device_names_parse() {
        assert_eq!(DeviceRequest::parse("cpu"), Ok(DeviceRequest::Cpu));
        assert_eq!(DeviceRequest::parse("cuda"), Ok(DeviceRequest::Cuda(0)));
        assert_eq!(DeviceRequest::parse("cuda:3"), Ok(DeviceRequest::Cuda(3)));
        for bad in ["gpu", "cuda:", "cuda:x", "CPU"] {
            let error = DeviceRequest::parse(bad).unwrap_err();
            assert!(error.contains("cpu, cuda or cuda:N"), "{bad}: {error}");
        }
        assert!(parse_device("metal").is_err());
    }

    #[test]
    fn cuda_that_cannot_be_opened_falls_back_to_the_cpu_with_one_line() {
        let chosen = choose_device(DeviceRequest::Cuda(1), |ordinal| {
            assert_eq!(ordinal, 1);
            Err("no NVIDIA driver: libcuda.so.1 not found".to_string())
        });
        assert!(chosen.device.is_cpu());
        assert_eq!(
            chosen.fallback.as_deref(),
            Some("CUDA unavailable (no NVIDIA driver: libcuda.so.1 not found): running on the CPU")
        );
    }

    #[test]
    fn an_opened_device_or_the_cpu_asked_for_says_nothing() {
        let chosen = choose_device(DeviceRequest::Cuda(0), |_| Ok(Device::Cpu));
        assert!(chosen.fallback.is_none());
        let chosen = choose_device(DeviceRequest::Cpu, |_| panic!("CUDA is not tried for cpu"));
        assert!(chosen.device.is_cpu() && chosen.fallback.is_none());
    }

    /// On this machine (CI has no GPU) `cuda` ends on the CPU with the reason, whichever way the
    /// binary was built; with a GPU and the cuda feature it opens the GPU.
    #[test]
    fn cuda_on_this_machine_opens_or_falls_back() {
        let chosen = parse_device("cuda").expect("a known name");
        match &chosen.fallback {
            Some(line) => {
                assert!(chosen.device.is_cpu());
                assert!(line.starts_with("CUDA unavailable ("), "{line}");
                assert!(line.ends_with("): running on the CPU"), "{line}");
                assert!(!line.contains('\n'), "one line: {line}");
            }
            None => assert!(chosen.device.is_cuda()),
        }
    }

    fn request(photos: Vec<(PhotoRef, DynamicImage)>, strength: f32) -> RenderRequest {
        RenderRequest {
            spec: RenderSpec {
                renderer: RendererKind::Diffusion,
                prompt: "me at the beach".into(),
                negative_prompt: String::new(),
                style: "watercolour".into(),
                model: None,
                width: 64,
                height: 48,
                steps: 4,
                guidance: 1.0,
                scheduler: None,
                seed: 1,
                strength,
                palette_transfer: false,
                identity_strength: 0.0,
                best_of: 1,
            },
            photos,
            identity: Vec::new(),
        }
    }

    #[test]
    fn text_carries_the_style_words() {
        assert_eq!(
            prompt_text(&request(vec![], 0.5)),
            "me at the beach, watercolour"
        );
    }

    #[test]
    fn text_only_jobs_have_no_init_picture() {
        let job = request(vec![], 0.5);
        assert!(init_picture(&job, false).unwrap().is_none());
        assert_eq!(group_key(&job, false), (false, 0));
    }

    #[test]
    fn a_background_is_fitted_and_used_at_the_job_strength() {
        let photo = DynamicImage::ImageRgb8(RgbImage::from_pixel(300, 100, Rgb([9, 99, 199])));
        let job = request(vec![(reference(ReferenceRole::Background), photo)], 0.6);
        let (picture, mask, strength) = init_picture(&job, false).unwrap().unwrap();
        assert_eq!((picture.width(), picture.height()), (64, 48));
        assert_eq!(picture.get_pixel(10, 10).0, [9, 99, 199]);
        assert!(mask.is_none());
        assert!((strength - 0.6).abs() < 1e-6);
    }

    #[test]
    fn subjects_are_kept_and_the_rest_repainted() {
        let background = DynamicImage::ImageRgb8(RgbImage::from_pixel(64, 48, Rgb([40, 90, 160])));
        let person = DynamicImage::ImageRgb8(RgbImage::from_pixel(30, 40, Rgb([230, 40, 40])));
        let job = request(
            vec![
                (reference(ReferenceRole::Background), background),
                (reference(ReferenceRole::Subject), person),
            ],
            0.8,
        );
        let (picture, mask, _) = init_picture(&job, false).unwrap().unwrap();
        let mask = mask.expect("a mask");
        assert_eq!((mask.width(), mask.height()), (64, 48));
        let (mut kept_red, mut kept, mut repainted_blue) = (0, 0, 0);
        for (x, y, m) in mask.enumerate_pixels() {
            let p = picture.get_pixel(x, y).0;
            if m[0] < 128 {
                kept += 1;
                kept_red += usize::from(p[0] > 150 && p[2] < 110);
            } else if p == [40, 90, 160] {
                repainted_blue += 1;
            }
        }
        assert!(
            kept > 0 && kept_red * 10 >= kept * 8,
            "kept pixels are the subject"
        );
        assert!(
            repainted_blue > 0,
            "the scene around the subject is repainted"
        );
    }

    #[test]
    fn subjects_without_a_setting_use_the_whole_schedule() {
        let person = DynamicImage::ImageRgb8(RgbImage::from_pixel(30, 40, Rgb([230, 40, 40])));
        let job = request(vec![(reference(ReferenceRole::Subject), person)], 0.3);
        let (_, mask, strength) = init_picture(&job, false).unwrap().unwrap();
        assert!(mask.is_some());
        assert_eq!(strength, 1.0);
    }

    #[test]
    fn guided_subjects_are_restyled_whole_at_the_job_strength() {
        let person = DynamicImage::ImageRgb8(RgbImage::from_pixel(30, 40, Rgb([230, 40, 40])));
        let job = request(vec![(reference(ReferenceRole::Subject), person)], 0.3);
        let (picture, mask, strength) = init_picture(&job, true).unwrap().unwrap();
        assert!(mask.is_none(), "a guided restyle has no keep-mask");
        assert!((strength - 0.3).abs() < 1e-6);
        // The composite still carries the (colour-matched, so paler) red subject for img2img to
        // restyle on the grey canvas.
        assert!(picture
            .pixels()
            .any(|p| i32::from(p[0]) > i32::from(p[1]) + 30));
        assert_eq!(group_key(&job, true), (true, 0.3f32.to_bits()));
    }
}
