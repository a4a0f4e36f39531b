//! postcard's integer encodings, for the formats that are read in place
//! or streamed without a serde pass: LEB128 varints and zigzag.

use super::FormatError;

/// A place bytes go: a slice, a byte counter or a CRC digest, so that an
/// encoder runs once to measure and once to write, never copying.
pub trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

/// Counts bytes.
pub struct Count(pub usize);

impl Sink for Count {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

/// Writes into a slice (panics past its end: measure with [`Count`] first).
pub struct SliceSink<'a> {
    pub buf: &'a mut [u8],
    pub pos: usize,
}

impl Sink for SliceSink<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.pos..self.pos + bytes.len()].copy_from_slice(bytes);
        self.pos += bytes.len();
    }
}

/// Feeds a CRC-32.
pub struct CrcSink(pub crc::Digest<'static, u32>);

impl CrcSink {
    pub fn new() -> Self {
        CrcSink(super::CRC.digest())
    }
}

impl Default for CrcSink {
    fn default() -> Self {
        Self::new()
    }
}

impl Sink for CrcSink {
    fn put(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// Writes `v` as a LEB128 varint (1 to 5 bytes).
pub fn put_varint(s: &mut dyn Sink, mut v: u32) {
    let mut b = [0u8; 5];
    let mut n = 0;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        b[n] = byte | if v == 0 { 0 } else { 0x80 };
        n += 1;
        if v == 0 {
            break;
        }
    }
    s.put(&b[..n]);
}

/// Writes `v` zigzag-encoded.
pub fn put_i32(s: &mut dyn Sink, v: i32) {
    put_varint(s, ((v << 1) ^ (v >> 31)) as u32);
}

/// A cursor over bytes being decoded; every read is checked.
pub struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    /// A LEB128 `u32`: at most 5 bytes, and the fifth may not carry bits
    /// past the 32nd.
    pub fn varint(&mut self) -> Result<u32, FormatError> {
        let mut v: u32 = 0;
        for (i, &byte) in self.0.iter().enumerate().take(5) {
            if i == 4 && byte > 0x0f {
                return Err(FormatError::Payload);
            }
            v |= ((byte & 0x7f) as u32) << (7 * i);
            if byte & 0x80 == 0 {
                self.0 = &self.0[i + 1..];
                return Ok(v);
            }
        }
        Err(FormatError::Payload)
    }

    pub fn i32(&mut self) -> Result<i32, FormatError> {
        let u = self.varint()?;
        Ok(((u >> 1) as i32) ^ -((u & 1) as i32))
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        if self.0.len() < n {
            return Err(FormatError::Payload);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    pub fn u32_le(&mut self) -> Result<u32, FormatError> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn f32_le(&mut self) -> Result<f32, FormatError> {
        self.u32_le().map(f32::from_bits)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_roundtrip_as_postcard_writes_them() {
        for v in [0u32, 1, 127, 128, 300, 16_383, 16_384, u32::MAX] {
            let mut buf = [0u8; 5];
            let mut s = SliceSink { buf: &mut buf, pos: 0 };
            put_varint(&mut s, v);
            let n = s.pos;
            let mut pc = [0u8; 5];
            assert_eq!(postcard::to_slice(&v, &mut pc).unwrap(), &buf[..n]);
            assert_eq!(Reader(&buf[..n]).varint(), Ok(v));
        }
        for v in [0i32, -1, 1, i32::MIN, i32::MAX] {
            let mut buf = [0u8; 5];
            let mut s = SliceSink { buf: &mut buf, pos: 0 };
            put_i32(&mut s, v);
            let n = s.pos;
            assert_eq!(Reader(&buf[..n]).i32(), Ok(v));
        }
        // Too long, or bits past u32: errors.
        assert!(Reader(&[0x80; 6]).varint().is_err());
        assert!(Reader(&[0xff, 0xff, 0xff, 0xff, 0x1f]).varint().is_err());
        assert!(Reader(&[0x80]).varint().is_err());
    }
}
