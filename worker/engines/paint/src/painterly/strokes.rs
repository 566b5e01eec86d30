//! Where strokes go (Hertzmann's part): a grid of cells over the canvas, a stroke from the worst
//! pixel of each cell that is wrong by more than T, traced along the reference's iso-contours (or
//! carried on through flat stretches), smoothed, painted in a locally random order with jittered
//! colour.

use super::{plain, Canvas, PainterlyParams, Stroke};
use crate::colour::{hsv_to_rgb, rgb_to_hsv};
use crate::raster::{reflect_unit, ColourImage, FlatFlow, Plane};
use crate::rng::SeededRng;

/// Side of the tiles used to order strokes, in pixels.
const ORDER_TILE: usize = 64;

/// Hertzmann paints a layer's strokes in random order. A fully random order makes every stroke
/// land somewhere cold in memory, so the order is randomised in two levels instead: tiles of
/// 64 px (by start point) in random order, strokes within a tile in random order. Any two
/// overlapping strokes still meet in a random order; the canvas stays in cache while a tile is
/// painted.
pub(super) fn random_local_order(
    strokes: Vec<Stroke>,
    width: usize,
    rng: &mut SeededRng,
) -> Vec<Stroke> {
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

/// The reference's luminance gradient (Sobel), which strokes run across.
pub(super) struct GradientField {
    pub(super) gx: Plane,
    pub(super) gy: Plane,
}

pub(super) fn start_strokes(
    canvas: &Canvas,
    reference: &ColourImage,
    field: &GradientField,
    flow: &FlatFlow,
    radius: f32,
    params: &PainterlyParams,
    flat_gradient: f32,
) -> Vec<Stroke> {
    let (w, h) = (reference.width, reference.height);
    // Unpainted pixels count as infinitely wrong so the first layer covers the whole canvas.
    let difference: Vec<f32> = (0..w * h)
        .map(|i| {
            if canvas.painted[i] {
                colour_distance_255(plain(&canvas.paint[i]), reference.data[i])
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
                let start = Start {
                    x: bx,
                    y: by,
                    radius,
                };
                strokes.push(trace_stroke(
                    canvas,
                    reference,
                    field,
                    flow,
                    start,
                    params,
                    flat_gradient,
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

/// Where a stroke starts and how wide it is.
#[derive(Clone, Copy)]
struct Start {
    x: usize,
    y: usize,
    radius: f32,
}

fn trace_stroke(
    canvas: &Canvas,
    reference: &ColourImage,
    field: &GradientField,
    flow: &FlatFlow,
    start: Start,
    params: &PainterlyParams,
    flat_gradient: f32,
) -> Stroke {
    let (w, h) = (reference.width, reference.height);
    let Start {
        x: x0,
        y: y0,
        radius,
    } = start;
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
            && colour_distance_255(here, plain(&canvas.paint[idx]))
                < colour_distance_255(here, colour)
        {
            break;
        }
        // Paint is not carried into an area that differs from it by more than T/2 (the canvas
        // test above cannot stop first-layer strokes, which start on a bare canvas).
        if i > params.min_stroke_length
            && colour_distance_255(here, colour) > 0.5 * params.threshold
        {
            break;
        }
        let gx = field.gx.data[idx];
        let gy = field.gy.data[idx];
        let magnitude = (gx * gx + gy * gy).sqrt();
        let (mut dx, mut dy) = if magnitude >= flat_gradient {
            // Perpendicular to the gradient: strokes follow iso-luminance contours.
            (-gy / magnitude, gx / magnitude)
        } else if last_dx != 0.0 || last_dy != 0.0 {
            // A flat stretch: Hertzmann stops here, which leaves flat areas as dabs of the
            // exact photo colour; a painter carries the stroke on in its direction.
            (last_dx, last_dy)
        } else {
            flow.direction(x, y)
        };
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

pub(super) fn jitter_colour(colour: &mut [f32; 3], params: &PainterlyParams, rng: &mut SeededRng) {
    if params.jitter_hue > 0.0 || params.jitter_saturation > 0.0 || params.jitter_value > 0.0 {
        let mut hsv = rgb_to_hsv(*colour);
        // A jitter j moves the component uniformly within ±j/4 of its range: the paper's jv = 1
        // then gives lively dots without drowning the picture in noise.
        hsv[0] += params.jitter_hue * JITTER_SPAN * rng.next_signed();
        // Hue has no effect on a gray: give hue jitter a little colour to turn, so gray and
        // white areas also get the tinted dots of a pointillist (at most j/4 saturation).
        let tint = params.jitter_hue * JITTER_SPAN * rng.next_f32();
        hsv[1] = hsv[1].max(tint);
        hsv[1] = reflect_unit(hsv[1] + params.jitter_saturation * JITTER_SPAN * rng.next_signed());
        // Mirrored at 0 and 1: clamping would leave white and black strokes unjittered.
        hsv[2] = reflect_unit(hsv[2] + params.jitter_value * JITTER_SPAN * rng.next_signed());
        *colour = hsv_to_rgb(hsv);
    }
    if params.jitter_rgb > 0.0 {
        for c in colour.iter_mut() {
            *c = reflect_unit(*c + params.jitter_rgb * JITTER_SPAN * rng.next_signed());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoothing_keeps_endpoints() {
        let pts = vec![[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]];
        let s = smooth_polyline(&pts);
        assert_eq!(s.first(), Some(&[0.0, 0.0]));
        assert_eq!(s.last(), Some(&[10.0, 10.0]));
        assert!(s.len() > pts.len());
    }
}
