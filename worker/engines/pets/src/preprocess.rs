//! The detector's input: the photo letterboxed into the top-left corner of a
//! 416x416 canvas (zero pixels elsewhere), bilinear with half-pixel centres, in
//! BGR order normalised with NanoDet's training mean and deviation.
//!
//! Letterboxing rather than stretching keeps an animal's proportions in
//! panoramas and portrait photos; on the fixture photos it also scored the
//! animals higher than stretching did (docs/pets.md).

use image::RgbImage;

use crate::net::{bilinear_source, INPUT_SIZE};

/// NanoDet's normalisation, in the network's B, G, R channel order.
const MEAN_BGR: [f32; 3] = [103.53, 116.28, 123.675];
const STD_BGR: [f32; 3] = [57.375, 57.12, 58.395];

/// Where a photo sits in the network input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// Input pixels per photo pixel.
    pub scale: f32,
    pub width: u32,
    pub height: u32,
}

impl Letterbox {
    pub fn of(width: u32, height: u32) -> Self {
        let scale = INPUT_SIZE as f32 / width.max(height).max(1) as f32;
        Self {
            scale,
            width,
            height,
        }
    }

    /// Size of the resized photo inside the canvas.
    pub fn resized(&self) -> (usize, usize) {
        let side = |v: u32| ((v as f32 * self.scale).round() as usize).clamp(1, INPUT_SIZE);
        (side(self.width), side(self.height))
    }
}

/// The normalised `[3, 416, 416]` input of one photo (BGR planes).
pub fn letterbox_input(photo: &RgbImage) -> (Vec<f32>, Letterbox) {
    let letterbox = Letterbox::of(photo.width(), photo.height());
    let (out_w, out_h) = letterbox.resized();
    let (in_w, in_h) = (photo.width() as usize, photo.height() as usize);
    let raw = photo.as_raw();
    let plane = INPUT_SIZE * INPUT_SIZE;
    let mut input = vec![0f32; 3 * plane];
    // The canvas outside the photo holds raw pixel value 0, normalised.
    for (c, chunk) in input.chunks_exact_mut(plane).enumerate() {
        chunk.fill(-MEAN_BGR[c] / STD_BGR[c]);
    }
    let columns: Vec<_> = (0..out_w)
        .map(|x| bilinear_source(x, in_w, out_w))
        .collect();
    // One photo row resized horizontally, cached for the two rows it serves.
    let resize_row = |y: usize| -> Vec<[f32; 3]> {
        let row = &raw[y * in_w * 3..(y + 1) * in_w * 3];
        columns
            .iter()
            .map(|&(a, b, t)| {
                let mut px = [0f32; 3];
                for (c, v) in px.iter_mut().enumerate() {
                    let (pa, pb) = (row[a * 3 + c] as f32, row[b * 3 + c] as f32);
                    *v = pa + (pb - pa) * t;
                }
                px
            })
            .collect()
    };
    let mut cache: Option<(usize, Vec<[f32; 3]>)> = None;
    for oy in 0..out_h {
        let (a, b, t) = bilinear_source(oy, in_h, out_h);
        let top = match cache.take() {
            Some((y, row)) if y == a => row,
            _ => resize_row(a),
        };
        let bottom = if b == a { top.clone() } else { resize_row(b) };
        for ox in 0..out_w {
            for rgb in 0..3 {
                let value = top[ox][rgb] + (bottom[ox][rgb] - top[ox][rgb]) * t;
                let c = 2 - rgb; // RGB photo, BGR network
                input[c * plane + oy * INPUT_SIZE + ox] = (value - MEAN_BGR[c]) / STD_BGR[c];
            }
        }
        cache = Some((b, bottom));
    }
    (input, letterbox)
}

/// The normalised `[3, h, w]` BGR planes of an image already at network size.
pub fn normalized_planes(image: &RgbImage) -> Vec<f32> {
    let plane = (image.width() * image.height()) as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in image.pixels().enumerate() {
        for rgb in 0..3 {
            let c = 2 - rgb;
            out[c * plane + i] = (px.0[rgb] as f32 - MEAN_BGR[c]) / STD_BGR[c];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_pixel_rule_matches_tensorflow_at_the_edges() {
        // Upsampling 2x: the first output sits a quarter pixel before the first input.
        assert_eq!(bilinear_source(0, 13, 26), (0, 0, 0.75));
        let (a, b, t) = bilinear_source(1, 13, 26);
        assert_eq!((a, b), (0, 1));
        assert!((t - 0.25).abs() < 1e-6);
        assert_eq!(bilinear_source(25, 13, 26).1, 12);
        // Downsampling 2x averages pairs.
        let (a, b, t) = bilinear_source(3, 52, 26);
        assert_eq!((a, b), (6, 7));
        assert!((t - 0.5).abs() < 1e-6);
    }

    #[test]
    fn letterbox_keeps_the_aspect_ratio_in_the_top_left_corner() {
        let photo = RgbImage::from_pixel(832, 208, image::Rgb([255, 255, 255]));
        let (input, letterbox) = letterbox_input(&photo);
        assert_eq!(letterbox.resized(), (416, 104));
        let white_b = (255.0 - MEAN_BGR[0]) / STD_BGR[0];
        let empty_b = -MEAN_BGR[0] / STD_BGR[0];
        assert!((input[103 * INPUT_SIZE + 415] - white_b).abs() < 1e-5);
        assert!((input[104 * INPUT_SIZE] - empty_b).abs() < 1e-5);
    }

    #[test]
    fn a_one_pixel_photo_fills_at_least_one_input_pixel() {
        let photo = RgbImage::from_pixel(1, 5000, image::Rgb([10, 20, 30]));
        let (_, letterbox) = letterbox_input(&photo);
        assert_eq!(letterbox.resized(), (1, 416));
    }
}
