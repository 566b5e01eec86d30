//! Reader for dlib's serialization primitives (FORMAT.md section 1) and the record
//! types the three face models use (section 2.1).

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

    pub fn usize(&mut self) -> Result<usize> {
        let v = self.int()?;
        usize::try_from(v)
            .map_err(|_| self.error(format!("expected a non-negative count, got {v}")))
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
        let shape = [self.usize()?, self.usize()?, self.usize()?, self.usize()?];
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
        Ok([self.usize()?, self.usize()?, self.usize()?, self.usize()?])
    }

    /// `dlib::matrix<float>`: negated rows and cols, then portable floats row-major.
    pub fn float_matrix(&mut self) -> Result<Vec<f32>> {
        let rows = self.int()?.unsigned_abs() as usize;
        let cols = self.int()?.unsigned_abs() as usize;
        let n = rows
            .checked_mul(cols)
            .filter(|&n| n <= self.bytes.len())
            .ok_or_else(|| self.error("matrix too large"))?;
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
