//! The UNet's down, middle and up blocks: residual blocks, optional cross-attention
//! transformers after each, and the resampling between resolutions.

use candle_core::Tensor;

use super::attention::Attention;
use super::config::{AttentionPlan, DownBlockPlan, UpBlockPlan};
use super::transformer::{Transformer2D, TransformerLayout};
use super::CrossContext;
use crate::error::{DiffusionError, Result};
use crate::nn::{Downsample2D, DownsamplePadding, ResnetBlock2D, ResnetConfig, Upsample2D};
use crate::weights::WeightFile;

/// What every block shares: group count, norm epsilon, time-embedding width and the
/// transformer options.
#[derive(Debug, Clone, Copy)]
pub struct BlockSettings {
    pub groups: usize,
    pub eps: f64,
    pub temb_channels: usize,
    pub linear_projection: bool,
    pub upcast_attention: bool,
    pub downsample_padding: DownsamplePadding,
}

impl BlockSettings {
    fn resnet(&self, in_channels: usize, out_channels: usize) -> ResnetConfig {
        ResnetConfig::new(in_channels, out_channels, self.groups, self.eps)
            .with_temb(self.temb_channels)
    }

    fn transformer(
        &self,
        weights: &WeightFile,
        prefix: &str,
        channels: usize,
        plan: &AttentionPlan,
    ) -> Result<Transformer2D> {
        let layout = TransformerLayout {
            channels,
            groups: self.groups,
            linear_projection: self.linear_projection,
            upcast_attention: self.upcast_attention,
        };
        Transformer2D::load(weights, prefix, layout, plan)
    }
}

/// A resnet followed by its transformer, if the block has attention.
struct Layer {
    resnet: ResnetBlock2D,
    attention: Option<Transformer2D>,
}

impl Layer {
    fn forward(&self, x: &Tensor, temb: &Tensor, context: &CrossContext<'_>) -> Result<Tensor> {
        let x = self.resnet.forward(x, Some(temb))?;
        match &self.attention {
            Some(transformer) => transformer.forward(&x, context),
            None => Ok(x),
        }
    }
}

impl Layer {
    fn cross_attentions_mut(&mut self) -> impl Iterator<Item = &mut Attention> {
        self.attention
            .iter_mut()
            .flat_map(Transformer2D::cross_attentions_mut)
    }
}

/// The cross-attention layers of `layers`, in order.
fn layers_cross_attentions(layers: &mut [Layer]) -> impl Iterator<Item = &mut Attention> {
    layers.iter_mut().flat_map(Layer::cross_attentions_mut)
}

fn load_layer(
    weights: &WeightFile,
    prefix: &str,
    index: usize,
    resnet: ResnetConfig,
    attention: Option<&AttentionPlan>,
    settings: &BlockSettings,
) -> Result<Layer> {
    let resnet_block = ResnetBlock2D::load(weights, &format!("{prefix}.resnets.{index}"), resnet)?;
    let attention = attention
        .map(|plan| {
            let name = format!("{prefix}.attentions.{index}");
            settings.transformer(weights, &name, resnet.out_channels, plan)
        })
        .transpose()?;
    Ok(Layer {
        resnet: resnet_block,
        attention,
    })
}

/// `CrossAttnDownBlock2D` or `DownBlock2D`.
pub struct DownBlock {
    layers: Vec<Layer>,
    downsampler: Option<Downsample2D>,
}

impl DownBlock {
    pub fn load(
        weights: &WeightFile,
        prefix: &str,
        plan: &DownBlockPlan,
        settings: &BlockSettings,
    ) -> Result<Self> {
        let layers = (0..plan.layers)
            .map(|i| {
                let input = if i == 0 {
                    plan.in_channels
                } else {
                    plan.out_channels
                };
                let resnet = settings.resnet(input, plan.out_channels);
                load_layer(
                    weights,
                    prefix,
                    i,
                    resnet,
                    plan.attention.as_ref(),
                    settings,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let downsampler = plan
            .downsample
            .then(|| {
                Downsample2D::load(
                    weights,
                    &format!("{prefix}.downsamplers.0"),
                    plan.out_channels,
                    plan.out_channels,
                    settings.downsample_padding,
                )
            })
            .transpose()?;
        Ok(Self {
            layers,
            downsampler,
        })
    }

    /// The block's cross-attention layers, in diffusers' order.
    pub fn cross_attentions_mut(&mut self) -> impl Iterator<Item = &mut Attention> {
        layers_cross_attentions(&mut self.layers)
    }

    /// Runs the block, pushing every intermediate output the up path will need onto `skips`.
    pub fn forward(
        &self,
        x: &Tensor,
        temb: &Tensor,
        context: &CrossContext<'_>,
        skips: &mut Vec<Tensor>,
    ) -> Result<Tensor> {
        let mut x = x.clone();
        for layer in &self.layers {
            x = layer.forward(&x, temb, context)?;
            skips.push(x.clone());
        }
        if let Some(downsampler) = &self.downsampler {
            x = downsampler.forward(&x)?;
            skips.push(x.clone());
        }
        Ok(x)
    }
}

/// `UNetMidBlock2DCrossAttn`: a resnet, then (transformer, resnet) pairs at the lowest
/// resolution.
pub struct MidBlock {
    first: ResnetBlock2D,
    rest: Vec<(Transformer2D, ResnetBlock2D)>,
}

impl MidBlock {
    pub fn load(
        weights: &WeightFile,
        prefix: &str,
        channels: usize,
        plan: &AttentionPlan,
        output_scale_factor: f64,
        settings: &BlockSettings,
    ) -> Result<Self> {
        let resnet = ResnetConfig {
            output_scale_factor,
            ..settings.resnet(channels, channels)
        };
        let first = ResnetBlock2D::load(weights, &format!("{prefix}.resnets.0"), resnet)?;
        // diffusers builds this block with one (transformer, resnet) pair.
        let transformer =
            settings.transformer(weights, &format!("{prefix}.attentions.0"), channels, plan)?;
        let second = ResnetBlock2D::load(weights, &format!("{prefix}.resnets.1"), resnet)?;
        Ok(Self {
            first,
            rest: vec![(transformer, second)],
        })
    }

    /// The block's cross-attention layers, in diffusers' order.
    pub fn cross_attentions_mut(&mut self) -> impl Iterator<Item = &mut Attention> {
        self.rest
            .iter_mut()
            .flat_map(|(transformer, _)| transformer.cross_attentions_mut())
    }

    pub fn forward(&self, x: &Tensor, temb: &Tensor, context: &CrossContext<'_>) -> Result<Tensor> {
        let mut x = self.first.forward(x, Some(temb))?;
        for (transformer, resnet) in &self.rest {
            x = transformer.forward(&x, context)?;
            x = resnet.forward(&x, Some(temb))?;
        }
        Ok(x)
    }
}

/// `CrossAttnUpBlock2D` or `UpBlock2D`: each layer first concatenates one skip connection.
pub struct UpBlock {
    layers: Vec<Layer>,
    upsampler: Option<Upsample2D>,
}

impl UpBlock {
    pub fn load(
        weights: &WeightFile,
        prefix: &str,
        plan: &UpBlockPlan,
        settings: &BlockSettings,
    ) -> Result<Self> {
        let layers = (0..plan.layers)
            .map(|i| {
                // diffusers' channel bookkeeping: the last layer's skip comes from the block
                // below the mirrored down block, the others from the mirrored block itself.
                let skip = if i + 1 == plan.layers {
                    plan.in_channels
                } else {
                    plan.out_channels
                };
                let input = if i == 0 {
                    plan.prev_output_channels
                } else {
                    plan.out_channels
                };
                let resnet = settings.resnet(input + skip, plan.out_channels);
                load_layer(
                    weights,
                    prefix,
                    i,
                    resnet,
                    plan.attention.as_ref(),
                    settings,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let upsampler = plan
            .upsample
            .then(|| {
                Upsample2D::load(
                    weights,
                    &format!("{prefix}.upsamplers.0"),
                    plan.out_channels,
                    plan.out_channels,
                )
            })
            .transpose()?;
        Ok(Self { layers, upsampler })
    }

    /// The block's cross-attention layers, in diffusers' order.
    pub fn cross_attentions_mut(&mut self) -> impl Iterator<Item = &mut Attention> {
        layers_cross_attentions(&mut self.layers)
    }

    /// Consumes this block's skip connections from the end of `skips`, and upsamples to the
    /// size of the next one left there: odd sizes (5x7 latents) come back exactly.
    pub fn forward(
        &self,
        x: &Tensor,
        temb: &Tensor,
        context: &CrossContext<'_>,
        skips: &mut Vec<Tensor>,
    ) -> Result<Tensor> {
        let mut x = x.clone();
        for layer in &self.layers {
            let skip = skips.pop().ok_or_else(|| {
                DiffusionError::InvalidInput("UNet up path ran out of skip connections".into())
            })?;
            x = Tensor::cat(&[&x, &skip], 1)?;
            x = layer.forward(&x, temb, context)?;
        }
        if let Some(upsampler) = &self.upsampler {
            let target = match skips.last() {
                Some(next) => {
                    let (_, _, height, width) = next.dims4()?;
                    Some((height, width))
                }
                None => None,
            };
            x = upsampler.forward(&x, target)?;
        }
        Ok(x)
    }
}
