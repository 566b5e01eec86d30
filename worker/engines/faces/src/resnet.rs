//! dlib's ResNet face descriptor network (FORMAT.md section 4): 150x150 RGB chip in,
//! 128 numbers out.

use candle_core::{Device, Tensor};

use crate::dlib_format::DlibReader;
use crate::dnn::{read_dnn, LayerRecord, PoolSpec};
use crate::error::{FaceError, Result, TensorContext};
use crate::layers::{add_zero_padded, relu, FusedConv};

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
}
