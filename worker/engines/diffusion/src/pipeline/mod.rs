//! Stable Diffusion 1.x / 2.x / Turbo pipelines over a diffusers folder.
//!
//! `StableDiffusion` loads every component once; wrap it in an `Arc` and run any number of
//! `GenerationRequest`s on it, from any thread. A request is a batch of samples that share the
//! size, the step count and the scheduler but each have their own prompt, negative prompt,
//! seed, guidance scale, init image and mask.

mod generate;
pub mod guidance;
pub mod images;
mod request;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

pub use generate::{Generation, StepProgress};
pub use guidance::{GuidanceSteps, IdentityGuidance, ImageEnergy};
pub use request::{ExplicitNoise, GenerationRequest, SampleSpec, MAX_SIDE, MAX_STEPS};

use crate::clip::ClipTextEncoder;
use crate::error::{DiffusionError, Result};
use crate::schedulers::{SchedulerConfig, SchedulerKind};
use crate::tokenizer::ClipTokenizer;
use crate::unet::UNet2DConditionModel;
use crate::vae::AutoencoderKl;

/// `model_index.json`: the pipeline class and which library class each component is.
#[derive(Debug, Clone, Deserialize)]
struct ModelIndex {
    #[serde(rename = "_class_name")]
    class_name: String,
    #[serde(flatten)]
    components: std::collections::BTreeMap<String, serde_json::Value>,
}

/// The pipeline classes whose folders this loader understands.
const SUPPORTED_PIPELINES: [&str; 4] = [
    "StableDiffusionPipeline",
    "StableDiffusionImg2ImgPipeline",
    "StableDiffusionInpaintPipeline",
    "StableDiffusionPipelineSafe",
];

/// A whole Stable Diffusion checkpoint, loaded once.
pub struct StableDiffusion {
    dir: PathBuf,
    tokenizer: ClipTokenizer,
    text_encoder: ClipTextEncoder,
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
        if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
            return Err(DiffusionError::InvalidInput(format!(
                "dtype {dtype:?} is not one of f32, f16, bf16"
            )));
        }
        Self::check_model_index(dir)?;
        let scheduler_path = dir.join("scheduler").join("scheduler_config.json");
        #[derive(Deserialize)]
        struct SchedulerClass {
            #[serde(rename = "_class_name", default)]
            class_name: String,
        }
        let class: SchedulerClass = read_json(&scheduler_path)?;
        let unet = UNet2DConditionModel::from_dir(&dir.join("unet"), device, dtype)?;
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
            tokenizer: ClipTokenizer::from_dir(&dir.join("tokenizer"))?,
            text_encoder: ClipTextEncoder::from_dir(&dir.join("text_encoder"), device)?,
            unet,
            vae: AutoencoderKl::from_dir(&dir.join("vae"), device, dtype)?,
            scheduler_config: SchedulerConfig::from_file(&scheduler_path)?,
            default_scheduler: scheduler_for_class(&class.class_name),
            device: device.clone(),
            dtype,
        })
    }

    fn check_model_index(dir: &Path) -> Result<()> {
        let path = dir.join("model_index.json");
        let index: ModelIndex = read_json(&path)?;
        let problem = |reason: String| {
            Err(DiffusionError::ModelConfig {
                path: path.clone(),
                reason,
            })
        };
        if !SUPPORTED_PIPELINES.contains(&index.class_name.as_str()) {
            return problem(format!(
                "pipeline {} is not supported (Stable Diffusion 1.x/2.x/Turbo folders are)",
                index.class_name
            ));
        }
        for component in ["unet", "vae", "text_encoder", "tokenizer", "scheduler"] {
            if !index.components.contains_key(component) {
                return problem(format!("no `{component}` component"));
            }
        }
        Ok(())
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
        &self.tokenizer
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

    /// `(prompts, tokens, hidden)` last hidden states in the UNet's dtype, one row per prompt;
    /// each distinct prompt is encoded once. Prompts longer than the tokenizer's limit are cut
    /// (a warning goes to `warnings`).
    pub fn encode_prompts(&self, prompts: &[&str], warnings: &mut Vec<String>) -> Result<Tensor> {
        let mut distinct: Vec<&str> = Vec::new();
        let rows: Vec<u32> = prompts
            .iter()
            .map(|prompt| {
                let row = distinct
                    .iter()
                    .position(|d| d == prompt)
                    .unwrap_or_else(|| {
                        distinct.push(prompt);
                        distinct.len() - 1
                    });
                row as u32
            })
            .collect();
        let limit = self.tokenizer.max_length();
        let mut ids = Vec::with_capacity(distinct.len() * limit);
        for prompt in &distinct {
            let unpadded = self.tokenizer.encode_unpadded(prompt).len();
            if unpadded > limit {
                let message = format!(
                    "prompt of {unpadded} tokens cut to {limit}: \"{}\"",
                    prompt.chars().take(60).collect::<String>()
                );
                tracing::warn!("{message}");
                warnings.push(message);
            }
            ids.extend(self.tokenizer.encode(prompt).ids);
        }
        let ids = Tensor::from_vec(ids, (distinct.len(), limit), &self.device)?;
        let encoded = self.text_encoder.forward(&ids)?.last_hidden_state;
        let rows = Tensor::new(rows, &self.device)?;
        Ok(encoded.index_select(&rows, 0)?.to_dtype(self.dtype)?)
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
