//! The CLIP text transformer (pre-norm, causal self-attention) that conditions the UNet, with
//! the optional projection of its pooled output (`CLIPTextModelWithProjection`, SDXL's second
//! encoder).

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{LayerNorm, Linear, Module};
use serde::Deserialize;

use crate::error::{DiffusionError, Result};
use crate::weights::WeightFile;

/// The MLP activation named by `hidden_act`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClipActivation {
    QuickGelu,
    Gelu,
}

/// The fields of a transformers `CLIPTextConfig` (`text_encoder/config.json`) the model uses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    pub hidden_act: ClipActivation,
    /// Width of `text_projection` (`CLIPTextModelWithProjection`); unused without one.
    #[serde(default)]
    pub projection_dim: Option<usize>,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// The token whose position is pooled. transformers treats 2 (the value in configs written
    /// before it was fixed, SDXL's included) as "the highest id", which is `<|endoftext|>`.
    #[serde(default)]
    pub eos_token_id: Option<u32>,
}

/// The legacy `eos_token_id` of CLIP configs: pool at the highest token id instead.
const LEGACY_EOS_TOKEN_ID: u32 = 2;

fn default_eps() -> f64 {
    1e-5
}

impl ClipTextConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let config: Self = crate::error::read_json(path)?;
        if config.num_attention_heads == 0
            || !config
                .hidden_size
                .is_multiple_of(config.num_attention_heads)
        {
            return Err(DiffusionError::ModelConfig {
                path: path.to_path_buf(),
                reason: format!(
                    "hidden_size {} is not a multiple of num_attention_heads {}",
                    config.hidden_size, config.num_attention_heads
                ),
            });
        }
        Ok(config)
    }
}

/// What the text encoder returns for a batch of token ids, both `(batch, tokens, hidden)`.
#[derive(Debug, Clone)]
pub struct ClipTextOutput {
    /// The last layer's output through the final layer norm.
    pub last_hidden_state: Tensor,
    /// The second-to-last layer's output through the final layer norm ("clip skip").
    pub penultimate_normed: Tensor,
    /// The second-to-last layer's output as it is (`hidden_states[-2]`, what SDXL feeds the UNet).
    pub penultimate: Tensor,
    /// `(batch, hidden)` the final-normed output at each row's end-of-text token, through
    /// `text_projection` when the model has one (`(batch, projection_dim)` then).
    pub pooled: Tensor,
}

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    heads: usize,
    head_dim: usize,
}

/// The sizes of a CLIP transformer encoder (text or vision).
#[derive(Debug, Clone, Copy)]
pub(crate) struct EncoderShape {
    pub hidden: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub eps: f64,
}

impl ClipTextConfig {
    fn shape(&self) -> EncoderShape {
        EncoderShape {
            hidden: self.hidden_size,
            heads: self.num_attention_heads,
            intermediate: self.intermediate_size,
            eps: self.layer_norm_eps,
        }
    }
}

/// A pre-norm encoder layer: attention, then the MLP, each with a residual.
pub(crate) struct EncoderLayer {
    norm1: LayerNorm,
    attention: Attention,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

/// CLIPTextModel on candle.
pub struct ClipTextEncoder {
    token_embedding: Tensor,
    position_embedding: Tensor,
    layers: Vec<EncoderLayer>,
    final_norm: LayerNorm,
    activation: ClipActivation,
    projection: Option<Linear>,
    eos_token_id: Option<u32>,
}

pub(crate) fn linear(
    weights: &WeightFile,
    name: &str,
    out_dim: usize,
    in_dim: usize,
) -> Result<Linear> {
    let weight = weights.get(&format!("{name}.weight"), &[out_dim, in_dim])?;
    let bias = weights.get(&format!("{name}.bias"), &[out_dim])?;
    Ok(Linear::new(weight, Some(bias)))
}

pub(crate) fn layer_norm(
    weights: &WeightFile,
    name: &str,
    dim: usize,
    eps: f64,
) -> Result<LayerNorm> {
    let weight = weights.get(&format!("{name}.weight"), &[dim])?;
    let bias = weights.get(&format!("{name}.bias"), &[dim])?;
    Ok(LayerNorm::new(weight, bias, eps))
}

impl Attention {
    fn load(weights: &WeightFile, name: &str, shape: EncoderShape) -> Result<Self> {
        let h = shape.hidden;
        Ok(Self {
            q: linear(weights, &format!("{name}.q_proj"), h, h)?,
            k: linear(weights, &format!("{name}.k_proj"), h, h)?,
            v: linear(weights, &format!("{name}.v_proj"), h, h)?,
            out: linear(weights, &format!("{name}.out_proj"), h, h)?,
            heads: shape.heads,
            head_dim: h / shape.heads,
        })
    }

    /// (batch, tokens, hidden) -> (batch, heads, tokens, head_dim).
    fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (batch, tokens, _) = x.dims3()?;
        Ok(x.reshape((batch, tokens, self.heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()?)
    }

    /// Self-attention; `mask` (additive) hides positions, as the text encoder's causal mask does.
    fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (batch, tokens, hidden) = x.dims3()?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let q = self.split_heads(&self.q.forward(x)?.affine(scale, 0.0)?)?;
        let k = self.split_heads(&self.k.forward(x)?)?;
        let v = self.split_heads(&self.v.forward(x)?)?;
        let scores = q.matmul(&k.t()?)?;
        let scores = match mask {
            Some(mask) => scores.broadcast_add(mask)?,
            None => scores,
        };
        let weights = candle_nn::ops::softmax_last_dim(&scores)?;
        let mixed = weights
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((batch, tokens, hidden))?;
        Ok(self.out.forward(&mixed)?)
    }
}

impl EncoderLayer {
    pub(crate) fn load(weights: &WeightFile, index: usize, shape: EncoderShape) -> Result<Self> {
        let name = format!("encoder.layers.{index}");
        let (h, eps) = (shape.hidden, shape.eps);
        Ok(Self {
            norm1: layer_norm(weights, &format!("{name}.layer_norm1"), h, eps)?,
            attention: Attention::load(weights, &format!("{name}.self_attn"), shape)?,
            norm2: layer_norm(weights, &format!("{name}.layer_norm2"), h, eps)?,
            fc1: linear(weights, &format!("{name}.mlp.fc1"), shape.intermediate, h)?,
            fc2: linear(weights, &format!("{name}.mlp.fc2"), h, shape.intermediate)?,
        })
    }

    pub(crate) fn forward(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        activation: ClipActivation,
    ) -> Result<Tensor> {
        let attended = self.attention.forward(&self.norm1.forward(x)?, mask)?;
        let x = (x + attended)?;
        let hidden = self.fc1.forward(&self.norm2.forward(&x)?)?;
        let hidden = match activation {
            // x * sigmoid(1.702 x), the approximation original CLIP was trained with.
            ClipActivation::QuickGelu => {
                (&hidden * candle_nn::ops::sigmoid(&hidden.affine(1.702, 0.0)?)?)?
            }
            ClipActivation::Gelu => hidden.gelu_erf()?,
        };
        Ok((x + self.fc2.forward(&hidden)?)?)
    }
}

/// Additive mask that hides later tokens: 0 on and below the diagonal, -inf above.
fn causal_mask(tokens: usize, device: &Device) -> Result<Tensor> {
    let values: Vec<f32> = (0..tokens)
        .flat_map(|row| (0..tokens).map(move |col| if col > row { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Ok(Tensor::from_vec(values, (tokens, tokens), device)?)
}

impl ClipTextEncoder {
    /// Loads `config.json` and `model.safetensors` from a diffusers `text_encoder/` folder.
    pub fn from_dir(dir: &Path, device: &Device) -> Result<Self> {
        let config = ClipTextConfig::from_file(&dir.join("config.json"))?;
        Self::load(&config, &dir.join("model.safetensors"), device)
    }

    /// The weight file of a `text_encoder/` folder, opened as [`Self::from_weights`] wants it.
    pub fn open_weights(dir: &Path, device: &Device) -> Result<WeightFile> {
        WeightFile::open(&dir.join("model.safetensors"), device, DType::F32)
    }

    /// Loads weights named with or without the `text_model.` prefix (transformers 4 vs 5).
    pub fn load(config: &ClipTextConfig, weights_path: &Path, device: &Device) -> Result<Self> {
        Self::from_weights(config, WeightFile::open(weights_path, device, DType::F32)?)
    }

    /// Builds the encoder from an opened weight file (LoRA patches, if any, already attached).
    /// `text_projection.weight` present makes it a `CLIPTextModelWithProjection`.
    pub fn from_weights(config: &ClipTextConfig, mut weights: WeightFile) -> Result<Self> {
        let h = config.hidden_size;
        let projection = match config.projection_dim {
            Some(dim) if weights.contains("text_projection.weight") => Some(Linear::new(
                weights.get("text_projection.weight", &[dim, h])?,
                None,
            )),
            _ => None,
        };
        if weights.contains("text_model.embeddings.token_embedding.weight") {
            weights.set_prefix("text_model.");
        }
        let layers = (0..config.num_hidden_layers)
            .map(|i| EncoderLayer::load(&weights, i, config.shape()))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            token_embedding: weights
                .get("embeddings.token_embedding.weight", &[config.vocab_size, h])?,
            position_embedding: weights.get(
                "embeddings.position_embedding.weight",
                &[config.max_position_embeddings, h],
            )?,
            layers,
            final_norm: layer_norm(&weights, "final_layer_norm", h, config.layer_norm_eps)?,
            activation: config.hidden_act,
            projection,
            eos_token_id: config.eos_token_id,
        })
    }

    /// Encodes `(batch, tokens)` u32 token ids.
    pub fn forward(&self, input_ids: &Tensor) -> Result<ClipTextOutput> {
        let (batch, tokens) = input_ids.dims2()?;
        let max_positions = self.position_embedding.dim(0)?;
        if tokens > max_positions || tokens == 0 || self.layers.len() < 2 {
            return Err(DiffusionError::InvalidInput(format!(
                "text encoder got {tokens} tokens for {max_positions} positions and {} layers",
                self.layers.len()
            )));
        }
        let (vocab, hidden) = self.token_embedding.dims2()?;
        let ids = input_ids.to_dtype(DType::U32)?.flatten_all()?;
        let largest = ids.max(0)?.to_scalar::<u32>()?;
        if largest as usize >= vocab {
            return Err(DiffusionError::InvalidInput(format!(
                "token id {largest} is outside the {vocab}-token vocabulary"
            )));
        }
        let embedded = self
            .token_embedding
            .index_select(&ids, 0)?
            .reshape((batch, tokens, hidden))?;
        let positions = self.position_embedding.narrow(0, 0, tokens)?;
        let mut x = embedded.broadcast_add(&positions)?;
        let mask = causal_mask(tokens, input_ids.device())?;
        let mut penultimate = None;
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            if i == last {
                penultimate = Some(x.clone());
            }
            x = layer.forward(&x, Some(&mask), self.activation)?;
        }
        let penultimate = penultimate.unwrap_or_else(|| x.clone());
        let last_hidden_state = self.final_norm.forward(&x)?;
        let pooled = self.pool(&last_hidden_state, input_ids)?;
        Ok(ClipTextOutput {
            last_hidden_state,
            penultimate_normed: self.final_norm.forward(&penultimate)?,
            penultimate,
            pooled,
        })
    }

    /// The output at each row's end-of-text token, projected when the model has a projection.
    fn pool(&self, hidden: &Tensor, input_ids: &Tensor) -> Result<Tensor> {
        let ids: Vec<Vec<u32>> = input_ids
            .to_dtype(DType::U32)?
            .to_device(&Device::Cpu)?
            .to_vec2()?;
        let rows = ids
            .iter()
            .enumerate()
            .map(|(row, ids)| {
                let position = eos_position(ids, self.eos_token_id);
                hidden.get(row)?.narrow(0, position, 1)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let pooled = Tensor::cat(&rows, 0)?;
        Ok(match &self.projection {
            Some(projection) => projection.forward(&pooled)?,
            None => pooled,
        })
    }

    /// Whether the model projects its pooled output (`CLIPTextModelWithProjection`).
    pub fn has_projection(&self) -> bool {
        self.projection.is_some()
    }
}

/// Where transformers pools: the first highest id for the legacy eos id 2 (or none given), else
/// the first occurrence of the eos id (position 0 when absent, as `argmax` of all-false gives).
fn eos_position(ids: &[u32], eos_token_id: Option<u32>) -> usize {
    match eos_token_id {
        None | Some(LEGACY_EOS_TOKEN_ID) => {
            let highest = ids.iter().copied().max().unwrap_or(0);
            ids.iter().position(|&id| id == highest).unwrap_or(0)
        }
        Some(eos) => ids.iter().position(|&id| id == eos).unwrap_or(0),
    }
}
