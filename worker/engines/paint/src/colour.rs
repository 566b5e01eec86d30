//! sRGB <-> CIELAB (D65) conversions. Palettes and fingerprints work in Lab because Euclidean
//! distance there roughly follows perceived colour difference (CIE76 ΔE).

use std::sync::OnceLock;

const WHITE_X: f32 = 0.950_47;
const WHITE_Y: f32 = 1.0;
const WHITE_Z: f32 = 1.088_83;

/// sRGB component in [0,1] to linear light.
pub fn srgb_to_linear(c: f32) -> f32 {
    if c <= 0.040_45 {
        c / 12.92
    } else {
        ((c + 0.055) / 1.055).powf(2.4)
    }
}

/// Linear light to sRGB component in [0,1].
pub fn linear_to_srgb(c: f32) -> f32 {
    let c = c.clamp(0.0, 1.0);
    if c <= 0.003_130_8 {
        c * 12.92
    } else {
        1.055 * c.powf(1.0 / 2.4) - 0.055
    }
}

fn linear_lut() -> &'static [f32; 256] {
    static LUT: OnceLock<[f32; 256]> = OnceLock::new();
    LUT.get_or_init(|| {
        let mut lut = [0.0; 256];
        for (i, v) in lut.iter_mut().enumerate() {
            *v = srgb_to_linear(i as f32 / 255.0);
        }
        lut
    })
}

fn lab_f(t: f32) -> f32 {
    const DELTA3: f32 = 216.0 / 24389.0;
    if t > DELTA3 {
        t.cbrt()
    } else {
        (24389.0 / 27.0 * t + 16.0) / 116.0
    }
}

fn lab_f_inv(t: f32) -> f32 {
    const DELTA: f32 = 6.0 / 29.0;
    if t > DELTA {
        t * t * t
    } else {
        3.0 * DELTA * DELTA * (t - 4.0 / 29.0)
    }
}

fn linear_rgb_to_lab(r: f32, g: f32, b: f32) -> [f32; 3] {
    let x = 0.412_456_4 * r + 0.357_576_1 * g + 0.180_437_5 * b;
    let y = 0.212_672_9 * r + 0.715_152_2 * g + 0.072_175 * b;
    let z = 0.019_333_9 * r + 0.119_192 * g + 0.950_304_1 * b;
    let fx = lab_f(x / WHITE_X);
    let fy = lab_f(y / WHITE_Y);
    let fz = lab_f(z / WHITE_Z);
    [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

/// 8-bit sRGB to Lab (L in 0..100, a/b roughly -128..128).
pub fn rgb8_to_lab(rgb: [u8; 3]) -> [f32; 3] {
    let lut = linear_lut();
    linear_rgb_to_lab(
        lut[rgb[0] as usize],
        lut[rgb[1] as usize],
        lut[rgb[2] as usize],
    )
}

/// sRGB in [0,1] to Lab.
pub fn rgbf_to_lab(rgb: [f32; 3]) -> [f32; 3] {
    linear_rgb_to_lab(
        srgb_to_linear(rgb[0].clamp(0.0, 1.0)),
        srgb_to_linear(rgb[1].clamp(0.0, 1.0)),
        srgb_to_linear(rgb[2].clamp(0.0, 1.0)),
    )
}

/// Lab to sRGB in [0,1] (clamped into gamut).
pub fn lab_to_rgbf(lab: [f32; 3]) -> [f32; 3] {
    let fy = (lab[0] + 16.0) / 116.0;
    let fx = fy + lab[1] / 500.0;
    let fz = fy - lab[2] / 200.0;
    let x = WHITE_X * lab_f_inv(fx);
    let y = WHITE_Y * lab_f_inv(fy);
    let z = WHITE_Z * lab_f_inv(fz);
    let r = 3.240_454_2 * x - 1.537_138_5 * y - 0.498_531_4 * z;
    let g = -0.969_266 * x + 1.876_010_8 * y + 0.041_556 * z;
    let b = 0.055_643_4 * x - 0.204_025_9 * y + 1.057_225_2 * z;
    [linear_to_srgb(r), linear_to_srgb(g), linear_to_srgb(b)]
}

/// Lab to 8-bit sRGB.
pub fn lab_to_rgb8(lab: [f32; 3]) -> [u8; 3] {
    let c = lab_to_rgbf(lab);
    [to_u8(c[0]), to_u8(c[1]), to_u8(c[2])]
}

/// [0,1] float to a rounded byte.
pub fn to_u8(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8
}

/// Squared CIE76 distance.
pub fn lab_dist2(a: [f32; 3], b: [f32; 3]) -> f32 {
    let d0 = a[0] - b[0];
    let d1 = a[1] - b[1];
    let d2 = a[2] - b[2];
    d0 * d0 + d1 * d1 + d2 * d2
}

/// Rec. 601 luma of an sRGB colour in [0,1]: cheap and good enough to steer strokes.
pub fn luma(c: [f32; 3]) -> f32 {
    0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
}

/// RGB [0,1] -> HSV (h in [0,1)).
pub fn rgb_to_hsv(c: [f32; 3]) -> [f32; 3] {
    let max = c[0].max(c[1]).max(c[2]);
    let min = c[0].min(c[1]).min(c[2]);
    let d = max - min;
    let h = if d <= 1e-6 {
        0.0
    } else if max == c[0] {
        ((c[1] - c[2]) / d).rem_euclid(6.0) / 6.0
    } else if max == c[1] {
        ((c[2] - c[0]) / d + 2.0) / 6.0
    } else {
        ((c[0] - c[1]) / d + 4.0) / 6.0
    };
    let s = if max <= 1e-6 { 0.0 } else { d / max };
    [h, s, max]
}

/// HSV (h in [0,1)) -> RGB [0,1].
pub fn hsv_to_rgb(hsv: [f32; 3]) -> [f32; 3] {
    let h = hsv[0].rem_euclid(1.0) * 6.0;
    let s = hsv[1].clamp(0.0, 1.0);
    let v = hsv[2].clamp(0.0, 1.0);
    let c = v * s;
    let x = c * (1.0 - ((h % 2.0) - 1.0).abs());
    let m = v - c;
    let (r, g, b) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    [r + m, g + m, b + m]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_round_trip_is_close() {
        for rgb in [[0u8, 0, 0], [255, 255, 255], [200, 30, 90], [12, 180, 240]] {
            let back = lab_to_rgb8(rgb8_to_lab(rgb));
            for i in 0..3 {
                assert!(
                    (back[i] as i32 - rgb[i] as i32).abs() <= 1,
                    "{rgb:?} -> {back:?}"
                );
            }
        }
        let white = rgb8_to_lab([255, 255, 255]);
        assert!((white[0] - 100.0).abs() < 0.1 && white[1].abs() < 0.5 && white[2].abs() < 0.5);
    }

    #[test]
    fn hsv_round_trip() {
        let c = [0.8, 0.3, 0.1];
        let back = hsv_to_rgb(rgb_to_hsv(c));
        for i in 0..3 {
            assert!((back[i] - c[i]).abs() < 1e-4);
        }
    }
}
