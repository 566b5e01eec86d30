//! A small, bounds-checked reader for TensorFlow Lite model files (a FlatBuffer of
//! the `tflite` schema, `schema.fbs`), reading just what the segmentation converter
//! needs: operator codes, the first subgraph's tensors and operators, their builtin
//! options and the constant buffers.
//!
//! The file is untrusted input: every offset is checked against the file length and
//! every failure is a [`FaceError::TfliteFormat`] naming the byte offset; nothing in
//! here indexes without a check or recurses, so a garbled file cannot panic or loop.

use crate::error::{FaceError, Result};

/// FlatBuffer file identifier of TFLite models (bytes 4..8).
pub const TFLITE_IDENTIFIER: &[u8; 4] = b"TFL3";

/// `BuiltinOperator` codes this crate recognises (schema.fbs numbering).
pub mod op {
    pub const ADD: i32 = 0;
    pub const AVERAGE_POOL_2D: i32 = 1;
    pub const CONV_2D: i32 = 3;
    pub const DEPTHWISE_CONV_2D: i32 = 4;
    pub const DEQUANTIZE: i32 = 6;
    pub const LOGISTIC: i32 = 14;
    pub const MUL: i32 = 18;
    pub const RELU: i32 = 19;
    pub const RESIZE_BILINEAR: i32 = 23;
    pub const CUSTOM: i32 = 32;
    pub const HARD_SWISH: i32 = 117;
}

/// `TensorType` values used by the model.
pub mod dtype {
    pub const FLOAT32: i8 = 0;
    pub const FLOAT16: i8 = 1;
    pub const INT32: i8 = 2;
}

/// `Padding` of the builtin options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    Same,
    Valid,
}

/// `ActivationFunctionType` fused into an op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fused {
    None,
    Relu,
    ReluN1To1,
    Relu6,
    Tanh,
    SignBit,
}

/// The builtin options of the operators the network uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Options {
    None,
    Conv {
        padding: Padding,
        stride_w: i32,
        stride_h: i32,
        fused: Fused,
        dilation_w: i32,
        dilation_h: i32,
    },
    Depthwise {
        padding: Padding,
        stride_w: i32,
        stride_h: i32,
        depth_multiplier: i32,
        fused: Fused,
        dilation_w: i32,
        dilation_h: i32,
    },
    Pool {
        padding: Padding,
        stride_w: i32,
        stride_h: i32,
        filter_w: i32,
        filter_h: i32,
        fused: Fused,
    },
    /// ADD and MUL: only a fused activation.
    Elementwise {
        fused: Fused,
    },
    ResizeBilinear {
        align_corners: bool,
        half_pixel_centers: bool,
    },
    /// Builtin options of a type this reader does not decode (its union tag).
    Other(u8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorCode {
    pub builtin: i32,
    pub custom: Option<String>,
    pub version: i32,
}

impl OperatorCode {
    /// A readable name: the builtin's schema name, or the custom op's name.
    pub fn name(&self) -> String {
        if let Some(custom) = &self.custom {
            return custom.clone();
        }
        let known = match self.builtin {
            op::ADD => "ADD",
            op::AVERAGE_POOL_2D => "AVERAGE_POOL_2D",
            op::CONV_2D => "CONV_2D",
            op::DEPTHWISE_CONV_2D => "DEPTHWISE_CONV_2D",
            op::DEQUANTIZE => "DEQUANTIZE",
            op::LOGISTIC => "LOGISTIC",
            op::MUL => "MUL",
            op::RELU => "RELU",
            op::RESIZE_BILINEAR => "RESIZE_BILINEAR",
            op::CUSTOM => "CUSTOM",
            op::HARD_SWISH => "HARD_SWISH",
            _ => return format!("BUILTIN_{}", self.builtin),
        };
        known.to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<i32>,
    pub dtype: i8,
    /// Index into [`TfliteModel::buffers`]; 0 is the empty sentinel buffer.
    pub buffer: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub opcode_index: u32,
    pub inputs: Vec<i32>,
    pub outputs: Vec<i32>,
    pub options: Options,
    pub custom_options: Vec<u8>,
}

/// The parts of a `.tflite` file the converter needs (first subgraph only).
#[derive(Debug, Clone)]
pub struct TfliteModel<'a> {
    pub version: u32,
    pub description: Option<String>,
    pub operator_codes: Vec<OperatorCode>,
    pub tensors: Vec<TensorInfo>,
    pub inputs: Vec<i32>,
    pub outputs: Vec<i32>,
    pub operators: Vec<Operator>,
    /// Raw bytes of each buffer (empty when the buffer holds no data).
    pub buffers: Vec<&'a [u8]>,
}

impl<'a> TfliteModel<'a> {
    /// Parses a `.tflite` file. Every structural problem is a
    /// [`FaceError::TfliteFormat`]; nothing here panics on bad input.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let fb = Fb { data: bytes };
        if bytes.len() < 8 {
            return Err(fb.err(0, "file shorter than a FlatBuffer header"));
        }
        if &bytes[4..8] != TFLITE_IDENTIFIER {
            return Err(fb.err(4, "file identifier is not TFL3 (not a TFLite model)"));
        }
        let root = fb.table(fb.indirect(0)?)?;

        let version = root.u32(0, 0)?;
        let description = root.string(3)?.map(str::to_string);

        let mut operator_codes = Vec::new();
        if let Some(codes) = root.vector(1, 4)? {
            for i in 0..codes.len {
                let t = fb.table(fb.indirect(codes.elem(i))?)?;
                let deprecated = i32::from(t.i8(0, 0)?);
                let custom = t.string(1)?.map(str::to_string);
                let version = t.i32(2, 1)?;
                let builtin = t.i32(3, 0)?;
                // Files from before the int32 field carry the code only in the
                // deprecated byte; the larger of the two is the real code.
                operator_codes.push(OperatorCode {
                    builtin: builtin.max(deprecated),
                    custom,
                    version,
                });
            }
        }

        let subgraphs = root
            .vector(2, 4)?
            .ok_or_else(|| fb.err(root.pos, "model has no subgraphs"))?;
        if subgraphs.len == 0 {
            return Err(fb.err(root.pos, "model has no subgraphs"));
        }
        let graph = fb.table(fb.indirect(subgraphs.elem(0))?)?;

        let mut tensors = Vec::new();
        if let Some(list) = graph.vector(0, 4)? {
            for i in 0..list.len {
                let t = fb.table(fb.indirect(list.elem(i))?)?;
                let shape = match t.vector(0, 4)? {
                    Some(v) => v.i32s(&fb)?,
                    None => Vec::new(),
                };
                tensors.push(TensorInfo {
                    shape,
                    dtype: t.i8(1, 0)?,
                    buffer: t.u32(2, 0)?,
                    name: t.string(3)?.unwrap_or_default().to_string(),
                });
            }
        }
        let inputs = graph
            .vector(1, 4)?
            .map(|v| v.i32s(&fb))
            .transpose()?
            .unwrap_or_default();
        let outputs = graph
            .vector(2, 4)?
            .map(|v| v.i32s(&fb))
            .transpose()?
            .unwrap_or_default();

        let mut operators = Vec::new();
        if let Some(list) = graph.vector(3, 4)? {
            for i in 0..list.len {
                let t = fb.table(fb.indirect(list.elem(i))?)?;
                let opcode_index = t.u32(0, 0)?;
                let code = operator_codes.get(opcode_index as usize).ok_or_else(|| {
                    fb.err(
                        t.pos,
                        format!("operator {i} uses unknown opcode index {opcode_index}"),
                    )
                })?;
                let inputs = t
                    .vector(1, 4)?
                    .map(|v| v.i32s(&fb))
                    .transpose()?
                    .unwrap_or_default();
                let outputs = t
                    .vector(2, 4)?
                    .map(|v| v.i32s(&fb))
                    .transpose()?
                    .unwrap_or_default();
                for &index in inputs.iter().chain(&outputs) {
                    if index >= 0 && index as usize >= tensors.len() {
                        return Err(fb.err(
                            t.pos,
                            format!("operator {i} refers to tensor {index} of {}", tensors.len()),
                        ));
                    }
                }
                let options_type = t.u8(3, 0)?;
                let options = match t.table_field(4)? {
                    None => Options::None,
                    Some(o) => read_options(code.builtin, options_type, &o)?,
                };
                let custom_options = match t.vector(5, 1)? {
                    Some(v) => fb.slice(v.start, v.len)?.to_vec(),
                    None => Vec::new(),
                };
                operators.push(Operator {
                    opcode_index,
                    inputs,
                    outputs,
                    options,
                    custom_options,
                });
            }
        }

        let mut buffers = Vec::new();
        if let Some(list) = root.vector(4, 4)? {
            for i in 0..list.len {
                let t = fb.table(fb.indirect(list.elem(i))?)?;
                // Field 1/2 (offset, size) address data outside the FlatBuffer in
                // files over 2 GB; this model is far below that.
                if t.u64(1, 0)? != 0 {
                    return Err(fb.err(t.pos, "external buffer offsets are not supported"));
                }
                let data = match t.vector(0, 1)? {
                    Some(v) => fb.slice(v.start, v.len)?,
                    None => &[][..],
                };
                buffers.push(data);
            }
        }
        for (i, tensor) in tensors.iter().enumerate() {
            if tensor.buffer as usize >= buffers.len() && tensor.buffer != 0 {
                return Err(fb.err(
                    0,
                    format!(
                        "tensor {i} ({}) refers to buffer {} of {}",
                        tensor.name,
                        tensor.buffer,
                        buffers.len()
                    ),
                ));
            }
        }

        Ok(Self {
            version,
            description,
            operator_codes,
            tensors,
            inputs,
            outputs,
            operators,
            buffers,
        })
    }

    /// The opcode of an operator (its index was checked when parsing).
    pub fn code(&self, operator: &Operator) -> &OperatorCode {
        &self.operator_codes[operator.opcode_index as usize]
    }

    pub fn tensor(&self, index: i32) -> Option<&TensorInfo> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.tensors.get(i))
    }

    /// The constant data of a tensor, empty for activations.
    pub fn data(&self, tensor: &TensorInfo) -> &'a [u8] {
        self.buffers
            .get(tensor.buffer as usize)
            .copied()
            .unwrap_or(&[])
    }

    /// One line per operator: `index NAME inputs -> outputs options`, for
    /// understanding a graph while developing.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (i, operator) in self.operators.iter().enumerate() {
            let names = |list: &[i32]| {
                list.iter()
                    .map(|&t| match self.tensor(t) {
                        Some(t) => format!("{}{:?}", t.name, t.shape),
                        None => "-".to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            out.push_str(&format!(
                "{i:3} {} {} -> {} {:?}{}\n",
                self.code(operator).name(),
                names(&operator.inputs),
                names(&operator.outputs),
                operator.options,
                if operator.custom_options.is_empty() {
                    String::new()
                } else {
                    format!(" custom {:?}", operator.custom_options)
                }
            ));
        }
        out
    }
}

fn padding(value: i8) -> Result<Padding> {
    match value {
        0 => Ok(Padding::Same),
        1 => Ok(Padding::Valid),
        other => Err(FaceError::TfliteFormat {
            offset: 0,
            what: format!("unknown padding {other}"),
        }),
    }
}

fn fused(value: i8) -> Result<Fused> {
    Ok(match value {
        0 => Fused::None,
        1 => Fused::Relu,
        2 => Fused::ReluN1To1,
        3 => Fused::Relu6,
        4 => Fused::Tanh,
        5 => Fused::SignBit,
        other => {
            return Err(FaceError::TfliteFormat {
                offset: 0,
                what: format!("unknown fused activation {other}"),
            })
        }
    })
}

/// `BuiltinOptions` union tags (schema.fbs numbering).
mod options_tag {
    pub const CONV_2D: u8 = 1;
    pub const DEPTHWISE_CONV_2D: u8 = 2;
    pub const POOL_2D: u8 = 5;
    pub const ADD: u8 = 11;
    pub const RESIZE_BILINEAR: u8 = 15;
    pub const MUL: u8 = 21;
}

fn read_options(builtin: i32, tag: u8, t: &Table<'_>) -> Result<Options> {
    let expected = match builtin {
        op::CONV_2D => Some(options_tag::CONV_2D),
        op::DEPTHWISE_CONV_2D => Some(options_tag::DEPTHWISE_CONV_2D),
        op::AVERAGE_POOL_2D => Some(options_tag::POOL_2D),
        op::ADD => Some(options_tag::ADD),
        op::MUL => Some(options_tag::MUL),
        op::RESIZE_BILINEAR => Some(options_tag::RESIZE_BILINEAR),
        _ => None,
    };
    if expected.is_some_and(|e| e != tag) {
        return Err(t.fb.err(
            t.pos,
            format!("builtin {builtin} carries options of union type {tag}"),
        ));
    }
    Ok(match tag {
        options_tag::CONV_2D => Options::Conv {
            padding: padding(t.i8(0, 0)?)?,
            stride_w: t.i32(1, 0)?,
            stride_h: t.i32(2, 0)?,
            fused: fused(t.i8(3, 0)?)?,
            dilation_w: t.i32(4, 1)?,
            dilation_h: t.i32(5, 1)?,
        },
        options_tag::DEPTHWISE_CONV_2D => Options::Depthwise {
            padding: padding(t.i8(0, 0)?)?,
            stride_w: t.i32(1, 0)?,
            stride_h: t.i32(2, 0)?,
            depth_multiplier: t.i32(3, 0)?,
            fused: fused(t.i8(4, 0)?)?,
            dilation_w: t.i32(5, 1)?,
            dilation_h: t.i32(6, 1)?,
        },
        options_tag::POOL_2D => Options::Pool {
            padding: padding(t.i8(0, 0)?)?,
            stride_w: t.i32(1, 0)?,
            stride_h: t.i32(2, 0)?,
            filter_w: t.i32(3, 0)?,
            filter_h: t.i32(4, 0)?,
            fused: fused(t.i8(5, 0)?)?,
        },
        options_tag::ADD | options_tag::MUL => Options::Elementwise {
            fused: fused(t.i8(0, 0)?)?,
        },
        options_tag::RESIZE_BILINEAR => Options::ResizeBilinear {
            align_corners: t.u8(2, 0)? != 0,
            half_pixel_centers: t.u8(3, 0)? != 0,
        },
        other => Options::Other(other),
    })
}

/// The raw FlatBuffer with checked little-endian reads.
#[derive(Clone, Copy)]
struct Fb<'a> {
    data: &'a [u8],
}

impl<'a> Fb<'a> {
    fn err(&self, offset: usize, what: impl Into<String>) -> FaceError {
        FaceError::TfliteFormat {
            offset,
            what: what.into(),
        }
    }

    fn slice(&self, pos: usize, len: usize) -> Result<&'a [u8]> {
        pos.checked_add(len)
            .and_then(|end| self.data.get(pos..end))
            .ok_or_else(|| {
                self.err(
                    pos,
                    format!(
                        "{len} bytes at {pos} run past the end of the {}-byte file",
                        self.data.len()
                    ),
                )
            })
    }

    fn array<const N: usize>(&self, pos: usize) -> Result<[u8; N]> {
        let bytes = self.slice(pos, N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u16(&self, pos: usize) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(pos)?))
    }

    fn u32(&self, pos: usize) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(pos)?))
    }

    fn i32(&self, pos: usize) -> Result<i32> {
        Ok(i32::from_le_bytes(self.array(pos)?))
    }

    /// Follows a `uoffset_t` stored at `pos` (relative to `pos`).
    fn indirect(&self, pos: usize) -> Result<usize> {
        let offset = self.u32(pos)? as usize;
        let target = pos
            .checked_add(offset)
            .filter(|&t| t < self.data.len())
            .ok_or_else(|| {
                self.err(
                    pos,
                    format!("offset {offset} at {pos} points outside the file"),
                )
            })?;
        Ok(target)
    }

    /// The table starting at `pos`, with its vtable located and checked.
    fn table(&self, pos: usize) -> Result<Table<'a>> {
        let soffset = i64::from(self.i32(pos)?);
        let vtable = i64::try_from(pos)
            .ok()
            .and_then(|p| p.checked_sub(soffset))
            .filter(|&v| v >= 0)
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| self.err(pos, "table's vtable offset points outside the file"))?;
        let vt_len = self.u16(vtable)? as usize;
        let object_len = self.u16(vtable + 2)? as usize;
        if vt_len < 4 || !vt_len.is_multiple_of(2) {
            return Err(self.err(vtable, format!("vtable length {vt_len} is invalid")));
        }
        self.slice(vtable, vt_len)?;
        self.slice(pos, object_len.max(4))?;
        Ok(Table {
            fb: *self,
            pos,
            vtable,
            vt_len,
            object_len,
        })
    }
}

/// A FlatBuffer table: fields are looked up through its vtable.
struct Table<'a> {
    fb: Fb<'a>,
    pos: usize,
    vtable: usize,
    vt_len: usize,
    object_len: usize,
}

/// A vector's element area: `len` elements of `elem_size` bytes from `start`.
struct Vector {
    start: usize,
    len: usize,
    elem_size: usize,
}

impl Vector {
    fn elem(&self, i: usize) -> usize {
        self.start + i * self.elem_size
    }

    fn i32s(&self, fb: &Fb<'_>) -> Result<Vec<i32>> {
        (0..self.len).map(|i| fb.i32(self.elem(i))).collect()
    }
}

impl<'a> Table<'a> {
    /// Absolute position of field `id`, or `None` when absent.
    fn field(&self, id: usize, size: usize) -> Result<Option<usize>> {
        let slot = 4 + 2 * id;
        if slot + 2 > self.vt_len {
            return Ok(None);
        }
        let offset = self.fb.u16(self.vtable + slot)? as usize;
        if offset == 0 {
            return Ok(None);
        }
        if offset + size > self.object_len {
            return Err(self.fb.err(
                self.pos,
                format!(
                    "field {id} at offset {offset} lies outside its {}-byte table",
                    self.object_len
                ),
            ));
        }
        Ok(Some(self.pos + offset))
    }

    fn u8(&self, id: usize, default: u8) -> Result<u8> {
        match self.field(id, 1)? {
            Some(p) => Ok(self.fb.array::<1>(p)?[0]),
            None => Ok(default),
        }
    }

    fn i8(&self, id: usize, default: i8) -> Result<i8> {
        Ok(self.u8(id, default as u8)? as i8)
    }

    fn u32(&self, id: usize, default: u32) -> Result<u32> {
        match self.field(id, 4)? {
            Some(p) => self.fb.u32(p),
            None => Ok(default),
        }
    }

    fn i32(&self, id: usize, default: i32) -> Result<i32> {
        match self.field(id, 4)? {
            Some(p) => self.fb.i32(p),
            None => Ok(default),
        }
    }

    fn u64(&self, id: usize, default: u64) -> Result<u64> {
        match self.field(id, 8)? {
            Some(p) => Ok(u64::from_le_bytes(self.fb.array(p)?)),
            None => Ok(default),
        }
    }

    fn table_field(&self, id: usize) -> Result<Option<Table<'a>>> {
        match self.field(id, 4)? {
            Some(p) => Ok(Some(self.fb.table(self.fb.indirect(p)?)?)),
            None => Ok(None),
        }
    }

    fn vector(&self, id: usize, elem_size: usize) -> Result<Option<Vector>> {
        let Some(p) = self.field(id, 4)? else {
            return Ok(None);
        };
        let at = self.fb.indirect(p)?;
        let len = self.fb.u32(at)? as usize;
        let start = at + 4;
        let bytes = len
            .checked_mul(elem_size)
            .ok_or_else(|| self.fb.err(at, format!("vector length {len} overflows")))?;
        self.fb.slice(start, bytes)?;
        Ok(Some(Vector {
            start,
            len,
            elem_size,
        }))
    }

    fn string(&self, id: usize) -> Result<Option<&'a str>> {
        let Some(v) = self.vector(id, 1)? else {
            return Ok(None);
        };
        let bytes = self.fb.slice(v.start, v.len)?;
        std::str::from_utf8(bytes)
            .map(Some)
            .map_err(|_| self.fb.err(v.start, "string is not UTF-8"))
    }
}
