//! `.tflite` → named f32 weights (→ safetensors), after checking that the graph is
//! the network [`super::net`] implements.
//!
//! The check covers what the Rust code assumes: input and output shapes, every
//! weight-carrying layer by name, kind, shape, stride, padding, dilation and
//! (absent) fused activation, the count of every other op kind, global pooling,
//! half-pixel x2 resizes and the transposed convolution's custom options. A file
//! that differs in any of these is a [`FaceError::TfliteGraph`].

use std::collections::{BTreeMap, HashMap};

use super::net::{LayerKind, LayerSpec, LAYERS, SEGMENT_LAYER};
use super::tflite::{dtype, op, Fused, Operator, Options, Padding, TensorInfo, TfliteModel};
use super::SegmentationVariant;
use crate::error::{FaceError, Result};

/// MediaPipe's custom transposed convolution op.
pub const TRANSPOSE_CONV_OP: &str = "Convolution2DTransposeBias";

/// The TFLite `MEAN` builtin (the landscape model pools with it).
const MEAN: i32 = 40;

/// One converted weight: candle layout (OIHW, depthwise `[C,1,k,k]`, transposed
/// `[in,out,k,k]`), f32.
#[derive(Debug, Clone, PartialEq)]
pub struct Weight {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Converted weights by name (`{layer}.weight`, `{layer}.bias`), sorted.
pub type Weights = BTreeMap<String, Weight>;

struct Checker<'m, 'a> {
    model: &'m TfliteModel<'a>,
    variant: SegmentationVariant,
    dequantized: HashMap<i32, i32>,
}

impl Checker<'_, '_> {
    fn fail(&self, what: impl Into<String>) -> FaceError {
        FaceError::TfliteGraph {
            model: self.variant.tflite_name().to_string(),
            what: what.into(),
        }
    }

    fn tensor(&self, index: i32) -> Result<&TensorInfo> {
        self.model
            .tensor(index)
            .ok_or_else(|| self.fail(format!("operator refers to missing tensor {index}")))
    }

    /// The constant behind a weight input, looking through DEQUANTIZE.
    fn constant(&self, index: i32) -> Result<&TensorInfo> {
        let source = self.dequantized.get(&index).copied().unwrap_or(index);
        self.tensor(source)
    }

    fn input(&self, operator: &Operator, i: usize) -> Result<i32> {
        operator.inputs.get(i).copied().ok_or_else(|| {
            self.fail(format!(
                "{} has no input {i}",
                self.model.code(operator).name()
            ))
        })
    }

    fn floats(&self, tensor: &TensorInfo) -> Result<Vec<f32>> {
        let data = self.model.data(tensor);
        let count = shape_len(&tensor.shape).ok_or_else(|| {
            self.fail(format!(
                "{} has an invalid shape {:?}",
                tensor.name, tensor.shape
            ))
        })?;
        let (size, decode): (usize, fn(&[u8]) -> f32) = match tensor.dtype {
            dtype::FLOAT16 => (2, |b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
            dtype::FLOAT32 => (4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            other => {
                return Err(self.fail(format!(
                    "{} has tensor type {other}, expected float",
                    tensor.name
                )))
            }
        };
        if Some(data.len()) != count.checked_mul(size) {
            return Err(self.fail(format!(
                "{} holds {} bytes for shape {:?}",
                tensor.name,
                data.len(),
                tensor.shape
            )));
        }
        let values: Vec<f32> = data.chunks_exact(size).map(decode).collect();
        if values.iter().any(|v| !v.is_finite()) {
            return Err(self.fail(format!("{} holds non-finite values", tensor.name)));
        }
        Ok(values)
    }

    fn ints(&self, tensor: &TensorInfo) -> Result<Vec<i32>> {
        if tensor.dtype != dtype::INT32 {
            return Err(self.fail(format!("{} is not int32", tensor.name)));
        }
        Ok(self
            .model
            .data(tensor)
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    fn spatial(&self, index: i32) -> Result<(i32, i32)> {
        let t = self.tensor(index)?;
        match t.shape.as_slice() {
            [_, h, w, _] => Ok((*h, *w)),
            other => Err(self.fail(format!("{} has shape {other:?}, expected NHWC", t.name))),
        }
    }

    /// Converts one weight-carrying layer and checks it against its spec.
    fn layer(&self, operator: &Operator, weights: &mut Weights) -> Result<&'static LayerSpec> {
        let code = self.model.code(operator);
        let kernel = self.constant(self.input(operator, 1)?)?;
        let bias = self.constant(self.input(operator, 2)?)?;
        let tflite_name = kernel.name.strip_suffix("/Kernel").ok_or_else(|| {
            self.fail(format!(
                "weight tensor {} is not named <layer>/Kernel",
                kernel.name
            ))
        })?;
        let (name, kind) = match code.builtin {
            op::CONV_2D => (tflite_name, LayerKind::Conv),
            op::DEPTHWISE_CONV_2D => (tflite_name, LayerKind::Depthwise),
            _ => (SEGMENT_LAYER, LayerKind::TransposeConv),
        };
        let spec = LAYERS
            .iter()
            .find(|l| l.name == name)
            .ok_or_else(|| self.fail(format!("unexpected layer {tflite_name}")))?;
        if spec.kind != kind {
            return Err(self.fail(format!("{name} is a {kind:?}, expected {:?}", spec.kind)));
        }
        if weights.contains_key(&format!("{name}.weight")) {
            return Err(self.fail(format!("layer {name} appears twice")));
        }
        let stride = spec.stride as i32;
        let (k, cin, cout) = (
            spec.kernel as i32,
            spec.in_channels as i32,
            spec.out_channels as i32,
        );
        // Kernel size 1 at stride 1 pads nothing either way.
        let padding_ok = |p: Padding| p == Padding::Same || (spec.kernel == 1 && spec.stride == 1);
        let (expected_shape, options_ok) = match (&operator.options, kind) {
            (
                Options::Conv {
                    padding,
                    stride_w,
                    stride_h,
                    fused,
                    dilation_w,
                    dilation_h,
                },
                LayerKind::Conv,
            ) => (
                vec![cout, k, k, cin],
                padding_ok(*padding)
                    && *stride_w == stride
                    && *stride_h == stride
                    && *fused == Fused::None
                    && *dilation_w == 1
                    && *dilation_h == 1,
            ),
            (
                Options::Depthwise {
                    padding,
                    stride_w,
                    stride_h,
                    depth_multiplier,
                    fused,
                    dilation_w,
                    dilation_h,
                },
                LayerKind::Depthwise,
            ) => (
                vec![1, k, k, cout],
                padding_ok(*padding)
                    && *stride_w == stride
                    && *stride_h == stride
                    && *depth_multiplier == 1
                    && *fused == Fused::None
                    && *dilation_w == 1
                    && *dilation_h == 1,
            ),
            (Options::None, LayerKind::TransposeConv) => {
                // TfLiteTransposeConvParams: padding, stride_width, stride_height (i32 each).
                let params: Vec<i32> = operator
                    .custom_options
                    .chunks_exact(4)
                    .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                (
                    vec![cout, k, k, cin],
                    operator.custom_options.len() == 12
                        && (params[0] == 1 || params[0] == 2)
                        && params[1] == stride
                        && params[2] == stride,
                )
            }
            (other, _) => return Err(self.fail(format!("{name} has options {other:?}"))),
        };
        if !options_ok {
            return Err(self.fail(format!(
                "{name}: options {:?} {:?} differ from kernel {k} stride {stride}, no fused activation",
                operator.options, operator.custom_options
            )));
        }
        if kernel.shape != expected_shape || bias.shape != [cout] {
            return Err(self.fail(format!(
                "{name}: kernel {:?} bias {:?}, expected {expected_shape:?} and [{cout}]",
                kernel.shape, bias.shape
            )));
        }
        let values = self.floats(kernel)?;
        let (k, cin, cout) = (spec.kernel, spec.in_channels, spec.out_channels);
        // TFLite stores [O, kh, kw, I] (depthwise: [1, kh, kw, C]).
        let (shape, data) = match kind {
            LayerKind::Conv => (
                vec![cout, cin, k, k],
                permute(&values, [cout, k, k, cin], |o, y, x, i| {
                    ((o * cin + i) * k + y) * k + x
                }),
            ),
            LayerKind::Depthwise => (
                vec![cout, 1, k, k],
                permute(&values, [1, k, k, cout], |_, y, x, c| (c * k + y) * k + x),
            ),
            LayerKind::TransposeConv => (
                vec![cin, cout, k, k],
                permute(&values, [cout, k, k, cin], |o, y, x, i| {
                    ((i * cout + o) * k + y) * k + x
                }),
            ),
        };
        weights.insert(format!("{name}.weight"), Weight { shape, data });
        weights.insert(
            format!("{name}.bias"),
            Weight {
                shape: vec![cout],
                data: self.floats(bias)?,
            },
        );
        Ok(spec)
    }
}

fn shape_len(shape: &[i32]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| {
        usize::try_from(d).ok().and_then(|d| acc.checked_mul(d))
    })
}

/// Reorders a 4-d row-major array: `to(a, b, c, d)` gives the destination index of
/// source element `[a, b, c, d]`.
fn permute(
    src: &[f32],
    dims: [usize; 4],
    to: impl Fn(usize, usize, usize, usize) -> usize,
) -> Vec<f32> {
    let mut out = vec![0f32; src.len()];
    let mut n = 0;
    for a in 0..dims[0] {
        for b in 0..dims[1] {
            for c in 0..dims[2] {
                for d in 0..dims[3] {
                    out[to(a, b, c, d)] = src[n];
                    n += 1;
                }
            }
        }
    }
    out
}

/// Op kinds besides the weight layers and DEQUANTIZE, with their counts in the
/// MediaPipe graph. Global pooling is AVERAGE_POOL_2D (general model) or MEAN
/// (landscape), counted together.
const OTHER_OPS: [(&str, usize); 8] = [
    ("ADD", 14),
    ("GLOBAL_POOL", 10),
    ("HARD_SWISH", 11),
    ("LOGISTIC", 11),
    ("MUL", 10),
    ("RELU", 22),
    ("RESIZE_BILINEAR", 3),
    ("TRANSPOSE_CONV", 1),
];

/// Checks the graph and returns its weights in candle layout.
pub fn convert(model: &TfliteModel<'_>, variant: SegmentationVariant) -> Result<Weights> {
    let mut checker = Checker {
        model,
        variant,
        dequantized: HashMap::new(),
    };
    for operator in &model.operators {
        if model.code(operator).builtin == op::DEQUANTIZE {
            if let (Some(&from), Some(&to)) = (operator.inputs.first(), operator.outputs.first()) {
                checker.dequantized.insert(to, from);
            }
        }
    }
    let checker = checker;

    let (h, w) = variant.input_size();
    let (h, w) = (h as i32, w as i32);
    let [input] = model.inputs.as_slice() else {
        return Err(checker.fail(format!("{} inputs, expected 1", model.inputs.len())));
    };
    let [output] = model.outputs.as_slice() else {
        return Err(checker.fail(format!("{} outputs, expected 1", model.outputs.len())));
    };
    let input = checker.tensor(*input)?;
    let output = checker.tensor(*output)?;
    if input.shape != [1, h, w, 3] || input.dtype != dtype::FLOAT32 {
        return Err(checker.fail(format!(
            "input {:?}, expected [1, {h}, {w}, 3] float32",
            input.shape
        )));
    }
    if output.shape != [1, h, w, 1] || output.dtype != dtype::FLOAT32 {
        return Err(checker.fail(format!(
            "output {:?}, expected [1, {h}, {w}, 1] float32",
            output.shape
        )));
    }

    let mut weights = Weights::new();
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    for operator in &model.operators {
        let code = model.code(operator);
        let fused_none =
            |options: &Options| matches!(options, Options::Elementwise { fused: Fused::None });
        let kind = match (code.builtin, code.custom.as_deref()) {
            (op::DEQUANTIZE, _) => continue,
            (op::CONV_2D | op::DEPTHWISE_CONV_2D, _) => {
                checker.layer(operator, &mut weights)?;
                continue;
            }
            (op::CUSTOM, Some(TRANSPOSE_CONV_OP)) => {
                checker.layer(operator, &mut weights)?;
                "TRANSPOSE_CONV"
            }
            (op::ADD, _) if fused_none(&operator.options) => "ADD",
            (op::MUL, _) if fused_none(&operator.options) => "MUL",
            (op::HARD_SWISH, _) => "HARD_SWISH",
            (op::LOGISTIC, _) => "LOGISTIC",
            (op::RELU, _) => "RELU",
            (op::AVERAGE_POOL_2D, _) => {
                let (ih, iw) = checker.spatial(checker.input(operator, 0)?)?;
                match operator.options {
                    Options::Pool {
                        padding: Padding::Valid,
                        filter_w,
                        filter_h,
                        fused: Fused::None,
                        ..
                    } if filter_w == iw && filter_h == ih => "GLOBAL_POOL",
                    ref other => {
                        return Err(
                            checker.fail(format!("AVERAGE_POOL_2D is not global: {other:?}"))
                        )
                    }
                }
            }
            (MEAN, _) => {
                let axes = checker.ints(checker.tensor(checker.input(operator, 1)?)?)?;
                let out = checker.tensor(*operator.outputs.first().unwrap_or(&-1))?;
                if axes != [1, 2] || out.shape.len() != 4 {
                    return Err(checker.fail(format!("MEAN over axes {axes:?} to {:?}", out.shape)));
                }
                "GLOBAL_POOL"
            }
            (op::RESIZE_BILINEAR, _) => {
                let (ih, iw) = checker.spatial(checker.input(operator, 0)?)?;
                let size = checker.ints(checker.tensor(checker.input(operator, 1)?)?)?;
                let half_pixel = matches!(
                    operator.options,
                    Options::ResizeBilinear {
                        align_corners: false,
                        half_pixel_centers: true
                    }
                );
                if !half_pixel || size != [2 * ih, 2 * iw] {
                    return Err(checker.fail(format!(
                        "RESIZE_BILINEAR {:?} to {size:?} from {ih}x{iw}, expected x2 with half-pixel centres",
                        operator.options
                    )));
                }
                "RESIZE_BILINEAR"
            }
            _ => {
                return Err(checker.fail(format!(
                    "unexpected operator {} with options {:?}",
                    code.name(),
                    operator.options
                )))
            }
        };
        *counts.entry(kind).or_default() += 1;
    }
    for (kind, expected) in OTHER_OPS {
        let found = counts.get(kind).copied().unwrap_or(0);
        if found != expected {
            return Err(checker.fail(format!("{found} {kind} ops, expected {expected}")));
        }
    }
    for spec in LAYERS {
        if !weights.contains_key(&format!("{}.weight", spec.name)) {
            return Err(checker.fail(format!("layer {} is missing", spec.name)));
        }
    }
    Ok(weights)
}

/// Serialises converted weights as safetensors (f32, sorted by name, no metadata),
/// byte-for-byte reproducible.
pub fn to_safetensors(weights: &Weights) -> Result<Vec<u8>> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = weights
        .iter()
        .map(|(name, w)| {
            let raw = w.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name.clone(), raw, w.shape.clone())
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, raw, shape)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), raw)
                .map(|view| (name.clone(), view))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| FaceError::Fetch(format!("safetensors view: {e}")))?;
    safetensors::tensor::serialize(views, None)
        .map_err(|e| FaceError::Fetch(format!("safetensors serialise: {e}")))
}
