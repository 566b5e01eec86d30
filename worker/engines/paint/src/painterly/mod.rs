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
//!
//! This module holds the parameters and the layer loop; `strokes` places and traces the strokes
//! (Hertzmann's part) and `brush` lays their paint (texture, canvas weave, rasterising).

mod brush;
mod strokes;

use serde::{Deserialize, Serialize};

use crate::raster::{
    contrast_factor, size_scale, sobel, textured, ColourImage, FlatFlow, FLAT_GRADIENT,
};
use crate::rng::SeededRng;
use brush::{canvas_weave, draw_stroke, StrokeTexture};
use strokes::{jitter_colour, random_local_order, start_strokes, GradientField};

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

#[inline]
fn plain(paint: &[f32; 4]) -> [f32; 3] {
    [paint[0], paint[1], paint[2]]
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
}
