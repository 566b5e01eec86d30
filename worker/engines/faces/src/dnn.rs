//! Generic reader for dlib DNN files (FORMAT.md section 2): the loss record, the
//! wrapper versions, the input record and then the layer records in forward order.

use crate::dlib_format::{DlibReader, RawTensor};
use crate::error::Result;

/// One layer record, already reduced to what inference needs.
#[derive(Debug, Clone)]
pub enum LayerRecord {
    Conv {
        num_filters: usize,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
        /// `[num_filters][in][nr][nc]` then `num_filters` biases.
        params: RawTensor,
        filters_shape: [usize; 4],
    },
    /// Per-channel `y = gamma*x + beta` (batch-norm records are converted at load).
    Affine {
        gamma: Vec<f32>,
        beta: Vec<f32>,
    },
    Relu,
    MaxPool(PoolSpec),
    AvgPool(PoolSpec),
    AddPrev,
    FullyConnected {
        num_inputs: usize,
        num_outputs: usize,
        /// `[num_inputs][num_outputs]` row-major, then biases when `has_bias`.
        params: RawTensor,
        has_bias: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSpec {
    /// Window; 0 means the whole input.
    pub window: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
}

/// The input layer record.
#[derive(Debug, Clone)]
pub struct InputRecord {
    pub kind: String,
    pub avg_rgb: [f32; 3],
    pub pyramid_padding: usize,
    pub pyramid_outer_padding: usize,
}

/// A parsed network: loss record name, input record, layers in forward order.
#[derive(Debug, Clone)]
pub struct DnnFile {
    pub loss: String,
    pub input: InputRecord,
    pub layers: Vec<LayerRecord>,
}

/// Parses a whole network. `read_loss` consumes the loss-specific fields after the
/// loss name.
pub fn read_dnn(
    r: &mut DlibReader<'_>,
    read_loss: impl FnOnce(&mut DlibReader<'_>, &str) -> Result<()>,
) -> Result<DnnFile> {
    let loss_version = r.int()?;
    if loss_version != 1 {
        return Err(r.error(format!("loss wrapper version {loss_version}, expected 1")));
    }
    let loss = r.string()?;
    read_loss(r, &loss)?;
    // Wrapper versions (1..=3) follow, one per wrapper; the input record's name is a
    // string whose length is far above 3, which ends the list.
    let mut versions = Vec::new();
    while r.peek_int()? <= 3 {
        versions.push(r.int()?);
    }
    let innermost_version = *versions
        .last()
        .ok_or_else(|| r.error("no layer wrappers found"))?;
    let input = read_input(r)?;
    let mut layers = Vec::new();
    let mut first = true;
    while !r.is_at_end() {
        if let Some(layer) = read_layer(r)? {
            layers.push(layer);
        }
        read_trailer(r, first, innermost_version)?;
        first = false;
    }
    Ok(DnnFile {
        loss,
        input,
        layers,
    })
}

fn read_input(r: &mut DlibReader<'_>) -> Result<InputRecord> {
    let kind = r.string()?;
    let avg_rgb = [r.real()? as f32, r.real()? as f32, r.real()? as f32];
    let (pyramid_padding, pyramid_outer_padding) = match kind.as_str() {
        "input_rgb_image_pyramid" => (10, 11),
        "input_rgb_image_pyramid2" => (r.usize()?, r.usize()?),
        "input_rgb_image_sized" => {
            r.usize()?;
            r.usize()?;
            (0, 0)
        }
        other => return Err(r.error(format!("unknown input layer {other:?}"))),
    };
    Ok(InputRecord {
        kind,
        avg_rgb,
        pyramid_padding,
        pyramid_outer_padding,
    })
}

/// Bools and (always empty in these files) gradient tensors after each record.
fn read_trailer(r: &mut DlibReader<'_>, first: bool, innermost_version: i64) -> Result<()> {
    for _ in 0..3 {
        r.boolean()?;
    }
    r.tensor()?; // x_grad
    r.tensor()?; // cached_output
    if first {
        r.tensor()?; // grad_final
        if innermost_version == 3 {
            r.usize()?; // sample_expansion_factor
        }
    } else if !r.is_at_end() && r.peek_int()? == 2 {
        // params_grad of a version-2 layer; layer names are never 2 bytes long, so a
        // leading 2 can only be a tensor version.
        r.tensor()?;
    }
    Ok(())
}

fn read_four_reals(r: &mut DlibReader<'_>) -> Result<()> {
    for _ in 0..4 {
        r.real()?;
    }
    Ok(())
}

fn read_layer(r: &mut DlibReader<'_>) -> Result<Option<LayerRecord>> {
    let kind = r.string()?;
    let layer = match kind.as_str() {
        "con_4" | "con_5" | "con_6" => {
            let params = r.tensor()?;
            let num_filters = r.usize()?;
            let kernel = (r.usize()?, r.usize()?);
            let stride = (r.usize()?, r.usize()?);
            let padding = (r.usize()?, r.usize()?);
            let filters_shape = r.alias_tensor()?;
            r.alias_tensor()?;
            read_four_reals(r)?;
            let use_bias = if kind != "con_4" { r.boolean()? } else { true };
            let use_relu = if kind == "con_6" { r.boolean()? } else { false };
            if !use_bias || use_relu {
                return Err(r.error("con layers without bias or with fused relu are not supported"));
            }
            LayerRecord::Conv {
                num_filters,
                kernel,
                stride,
                padding,
                params,
                filters_shape,
            }
        }
        "affine_" | "affine_2" => {
            let params = r.tensor()?;
            r.alias_tensor()?;
            r.alias_tensor()?;
            let mode = r.int()?;
            if kind == "affine_2" && r.boolean()? {
                return Err(r.error("disabled affine layers are not supported"));
            }
            if mode != 0 {
                return Err(r.error("only per-channel (CONV_MODE) affine layers are supported"));
            }
            let k = params.data.len() / 2;
            LayerRecord::Affine {
                gamma: params.data[..k].to_vec(),
                beta: params.data[k..].to_vec(),
            }
        }
        "bn_con2" => read_batch_norm_as_affine(r)?,
        "relu_" => LayerRecord::Relu,
        "relu_2" => {
            r.boolean()?;
            LayerRecord::Relu
        }
        "max_pool_2" | "avg_pool_2" => {
            let spec = PoolSpec {
                window: (r.usize()?, r.usize()?),
                stride: (r.usize()?, r.usize()?),
                padding: (r.usize()?, r.usize()?),
            };
            if kind == "max_pool_2" {
                LayerRecord::MaxPool(spec)
            } else {
                LayerRecord::AvgPool(spec)
            }
        }
        "add_prev_" => LayerRecord::AddPrev,
        "fc_2" | "fc_3" => {
            let num_outputs = r.usize()?;
            let num_inputs = r.usize()?;
            let params = r.tensor()?;
            r.alias_tensor()?;
            r.alias_tensor()?;
            let bias_mode = r.int()?;
            read_four_reals(r)?;
            let use_bias = if kind == "fc_3" { r.boolean()? } else { true };
            LayerRecord::FullyConnected {
                num_inputs,
                num_outputs,
                params,
                has_bias: bias_mode == 0 && use_bias,
            }
        }
        other => return Err(r.error(format!("unknown layer record {other:?}"))),
    };
    Ok(Some(layer))
}

/// dlib converts a stored batch-norm record to an affine layer in f32 when the C++
/// type says `affine` (FORMAT.md 2.2).
fn read_batch_norm_as_affine(r: &mut DlibReader<'_>) -> Result<LayerRecord> {
    let params = r.tensor()?;
    r.alias_tensor()?;
    r.alias_tensor()?;
    r.tensor()?; // means
    r.tensor()?; // invstds
    let running_means = r.tensor()?;
    let running_variances = r.tensor()?;
    r.usize()?;
    r.usize()?;
    read_four_reals(r)?;
    let eps = r.real()? as f32;
    let k = params.data.len() / 2;
    if running_means.data.len() != k || running_variances.data.len() != k {
        return Err(r.error("batch-norm statistics do not match the channel count"));
    }
    let mut gamma = Vec::with_capacity(k);
    let mut beta = Vec::with_capacity(k);
    for c in 0..k {
        let g = params.data[c] / (running_variances.data[c] + eps).sqrt();
        gamma.push(g);
        beta.push(params.data[k + c] - g * running_means.data[c]);
    }
    Ok(LayerRecord::Affine { gamma, beta })
}
