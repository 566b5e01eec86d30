//! Laying a stroke's paint: its texture (bristle streaks across it, drying along it, its own tone),
//! the round brush swept along its polyline with an anti-aliased rim, blending into the canvas, and
//! the canvas weave under the finished painting.

use super::{Canvas, Stroke};
use crate::raster::{Plane, TextureBounds};
use crate::rng::SeededRng;

/// A stroke's paint: a bristle profile across its width (streaks that run along the stroke), a
/// slow variation along it (the brush running dry) and a tone offset for the whole stroke.
pub(super) struct StrokeTexture {
    /// The bristle profile across the stroke: `groups + 1` knots from one edge to the other
    /// (plus one padding knot), already scaled by their share of the amplitude.
    knots: [f32; MAX_BRISTLE_GROUPS + 2],
    /// Half the number of bristle groups: maps -1..1 across the stroke onto the knots.
    half: f32,
    /// Weight of the stroke-sized variations (tone offset, drying along the stroke): amplitude
    /// times the photo's contrast factor, so they never drown a dim photo's composition. The
    /// bristle streaks are finer than any composition and keep their full strength.
    slow: f32,
    /// The stroke's own tone offset in [-1,1].
    offset: f32,
    /// The bristles' share of the amplitude.
    knots_scale: f32,
    along_period: f32,
    along_seed: u64,
}

const MAX_BRISTLE_GROUPS: usize = 24;

impl StrokeTexture {
    pub(super) fn new(stroke: &Stroke, bristle: f32, contrast: f32, seed: u64, id: u32) -> Self {
        let mut rng = SeededRng::new(crate::rng::mix64(seed ^ (id as u64).wrapping_mul(0xB215)));
        let mut knots = [0.0f32; MAX_BRISTLE_GROUPS + 2];
        // About one bristle group per 1.5 px of brush width.
        let groups = ((stroke.radius * 2.0 / 1.5).round() as usize).clamp(2, MAX_BRISTLE_GROUPS);
        if bristle > 0.0 {
            let used = &mut knots[..=groups];
            for k in used.iter_mut() {
                *k = rng.next_signed();
            }
            // Every stroke gets the same mean and mean deviation: on white or black paint the
            // texture can only go one way, and unequal profiles would then shift whole strokes.
            let n = used.len() as f32;
            let mean = used.iter().sum::<f32>() / n;
            let spread = used.iter().map(|k| (k - mean).abs()).sum::<f32>() / n;
            let gain = 0.6 / spread.max(1e-3);
            for k in used.iter_mut() {
                *k = BRISTLE_WEIGHT * bristle * ((*k - mean) * gain).clamp(-1.0, 1.0);
            }
            knots[groups + 1] = knots[groups];
        }
        Self {
            knots,
            half: groups as f32 * 0.5,
            slow: SLOW_WEIGHT * bristle * contrast,
            offset: rng.next_signed(),
            knots_scale: BRISTLE_WEIGHT * bristle,
            along_period: 4.0 * stroke.radius.max(1.0),
            along_seed: rng.next_u64(),
        }
    }

    /// The whole shift of a dab (a single-point stroke): a dab has no direction for bristle
    /// streaks to run along, and is as small as a bristle group of a stroke, so it gets one tone
    /// offset at the bristles' strength (not scaled down by contrast: it is no larger than the
    /// streaks).
    fn dab_shift(&self) -> f32 {
        self.knots_scale * self.offset
    }

    /// The stroke-sized part of the shift `along` pixels from the stroke's start: its tone
    /// offset plus the brush running dry.
    fn slow_shift(&self, along: f32) -> f32 {
        if self.slow == 0.0 {
            return 0.0;
        }
        let s = along / self.along_period;
        let (s0, fs) = (s.floor(), s - s.floor());
        let a0 = crate::rng::lattice_value(self.along_seed, s0 as i64, 0);
        let a1 = crate::rng::lattice_value(self.along_seed, s0 as i64 + 1, 0);
        let dry = (a0 + (a1 - a0) * fs) * 2.0 - 1.0;
        self.slow * (dry + self.offset)
    }

    /// The bristle streak at knot position `t` (0 at one edge of the stroke, `2·half` at the
    /// other; [`StrokeTexture::knot_position`]), clamped to the stroke.
    #[inline]
    fn bristle(&self, t: f32) -> f32 {
        let t = t.max(0.0).min(2.0 * self.half);
        let k = t as usize;
        let f = t - k as f32;
        self.knots[k] + (self.knots[k + 1] - self.knots[k]) * f
    }

    /// Knot position of a signed distance across the spine in radii (-1..1); linear, so callers
    /// can step it along a row.
    #[inline]
    fn knot_position(&self, across: f32) -> f32 {
        across * self.half + self.half
    }
}

/// Shares of the bristle amplitude: the streaks across the stroke and the stroke-sized
/// variations (tone offset and drying, each in [-1,1]).
const BRISTLE_WEIGHT: f32 = 0.8;
const SLOW_WEIGHT: f32 = 0.25;

/// Canvas weave in [-1,1]: threads `period` px apart, alternately over and under, with slightly
/// uneven thread thickness.
pub(super) fn canvas_weave(w: usize, h: usize, period: f32, seed: u64) -> Plane {
    let period = period.max(2.0);
    let seed = crate::rng::mix64(seed ^ 0xCA_4FA5);
    // (thread index, bump across the thread, thread thickness) of every column and row.
    let threads = |n: usize, offset: i64| -> Vec<(i64, f32, f32)> {
        (0..n)
            .map(|i| {
                let u = i as f32 / period;
                let thread = u.floor() as i64;
                let bump = (std::f32::consts::PI * (u - u.floor())).sin();
                let thickness = 0.75 + 0.5 * crate::rng::lattice_value(seed, thread + offset, 0);
                (thread, bump, thickness)
            })
            .collect()
    };
    let columns = threads(w, 0);
    let rows = threads(h, 0x10000);
    let mut out = Plane::new(w, h, 0.0);
    for (y, &(row, bump_y, thick_y)) in rows.iter().enumerate() {
        let line = &mut out.data[y * w..(y + 1) * w];
        for (o, &(column, bump_x, thick_x)) in line.iter_mut().zip(&columns) {
            // Which thread lies on top alternates like a checkerboard.
            let (bump, thickness) = if (row + column) % 2 == 0 {
                (bump_x, thick_x)
            } else {
                (bump_y, thick_y)
            };
            *o = (bump * thickness - 0.6).clamp(-1.0, 1.0);
        }
    }
    out
}

/// Rasterises a round brush swept along the polyline with a one-pixel anti-aliased rim, its
/// paint textured by `texture`.
pub(super) fn draw_stroke(
    canvas: &mut Canvas,
    stroke: &Stroke,
    texture: &StrokeTexture,
    opacity: f32,
    id: u32,
) {
    let (w, h) = (canvas.width as i64, canvas.height as i64);
    let r = stroke.radius;
    let outer = r + 0.5;
    let inv_r = 1.0 / r.max(0.5);
    let segments: Vec<([f32; 2], [f32; 2])> = if stroke.points.len() == 1 {
        vec![(stroke.points[0], stroke.points[0])]
    } else {
        stroke.points.windows(2).map(|p| (p[0], p[1])).collect()
    };
    let inner2 = (r - 0.5).max(0.0).powi(2);
    let outer2 = outer * outer;
    let bounds = TextureBounds::new(crate::colour::luma(stroke.colour));
    let dab = (segments.len() == 1 && segments[0].0 == segments[0].1)
        .then(|| bounds.effective(texture.dab_shift()));
    let mut walked = 0.0f32;
    for (a, b) in segments {
        let min_y = ((a[1].min(b[1]) - outer).floor() as i64).max(0);
        let max_y = ((a[1].max(b[1]) + outer).ceil() as i64).min(h - 1);
        let (sx, sy) = (b[0] - a[0], b[1] - a[1]);
        let len2 = sx * sx + sy * sy;
        let len = len2.sqrt();
        // Offset and dryness change over several radii: one value per (sub-radius) segment.
        let slow = if dab.is_some() {
            0.0
        } else {
            texture.slow_shift(walked + 0.5 * len)
        };
        // Knot position across the spine, linear along a row: px·step + row term.
        let step = if len > 1e-6 {
            sy / len * inv_r * texture.half
        } else {
            0.0
        };
        for py in min_y..=max_y {
            // Only the row's span inside the capsule is visited, not the segment's bounding box.
            let Some((lo, hi)) = capsule_span(a, b, outer, py as f32) else {
                continue;
            };
            let x0 = (lo.floor() as i64).max(0);
            let x1 = (hi.ceil() as i64).min(w - 1);
            let qy = py as f32 - a[1];
            let row_term = texture.knot_position(if len > 1e-6 {
                (-a[0] * sy - qy * sx) / len * inv_r
            } else {
                qy * inv_r
            });
            for px in x0..=x1 {
                let idx = (py * w + px) as usize;
                if canvas.stamp[idx] == id {
                    continue;
                }
                let qx = px as f32 - a[0];
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
                let shift = match dab {
                    Some(shift) => shift,
                    None => bounds.effective(texture.bristle(px as f32 * step + row_term) + slow),
                };
                blend(canvas, idx, stroke.colour, shift, coverage, opacity);
            }
        }
        walked += len;
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
fn blend(
    canvas: &mut Canvas,
    idx: usize,
    colour: [f32; 3],
    shift: f32,
    coverage: f32,
    opacity: f32,
) {
    let pixel = &mut canvas.paint[idx];
    if !canvas.painted[idx] {
        // First paint on the bare canvas lays full colour: Hertzmann's canvas starts empty.
        *pixel = [colour[0], colour[1], colour[2], shift];
        canvas.painted[idx] = coverage >= 0.5;
        return;
    }
    let alpha = coverage * opacity;
    let target = [colour[0], colour[1], colour[2], shift];
    for c in 0..4 {
        pixel[c] += (target[c] - pixel[c]) * alpha;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
