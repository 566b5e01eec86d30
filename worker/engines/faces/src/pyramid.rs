//! dlib's image resampling used by the detector: the 2x `pyramid_up` of the input
//! image and the tiled 5/6 image pyramid in the input tensor (FORMAT.md 6.2, 6.3).
//! The arithmetic (f32 4-wide lanes, f64 tails, truncation) follows dlib's
//! `resize_image` exactly so the detector input is bit-identical.

use image::{Rgb, RgbImage};

use crate::geometry::Rect;

/// Size of `pyramid_up` with `pyramid_down<2>`: (2W+2, 2H+1).
pub fn upsampled_size(width: u32, height: u32) -> (u32, u32) {
    (2 * width + 2, 2 * height + 1)
}

/// Column sampling positions as dlib's resize computes them: the first columns in
/// f32 lanes of four, the remaining columns in f64.
struct ColumnPlan {
    /// For the 4-wide part: (left index, f32 fraction).
    lanes: Vec<(usize, f32)>,
    /// For the tail: (left, right, f64 fraction).
    tail: Vec<(usize, usize, f64)>,
}

fn column_plan(src_w: usize, out_w: usize) -> ColumnPlan {
    let xs = if out_w > 1 {
        (src_w as f64 - 1.0) / (out_w as f64 - 1.0)
    } else {
        0.0
    };
    let mut lanes_pos: [f32; 4] = std::array::from_fn(|j| (-4.0 * xs + j as f64 * xs) as f32);
    let step = (4.0 * xs) as f32;
    let mut lanes = Vec::new();
    let mut c = 0;
    while c + 4 <= out_w {
        for lane in lanes_pos.iter_mut() {
            *lane += step;
        }
        let lefts = lanes_pos.map(|v| v.trunc());
        if lefts[3] as usize + 1 >= src_w || lefts[3] < 0.0 {
            break;
        }
        for j in 0..4 {
            lanes.push((lefts[j] as usize, lanes_pos[j] - lefts[j]));
        }
        c += 4;
    }
    let mut tail = Vec::new();
    let mut x = -xs + c as f64 * xs;
    while c < out_w {
        x += xs;
        let left = x.floor().max(0.0) as usize;
        let left = left.min(src_w.saturating_sub(1));
        let right = (left + 1).min(src_w.saturating_sub(1));
        tail.push((left, right, x - left as f64));
        c += 1;
    }
    ColumnPlan { lanes, tail }
}

/// Row sampling: (top, bottom, f64 fraction) with the position accumulated in f64.
fn row_plan(src_h: usize, out_h: usize) -> Vec<(usize, usize, f64)> {
    let ys = if out_h > 1 {
        (src_h as f64 - 1.0) / (out_h as f64 - 1.0)
    } else {
        0.0
    };
    let mut y = -ys;
    (0..out_h)
        .map(|_| {
            y += ys;
            let top = (y.floor().max(0.0) as usize).min(src_h.saturating_sub(1));
            let bottom = (top + 1).min(src_h.saturating_sub(1));
            (top, bottom, y - top as f64)
        })
        .collect()
}

/// dlib's 2x upsampling of an RGB image (bit-exact).
pub fn upsample_2x(img: &RgbImage) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (ow, oh) = upsampled_size(img.width(), img.height());
    let mut out = RgbImage::new(ow, oh);
    if w == 0 || h == 0 {
        return out;
    }
    let cols = column_plan(w, ow as usize);
    let rows = row_plan(h, oh as usize);
    let px = |x: usize, y: usize| img.get_pixel(x as u32, y as u32);
    for (r, &(top, bottom, tb)) in rows.iter().enumerate() {
        let (tbf, itbf) = (tb as f32, (1.0 - tb) as f32);
        for (c, &(left, lr)) in cols.lanes.iter().enumerate() {
            let ilr = 1.0 - lr;
            let (wtl, wtr, wbl, wbr) = (itbf * ilr, itbf * lr, tbf * ilr, tbf * lr);
            let (tl, tr, bl, br) = (
                px(left, top),
                px(left + 1, top),
                px(left, bottom),
                px(left + 1, bottom),
            );
            let value: [u8; 3] = std::array::from_fn(|ch| {
                let v = ((wtl * f32::from(tl[ch]) + wtr * f32::from(tr[ch]))
                    + wbl * f32::from(bl[ch]))
                    + wbr * f32::from(br[ch]);
                v as u8
            });
            out.put_pixel(c as u32, r as u32, Rgb(value));
        }
        let offset = cols.lanes.len();
        for (i, &(left, right, lr)) in cols.tail.iter().enumerate() {
            let (tl, tr, bl, br) = (
                px(left, top),
                px(right, top),
                px(left, bottom),
                px(right, bottom),
            );
            let value: [u8; 3] = std::array::from_fn(|ch| {
                let v = (1.0 - tb) * ((1.0 - lr) * f64::from(tl[ch]) + lr * f64::from(tr[ch]))
                    + tb * ((1.0 - lr) * f64::from(bl[ch]) + lr * f64::from(br[ch]));
                v as u8
            });
            out.put_pixel((offset + i) as u32, r as u32, Rgb(value));
        }
    }
    out
}

/// A float plane view: data with a row stride.
pub struct PlaneRef<'a> {
    pub data: &'a [f32],
    pub stride: usize,
    pub width: usize,
    pub height: usize,
    pub offset: usize,
}

/// dlib's bilinear resize of a float plane (used between pyramid levels); writes
/// into `out` at `out_offset` with row stride `out_stride`.
pub fn resize_plane(
    src: &PlaneRef<'_>,
    out: &mut [f32],
    out_offset: usize,
    out_stride: usize,
    out_w: usize,
    out_h: usize,
) {
    let cols = column_plan(src.width, out_w);
    let rows = row_plan(src.height, out_h);
    let at = |x: usize, y: usize| src.data[src.offset + y * src.stride + x];
    for (r, &(top, bottom, tb)) in rows.iter().enumerate() {
        let (tbf, itbf) = (tb as f32, (1.0 - tb) as f32);
        let row_base = out_offset + r * out_stride;
        for (c, &(left, lr)) in cols.lanes.iter().enumerate() {
            let ilr = 1.0 - lr;
            let v = (((itbf * ilr) * at(left, top) + (itbf * lr) * at(left + 1, top))
                + (tbf * ilr) * at(left, bottom))
                + (tbf * lr) * at(left + 1, bottom);
            out[row_base + c] = v;
        }
        let offset = cols.lanes.len();
        for (i, &(left, right, lr)) in cols.tail.iter().enumerate() {
            let lrf = lr as f32;
            let a = (1.0 - lrf) * at(left, top) + lrf * at(right, top);
            let b = (1.0 - lrf) * at(left, bottom) + lrf * at(right, bottom);
            out[row_base + offset + i] = ((1.0 - tb) * f64::from(a) + tb * f64::from(b)) as f32;
        }
    }
}

/// Sizes (rows, cols) of the 5/6 pyramid levels of `pyramid_down<6>`.
pub fn pyramid_level_sizes(rows: usize, cols: usize) -> Vec<(usize, usize)> {
    let mut sizes = vec![(rows, cols)];
    let (mut nr, mut nc) = (rows, cols);
    loop {
        nr = (5.0 / 6.0 * nr as f64).floor() as usize;
        nc = (5.0 / 6.0 * nc as f64).floor() as usize;
        if nr * nc == 0 || nr < 5 {
            break;
        }
        sizes.push((nr, nc));
    }
    sizes
}

/// The tiled-pyramid layout: level rectangles (inclusive, tensor coordinates) and the
/// tensor size (rows, cols).
pub fn tiled_layout(
    rows: usize,
    cols: usize,
    padding: usize,
    outer: usize,
) -> (Vec<Rect>, (usize, usize)) {
    let sizes = pyramid_level_sizes(rows, cols);
    let (pad, outer_i) = (padding as i64, outer as i64);
    let total_height: i64 = sizes.iter().map(|&(h, _)| h as i64 + pad).sum::<i64>() - 2 * pad;
    let (h0, w0) = (sizes[0].0 as i64, sizes[0].1 as i64);
    let (mut height, mut prev_w) = (0i64, 0i64);
    for &(h, w) in &sizes {
        if w as i64 <= w0 - prev_w - pad && (height - h0) * 2 >= total_height - h0 {
            break;
        }
        height += h as i64 + pad;
        prev_w = w as i64;
    }
    height -= pad;
    let tensor = ((height + 2 * outer_i) as usize, (w0 + 2 * outer_i) as usize);
    let mut rects: Vec<Rect> = Vec::new();
    let (mut y, mut i) = (outer_i, 0);
    while y < height + outer_i && i < sizes.len() {
        let (h, w) = (sizes[i].0 as i64, sizes[i].1 as i64);
        rects.push(Rect {
            left: outer_i,
            top: y,
            right: outer_i + w - 1,
            bottom: y + h - 1,
        });
        y += h + pad;
        i += 1;
    }
    y -= pad;
    while i < sizes.len() {
        let (h, w) = (sizes[i].0 as i64, sizes[i].1 as i64);
        let right = outer_i + w0 - 1;
        let bottom = y - 1;
        let rect = Rect {
            left: right - (w - 1),
            top: bottom - (h - 1),
            right,
            bottom,
        };
        if rect.intersect(&rects[0]).area() > 0 {
            break;
        }
        rects.push(rect);
        y -= h + pad;
        i += 1;
    }
    (rects, tensor)
}

/// Builds the detector's input: `3 x rows x cols` planes, zero outside the levels,
/// level 0 = `(pixel - avg)/256`, each next level resized from the previous one.
pub fn tiled_pyramid_tensor(
    img: &RgbImage,
    avg_rgb: [f32; 3],
    padding: usize,
    outer: usize,
) -> (Vec<f32>, Vec<Rect>, (usize, usize)) {
    let (rects, (rows, cols)) =
        tiled_layout(img.height() as usize, img.width() as usize, padding, outer);
    let plane = rows * cols;
    let mut data = vec![0f32; 3 * plane];
    let r0 = rects[0];
    for (x, y, p) in img.enumerate_pixels() {
        let idx = (r0.top as usize + y as usize) * cols + r0.left as usize + x as usize;
        for c in 0..3 {
            data[c * plane + idx] = (f32::from(p[c]) - avg_rgb[c]) / 256.0;
        }
    }
    for level in 1..rects.len() {
        let (prev, cur) = (rects[level - 1], rects[level]);
        for c in 0..3 {
            // Copy the previous level out first: it lives in the same buffer as the
            // level being written.
            let mut src_copy = Vec::with_capacity(prev.height() as usize * prev.width() as usize);
            for r in 0..prev.height() as usize {
                let start = c * plane + (prev.top as usize + r) * cols + prev.left as usize;
                src_copy.extend_from_slice(&data[start..start + prev.width() as usize]);
            }
            let src = PlaneRef {
                data: &src_copy,
                stride: prev.width() as usize,
                width: prev.width() as usize,
                height: prev.height() as usize,
                offset: 0,
            };
            let out_offset = c * plane + cur.top as usize * cols + cur.left as usize;
            resize_plane(
                &src,
                &mut data,
                out_offset,
                cols,
                cur.width() as usize,
                cur.height() as usize,
            );
        }
    }
    (data, rects, (rows, cols))
}
