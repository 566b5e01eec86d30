//! AutoencoderKL: the VAE that maps images to Stable Diffusion latents and back.

mod attention;
mod coders;
mod config;

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{Conv2d, Module};

pub use config::VaeConfig;

use crate::error::{DiffusionError, Result};
use crate::nn::conv1x1;
use crate::weights::WeightFile;
use coders::{Decoder, Encoder};

/// Weight files tried in order inside a `vae/` folder.
const WEIGHT_FILES: [&str; 2] = [
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.fp16.safetensors",
];

/// The diagonal Gaussian the encoder predicts for each latent, both `[B, latent_channels, h, w]`.
#[derive(Debug, Clone)]
pub struct LatentDistribution {
    pub mean: Tensor,
    /// `exp(0.5 * clamp(logvar, -30, 20))`, as diffusers computes it.
    pub std: Tensor,
}

impl LatentDistribution {
    /// One draw `mean + std * noise` with standard normal `noise` of the same shape.
    pub fn sample(&self, noise: &Tensor) -> Result<Tensor> {
        Ok((&self.mean + (&self.std * noise.to_dtype(self.std.dtype())?)?)?)
    }
}

/// diffusers' `AutoencoderKL` (SD 1.x/2.x/Turbo VAEs) on candle.
pub struct AutoencoderKl {
    config: VaeConfig,
    encoder: Encoder,
    decoder: Decoder,
    quant_conv: Option<Conv2d>,
    post_quant_conv: Option<Conv2d>,
    dtype: DType,
}

impl AutoencoderKl {
    /// Loads `config.json` and the safetensors weights of a diffusers `vae/` folder. With
    /// `force_upcast` in the config an f16 request runs in f32 instead (see [`Self::dtype`]).
    pub fn from_dir(dir: &Path, device: &Device, dtype: DType) -> Result<Self> {
        let config = VaeConfig::from_file(&dir.join("config.json"))?;
        let weights_path = WEIGHT_FILES
            .iter()
            .map(|name| dir.join(name))
            .find(|path| path.is_file())
            .unwrap_or_else(|| dir.join(WEIGHT_FILES[0]));
        Self::load(config, &weights_path, device, dtype)
    }

    /// Builds the model from an already-read config and one safetensors file.
    pub fn load(
        config: VaeConfig,
        weights_path: &Path,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        // Hand-built configs get the same checks; errors name the config next to the weights.
        config.validate(&weights_path.with_file_name("config.json"))?;
        let dtype = if config.force_upcast && dtype == DType::F16 {
            DType::F32
        } else {
            dtype
        };
        let weights = WeightFile::open(weights_path, device, dtype)?;
        let moments = 2 * config.latent_channels;
        let quant_conv = match config.use_quant_conv {
            true => Some(conv1x1(&weights, "quant_conv", moments, moments)?),
            false => None,
        };
        let latent = config.latent_channels;
        let post_quant_conv = match config.use_post_quant_conv {
            true => Some(conv1x1(&weights, "post_quant_conv", latent, latent)?),
            false => None,
        };
        Ok(Self {
            encoder: Encoder::load(&weights, &config)?,
            decoder: Decoder::load(&weights, &config)?,
            quant_conv,
            post_quant_conv,
            config,
            dtype,
        })
    }

    pub fn config(&self) -> &VaeConfig {
        &self.config
    }

    /// The dtype the VAE computes in and returns (f32 when `force_upcast` overrode f16).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Encodes images `[B, in_channels, H, W]` with values in [-1, 1] into the latent
    /// distribution (raw, not multiplied by `scaling_factor`).
    pub fn encode(&self, images: &Tensor) -> Result<LatentDistribution> {
        let images = self.checked_input(images, self.config.in_channels, "images")?;
        let mut moments = self.encoder.forward(&images)?;
        if let Some(conv) = &self.quant_conv {
            moments = conv.forward(&moments)?;
        }
        let latent = self.config.latent_channels;
        let mean = moments.narrow(1, 0, latent)?;
        let log_variance = moments.narrow(1, latent, latent)?.clamp(-30.0, 20.0)?;
        let std = log_variance.affine(0.5, 0.0)?.exp()?;
        Ok(LatentDistribution {
            mean: mean.contiguous()?,
            std,
        })
    }

    /// Decodes raw latents `[B, latent_channels, h, w]` (already divided by `scaling_factor`,
    /// see [`VaeConfig::unscale_latents`]) into images with values roughly in [-1, 1].
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        let mut latents = self.checked_input(latents, self.config.latent_channels, "latents")?;
        if let Some(conv) = &self.post_quant_conv {
            latents = conv.forward(&latents)?;
        }
        self.decoder.forward(&latents)
    }

    fn checked_input(&self, x: &Tensor, channels: usize, what: &str) -> Result<Tensor> {
        match x.dims() {
            &[batch, c, h, w] if c == channels && batch > 0 && h > 0 && w > 0 => {
                Ok(x.to_dtype(self.dtype)?)
            }
            dims => Err(DiffusionError::InvalidInput(format!(
                "VAE {what} must be [batch, {channels}, height, width], got {dims:?}"
            ))),
        }
    }
}
