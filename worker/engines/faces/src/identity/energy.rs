//! The identity energy: how far the face at a planned place is from a person, as a quantity
//! candle can differentiate with respect to the picture's pixels.
//!
//! Each guided face is anchored once, before sampling: its chip geometry comes from the shape
//! predictor's landmarks on the init picture at the planned place (img2img and compositions,
//! where a real face is planned there), or from the predictor's mean shape placed in the planned
//! box (text-to-image, where no face exists yet). The anchor never depends on the sample being
//! drawn: landmarks are regression-tree outputs, discontinuous in the pixels, so re-predicting
//! them on every decoded estimate would let float rounding (a sample alone vs in a batch) flip a
//! tree branch and send the two runs apart. The chip is resampled from the picture with
//! [`extract_chip_tensor`] (bilinear, constant geometry) and the descriptor network runs on
//! candle's autograd path. The energy is the sum of squared descriptor distances.

use candle_core::{DType, Tensor};
use image::RgbImage;

use super::{descriptor_distance, IdentityTarget};
use crate::analyzer::{FaceModels, CHIP_PADDING};
use crate::chip::{chip_details, extract_chip, extract_chip_tensor, ChipDetails};
use crate::error::{FaceError, Result, TensorContext};
use crate::geometry::Rect;
use crate::layers::ReluGradient;
use crate::resnet::{DescriptorNet, CHIP_SIZE, DESCRIPTOR_LEN};
use crate::shape_predictor::{GrayPlane, ShapePredictor};

/// The relu gradient guidance differentiates with: smooth, so that a sample gives the same picture
/// alone or in a batch (float rounding must not flip the direction of a guided step). The
/// temperature is small next to the network's typical pre-activations (tenths to units).
pub const GUIDANCE_RELU: ReluGradient = ReluGradient::Smooth { temperature: 0.05 };

/// The energy of pictures with respect to their planned people.
#[derive(Debug, Clone)]
pub struct IdentityEnergy {
    shape_predictor: ShapePredictor,
    descriptor: DescriptorNet,
}

/// A person anchored for guidance: who, and the chip geometry in output pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct GuidedFace {
    pub reference: [f32; DESCRIPTOR_LEN],
    pub chip: ChipDetails,
}

/// One evaluated energy: the scalar to differentiate and each target's current distance.
#[derive(Debug)]
pub struct EnergyValue {
    pub energy: Tensor,
    pub distances: Vec<f32>,
}

impl IdentityEnergy {
    pub fn new(models: &FaceModels) -> Self {
        Self {
            shape_predictor: models.shape_predictor.clone(),
            descriptor: models.descriptor.clone(),
        }
    }

    /// Anchors `target` for guidance: landmarks predicted on `init` (in output pixels) at the
    /// planned place when an init picture is given, else the mean shape in the planned box.
    /// `None` when the place is degenerate or outside the picture.
    pub fn anchor(
        &self,
        target: &IdentityTarget,
        init: Option<&RgbImage>,
        (width, height): (usize, usize),
    ) -> Option<GuidedFace> {
        let rect = local_rect(clamped(target.place, width, height), (0, 0), width, height)?;
        let landmarks = match init {
            Some(picture) => self
                .shape_predictor
                .predict(&GrayPlane::from_rgb(picture), &rect),
            None => self.shape_predictor.mean_shape(&rect),
        };
        Some(GuidedFace {
            reference: target.reference,
            chip: chip_details(&landmarks, CHIP_SIZE, CHIP_PADDING),
        })
    }

    /// The energy of `image`, `(1, 3, H, W)` with values in [-1, 1] (a decoded picture or a
    /// window of one whose top-left sits at `origin` in output pixels), toward `faces`.
    /// `None` when there is no face to measure.
    pub fn energy(
        &self,
        image: &Tensor,
        origin: (usize, usize),
        faces: &[GuidedFace],
    ) -> Result<Option<EnergyValue>> {
        // Not clamped: values a decoder puts outside [-1, 1] still carry gradient.
        let pixels = image.affine(127.5, 127.5).ctx("picture to pixel units")?;
        let mut total: Option<Tensor> = None;
        let mut distances = Vec::with_capacity(faces.len());
        for face in faces {
            let details = shifted(&face.chip, origin);
            let chip = extract_chip_tensor(&pixels, &details)?;
            let descriptor = self.descriptor_of_chip(&chip)?;
            let reference =
                Tensor::from_slice(&face.reference, (1, DESCRIPTOR_LEN), image.device())
                    .and_then(|t| t.to_dtype(descriptor.dtype()))
                    .ctx("reference descriptor")?;
            let squared = (descriptor - reference)
                .and_then(|d| d.sqr())
                .and_then(|d| d.sum_all())
                .ctx("identity energy")?;
            let value = squared
                .to_dtype(DType::F64)
                .and_then(|d| d.to_scalar::<f64>())
                .ctx("identity distance")?;
            distances.push(value.sqrt() as f32);
            total = Some(match total {
                None => squared,
                Some(sum) => (sum + squared).ctx("identity energy")?,
            });
        }
        Ok(total.map(|energy| EnergyValue { energy, distances }))
    }

    /// The descriptor of a `(1, 3, 150, 150)` chip tensor in pixel units, differentiably, with
    /// the smooth relu gradient (see [`GUIDANCE_RELU`]).
    pub fn descriptor_of_chip(&self, chip: &Tensor) -> Result<Tensor> {
        let input = self.descriptor.normalize_chip_tensor(chip)?;
        self.descriptor
            .forward_differentiable_with(&input, GUIDANCE_RELU)
    }

    /// The descriptor distance of the face at `target`'s place in a finished picture (no
    /// detection: the landmarks are predicted inside the planned place, as guidance sees it).
    pub fn distance_at(&self, picture: &RgbImage, target: &IdentityTarget) -> Result<f32> {
        let rect = local_rect(
            clamped(
                target.place,
                picture.width() as usize,
                picture.height() as usize,
            ),
            (0, 0),
            picture.width() as usize,
            picture.height() as usize,
        )
        .ok_or_else(|| FaceError::Image("the planned face place is outside the picture".into()))?;
        let details = self.details(&GrayPlane::from_rgb(picture), &rect);
        let chip = extract_chip(picture, &details);
        let descriptor = self.descriptor.descriptors(&[&chip])?;
        Ok(descriptor_distance(&descriptor[0], &target.reference))
    }

    fn details(&self, gray: &GrayPlane, rect: &Rect) -> ChipDetails {
        // Finished pictures are measured where their face actually is: predicted landmarks.
        let landmarks = self.shape_predictor.predict(gray, rect);
        chip_details(&landmarks, CHIP_SIZE, CHIP_PADDING)
    }
}

/// A planned place `[l, t, r, b)` in output pixels as a dlib rectangle (inclusive corners) in the
/// window's pixels; `None` when it is outside the window or degenerate.
fn local_rect(
    place: [f32; 4],
    origin: (usize, usize),
    width: usize,
    height: usize,
) -> Option<Rect> {
    let [l, t, r, b] = place;
    if !(l.is_finite() && t.is_finite() && r.is_finite() && b.is_finite())
        || r - l < 2.0
        || b - t < 2.0
    {
        return None;
    }
    let (ox, oy) = (origin.0 as f32, origin.1 as f32);
    let rect = Rect {
        left: (l - ox).round() as i64,
        top: (t - oy).round() as i64,
        right: (r - ox).round() as i64 - 1,
        bottom: (b - oy).round() as i64 - 1,
    };
    let inside =
        rect.left >= 0 && rect.top >= 0 && rect.right < width as i64 && rect.bottom < height as i64;
    inside.then_some(rect)
}

/// A place cut to the picture: a face planned partly past the edge is guided and measured on the
/// part that is in the picture.
fn clamped([l, t, r, b]: [f32; 4], width: usize, height: usize) -> [f32; 4] {
    let (w, h) = (width as f32, height as f32);
    [l.max(0.0), t.max(0.0), r.min(w), b.min(h)]
}

/// Chip geometry in output pixels moved into a window whose top-left is `origin`.
fn shifted(chip: &ChipDetails, (x, y): (usize, usize)) -> ChipDetails {
    let (x, y) = (x as f64, y as f64);
    let mut moved = *chip;
    moved.rect.left -= x;
    moved.rect.right -= x;
    moved.rect.top -= y;
    moved.rect.bottom -= y;
    moved
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_map_into_the_window_or_are_skipped() {
        let rect = local_rect([40.0, 30.0, 80.0, 70.0], (32, 16), 64, 64).unwrap();
        assert_eq!(
            (rect.left, rect.top, rect.right, rect.bottom),
            (8, 14, 47, 53)
        );
        assert!(local_rect([40.0, 30.0, 80.0, 70.0], (64, 0), 64, 64).is_none());
        assert!(local_rect([10.0, 10.0, 11.0, 30.0], (0, 0), 64, 64).is_none());
        assert!(local_rect([f32::NAN, 0.0, 10.0, 10.0], (0, 0), 64, 64).is_none());
    }
}
