//! A reader for TensorFlow.js graph models (`model.json` + weight shards): the
//! graph's nodes and the named weight tensors, float16 shards widened to f32.
//!
//! Only what the converter needs: node names, ops, inputs and the integer-list
//! attributes; weights in float32, float16 (`quantization.dtype = "float16"`) or
//! int32. Byte-quantised weights (uint8/uint16 with scale and min) are refused by
//! name rather than guessed at.

use std::collections::HashMap;

use serde::Deserialize;

use crate::error::{PetError, Result};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModelJson {
    model_topology: Topology,
    weights_manifest: Vec<ManifestGroup>,
}

#[derive(Debug, Deserialize)]
struct Topology {
    node: Vec<Node>,
}

/// One node of the graph.
#[derive(Debug, Clone, Deserialize)]
pub struct Node {
    pub name: String,
    pub op: String,
    #[serde(default)]
    pub input: Vec<String>,
    #[serde(default)]
    pub attr: HashMap<String, serde_json::Value>,
}

impl Node {
    /// An integer-list attribute such as `strides` (`{"list": {"i": ["1","2","2","1"]}}`).
    pub fn int_list(&self, key: &str) -> Option<Vec<i64>> {
        let items = self.attr.get(key)?.get("list")?.get("i")?.as_array()?;
        items
            .iter()
            .map(|v| v.as_str().and_then(|s| s.parse().ok()).or(v.as_i64()))
            .collect()
    }
}

#[derive(Debug, Deserialize)]
struct ManifestGroup {
    weights: Vec<WeightSpec>,
}

#[derive(Debug, Deserialize)]
struct WeightSpec {
    name: String,
    shape: Vec<usize>,
    dtype: String,
    #[serde(default)]
    quantization: Option<Quantization>,
}

#[derive(Debug, Deserialize)]
struct Quantization {
    dtype: String,
}

/// A weight tensor of the graph, widened to f32 (int32 tensors are kept as i64).
#[derive(Debug, Clone, PartialEq)]
pub enum WeightData {
    F32(Vec<f32>),
    I32(Vec<i32>),
}

#[derive(Debug, Clone)]
pub struct Weight {
    pub shape: Vec<usize>,
    pub data: WeightData,
}

/// A parsed graph model.
#[derive(Debug)]
pub struct GraphModel {
    pub nodes: Vec<Node>,
    pub weights: HashMap<String, Weight>,
}

impl GraphModel {
    /// Parses `model.json` and the concatenated bytes of its weight shards.
    pub fn parse(json: &[u8], shards: &[u8]) -> Result<Self> {
        let model: ModelJson = serde_json::from_slice(json)
            .map_err(|e| PetError::TfjsFormat(format!("model.json: {e}")))?;
        let mut weights = HashMap::new();
        let mut offset = 0usize;
        for spec in model.weights_manifest.into_iter().flat_map(|g| g.weights) {
            let count: usize = spec.shape.iter().product();
            let stored = spec
                .quantization
                .as_ref()
                .map_or(spec.dtype.as_str(), |q| q.dtype.as_str());
            let width = match stored {
                "float32" | "int32" => 4,
                "float16" => 2,
                other => {
                    return Err(PetError::TfjsFormat(format!(
                        "weight {} is stored as {other}, which this reader does not support",
                        spec.name
                    )))
                }
            };
            let end = offset
                .checked_add(count * width)
                .filter(|end| *end <= shards.len())
                .ok_or_else(|| {
                    PetError::TfjsFormat(format!(
                        "weight {} runs past the end of the weight data ({} bytes)",
                        spec.name,
                        shards.len()
                    ))
                })?;
            let bytes = &shards[offset..end];
            offset = end;
            let data = match (stored, spec.dtype.as_str()) {
                ("float16", "float32") => WeightData::F32(
                    bytes
                        .chunks_exact(2)
                        .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                        .collect(),
                ),
                ("float32", "float32") => WeightData::F32(
                    bytes
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                ),
                ("int32", "int32") => WeightData::I32(
                    bytes
                        .chunks_exact(4)
                        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                ),
                (stored, declared) => {
                    return Err(PetError::TfjsFormat(format!(
                        "weight {} is declared {declared} but stored as {stored}",
                        spec.name
                    )))
                }
            };
            weights.insert(
                spec.name,
                Weight {
                    shape: spec.shape,
                    data,
                },
            );
        }
        if offset != shards.len() {
            return Err(PetError::TfjsFormat(format!(
                "the manifest describes {offset} bytes of weights but the shards hold {}",
                shards.len()
            )));
        }
        Ok(Self {
            nodes: model.model_topology.node,
            weights,
        })
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The nodes that read `name` as an input.
    pub fn consumers<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.nodes
            .iter()
            .filter(move |n| n.input.iter().any(|i| i == name))
    }
}
