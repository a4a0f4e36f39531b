//! Files and blobs: a [`Header`] with the model's layer table, then a
//! payload (postcard, or the int8 model's in-place layout).
//!
//! | module | holds |
//! |---|---|
//! | [`header`] | the header: magic, version, layer table, payload length and CRC |
//! | [`varint`] | postcard's LEB128/zigzag integers, byte sinks, a checked reader |
//! | [`tensors`] | state-dict tensors `(name, shape, data)` decoded into caller buffers |

use core::fmt;

use crate::spec::SpecError;

pub mod header;
pub mod tensors;
pub mod varint;

pub use header::Header;
pub use tensors::{read_tensors, Tensor};

pub(crate) const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// CRC-32 as zlib computes it.
pub fn crc32(bytes: &[u8]) -> u32 {
    CRC.checksum(bytes)
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
    /// The file's model differs from the one expected.
    ShapeMismatch,
    /// The header's layer count is 0 or above [`crate::spec::MAX_LAYERS`].
    Layers {
        found: usize,
    },
    /// The header's layer table is not a model.
    Spec(SpecError),
    /// Layer `layer` has an activation code this build does not know.
    Activation {
        layer: usize,
        code: u32,
    },
    /// The header's own CRC does not match (its layer table is corrupt).
    HeaderChecksum {
        stored: u32,
        computed: u32,
    },
    /// A blob read in place is not at a 4-byte aligned address.
    Misaligned,
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
    /// A payload read in place is not as long as its layer table says.
    PayloadLength {
        expected: usize,
        found: usize,
    },
    /// The payload's layout id is not this build's (1: a version-1 `.q8`).
    Layout {
        found: u32,
    },
    /// The `.q8` input section has an unknown kind.
    InputKind {
        code: u32,
    },
    /// A field of layer `layer` is out of its range.
    Field {
        layer: usize,
        field: &'static str,
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
            FormatError::ShapeMismatch => write!(f, "the model's layer table differs from the one expected"),
            FormatError::Layers { found } => {
                write!(f, "header has {found} layers, expected 1 to {}", crate::spec::MAX_LAYERS)
            }
            FormatError::Spec(e) => write!(f, "layer table: {e}"),
            FormatError::Activation { layer, code } => {
                write!(f, "layer {layer}: unknown activation code {code} (this build knows 0 = none, 1 = ReLU)")
            }
            FormatError::HeaderChecksum { stored, computed } => {
                write!(f, "header checksum mismatch: stored {stored:#010x}, computed {computed:#010x} (file corrupt)")
            }
            FormatError::Misaligned => write!(f, "the model's bytes are not 4-byte aligned in memory"),
            FormatError::Checksum { stored, computed } => {
                write!(f, "checksum mismatch: header says {stored:#010x}, payload has {computed:#010x} (file corrupt)")
            }
            FormatError::Tensor { index, expected } => {
                write!(f, "tensor #{index}: expected `{expected}` with the model's shape")
            }
            FormatError::Payload => write!(f, "payload is not valid postcard for this format"),
            FormatError::TrailingBytes { count } => write!(f, "{count} unexpected bytes after the payload"),
            FormatError::PayloadLength { expected, found } => {
                write!(f, "payload of {found} bytes, but the layer table and input section need {expected}")
            }
            FormatError::Layout { found: 1 } => {
                write!(
                    f,
                    "a version-1 int8 model (postcard payload): convert it with `tailor convert OLD.q8 --out NEW.q8`"
                )
            }
            FormatError::Layout { found } => write!(f, "payload layout {found} is not one this build reads"),
            FormatError::InputKind { code } => {
                write!(f, "unknown input section kind {code} (this build knows 0 = raw u8, 1 = quantized f32)")
            }
            FormatError::Field { layer, field } => write!(f, "layer {layer}: {field} out of range"),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn crc_is_zlibs() {
        assert_eq!(super::crc32(b"123456789"), 0xCBF4_3926);
    }
}
