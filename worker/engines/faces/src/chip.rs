//! Face-chip alignment as `dlib.get_face_chip(img, shape, size, padding)` does it
//! (FORMAT.md section 8).

use candle_core::Tensor;
use image::{Rgb, RgbImage};

use crate::error::{Result, TensorContext};

use crate::geometry::{similarity_transform, DRect, Rect};

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

/// Where a chip's pixels come from, decided once for both executors (the 8-bit one that
/// matches dlib and the differentiable one in `identity::energy`): the image crop that
/// covers the rotated rectangle, how many `pyramid_down<2>` levels to build from it, which level
/// to sample, and the rectangle in that level's coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChipPlan {
    /// The crop of the original image (inclusive corners, inside the image).
    pub bounds: Rect,
    /// How many pyramid levels to build from the crop.
    pub depth: usize,
    /// The level sampled: `None` is the crop itself, `Some(l)` the `l+1`-th halving.
    pub level: Option<usize>,
    /// The chip rectangle in the sampled level's pixels.
    pub local: DRect,
    pub angle: f64,
    pub size: usize,
}

/// Plans a chip as dlib's single-face `extract_image_chips`; `None` when the rectangle does not
/// overlap the image (the chip is then black).
pub fn plan_chip(width: u32, height: u32, details: &ChipDetails) -> Option<ChipPlan> {
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
    let (w, h) = (f64::from(width), f64::from(height));
    let bounds = DRect {
        left: (min_x - grow).max(0.0),
        top: (min_y - grow).max(0.0),
        right: (max_x + grow).min(w - 1.0),
        bottom: (max_y + grow).min(h - 1.0),
    }
    .round();
    if bounds.area() <= 0 {
        return None;
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
    Some(ChipPlan {
        bounds,
        depth,
        level,
        local,
        angle: details.angle,
        size,
    })
}

/// The `(width, height)` `pyramid_down<2>` gives an image of `width x height` pixels (`(0, 0)` for
/// images too small to halve).
pub fn pyramid_down2_side(width: usize, height: usize) -> (usize, usize) {
    if width <= 8 || height <= 8 {
        return (0, 0);
    }
    ((width - 3) / 2, (height - 3) / 2)
}

/// dlib's 5-tap pyramid filter `[1 4 6 4 1] / 16`, applied along rows then columns.
pub const PYRAMID_TAPS: [f32; 5] = [1.0, 4.0, 6.0, 4.0, 1.0];

/// One output pixel's bilinear source: the top-left source pixel and the fractional offsets;
/// `None` when its 2x2 neighbourhood leaves the source (the pixel stays black).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BilinearTap {
    pub left: usize,
    pub top: usize,
    pub right_weight: f64,
    pub bottom_weight: f64,
}

/// For every chip pixel in row-major order, where it samples the rotated rectangle `rect` of a
/// source of `source_width x source_height` pixels.
pub fn bilinear_taps(
    source_width: usize,
    source_height: usize,
    rect: &DRect,
    angle: f64,
    size: usize,
) -> Vec<Option<BilinearTap>> {
    let center = rect.center();
    let tl = rotate_about(center, (rect.left, rect.top), angle);
    let tr = rotate_about(center, (rect.right, rect.top), angle);
    let bl = rotate_about(center, (rect.left, rect.bottom), angle);
    let s = (size.max(2) - 1) as f64;
    let a = [
        [(tr.0 - tl.0) / s, (bl.0 - tl.0) / s],
        [(tr.1 - tl.1) / s, (bl.1 - tl.1) / s],
    ];
    let (sw, sh) = (source_width as i64, source_height as i64);
    let mut taps = Vec::with_capacity(size * size);
    for r in 0..size {
        for c in 0..size {
            let (cf, rf) = (c as f64, r as f64);
            let px = a[0][0] * cf + a[0][1] * rf + tl.0;
            let py = a[1][0] * cf + a[1][1] * rf + tl.1;
            let (left, top) = (px.floor(), py.floor());
            let (l, t) = (left as i64, top as i64);
            if l < 0 || t < 0 || l + 1 >= sw || t + 1 >= sh {
                taps.push(None);
                continue;
            }
            taps.push(Some(BilinearTap {
                left: l as usize,
                top: t as usize,
                right_weight: px - left,
                bottom_weight: py - top,
            }));
        }
    }
    taps
}

/// Extracts one chip exactly as dlib's single-face `extract_image_chips`.
pub fn extract_chip(img: &RgbImage, details: &ChipDetails) -> RgbImage {
    let size = details.size;
    let mut out = RgbImage::new(size as u32, size as u32);
    let Some(plan) = plan_chip(img.width(), img.height(), details) else {
        return out;
    };
    let bounds = plan.bounds;
    let crop = image::imageops::crop_imm(
        img,
        bounds.left as u32,
        bounds.top as u32,
        bounds.width() as u32,
        bounds.height() as u32,
    )
    .to_image();
    let mut levels = Vec::with_capacity(plan.depth);
    for _ in 0..plan.depth {
        let next = pyramid_down2(levels.last().unwrap_or(&crop));
        levels.push(next);
    }
    let source = match plan.level {
        None => &crop,
        Some(l) => match levels.get(l) {
            Some(img) => img,
            None => return out,
        },
    };
    sample_rotated(source, &plan, &mut out);
    out
}

/// Bilinear sampling of the rotated rectangle into `out`; pixels whose 2x2
/// neighbourhood leaves the source stay black. Values are truncated like dlib.
fn sample_rotated(source: &RgbImage, plan: &ChipPlan, out: &mut RgbImage) {
    let (sw, sh) = (source.width() as usize, source.height() as usize);
    let taps = bilinear_taps(sw, sh, &plan.local, plan.angle, plan.size);
    for (pixel, tap) in out.pixels_mut().zip(taps) {
        let Some(tap) = tap else { continue };
        let (l, t) = (tap.left as u32, tap.top as u32);
        let (lr, tb) = (tap.right_weight, tap.bottom_weight);
        let at = |x: u32, y: u32| source.get_pixel(x, y);
        let (p_tl, p_tr, p_bl, p_br) = (at(l, t), at(l + 1, t), at(l, t + 1), at(l + 1, t + 1));
        for ch in 0..3 {
            let top_row = (1.0 - lr) * f64::from(p_tl[ch]) + lr * f64::from(p_tr[ch]);
            let bottom_row = (1.0 - lr) * f64::from(p_bl[ch]) + lr * f64::from(p_br[ch]);
            pixel[ch] = ((1.0 - tb) * top_row + tb * bottom_row) as u8;
        }
    }
}

/// The differentiable twin of [`extract_chip`]: the same plan, the same 5-tap pyramid (as a
/// stride-2 convolution, without dlib's integer truncation) and the same bilinear taps, as candle
/// ops whose gradient flows back to `image`. `image` is `(1, 3, H, W)` in pixel units (0..255),
/// any float dtype; the result is `(1, 3, size, size)` in the same units and dtype. The geometry
/// (plan, taps) is constant: only pixel values carry gradient.
pub fn extract_chip_tensor(image: &Tensor, details: &ChipDetails) -> Result<Tensor> {
    let (_, channels, height, width) = image.dims4().ctx("chip source")?;
    let size = details.size;
    let (device, dtype) = (image.device(), image.dtype());
    let Some(plan) = plan_chip(width as u32, height as u32, details) else {
        return Tensor::zeros((1, channels, size, size), dtype, device).ctx("black chip");
    };
    let b = plan.bounds;
    let mut source = image
        .narrow(2, b.top as usize, b.height() as usize)
        .and_then(|t| t.narrow(3, b.left as usize, b.width() as usize))
        .ctx("chip crop")?;
    let levels = plan.level.map_or(0, |l| l + 1);
    for _ in 0..levels {
        let (_, _, h, w) = source.dims4().ctx("pyramid level")?;
        if pyramid_down2_side(w, h) == (0, 0) {
            return Tensor::zeros((1, channels, size, size), dtype, device).ctx("black chip");
        }
        source = pyramid_down2_tensor(&source)?;
    }
    sample_rotated_tensor(&source, &plan)
}

/// `pyramid_down<2>` as two 1-D convolutions over every channel, each keeping every second
/// output (dlib filters at even positions only).
fn pyramid_down2_tensor(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4().ctx("pyramid input")?;
    let taps: Vec<f32> = PYRAMID_TAPS.iter().map(|t| t / 16.0).collect();
    let horizontal = Tensor::from_slice(&taps, (1, 1, 1, 5), x.device())
        .and_then(|k| k.to_dtype(x.dtype()))
        .ctx("pyramid taps")?;
    let vertical = horizontal.reshape((1, 1, 5, 1)).ctx("pyramid taps")?;
    let (ow, oh) = pyramid_down2_side(w, h);
    // Channels become batch rows so one single-channel kernel filters them all (candle's conv
    // backward has no groups).
    x.reshape((n * c, 1, h, w))
        .and_then(|t| keep_even(&t.conv2d(&horizontal, 0, 1, 1, 1)?, 3, ow))
        .and_then(|t| keep_even(&t.conv2d(&vertical, 0, 1, 1, 1)?, 2, oh))
        .and_then(|t| t.reshape((n, c, oh, ow)))
        .ctx("pyramid_down2")
}

/// Positions `0, 2, 4, ...` of dimension `dim` (2 or 3 of a 4-D tensor), `count` of them.
fn keep_even(t: &Tensor, dim: usize, count: usize) -> candle_core::Result<Tensor> {
    let len = t.dim(dim)?;
    let padded = t.pad_with_zeros(dim, 0, (2 * count).saturating_sub(len))?;
    let padded = padded.narrow(dim, 0, 2 * count)?;
    let mut shape = padded.dims().to_vec();
    shape[dim] = count;
    shape.insert(dim + 1, 2);
    padded
        .reshape(shape)?
        .narrow(dim + 1, 0, 1)?
        .squeeze(dim + 1)
}

/// Bilinear sampling with constant taps: four gathers from the flattened source, weighted.
fn sample_rotated_tensor(source: &Tensor, plan: &ChipPlan) -> Result<Tensor> {
    let (_, channels, sh, sw) = source.dims4().ctx("chip source")?;
    let taps = bilinear_taps(sw, sh, &plan.local, plan.angle, plan.size);
    let pixels = taps.len();
    let mut index = vec![vec![0u32; pixels]; 4];
    let mut weight = vec![vec![0f32; pixels]; 4];
    for (i, tap) in taps.iter().enumerate() {
        let Some(tap) = tap else { continue };
        let at = |x: usize, y: usize| (y * sw + x) as u32;
        let (l, t) = (tap.left, tap.top);
        let (lr, tb) = (tap.right_weight, tap.bottom_weight);
        let corners = [
            (at(l, t), (1.0 - lr) * (1.0 - tb)),
            (at(l + 1, t), lr * (1.0 - tb)),
            (at(l, t + 1), (1.0 - lr) * tb),
            (at(l + 1, t + 1), lr * tb),
        ];
        for (k, (idx, w)) in corners.into_iter().enumerate() {
            index[k][i] = idx;
            weight[k][i] = w as f32;
        }
    }
    let device = source.device();
    let flat = source
        .reshape((channels, sh * sw))
        .ctx("chip source rows")?;
    let mut out: Option<Tensor> = None;
    for k in 0..4 {
        let idx = Tensor::from_slice(&index[k], pixels, device).ctx("chip taps")?;
        let w = Tensor::from_slice(&weight[k], (1, pixels), device)
            .and_then(|t| t.to_dtype(source.dtype()))
            .ctx("chip weights")?;
        let term = flat
            .index_select(&idx, 1)
            .and_then(|g| g.broadcast_mul(&w))
            .ctx("chip gather")?;
        out = Some(match out {
            None => term,
            Some(acc) => (acc + term).ctx("chip sum")?,
        });
    }
    // Four taps are always summed, so `out` is set; the fallback only satisfies the type.
    let out = match out {
        Some(out) => out,
        None => Tensor::zeros((channels, pixels), source.dtype(), device).ctx("chip")?,
    };
    out.reshape((1, channels, plan.size, plan.size))
        .ctx("chip shape")
}
