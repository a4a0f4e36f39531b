//! Int8 post-training quantization and integer-only inference.
//!
//! # Number formats
//!
//! | tensor | type | scale | zero point |
//! |---|---|---|---|
//! | input (raw IDX pixels) | `u8` | `1/255` | 0 |
//! | hidden activations (after ReLU) | `u8` | per tensor, calibrated | per tensor (0 after a ReLU) |
//! | weights of hidden layers | `i8` in `[-127, 127]` | per output channel, symmetric | 0 |
//! | weights of the last layer | `i8` in `[-127, 127]` | **one per tensor** (see below) | 0 |
//! | biases | `i32` | `s_in · s_w[o]` | 0 |
//! | logits | `i32` accumulators (+ bias) | `s_in · s_w` | 0 |
//!
//! A real value `r` is represented by `q` as `r = s · (q − z)`.
//!
//! **Input normalization.** The f32 model may have been trained on
//! `x = (p/255 − mean)/std` (torchvision `ToTensor` + `Normalize`). That
//! affine is folded into layer 1 in f32 before quantizing
//! (`w' = w/std`, `b' = b − (mean/std)·Σ_k w[k]`), so the device always
//! takes the raw pixel bytes `p` with scale `1/255`.
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
//! # Memory
//!
//! [`QMlp`] is `repr(C)` of `i8`/`i32`/`f32` arrays and scalars, little-endian
//! on every supported target: all bit patterns are valid, so the firmware can
//! `transmute` the raw image written by [`QMlp::write_bin`] (see
//! [`export::write_rust_module`]). The seed model (784-512-512-10) is 685,296
//! bytes in memory. Inference uses two stack buffers of widened activations:
//! see [`Classifier::SCRATCH_BYTES`] (2,592 bytes for the seed model).
//!
//! # Shapes
//!
//! [`QMlp`] is the two-hidden-layer model of the tutorial; [`QMlp1`] is the
//! one-hidden-layer variant (e.g. 784-128-10). Both are built from [`QDense`]
//! and share kernels, format code and export.

pub mod export;
pub mod golden;
pub mod kernels;
mod wire;

pub use kernels::QKernels;

use crate::dense::Dense;
use crate::mlp::Mlp;
use crate::Zeroed;

/// `.q8` magic.
pub const MAGIC: [u8; 4] = *b"TLQ8";
/// `.q8` format version.
pub const VERSION: u16 = crate::format::header::VERSION;
/// Identifies the packed weight layout (see [`kernels`]) in the payload.
pub const LAYOUT_ID: u32 = 1;

/// Anything the device can serve.
pub trait Classifier {
    const IN: usize;
    const OUT: usize;
    /// Layer widths, input first, e.g. `[784, 512, 512, 10]`.
    fn dims(&self) -> &'static [u32];
    /// Integer-only inference on raw pixels; writes OUT int32 logits, returns argmax.
    fn classify(&self, pixels: &[u8], logits: &mut [i32]) -> usize;
    /// Bytes of activation scratch the inference uses (report it).
    const SCRATCH_BYTES: usize;
}

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

/// What quantization needs besides the weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Calibration {
    /// Training-time input normalization `x = (p/255 − mean)/std`, folded
    /// into layer 1 (`mean = 0, std = 1` for plain `ToTensor`).
    pub mean: f32,
    pub std: f32,
    /// Range of the f32 activations after layer 1's ReLU.
    pub h1: ActRange,
    /// Range after layer 2's ReLU (unused by [`QMlp1`]).
    pub h2: ActRange,
}

impl Calibration {
    pub const fn new(mean: f32, std: f32) -> Self {
        Calibration { mean, std, h1: ActRange::EMPTY, h2: ActRange::EMPTY }
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
    let mask = ((1i64 << exponent) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + (x < 0) as i32;
    (x >> exponent) + (remainder > threshold) as i32
}

/// TFLite `MultiplyByQuantizedMultiplier` (left shift saturating).
#[inline]
pub fn mbqm(x: i32, m0: i32, shift: i32) -> i32 {
    let left = if shift > 0 { shift } else { 0 };
    let right = if shift > 0 { 0 } else { -shift };
    rdbp(srdhm(x.saturating_mul(1 << left), m0), right)
}

/// Index of the first maximum of the int32 logits (0 for an empty slice).
pub use crate::loss::argmax;

/// Word-aligned stack buffer (the DSP kernel loads activation pairs with `LDRD`).
#[repr(C, align(4))]
pub struct Aligned<T>(pub T);

/// One quantized dense layer: `I` inputs, `O` outputs. Field order puts all
/// 4-byte fields first so that only the end can hold padding.
#[repr(C)]
#[derive(Clone, PartialEq)]
pub struct QDense<const I: usize, const O: usize> {
    /// Weight scale of each output row (f32, informational: not used by inference).
    pub w_scale: [f32; O],
    /// `round(b/(s_in·s_w)) − z_in·Σ_k w`.
    pub bias: [i32; O],
    /// `M0` of each row (Q31); unused (0) in the last layer.
    pub multiplier: [i32; O],
    /// TFLite exponent of each row: `> 0` left shift, `≤ 0` right shift.
    pub shift: [i32; O],
    pub in_scale: f32,
    pub in_zp: i32,
    /// Output scale and zero point (for the last layer: the logit scale, 0).
    pub out_scale: f32,
    pub out_zp: i32,
    /// Clamp of the requantized output (ReLU: `out_min = out_zp`).
    pub out_min: i32,
    pub out_max: i32,
    /// `O·I` weights in the packed layout of [`kernels`] (not row-major!).
    pub weight: [[i8; I]; O],
}

impl<const I: usize, const O: usize> core::fmt::Debug for QDense<I, O> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("QDense")
            .field("in", &I)
            .field("out", &O)
            .field("in_scale", &self.in_scale)
            .field("in_zp", &self.in_zp)
            .field("out_scale", &self.out_scale)
            .field("out_zp", &self.out_zp)
            .finish_non_exhaustive()
    }
}

/// Whether a layer is followed by requantization + ReLU or yields logits.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Role {
    Hidden { out_scale: f32, out_zp: i32 },
    Logits,
}

impl<const I: usize, const O: usize> QDense<I, O> {
    pub const ZERO: Self = QDense {
        w_scale: [0.0; O],
        bias: [0; O],
        multiplier: [0; O],
        shift: [0; O],
        in_scale: 0.0,
        in_zp: 0,
        out_scale: 0.0,
        out_zp: 0,
        out_min: 0,
        out_max: 0,
        weight: [[0; I]; O],
    };

    /// The packed weights as one slice.
    pub fn packed(&self) -> &[i8] {
        self.weight.as_flattened()
    }

    /// Weight `(row, k)` in PyTorch indexing.
    pub fn weight_at(&self, row: usize, k: usize) -> i8 {
        self.packed()[kernels::packed_index(row, k, O, I)]
    }

    /// Stores row-major `[O][I]` int8 weights in the packed layout.
    pub fn set_weights_row_major(&mut self, row_major: &[i8]) {
        kernels::pack(row_major, O, I, self.weight.as_flattened_mut());
    }

    /// `acc[o] = bias[o] + Σ x·w` (exact). `x` holds the u8 input values.
    pub fn accumulate(&self, kern: &QKernels, x: &[i16], acc: &mut [i32]) {
        kernels::gemv(kern, x, self.packed(), O, I, |o, a| acc[o] = a.wrapping_add(self.bias[o]));
    }

    /// Requantizes one accumulator (hidden layers).
    #[inline]
    pub fn requantize(&self, o: usize, acc: i32) -> i32 {
        (self.out_zp + mbqm(acc, self.multiplier[o], self.shift[o])).clamp(self.out_min, self.out_max)
    }

    /// Hidden layer: `y[o]` = requantized, clamped u8 value (stored widened).
    pub fn forward_hidden(&self, kern: &QKernels, x: &[i16], y: &mut [i16]) {
        kernels::gemv(kern, x, self.packed(), O, I, |o, a| {
            y[o] = self.requantize(o, a.wrapping_add(self.bias[o])) as i16
        });
    }

    /// [`Self::forward_hidden`] for four samples at once (host batching).
    pub fn forward_hidden4(&self, xs: [&[i16]; 4], ys: &mut [[i16; O]; 4]) {
        kernels::gemv4(xs, self.packed(), O, I, |b, o, a| {
            ys[b][o] = self.requantize(o, a.wrapping_add(self.bias[o])) as i16
        });
    }

    /// [`Self::accumulate`] for four samples at once.
    pub fn accumulate4(&self, xs: [&[i16]; 4], acc: &mut [[i32; O]; 4]) {
        kernels::gemv4(xs, self.packed(), O, I, |b, o, a| acc[b][o] = a.wrapping_add(self.bias[o]));
    }

    /// Quantizes from f32: `row(o, buf)` writes row `o`'s (folded) weights
    /// into `buf` and returns its bias.
    fn quantize_from(&mut self, row: impl Fn(usize, &mut [f32; I]) -> f32, in_scale: f32, in_zp: i32, role: Role) {
        let mut buf = [0.0f32; I];
        let absmax = |buf: &[f32; I]| buf.iter().fold(0.0f32, |m, &w| m.max(w.abs()));
        let per_tensor = match role {
            Role::Logits => {
                let mut m = 0.0f32;
                for o in 0..O {
                    row(o, &mut buf);
                    m = m.max(absmax(&buf));
                }
                Some(m)
            }
            Role::Hidden { .. } => None,
        };
        let (out_scale, out_zp) = match role {
            Role::Hidden { out_scale, out_zp } => (out_scale, out_zp),
            Role::Logits => (0.0, 0),
        };
        self.in_scale = in_scale;
        self.in_zp = in_zp;
        self.out_zp = out_zp;
        self.out_min = out_zp;
        self.out_max = 255;
        let mut qrow = [0i8; I];
        for o in 0..O {
            let b = row(o, &mut buf);
            let m = per_tensor.unwrap_or_else(|| absmax(&buf));
            let sw = if m > 0.0 { m / 127.0 } else { 1.0 };
            let mut sum = 0i64;
            for (q, &w) in qrow.iter_mut().zip(buf.iter()) {
                *q = libm::roundf(w / sw).clamp(-127.0, 127.0) as i8;
                sum += *q as i64;
            }
            for (k, &q) in qrow.iter().enumerate() {
                self.weight.as_flattened_mut()[kernels::packed_index(o, k, O, I)] = q;
            }
            let acc_scale = in_scale as f64 * sw as f64;
            let bq = libm::round(b as f64 / acc_scale) as i64 - in_zp as i64 * sum;
            self.w_scale[o] = sw;
            self.bias[o] = bq.clamp(i32::MIN as i64, i32::MAX as i64) as i32;
            let (m0, sh) = match role {
                Role::Hidden { out_scale, .. } => quantize_multiplier(acc_scale / out_scale as f64),
                Role::Logits => (0, 0),
            };
            self.multiplier[o] = m0;
            self.shift[o] = sh;
        }
        self.out_scale = match role {
            Role::Hidden { .. } => out_scale,
            Role::Logits => in_scale * per_tensor.map_or(1.0, |m| if m > 0.0 { m / 127.0 } else { 1.0 }),
        };
    }
}

/// Widens input bytes into an `i16` buffer.
#[inline]
pub fn widen(pixels: &[u8], x: &mut [i16]) {
    for (d, &p) in x.iter_mut().zip(pixels) {
        *d = p as i16;
    }
}

/// Folded layer-1 row: weights `w/std`, bias `b − (mean/std)·Σw`.
fn folded_row<const I: usize>(l: &Dense<'_>, c: &Calibration, o: usize, buf: &mut [f32; I]) -> f32 {
    let inv = 1.0 / c.std as f64;
    let mut sum = 0.0f64;
    for (d, &w) in buf.iter_mut().zip(l.weight[o * I..][..I].iter()) {
        *d = (w as f64 * inv) as f32;
        sum += w as f64;
    }
    (l.bias[o] as f64 - c.mean as f64 * inv * sum) as f32
}

/// The tutorial's int8 MLP: `Linear → ReLU → Linear → ReLU → Linear`.
#[repr(C)]
#[derive(Clone, PartialEq, Debug)]
pub struct QMlp<const IN: usize, const H1: usize, const H2: usize, const OUT: usize> {
    pub l1: QDense<IN, H1>,
    pub l2: QDense<H1, H2>,
    pub l3: QDense<H2, OUT>,
}

/// The seed model in int8.
pub type SeedQMlp = QMlp<784, 512, 512, 10>;

// SAFETY: repr(C) of i8/i32/f32 arrays and scalars: all-zero is valid.
unsafe impl<const IN: usize, const H1: usize, const H2: usize, const OUT: usize> Zeroed for QMlp<IN, H1, H2, OUT> {}

const fn round4(n: usize) -> usize {
    n.div_ceil(4) * 4
}
const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

impl<const IN: usize, const H1: usize, const H2: usize, const OUT: usize> QMlp<IN, H1, H2, OUT> {
    pub const ZERO: Self = QMlp { l1: QDense::ZERO, l2: QDense::ZERO, l3: QDense::ZERO };
    pub const DIMS: [u32; 4] = [IN as u32, H1 as u32, H2 as u32, OUT as u32];

    /// Quantizes `model` (f32, trained on inputs normalized by
    /// `calib.mean/std`) with the calibrated activation ranges.
    pub fn quantize<S: AsRef<[f32]>>(&mut self, model: &Mlp<S>, calib: &Calibration) {
        assert_eq!(model.spec().dims(), &Self::DIMS, "QMlp::quantize: model of another shape");
        let (l1, l2, l3) = (model.layer(0), model.layer(1), model.layer(2));
        let (s1, z1) = calib.h1.qparams();
        let (s2, z2) = calib.h2.qparams();
        self.l1.quantize_from(
            |o, b| folded_row(&l1, calib, o, b),
            1.0 / 255.0,
            0,
            Role::Hidden { out_scale: s1, out_zp: z1 },
        );
        self.l2.quantize_from(
            |o, b| {
                b.copy_from_slice(&l2.weight[o * H1..][..H1]);
                l2.bias[o]
            },
            s1,
            z1,
            Role::Hidden { out_scale: s2, out_zp: z2 },
        );
        self.l3.quantize_from(
            |o, b| {
                b.copy_from_slice(&l3.weight[o * H2..][..H2]);
                l3.bias[o]
            },
            s2,
            z2,
            Role::Logits,
        );
    }

    /// [`Classifier::classify`] with a chosen kernel.
    pub fn classify_with(&self, kern: &QKernels, pixels: &[u8], logits: &mut [i32]) -> usize {
        assert!(pixels.len() >= IN && logits.len() >= OUT, "need {IN} pixels and {OUT} logits");
        let mut h1 = Aligned([0i16; H1]);
        self.stage1(kern, pixels, &mut h1.0);
        self.stage23(kern, &h1.0, logits)
    }

    // The two stages are separate non-inlined frames so that layer 1's input
    // buffer and layer 2's output buffer reuse the same stack bytes: peak
    // scratch = H1 + max(IN, H2) widened activations.
    #[inline(never)]
    fn stage1(&self, kern: &QKernels, pixels: &[u8], h1: &mut [i16; H1]) {
        let mut x = Aligned([0i16; IN]);
        widen(pixels, &mut x.0);
        self.l1.forward_hidden(kern, &x.0, h1);
    }

    #[inline(never)]
    fn stage23(&self, kern: &QKernels, h1: &[i16; H1], logits: &mut [i32]) -> usize {
        let mut h2 = Aligned([0i16; H2]);
        self.l2.forward_hidden(kern, h1, &mut h2.0);
        self.l3.accumulate(kern, &h2.0, logits);
        argmax(&logits[..OUT])
    }

    /// Bytes of the in-memory (and `--format bin`) image.
    pub const BIN_BYTES: usize = core::mem::size_of::<Self>();

    /// Four images at once, bit-identical to four [`Classifier::classify`]
    /// calls (integer sums are exact in any order). For hosts: uses
    /// `4·2·(IN+H1+H2)` bytes of stack.
    pub fn classify4(&self, pixels: [&[u8]; 4], logits: &mut [[i32; OUT]; 4]) -> [usize; 4] {
        let mut x = [[0i16; IN]; 4];
        for (d, p) in x.iter_mut().zip(pixels) {
            widen(&p[..IN], d);
        }
        let mut h1 = [[0i16; H1]; 4];
        self.l1.forward_hidden4([&x[0], &x[1], &x[2], &x[3]], &mut h1);
        let mut h2 = [[0i16; H2]; 4];
        self.l2.forward_hidden4([&h1[0], &h1[1], &h1[2], &h1[3]], &mut h2);
        self.l3.accumulate4([&h2[0], &h2[1], &h2[2], &h2[3]], logits);
        core::array::from_fn(|b| argmax(&logits[b]))
    }
}

/// Samples per pass of [`QMlp::classify_batch`] (its stack scratch holds
/// this many samples' activations and accumulators: about 62 KB for the
/// seed model).
pub const QBATCH: usize = 12;

impl<const I: usize, const O: usize> QDense<I, O> {
    /// Whether the requantized outputs always fit a `u8` (`0 ≤ out_min ≤
    /// out_max ≤ 255`; true for every calibrated model), which the batched
    /// `u8` path needs.
    pub fn u8_outputs(&self) -> bool {
        0 <= self.out_min && self.out_min <= self.out_max && self.out_max <= 255
    }

    fn requant_params(&self) -> kernels::Requant {
        kernels::Requant { zp: self.out_zp, min: self.out_min, max: self.out_max }
    }
}

impl<const IN: usize, const H1: usize, const H2: usize, const OUT: usize> QMlp<IN, H1, H2, OUT> {
    /// Classifies `n` images stored back to back in `pixels` (`IN` bytes
    /// each), calling `emit(i, class, logits)` for each in order. Bit-identical
    /// to `n` calls of [`Classifier::classify`] with any kernel: the kernel's
    /// batched [`kernels::GemmFn`] processes up to [`QBATCH`] images per
    /// weight pass on `u8` activations. Models whose hidden outputs could
    /// leave `0..=255` (not produced by [`QMlp::quantize`]) take the
    /// per-image path. For hosts: uses about 62 KB of stack (seed model).
    pub fn classify_batch(
        &self,
        kern: &QKernels,
        pixels: &[u8],
        n: usize,
        mut emit: impl FnMut(usize, usize, &[i32; OUT]),
    ) {
        assert!(pixels.len() >= n * IN, "need {n}·{IN} pixels");
        if !(self.l1.u8_outputs() && self.l2.u8_outputs()) {
            let mut logits = [0i32; OUT];
            for i in 0..n {
                let c = self.classify_with(kern, &pixels[i * IN..][..IN], &mut logits);
                emit(i, c, &logits);
            }
            return;
        }
        // One image (latency): scratch for one, not QBATCH, to zero.
        if n == 1 {
            self.batch_passes::<1>(kern, pixels, n, emit)
        } else {
            self.batch_passes::<QBATCH>(kern, pixels, n, emit)
        }
    }

    fn batch_passes<const B: usize>(
        &self,
        kern: &QKernels,
        pixels: &[u8],
        n: usize,
        mut emit: impl FnMut(usize, usize, &[i32; OUT]),
    ) {
        let mut acc1 = [[0i32; H1]; B];
        let mut h1 = [[0u8; H1]; B];
        let mut acc2 = [[0i32; H2]; B];
        let mut h2 = [[0u8; H2]; B];
        let mut logits = [[0i32; OUT]; B];
        let (q1, q2) = (self.l1.requant_params(), self.l2.requant_params());
        let mut start = 0;
        while start < n {
            let m = B.min(n - start);
            (kern.gemm)(&pixels[start * IN..], IN, m, self.l1.packed(), H1, IN, acc1.as_flattened_mut());
            for (a, h) in acc1[..m].iter().zip(h1[..m].iter_mut()) {
                (kern.requant)(a, &self.l1.bias, &self.l1.multiplier, &self.l1.shift, q1, h);
            }
            (kern.gemm)(h1.as_flattened(), H1, m, self.l2.packed(), H2, H1, acc2.as_flattened_mut());
            for (a, h) in acc2[..m].iter().zip(h2[..m].iter_mut()) {
                (kern.requant)(a, &self.l2.bias, &self.l2.multiplier, &self.l2.shift, q2, h);
            }
            (kern.gemm)(h2.as_flattened(), H2, m, self.l3.packed(), OUT, H2, logits.as_flattened_mut());
            for (i, l) in logits[..m].iter_mut().enumerate() {
                for (v, &b) in l.iter_mut().zip(&self.l3.bias) {
                    *v = v.wrapping_add(b);
                }
                emit(start + i, argmax(l), l);
            }
            start += m;
        }
    }
}

impl<const IN: usize, const H1: usize, const H2: usize, const OUT: usize> Classifier for QMlp<IN, H1, H2, OUT> {
    const IN: usize = IN;
    const OUT: usize = OUT;
    const SCRATCH_BYTES: usize = round4(2 * H1) + max(round4(2 * IN), round4(2 * H2));

    fn dims(&self) -> &'static [u32] {
        &Self::DIMS
    }

    fn classify(&self, pixels: &[u8], logits: &mut [i32]) -> usize {
        self.classify_with(&QKernels::BEST, pixels, logits)
    }
}

/// One hidden layer: `Linear → ReLU → Linear` (e.g. 784-128-10).
#[repr(C)]
#[derive(Clone, PartialEq, Debug)]
pub struct QMlp1<const IN: usize, const H: usize, const OUT: usize> {
    pub l1: QDense<IN, H>,
    pub l2: QDense<H, OUT>,
}

// SAFETY: as for QMlp.
unsafe impl<const IN: usize, const H: usize, const OUT: usize> Zeroed for QMlp1<IN, H, OUT> {}

impl<const IN: usize, const H: usize, const OUT: usize> QMlp1<IN, H, OUT> {
    pub const ZERO: Self = QMlp1 { l1: QDense::ZERO, l2: QDense::ZERO };
    pub const DIMS: [u32; 3] = [IN as u32, H as u32, OUT as u32];
    pub const BIN_BYTES: usize = core::mem::size_of::<Self>();

    /// Quantizes the two f32 layers (`calib.h1` is the hidden range).
    pub fn quantize(&mut self, l1: &Dense<'_>, l2: &Dense<'_>, calib: &Calibration) {
        let (s1, z1) = calib.h1.qparams();
        self.l1.quantize_from(
            |o, b| folded_row(l1, calib, o, b),
            1.0 / 255.0,
            0,
            Role::Hidden { out_scale: s1, out_zp: z1 },
        );
        self.l2.quantize_from(
            |o, b| {
                b.copy_from_slice(&l2.weight[o * H..][..H]);
                l2.bias[o]
            },
            s1,
            z1,
            Role::Logits,
        );
    }

    pub fn classify_with(&self, kern: &QKernels, pixels: &[u8], logits: &mut [i32]) -> usize {
        assert!(pixels.len() >= IN && logits.len() >= OUT, "need {IN} pixels and {OUT} logits");
        let mut h = Aligned([0i16; H]);
        {
            let mut x = Aligned([0i16; IN]);
            widen(pixels, &mut x.0);
            self.l1.forward_hidden(kern, &x.0, &mut h.0);
        }
        self.l2.accumulate(kern, &h.0, logits);
        argmax(&logits[..OUT])
    }
}

impl<const IN: usize, const H: usize, const OUT: usize> Classifier for QMlp1<IN, H, OUT> {
    const IN: usize = IN;
    const OUT: usize = OUT;
    const SCRATCH_BYTES: usize = round4(2 * IN) + round4(2 * H);

    fn dims(&self) -> &'static [u32] {
        &Self::DIMS
    }

    fn classify(&self, pixels: &[u8], logits: &mut [i32]) -> usize {
        self.classify_with(&QKernels::BEST, pixels, logits)
    }
}

#[cfg(test)]
mod tests;
