//! dlib layer records turned into candle tensors, and their forward maths
//! (FORMAT.md section 5).

use candle_core::{Device, Tensor};

use crate::dlib_format::RawTensor;
use crate::dnn::LayerRecord;
use crate::error::{FaceError, Result, TensorContext};
use crate::native::{FeatureBatch, NativeConv};

/// A conv with the affine layer after it folded into its weights and bias
/// (`gamma*(w*x + b) + beta = (gamma*w)*x + (gamma*b + beta)`) and an optional relu
/// fused, so the three layers are one pass. On the CPU it runs on the
/// [`crate::native`] engine, elsewhere on candle's conv2d.
#[derive(Debug, Clone)]
pub struct FusedConv {
    pub native: NativeConv,
    weight: Tensor,
    bias: Tensor,
    on_cpu: bool,
}

impl FusedConv {
    /// `conv`, then `affine` when given, then relu when `relu`.
    pub fn from_records(
        conv: &LayerRecord,
        affine: Option<&LayerRecord>,
        relu: bool,
        device: &Device,
        file: &str,
    ) -> Result<Self> {
        let mut native = native_conv(conv, file)?;
        match affine {
            None => {}
            Some(LayerRecord::Affine { gamma, beta })
                if gamma.len() == native.out_channels && beta.len() == gamma.len() =>
            {
                let per_filter = native.weight.len() / native.out_channels;
                for (o, (&g, &b)) in gamma.iter().zip(beta).enumerate() {
                    for w in &mut native.weight[o * per_filter..(o + 1) * per_filter] {
                        *w *= g;
                    }
                    native.bias[o] = g * native.bias[o] + b;
                }
            }
            Some(other) => {
                return Err(layout_error(
                    file,
                    format!("expected an affine layer fitting its con layer, found {other:?}"),
                ))
            }
        }
        native.relu = relu;
        Self::from_native(native, device)
    }

    pub fn from_native(native: NativeConv, device: &Device) -> Result<Self> {
        let k = native.kernel;
        Ok(Self {
            weight: Tensor::from_slice(
                &native.weight,
                (native.out_channels, native.in_channels, k, k),
                device,
            )
            .ctx("con weights")?,
            bias: Tensor::from_slice(&native.bias, (1, native.out_channels, 1, 1), device)
                .ctx("con bias")?,
            on_cpu: device.is_cpu(),
            native,
        })
    }

    /// Forward on a `[n,c,h,w]` tensor, on the native engine when on the CPU.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.on_cpu {
            let (n, c, rows, cols) = x.dims4().ctx("con input")?;
            let data: Vec<f32> = x.flatten_all().and_then(|t| t.to_vec1()).ctx("con input")?;
            let out = self.native.forward(
                &FeatureBatch {
                    data,
                    channels: c,
                    rows,
                    cols,
                    valid: vec![(rows, cols); n],
                },
                candle_core::utils::get_num_threads(),
            );
            Tensor::from_vec(out.data, (n, out.channels, out.rows, out.cols), x.device())
                .ctx("con output")
        } else {
            self.candle_forward(x)
        }
    }

    /// A copy whose candle weights are in `dtype` (the native engine stays f32).
    pub fn with_dtype(&self, dtype: candle_core::DType) -> Result<Self> {
        Ok(Self {
            native: self.native.clone(),
            weight: self.weight.to_dtype(dtype).ctx("con weights dtype")?,
            bias: self.bias.to_dtype(dtype).ctx("con bias dtype")?,
            on_cpu: self.on_cpu,
        })
    }

    /// Forward through candle's ops on any device.
    pub fn candle_forward(&self, x: &Tensor) -> Result<Tensor> {
        self.candle_forward_with(x, ReluGradient::Exact)
    }

    /// [`Self::candle_forward`] with a choice of the relu's gradient.
    pub fn candle_forward_with(&self, x: &Tensor, gradient: ReluGradient) -> Result<Tensor> {
        let n = &self.native;
        let y = x
            .conv2d(&self.weight, n.padding, n.stride, 1, 1)
            .and_then(|y| y.broadcast_add(&self.bias))
            .ctx("con forward")?;
        if n.relu {
            relu_with(&y, gradient)
        } else {
            Ok(y)
        }
    }
}

/// A con layer record as the native engine's conv (no affine, no relu yet).
pub fn native_conv(record: &LayerRecord, file: &str) -> Result<NativeConv> {
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
    let [n, k, nr, nc] = *filters_shape;
    if stride.0 != stride.1 || padding.0 != padding.1 || nr != nc || stride.0 == 0 {
        return Err(layout_error(
            file,
            "non-square con kernel, stride or padding",
        ));
    }
    if n != *num_filters || (nr, nc) != *kernel {
        return Err(layout_error(
            file,
            "con filter shape disagrees with its settings",
        ));
    }
    let weights = n * k * nr * nc;
    if params.data.len() != weights + n {
        return Err(layout_error(
            file,
            format!(
                "con params hold {} values, expected {}",
                params.data.len(),
                weights + n
            ),
        ));
    }
    Ok(NativeConv {
        out_channels: n,
        in_channels: k,
        kernel: nr,
        stride: stride.0,
        padding: padding.0,
        weight: params.data[..weights].to_vec(),
        bias: params.data[weights..].to_vec(),
        relu: false,
    })
}

fn layout_error(file: &str, what: impl Into<String>) -> FaceError {
    FaceError::Layout {
        file: file.to_string(),
        what: what.into(),
    }
}

pub fn relu(x: &Tensor) -> Result<Tensor> {
    x.relu().ctx("relu forward")
}

/// What the relu's backward pass is.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum ReluGradient {
    /// The true derivative: a step at 0.
    #[default]
    Exact,
    /// The derivative of `t * softplus(x / t)`, `sigmoid(x / t)`: the forward value is still the
    /// exact relu, but the gradient is continuous in the input, so two inputs that differ by
    /// float rounding get gradients that differ by about as little. (With the exact step, a unit
    /// near 0 flips and changes the whole gradient: deep relu networks' gradients are
    /// "shattered", and guidance would amplify rounding into visibly different pictures.)
    Smooth { temperature: f64 },
}

/// relu with the chosen gradient.
pub fn relu_with(x: &Tensor, gradient: ReluGradient) -> Result<Tensor> {
    let ReluGradient::Smooth { temperature } = gradient else {
        return relu(x);
    };
    // value: relu(x) exactly (the surrogate minus its detached self is exactly 0);
    // gradient: only through the surrogate.
    let exact = x.relu().ctx("relu forward")?.detach();
    let surrogate = softplus(x, temperature)?;
    (exact + (&surrogate - surrogate.detach()).ctx("relu surrogate")?).ctx("relu forward")
}

/// `t * softplus(x / t)` in the overflow-free form `relu(x) + t * log(1 + exp(-|x| / t))`.
fn softplus(x: &Tensor, temperature: f64) -> Result<Tensor> {
    let tail = x
        .abs()
        .and_then(|a| a.affine(-1.0 / temperature, 0.0))
        .and_then(|a| a.exp())
        .and_then(|e| e.affine(1.0, 1.0))
        .and_then(|e| e.log())
        .and_then(|l| l.affine(temperature, 0.0))
        .ctx("softplus")?;
    (x.relu().ctx("softplus")? + tail).ctx("softplus")
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
