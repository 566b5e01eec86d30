//! `reverie generate --identity FACE_IMAGE ...`: who the picture should show, where, and how close
//! each rendered candidate came.
//!
//! The references are the descriptors of the identity images (exactly one face each, unless
//! `--identity-largest-face`). The places are the faces of `--init-image`, left to right, or — with
//! no init image or none found in it — a centred row of face boxes. Every candidate is checked
//! twice: by detection (the identity check the farm runs: a face found at the place, matched by
//! optimal assignment) and by the descriptor at the place itself (what guidance measures), so a
//! candidate without a detectable face still has a distance to rank by.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use image::RgbImage;
use reverie_faces::identity::check::{
    check_identities, reference_from_image_with, IdentityCheck, SeveralFaces,
};
use reverie_faces::identity::energy::IdentityEnergy;
use reverie_faces::identity::{CandidateRank, IdentityTarget, Verdict};
use reverie_faces::{FaceAnalyzer, FaceModels};
use serde::Serialize;

/// The people of a generation, ready to guide and to check.
pub struct Identities {
    models: FaceModels,
    analyzer: FaceAnalyzer,
    energy: IdentityEnergy,
    references: Vec<PathBuf>,
    pub targets: Vec<IdentityTarget>,
    /// Whether the places are the init picture's own faces (else a centred row).
    pub places_from_init: bool,
}

/// What the sidecar says of one person in one picture.
#[derive(Debug, Clone, Serialize)]
pub struct PersonReport {
    pub reference: String,
    /// The matched detected face's distance, or the distance at the place when none was detected.
    pub distance: f32,
    pub verdict: Verdict,
    /// Whether a face was detected at the planned place.
    pub detected: bool,
    /// The descriptor distance at the planned place (landmarks predicted inside it).
    pub place_distance: f32,
    /// The planned face place `[left, top, right, bottom)` in output pixels.
    pub place: [f32; 4],
}

impl Identities {
    /// Loads the face models from `models_dir` onto `device` (the pipeline's: guidance runs the
    /// descriptor on the decoded pixels where they are) and describes each identity image.
    pub fn load(
        models_dir: &Path,
        device: &candle_core::Device,
        images: &[PathBuf],
        several: SeveralFaces,
        init_image: Option<&RgbImage>,
        size: (usize, usize),
    ) -> anyhow::Result<Self> {
        let models = FaceModels::load_on(models_dir, device).with_context(|| {
            format!(
                "--identity needs the face models in {} (run `reverie models fetch`)",
                models_dir.display()
            )
        })?;
        let analyzer = FaceAnalyzer::new(models.clone());
        let mut references = Vec::with_capacity(images.len());
        for path in images {
            let picture = super::read_picture(path, "--identity")?;
            let descriptor = reference_from_image_with(&analyzer, &picture, several)
                .with_context(|| format!("--identity {}", path.display()))?;
            references.push(descriptor);
        }
        let (places, places_from_init) = face_places(&analyzer, init_image, images.len(), size)?;
        let targets = references
            .iter()
            .zip(places)
            .map(|(reference, place)| IdentityTarget {
                place,
                reference: *reference,
            })
            .collect();
        Ok(Self {
            energy: IdentityEnergy::new(&models),
            models,
            analyzer,
            references: images.to_vec(),
            targets,
            places_from_init,
        })
    }

    pub fn face_models(&self) -> &FaceModels {
        &self.models
    }

    /// Every person's report for one rendered picture.
    pub fn report(&self, picture: &RgbImage) -> anyhow::Result<Vec<PersonReport>> {
        let checks =
            check_identities(&self.analyzer, picture, &self.targets).context("identity check")?;
        self.targets
            .iter()
            .zip(&checks)
            .zip(&self.references)
            .map(|((target, check), reference)| {
                let place_distance = self
                    .energy
                    .distance_at(picture, target)
                    .context("identity distance at the planned place")?;
                Ok(person_report(reference, target, check, place_distance))
            })
            .collect()
    }
}

fn person_report(
    reference: &Path,
    target: &IdentityTarget,
    check: &IdentityCheck,
    place_distance: f32,
) -> PersonReport {
    PersonReport {
        reference: reference.display().to_string(),
        distance: check.distance.unwrap_or(place_distance),
        verdict: check.verdict,
        detected: check.distance.is_some(),
        place_distance,
        place: target.place,
    }
}

/// The index of the best candidate by [`CandidateRank`], the farm's rule, with the distance at the
/// planned place breaking ties between pictures whose faces were not found.
pub fn best_candidate(candidates: &[Vec<PersonReport>]) -> usize {
    let ranks: Vec<CandidateRank> = candidates
        .iter()
        .map(|reports| {
            CandidateRank::of(
                reports
                    .iter()
                    .map(|r| (r.detected.then_some(r.distance), Some(r.place_distance))),
            )
        })
        .collect();
    reverie_faces::identity::best_candidate(&ranks)
}

/// Where the people go: the init image's faces left to right (`true`), or a centred row.
fn face_places(
    analyzer: &FaceAnalyzer,
    init_image: Option<&RgbImage>,
    people: usize,
    (width, height): (usize, usize),
) -> anyhow::Result<(Vec<[f32; 4]>, bool)> {
    if let Some(image) = init_image {
        let mut faces = analyzer
            .analyze_batch(std::slice::from_ref(image))
            .context("finding the faces of --init-image")?
            .pop()
            .unwrap_or_default();
        if !faces.is_empty() {
            if faces.len() < people {
                bail!(
                    "--init-image shows {} faces but {people} --identity images were given: give \
                     at most one identity per face, or an init image with room for them",
                    faces.len()
                );
            }
            faces.sort_by_key(|f| f.bbox.left);
            let places = faces
                .iter()
                .take(people)
                .map(|f| {
                    let b = f.bbox;
                    [
                        b.left as f32,
                        b.top as f32,
                        (b.right + 1) as f32,
                        (b.bottom + 1) as f32,
                    ]
                })
                .collect();
            return Ok((places, true));
        }
    }
    Ok((centred_places(people, width, height), false))
}

/// `people` square face boxes in a row, centred, a little above the middle (where a portrait's
/// face sits), each about a third of the picture's shorter side.
pub fn centred_places(people: usize, width: usize, height: usize) -> Vec<[f32; 4]> {
    let (w, h) = (width as f32, height as f32);
    let slot = w / people.max(1) as f32;
    let side = (0.36 * w.min(h)).min(0.8 * slot);
    let centre_y = 0.45 * h;
    (0..people)
        .map(|i| {
            let centre_x = slot * (i as f32 + 0.5);
            [
                centre_x - side / 2.0,
                centre_y - side / 2.0,
                centre_x + side / 2.0,
                centre_y + side / 2.0,
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(verdict: Verdict, distance: f32) -> PersonReport {
        PersonReport {
            reference: "a.jpg".into(),
            distance,
            verdict,
            detected: verdict != Verdict::Missing,
            place_distance: distance,
            place: [0.0; 4],
        }
    }

    #[test]
    fn centred_places_sit_inside_the_picture_side_by_side() {
        let one = centred_places(1, 512, 512);
        assert_eq!(one.len(), 1);
        let [l, t, r, b] = one[0];
        assert!((l + r) / 2.0 == 256.0 && t > 0.0 && b < 512.0 && r - l > 100.0);
        let three = centred_places(3, 512, 256);
        assert!(three.windows(2).all(|p| p[0][2] <= p[1][0]));
        assert!(three
            .iter()
            .all(|p| p[0] >= 0.0 && p[2] <= 512.0 && p[3] <= 256.0));
    }

    #[test]
    fn the_best_candidate_misses_fewest_people_then_is_nearest() {
        let candidates = vec![
            vec![report(Verdict::Missing, 0.2)],
            vec![report(Verdict::Weak, 0.7)],
            vec![report(Verdict::Verified, 0.5)],
            vec![report(Verdict::Verified, 0.5)],
        ];
        assert_eq!(best_candidate(&candidates), 2);
        assert_eq!(best_candidate(&candidates[..2]), 1);
        // Without any face found, the distance at the place decides.
        let faceless = vec![
            vec![report(Verdict::Missing, 0.8)],
            vec![report(Verdict::Missing, 0.6)],
        ];
        assert_eq!(best_candidate(&faceless), 1);
    }
}
