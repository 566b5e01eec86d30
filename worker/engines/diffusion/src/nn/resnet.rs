//! diffusers' `ResnetBlock2D` with the default ("add the time embedding") conditioning.

use candle_core::Tensor;
use candle_nn::{Conv2d, GroupNorm, Linear, Module};

use super::{conv1x1, conv3x3, group_norm, join, linear};
use crate::error::{DiffusionError, Result};
use crate::weights::WeightFile;

/// The sizes and constants of one residual block, all read from the model config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResnetConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    /// Width of the time embedding, or `None` for blocks without one (the VAE's).
    pub temb_channels: Option<usize>,
    /// Groups of both group norms (`norm_num_groups` / `resnet_groups`).
    pub groups: usize,
    /// Epsilon of both group norms (`norm_eps` / `resnet_eps`).
    pub eps: f64,
    /// The block output is divided by this (1.0 in every SD model).
    pub output_scale_factor: f64,
}

impl ResnetConfig {
    /// A block with no time embedding and an output scale of 1.
    pub fn new(in_channels: usize, out_channels: usize, groups: usize, eps: f64) -> Self {
        Self {
            in_channels,
            out_channels,
            temb_channels: None,
            groups,
            eps,
            output_scale_factor: 1.0,
        }
    }

    /// The same block, conditioned on a time embedding of `channels` features.
    pub fn with_temb(self, channels: usize) -> Self {
        Self {
            temb_channels: Some(channels),
            ..self
        }
    }
}

/// `norm1 -> silu -> conv1 (+ time_emb_proj(silu(temb))) -> norm2 -> silu -> conv2`, added to the
/// input (through a 1x1 `conv_shortcut` when the channel count changes).
pub struct ResnetBlock2D {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    conv_shortcut: Option<Conv2d>,
    output_scale_factor: f64,
}

impl ResnetBlock2D {
    /// Loads `{prefix}.norm1`, `{prefix}.conv1`, ... as diffusers names them.
    pub fn load(weights: &WeightFile, prefix: &str, config: ResnetConfig) -> Result<Self> {
        let name = |child: &str| join(prefix, child);
        let (input, output) = (config.in_channels, config.out_channels);
        let time_emb_proj = match config.temb_channels {
            Some(temb) => Some(linear(weights, &name("time_emb_proj"), temb, output)?),
            None => None,
        };
        let conv_shortcut = if input != output {
            Some(conv1x1(weights, &name("conv_shortcut"), input, output)?)
        } else {
            None
        };
        Ok(Self {
            norm1: group_norm(weights, &name("norm1"), config.groups, input, config.eps)?,
            conv1: conv3x3(weights, &name("conv1"), input, output)?,
            time_emb_proj,
            norm2: group_norm(weights, &name("norm2"), config.groups, output, config.eps)?,
            conv2: conv3x3(weights, &name("conv2"), output, output)?,
            conv_shortcut,
            output_scale_factor: config.output_scale_factor,
        })
    }

    /// `x` is `[batch, in_channels, h, w]`; `temb` is `[batch, temb_channels]` and must be given
    /// exactly when the block was loaded with a time embedding.
    pub fn forward(&self, x: &Tensor, temb: Option<&Tensor>) -> Result<Tensor> {
        let h = self.conv1.forward(&self.norm1.forward(x)?.silu()?)?;
        let h = match (&self.time_emb_proj, temb) {
            (Some(proj), Some(temb)) => {
                let shift = proj.forward(&temb.silu()?)?.unsqueeze(2)?.unsqueeze(3)?;
                h.broadcast_add(&shift)?
            }
            (None, None) => h,
            (Some(_), None) => {
                return Err(DiffusionError::InvalidInput(
                    "resnet block expects a time embedding but got none".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(DiffusionError::InvalidInput(
                    "resnet block has no time_emb_proj but got a time embedding".into(),
                ))
            }
        };
        // Dropout sits here in training; inference skips it.
        let h = self.conv2.forward(&self.norm2.forward(&h)?.silu()?)?;
        let skip = match &self.conv_shortcut {
            Some(conv) => conv.forward(x)?,
            None => x.clone(),
        };
        let sum = (skip + h)?;
        if self.output_scale_factor == 1.0 {
            Ok(sum)
        } else {
            Ok(sum.affine(1.0 / self.output_scale_factor, 0.0)?)
        }
    }
}
