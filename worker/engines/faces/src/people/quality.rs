//! How good a face is (sharpness, frontalness, size), the same-person threshold that follows from
//! it, and the distance between two descriptors.

use serde::{Deserialize, Serialize};

use super::{
    MIN_MATCH_THRESHOLD, RELIABLE_QUALITY, SAME_PERSON_DISTANCE, THRESHOLD_STEP_PER_HALVING,
};
use crate::analyzer::FaceBox;

/// How good a face is as a representative: sharpness of the chip, frontalness from
/// the landmarks, and size of the box.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FaceQuality {
    /// Variance of the Laplacian of the gray chip (higher = sharper).
    pub sharpness: f32,
    /// 1 for a frontal face, towards 0 as the nose moves to one eye.
    pub frontalness: f32,
    /// Box width in original pixels.
    pub size: f32,
}

impl FaceQuality {
    /// Measures a face from its chip, landmarks and box.
    pub fn measure(chip: &image::RgbImage, landmarks: &[[i64; 2]], bbox: &FaceBox) -> Self {
        Self {
            sharpness: laplacian_variance(chip),
            frontalness: frontalness(landmarks),
            size: (bbox.right - bbox.left + 1).max(0) as f32,
        }
    }

    /// Combined quality in [0, 1]: each factor saturates at a typical good value
    /// (Laplacian variance 100, an 80 px face, a perfectly centred nose).
    pub fn score(&self) -> f32 {
        let sharp = (self.sharpness / 100.0).min(1.0);
        let size = (self.size / 80.0).min(1.0);
        sharp * size * self.frontalness.clamp(0.0, 1.0)
    }
}

/// The distance under which this face may be the same person as another face of at
/// least its quality: [`SAME_PERSON_DISTANCE`] from [`RELIABLE_QUALITY`] up,
/// [`THRESHOLD_STEP_PER_HALVING`] less for each halving of the quality below it, never
/// below [`MIN_MATCH_THRESHOLD`]. A pair of faces uses the smaller of their two
/// thresholds.
pub fn match_threshold(quality: &FaceQuality) -> f32 {
    let score = quality.score();
    if score.is_nan() || score <= 0.0 {
        return MIN_MATCH_THRESHOLD;
    }
    let halvings = (score / RELIABLE_QUALITY).min(1.0).log2();
    (SAME_PERSON_DISTANCE + THRESHOLD_STEP_PER_HALVING * halvings).max(MIN_MATCH_THRESHOLD)
}

fn laplacian_variance(chip: &image::RgbImage) -> f32 {
    let gray = image::imageops::grayscale(chip);
    let (w, h) = (gray.width() as i64, gray.height() as i64);
    if w < 3 || h < 3 {
        return 0.0;
    }
    let at = |x: i64, y: i64| f32::from(gray.get_pixel(x as u32, y as u32)[0]);
    let mut values = Vec::with_capacity(((w - 2) * (h - 2)) as usize);
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            values.push(at(x - 1, y) + at(x + 1, y) + at(x, y - 1) + at(x, y + 1) - 4.0 * at(x, y));
        }
    }
    let n = values.len() as f32;
    let mean = values.iter().sum::<f32>() / n;
    values.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n
}

/// Frontalness from the 5 landmarks: the nose (4) sits midway between the two eye
/// centres in a frontal face; turning the head moves it towards one eye.
fn frontalness(landmarks: &[[i64; 2]]) -> f32 {
    if landmarks.len() < 5 {
        return 0.0;
    }
    let centre = |a: usize, b: usize| {
        (
            (landmarks[a][0] + landmarks[b][0]) as f32 / 2.0,
            (landmarks[a][1] + landmarks[b][1]) as f32 / 2.0,
        )
    };
    let (right_eye, left_eye) = (centre(0, 1), centre(2, 3));
    let nose = (landmarks[4][0] as f32, landmarks[4][1] as f32);
    let dist = |a: (f32, f32), b: (f32, f32)| (a.0 - b.0).hypot(a.1 - b.1);
    let (d1, d2) = (dist(nose, right_eye), dist(nose, left_eye));
    if d1 + d2 == 0.0 {
        return 0.0;
    }
    1.0 - (d1 - d2).abs() / (d1 + d2)
}

/// Euclidean distance of two descriptors.
pub fn distance(a: &[f32], b: &[f32]) -> f32 {
    // Eight partial sums so the compiler can vectorise; 128 = 16 x 8.
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            let d = x[k] - y[k];
            acc[k] += d * d;
        }
    }
    let mut sum = acc.iter().sum::<f32>();
    for (x, y) in ra.iter().zip(rb) {
        sum += (x - y) * (x - y);
    }
    sum.sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_follow_quality() {
        let q = |sharpness: f32, size: f32| FaceQuality {
            sharpness,
            frontalness: 1.0,
            size,
        };
        assert_eq!(match_threshold(&q(200.0, 100.0)), SAME_PERSON_DISTANCE);
        // Score 1/16 and above: the full threshold.
        assert_eq!(match_threshold(&q(6.25, 80.0)), SAME_PERSON_DISTANCE);
        // One halving below: 0.1 stricter.
        assert!((match_threshold(&q(3.125, 80.0)) - 0.5).abs() < 1e-6);
        assert_eq!(match_threshold(&q(0.1, 80.0)), MIN_MATCH_THRESHOLD);
        assert_eq!(match_threshold(&q(0.0, 0.0)), MIN_MATCH_THRESHOLD);
    }
}
