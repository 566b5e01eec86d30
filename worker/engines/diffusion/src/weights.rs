//! Memory-mapped safetensors with errors that name the file and the tensor.
//!
//! The header is read by the `safetensors` crate (through candle's `MmapedSafetensors`), which refuses
//! a header length past the file or over 100 MB, headers that are not UTF-8 JSON, offsets that leave
//! gaps, overlap or run past the data, shapes whose element count overflows, and byte lengths that do
//! not match dtype × shape. Nothing is allocated from the header's numbers: the file is mapped, and a
//! tensor is copied only once its shape is the one expected. `fuzz_safetensors` (below) holds it to that.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::safetensors::{Load, MmapedSafetensors};
use candle_core::{DType, Device, Tensor};

use crate::error::{DiffusionError, Result};

/// One memory-mapped `.safetensors` file, read tensor by tensor with an optional name prefix.
pub struct WeightFile {
    path: PathBuf,
    tensors: MmapedSafetensors,
    prefix: String,
    device: Device,
    dtype: DType,
    /// Deltas added to tensors as they load, by full tensor name (fused LoRA; see `lora`).
    patches: Arc<HashMap<String, Tensor>>,
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
            patches: Arc::default(),
        })
    }

    /// Every tensor name in the file with its shape (the prefix is not applied).
    pub fn shapes(&self) -> Vec<(String, Vec<usize>)> {
        self.tensors
            .tensors()
            .into_iter()
            .map(|(name, view)| (name, view.shape().to_vec()))
            .collect()
    }

    /// Adds `patches` (full tensor name -> f32 delta of that tensor's shape) to the tensors as
    /// they load; the caller has checked the names and shapes against [`Self::shapes`].
    pub fn with_patches(mut self, patches: HashMap<String, Tensor>) -> Self {
        self.patches = Arc::new(patches);
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Whether the file holds `name` (ignoring the current prefix).
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.get(name).is_ok()
    }

    /// Prepends `prefix` to every later lookup.
    pub fn set_prefix(&mut self, prefix: &str) {
        self.prefix = prefix.to_string();
    }

    /// The tensor `name`, checked against the expected shape before any of its bytes are copied,
    /// converted to the model dtype.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let full = format!("{}{name}", self.prefix);
        let view = self
            .tensors
            .get(&full)
            .map_err(|source| self.error(&full, source.to_string()))?;
        if view.shape() != shape {
            return Err(self.error(
                &full,
                format!("shape {:?}, expected {shape:?}", view.shape()),
            ));
        }
        let tensor = view
            .load(&self.device)
            .map_err(|source| self.error(&full, source.to_string()))?;
        let tensor = match self.patches.get(&full) {
            // The sum in f32, then one rounding to the model dtype (fused like diffusers' fuse_lora).
            Some(delta) => tensor
                .to_dtype(DType::F32)
                .and_then(|base| base + delta.to_device(&self.device)?)
                .map_err(|source| self.error(&full, format!("adding its LoRA delta: {source}")))?,
            None => tensor,
        };
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

/// Test files written to the temporary directory, removed when dropped.
#[cfg(test)]
struct TempFile(PathBuf);

#[cfg(test)]
impl TempFile {
    fn with(bytes: &[u8]) -> TempFile {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "reverie-weights-{}-{}.safetensors",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, bytes).expect("write a test file");
        TempFile(path)
    }
}

#[cfg(test)]
impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Opens `bytes` as a weight file and loads every tensor its header names, at the header's own shape:
/// `Ok` with the tensors' names, or the first error (which must name the file). Never panics.
#[cfg(test)]
fn open_and_load_all(bytes: &[u8]) -> std::result::Result<Vec<String>, String> {
    let file = TempFile::with(bytes);
    let check = |error: DiffusionError| {
        let text = error.to_string();
        assert!(
            matches!(error, DiffusionError::Weights { .. }) && text.contains("reverie-weights-"),
            "{text}"
        );
        text
    };
    let weights = WeightFile::open(&file.0, &Device::Cpu, DType::F32).map_err(check)?;
    let mut names: Vec<(String, Vec<usize>)> = weights
        .tensors
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, view.shape().to_vec()))
        .collect();
    names.sort();
    for (name, shape) in &names {
        weights.get(name, shape).map_err(check)?;
        // The wrong shape is refused before the bytes are touched.
        let mut wrong = shape.clone();
        wrong.push(1);
        assert!(weights.get(name, &wrong).is_err());
    }
    Ok(names.into_iter().map(|(name, _)| name).collect())
}

#[cfg(test)]
mod hostile_safetensors {
    use super::*;

    /// A file of `header` (JSON, its length in front) followed by `data` bytes.
    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header.as_bytes());
        bytes.extend(data);
        bytes
    }

    fn refused(bytes: &[u8]) -> String {
        match open_and_load_all(bytes) {
            Ok(names) => panic!("accepted, with tensors {names:?}"),
            Err(error) => error,
        }
    }

    #[test]
    fn header_lengths_past_the_file_or_absurd_are_refused() {
        refused(&[]);
        let error = refused(&[1, 0, 0, 0, 0, 0, 0]);
        assert!(error.contains("header"), "{error}");
        for length in [u64::MAX, 1 << 40, 100_000_001, 1_000] {
            let mut bytes = length.to_le_bytes().to_vec();
            bytes.extend(b"{}");
            let error = refused(&bytes);
            assert!(error.contains("header"), "{length}: {error}");
        }
    }

    #[test]
    fn headers_that_are_not_json_objects_are_refused() {
        refused(&file("\u{0}\u{ff}", &[]));
        let mut not_utf8 = 2u64.to_le_bytes().to_vec();
        not_utf8.extend([0xFF, 0xFE]);
        refused(&not_utf8);
        refused(&file("[1,2,3]", &[]));
        refused(&file(r#"{"w": 7}"#, &[]));
        refused(&file(r#"{"w": {"dtype": "F32", "shape": [1]}}"#, &[0; 4]));
    }

    #[test]
    fn offsets_out_of_range_overlapping_or_leaving_gaps_are_refused() {
        let f32 = |offsets: &str, shape: &str| {
            format!(r#""dtype":"F32","shape":{shape},"data_offsets":{offsets}"#)
        };
        // Past the data.
        refused(&file(
            &format!("{{\"w\":{{{}}}}}", f32("[0,8]", "[2]")),
            &[0; 4],
        ));
        refused(&file(
            &format!("{{\"w\":{{{}}}}}", f32("[0,18446744073709551615]", "[2]")),
            &[0; 8],
        ));
        // Ending before they start.
        refused(&file(
            &format!("{{\"w\":{{{}}}}}", f32("[8,0]", "[2]")),
            &[0; 8],
        ));
        // Overlapping.
        refused(&file(
            &format!(
                "{{\"a\":{{{}}},\"b\":{{{}}}}}",
                f32("[0,8]", "[2]"),
                f32("[4,12]", "[2]")
            ),
            &[0; 12],
        ));
        // Two names, the same bytes.
        refused(&file(
            &format!(
                "{{\"a\":{{{}}},\"b\":{{{}}}}}",
                f32("[0,8]", "[2]"),
                f32("[0,8]", "[2]")
            ),
            &[0; 8],
        ));
        // A gap, and data the header does not cover.
        refused(&file(
            &format!(
                "{{\"a\":{{{}}},\"b\":{{{}}}}}",
                f32("[0,4]", "[1]"),
                f32("[8,12]", "[1]")
            ),
            &[0; 12],
        ));
        refused(&file(
            &format!("{{\"w\":{{{}}}}}", f32("[0,4]", "[1]")),
            &[0; 8],
        ));
    }

    #[test]
    fn dtypes_and_shapes_that_disagree_with_the_byte_length_are_refused() {
        let tensor = |dtype: &str, shape: &str, end: usize| {
            file(
                &format!(
                    r#"{{"w":{{"dtype":"{dtype}","shape":{shape},"data_offsets":[0,{end}]}}}}"#
                ),
                &vec![0; end],
            )
        };
        refused(&tensor("F32", "[3]", 8));
        refused(&tensor("F16", "[3]", 8));
        refused(&tensor("F32", "[4294967296,4294967296,2]", 8));
        refused(&tensor("F64", "[18446744073709551615,2]", 16));
        refused(&tensor("F32", "[-1]", 4));
        refused(&tensor("Q4", "[2]", 8));
        // Four-bit values that do not fill whole bytes.
        refused(&tensor("F4", "[3]", 2));
    }

    /// Files whose header is well formed: every tensor loads, or fails with an error; none panics,
    /// whatever dtype, alignment or emptiness.
    #[test]
    fn unusual_but_valid_files_load_or_fail_cleanly() {
        let one = |dtype: &str, shape: &str, end: usize| {
            file(
                &format!(
                    r#"{{"w":{{"dtype":"{dtype}","shape":{shape},"data_offsets":[0,{end}]}}}}"#
                ),
                &vec![0x3C; end],
            )
        };
        for bytes in [
            one("F32", "[]", 4),
            one("F32", "[0]", 0),
            one("F32", "[0,4294967296]", 0),
            one("BF16", "[2,2]", 8),
            one("U16", "[3]", 6),
            one("I64", "[1]", 8),
            one("BOOL", "[4]", 4),
            one("F4", "[2]", 1),
            one("F6_E2M3", "[4]", 3),
            one("F8_E8M0", "[2]", 2),
            one("F8_E5M2", "[2]", 2),
            file(r#"{"__metadata__":{"format":"pt"}}"#, &[]),
        ] {
            let _ = open_and_load_all(&bytes);
        }
        // Data that starts at an odd offset (a header of odd length) is copied, not misread.
        let mut header = r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#.to_string();
        while header.len() % 4 != 3 {
            header.push(' ');
        }
        let mut data = 1.5f32.to_le_bytes().to_vec();
        data.extend((-2.0f32).to_le_bytes());
        let bytes = file(&header, &data);
        let weights_file = TempFile::with(&bytes);
        let weights = WeightFile::open(&weights_file.0, &Device::Cpu, DType::F32).unwrap();
        let values: Vec<f32> = weights.get("w", &[2]).unwrap().to_vec1().unwrap();
        assert_eq!(values, [1.5, -2.0]);
        let error = weights.get("w", &[3]).unwrap_err().to_string();
        assert!(error.contains("shape [2], expected [3]"), "{error}");
        let error = weights.get("missing", &[2]).unwrap_err().to_string();
        assert!(error.contains("`missing`"), "{error}");
    }
}

/// Fuzz target: the safetensors header reader (`WeightFile::open` and `get`). Arbitrary bytes, and
/// valid files (written by candle's own encoder) with bytes flipped, inserted, deleted or cut and their
/// header numbers changed, must open and load or fail with an error naming the file — never panic and
/// never allocate from the header's numbers. Valid files read back the tensors they were written from.
#[cfg(test)]
mod fuzz_safetensors {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Mutation {
        Flip {
            at: usize,
            bit: u8,
        },
        Insert {
            at: usize,
            byte: u8,
        },
        Delete {
            at: usize,
            len: usize,
        },
        Truncate {
            at: usize,
        },
        /// Rewrites the header length (the first 8 bytes).
        HeaderLength(u64),
        /// Replaces a run of digits in the header with another number.
        Number {
            which: usize,
            value: u64,
        },
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            3 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
            2 => (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
            2 => (any::<usize>(), 1usize..16).prop_map(|(at, len)| Mutation::Delete { at, len }),
            1 => any::<usize>().prop_map(|at| Mutation::Truncate { at }),
            1 => prop_oneof![Just(0u64), Just(u64::MAX), Just(1 << 32), 0u64..512]
                .prop_map(Mutation::HeaderLength),
            3 => (any::<usize>(), prop_oneof![Just(0u64), Just(u64::MAX), Just(1 << 32), 0u64..64])
                .prop_map(|(which, value)| Mutation::Number { which, value }),
        ]
    }

    /// Applies mutations; `Number` edits the header and keeps its length field in step.
    fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
        for m in mutations {
            let n = bytes.len().max(1);
            match *m {
                Mutation::Flip { at, bit } => {
                    if !bytes.is_empty() {
                        bytes[at % n] ^= 1 << bit;
                    }
                }
                Mutation::Insert { at, byte } => bytes.insert(at % (bytes.len() + 1), byte),
                Mutation::Delete { at, len } => {
                    let start = at % n;
                    let end = (start + len).min(bytes.len());
                    if start < end {
                        bytes.drain(start..end);
                    }
                }
                Mutation::Truncate { at } => bytes.truncate(at % n),
                Mutation::HeaderLength(length) => {
                    if bytes.len() >= 8 {
                        bytes[..8].copy_from_slice(&length.to_le_bytes());
                    }
                }
                Mutation::Number { which, value } => {
                    let Some(length) = bytes
                        .get(..8)
                        .map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize)
                        .filter(|&l| l <= bytes.len() - 8)
                    else {
                        continue;
                    };
                    let header = String::from_utf8_lossy(&bytes[8..8 + length]).into_owned();
                    let runs: Vec<(usize, usize)> = header
                        .char_indices()
                        .filter(|&(i, c)| {
                            c.is_ascii_digit()
                                && !header[..i].ends_with(|p: char| p.is_ascii_digit())
                        })
                        .map(|(i, _)| {
                            let len = header[i..]
                                .find(|c: char| !c.is_ascii_digit())
                                .unwrap_or(header.len() - i);
                            (i, i + len)
                        })
                        .collect();
                    if runs.is_empty() {
                        continue;
                    }
                    let (start, end) = runs[which % runs.len()];
                    let edited = format!("{}{value}{}", &header[..start], &header[end..]);
                    let mut out = (edited.len() as u64).to_le_bytes().to_vec();
                    out.extend(edited.as_bytes());
                    out.extend(&bytes[8 + length..]);
                    bytes = out;
                }
            }
        }
        bytes
    }

    /// Tensors of a few dtypes and small shapes, with distinct names.
    fn tensors() -> impl Strategy<Value = Vec<(String, DType, Vec<usize>, Vec<f32>)>> {
        let dtype = prop::sample::select(vec![DType::F32, DType::F16, DType::BF16, DType::U8]);
        let shape = prop::collection::vec(1usize..4, 0..4);
        prop::collection::vec((dtype, shape, any::<u64>()), 1..5).prop_map(|specs| {
            specs
                .into_iter()
                .enumerate()
                .map(|(i, (dtype, shape, seed))| {
                    let count: usize = shape.iter().product();
                    // Small integers: exact in every dtype here.
                    let values = (0..count)
                        .map(|j| ((seed >> (j % 56)) % 100) as f32)
                        .collect();
                    (format!("layer.{i}.weight"), dtype, shape, values)
                })
                .collect()
        })
    }

    /// The file candle's encoder writes for `tensors`.
    fn encoded(tensors: &[(String, DType, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
        let map: HashMap<String, Tensor> = tensors
            .iter()
            .map(|(name, dtype, shape, values)| {
                let tensor = Tensor::from_vec(values.clone(), shape.as_slice(), &Device::Cpu)
                    .and_then(|t| t.to_dtype(*dtype))
                    .expect("tensor");
                (name.clone(), tensor)
            })
            .collect();
        let file = TempFile::with(&[]);
        candle_core::safetensors::save(&map, &file.0).expect("save");
        std::fs::read(&file.0).expect("read back")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn fuzz_safetensors_arbitrary_bytes_never_panic(
            bytes in prop::collection::vec(any::<u8>(), 0..128),
            length in prop_oneof![Just(None), (0u64..160).prop_map(Some)],
        ) {
            let mut bytes = bytes;
            if let (Some(length), true) = (length, bytes.len() >= 8) {
                bytes[..8].copy_from_slice(&length.to_le_bytes());
            }
            let _ = open_and_load_all(&bytes);
        }

        #[test]
        fn fuzz_safetensors_mutated_files_never_panic(
            tensors in tensors(),
            mutations in prop::collection::vec(mutation(), 1..6),
        ) {
            let bytes = mutate(encoded(&tensors), &mutations);
            let _ = open_and_load_all(&bytes);
        }

        #[test]
        fn fuzz_safetensors_valid_files_round_trip(tensors in tensors()) {
            let bytes = encoded(&tensors);
            let file = TempFile::with(&bytes);
            let weights = WeightFile::open(&file.0, &Device::Cpu, DType::F32)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            for (name, _, shape, values) in &tensors {
                let tensor = weights
                    .get(name, shape)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let read: Vec<f32> = tensor.flatten_all().and_then(|t| t.to_vec1()).unwrap();
                prop_assert_eq!(&read, values);
            }
        }
    }
}
