//! Files and blobs: a fixed 32-byte header, then a postcard payload.
//!
//! ```text
//! offset  size  field
//!      0     4  magic          b"TLRF" f32 checkpoint, b"TLQ8" int8 model
//!      4     2  version        u16 LE
//!      6     2  n_dims         u16 LE, how many of `dims` are used
//!      8    16  dims           [u32 LE; 4], layer widths (input first)
//!     24     4  payload_len    u32 LE
//!     28     4  payload_crc    CRC-32 (ISO-HDLC, as zlib) of the payload
//!     32     …  payload        postcard
//! ```
//!
//! The header is hand-encoded so that its layout never depends on a serde
//! version; everything after it is postcard. Tensors are written as a
//! postcard sequence of `(name: str, shape: seq<u32>, data: seq<f32>)`, which
//! is PyTorch's state dict with explicit shapes; [`read_tensors`] decodes it
//! straight into the caller's buffers (no allocation, any size).

use core::fmt;

pub const HEADER_LEN: usize = 32;
pub const MAX_DIMS: usize = 4;
const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// CRC-32 as zlib computes it.
pub fn crc32(bytes: &[u8]) -> u32 {
    CRC.checksum(bytes)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub magic: [u8; 4],
    pub version: u16,
    pub n_dims: u16,
    pub dims: [u32; MAX_DIMS],
    pub payload_len: u32,
    pub payload_crc: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatError {
    /// Fewer bytes than the header or payload needs.
    Truncated {
        needed: usize,
        found: usize,
    },
    BadMagic {
        expected: [u8; 4],
        found: [u8; 4],
    },
    BadVersion {
        supported: u16,
        found: u16,
    },
    /// The file's layer sizes differ from the model compiled in.
    ShapeMismatch {
        expected: [u32; MAX_DIMS],
        found: [u32; MAX_DIMS],
    },
    Checksum {
        stored: u32,
        computed: u32,
    },
    /// Tensor `index` is missing or has another name, shape or length.
    Tensor {
        index: usize,
        expected: &'static str,
    },
    /// The payload does not decode as postcard.
    Payload,
    /// Bytes left over after the last expected field.
    TrailingBytes {
        count: usize,
    },
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn m(b: &[u8; 4]) -> &str {
            core::str::from_utf8(b).unwrap_or("<binary>")
        }
        match self {
            FormatError::Truncated { needed, found } => {
                write!(f, "truncated: needs {needed} bytes, found {found}")
            }
            FormatError::BadMagic { expected, found } => {
                write!(f, "wrong magic: expected {:?} ({}), found {:?}", expected, m(expected), found)
            }
            FormatError::BadVersion { supported, found } => {
                write!(f, "unsupported format version {found} (this build reads version {supported})")
            }
            FormatError::ShapeMismatch { expected, found } => {
                write!(f, "layer sizes {found:?} do not match the compiled model {expected:?}")
            }
            FormatError::Checksum { stored, computed } => {
                write!(f, "checksum mismatch: header says {stored:#010x}, payload has {computed:#010x} (file corrupt)")
            }
            FormatError::Tensor { index, expected } => {
                write!(f, "tensor #{index}: expected `{expected}` with the model's shape")
            }
            FormatError::Payload => write!(f, "payload is not valid postcard for this format"),
            FormatError::TrailingBytes { count } => write!(f, "{count} unexpected bytes after the payload"),
        }
    }
}

impl Header {
    pub fn new(magic: [u8; 4], version: u16, dims: &[u32], payload: &[u8]) -> Self {
        assert!(dims.len() <= MAX_DIMS);
        let mut d = [0u32; MAX_DIMS];
        d[..dims.len()].copy_from_slice(dims);
        Header {
            magic,
            version,
            n_dims: dims.len() as u16,
            dims: d,
            payload_len: payload.len() as u32,
            payload_crc: crc32(payload),
        }
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&self.magic);
        b[4..6].copy_from_slice(&self.version.to_le_bytes());
        b[6..8].copy_from_slice(&self.n_dims.to_le_bytes());
        for (i, d) in self.dims.iter().enumerate() {
            b[8 + 4 * i..12 + 4 * i].copy_from_slice(&d.to_le_bytes());
        }
        b[24..28].copy_from_slice(&self.payload_len.to_le_bytes());
        b[28..32].copy_from_slice(&self.payload_crc.to_le_bytes());
        b
    }

    /// Parses and checks a whole blob: magic, version, layer sizes and the
    /// payload's length and CRC. Returns the header and the payload.
    pub fn check<'a>(
        bytes: &'a [u8],
        magic: [u8; 4],
        version: u16,
        dims: &[u32],
    ) -> Result<(Header, &'a [u8]), FormatError> {
        if bytes.len() < HEADER_LEN {
            return Err(FormatError::Truncated { needed: HEADER_LEN, found: bytes.len() });
        }
        let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        let found_magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
        if found_magic != magic {
            return Err(FormatError::BadMagic { expected: magic, found: found_magic });
        }
        let h = Header {
            magic,
            version: u16_at(4),
            n_dims: u16_at(6),
            dims: core::array::from_fn(|i| u32_at(8 + 4 * i)),
            payload_len: u32_at(24),
            payload_crc: u32_at(28),
        };
        if h.version != version {
            return Err(FormatError::BadVersion { supported: version, found: h.version });
        }
        let mut want = [0u32; MAX_DIMS];
        want[..dims.len()].copy_from_slice(dims);
        if h.n_dims as usize != dims.len() || h.dims != want {
            return Err(FormatError::ShapeMismatch { expected: want, found: h.dims });
        }
        let end = HEADER_LEN + h.payload_len as usize;
        if bytes.len() < end {
            return Err(FormatError::Truncated { needed: end, found: bytes.len() });
        }
        if bytes.len() > end {
            return Err(FormatError::TrailingBytes { count: bytes.len() - end });
        }
        let payload = &bytes[HEADER_LEN..end];
        let computed = crc32(payload);
        if computed != h.payload_crc {
            return Err(FormatError::Checksum { stored: h.payload_crc, computed });
        }
        Ok((h, payload))
    }
}

/// A tensor to write: state-dict name, PyTorch shape, data.
#[derive(Clone, Copy, Debug)]
pub struct Tensor<'a> {
    pub name: &'a str,
    pub shape: &'a [usize],
    pub data: &'a [f32],
}

impl serde::Serialize for Tensor<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeSeq, SerializeTuple};
        struct Shape<'a>(&'a [usize]);
        impl serde::Serialize for Shape<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut q = s.serialize_seq(Some(self.0.len()))?;
                for &d in self.0 {
                    q.serialize_element(&(d as u32))?;
                }
                q.end()
            }
        }
        let mut t = s.serialize_tuple(3)?;
        t.serialize_element(self.name)?;
        t.serialize_element(&Shape(self.shape))?;
        t.serialize_element(self.data)?;
        t.end()
    }
}

/// Decodes one postcard varint (LEB128, at most 5 bytes for a u32).
fn varint(b: &[u8]) -> Result<(u32, &[u8]), FormatError> {
    let mut v: u32 = 0;
    for (i, &byte) in b.iter().enumerate().take(5) {
        v |= ((byte & 0x7f) as u32) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((v, &b[i + 1..]));
        }
    }
    Err(FormatError::Payload)
}

/// Reads a postcard sequence of tensors into `dest` (name, shape, buffer),
/// requiring each name, shape and length to match. Returns the bytes after it.
pub fn read_tensors<'p>(
    payload: &'p [u8],
    dest: &mut [(&'static str, &'static [usize], &mut [f32])],
) -> Result<&'p [u8], FormatError> {
    let (count, mut rest) = varint(payload)?;
    if count as usize != dest.len() {
        return Err(FormatError::Tensor {
            index: (count as usize).min(dest.len()),
            expected: dest.get(count as usize).map_or("end of tensors", |d| d.0),
        });
    }
    for (index, (name, shape, buf)) in dest.iter_mut().enumerate() {
        let bad = FormatError::Tensor { index, expected: name };
        let (len, r) = varint(rest)?;
        let len = len as usize;
        if r.len() < len || &r[..len] != name.as_bytes() {
            return Err(bad);
        }
        let (nd, mut r) = varint(&r[len..])?;
        if nd as usize != shape.len() {
            return Err(bad);
        }
        for &d in shape.iter() {
            let (v, r2) = varint(r)?;
            if v as usize != d {
                return Err(bad);
            }
            r = r2;
        }
        let (n, r) = varint(r)?;
        if n as usize != buf.len() || r.len() < 4 * buf.len() {
            return Err(bad);
        }
        for (x, c) in buf.iter_mut().zip(r.chunks_exact(4)) {
            *x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        rest = &r[4 * buf.len()..];
    }
    Ok(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip_and_each_error() {
        let payload = [1u8, 2, 3, 4, 5];
        let h = Header::new(*b"TEST", 3, &[4, 2], &payload);
        let mut blob = [0u8; HEADER_LEN + 5];
        blob[..HEADER_LEN].copy_from_slice(&h.encode());
        blob[HEADER_LEN..].copy_from_slice(&payload);
        let (h2, p) = Header::check(&blob, *b"TEST", 3, &[4, 2]).unwrap();
        assert_eq!((h2, p), (h, &payload[..]));

        assert!(matches!(Header::check(&blob[..10], *b"TEST", 3, &[4, 2]), Err(FormatError::Truncated { .. })));
        assert!(matches!(
            Header::check(&blob[..35], *b"TEST", 3, &[4, 2]),
            Err(FormatError::Truncated { needed: 37, found: 35 })
        ));
        assert!(matches!(Header::check(&blob, *b"NOPE", 3, &[4, 2]), Err(FormatError::BadMagic { .. })));
        assert!(matches!(Header::check(&blob, *b"TEST", 4, &[4, 2]), Err(FormatError::BadVersion { found: 3, .. })));
        assert!(matches!(Header::check(&blob, *b"TEST", 3, &[4, 3]), Err(FormatError::ShapeMismatch { .. })));
        let mut bad = blob;
        bad[HEADER_LEN + 2] ^= 1;
        assert!(matches!(Header::check(&bad, *b"TEST", 3, &[4, 2]), Err(FormatError::Checksum { .. })));
    }

    #[test]
    fn crc_is_zlibs() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn tensors_roundtrip_through_postcard() {
        let a = [1.0f32, -2.5, 3.25, 0.0, 5.0, 6.0];
        let b = [7.0f32, 8.0];
        let ts = [Tensor { name: "w", shape: &[2, 3], data: &a }, Tensor { name: "b", shape: &[2], data: &b }];
        let mut buf = [0u8; 128];
        let used = postcard::to_slice(&ts[..], &mut buf).unwrap().len();
        let (mut a2, mut b2) = ([0.0f32; 6], [0.0f32; 2]);
        {
            let mut dest = [("w", &[2usize, 3][..], &mut a2[..]), ("b", &[2usize][..], &mut b2[..])];
            let rest = read_tensors(&buf[..used], &mut dest).unwrap();
            assert!(rest.is_empty());
        }
        assert_eq!((a2, b2), (a, b));
        // Wrong name, wrong shape, truncated: errors, never panics.
        let mut dest = [("x", &[2usize, 3][..], &mut a2[..]), ("b", &[2usize][..], &mut b2[..])];
        assert_eq!(read_tensors(&buf[..used], &mut dest), Err(FormatError::Tensor { index: 0, expected: "x" }));
        let mut dest = [("w", &[3usize, 2][..], &mut a2[..]), ("b", &[2usize][..], &mut b2[..])];
        assert!(read_tensors(&buf[..used], &mut dest).is_err());
        for cut in 0..used {
            let mut dest = [("w", &[2usize, 3][..], &mut a2[..]), ("b", &[2usize][..], &mut b2[..])];
            assert!(read_tensors(&buf[..cut], &mut dest).is_err());
        }
    }
}
