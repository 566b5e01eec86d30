//! IP-Adapter image prompts: a photo read by the CLIP vision tower, projected to a few tokens, and
//! attended to by every cross-attention layer of the UNet beside the text (decoupled
//! cross-attention: `to_k_ip`, `to_v_ip`, the result added with a per-sample scale).
//!
//! The file format is the published one (`ip-adapter*.safetensors`): `image_proj.*` (the
//! projection) and `ip_adapter.{1,3,5,…}.to_{k,v}_ip.weight`, one pair per cross-attention layer in
//! diffusers' order (down blocks, up blocks, then the middle block). The image encoder is the
//! `image_encoder/` folder beside the file. Two projections are implemented:
//! - IP-Adapter: the projected CLIP image embedding through a linear map to 4 tokens and a norm;
//! - IP-Adapter Plus: the encoder's second-to-last hidden states through a perceiver resampler.
//!
//! Face ID variants and the full-face projection are refused by name.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::{LayerNorm, Linear, Module};
use image::RgbImage;

use crate::clip::layer_norm;
use crate::clip_vision::ClipVisionEncoder;
use crate::error::{DiffusionError, Result};
use crate::nn::{linear, linear_no_bias};
use crate::unet::{scaled_dot_product_attention, UNet2DConditionModel};
use crate::weights::WeightFile;

/// Tokens of the plain IP-Adapter projection (fixed by the format; diffusers assumes it too).
const PLAIN_TOKENS: usize = 4;
/// Head size of the Plus resampler's attention (fixed by the format).
const RESAMPLER_HEAD_DIM: usize = 64;
/// LayerNorm epsilon of the projections (PyTorch's default).
const NORM_EPS: f64 = 1e-5;

/// The image encoder's outputs for one photo, before the adapter's projection: what the farm
/// caches per (adapter, photo). The negative is what the unconditional branch reads.
#[derive(Debug, Clone)]
pub struct ImagePromptEmbeds {
    /// Plain: `(1, projection_dim)`; Plus: `(1, 1 + patches, hidden)`.
    pub positive: Tensor,
    pub negative: Tensor,
}

/// An image prompt of one sample: its embeddings and how strongly they count.
#[derive(Debug, Clone)]
pub struct ImagePrompt {
    pub embeds: ImagePromptEmbeds,
    /// diffusers' `set_ip_adapter_scale`: 0 ignores the picture, 1 is the trained strength.
    pub scale: f64,
}

/// The largest image prompt scale accepted.
pub const MAX_IP_SCALE: f64 = 5.0;

/// An IP-Adapter file and its image encoder.
pub struct IpAdapter {
    path: PathBuf,
    weights: WeightFile,
    encoder: ClipVisionEncoder,
    projection: Projection,
    /// Cross-attention layers the file has `to_k_ip` / `to_v_ip` for.
    layers: usize,
    /// Width of the image tokens (the UNet's `cross_attention_dim`).
    cross_dim: usize,
    /// Plus: the hidden states of an all-zero picture (every photo's negative), computed once.
    zero_picture: std::sync::OnceLock<Tensor>,
}

enum Projection {
    Plain { proj: Linear, norm: LayerNorm },
    Resampler(Resampler),
}

impl IpAdapter {
    /// Loads `file` and the `image_encoder/` folder beside it; `dtype` is the UNet's.
    pub fn load(file: &Path, device: &Device, dtype: DType) -> Result<Self> {
        let fail = |reason: String| DiffusionError::IpAdapter {
            path: file.to_path_buf(),
            reason,
        };
        let encoder_dir = file
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join("image_encoder");
        if !encoder_dir.join("config.json").is_file() {
            return Err(fail(format!(
                "no image encoder: {} has no config.json (an IP-Adapter needs the CLIP vision \
                 tower it was trained with, in image_encoder/ beside the file)",
                encoder_dir.display()
            )));
        }
        let encoder = ClipVisionEncoder::from_dir(&encoder_dir, device)?;
        let weights = WeightFile::open(file, device, dtype)?;
        let layers = (0..)
            .take_while(|i| weights.contains(&format!("ip_adapter.{}.to_k_ip.weight", 2 * i + 1)))
            .count();
        let first = weights
            .shapes()
            .into_iter()
            .find(|(name, _)| name == "ip_adapter.1.to_k_ip.weight");
        let Some((_, first_shape)) = first.filter(|_| layers > 0) else {
            return Err(fail(
                "no ip_adapter.1.to_k_ip.weight: not an IP-Adapter file".into(),
            ));
        };
        let cross_dim = first_shape.get(1).copied().unwrap_or(0);
        let projection_weights = WeightFile::open(file, device, DType::F32)?;
        let projection = Projection::load(&projection_weights, &encoder, cross_dim).map_err(
            |error| match error {
                DiffusionError::InvalidInput(reason) => fail(reason),
                other => other,
            },
        )?;
        Ok(Self {
            path: file.to_path_buf(),
            weights,
            encoder,
            projection,
            layers,
            cross_dim,
            zero_picture: std::sync::OnceLock::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this is IP-Adapter Plus (reads the encoder's hidden states).
    pub fn is_plus(&self) -> bool {
        matches!(self.projection, Projection::Resampler(_))
    }

    /// The cross-attention layers the adapter has weights for.
    pub fn layers(&self) -> usize {
        self.layers
    }

    pub fn cross_dim(&self) -> usize {
        self.cross_dim
    }

    /// Gives `unet`'s cross-attention layers this adapter's image projections. The adapter must be
    /// made for this UNet: the same token width, as many layers, the same layer widths.
    pub fn attach_to(&self, unet: &mut UNet2DConditionModel) -> Result<()> {
        let mismatch = |reason: String| DiffusionError::IpAdapter {
            path: self.path.clone(),
            reason: format!("{reason}: an adapter for another base model?"),
        };
        let context_dim = unet.config().context_dim();
        if self.cross_dim != context_dim {
            return Err(mismatch(format!(
                "its image tokens are {} wide, this UNet's cross-attention reads {context_dim}",
                self.cross_dim
            )));
        }
        unet.attach_image_projections(self.layers, |index, inner| self.layer(index, inner))
            .map_err(|error| match error {
                DiffusionError::InvalidInput(reason) => mismatch(reason),
                other => other,
            })
    }

    /// `to_k_ip` and `to_v_ip` of cross-attention layer `index` (diffusers' order), mapping the
    /// image tokens to the layer's `inner` width.
    fn layer(&self, index: usize, inner: usize) -> Result<(Linear, Linear)> {
        let key = 2 * index + 1;
        let get = |kind: &str| {
            self.weights
                .get(
                    &format!("ip_adapter.{key}.{kind}.weight"),
                    &[inner, self.cross_dim],
                )
                .map(|w| Linear::new(w, None))
        };
        Ok((get("to_k_ip")?, get("to_v_ip")?))
    }

    /// The embeddings of one photo, as diffusers' `prepare_ip_adapter_image_embeds` makes them:
    /// plain adapters take the projected image embedding (negative: zeros), Plus takes the
    /// second-to-last hidden states (negative: those of an all-zero picture).
    pub fn encode_image(&self, image: &RgbImage) -> Result<ImagePromptEmbeds> {
        let device = self.weights.device();
        let pixels = self.encoder.preprocess(image, device)?;
        self.encode_pixels(&pixels)
    }

    /// [`Self::encode_image`] from preprocessed `(1, 3, S, S)` pixel values.
    pub fn encode_pixels(&self, pixels: &Tensor) -> Result<ImagePromptEmbeds> {
        let output = self.encoder.forward(pixels)?;
        let positive = match self.projection {
            Projection::Plain { .. } => output.image_embeds,
            Projection::Resampler(_) => output.penultimate,
        };
        self.embeds_of(positive)
    }

    /// The embeddings whose positive half is `positive` (one photo's, as [`Self::encode_image`]
    /// made them, perhaps read back from a cache): the negative is the same for every photo.
    pub fn embeds_of(&self, positive: Tensor) -> Result<ImagePromptEmbeds> {
        let negative = match &self.projection {
            Projection::Plain { proj, .. } => {
                let width = proj.weight().dim(1)?;
                Tensor::zeros((1, width), positive.dtype(), positive.device())?
            }
            Projection::Resampler(_) => self.zero_picture_states()?,
        };
        if negative.dims() != positive.dims() {
            return Err(DiffusionError::IpAdapter {
                path: self.path.clone(),
                reason: format!(
                    "image prompt embeddings of shape {:?}, this adapter's encoder makes {:?}",
                    positive.dims(),
                    negative.dims()
                ),
            });
        }
        Ok(ImagePromptEmbeds { positive, negative })
    }

    /// Plus's negative: the second-to-last hidden states of an all-zero (normalised) picture.
    fn zero_picture_states(&self) -> Result<Tensor> {
        if let Some(states) = self.zero_picture.get() {
            return Ok(states.clone());
        }
        let size = self.encoder.config().image_size;
        let zeros = Tensor::zeros((1, 3, size, size), DType::F32, self.weights.device())?;
        let states = self.encoder.forward(&zeros)?.penultimate;
        Ok(self.zero_picture.get_or_init(|| states).clone())
    }

    /// Image tokens `(rows, tokens, cross_dim)` from a batch of embeddings (rows of
    /// [`ImagePromptEmbeds`] concatenated).
    pub fn project(&self, embeds: &Tensor) -> Result<Tensor> {
        let embeds = embeds.to_dtype(DType::F32)?;
        match &self.projection {
            Projection::Plain { proj, norm } => {
                let rows = embeds.dim(0)?;
                let tokens = proj.forward(&embeds.flatten_from(1)?)?.reshape((
                    rows,
                    PLAIN_TOKENS,
                    self.cross_dim,
                ))?;
                Ok(norm.forward(&tokens)?)
            }
            Projection::Resampler(resampler) => resampler.forward(&embeds),
        }
    }
}

impl Projection {
    fn load(weights: &WeightFile, encoder: &ClipVisionEncoder, cross_dim: usize) -> Result<Self> {
        const REFUSED: [(&str, &str); 3] = [
            ("image_proj.proj.3.weight", "IP-Adapter Full Face"),
            (
                "image_proj.perceiver_resampler.proj_in.weight",
                "IP-Adapter Face ID Plus",
            ),
            ("image_proj.proj.0.weight", "IP-Adapter Face ID"),
        ];
        for (key, kind) in REFUSED {
            if weights.contains(key) {
                return Err(DiffusionError::InvalidInput(format!(
                    "{kind} (`{key}`) is not supported; IP-Adapter and IP-Adapter Plus are"
                )));
            }
        }
        let config = encoder.config();
        if weights.contains("image_proj.proj.weight") {
            return Ok(Self::Plain {
                proj: linear(
                    weights,
                    "image_proj.proj",
                    config.projection_dim,
                    PLAIN_TOKENS * cross_dim,
                )?,
                norm: layer_norm(weights, "image_proj.norm", cross_dim, NORM_EPS)?,
            });
        }
        if weights.contains("image_proj.latents") {
            return Ok(Self::Resampler(Resampler::load(
                weights,
                config.hidden_size,
                cross_dim,
            )?));
        }
        Err(DiffusionError::InvalidInput(
            "no image_proj.proj.weight or image_proj.latents: an image projection this engine \
             does not know"
                .into(),
        ))
    }
}

/// One block of the Plus resampler: the latents attend to `[image features, latents]`, then a
/// GELU feed-forward; both residual.
struct ResamplerBlock {
    norm_features: LayerNorm,
    norm_latents: LayerNorm,
    to_q: Linear,
    to_kv: Linear,
    to_out: Linear,
    heads: usize,
    ff_norm: LayerNorm,
    ff_up: Linear,
    ff_down: Linear,
}

/// IP-Adapter Plus's perceiver resampler: learned latent queries read the image features.
struct Resampler {
    latents: Tensor,
    proj_in: Linear,
    blocks: Vec<ResamplerBlock>,
    proj_out: Linear,
    norm_out: LayerNorm,
}

impl Resampler {
    fn load(weights: &WeightFile, features: usize, cross_dim: usize) -> Result<Self> {
        let shape = |name: &str| {
            weights
                .shapes()
                .into_iter()
                .find(|(n, _)| n == name)
                .map(|(_, s)| s)
                .unwrap_or_default()
        };
        let latents_shape = shape("image_proj.latents");
        let [1, queries, hidden] = latents_shape[..] else {
            return Err(DiffusionError::InvalidInput(format!(
                "image_proj.latents is {latents_shape:?}, expected [1, queries, hidden]"
            )));
        };
        let inner = shape("image_proj.layers.0.0.to_q.weight")
            .first()
            .copied()
            .unwrap_or(0);
        if inner == 0 || !inner.is_multiple_of(RESAMPLER_HEAD_DIM) {
            return Err(DiffusionError::InvalidInput(format!(
                "the resampler's attention is {inner} wide, not a multiple of its \
                 {RESAMPLER_HEAD_DIM}-wide heads"
            )));
        }
        let ffn = shape("image_proj.layers.0.1.1.weight")
            .first()
            .copied()
            .unwrap_or(0);
        let depth = (0..)
            .take_while(|i| weights.contains(&format!("image_proj.layers.{i}.0.to_q.weight")))
            .count();
        let blocks = (0..depth)
            .map(|i| {
                let name = |child: &str| format!("image_proj.layers.{i}.{child}");
                Ok(ResamplerBlock {
                    norm_features: layer_norm(weights, &name("0.norm1"), hidden, NORM_EPS)?,
                    norm_latents: layer_norm(weights, &name("0.norm2"), hidden, NORM_EPS)?,
                    to_q: linear_no_bias(weights, &name("0.to_q"), hidden, inner)?,
                    to_kv: linear_no_bias(weights, &name("0.to_kv"), hidden, 2 * inner)?,
                    to_out: linear_no_bias(weights, &name("0.to_out"), inner, hidden)?,
                    heads: inner / RESAMPLER_HEAD_DIM,
                    ff_norm: layer_norm(weights, &name("1.0"), hidden, NORM_EPS)?,
                    ff_up: linear_no_bias(weights, &name("1.1"), hidden, ffn)?,
                    ff_down: linear_no_bias(weights, &name("1.3"), ffn, hidden)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            latents: weights.get("image_proj.latents", &[1, queries, hidden])?,
            proj_in: linear(weights, "image_proj.proj_in", features, hidden)?,
            blocks,
            proj_out: linear(weights, "image_proj.proj_out", hidden, cross_dim)?,
            norm_out: layer_norm(weights, "image_proj.norm_out", cross_dim, NORM_EPS)?,
        })
    }

    /// `(rows, tokens, features)` -> `(rows, queries, cross_dim)`.
    fn forward(&self, features: &Tensor) -> Result<Tensor> {
        let rows = features.dim(0)?;
        let features = match features.rank() {
            // A batch of one image each may arrive as (rows, 1, tokens, features).
            4 => features.squeeze(1)?,
            _ => features.clone(),
        };
        let x = self.proj_in.forward(&features)?;
        let (_, queries, hidden) = self.latents.dims3()?;
        let mut latents = self
            .latents
            .broadcast_as((rows, queries, hidden))?
            .contiguous()?;
        for block in &self.blocks {
            latents = block.forward(&x, &latents)?;
        }
        Ok(self.norm_out.forward(&self.proj_out.forward(&latents)?)?)
    }
}

impl ResamplerBlock {
    fn forward(&self, features: &Tensor, latents: &Tensor) -> Result<Tensor> {
        let normed = self.norm_latents.forward(latents)?;
        let context = Tensor::cat(&[&self.norm_features.forward(features)?, &normed], 1)?;
        let q = self.to_q.forward(&normed)?;
        let kv = self.to_kv.forward(&context)?;
        let inner = q.dim(2)?;
        let (k, v) = (kv.narrow(2, 0, inner)?, kv.narrow(2, inner, inner)?);
        let attended = scaled_dot_product_attention(
            &q,
            &k.contiguous()?,
            &v.contiguous()?,
            self.heads,
            false,
        )?;
        let latents = (self.to_out.forward(&attended)? + latents)?;
        let hidden = self
            .ff_up
            .forward(&self.ff_norm.forward(&latents)?)?
            .gelu_erf()?;
        Ok((self.ff_down.forward(&hidden)? + latents)?)
    }
}
