//! What a pet looks like, as a vector: for telling the household's pets apart.
//!
//! No pet re-identification model ships in a package registry. Two candidates
//! were measured on the fixture photos (docs/pets.md, `examples/appearance_eval`):
//! the detector's own backbone activations pooled over the pet's crop, and the
//! coat's colour. The backbone features followed the photo (background, light,
//! pose) more than the animal: the same dog in two photos was as far apart as
//! two different dogs. Coat colour kept the same dog together and told dogs of
//! different coats apart, so the embedding is the coat's colour:
//!
//! a 4x4x4 RGB histogram of the central 60% of the pet's box (where the animal
//! is, not the background), square-rooted so that the dot product of two
//! vectors is the Bhattacharyya coefficient of the two colour distributions.
//! Two pets with the same coat (two black labradors) cannot be told apart by it;
//! merging and splitting pets by hand covers that.

use image::RgbImage;

use crate::decode::BoxF;

const LEVELS: usize = 4;
/// Length of an appearance vector.
pub const APPEARANCE_DIM: usize = LEVELS * LEVELS * LEVELS;
/// Fraction of the box kept on each axis, centred.
const CENTRE: f32 = 0.6;
/// Pixels sampled along the longer side of the centre (bounds the cost on big photos).
const SAMPLES: f32 = 96.0;

/// A unit-length appearance vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Appearance(pub Vec<f32>);

impl Appearance {
    /// The coat colour inside `bbox` of `photo`.
    pub fn of(photo: &RgbImage, bbox: &BoxF) -> Self {
        let (w, h) = (photo.width() as f32, photo.height() as f32);
        let margin = (1.0 - CENTRE) / 2.0;
        let x0 = (bbox.left + bbox.width() * margin).clamp(0.0, w - 1.0);
        let y0 = (bbox.top + bbox.height() * margin).clamp(0.0, h - 1.0);
        let (cw, ch) = (
            (bbox.width() * CENTRE).max(1.0),
            (bbox.height() * CENTRE).max(1.0),
        );
        let step = (cw.max(ch) / SAMPLES).max(1.0);
        let mut counts = vec![0f32; APPEARANCE_DIM];
        let bin = |v: u8| (v as usize * LEVELS) / 256;
        let mut y = y0;
        while y < (y0 + ch).min(h) {
            let mut x = x0;
            while x < (x0 + cw).min(w) {
                let [r, g, b] = photo.get_pixel(x as u32, y as u32).0;
                counts[(bin(r) * LEVELS + bin(g)) * LEVELS + bin(b)] += 1.0;
                x += step;
            }
            y += step;
        }
        let total: f32 = counts.iter().sum::<f32>().max(1.0);
        Self(counts.iter().map(|c| (c / total).sqrt()).collect())
    }

    /// 1 - Bhattacharyya coefficient: 0 for the same colours, 1 for disjoint ones.
    pub fn distance(&self, other: &Appearance) -> f32 {
        (1.0 - self.0.iter().zip(&other.0).map(|(a, b)| a * b).sum::<f32>()).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo_with_pet(coat: [u8; 3]) -> (RgbImage, BoxF) {
        let mut photo = RgbImage::from_pixel(200, 100, image::Rgb([30, 120, 40]));
        for y in 20..80 {
            for x in 50..150 {
                photo.put_pixel(x, y, image::Rgb(coat));
            }
        }
        let bbox = BoxF {
            left: 45.0,
            top: 15.0,
            right: 155.0,
            bottom: 85.0,
        };
        (photo, bbox)
    }

    #[test]
    fn the_same_coat_is_close_and_another_coat_is_far() {
        let (black, b) = photo_with_pet([20, 20, 20]);
        let (black2, b2) = photo_with_pet([25, 22, 18]);
        let (golden, g) = photo_with_pet([210, 160, 80]);
        let a = Appearance::of(&black, &b);
        assert!(a.distance(&Appearance::of(&black2, &b2)) < 0.01);
        assert!(a.distance(&Appearance::of(&golden, &g)) > 0.9);
        let norm: f32 = a.0.iter().map(|v| v * v).sum();
        assert!((norm - 1.0).abs() < 1e-4);
    }

    #[test]
    fn degenerate_boxes_do_not_panic() {
        let (photo, _) = photo_with_pet([0, 0, 0]);
        for bbox in [
            BoxF {
                left: 0.0,
                top: 0.0,
                right: 0.0,
                bottom: 0.0,
            },
            BoxF {
                left: 199.0,
                top: 99.0,
                right: 200.0,
                bottom: 100.0,
            },
            BoxF {
                left: -50.0,
                top: -50.0,
                right: 500.0,
                bottom: 500.0,
            },
        ] {
            assert_eq!(Appearance::of(&photo, &bbox).0.len(), APPEARANCE_DIM);
        }
    }
}
