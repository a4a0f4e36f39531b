//! The header every tailor file starts with: what it is, the model's layer
//! table, and the length and CRC of the payload after it.
//!
//! ```text
//! offset   size  field
//!      0      4  magic         b"TLRF" f32 checkpoint, b"TLQ8" int8 model
//!      4      2  version       u16 LE (2)
//!      6      2  layers L      u16 LE, 1 ..= MAX_LAYERS
//!      8      4  inputs        u32 LE
//!     12    8·L  layer table   per layer: outputs u32 LE, activation u32 LE (spec::Activation codes)
//!   12+8L     4  payload_len   u32 LE
//!   16+8L     4  payload_crc   CRC-32 (ISO-HDLC, as zlib) of the payload
//!   20+8L     4  header_crc    CRC-32 of bytes 0 .. 20+8L
//!   24+8L     …  payload
//! ```
//!
//! The header's length is a multiple of 8, so a payload of aligned fields
//! stays aligned when the file sits at an aligned address (the int8 model is
//! read in place from flash). The header has its own CRC so that a corrupt
//! layer table is reported as corruption before any size is derived from it.
//!
//! Version 1 files (up to 4 widths in a fixed 32-byte header, no header CRC)
//! are recognized by [`Header::parse`] so that callers can say how to
//! convert them.

use super::{crc32, FormatError};
use crate::spec::{Activation, Layer, Spec, MAX_LAYERS};

/// The version [`Header::encode`] writes.
pub const VERSION: u16 = 2;
/// Bytes of a version-1 header.
pub const V1_LEN: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub magic: [u8; 4],
    pub version: u16,
    pub spec: Spec,
    pub payload_len: u32,
    pub payload_crc: u32,
}

impl Header {
    /// The header of `payload` for a model of shape `spec`.
    pub fn new(magic: [u8; 4], spec: Spec, payload: &[u8]) -> Self {
        Header { magic, version: VERSION, spec, payload_len: payload.len() as u32, payload_crc: crc32(payload) }
    }

    /// Bytes of a version-2 header for a model of `layers` layers.
    pub const fn len_for(layers: usize) -> usize {
        24 + 8 * layers
    }

    /// Bytes of this header as [`Self::encode`] writes it.
    pub const fn encoded_len(&self) -> usize {
        match self.version {
            1 => V1_LEN,
            _ => Self::len_for(self.spec.depth()),
        }
    }

    /// Writes the version-2 header into `out[..self.len()]`; returns its
    /// length. Panics if `out` is shorter.
    pub fn encode(&self, out: &mut [u8]) -> usize {
        let l = self.spec.depth();
        let n = Self::len_for(l);
        let out = &mut out[..n];
        out[0..4].copy_from_slice(&self.magic);
        out[4..6].copy_from_slice(&VERSION.to_le_bytes());
        out[6..8].copy_from_slice(&(l as u16).to_le_bytes());
        out[8..12].copy_from_slice(&(self.spec.inputs() as u32).to_le_bytes());
        for (i, layer) in self.spec.layers().enumerate() {
            let o = 12 + 8 * i;
            out[o..o + 4].copy_from_slice(&(layer.outputs as u32).to_le_bytes());
            out[o + 4..o + 8].copy_from_slice(&layer.activation.code().to_le_bytes());
        }
        let o = 12 + 8 * l;
        out[o..o + 4].copy_from_slice(&self.payload_len.to_le_bytes());
        out[o + 4..o + 8].copy_from_slice(&self.payload_crc.to_le_bytes());
        let hc = crc32(&out[..o + 8]);
        out[o + 8..o + 12].copy_from_slice(&hc.to_le_bytes());
        n
    }

    /// Parses the header at the start of `bytes` (version 1 or 2) and checks
    /// it, its layer table and the payload's length and CRC. Returns the
    /// header and the payload. Checks the magic only against `magic`.
    pub fn parse(bytes: &[u8], magic: [u8; 4]) -> Result<(Header, &[u8]), FormatError> {
        let need = |n: usize| {
            if bytes.len() < n {
                Err(FormatError::Truncated { needed: n, found: bytes.len() })
            } else {
                Ok(())
            }
        };
        need(8)?;
        let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        let found = [bytes[0], bytes[1], bytes[2], bytes[3]];
        if found != magic {
            return Err(FormatError::BadMagic { expected: magic, found });
        }
        let version = u16_at(4);
        let (spec, payload_len, payload_crc, start) = match version {
            1 => {
                need(V1_LEN)?;
                let n = u16_at(6) as usize;
                if !(2..=4).contains(&n) {
                    return Err(FormatError::Layers { found: n.saturating_sub(1) });
                }
                let mut dims = [0usize; 4];
                for (i, d) in dims.iter_mut().enumerate().take(n) {
                    *d = u32_at(8 + 4 * i) as usize;
                }
                let spec = Spec::try_mlp(&dims[..n]).map_err(FormatError::Spec)?;
                (spec, u32_at(24), u32_at(28), V1_LEN)
            }
            VERSION => {
                let l = u16_at(6) as usize;
                if l == 0 || l > MAX_LAYERS {
                    return Err(FormatError::Layers { found: l });
                }
                let n = Self::len_for(l);
                need(n)?;
                let stored = u32_at(n - 4);
                let computed = crc32(&bytes[..n - 4]);
                if stored != computed {
                    return Err(FormatError::HeaderChecksum { stored, computed });
                }
                let mut layers = [Layer { inputs: 0, outputs: 0, activation: Activation::None }; MAX_LAYERS];
                let mut inputs = u32_at(8) as usize;
                for (i, layer) in layers.iter_mut().enumerate().take(l) {
                    let outputs = u32_at(12 + 8 * i) as usize;
                    let code = u32_at(16 + 8 * i);
                    let activation = Activation::from_code(code).ok_or(FormatError::Activation { layer: i, code })?;
                    *layer = Layer { inputs, outputs, activation };
                    inputs = outputs;
                }
                let spec = Spec::from_layers(&layers[..l]).map_err(FormatError::Spec)?;
                (spec, u32_at(12 + 8 * l), u32_at(16 + 8 * l), n)
            }
            found => return Err(FormatError::BadVersion { supported: VERSION, found }),
        };
        let end = start
            .checked_add(payload_len as usize)
            .ok_or(FormatError::Truncated { needed: usize::MAX, found: bytes.len() })?;
        need(end)?;
        if bytes.len() > end {
            return Err(FormatError::TrailingBytes { count: bytes.len() - end });
        }
        let payload = &bytes[start..end];
        let computed = crc32(payload);
        if computed != payload_crc {
            return Err(FormatError::Checksum { stored: payload_crc, computed });
        }
        Ok((Header { magic, version, spec, payload_len, payload_crc }, payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(spec: Spec, payload: &[u8]) -> ([u8; 256], usize) {
        let h = Header::new(*b"TEST", spec, payload);
        let mut b = [0u8; 256];
        let n = h.encode(&mut b);
        b[n..n + payload.len()].copy_from_slice(payload);
        (b, n + payload.len())
    }

    #[test]
    fn roundtrip_and_each_error() {
        let spec = Spec::mlp(&[4, 3, 2]);
        let payload = [1u8, 2, 3, 4, 5];
        let (b, n) = blob(spec, &payload);
        assert_eq!(n, Header::len_for(2) + 5);
        let (h, p) = Header::parse(&b[..n], *b"TEST").unwrap();
        assert_eq!((h.spec, h.version, p), (spec, VERSION, &payload[..]));
        assert_eq!(h.encoded_len(), 40);

        let err = |b: &[u8]| Header::parse(b, *b"TEST").unwrap_err();
        assert!(matches!(err(&b[..5]), FormatError::Truncated { needed: 8, found: 5 }));
        assert!(matches!(err(&b[..20]), FormatError::Truncated { needed: 40, .. }));
        assert!(matches!(err(&b[..n - 1]), FormatError::Truncated { .. }));
        assert!(matches!(err(&b[..n + 1]), FormatError::TrailingBytes { count: 1 }));
        assert!(matches!(Header::parse(&b[..n], *b"NOPE"), Err(FormatError::BadMagic { .. })));
        let mut c = b;
        c[4] = 9;
        assert!(matches!(err(&c[..n]), FormatError::BadVersion { found: 9, .. }));
        let mut c = b;
        c[12] ^= 1; // a width: the header CRC catches it
        assert!(matches!(err(&c[..n]), FormatError::HeaderChecksum { .. }));
        let mut c = b;
        c[n - 1] ^= 1;
        assert!(matches!(err(&c[..n]), FormatError::Checksum { .. }));
        let mut c = b;
        c[6] = 0;
        assert!(matches!(err(&c[..n]), FormatError::Layers { found: 0 }));
    }

    #[test]
    fn bad_layer_tables_are_errors() {
        // A valid CRC over a table with a zero width or an unknown activation.
        let spec = Spec::mlp(&[4, 3, 2]);
        let (b, n) = blob(spec, &[]);
        let reseal = |mut c: [u8; 256]| {
            let o = n - 4;
            let hc = crc32(&c[..o]);
            c[o..o + 4].copy_from_slice(&hc.to_le_bytes());
            c
        };
        let mut c = b;
        c[12..16].copy_from_slice(&0u32.to_le_bytes());
        assert!(matches!(Header::parse(&reseal(c)[..n], *b"TEST"), Err(FormatError::Spec(_))));
        let mut c = b;
        c[16..20].copy_from_slice(&7u32.to_le_bytes());
        assert!(matches!(Header::parse(&reseal(c)[..n], *b"TEST"), Err(FormatError::Activation { layer: 0, code: 7 })));
    }

    #[test]
    fn version_1_headers_are_recognized() {
        let mut b = [0u8; V1_LEN + 3];
        b[..4].copy_from_slice(b"TEST");
        b[4..6].copy_from_slice(&1u16.to_le_bytes());
        b[6..8].copy_from_slice(&3u16.to_le_bytes());
        for (i, d) in [5u32, 4, 2].iter().enumerate() {
            b[8 + 4 * i..12 + 4 * i].copy_from_slice(&d.to_le_bytes());
        }
        b[24..28].copy_from_slice(&3u32.to_le_bytes());
        b[28..32].copy_from_slice(&crc32(&[0, 0, 0]).to_le_bytes());
        let (h, p) = Header::parse(&b, *b"TEST").unwrap();
        assert_eq!((h.version, h.spec, p.len(), h.encoded_len()), (1, Spec::mlp(&[5, 4, 2]), 3, V1_LEN));
    }
}
