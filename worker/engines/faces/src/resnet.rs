//! dlib's ResNet face descriptor network (FORMAT.md section 4): 150x150 RGB chip in,
//! 128 numbers out.

use candle_core::{Device, Tensor};

use crate::dlib_format::DlibReader;
use crate::dnn::{read_dnn, LayerRecord, PoolSpec};
use crate::error::{FaceError, Result, TensorContext};
use crate::layers::{add_zero_padded, relu, relu_with, FusedConv, ReluGradient};

pub const CHIP_SIZE: usize = 150;
pub const DESCRIPTOR_LEN: usize = 128;
const FILE: &str = "dlib_face_recognition_resnet_model_v1.dat";

/// `y = affine(con(relu(affine(con(x)))))`; the first con has stride 2 in a
/// down-sampling block.
#[derive(Debug, Clone)]
struct ResidualBlock {
    /// conv, affine, relu.
    conv1: FusedConv,
    /// conv, affine (the relu follows the addition).
    conv2: FusedConv,
    /// The 2x2 average pool applied to the shortcut of a down-sampling block.
    shortcut_pool: Option<PoolSpec>,
}

/// The descriptor network ready for inference.
#[derive(Debug, Clone)]
pub struct DescriptorNet {
    avg_rgb: [f32; 3],
    /// conv, affine, relu.
    stem_conv: FusedConv,
    stem_pool: PoolSpec,
    blocks: Vec<ResidualBlock>,
    /// `[256][128]`, so `output = x · W`.
    fc: Tensor,
    device: Device,
}

fn layout(what: impl Into<String>) -> FaceError {
    FaceError::Layout {
        file: FILE.to_string(),
        what: what.into(),
    }
}

/// Walks the forward-ordered records, checking each one is the expected kind.
struct RecordCursor<'a> {
    records: &'a [LayerRecord],
    next: usize,
}

impl<'a> RecordCursor<'a> {
    fn take(&mut self) -> Result<&'a LayerRecord> {
        let r = self
            .records
            .get(self.next)
            .ok_or_else(|| layout("network ends early"))?;
        self.next += 1;
        Ok(r)
    }

    fn peek(&self) -> Option<&'a LayerRecord> {
        self.records.get(self.next)
    }

    fn expect_relu(&mut self) -> Result<()> {
        match self.take()? {
            LayerRecord::Relu => Ok(()),
            other => Err(layout(format!("expected relu, found {other:?}"))),
        }
    }
}

impl DescriptorNet {
    pub fn from_bytes(bytes: &[u8], device: &Device) -> Result<Self> {
        let mut reader = DlibReader::new(bytes, FILE);
        let file = read_dnn(&mut reader, |r, loss| {
            if loss != "loss_metric_2" && loss != "loss_metric_" {
                return Err(r.error(format!("expected a metric loss, found {loss}")));
            }
            if loss == "loss_metric_2" {
                r.real()?; // margin
                r.real()?; // distance threshold
            }
            Ok(())
        })?;
        if file.input.kind != "input_rgb_image_sized" {
            return Err(layout(format!(
                "unexpected input layer {}",
                file.input.kind
            )));
        }
        let mut cur = RecordCursor {
            records: &file.layers,
            next: 0,
        };
        let stem_conv = fused(&mut cur, true, device)?;
        let stem_pool = match cur.take()? {
            LayerRecord::MaxPool(spec) => *spec,
            other => return Err(layout(format!("expected max_pool, found {other:?}"))),
        };
        let mut blocks = Vec::new();
        while let Some(LayerRecord::Conv { .. }) = cur.peek() {
            blocks.push(read_block(&mut cur, device)?);
        }
        match cur.take()? {
            LayerRecord::AvgPool(spec) if spec.window == (0, 0) => {}
            other => return Err(layout(format!("expected global avg_pool, found {other:?}"))),
        }
        let fc = match cur.take()? {
            LayerRecord::FullyConnected {
                num_inputs,
                num_outputs,
                params,
                has_bias: false,
            } if *num_outputs == DESCRIPTOR_LEN
                && params.data.len() == num_inputs * num_outputs =>
            {
                Tensor::from_slice(&params.data, (*num_inputs, *num_outputs), device)
                    .ctx("fc weights")?
            }
            other => {
                return Err(layout(format!(
                    "expected fc 128 without bias, found {other:?}"
                )))
            }
        };
        if cur.peek().is_some() {
            return Err(layout("extra layers after the fc layer"));
        }
        Ok(Self {
            avg_rgb: file.input.avg_rgb,
            stem_conv,
            stem_pool,
            blocks,
            fc,
            device: device.clone(),
        })
    }

    /// Builds the `[n,3,150,150]` input: planar RGB, `(pixel - avg)/256` in f32.
    pub fn chips_to_tensor(&self, chips: &[&image::RgbImage]) -> Result<Tensor> {
        let plane = CHIP_SIZE * CHIP_SIZE;
        let mut data = vec![0f32; chips.len() * 3 * plane];
        for (n, chip) in chips.iter().enumerate() {
            if chip.width() as usize != CHIP_SIZE || chip.height() as usize != CHIP_SIZE {
                return Err(FaceError::Image(format!(
                    "face chip must be {CHIP_SIZE}x{CHIP_SIZE}, got {}x{}",
                    chip.width(),
                    chip.height()
                )));
            }
            let base = n * 3 * plane;
            for (i, px) in chip.pixels().enumerate() {
                for c in 0..3 {
                    data[base + c * plane + i] = (f32::from(px[c]) - self.avg_rgb[c]) / 256.0;
                }
            }
        }
        Tensor::from_vec(data, (chips.len(), 3, CHIP_SIZE, CHIP_SIZE), &self.device)
            .ctx("descriptor input")
    }

    /// 128-d descriptors of a batch of aligned 150x150 chips.
    pub fn descriptors(&self, chips: &[&image::RgbImage]) -> Result<Vec<[f32; DESCRIPTOR_LEN]>> {
        if chips.is_empty() {
            return Ok(Vec::new());
        }
        let input = self.chips_to_tensor(chips)?;
        let out = self.forward(&input)?;
        let rows: Vec<Vec<f32>> = out.to_vec2().ctx("descriptor output")?;
        rows.into_iter()
            .map(|row| {
                row.try_into()
                    .map_err(|_| layout("descriptor output is not 128 wide"))
            })
            .collect()
    }

    /// Forward pass on a prepared `[n,3,150,150]` tensor; returns `[n,128]`.
    pub fn forward(&self, input: &Tensor) -> Result<Tensor> {
        let x = self.stem_conv.forward(input)?;
        let (w, s) = (self.stem_pool.window, self.stem_pool.stride);
        let mut x = x.max_pool2d_with_stride(w, s).ctx("stem max_pool")?;
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        let pooled = x.mean((2, 3)).ctx("global average pool")?;
        pooled.matmul(&self.fc).ctx("fc")
    }

    /// The descriptor input of chips given as a `(n, 3, 150, 150)` tensor in pixel units
    /// (0..255), on candle ops so gradients reach the pixels.
    pub fn normalize_chip_tensor(&self, chips: &Tensor) -> Result<Tensor> {
        let mean = Tensor::from_slice(&self.avg_rgb, (1, 3, 1, 1), chips.device())
            .and_then(|m| m.to_dtype(chips.dtype()))
            .ctx("chip mean")?;
        chips
            .broadcast_sub(&mean)
            .and_then(|t| t.affine(1.0 / 256.0, 0.0))
            .ctx("chip normalisation")
    }

    /// The same network as [`Self::forward`] on candle's autograd path: candle's convolutions on
    /// every device and a max pool whose gradient is defined for overlapping windows. Runs in the
    /// input's dtype (see [`Self::with_dtype`]).
    pub fn forward_differentiable(&self, input: &Tensor) -> Result<Tensor> {
        self.forward_differentiable_with(input, ReluGradient::Exact)
    }

    /// [`Self::forward_differentiable`] with a choice of the relus' gradient (guidance uses
    /// [`ReluGradient::Smooth`], see there why).
    pub fn forward_differentiable_with(
        &self,
        input: &Tensor,
        gradient: ReluGradient,
    ) -> Result<Tensor> {
        let x = self.stem_conv.candle_forward_with(input, gradient)?;
        let mut x = max_pool_differentiable(&x, self.stem_pool)?;
        for block in &self.blocks {
            x = block.forward_differentiable(&x, gradient)?;
        }
        let pooled = x.mean((2, 3)).ctx("global average pool")?;
        pooled.matmul(&self.fc).ctx("fc")
    }

    /// A copy whose weights are in `dtype` (f64 for finite-difference checks).
    pub fn with_dtype(&self, dtype: candle_core::DType) -> Result<Self> {
        Ok(Self {
            avg_rgb: self.avg_rgb,
            stem_conv: self.stem_conv.with_dtype(dtype)?,
            stem_pool: self.stem_pool,
            blocks: self
                .blocks
                .iter()
                .map(|b| {
                    Ok(ResidualBlock {
                        conv1: b.conv1.with_dtype(dtype)?,
                        conv2: b.conv2.with_dtype(dtype)?,
                        shortcut_pool: b.shortcut_pool,
                    })
                })
                .collect::<Result<_>>()?,
            fc: self.fc.to_dtype(dtype).ctx("fc dtype")?,
            device: self.device.clone(),
        })
    }
}

/// Max pooling as the maximum over the window's strided views, so that candle's backward (which
/// handles only window == stride for its own max pool) is exact for dlib's 3x3 stride-2 pool.
fn max_pool_differentiable(x: &Tensor, spec: PoolSpec) -> Result<Tensor> {
    let (window, stride) = (spec.window, spec.stride);
    if window == stride {
        return x.max_pool2d_with_stride(window, stride).ctx("max_pool");
    }
    let (_, _, h, w) = x.dims4().ctx("max_pool input")?;
    let out_h = (h - window.0) / stride.0 + 1;
    let out_w = (w - window.1) / stride.1 + 1;
    let mut result: Option<Tensor> = None;
    for dy in 0..window.0 {
        for dx in 0..window.1 {
            let view = strided_view(x, (dy, dx), stride, (out_h, out_w)).ctx("max_pool view")?;
            result = Some(match result {
                None => view,
                Some(r) => r.maximum(&view).ctx("max_pool")?,
            });
        }
    }
    result.ok_or_else(|| layout("empty max_pool window"))
}

/// `x[:, :, start.0 :: stride.0, start.1 :: stride.1]`, `count` rows and columns.
fn strided_view(
    x: &Tensor,
    start: (usize, usize),
    stride: (usize, usize),
    count: (usize, usize),
) -> candle_core::Result<Tensor> {
    let mut t = x.clone();
    for (dim, (s, (st, n))) in [
        (2, (start.0, (stride.0, count.0))),
        (3, (start.1, (stride.1, count.1))),
    ] {
        let len = t.dim(dim)?;
        let needed = s + st * n;
        if needed > len {
            t = t.pad_with_zeros(dim, 0, needed - len)?;
        }
        t = t.narrow(dim, s, st * n)?;
        let mut shape = t.dims().to_vec();
        shape[dim] = n;
        shape.insert(dim + 1, st);
        t = t.reshape(shape)?.narrow(dim + 1, 0, 1)?.squeeze(dim + 1)?;
    }
    Ok(t)
}

/// A con layer and the affine after it, plus the relu after that when `relu`.
fn fused(cur: &mut RecordCursor<'_>, relu: bool, device: &Device) -> Result<FusedConv> {
    let conv = cur.take()?;
    let affine = cur.take()?;
    if relu {
        cur.expect_relu()?;
    }
    FusedConv::from_records(conv, Some(affine), relu, device, FILE)
}

fn read_block(cur: &mut RecordCursor<'_>, device: &Device) -> Result<ResidualBlock> {
    let conv1 = fused(cur, true, device)?;
    let conv2 = fused(cur, false, device)?;
    let shortcut_pool = match cur.peek() {
        Some(LayerRecord::AvgPool(spec)) if spec.window != (0, 0) => {
            let spec = *spec;
            cur.take()?;
            Some(spec)
        }
        _ => None,
    };
    match cur.take()? {
        LayerRecord::AddPrev => {}
        other => return Err(layout(format!("expected add_prev, found {other:?}"))),
    }
    cur.expect_relu()?;
    Ok(ResidualBlock {
        conv1,
        conv2,
        shortcut_pool,
    })
}

impl ResidualBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.conv2.forward(&self.conv1.forward(x)?)?;
        let shortcut = match self.shortcut_pool {
            Some(spec) => x
                .avg_pool2d_with_stride(spec.window, spec.stride)
                .ctx("shortcut avg_pool")?,
            None => x.clone(),
        };
        relu(&add_zero_padded(&y, &shortcut)?)
    }

    fn forward_differentiable(&self, x: &Tensor, gradient: ReluGradient) -> Result<Tensor> {
        let y = self
            .conv2
            .candle_forward_with(&self.conv1.candle_forward_with(x, gradient)?, gradient)?;
        let shortcut = match self.shortcut_pool {
            Some(spec) => avg_pool_differentiable(x, spec)?,
            None => x.clone(),
        };
        relu_with(&add_zero_padded(&y, &shortcut)?, gradient)
    }
}

/// Average pooling as the mean of the window's strided views: candle's own backward assumes the
/// input divides evenly into windows, and dlib's shortcut pools odd sizes (37 -> 18).
fn avg_pool_differentiable(x: &Tensor, spec: PoolSpec) -> Result<Tensor> {
    let (window, stride) = (spec.window, spec.stride);
    let (_, _, h, w) = x.dims4().ctx("avg_pool input")?;
    let out_h = (h - window.0) / stride.0 + 1;
    let out_w = (w - window.1) / stride.1 + 1;
    let mut sum: Option<Tensor> = None;
    for dy in 0..window.0 {
        for dx in 0..window.1 {
            let view = strided_view(x, (dy, dx), stride, (out_h, out_w)).ctx("avg_pool view")?;
            sum = Some(match sum {
                None => view,
                Some(s) => (s + view).ctx("avg_pool")?,
            });
        }
    }
    let sum = sum.ok_or_else(|| layout("empty avg_pool window"))?;
    sum.affine(1.0 / (window.0 * window.1) as f64, 0.0)
        .ctx("avg_pool")
}
