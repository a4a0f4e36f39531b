//! Version-1 `.q8` files → version 2.
//!
//! Version 1 is a 32-byte header (magic, version 1, up to 4 widths, payload
//! length and CRC) then a postcard payload, which cannot be read in place:
//!
//! ```text
//! payload = (layout: varint = 1, layer…)
//! layer   = (in_scale f32, in_zp zigzag, out_scale f32, out_zp zigzag, out_min zigzag,
//!            out_max zigzag, w_scale: varint n + n f32, bias, multiplier, shift: varint n
//!            + n zigzag, weight: varint n + n bytes in the packed layout)
//! ```
//!
//! (A few files have a version-2 header over that same payload; they are
//! recognized by the payload's first byte, layout 1.) The fields are the
//! same in the same order, and the weights already packed, so conversion
//! streams them into the version-2 layout with a raw-`u8` input section:
//! every version-1 model took image bytes.

use super::encode::{self, EncodeError};
use super::input::{InputKind, QInput};
use super::layout::{self, QParams};
use super::MAGIC;
use crate::format::varint::Reader;
use crate::format::{FormatError, Header};
use crate::spec::Spec;

/// Postcard's layout id in version-1 payloads.
const V1_LAYOUT: u32 = 1;

/// The checked version-1 header and payload, if `bytes` is a version-1
/// `.q8` (`None` for anything else, including a valid version 2).
pub fn detect(bytes: &[u8]) -> Option<Result<(Spec, &[u8]), FormatError>> {
    let (h, payload) = match Header::parse(bytes, MAGIC) {
        Ok(x) => x,
        Err(e) => {
            // A corrupt version-1 file: say so rather than "bad version".
            let v1 = bytes.len() >= 6 && bytes[..4] == MAGIC && bytes[4..6] == [1, 0];
            return v1.then_some(Err(e));
        }
    };
    (h.version == 1 || payload.first() == Some(&(V1_LAYOUT as u8))).then_some(Ok((h.spec, payload)))
}

/// Bytes of the version-2 file that [`convert`] writes for `spec`.
pub const fn converted_len(spec: &Spec) -> usize {
    layout::encoded_len(spec, InputKind::RawU8)
}

fn seq(r: &mut Reader<'_>, n: usize, layer: usize, name: &'static str) -> Result<(), FormatError> {
    if r.varint()? as usize != n {
        return Err(FormatError::Tensor { index: layer, expected: name });
    }
    Ok(())
}

/// Converts the version-1 file `bytes` into `out` (at least
/// [`converted_len`]); returns the length written.
pub fn convert(bytes: &[u8], out: &mut [u8]) -> Result<usize, FormatError> {
    let (spec, payload) = detect(bytes).unwrap_or(Err(FormatError::BadVersion { supported: 1, found: 2 }))?;
    let mut r = Reader(payload);
    if r.varint()? != V1_LAYOUT {
        return Err(FormatError::Layout { found: 0 });
    }
    // Validate the whole stream first, so the writer below cannot fail.
    {
        let mut c = Reader(r.0);
        for (i, l) in spec.layers().enumerate() {
            read_layer(&mut c, i, l.inputs, l.outputs, |_| {})?;
        }
        if !c.is_empty() {
            return Err(FormatError::TrailingBytes { count: c.0.len() });
        }
    }
    let res = encode::write(&spec, &QInput::RawU8, out, |i, w| {
        let (n, o) = (w.inputs, w.outputs);
        let _ = read_layer(&mut r, i, n, o, |item| match item {
            Item::Params(p) => w.params(&p),
            Item::Row { o, w_scale, bias, multiplier, shift } => w.row(o, w_scale, bias, multiplier, shift),
            Item::Weights(b) => {
                let at = layout::weight_at(n, o);
                w.buf[at..at + b.len()].copy_from_slice(b);
            }
        });
    });
    res.map_err(|e| match e {
        EncodeError::Buffer { needed, found } => FormatError::Truncated { needed, found },
        _ => FormatError::Payload,
    })
}

/// What [`read_layer`] hands out, in file order.
enum Item<'a> {
    Params(QParams),
    Row {
        o: usize,
        w_scale: f32,
        bias: i32,
        multiplier: i32,
        shift: i32,
    },
    /// The packed weights.
    Weights(&'a [u8]),
}

/// Reads one version-1 layer.
fn read_layer<'a>(
    r: &mut Reader<'a>,
    layer: usize,
    inputs: usize,
    outputs: usize,
    mut emit: impl FnMut(Item<'a>),
) -> Result<(), FormatError> {
    emit(Item::Params(QParams {
        in_scale: r.f32_le()?,
        in_zp: r.i32()?,
        out_scale: r.f32_le()?,
        out_zp: r.i32()?,
        out_min: r.i32()?,
        out_max: r.i32()?,
    }));
    seq(r, outputs, layer, "w_scale")?;
    let ws = r.bytes(4 * outputs)?;
    // bias, multiplier, shift are varints one after the other: find each
    // array, then walk the three in step (no buffer of `outputs` entries).
    let mut arrays = [Reader(&[]), Reader(&[]), Reader(&[])];
    for (a, name) in arrays.iter_mut().zip(["bias", "multiplier", "shift"]) {
        seq(r, outputs, layer, name)?;
        let start = r.0;
        for _ in 0..outputs {
            r.i32()?;
        }
        *a = Reader(&start[..start.len() - r.0.len()]);
    }
    let [b, m, sh] = &mut arrays;
    for o in 0..outputs {
        let w_scale = f32::from_le_bytes([ws[4 * o], ws[4 * o + 1], ws[4 * o + 2], ws[4 * o + 3]]);
        emit(Item::Row { o, w_scale, bias: b.i32()?, multiplier: m.i32()?, shift: sh.i32()? });
    }
    seq(r, outputs * inputs, layer, "weight")?;
    emit(Item::Weights(r.bytes(outputs * inputs)?));
    Ok(())
}
