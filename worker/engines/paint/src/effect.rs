//! How visibly a style changed a photo, and whether the painting kept the photo's composition.
//!
//! The mean pixel difference is a poor judge: a global tint moves every pixel without painting
//! anything, and a few strong strokes on a large flat photo hardly move the mean although the
//! style is plain to see. [`StyleEffect::measure`] therefore reports three things, each on its
//! own scale, and [`StyleEffect::check`] asks all three:
//!
//! 1. **Perceptible change**: the share of pixels whose colour moved by more than
//!    [`VISIBLE_DELTA_E`] = 5 (CIE76 ΔE in CIELAB, where about 2.3 is a just-noticeable difference
//!    on flat patches and 5 is clear side by side; brush marks that change tone by that much are
//!    plainly visible because they are coherent over many pixels). At least
//!    [`MIN_CHANGED_FRACTION`] (a quarter) of the picture must change that much. Painting a
//!    photo back almost unchanged fails here; so does a little noise.
//! 2. **Texture change**: the luminance gradient (Sobel, 0..255 levels per pixel) of photo and
//!    painting is binned on octave bins (< 2, 2–4, 4–8, ..., ≥ 64) and the two histograms are
//!    compared by total-variation distance (0 = same texture statistics, 1 = disjoint). A style
//!    either adds texture (brush marks, paper grain, hatching, halftone) or removes it
//!    (abstraction, posterisation); a plain colour or tone shift leaves this near 0. At least
//!    [`MIN_TEXTURE_CHANGE`] is required.
//! 3. **Composition kept**: both images are reduced to block means of luminance on a coarse grid
//!    (about [`COMPOSITION_BLOCKS`] blocks along the short side) and compared by Pearson
//!    correlation, which ignores the key and contrast changes styles make on purpose. It must be
//!    at least [`MIN_COMPOSITION`]. A photo whose coarse luminance is flat (standard deviation
//!    under [`FLAT_COMPOSITION`]) has no composition to correlate with; there the painting must
//!    not invent one: its coarse standard deviation must stay under [`MAX_INVENTED_STRUCTURE`].
//!
//! Small pictures are still painted, but the criteria need room: below [`MIN_JUDGED_SIDE`]
//! pixels on a side (icons) only the perceptible change is asked; below [`MIN_TEXTURE_SIDE`]
//! (thumbnails) the texture change is not asked, because there the photo's own detail is already
//! at the pixel scale of brush marks and paper grain, and the histograms cannot tell them apart.

use image::RgbImage;

use crate::colour::{lab_dist2, rgb8_to_lab};
use crate::raster::{sobel, Plane};

/// Per-pixel CIE76 ΔE above which a change counts as clearly visible.
pub const VISIBLE_DELTA_E: f32 = 5.0;
/// Minimum share of pixels changed by more than [`VISIBLE_DELTA_E`].
pub const MIN_CHANGED_FRACTION: f32 = 0.25;
/// Minimum total-variation distance between the gradient histograms.
pub const MIN_TEXTURE_CHANGE: f32 = 0.1;
/// Number of composition blocks along the shorter side.
pub const COMPOSITION_BLOCKS: usize = 12;
/// Minimum correlation of the coarse luminance grids.
pub const MIN_COMPOSITION: f32 = 0.75;
/// Below this coarse luminance standard deviation (luma in [0,1]) a photo has no composition.
pub const FLAT_COMPOSITION: f32 = 0.008;
/// A painting of a flat photo may not have a larger coarse luminance standard deviation.
pub const MAX_INVENTED_STRUCTURE: f32 = 0.06;
/// Smaller pictures are only judged on the perceptible change.
pub const MIN_JUDGED_SIDE: u32 = 16;
/// Smaller pictures are not judged on the texture change.
pub const MIN_TEXTURE_SIDE: u32 = 48;

/// Upper edges of the gradient-magnitude bins (0..255 levels per pixel); a last bin takes the rest.
const GRADIENT_BINS: [f32; 6] = [2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

/// What a style did to one photo; see the module documentation for the meaning of each number.
#[derive(Debug, Clone, PartialEq)]
pub struct StyleEffect {
    pub width: u32,
    pub height: u32,
    /// Share of pixels with ΔE76 > [`VISIBLE_DELTA_E`].
    pub changed_fraction: f32,
    /// Mean ΔE76 over all pixels (for reports; not judged).
    pub mean_delta_e: f32,
    /// Total-variation distance between the gradient-magnitude histograms, in [0,1].
    pub texture_change: f32,
    /// Correlation of the coarse luminance grids; `None` where the photo's grid is flat.
    pub composition: Option<f32>,
    /// Standard deviation of the photo's coarse luminance grid (luma in [0,1]).
    pub photo_structure: f32,
    /// Standard deviation of the painting's coarse luminance grid (luma in [0,1]).
    pub painting_structure: f32,
}

impl StyleEffect {
    /// Measures `painting` against `photo`. Both must have the same size.
    ///
    /// # Panics
    /// If the sizes differ or an image is empty (a measuring tool, not a renderer input).
    pub fn measure(photo: &RgbImage, painting: &RgbImage) -> StyleEffect {
        assert_eq!(
            photo.dimensions(),
            painting.dimensions(),
            "photo and painting sizes differ"
        );
        let (w, h) = (photo.width() as usize, photo.height() as usize);
        assert!(w > 0 && h > 0, "empty image");
        let n = (w * h) as f32;
        let threshold2 = VISIBLE_DELTA_E * VISIBLE_DELTA_E;
        let (mut changed, mut sum_delta) = (0usize, 0.0f64);
        for (a, b) in photo.pixels().zip(painting.pixels()) {
            if a == b {
                continue;
            }
            let d2 = lab_dist2(rgb8_to_lab(a.0), rgb8_to_lab(b.0));
            changed += (d2 > threshold2) as usize;
            sum_delta += d2.sqrt() as f64;
        }
        let luma_photo = luma_plane(photo);
        let luma_painting = luma_plane(painting);
        let texture_change = histogram_distance(
            &gradient_histogram(&luma_photo),
            &gradient_histogram(&luma_painting),
        );
        let grid_photo = coarse_grid(&luma_photo);
        let grid_painting = coarse_grid(&luma_painting);
        let photo_structure = std_dev(&grid_photo) / 255.0;
        let painting_structure = std_dev(&grid_painting) / 255.0;
        let composition =
            (photo_structure >= FLAT_COMPOSITION).then(|| correlation(&grid_photo, &grid_painting));
        StyleEffect {
            width: w as u32,
            height: h as u32,
            changed_fraction: changed as f32 / n,
            mean_delta_e: (sum_delta / n as f64) as f32,
            texture_change,
            composition,
            photo_structure,
            painting_structure,
        }
    }

    /// True if the picture is large enough for its composition to be judged.
    pub fn composition_judged(&self) -> bool {
        self.width.min(self.height) >= MIN_JUDGED_SIDE
    }

    /// True if the picture is large enough for its texture statistics to be judged.
    pub fn texture_judged(&self) -> bool {
        self.width.min(self.height) >= MIN_TEXTURE_SIDE
    }

    /// The style is visibly applied: enough pixels changed perceptibly and (for pictures of at
    /// least [`MIN_TEXTURE_SIDE`] a side) the texture statistics changed.
    pub fn visibly_applied(&self) -> bool {
        self.changed_fraction >= MIN_CHANGED_FRACTION
            && (!self.texture_judged() || self.texture_change >= MIN_TEXTURE_CHANGE)
    }

    /// The painting kept the photo's composition (or, for a flat photo, invented none).
    pub fn keeps_composition(&self) -> bool {
        if !self.composition_judged() {
            return true;
        }
        match self.composition {
            Some(c) => c >= MIN_COMPOSITION,
            None => self.painting_structure <= MAX_INVENTED_STRUCTURE,
        }
    }

    /// `Ok` if the style visibly applied and kept the composition; otherwise every failed
    /// criterion, in words.
    pub fn check(&self) -> Result<(), String> {
        let mut failures = Vec::new();
        if self.changed_fraction < MIN_CHANGED_FRACTION {
            failures.push(format!(
                "only {:.1}% of pixels changed by ΔE > {VISIBLE_DELTA_E} (need {:.0}%)",
                100.0 * self.changed_fraction,
                100.0 * MIN_CHANGED_FRACTION
            ));
        }
        if self.texture_judged() && self.texture_change < MIN_TEXTURE_CHANGE {
            failures.push(format!(
                "texture statistics moved by {:.3} (need {MIN_TEXTURE_CHANGE})",
                self.texture_change
            ));
        }
        if !self.keeps_composition() {
            failures.push(match self.composition {
                Some(c) => format!("composition correlation {c:.3} (need {MIN_COMPOSITION})"),
                None => format!(
                    "flat photo painted with coarse structure {:.3} (allowed {MAX_INVENTED_STRUCTURE})",
                    self.painting_structure
                ),
            });
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("; "))
        }
    }
}

impl std::fmt::Display for StyleEffect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "changed {:5.1}%  mean ΔE {:5.1}  texture {:.3}  composition {}  structure {:.3} -> {:.3}",
            100.0 * self.changed_fraction,
            self.mean_delta_e,
            self.texture_change,
            self.composition
                .map_or_else(|| "flat ".to_string(), |c| format!("{c:.3}")),
            self.photo_structure,
            self.painting_structure
        )
    }
}

/// Rec. 601 luma on the 0..255 scale.
fn luma_plane(image: &RgbImage) -> Plane {
    Plane {
        width: image.width() as usize,
        height: image.height() as usize,
        data: image
            .pixels()
            .map(|p| 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32)
            .collect(),
    }
}

fn gradient_histogram(luma: &Plane) -> [f32; GRADIENT_BINS.len() + 1] {
    let (gx, gy) = sobel(luma);
    let mut counts = [0.0f32; GRADIENT_BINS.len() + 1];
    for (x, y) in gx.data.iter().zip(&gy.data) {
        let m = (x * x + y * y).sqrt();
        let bin = GRADIENT_BINS
            .iter()
            .position(|&edge| m < edge)
            .unwrap_or(GRADIENT_BINS.len());
        counts[bin] += 1.0;
    }
    let total = luma.data.len().max(1) as f32;
    counts.map(|c| c / total)
}

fn histogram_distance(a: &[f32], b: &[f32]) -> f32 {
    0.5 * a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>()
}

/// Block means on a grid with about [`COMPOSITION_BLOCKS`] square blocks along the short side.
fn coarse_grid(luma: &Plane) -> Vec<f32> {
    let (w, h) = (luma.width, luma.height);
    let side = (w.min(h) / COMPOSITION_BLOCKS).max(1);
    let (nx, ny) = (w.div_ceil(side), h.div_ceil(side));
    let mut sums = vec![0.0f64; nx * ny];
    let mut counts = vec![0u32; nx * ny];
    for y in 0..h {
        let row = (y / side) * nx;
        for x in 0..w {
            let cell = row + x / side;
            sums[cell] += luma.data[y * w + x] as f64;
            counts[cell] += 1;
        }
    }
    sums.iter()
        .zip(&counts)
        .map(|(&s, &c)| (s / c.max(1) as f64) as f32)
        .collect()
}

fn mean(values: &[f32]) -> f32 {
    values.iter().sum::<f32>() / values.len().max(1) as f32
}

fn std_dev(values: &[f32]) -> f32 {
    let m = mean(values);
    (values.iter().map(|v| (v - m) * (v - m)).sum::<f32>() / values.len().max(1) as f32).sqrt()
}

/// Pearson correlation; 0 when either side is constant.
fn correlation(a: &[f32], b: &[f32]) -> f32 {
    let (ma, mb) = (mean(a), mean(b));
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (dx, dy) = ((x - ma) as f64, (y - mb) as f64);
        ab += dx * dy;
        aa += dx * dx;
        bb += dy * dy;
    }
    if aa <= 0.0 || bb <= 0.0 {
        return 0.0;
    }
    (ab / (aa * bb).sqrt()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn checker(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let v = if (x / 16 + y / 16) % 2 == 0 { 40 } else { 220 };
            Rgb([v, v, v])
        })
    }

    #[test]
    fn identity_is_not_a_style() {
        let photo = checker(96, 64);
        let e = StyleEffect::measure(&photo, &photo);
        assert_eq!(e.changed_fraction, 0.0);
        assert_eq!(e.texture_change, 0.0);
        assert!((e.composition.expect("structured") - 1.0).abs() < 1e-5);
        assert!(!e.visibly_applied() && e.keeps_composition());
    }

    #[test]
    fn a_global_tint_changes_pixels_but_not_texture() {
        let photo = checker(96, 64);
        let tinted = RgbImage::from_fn(96, 64, |x, y| {
            let p = photo.get_pixel(x, y).0;
            Rgb([p[0].saturating_add(10), p[1], p[2].saturating_sub(40)])
        });
        let e = StyleEffect::measure(&photo, &tinted);
        assert!(e.changed_fraction > 0.9, "{e}");
        assert!(e.texture_change < MIN_TEXTURE_CHANGE, "{e}");
        assert!(!e.visibly_applied());
    }

    #[test]
    fn scrambling_loses_the_composition() {
        let photo = checker(96, 64);
        let shifted = RgbImage::from_fn(96, 64, |x, y| *photo.get_pixel((x + 16) % 96, y));
        let e = StyleEffect::measure(&photo, &shifted);
        assert!(!e.keeps_composition(), "{e}");
        let flat = RgbImage::from_pixel(96, 64, Rgb([128, 128, 128]));
        let e = StyleEffect::measure(&flat, &photo);
        assert_eq!(e.composition, None);
        assert!(!e.keeps_composition(), "invented structure passed: {e}");
    }
}
