//! [`QModel`]: a checked view of `.q8` version-2 bytes, and inference on it.
//!
//! Nothing is copied: per-row arrays are borrowed from the bytes as
//! `&[i32]`/`&[f32]`. That needs the bytes at a 4-byte aligned address
//! (flash regions and the host's `.q8` buffers are) and a little-endian
//! target, which every supported target is (checked at compile time).

use super::input::{InputKind, QInput};
use super::kernels::{self, QKernels, Requant};
use super::layout::{self, QParams, LAYOUT_ID};
use super::{argmax, mbqm, widen, MAGIC};
use crate::format::{FormatError, Header};
use crate::spec::{Activation, Spec, MAX_LAYERS};

#[cfg(target_endian = "big")]
compile_error!("tailor-core reads .q8 words in place and needs a little-endian target");

/// One layer of a [`QModel`], borrowed from its bytes.
#[derive(Clone, Copy, Debug)]
pub struct QLayer<'a> {
    pub inputs: usize,
    pub outputs: usize,
    pub activation: Activation,
    pub params: QParams,
    /// Weight scale of each row (informational: inference does not use it).
    pub w_scale: &'a [f32],
    /// `round(b/(s_in·s_w)) − z_in·Σ_k w` per row.
    pub bias: &'a [i32],
    /// `M0` per row (Q31); 0 in the last layer.
    pub multiplier: &'a [i32],
    /// TFLite exponent per row: `> 0` left shift, `≤ 0` right shift.
    pub shift: &'a [i32],
    /// `outputs·inputs` weights in the packed layout of [`kernels`].
    pub weight: &'a [i8],
}

impl QLayer<'_> {
    /// Weight `(row, k)` in PyTorch indexing.
    pub fn weight_at(&self, row: usize, k: usize) -> i8 {
        self.weight[kernels::packed_index(row, k, self.outputs, self.inputs)]
    }

    /// `acc[o] = bias[o] + Σ x·w` (exact). `x` holds the u8 input values.
    pub fn accumulate(&self, kern: &QKernels, x: &[i16], acc: &mut [i32]) {
        kernels::gemv(kern, x, self.weight, self.outputs, self.inputs, |o, a| acc[o] = a.wrapping_add(self.bias[o]));
    }

    /// Requantizes one accumulator (hidden layers). The zero point is added
    /// wrapping, as the batched kernels add it, so that a corrupt model's
    /// extreme fields give the same (meaningless) outputs on every path
    /// instead of an overflow panic.
    #[inline]
    pub fn requantize(&self, o: usize, acc: i32) -> i32 {
        let p = &self.params;
        p.out_zp.wrapping_add(mbqm(acc, self.multiplier[o], self.shift[o])).clamp(p.out_min, p.out_max)
    }

    /// Hidden layer: `y[o]` = requantized, clamped u8 value (stored widened).
    pub fn forward_hidden(&self, kern: &QKernels, x: &[i16], y: &mut [i16]) {
        // Sums of a run of rows, then their requantization: on the device,
        // each loop keeps its values in registers.
        let (n, k) = (self.outputs, self.inputs);
        let (y, bias, m0, shift) = (&mut y[..n], &self.bias[..n], &self.multiplier[..n], &self.shift[..n]);
        let q = self.requant_params();
        let mut acc = [0i32; kernels::GEMV_RUN];
        let mut r0 = 0;
        while r0 < n {
            let m = (n - r0).min(kernels::GEMV_RUN);
            let run = r0..r0 + m;
            (kern.rows)(x, &self.weight[r0 * k..][..m * k], m, k, &mut acc[..m]);
            kernels::requant_widened(
                &acc[..m],
                &bias[run.clone()],
                &m0[run.clone()],
                &shift[run.clone()],
                q,
                &mut y[run],
            );
            r0 += m;
        }
    }

    pub fn requant_params(&self) -> Requant {
        Requant { zp: self.params.out_zp, min: self.params.out_min, max: self.params.out_max }
    }
}

/// The logits of a last layer with a ReLU: the logit scale is positive and
/// its zero point 0, so the ReLU is a clamp at 0 of the accumulators.
fn last_activation(act: Activation, logits: &mut [i32]) {
    if act == Activation::Relu {
        for l in logits {
            *l = (*l).max(0);
        }
    }
}

/// `i16` elements of the scratch [`QModel::classify`] needs: two buffers of
/// the widest layer (ping-pong), each an even number of elements so the
/// second starts word-aligned, plus one element to align the first.
pub const fn scratch_len(spec: &Spec) -> usize {
    2 * spec.max_width().next_multiple_of(2) + 2
}

/// The widest hidden layer (0 for a single layer).
const fn max_hidden(spec: &Spec) -> usize {
    let mut m = 0;
    let mut i = 0;
    while i + 1 < spec.depth() {
        let o = spec.layer(i).outputs;
        if o > m {
            m = o;
        }
        i += 1;
    }
    m
}

/// The widest layer output (accumulators of one sample).
const fn max_outputs(spec: &Spec) -> usize {
    let mut m = 0;
    let mut i = 0;
    while i < spec.depth() {
        let o = spec.layer(i).outputs;
        if o > m {
            m = o;
        }
        i += 1;
    }
    m
}

/// `u8` activations [`QModel::classify_batch`] needs for `batch` samples
/// per weight pass.
pub const fn batch_acts_len(spec: &Spec, batch: usize) -> usize {
    2 * batch * max_hidden(spec)
}

/// `i32` accumulators [`QModel::classify_batch`] needs for `batch` samples.
pub const fn batch_acc_len(spec: &Spec, batch: usize) -> usize {
    batch * max_outputs(spec)
}

/// Caller memory of [`QModel::classify_batch`]; the batch per weight pass
/// is the most both slices hold (see [`batch_acts_len`], [`batch_acc_len`]).
pub struct QBatchScratch<'s> {
    pub acts: &'s mut [u8],
    pub acc: &'s mut [i32],
}

/// A `.q8` version-2 model read in place (see [`super`] for the layout).
#[derive(Clone, Copy, Debug)]
pub struct QModel<'a> {
    header: Header,
    payload: &'a [u8],
    /// Where each layer starts in the payload; `[depth]` is the input section.
    offsets: [u32; MAX_LAYERS + 1],
    input_kind: InputKind,
}

fn word(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// `b` as 4-byte words. Panics unless aligned and a multiple of 4 long,
/// which [`QModel::parse`] has checked for every slice it hands out.
fn words<T: Word>(b: &[u8]) -> &[T] {
    assert!((b.as_ptr() as usize).is_multiple_of(4) && b.len().is_multiple_of(4), "unaligned .q8 field");
    // SAFETY: aligned, in bounds, and every bit pattern is a valid T.
    unsafe { core::slice::from_raw_parts(b.as_ptr() as *const T, b.len() / 4) }
}

/// Plain 4-byte words: any bits are a value.
trait Word {}
impl Word for i32 {}
impl Word for f32 {}

fn as_i8(b: &[u8]) -> &[i8] {
    // SAFETY: i8 and u8 have the same size, alignment and validity.
    unsafe { core::slice::from_raw_parts(b.as_ptr() as *const i8, b.len()) }
}

impl<'a> QModel<'a> {
    /// Bytes of the `.q8` that starts `region` as its header announces them
    /// (for a file in a flash region larger than it). Checks the magic, the
    /// version and the header's own CRC.
    pub fn announced_len(region: &[u8]) -> Result<usize, FormatError> {
        let need = |n: usize| {
            if region.len() < n {
                Err(FormatError::Truncated { needed: n, found: region.len() })
            } else {
                Ok(())
            }
        };
        need(8)?;
        let found = [region[0], region[1], region[2], region[3]];
        if found != MAGIC {
            return Err(FormatError::BadMagic { expected: MAGIC, found });
        }
        let version = u16::from_le_bytes([region[4], region[5]]);
        if version != crate::format::header::VERSION {
            return Err(FormatError::BadVersion { supported: crate::format::header::VERSION, found: version });
        }
        let l = u16::from_le_bytes([region[6], region[7]]) as usize;
        if l == 0 || l > MAX_LAYERS {
            return Err(FormatError::Layers { found: l });
        }
        let hl = Header::len_for(l);
        need(hl)?;
        let stored = word(region, hl - 4);
        let computed = crate::format::crc32(&region[..hl - 4]);
        if stored != computed {
            return Err(FormatError::HeaderChecksum { stored, computed });
        }
        Ok(hl + word(region, 12 + 8 * l) as usize)
    }

    /// Checks `bytes` (magic, version 2, header CRC, payload length and
    /// CRC, layout id, every section's length against the layer table,
    /// requantization fields in range, 4-byte alignment) and indexes it.
    pub fn parse(bytes: &'a [u8]) -> Result<QModel<'a>, FormatError> {
        if !(bytes.as_ptr() as usize).is_multiple_of(4) {
            return Err(FormatError::Misaligned);
        }
        let (header, payload) = Header::parse(bytes, MAGIC)?;
        if header.version != crate::format::header::VERSION {
            return Err(FormatError::BadVersion { supported: crate::format::header::VERSION, found: header.version });
        }
        let spec = header.spec;
        let layers_end = layout::layer_offset(&spec, spec.depth());
        if payload.len() < 4 {
            return Err(FormatError::PayloadLength { expected: layers_end + 4, found: payload.len() });
        }
        let id = word(payload, 0);
        if id != LAYOUT_ID {
            return Err(FormatError::Layout { found: id });
        }
        if payload.len() < layers_end + 4 {
            return Err(FormatError::PayloadLength { expected: layers_end + 4, found: payload.len() });
        }
        let code = word(payload, layers_end);
        let input_kind = InputKind::from_code(code).ok_or(FormatError::InputKind { code })?;
        let expected = layout::payload_len(&spec, input_kind);
        if payload.len() != expected {
            return Err(FormatError::PayloadLength { expected, found: payload.len() });
        }
        let mut offsets = [0u32; MAX_LAYERS + 1];
        for (i, o) in offsets.iter_mut().enumerate().take(spec.depth() + 1) {
            *o = layout::layer_offset(&spec, i) as u32;
        }
        let m = QModel { header, payload, offsets, input_kind };
        for i in 0..spec.depth() - 1 {
            m.check_hidden(i)?;
        }
        Ok(m)
    }

    /// The fields the integer path trusts: hidden outputs are `u8` values
    /// (the next layer and the batched path take them as bytes), and shifts
    /// stay inside what `mbqm` is defined for.
    fn check_hidden(&self, i: usize) -> Result<(), FormatError> {
        let l = self.layer(i);
        let p = l.params;
        if !(0 <= p.out_min && p.out_min <= p.out_max && p.out_max <= 255) {
            return Err(FormatError::Field { layer: i, field: "out_min/out_max (hidden outputs are u8)" });
        }
        if l.shift.iter().any(|s| !(-31..=30).contains(s)) {
            return Err(FormatError::Field { layer: i, field: "shift (-31 ..= 30)" });
        }
        Ok(())
    }

    pub fn spec(&self) -> &Spec {
        &self.header.spec
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// CRC-32 of the payload (the header's; the device reports it).
    pub fn payload_crc(&self) -> u32 {
        self.header.payload_crc
    }

    /// Bytes of the whole file.
    pub fn encoded_len(&self) -> usize {
        self.header.encoded_len() + self.payload.len()
    }

    /// `i16` elements of [`Self::classify`]'s scratch.
    pub fn scratch_len(&self) -> usize {
        scratch_len(self.spec())
    }

    /// Layer `i` (panics if `i >= spec().depth()`).
    pub fn layer(&self, i: usize) -> QLayer<'a> {
        let l = self.spec().layer(i);
        let (n, o) = (l.inputs, l.outputs);
        let b = &self.payload[self.offsets[i] as usize..self.offsets[i + 1] as usize];
        let at = layout::scalars_at(n, o);
        let f = |k: usize| f32::from_bits(word(b, at + k));
        let s = |k: usize| word(b, at + k) as i32;
        QLayer {
            inputs: n,
            outputs: o,
            activation: l.activation,
            params: QParams {
                in_scale: f(0),
                in_zp: s(4),
                out_scale: f(8),
                out_zp: s(12),
                out_min: s(16),
                out_max: s(20),
            },
            w_scale: words(&b[layout::w_scale_at(n, o)..layout::bias_at(n, o)]),
            bias: words(&b[layout::bias_at(n, o)..layout::multiplier_at(n, o)]),
            multiplier: words(&b[layout::multiplier_at(n, o)..layout::shift_at(n, o)]),
            shift: words(&b[layout::shift_at(n, o)..layout::rows_end(n, o)]),
            weight: as_i8(&b[layout::weight_at(n, o)..][..o * n]),
        }
    }

    /// The input section.
    pub fn input(&self) -> QInput<'a> {
        let at = self.offsets[self.spec().depth()] as usize + 4;
        let f = self.spec().inputs();
        match self.input_kind {
            InputKind::RawU8 => QInput::RawU8,
            InputKind::AffineU8 => QInput::AffineU8 {
                lo: words(&self.payload[at..at + 4 * f]),
                step: words(&self.payload[at + 4 * f..at + 8 * f]),
            },
        }
    }

    /// Runs every layer but the last on one sample; returns the last
    /// layer's input (widened `u8` values) inside `scratch`.
    fn hidden<'s>(&self, kern: &QKernels, input: &[u8], scratch: &'s mut [i16]) -> &'s [i16] {
        let spec = self.spec();
        let n_in = spec.inputs();
        assert!(input.len() >= n_in, "need {n_in} inputs");
        assert!(scratch.len() >= self.scratch_len(), "scratch of {} < {}", scratch.len(), self.scratch_len());
        // The DSP kernel loads activation pairs as words.
        let skip = match scratch.as_ptr().align_offset(4) {
            s @ (0 | 1) => s,
            _ => 0,
        };
        let half = spec.max_width().next_multiple_of(2);
        let (mut cur, mut next) = scratch[skip..skip + 2 * half].split_at_mut(half);
        widen(&input[..n_in], &mut cur[..n_in]);
        for i in 0..spec.depth() - 1 {
            let l = self.layer(i);
            l.forward_hidden(kern, &cur[..l.inputs], &mut next[..l.outputs]);
            core::mem::swap(&mut cur, &mut next);
        }
        &cur[..spec.layer(spec.depth() - 1).inputs]
    }

    /// Integer-only inference of one sample (`spec().inputs()` bytes):
    /// writes `spec().outputs()` int32 logits and returns the first index
    /// of their maximum. `scratch` holds at least [`Self::scratch_len`]
    /// elements (any alignment).
    pub fn classify(&self, kern: &QKernels, input: &[u8], scratch: &mut [i16], logits: &mut [i32]) -> usize {
        let n_out = self.spec().outputs();
        assert!(logits.len() >= n_out, "classify: need {n_out} logits");
        let h = self.hidden(kern, input, scratch);
        let l = self.layer(self.spec().depth() - 1);
        l.accumulate(kern, h, &mut logits[..n_out]);
        last_activation(l.activation, &mut logits[..n_out]);
        argmax(&logits[..n_out])
    }

    /// The outputs of the last hidden layer for one sample (`u8` values, as
    /// the last layer reads them, on its input grid: real value
    /// `in_scale · (q − in_zp)` of [`QLayer::params`] of the last layer):
    /// the features a new classifier head learns from. Writes them to `out`
    /// and returns how many there are (0 for a model without a hidden layer).
    pub fn features(&self, kern: &QKernels, input: &[u8], scratch: &mut [i16], out: &mut [u8]) -> usize {
        if self.spec().depth() < 2 {
            return 0;
        }
        let h = self.hidden(kern, input, scratch);
        for (o, &v) in out[..h.len()].iter_mut().zip(h) {
            // Hidden outputs are u8 values (checked by `parse`).
            *o = v as u8;
        }
        h.len()
    }

    /// Classifies `n` samples stored back to back in `inputs`, calling
    /// `emit(i, class, logits)` for each in order. Bit-identical to `n`
    /// calls of [`Self::classify`] with any kernel: the kernel's batched
    /// [`kernels::GemmFn`] runs as many samples per weight pass as
    /// `scratch` holds, on `u8` activations (which [`Self::parse`]
    /// guarantees hidden outputs are).
    pub fn classify_batch(
        &self,
        kern: &QKernels,
        inputs: &[u8],
        n: usize,
        scratch: QBatchScratch<'_>,
        mut emit: impl FnMut(usize, usize, &[i32]),
    ) {
        let spec = self.spec();
        let (n_in, depth) = (spec.inputs(), spec.depth());
        assert!(inputs.len() >= n * n_in, "classify_batch: need {n}·{n_in} input bytes");
        let (hmax, omax) = (max_hidden(spec), max_outputs(spec));
        let by_acts = if hmax == 0 { usize::MAX } else { scratch.acts.len() / (2 * hmax) };
        let batch = by_acts.min(scratch.acc.len() / omax);
        assert!(batch >= 1, "classify_batch: scratch too small for one sample");
        let (ping, pong) = scratch.acts.split_at_mut(scratch.acts.len() / 2);
        let acc = scratch.acc;
        let mut start = 0;
        while start < n {
            let m = batch.min(n - start);
            // Layer i reads bufs[i % 2] (the caller's inputs for layer 0)
            // and writes bufs[(i + 1) % 2].
            let (mut src, mut dst) = (&mut *ping, &mut *pong);
            for i in 0..depth {
                let l = self.layer(i);
                let (k, o) = (l.inputs, l.outputs);
                let x: &[u8] = if i == 0 { &inputs[start * n_in..] } else { &src[..m * k] };
                (kern.gemm)(x, k, m, l.weight, o, k, &mut acc[..m * o]);
                if i + 1 < depth {
                    let q = l.requant_params();
                    for (a, h) in acc[..m * o].chunks_exact(o).zip(dst[..m * o].chunks_exact_mut(o)) {
                        (kern.requant)(a, l.bias, l.multiplier, l.shift, q, h);
                    }
                    core::mem::swap(&mut src, &mut dst);
                } else {
                    for (j, lg) in acc[..m * o].chunks_exact_mut(o).enumerate() {
                        for (v, &b) in lg.iter_mut().zip(l.bias) {
                            *v = v.wrapping_add(b);
                        }
                        last_activation(l.activation, lg);
                        emit(start + j, argmax(lg), lg);
                    }
                }
            }
            start += m;
        }
    }
}
