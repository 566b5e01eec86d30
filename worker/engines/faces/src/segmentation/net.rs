//! MediaPipe Selfie Segmentation's network, written out layer by layer on candle.
//!
//! The topology was read once from the `.tflite` graph (see
//! `examples/tflite_graph.rs`) and is fixed here in code; the converter
//! (the `convert` module) checks a model file against [`LAYERS`] before any of its
//! weights are used. The network is a MobileNetV3-like encoder (hard-swish stem,
//! inverted-residual blocks, squeeze-and-excitation) down to 1/16 of the input,
//! and a decoder that upsamples x2 three times, each time gating the skip
//! connection with a global-pool attention vector, then a 2x2 stride-2 transposed
//! convolution and a sigmoid at full input resolution.
//!
//! Tensors are NCHW. TFLite's SAME padding (extra row/column at the bottom/right
//! when the total is odd) is reproduced exactly.

use std::collections::HashMap;

use candle_core::{Device, Tensor, D};

use crate::error::{FaceError, Result, TensorContext};

/// What a weight-carrying layer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    /// CONV_2D: weight `[out, in, k, k]`, bias `[out]`.
    Conv,
    /// DEPTHWISE_CONV_2D (depth multiplier 1): weight `[c, 1, k, k]`, bias `[c]`.
    Depthwise,
    /// MediaPipe's `Convolution2DTransposeBias`: weight `[in, out, k, k]`, bias `[out]`.
    TransposeConv,
}

/// One weight-carrying layer of the network: its name in the safetensors file
/// (the TFLite layer name), kind, kernel size and stride.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerSpec {
    pub name: &'static str,
    pub kind: LayerKind,
    pub kernel: usize,
    pub stride: usize,
    pub in_channels: usize,
    pub out_channels: usize,
}

const fn conv(
    name: &'static str,
    kernel: usize,
    stride: usize,
    cin: usize,
    cout: usize,
) -> LayerSpec {
    LayerSpec {
        name,
        kind: LayerKind::Conv,
        kernel,
        stride,
        in_channels: cin,
        out_channels: cout,
    }
}

const fn dw(name: &'static str, kernel: usize, stride: usize, c: usize) -> LayerSpec {
    LayerSpec {
        name,
        kind: LayerKind::Depthwise,
        kernel,
        stride,
        in_channels: c,
        out_channels: c,
    }
}

/// Name of the final transposed convolution in the safetensors file (the TFLite
/// file calls it `segment` in the general model, `conv2d_transpose` in the
/// landscape one).
pub const SEGMENT_LAYER: &str = "segment";

/// Every weight-carrying layer, in graph order.
pub const LAYERS: &[LayerSpec] = &[
    // Stem.
    conv("conv2d", 3, 2, 3, 16),
    // Encoder block 1 (1/4): relu, SE, no residual.
    conv("conv2d_1", 1, 1, 16, 16),
    dw("depthwise_conv2d", 3, 2, 16),
    conv("conv2d_2", 1, 1, 16, 8),
    conv("conv2d_3", 1, 1, 8, 16),
    conv("conv2d_4", 1, 1, 16, 16),
    // Block 2 (1/8): relu, no SE.
    conv("conv2d_5", 1, 1, 16, 72),
    dw("depthwise_conv2d_1", 3, 2, 72),
    conv("conv2d_6", 1, 1, 72, 24),
    // Block 3: relu, residual.
    conv("conv2d_7", 1, 1, 24, 88),
    dw("depthwise_conv2d_2", 3, 1, 88),
    conv("conv2d_8", 1, 1, 88, 24),
    // Block 4 (1/16): hard-swish, SE.
    conv("conv2d_9", 1, 1, 24, 96),
    dw("depthwise_conv2d_3", 5, 2, 96),
    conv("conv2d_10", 1, 1, 96, 24),
    conv("conv2d_11", 1, 1, 24, 96),
    conv("conv2d_12", 1, 1, 96, 32),
    // Blocks 5..8: hard-swish, SE, residual.
    conv("conv2d_13", 1, 1, 32, 128),
    dw("depthwise_conv2d_4", 5, 1, 128),
    conv("conv2d_14", 1, 1, 128, 32),
    conv("conv2d_15", 1, 1, 32, 128),
    conv("conv2d_16", 1, 1, 128, 32),
    conv("conv2d_17", 1, 1, 32, 128),
    dw("depthwise_conv2d_5", 5, 1, 128),
    conv("conv2d_18", 1, 1, 128, 32),
    conv("conv2d_19", 1, 1, 32, 128),
    conv("conv2d_20", 1, 1, 128, 32),
    conv("conv2d_21", 1, 1, 32, 96),
    dw("depthwise_conv2d_6", 5, 1, 96),
    conv("conv2d_22", 1, 1, 96, 24),
    conv("conv2d_23", 1, 1, 24, 96),
    conv("conv2d_24", 1, 1, 96, 32),
    conv("conv2d_25", 1, 1, 32, 96),
    dw("depthwise_conv2d_7", 5, 1, 96),
    conv("conv2d_26", 1, 1, 96, 24),
    conv("conv2d_27", 1, 1, 24, 96),
    conv("conv2d_28", 1, 1, 96, 32),
    // Head: features x global-pool gate, up x2, project.
    conv("conv2d_29", 1, 1, 32, 128),
    conv("conv2d_30", 1, 1, 32, 128),
    conv("conv2d_31", 1, 1, 128, 24),
    // Decoder stage at 1/8.
    conv("conv2d_32", 1, 1, 24, 24),
    conv("conv2d_33", 1, 1, 24, 24),
    conv("conv2d_34", 1, 1, 24, 24),
    dw("depthwise_conv2d_8", 3, 1, 24),
    conv("conv2d_35", 1, 1, 24, 16),
    // Decoder stage at 1/4.
    conv("conv2d_36", 1, 1, 16, 16),
    conv("conv2d_37", 1, 1, 16, 16),
    conv("conv2d_38", 1, 1, 16, 16),
    dw("depthwise_conv2d_9", 3, 1, 16),
    conv("conv2d_39", 1, 1, 16, 16),
    // Decoder stage at 1/2.
    conv("conv2d_40", 1, 1, 16, 16),
    conv("conv2d_41", 1, 1, 16, 16),
    conv("conv2d_42", 1, 1, 16, 16),
    dw("depthwise_conv2d_10", 3, 1, 16),
    // Segmentation logits at full resolution.
    LayerSpec {
        name: SEGMENT_LAYER,
        kind: LayerKind::TransposeConv,
        kernel: 2,
        stride: 2,
        in_channels: 16,
        out_channels: 1,
    },
];

/// TFLite SAME padding for one spatial dimension: (before, after).
pub fn same_padding(input: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let output = input.div_ceil(stride);
    let total = ((output.saturating_sub(1)) * stride + kernel).saturating_sub(input);
    (total / 2, total - total / 2)
}

/// A convolution (plain or depthwise) with bias, TFLite SAME padding.
#[derive(Debug, Clone)]
struct Conv {
    weight: Tensor,
    bias: Tensor,
    kernel: usize,
    stride: usize,
    groups: usize,
    /// Depthwise weights `[C, k, k]` and bias on the host, for the direct CPU
    /// kernel (candle runs a grouped conv as one conv per channel).
    depthwise_host: Option<(Vec<f32>, Vec<f32>)>,
}

impl Conv {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let (Some((weight, bias)), true) = (&self.depthwise_host, x.device().is_cpu()) {
            return depthwise_cpu(x, weight, bias, self.kernel, self.stride);
        }
        let (b, c, h, w) = x.dims4().ctx("conv input")?;
        if self.kernel == 1 && self.stride == 1 && self.groups == 1 {
            // A 1x1 conv is one matrix product per image: [O, C] x [C, H*W].
            let out = self.weight.dims()[0];
            return self
                .weight
                .reshape((out, c))
                .and_then(|k| k.broadcast_left(b))
                .and_then(|k| k.matmul(&x.reshape((b, c, h * w))?))
                .and_then(|y| y.reshape((b, out, h, w)))
                .and_then(|y| y.broadcast_add(&self.bias))
                .ctx("conv 1x1");
        }
        let (top, bottom) = same_padding(h, self.kernel, self.stride);
        let (left, right) = same_padding(w, self.kernel, self.stride);
        let y = if top == bottom && left == right && top == left {
            x.conv2d(&self.weight, top, self.stride, 1, self.groups)
        } else {
            x.pad_with_zeros(2, top, bottom)
                .and_then(|x| x.pad_with_zeros(3, left, right))
                .and_then(|x| x.conv2d(&self.weight, 0, self.stride, 1, self.groups))
        }
        .ctx("conv2d")?;
        y.broadcast_add(&self.bias).ctx("conv bias")
    }
}

/// Depthwise convolution (depth multiplier 1) with TFLite SAME padding, computed
/// directly on the host, one thread per group of channel planes.
fn depthwise_cpu(
    x: &Tensor,
    weight: &[f32],
    bias: &[f32],
    k: usize,
    stride: usize,
) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4().ctx("depthwise input")?;
    let (top, _) = same_padding(h, k, stride);
    let (left, _) = same_padding(w, k, stride);
    let (ho, wo) = (h.div_ceil(stride), w.div_ceil(stride));
    let src = x
        .flatten_all()
        .and_then(|x| x.to_vec1::<f32>())
        .ctx("depthwise input")?;
    let mut out = vec![0f32; b * c * ho * wo];
    let plane_job = |plane: usize, dst: &mut [f32]| {
        let ch = plane % c;
        let taps = &weight[ch * k * k..(ch + 1) * k * k];
        let input = &src[plane * h * w..(plane + 1) * h * w];
        for oy in 0..ho {
            // Kernel rows that land inside the image.
            let y0 = (oy * stride) as isize - top as isize;
            let ky_range = (0.max(-y0) as usize)..(k.min((h as isize - y0).max(0) as usize));
            for ox in 0..wo {
                let x0 = (ox * stride) as isize - left as isize;
                let kx_range = (0.max(-x0) as usize)..(k.min((w as isize - x0).max(0) as usize));
                let mut acc = bias[ch];
                for ky in ky_range.clone() {
                    let row = &input[(y0 + ky as isize) as usize * w..];
                    let tap_row = &taps[ky * k..];
                    for kx in kx_range.clone() {
                        acc += row[(x0 + kx as isize) as usize] * tap_row[kx];
                    }
                }
                dst[oy * wo + ox] = acc;
            }
        }
    };
    let planes = b * c;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(planes)
        .max(1);
    let per_thread = planes.div_ceil(threads);
    if threads == 1 || ho * wo * planes < 1 << 14 {
        for (plane, dst) in out.chunks_mut(ho * wo).enumerate() {
            plane_job(plane, dst);
        }
    } else {
        std::thread::scope(|scope| {
            for (t, chunk) in out.chunks_mut(per_thread * ho * wo).enumerate() {
                let job = &plane_job;
                scope.spawn(move || {
                    for (i, dst) in chunk.chunks_mut(ho * wo).enumerate() {
                        job(t * per_thread + i, dst);
                    }
                });
            }
        });
    }
    Tensor::from_vec(out, (b, c, ho, wo), x.device()).ctx("depthwise output")
}

fn relu(x: &Tensor) -> Result<Tensor> {
    x.relu().ctx("relu")
}

/// An element-wise f32 function run in one pass on the host (candle's CPU
/// element-wise ops take a pass, and an allocation, per operator).
struct HostMap {
    name: &'static str,
    f: fn(f32) -> f32,
}

impl candle_core::CustomOp1 for HostMap {
    fn name(&self) -> &'static str {
        self.name
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let candle_core::CpuStorage::F32(data) = storage else {
            candle_core::bail!("{} expects f32", self.name)
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("{} expects a contiguous tensor", self.name)
        };
        let out: Vec<f32> = data[start..end].iter().map(|&v| (self.f)(v)).collect();
        Ok((candle_core::CpuStorage::F32(out), layout.shape().clone()))
    }
}

fn hard_swish_scalar(x: f32) -> f32 {
    x * ((x + 3.0).clamp(0.0, 6.0) * (1.0 / 6.0))
}

fn sigmoid_scalar(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `x * relu6(x + 3) / 6`.
fn hard_swish(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() {
        return x
            .contiguous()
            .and_then(|x| {
                x.apply_op1_no_bwd(&HostMap {
                    name: "hard-swish",
                    f: hard_swish_scalar,
                })
            })
            .ctx("hard swish");
    }
    let gate = (x + 3.0)
        .and_then(|g| g.clamp(0f32, 6f32))
        .and_then(|g| g / 6.0)
        .ctx("hard swish")?;
    (x * gate).ctx("hard swish")
}

fn sigmoid(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() {
        return x
            .contiguous()
            .and_then(|x| {
                x.apply_op1_no_bwd(&HostMap {
                    name: "sigmoid",
                    f: sigmoid_scalar,
                })
            })
            .ctx("sigmoid");
    }
    x.neg()
        .and_then(|n| n.exp())
        .and_then(|e| e + 1.0)
        .and_then(|d| d.recip())
        .ctx("sigmoid")
}

/// Global average over the spatial dimensions, keeping them as 1x1.
fn global_pool(x: &Tensor) -> Result<Tensor> {
    x.mean_keepdim(D::Minus1)
        .and_then(|x| x.mean_keepdim(D::Minus2))
        .ctx("global average pool")
}

fn upsample2(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4().ctx("upsample input")?;
    // Half-pixel centres, no corner alignment: TFLite RESIZE_BILINEAR with
    // half_pixel_centers = true (checked by the converter).
    x.upsample_bilinear2d(2 * h, 2 * w, false)
        .ctx("upsample x2")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    Relu,
    HardSwish,
}

impl Act {
    fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Act::Relu => relu(x),
            Act::HardSwish => hard_swish(x),
        }
    }
}

/// Squeeze-and-excitation: `x * sigmoid(up(relu(down(pool(x)))))`.
#[derive(Debug, Clone)]
struct SqueezeExcite {
    down: Conv,
    up: Conv,
}

impl SqueezeExcite {
    fn gate(&self, pooled_from: &Tensor) -> Result<Tensor> {
        let g = relu(&self.down.forward(&global_pool(pooled_from)?)?)?;
        sigmoid(&self.up.forward(&g)?)
    }
}

/// Inverted residual: expand 1x1 + act, depthwise + act, optional SE, project 1x1,
/// optional identity shortcut.
#[derive(Debug, Clone)]
struct Bottleneck {
    expand: Conv,
    depthwise: Conv,
    se: Option<SqueezeExcite>,
    project: Conv,
    act: Act,
    residual: bool,
}

impl Bottleneck {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.act.apply(&self.expand.forward(x)?)?;
        let mut y = self.act.apply(&self.depthwise.forward(&y)?)?;
        if let Some(se) = &self.se {
            y = y.broadcast_mul(&se.gate(&y)?).ctx("se scale")?;
        }
        let y = self.project.forward(&y)?;
        if self.residual {
            (y + x).ctx("residual")
        } else {
            Ok(y)
        }
    }
}

/// One decoder stage: the skip connection is gated by an attention vector pooled
/// from `skip + up`, added to `up`, refined by 1x1 + relu and a residual depthwise
/// 3x3 + relu.
#[derive(Debug, Clone)]
struct DecoderStage {
    attention: SqueezeExcite,
    conv: Conv,
    depthwise: Conv,
}

impl DecoderStage {
    fn forward(&self, skip: &Tensor, up: &Tensor) -> Result<Tensor> {
        let sum = (skip + up).ctx("decoder sum")?;
        let gate = self.attention.gate(&sum)?;
        let t = skip
            .broadcast_mul(&gate)
            .and_then(|s| s + up)
            .ctx("decoder gate")?;
        let r = relu(&self.conv.forward(&t)?)?;
        let d = relu(&self.depthwise.forward(&r)?)?;
        (r + d).ctx("decoder residual")
    }
}

/// The whole network. Input `[batch, 3, H, W]` in [0, 1]; output `[batch, H, W]`
/// person probabilities.
#[derive(Debug, Clone)]
pub struct SelfieNet {
    stem: Conv,
    blocks: Vec<Bottleneck>,
    head_features: Conv,
    head_gate: Conv,
    head_project: Conv,
    stages: [DecoderStage; 3],
    stage_projects: [Conv; 2],
    segment_weight: Tensor,
    segment_bias: Tensor,
}

struct Weights<'a> {
    tensors: &'a HashMap<String, Tensor>,
    file: &'a str,
}

impl Weights<'_> {
    fn get(&self, name: &str, suffix: &str, shape: &[usize]) -> Result<Tensor> {
        let key = format!("{name}.{suffix}");
        let tensor = self.tensors.get(&key).ok_or_else(|| FaceError::Layout {
            file: self.file.to_string(),
            what: format!("missing tensor {key}"),
        })?;
        if tensor.dims() != shape {
            return Err(FaceError::Layout {
                file: self.file.to_string(),
                what: format!("{key} has shape {:?}, expected {shape:?}", tensor.dims()),
            });
        }
        Ok(tensor.clone())
    }

    fn conv(&self, name: &str) -> Result<Conv> {
        let spec = LAYERS
            .iter()
            .find(|l| l.name == name)
            .ok_or_else(|| FaceError::UnknownModel(name.to_string()))?;
        let (shape, groups) = match spec.kind {
            LayerKind::Conv => (
                [
                    spec.out_channels,
                    spec.in_channels,
                    spec.kernel,
                    spec.kernel,
                ],
                1,
            ),
            LayerKind::Depthwise => (
                [spec.out_channels, 1, spec.kernel, spec.kernel],
                spec.out_channels,
            ),
            LayerKind::TransposeConv => {
                return Err(FaceError::Layout {
                    file: self.file.to_string(),
                    what: format!("{name} is not a convolution"),
                })
            }
        };
        let bias = self
            .get(name, "bias", &[spec.out_channels])?
            .reshape((1, spec.out_channels, 1, 1))
            .ctx("bias shape")?;
        let weight = self.get(name, "weight", &shape)?;
        let depthwise_host = if spec.kind == LayerKind::Depthwise {
            let host = |t: &Tensor| {
                t.flatten_all()
                    .and_then(|t| t.to_vec1::<f32>())
                    .ctx("depthwise weights")
            };
            Some((host(&weight)?, host(&bias)?))
        } else {
            None
        };
        Ok(Conv {
            weight,
            bias,
            kernel: spec.kernel,
            stride: spec.stride,
            groups,
            depthwise_host,
        })
    }

    fn se(&self, down: &str, up: &str) -> Result<SqueezeExcite> {
        Ok(SqueezeExcite {
            down: self.conv(down)?,
            up: self.conv(up)?,
        })
    }
}

impl SelfieNet {
    /// Builds the network from the converted weights (see the `convert` module),
    /// checking every tensor's name and shape.
    pub fn from_tensors(tensors: &HashMap<String, Tensor>, file: &str) -> Result<Self> {
        let w = Weights { tensors, file };
        let block = |e: &str,
                     d: &str,
                     se: Option<(&str, &str)>,
                     p: &str,
                     act: Act,
                     residual: bool|
         -> Result<Bottleneck> {
            Ok(Bottleneck {
                expand: w.conv(e)?,
                depthwise: w.conv(d)?,
                se: se.map(|(a, b)| w.se(a, b)).transpose()?,
                project: w.conv(p)?,
                act,
                residual,
            })
        };
        let blocks = vec![
            block(
                "conv2d_1",
                "depthwise_conv2d",
                Some(("conv2d_2", "conv2d_3")),
                "conv2d_4",
                Act::Relu,
                false,
            )?,
            block(
                "conv2d_5",
                "depthwise_conv2d_1",
                None,
                "conv2d_6",
                Act::Relu,
                false,
            )?,
            block(
                "conv2d_7",
                "depthwise_conv2d_2",
                None,
                "conv2d_8",
                Act::Relu,
                true,
            )?,
            block(
                "conv2d_9",
                "depthwise_conv2d_3",
                Some(("conv2d_10", "conv2d_11")),
                "conv2d_12",
                Act::HardSwish,
                false,
            )?,
            block(
                "conv2d_13",
                "depthwise_conv2d_4",
                Some(("conv2d_14", "conv2d_15")),
                "conv2d_16",
                Act::HardSwish,
                true,
            )?,
            block(
                "conv2d_17",
                "depthwise_conv2d_5",
                Some(("conv2d_18", "conv2d_19")),
                "conv2d_20",
                Act::HardSwish,
                true,
            )?,
            block(
                "conv2d_21",
                "depthwise_conv2d_6",
                Some(("conv2d_22", "conv2d_23")),
                "conv2d_24",
                Act::HardSwish,
                true,
            )?,
            block(
                "conv2d_25",
                "depthwise_conv2d_7",
                Some(("conv2d_26", "conv2d_27")),
                "conv2d_28",
                Act::HardSwish,
                true,
            )?,
        ];
        let stage = |a: &str, b: &str, c: &str, d: &str| -> Result<DecoderStage> {
            Ok(DecoderStage {
                attention: w.se(a, b)?,
                conv: w.conv(c)?,
                depthwise: w.conv(d)?,
            })
        };
        let seg = LAYERS
            .iter()
            .find(|l| l.name == SEGMENT_LAYER)
            .copied()
            .ok_or_else(|| FaceError::UnknownModel(SEGMENT_LAYER.to_string()))?;
        Ok(Self {
            stem: w.conv("conv2d")?,
            blocks,
            head_features: w.conv("conv2d_29")?,
            head_gate: w.conv("conv2d_30")?,
            head_project: w.conv("conv2d_31")?,
            stages: [
                stage("conv2d_32", "conv2d_33", "conv2d_34", "depthwise_conv2d_8")?,
                stage("conv2d_36", "conv2d_37", "conv2d_38", "depthwise_conv2d_9")?,
                stage("conv2d_40", "conv2d_41", "conv2d_42", "depthwise_conv2d_10")?,
            ],
            stage_projects: [w.conv("conv2d_35")?, w.conv("conv2d_39")?],
            segment_weight: w.get(
                SEGMENT_LAYER,
                "weight",
                &[seg.in_channels, seg.out_channels, seg.kernel, seg.kernel],
            )?,
            segment_bias: w
                .get(SEGMENT_LAYER, "bias", &[seg.out_channels])?
                .reshape((1, seg.out_channels, 1, 1))
                .ctx("segment bias")?,
        })
    }

    /// Loads the converted weights from safetensors bytes onto `device`.
    pub fn from_safetensors(bytes: &[u8], device: &Device, file: &str) -> Result<Self> {
        let tensors = candle_core::safetensors::load_buffer(bytes, device).map_err(|e| {
            FaceError::Layout {
                file: file.to_string(),
                what: format!("not a readable safetensors file: {e}"),
            }
        })?;
        Self::from_tensors(&tensors, file)
    }

    /// `[batch, 3, H, W]` (values in [0, 1]) to `[batch, H, W]` probabilities.
    /// H and W must be multiples of 16 (the encoder's total stride).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, c, h, w) = x.dims4().ctx("network input")?;
        if c != 3 || h % 16 != 0 || w % 16 != 0 || h == 0 || w == 0 {
            return Err(FaceError::Image(format!(
                "segmentation input must be [batch, 3, H, W] with H, W multiples of 16, got {:?}",
                x.dims()
            )));
        }
        let x0 = hard_swish(&self.stem.forward(x)?)?; // 1/2
        let x1 = self.blocks[0].forward(&x0)?; // 1/4
        let mut x2 = self.blocks[1].forward(&x1)?; // 1/8
        x2 = self.blocks[2].forward(&x2)?;
        let mut x3 = x2.clone();
        for block in &self.blocks[3..] {
            x3 = block.forward(&x3)?; // 1/16
        }

        let features = relu(&self.head_features.forward(&x3)?)?;
        let gate = sigmoid(&self.head_gate.forward(&global_pool(&x3)?)?)?;
        let head = features.broadcast_mul(&gate).ctx("head gate")?;
        let up = self.head_project.forward(&upsample2(&head)?)?; // 1/8

        let s = self.stages[0].forward(&x2, &up)?;
        let up = self.stage_projects[0].forward(&upsample2(&s)?)?; // 1/4
        let s = self.stages[1].forward(&x1, &up)?;
        let up = self.stage_projects[1].forward(&upsample2(&s)?)?; // 1/2
        let s = self.stages[2].forward(&x0, &up)?;

        // 2x2 kernel, stride 2: every output pixel has exactly one input pixel, so
        // SAME padding adds nothing.
        let logits = s
            .conv_transpose2d(&self.segment_weight, 0, 0, 2, 1)
            .and_then(|y| y.broadcast_add(&self.segment_bias))
            .ctx("segment")?;
        sigmoid(&logits)?.squeeze(1).ctx("probabilities")
    }
}
