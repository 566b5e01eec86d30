//! Pop art: posterised colour fields (Lab k-means on a smoothed image), recoloured from a bold
//! screen-print palette by lightness rank (Warhol) or pushed to saturated versions of their own
//! hue, Ben-Day halftone dots whose size follows how much darker the photo is than its field,
//! and black outlines along field borders.

use serde::{Deserialize, Serialize};

use crate::colour::{hsv_to_rgb, lab_dist2, lab_to_rgbf, luma, rgb_to_hsv, rgbf_to_lab};
use crate::palette::assign_clusters;
use crate::raster::{size_scale, ColourImage};

/// Pop art parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PopArtParams {
    /// Number of flat colour fields (2..=12).
    pub levels: usize,
    /// Halftone cell size in pixels (~0.8 MP reference, scaled with size).
    pub dot_spacing: f32,
    /// Halftone screen angle in degrees (classic: 45).
    pub dot_angle: f32,
    /// Minimum saturation of the fields in [0,1] (used when `recolour` is false).
    pub min_saturation: f32,
    /// Replace the field colours by a screen-print palette (chosen by the seed) ordered by
    /// lightness; false keeps each field's own hue, boosted.
    pub recolour: bool,
    /// Outline width in pixels; 0 disables outlines.
    pub outline: f32,
}

impl Default for PopArtParams {
    fn default() -> Self {
        Self {
            levels: 5,
            dot_spacing: 7.0,
            dot_angle: 45.0,
            min_saturation: 0.65,
            recolour: true,
            outline: 1.5,
        }
    }
}

/// Screen-print palettes, dark to light; the seed picks one (Warhol printed the same photo in
/// many colour sets).
const SCREEN_PALETTES: [[[f32; 3]; 6]; 4] = [
    [
        [0.10, 0.09, 0.25],
        [0.85, 0.10, 0.35],
        [0.95, 0.35, 0.60],
        [0.15, 0.70, 0.85],
        [1.00, 0.85, 0.15],
        [1.00, 0.97, 0.80],
    ],
    [
        [0.20, 0.05, 0.30],
        [0.10, 0.45, 0.80],
        [0.95, 0.30, 0.15],
        [0.40, 0.85, 0.40],
        [1.00, 0.90, 0.30],
        [0.98, 0.95, 0.95],
    ],
    [
        [0.05, 0.20, 0.20],
        [0.90, 0.20, 0.10],
        [0.20, 0.60, 0.55],
        [0.95, 0.60, 0.20],
        [0.98, 0.80, 0.75],
        [0.95, 1.00, 0.85],
    ],
    [
        [0.15, 0.05, 0.05],
        [0.30, 0.25, 0.75],
        [0.90, 0.25, 0.55],
        [1.00, 0.55, 0.10],
        [0.55, 0.90, 0.90],
        [1.00, 1.00, 0.90],
    ],
];

/// Renders the pop art style.
pub fn render(image: &ColourImage, params: &PopArtParams, seed: u64) -> ColourImage {
    let (w, h) = (image.width, image.height);
    let scale = size_scale(w, h);
    let blurred = image.blur(1.5 * scale);
    let smooth = levels(&blurred);
    let (labels, centres) = assign_clusters(&smooth, params.levels.clamp(2, 12), seed);
    let (labels, centres) = merge_close_fields(labels, &centres);
    // Fields are ranked by (and a lone field keeps) the photo's own lightness, before levels.
    let lightness = mean_per_label(&labels, &blurred.luma().data, centres.len());
    let fields = field_colours(&centres, &lightness, params, seed);
    let luminance = smooth.luma();
    let field_luma = mean_per_label(&labels, &luminance.data, centres.len());
    let spacing = (params.dot_spacing * scale).max(2.0);
    let (sin, cos) = params.dot_angle.to_radians().sin_cos();
    let outline = (params.outline * scale).round() as i64;
    let mut out = ColourImage::new(w, h, [0.0; 3]);
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let label = labels[i] as usize;
            let field = fields[label];
            // Position inside the rotated halftone cell, centred on the dot.
            let u = (cos * x as f32 + sin * y as f32) / spacing;
            let v = (-sin * x as f32 + cos * y as f32) / spacing;
            let (fu, fv) = (u - u.round(), v - v.round());
            let distance = (fu * fu + fv * fv).sqrt();
            // Every field carries small dots; where the photo is darker than its field they grow
            // (dot area ~ shading, so radius ~ sqrt), giving shading with one ink per field.
            let shading = (0.12 + 3.0 * (field_luma[label] - luminance.data[i])).clamp(0.0, 1.0);
            let radius = 0.7 * shading.sqrt();
            let ink = ((radius - distance) * spacing).clamp(0.0, 1.0);
            let dot = darken(field, 0.45);
            let mut c = [0.0; 3];
            for k in 0..3 {
                c[k] = field[k] + (dot[k] - field[k]) * ink;
            }
            if outline > 0 && on_border(&labels, w, h, x, y, outline) {
                c = [0.05, 0.05, 0.07];
            }
            out.data[i] = c;
        }
    }
    out
}

/// Fields whose colours differ by less than this CIE76 ΔE (about two just-noticeable
/// differences) are one colour in the photo: k-means always returns k clusters, and on a flat
/// or faintly graded photo they would split grain and vignetting into bands of loud ink that
/// the photo never had.
const MERGE_DELTA_E: f32 = 4.0;

/// Merges clusters closer than [`MERGE_DELTA_E`], largest first; returns relabelled pixels and
/// the surviving centres (pixel-weighted means in Lab).
fn merge_close_fields(labels: Vec<u8>, centres: &[[f32; 3]]) -> (Vec<u8>, Vec<[f32; 3]>) {
    let lab: Vec<[f32; 3]> = centres.iter().map(|&c| rgbf_to_lab(c)).collect();
    let mut counts = vec![0usize; centres.len()];
    for &l in &labels {
        if let Some(c) = counts.get_mut(l as usize) {
            *c += 1;
        }
    }
    let mut order: Vec<usize> = (0..centres.len()).collect();
    order.sort_by(|&a, &b| counts[b].cmp(&counts[a]).then(a.cmp(&b)));
    let mut target = vec![0usize; centres.len()];
    let mut kept: Vec<usize> = Vec::new();
    for &i in &order {
        match kept
            .iter()
            .position(|&k| lab_dist2(lab[k], lab[i]) < MERGE_DELTA_E * MERGE_DELTA_E)
        {
            Some(slot) => target[i] = slot,
            None => {
                target[i] = kept.len();
                kept.push(i);
            }
        }
    }
    if kept.len() == centres.len() {
        return (labels, centres.to_vec());
    }
    let mut sums = vec![([0.0f64; 3], 0usize); kept.len()];
    for (i, &slot) in target.iter().enumerate() {
        let s = &mut sums[slot];
        for (sum, &v) in s.0.iter_mut().zip(&lab[i]) {
            *sum += v as f64 * counts[i] as f64;
        }
        s.1 += counts[i];
    }
    let merged = sums
        .iter()
        .zip(&kept)
        .map(|((sum, n), &k)| {
            if *n == 0 {
                centres[k]
            } else {
                lab_to_rgbf(sum.map(|v| (v / *n as f64) as f32))
            }
        })
        .collect();
    let labels = labels
        .into_iter()
        .map(|l| target.get(l as usize).copied().unwrap_or(0) as u8)
        .collect();
    (labels, merged)
}

/// A screen printer prepares the photo with levels first: its luma range (1st..99th percentile)
/// is stretched over the full range, with one gain for all channels, so a dim photo separates
/// into fields like a well exposed one. The gain is at most 1/[`MIN_LEVELS_SPAN`], so the grain of
/// a flat photo stays below [`MERGE_DELTA_E`].
fn levels(image: &ColourImage) -> ColourImage {
    let step = (image.data.len() / 20_000).max(1);
    let mut values: Vec<f32> = image.data.iter().step_by(step).map(|&c| luma(c)).collect();
    values.sort_by(f32::total_cmp);
    let at = |q: f32| values[((values.len() - 1) as f32 * q).round() as usize];
    let (lo, hi) = (at(0.01), at(0.99));
    let span = (hi - lo).max(MIN_LEVELS_SPAN);
    let low = ((lo + hi - span) / 2.0).clamp(0.0, 1.0 - span);
    let mut out = image.clone();
    for c in &mut out.data {
        for v in c.iter_mut() {
            *v = ((*v - low) / span).clamp(0.0, 1.0);
        }
    }
    out
}

/// The narrowest luma range [`levels`] stretches to the full range.
const MIN_LEVELS_SPAN: f32 = 0.35;

fn field_colours(
    centres: &[[f32; 3]],
    lightness: &[f32],
    params: &PopArtParams,
    seed: u64,
) -> Vec<[f32; 3]> {
    if !params.recolour {
        return centres
            .iter()
            .map(|&c| boldify(c, params.min_saturation))
            .collect();
    }
    let palette = &SCREEN_PALETTES[(seed % SCREEN_PALETTES.len() as u64) as usize];
    let mut order: Vec<usize> = (0..centres.len()).collect();
    order.sort_by(|&a, &b| lightness[a].total_cmp(&lightness[b]));
    let mut fields = vec![[0.0; 3]; centres.len()];
    let last = centres.len().saturating_sub(1).max(1) as f32;
    for (rank, &index) in order.iter().enumerate() {
        // A single field (a flat image) keeps its own lightness instead of rank 0 = darkest ink.
        let position = if centres.len() == 1 {
            lightness[index].clamp(0.0, 1.0)
        } else {
            rank as f32 / last
        };
        let slot = (position * (palette.len() - 1) as f32).round() as usize;
        fields[index] = palette[slot.min(palette.len() - 1)];
    }
    fields
}

fn mean_per_label(labels: &[u8], values: &[f32], count: usize) -> Vec<f32> {
    let mut sums = vec![(0.0f32, 0usize); count.max(1)];
    for (&l, &v) in labels.iter().zip(values) {
        if let Some(s) = sums.get_mut(l as usize) {
            s.0 += v;
            s.1 += 1;
        }
    }
    sums.iter()
        .map(|&(s, n)| if n > 0 { s / n as f32 } else { 0.5 })
        .collect()
}

fn boldify(c: [f32; 3], min_saturation: f32) -> [f32; 3] {
    let mut hsv = rgb_to_hsv(c);
    if hsv[1] > 0.08 {
        hsv[1] = hsv[1].max(min_saturation);
        hsv[2] = hsv[2].max(0.55);
    }
    hsv_to_rgb(hsv)
}

fn darken(c: [f32; 3], t: f32) -> [f32; 3] {
    [c[0] * (1.0 - t), c[1] * (1.0 - t), c[2] * (1.0 - t)]
}

/// True if a different field label lies within `width` pixels right or below (one-sided so
/// outlines stay `width` thick rather than double).
fn on_border(labels: &[u8], w: usize, h: usize, x: usize, y: usize, width: i64) -> bool {
    let here = labels[y * w + x];
    for d in 1..=width {
        let xr = (x as i64 + d).min(w as i64 - 1) as usize;
        let yd = (y as i64 + d).min(h as i64 - 1) as usize;
        if labels[y * w + xr] != here || labels[yd * w + x] != here {
            return true;
        }
    }
    false
}
