//! From prompts to what the UNet reads: the text embeddings its cross-attention attends to and,
//! for SDXL, the pooled text embedding and the micro-conditioning time ids.
//!
//! - SD 1.x / 2.x: one CLIP encoder, its last hidden state.
//! - SDXL base: CLIP-L and OpenCLIP-bigG, the second-to-last hidden state of each concatenated
//!   along the features, and bigG's projected pooled output.
//! - SDXL refiner: bigG alone.

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::request::MicroConditioning;
use crate::clip::{ClipTextConfig, ClipTextEncoder};
use crate::error::{DiffusionError, Result};
use crate::lora::{deltas_for, LoraFile, LoraTarget};
use crate::tokenizer::ClipTokenizer;
use crate::unet::AddedConditions;

/// Which kind of checkpoint the encoders belong to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ModelFamily {
    /// Stable Diffusion 1.x / 2.x (and their Turbo variants).
    StableDiffusion,
    /// SDXL; the refiner is conditioned on an aesthetic score instead of the target size.
    Xl {
        force_zeros_for_empty_prompt: bool,
        refiner: bool,
    },
}

/// One prompt of a UNet batch row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PromptText<'a> {
    Text(&'a str),
    /// SDXL's `force_zeros_for_empty_prompt`: no negative prompt means all-zero embeddings.
    Zeros,
}

/// A tokenizer and its encoder.
struct PromptEncoder {
    tokenizer: ClipTokenizer,
    encoder: ClipTextEncoder,
}

/// Text embeddings for a list of prompts, row for row.
pub struct EncodedPrompts {
    /// `(rows, tokens, cross_attention_dim)` in f32.
    pub context: Tensor,
    /// `(rows, pooled_dim)` in f32, SDXL only.
    pub pooled: Option<Tensor>,
}

/// The prompt encoders of a checkpoint.
pub struct TextConditioner {
    encoders: Vec<PromptEncoder>,
    family: ModelFamily,
}

impl TextConditioner {
    /// Loads the `(tokenizer, text_encoder)` folder pairs of `dir` that `family` uses, with the
    /// LoRA deltas of `loras` for each encoder fused in.
    pub fn load(
        dir: &Path,
        family: ModelFamily,
        loras: &[(&LoraFile, f64)],
        device: &Device,
    ) -> Result<Self> {
        let folders: &[(&str, &str, LoraTarget)] = match family {
            ModelFamily::StableDiffusion => {
                &[("tokenizer", "text_encoder", LoraTarget::TextEncoder)]
            }
            ModelFamily::Xl { refiner: false, .. } => &[
                ("tokenizer", "text_encoder", LoraTarget::TextEncoder),
                ("tokenizer_2", "text_encoder_2", LoraTarget::TextEncoder2),
            ],
            ModelFamily::Xl { refiner: true, .. } => {
                &[("tokenizer_2", "text_encoder_2", LoraTarget::TextEncoder2)]
            }
        };
        let used: Vec<LoraTarget> = folders.iter().map(|(_, _, target)| *target).collect();
        for (file, _) in loras {
            if let Some(target) = file
                .targets()
                .into_iter()
                .find(|t| *t != LoraTarget::Unet && !used.contains(t))
            {
                return Err(DiffusionError::Lora {
                    path: file.path().to_path_buf(),
                    reason: format!(
                        "it changes {} but {} has none: a LoRA for another base model?",
                        target.folder(),
                        dir.display()
                    ),
                });
            }
        }
        let encoders = folders
            .iter()
            .map(|(tokenizer, encoder, target)| {
                let encoder_dir = dir.join(encoder);
                let config = ClipTextConfig::from_file(&encoder_dir.join("config.json"))?;
                let weights = ClipTextEncoder::open_weights(&encoder_dir, device)?;
                let deltas = deltas_for(loras, *target, &weights, device)?;
                Ok(PromptEncoder {
                    tokenizer: ClipTokenizer::from_dir(&dir.join(tokenizer))?,
                    encoder: ClipTextEncoder::from_weights(&config, weights.with_patches(deltas))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if matches!(family, ModelFamily::Xl { .. })
            && !encoders.last().is_some_and(|e| e.encoder.has_projection())
        {
            return Err(DiffusionError::ModelConfig {
                path: dir.join("text_encoder_2"),
                reason: "SDXL's second text encoder must be a CLIPTextModelWithProjection \
                         (text_projection.weight is missing)"
                    .into(),
            });
        }
        Ok(Self { encoders, family })
    }

    pub fn family(&self) -> ModelFamily {
        self.family
    }

    /// The tokenizer of the first encoder (prompt lengths, token counting).
    pub fn tokenizer(&self) -> &ClipTokenizer {
        &self.encoders[0].tokenizer
    }

    /// Embeddings of `prompts`, one row each; each distinct prompt is encoded once. Prompts longer
    /// than a tokenizer's limit are cut (a warning goes to `warnings`).
    pub fn encode(
        &self,
        prompts: &[PromptText<'_>],
        warnings: &mut Vec<String>,
        device: &Device,
    ) -> Result<EncodedPrompts> {
        let mut distinct: Vec<&str> = Vec::new();
        let rows: Vec<Option<u32>> = prompts
            .iter()
            .map(|prompt| match prompt {
                PromptText::Zeros => None,
                PromptText::Text(text) => {
                    let row = distinct.iter().position(|d| d == text).unwrap_or_else(|| {
                        distinct.push(text);
                        distinct.len() - 1
                    });
                    Some(row as u32)
                }
            })
            .collect();
        let (context, pooled) = self.encode_distinct(&distinct, warnings, device)?;
        Ok(EncodedPrompts {
            context: select_rows(&context, &rows)?,
            pooled: pooled.map(|p| select_rows(&p, &rows)).transpose()?,
        })
    }

    /// `(distinct, tokens, dim)` context and the pooled rows (SDXL) of distinct texts. With no
    /// text at all (every row zeros), one empty prompt is encoded for the shapes.
    fn encode_distinct(
        &self,
        distinct: &[&str],
        warnings: &mut Vec<String>,
        device: &Device,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let texts: Vec<&str> = if distinct.is_empty() {
            vec![""]
        } else {
            distinct.to_vec()
        };
        let mut contexts = Vec::with_capacity(self.encoders.len());
        let mut pooled = None;
        for (index, stage) in self.encoders.iter().enumerate() {
            let limit = stage.tokenizer.max_length();
            let mut ids = Vec::with_capacity(texts.len() * limit);
            for text in &texts {
                let unpadded = stage.tokenizer.encode_unpadded(text).len();
                if unpadded > limit && index == 0 {
                    let message = format!(
                        "prompt of {unpadded} tokens cut to {limit}: \"{}\"",
                        text.chars().take(60).collect::<String>()
                    );
                    tracing::warn!("{message}");
                    warnings.push(message);
                }
                ids.extend(stage.tokenizer.encode(text).ids);
            }
            let ids = Tensor::from_vec(ids, (texts.len(), limit), device)?;
            let output = stage.encoder.forward(&ids)?;
            match self.family {
                ModelFamily::StableDiffusion => contexts.push(output.last_hidden_state),
                ModelFamily::Xl { .. } => {
                    contexts.push(output.penultimate);
                    pooled = Some(output.pooled);
                }
            }
        }
        let context = Tensor::cat(&contexts, 2)?;
        Ok((context, pooled))
    }

    /// SDXL's time ids of a row: `[original h, w, crop top, left, target h, w]`, or for the
    /// refiner `[original h, w, crop top, left, aesthetic score]` (the negative score for
    /// unconditional rows). `None` for SD 1.x / 2.x.
    pub fn time_ids(
        &self,
        micro: &MicroConditioning,
        (height, width): (usize, usize),
        unconditional: bool,
    ) -> Option<Vec<f32>> {
        let ModelFamily::Xl { refiner, .. } = self.family else {
            return None;
        };
        let (oh, ow) = micro.original_size.unwrap_or((height, width));
        let (top, left) = micro.crop_top_left;
        let mut ids = vec![oh as f32, ow as f32, top as f32, left as f32];
        if refiner {
            let score = if unconditional {
                micro.negative_aesthetic_score
            } else {
                micro.aesthetic_score
            };
            ids.push(score as f32);
        } else {
            let (th, tw) = micro.target_size.unwrap_or((height, width));
            ids.extend([th as f32, tw as f32]);
        }
        Some(ids)
    }

    /// The UNet's added conditioning for rows whose pooled embeddings are `pooled` and whose
    /// time ids are `time_ids` (one list per row).
    pub fn added_conditions(
        pooled: &Tensor,
        time_ids: &[Vec<f32>],
        device: &Device,
    ) -> Result<AddedConditions> {
        let width = time_ids.first().map_or(0, Vec::len);
        let flat: Vec<f32> = time_ids.iter().flatten().copied().collect();
        Ok(AddedConditions {
            text_embeds: pooled.clone(),
            time_ids: Tensor::from_vec(flat, (time_ids.len(), width), device)?,
        })
    }
}

/// Rows of `encoded` picked by `rows` (`None`: a row of zeros).
fn select_rows(encoded: &Tensor, rows: &[Option<u32>]) -> Result<Tensor> {
    let device = encoded.device();
    let mut shape = encoded.dims().to_vec();
    shape[0] = 1;
    let zeros = Tensor::zeros(shape.as_slice(), DType::F32, device)?;
    let picked = rows
        .iter()
        .map(|row| match row {
            Some(row) => Ok(encoded.narrow(0, *row as usize, 1)?.to_dtype(DType::F32)?),
            None => Ok(zeros.clone()),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::cat(&picked, 0)?)
}
