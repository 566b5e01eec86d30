//! dlib's MMOD CNN face detector (FORMAT.md sections 3 and 6) on candle.

use candle_core::{Device, Tensor};
use image::RgbImage;

use crate::dlib_format::DlibReader;
use crate::dnn::{read_dnn, LayerRecord};
use crate::error::{FaceError, Result, TensorContext};
use crate::geometry::{DRect, Rect};
use crate::layers::{relu, Affine, Conv};
use crate::pyramid::{tiled_pyramid_tensor, upsample_2x};

const FILE: &str = "mmod_human_face_detector.dat";

/// Longest side (in original pixels) the detector works on. Bigger images are
/// downscaled for detection only, so memory stays bounded (an 8000x8000 photo
/// would otherwise need a ~16000x22000 tensor after the 2x upsampling); boxes are
/// scaled back to original pixels. Faces in such photos are large, so nothing
/// detectable is lost. Fixture images are all below this size, so parity holds.
pub const MAX_DETECTION_SIDE: u32 = 1600;

/// One detection in original-image pixels (inclusive rectangle) with its raw score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    pub rect: Rect,
    pub confidence: f32,
}

#[derive(Debug, Clone)]
enum Step {
    Conv(Conv),
    Affine(Affine),
    Relu,
}

#[derive(Debug, Clone)]
struct Window {
    width: f64,
    height: f64,
}

/// The loaded detector.
#[derive(Debug, Clone)]
pub struct FaceDetector {
    steps: Vec<Step>,
    avg_rgb: [f32; 3],
    pyramid_padding: usize,
    pyramid_outer_padding: usize,
    window: Window,
    nms_iou: f64,
    nms_covered: f64,
    /// Output cell -> input tensor coordinate: `x = scale*c + offset`.
    map_scale: f64,
    map_offset: f64,
    device: Device,
}

fn layout(what: impl Into<String>) -> FaceError {
    FaceError::Layout {
        file: FILE.to_string(),
        what: what.into(),
    }
}

struct MmodOptions {
    window: Window,
    nms_iou: f64,
    nms_covered: f64,
}

fn read_mmod_options(r: &mut DlibReader<'_>) -> Result<MmodOptions> {
    let version = r.int()?;
    let windows: Vec<Window> = if version == 1 {
        vec![Window {
            width: r.usize()? as f64,
            height: r.usize()? as f64,
        }]
    } else {
        let n = r.usize()?;
        let mut list = Vec::new();
        for _ in 0..n {
            let wv = r.int()?;
            let w = Window {
                width: r.usize()? as f64,
                height: r.usize()? as f64,
            };
            if wv == 2 {
                r.string()?;
            }
            list.push(w);
        }
        list
    };
    for _ in 0..3 {
        r.real()?; // loss weights and the truth-match threshold (training only)
    }
    let nms_iou = r.real()?;
    let nms_covered = r.real()?;
    r.real()?;
    r.real()?;
    if version >= 3 {
        r.byte()?;
    }
    if version >= 4 && r.boolean()? {
        return Err(r.error("bounding-box regression is not supported"));
    }
    if version >= 4 {
        r.real()?;
    }
    let mut windows = windows.into_iter();
    let window = windows
        .next()
        .ok_or_else(|| r.error("no detector window"))?;
    if windows.next().is_some() {
        return Err(r.error("only single-window detectors are supported"));
    }
    Ok(MmodOptions {
        window,
        nms_iou,
        nms_covered,
    })
}

impl FaceDetector {
    pub fn from_bytes(bytes: &[u8], device: &Device) -> Result<Self> {
        let mut reader = DlibReader::new(bytes, FILE);
        let mut options = None;
        let file = read_dnn(&mut reader, |r, loss| {
            if loss != "loss_mmod_" {
                return Err(r.error(format!("expected loss_mmod_, found {loss}")));
            }
            options = Some(read_mmod_options(r)?);
            Ok(())
        })?;
        let options = options.ok_or_else(|| layout("missing mmod options"))?;
        if !file.input.kind.starts_with("input_rgb_image_pyramid") {
            return Err(layout(format!(
                "unexpected input layer {}",
                file.input.kind
            )));
        }
        let mut steps = Vec::new();
        for record in &file.layers {
            steps.push(match record {
                LayerRecord::Conv { .. } => Step::Conv(Conv::from_record(record, device, FILE)?),
                LayerRecord::Affine { .. } => {
                    Step::Affine(Affine::from_record(record, device, FILE)?)
                }
                LayerRecord::Relu => Step::Relu,
                other => return Err(layout(format!("unsupported detector layer {other:?}"))),
            });
        }
        let (map_scale, map_offset) = output_to_input_map(&file.layers);
        Ok(Self {
            steps,
            avg_rgb: file.input.avg_rgb,
            pyramid_padding: file.input.pyramid_padding,
            pyramid_outer_padding: file.input.pyramid_outer_padding,
            window: options.window,
            nms_iou: options.nms_iou,
            nms_covered: options.nms_covered,
            map_scale,
            map_offset,
            device: device.clone(),
        })
    }

    /// Detects faces in each image (see [`Self::detect`]).
    pub fn detect_batch(&self, images: &[&RgbImage]) -> Result<Vec<Vec<Detection>>> {
        images.iter().map(|img| self.detect(img)).collect()
    }

    /// dlib's `cnn_face_detection_model_v1(img, 1)`: 2x upsampling, tiled pyramid,
    /// network, score map -> rectangles, NMS, back to original pixels.
    pub fn detect(&self, img: &RgbImage) -> Result<Vec<Detection>> {
        if img.width() == 0 || img.height() == 0 {
            return Ok(Vec::new());
        }
        let longest = img.width().max(img.height());
        let (work, scale) = if longest > MAX_DETECTION_SIDE {
            let s = f64::from(MAX_DETECTION_SIDE) / f64::from(longest);
            let w = ((f64::from(img.width()) * s).round() as u32).max(1);
            let h = ((f64::from(img.height()) * s).round() as u32).max(1);
            (
                image::imageops::resize(img, w, h, image::imageops::FilterType::Triangle),
                s,
            )
        } else {
            (img.clone(), 1.0)
        };
        let upsampled = upsample_2x(&work);
        let mut detections = self.detect_in_upsampled(&upsampled)?;
        for d in &mut detections {
            let down = DRect {
                left: d.rect.left as f64,
                top: d.rect.top as f64,
                right: d.rect.right as f64,
                bottom: d.rect.bottom as f64,
            }
            .down2();
            d.rect = if scale == 1.0 {
                down.round()
            } else {
                DRect {
                    left: down.left / scale,
                    top: down.top / scale,
                    right: down.right / scale,
                    bottom: down.bottom / scale,
                }
                .round()
            };
        }
        Ok(detections)
    }

    /// Detections in the coordinates of the (already upsampled) network image.
    fn detect_in_upsampled(&self, img: &RgbImage) -> Result<Vec<Detection>> {
        if img.height() < 5 || img.width() < 5 {
            return Ok(Vec::new());
        }
        let (data, rects, (rows, cols)) = tiled_pyramid_tensor(
            img,
            self.avg_rgb,
            self.pyramid_padding,
            self.pyramid_outer_padding,
        );
        let input =
            Tensor::from_vec(data, (1, 3, rows, cols), &self.device).ctx("detector input")?;
        let scores = self.forward(&input)?;
        let (_, _, out_rows, out_cols) = scores.dims4().ctx("score map")?;
        let scores: Vec<f32> = scores
            .flatten_all()
            .and_then(|t| t.to_vec1())
            .ctx("score map")?;
        let mut candidates = Vec::new();
        for r in 0..out_rows {
            for c in 0..out_cols {
                let score = scores[r * out_cols + c];
                if score > 0.0 {
                    let rect = self.cell_to_rect(r, c, &rects);
                    candidates.push(Detection {
                        rect,
                        confidence: score,
                    });
                }
            }
        }
        Ok(self.non_max_suppression(candidates))
    }

    /// The network on a prepared tensor; returns the `[n,1,rows,cols]` score map.
    pub fn forward(&self, input: &Tensor) -> Result<Tensor> {
        let mut x = input.clone();
        for step in &self.steps {
            x = match step {
                Step::Conv(conv) => conv.forward(&x)?,
                Step::Affine(affine) => affine.forward(&x)?,
                Step::Relu => relu(&x)?,
            };
        }
        Ok(x)
    }

    /// Score-map cell -> rectangle in the upsampled image (`tiled_pyramid_to_image`).
    fn cell_to_rect(&self, row: usize, col: usize, levels: &[Rect]) -> Rect {
        let x = self.map_scale * col as f64 + self.map_offset;
        let y = self.map_scale * row as f64 + self.map_offset;
        let window = DRect::centered(x, y, self.window.width, self.window.height);
        let (cx, cy) = window.center();
        let (ix, iy) = ((cx + 0.5).floor() as i64, (cy + 0.5).floor() as i64);
        let level = pick_level(levels, ix, iy);
        let origin = levels[level];
        let up = |v: f64, o: i64| (0..level).fold(v - o as f64, |acc, _| acc * 6.0 / 5.0 + 0.3);
        DRect {
            left: up(window.left, origin.left),
            top: up(window.top, origin.top),
            right: up(window.right, origin.left),
            bottom: up(window.bottom, origin.top),
        }
        .round()
    }

    /// Greedy NMS in descending score order with dlib's `test_box_overlap`.
    fn non_max_suppression(&self, mut candidates: Vec<Detection>) -> Vec<Detection> {
        candidates.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        let mut kept: Vec<Detection> = Vec::new();
        for cand in candidates {
            if !kept.iter().any(|k| self.overlaps(&k.rect, &cand.rect)) {
                kept.push(cand);
            }
        }
        kept
    }

    fn overlaps(&self, a: &Rect, b: &Rect) -> bool {
        let inner = a.intersect(b).area() as f64;
        if inner == 0.0 {
            return false;
        }
        // dlib divides by the box enclosing both, not by the union.
        let outer = a.enclose(b).area() as f64;
        inner / outer > self.nms_iou
            || inner / a.area() as f64 > self.nms_covered
            || inner / b.area() as f64 > self.nms_covered
    }
}

/// The level containing the point, else the nearest one (first match wins).
fn pick_level(levels: &[Rect], x: i64, y: i64) -> usize {
    let mut best = 0;
    let mut best_distance = f64::INFINITY;
    for (k, r) in levels.iter().enumerate() {
        if r.contains(x, y) {
            return k;
        }
        let dx = (x.clamp(r.left, r.right) - x) as f64;
        let dy = (y.clamp(r.top, r.bottom) - y) as f64;
        let d = dx.hypot(dy);
        if d < best_distance {
            best_distance = d;
            best = k;
        }
    }
    best
}

/// Output cell -> input tensor coordinate as `scale*c + offset`, composing
/// `p -> p*stride - pad + k/2` from the last conv back to the first.
fn output_to_input_map(layers: &[LayerRecord]) -> (f64, f64) {
    let mut scale = 1.0;
    let mut offset = 0.0;
    for layer in layers.iter().rev() {
        if let LayerRecord::Conv {
            kernel,
            stride,
            padding,
            ..
        } = layer
        {
            scale *= stride.0 as f64;
            offset = offset * stride.0 as f64 - padding.0 as f64 + (kernel.0 / 2) as f64;
        }
    }
    (scale, offset)
}
