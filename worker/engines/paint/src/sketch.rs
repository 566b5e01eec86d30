//! Pencil and charcoal drawings.
//!
//! Pencil: the classic colour-dodge line extraction (grey / blur(grey)) gives thin outlines; tone is
//! added as hatching (noise smeared along a fixed diagonal) whose density follows darkness, with a
//! second cross-hatch direction for the darkest tones, all on a fine paper grain.
//! Charcoal: broad, soft strokes: a heavily smoothed, contrast-boosted tone, thick dark outlines
//! from the gradient of a blurred image, and grain where charcoal catches only the paper's ridges.

use serde::{Deserialize, Serialize};

use crate::raster::{blur, gradient_magnitude, size_scale, value_noise, ColourImage, Plane};
use crate::rng::SeededRng;

/// Sketch parameters shared by pencil and charcoal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SketchParams {
    /// Width of the line detector in pixels (~0.8 MP reference, scaled with size).
    pub line_width: f32,
    /// Darkness of outlines in [0,1].
    pub line_strength: f32,
    /// Hatching / tone density in [0,1].
    pub shading: f32,
    /// Length of hatching strokes in pixels.
    pub hatch_length: f32,
    /// Paper grain strength in [0,1].
    pub grain: f32,
    /// Tint of the paper (sRGB in [0,1]).
    pub paper: [f32; 3],
}

impl SketchParams {
    pub fn pencil() -> Self {
        Self {
            line_width: 4.0,
            line_strength: 0.9,
            shading: 0.7,
            hatch_length: 9.0,
            grain: 0.25,
            paper: [0.97, 0.96, 0.93],
        }
    }

    pub fn charcoal() -> Self {
        Self {
            line_width: 3.0,
            line_strength: 1.0,
            shading: 1.0,
            hatch_length: 14.0,
            grain: 0.8,
            paper: [0.93, 0.91, 0.86],
        }
    }
}

/// Pencil drawing.
///
/// Lines are drawn twice, as a sketcher does: a firm pass where the photo has them and a lighter,
/// slightly displaced second pass; their darkness varies with hand pressure along the page and
/// the graphite only catches the paper's tooth, so even the hard black lines of line art come
/// out as grainy graphite rather than as the same ink.
pub fn pencil(image: &ColourImage, params: &SketchParams, seed: u64) -> ColourImage {
    let (w, h) = (image.width, image.height);
    let scale = size_scale(w, h);
    let grey = image.luma();
    let blurred = blur(&grey, params.line_width * scale);
    let shaky = displace(&grey, 1.5 * scale, 30.0 * scale, seed ^ 0x5CE7);
    let shaky_blurred = blur(&shaky, params.line_width * scale);
    let hatch_a = hatching(w, h, params.hatch_length * scale, [1.0, -1.0], seed);
    let hatch_b = hatching(w, h, params.hatch_length * scale, [1.0, 1.0], seed ^ 0xC055);
    let paper = value_noise(w, h, 2.0, 2, seed ^ 0x9A9E);
    let tooth = value_noise(w, h, 1.2 * scale.max(0.6), 2, seed ^ 0x7007);
    let pressure = value_noise(w, h, 40.0 * scale, 2, seed ^ 0x9E55);
    let tone = blur(&grey, 1.5 * scale);
    // Hatching follows tone half absolutely (a night scene is drawn darker) and half relative to
    // the photo's range, so a dim photo is not one even cross-hatch.
    let (lo, hi) = tone_range(&tone.data);
    let mut out = Plane::new(w, h, 1.0);
    for i in 0..w * h {
        // Colour dodge: flat regions go white, only local darkening (lines) survives.
        let dodge = (grey.data[i] / blurred.data[i].max(1e-3)).min(1.0);
        let second_dodge = (shaky.data[i] / shaky_blurred.data[i].max(1e-3)).min(1.0);
        // Graphite sits on the ridges of the paper: valleys stay lighter.
        let catch = (0.35 + 1.3 * tooth.data[i]).clamp(0.0, 1.0);
        let hand = 0.7 + 0.5 * pressure.data[i];
        let stroke = params.line_strength * hand * catch;
        let line = (1.0 - stroke * (1.0 - dodge.powf(2.5)))
            * (1.0 - 0.5 * stroke * (1.0 - second_dodge.powf(2.5)));
        let relative = ((tone.data[i] - lo) / (hi - lo)).clamp(0.0, 1.0);
        let darkness = (1.0 - 0.5 * (tone.data[i] + relative)).clamp(0.0, 1.0);
        let first = ((darkness - 0.25) / 0.5).clamp(0.0, 1.0);
        let second = ((darkness - 0.6) / 0.3).clamp(0.0, 1.0);
        let shade = (1.0 - params.shading * first * hatch_a.data[i] * 0.8)
            * (1.0 - params.shading * second * hatch_b.data[i] * 0.8);
        // The paper's tooth shows faintly even where nothing is drawn.
        let grain = 1.0 - params.grain * 0.6 * (paper.data[i] - 0.5).abs();
        out.data[i] = (line * shade * grain).clamp(0.0, 1.0);
    }
    on_paper(&out, params.paper, [0.16, 0.16, 0.18])
}

/// Resamples `plane` through smooth noise displacement of up to `amount` px (a hand's wobble).
fn displace(plane: &Plane, amount: f32, period: f32, seed: u64) -> Plane {
    let (w, h) = (plane.width, plane.height);
    let nx = value_noise(w, h, period.max(2.0), 2, seed);
    let ny = value_noise(w, h, period.max(2.0), 2, seed ^ 0xD15B);
    let mut out = Plane::new(w, h, 0.0);
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let dx = (nx.data[i] - 0.5) * 2.0 * amount + 0.6 * amount;
            let dy = (ny.data[i] - 0.5) * 2.0 * amount + 0.4 * amount;
            out.data[i] = plane.sample(x as f32 + dx, y as f32 + dy);
        }
    }
    out
}

/// Charcoal drawing.
pub fn charcoal(image: &ColourImage, params: &SketchParams, seed: u64) -> ColourImage {
    let (w, h) = (image.width, image.height);
    let scale = size_scale(w, h);
    let grey = image.luma();
    let soft = blur(&grey, 2.5 * scale);
    let (lo, hi) = tone_range(&soft.data);
    // Outlines are measured in the same stretched units as the tone, with a floor: the 98th
    // percentile alone would blow a flat page's grain or a dim photo's faint edges up into
    // outlines as black as a sharp photo's, which then outweigh the tones they surround.
    let line_sigma = params.line_width * scale * 0.6;
    let line_source = blur(&grey, line_sigma);
    let edges = gradient_magnitude(&line_source).map(|e| e / (hi - lo).max(1e-3));
    let edge_scale = percentiles(&edges.data, 0.5, 0.98).1.max(OUTLINE_FLOOR);
    // The contour is drawn on the dark side of an edge, as a draughtsman does: a line straddling
    // the edge would also blacken the light side, and swallow small light shapes (a window, the
    // sun in a thumbnail) whole.
    let surround = blur(&grey, 2.0 * line_sigma + 2.0);
    let ridges = value_noise(w, h, 2.5 * scale.max(0.6), 3, seed ^ 0xC4A2);
    let smudge = hatching(w, h, params.hatch_length * scale, [1.0, -0.35], seed);
    let mut lines = Plane::new(w, h, 0.0);
    for (i, line) in lines.data.iter_mut().enumerate() {
        let light_side = if line_source.data[i] > surround.data[i] {
            LIGHT_SIDE_OUTLINE
        } else {
            1.0
        };
        *line = params.line_strength
            * light_side
            * (edges.data[i] / edge_scale).clamp(0.0, 1.0).powf(1.3);
    }
    // Charcoal lines smudge: a soft grey halo spreads from every line into the paper.
    let halo = blur(&lines, 2.0 * scale.max(0.5));
    let mut out = Plane::new(w, h, 1.0);
    for i in 0..w * h {
        let stretched = ((soft.data[i] - lo) / (hi - lo).max(1e-3)).clamp(0.0, 1.0);
        // Charcoal works in few, deep values: a gamma > 1 pushes mid tones darker.
        let tone_dark = params.shading * (1.0 - stretched.powf(0.8));
        let line_dark = lines.data[i].max(SMUDGE * halo.data[i]);
        let dark = (tone_dark * (0.75 + 0.35 * smudge.data[i]) + line_dark).clamp(0.0, 1.0);
        // Charcoal sits on paper ridges: valleys (low noise) stay lighter, most in mid tones but
        // even in the darkest lines, which is what makes charcoal grainy rather than inky.
        let valley = (0.5 - ridges.data[i]).max(0.0) * 2.0;
        let catch = 1.0 - params.grain * (0.3 + 0.7 * (1.0 - dark)) * valley;
        // Blank paper shows its tooth faintly too.
        let tooth = 1.0 - params.grain * 0.05 * valley;
        out.data[i] = (1.0 - (dark * catch).clamp(0.0, 1.0)) * tooth;
    }
    on_paper(&out, params.paper, [0.08, 0.07, 0.07])
}

/// Gradient (stretched tone per pixel) that always makes a full-strength charcoal outline.
const OUTLINE_FLOOR: f32 = 0.1;
/// Outline strength on the light side of an edge (the dark side gets the full line).
const LIGHT_SIDE_OUTLINE: f32 = 0.25;
/// Darkness of the smudge halo around charcoal lines, relative to the line.
const SMUDGE: f32 = 0.45;

/// Streaky texture in [0,1]: white noise averaged along one direction, contrast-stretched.
fn hatching(w: usize, h: usize, length: f32, direction: [f32; 2], seed: u64) -> Plane {
    let mut rng = SeededRng::new(seed ^ 0x4A7C);
    let noise: Vec<f32> = (0..w * h).map(|_| rng.next_f32()).collect();
    let norm = (direction[0] * direction[0] + direction[1] * direction[1]).sqrt();
    let (dx, dy) = (direction[0] / norm, direction[1] / norm);
    let half = (length / 2.0).round().max(1.0) as i32;
    let mut out = Plane::new(w, h, 0.0);
    for y in 0..h {
        for x in 0..w {
            let mut sum = 0.0;
            for s in -half..=half {
                let sx = (x as f32 + dx * s as f32)
                    .round()
                    .clamp(0.0, (w - 1) as f32) as usize;
                let sy = (y as f32 + dy * s as f32)
                    .round()
                    .clamp(0.0, (h - 1) as f32) as usize;
                sum += noise[sy * w + sx];
            }
            let mean = sum / (2 * half + 1) as f32;
            // The mean of n uniforms has std ~ 0.29/sqrt(n); stretch it back to a usable range.
            let spread = 0.29 / ((2 * half + 1) as f32).sqrt();
            out.data[y * w + x] = (0.5 + (mean - 0.5) / (2.5 * spread)).clamp(0.0, 1.0);
        }
    }
    out
}

/// Range to stretch tones over: the 3rd..97th percentile, but at least a fifth of the full range
/// (a flat page's grain is not blown up into texture) and kept inside [0,1], so a flat white page
/// stays white and a black one stays black, while a dim photo's values spread over the drawing's.
fn tone_range(values: &[f32]) -> (f32, f32) {
    const MIN_SPAN: f32 = 0.2;
    let (lo, hi) = percentiles(values, 0.03, 0.97);
    let span = (hi - lo).max(MIN_SPAN);
    let low = ((lo + hi) / 2.0 - span / 2.0).clamp(0.0, 1.0 - span);
    (low, low + span)
}

fn percentiles(values: &[f32], low: f32, high: f32) -> (f32, f32) {
    let mut sorted: Vec<f32> = values
        .iter()
        .step_by((values.len() / 20_000).max(1))
        .cloned()
        .collect();
    sorted.sort_by(f32::total_cmp);
    if sorted.is_empty() {
        return (0.0, 1.0);
    }
    let at = |q: f32| sorted[((sorted.len() - 1) as f32 * q) as usize];
    (at(low), at(high))
}

/// Maps an intensity plane (1 = bare paper) onto a tinted paper with a tinted medium.
fn on_paper(intensity: &Plane, paper: [f32; 3], medium: [f32; 3]) -> ColourImage {
    ColourImage {
        width: intensity.width,
        height: intensity.height,
        data: intensity
            .data
            .iter()
            .map(|&v| {
                let mut c = [0.0; 3];
                for i in 0..3 {
                    c[i] = medium[i] + (paper[i] - medium[i]) * v;
                }
                c
            })
            .collect(),
    }
}
