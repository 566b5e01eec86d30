//! Multi-head attention of the UNet's transformer blocks (diffusers' `Attention` with the
//! default processor): projections, then [`scaled_dot_product_attention`].

use candle_core::{DType, Tensor};
use candle_nn::{Linear, Module};

use super::softmax::softmax_last_dim_consuming;
use super::ImageTokens;
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
    /// IP-Adapter's `to_k_ip` and `to_v_ip` (cross-attention layers of a model loaded with one).
    image: Option<(Linear, Linear)>,
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
            image: None,
        })
    }

    /// Width of the queries, keys and values (`heads * head_dim`).
    pub fn inner(&self) -> usize {
        self.to_q.weight().dim(0).unwrap_or(0)
    }

    /// Adds IP-Adapter's decoupled keys and values for image prompt tokens.
    pub fn attach_image_projections(&mut self, to_k_ip: Linear, to_v_ip: Linear) {
        self.image = Some((to_k_ip, to_v_ip));
    }

    /// Cross-attention to the text plus, where the layer has an IP-Adapter and the batch image
    /// prompt tokens, `scale * attention(q, to_k_ip(image), to_v_ip(image))` per row.
    pub fn forward_cross(
        &self,
        x: &Tensor,
        text: &Tensor,
        image: Option<&ImageTokens>,
    ) -> Result<Tensor> {
        let q = self.to_q.forward(x)?;
        let k = self.to_k.forward(text)?;
        let v = self.to_v.forward(text)?;
        let mut mixed = scaled_dot_product_attention(&q, &k, &v, self.heads, self.upcast)?;
        if let (Some((to_k_ip, to_v_ip)), Some(image)) = (&self.image, image) {
            let tokens = image.tokens.to_dtype(q.dtype())?;
            let k = to_k_ip.forward(&tokens)?;
            let v = to_v_ip.forward(&tokens)?;
            let pictured = scaled_dot_product_attention(&q, &k, &v, self.heads, self.upcast)?;
            let scales = image.scales.to_dtype(q.dtype())?;
            mixed = (mixed + pictured.broadcast_mul(&scales)?)?;
        }
        Ok(self.to_out.forward(&mixed)?)
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
/// head_dim]`; the result has `q`'s shape.
///
/// All heads of a sample go through one batched matmul that reads q, k and v in place (the
/// head split is a strided view, which gemm takes as is), so the only copies are the scaling
/// of the shorter of q and k and the final merge of the heads.
pub fn scaled_dot_product_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    upcast: bool,
) -> Result<Tensor> {
    attention_in_chunks(q, k, v, heads, upcast, MAX_SCORE_ELEMENTS)
}

/// [`scaled_dot_product_attention`] computing at most `max_scores` scores at once.
fn attention_in_chunks(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    upcast: bool,
    max_scores: usize,
) -> Result<Tensor> {
    let (batch, q_tokens, inner) = q.dims3()?;
    let (_, kv_tokens, _) = k.dims3()?;
    if heads == 0 || !inner.is_multiple_of(heads) || k.dims() != v.dims() || k.dim(0)? != batch {
        return Err(DiffusionError::InvalidInput(format!(
            "attention over q {:?}, k {:?}, v {:?} with {heads} heads",
            q.dims(),
            k.dims(),
            v.dims()
        )));
    }
    let head_dim = inner / heads;
    let scale = 1.0 / (head_dim as f64).sqrt();
    // (s q) k^T = q (s k)^T: scale whichever has fewer tokens (the text, for cross-attention).
    let (q, k) = if kv_tokens < q_tokens {
        (q.clone(), k.affine(scale, 0.0)?)
    } else {
        (q.affine(scale, 0.0)?, k.clone())
    };
    let score_dtype = if upcast { DType::F32 } else { q.dtype() };
    let q = head_view(&q, heads)?.to_dtype(score_dtype)?;
    let k_t = head_view(&k, heads)?.to_dtype(score_dtype)?.t()?;
    let v = head_view(v, heads)?;

    let rows = (max_scores / (heads * kv_tokens).max(1)).clamp(1, q_tokens);
    let mut samples = Vec::with_capacity(batch);
    for sample in 0..batch {
        let (q, k_t, v) = (
            q.narrow(0, sample, 1)?,
            k_t.narrow(0, sample, 1)?,
            v.narrow(0, sample, 1)?,
        );
        let mut chunks = Vec::with_capacity(q_tokens.div_ceil(rows));
        for start in (0..q_tokens).step_by(rows) {
            let q_rows = q.narrow(2, start, rows.min(q_tokens - start))?;
            let scores = q_rows.matmul(&k_t)?;
            let weights = softmax_last_dim_consuming(scores)?.to_dtype(v.dtype())?;
            // [1, heads, rows, head_dim] -> a [1, rows, heads, head_dim] view.
            chunks.push(weights.matmul(&v)?.transpose(1, 2)?);
        }
        samples.push(match chunks.len() {
            1 => chunks.remove(0),
            _ => Tensor::cat(&chunks, 1)?,
        });
    }
    // One strided copy merges the heads back: [batch, q_tokens, heads * head_dim].
    let merged = match samples.len() {
        1 => samples.remove(0).contiguous()?,
        _ => Tensor::cat(&samples, 0)?,
    };
    Ok(merged.reshape((batch, q_tokens, inner))?)
}

/// `[batch, tokens, heads * head_dim]` seen as `[batch, heads, tokens, head_dim]`, no copy.
fn head_view(x: &Tensor, heads: usize) -> Result<Tensor> {
    let (batch, tokens, inner) = x.dims3()?;
    Ok(x.reshape((batch, tokens, heads, inner / heads))?
        .transpose(1, 2)?)
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
        let (batch, tokens, kv_tokens, heads, head_dim) = (2, 5, 3, 2, 4);
        let inner = heads * head_dim;
        let values = |n: usize, seed: f32| -> Vec<f32> {
            (0..n).map(|i| ((i as f32 + seed) * 0.37).sin()).collect()
        };
        let (q, k, v) = (
            values(batch * tokens * inner, 0.0),
            values(batch * kv_tokens * inner, 1.0),
            values(batch * kv_tokens * inner, 2.0),
        );
        let tensor = |data: &[f32], rows: usize| {
            Tensor::from_slice(data, (batch, rows, inner), &Device::Cpu).expect("tensor")
        };
        let (qt, kt, vt) = (
            tensor(&q, tokens),
            tensor(&k, kv_tokens),
            tensor(&v, kv_tokens),
        );
        // Whole, in chunks of 2 query rows (2 heads x 3 keys x 2 rows = 12 scores), and with
        // q and k swapped in size (self-attention scales q, cross-attention k).
        for max_scores in [MAX_SCORE_ELEMENTS, 12] {
            let got =
                attention_in_chunks(&qt, &kt, &vt, heads, false, max_scores).expect("attention");
            let got: Vec<f32> = got.flatten_all().expect("flat").to_vec1().expect("values");
            for sample in 0..batch {
                let (qs, ks) = (tokens * inner, kv_tokens * inner);
                let want = reference(
                    &q[sample * qs..(sample + 1) * qs],
                    &k[sample * ks..(sample + 1) * ks],
                    &v[sample * ks..(sample + 1) * ks],
                    (tokens, kv_tokens, heads, head_dim),
                );
                for (g, w) in got[sample * qs..(sample + 1) * qs].iter().zip(&want) {
                    assert!((g - w).abs() < 1e-5, "{max_scores}: {g} vs {w}");
                }
            }
        }
        let self_attention =
            scaled_dot_product_attention(&qt, &qt, &qt, heads, false).expect("attention");
        let got: Vec<f32> = self_attention
            .flatten_all()
            .expect("flat")
            .to_vec1()
            .expect("values");
        let want = reference(
            &q[..tokens * inner],
            &q[..tokens * inner],
            &q[..tokens * inner],
            (tokens, tokens, heads, head_dim),
        );
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5, "self-attention: {g} vs {w}");
        }
    }

    #[test]
    fn heads_must_divide_the_width() {
        let x = Tensor::zeros((1, 2, 6), DType::F32, &Device::Cpu).expect("zeros");
        assert!(scaled_dot_product_attention(&x, &x, &x, 4, false).is_err());
    }
}
