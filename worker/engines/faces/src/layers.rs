//! dlib layer records turned into candle tensors, and their forward maths
//! (FORMAT.md section 5).

use candle_core::{Device, Tensor};

use crate::dlib_format::RawTensor;
use crate::dnn::LayerRecord;
use crate::error::{FaceError, Result, TensorContext};

/// A convolution with bias; dlib's `con_` is candle's cross-correlation conv2d.
#[derive(Debug, Clone)]
pub struct Conv {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
    padding: usize,
}

/// Per-channel `gamma*x + beta`.
#[derive(Debug, Clone)]
pub struct Affine {
    gamma: Tensor,
    beta: Tensor,
}

fn layout_error(file: &str, what: impl Into<String>) -> FaceError {
    FaceError::Layout {
        file: file.to_string(),
        what: what.into(),
    }
}

impl Conv {
    pub fn from_record(record: &LayerRecord, device: &Device, file: &str) -> Result<Self> {
        let LayerRecord::Conv {
            num_filters,
            kernel,
            stride,
            padding,
            params,
            filters_shape,
        } = record
        else {
            return Err(layout_error(
                file,
                format!("expected a con layer, found {record:?}"),
            ));
        };
        if stride.0 != stride.1 || padding.0 != padding.1 {
            return Err(layout_error(file, "non-square stride or padding"));
        }
        let [n, k, nr, nc] = *filters_shape;
        if n != *num_filters || (nr, nc) != *kernel {
            return Err(layout_error(
                file,
                "con filter shape disagrees with its settings",
            ));
        }
        let weight_count = n * k * nr * nc;
        if params.data.len() != weight_count + n {
            return Err(layout_error(
                file,
                format!(
                    "con params hold {} values, expected {}",
                    params.data.len(),
                    weight_count + n
                ),
            ));
        }
        let weight = Tensor::from_slice(&params.data[..weight_count], (n, k, nr, nc), device)
            .ctx("con weights")?;
        let bias = Tensor::from_slice(&params.data[weight_count..], (1, n, 1, 1), device)
            .ctx("con bias")?;
        Ok(Self {
            weight,
            bias,
            stride: stride.0,
            padding: padding.0,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.conv2d(&self.weight, self.padding, self.stride, 1, 1)
            .and_then(|y| y.broadcast_add(&self.bias))
            .ctx("con forward")
    }
}

impl Affine {
    pub fn from_record(record: &LayerRecord, device: &Device, file: &str) -> Result<Self> {
        let LayerRecord::Affine { gamma, beta } = record else {
            return Err(layout_error(
                file,
                format!("expected an affine layer, found {record:?}"),
            ));
        };
        let k = gamma.len();
        Ok(Self {
            gamma: Tensor::from_slice(gamma, (1, k, 1, 1), device).ctx("affine gamma")?,
            beta: Tensor::from_slice(beta, (1, k, 1, 1), device).ctx("affine beta")?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.broadcast_mul(&self.gamma)
            .and_then(|y| y.broadcast_add(&self.beta))
            .ctx("affine forward")
    }
}

pub fn relu(x: &Tensor) -> Result<Tensor> {
    x.relu().ctx("relu forward")
}

/// dlib's `add_prev`: the output has the larger size in every dimension and missing
/// values count as zero (padding at the high end).
pub fn add_zero_padded(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (a_dims, b_dims) = (a.dims().to_vec(), b.dims().to_vec());
    let mut a = a.clone();
    let mut b = b.clone();
    for dim in 1..a_dims.len().min(b_dims.len()) {
        let (da, db) = (a_dims[dim], b_dims[dim]);
        if da < db {
            a = a.pad_with_zeros(dim, 0, db - da).ctx("add_prev padding")?;
        } else if db < da {
            b = b.pad_with_zeros(dim, 0, da - db).ctx("add_prev padding")?;
        }
    }
    (a + b).ctx("add_prev")
}

/// Raw f32 tensor data as a candle tensor of the given shape.
pub fn raw_to_tensor(raw: &RawTensor, shape: &[usize], device: &Device) -> Result<Tensor> {
    Tensor::from_slice(&raw.data, shape, device).ctx("raw tensor")
}
