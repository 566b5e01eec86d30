//! From the TFJS graph to our weights: each `convolution_N` of the graph is
//! checked against [`CONVS`]`[N]` (kernel, channels, stride, explicit padding),
//! its bias found as the `Add` that consumes it, the kernel moved from TF's
//! `[kh, kw, in, out]` to candle's `[out, in, kh, kw]`, and everything written
//! as float16 safetensors (the package's weights are float16, so nothing is lost).

use std::collections::HashMap;

use crate::error::{PetError, Result};
use crate::net::{ConvSpec, CONVS};
use crate::tfjs::{GraphModel, WeightData};

/// A converted tensor: shape and f32 values.
pub struct Converted {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

fn graph_error(what: String) -> PetError {
    PetError::Graph(what)
}

/// Name of the N-th convolution node in the converted graph.
fn conv_node_name(index: usize) -> String {
    if index == 0 {
        "PartitionedCall/convolution".to_string()
    } else {
        format!("PartitionedCall/convolution_{index}")
    }
}

fn f32_weight<'a>(graph: &'a GraphModel, name: &str) -> Result<(&'a [usize], &'a [f32])> {
    let weight = graph
        .weights
        .get(name)
        .ok_or_else(|| graph_error(format!("no weight named {name}")))?;
    match &weight.data {
        WeightData::F32(values) => Ok((&weight.shape, values)),
        WeightData::I32(_) => Err(graph_error(format!("weight {name} is not floating point"))),
    }
}

/// Checks one convolution against its spec and returns (kernel, bias).
fn convert_conv(
    graph: &GraphModel,
    index: usize,
    spec: ConvSpec,
) -> Result<(Converted, Converted)> {
    let name = conv_node_name(index);
    let node = graph
        .node(&name)
        .filter(|n| n.op == "Conv2D")
        .ok_or_else(|| graph_error(format!("no Conv2D node {name} (for {})", spec.name)))?;
    let strides = node.int_list("strides").unwrap_or_default();
    if strides != [1, spec.stride as i64, spec.stride as i64, 1] {
        return Err(graph_error(format!(
            "{name} has strides {strides:?}, expected {} for {}",
            spec.stride, spec.name
        )));
    }
    let kernel_name = node
        .input
        .get(1)
        .ok_or_else(|| graph_error(format!("{name} has no kernel input")))?;
    let (shape, values) = f32_weight(graph, kernel_name)?;
    let expected = [
        spec.kernel,
        spec.kernel,
        spec.in_channels,
        spec.out_channels,
    ];
    if shape != expected {
        return Err(graph_error(format!(
            "{name} kernel has shape {shape:?}, expected {expected:?} for {}",
            spec.name
        )));
    }
    let bias_add = graph
        .consumers(&name)
        .find(|n| matches!(n.op.as_str(), "Add" | "AddV2" | "BiasAdd"))
        .ok_or_else(|| graph_error(format!("{name} is not followed by a bias Add")))?;
    let bias_name = bias_add
        .input
        .iter()
        .find(|i| **i != name)
        .ok_or_else(|| graph_error(format!("the Add after {name} has no bias input")))?;
    let (bias_shape, bias) = f32_weight(graph, bias_name)?;
    if bias_shape != [spec.out_channels] {
        return Err(graph_error(format!(
            "bias of {name} has shape {bias_shape:?}, expected [{}]",
            spec.out_channels
        )));
    }
    let (k, cin, cout) = (spec.kernel, spec.in_channels, spec.out_channels);
    let mut kernel = vec![0f32; values.len()];
    for y in 0..k {
        for x in 0..k {
            for i in 0..cin {
                for o in 0..cout {
                    kernel[((o * cin + i) * k + y) * k + x] =
                        values[((y * k + x) * cin + i) * cout + o];
                }
            }
        }
    }
    Ok((
        Converted {
            shape: vec![cout, cin, k, k],
            values: kernel,
        },
        Converted {
            shape: vec![cout],
            values: bias.to_vec(),
        },
    ))
}

/// Checks that the graph is the network of [`crate::net`] and converts its weights.
pub fn convert(graph: &GraphModel) -> Result<HashMap<String, Converted>> {
    let convs = graph.nodes.iter().filter(|n| n.op == "Conv2D").count();
    if convs != CONVS.len() {
        return Err(graph_error(format!(
            "the graph has {convs} convolutions, expected {}",
            CONVS.len()
        )));
    }
    let mut out = HashMap::new();
    for (index, spec) in CONVS.iter().enumerate() {
        let (kernel, bias) = convert_conv(graph, index, *spec)?;
        out.insert(format!("{}.weight", spec.name), kernel);
        out.insert(format!("{}.bias", spec.name), bias);
    }
    check_pool_padding(graph)?;
    Ok(out)
}

/// The stem's max pool pads with `-inf`; the network hard-codes that, so a graph
/// padding with anything else is not this network.
fn check_pool_padding(graph: &GraphModel) -> Result<()> {
    let (_, values) = f32_weight(graph, "PartitionedCall/PadV2/constant_values")?;
    if values != [f32::NEG_INFINITY] {
        return Err(graph_error(format!(
            "the stem pool pads with {values:?}, expected -inf"
        )));
    }
    Ok(())
}

/// Serialises converted weights as float16 safetensors, names sorted so the
/// bytes (and their pinned hash) are reproducible.
pub fn to_safetensors(weights: &HashMap<String, Converted>) -> Result<Vec<u8>> {
    let mut names: Vec<&String> = weights.keys().collect();
    names.sort();
    let buffers: Vec<(String, Vec<usize>, Vec<u8>)> = names
        .into_iter()
        .map(|name| {
            let w = &weights[name];
            let bytes = w
                .values
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .collect();
            (name.clone(), w.shape.clone(), bytes)
        })
        .collect();
    let views = buffers
        .iter()
        .map(|(name, shape, bytes)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F16, shape.clone(), bytes)
                .map(|view| (name.clone(), view))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| graph_error(format!("safetensors: {e}")))?;
    safetensors::tensor::serialize(views, None)
        .map_err(|e| graph_error(format!("safetensors: {e}")))
}
