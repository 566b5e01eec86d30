//! Multi-head attention of the UNet's transformer blocks (diffusers' `Attention` with the
//! default processor): projections, then [`scaled_dot_product_attention`].

use candle_core::{DType, Tensor};
use candle_nn::{Linear, Module};

use crate::error::{DiffusionError, Result};
use crate::nn::{linear, linear_no_bias};
use crate::weights::WeightFile;

/// Largest attention-score matrix computed at once, in elements. Longer queries are processed
/// in row chunks, so a 64x64 latent (4096 tokens) does not need gigabytes of scores.
const MAX_SCORE_ELEMENTS: usize = 1 << 26;

/// `to_q`, `to_k`, `to_v` (no bias) and `to_out.0` (with bias) around the attention itself.
pub struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: usize,
    upcast: bool,
}

/// The sizes of one attention layer.
#[derive(Debug, Clone, Copy)]
pub struct AttentionDims {
    pub query_dim: usize,
    /// Width of the keys' and values' source (the text for cross-attention).
    pub context_dim: usize,
    pub heads: usize,
    pub head_dim: usize,
    /// Compute the scores and softmax in f32 for f16/bf16 models (`upcast_attention`).
    pub upcast: bool,
}

impl Attention {
    pub fn load(weights: &WeightFile, prefix: &str, dims: AttentionDims) -> Result<Self> {
        let inner = dims.heads * dims.head_dim;
        let name = |child: &str| format!("{prefix}.{child}");
        Ok(Self {
            to_q: linear_no_bias(weights, &name("to_q"), dims.query_dim, inner)?,
            to_k: linear_no_bias(weights, &name("to_k"), dims.context_dim, inner)?,
            to_v: linear_no_bias(weights, &name("to_v"), dims.context_dim, inner)?,
            to_out: linear(weights, &name("to_out.0"), inner, dims.query_dim)?,
            heads: dims.heads,
            upcast: dims.upcast,
        })
    }

    /// `x` is `[batch, tokens, query_dim]`; `context` (`[batch, context_tokens, context_dim]`)
    /// supplies keys and values, or `x` itself for self-attention.
    pub fn forward(&self, x: &Tensor, context: Option<&Tensor>) -> Result<Tensor> {
        let context = context.unwrap_or(x);
        let q = self.to_q.forward(x)?;
        let k = self.to_k.forward(context)?;
        let v = self.to_v.forward(context)?;
        let mixed = scaled_dot_product_attention(&q, &k, &v, self.heads, self.upcast)?;
        Ok(self.to_out.forward(&mixed)?)
    }
}

/// `softmax(q k^T / sqrt(head_dim)) v` per head, with heads packed in the last dimension:
/// `q` is `[batch, q_tokens, heads * head_dim]`, `k` and `v` `[batch, kv_tokens, heads *
/// head_dim]`; the result has `q`'s shape. All heads go through one batched matmul.
pub fn scaled_dot_product_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    upcast: bool,
) -> Result<Tensor> {
    let (batch, q_tokens, inner) = q.dims3()?;
    let (_, kv_tokens, _) = k.dims3()?;
    if heads == 0 || !inner.is_multiple_of(heads) || k.dims() != v.dims() {
        return Err(DiffusionError::InvalidInput(format!(
            "attention over q {:?}, k {:?}, v {:?} with {heads} heads",
            q.dims(),
            k.dims(),
            v.dims()
        )));
    }
    let head_dim = inner / heads;
    let scale = 1.0 / (head_dim as f64).sqrt();
    let score_dtype = if upcast { DType::F32 } else { q.dtype() };
    let q = split_heads(&q.affine(scale, 0.0)?, heads)?.to_dtype(score_dtype)?;
    let k_t = split_heads(k, heads)?.to_dtype(score_dtype)?.t()?;
    let v = split_heads(v, heads)?;

    let rows = (MAX_SCORE_ELEMENTS / (batch * heads * kv_tokens).max(1)).clamp(1, q_tokens);
    let mut chunks = Vec::with_capacity(q_tokens.div_ceil(rows));
    for start in (0..q_tokens).step_by(rows) {
        let q_rows = q.narrow(2, start, rows.min(q_tokens - start))?;
        let scores = q_rows.matmul(&k_t)?;
        let weights = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(v.dtype())?;
        chunks.push(weights.matmul(&v)?);
    }
    let mixed = match chunks.len() {
        1 => chunks.remove(0),
        _ => Tensor::cat(&chunks, 2)?,
    };
    // [batch, heads, tokens, head_dim] -> [batch, tokens, heads * head_dim]
    Ok(mixed.transpose(1, 2)?.reshape((batch, q_tokens, inner))?)
}

/// `[batch, tokens, heads * head_dim]` -> contiguous `[batch, heads, tokens, head_dim]`.
fn split_heads(x: &Tensor, heads: usize) -> Result<Tensor> {
    let (batch, tokens, inner) = x.dims3()?;
    let x = x.reshape((batch, tokens, heads, inner / heads))?;
    if heads == 1 {
        return Ok(x.transpose(1, 2)?);
    }
    Ok(x.transpose(1, 2)?.contiguous()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The same attention written head by head with plain loops.
    fn reference(q: &[f32], k: &[f32], v: &[f32], dims: (usize, usize, usize, usize)) -> Vec<f32> {
        let (tokens, kv_tokens, heads, head_dim) = dims;
        let inner = heads * head_dim;
        let mut out = vec![0.0; tokens * inner];
        for h in 0..heads {
            for i in 0..tokens {
                let scores: Vec<f32> = (0..kv_tokens)
                    .map(|j| {
                        (0..head_dim)
                            .map(|d| {
                                q[i * inner + h * head_dim + d] * k[j * inner + h * head_dim + d]
                            })
                            .sum::<f32>()
                            / (head_dim as f32).sqrt()
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let exps: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f32 = exps.iter().sum();
                for d in 0..head_dim {
                    out[i * inner + h * head_dim + d] = (0..kv_tokens)
                        .map(|j| exps[j] / total * v[j * inner + h * head_dim + d])
                        .sum();
                }
            }
        }
        out
    }

    #[test]
    fn batched_heads_match_a_per_head_loop() {
        let (tokens, kv_tokens, heads, head_dim) = (5, 3, 2, 4);
        let inner = heads * head_dim;
        let values = |n: usize, seed: f32| -> Vec<f32> {
            (0..n).map(|i| ((i as f32 + seed) * 0.37).sin()).collect()
        };
        let (q, k, v) = (
            values(tokens * inner, 0.0),
            values(kv_tokens * inner, 1.0),
            values(kv_tokens * inner, 2.0),
        );
        let tensor = |data: &[f32], rows: usize| {
            Tensor::from_slice(data, (1, rows, inner), &Device::Cpu).expect("tensor")
        };
        let got = scaled_dot_product_attention(
            &tensor(&q, tokens),
            &tensor(&k, kv_tokens),
            &tensor(&v, kv_tokens),
            heads,
            false,
        )
        .expect("attention");
        let got: Vec<f32> = got.flatten_all().expect("flat").to_vec1().expect("values");
        let want = reference(&q, &k, &v, (tokens, kv_tokens, heads, head_dim));
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5, "{g} vs {w}");
        }
    }

    #[test]
    fn heads_must_divide_the_width() {
        let x = Tensor::zeros((1, 2, 6), DType::F32, &Device::Cpu).expect("zeros");
        assert!(scaled_dot_product_attention(&x, &x, &x, 4, false).is_err());
    }
}
