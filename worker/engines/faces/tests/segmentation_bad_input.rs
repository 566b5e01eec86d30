//! Hostile and garbled `.tflite` files give named errors, never a panic; bad model
//! files in the models directory are reported by name. Needs no model download:
//! the test builds a small valid TFLite FlatBuffer itself and then damages it.

use reverie_faces::segmentation::convert::convert;
use reverie_faces::segmentation::tflite::{Options, TfliteModel};
use reverie_faces::segmentation::{PersonSegmenter, SegmentationVariant};
use reverie_faces::FaceError;

/// A field value of the little FlatBuffer builder below.
enum Field {
    U8(u8),
    I32(i32),
    U32(u32),
    Str(&'static str),
    Ints(Vec<i32>),
    Bytes(Vec<u8>),
    Table(Vec<(usize, Field)>),
    Tables(Vec<Vec<(usize, Field)>>),
}

/// Lays tables out front to back: vtable, then the table's inline slots (4 bytes
/// each), then everything it refers to, so every `uoffset` points forward.
struct Builder {
    buf: Vec<u8>,
}

impl Builder {
    fn align(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn patch_u32(&mut self, at: usize, value: u32) {
        self.buf[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }

    fn table(&mut self, fields: &[(usize, Field)]) -> usize {
        self.align();
        let slots = fields.iter().map(|(id, _)| id + 1).max().unwrap_or(0);
        let vtable = self.buf.len();
        let vt_len = 4 + 2 * slots;
        self.buf.extend((vt_len as u16).to_le_bytes());
        self.buf
            .extend(((4 + 4 * fields.len()) as u16).to_le_bytes());
        self.buf.extend(std::iter::repeat_n(0u8, 2 * slots));
        self.align();
        let table = self.buf.len();
        self.buf.extend(((table - vtable) as i32).to_le_bytes());
        let mut pending = Vec::new();
        for (i, (id, field)) in fields.iter().enumerate() {
            let slot = table + 4 + 4 * i;
            let offset = (slot - table) as u16;
            self.buf[vtable + 4 + 2 * id..vtable + 6 + 2 * id]
                .copy_from_slice(&offset.to_le_bytes());
            match field {
                Field::U8(v) => self.buf.extend([*v, 0, 0, 0]),
                Field::I32(v) => self.buf.extend(v.to_le_bytes()),
                Field::U32(v) => self.buf.extend(v.to_le_bytes()),
                _ => {
                    self.buf.extend([0u8; 4]);
                    pending.push((slot, field));
                }
            }
        }
        for (slot, field) in pending {
            let target = self.reference(field);
            self.patch_u32(slot, (target - slot) as u32);
        }
        table
    }

    /// Writes a referenced object; returns its position.
    fn reference(&mut self, field: &Field) -> usize {
        self.align();
        let at = self.buf.len();
        match field {
            Field::Str(s) => {
                self.buf.extend((s.len() as u32).to_le_bytes());
                self.buf.extend(s.as_bytes());
                self.buf.push(0);
            }
            Field::Ints(v) => {
                self.buf.extend((v.len() as u32).to_le_bytes());
                for x in v {
                    self.buf.extend(x.to_le_bytes());
                }
            }
            Field::Bytes(v) => {
                self.buf.extend((v.len() as u32).to_le_bytes());
                self.buf.extend(v);
            }
            Field::Table(fields) => return self.table(fields),
            Field::Tables(tables) => {
                self.buf.extend((tables.len() as u32).to_le_bytes());
                let slots = self.buf.len();
                self.buf.extend(std::iter::repeat_n(0u8, 4 * tables.len()));
                for (i, fields) in tables.iter().enumerate() {
                    let table = self.table(fields);
                    let slot = slots + 4 * i;
                    self.patch_u32(slot, (table - slot) as u32);
                }
            }
            Field::U8(_) | Field::I32(_) | Field::U32(_) => unreachable!("inline field"),
        }
        at
    }
}

/// A small valid TFLite model: one CONV_2D on a 1x4x4x1 input with an f32 kernel.
fn tiny_model() -> Vec<u8> {
    let mut b = Builder { buf: vec![0; 8] };
    b.buf[4..8].copy_from_slice(b"TFL3");
    let conv_options = vec![(0, Field::U8(0)), (1, Field::I32(1)), (2, Field::I32(1))];
    let model = vec![
        (0, Field::U32(3)),
        (
            1,
            Field::Tables(vec![vec![
                (0, Field::U8(3)),
                (2, Field::I32(1)),
                (3, Field::I32(3)),
            ]]),
        ),
        (
            2,
            Field::Tables(vec![vec![
                (
                    0,
                    Field::Tables(vec![
                        vec![
                            (0, Field::Ints(vec![1, 4, 4, 1])),
                            (1, Field::U8(0)),
                            (3, Field::Str("input")),
                        ],
                        vec![
                            (0, Field::Ints(vec![1, 1, 1, 1])),
                            (1, Field::U8(0)),
                            (2, Field::U32(1)),
                            (3, Field::Str("conv/Kernel")),
                        ],
                        vec![
                            (0, Field::Ints(vec![1])),
                            (1, Field::U8(0)),
                            (2, Field::U32(2)),
                            (3, Field::Str("conv/Bias")),
                        ],
                        vec![
                            (0, Field::Ints(vec![1, 4, 4, 1])),
                            (1, Field::U8(0)),
                            (3, Field::Str("output")),
                        ],
                    ]),
                ),
                (1, Field::Ints(vec![0])),
                (2, Field::Ints(vec![3])),
                (
                    3,
                    Field::Tables(vec![vec![
                        (0, Field::U32(0)),
                        (1, Field::Ints(vec![0, 1, 2])),
                        (2, Field::Ints(vec![3])),
                        (3, Field::U8(1)),
                        (4, Field::Table(conv_options)),
                    ]]),
                ),
                (4, Field::Str("main")),
            ]]),
        ),
        (3, Field::Str("tiny")),
        (
            4,
            Field::Tables(vec![
                vec![],
                vec![(0, Field::Bytes(2.0f32.to_le_bytes().to_vec()))],
                vec![(0, Field::Bytes(0.5f32.to_le_bytes().to_vec()))],
            ]),
        ),
    ];
    let root = b.table(&model);
    b.patch_u32(0, root as u32);
    b.buf
}

fn is_named(error: &FaceError) -> bool {
    matches!(
        error,
        FaceError::TfliteFormat { .. } | FaceError::TfliteGraph { .. }
    )
}

/// Parses and, when that succeeds, converts: both must return, never panic.
fn parse_and_convert(bytes: &[u8]) -> Result<(), FaceError> {
    let model = TfliteModel::parse(bytes)?;
    let _ = model.describe();
    convert(&model, SegmentationVariant::General).map(|_| ())
}

#[test]
fn the_builder_makes_a_readable_model() {
    let bytes = tiny_model();
    let model = TfliteModel::parse(&bytes).expect("tiny model parses");
    assert_eq!(model.version, 3);
    assert_eq!(model.description.as_deref(), Some("tiny"));
    assert_eq!(model.tensors.len(), 4);
    assert_eq!(model.tensors[1].name, "conv/Kernel");
    assert_eq!(model.data(&model.tensors[1]), 2.0f32.to_le_bytes());
    assert_eq!(model.operators.len(), 1);
    assert!(matches!(
        model.operators[0].options,
        Options::Conv {
            stride_w: 1,
            stride_h: 1,
            ..
        }
    ));
    // A valid file that is not the segmentation network: a named graph error.
    let error = convert(&model, SegmentationVariant::General).unwrap_err();
    assert!(matches!(error, FaceError::TfliteGraph { .. }), "{error}");
}

#[test]
fn truncated_files_are_format_errors() {
    let bytes = tiny_model();
    for len in 0..bytes.len() {
        match parse_and_convert(&bytes[..len]) {
            Err(e) => assert!(is_named(&e), "truncated to {len}: {e}"),
            Ok(()) => panic!("truncated to {len} bytes was accepted as the segmentation network"),
        }
    }
}

#[test]
fn wrong_magic_and_empty_files_are_format_errors() {
    let mut bytes = tiny_model();
    bytes[4..8].copy_from_slice(b"TFL2");
    assert!(matches!(
        TfliteModel::parse(&bytes),
        Err(FaceError::TfliteFormat { offset: 4, .. })
    ));
    assert!(matches!(
        TfliteModel::parse(&[]),
        Err(FaceError::TfliteFormat { .. })
    ));
    assert!(matches!(
        TfliteModel::parse(b"PK\x03\x04 not a model"),
        Err(FaceError::TfliteFormat { .. })
    ));
}

#[test]
fn offsets_out_of_range_are_format_errors() {
    let good = tiny_model();
    // Root offset past the end, and pointing at the last byte.
    for root in [u32::MAX, good.len() as u32, good.len() as u32 - 1] {
        let mut bytes = good.clone();
        bytes[0..4].copy_from_slice(&root.to_le_bytes());
        let error = TfliteModel::parse(&bytes).unwrap_err();
        assert!(matches!(error, FaceError::TfliteFormat { .. }), "{error}");
    }
    // Every aligned word replaced by huge or negative values: offsets, vtable
    // offsets, vector lengths and indices all end up out of range somewhere.
    for at in (0..good.len() - 3).step_by(4) {
        for value in [
            u32::MAX,
            0x7fff_ffff,
            0x8000_0000,
            good.len() as u32,
            0xffff,
        ] {
            let mut bytes = good.clone();
            bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
            if let Err(e) = parse_and_convert(&bytes) {
                assert!(is_named(&e), "word {at} = {value:#x}: {e}");
            }
        }
    }
}

#[test]
fn every_single_byte_corruption_returns() {
    let good = tiny_model();
    for at in 0..good.len() {
        for value in [0x00, 0x01, 0x7f, 0x80, 0xff] {
            let mut bytes = good.clone();
            bytes[at] = value;
            if let Err(e) = parse_and_convert(&bytes) {
                assert!(is_named(&e), "byte {at} = {value:#x}: {e}");
            }
        }
    }
    // Deterministic pseudo-random multi-byte garbling.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..2000 {
        let mut bytes = good.clone();
        for _ in 0..4 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let at = (state % bytes.len() as u64) as usize;
            bytes[at] = (state >> 32) as u8;
        }
        if let Err(e) = parse_and_convert(&bytes) {
            assert!(is_named(&e), "{e}");
        }
    }
}

#[test]
fn bad_model_files_are_named() {
    let dir = std::env::temp_dir().join(format!("reverie-seg-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let device = candle_core::Device::Cpu;
    match PersonSegmenter::load(&dir, &device) {
        Err(FaceError::ModelMissing { path }) => {
            assert!(path.ends_with("selfie_segmentation.safetensors"))
        }
        other => panic!("expected ModelMissing, got {other:?}"),
    }
    std::fs::write(dir.join("selfie_segmentation.safetensors"), b"garbage").expect("write");
    assert!(matches!(
        PersonSegmenter::load(&dir, &device),
        Err(FaceError::ModelHashMismatch { .. })
    ));
    // A tarball without the model.
    let archive = dir.join("empty.tgz");
    {
        let file = std::fs::File::create(&archive).expect("create");
        let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
        tar::Builder::new(gz)
            .into_inner()
            .expect("tar")
            .finish()
            .expect("gz");
    }
    let error =
        reverie_faces::segmentation::fetch_segmentation_model(&dir, Some(&archive)).unwrap_err();
    assert!(matches!(error, FaceError::Fetch(_)), "{error}");
    // A tarball whose .tflite is not the pinned file.
    let archive = dir.join("wrong.tgz");
    {
        let file = std::fs::File::create(&archive).expect("create");
        let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        let model = tiny_model();
        let mut header = tar::Header::new_gnu();
        header.set_size(model.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(
            &mut header,
            "package/selfie_segmentation.tflite",
            model.as_slice(),
        )
        .expect("append");
        tar.into_inner().expect("tar").finish().expect("gz");
    }
    let error =
        reverie_faces::segmentation::fetch_segmentation_model(&dir, Some(&archive)).unwrap_err();
    assert!(
        matches!(error, FaceError::ModelHashMismatch { .. }),
        "{error}"
    );
    assert!(!dir.join("selfie_segmentation.safetensors.partial").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
