//! dlib's MMOD CNN face detector (FORMAT.md sections 3 and 6) on candle.

use std::borrow::Cow;

use candle_core::{Device, Tensor};
use image::RgbImage;

use crate::dlib_format::DlibReader;
use crate::dnn::{read_dnn, LayerRecord};
use crate::error::{FaceError, Result, TensorContext};
use crate::geometry::{DRect, Rect};
use crate::layers::FusedConv;
use crate::native::FeatureBatch;
use crate::pyramid::{tiled_layout, tiled_pyramid_tensor, upsample_2x, upsampled_size};

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

/// Input pixels (`rows * cols` of the padded pyramid tensors) one batched network
/// pass may hold (48 MiB of input; buffers far above that cost more in fresh-page
/// faults than batching gains on the CPU); a single larger photo still runs, alone.
const BATCH_PIXELS: usize = 4 << 20;

/// Photos per batched network pass at most.
const BATCH_IMAGES: usize = 32;

/// A batch's padded area may exceed the sum of its photos' own areas by this factor.
const BATCH_PADDING_WASTE: f64 = 1.25;

/// How the network runs: the CPU engine of [`crate::native`] (the default on the CPU)
/// or candle's tensor ops (any device; the only choice on CUDA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetectorEngine {
    Native,
    Candle,
}

/// Where one photo's detection starts: its working size and pyramid tensor size.
#[derive(Debug, Clone, Copy)]
struct Plan {
    index: usize,
    /// Working (possibly downscaled) size and the factor applied.
    work: (u32, u32),
    scale: f64,
    /// Pyramid tensor (rows, cols).
    tensor: (usize, usize),
}

#[derive(Debug, Clone)]
struct Window {
    width: f64,
    height: f64,
}

/// The loaded detector.
#[derive(Debug, Clone)]
pub struct FaceDetector {
    layers: Vec<FusedConv>,
    engine: DetectorEngine,
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
        // Each con layer with the affine and relu after it as one fused layer.
        let records = &file.layers;
        let mut layers = Vec::new();
        let mut i = 0;
        while i < records.len() {
            let conv = &records[i];
            if !matches!(conv, LayerRecord::Conv { .. }) {
                return Err(layout(format!("unsupported detector layer {conv:?}")));
            }
            i += 1;
            let affine = match records.get(i) {
                Some(affine @ LayerRecord::Affine { .. }) => {
                    i += 1;
                    Some(affine)
                }
                _ => None,
            };
            let relu = matches!(records.get(i), Some(LayerRecord::Relu));
            if relu {
                i += 1;
            }
            layers.push(FusedConv::from_records(conv, affine, relu, device, FILE)?);
        }
        if layers.last().map(|l| l.native.out_channels) != Some(1) {
            return Err(layout("the last con layer must have one filter"));
        }
        let (map_scale, map_offset) = output_to_input_map(&file.layers);
        let engine = if device.is_cpu() {
            DetectorEngine::Native
        } else {
            DetectorEngine::Candle
        };
        Ok(Self {
            layers,
            engine,
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

    /// Chooses how the network runs; [`DetectorEngine::Native`] needs the CPU device
    /// (elsewhere it falls back to candle).
    pub fn with_engine(mut self, engine: DetectorEngine) -> Self {
        self.engine = if self.device.is_cpu() {
            engine
        } else {
            DetectorEngine::Candle
        };
        self
    }

    pub fn engine(&self) -> DetectorEngine {
        self.engine
    }

    /// Detects faces in each image, as [`Self::detect`] does one by one, with photos
    /// of similar pyramid size stacked into one network pass: their pyramid tensors
    /// are zero-padded to the batch's size and every layer treats each photo's own
    /// corner as the whole image (outside it reads zeros), so results do not depend
    /// on the batch. Batches are bounded by [`BATCH_PIXELS`] and
    /// [`BATCH_PADDING_WASTE`].
    pub fn detect_batch(&self, images: &[&RgbImage]) -> Result<Vec<Vec<Detection>>> {
        let mut results = vec![Vec::new(); images.len()];
        for group in self.plan_batches(images) {
            for (plan, detections) in group.iter().zip(self.detect_group(images, &group)?) {
                results[plan.index] = detections;
            }
        }
        Ok(results)
    }

    /// How [`Self::detect_batch`] groups these images: indices per network pass
    /// (images too small to hold a face are in none).
    pub fn batches(&self, images: &[&RgbImage]) -> Vec<Vec<usize>> {
        self.plan_batches(images)
            .iter()
            .map(|g| g.iter().map(|p| p.index).collect())
            .collect()
    }

    fn plan_batches(&self, images: &[&RgbImage]) -> Vec<Vec<Plan>> {
        let mut plans: Vec<Plan> = images
            .iter()
            .enumerate()
            .filter_map(|(index, img)| self.plan(index, img))
            .collect();
        plans.sort_by_key(|p| (p.tensor.0, p.tensor.1, p.index));
        batch_groups(&plans)
            .into_iter()
            .map(<[Plan]>::to_vec)
            .collect()
    }

    /// dlib's `cnn_face_detection_model_v1(img, 1)`: 2x upsampling, tiled pyramid,
    /// network, score map -> rectangles, NMS, back to original pixels.
    pub fn detect(&self, img: &RgbImage) -> Result<Vec<Detection>> {
        Ok(self.detect_batch(&[img])?.pop().unwrap_or_default())
    }

    /// Working size and pyramid tensor size of a photo; `None` when it is too small
    /// to hold a detection.
    fn plan(&self, index: usize, img: &RgbImage) -> Option<Plan> {
        if img.width() == 0 || img.height() == 0 {
            return None;
        }
        let longest = img.width().max(img.height());
        let (work, scale) = if longest > MAX_DETECTION_SIDE {
            let s = f64::from(MAX_DETECTION_SIDE) / f64::from(longest);
            let w = ((f64::from(img.width()) * s).round() as u32).max(1);
            let h = ((f64::from(img.height()) * s).round() as u32).max(1);
            ((w, h), s)
        } else {
            ((img.width(), img.height()), 1.0)
        };
        let (up_w, up_h) = upsampled_size(work.0, work.1);
        if up_w < 5 || up_h < 5 {
            return None;
        }
        let (_, tensor) = tiled_layout(
            up_h as usize,
            up_w as usize,
            self.pyramid_padding,
            self.pyramid_outer_padding,
        );
        Some(Plan {
            index,
            work,
            scale,
            tensor,
        })
    }

    /// One network pass over a group of photos.
    fn detect_group(&self, images: &[&RgbImage], group: &[Plan]) -> Result<Vec<Vec<Detection>>> {
        let rows = group.iter().map(|p| p.tensor.0).max().unwrap_or(0);
        let cols = group.iter().map(|p| p.tensor.1).max().unwrap_or(0);
        let mut data = vec![0f32; group.len() * 3 * rows * cols];
        let mut levels = Vec::with_capacity(group.len());
        for (i, plan) in group.iter().enumerate() {
            let img = images[plan.index];
            let work: Cow<'_, RgbImage> = if plan.scale == 1.0 {
                Cow::Borrowed(img)
            } else {
                Cow::Owned(image::imageops::resize(
                    img,
                    plan.work.0,
                    plan.work.1,
                    image::imageops::FilterType::Triangle,
                ))
            };
            let upsampled = upsample_2x(&work);
            let (pyramid, rects, (r, c)) = tiled_pyramid_tensor(
                &upsampled,
                self.avg_rgb,
                self.pyramid_padding,
                self.pyramid_outer_padding,
            );
            debug_assert_eq!((r, c), plan.tensor);
            for ch in 0..3 {
                for y in 0..r {
                    let dst = ((i * 3 + ch) * rows + y) * cols;
                    let src = (ch * r + y) * c;
                    data[dst..dst + c].copy_from_slice(&pyramid[src..src + c]);
                }
            }
            levels.push(rects);
        }
        let input = FeatureBatch {
            data,
            channels: 3,
            rows,
            cols,
            valid: group.iter().map(|p| p.tensor).collect(),
        };
        let scores = match self.engine {
            DetectorEngine::Native => self.native_forward(input),
            DetectorEngine::Candle => self.candle_forward(input)?,
        };
        Ok(group
            .iter()
            .enumerate()
            .map(|(i, plan)| {
                let plane = scores.plane(i, 0);
                let (out_rows, out_cols) = scores.valid[i];
                let mut candidates = Vec::new();
                for r in 0..out_rows {
                    for c in 0..out_cols {
                        let score = plane[r * scores.cols + c];
                        if score > 0.0 {
                            candidates.push(Detection {
                                rect: self.cell_to_rect(r, c, &levels[i]),
                                confidence: score,
                            });
                        }
                    }
                }
                let mut detections = self.non_max_suppression(candidates);
                for d in &mut detections {
                    d.rect = to_original(d.rect, plan.scale);
                }
                detections
            })
            .collect())
    }

    fn native_forward(&self, input: FeatureBatch) -> FeatureBatch {
        let threads = candle_core::utils::get_num_threads();
        let mut x = input;
        for layer in &self.layers {
            x = layer.native.forward(&x, threads);
        }
        x
    }

    /// The batch through candle's ops; after every layer each photo's values outside
    /// its own corner are zeroed, which is what the next layer's padding expects.
    fn candle_forward(&self, input: FeatureBatch) -> Result<FeatureBatch> {
        let n = input.len();
        let mut valid = input.valid;
        let mut x = Tensor::from_vec(input.data, (n, 3, input.rows, input.cols), &self.device)
            .ctx("detector input")?;
        for layer in &self.layers {
            x = layer.candle_forward(&x)?;
            let (_, _, rows, cols) = x.dims4().ctx("feature map")?;
            valid = valid
                .iter()
                .map(|&(r, c)| {
                    let (r, c) = (layer.native.out_len(r), layer.native.out_len(c));
                    if r == 0 || c == 0 {
                        (0, 0)
                    } else {
                        (r, c)
                    }
                })
                .collect();
            if valid.iter().any(|&v| v != (rows, cols)) {
                let mut mask = vec![0f32; n * rows * cols];
                for (i, &(r, c)) in valid.iter().enumerate() {
                    for y in 0..r {
                        let start = (i * rows + y) * cols;
                        mask[start..start + c].fill(1.0);
                    }
                }
                let mask =
                    Tensor::from_vec(mask, (n, 1, rows, cols), &self.device).ctx("valid mask")?;
                x = x.broadcast_mul(&mask).ctx("valid mask")?;
            }
        }
        let (_, channels, rows, cols) = x.dims4().ctx("score map")?;
        let data = x.flatten_all().and_then(|t| t.to_vec1()).ctx("score map")?;
        Ok(FeatureBatch {
            data,
            channels,
            rows,
            cols,
            valid,
        })
    }

    /// The network on a prepared `[n,3,rows,cols]` tensor through candle's ops (no
    /// per-image masking); returns the `[n,1,rows,cols]` score map.
    pub fn forward(&self, input: &Tensor) -> Result<Tensor> {
        let mut x = input.clone();
        for layer in &self.layers {
            x = layer.candle_forward(&x)?;
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

/// Network-image rectangle -> original pixels: undo the 2x upsampling, then the
/// working-copy downscale.
fn to_original(rect: Rect, scale: f64) -> Rect {
    let down = DRect {
        left: rect.left as f64,
        top: rect.top as f64,
        right: rect.right as f64,
        bottom: rect.bottom as f64,
    }
    .down2();
    if scale == 1.0 {
        down.round()
    } else {
        DRect {
            left: down.left / scale,
            top: down.top / scale,
            right: down.right / scale,
            bottom: down.bottom / scale,
        }
        .round()
    }
}

/// Consecutive runs of the size-sorted plans that may share a pass: padded area at
/// most [`BATCH_PADDING_WASTE`] times their own, within [`BATCH_PIXELS`] and
/// [`BATCH_IMAGES`].
fn batch_groups(plans: &[Plan]) -> Vec<&[Plan]> {
    let mut groups = Vec::new();
    let mut start = 0;
    while start < plans.len() {
        let (mut rows, mut cols, mut own) = (0usize, 0usize, 0usize);
        let mut end = start;
        while end < plans.len() && end - start < BATCH_IMAGES {
            let (r, c) = plans[end].tensor;
            let (nr, nc) = (rows.max(r), cols.max(c));
            let count = end - start + 1;
            let padded = count * nr * nc;
            let fits = padded as f64 <= BATCH_PADDING_WASTE * (own + r * c) as f64
                && padded <= BATCH_PIXELS;
            if end > start && !fits {
                break;
            }
            (rows, cols, own) = (nr, nc, own + r * c);
            end += 1;
        }
        groups.push(&plans[start..end]);
        start = end;
    }
    groups
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
