//! Stable Diffusion 1.x / 2.x / XL (and Turbo) pipelines over a diffusers folder.
//!
//! `StableDiffusion` loads every component once; wrap it in an `Arc` and run any number of
//! `GenerationRequest`s on it, from any thread. A request is a batch of samples that share the
//! size, the step count and the scheduler but each have their own prompt, negative prompt,
//! seed, guidance scale, init image and mask.

mod generate;
pub mod guidance;
pub mod images;
mod request;
mod text;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

pub use generate::{Generation, StepProgress};
pub use guidance::{GuidanceSteps, IdentityGuidance, ImageEnergy};
pub use request::{
    ExplicitNoise, GenerationRequest, MicroConditioning, SampleSpec, MAX_SIDE, MAX_STEPS,
};
pub use text::{EncodedPrompts, ModelFamily, PromptText, TextConditioner};

use crate::clip::ClipTextEncoder;
use crate::error::{DiffusionError, Result};
use crate::ip_adapter::{ImagePromptEmbeds, IpAdapter};
use crate::lora::{deltas_for, LoraFile, LoraSpec, LoraTarget};
use crate::schedulers::{SchedulerConfig, SchedulerKind};
use crate::tokenizer::ClipTokenizer;
use crate::unet::{UNet2DConditionModel, UNetConfig};
use crate::vae::AutoencoderKl;
use crate::weights::WeightFile;

/// `model_index.json`: the pipeline class and which library class each component is.
#[derive(Debug, Clone, Deserialize)]
struct ModelIndex {
    #[serde(rename = "_class_name")]
    class_name: String,
    /// SDXL: no negative prompt means zero negative embeddings (diffusers' default true).
    #[serde(default = "default_true")]
    force_zeros_for_empty_prompt: bool,
    /// SDXL refiner: conditioned on an aesthetic score instead of the target size.
    #[serde(default)]
    requires_aesthetics_score: bool,
    #[serde(flatten)]
    components: std::collections::BTreeMap<String, serde_json::Value>,
}

fn default_true() -> bool {
    true
}

/// The pipeline classes whose folders this loader understands.
const SUPPORTED_PIPELINES: [&str; 4] = [
    "StableDiffusionPipeline",
    "StableDiffusionImg2ImgPipeline",
    "StableDiffusionInpaintPipeline",
    "StableDiffusionPipelineSafe",
];

/// The SDXL pipeline classes (base, refiner, inpainting) whose folders this loader understands.
const SUPPORTED_XL_PIPELINES: [&str; 3] = [
    "StableDiffusionXLPipeline",
    "StableDiffusionXLImg2ImgPipeline",
    "StableDiffusionXLInpaintPipeline",
];

/// What a checkpoint is loaded with besides its own folder.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Adapters {
    /// LoRAs fused into the UNet and text encoder weights, in order.
    pub loras: Vec<LoraSpec>,
    /// An IP-Adapter file (its `image_encoder/` beside it) for image prompts.
    pub ip_adapter: Option<PathBuf>,
}

/// A whole Stable Diffusion checkpoint, loaded once, with its adapters (if any).
pub struct StableDiffusion {
    dir: PathBuf,
    text: TextConditioner,
    adapters: Adapters,
    ip_adapter: Option<IpAdapter>,
    unet: UNet2DConditionModel,
    vae: AutoencoderKl,
    scheduler_config: SchedulerConfig,
    default_scheduler: SchedulerKind,
    device: Device,
    dtype: DType,
}

impl std::fmt::Debug for StableDiffusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StableDiffusion")
            .field("dir", &self.dir)
            .field("dtype", &self.dtype)
            .field("default_scheduler", &self.default_scheduler)
            .finish_non_exhaustive()
    }
}

use crate::error::read_json;

/// The scheduler a checkpoint's `scheduler_config.json` names, where this crate has it.
/// Classes we lack (PNDM, the SD 1.x default) fall back to Euler, the common replacement.
pub fn scheduler_for_class(class_name: &str) -> SchedulerKind {
    match class_name {
        "EulerAncestralDiscreteScheduler" => SchedulerKind::EulerAncestral,
        "DDIMScheduler" => SchedulerKind::Ddim,
        "DPMSolverMultistepScheduler" => SchedulerKind::DpmSolverPp2m,
        "LCMScheduler" => SchedulerKind::Lcm,
        _ => SchedulerKind::Euler,
    }
}

impl StableDiffusion {
    /// Loads a diffusers folder: `model_index.json`, `unet/`, `vae/`, `text_encoder/`,
    /// `tokenizer/`, `scheduler/`. The UNet and VAE run in `dtype`; the text encoder in f32
    /// (its output is cast), since it runs once per prompt and f16 CLIP loses precision.
    pub fn from_dir(dir: &Path, device: &Device, dtype: DType) -> Result<Self> {
        Self::from_dir_with(dir, device, dtype, &Adapters::default())
    }

    /// [`Self::from_dir`] with LoRAs fused into the UNet and text encoder weights and an
    /// IP-Adapter attached to the UNet's cross-attention.
    pub fn from_dir_with(
        dir: &Path,
        device: &Device,
        dtype: DType,
        adapters: &Adapters,
    ) -> Result<Self> {
        let loras = &adapters.loras;
        if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
            return Err(DiffusionError::InvalidInput(format!(
                "dtype {dtype:?} is not one of f32, f16, bf16"
            )));
        }
        let family = Self::check_model_index(dir)?;
        let files = loras
            .iter()
            .map(LoraSpec::open)
            .collect::<Result<Vec<_>>>()?;
        let weighted: Vec<(&LoraFile, f64)> = files
            .iter()
            .zip(loras)
            .map(|(f, s)| (f, s.weight))
            .collect();
        let scheduler_path = dir.join("scheduler").join("scheduler_config.json");
        #[derive(Deserialize)]
        struct SchedulerClass {
            #[serde(rename = "_class_name", default)]
            class_name: String,
        }
        let class: SchedulerClass = read_json(&scheduler_path)?;
        let mut unet = Self::load_unet(&dir.join("unet"), family, &weighted, device, dtype)?;
        let ip_adapter = adapters
            .ip_adapter
            .as_deref()
            .map(|file| {
                let adapter = IpAdapter::load(file, device, dtype)?;
                adapter.attach_to(&mut unet)?;
                Ok::<_, DiffusionError>(adapter)
            })
            .transpose()?;
        let unet_channels = unet.config().in_channels;
        if unet_channels != 4 {
            return Err(DiffusionError::ModelConfig {
                path: dir.join("unet").join("config.json"),
                reason: format!(
                    "UNet takes {unet_channels} input channels; only 4-channel UNets are \
                     supported (inpainting-specific 9-channel models are not)"
                ),
            });
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            text: TextConditioner::load(dir, family, &weighted, device)?,
            adapters: adapters.clone(),
            ip_adapter,
            unet,
            vae: AutoencoderKl::from_dir(&dir.join("vae"), device, dtype)?,
            scheduler_config: SchedulerConfig::from_file(&scheduler_path)?,
            default_scheduler: scheduler_for_class(&class.class_name),
            device: device.clone(),
            dtype,
        })
    }

    /// Checks that `lora` fits the model in `dir` (every module it names exists, every update has its
    /// layer's shape) without loading the model: the weight files are only mapped and read where
    /// the LoRA touches them.
    pub fn check_lora(dir: &Path, lora: &LoraFile) -> Result<()> {
        let family = Self::check_model_index(dir)?;
        let device = Device::Cpu;
        for target in lora.targets() {
            let weights = match target {
                LoraTarget::Unet => WeightFile::open(
                    &crate::unet::weights_path(&dir.join("unet")),
                    &device,
                    DType::F32,
                )?,
                LoraTarget::TextEncoder | LoraTarget::TextEncoder2 => {
                    let folder = dir.join(target.folder());
                    let used = match family {
                        ModelFamily::Xl { refiner: true, .. } => target == LoraTarget::TextEncoder2,
                        ModelFamily::Xl { .. } => true,
                        ModelFamily::StableDiffusion => target == LoraTarget::TextEncoder,
                    };
                    if !used || !folder.is_dir() {
                        return Err(DiffusionError::Lora {
                            path: lora.path().to_path_buf(),
                            reason: format!(
                                "it changes {} but {} has none: a LoRA for another base model?",
                                target.folder(),
                                dir.display()
                            ),
                        });
                    }
                    ClipTextEncoder::open_weights(&folder, &device)?
                }
            };
            deltas_for(&[(lora, 1.0)], target, &weights, &device)?;
        }
        Ok(())
    }

    /// The UNet with the LoRAs' deltas fused in; an SDXL UNet must take the added conditioning.
    fn load_unet(
        dir: &Path,
        family: ModelFamily,
        loras: &[(&LoraFile, f64)],
        device: &Device,
        dtype: DType,
    ) -> Result<UNet2DConditionModel> {
        let config_path = dir.join("config.json");
        let config = UNetConfig::from_file(&config_path)?;
        let weights = WeightFile::open(&crate::unet::weights_path(dir), device, dtype)?;
        let deltas = deltas_for(loras, LoraTarget::Unet, &weights, device)?;
        let unet = UNet2DConditionModel::from_weights(
            config,
            &config_path,
            weights.with_patches(deltas),
            dtype,
        )?;
        let is_xl = matches!(family, ModelFamily::Xl { .. });
        if unet.takes_added_conditions() != is_xl {
            return Err(DiffusionError::ModelConfig {
                path: config_path,
                reason: format!(
                    "an {} pipeline needs a UNet {} addition_embed_type `text_time`",
                    if is_xl { "SDXL" } else { "SD 1.x/2.x" },
                    if is_xl { "with" } else { "without" }
                ),
            });
        }
        Ok(unet)
    }

    /// Checks `model_index.json` names a supported pipeline with every component it needs, and
    /// says which family it is.
    fn check_model_index(dir: &Path) -> Result<ModelFamily> {
        let path = dir.join("model_index.json");
        let index: ModelIndex = read_json(&path)?;
        let problem = |reason: String| DiffusionError::ModelConfig {
            path: path.clone(),
            reason,
        };
        let class = index.class_name.as_str();
        let (family, components): (ModelFamily, &[&str]) = if SUPPORTED_PIPELINES.contains(&class) {
            let needed = &["unet", "vae", "text_encoder", "tokenizer", "scheduler"];
            (ModelFamily::StableDiffusion, needed)
        } else if SUPPORTED_XL_PIPELINES.contains(&class) {
            let refiner = index.requires_aesthetics_score;
            let family = ModelFamily::Xl {
                force_zeros_for_empty_prompt: index.force_zeros_for_empty_prompt,
                refiner,
            };
            let needed: &[&str] = if refiner {
                &["unet", "vae", "text_encoder_2", "tokenizer_2", "scheduler"]
            } else {
                &[
                    "unet",
                    "vae",
                    "text_encoder",
                    "tokenizer",
                    "text_encoder_2",
                    "tokenizer_2",
                    "scheduler",
                ]
            };
            (family, needed)
        } else {
            return Err(problem(format!(
                "pipeline {class} is not supported (Stable Diffusion 1.x/2.x/XL and Turbo folders \
                 are)"
            )));
        };
        for component in components {
            // diffusers writes `[null, null]` for a component a pipeline does without.
            let present = index.components.get(*component).is_some_and(|value| {
                value
                    .as_array()
                    .is_some_and(|v| v.iter().all(|x| !x.is_null()))
            });
            if !present {
                return Err(problem(format!("no `{component}` component")));
            }
        }
        Ok(family)
    }

    /// SD 1.x / 2.x or SDXL (base or refiner).
    pub fn family(&self) -> ModelFamily {
        self.text.family()
    }

    /// Whether this is an SDXL refiner, which only refines images (img2img).
    pub fn is_refiner(&self) -> bool {
        matches!(self.family(), ModelFamily::Xl { refiner: true, .. })
    }

    /// The LoRAs fused into this model, in the order given.
    pub fn loras(&self) -> &[LoraSpec] {
        &self.adapters.loras
    }

    /// What the model was loaded with.
    pub fn adapters(&self) -> &Adapters {
        &self.adapters
    }

    /// The IP-Adapter, when the model was loaded with one.
    pub fn ip_adapter(&self) -> Option<&IpAdapter> {
        self.ip_adapter.as_ref()
    }

    /// The image prompt embeddings of a photo for this model's IP-Adapter.
    pub fn encode_image_prompt(&self, image: &image::RgbImage) -> Result<ImagePromptEmbeds> {
        let adapter = self.ip_adapter.as_ref().ok_or_else(|| {
            DiffusionError::InvalidInput(format!(
                "{} was loaded without an IP-Adapter",
                self.dir.display()
            ))
        })?;
        adapter.encode_image(image)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn default_scheduler(&self) -> SchedulerKind {
        self.default_scheduler
    }

    pub fn scheduler_config(&self) -> &SchedulerConfig {
        &self.scheduler_config
    }

    pub fn tokenizer(&self) -> &ClipTokenizer {
        self.text.tokenizer()
    }

    /// The dtype the VAE decodes in (f32 when the model's config forces the upcast). Identity
    /// guidance differentiates the decoder and needs f32.
    pub fn vae_dtype(&self) -> DType {
        self.vae.dtype()
    }

    /// Whether identity guidance can run on this model (its VAE decodes in f32).
    pub fn supports_identity_guidance(&self) -> bool {
        self.vae.dtype() == DType::F32
    }

    /// The VAE's latent scaling factor (0.18215 for SD 1.x).
    pub fn scaling_factor(&self) -> f64 {
        self.vae.config().scaling_factor
    }

    /// `(prompts, tokens, hidden)` text embeddings in the UNet's dtype, one row per prompt (each
    /// distinct prompt encoded once). Prompts longer than the tokenizer's limit are cut (a warning
    /// goes to `warnings`).
    pub fn encode_prompts(&self, prompts: &[&str], warnings: &mut Vec<String>) -> Result<Tensor> {
        let texts: Vec<PromptText<'_>> = prompts.iter().map(|p| PromptText::Text(p)).collect();
        let encoded = self.text.encode(&texts, warnings, &self.device)?;
        Ok(encoded.context.to_dtype(self.dtype)?)
    }

    /// Images `(B, 3, H, W)` in [-1, 1] (f32) from final latents `(B, 4, H/8, W/8)` (unscaled
    /// first: `latents / scaling_factor`), decoded
    /// one sample at a time to bound the VAE's memory.
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        let batch = latents.dim(0)?;
        let images = (0..batch)
            .map(|b| {
                let one = self
                    .vae
                    .config()
                    .unscale_latents(&latents.narrow(0, b, 1)?)?;
                Ok(self
                    .vae
                    .decode(&one.to_dtype(self.dtype)?)?
                    .to_dtype(DType::F32)?)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&images, 0)?)
    }

    /// Scaled init latents `scaling_factor * (mean + std * noise)` of one `(1, 3, H, W)` image
    /// (minus `shift_factor` first, for VAEs that have one).
    fn encode_image(&self, image: &Tensor, noise: &Tensor) -> Result<Tensor> {
        let image = image.to_device(&self.device)?.to_dtype(self.dtype)?;
        let posterior = self.vae.encode(&image)?;
        let mean = posterior.mean.to_dtype(DType::F32)?;
        let std = posterior.std.to_dtype(DType::F32)?;
        let sample = (mean + (std * noise)?)?;
        self.vae.config().scale_latents(&sample)
    }
}
