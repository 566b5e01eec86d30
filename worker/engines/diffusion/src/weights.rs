//! Memory-mapped safetensors with errors that name the file and the tensor.

use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};

use crate::error::{DiffusionError, Result};

/// One memory-mapped `.safetensors` file, read tensor by tensor with an optional name prefix.
pub struct WeightFile {
    path: PathBuf,
    tensors: MmapedSafetensors,
    prefix: String,
    device: Device,
    dtype: DType,
}

impl WeightFile {
    pub fn open(path: &Path, device: &Device, dtype: DType) -> Result<Self> {
        // SAFETY: the file is mapped read-only; like every safetensors loader we rely on the
        // checkpoint not being rewritten while the model is loaded.
        let tensors =
            unsafe { MmapedSafetensors::new(path) }.map_err(|source| DiffusionError::Weights {
                path: path.to_path_buf(),
                tensor: String::new(),
                reason: source.to_string(),
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            tensors,
            prefix: String::new(),
            device: device.clone(),
            dtype,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file holds `name` (ignoring the current prefix).
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.get(name).is_ok()
    }

    /// Prepends `prefix` to every later lookup.
    pub fn set_prefix(&mut self, prefix: &str) {
        self.prefix = prefix.to_string();
    }

    /// The tensor `name`, checked against the expected shape, converted to the model dtype.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let full = format!("{}{name}", self.prefix);
        let tensor = self
            .tensors
            .load(&full, &self.device)
            .map_err(|source| self.error(&full, source.to_string()))?;
        if tensor.dims() != shape {
            return Err(self.error(
                &full,
                format!("shape {:?}, expected {shape:?}", tensor.dims()),
            ));
        }
        tensor
            .to_dtype(self.dtype)
            .map_err(|source| self.error(&full, source.to_string()))
    }

    fn error(&self, tensor: &str, reason: String) -> DiffusionError {
        DiffusionError::Weights {
            path: self.path.clone(),
            tensor: tensor.to_string(),
            reason,
        }
    }
}
