//! diffusers' `Downsample2D` and `Upsample2D` with their convolutions.

use candle_core::Tensor;
use candle_nn::{Conv2d, Module};

use super::{conv2d, conv3x3, join, ConvShape};
use crate::error::Result;
use crate::weights::WeightFile;

/// How the stride-2 convolution of a [`Downsample2D`] pads its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownsamplePadding {
    /// One pixel on every side (`downsample_padding=1`, the UNet's).
    Symmetric,
    /// One pixel of zeros on the right and bottom only, then no padding
    /// (`downsample_padding=0`, the VAE encoder's).
    RightBottom,
}

/// A 3x3 stride-2 convolution `{prefix}.conv` that halves height and width.
pub struct Downsample2D {
    conv: Conv2d,
    padding: DownsamplePadding,
}

impl Downsample2D {
    pub fn load(
        weights: &WeightFile,
        prefix: &str,
        in_channels: usize,
        out_channels: usize,
        padding: DownsamplePadding,
    ) -> Result<Self> {
        let shape = ConvShape {
            kernel: 3,
            stride: 2,
            padding: match padding {
                DownsamplePadding::Symmetric => 1,
                DownsamplePadding::RightBottom => 0,
            },
        };
        let conv = conv2d(
            weights,
            &join(prefix, "conv"),
            in_channels,
            out_channels,
            shape,
        )?;
        Ok(Self { conv, padding })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = match self.padding {
            DownsamplePadding::Symmetric => x.clone(),
            DownsamplePadding::RightBottom => x.pad_with_zeros(3, 0, 1)?.pad_with_zeros(2, 0, 1)?,
        };
        Ok(self.conv.forward(&x)?)
    }
}

/// Nearest-neighbour upsampling followed by a 3x3 convolution `{prefix}.conv`.
pub struct Upsample2D {
    conv: Conv2d,
}

impl Upsample2D {
    pub fn load(
        weights: &WeightFile,
        prefix: &str,
        in_channels: usize,
        out_channels: usize,
    ) -> Result<Self> {
        let conv = conv3x3(weights, &join(prefix, "conv"), in_channels, out_channels)?;
        Ok(Self { conv })
    }

    /// Doubles height and width, or resizes to `target` `(height, width)` when given: the UNet
    /// passes its skip connection's size there, which is odd for latents like 5x7.
    pub fn forward(&self, x: &Tensor, target: Option<(usize, usize)>) -> Result<Tensor> {
        let (_, _, height, width) = x.dims4()?;
        let (target_h, target_w) = target.unwrap_or((height * 2, width * 2));
        let x = x.upsample_nearest2d(target_h, target_w)?;
        Ok(self.conv.forward(&x)?)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};
    use candle_nn::Conv2dConfig;

    use super::*;

    /// A 3x3 convolution of one channel that reads one tap of each window (4 = the centre,
    /// 8 = bottom-right); padding 1 and stride 1, or padding 0 and stride 2.
    fn tap_conv(tap: usize, padding: usize) -> Conv2d {
        let mut kernel = [0f32; 9];
        kernel[tap] = 1.0;
        let weight = Tensor::from_slice(&kernel, (1, 1, 3, 3), &Device::Cpu).expect("kernel");
        let bias = Tensor::zeros(1, DType::F32, &Device::Cpu).expect("bias");
        let stride = if padding == 0 { 2 } else { 1 };
        let config = Conv2dConfig {
            padding,
            stride,
            ..Conv2dConfig::default()
        };
        Conv2d::new(weight, Some(bias), config)
    }

    /// PyTorch's `interpolate(size=..., mode="nearest")` takes source index floor(dst * in / out):
    /// 2x2 -> 3x4 repeats rows [0, 0, 1] and columns [0, 0, 1, 1].
    #[test]
    fn upsample_to_an_odd_target_follows_pytorch_nearest() {
        let upsample = Upsample2D {
            conv: tap_conv(4, 1),
        };
        let x = Tensor::new(&[[[[1f32, 2.], [3., 4.]]]], &Device::Cpu).expect("x");
        let y = upsample.forward(&x, Some((3, 4))).expect("upsample");
        let rows: Vec<Vec<f32>> = y
            .squeeze(0)
            .and_then(|t| t.squeeze(0))
            .expect("2d")
            .to_vec2()
            .expect("rows");
        assert_eq!(
            rows,
            vec![
                vec![1., 1., 2., 2.],
                vec![1., 1., 2., 2.],
                vec![3., 3., 4., 4.]
            ]
        );
        let doubled = upsample.forward(&x, None).expect("double");
        assert_eq!(doubled.dims(), &[1, 1, 4, 4]);
    }

    /// The VAE pads one zero row and column at the bottom and right only: on a 4x4 input the
    /// windows start at 0 and 2, and their bottom-right taps read (2, 2) and then the padding.
    #[test]
    fn right_bottom_padding_pads_only_after_the_image() {
        let down = Downsample2D {
            conv: tap_conv(8, 0),
            padding: DownsamplePadding::RightBottom,
        };
        let values: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let x = Tensor::from_vec(values, (1, 1, 4, 4), &Device::Cpu).expect("x");
        let y = down.forward(&x).expect("downsample");
        assert_eq!(y.dims(), &[1, 1, 2, 2]);
        let rows: Vec<Vec<f32>> = y
            .squeeze(0)
            .and_then(|t| t.squeeze(0))
            .expect("2d")
            .to_vec2()
            .expect("rows");
        assert_eq!(rows, vec![vec![10., 0.], vec![0., 0.]]);
    }
}
