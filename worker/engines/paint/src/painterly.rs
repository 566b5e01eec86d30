//! Hertzmann (SIGGRAPH 1998), "Painterly Rendering with Curved Brush Strokes of Multiple Sizes".
//!
//! For each brush radius, largest first, the source is blurred by `blur_factor * R` into a
//! reference image. A grid of spacing `grid_size * R` is laid over the canvas; wherever the mean
//! colour error between canvas and reference in a cell exceeds `threshold`, a stroke starts at the
//! cell's worst pixel. Strokes are traced perpendicular to the reference's luminance gradient
//! (along iso-contours), low-pass filtered by `curvature_filter`, and end when they reach
//! `max_stroke_length` control points, when the gradient vanishes, or (after `min_stroke_length`)
//! when the canvas already matches the reference better than the stroke colour would. Each layer's
//! strokes are painted in a seeded random order with the layer's `opacity`.

use serde::{Deserialize, Serialize};

use crate::colour::{hsv_to_rgb, rgb_to_hsv};
use crate::raster::{size_scale, sobel, ColourImage, Plane};
use crate::rng::SeededRng;

/// Hertzmann's style parameters (names follow the paper; colour errors use the 0..255 scale).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PainterlyParams {
    /// Approximation threshold T: mean RGB error (0..255 scale) above which a cell is repainted.
    pub threshold: f32,
    /// Brush radii R1 > R2 > ... in pixels for a ~0.8 MP image (scaled with image size).
    pub brush_sizes: Vec<f32>,
    /// Curvature filter fc in [0,1]: 1 follows the gradient exactly, small values give straighter strokes.
    pub curvature_filter: f32,
    /// Blur factor fσ: the reference image for radius R is blurred with sigma = fσ·R.
    pub blur_factor: f32,
    /// Minimum stroke length (control points) before the colour test may end a stroke.
    pub min_stroke_length: u32,
    /// Maximum stroke length (control points).
    pub max_stroke_length: u32,
    /// Paint opacity α in (0,1].
    pub opacity: f32,
    /// Grid size fg: stroke start cells are fg·R pixels wide.
    pub grid_size: f32,
    /// Random jitter of hue (fraction of the colour wheel).
    pub jitter_hue: f32,
    /// Random jitter of saturation.
    pub jitter_saturation: f32,
    /// Random jitter of value (brightness).
    pub jitter_value: f32,
    /// Random per-channel RGB jitter (jr = jg = jb in the paper's colourist wash).
    pub jitter_rgb: f32,
}

impl PainterlyParams {
    /// Paper's "Impressionist": T=100, R=(8,4,2), fc=1, fσ=.5, a=1, fg=1, minL=4, maxL=16.
    pub fn impressionist() -> Self {
        Self {
            threshold: 100.0,
            brush_sizes: vec![8.0, 4.0, 2.0],
            curvature_filter: 1.0,
            blur_factor: 0.5,
            min_stroke_length: 4,
            max_stroke_length: 16,
            opacity: 1.0,
            grid_size: 1.0,
            jitter_hue: 0.0,
            jitter_saturation: 0.0,
            jitter_value: 0.0,
            jitter_rgb: 0.0,
        }
    }

    /// Paper's "Expressionist": T=50, fc=.25, a=.7, minL=10, maxL=16, jv=.5.
    pub fn expressionist() -> Self {
        Self {
            threshold: 50.0,
            curvature_filter: 0.25,
            opacity: 0.7,
            min_stroke_length: 10,
            jitter_value: 0.5,
            ..Self::impressionist()
        }
    }

    /// Paper's "Colorist Wash": T=200, a=.5, jr=jg=jb=.3.
    pub fn colourist_wash() -> Self {
        Self {
            threshold: 200.0,
            opacity: 0.5,
            jitter_rgb: 0.3,
            ..Self::impressionist()
        }
    }

    /// Paper's "Pointillist": T=100, R=(4,2), fg=.5, minL=maxL=0, jv=1, jh=.3.
    pub fn pointillist() -> Self {
        Self {
            brush_sizes: vec![4.0, 2.0],
            grid_size: 0.5,
            min_stroke_length: 0,
            max_stroke_length: 0,
            jitter_value: 1.0,
            jitter_hue: 0.3,
            ..Self::impressionist()
        }
    }

    /// Checks ranges so a hand-written JSON spec fails loudly instead of painting nonsense.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |field, value: f32, reason| {
            Err(crate::PaintError::InvalidParameter {
                field,
                value: value as f64,
                reason,
            })
        };
        if self.brush_sizes.is_empty() {
            return bad("brush_sizes", 0.0, "needs at least one radius");
        }
        if let Some(&r) = self
            .brush_sizes
            .iter()
            .find(|r| !(r.is_finite() && **r >= 0.5 && **r <= 256.0))
        {
            return bad("brush_sizes", r, "each radius must be in [0.5, 256]");
        }
        if !(0.0..=1.0).contains(&self.curvature_filter) {
            return bad(
                "curvature_filter",
                self.curvature_filter,
                "must be in [0, 1]",
            );
        }
        if !(self.opacity > 0.0 && self.opacity <= 1.0) {
            return bad("opacity", self.opacity, "must be in (0, 1]");
        }
        if !(self.grid_size >= 0.1 && self.grid_size <= 8.0) {
            return bad("grid_size", self.grid_size, "must be in [0.1, 8]");
        }
        if !(self.threshold.is_finite() && self.threshold >= 0.0) {
            return bad("threshold", self.threshold, "must be >= 0");
        }
        if !(self.blur_factor.is_finite() && self.blur_factor >= 0.0) {
            return bad("blur_factor", self.blur_factor, "must be >= 0");
        }
        if self.max_stroke_length > 1000 {
            return bad(
                "max_stroke_length",
                self.max_stroke_length as f32,
                "must be <= 1000",
            );
        }
        Ok(())
    }
}

/// One traced stroke: control points (already smoothed), radius and colour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stroke {
    pub points: Vec<[f32; 2]>,
    pub radius: f32,
    pub colour: [f32; 3],
}

/// Paints `source` and returns the canvas.
pub fn render(source: &ColourImage, params: &PainterlyParams, seed: u64) -> ColourImage {
    paint_layers(source, params, seed, |_| {})
}

/// Traces (and paints) all strokes, returning them per layer; used by tests and diagnostics.
pub fn plan_strokes(source: &ColourImage, params: &PainterlyParams, seed: u64) -> Vec<Vec<Stroke>> {
    let mut layers = Vec::new();
    paint_layers(source, params, seed, |strokes| {
        layers.push(strokes.to_vec())
    });
    layers
}

struct Canvas {
    image: ColourImage,
    painted: Vec<bool>,
    /// Id of the last stroke that touched each pixel, so overlapping segments of one stroke
    /// blend only once (a stroke is one layer of paint, not many).
    stamp: Vec<u32>,
}

fn paint_layers(
    source: &ColourImage,
    params: &PainterlyParams,
    seed: u64,
    mut on_layer: impl FnMut(&[Stroke]),
) -> ColourImage {
    let (w, h) = (source.width, source.height);
    let scale = size_scale(w, h);
    let mut canvas = Canvas {
        image: ColourImage::new(w, h, [1.0, 1.0, 1.0]),
        painted: vec![false; w * h],
        stamp: vec![0; w * h],
    };
    let mut rng = SeededRng::new(seed);
    let mut stroke_id = 0u32;
    let mut radii: Vec<f32> = params
        .brush_sizes
        .iter()
        .map(|r| (r * scale).max(1.0))
        .collect();
    radii.sort_by(|a, b| b.total_cmp(a));
    let mut finest_reference = None;
    for radius in radii {
        let reference = source.blur(params.blur_factor * radius);
        let luminance = reference.luma();
        let (gx, gy) = sobel(&luminance);
        let field = GradientField { gx, gy };
        let strokes = start_strokes(&canvas, &reference, &field, radius, params);
        let mut strokes = random_local_order(strokes, w, &mut rng);
        for stroke in &mut strokes {
            jitter_colour(&mut stroke.colour, params, &mut rng);
        }
        for stroke in &strokes {
            stroke_id += 1;
            draw_stroke(&mut canvas, stroke, params.opacity, stroke_id);
        }
        on_layer(&strokes);
        finest_reference = Some(reference);
    }
    // Cells the grid never reached (tiny images, fg > 1.4) get the finest reference colour so no
    // blank paper shows through.
    if let Some(reference) = finest_reference {
        for (i, done) in canvas.painted.iter().enumerate() {
            if !done {
                canvas.image.data[i] = reference.data[i];
            }
        }
    }
    canvas.image
}

/// Side of the tiles used to order strokes, in pixels.
const ORDER_TILE: usize = 64;

/// Hertzmann paints a layer's strokes in random order. A fully random order makes every stroke
/// land somewhere cold in memory, so the order is randomised in two levels instead: tiles of
/// 64 px (by start point) in random order, strokes within a tile in random order. Any two
/// overlapping strokes still meet in a random order; the canvas stays in cache while a tile is
/// painted.
fn random_local_order(strokes: Vec<Stroke>, width: usize, rng: &mut SeededRng) -> Vec<Stroke> {
    let tiles_x = width.div_ceil(ORDER_TILE).max(1);
    let tile_of = |s: &Stroke| {
        let p = s.points.first().copied().unwrap_or([0.0, 0.0]);
        (p[1].max(0.0) as usize / ORDER_TILE) * tiles_x + p[0].max(0.0) as usize / ORDER_TILE
    };
    let tile_count = strokes.iter().map(tile_of).max().map_or(0, |m| m + 1);
    let mut tile_rank: Vec<usize> = (0..tile_count).collect();
    rng.shuffle(&mut tile_rank);
    let mut keyed: Vec<(usize, u64, Stroke)> = strokes
        .into_iter()
        .map(|s| (tile_rank[tile_of(&s)], rng.next_u64(), s))
        .collect();
    keyed.sort_by_key(|k| (k.0, k.1));
    keyed.into_iter().map(|k| k.2).collect()
}

struct GradientField {
    gx: Plane,
    gy: Plane,
}

fn start_strokes(
    canvas: &Canvas,
    reference: &ColourImage,
    field: &GradientField,
    radius: f32,
    params: &PainterlyParams,
) -> Vec<Stroke> {
    let (w, h) = (reference.width, reference.height);
    // Unpainted pixels count as infinitely wrong so the first layer covers the whole canvas.
    let difference: Vec<f32> = (0..w * h)
        .map(|i| {
            if canvas.painted[i] {
                colour_distance_255(canvas.image.data[i], reference.data[i])
            } else {
                f32::INFINITY
            }
        })
        .collect();
    let grid = (params.grid_size * radius).max(1.0);
    let step = grid.round().max(1.0) as usize;
    let mut strokes = Vec::new();
    let mut y = 0;
    while y < h {
        let mut x = 0;
        while x < w {
            let cell = Cell {
                x0: x,
                y0: y,
                x1: (x + step).min(w),
                y1: (y + step).min(h),
            };
            if let Some((bx, by)) = worst_pixel(&difference, w, &cell, params.threshold) {
                strokes.push(trace_stroke(
                    canvas, reference, field, bx, by, radius, params,
                ));
            }
            x += step;
        }
        y += step;
    }
    strokes
}

/// The pixel with the largest error in the cell, if the cell's mean error exceeds T.
#[derive(Clone, Copy)]
struct Cell {
    x0: usize,
    y0: usize,
    x1: usize,
    y1: usize,
}

fn worst_pixel(
    difference: &[f32],
    w: usize,
    cell: &Cell,
    threshold: f32,
) -> Option<(usize, usize)> {
    let Cell { x0, y0, x1, y1 } = *cell;
    let mut sum = 0.0f32;
    let mut best = (x0, y0, f32::NEG_INFINITY);
    for y in y0..y1 {
        for x in x0..x1 {
            let d = difference[y * w + x];
            sum += d;
            if d > best.2 {
                best = (x, y, d);
            }
        }
    }
    let area = ((x1 - x0) * (y1 - y0)).max(1) as f32;
    (sum / area > threshold).then_some((best.0, best.1))
}

fn colour_distance_255(a: [f32; 3], b: [f32; 3]) -> f32 {
    let d0 = a[0] - b[0];
    let d1 = a[1] - b[1];
    let d2 = a[2] - b[2];
    (d0 * d0 + d1 * d1 + d2 * d2).sqrt() * 255.0
}

/// Below this gradient magnitude (luma units per pixel) the direction is noise: stop the stroke.
const VANISHING_GRADIENT: f32 = 1e-4;

fn trace_stroke(
    canvas: &Canvas,
    reference: &ColourImage,
    field: &GradientField,
    x0: usize,
    y0: usize,
    radius: f32,
    params: &PainterlyParams,
) -> Stroke {
    let (w, h) = (reference.width, reference.height);
    let colour = reference.get(x0, y0);
    let mut points = vec![[x0 as f32, y0 as f32]];
    let (mut x, mut y) = (x0 as f32, y0 as f32);
    let (mut last_dx, mut last_dy) = (0.0f32, 0.0f32);
    for i in 1..=params.max_stroke_length {
        let (xi, yi) = (x.round() as usize, y.round() as usize);
        if xi >= w || yi >= h {
            break;
        }
        let idx = yi * w + xi;
        let here = reference.data[idx];
        if i > params.min_stroke_length
            && canvas.painted[idx]
            && colour_distance_255(here, canvas.image.data[idx]) < colour_distance_255(here, colour)
        {
            break;
        }
        let gx = field.gx.data[idx];
        let gy = field.gy.data[idx];
        let magnitude = (gx * gx + gy * gy).sqrt();
        if magnitude < VANISHING_GRADIENT {
            break;
        }
        // Perpendicular to the gradient: strokes follow iso-luminance contours.
        let (mut dx, mut dy) = (-gy / magnitude, gx / magnitude);
        if last_dx * dx + last_dy * dy < 0.0 {
            dx = -dx;
            dy = -dy;
        }
        let fc = params.curvature_filter;
        dx = fc * dx + (1.0 - fc) * last_dx;
        dy = fc * dy + (1.0 - fc) * last_dy;
        let norm = (dx * dx + dy * dy).sqrt();
        if norm < 1e-6 {
            break;
        }
        dx /= norm;
        dy /= norm;
        x += radius * dx;
        y += radius * dy;
        if x < 0.0 || y < 0.0 || x > (w - 1) as f32 || y > (h - 1) as f32 {
            break;
        }
        last_dx = dx;
        last_dy = dy;
        points.push([x, y]);
    }
    Stroke {
        points: smooth_polyline(&points),
        radius,
        colour,
    }
}

/// One round of Chaikin corner cutting: a step toward the quadratic B-spline of the control
/// points (the curved stroke shape Hertzmann renders) that keeps the end points. One round is
/// enough at brush width, and every extra round doubles the rasterisation work.
fn smooth_polyline(points: &[[f32; 2]]) -> Vec<[f32; 2]> {
    if points.len() < 3 {
        return points.to_vec();
    }
    let mut smoothed = Vec::with_capacity(points.len() * 2);
    smoothed.push(points[0]);
    for pair in points.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        smoothed.push([0.75 * a[0] + 0.25 * b[0], 0.75 * a[1] + 0.25 * b[1]]);
        smoothed.push([0.25 * a[0] + 0.75 * b[0], 0.25 * a[1] + 0.75 * b[1]]);
    }
    smoothed.push(points[points.len() - 1]);
    smoothed
}

/// Half-width of the uniform jitter per unit of a jitter parameter.
const JITTER_SPAN: f32 = 0.25;

fn jitter_colour(colour: &mut [f32; 3], params: &PainterlyParams, rng: &mut SeededRng) {
    if params.jitter_hue > 0.0 || params.jitter_saturation > 0.0 || params.jitter_value > 0.0 {
        let mut hsv = rgb_to_hsv(*colour);
        // A jitter j moves the component uniformly within ±j/4 of its range: the paper's jv = 1
        // then gives lively dots without drowning the picture in noise.
        hsv[0] += params.jitter_hue * JITTER_SPAN * rng.next_signed();
        hsv[1] =
            (hsv[1] + params.jitter_saturation * JITTER_SPAN * rng.next_signed()).clamp(0.0, 1.0);
        hsv[2] = (hsv[2] + params.jitter_value * JITTER_SPAN * rng.next_signed()).clamp(0.0, 1.0);
        *colour = hsv_to_rgb(hsv);
    }
    if params.jitter_rgb > 0.0 {
        for c in colour.iter_mut() {
            *c = (*c + params.jitter_rgb * JITTER_SPAN * rng.next_signed()).clamp(0.0, 1.0);
        }
    }
}

/// Rasterises a round brush swept along the polyline with a one-pixel anti-aliased rim.
fn draw_stroke(canvas: &mut Canvas, stroke: &Stroke, opacity: f32, id: u32) {
    let (w, h) = (canvas.image.width as i64, canvas.image.height as i64);
    let r = stroke.radius;
    let outer = r + 0.5;
    let segments: Vec<([f32; 2], [f32; 2])> = if stroke.points.len() == 1 {
        vec![(stroke.points[0], stroke.points[0])]
    } else {
        stroke.points.windows(2).map(|p| (p[0], p[1])).collect()
    };
    let inner2 = (r - 0.5).max(0.0).powi(2);
    let outer2 = outer * outer;
    for (a, b) in segments {
        let min_y = ((a[1].min(b[1]) - outer).floor() as i64).max(0);
        let max_y = ((a[1].max(b[1]) + outer).ceil() as i64).min(h - 1);
        let (sx, sy) = (b[0] - a[0], b[1] - a[1]);
        let len2 = sx * sx + sy * sy;
        for py in min_y..=max_y {
            // Only the row's span inside the capsule is visited, not the segment's bounding box.
            let Some((lo, hi)) = capsule_span(a, b, outer, py as f32) else {
                continue;
            };
            let x0 = (lo.floor() as i64).max(0);
            let x1 = (hi.ceil() as i64).min(w - 1);
            for px in x0..=x1 {
                let idx = (py * w + px) as usize;
                if canvas.stamp[idx] == id {
                    continue;
                }
                let (qx, qy) = (px as f32 - a[0], py as f32 - a[1]);
                let t = if len2 > 0.0 {
                    ((qx * sx + qy * sy) / len2).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let (ex, ey) = (qx - t * sx, qy - t * sy);
                let d2 = ex * ex + ey * ey;
                if d2 >= outer2 {
                    continue;
                }
                // Only rim pixels need the square root for their anti-aliased coverage.
                let coverage = if d2 <= inner2 {
                    1.0
                } else {
                    (outer - d2.sqrt()).clamp(0.0, 1.0)
                };
                canvas.stamp[idx] = id;
                blend(canvas, idx, stroke.colour, coverage, opacity);
            }
        }
    }
}

/// The x-interval where the horizontal line at `y` crosses the capsule (all points within
/// `radius` of segment ab). The capsule is convex, so the union of its two end discs and its
/// central rectangle meets the line in a single interval.
fn capsule_span(a: [f32; 2], b: [f32; 2], radius: f32, y: f32) -> Option<(f32, f32)> {
    let mut lo = f32::INFINITY;
    let mut hi = f32::NEG_INFINITY;
    for c in [a, b] {
        let dy = y - c[1];
        if dy.abs() <= radius {
            let half = (radius * radius - dy * dy).sqrt();
            lo = lo.min(c[0] - half);
            hi = hi.max(c[0] + half);
        }
    }
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    let len = (dx * dx + dy * dy).sqrt();
    if len > 1e-6 {
        let (ux, uy) = (dx / len, dy / len);
        let ry = y - a[1];
        // Along the segment: 0 <= (x-ax)·ux + ry·uy <= len. Across it: |-(x-ax)·uy + ry·ux| <= radius.
        let along = linear_range(ry * uy, ux, 0.0, len);
        let across = linear_range(ry * ux, -uy, -radius, radius);
        if let (Some(p), Some(q)) = (along, across) {
            let (l, h) = (p.0.max(q.0), p.1.min(q.1));
            if l <= h {
                lo = lo.min(a[0] + l);
                hi = hi.max(a[0] + h);
            }
        }
    }
    (lo <= hi).then_some((lo, hi))
}

/// Values of t with min <= c0 + c1·t <= max (None if empty; unbounded sides become ±1e9).
fn linear_range(c0: f32, c1: f32, min: f32, max: f32) -> Option<(f32, f32)> {
    if c1.abs() < 1e-9 {
        return (c0 >= min && c0 <= max).then_some((-1e9, 1e9));
    }
    let (t0, t1) = ((min - c0) / c1, (max - c0) / c1);
    Some((t0.min(t1), t0.max(t1)))
}

#[inline]
fn blend(canvas: &mut Canvas, idx: usize, colour: [f32; 3], coverage: f32, opacity: f32) {
    let pixel = &mut canvas.image.data[idx];
    if !canvas.painted[idx] {
        // First paint on the bare canvas lays full colour: Hertzmann's canvas starts empty.
        *pixel = colour;
        canvas.painted[idx] = coverage >= 0.5;
        return;
    }
    let alpha = coverage * opacity;
    for c in 0..3 {
        pixel[c] += (colour[c] - pixel[c]) * alpha;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate() {
        for p in [
            PainterlyParams::impressionist(),
            PainterlyParams::expressionist(),
            PainterlyParams::colourist_wash(),
            PainterlyParams::pointillist(),
        ] {
            p.validate().expect("preset is valid");
        }
        let mut bad = PainterlyParams::impressionist();
        bad.opacity = 0.0;
        assert!(bad.validate().is_err());
    }

    #[test]
    fn capsule_span_matches_brute_force() {
        let (a, b, r) = ([3.0, 4.0], [20.0, 11.0], 3.5);
        for yi in -2..20 {
            let y = yi as f32;
            let inside: Vec<f32> = (-100..300)
                .map(|i| i as f32 * 0.1)
                .filter(|&x| {
                    let (sx, sy) = (b[0] - a[0], b[1] - a[1]);
                    let t =
                        (((x - a[0]) * sx + (y - a[1]) * sy) / (sx * sx + sy * sy)).clamp(0.0, 1.0);
                    let (ex, ey) = (x - a[0] - t * sx, y - a[1] - t * sy);
                    (ex * ex + ey * ey).sqrt() <= r
                })
                .collect();
            match (capsule_span(a, b, r, y), inside.first(), inside.last()) {
                (Some((lo, hi)), Some(&first), Some(&last)) => {
                    assert!(
                        (lo - first).abs() < 0.11 && (hi - last).abs() < 0.11,
                        "y={y}: {lo}..{hi} vs {first}..{last}"
                    );
                }
                (None, None, None) => {}
                (span, first, _) => {
                    panic!("y={y}: span {span:?} but brute force starts at {first:?}")
                }
            }
        }
    }

    #[test]
    fn smoothing_keeps_endpoints() {
        let pts = vec![[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]];
        let s = smooth_polyline(&pts);
        assert_eq!(s.first(), Some(&[0.0, 0.0]));
        assert_eq!(s.last(), Some(&[10.0, 10.0]));
        assert!(s.len() > pts.len());
    }
}
