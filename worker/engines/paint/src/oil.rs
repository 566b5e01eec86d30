//! Oil paint: anisotropic Kuwahara filtering (Kyprianidis, Kang & Döllner 2009, with the
//! polynomial sector weights of Kyprianidis 2011) and optional impasto relief shading.
//!
//! The smoothed structure tensor gives each pixel a dominant orientation and an anisotropy A.
//! The filter window is an ellipse stretched along the edge (semi-axes r(α+A)/α and rα/(α+A)),
//! split into eight sectors; each sector's mean colour is weighted by 1/(1+σ^q) of its standard
//! deviation, so the output takes the flattest side of every edge: texture is flattened, edges kept.

use serde::{Deserialize, Serialize};

use crate::raster::{blur, size_scale, sobel, ColourImage, FlatFlow, Plane, FLAT_GRADIENT};
use crate::rng::SeededRng;

/// Oil paint parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OilParams {
    /// Filter radius in pixels for a ~0.8 MP image (scaled with size); larger = broader strokes.
    pub radius: f32,
    /// Sharpness q of the sector selection (Kyprianidis uses 8).
    pub sharpness: f32,
    /// Anisotropy tuning α: larger values make the ellipse rounder.
    pub alpha: f32,
    /// Sigma of the structure tensor smoothing.
    pub tensor_sigma: f32,
    /// Impasto relief strength; 0 disables the shading.
    pub impasto: f32,
    /// Colour saturation multiplier applied after filtering (oil pigments are rich).
    pub saturation: f32,
}

impl Default for OilParams {
    fn default() -> Self {
        Self {
            radius: 5.0,
            sharpness: 8.0,
            alpha: 1.0,
            tensor_sigma: 2.0,
            impasto: 0.6,
            saturation: 1.15,
        }
    }
}

/// Per-pixel orientation (unit vector along the edge), anisotropy in [0,1] and structure
/// strength (the larger eigenvalue: squared gradient summed over the channels).
pub struct Orientation {
    pub tangent: Vec<[f32; 2]>,
    pub anisotropy: Vec<f32>,
    pub strength: Vec<f32>,
}

/// Orientation from the smoothed structure tensor of all three channels.
pub fn orientation_field(image: &ColourImage, tensor_sigma: f32) -> Orientation {
    let (w, h) = (image.width, image.height);
    let mut e = Plane::new(w, h, 0.0);
    let mut f = Plane::new(w, h, 0.0);
    let mut g = Plane::new(w, h, 0.0);
    for c in 0..3 {
        let (gx, gy) = sobel(&image.channel(c));
        for i in 0..w * h {
            let (x, y) = (gx.data[i], gy.data[i]);
            e.data[i] += x * x;
            f.data[i] += x * y;
            g.data[i] += y * y;
        }
    }
    let (e, f, g) = (
        blur(&e, tensor_sigma),
        blur(&f, tensor_sigma),
        blur(&g, tensor_sigma),
    );
    let mut tangent = Vec::with_capacity(w * h);
    let mut anisotropy = Vec::with_capacity(w * h);
    let mut strength = Vec::with_capacity(w * h);
    for i in 0..w * h {
        let (ee, ff, gg) = (e.data[i], f.data[i], g.data[i]);
        let root = ((ee - gg) * (ee - gg) + 4.0 * ff * ff).sqrt();
        let l1 = 0.5 * (ee + gg + root);
        let l2 = 0.5 * (ee + gg - root);
        // Eigenvector of the smaller eigenvalue: the direction of least change, along the edge.
        let (tx, ty) = (l1 - ee, -ff);
        let norm = (tx * tx + ty * ty).sqrt();
        tangent.push(if norm > 1e-12 {
            [tx / norm, ty / norm]
        } else {
            [0.0, 1.0]
        });
        let sum = l1 + l2;
        anisotropy.push(if sum > 1e-12 { (l1 - l2) / sum } else { 0.0 });
        strength.push(l1.max(0.0));
    }
    Orientation {
        tangent,
        anisotropy,
        strength,
    }
}

/// Orientation and anisotropy are quantised into this many kernels: the filter then only
/// reads precomputed sparse tap lists instead of evaluating sector polynomials per sample.
const ANGLE_BINS: usize = 24;
const ANISOTROPY_BINS: usize = 6;

/// Anisotropic Kuwahara filter.
pub fn anisotropic_kuwahara(image: &ColourImage, params: &OilParams) -> ColourImage {
    let (w, h) = (image.width, image.height);
    let radius = (params.radius * size_scale(w, h)).max(1.0);
    let orientation = orientation_field(image, params.tensor_sigma);
    let kernels = KernelBank::new(radius, params.alpha);
    let mut out = ColourImage::new(w, h, [0.0; 3]);
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let kernel = kernels.select(orientation.tangent[i], orientation.anisotropy[i]);
            out.data[i] = filter_pixel(image, x, y, kernel, params.sharpness);
        }
    }
    out
}

/// One sample offset of a kernel; `weights[first..first+count]` are its non-zero sector weights.
struct Tap {
    dx: i32,
    dy: i32,
    first: u32,
    count: u32,
}

/// A kernel: taps of one half plane (the mirrored tap −d has sector k+4's weight of d).
struct Kernel {
    taps: Vec<Tap>,
    weights: Vec<(u8, f32)>,
}

struct KernelBank {
    kernels: Vec<Kernel>,
}

impl KernelBank {
    fn new(radius: f32, alpha: f32) -> Self {
        let sectors = SectorWeights::new(radius);
        let mut kernels = Vec::with_capacity(ANGLE_BINS * ANISOTROPY_BINS);
        for angle_bin in 0..ANGLE_BINS {
            // The ellipse is symmetric under a half turn, so angles in [0, π) cover every case.
            let angle = angle_bin as f32 * std::f32::consts::PI / ANGLE_BINS as f32;
            for aniso_bin in 0..ANISOTROPY_BINS {
                let anisotropy = aniso_bin as f32 / (ANISOTROPY_BINS - 1) as f32;
                kernels.push(build_kernel(&sectors, radius, alpha, angle, anisotropy));
            }
        }
        Self { kernels }
    }

    fn select(&self, tangent: [f32; 2], anisotropy: f32) -> &Kernel {
        let angle = tangent[1]
            .atan2(tangent[0])
            .rem_euclid(std::f32::consts::PI);
        let angle_bin =
            (angle / std::f32::consts::PI * ANGLE_BINS as f32).round() as usize % ANGLE_BINS;
        let aniso_bin =
            (anisotropy.clamp(0.0, 1.0) * (ANISOTROPY_BINS - 1) as f32).round() as usize;
        &self.kernels[angle_bin * ANISOTROPY_BINS + aniso_bin]
    }
}

fn build_kernel(
    sectors: &SectorWeights,
    radius: f32,
    alpha: f32,
    angle: f32,
    anisotropy: f32,
) -> Kernel {
    let a = radius * ((alpha + anisotropy) / alpha).clamp(0.1, 2.0);
    let b = radius * (alpha / (alpha + anisotropy)).clamp(0.1, 2.0);
    let (sin, cos) = angle.sin_cos();
    let extent_x = ((a * cos).powi(2) + (b * sin).powi(2)).sqrt().ceil() as i32;
    let extent_y = ((a * sin).powi(2) + (b * cos).powi(2)).sqrt().ceil() as i32;
    let mut taps = Vec::new();
    let mut weights = Vec::new();
    for dy in 0..=extent_y {
        let dx_start = if dy == 0 { 0 } else { -extent_x };
        for dx in dx_start..=extent_x {
            // Rotate into the ellipse frame and scale the ellipse onto the unit disc.
            let vx = (cos * dx as f32 + sin * dy as f32) / a;
            let vy = (-sin * dx as f32 + cos * dy as f32) / b;
            let r2 = vx * vx + vy * vy;
            if r2 > 1.0 {
                continue;
            }
            let sector = sectors.at(vx, vy);
            let total: f32 = sector.iter().sum();
            if total <= 0.0 {
                continue;
            }
            let scale = (-3.125 * r2).exp() / total;
            let first = weights.len() as u32;
            for (k, wk) in sector.iter().enumerate() {
                if *wk > 0.0 {
                    weights.push((k as u8, wk * scale));
                }
            }
            taps.push(Tap {
                dx,
                dy,
                first,
                count: weights.len() as u32 - first,
            });
        }
    }
    Kernel { taps, weights }
}

/// Constants of the polynomial sector weights for N = 8 sectors.
struct SectorWeights {
    zeta: f32,
    eta: f32,
}

impl SectorWeights {
    fn new(radius: f32) -> Self {
        let zeta = 2.0 / radius;
        let angle = std::f32::consts::PI / 8.0;
        let eta = (zeta + angle.cos()) / (angle.sin() * angle.sin());
        Self { zeta, eta }
    }

    /// Weights of the 8 sectors at unit-disc position v (before the Gaussian falloff).
    #[inline]
    fn at(&self, vx: f32, vy: f32) -> [f32; 8] {
        let mut w = [0.0f32; 8];
        let vxx = self.zeta - self.eta * vx * vx;
        let vyy = self.zeta - self.eta * vy * vy;
        w[0] = sq_pos(vy + vxx);
        w[2] = sq_pos(-vx + vyy);
        w[4] = sq_pos(-vy + vxx);
        w[6] = sq_pos(vx + vyy);
        let s = std::f32::consts::FRAC_1_SQRT_2;
        let (rx, ry) = (s * (vx - vy), s * (vx + vy));
        let vxx = self.zeta - self.eta * rx * rx;
        let vyy = self.zeta - self.eta * ry * ry;
        w[1] = sq_pos(ry + vxx);
        w[3] = sq_pos(-rx + vyy);
        w[5] = sq_pos(-ry + vxx);
        w[7] = sq_pos(rx + vyy);
        w
    }
}

#[inline]
fn sq_pos(v: f32) -> f32 {
    let v = v.max(0.0);
    v * v
}

fn filter_pixel(
    image: &ColourImage,
    x: usize,
    y: usize,
    kernel: &Kernel,
    sharpness: f32,
) -> [f32; 3] {
    let (w, h) = (image.width as i64, image.height as i64);
    let mut mean = [[0.0f32; 3]; 8];
    let mut square = [[0.0f32; 3]; 8];
    let mut weight = [0.0f32; 8];
    let centre = image.get(x, y);
    for tap in &kernel.taps {
        let (dx, dy) = (tap.dx as i64, tap.dy as i64);
        let px = (x as i64 + dx).clamp(0, w - 1) as usize;
        let py = (y as i64 + dy).clamp(0, h - 1) as usize;
        let c1 = image.get(px, py);
        let mirrored = dx != 0 || dy != 0;
        let c2 = if mirrored {
            let qx = (x as i64 - dx).clamp(0, w - 1) as usize;
            let qy = (y as i64 - dy).clamp(0, h - 1) as usize;
            image.get(qx, qy)
        } else {
            centre
        };
        let range = tap.first as usize..(tap.first + tap.count) as usize;
        for &(k, wk) in &kernel.weights[range] {
            let k = k as usize;
            accumulate(&mut mean[k], &mut square[k], &mut weight[k], c1, wk);
            if mirrored {
                // The mirrored sample lies in the opposite sector with the same weight.
                let opposite = (k + 4) % 8;
                accumulate(
                    &mut mean[opposite],
                    &mut square[opposite],
                    &mut weight[opposite],
                    c2,
                    wk,
                );
            }
        }
    }
    let mut out = [0.0f32; 3];
    let mut norm = 0.0f32;
    for k in 0..8 {
        if weight[k] <= 0.0 {
            continue;
        }
        let mut m = [0.0f32; 3];
        let mut variance = 0.0f32;
        for c in 0..3 {
            m[c] = mean[k][c] / weight[k];
            variance += (square[k][c] / weight[k] - m[c] * m[c]).abs();
        }
        // σ on the 0..255 scale so q=8 behaves as in the paper.
        let sigma = variance.sqrt() * 255.0;
        let alpha_k = 1.0 / (1.0 + sigma.powf(sharpness));
        for c in 0..3 {
            out[c] += alpha_k * m[c];
        }
        norm += alpha_k;
    }
    if norm > 0.0 {
        [out[0] / norm, out[1] / norm, out[2] / norm]
    } else {
        centre
    }
}

#[inline]
fn accumulate(mean: &mut [f32; 3], square: &mut [f32; 3], weight: &mut f32, c: [f32; 3], wk: f32) {
    for i in 0..3 {
        mean[i] += c[i] * wk;
        square[i] += c[i] * c[i] * wk;
    }
    *weight += wk;
}

/// Full oil paint style: Kuwahara, saturation boost, optional impasto relief.
pub fn render(image: &ColourImage, params: &OilParams, seed: u64) -> ColourImage {
    let mut painted = anisotropic_kuwahara(image, params);
    if (params.saturation - 1.0).abs() > 1e-3 {
        for c in &mut painted.data {
            let l = crate::colour::luma(*c);
            for v in c.iter_mut() {
                *v = (l + (*v - l) * params.saturation).clamp(0.0, 1.0);
            }
        }
    }
    if params.impasto > 0.0 {
        impasto(&mut painted, params, seed);
    }
    painted
}

/// Relief shading: a height field made of paint-streak noise smeared along the stroke
/// orientation (line integral convolution) plus the paint's own luminance, lit from the top left.
/// Where the painting has no structure to follow (flat or gray areas, below the noise level) the
/// streaks follow a seeded flow field instead of the noise's random orientation. Slopes facing
/// the light also catch a gloss highlight, which is white whatever the pigment, so the relief
/// shows on dark paint as well as on light.
fn impasto(image: &mut ColourImage, params: &OilParams, seed: u64) {
    let (w, h) = (image.width, image.height);
    let scale = size_scale(w, h);
    let orientation = orientation_field(image, params.tensor_sigma * 2.0);
    let flow = FlatFlow::new(scale, seed ^ 0x0117);
    // Structure weaker than a quarter level per pixel (summed over three channels) is noise.
    let flat_strength = 3.0 * FLAT_GRADIENT * FLAT_GRADIENT;
    let mut rng = SeededRng::new(seed ^ 0x1A9A_5700);
    let noise: Vec<f32> = (0..w * h).map(|_| rng.next_f32()).collect();
    let streak_length = (4.0 * scale).round().max(2.0) as i32;
    let luminance = image.luma();
    let mut height = Plane::new(w, h, 0.0);
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let mut t = orientation.tangent[i];
            let structure = orientation.strength[i];
            if structure < 4.0 * flat_strength {
                let f = flow.direction(x as f32, y as f32);
                let trust = (structure / (4.0 * flat_strength)).clamp(0.0, 1.0);
                let sign = if f.0 * t[0] + f.1 * t[1] < 0.0 {
                    -1.0
                } else {
                    1.0
                };
                let (tx, ty) = (
                    trust * t[0] + (1.0 - trust) * sign * f.0,
                    trust * t[1] + (1.0 - trust) * sign * f.1,
                );
                let norm = (tx * tx + ty * ty).sqrt().max(1e-6);
                t = [tx / norm, ty / norm];
            }
            let mut sum = 0.0;
            for s in -streak_length..=streak_length {
                let sx = (x as f32 + t[0] * s as f32)
                    .round()
                    .clamp(0.0, (w - 1) as f32) as usize;
                let sy = (y as f32 + t[1] * s as f32)
                    .round()
                    .clamp(0.0, (h - 1) as f32) as usize;
                sum += noise[sy * w + sx];
            }
            height.data[i] = sum / (2 * streak_length + 1) as f32 + 0.5 * luminance.data[i];
        }
    }
    let (gx, gy) = sobel(&height);
    let light = [-0.6f32, -0.6, 0.53];
    let bump = 6.0 * params.impasto;
    for i in 0..w * h {
        let (nx, ny, nz) = (-gx.data[i] * bump, -gy.data[i] * bump, 1.0);
        let norm = (nx * nx + ny * ny + nz * nz).sqrt();
        let lit = (nx * light[0] + ny * light[1] + nz * light[2]) / norm;
        // Flat paint (normal straight up) keeps its colour; slopes brighten or darken.
        let slope = lit - light[2];
        let shade = 1.0 + params.impasto * slope * 1.5;
        let gloss = params.impasto * GLOSS * slope.max(0.0);
        for v in image.data[i].iter_mut() {
            let shaded = *v * shade;
            *v = (shaded + gloss * (1.0 - shaded)).clamp(0.0, 1.0);
        }
    }
}

/// Strength of the specular highlight on relief slopes facing the light.
const GLOSS: f32 = 1.2;
