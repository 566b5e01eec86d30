//! The detector as workers use it: load the converted weights, letterbox a batch
//! of photos, run the network once, decode each photo's boxes.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use image::RgbImage;

use crate::decode::{decode, DecodeOptions, Detection, LevelValues};
use crate::error::{Result, TensorContext};
use crate::fetch::{read_verified, DETECTOR_FILE};
use crate::net::{NanoDet, HEAD_CHANNELS, INPUT_SIZE};
use crate::preprocess::{letterbox_input, Letterbox};

/// Raw head outputs of one photo, channel-major per level (`[124][grid*grid]`).
pub struct RawOutputs {
    pub levels: Vec<(usize, usize, Vec<f32>)>,
    pub letterbox: Letterbox,
}

impl RawOutputs {
    pub fn decode(&self, options: &DecodeOptions) -> Vec<Detection> {
        let levels: Vec<LevelValues<'_>> = self
            .levels
            .iter()
            .map(|(stride, grid, values)| LevelValues {
                stride: *stride,
                grid: *grid,
                values,
            })
            .collect();
        decode(&levels, self.letterbox, options)
    }
}

/// NanoDet on candle, with its decoding thresholds.
pub struct PetDetector {
    net: NanoDet,
    pub options: DecodeOptions,
}

impl PetDetector {
    /// Loads `nanodet_m_coco.safetensors` from `models_dir` (checked against its
    /// pinned hash).
    pub fn load(models_dir: &Path, device: &Device) -> Result<Self> {
        let bytes = read_verified(models_dir)?;
        Self::from_safetensors(&bytes, device)
    }

    pub fn from_safetensors(bytes: &[u8], device: &Device) -> Result<Self> {
        let tensors: HashMap<String, Tensor> =
            candle_core::safetensors::load_buffer(bytes, device).ctx(DETECTOR_FILE)?;
        Ok(Self {
            net: NanoDet::from_tensors(&tensors, device)?,
            options: DecodeOptions::default(),
        })
    }

    pub fn net(&self) -> &NanoDet {
        &self.net
    }

    /// Head outputs for a batch of photos, one network pass.
    pub fn raw_outputs(&self, photos: &[&RgbImage]) -> Result<Vec<RawOutputs>> {
        if photos.is_empty() {
            return Ok(Vec::new());
        }
        let mut batch = Vec::with_capacity(photos.len() * 3 * INPUT_SIZE * INPUT_SIZE);
        let mut letterboxes = Vec::with_capacity(photos.len());
        for photo in photos {
            let (input, letterbox) = letterbox_input(photo);
            batch.extend_from_slice(&input);
            letterboxes.push(letterbox);
        }
        let input = Tensor::from_vec(
            batch,
            (photos.len(), 3, INPUT_SIZE, INPUT_SIZE),
            self.net.device(),
        )
        .ctx("detector input")?;
        let levels = self.net.forward(&input)?;
        let mut per_level = Vec::with_capacity(levels.len());
        for level in &levels {
            let values = level
                .values
                .to_dtype(DType::F32)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1::<f32>())
                .ctx("detector output")?;
            per_level.push((level.stride, level.grid, values));
        }
        Ok(letterboxes
            .into_iter()
            .enumerate()
            .map(|(i, letterbox)| RawOutputs {
                levels: per_level
                    .iter()
                    .map(|(stride, grid, values)| {
                        let len = HEAD_CHANNELS * grid * grid;
                        (*stride, *grid, values[i * len..(i + 1) * len].to_vec())
                    })
                    .collect(),
                letterbox,
            })
            .collect())
    }

    /// People, cats and dogs in each photo of the batch, best first.
    pub fn detect_batch(&self, photos: &[&RgbImage]) -> Result<Vec<Vec<Detection>>> {
        Ok(self
            .raw_outputs(photos)?
            .iter()
            .map(|raw| raw.decode(&self.options))
            .collect())
    }

    pub fn detect(&self, photo: &RgbImage) -> Result<Vec<Detection>> {
        Ok(self.detect_batch(&[photo])?.pop().unwrap_or_default())
    }
}

/// Overlap above which a cat box and a dog box are taken for one animal.
const SAME_ANIMAL_IOU: f32 = 0.6;

/// The pets among detections: cats and dogs, best first, with a cat box and a
/// dog box on the same animal (the network often scores both) reduced to the
/// better-scored species.
pub fn pets_of(detections: &[Detection]) -> Vec<Detection> {
    let mut pets: Vec<Detection> = detections
        .iter()
        .copied()
        .filter(|d| d.kind.is_pet())
        .collect();
    pets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = Vec::new();
    for pet in pets {
        if !kept.iter().any(|k| k.bbox.iou(&pet.bbox) > SAME_ANIMAL_IOU) {
            kept.push(pet);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{BoxF, Kind};

    #[test]
    fn a_cat_box_on_a_dog_is_dropped_but_two_animals_side_by_side_are_kept() {
        let at = |left: f32| BoxF {
            left,
            top: 0.0,
            right: left + 100.0,
            bottom: 100.0,
        };
        let det = |kind, score, bbox| Detection {
            kind,
            score,
            bbox,
            level: 0,
            cell: 0,
        };
        let found = pets_of(&[
            det(Kind::Dog, 0.7, at(0.0)),
            det(Kind::Cat, 0.4, at(3.0)),
            det(Kind::Cat, 0.5, at(100.0)),
            det(Kind::Person, 0.9, at(0.0)),
        ]);
        assert_eq!(found.len(), 2);
        assert_eq!((found[0].kind, found[1].kind), (Kind::Dog, Kind::Cat));
    }
}
