//! Face-chip alignment as `dlib.get_face_chip(img, shape, size, padding)` does it
//! (FORMAT.md section 8).

use image::{Rgb, RgbImage};

use crate::geometry::{similarity_transform, DRect};

/// dlib's template of the 5 landmarks in a unit square (same order as the model).
const TEMPLATE_5: [(f64, f64); 5] = [
    (0.8595674595992, 0.2134981538014),
    (0.6460604764104, 0.2289674387677),
    (0.1205750620789, 0.2137274526848),
    (0.3340850613712, 0.2290642403242),
    (0.4901123135679, 0.6277975316475),
];

/// Where a chip comes from in the image: a rotated rectangle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChipDetails {
    pub rect: DRect,
    pub angle: f64,
    pub size: usize,
}

/// The chip rectangle and angle for 5 landmarks (`get_face_chip_details`).
pub fn chip_details(landmarks: &[(i64, i64)], size: usize, padding: f64) -> ChipDetails {
    let s = size as f64;
    let chip_points: Vec<(f64, f64)> = TEMPLATE_5
        .iter()
        .map(|&(x, y)| {
            (
                (padding + x) / (2.0 * padding + 1.0) * s,
                (padding + y) / (2.0 * padding + 1.0) * s,
            )
        })
        .collect();
    let image_points: Vec<(f64, f64)> = landmarks
        .iter()
        .map(|&(x, y)| (x as f64, y as f64))
        .collect();
    let transform = similarity_transform(&chip_points, &image_points);
    let (ux, uy) = (transform.m[0][0], transform.m[1][0]);
    let angle = uy.atan2(ux);
    let scale = ux.hypot(uy);
    let (cx, cy) = transform.apply((s / 2.0, s / 2.0));
    ChipDetails {
        rect: DRect::centered(cx, cy, s * scale, s * scale),
        angle,
        size,
    }
}

fn rotate_about(center: (f64, f64), p: (f64, f64), angle: f64) -> (f64, f64) {
    let (c, s) = (angle.cos(), angle.sin());
    let (x, y) = (p.0 - center.0, p.1 - center.1);
    (c * x - s * y + center.0, s * x + c * y + center.1)
}

/// `pyramid_down<2>` on RGB: 5x5 `[1 4 6 4 1]` filter, integer arithmetic.
fn pyramid_down2(img: &RgbImage) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w <= 8 || h <= 8 {
        return RgbImage::new(0, 0);
    }
    let (ow, oh) = ((w - 3) / 2, (h - 3) / 2);
    const K: [u32; 5] = [1, 4, 6, 4, 1];
    // Horizontal pass, keeping integer sums.
    let mut tmp = vec![[0u32; 3]; h * ow];
    for y in 0..h {
        for x in 0..ow {
            let mut acc = [0u32; 3];
            for (j, k) in K.iter().enumerate() {
                let p = img.get_pixel((2 * x + j) as u32, y as u32);
                for c in 0..3 {
                    acc[c] += k * u32::from(p[c]);
                }
            }
            tmp[y * ow + x] = acc;
        }
    }
    RgbImage::from_fn(ow as u32, oh as u32, |x, y| {
        let mut acc = [0u32; 3];
        for (i, k) in K.iter().enumerate() {
            let row = &tmp[(2 * y as usize + i) * ow + x as usize];
            for c in 0..3 {
                acc[c] += k * row[c];
            }
        }
        Rgb([
            (acc[0] / 256) as u8,
            (acc[1] / 256) as u8,
            (acc[2] / 256) as u8,
        ])
    })
}

/// Extracts one chip exactly as dlib's single-face `extract_image_chips`.
pub fn extract_chip(img: &RgbImage, details: &ChipDetails) -> RgbImage {
    let size = details.size;
    let n = (size * size) as f64;
    let rect = details.rect;
    // How many 2x pyramid levels the chip needs, and how much margin they need.
    let mut probe = rect.down2();
    let mut depth = 0;
    let mut grow = 2.0;
    while probe.area() > n {
        probe = probe.down2();
        depth += 1;
        grow = grow * 2.0 + 2.0;
    }
    let center = rect.center();
    let corners = [
        (rect.left, rect.top),
        (rect.right, rect.top),
        (rect.left, rect.bottom),
        (rect.right, rect.bottom),
    ]
    .map(|p| rotate_about(center, p, details.angle));
    let min_x = corners.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let max_x = corners
        .iter()
        .map(|p| p.0)
        .fold(f64::NEG_INFINITY, f64::max);
    let min_y = corners.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let max_y = corners
        .iter()
        .map(|p| p.1)
        .fold(f64::NEG_INFINITY, f64::max);
    let (w, h) = (f64::from(img.width()), f64::from(img.height()));
    let bounds = DRect {
        left: (min_x - grow).max(0.0),
        top: (min_y - grow).max(0.0),
        right: (max_x + grow).min(w - 1.0),
        bottom: (max_y + grow).min(h - 1.0),
    }
    .round();
    let mut out = RgbImage::new(size as u32, size as u32);
    if bounds.area() <= 0 {
        return out;
    }
    let crop = image::imageops::crop_imm(
        img,
        bounds.left as u32,
        bounds.top as u32,
        bounds.width() as u32,
        bounds.height() as u32,
    )
    .to_image();
    let mut levels = Vec::with_capacity(depth);
    for _ in 0..depth {
        let next = pyramid_down2(levels.last().unwrap_or(&crop));
        levels.push(next);
    }
    let mut local = DRect {
        left: rect.left - bounds.left as f64,
        top: rect.top - bounds.top as f64,
        right: rect.right - bounds.left as f64,
        bottom: rect.bottom - bounds.top as f64,
    };
    let mut level: Option<usize> = None;
    while local.down2().area() > n {
        level = Some(level.map_or(0, |l| l + 1));
        local = local.down2();
    }
    let source = match level {
        None => &crop,
        Some(l) => match levels.get(l) {
            Some(img) => img,
            None => return out,
        },
    };
    sample_rotated(source, &local, details.angle, &mut out);
    out
}

/// Bilinear sampling of the rotated rectangle into `out`; pixels whose 2x2
/// neighbourhood leaves the source stay black. Values are truncated like dlib.
fn sample_rotated(source: &RgbImage, rect: &DRect, angle: f64, out: &mut RgbImage) {
    let center = rect.center();
    let tl = rotate_about(center, (rect.left, rect.top), angle);
    let tr = rotate_about(center, (rect.right, rect.top), angle);
    let bl = rotate_about(center, (rect.left, rect.bottom), angle);
    let s = f64::from(out.width().max(2) - 1);
    let a = [
        [(tr.0 - tl.0) / s, (bl.0 - tl.0) / s],
        [(tr.1 - tl.1) / s, (bl.1 - tl.1) / s],
    ];
    let (sw, sh) = (i64::from(source.width()), i64::from(source.height()));
    for (c, r, pixel) in out.enumerate_pixels_mut() {
        let (cf, rf) = (f64::from(c), f64::from(r));
        let px = a[0][0] * cf + a[0][1] * rf + tl.0;
        let py = a[1][0] * cf + a[1][1] * rf + tl.1;
        let (left, top) = (px.floor(), py.floor());
        let (l, t) = (left as i64, top as i64);
        if l < 0 || t < 0 || l + 1 >= sw || t + 1 >= sh {
            continue;
        }
        let (lr, tb) = (px - left, py - top);
        let at = |x: i64, y: i64| source.get_pixel(x as u32, y as u32);
        let (p_tl, p_tr, p_bl, p_br) = (at(l, t), at(l + 1, t), at(l, t + 1), at(l + 1, t + 1));
        for ch in 0..3 {
            let top_row = (1.0 - lr) * f64::from(p_tl[ch]) + lr * f64::from(p_tr[ch]);
            let bottom_row = (1.0 - lr) * f64::from(p_bl[ch]) + lr * f64::from(p_br[ch]);
            pixel[ch] = ((1.0 - tb) * top_row + tb * bottom_row) as u8;
        }
    }
}
