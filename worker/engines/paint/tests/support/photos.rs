//! Synthetic photos of every kind, generated from coordinates so that no test depends on (or is
//! tuned to) a fixture file. Every generator is resolution independent: the same scene at any size.
//! Shared by `tests/styles.rs` and `examples/style_check.rs` (included with `#[path]`).

#![allow(dead_code)]

use image::{DynamicImage, GrayImage, Luma, Rgb, RgbImage};

/// Deterministic hash of a lattice point to [0,1).
fn hash(seed: u32, x: i64, y: i64) -> f32 {
    let mut z = (x as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (y as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
        ^ (seed as u64).wrapping_mul(0x1656_67B1_9E37_79F9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 40) as f32 / (1u64 << 24) as f32
}

/// Smooth value noise in [0,1] with lattice period `period` (in the caller's units).
fn noise(seed: u32, x: f32, y: f32, period: f32) -> f32 {
    let (fx, fy) = (x / period, y / period);
    let (x0, y0) = (fx.floor(), fy.floor());
    let s = |t: f32| t * t * (3.0 - 2.0 * t);
    let (tx, ty) = (s(fx - x0), s(fy - y0));
    let (xi, yi) = (x0 as i64, y0 as i64);
    let top = hash(seed, xi, yi) + (hash(seed, xi + 1, yi) - hash(seed, xi, yi)) * tx;
    let bottom =
        hash(seed, xi, yi + 1) + (hash(seed, xi + 1, yi + 1) - hash(seed, xi, yi + 1)) * tx;
    top + (bottom - top) * ty
}

fn mix(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    let t = t.clamp(0.0, 1.0);
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

fn to_rgb(c: [f32; 3]) -> Rgb<u8> {
    Rgb(c.map(|v| v.round().clamp(0.0, 255.0) as u8))
}

/// A colourful landscape in 0..255 sRGB at normalised coordinates (u, v) in [0,1]², with `px`
/// the size of one pixel in those units (for pixel-scale grain).
fn landscape(u: f32, v: f32, x: u32, y: u32) -> [f32; 3] {
    let aspect_u = u * 4.0 / 3.0;
    // Sky: deep blue to pale at the horizon, soft clouds.
    let mut c = mix([55.0, 105.0, 190.0], [200.0, 215.0, 232.0], v / 0.5);
    let cloud = noise(1, aspect_u, v * 2.5, 0.18) * 0.7 + noise(2, aspect_u, v * 2.5, 0.06) * 0.3;
    c = mix(
        c,
        [245.0, 245.0, 250.0],
        (cloud - 0.55) * 3.0 * (1.0 - v / 0.45),
    );
    // Sun with a glow.
    let (du, dv) = (aspect_u - 1.05, v - 0.16);
    let r = (du * du + dv * dv).sqrt();
    c = mix(c, [255.0, 236.0, 180.0], (0.12 - r) / 0.06);
    if r < 0.055 {
        c = [255.0, 248.0, 215.0];
    }
    // Mountains.
    let ridge = 0.42 + 0.1 * noise(3, aspect_u, 0.0, 0.2) - 0.05 * noise(4, aspect_u, 0.0, 0.05);
    if v > ridge {
        let snow = (ridge + 0.03 - v) / 0.02;
        c = mix([105.0, 118.0, 150.0], [235.0, 238.0, 245.0], snow);
    }
    // Green hills with grass texture.
    let hill = 0.58 + 0.05 * (aspect_u * 5.0).sin() + 0.03 * noise(5, aspect_u, 0.0, 0.1);
    if v > hill {
        let shade = noise(6, aspect_u, v, 0.08);
        c = mix([60.0, 125.0, 45.0], [150.0, 175.0, 60.0], shade);
        c = mix(c, [40.0, 80.0, 30.0], (v - hill) * 1.5);
    }
    // Lake with ripples and a reflection of the sky.
    let (lu, lv) = ((aspect_u - 0.4) / 0.38, (v - 0.86) / 0.1);
    if lu * lu + lv * lv < 1.0 {
        let ripple = 0.5 + 0.5 * (v * 260.0 + 3.0 * noise(7, aspect_u, v, 0.05)).sin();
        c = mix(
            [35.0, 80.0, 140.0],
            [120.0, 165.0, 210.0],
            0.3 + 0.5 * ripple,
        );
    }
    // A house: red wall, dark roof, lit windows.
    let (hu0, hu1, hv0, hv1) = (0.78, 1.0, 0.56, 0.7);
    if (hu0..hu1).contains(&aspect_u) && (hv0..hv1).contains(&v) {
        c = [175.0, 62.0, 45.0];
        let wx = ((aspect_u - hu0) / 0.055).fract();
        let wy = ((v - hv0) / 0.07).fract();
        if (0.3..0.7).contains(&wx) && (0.25..0.7).contains(&wy) {
            c = [235.0, 212.0, 120.0];
        }
    }
    let roof = hv0 - (0.07 - ((aspect_u - 0.89).abs()) * 0.6);
    if (hu0 - 0.02..hu1 + 0.02).contains(&aspect_u) && v >= roof && v < hv0 {
        c = [80.0, 40.0, 32.0];
    }
    // A tree: trunk and a leafy canopy.
    let (tu, tv) = ((aspect_u - 0.22) / 0.09, (v - 0.5) / 0.12);
    if (aspect_u - 0.22).abs() < 0.012 && (0.5..0.72).contains(&v) {
        c = [90.0, 60.0, 35.0];
    }
    if tu * tu + tv * tv < 1.0 {
        let leaves = noise(8, aspect_u, v, 0.015);
        c = mix([25.0, 70.0, 30.0], [95.0, 150.0, 55.0], leaves);
    }
    // Sensor grain, one value per pixel.
    let grain = (hash(9, x as i64, y as i64) - 0.5) * 6.0;
    c.map(|v| v + grain)
}

/// A colourful natural-ish photo: sky, clouds, sun, mountains, hills, lake, house, tree.
pub fn colour_photo(w: u32, h: u32) -> DynamicImage {
    let (fw, fh) = (w as f32, h as f32);
    DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
        to_rgb(landscape(
            (x as f32 + 0.5) / fw,
            (y as f32 + 0.5) / fh,
            x,
            y,
        ))
    }))
}

/// The landscape as a high-contrast grayscale photo (an 8-bit gray image, as a scanner or a
/// black-and-white camera gives it).
pub fn grayscale_photo(w: u32, h: u32) -> DynamicImage {
    let (fw, fh) = (w as f32, h as f32);
    DynamicImage::ImageLuma8(GrayImage::from_fn(w, h, |x, y| {
        let c = landscape((x as f32 + 0.5) / fw, (y as f32 + 0.5) / fh, x, y);
        let luma = 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
        // Strong contrast: deep blacks and blown whites, like a hard-printed silver photo.
        Luma([((luma - 128.0) * 1.8 + 128.0).round().clamp(0.0, 255.0) as u8])
    }))
}

/// The landscape printed hard: contrast x3.5 around mid grey, so sky, sun and snow are blown to
/// white and hills, trees and water crushed to black, with little left in between (the kind of
/// photo the outside check found the impressionist style left almost unchanged).
pub fn hard_grayscale_photo(w: u32, h: u32) -> DynamicImage {
    let (fw, fh) = (w as f32, h as f32);
    DynamicImage::ImageLuma8(GrayImage::from_fn(w, h, |x, y| {
        let c = landscape((x as f32 + 0.5) / fw, (y as f32 + 0.5) / fh, x, y);
        let luma = 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
        Luma([((luma - 120.0) * 3.5 + 128.0).round().clamp(0.0, 255.0) as u8])
    }))
}

/// The same landscape, badly underexposed: nothing brighter than about 30 of 255.
pub fn very_dark_photo(w: u32, h: u32) -> DynamicImage {
    let (fw, fh) = (w as f32, h as f32);
    DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
        let c = landscape((x as f32 + 0.5) / fw, (y as f32 + 0.5) / fh, x, y);
        to_rgb(c.map(|v| v * 0.12 + 1.0))
    }))
}

/// A pale wall: one colour with a faint gradient and a little grain (± 3 levels).
pub fn nearly_uniform(w: u32, h: u32) -> DynamicImage {
    let (fw, fh) = (w as f32, h as f32);
    DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
        let shade = 2.0 * (x as f32 / fw + y as f32 / fh - 1.0);
        let grain = (hash(11, x as i64, y as i64) - 0.5) * 4.0;
        to_rgb([196.0, 188.0, 172.0].map(|v| v + shade + grain))
    }))
}

/// Line art: black lines (about 0.6% of the height thick) on pure white — a house, a tree, the sun
/// with rays, hills and a few loose strokes. No gray except anti-aliased line borders.
pub fn line_art(w: u32, h: u32) -> DynamicImage {
    let (fw, fh) = (w as f32, h as f32);
    let unit = fh;
    let half_width = (0.003 * unit).max(0.75);
    // Segments in (u·aspect, v) coordinates scaled by the height.
    let mut segments: Vec<([f32; 2], [f32; 2])> = Vec::new();
    let mut polyline = |points: &[[f32; 2]]| {
        for pair in points.windows(2) {
            segments.push((pair[0], pair[1]));
        }
    };
    let aspect = fw / fh;
    // House.
    polyline(&[
        [0.75, 0.8],
        [0.75, 0.55],
        [1.05, 0.55],
        [1.05, 0.8],
        [0.75, 0.8],
    ]);
    polyline(&[[0.72, 0.56], [0.9, 0.4], [1.08, 0.56]]);
    polyline(&[[0.85, 0.8], [0.85, 0.68], [0.93, 0.68], [0.93, 0.8]]);
    polyline(&[
        [0.79, 0.6],
        [0.83, 0.6],
        [0.83, 0.65],
        [0.79, 0.65],
        [0.79, 0.6],
    ]);
    polyline(&[
        [0.97, 0.6],
        [1.01, 0.6],
        [1.01, 0.65],
        [0.97, 0.65],
        [0.97, 0.6],
    ]);
    // Tree trunk.
    polyline(&[[0.27, 0.82], [0.28, 0.6]]);
    polyline(&[[0.33, 0.82], [0.32, 0.6]]);
    // Sun rays.
    for k in 0..8 {
        let a = k as f32 * std::f32::consts::PI / 4.0;
        let (s, c) = a.sin_cos();
        polyline(&[
            [1.1 + 0.085 * c, 0.18 + 0.085 * s],
            [1.1 + 0.13 * c, 0.18 + 0.13 * s],
        ]);
    }
    // Hills and ground line.
    let hills: Vec<[f32; 2]> = (0..=40)
        .map(|k| {
            let t = k as f32 / 40.0 * aspect;
            [t, 0.5 + 0.05 * (t * 6.0).sin()]
        })
        .collect();
    polyline(&hills);
    polyline(&[[0.0, 0.82], [aspect, 0.82]]);
    // Grass strokes.
    for k in 0..24 {
        let x = 0.05 + k as f32 * aspect / 25.0;
        polyline(&[[x, 0.9], [x + 0.015, 0.86]]);
    }
    // Circles: tree canopy and sun.
    let circles = [([0.3, 0.5], 0.11), ([1.1, 0.18], 0.06)];
    let image = GrayImage::from_fn(w, h, |x, y| {
        let p = [(x as f32 + 0.5) / unit, (y as f32 + 0.5) / unit];
        let mut d = f32::INFINITY;
        for (a, b) in &segments {
            d = d.min(segment_distance(p, *a, *b) * unit);
        }
        for (c, r) in &circles {
            let dist = ((p[0] - c[0]).powi(2) + (p[1] - c[1]).powi(2)).sqrt();
            d = d.min((dist - r).abs() * unit);
        }
        let ink = (half_width + 0.5 - d).clamp(0.0, 1.0);
        Luma([(255.0 * (1.0 - ink)).round() as u8])
    });
    DynamicImage::ImageRgb8(DynamicImage::ImageLuma8(image).to_rgb8())
}

fn segment_distance(p: [f32; 2], a: [f32; 2], b: [f32; 2]) -> f32 {
    let (sx, sy) = (b[0] - a[0], b[1] - a[1]);
    let len2 = sx * sx + sy * sy;
    let t = if len2 > 0.0 {
        (((p[0] - a[0]) * sx + (p[1] - a[1]) * sy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (ex, ey) = (p[0] - a[0] - t * sx, p[1] - a[1] - t * sy);
    (ex * ex + ey * ey).sqrt()
}

/// Every kind of photo the style test covers, at test size: (label, image).
pub fn every_kind() -> Vec<(&'static str, DynamicImage)> {
    vec![
        ("colour photo", colour_photo(400, 300)),
        ("grayscale photo", grayscale_photo(400, 300)),
        ("hard grayscale photo", hard_grayscale_photo(400, 300)),
        ("line art", line_art(400, 300)),
        ("nearly uniform", nearly_uniform(320, 240)),
        ("very dark", very_dark_photo(400, 300)),
        ("small 40x30", colour_photo(40, 30)),
        ("tiny 8x8", colour_photo(8, 8)),
        ("tiny 8x8 line art", line_art(8, 8)),
    ]
}
