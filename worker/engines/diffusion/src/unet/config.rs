//! diffusers' `UNet2DConditionModel` config (`unet/config.json`) and the per-block plan it implies.
//!
//! Every size of the model comes from here; fields the engine cannot honour (class or addition
//! embeddings, dual cross-attention, scale-shift time conditioning, ...) are rejected with an
//! error naming the option rather than silently ignored.

use std::path::Path;

use serde::Deserialize;

use crate::error::{DiffusionError, Result};

/// One value for every block, or one per block (diffusers accepts both for most sizes).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum PerBlock<T> {
    // `Each` is tried first: a list of counts `[1, 2, 10]` is one count per block, not one
    // per-layer list shared by every block.
    Each(Vec<T>),
    Same(T),
}

impl<T: Clone> PerBlock<T> {
    /// The value for each of `blocks` blocks; `None` when a list has the wrong length.
    fn expand(&self, blocks: usize) -> Option<Vec<T>> {
        match self {
            Self::Same(value) => Some(vec![value.clone(); blocks]),
            Self::Each(values) if values.len() == blocks => Some(values.clone()),
            Self::Each(_) => None,
        }
    }
}

/// Depth of the transformer stack in a block: one count, or (SDXL refiner style) one per layer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum TransformerDepth {
    Uniform(usize),
    PerLayer(Vec<usize>),
}

/// The fields of a diffusers `UNet2DConditionModel` config, with diffusers' defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct UNetConfig {
    #[serde(default = "default_latent_channels")]
    pub in_channels: usize,
    #[serde(default = "default_latent_channels")]
    pub out_channels: usize,
    #[serde(default)]
    pub center_input_sample: bool,
    #[serde(default = "default_true")]
    pub flip_sin_to_cos: bool,
    #[serde(default)]
    pub freq_shift: f64,
    #[serde(default = "default_down_block_types")]
    pub down_block_types: Vec<String>,
    #[serde(default = "default_mid_block_type")]
    pub mid_block_type: Option<String>,
    #[serde(default = "default_up_block_types")]
    pub up_block_types: Vec<String>,
    #[serde(default = "default_only_cross_attention")]
    pub only_cross_attention: PerBlock<bool>,
    #[serde(default = "default_block_out_channels")]
    pub block_out_channels: Vec<usize>,
    #[serde(default = "default_layers_per_block")]
    pub layers_per_block: PerBlock<usize>,
    #[serde(default = "default_downsample_padding")]
    pub downsample_padding: usize,
    #[serde(default = "default_one")]
    pub mid_block_scale_factor: f64,
    #[serde(default = "default_act_fn")]
    pub act_fn: String,
    #[serde(default = "default_norm_num_groups")]
    pub norm_num_groups: Option<usize>,
    #[serde(default = "default_norm_eps")]
    pub norm_eps: f64,
    #[serde(default = "default_cross_attention_dim")]
    pub cross_attention_dim: PerBlock<usize>,
    #[serde(default = "default_transformer_layers")]
    pub transformer_layers_per_block: PerBlock<TransformerDepth>,
    #[serde(default)]
    pub reverse_transformer_layers_per_block: Option<Vec<TransformerDepth>>,
    /// Despite the name, diffusers uses this as the number of attention HEADS of each block
    /// (when `num_attention_heads` is absent, which diffusers requires); the head size is
    /// `channels / heads`.
    #[serde(default = "default_attention_head_dim")]
    pub attention_head_dim: PerBlock<usize>,
    #[serde(default)]
    pub num_attention_heads: Option<PerBlock<usize>>,
    #[serde(default)]
    pub dual_cross_attention: bool,
    #[serde(default)]
    pub use_linear_projection: bool,
    #[serde(default)]
    pub upcast_attention: bool,
    #[serde(default = "default_time_scale_shift")]
    pub resnet_time_scale_shift: String,
    #[serde(default = "default_time_embedding_type")]
    pub time_embedding_type: String,
    #[serde(default)]
    pub time_embedding_dim: Option<usize>,
    #[serde(default)]
    pub time_embedding_act_fn: Option<String>,
    #[serde(default)]
    pub timestep_post_act: Option<String>,
    #[serde(default)]
    pub time_cond_proj_dim: Option<usize>,
    #[serde(default = "default_conv_kernel")]
    pub conv_in_kernel: usize,
    #[serde(default = "default_conv_kernel")]
    pub conv_out_kernel: usize,
    #[serde(default)]
    pub class_embed_type: Option<String>,
    #[serde(default)]
    pub num_class_embeds: Option<usize>,
    #[serde(default)]
    pub class_embeddings_concat: bool,
    #[serde(default)]
    pub addition_embed_type: Option<String>,
    /// SDXL: width of the sinusoidal embedding of each micro-conditioning number (`text_time`).
    #[serde(default)]
    pub addition_time_embed_dim: Option<usize>,
    /// SDXL: input width of `add_embedding` (pooled text width + time ids x `addition_time_embed_dim`).
    #[serde(default)]
    pub projection_class_embeddings_input_dim: Option<usize>,
    #[serde(default)]
    pub encoder_hid_dim: Option<usize>,
    #[serde(default)]
    pub encoder_hid_dim_type: Option<String>,
    #[serde(default = "default_attention_type")]
    pub attention_type: String,
    #[serde(default)]
    pub cross_attention_norm: Option<String>,
}

fn default_latent_channels() -> usize {
    4
}
fn default_true() -> bool {
    true
}
fn default_one() -> f64 {
    1.0
}
fn default_down_block_types() -> Vec<String> {
    [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ]
    .map(String::from)
    .to_vec()
}
fn default_mid_block_type() -> Option<String> {
    Some(MID_CROSS_ATTN.to_string())
}
fn default_up_block_types() -> Vec<String> {
    [
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ]
    .map(String::from)
    .to_vec()
}
fn default_only_cross_attention() -> PerBlock<bool> {
    PerBlock::Same(false)
}
fn default_block_out_channels() -> Vec<usize> {
    vec![320, 640, 1280, 1280]
}
fn default_layers_per_block() -> PerBlock<usize> {
    PerBlock::Same(2)
}
fn default_downsample_padding() -> usize {
    1
}
fn default_act_fn() -> String {
    "silu".into()
}
fn default_norm_num_groups() -> Option<usize> {
    Some(32)
}
fn default_norm_eps() -> f64 {
    1e-5
}
fn default_cross_attention_dim() -> PerBlock<usize> {
    PerBlock::Same(1280)
}
fn default_transformer_layers() -> PerBlock<TransformerDepth> {
    PerBlock::Same(TransformerDepth::Uniform(1))
}
fn default_attention_head_dim() -> PerBlock<usize> {
    PerBlock::Same(8)
}
fn default_time_scale_shift() -> String {
    "default".into()
}
fn default_time_embedding_type() -> String {
    "positional".into()
}
fn default_conv_kernel() -> usize {
    3
}
fn default_attention_type() -> String {
    "default".into()
}

const CROSS_ATTN_DOWN: &str = "CrossAttnDownBlock2D";
const PLAIN_DOWN: &str = "DownBlock2D";
const CROSS_ATTN_UP: &str = "CrossAttnUpBlock2D";
const PLAIN_UP: &str = "UpBlock2D";
const MID_CROSS_ATTN: &str = "UNetMidBlock2DCrossAttn";
/// SDXL's added conditioning (`addition_embed_type`).
const TEXT_TIME: &str = "text_time";

/// An activation named in the config (diffusers' `get_activation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Silu,
    Mish,
    Gelu,
    Relu,
}

impl Activation {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "silu" | "swish" => Some(Self::Silu),
            "mish" => Some(Self::Mish),
            "gelu" => Some(Self::Gelu),
            "relu" => Some(Self::Relu),
            _ => None,
        }
    }
}

/// The cross-attention transformers of one block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionPlan {
    pub heads: usize,
    /// `channels / heads`, rounded down as diffusers does.
    pub head_dim: usize,
    pub context_dim: usize,
    /// Transformer blocks stacked in each `Transformer2DModel`.
    pub depth: usize,
    /// Self-attention attends to the text instead of the image (`only_cross_attention`).
    pub only_cross_attention: bool,
}

/// The sizes of one down block.
#[derive(Debug, Clone, PartialEq)]
pub struct DownBlockPlan {
    pub in_channels: usize,
    pub out_channels: usize,
    pub layers: usize,
    pub attention: Option<AttentionPlan>,
    pub downsample: bool,
}

/// The sizes of one up block.
#[derive(Debug, Clone, PartialEq)]
pub struct UpBlockPlan {
    /// Channels of the skip connection the last layer consumes.
    pub in_channels: usize,
    pub out_channels: usize,
    /// Channels coming from the block below.
    pub prev_output_channels: usize,
    pub layers: usize,
    pub attention: Option<AttentionPlan>,
    pub upsample: bool,
}

/// SDXL's `text_time` added conditioning: the pooled text embedding and the micro-conditioning
/// numbers (sizes, crop, aesthetic score), each embedded like a timestep, through one MLP whose
/// output is added to the time embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextTimePlan {
    /// Sinusoid width of each time id.
    pub time_embed_dim: usize,
    /// Width of `[pooled text, embedded time ids]`, the MLP's input.
    pub input_dim: usize,
}

/// Everything the model needs to build itself, resolved from a checked config.
#[derive(Debug, Clone, PartialEq)]
pub struct UNetPlan {
    pub groups: usize,
    pub time_embed_dim: usize,
    pub time_act: Activation,
    pub timestep_post_act: Option<Activation>,
    pub time_embedding_act: Option<Activation>,
    pub text_time: Option<TextTimePlan>,
    pub down: Vec<DownBlockPlan>,
    pub mid: Option<AttentionPlan>,
    pub up: Vec<UpBlockPlan>,
}

impl UNetConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let config: Self = crate::error::read_json(path)?;
        config.plan(path)?;
        Ok(config)
    }

    /// The width of the text embeddings the first cross-attention block expects.
    pub fn context_dim(&self) -> usize {
        match &self.cross_attention_dim {
            PerBlock::Same(dim) => *dim,
            PerBlock::Each(dims) => dims.first().copied().unwrap_or(0),
        }
    }

    /// Checks the config and resolves the per-block sizes. `path` only names the file in errors.
    pub fn plan(&self, path: &Path) -> Result<UNetPlan> {
        let fail = |reason: String| DiffusionError::ModelConfig {
            path: path.to_path_buf(),
            reason,
        };
        self.reject_unsupported().map_err(fail)?;
        let blocks = self.block_out_channels.len();
        if blocks == 0 {
            return Err(fail("block_out_channels is empty".into()));
        }
        if self.down_block_types.len() != blocks || self.up_block_types.len() != blocks {
            return Err(fail(format!(
                "{} down_block_types and {} up_block_types for {blocks} block_out_channels",
                self.down_block_types.len(),
                self.up_block_types.len()
            )));
        }
        let per_block = |field: &str, len: Option<usize>| {
            fail(format!(
                "{field} lists {} values for {blocks} blocks",
                len.unwrap_or(0)
            ))
        };
        let layers = self
            .layers_per_block
            .expand(blocks)
            .ok_or_else(|| per_block("layers_per_block", list_len(&self.layers_per_block)))?;
        // diffusers' naming fix: `attention_head_dim` holds the number of heads.
        let heads_field = self
            .num_attention_heads
            .as_ref()
            .unwrap_or(&self.attention_head_dim);
        let heads = heads_field
            .expand(blocks)
            .ok_or_else(|| per_block("attention_head_dim", list_len(heads_field)))?;
        let context_dims = self
            .cross_attention_dim
            .expand(blocks)
            .ok_or_else(|| per_block("cross_attention_dim", list_len(&self.cross_attention_dim)))?;
        let only_cross = self.only_cross_attention.expand(blocks).ok_or_else(|| {
            per_block("only_cross_attention", list_len(&self.only_cross_attention))
        })?;
        let depths = self
            .transformer_layers_per_block
            .expand(blocks)
            .ok_or_else(|| {
                per_block(
                    "transformer_layers_per_block",
                    list_len(&self.transformer_layers_per_block),
                )
            })?;
        let depths = uniform_depths(&depths).map_err(fail)?;
        let reverse_depths = match &self.reverse_transformer_layers_per_block {
            Some(list) if list.len() != blocks => {
                return Err(per_block(
                    "reverse_transformer_layers_per_block",
                    Some(list.len()),
                ))
            }
            Some(list) => uniform_depths(list).map_err(fail)?,
            None => depths.iter().rev().copied().collect(),
        };
        let groups = self
            .norm_num_groups
            .ok_or_else(|| fail("norm_num_groups null (no group norms) is unsupported".into()))?;
        let channels = &self.block_out_channels;
        let attention = |block: usize, channels: usize, depth: usize, only_cross: bool| {
            let heads = heads[block];
            if heads == 0 || heads > channels {
                return Err(fail(format!(
                    "{heads} attention heads for a block of {channels} channels"
                )));
            }
            Ok(AttentionPlan {
                heads,
                head_dim: channels / heads,
                context_dim: context_dims[block],
                depth,
                only_cross_attention: only_cross,
            })
        };

        let mut down = Vec::with_capacity(blocks);
        for (i, kind) in self.down_block_types.iter().enumerate() {
            let out_channels = channels[i];
            let attention = match kind.as_str() {
                CROSS_ATTN_DOWN => Some(attention(i, out_channels, depths[i], only_cross[i])?),
                PLAIN_DOWN => None,
                other => return Err(fail(unsupported_block("down_block_types", other))),
            };
            down.push(DownBlockPlan {
                in_channels: channels[i.saturating_sub(1)],
                out_channels,
                layers: layers[i],
                attention,
                downsample: i + 1 < blocks,
            });
        }

        let mid = match self.mid_block_type.as_deref() {
            Some(MID_CROSS_ATTN) => Some(attention(
                blocks - 1,
                channels[blocks - 1],
                depths[blocks - 1],
                false,
            )?),
            None => None,
            Some(other) => return Err(fail(unsupported_block("mid_block_type", other))),
        };

        // The up path mirrors the down path; index `blocks - 1 - i` is the matching down block.
        let mut up = Vec::with_capacity(blocks);
        let mut output_channels = channels[blocks - 1];
        for (i, kind) in self.up_block_types.iter().enumerate() {
            let mirror = blocks - 1 - i;
            let prev_output_channels = output_channels;
            output_channels = channels[mirror];
            let attention = match kind.as_str() {
                CROSS_ATTN_UP => Some(attention(
                    mirror,
                    output_channels,
                    reverse_depths[i],
                    only_cross[mirror],
                )?),
                PLAIN_UP => None,
                other => return Err(fail(unsupported_block("up_block_types", other))),
            };
            up.push(UpBlockPlan {
                in_channels: channels[mirror.saturating_sub(1)],
                out_channels: output_channels,
                prev_output_channels,
                layers: layers[mirror] + 1,
                attention,
                upsample: i + 1 < blocks,
            });
        }

        let activation = |field: &str, name: &str| {
            Activation::parse(name).ok_or_else(|| fail(format!("{field} `{name}` is unsupported")))
        };
        let time_act = activation("act_fn", &self.act_fn)?;
        if time_act != Activation::Silu {
            return Err(fail(format!(
                "act_fn `{}` is unsupported (the resnet blocks use silu)",
                self.act_fn
            )));
        }
        let optional = |field: &str, name: &Option<String>| {
            name.as_deref().map(|n| activation(field, n)).transpose()
        };
        Ok(UNetPlan {
            groups,
            time_embed_dim: self.time_embedding_dim.unwrap_or(channels[0] * 4),
            time_act,
            timestep_post_act: optional("timestep_post_act", &self.timestep_post_act)?,
            time_embedding_act: optional("time_embedding_act_fn", &self.time_embedding_act_fn)?,
            text_time: self.text_time().map_err(fail)?,
            down,
            mid,
            up,
        })
    }

    /// The `text_time` plan when `addition_embed_type` asks for it (SDXL); `None` without one.
    fn text_time(&self) -> std::result::Result<Option<TextTimePlan>, String> {
        if self.addition_embed_type.as_deref() != Some(TEXT_TIME) {
            return Ok(None);
        }
        match (
            self.addition_time_embed_dim,
            self.projection_class_embeddings_input_dim,
        ) {
            (Some(time_embed_dim), Some(input_dim)) if time_embed_dim > 0 && input_dim > 0 => {
                Ok(Some(TextTimePlan {
                    time_embed_dim,
                    input_dim,
                }))
            }
            _ => Err(
                "addition_embed_type `text_time` needs addition_time_embed_dim and \
                      projection_class_embeddings_input_dim"
                    .into(),
            ),
        }
    }

    /// Options that change the network in ways this engine does not implement.
    fn reject_unsupported(&self) -> std::result::Result<(), String> {
        let unsupported = |option: &str, value: &dyn std::fmt::Display| {
            Err(format!("{option} `{value}` is unsupported"))
        };
        if self.num_attention_heads.is_some() {
            // diffusers itself refuses this field (see its UNet2DConditionModel.__init__).
            return Err(
                "num_attention_heads is set; diffusers rejects it too (the head count goes in \
                 attention_head_dim)"
                    .into(),
            );
        }
        if let Some(kind) = &self.class_embed_type {
            return unsupported("class_embed_type", kind);
        }
        if let Some(count) = self.num_class_embeds {
            return unsupported("num_class_embeds", &count);
        }
        match self.addition_embed_type.as_deref() {
            None | Some(TEXT_TIME) => {}
            Some(kind) => return unsupported("addition_embed_type", &kind),
        }
        if let Some(kind) = &self.encoder_hid_dim_type {
            return unsupported("encoder_hid_dim_type", kind);
        }
        if let Some(dim) = self.encoder_hid_dim {
            return unsupported("encoder_hid_dim", &dim);
        }
        if let Some(dim) = self.time_cond_proj_dim {
            return unsupported("time_cond_proj_dim", &dim);
        }
        if self.dual_cross_attention {
            return unsupported("dual_cross_attention", &true);
        }
        if self.resnet_time_scale_shift != "default" {
            return unsupported("resnet_time_scale_shift", &self.resnet_time_scale_shift);
        }
        if self.time_embedding_type != "positional" {
            return unsupported("time_embedding_type", &self.time_embedding_type);
        }
        if self.attention_type != "default" {
            return unsupported("attention_type", &self.attention_type);
        }
        if let Some(norm) = &self.cross_attention_norm {
            return unsupported("cross_attention_norm", norm);
        }
        if self.conv_in_kernel.is_multiple_of(2) || self.conv_out_kernel.is_multiple_of(2) {
            return Err(format!(
                "conv_in_kernel {} / conv_out_kernel {}: even kernels are unsupported",
                self.conv_in_kernel, self.conv_out_kernel
            ));
        }
        if self.downsample_padding > 1 {
            return unsupported("downsample_padding", &self.downsample_padding);
        }
        Ok(())
    }
}

fn list_len<T>(value: &PerBlock<T>) -> Option<usize> {
    match value {
        PerBlock::Same(_) => None,
        PerBlock::Each(values) => Some(values.len()),
    }
}

fn uniform_depths(depths: &[TransformerDepth]) -> std::result::Result<Vec<usize>, String> {
    depths
        .iter()
        .map(|depth| match depth {
            TransformerDepth::Uniform(count) => Ok(*count),
            TransformerDepth::PerLayer(counts) => Err(format!(
                "per-layer transformer depths {counts:?} in transformer_layers_per_block are \
                 unsupported"
            )),
        })
        .collect()
}

fn unsupported_block(field: &str, kind: &str) -> String {
    format!("{field}: block type `{kind}` is unsupported")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> UNetConfig {
        serde_json::from_str(json).expect("config parses")
    }

    fn plan_error(json: &str) -> String {
        parse(json)
            .plan(Path::new("unet/config.json"))
            .expect_err("config is rejected")
            .to_string()
    }

    #[test]
    fn sd15_defaults_give_eight_heads_per_block() {
        let plan = parse("{}").plan(Path::new("c.json")).expect("plan");
        let heads: Vec<_> = plan
            .down
            .iter()
            .filter_map(|b| b.attention.map(|a| (a.heads, a.head_dim)))
            .collect();
        assert_eq!(heads, vec![(8, 40), (8, 80), (8, 160)]);
        assert_eq!(plan.time_embed_dim, 1280);
        assert_eq!(plan.up[0].layers, 3);
        assert_eq!(plan.up[0].prev_output_channels, 1280);
        assert_eq!(plan.up[3].in_channels, 320);
        assert!(!plan.down[3].downsample && !plan.up[3].upsample);
    }

    #[test]
    fn sd2_head_lists_are_head_counts_per_block() {
        let plan =
            parse(r#"{"attention_head_dim": [5, 10, 20, 20], "use_linear_projection": true}"#)
                .plan(Path::new("c.json"))
                .expect("plan");
        let mid = plan.mid.expect("mid block");
        assert_eq!((mid.heads, mid.head_dim), (20, 64));
        let first = plan.down[0].attention.expect("attention");
        assert_eq!((first.heads, first.head_dim), (5, 64));
        let last_up = plan.up[3].attention.expect("attention");
        assert_eq!((last_up.heads, last_up.head_dim), (5, 64));
    }

    #[test]
    fn transformer_depth_lists_are_per_block() {
        let config = parse(
            r#"{"block_out_channels": [320, 640, 1280],
                "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
                "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
                "attention_head_dim": [5, 10, 20], "transformer_layers_per_block": [1, 2, 10]}"#,
        );
        let plan = config.plan(Path::new("c.json")).expect("plan");
        let down: Vec<_> = plan
            .down
            .iter()
            .map(|b| b.attention.map(|a| a.depth))
            .collect();
        assert_eq!(down, vec![None, Some(2), Some(10)]);
        assert_eq!(plan.mid.expect("mid").depth, 10);
        assert_eq!(plan.up[0].attention.expect("attention").depth, 10);
        let nested = r#"{"transformer_layers_per_block": [[1, 1], 2, 2, 2]}"#;
        assert!(plan_error(nested).contains("per-layer transformer depths"));
    }

    #[test]
    fn unsupported_options_are_named() {
        assert!(plan_error(r#"{"class_embed_type": "timestep"}"#).contains("class_embed_type"));
        assert!(plan_error(r#"{"addition_embed_type": "image"}"#).contains("addition_embed_type"));
        assert!(plan_error(r#"{"addition_embed_type": "text_time"}"#)
            .contains("addition_time_embed_dim"));
        assert!(plan_error(r#"{"dual_cross_attention": true}"#).contains("dual_cross_attention"));
        assert!(plan_error(r#"{"resnet_time_scale_shift": "scale_shift"}"#)
            .contains("resnet_time_scale_shift"));
        assert!(plan_error(r#"{"num_attention_heads": 8}"#).contains("num_attention_heads"));
        assert!(
            plan_error(r#"{"mid_block_type": "UNetMidBlock2DSimpleCrossAttn"}"#)
                .contains("UNetMidBlock2DSimpleCrossAttn")
        );
        assert!(plan_error(r#"{"layers_per_block": [2, 2]}"#).contains("layers_per_block"));
    }
}
