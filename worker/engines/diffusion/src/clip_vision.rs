//! The CLIP vision tower (`CLIPVisionModelWithProjection`) that IP-Adapters read photos with, and
//! the preprocessing of `CLIPImageProcessor` in front of it.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{LayerNorm, Linear, Module};
use image::RgbImage;
use serde::Deserialize;

use crate::clip::{layer_norm, ClipActivation, EncoderLayer, EncoderShape};
use crate::error::{DiffusionError, Result};
use crate::weights::WeightFile;

/// OpenAI CLIP's per-channel normalisation (`CLIPImageProcessor`'s defaults, as published).
#[allow(clippy::excessive_precision)]
const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
#[allow(clippy::excessive_precision)]
const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_1];

/// The fields of a transformers `CLIPVisionConfig` the model uses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClipVisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub image_size: usize,
    pub patch_size: usize,
    #[serde(default = "default_channels")]
    pub num_channels: usize,
    pub hidden_act: ClipActivation,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    pub projection_dim: usize,
}

fn default_channels() -> usize {
    3
}

fn default_eps() -> f64 {
    1e-5
}

impl ClipVisionConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let config: Self = crate::error::read_json(path)?;
        let fail = |reason: String| DiffusionError::ModelConfig {
            path: path.to_path_buf(),
            reason,
        };
        if config.num_attention_heads == 0
            || !config
                .hidden_size
                .is_multiple_of(config.num_attention_heads)
        {
            return Err(fail(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                config.hidden_size, config.num_attention_heads
            )));
        }
        if config.patch_size == 0 || !config.image_size.is_multiple_of(config.patch_size) {
            return Err(fail(format!(
                "image_size {} is not a multiple of patch_size {}",
                config.image_size, config.patch_size
            )));
        }
        if config.num_hidden_layers < 2 {
            return Err(fail("the tower needs at least two layers".into()));
        }
        Ok(config)
    }

    fn shape(&self) -> EncoderShape {
        EncoderShape {
            hidden: self.hidden_size,
            heads: self.num_attention_heads,
            intermediate: self.intermediate_size,
            eps: self.layer_norm_eps,
        }
    }
}

/// What the tower returns for a batch of pictures.
#[derive(Debug, Clone)]
pub struct ClipVisionOutput {
    /// `(batch, projection_dim)`: the class token through `post_layernorm` and `visual_projection`.
    pub image_embeds: Tensor,
    /// `(batch, 1 + patches, hidden)`: the second-to-last layer's output (`hidden_states[-2]`).
    pub penultimate: Tensor,
}

/// `CLIPVisionModelWithProjection` on candle (f32).
pub struct ClipVisionEncoder {
    config: ClipVisionConfig,
    patch_embedding: Tensor,
    class_embedding: Tensor,
    position_embedding: Tensor,
    pre_norm: LayerNorm,
    layers: Vec<EncoderLayer>,
    post_norm: LayerNorm,
    projection: Linear,
}

impl ClipVisionEncoder {
    /// Loads `config.json` and `model.safetensors` from an `image_encoder/` folder.
    pub fn from_dir(dir: &Path, device: &Device) -> Result<Self> {
        let config = ClipVisionConfig::from_file(&dir.join("config.json"))?;
        let mut weights = WeightFile::open(&dir.join("model.safetensors"), device, DType::F32)?;
        let (h, p) = (config.hidden_size, config.patch_size);
        let projection = Linear::new(
            weights.get("visual_projection.weight", &[config.projection_dim, h])?,
            None,
        );
        if weights.contains("vision_model.embeddings.class_embedding") {
            weights.set_prefix("vision_model.");
        }
        let patches = (config.image_size / p).pow(2);
        let eps = config.layer_norm_eps;
        let layers = (0..config.num_hidden_layers)
            .map(|i| EncoderLayer::load(&weights, i, config.shape()))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            patch_embedding: weights.get(
                "embeddings.patch_embedding.weight",
                &[h, config.num_channels, p, p],
            )?,
            class_embedding: weights.get("embeddings.class_embedding", &[h])?,
            position_embedding: weights
                .get("embeddings.position_embedding.weight", &[patches + 1, h])?,
            pre_norm: layer_norm(&weights, "pre_layrnorm", h, eps)?,
            layers,
            post_norm: layer_norm(&weights, "post_layernorm", h, eps)?,
            projection,
            config,
        })
    }

    pub fn config(&self) -> &ClipVisionConfig {
        &self.config
    }

    /// Encodes `(batch, channels, image_size, image_size)` normalised pixel values.
    pub fn forward(&self, pixels: &Tensor) -> Result<ClipVisionOutput> {
        let size = self.config.image_size;
        let (batch, channels, height, width) = pixels.dims4()?;
        if (channels, height, width) != (self.config.num_channels, size, size) {
            return Err(DiffusionError::InvalidInput(format!(
                "the image encoder takes [B, {}, {size}, {size}] pixels; got {:?}",
                self.config.num_channels,
                pixels.dims()
            )));
        }
        let hidden = self.config.hidden_size;
        let patches = pixels
            .to_dtype(DType::F32)?
            .conv2d(&self.patch_embedding, 0, self.config.patch_size, 1, 1)?
            .flatten_from(2)?
            .transpose(1, 2)?;
        let class = self
            .class_embedding
            .reshape((1, 1, hidden))?
            .broadcast_as((batch, 1, hidden))?;
        let tokens =
            Tensor::cat(&[&class, &patches], 1)?.broadcast_add(&self.position_embedding)?;
        let mut x = self.pre_norm.forward(&tokens)?;
        let mut penultimate = x.clone();
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            if i == last {
                penultimate = x.clone();
            }
            x = layer.forward(&x, None, self.config.hidden_act)?;
        }
        let pooled = self.post_norm.forward(&x.narrow(1, 0, 1)?.squeeze(1)?)?;
        Ok(ClipVisionOutput {
            image_embeds: self.projection.forward(&pooled)?,
            penultimate,
        })
    }

    /// `CLIPImageProcessor`: the shortest side resized to `image_size` (bicubic), the centre
    /// cropped to a square, scaled to [0, 1] and normalised with CLIP's mean and std.
    /// `(1, 3, image_size, image_size)`.
    pub fn preprocess(&self, image: &RgbImage, device: &Device) -> Result<Tensor> {
        preprocess(image, self.config.image_size, device)
    }
}

/// See [`ClipVisionEncoder::preprocess`].
pub fn preprocess(image: &RgbImage, size: usize, device: &Device) -> Result<Tensor> {
    let (width, height) = (image.width() as usize, image.height() as usize);
    if width == 0 || height == 0 {
        return Err(DiffusionError::InvalidInput(
            "the image prompt is empty".into(),
        ));
    }
    // transformers' get_resize_output_image_size: the long side is truncated, not rounded.
    let (new_width, new_height) = if width <= height {
        (size, size * height / width)
    } else {
        (size * width / height, size)
    };
    let resized = resize_bicubic(image, new_width.max(size), new_height.max(size));
    let top = (resized.height() as usize - size) / 2;
    let left = (resized.width() as usize - size) / 2;
    let mut values = vec![0f32; 3 * size * size];
    for y in 0..size {
        for x in 0..size {
            let pixel = resized.get_pixel((left + x) as u32, (top + y) as u32);
            for c in 0..3 {
                let value = f32::from(pixel[c]) / 255.0;
                values[c * size * size + y * size + x] = (value - CLIP_MEAN[c]) / CLIP_STD[c];
            }
        }
    }
    Ok(Tensor::from_vec(values, (1, 3, size, size), device)?)
}

/// Fixed-point precision of Pillow's 8-bit resampling coefficients.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's bicubic kernel (a = -0.5), support 2.
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// For each output position along one axis: the first input index and the fixed-point weights
/// of the inputs it reads (Pillow's `precompute_coeffs` and `normalize_coeffs_8bpc`: the filter
/// widened by the scale when shrinking, so it averages instead of aliasing).
fn axis_weights(input: usize, output: usize) -> Vec<(usize, Vec<i64>)> {
    let scale = input as f64 / output as f64;
    let filter_scale = scale.max(1.0);
    let support = 2.0 * filter_scale;
    (0..output)
        .map(|out| {
            let center = (out as f64 + 0.5) * scale;
            let first = ((center - support + 0.5) as i64).max(0) as usize;
            let last = ((center + support + 0.5) as i64).min(input as i64) as usize;
            let weights: Vec<f64> = (first..last)
                .map(|i| bicubic((i as f64 - center + 0.5) / filter_scale))
                .collect();
            let total: f64 = weights.iter().sum();
            let fixed = weights
                .iter()
                .map(|w| {
                    let w = if total == 0.0 { *w } else { w / total };
                    let scaled = w * f64::from(1u32 << PRECISION_BITS);
                    // Rounded half away from zero, as Pillow does.
                    if scaled < 0.0 {
                        (scaled - 0.5) as i64
                    } else {
                        (scaled + 0.5) as i64
                    }
                })
                .collect();
            (first, fixed)
        })
        .collect()
}

fn clip8(sum: i64) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's `Image.resize(…, BICUBIC)` of an 8-bit RGB picture, bit for bit: a horizontal pass
/// then a vertical one, each rounded to 8 bits, skipped where the size does not change. This is
/// what `CLIPImageProcessor` runs, so the image prompt embeddings match diffusers' exactly.
pub fn resize_bicubic(image: &RgbImage, width: usize, height: usize) -> RgbImage {
    let (in_width, in_height) = (image.width() as usize, image.height() as usize);
    let pass = |source: &RgbImage, horizontal: bool| -> RgbImage {
        let (w, h) = (source.width() as usize, source.height() as usize);
        let (out_w, out_h) = if horizontal { (width, h) } else { (w, height) };
        let weights = if horizontal {
            axis_weights(w, width)
        } else {
            axis_weights(h, height)
        };
        let mut out = RgbImage::new(out_w as u32, out_h as u32);
        for y in 0..out_h {
            for x in 0..out_w {
                let (first, taps) = &weights[if horizontal { x } else { y }];
                let mut sums = [1i64 << (PRECISION_BITS - 1); 3];
                for (offset, weight) in taps.iter().enumerate() {
                    let (sx, sy) = if horizontal {
                        (first + offset, y)
                    } else {
                        (x, first + offset)
                    };
                    let pixel = source.get_pixel(sx as u32, sy as u32);
                    for c in 0..3 {
                        sums[c] += i64::from(pixel[c]) * weight;
                    }
                }
                out.put_pixel(x as u32, y as u32, image::Rgb(sums.map(clip8)));
            }
        }
        out
    };
    let mut current = image.clone();
    if width != in_width {
        current = pass(&current, true);
    }
    if height != in_height {
        current = pass(&current, false);
    }
    current
}
