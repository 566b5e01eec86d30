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
//!
//! Hertzmann's strokes only reproduce the blurred photo, so on flat areas, grayscale and line art
//! they leave the photo almost as it was. Here every stroke also carries paint texture (bristle
//! streaks, its own tone, drying along it) on a canvas weave, strokes carry on through flat
//! stretches (along a seeded flow where they start in one) instead of ending as dabs, and T, the
//! flat-gradient level and the colour jitter scale with the photo's tonal range
//! ([`crate::raster::contrast_factor`]); docs/styles.md has the details.

use serde::{Deserialize, Serialize};

use crate::colour::{hsv_to_rgb, rgb_to_hsv};
use crate::raster::{
    contrast_factor, reflect_unit, size_scale, sobel, textured, ColourImage, FlatFlow, Plane,
    TextureBounds, FLAT_GRADIENT,
};
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
    /// Brush texture in [0,1]: the amplitude (sRGB units) of the bristle streaks along each
    /// stroke and of the small tone difference between strokes (no two loads of paint mix the
    /// same). It is a change of value, so brushwork shows on gray, white, black and flat areas,
    /// where Hertzmann's strokes alone reproduce the photo exactly.
    #[serde(default = "default_bristle")]
    pub bristle: f32,
    /// Canvas weave relief in [0,1] (sRGB units of the weave's light/dark amplitude).
    #[serde(default = "default_canvas")]
    pub canvas: f32,
}

fn default_bristle() -> f32 {
    0.16
}

fn default_canvas() -> f32 {
    0.03
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
            bristle: default_bristle(),
            canvas: default_canvas(),
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
            // Semi-transparent strokes show less of their texture: load them with more.
            bristle: 0.2,
            ..Self::impressionist()
        }
    }

    /// Paper's "Colorist Wash": T=200, a=.5, jr=jg=jb=.3.
    pub fn colourist_wash() -> Self {
        Self {
            threshold: 200.0,
            opacity: 0.5,
            jitter_rgb: 0.3,
            bristle: 0.2,
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
            bristle: 0.14,
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
        if !(0.0..=1.0).contains(&self.bristle) {
            return bad("bristle", self.bristle, "must be in [0, 1]");
        }
        if !(0.0..=1.0).contains(&self.canvas) {
            return bad("canvas", self.canvas, "must be in [0, 1]");
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
    width: usize,
    height: usize,
    /// Per pixel the strokes' plain colour (RGB) and, as a fourth value, the brush texture laid
    /// with the same strokes: a value offset blended exactly like the paint, so plain + texture is
    /// the textured painting. Hertzmann's approximation tests (which cells to repaint, when a
    /// stroke ends) compare the plain colour with the reference, so the texture, which is meant
    /// to differ from the photo, never reads as error to be painted over. Kept in one array so a
    /// stroke touches one stream of memory.
    paint: Vec<[f32; 4]>,
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
        width: w,
        height: h,
        paint: vec![[1.0, 1.0, 1.0, 0.0]; w * h],
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
    // T is a colour error on the 0..255 scale; on a dim or low-contrast photo every error is
    // small, so an absolute T would stop after the coarsest layer. Scale it with the photo's
    // tonal range so exposure does not decide how much detail is painted.
    // Jitter and the tone differences between strokes are variations at the scale of strokes;
    // on a low-contrast photo they would drown its composition, so they shrink with it too.
    let contrast = contrast_factor(source);
    let params = &PainterlyParams {
        threshold: params.threshold * contrast,
        jitter_hue: params.jitter_hue * contrast,
        jitter_saturation: params.jitter_saturation * contrast,
        jitter_value: params.jitter_value * contrast,
        jitter_rgb: params.jitter_rgb * contrast,
        ..params.clone()
    };
    let flow = FlatFlow::new(scale, seed);
    let mut finest_reference = None;
    for radius in radii {
        let reference = source.blur(params.blur_factor * radius);
        let luminance = reference.luma();
        let (gx, gy) = sobel(&luminance);
        let field = GradientField { gx, gy };
        let strokes = start_strokes(
            &canvas,
            &reference,
            &field,
            &flow,
            radius,
            params,
            FLAT_GRADIENT * contrast,
        );
        let mut strokes = random_local_order(strokes, w, &mut rng);
        for stroke in &mut strokes {
            jitter_colour(&mut stroke.colour, params, &mut rng);
        }
        for stroke in &strokes {
            stroke_id += 1;
            let texture = StrokeTexture::new(stroke, params.bristle, contrast, seed, stroke_id);
            draw_stroke(&mut canvas, stroke, &texture, params.opacity, stroke_id);
        }
        on_layer(&strokes);
        finest_reference = Some(reference);
    }
    // Cells the grid never reached (tiny images, fg > 1.4) get the finest reference colour so no
    // blank paper shows through.
    if let Some(reference) = finest_reference {
        for (i, done) in canvas.painted.iter().enumerate() {
            if !done {
                let c = reference.data[i];
                canvas.paint[i] = [c[0], c[1], c[2], 0.0];
            }
        }
    }
    let mut image = ColourImage {
        width: w,
        height: h,
        data: canvas
            .paint
            .iter()
            .map(|p| [p[0] + p[3], p[1] + p[3], p[2] + p[3]].map(|c| c.clamp(0.0, 1.0)))
            .collect(),
    };
    if params.canvas > 0.0 {
        let weave = canvas_weave(w, h, 3.0 * scale, seed);
        for (pixel, &relief) in image.data.iter_mut().zip(&weave.data) {
            *pixel = textured(*pixel, crate::colour::luma(*pixel), params.canvas * relief);
        }
    }
    image
}

/// A stroke's paint: a bristle profile across its width (streaks that run along the stroke), a
/// slow variation along it (the brush running dry) and a tone offset for the whole stroke.
struct StrokeTexture {
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
    fn new(stroke: &Stroke, bristle: f32, contrast: f32, seed: u64, id: u32) -> Self {
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
fn canvas_weave(w: usize, h: usize, period: f32, seed: u64) -> Plane {
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

fn jitter_colour(colour: &mut [f32; 3], params: &PainterlyParams, rng: &mut SeededRng) {
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

/// Rasterises a round brush swept along the polyline with a one-pixel anti-aliased rim, its
/// paint textured by `texture`.
fn draw_stroke(
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
fn plain(paint: &[f32; 4]) -> [f32; 3] {
    [paint[0], paint[1], paint[2]]
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
