//! Float rasters and the few image operations every style shares (blur, gradients, sampling).
//! Colours are sRGB in [0,1]; planes are single-channel f32.

use image::{DynamicImage, RgbImage};

use crate::error::{PaintError, Result};

/// The renderer refuses images above this many pixels (about 16k x 4k) to bound memory.
pub const MAX_PIXELS: u64 = 64_000_000;

/// A single-channel float image.
#[derive(Debug, Clone, PartialEq)]
pub struct Plane {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

/// A three-channel float image, sRGB in [0,1].
#[derive(Debug, Clone, PartialEq)]
pub struct ColourImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<[f32; 3]>,
}

impl Plane {
    pub fn new(width: usize, height: usize, value: f32) -> Self {
        Self {
            width,
            height,
            data: vec![value; width * height],
        }
    }

    #[inline]
    pub fn get(&self, x: usize, y: usize) -> f32 {
        self.data[y * self.width + x]
    }

    /// Value at integer coordinates clamped to the border.
    #[inline]
    pub fn at_clamped(&self, x: i64, y: i64) -> f32 {
        let xc = x.clamp(0, self.width as i64 - 1) as usize;
        let yc = y.clamp(0, self.height as i64 - 1) as usize;
        self.data[yc * self.width + xc]
    }

    /// Bilinear sample with clamped borders.
    pub fn sample(&self, x: f32, y: f32) -> f32 {
        let x = x.clamp(0.0, (self.width - 1) as f32);
        let y = y.clamp(0.0, (self.height - 1) as f32);
        let x0 = x.floor() as usize;
        let y0 = y.floor() as usize;
        let x1 = (x0 + 1).min(self.width - 1);
        let y1 = (y0 + 1).min(self.height - 1);
        let fx = x - x0 as f32;
        let fy = y - y0 as f32;
        let top = self.get(x0, y0) * (1.0 - fx) + self.get(x1, y0) * fx;
        let bottom = self.get(x0, y1) * (1.0 - fx) + self.get(x1, y1) * fx;
        top * (1.0 - fy) + bottom * fy
    }

    pub fn map(&self, f: impl Fn(f32) -> f32) -> Plane {
        Plane {
            width: self.width,
            height: self.height,
            data: self.data.iter().map(|&v| f(v)).collect(),
        }
    }
}

impl ColourImage {
    pub fn new(width: usize, height: usize, value: [f32; 3]) -> Self {
        Self {
            width,
            height,
            data: vec![value; width * height],
        }
    }

    /// Converts any decoded image: alpha is composited over white (how a transparent PNG looks on
    /// paper) and grayscale is expanded to three equal channels.
    pub fn from_dynamic(image: &DynamicImage, what: &'static str) -> Result<Self> {
        check_size(image.width(), image.height(), what)?;
        let rgba = image.to_rgba8();
        let data = rgba
            .pixels()
            .map(|p| {
                let a = p[3] as f32 / 255.0;
                let mut c = [0.0; 3];
                for (i, v) in c.iter_mut().enumerate() {
                    *v = p[i] as f32 / 255.0 * a + (1.0 - a);
                }
                c
            })
            .collect();
        Ok(Self {
            width: image.width() as usize,
            height: image.height() as usize,
            data,
        })
    }

    pub fn from_rgb(image: &RgbImage, what: &'static str) -> Result<Self> {
        check_size(image.width(), image.height(), what)?;
        let data = image
            .pixels()
            .map(|p| {
                [
                    p[0] as f32 / 255.0,
                    p[1] as f32 / 255.0,
                    p[2] as f32 / 255.0,
                ]
            })
            .collect();
        Ok(Self {
            width: image.width() as usize,
            height: image.height() as usize,
            data,
        })
    }

    pub fn to_rgb(&self) -> RgbImage {
        let mut out = RgbImage::new(self.width as u32, self.height as u32);
        for (dst, src) in out.pixels_mut().zip(&self.data) {
            dst.0 = [
                crate::colour::to_u8(src[0]),
                crate::colour::to_u8(src[1]),
                crate::colour::to_u8(src[2]),
            ];
        }
        out
    }

    #[inline]
    pub fn get(&self, x: usize, y: usize) -> [f32; 3] {
        self.data[y * self.width + x]
    }

    /// Bilinear sample with clamped borders.
    pub fn sample(&self, x: f32, y: f32) -> [f32; 3] {
        let x = x.clamp(0.0, (self.width - 1) as f32);
        let y = y.clamp(0.0, (self.height - 1) as f32);
        let x0 = x.floor() as usize;
        let y0 = y.floor() as usize;
        let x1 = (x0 + 1).min(self.width - 1);
        let y1 = (y0 + 1).min(self.height - 1);
        let fx = x - x0 as f32;
        let fy = y - y0 as f32;
        let (a, b, c, d) = (
            self.get(x0, y0),
            self.get(x1, y0),
            self.get(x0, y1),
            self.get(x1, y1),
        );
        let mut out = [0.0; 3];
        for i in 0..3 {
            let top = a[i] * (1.0 - fx) + b[i] * fx;
            let bottom = c[i] * (1.0 - fx) + d[i] * fx;
            out[i] = top * (1.0 - fy) + bottom * fy;
        }
        out
    }

    pub fn channel(&self, i: usize) -> Plane {
        Plane {
            width: self.width,
            height: self.height,
            data: self.data.iter().map(|c| c[i]).collect(),
        }
    }

    pub fn from_channels(r: &Plane, g: &Plane, b: &Plane) -> Self {
        Self {
            width: r.width,
            height: r.height,
            data: r
                .data
                .iter()
                .zip(&g.data)
                .zip(&b.data)
                .map(|((&r, &g), &b)| [r, g, b])
                .collect(),
        }
    }

    pub fn luma(&self) -> Plane {
        Plane {
            width: self.width,
            height: self.height,
            data: self.data.iter().map(|&c| crate::colour::luma(c)).collect(),
        }
    }

    /// Gaussian-like blur of every channel.
    pub fn blur(&self, sigma: f32) -> Self {
        let r = blur(&self.channel(0), sigma);
        let g = blur(&self.channel(1), sigma);
        let b = blur(&self.channel(2), sigma);
        Self::from_channels(&r, &g, &b)
    }
}

/// Rejects empty and absurdly large images before any allocation depends on their size.
pub fn check_size(width: u32, height: u32, what: &'static str) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(PaintError::EmptyImage {
            what,
            width,
            height,
        });
    }
    let pixels = width as u64 * height as u64;
    if pixels > MAX_PIXELS {
        return Err(PaintError::TooLarge {
            what,
            pixels,
            limit: MAX_PIXELS,
        });
    }
    Ok(())
}

/// Gaussian blur approximated by three box blurs (Wells 1986): O(1) per pixel whatever sigma is,
/// which keeps the coarse brush layers as cheap as the fine ones.
pub fn blur(plane: &Plane, sigma: f32) -> Plane {
    if sigma < 0.3 || plane.data.is_empty() {
        return plane.clone();
    }
    // Box width so that three passes have variance sigma^2: w = sqrt(12 sigma^2 / 3 + 1).
    let radius = (((4.0 * sigma * sigma + 1.0).sqrt() - 1.0) / 2.0)
        .round()
        .max(1.0) as usize;
    let mut a = plane.clone();
    let mut b = plane.clone();
    for _ in 0..3 {
        box_rows(&a, &mut b, radius);
        box_cols(&b, &mut a, radius);
    }
    a
}

fn box_rows(src: &Plane, dst: &mut Plane, radius: usize) {
    let w = src.width;
    let norm = 1.0 / (2 * radius + 1) as f32;
    for y in 0..src.height {
        let row = &src.data[y * w..(y + 1) * w];
        let out = &mut dst.data[y * w..(y + 1) * w];
        let at = |i: i64| row[i.clamp(0, w as i64 - 1) as usize];
        let mut sum: f32 = (-(radius as i64)..=radius as i64).map(at).sum();
        for (x, o) in out.iter_mut().enumerate() {
            *o = sum * norm;
            let x = x as i64;
            sum += at(x + radius as i64 + 1) - at(x - radius as i64);
        }
    }
}

fn box_cols(src: &Plane, dst: &mut Plane, radius: usize) {
    let (w, h) = (src.width, src.height);
    let norm = 1.0 / (2 * radius + 1) as f32;
    let mut sums = vec![0.0f32; w];
    let row_of = |y: i64| y.clamp(0, h as i64 - 1) as usize * w;
    for dy in -(radius as i64)..=radius as i64 {
        let base = row_of(dy);
        for (s, v) in sums.iter_mut().zip(&src.data[base..base + w]) {
            *s += v;
        }
    }
    for y in 0..h as i64 {
        let out = y as usize * w;
        for (d, s) in dst.data[out..out + w].iter_mut().zip(&sums) {
            *d = s * norm;
        }
        let add = row_of(y + radius as i64 + 1);
        let sub = row_of(y - radius as i64);
        let incoming = &src.data[add..add + w];
        let outgoing = &src.data[sub..sub + w];
        for ((s, a), r) in sums.iter_mut().zip(incoming).zip(outgoing) {
            *s += a - r;
        }
    }
}

/// Sobel gradients (gx, gy), borders clamped.
pub fn sobel(plane: &Plane) -> (Plane, Plane) {
    let (w, h) = (plane.width, plane.height);
    let mut gx = Plane::new(w, h, 0.0);
    let mut gy = Plane::new(w, h, 0.0);
    for y in 0..h {
        let ym = y.saturating_sub(1);
        let yp = (y + 1).min(h - 1);
        for x in 0..w {
            let xm = x.saturating_sub(1);
            let xp = (x + 1).min(w - 1);
            let p = |xx: usize, yy: usize| plane.data[yy * w + xx];
            let dx =
                (p(xp, ym) + 2.0 * p(xp, y) + p(xp, yp)) - (p(xm, ym) + 2.0 * p(xm, y) + p(xm, yp));
            let dy =
                (p(xm, yp) + 2.0 * p(x, yp) + p(xp, yp)) - (p(xm, ym) + 2.0 * p(x, ym) + p(xp, ym));
            gx.data[y * w + x] = dx / 8.0;
            gy.data[y * w + x] = dy / 8.0;
        }
    }
    (gx, gy)
}

/// Gradient magnitude of a plane.
pub fn gradient_magnitude(plane: &Plane) -> Plane {
    let (gx, gy) = sobel(plane);
    Plane {
        width: plane.width,
        height: plane.height,
        data: gx
            .data
            .iter()
            .zip(&gy.data)
            .map(|(a, b)| (a * a + b * b).sqrt())
            .collect(),
    }
}

/// Multi-octave value noise in [0,1] with the given base period in pixels: the paper grain,
/// pigment turbulence and hatching textures are all built from it.
pub fn value_noise(width: usize, height: usize, period: f32, octaves: u32, seed: u64) -> Plane {
    let mut out = Plane::new(width, height, 0.0);
    let mut amplitude = 1.0;
    let mut total = 0.0;
    let mut period = period.max(1.0);
    for octave in 0..octaves.max(1) {
        let octave_seed = crate::rng::mix64(seed.wrapping_add(octave as u64 * 0x51_7CC1));
        add_noise_octave(&mut out, period, amplitude, octave_seed);
        total += amplitude;
        amplitude *= 0.5;
        period = (period * 0.5).max(1.0);
    }
    for v in &mut out.data {
        *v /= total;
    }
    out
}

fn add_noise_octave(out: &mut Plane, period: f32, amplitude: f32, seed: u64) {
    let inv = 1.0 / period;
    // Lattice column and blend weight of every x, and the lattice values of the two lattice rows
    // around the current y (recomputed only when y crosses a lattice row): the same values as
    // hashing four corners per pixel, at a fraction of the cost.
    let columns: Vec<(usize, f32)> = (0..out.width)
        .map(|x| {
            let fx = x as f32 * inv;
            let x0 = fx.floor();
            (x0 as usize, smooth(fx - x0))
        })
        .collect();
    let lattice_width = columns.last().map_or(0, |c| c.0) + 2;
    let mut top_row = vec![0.0f32; lattice_width];
    let mut bottom_row = vec![0.0f32; lattice_width];
    let mut row_of: Option<i64> = None;
    for y in 0..out.height {
        let fy = y as f32 * inv;
        let y0 = fy.floor();
        let ty = smooth(fy - y0);
        let yi = y0 as i64;
        if row_of != Some(yi) {
            for (xi, (t, b)) in top_row.iter_mut().zip(bottom_row.iter_mut()).enumerate() {
                *t = crate::rng::lattice_value(seed, xi as i64, yi);
                *b = crate::rng::lattice_value(seed, xi as i64, yi + 1);
            }
            row_of = Some(yi);
        }
        let row = &mut out.data[y * out.width..(y + 1) * out.width];
        for (o, &(xi, tx)) in row.iter_mut().zip(&columns) {
            let (v00, v10) = (top_row[xi], top_row[xi + 1]);
            let (v01, v11) = (bottom_row[xi], bottom_row[xi + 1]);
            let top = v00 + (v10 - v00) * tx;
            let bottom = v01 + (v11 - v01) * tx;
            *o += amplitude * (top + (bottom - top) * ty);
        }
    }
}

fn smooth(t: f32) -> f32 {
    t * t * (3.0 - 2.0 * t)
}

/// Brush and kernel sizes are tuned for a ~0.8 megapixel photo; this scales them with the
/// image's linear size so a thumbnail and a poster look alike. The scale never drops below 0.75
/// (small photos keep legible brush work) unless the short side is under 120 px: there it follows
/// the short side (side / 160, so the largest 8 px reference brush stays within a twentieth of
/// the picture), and a thumbnail or icon is painted with marks a few pixels wide instead of
/// strokes as large as its subjects.
pub fn size_scale(width: usize, height: usize) -> f32 {
    let by_area = ((width as f32 * height as f32).sqrt() / 887.0).clamp(0.75, 4.0);
    by_area.min(width.min(height) as f32 / 160.0).max(0.01)
}

/// The photo's tonal range (1st to 99th percentile of luma) relative to a normally exposed
/// photo's 0.8, clamped to [0.25, 1]. Styles scale their contrast-dependent thresholds and their
/// large-scale random variation by it, so a dim or hazy photo is painted with the same detail as a
/// well exposed one and its composition is not drowned by the style's own variation.
pub fn contrast_factor(source: &ColourImage) -> f32 {
    let step = (source.data.len() / 20_000).max(1);
    let mut luma: Vec<f32> = source
        .data
        .iter()
        .step_by(step)
        .map(|&c| crate::colour::luma(c))
        .collect();
    if luma.is_empty() {
        return 1.0;
    }
    luma.sort_by(f32::total_cmp);
    let at = |q: f32| luma[((luma.len() - 1) as f32 * q).round() as usize];
    ((at(0.99) - at(0.01)) / 0.8).clamp(0.25, 1.0)
}

/// Mirrors a value back into [0,1] (1.1 -> 0.9, -0.1 -> 0.1): a random offset on white or black
/// (colour jitter, paper relief) shows as a darker or lighter value instead of being clipped away.
#[inline]
pub fn reflect_unit(v: f32) -> f32 {
    let v = v.abs();
    if v > 1.0 {
        (2.0 - v).max(0.0)
    } else {
        v
    }
}

/// Applies a texture offset `shift` to a colour whose luma is `luma`, without clipping and
/// without flattening tones: in the shadows (luma below 0.15) the texture only lightens, in the
/// highlights (above 0.85) it only darkens, and in between it fades from one-sided to symmetric.
/// Reflecting at 0 and 1 instead would make every dark colour come out about equally light
/// (|shift| dominates), erasing the tonal differences of a dim photo.
#[inline]
pub fn textured(colour: [f32; 3], luma: f32, shift: f32) -> [f32; 3] {
    TextureBounds::new(luma).apply(colour, shift)
}

/// [`textured`] with the luma-dependent weights worked out once (per stroke, say).
#[derive(Debug, Clone, Copy)]
pub struct TextureBounds {
    shadow: f32,
    highlight: f32,
}

impl TextureBounds {
    pub fn new(luma: f32) -> Self {
        let smooth = |t: f32| {
            let t = t.clamp(0.0, 1.0);
            t * t * (3.0 - 2.0 * t)
        };
        Self {
            shadow: smooth((0.45 - luma) / 0.3),
            highlight: smooth((luma - 0.55) / 0.3),
        }
    }

    /// The offset actually applied for a texture offset `shift`.
    #[inline]
    pub fn effective(&self, shift: f32) -> f32 {
        if self.shadow == 0.0 && self.highlight == 0.0 {
            shift
        } else {
            let magnitude = shift.abs();
            shift + self.shadow * (magnitude - shift) - self.highlight * (magnitude + shift)
        }
    }

    #[inline]
    pub fn apply(&self, colour: [f32; 3], shift: f32) -> [f32; 3] {
        let effective = self.effective(shift);
        colour.map(|c| (c + effective).clamp(0.0, 1.0))
    }
}

/// Stroke directions where the photo has none (flat areas, gradients below the noise level):
/// a slowly turning field around a painter's diagonal, fixed by the seed, so flat areas get long
/// directional strokes like a painted sky or wall instead of round dabs of the exact colour.
pub struct FlatFlow {
    period: f32,
    seed: u64,
}

/// Gradient magnitude (luma per pixel) below which the reference counts as flat: a quarter of an
/// 8-bit level per pixel, above what the blurred grain of a photo produces.
pub const FLAT_GRADIENT: f32 = 1e-3;

impl FlatFlow {
    pub fn new(scale: f32, seed: u64) -> Self {
        Self {
            period: 60.0 * scale,
            seed: crate::rng::mix64(seed ^ 0xF1A7_F10E),
        }
    }

    pub fn direction(&self, x: f32, y: f32) -> (f32, f32) {
        let (fx, fy) = (x / self.period, y / self.period);
        let (x0, y0) = (fx.floor(), fy.floor());
        let (tx, ty) = (fx - x0, fy - y0);
        let (xi, yi) = (x0 as i64, y0 as i64);
        let v = |dx: i64, dy: i64| crate::rng::lattice_value(self.seed, xi + dx, yi + dy);
        let top = v(0, 0) + (v(1, 0) - v(0, 0)) * tx;
        let bottom = v(0, 1) + (v(1, 1) - v(0, 1)) * tx;
        let noise = top + (bottom - top) * ty;
        // Around -35 degrees (lower left to upper right), turning by up to +-50 degrees.
        let angle = -0.61 + 1.75 * (noise - 0.5);
        let (sin, cos) = angle.sin_cos();
        (cos, sin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blur_preserves_mean_and_flattens() {
        let mut p = Plane::new(40, 30, 0.0);
        for (i, v) in p.data.iter_mut().enumerate() {
            *v = if i % 2 == 0 { 1.0 } else { 0.0 };
        }
        let b = blur(&p, 3.0);
        let mean: f32 = b.data.iter().sum::<f32>() / b.data.len() as f32;
        assert!((mean - 0.5).abs() < 0.02);
        // Away from the clamped borders the alternating pattern must be gone.
        for y in 0..30 {
            for x in 10..30 {
                assert!(
                    (b.get(x, y) - 0.5).abs() < 0.05,
                    "({x},{y}) = {}",
                    b.get(x, y)
                );
            }
        }
    }

    #[test]
    fn texture_shows_on_black_and_white_and_keeps_dark_tones_apart() {
        let shifts: Vec<f32> = (-10..=10).map(|i| i as f32 * 0.015).collect();
        let mean = |c: f32| {
            shifts
                .iter()
                .map(|&s| textured([c; 3], c, s)[0])
                .sum::<f32>()
                / shifts.len() as f32
        };
        let spread = |c: f32| {
            let v: Vec<f32> = shifts.iter().map(|&s| textured([c; 3], c, s)[0]).collect();
            v.iter().cloned().fold(f32::MIN, f32::max) - v.iter().cloned().fold(f32::MAX, f32::min)
        };
        // Visible on pure black and pure white, inside the range.
        assert!(spread(0.0) > 0.1 && spread(1.0) > 0.1);
        // Dark tones stay ordered and apart (reflection would map them all to ~mean |shift|).
        let (a, b) = (mean(0.02), mean(0.08));
        assert!(b - a > 0.05, "{a} vs {b}");
        // Mid tones get a symmetric texture: no shift of the mean.
        assert!((mean(0.5) - 0.5).abs() < 1e-4);
    }

    #[test]
    fn contrast_factor_follows_the_tonal_range() {
        let ramp = |lo: f32, hi: f32| ColourImage {
            width: 100,
            height: 1,
            data: (0..100)
                .map(|i| [lo + (hi - lo) * i as f32 / 99.0; 3])
                .collect(),
        };
        assert_eq!(contrast_factor(&ramp(0.0, 1.0)), 1.0);
        assert!((contrast_factor(&ramp(0.0, 0.4)) - 0.49).abs() < 0.02);
        assert_eq!(contrast_factor(&ramp(0.5, 0.51)), 0.25);
    }

    #[test]
    fn thumbnails_get_smaller_marks() {
        assert!((size_scale(1024, 768) - 1.0).abs() < 0.01);
        assert_eq!(size_scale(400, 300), 0.75);
        assert_eq!(size_scale(40, 30), 30.0 / 160.0);
        assert!(size_scale(1, 1) > 0.0);
    }

    #[test]
    fn sobel_finds_horizontal_ramp() {
        let mut p = Plane::new(10, 10, 0.0);
        for y in 0..10 {
            for x in 0..10 {
                p.data[y * 10 + x] = x as f32;
            }
        }
        let (gx, gy) = sobel(&p);
        assert!((gx.get(5, 5) - 1.0).abs() < 1e-5);
        assert!(gy.get(5, 5).abs() < 1e-5);
    }
}
