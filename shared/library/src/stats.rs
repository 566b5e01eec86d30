//! Cheap per-photo statistics: mean colour, brightness, sharpness, colourfulness.

use image::imageops::FilterType;
use image::DynamicImage;

use crate::metadata::ImageStats;

/// Statistics are computed on a copy at most this wide, so cost does not grow with megapixels.
const WORKING_WIDTH: u32 = 256;

pub fn image_stats(image: &DynamicImage) -> ImageStats {
    let small = if image.width() > WORKING_WIDTH {
        image.resize(WORKING_WIDTH, u32::MAX, FilterType::Triangle)
    } else {
        image.clone()
    };
    let rgb = small.to_rgb8();
    let (w, h) = rgb.dimensions();
    let n = f64::from(w * h).max(1.0);
    let mut sums = [0f64; 3];
    let mut luma = vec![0f32; (w * h) as usize];
    let mut saturation_sum = 0f64;
    let mut saturation_sq = 0f64;
    for (i, pixel) in rgb.pixels().enumerate() {
        let [r, g, b] = pixel.0;
        sums[0] += f64::from(r);
        sums[1] += f64::from(g);
        sums[2] += f64::from(b);
        luma[i] = (0.2126 * f32::from(r) + 0.7152 * f32::from(g) + 0.0722 * f32::from(b)) / 255.0;
        let max = r.max(g).max(b);
        let min = r.min(g).min(b);
        let s = if max == 0 {
            0.0
        } else {
            f64::from(max - min) / f64::from(max)
        };
        saturation_sum += s;
        saturation_sq += s * s;
    }
    let mean_s = saturation_sum / n;
    let spread = (saturation_sq / n - mean_s * mean_s).max(0.0).sqrt();
    ImageStats {
        mean_rgb: [
            (sums[0] / n) as u8,
            (sums[1] / n) as u8,
            (sums[2] / n) as u8,
        ],
        brightness: (luma.iter().map(|&l| f64::from(l)).sum::<f64>() / n) as f32,
        sharpness: laplacian_variance(&luma, w as usize, h as usize),
        colourfulness: ((mean_s + spread) as f32).clamp(0.0, 1.0),
    }
}

/// Variance of the 4-neighbour Laplacian: blur removes high frequencies, so blurry photos score low.
fn laplacian_variance(luma: &[f32], w: usize, h: usize) -> f32 {
    if w < 3 || h < 3 {
        return 0.0;
    }
    let mut sum = 0f64;
    let mut sq = 0f64;
    let mut count = 0f64;
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let c = luma[y * w + x];
            let l = luma[y * w + x - 1]
                + luma[y * w + x + 1]
                + luma[(y - 1) * w + x]
                + luma[(y + 1) * w + x]
                - 4.0 * c;
            sum += f64::from(l);
            sq += f64::from(l) * f64::from(l);
            count += 1.0;
        }
    }
    let mean = sum / count;
    ((sq / count - mean * mean).max(0.0) * 1000.0) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage};

    #[test]
    fn sharp_beats_blurred_and_colour_is_measured() {
        let checker = RgbImage::from_fn(64, 64, |x, y| {
            if (x / 2 + y / 2) % 2 == 0 {
                Rgb([255, 0, 0])
            } else {
                Rgb([0, 0, 255])
            }
        });
        let sharp = DynamicImage::ImageRgb8(checker);
        let blurred = sharp.blur(3.0);
        let (s, b) = (image_stats(&sharp), image_stats(&blurred));
        assert!(
            s.sharpness > 10.0 * b.sharpness,
            "{} vs {}",
            s.sharpness,
            b.sharpness
        );
        let grey = DynamicImage::ImageRgb8(RgbImage::from_pixel(8, 8, Rgb([128, 128, 128])));
        assert!(image_stats(&grey).colourfulness < 0.01);
        assert!(s.colourfulness > 0.9);
        assert!((image_stats(&grey).brightness - 0.5).abs() < 0.01);
    }
}
