//! Neural building blocks shared by the UNet and the VAE, each loaded from a [`WeightFile`]
//! under a diffusers tensor-name prefix and checked against the shapes the config implies.
//!
//! [`WeightFile`]: crate::weights::WeightFile

mod layers;
mod resnet;
mod sampling;

pub use layers::{
    conv1x1, conv2d, conv3x3, group_norm, group_norm_without_affine, layer_norm, linear,
    linear_no_bias, ConvShape,
};
pub use resnet::{ResnetBlock2D, ResnetConfig};
pub use sampling::{Downsample2D, DownsamplePadding, Upsample2D};

/// Joins a tensor-name prefix and a child name with a dot; an empty prefix adds nothing.
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}
