//! The encoder (image -> latent moments) and decoder (latents -> image) halves of AutoencoderKL.

use candle_core::Tensor;
use candle_nn::{Conv2d, GroupNorm, Module};

use super::attention::SpatialSelfAttention;
use super::config::{VaeConfig, VAE_NORM_EPS};
use crate::error::Result;
use crate::nn::{
    conv3x3, group_norm, Downsample2D, DownsamplePadding, ResnetBlock2D, ResnetConfig, Upsample2D,
};
use crate::weights::WeightFile;

fn resnet(
    weights: &WeightFile,
    prefix: &str,
    in_channels: usize,
    out_channels: usize,
    config: &VaeConfig,
) -> Result<ResnetBlock2D> {
    let block = ResnetConfig::new(
        in_channels,
        out_channels,
        config.norm_num_groups,
        VAE_NORM_EPS,
    );
    ResnetBlock2D::load(weights, prefix, block)
}

/// `layers` resnet blocks `{prefix}.resnets.{i}`, the first changing the channel count.
fn resnet_stack(
    weights: &WeightFile,
    prefix: &str,
    layers: usize,
    in_channels: usize,
    out_channels: usize,
    config: &VaeConfig,
) -> Result<Vec<ResnetBlock2D>> {
    (0..layers)
        .map(|i| {
            let input = if i == 0 { in_channels } else { out_channels };
            resnet(
                weights,
                &format!("{prefix}.resnets.{i}"),
                input,
                out_channels,
                config,
            )
        })
        .collect()
}

fn run_resnets(resnets: &[ResnetBlock2D], x: Tensor) -> Result<Tensor> {
    resnets
        .iter()
        .try_fold(x, |x, block| block.forward(&x, None))
}

/// `UNetMidBlock2D` without time embedding: resnet, (attention), resnet.
struct MidBlock {
    first: ResnetBlock2D,
    attention: Option<SpatialSelfAttention>,
    second: ResnetBlock2D,
}

impl MidBlock {
    fn load(
        weights: &WeightFile,
        prefix: &str,
        channels: usize,
        config: &VaeConfig,
    ) -> Result<Self> {
        let attention = if config.mid_block_add_attention {
            Some(SpatialSelfAttention::load(
                weights,
                &format!("{prefix}.attentions.0"),
                channels,
                config.norm_num_groups,
                VAE_NORM_EPS,
            )?)
        } else {
            None
        };
        Ok(Self {
            first: resnet(
                weights,
                &format!("{prefix}.resnets.0"),
                channels,
                channels,
                config,
            )?,
            attention,
            second: resnet(
                weights,
                &format!("{prefix}.resnets.1"),
                channels,
                channels,
                config,
            )?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = self.first.forward(x, None)?;
        if let Some(attention) = &self.attention {
            x = attention.forward(&x)?;
        }
        self.second.forward(&x, None)
    }
}

/// `DownEncoderBlock2D`: resnets, then a stride-2 convolution except in the last block.
struct DownBlock {
    resnets: Vec<ResnetBlock2D>,
    downsampler: Option<Downsample2D>,
}

/// `UpDecoderBlock2D`: resnets, then 2x upsampling except in the last block.
struct UpBlock {
    resnets: Vec<ResnetBlock2D>,
    upsampler: Option<Upsample2D>,
}

/// The convolutional tail shared by both halves: group norm, silu, 3x3 convolution.
struct OutputHead {
    norm: GroupNorm,
    conv: Conv2d,
}

impl OutputHead {
    fn load(
        weights: &WeightFile,
        prefix: &str,
        in_channels: usize,
        out_channels: usize,
        config: &VaeConfig,
    ) -> Result<Self> {
        Ok(Self {
            norm: group_norm(
                weights,
                &format!("{prefix}.conv_norm_out"),
                config.norm_num_groups,
                in_channels,
                VAE_NORM_EPS,
            )?,
            conv: conv3x3(
                weights,
                &format!("{prefix}.conv_out"),
                in_channels,
                out_channels,
            )?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.conv.forward(&self.norm.forward(x)?.silu()?)?)
    }
}

/// Image `[B, in_channels, H, W]` -> `[B, 2 * latent_channels, H/8, W/8]` (mean and log-variance).
pub(crate) struct Encoder {
    conv_in: Conv2d,
    down_blocks: Vec<DownBlock>,
    mid_block: MidBlock,
    head: OutputHead,
}

impl Encoder {
    pub(crate) fn load(weights: &WeightFile, config: &VaeConfig) -> Result<Self> {
        let widths = &config.block_out_channels;
        let mut down_blocks = Vec::with_capacity(widths.len());
        let mut input = widths[0];
        for (i, &output) in widths.iter().enumerate() {
            let prefix = format!("encoder.down_blocks.{i}");
            let is_last = i + 1 == widths.len();
            let downsampler = if is_last {
                None
            } else {
                Some(Downsample2D::load(
                    weights,
                    &format!("{prefix}.downsamplers.0"),
                    output,
                    output,
                    DownsamplePadding::RightBottom,
                )?)
            };
            down_blocks.push(DownBlock {
                resnets: resnet_stack(
                    weights,
                    &prefix,
                    config.layers_per_block,
                    input,
                    output,
                    config,
                )?,
                downsampler,
            });
            input = output;
        }
        Ok(Self {
            conv_in: conv3x3(weights, "encoder.conv_in", config.in_channels, widths[0])?,
            down_blocks,
            mid_block: MidBlock::load(weights, "encoder.mid_block", input, config)?,
            head: OutputHead::load(
                weights,
                "encoder",
                input,
                2 * config.latent_channels,
                config,
            )?,
        })
    }

    pub(crate) fn forward(&self, image: &Tensor) -> Result<Tensor> {
        let mut x = self.conv_in.forward(image)?;
        for block in &self.down_blocks {
            x = run_resnets(&block.resnets, x)?;
            if let Some(downsampler) = &block.downsampler {
                x = downsampler.forward(&x)?;
            }
        }
        self.head.forward(&self.mid_block.forward(&x)?)
    }
}

/// Latents `[B, latent_channels, h, w]` -> image `[B, out_channels, 8h, 8w]`.
pub(crate) struct Decoder {
    conv_in: Conv2d,
    mid_block: MidBlock,
    up_blocks: Vec<UpBlock>,
    head: OutputHead,
}

impl Decoder {
    pub(crate) fn load(weights: &WeightFile, config: &VaeConfig) -> Result<Self> {
        let widths: Vec<usize> = config.block_out_channels.iter().rev().copied().collect();
        let mut up_blocks = Vec::with_capacity(widths.len());
        let mut input = widths[0];
        for (i, &output) in widths.iter().enumerate() {
            let prefix = format!("decoder.up_blocks.{i}");
            let is_last = i + 1 == widths.len();
            let upsampler = if is_last {
                None
            } else {
                Some(Upsample2D::load(
                    weights,
                    &format!("{prefix}.upsamplers.0"),
                    output,
                    output,
                )?)
            };
            // The decoder runs one more resnet per block than the encoder.
            let layers = config.layers_per_block + 1;
            up_blocks.push(UpBlock {
                resnets: resnet_stack(weights, &prefix, layers, input, output, config)?,
                upsampler,
            });
            input = output;
        }
        Ok(Self {
            conv_in: conv3x3(
                weights,
                "decoder.conv_in",
                config.latent_channels,
                widths[0],
            )?,
            mid_block: MidBlock::load(weights, "decoder.mid_block", widths[0], config)?,
            up_blocks,
            head: OutputHead::load(weights, "decoder", input, config.out_channels, config)?,
        })
    }

    pub(crate) fn forward(&self, latents: &Tensor) -> Result<Tensor> {
        let mut x = self.mid_block.forward(&self.conv_in.forward(latents)?)?;
        for block in &self.up_blocks {
            x = run_resnets(&block.resnets, x)?;
            if let Some(upsampler) = &block.upsampler {
                x = upsampler.forward(&x, None)?;
            }
        }
        self.head.forward(&x)
    }
}
