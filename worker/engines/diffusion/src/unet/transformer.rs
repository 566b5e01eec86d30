//! diffusers' `Transformer2DModel` over a feature map (continuous input) and its
//! `BasicTransformerBlock`s: self-attention, cross-attention to the text, GEGLU feed-forward.

use candle_core::Tensor;
use candle_nn::{GroupNorm, LayerNorm, Linear, Module};

use super::attention::{Attention, AttentionDims};
use super::config::AttentionPlan;
use super::CrossContext;
use crate::error::Result;
use crate::nn::{group_norm, layer_norm, linear};
use crate::weights::WeightFile;

/// Epsilon of the transformer's input group norm (fixed in diffusers, not the UNet's norm_eps).
const INPUT_NORM_EPS: f64 = 1e-6;
/// Epsilon of the blocks' layer norms (diffusers' `Transformer2DModel` default).
const LAYER_NORM_EPS: f64 = 1e-5;
/// The feed-forward's hidden width is this multiple of the model width.
const FEED_FORWARD_MULT: usize = 4;

/// `proj(x)` split in half along the features: `hidden * gelu(gate)`.
struct GegluFeedForward {
    proj: Linear,
    out: Linear,
    hidden: usize,
}

impl GegluFeedForward {
    fn load(weights: &WeightFile, prefix: &str, dim: usize) -> Result<Self> {
        let hidden = dim * FEED_FORWARD_MULT;
        Ok(Self {
            proj: linear(weights, &format!("{prefix}.net.0.proj"), dim, 2 * hidden)?,
            out: linear(weights, &format!("{prefix}.net.2"), hidden, dim)?,
            hidden,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let projected = self.proj.forward(x)?;
        let last = projected.rank() - 1;
        let hidden = projected.narrow(last, 0, self.hidden)?;
        let gate = projected
            .narrow(last, self.hidden, self.hidden)?
            .gelu_erf()?;
        Ok(self.out.forward(&(hidden * gate)?)?)
    }
}

/// Pre-norm residual block: `x += attn1(norm1(x))`, `x += attn2(norm2(x), text)`,
/// `x += ff(norm3(x))`.
struct BasicTransformerBlock {
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    ff: GegluFeedForward,
    only_cross_attention: bool,
}

impl BasicTransformerBlock {
    fn load(
        weights: &WeightFile,
        prefix: &str,
        dim: usize,
        plan: &AttentionPlan,
        upcast: bool,
    ) -> Result<Self> {
        let name = |child: &str| format!("{prefix}.{child}");
        let cross = AttentionDims {
            query_dim: dim,
            context_dim: plan.context_dim,
            heads: plan.heads,
            head_dim: plan.head_dim,
            upcast,
        };
        // With only_cross_attention the first attention also reads the text.
        let first = if plan.only_cross_attention {
            cross
        } else {
            AttentionDims {
                context_dim: dim,
                ..cross
            }
        };
        Ok(Self {
            norm1: layer_norm(weights, &name("norm1"), dim, LAYER_NORM_EPS)?,
            attn1: Attention::load(weights, &name("attn1"), first)?,
            norm2: layer_norm(weights, &name("norm2"), dim, LAYER_NORM_EPS)?,
            attn2: Attention::load(weights, &name("attn2"), cross)?,
            norm3: layer_norm(weights, &name("norm3"), dim, LAYER_NORM_EPS)?,
            ff: GegluFeedForward::load(weights, &name("ff"), dim)?,
            only_cross_attention: plan.only_cross_attention,
        })
    }

    fn forward(&self, x: &Tensor, context: &CrossContext<'_>) -> Result<Tensor> {
        let first_context = self.only_cross_attention.then_some(context.text);
        let x = (self.attn1.forward(&self.norm1.forward(x)?, first_context)? + x)?;
        let x =
            (self
                .attn2
                .forward_cross(&self.norm2.forward(&x)?, context.text, context.image)?
                + &x)?;
        Ok((self.ff.forward(&self.norm3.forward(&x)?)? + &x)?)
    }
}

/// Group norm, projection to tokens, transformer blocks, projection back, plus the input.
pub struct Transformer2D {
    norm: GroupNorm,
    /// A 1x1 convolution or a linear map (`use_linear_projection`): both are the same per-pixel
    /// matmul, so both are applied as a linear map to the channels-last tokens.
    proj_in: Linear,
    blocks: Vec<BasicTransformerBlock>,
    proj_out: Linear,
}

/// How the transformer is laid out, beyond its attention sizes.
#[derive(Debug, Clone, Copy)]
pub struct TransformerLayout {
    pub channels: usize,
    pub groups: usize,
    pub linear_projection: bool,
    pub upcast_attention: bool,
}

impl Transformer2D {
    pub fn load(
        weights: &WeightFile,
        prefix: &str,
        layout: TransformerLayout,
        plan: &AttentionPlan,
    ) -> Result<Self> {
        let name = |child: &str| format!("{prefix}.{child}");
        let channels = layout.channels;
        let inner = plan.heads * plan.head_dim;
        let projection = |child: &str, from: usize, to: usize| -> Result<Linear> {
            if layout.linear_projection {
                return linear(weights, &name(child), from, to);
            }
            let weight = weights
                .get(&format!("{}.weight", name(child)), &[to, from, 1, 1])?
                .reshape((to, from))?;
            let bias = weights.get(&format!("{}.bias", name(child)), &[to])?;
            Ok(Linear::new(weight, Some(bias)))
        };
        let blocks = (0..plan.depth)
            .map(|i| {
                BasicTransformerBlock::load(
                    weights,
                    &name(&format!("transformer_blocks.{i}")),
                    inner,
                    plan,
                    layout.upcast_attention,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            norm: group_norm(
                weights,
                &name("norm"),
                layout.groups,
                channels,
                INPUT_NORM_EPS,
            )?,
            proj_in: projection("proj_in", channels, inner)?,
            blocks,
            proj_out: projection("proj_out", inner, channels)?,
        })
    }

    /// The cross-attention layers of the blocks, in order.
    pub fn cross_attentions_mut(&mut self) -> impl Iterator<Item = &mut Attention> {
        self.blocks.iter_mut().map(|block| &mut block.attn2)
    }

    /// `x` is `[batch, channels, height, width]`, the context's text `[batch, text_tokens,
    /// context_dim]`.
    pub fn forward(&self, x: &Tensor, context: &CrossContext<'_>) -> Result<Tensor> {
        let (batch, channels, height, width) = x.dims4()?;
        let tokens = self.norm.forward(x)?.permute((0, 2, 3, 1))?.reshape((
            batch,
            height * width,
            channels,
        ))?;
        let mut hidden = self.proj_in.forward(&tokens)?;
        for block in &self.blocks {
            hidden = block.forward(&hidden, context)?;
        }
        let out = self
            .proj_out
            .forward(&hidden)?
            .reshape((batch, height, width, channels))?
            .permute((0, 3, 1, 2))?;
        Ok((out + x)?)
    }
}
