//! Conversions between pictures and tensors: init images, masks, decoded outputs, previews.

use candle_core::{DType, Device, Tensor};
use image::{GrayImage, RgbImage};

use crate::error::{DiffusionError, Result};

/// An RGB picture as `(1, 3, H, W)` f32 in [-1, 1], the VAE encoder's input range.
pub fn rgb_to_tensor(image: &RgbImage, device: &Device) -> Result<Tensor> {
    let (width, height) = (image.width() as usize, image.height() as usize);
    let plane = width * height;
    let mut values = vec![0f32; 3 * plane];
    for (index, pixel) in image.pixels().enumerate() {
        for channel in 0..3 {
            values[channel * plane + index] = f32::from(pixel[channel]) / 127.5 - 1.0;
        }
    }
    Ok(Tensor::from_vec(values, (1, 3, height, width), device)?)
}

/// A grey picture as a `(1, 1, H, W)` f32 mask in [0, 1] (white = 1 = repaint).
pub fn mask_to_tensor(mask: &GrayImage, device: &Device) -> Result<Tensor> {
    let (width, height) = (mask.width() as usize, mask.height() as usize);
    let values = mask.pixels().map(|p| f32::from(p[0]) / 255.0).collect();
    Ok(Tensor::from_vec(values, (1, 1, height, width), device)?)
}

/// Decoded `(B, 3, H, W)` images in [-1, 1] as 8-bit pictures, rounded like diffusers'
/// `(x / 2 + 0.5).clamp(0, 1) * 255` then `round`.
pub fn tensor_to_rgb(images: &Tensor) -> Result<Vec<RgbImage>> {
    let (batch, channels, height, width) = images.dims4()?;
    if channels != 3 {
        return Err(DiffusionError::InvalidInput(format!(
            "images have {channels} channels, expected 3"
        )));
    }
    let values = images
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let plane = width * height;
    let to_byte = |v: f32| ((v / 2.0 + 0.5).clamp(0.0, 1.0) * 255.0).round() as u8;
    (0..batch)
        .map(|b| {
            let base = b * 3 * plane;
            let mut raw = Vec::with_capacity(3 * plane);
            for index in 0..plane {
                for channel in 0..3 {
                    raw.push(to_byte(values[base + channel * plane + index]));
                }
            }
            RgbImage::from_raw(width as u32, height as u32, raw)
                .ok_or_else(|| DiffusionError::InvalidInput("image buffer size".into()))
        })
        .collect()
}

/// A `(1, 1, H, W)` mask on the `(rows, cols)` latent grid: nearest neighbour (torch's rule,
/// source index `floor(dst * in / out)`) then 1 where the value is at least 0.5, else 0.
pub fn latent_mask(mask: &Tensor, rows: usize, cols: usize) -> Result<Tensor> {
    let (_, _, height, width) = mask.dims4()?;
    let values = mask.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let pick = |dst: usize, out: usize, input: usize| {
        let scale = input as f32 / out as f32;
        ((dst as f32 * scale).floor() as usize).min(input - 1)
    };
    let mut grid = Vec::with_capacity(rows * cols);
    for row in 0..rows {
        let y = pick(row, rows, height);
        for col in 0..cols {
            let x = pick(col, cols, width);
            grid.push(if values[y * width + x] >= 0.5 {
                1f32
            } else {
                0.0
            });
        }
    }
    Ok(Tensor::from_vec(grid, (1, 1, rows, cols), mask.device())?)
}

/// The fixed 4 -> 3 map from SD 1.x/2.x latent channels to RGB used for step previews: row
/// `c` holds latent channel `c`'s contribution to (R, G, B). A least-squares fit of latents to
/// their decoded colours that the community has long used for live previews.
pub const PREVIEW_MATRIX: [[f32; 3]; 4] = [
    [0.3512, 0.2297, 0.3227],
    [0.3250, 0.4974, 0.2350],
    [-0.2829, 0.1762, 0.2721],
    [-0.2120, -0.2616, -0.7177],
];

/// A latent-resolution preview of `(4, h, w)` latents: `rgb = latents^T * PREVIEW_MATRIX`,
/// then [-1, 1] mapped to 0..255 like a decoded image.
pub fn preview(latents: &Tensor) -> Result<RgbImage> {
    let (channels, height, width) = latents.dims3()?;
    if channels != PREVIEW_MATRIX.len() {
        return Err(DiffusionError::InvalidInput(format!(
            "previews need {} latent channels, got {channels}",
            PREVIEW_MATRIX.len()
        )));
    }
    let values = latents
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let plane = width * height;
    let mut raw = Vec::with_capacity(3 * plane);
    for index in 0..plane {
        let mut rgb = [0f32; 3];
        for (channel, weights) in PREVIEW_MATRIX.iter().enumerate() {
            let latent = values[channel * plane + index];
            for (out, weight) in rgb.iter_mut().zip(weights) {
                *out += latent * weight;
            }
        }
        raw.extend(
            rgb.iter()
                .map(|v| ((v + 1.0) * 127.5).clamp(0.0, 255.0).round() as u8),
        );
    }
    RgbImage::from_raw(width as u32, height as u32, raw)
        .ok_or_else(|| DiffusionError::InvalidInput("preview buffer size".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_round_trip_through_tensors() {
        let image = RgbImage::from_fn(5, 3, |x, y| image::Rgb([x as u8 * 50, y as u8 * 80, 255]));
        let tensor = rgb_to_tensor(&image, &Device::Cpu).unwrap();
        assert_eq!(tensor.dims(), &[1, 3, 3, 5]);
        let back = tensor_to_rgb(&tensor).unwrap();
        assert_eq!(back[0], image);
    }

    #[test]
    fn latent_mask_takes_the_top_left_pixel_of_each_cell_and_binarises() {
        // 16x16 mask: column 8 is 0.6 (the top-left of latent column 1), all else 0.4.
        let mut values = vec![0.4f32; 256];
        for row in 0..16 {
            values[row * 16 + 8] = 0.6;
        }
        let mask = Tensor::from_vec(values, (1, 1, 16, 16), &Device::Cpu).unwrap();
        let grid = latent_mask(&mask, 2, 2).unwrap();
        let grid = grid.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(grid, vec![0.0, 1.0, 0.0, 1.0]);
    }

    #[test]
    fn preview_maps_zero_latents_to_mid_grey() {
        let latents = Tensor::zeros((4, 2, 3), DType::F32, &Device::Cpu).unwrap();
        let picture = preview(&latents).unwrap();
        assert_eq!((picture.width(), picture.height()), (3, 2));
        assert!(picture.pixels().all(|p| p.0 == [128, 128, 128]));
    }
}
