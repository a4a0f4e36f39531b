//! Where each field of a `.q8` version-2 payload sits (see the table in
//! [`super`]), and a writer for one layer's fields.
//!
//! Every offset is a `const fn` of the [`Spec`] and the input kind, so the
//! reader checks one length and then slices without searching, and a
//! firmware can size buffers at compile time.

use super::input::InputKind;
use super::kernels;
use crate::format::Header;
use crate::spec::Spec;

/// The payload's first word: bumped when the payload layout changes.
/// 1 was the postcard payload of `.q8` version 1 (see [`super::legacy`]);
/// 2, never released, had unaligned weights.
pub const LAYOUT_ID: u32 = 3;

/// Every layer, and so its weights, starts at a multiple of this many bytes
/// from the start of the file: the host's SIMD kernels load whole cache
/// lines of weights, and a weight array that starts mid-line costs them a
/// split load per line (measured: int8 inference of one image 5–8 % slower).
pub const ALIGN: usize = 64;

const fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

/// `in_scale, in_zp, out_scale, out_zp, out_min, out_max`.
pub const LAYER_SCALARS: usize = 24;

pub const fn round4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// Bytes of one layer: weights padded to a word, scalars, four per-row
/// arrays, zeros to a multiple of [`ALIGN`].
pub const fn layer_len(inputs: usize, outputs: usize) -> usize {
    round_up(scalars_at(inputs, outputs) + LAYER_SCALARS + 16 * outputs, ALIGN)
}

/// Offset of layer `i` in the payload (`i == depth` gives the input
/// section): after the layout word, the first [`ALIGN`]ed file offset.
pub const fn layer_offset(spec: &Spec, i: usize) -> usize {
    let hl = Header::len_for(spec.depth());
    let mut off = round_up(hl + 4, ALIGN) - hl;
    let mut j = 0;
    while j < i {
        let l = spec.layer(j);
        off += layer_len(l.inputs, l.outputs);
        j += 1;
    }
    off
}

/// Bytes of the input section for `features` inputs.
pub const fn input_len(kind: InputKind, features: usize) -> usize {
    match kind {
        InputKind::RawU8 => 4,
        InputKind::AffineU8 => 4 + 8 * features,
    }
}

/// Bytes of the whole payload.
pub const fn payload_len(spec: &Spec, kind: InputKind) -> usize {
    layer_offset(spec, spec.depth()) + input_len(kind, spec.inputs())
}

/// Bytes of the whole `.q8` file (header + payload).
pub const fn encoded_len(spec: &Spec, kind: InputKind) -> usize {
    Header::len_for(spec.depth()) + payload_len(spec, kind)
}

/// Field offsets inside a layer of `inputs` × `outputs`: the weights
/// first (at an [`ALIGN`]ed file offset), then the scalars and the per-row
/// arrays.
pub(crate) const fn weight_at(_i: usize, _o: usize) -> usize {
    0
}
pub(crate) const fn scalars_at(i: usize, o: usize) -> usize {
    round4(i * o)
}
pub(crate) const fn w_scale_at(i: usize, o: usize) -> usize {
    scalars_at(i, o) + LAYER_SCALARS
}
pub(crate) const fn bias_at(i: usize, o: usize) -> usize {
    w_scale_at(i, o) + 4 * o
}
pub(crate) const fn multiplier_at(i: usize, o: usize) -> usize {
    w_scale_at(i, o) + 8 * o
}
pub(crate) const fn shift_at(i: usize, o: usize) -> usize {
    w_scale_at(i, o) + 12 * o
}
pub(crate) const fn rows_end(i: usize, o: usize) -> usize {
    w_scale_at(i, o) + 16 * o
}

/// A layer's scalar parameters (real value `r = scale · (q − zp)`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QParams {
    pub in_scale: f32,
    pub in_zp: i32,
    /// For the last layer: the logits' scale (zero point 0).
    pub out_scale: f32,
    pub out_zp: i32,
    /// Clamp of requantized hidden outputs (ReLU: `out_min = out_zp`).
    pub out_min: i32,
    pub out_max: i32,
}

/// Writes one layer's fields into its `layer_len` bytes of a payload.
pub(crate) struct LayerMut<'o> {
    pub buf: &'o mut [u8],
    pub inputs: usize,
    pub outputs: usize,
}

impl LayerMut<'_> {
    fn put(&mut self, at: usize, v: [u8; 4]) {
        self.buf[at..at + 4].copy_from_slice(&v);
    }

    pub fn params(&mut self, p: &QParams) {
        let s = scalars_at(self.inputs, self.outputs);
        self.put(s, p.in_scale.to_le_bytes());
        self.put(s + 4, p.in_zp.to_le_bytes());
        self.put(s + 8, p.out_scale.to_le_bytes());
        self.put(s + 12, p.out_zp.to_le_bytes());
        self.put(s + 16, p.out_min.to_le_bytes());
        self.put(s + 20, p.out_max.to_le_bytes());
    }

    pub fn row(&mut self, o: usize, w_scale: f32, bias: i32, multiplier: i32, shift: i32) {
        let (i, n) = (self.inputs, self.outputs);
        self.put(w_scale_at(i, n) + 4 * o, w_scale.to_le_bytes());
        self.put(bias_at(i, n) + 4 * o, bias.to_le_bytes());
        self.put(multiplier_at(i, n) + 4 * o, multiplier.to_le_bytes());
        self.put(shift_at(i, n) + 4 * o, shift.to_le_bytes());
    }

    /// Weight `(r, k)` in PyTorch indexing, stored at its packed place.
    pub fn weight(&mut self, r: usize, k: usize, q: i8) {
        let at = weight_at(self.inputs, self.outputs) + kernels::packed_index(r, k, self.outputs, self.inputs);
        self.buf[at] = q as u8;
    }

    /// Zeroes the layer, padding included (the CRC covers it).
    pub fn zero_padding(&mut self) {
        self.buf.fill(0);
    }
}
