//! diffusers' `UNet2DConditionModel` (Stable Diffusion 1.x / 2.x / XL): predicts the noise (or v)
//! in a latent from its timestep and the text embeddings.
//!
//! Layout: `conv_in`, down blocks that push skip connections, a cross-attention middle block,
//! up blocks that concatenate them back, then `conv_norm_out`, silu and `conv_out`. All sizes
//! come from `unet/config.json` ([`UNetConfig`]).

mod attention;
mod blocks;
mod config;
mod embeddings;
mod softmax;
mod transformer;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::{Conv2d, GroupNorm, Linear, Module};

pub use attention::scaled_dot_product_attention;
pub use config::{
    Activation, AttentionPlan, DownBlockPlan, PerBlock, TextTimePlan, TransformerDepth, UNetConfig,
    UNetPlan, UpBlockPlan,
};
pub use embeddings::timestep_embedding;

use attention::Attention;
use blocks::{BlockSettings, DownBlock, MidBlock, UpBlock};
use embeddings::{timesteps_per_sample, TimestepEmbedding};

use crate::error::{DiffusionError, Result};
use crate::nn::{conv2d, group_norm, ConvShape, DownsamplePadding};
use crate::weights::WeightFile;

/// Weight files tried in a diffusers `unet/` folder, full precision first.
const WEIGHT_FILES: [&str; 2] = [
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.fp16.safetensors",
];

/// SDXL's added conditioning for a batch: `text_embeds` `[B, pooled]` (text_encoder_2's projected
/// pooled output) and `time_ids` `[B, n]` (original size, crop top-left, then target size or the
/// aesthetic score), both f32.
#[derive(Debug, Clone)]
pub struct AddedConditions {
    pub text_embeds: Tensor,
    pub time_ids: Tensor,
}

/// What the UNet is conditioned on besides the latents and the timestep.
#[derive(Debug, Clone, Copy)]
pub struct Conditions<'a> {
    /// `[batch, text_tokens, cross_attention_dim]` text embeddings.
    pub text: &'a Tensor,
    /// SDXL's pooled text and time ids (required exactly when the config has `text_time`).
    pub added: Option<&'a AddedConditions>,
    /// IP-Adapter image prompt tokens (the model must have been given an adapter).
    pub image: Option<&'a ImageTokens>,
}

/// Image prompt tokens for a UNet batch (IP-Adapter): `(rows, tokens, cross_attention_dim)` and the
/// scale of each row `(rows, 1, 1)`.
#[derive(Debug, Clone)]
pub struct ImageTokens {
    pub tokens: Tensor,
    pub scales: Tensor,
}

/// What every cross-attention layer reads.
#[derive(Debug, Clone, Copy)]
pub struct CrossContext<'a> {
    pub text: &'a Tensor,
    pub image: Option<&'a ImageTokens>,
}

/// `add_time_proj` (sinusoids of each time id) and `add_embedding` (the MLP).
struct TextTimeEmbedding {
    plan: TextTimePlan,
    mlp: TimestepEmbedding,
}

/// The conditional UNet of Stable Diffusion on candle.
pub struct UNet2DConditionModel {
    config: UNetConfig,
    dtype: DType,
    conv_in: Conv2d,
    time_embedding: TimestepEmbedding,
    time_embedding_act: Option<Activation>,
    text_time: Option<TextTimeEmbedding>,
    down_blocks: Vec<DownBlock>,
    mid_block: Option<MidBlock>,
    up_blocks: Vec<UpBlock>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
    /// Whether the cross-attention layers have an IP-Adapter's image projections.
    image_projections: bool,
}

impl std::fmt::Debug for UNet2DConditionModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UNet2DConditionModel")
            .field("config", &self.config)
            .field("dtype", &self.dtype)
            .finish_non_exhaustive()
    }
}

impl UNet2DConditionModel {
    /// Loads `config.json` and the safetensors weights from a diffusers `unet/` folder; the
    /// weights are converted to `dtype` (f32, f16 or bf16) once, here.
    pub fn from_dir(dir: &Path, device: &Device, dtype: DType) -> Result<Self> {
        let config = UNetConfig::from_file(&dir.join("config.json"))?;
        Self::load(
            config,
            &dir.join("config.json"),
            &weights_path(dir),
            device,
            dtype,
        )
    }

    /// Builds the model from a parsed config (`config_path` names it in errors) and a weight file.
    pub fn load(
        config: UNetConfig,
        config_path: &Path,
        weights_path: &Path,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        check_dtype(dtype, device)?;
        let weights = WeightFile::open(weights_path, device, dtype)?;
        Self::from_weights(config, config_path, weights, dtype)
    }

    /// Builds the model from a parsed config and an opened weight file (LoRA deltas, if any,
    /// attached to it); the file's dtype must be `dtype`.
    pub fn from_weights(
        config: UNetConfig,
        config_path: &Path,
        weights: WeightFile,
        dtype: DType,
    ) -> Result<Self> {
        check_dtype(dtype, weights.device())?;
        let plan = config.plan(config_path)?;
        let channels = &config.block_out_channels;
        let first_channels = channels[0];
        let settings = BlockSettings {
            groups: plan.groups,
            eps: config.norm_eps,
            temb_channels: plan.time_embed_dim,
            linear_projection: config.use_linear_projection,
            upcast_attention: config.upcast_attention,
            downsample_padding: match config.downsample_padding {
                0 => DownsamplePadding::RightBottom,
                _ => DownsamplePadding::Symmetric,
            },
        };
        let same_size = |kernel: usize| ConvShape {
            kernel,
            stride: 1,
            padding: (kernel - 1) / 2,
        };
        let down_blocks = plan
            .down
            .iter()
            .enumerate()
            .map(|(i, block)| {
                DownBlock::load(&weights, &format!("down_blocks.{i}"), block, &settings)
            })
            .collect::<Result<Vec<_>>>()?;
        let mid_block = plan
            .mid
            .as_ref()
            .map(|attention| {
                MidBlock::load(
                    &weights,
                    "mid_block",
                    channels[channels.len() - 1],
                    attention,
                    config.mid_block_scale_factor,
                    &settings,
                )
            })
            .transpose()?;
        let up_blocks = plan
            .up
            .iter()
            .enumerate()
            .map(|(i, block)| UpBlock::load(&weights, &format!("up_blocks.{i}"), block, &settings))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            conv_in: conv2d(
                &weights,
                "conv_in",
                config.in_channels,
                first_channels,
                same_size(config.conv_in_kernel),
            )?,
            time_embedding: TimestepEmbedding::load(
                &weights,
                "time_embedding",
                first_channels,
                plan.time_embed_dim,
                plan.time_act,
                plan.timestep_post_act,
            )?,
            time_embedding_act: plan.time_embedding_act,
            text_time: plan
                .text_time
                .map(|text_time| {
                    Ok::<_, DiffusionError>(TextTimeEmbedding {
                        plan: text_time,
                        mlp: TimestepEmbedding::load(
                            &weights,
                            "add_embedding",
                            text_time.input_dim,
                            plan.time_embed_dim,
                            plan.time_act,
                            None,
                        )?,
                    })
                })
                .transpose()?,
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out: group_norm(
                &weights,
                "conv_norm_out",
                plan.groups,
                first_channels,
                config.norm_eps,
            )?,
            conv_out: conv2d(
                &weights,
                "conv_out",
                first_channels,
                config.out_channels,
                same_size(config.conv_out_kernel),
            )?,
            dtype,
            config,
            image_projections: false,
        })
    }

    /// Gives every cross-attention layer image projections (IP-Adapter's `to_k_ip`, `to_v_ip`):
    /// `load(index, inner)` returns those of layer `index`, in diffusers' order (down blocks, up
    /// blocks, middle block), mapping image tokens to the layer's `inner` width. Fails, changing
    /// nothing, unless there are exactly `layers` cross-attention layers.
    pub fn attach_image_projections(
        &mut self,
        layers: usize,
        mut load: impl FnMut(usize, usize) -> Result<(Linear, Linear)>,
    ) -> Result<()> {
        let mut attentions: Vec<&mut Attention> = Vec::new();
        for block in &mut self.down_blocks {
            attentions.extend(block.cross_attentions_mut());
        }
        for block in &mut self.up_blocks {
            attentions.extend(block.cross_attentions_mut());
        }
        if let Some(mid) = &mut self.mid_block {
            attentions.extend(mid.cross_attentions_mut());
        }
        if attentions.len() != layers {
            return Err(DiffusionError::InvalidInput(format!(
                "image projections for {layers} cross-attention layers, this UNet has {}",
                attentions.len()
            )));
        }
        let projections = attentions
            .iter()
            .enumerate()
            .map(|(index, attention)| load(index, attention.inner()))
            .collect::<Result<Vec<_>>>()?;
        for (attention, (to_k, to_v)) in attentions.into_iter().zip(projections) {
            attention.attach_image_projections(to_k, to_v);
        }
        self.image_projections = true;
        Ok(())
    }

    /// Whether an IP-Adapter's image projections are attached.
    pub fn has_image_projections(&self) -> bool {
        self.image_projections
    }

    pub fn config(&self) -> &UNetConfig {
        &self.config
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Whether the model takes SDXL's added conditioning ([`AddedConditions`]).
    pub fn takes_added_conditions(&self) -> bool {
        self.text_time.is_some()
    }

    /// SDXL's added conditioning sizes: the sinusoid width of each time id and the MLP's input
    /// width, which must equal `pooled + time_ids x sinusoid width`.
    pub fn text_time_plan(&self) -> Option<TextTimePlan> {
        self.text_time.as_ref().map(|t| t.plan)
    }

    /// One denoising prediction of a model without added conditioning (SD 1.x / 2.x); see
    /// [`Self::forward_with`].
    pub fn forward(
        &self,
        sample: &Tensor,
        timesteps: &Tensor,
        encoder_hidden_states: &Tensor,
    ) -> Result<Tensor> {
        let conditions = Conditions {
            text: encoder_hidden_states,
            added: None,
            image: None,
        };
        self.forward_with(sample, timesteps, &conditions)
    }

    /// One denoising prediction. `sample` is `[batch, in_channels, height, width]` (any
    /// height and width), `timesteps` `[batch]` (or one value for all; fractional allowed),
    /// `conditions` the text and the rest ([`Conditions`]). Returns `[batch, out_channels,
    /// height, width]` in the model dtype.
    pub fn forward_with(
        &self,
        sample: &Tensor,
        timesteps: &Tensor,
        conditions: &Conditions<'_>,
    ) -> Result<Tensor> {
        let (encoder_hidden_states, added) = (conditions.text, conditions.added);
        if conditions.image.is_some() && !self.image_projections {
            return Err(DiffusionError::InvalidInput(
                "image prompt tokens given to a UNet without an IP-Adapter".into(),
            ));
        }
        let (batch, channels, _, _) = sample.dims4()?;
        let (text_batch, _, text_dim) = encoder_hidden_states.dims3()?;
        if channels != self.config.in_channels
            || text_batch != batch
            || text_dim != self.config.context_dim()
        {
            return Err(DiffusionError::InvalidInput(format!(
                "UNet expects latents [B, {}, H, W] and text [B, tokens, {}]; got {:?} and {:?}",
                self.config.in_channels,
                self.config.context_dim(),
                sample.dims(),
                encoder_hidden_states.dims()
            )));
        }
        let sample = sample.to_dtype(self.dtype)?;
        let text = encoder_hidden_states.to_dtype(self.dtype)?;
        let sample = if self.config.center_input_sample {
            sample.affine(2.0, -1.0)?
        } else {
            sample
        };
        let temb = self.time_embedding(timesteps, batch, added, sample.device())?;
        let context = CrossContext {
            text: &text,
            image: conditions.image,
        };

        let mut x = self.conv_in.forward(&sample)?;
        let mut skips = vec![x.clone()];
        for block in &self.down_blocks {
            x = block.forward(&x, &temb, &context, &mut skips)?;
        }
        if let Some(mid) = &self.mid_block {
            x = mid.forward(&x, &temb, &context)?;
        }
        for block in &self.up_blocks {
            x = block.forward(&x, &temb, &context, &mut skips)?;
        }
        let x = self.conv_norm_out.forward(&x)?.silu()?;
        Ok(self.conv_out.forward(&x)?)
    }

    /// Sinusoidal embedding (computed in f32, like diffusers) through the embedding MLP, plus
    /// SDXL's added conditioning, then the optional activation.
    fn time_embedding(
        &self,
        timesteps: &Tensor,
        batch: usize,
        added: Option<&AddedConditions>,
        device: &Device,
    ) -> Result<Tensor> {
        let values = timesteps_per_sample(timesteps, batch)?;
        let sinusoids = timestep_embedding(
            &values,
            self.config.block_out_channels[0],
            self.config.flip_sin_to_cos,
            self.config.freq_shift,
            device,
        )?
        .to_dtype(self.dtype)?;
        let mut temb = self.time_embedding.forward(&sinusoids)?;
        match (&self.text_time, added) {
            (Some(text_time), Some(added)) => {
                temb = (temb + self.added_embedding(text_time, added, batch, device)?)?;
            }
            (None, None) => {}
            (Some(_), None) => {
                return Err(DiffusionError::InvalidInput(
                    "this UNet (addition_embed_type text_time, SDXL) needs pooled text embeddings \
                     and time ids"
                        .into(),
                ))
            }
            (None, Some(_)) => {
                return Err(DiffusionError::InvalidInput(
                    "this UNet takes no added conditioning (pooled text, time ids)".into(),
                ))
            }
        }
        match self.time_embedding_act {
            Some(activation) => embeddings::apply(activation, &temb),
            None => Ok(temb),
        }
    }
}

impl UNet2DConditionModel {
    /// `add_embedding([text_embeds, sinusoids of every time id])`, `[batch, time_embed_dim]`.
    fn added_embedding(
        &self,
        text_time: &TextTimeEmbedding,
        added: &AddedConditions,
        batch: usize,
        device: &Device,
    ) -> Result<Tensor> {
        let plan = text_time.plan;
        let (text_batch, text_dim) = added.text_embeds.dims2()?;
        let (ids_batch, ids) = added.time_ids.dims2()?;
        if text_batch != batch
            || ids_batch != batch
            || text_dim + ids * plan.time_embed_dim != plan.input_dim
        {
            return Err(DiffusionError::InvalidInput(format!(
                "added conditioning must be {batch} rows of pooled text plus time ids of \
                 {} values each, {} wide in all; got text_embeds {:?} and time_ids {:?}",
                plan.time_embed_dim,
                plan.input_dim,
                added.text_embeds.dims(),
                added.time_ids.dims()
            )));
        }
        let values: Vec<f32> = added
            .time_ids
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_device(&Device::Cpu)?
            .to_vec1()?;
        let dim = plan.time_embed_dim;
        let time_embeds = timestep_embedding(
            &values,
            dim,
            self.config.flip_sin_to_cos,
            self.config.freq_shift,
            device,
        )?
        .reshape((batch, ids * dim))?;
        let input = Tensor::cat(&[&added.text_embeds.to_dtype(DType::F32)?, &time_embeds], 1)?
            .to_dtype(self.dtype)?;
        text_time.mlp.forward(&input)
    }
}

fn check_dtype(dtype: DType, device: &Device) -> Result<()> {
    if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
        return Err(DiffusionError::InvalidInput(format!(
            "UNet dtype {dtype:?} is not one of f32, f16, bf16"
        )));
    }
    if dtype == DType::BF16 && device.is_cpu() {
        // candle's CPU matmul has no bf16 kernel; bf16 checkpoints still load as f32/f16.
        return Err(DiffusionError::InvalidInput(
            "bf16 compute is not supported on the CPU; use f32 or f16".into(),
        ));
    }
    Ok(())
}

/// The weight file [`UNet2DConditionModel::from_dir`] reads from `dir`: the full-precision
/// file if present, else the fp16 variant.
pub fn weights_path(dir: &Path) -> PathBuf {
    WEIGHT_FILES
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| dir.join(WEIGHT_FILES[0]))
}
