//! Int8 post-training quantization and integer-only inference.
//!
//! # Number formats
//!
//! | tensor | type | scale | zero point |
//! |---|---|---|---|
//! | input (raw IDX pixels, or quantized features) | `u8` | `1/255` (pixels) | 0 |
//! | hidden activations (after ReLU) | `u8` | per tensor, calibrated | per tensor (0 after a ReLU) |
//! | weights of hidden layers | `i8` in `[-127, 127]` | per output channel, symmetric | 0 |
//! | weights of the last layer | `i8` in `[-127, 127]` | **one per tensor** (see below) | 0 |
//! | biases | `i32` | `s_in · s_w[o]` | 0 |
//! | logits | `i32` accumulators (+ bias) | `s_in · s_w` | 0 |
//!
//! A real value `r` is represented by `q` as `r = s · (q − z)`.
//!
//! **Input normalization.** The f32 model may have been trained on
//! `x = (p/255 − mean)/std` (torchvision `ToTensor` + `Normalize`), or on
//! standardized f32 features. That affine ([`InputAffine`]) is folded into
//! layer 1 in f32 before quantizing (`w' = w·gain/std`,
//! `b' = b − Σ_k w[k]·offset_k/std_k`), so the device always takes bytes.
//!
//! **Last layer.** Its accumulators are the logits and the argmax is taken
//! over them directly, so all 10 rows must share one scale: the last layer
//! uses a per-tensor weight scale (per-channel scales would make the raw
//! accumulators incomparable across classes).
//!
//! # Integer-only inference of one layer
//!
//! ```text
//! acc[o] = bias[o] + Σ_k x[k] · w[o][k]             (exact i32; x is the u8 value)
//! bias[o] = round(b[o] / (s_in·s_w[o])) − z_in · Σ_k w[o][k]   (zero point folded)
//! hidden: y[o] = clamp(z_out + MBQM(acc[o], M0[o], shift[o]), out_min, out_max)
//! last:   logits[o] = acc[o],  class = first index of the maximum
//! ```
//!
//! with `out_min = z_out` (this is the ReLU), `out_max = 255`.
//!
//! # Requantization (gemmlowp / TFLite reference arithmetic)
//!
//! The real multiplier `M = s_in · s_w[o] / s_out` is stored as
//! `M = M0 · 2^(shift − 31)`, `M0` an `i32` in `[2^30, 2^31)`, `shift` an
//! `i32` (TFLite's `QuantizeMultiplier`: `frexp`, round the mantissa to Q31,
//! renormalize if it rounds up to `2^31`; `M = 0` or `shift < −31` store
//! `M0 = 0, shift = 0`). Then, exactly as TFLite's
//! `MultiplyByQuantizedMultiplier`:
//!
//! ```text
//! MBQM(x, M0, shift) = RDBP(SRDHM(x · 2^max(shift,0), M0), max(−shift, 0))
//! SRDHM(a, b) = i32::MAX if a = b = i32::MIN, else
//!               (a·b + (a·b ≥ 0 ? 2^30 : 1 − 2^30)) / 2^31   (i64, `/` truncates toward 0)
//! RDBP(x, e)  = (x >> e) + ((x & (2^e − 1)) > ((2^e − 1) >> 1) + (x < 0)) ? 1 : 0)
//! ```
//!
//! i.e. `SaturatingRoundingDoublingHighMul` (`round(a·b / 2^31)` with ties
//! toward +∞: 1.5 → 2 but −1.5 → −1, gemmlowp's exact nudge) then
//! `RoundingDivideByPOT` (ties away from zero: −2.5 → −3), `>>` arithmetic. The
//! left shift saturates (TFLite leaves overflow undefined; with `M < 1`,
//! which calibration always gives here, it is never taken).
//!
//! # The `.q8` file, version 2
//!
//! A [`crate::format::Header`] (magic `TLQ8`, version 2, the layer table,
//! payload length and CRC, its own CRC; `24 + 8·L` bytes, a multiple of 8)
//! then a payload of little-endian fields, each 4-byte aligned when the
//! file is (and every layer's weights 64-byte aligned when the file is), so [`QModel`] reads them in place (from flash, or a host
//! buffer) without copying or decoding:
//!
//! ```text
//! payload  = layout u32 (= LAYOUT_ID = 3), zeros to a file offset that is a multiple of 64,
//!            layer[0..L], input
//! layer    = weight[O·I] i8 (packed layout of `kernels`), zeros to a multiple of 4,
//!            in_scale f32, in_zp i32, out_scale f32, out_zp i32, out_min i32, out_max i32,
//!            w_scale[O] f32, bias[O] i32, multiplier[O] i32, shift[O] i32,
//!            zeros to a multiple of 64 bytes
//! input    = kind u32: 0 = raw u8 bytes (image pixels)
//!                      1 = f32 features, q_k = clamp(round((r_k − lo_k)/step_k), 0, 255),
//!                          followed by lo[I] f32, step[I] f32
//! ```
//!
//! `I`, `O` are each layer's inputs and outputs from the header's table, so
//! every offset is a function of the table ([`layout`]) and a reader checks
//! one length. The firmware ignores the input section; hosts use it to turn
//! raw features into the device's bytes ([`QInput::quantize_features`]).
//! A new payload layout gets a new `LAYOUT_ID`; version-1 files (postcard
//! payload, layout 1) are converted by [`legacy`].
//!
//! # Layers of any depth
//!
//! Hidden layers requantize to `u8` (`Activation::Relu`: clamp at the zero
//! point; `Activation::None`: clamp to the full `0..=255` of the layer's
//! calibrated grid); the last layer's outputs are the raw `i32`
//! accumulators (clamped at 0 if it has a ReLU). Inference ping-pongs two
//! buffers of the widest layer taken from the caller ([`scratch_len`]), as
//! TFLM takes its arena.

pub mod encode;
pub mod export;
pub mod golden;
pub mod input;
pub mod kernels;
pub mod layout;
pub mod legacy;
mod model;
mod quantize;

pub use encode::{encode_raw, EncodeError, RawLayer};
pub use input::{InputKind, QInput};
pub use kernels::QKernels;
pub use layout::{QParams, LAYOUT_ID};
pub use model::{batch_acc_len, batch_acts_len, scratch_len, QBatchScratch, QLayer, QModel};
pub use quantize::{encoded_len, quantize, FloatLayer, InputAffine, PerFeature};

/// `.q8` magic.
pub const MAGIC: [u8; 4] = *b"TLQ8";
/// `.q8` format version (the header's).
pub const VERSION: u16 = crate::format::header::VERSION;

/// Observed range of an f32 tensor during calibration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ActRange {
    pub min: f32,
    pub max: f32,
}

impl ActRange {
    /// Nothing observed yet.
    pub const EMPTY: ActRange = ActRange { min: f32::INFINITY, max: f32::NEG_INFINITY };

    pub fn observe(&mut self, xs: &[f32]) {
        for &x in xs {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
    }

    /// `(scale, zero_point)` of the `u8` grid covering `[min(min,0), max(max,0)]`
    /// (zero is always exactly representable; after a ReLU, `zero_point = 0`).
    pub fn qparams(&self) -> (f32, i32) {
        let lo = if self.min < 0.0 { self.min } else { 0.0 };
        let hi = if self.max > 0.0 { self.max } else { 0.0 };
        if (hi - lo).is_nan() || hi - lo <= 1e-12 {
            return (1.0, 0);
        }
        let scale = (hi - lo) / 255.0;
        let zp = libm::roundf(-lo / scale) as i32;
        (scale, zp.clamp(0, 255))
    }
}

/// `(M0, shift)` with `real = M0 · 2^(shift − 31)` (TFLite `QuantizeMultiplier`).
pub fn quantize_multiplier(real: f64) -> (i32, i32) {
    if real <= 0.0 || !real.is_finite() {
        return (0, 0);
    }
    let (mant, mut exp) = libm::frexp(real);
    let mut q = libm::round(mant * (1u64 << 31) as f64) as i64;
    if q == 1i64 << 31 {
        q /= 2;
        exp += 1;
    }
    if exp < -31 {
        return (0, 0);
    }
    if exp > 30 {
        return (i32::MAX, 30);
    }
    (q as i32, exp)
}

/// gemmlowp `SaturatingRoundingDoublingHighMul`.
#[inline]
pub fn srdhm(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = a as i64 * b as i64;
    let nudge = if ab >= 0 { 1i64 << 30 } else { 1 - (1i64 << 30) };
    ((ab + nudge) / (1i64 << 31)) as i32
}

/// gemmlowp `RoundingDivideByPOT` (`0 ≤ exponent ≤ 31`).
#[inline]
pub fn rdbp(x: i32, exponent: i32) -> i32 {
    // 32-bit mask arithmetic (2^31 − 1 for exponent 31): no 64-bit shift
    // on 32-bit targets.
    let mask = (1u32 << exponent).wrapping_sub(1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + (x < 0) as i32;
    (x >> exponent) + (remainder > threshold) as i32
}

/// TFLite `MultiplyByQuantizedMultiplier` (left shift saturating): equal to
/// `rdbp(srdhm(x · 2^max(shift, 0), m0), max(−shift, 0))` for every input
/// (tested), with one 64-bit product and shift in place of SRDHM's
/// sign-dependent nudge and division.
#[inline]
pub fn mbqm(x: i32, m0: i32, shift: i32) -> i32 {
    let (x, right) = if shift > 0 { (x.saturating_mul(1 << shift), 0) } else { (x, -shift) };
    // SRDHM without its sign-dependent nudge: for a·b < 0, `(a·b + 1 −
    // 2^30) / 2^31` truncated toward zero is `(a·b + 2^30) >> 31` (floor),
    // as it is for a·b ≥ 0.
    let p = (x as i64 * m0 as i64 + (1 << 30)) >> 31;
    // Only i32::MIN · i32::MIN reaches 2^31, which SRDHM saturates.
    let high = if p > i32::MAX as i64 { i32::MAX } else { p as i32 };
    rdbp(high, right)
}

/// Index of the first maximum of the int32 logits (0 for an empty slice).
pub use crate::loss::argmax;

/// Word-aligned stack buffer (the DSP kernel loads activation pairs with `LDRD`).
#[repr(C, align(4))]
pub struct Aligned<T: ?Sized>(pub T);

/// Widens input bytes into an `i16` buffer.
#[inline]
pub fn widen(pixels: &[u8], x: &mut [i16]) {
    for (d, &p) in x.iter_mut().zip(pixels) {
        *d = p as i16;
    }
}

#[cfg(test)]
mod tests;
