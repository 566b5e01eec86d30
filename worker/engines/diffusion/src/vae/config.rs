//! The fields of a diffusers `AutoencoderKL` config (`vae/config.json`).

use std::path::{Path, PathBuf};

use candle_core::Tensor;
use serde::Deserialize;

use crate::error::{DiffusionError, Result};

/// `vae/config.json`. Fields diffusers would default are defaulted the same way; the block lists
/// and channel widths must be present.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VaeConfig {
    #[serde(default = "three")]
    pub in_channels: usize,
    #[serde(default = "three")]
    pub out_channels: usize,
    pub down_block_types: Vec<String>,
    pub up_block_types: Vec<String>,
    pub block_out_channels: Vec<usize>,
    #[serde(default = "one")]
    pub layers_per_block: usize,
    #[serde(default = "silu")]
    pub act_fn: String,
    #[serde(default = "four")]
    pub latent_channels: usize,
    #[serde(default = "thirty_two")]
    pub norm_num_groups: usize,
    #[serde(default = "sd_scaling_factor")]
    pub scaling_factor: f64,
    /// Subtracted before scaling (SD3/Flux-style VAEs); `None` in SD 1.x/2.x.
    #[serde(default)]
    pub shift_factor: Option<f64>,
    /// Run the VAE in f32 even when the pipeline asks for f16 (SD 1.x/2.x VAEs overflow in f16).
    #[serde(default = "yes")]
    pub force_upcast: bool,
    #[serde(default = "yes")]
    pub use_quant_conv: bool,
    #[serde(default = "yes")]
    pub use_post_quant_conv: bool,
    #[serde(default = "yes")]
    pub mid_block_add_attention: bool,
}

fn one() -> usize {
    1
}
fn three() -> usize {
    3
}
fn four() -> usize {
    4
}
fn thirty_two() -> usize {
    32
}
fn silu() -> String {
    "silu".to_string()
}
fn sd_scaling_factor() -> f64 {
    0.18215
}
fn yes() -> bool {
    true
}

/// Epsilon of every group norm in the VAE; diffusers hard-codes it, the config does not carry it.
pub(crate) const VAE_NORM_EPS: f64 = 1e-6;

const ENCODER_BLOCK: &str = "DownEncoderBlock2D";
const DECODER_BLOCK: &str = "UpDecoderBlock2D";

impl VaeConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let config: Self = crate::error::read_json(path)?;
        config.validate(path)?;
        Ok(config)
    }

    /// Rejects configs this implementation cannot run, naming the offending option.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let fail = |reason: String| DiffusionError::ModelConfig {
            path: PathBuf::from(path),
            reason,
        };
        let blocks = self.block_out_channels.len();
        if blocks == 0 || self.block_out_channels.contains(&0) {
            return Err(fail(format!(
                "block_out_channels {:?} must be non-empty and positive",
                self.block_out_channels
            )));
        }
        check_block_types(
            "down_block_types",
            &self.down_block_types,
            ENCODER_BLOCK,
            blocks,
        )
        .map_err(fail)?;
        check_block_types(
            "up_block_types",
            &self.up_block_types,
            DECODER_BLOCK,
            blocks,
        )
        .map_err(fail)?;
        if self.act_fn != "silu" {
            return Err(fail(format!(
                "act_fn `{}` is not supported (only silu)",
                self.act_fn
            )));
        }
        if self.layers_per_block == 0 {
            return Err(fail("layers_per_block must be at least 1".into()));
        }
        if self.in_channels == 0 || self.out_channels == 0 || self.latent_channels == 0 {
            return Err(fail(
                "in_channels, out_channels and latent_channels must be positive".into(),
            ));
        }
        let groups = self.norm_num_groups;
        if let Some(width) = self
            .block_out_channels
            .iter()
            .find(|width| groups == 0 || !width.is_multiple_of(groups))
        {
            return Err(fail(format!(
                "norm_num_groups {groups} does not divide block_out_channels entry {width}"
            )));
        }
        if !self.scaling_factor.is_finite() || self.scaling_factor == 0.0 {
            return Err(fail(format!(
                "scaling_factor {} must be finite and non-zero",
                self.scaling_factor
            )));
        }
        Ok(())
    }

    /// Latents as the denoiser sees them: `(raw - shift_factor) * scaling_factor`.
    pub fn scale_latents(&self, raw: &Tensor) -> Result<Tensor> {
        let shift = self.shift_factor.unwrap_or(0.0);
        Ok(raw.affine(self.scaling_factor, -shift * self.scaling_factor)?)
    }

    /// The inverse of [`Self::scale_latents`]: what [`decode`](super::AutoencoderKl::decode) takes.
    pub fn unscale_latents(&self, scaled: &Tensor) -> Result<Tensor> {
        let shift = self.shift_factor.unwrap_or(0.0);
        Ok(scaled.affine(1.0 / self.scaling_factor, shift)?)
    }

    /// How many times the encoder halves height and width.
    pub fn downsampling_steps(&self) -> usize {
        self.block_out_channels.len() - 1
    }
}

fn check_block_types(
    option: &str,
    types: &[String],
    supported: &str,
    blocks: usize,
) -> std::result::Result<(), String> {
    if types.len() != blocks {
        return Err(format!(
            "{option} has {} entries but block_out_channels has {blocks}",
            types.len()
        ));
    }
    match types.iter().find(|name| name.as_str() != supported) {
        Some(other) => Err(format!(
            "{option} entry `{other}` is not supported (only {supported})"
        )),
        None => Ok(()),
    }
}
