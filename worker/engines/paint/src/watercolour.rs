//! Watercolour after Bousseau, Kaplan, Thollot & Sillion (NPAR 2006), "Interactive watercolor
//! rendering with temporal coherence and abstraction":
//! 1. abstraction: edge-preserving smoothing (a small anisotropic Kuwahara) then colour
//!    quantisation in Lab, so detail dissolves into washes;
//! 2. hand tremor: the abstract image is resampled through low-frequency noise so edges wobble;
//! 3. wet-in-wet: a blurred copy bleeds into the washes where turbulence noise says the paper was wet;
//! 4. pigment density d modulates colour as C' = C·(1 − (1 − C)(d − 1)) (d > 1 darker), with d
//!    raised by paper texture, granulation, turbulence and the gradient of the washes (edge darkening);
//! 5. the paper: pigment is laid on a warm white sheet whose relief catches the light everywhere,
//!    painted or not, so blank paper reads as watercolour paper and not as an empty screen.
//!
//! Pigment also spreads a little into the damp paper everywhere (about a pixel at the reference
//! size), so no wash keeps a pixel-sharp border: a line drawing becomes brushed lines of pigment
//! with pooled edges rather than the same black lines.

use serde::{Deserialize, Serialize};

use crate::oil::{anisotropic_kuwahara, OilParams};
use crate::palette::quantise;
use crate::raster::{
    contrast_factor, gradient_magnitude, reflect_unit, size_scale, sobel, value_noise, ColourImage,
};

/// Watercolour parameters. Strengths are in [0,1] unless noted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatercolourParams {
    /// Radius of the abstraction smoothing in pixels (~0.8 MP reference, scaled with size).
    pub abstraction_radius: f32,
    /// Number of wash colours after quantisation (3..=32).
    pub wash_colours: usize,
    /// Edge darkening strength (pigment pools at wash borders).
    pub edge_darkening: f32,
    /// Pigment granulation strength (fine grain).
    pub granulation: f32,
    /// Paper texture strength.
    pub paper_texture: f32,
    /// Wet-in-wet bleeding strength.
    pub bleeding: f32,
    /// Hand tremor displacement in pixels.
    pub tremor: f32,
    /// Low-frequency pigment turbulence strength.
    pub turbulence: f32,
}

impl Default for WatercolourParams {
    fn default() -> Self {
        Self {
            abstraction_radius: 5.0,
            wash_colours: 12,
            edge_darkening: 0.8,
            granulation: 0.35,
            paper_texture: 0.3,
            bleeding: 0.5,
            tremor: 2.0,
            turbulence: 0.35,
        }
    }
}

/// Renders the watercolour style.
pub fn render(image: &ColourImage, params: &WatercolourParams, seed: u64) -> ColourImage {
    let (w, h) = (image.width, image.height);
    let scale = size_scale(w, h);
    let smoothing = OilParams {
        radius: params.abstraction_radius,
        sharpness: 8.0,
        alpha: 1.0,
        tensor_sigma: 2.0,
        impasto: 0.0,
        saturation: 1.0,
    };
    let smooth = anisotropic_kuwahara(image, &smoothing);
    let washes = quantise(&smooth, params.wash_colours.clamp(3, 32), seed);
    let trembled = tremble(&washes, params.tremor * scale, seed);
    let spread = mix(&trembled, &trembled.blur(SPREAD * scale), SPREAD_MIX);
    let bled = bleed(&spread, params.bleeding, scale, seed);
    // Turbulence is blotchiness at the scale of the composition: keep it below the photo's own
    // contrast so a dim photo's subject does not disappear under it.
    let params = &WatercolourParams {
        turbulence: params.turbulence * contrast_factor(image),
        ..params.clone()
    };
    let pigmented = apply_pigment_density(&bled, params, scale, seed);
    on_paper(&pigmented, params.paper_texture, scale, seed)
}

/// Sigma (px at the reference size) of the spread of wet pigment into damp paper, and how much
/// of the spread pigment is mixed in (a wash keeps a firm but not pixel-sharp border).
const SPREAD: f32 = 1.0;
const SPREAD_MIX: f32 = 0.5;

fn mix(a: &ColourImage, b: &ColourImage, t: f32) -> ColourImage {
    let mut out = a.clone();
    for (o, q) in out.data.iter_mut().zip(&b.data) {
        for (v, w) in o.iter_mut().zip(q) {
            *v += (w - *v) * t;
        }
    }
    out
}
/// The colour of blank watercolour paper (a warm white).
const PAPER: [f32; 3] = [0.99, 0.978, 0.95];
/// Relief shading amplitude of the paper per unit of `paper_texture`.
const PAPER_RELIEF: f32 = 0.9;

/// Lays the pigment layer (a transmittance, 1 = no pigment) on textured paper: the paper's
/// relief (bumps about 4 px across at the reference size) is lit from the top left, so it shows
/// as small highlights and shadows on blank paper and under every wash alike.
fn on_paper(pigment: &ColourImage, texture: f32, scale: f32, seed: u64) -> ColourImage {
    let (w, h) = (pigment.width, pigment.height);
    let height = value_noise(w, h, 4.0 * scale.max(0.5), 2, seed ^ 0x9A9E_7E47);
    let (gx, gy) = sobel(&height);
    let mut out = pigment.clone();
    for (i, pixel) in out.data.iter_mut().enumerate() {
        // Light from the top left: slopes facing it (negative gradients) are lit.
        let slope = -(gx.data[i] + gy.data[i]) * std::f32::consts::FRAC_1_SQRT_2;
        let light = 1.0 + texture * PAPER_RELIEF * (slope * 4.0 * scale.max(0.5)).clamp(-1.0, 1.0);
        for (v, paper) in pixel.iter_mut().zip(PAPER) {
            *v = reflect_unit(*v * paper * light);
        }
    }
    out
}

fn tremble(image: &ColourImage, amount: f32, seed: u64) -> ColourImage {
    if amount <= 0.0 {
        return image.clone();
    }
    let (w, h) = (image.width, image.height);
    let period = 24.0 * amount.max(1.0);
    let nx = value_noise(w, h, period, 2, seed ^ 0x7E11);
    let ny = value_noise(w, h, period, 2, seed ^ 0x7E12);
    let mut out = image.clone();
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let dx = (nx.data[i] - 0.5) * 2.0 * amount;
            let dy = (ny.data[i] - 0.5) * 2.0 * amount;
            out.data[i] = image.sample(x as f32 + dx, y as f32 + dy);
        }
    }
    out
}

fn bleed(image: &ColourImage, strength: f32, scale: f32, seed: u64) -> ColourImage {
    if strength <= 0.0 {
        return image.clone();
    }
    let (w, h) = (image.width, image.height);
    let blurred = image.blur(4.0 * scale);
    let wet = value_noise(w, h, 60.0 * scale, 3, seed ^ 0xB1EED);
    let mut out = image.clone();
    for i in 0..w * h {
        // Wet patches are the upper part of the noise; smoothstep keeps their borders soft.
        let t = ((wet.data[i] - 0.45) / 0.2).clamp(0.0, 1.0);
        let m = strength * t * t * (3.0 - 2.0 * t);
        for c in 0..3 {
            out.data[i][c] = image.data[i][c] * (1.0 - m) + blurred.data[i][c] * m;
        }
    }
    out
}

fn apply_pigment_density(
    image: &ColourImage,
    params: &WatercolourParams,
    scale: f32,
    seed: u64,
) -> ColourImage {
    let (w, h) = (image.width, image.height);
    let paper = value_noise(w, h, 3.0 * scale.max(0.5), 3, seed ^ 0x9A9E);
    let grain = value_noise(w, h, 1.5, 1, seed ^ 0x6AA1);
    let turbulence = value_noise(w, h, 80.0 * scale, 3, seed ^ 0x7B7B);
    let edges = gradient_magnitude(&image.luma());
    let edge_scale = edges.data.iter().cloned().fold(0.0f32, f32::max).max(1e-3);
    let mut out = image.clone();
    for i in 0..w * h {
        let edge = (edges.data[i] / edge_scale).sqrt();
        let density = 1.0
            + params.edge_darkening * 0.9 * edge
            + params.paper_texture * 0.6 * (paper.data[i] - 0.5)
            + params.granulation * 0.8 * (grain.data[i] - 0.5)
            + params.turbulence * 0.8 * (turbulence.data[i] - 0.5);
        for v in out.data[i].iter_mut() {
            // Watercolour lets paper through: lift the washes a little before pigment modulation.
            let c = (*v * 0.92 + 0.08).clamp(0.0, 1.0);
            *v = (c * (1.0 - (1.0 - c) * (density - 1.0))).clamp(0.0, 1.0);
        }
    }
    out
}
