//! Reader for dlib's serialization primitives (FORMAT.md section 1) and the record
//! types the three face models use (section 2.1).
//!
//! The model files are pinned by SHA-256 before they are read (`models::ModelStore::load`), so a
//! hostile file reaches this reader only through a caller that skips the store. It is bounded all the
//! same: every count and size it returns is at most the file's length (each describes something stored
//! in the file), and a tensor's or alias's shape, with zero dimensions counted as one, multiplies to at
//! most that too. Callers can therefore multiply sizes without overflow and allocate nothing larger
//! than the file; a truncated file is an error at the first missing byte.

use crate::error::{FaceError, Result};

/// A cursor over the bytes of one dlib file.
pub struct DlibReader<'a> {
    bytes: &'a [u8],
    pos: usize,
    file: String,
}

/// A dlib `resizable_tensor`: shape (n, k, nr, nc) and raw f32 data.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    pub shape: [usize; 4],
    pub data: Vec<f32>,
}

impl<'a> DlibReader<'a> {
    pub fn new(bytes: &'a [u8], file: &str) -> Self {
        Self {
            bytes,
            pos: 0,
            file: file.to_string(),
        }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn is_at_end(&self) -> bool {
        self.pos == self.bytes.len()
    }

    pub fn error(&self, what: impl Into<String>) -> FaceError {
        FaceError::Format {
            file: self.file.clone(),
            offset: self.pos,
            what: what.into(),
        }
    }

    pub fn byte(&mut self) -> Result<u8> {
        let b = *self
            .bytes
            .get(self.pos)
            .ok_or_else(|| self.error("unexpected end of file"))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| self.error(format!("need {n} more bytes")))?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    /// Variable-length integer: control byte (sign bit 0x80, length in 0x0F), then
    /// the magnitude in little-endian bytes.
    pub fn int(&mut self) -> Result<i64> {
        let control = self.byte()?;
        let len = (control & 0x0F) as usize;
        if control & 0x70 != 0 || len == 0 || len > 8 {
            return Err(self.error(format!("bad integer control byte 0x{control:02x}")));
        }
        let mut magnitude: u64 = 0;
        for (i, b) in self.take(len)?.iter().enumerate() {
            magnitude |= u64::from(*b) << (8 * i);
        }
        let value = i64::try_from(magnitude).map_err(|_| self.error("integer overflow"))?;
        Ok(if control & 0x80 != 0 { -value } else { value })
    }

    /// Peeks at the next integer without consuming it.
    pub fn peek_int(&mut self) -> Result<i64> {
        let saved = self.pos;
        let value = self.int();
        self.pos = saved;
        value
    }

    /// A count or size: non-negative and no larger than the whole file.
    pub fn usize(&mut self) -> Result<usize> {
        let v = self.int()?;
        let n = usize::try_from(v)
            .map_err(|_| self.error(format!("expected a non-negative count, got {v}")))?;
        if n > self.bytes.len() {
            return Err(self.error(format!(
                "count {n} is larger than the whole file ({} bytes)",
                self.bytes.len()
            )));
        }
        Ok(n)
    }

    /// A four-dimensional shape whose extent (the product of its dimensions, zeros counted as one)
    /// is no larger than the file, so any product of its dimensions fits.
    fn shape(&mut self, what: &str) -> Result<[usize; 4]> {
        let shape = [self.usize()?, self.usize()?, self.usize()?, self.usize()?];
        let extent = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d.max(1)));
        if extent.is_none_or(|e| e > self.bytes.len()) {
            return Err(self.error(format!(
                "{what} shape {shape:?} is larger than the whole file ({} bytes)",
                self.bytes.len()
            )));
        }
        Ok(shape)
    }

    /// Portable float: mantissa then exponent, value = mantissa * 2^exponent.
    pub fn real(&mut self) -> Result<f64> {
        let first = *self
            .bytes
            .get(self.pos)
            .ok_or_else(|| self.error("unexpected end of file"))?;
        if first & 0x70 != 0 {
            return Err(self.error("old ASCII float encoding is not supported"));
        }
        let mantissa = self.int()?;
        let exponent = self.int()?;
        Ok(match exponent {
            32000 => f64::INFINITY,
            32001 => f64::NEG_INFINITY,
            32002 => f64::NAN,
            e => {
                let e = i32::try_from(e).map_err(|_| self.error("float exponent out of range"))?;
                mantissa as f64 * 2f64.powi(e)
            }
        })
    }

    pub fn boolean(&mut self) -> Result<bool> {
        match self.byte()? {
            b'1' => Ok(true),
            b'0' => Ok(false),
            other => Err(self.error(format!("bad bool byte 0x{other:02x}"))),
        }
    }

    pub fn string(&mut self) -> Result<String> {
        let len = self.usize()?;
        let raw = self.take(len)?;
        Ok(raw.iter().map(|&b| b as char).collect())
    }

    pub fn tensor(&mut self) -> Result<RawTensor> {
        let version = self.int()?;
        if version != 2 {
            return Err(self.error(format!("resizable_tensor version {version}, expected 2")));
        }
        let shape = self.shape("tensor")?;
        let count = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| self.error("tensor size overflow"))?;
        let raw = self.take(
            count
                .checked_mul(4)
                .ok_or_else(|| self.error("tensor too large"))?,
        )?;
        let data = raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(RawTensor { shape, data })
    }

    pub fn alias_tensor(&mut self) -> Result<[usize; 4]> {
        let version = self.int()?;
        if version != 1 {
            return Err(self.error(format!("alias_tensor version {version}, expected 1")));
        }
        self.shape("alias tensor")
    }

    /// `dlib::matrix<float>`: negated rows and cols, then portable floats row-major.
    pub fn float_matrix(&mut self) -> Result<Vec<f32>> {
        let rows = self.int()?.unsigned_abs() as usize;
        let cols = self.int()?.unsigned_abs() as usize;
        let n = rows
            .checked_mul(cols)
            .filter(|&n| n <= self.bytes.len())
            .ok_or_else(|| {
                self.error(format!(
                    "matrix of {rows}x{cols} is larger than the whole file ({} bytes)",
                    self.bytes.len()
                ))
            })?;
        (0..n).map(|_| self.real().map(|v| v as f32)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_follow_the_control_byte_encoding() {
        let bytes = [0x01, 0x00, 0x01, 0x50, 0x81, 0x0A, 0x02, 0x2C, 0x01];
        let mut r = DlibReader::new(&bytes, "test");
        assert_eq!(r.int().ok(), Some(0));
        assert_eq!(r.int().ok(), Some(80));
        assert_eq!(r.int().ok(), Some(-10));
        assert_eq!(r.int().ok(), Some(300));
        assert!(r.is_at_end());
        assert!(
            DlibReader::new(&[0x09], "test").int().is_err(),
            "length 9 is invalid"
        );
        assert!(
            DlibReader::new(&[0x02, 0x01], "test").int().is_err(),
            "truncated"
        );
    }

    /// Writes dlib's serialization primitives, for crafted model files.
    #[derive(Default)]
    struct Writer(Vec<u8>);

    impl Writer {
        fn int(&mut self, v: i64) -> &mut Self {
            let magnitude = v.unsigned_abs();
            let len = (8 - magnitude.leading_zeros() as usize / 8).max(1);
            self.0.push(if v < 0 { 0x80 } else { 0 } | len as u8);
            self.0.extend(&magnitude.to_le_bytes()[..len]);
            self
        }

        fn real(&mut self, mantissa: i64, exponent: i64) -> &mut Self {
            self.int(mantissa).int(exponent)
        }

        fn reals(&mut self, n: usize) -> &mut Self {
            for _ in 0..n {
                self.real(1, -1);
            }
            self
        }

        fn string(&mut self, text: &str) -> &mut Self {
            self.int(text.len() as i64);
            self.0.extend(text.as_bytes());
            self
        }

        fn boolean(&mut self, b: bool) -> &mut Self {
            self.0.push(if b { b'1' } else { b'0' });
            self
        }

        fn tensor(&mut self, shape: [i64; 4], data: &[f32]) -> &mut Self {
            self.int(2);
            for d in shape {
                self.int(d);
            }
            for v in data {
                self.0.extend(v.to_le_bytes());
            }
            self
        }

        fn alias(&mut self, shape: [i64; 4]) -> &mut Self {
            self.int(1);
            for d in shape {
                self.int(d);
            }
            self
        }

        fn matrix(&mut self, rows: i64, cols: i64) -> &mut Self {
            self.int(-rows).int(-cols).reals((rows * cols) as usize)
        }
    }

    /// A minimal MMOD detector file: one 1x1 con layer with `filters` (num_filters and the filter
    /// alias's shape).
    fn detector_file(num_filters: i64, filters_shape: [i64; 4]) -> Vec<u8> {
        let mut w = Writer::default();
        w.int(1).string("loss_mmod_");
        w.int(1).int(40).int(40).reals(3).reals(2).reals(2);
        w.int(1);
        w.string("input_rgb_image_pyramid").reals(3);
        w.string("con_5")
            .tensor([4, 1, 1, 1], &[0.5, 0.25, 0.125, 1.0])
            .int(num_filters)
            .int(1)
            .int(1)
            .int(1)
            .int(1)
            .int(0)
            .int(0)
            .alias(filters_shape)
            .alias([1, 1, 1, 1])
            .reals(4)
            .boolean(true);
        w.boolean(false).boolean(false).boolean(false);
        w.tensor([0, 0, 0, 0], &[])
            .tensor([0, 0, 0, 0], &[])
            .tensor([0, 0, 0, 0], &[]);
        w.0
    }

    /// A minimal 2-landmark shape predictor: one cascade of one tree with one split.
    fn shape_predictor_file() -> Vec<u8> {
        let mut w = Writer::default();
        w.int(1).matrix(4, 1);
        w.int(1).int(1);
        w.int(1)
            .int(0)
            .int(1)
            .real(3, 0)
            .int(2)
            .matrix(4, 1)
            .matrix(4, 1);
        w.int(1).int(2).int(0).int(1);
        w.int(1).int(2).reals(4);
        w.0
    }

    fn detector(bytes: &[u8]) -> Result<crate::detector::FaceDetector> {
        crate::detector::FaceDetector::from_bytes(bytes, &candle_core::Device::Cpu)
    }

    #[test]
    fn the_crafted_files_are_valid() {
        detector(&detector_file(1, [1, 3, 1, 1])).expect("detector");
        crate::shape_predictor::ShapePredictor::from_bytes(&shape_predictor_file())
            .expect("shape predictor");
    }

    /// A con layer whose filter shape multiplies past `usize` made the detector panic (overflow) while
    /// sizing the layer; it is refused while reading.
    #[test]
    fn a_filter_shape_that_overflows_is_refused_not_a_panic() {
        let huge = 1i64 << 32;
        for (filters, shape) in [
            (huge, [huge, huge, 1, 1]),
            (1, [1, huge, huge, 1]),
            (1, [1, 3, huge, huge]),
            (huge, [huge, 0, huge, huge]),
        ] {
            let bytes = detector_file(filters, shape);
            let outcome =
                std::panic::catch_unwind(|| detector(&bytes).err().map(|e| e.to_string()));
            match outcome {
                Ok(Some(error)) => assert!(error.contains("larger than"), "{error}"),
                Ok(None) => panic!("{shape:?} accepted"),
                Err(_) => panic!("{shape:?} panicked"),
            }
        }
    }

    #[test]
    fn counts_and_shapes_larger_than_the_file_are_refused_at_once() {
        let refused = |bytes: &[u8], read: fn(&mut DlibReader<'_>) -> Result<()>| {
            let mut r = DlibReader::new(bytes, "test");
            let error = read(&mut r).expect_err("refused").to_string();
            assert!(
                error.contains("larger than") || error.contains("more bytes"),
                "{error}"
            );
        };
        let mut w = Writer::default();
        w.int(1 << 40);
        refused(&w.0, |r| r.usize().map(drop));
        refused(&w.0, |r| r.string().map(drop));
        let mut w = Writer::default();
        w.alias([1 << 20, 1 << 20, 1, 1]);
        refused(&w.0, |r| r.alias_tensor().map(drop));
        // A zero dimension makes no elements, but the others must still be sizes.
        let mut w = Writer::default();
        w.tensor([0, 1 << 20, 1 << 20, 1 << 20], &[]);
        refused(&w.0, |r| r.tensor().map(drop));
        let mut w = Writer::default();
        w.int(1 << 31).int(1 << 31);
        refused(&w.0, |r| r.float_matrix().map(drop));
    }

    /// Every truncation of a valid file is an error, and no single-byte change makes any reader panic.
    #[test]
    fn truncated_and_damaged_model_files_give_errors_never_panics() {
        let shape_predictor = shape_predictor_file();
        let detector_bytes = detector_file(1, [1, 3, 1, 1]);
        for cut in 0..shape_predictor.len() {
            assert!(
                crate::shape_predictor::ShapePredictor::from_bytes(&shape_predictor[..cut])
                    .is_err(),
                "shape predictor cut at {cut}"
            );
        }
        for cut in 0..detector_bytes.len() {
            assert!(
                detector(&detector_bytes[..cut]).is_err(),
                "detector cut at {cut}"
            );
        }
        for at in 0..shape_predictor.len().max(detector_bytes.len()) {
            for mask in [0x01u8, 0x0F, 0x80, 0xFF] {
                if at < shape_predictor.len() {
                    let mut bytes = shape_predictor.clone();
                    bytes[at] ^= mask;
                    let outcome = std::panic::catch_unwind(|| {
                        let _ = crate::shape_predictor::ShapePredictor::from_bytes(&bytes);
                    });
                    assert!(
                        outcome.is_ok(),
                        "shape predictor byte {at} ^ {mask:#x} panicked"
                    );
                }
                if at < detector_bytes.len() {
                    let mut bytes = detector_bytes.clone();
                    bytes[at] ^= mask;
                    let outcome = std::panic::catch_unwind(|| {
                        let _ = detector(&bytes);
                    });
                    assert!(outcome.is_ok(), "detector byte {at} ^ {mask:#x} panicked");
                }
            }
        }
    }

    /// The bounds hold for the real models (run where `REVERIE_MODELS_DIR` holds them, as in CI).
    #[test]
    fn the_real_models_read_within_the_bounds() {
        let Some(dir) = std::env::var_os("REVERIE_MODELS_DIR") else {
            return;
        };
        let store = crate::models::ModelStore::new(dir);
        let device = candle_core::Device::Cpu;
        detector(&store.load("mmod_human_face_detector.dat").unwrap()).unwrap();
        crate::shape_predictor::ShapePredictor::from_bytes(
            &store.load("shape_predictor_5_face_landmarks.dat").unwrap(),
        )
        .unwrap();
        crate::resnet::DescriptorNet::from_bytes(
            &store
                .load("dlib_face_recognition_resnet_model_v1.dat")
                .unwrap(),
            &device,
        )
        .unwrap();
    }

    #[test]
    fn floats_are_mantissa_then_exponent() {
        let bytes = [
            0x01, 0x10, 0x81, 0x04, 0x07, 0x8C, 0x6A, 0x54, 0xF2, 0x50, 0xA6, 0x15, 0x81, 0x36,
        ];
        let mut r = DlibReader::new(&bytes, "test");
        assert_eq!(r.real().ok(), Some(1.0));
        assert_eq!(r.real().ok(), Some(0.3382761351109955));
    }
}
