//! The single-head spatial self-attention in the middle of the VAE encoder and decoder.

use candle_core::{DType, Tensor};
use candle_nn::{GroupNorm, Linear, Module};

use crate::error::{DiffusionError, Result};
use crate::nn::{group_norm, join, linear};
use crate::weights::WeightFile;

/// Tensor names of the four projections: diffusers renamed them in 0.15 and checkpoints of both
/// vintages are in circulation.
const NEW_NAMES: [&str; 4] = ["to_q", "to_k", "to_v", "to_out.0"];
const OLD_NAMES: [&str; 4] = ["query", "key", "value", "proj_attn"];

/// `x + out(softmax(q k^T / sqrt(C)) v)` over the `H*W` pixels of a group-normed feature map.
pub(crate) struct SpatialSelfAttention {
    group_norm: GroupNorm,
    query: Linear,
    key: Linear,
    value: Linear,
    out: Linear,
    scale: f64,
}

impl SpatialSelfAttention {
    pub(crate) fn load(
        weights: &WeightFile,
        prefix: &str,
        channels: usize,
        groups: usize,
        eps: f64,
    ) -> Result<Self> {
        let names = if weights.contains(&join(prefix, "to_q.weight")) {
            NEW_NAMES
        } else if weights.contains(&join(prefix, "query.weight")) {
            OLD_NAMES
        } else {
            return Err(DiffusionError::Weights {
                path: weights.path().to_path_buf(),
                tensor: join(prefix, "to_q.weight"),
                reason: "missing (neither the to_q/to_k/to_v/to_out.0 nor the \
                         query/key/value/proj_attn spelling is present)"
                    .into(),
            });
        };
        let projection =
            |index: usize| linear(weights, &join(prefix, names[index]), channels, channels);
        Ok(Self {
            group_norm: group_norm(weights, &join(prefix, "group_norm"), groups, channels, eps)?,
            query: projection(0)?,
            key: projection(1)?,
            value: projection(2)?,
            out: projection(3)?,
            scale: 1.0 / (channels as f64).sqrt(),
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (batch, channels, height, width) = x.dims4()?;
        let pixels = self
            .group_norm
            .forward(x)?
            .reshape((batch, channels, height * width))?
            .transpose(1, 2)?
            .contiguous()?;
        let q = self.query.forward(&pixels)?;
        let k = self.key.forward(&pixels)?;
        let v = self.value.forward(&pixels)?;
        // diffusers upcasts the attention scores of this block; f16 softmax over 4096 pixels loses
        // too much.
        let scores = q
            .to_dtype(DType::F32)?
            .matmul(&k.to_dtype(DType::F32)?.t()?)?
            .affine(self.scale, 0.0)?;
        let weights = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(v.dtype())?;
        let mixed = self.out.forward(&weights.matmul(&v)?)?;
        let mixed = mixed
            .transpose(1, 2)?
            .reshape((batch, channels, height, width))?;
        Ok((x + mixed)?)
    }
}
