//! Loaders for the plain layers: convolutions, linear maps and normalisations.

use candle_core::{DType, Device, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, GroupNorm, LayerNorm, Linear};

use crate::error::{DiffusionError, Result};
use crate::weights::WeightFile;

/// Kernel size, stride and zero padding of a square 2-D convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl ConvShape {
    /// 3x3, stride 1, padding 1: keeps the spatial size.
    pub const SAME_3X3: Self = Self {
        kernel: 3,
        stride: 1,
        padding: 1,
    };
    /// 1x1, stride 1: a per-pixel linear map.
    pub const POINTWISE: Self = Self {
        kernel: 1,
        stride: 1,
        padding: 0,
    };
}

/// A convolution `{name}.weight` `[out, in, k, k]` with bias `{name}.bias` `[out]`.
pub fn conv2d(
    weights: &WeightFile,
    name: &str,
    in_channels: usize,
    out_channels: usize,
    shape: ConvShape,
) -> Result<Conv2d> {
    let k = shape.kernel;
    let weight = weights.get(
        &format!("{name}.weight"),
        &[out_channels, in_channels, k, k],
    )?;
    let bias = weights.get(&format!("{name}.bias"), &[out_channels])?;
    let config = Conv2dConfig {
        padding: shape.padding,
        stride: shape.stride,
        ..Conv2dConfig::default()
    };
    Ok(Conv2d::new(weight, Some(bias), config))
}

/// A 3x3 convolution that keeps the spatial size.
pub fn conv3x3(
    weights: &WeightFile,
    name: &str,
    in_channels: usize,
    out_channels: usize,
) -> Result<Conv2d> {
    conv2d(
        weights,
        name,
        in_channels,
        out_channels,
        ConvShape::SAME_3X3,
    )
}

/// A 1x1 convolution.
pub fn conv1x1(
    weights: &WeightFile,
    name: &str,
    in_channels: usize,
    out_channels: usize,
) -> Result<Conv2d> {
    conv2d(
        weights,
        name,
        in_channels,
        out_channels,
        ConvShape::POINTWISE,
    )
}

/// A linear map `{name}.weight` `[out, in]` with bias `{name}.bias` `[out]`.
pub fn linear(
    weights: &WeightFile,
    name: &str,
    in_features: usize,
    out_features: usize,
) -> Result<Linear> {
    let weight = weights.get(&format!("{name}.weight"), &[out_features, in_features])?;
    let bias = weights.get(&format!("{name}.bias"), &[out_features])?;
    Ok(Linear::new(weight, Some(bias)))
}

/// A linear map `{name}.weight` `[out, in]` without bias.
pub fn linear_no_bias(
    weights: &WeightFile,
    name: &str,
    in_features: usize,
    out_features: usize,
) -> Result<Linear> {
    let weight = weights.get(&format!("{name}.weight"), &[out_features, in_features])?;
    Ok(Linear::new(weight, None))
}

/// An affine group norm `{name}.weight` and `{name}.bias`, both `[channels]`.
pub fn group_norm(
    weights: &WeightFile,
    name: &str,
    groups: usize,
    channels: usize,
    eps: f64,
) -> Result<GroupNorm> {
    check_groups(groups, channels).map_err(|reason| DiffusionError::Weights {
        path: weights.path().to_path_buf(),
        tensor: format!("{name}.weight"),
        reason,
    })?;
    let weight = weights.get(&format!("{name}.weight"), &[channels])?;
    let bias = weights.get(&format!("{name}.bias"), &[channels])?;
    Ok(GroupNorm::new(weight, bias, channels, groups, eps)?)
}

/// A group norm without learned scale and shift (`affine=False`).
pub fn group_norm_without_affine(
    groups: usize,
    channels: usize,
    eps: f64,
    device: &Device,
    dtype: DType,
) -> Result<GroupNorm> {
    check_groups(groups, channels).map_err(DiffusionError::InvalidInput)?;
    let weight = Tensor::ones(channels, dtype, device)?;
    let bias = Tensor::zeros(channels, dtype, device)?;
    Ok(GroupNorm::new(weight, bias, channels, groups, eps)?)
}

fn check_groups(groups: usize, channels: usize) -> std::result::Result<(), String> {
    if groups == 0 || !channels.is_multiple_of(groups) {
        return Err(format!(
            "group norm of {channels} channels cannot be split into {groups} groups"
        ));
    }
    Ok(())
}

/// A layer norm `{name}.weight` and `{name}.bias`, both `[dim]`.
pub fn layer_norm(weights: &WeightFile, name: &str, dim: usize, eps: f64) -> Result<LayerNorm> {
    let weight = weights.get(&format!("{name}.weight"), &[dim])?;
    let bias = weights.get(&format!("{name}.bias"), &[dim])?;
    Ok(LayerNorm::new(weight, bias, eps))
}
