//! MediaPipe's pre- and post-processing around the segmentation network, on the
//! CPU graph's terms (`selfie_segmentation_cpu.pbtxt`):
//!
//! * **Input** (`ImageToTensorCalculator`, OpenCV converter, whole image as the
//!   region, `keep_aspect_ratio: false`, `BORDER_ZERO`): the image is warped onto
//!   the model's input size with `cv::warpPerspective(INTER_LINEAR)`. For a whole
//!   image that maps output pixel `(u, v)` to source position
//!   `(u * W / w_out, v * H / h_out)` (not pixel-centre aligned), sampled
//!   bilinearly with OpenCV's fixed-point remap (positions in 1/32 pixel, weights
//!   out of 2^15, round to u8), taps outside the image reading 0. The u8 result is
//!   scaled to [0, 1] by `* (1/255)` in f32.
//! * **Output** (`TensorsToSegmentationCalculator`, activation NONE: the model
//!   already ends in a sigmoid): the probability map is resized to the image size
//!   with `cv::resize(INTER_LINEAR)`: half-pixel centres, edge clamped, f32.

use image::{GrayImage, RgbImage};

/// OpenCV's `INTER_BITS`: sub-pixel positions are quantised to 1/32.
const INTER_BITS: u32 = 5;
const INTER_TAB_SIZE: i64 = 1 << INTER_BITS;
/// OpenCV's `INTER_REMAP_COEF_BITS`: bilinear weights sum to 2^15.
const COEF_BITS: u32 = 15;

/// Integer source pixel and 1/32 fraction of each output coordinate.
fn sample_positions(out: u32, src: u32) -> Vec<(i64, i64)> {
    let scale = f64::from(src) / f64::from(out);
    (0..out)
        .map(|u| {
            let fixed = (f64::from(u) * scale * INTER_TAB_SIZE as f64).round_ties_even() as i64;
            (fixed >> INTER_BITS, fixed & (INTER_TAB_SIZE - 1))
        })
        .collect()
}

/// The model input MediaPipe's CPU graph builds from `image`: `width x height`
/// RGB, u8 (see the module docs).
pub fn warp_to_input(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (w, h) = (i64::from(image.width()), i64::from(image.height()));
    let xs = sample_positions(width, image.width());
    let ys = sample_positions(height, image.height());
    let raw = image.as_raw();
    let pixel = |x: i64, y: i64, c: usize| -> i64 {
        if x < 0 || y < 0 || x >= w || y >= h {
            0
        } else {
            i64::from(raw[((y * w + x) * 3) as usize + c])
        }
    };
    let mut out = RgbImage::new(width, height);
    for (v, &(iy, fy)) in ys.iter().enumerate() {
        for (u, &(ix, fx)) in xs.iter().enumerate() {
            // Weights of OpenCV's bilinear table: products of (32 - f, f), scaled
            // to 2^15; exact for INTER_LINEAR.
            let scale = (1 << COEF_BITS) / (INTER_TAB_SIZE * INTER_TAB_SIZE);
            let w00 = (INTER_TAB_SIZE - fy) * (INTER_TAB_SIZE - fx) * scale;
            let w01 = (INTER_TAB_SIZE - fy) * fx * scale;
            let w10 = fy * (INTER_TAB_SIZE - fx) * scale;
            let w11 = fy * fx * scale;
            let mut rgb = [0u8; 3];
            for (c, value) in rgb.iter_mut().enumerate() {
                let sum = pixel(ix, iy, c) * w00
                    + pixel(ix + 1, iy, c) * w01
                    + pixel(ix, iy + 1, c) * w10
                    + pixel(ix + 1, iy + 1, c) * w11;
                *value = ((sum + (1 << (COEF_BITS - 1))) >> COEF_BITS).clamp(0, 255) as u8;
            }
            out.put_pixel(u as u32, v as u32, image::Rgb(rgb));
        }
    }
    out
}

/// The f32 scale of u8 input values (MediaPipe: `convertTo(CV_32F, 1/255.f)`).
pub const INPUT_SCALE: f32 = 1.0 / 255.0;

/// Planar `[3, H, W]` f32 values of a model-size input image, in [0, 1].
pub fn input_planes(input: &RgbImage) -> Vec<f32> {
    let plane = (input.width() * input.height()) as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in input.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = f32::from(px[c]) * INPUT_SCALE;
        }
    }
    out
}

/// A person probability map (row-major, values in [0, 1]).
#[derive(Debug, Clone, PartialEq)]
pub struct ProbabilityMap {
    pub width: u32,
    pub height: u32,
    pub data: Vec<f32>,
}

/// Source index pairs and weights of `cv::resize(INTER_LINEAR)` along one axis.
fn resize_taps(out: u32, src: u32) -> Vec<(usize, usize, f32)> {
    let scale = f64::from(src) / f64::from(out);
    let last = src as usize - 1;
    (0..out)
        .map(|d| {
            let f = ((f64::from(d) + 0.5) * scale - 0.5) as f32;
            let s = f.floor();
            let (mut i, mut frac) = (s as i64, f - s);
            if i < 0 {
                i = 0;
                frac = 0.0;
            }
            let mut i = i as usize;
            if i >= last {
                i = last;
                frac = 0.0;
            }
            (i, (i + 1).min(last), frac)
        })
        .collect()
}

impl ProbabilityMap {
    pub fn get(&self, x: u32, y: u32) -> f32 {
        self.data[(y * self.width + x) as usize]
    }

    /// Bilinear resize as `cv::resize(INTER_LINEAR)` does for f32 maps: half-pixel
    /// centres, edges clamped, horizontal pass then vertical.
    pub fn resize(&self, width: u32, height: u32) -> ProbabilityMap {
        if width == self.width && height == self.height {
            return self.clone();
        }
        if self.width == 0 || self.height == 0 || width == 0 || height == 0 {
            return ProbabilityMap {
                width,
                height,
                data: vec![0.0; (width * height) as usize],
            };
        }
        let xs = resize_taps(width, self.width);
        let ys = resize_taps(height, self.height);
        let src_w = self.width as usize;
        // Horizontal pass on every source row, then blend rows.
        let rows: Vec<Vec<f32>> = (0..self.height as usize)
            .map(|y| {
                let row = &self.data[y * src_w..(y + 1) * src_w];
                xs.iter()
                    .map(|&(a, b, f)| row[a] * (1.0 - f) + row[b] * f)
                    .collect()
            })
            .collect();
        let mut data = Vec::with_capacity((width * height) as usize);
        for &(a, b, f) in &ys {
            let (top, bottom) = (&rows[a], &rows[b]);
            data.extend(top.iter().zip(bottom).map(|(t, b)| t * (1.0 - f) + b * f));
        }
        ProbabilityMap {
            width,
            height,
            data,
        }
    }

    /// 0..255 mask, person = 255 (`round(p * 255)`).
    pub fn to_mask(&self) -> GrayImage {
        let pixels = self
            .data
            .iter()
            .map(|p| (p.clamp(0.0, 1.0) * 255.0).round() as u8)
            .collect();
        GrayImage::from_raw(self.width, self.height, pixels)
            .unwrap_or_else(|| GrayImage::new(self.width, self.height))
    }
}
