//! Style fingerprints: a fixed-length vector describing how a photo looks (not what it shows).
//!
//! Layout (DIM = 105 values):
//! - 64: joint Lab histogram, 4x4x4 bins (L 0..100, a and b -64..64, clamped);
//! - 20: dominant palette, 5 colours sorted by lightness, each (L/100, a/128, b/128, weight);
//! - 5: tone: mean L, contrast (std L), key (share of pixels with L > 50), 5th and 95th percentiles;
//! - 6: saturation: mean and std of chroma, 4-bin chroma histogram;
//! - 10: texture: edge density, mean gradient, 8-bin gradient orientation histogram (mod π).
//!
//! Normalisation makes cosine similarity meaningful: histograms are square-rooted (Hellinger,
//! so the dot product tracks the Bhattacharyya coefficient) and centred on their block mean;
//! scalars are centred on typical photo values and scaled to about ±1; every block is scaled to
//! a fixed L2 norm (its share of the similarity) and the whole vector to unit length, so cosine
//! similarity is the dot product and independent vectors score near 0, not near 1.

use image::DynamicImage;
use serde::{Deserialize, Serialize};

use crate::colour::rgbf_to_lab;
use crate::error::{PaintError, Result};
use crate::palette::Palette;
use crate::raster::{blur, sobel, ColourImage, Plane};

/// Bump when the layout or normalisation changes: cache keys include it.
pub const VERSION: u32 = 1;
/// Number of values in a fingerprint.
pub const DIM: usize = 105;

const ANALYSIS_PIXELS: u64 = 65_536;
/// Relative weight of each block in the final vector (colour, palette, tone, saturation, texture).
const BLOCK_WEIGHTS: [f32; 5] = [1.0, 0.6, 0.8, 0.6, 0.8];

/// A style fingerprint (unit length).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub version: u32,
    pub values: Vec<f32>,
}

/// A match from [`nearest`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Neighbour {
    /// Index into the candidate slice.
    pub index: usize,
    /// Cosine similarity in [-1, 1].
    pub similarity: f32,
}

impl Fingerprint {
    /// Computes the fingerprint of a photo (deterministic; palette seed fixed at 0).
    pub fn compute(image: &DynamicImage) -> Result<Fingerprint> {
        crate::raster::check_size(image.width(), image.height(), "fingerprint source")?;
        let small = analysis_copy(image)?;
        let lab: Vec<[f32; 3]> = small.data.iter().map(|&c| rgbf_to_lab(c)).collect();
        let palette = Palette::extract(image, 5, 0)?;
        let blocks = [
            colour_histogram(&lab),
            palette_block(&palette),
            tone_block(&lab),
            saturation_block(&lab),
            texture_block(&small),
        ];
        let mut values = Vec::with_capacity(DIM);
        for (block, weight) in blocks.iter().zip(BLOCK_WEIGHTS) {
            values.extend(scaled(block, weight));
        }
        normalise(&mut values);
        Ok(Fingerprint {
            version: VERSION,
            values,
        })
    }

    /// Cosine similarity (both are unit length, so the dot product).
    pub fn similarity(&self, other: &Fingerprint) -> f32 {
        let dot: f32 = self
            .values
            .iter()
            .zip(&other.values)
            .map(|(a, b)| a * b)
            .sum();
        let na: f32 = self.values.iter().map(|v| v * v).sum::<f32>().sqrt();
        let nb: f32 = other.values.iter().map(|v| v * v).sum::<f32>().sqrt();
        if na < 1e-12 || nb < 1e-12 {
            0.0
        } else {
            dot / (na * nb)
        }
    }

    /// Redis cache key for a photo's fingerprint: includes VERSION so a layout change never
    /// reads stale vectors.
    pub fn cache_key(content_hash: &str) -> String {
        format!("style-fp:v{VERSION}:{content_hash}")
    }

    /// Compact little-endian encoding: version (u32) then DIM f32 values.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 4 * self.values.len());
        out.extend_from_slice(&self.version.to_le_bytes());
        for v in &self.values {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Decodes [`Fingerprint::to_bytes`]; rejects other versions and lengths.
    pub fn from_bytes(bytes: &[u8]) -> Result<Fingerprint> {
        if bytes.len() != 4 + 4 * DIM {
            return Err(PaintError::BadFingerprint(format!(
                "expected {} bytes, got {}",
                4 + 4 * DIM,
                bytes.len()
            )));
        }
        let word = |i: usize| [bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]];
        let version = u32::from_le_bytes(word(0));
        if version != VERSION {
            return Err(PaintError::BadFingerprint(format!(
                "version {version}, this build reads {VERSION}"
            )));
        }
        let values = (0..DIM)
            .map(|k| f32::from_le_bytes(word(4 + 4 * k)))
            .collect();
        Ok(Fingerprint { version, values })
    }
}

/// The `k` candidates most similar to `query`, best first (ties broken by index). Candidates
/// of another version or length are skipped.
pub fn nearest(query: &Fingerprint, candidates: &[Fingerprint], k: usize) -> Vec<Neighbour> {
    let mut scored: Vec<Neighbour> = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.version == query.version && c.values.len() == query.values.len())
        .map(|(index, c)| Neighbour {
            index,
            similarity: query.similarity(c),
        })
        .collect();
    scored.sort_by(|a, b| {
        b.similarity
            .total_cmp(&a.similarity)
            .then(a.index.cmp(&b.index))
    });
    scored.truncate(k);
    scored
}

fn analysis_copy(image: &DynamicImage) -> Result<ColourImage> {
    let (w, h) = (image.width(), image.height());
    let pixels = w as u64 * h as u64;
    if pixels <= ANALYSIS_PIXELS {
        return ColourImage::from_dynamic(image, "fingerprint source");
    }
    let factor = (ANALYSIS_PIXELS as f64 / pixels as f64).sqrt();
    let nw = ((w as f64 * factor).round() as u32).max(1);
    let nh = ((h as f64 * factor).round() as u32).max(1);
    ColourImage::from_dynamic(
        &image.resize_exact(nw, nh, image::imageops::FilterType::Triangle),
        "fingerprint source",
    )
}

fn bin(value: f32, lo: f32, hi: f32, bins: usize) -> usize {
    (((value - lo) / (hi - lo)) * bins as f32).clamp(0.0, bins as f32 - 1.0) as usize
}

fn hellinger_centred(hist: &[f32]) -> Vec<f32> {
    let total: f32 = hist.iter().sum::<f32>().max(1e-9);
    let roots: Vec<f32> = hist.iter().map(|h| (h / total).sqrt()).collect();
    let mean = roots.iter().sum::<f32>() / roots.len() as f32;
    roots.iter().map(|r| r - mean).collect()
}

fn colour_histogram(lab: &[[f32; 3]]) -> Vec<f32> {
    let mut hist = vec![0.0f32; 64];
    for c in lab {
        let l = bin(c[0], 0.0, 100.0, 4);
        let a = bin(c[1], -64.0, 64.0, 4);
        let b = bin(c[2], -64.0, 64.0, 4);
        hist[l * 16 + a * 4 + b] += 1.0;
    }
    hellinger_centred(&hist)
}

fn palette_block(palette: &Palette) -> Vec<f32> {
    let mut colours = palette.colours.clone();
    colours.sort_by(|a, b| a.lab[0].total_cmp(&b.lab[0]));
    let mut out = Vec::with_capacity(20);
    for i in 0..5 {
        // Pad short palettes by repeating the lightest colour so positions stay comparable.
        match colours.get(i).or(colours.last()) {
            Some(c) => out.extend([
                (c.lab[0] - 50.0) / 50.0,
                c.lab[1] / 64.0,
                c.lab[2] / 64.0,
                (c.weight - 0.2) * 4.0,
            ]),
            None => out.extend([0.0; 4]),
        }
    }
    out
}

fn tone_block(lab: &[[f32; 3]]) -> Vec<f32> {
    let n = lab.len().max(1) as f32;
    let mean = lab.iter().map(|c| c[0]).sum::<f32>() / n;
    let std = (lab.iter().map(|c| (c[0] - mean).powi(2)).sum::<f32>() / n).sqrt();
    let key = lab.iter().filter(|c| c[0] > 50.0).count() as f32 / n;
    let mut ls: Vec<f32> = lab.iter().map(|c| c[0]).collect();
    ls.sort_by(f32::total_cmp);
    let pct = |q: f32| {
        ls.get(((ls.len().max(1) - 1) as f32 * q) as usize)
            .copied()
            .unwrap_or(50.0)
    };
    vec![
        (mean - 50.0) / 25.0,
        (std - 20.0) / 12.0,
        (key - 0.5) * 2.0,
        (pct(0.05) - 15.0) / 15.0,
        (pct(0.95) - 85.0) / 15.0,
    ]
}

fn saturation_block(lab: &[[f32; 3]]) -> Vec<f32> {
    let chroma: Vec<f32> = lab
        .iter()
        .map(|c| (c[1] * c[1] + c[2] * c[2]).sqrt())
        .collect();
    let n = chroma.len().max(1) as f32;
    let mean = chroma.iter().sum::<f32>() / n;
    let std = (chroma.iter().map(|c| (c - mean).powi(2)).sum::<f32>() / n).sqrt();
    let mut hist = vec![0.0f32; 4];
    for c in &chroma {
        hist[bin(*c, 0.0, 80.0, 4)] += 1.0;
    }
    let mut out = vec![(mean - 20.0) / 15.0, (std - 12.0) / 10.0];
    out.extend(hellinger_centred(&hist));
    out
}

fn texture_block(image: &ColourImage) -> Vec<f32> {
    let luma = blur(&image.luma(), 0.8);
    let (gx, gy) = sobel(&luma);
    let magnitude: Plane = Plane {
        width: luma.width,
        height: luma.height,
        data: gx
            .data
            .iter()
            .zip(&gy.data)
            .map(|(a, b)| (a * a + b * b).sqrt())
            .collect(),
    };
    let n = magnitude.data.len().max(1) as f32;
    const EDGE: f32 = 0.04;
    let density = magnitude.data.iter().filter(|&&m| m > EDGE).count() as f32 / n;
    let mean = magnitude.data.iter().sum::<f32>() / n;
    let mut orientation = vec![1e-6f32; 8];
    for i in 0..magnitude.data.len() {
        if magnitude.data[i] > EDGE {
            let angle = gy.data[i]
                .atan2(gx.data[i])
                .rem_euclid(std::f32::consts::PI);
            orientation[bin(angle, 0.0, std::f32::consts::PI, 8)] += magnitude.data[i];
        }
    }
    let mut out = vec![(density - 0.2) * 4.0, (mean - 0.03) * 25.0];
    out.extend(hellinger_centred(&orientation));
    out
}

fn scaled(block: &[f32], weight: f32) -> Vec<f32> {
    let norm = block.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm < 1e-9 {
        return vec![0.0; block.len()];
    }
    block.iter().map(|v| v / norm * weight).collect()
}

fn normalise(values: &mut [f32]) {
    let norm = values.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 1e-9 {
        for v in values.iter_mut() {
            *v /= norm;
        }
    }
}
