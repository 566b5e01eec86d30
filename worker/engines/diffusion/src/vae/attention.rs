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
        let k = self.key.forward(&pixels)?.to_dtype(DType::F32)?.t()?;
        let v = self.value.forward(&pixels)?;
        let attended = self.attend_in_chunks(&q, &k, &v, MAX_SCORES_PER_CHUNK)?;
        let mixed = self.out.forward(&attended)?;
        let mixed = mixed
            .transpose(1, 2)?
            .reshape((batch, channels, height, width))?;
        Ok((x + mixed)?)
    }

    /// softmax(q k^T * scale) v, in f32 as diffusers upcasts this block (an f16 softmax over
    /// thousands of pixels loses too much). The score matrix is pixels x pixels, 1 GiB for a
    /// 1024x1024 image, so queries go through in row chunks of bounded size.
    fn attend_in_chunks(
        &self,
        q: &Tensor,
        k_t: &Tensor,
        v: &Tensor,
        max_scores: usize,
    ) -> Result<Tensor> {
        let pixels = q.dim(1)?;
        let rows = (max_scores / pixels).clamp(1, pixels);
        let v32 = v.to_dtype(DType::F32)?;
        let mut chunks = Vec::with_capacity(pixels.div_ceil(rows));
        for start in (0..pixels).step_by(rows) {
            let len = rows.min(pixels - start);
            let scores = q
                .narrow(1, start, len)?
                .to_dtype(DType::F32)?
                .matmul(k_t)?
                .affine(self.scale, 0.0)?;
            // The fused softmax has no backward; under autograd (identity guidance decodes
            // with gradients) the composed one keeps the graph.
            let weights = if scores.track_op() {
                candle_nn::ops::softmax(&scores, candle_core::D::Minus1)?
            } else {
                candle_nn::ops::softmax_last_dim(&scores)?
            };
            chunks.push(weights.matmul(&v32)?);
        }
        Ok(Tensor::cat(&chunks, 1)?.to_dtype(v.dtype())?)
    }
}

/// Score-matrix elements per batch item computed at once (256 MiB in f32).
const MAX_SCORES_PER_CHUNK: usize = 1 << 26;

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    fn random_linear(channels: usize, device: &Device) -> Linear {
        let weight = Tensor::randn(0f32, 0.5, (channels, channels), device).expect("weight");
        let bias = Tensor::randn(0f32, 0.1, channels, device).expect("bias");
        Linear::new(weight, Some(bias))
    }

    /// The row chunks (here 3 queries at a time, the last chunk shorter) give the same result
    /// as one full score matrix.
    #[test]
    fn chunked_attention_equals_unchunked() {
        let device = Device::Cpu;
        let channels = 8;
        let attention = SpatialSelfAttention {
            group_norm: crate::nn::group_norm_without_affine(
                4,
                channels,
                1e-6,
                &device,
                DType::F32,
            )
            .expect("norm"),
            query: random_linear(channels, &device),
            key: random_linear(channels, &device),
            value: random_linear(channels, &device),
            out: random_linear(channels, &device),
            scale: 1.0 / (channels as f64).sqrt(),
        };
        let pixels = 64;
        let q = Tensor::randn(0f32, 1.0, (2, pixels, channels), &device).expect("q");
        let k = Tensor::randn(0f32, 1.0, (2, pixels, channels), &device).expect("k");
        let v = Tensor::randn(0f32, 1.0, (2, pixels, channels), &device).expect("v");
        let k_t = k.t().expect("k^T");
        let whole = attention
            .attend_in_chunks(&q, &k_t, &v, usize::MAX)
            .expect("whole");
        let chunked = attention
            .attend_in_chunks(&q, &k_t, &v, 3 * pixels)
            .expect("chunked");
        let difference = (whole - chunked)
            .and_then(|d| d.abs())
            .and_then(|d| d.flatten_all())
            .and_then(|d| d.max(0))
            .and_then(|d| d.to_scalar::<f32>())
            .expect("difference");
        assert!(
            difference < 1e-6,
            "chunked attention differs by {difference}"
        );
    }
}
