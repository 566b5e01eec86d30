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
