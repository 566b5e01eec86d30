//! The bridge between the face engine's identity energy and the diffusion engine's guidance:
//! the diffusion crate knows only "an energy on decoded pixels", the face crate only "a descriptor
//! distance at a place"; this adapter gives each sample of a batch its own people.

use std::sync::Arc;

use candle_core::Tensor;
use image::RgbImage;
use reverie_diffusion::pipeline::{IdentityGuidance, ImageEnergy};
use reverie_faces::identity::energy::{GuidedFace, IdentityEnergy};
use reverie_faces::identity::IdentityTarget;
use reverie_faces::FaceModels;

/// Identity energy for a batch: `faces[i]` are sample `i`'s people (empty: unguided).
pub struct IdentityGuide {
    energy: IdentityEnergy,
    faces: Vec<Vec<GuidedFace>>,
}

impl IdentityGuide {
    /// Text-to-image: each person anchored by the landmark model's mean shape in their place;
    /// `size` is the output's `(width, height)`.
    pub fn new(
        models: &FaceModels,
        targets: Vec<Vec<IdentityTarget>>,
        size: (usize, usize),
    ) -> Self {
        let inits = vec![None; targets.len()];
        Self::anchored(models, targets, &inits, size)
    }

    /// Each sample's people anchored on its init picture (output pixels) when it has one.
    pub fn anchored(
        models: &FaceModels,
        targets: Vec<Vec<IdentityTarget>>,
        inits: &[Option<&RgbImage>],
        size: (usize, usize),
    ) -> Self {
        let energy = IdentityEnergy::new(models);
        let faces = targets
            .iter()
            .enumerate()
            .map(|(sample, people)| {
                let init = inits.get(sample).copied().flatten();
                people
                    .iter()
                    .filter_map(|target| energy.anchor(target, init, size))
                    .collect()
            })
            .collect();
        Self { energy, faces }
    }

    /// Guidance with default steps (all) and one update per guided step.
    pub fn into_guidance(self) -> IdentityGuidance {
        IdentityGuidance::new(Arc::new(self))
    }
}

impl ImageEnergy for IdentityGuide {
    /// The pixels the chips read: each chip's rectangle, grown to cover any rotation.
    fn region(&self, sample: usize) -> Option<[usize; 4]> {
        let faces = self.faces.get(sample)?;
        let mut spans = faces.iter().map(|face| {
            let rect = face.chip.rect;
            let (cx, cy) = rect.center();
            let half = (rect.right - rect.left).hypot(rect.bottom - rect.top) / 2.0 + 2.0;
            [cx - half, cy - half, cx + half, cy + half]
        });
        let first = spans.next()?;
        let union = spans.fold(first, |[l, t, r, b], p| {
            [l.min(p[0]), t.min(p[1]), r.max(p[2]), b.max(p[3])]
        });
        let [l, t, r, b] = union.map(|v| v.max(0.0).round() as usize);
        (r > l && b > t).then_some([l, t, r, b])
    }

    fn energy(
        &self,
        sample: usize,
        image: &Tensor,
        origin: (usize, usize),
    ) -> Result<Option<Tensor>, String> {
        let Some(faces) = self.faces.get(sample) else {
            return Ok(None);
        };
        let value = self
            .energy
            .energy(image, origin, faces)
            .map_err(|e| e.to_string())?;
        if let Some(value) = &value {
            tracing::debug!(sample, distances = ?value.distances, "identity guidance");
        }
        Ok(value.map(|v| v.energy))
    }
}

#[cfg(test)]
mod tests {
    /// The farm's request limit and the sampler's must agree, or requests would pass intake and
    /// fail at render.
    #[test]
    fn the_request_limit_is_the_samplers_limit() {
        assert_eq!(
            f64::from(reverie_shared::jobs::MAX_IDENTITY_STRENGTH),
            reverie_diffusion::pipeline::guidance::MAX_IDENTITY_STRENGTH
        );
    }
}
