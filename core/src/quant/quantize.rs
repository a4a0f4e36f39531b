//! f32 layers → `.q8` bytes: per-channel weight scales (one per tensor in
//! the last layer), calibrated activation grids, the input normalization
//! folded into the first layer. See [`super`] for the number formats.

use super::encode::{self, check_len, EncodeError};
use super::input::{InputKind, QInput};
use super::layout::{self, QParams};
use super::{quantize_multiplier, ActRange};
use crate::spec::{Activation, Layer, Spec, SpecError, MAX_LAYERS};

/// One f32 dense layer, as PyTorch stores a `Linear`.
#[derive(Clone, Copy, Debug)]
pub struct FloatLayer<'a> {
    pub inputs: usize,
    pub outputs: usize,
    pub activation: Activation,
    /// `[outputs][inputs]` row-major.
    pub weight: &'a [f32],
    pub bias: &'a [f32],
}

/// One value for every feature, or one per feature.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PerFeature<'a> {
    All(f32),
    Each(&'a [f32]),
}

impl PerFeature<'_> {
    fn at(&self, k: usize) -> f32 {
        match self {
            PerFeature::All(v) => *v,
            PerFeature::Each(v) => v[k],
        }
    }

    fn check(&self, field: &'static str, features: usize) -> Result<(), EncodeError> {
        match self {
            PerFeature::Each(v) if v.len() != features => Err(EncodeError::Input { field, features, found: v.len() }),
            _ => Ok(()),
        }
    }
}

/// How the f32 model's first-layer input `x` relates to the device's input
/// bytes `q`: `x_k = (in_scale·gain_k·q_k − offset_k) / std_k`, plus the
/// input section to store.
///
/// * Images trained on `(p/255 − mean)/std`: [`InputAffine::pixels`].
/// * f32 features `r` trained on `(r − mean_k)/std_k` and sent as
///   `q = clamp(round((r − lo_k)/step_k), 0, 255)`: `in_scale = 1`,
///   `gain = Each(step)`, `offset = Each(mean − lo)`, `std = Each(std)`,
///   `section = QInput::AffineU8 { lo, step }`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InputAffine<'a> {
    /// The scale of the device's input bytes (layer 1's `in_scale`).
    pub in_scale: f32,
    pub gain: PerFeature<'a>,
    pub offset: PerFeature<'a>,
    pub std: PerFeature<'a>,
    pub section: QInput<'a>,
}

impl InputAffine<'static> {
    /// Raw pixels `p` of a model trained on `(p/255 − mean)/std`
    /// (`mean = 0, std = 1` for plain `ToTensor`).
    pub const fn pixels(mean: f32, std: f32) -> Self {
        InputAffine {
            in_scale: 1.0 / 255.0,
            gain: PerFeature::All(1.0),
            offset: PerFeature::All(mean),
            std: PerFeature::All(std),
            section: QInput::RawU8,
        }
    }
}

/// Bytes of the `.q8` for `spec` with an input section of `kind`.
pub const fn encoded_len(spec: &Spec, kind: InputKind) -> usize {
    layout::encoded_len(spec, kind)
}

/// Where layer 0's folded weights and bias come from.
struct Fold<'a> {
    input: &'a InputAffine<'a>,
    uniform_offset: bool,
}

impl Fold<'_> {
    /// `1/std_k` scaled by the gain (exactly `1/std` when the gain is 1).
    fn inv(&self, k: usize) -> f64 {
        self.input.gain.at(k) as f64 * (1.0 / self.input.std.at(k) as f64)
    }

    fn weight(&self, l: &FloatLayer<'_>, o: usize, k: usize) -> f32 {
        (l.weight[o * l.inputs + k] as f64 * self.inv(k)) as f32
    }

    /// `b − Σ_k w_k·offset_k/std_k`; with one offset and std for all
    /// features, `b − (offset/std)·Σw` in that order (as tailor always
    /// computed it, so models quantize to the same bits).
    fn bias(&self, l: &FloatLayer<'_>, o: usize) -> f32 {
        let row = &l.weight[o * l.inputs..][..l.inputs];
        let b = l.bias[o] as f64;
        if self.uniform_offset {
            let inv = 1.0 / self.input.std.at(0) as f64;
            let sum = row.iter().fold(0.0f64, |s, &w| s + w as f64);
            (b - self.input.offset.at(0) as f64 * inv * sum) as f32
        } else {
            let t = row.iter().enumerate().fold(0.0f64, |s, (k, &w)| {
                s + w as f64 * (self.input.offset.at(k) as f64 * (1.0 / self.input.std.at(k) as f64))
            });
            (b - t) as f32
        }
    }
}

/// Quantizes `layers` into `out` (at least [`encoded_len`] bytes); returns
/// the length written. `ranges[i]` is the calibrated f32 range of hidden
/// layer `i`'s output (after its activation). A hidden layer without a
/// ReLU is requantized onto the `u8` grid of its range (which then has a
/// non-zero zero point), clamped to `0..=255`; a last layer with a ReLU
/// gives its logits clamped at 0.
pub fn quantize(
    layers: &[FloatLayer<'_>],
    input: &InputAffine<'_>,
    ranges: &[ActRange],
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    if layers.is_empty() || layers.len() > MAX_LAYERS {
        return Err(EncodeError::Spec(SpecError::Depth { layers: layers.len() }));
    }
    let mut table = [Layer { inputs: 0, outputs: 0, activation: Activation::None }; MAX_LAYERS];
    for (t, l) in table.iter_mut().zip(layers) {
        *t = Layer { inputs: l.inputs, outputs: l.outputs, activation: l.activation };
    }
    let spec = Spec::from_layers(&table[..layers.len()]).map_err(EncodeError::Spec)?;
    for (i, l) in layers.iter().enumerate() {
        check_len(i, "weight", l.inputs * l.outputs, l.weight.len())?;
        check_len(i, "bias", l.outputs, l.bias.len())?;
    }
    if ranges.len() != layers.len() - 1 {
        return Err(EncodeError::Ranges { expected: layers.len() - 1, found: ranges.len() });
    }
    let f = spec.inputs();
    input.gain.check("gain", f)?;
    input.offset.check("offset", f)?;
    input.std.check("std", f)?;
    let fold =
        Fold { input, uniform_offset: matches!((input.offset, input.std), (PerFeature::All(_), PerFeature::All(_))) };
    encode::write(&spec, &input.section, out, |i, w| {
        let l = &layers[i];
        let (in_scale, in_zp) = if i == 0 { (input.in_scale, 0) } else { ranges[i - 1].qparams() };
        let hidden = (i + 1 < layers.len()).then(|| ranges[i].qparams());
        let wt = |o: usize, k: usize| if i == 0 { fold.weight(l, o, k) } else { l.weight[o * l.inputs + k] };
        let bias = |o: usize| if i == 0 { fold.bias(l, o) } else { l.bias[o] };
        let absmax = |o: usize| (0..l.inputs).fold(0.0f32, |m, k| m.max(wt(o, k).abs()));
        // The last layer's raw accumulators are compared across rows by
        // the argmax, so they share one scale.
        let per_tensor = hidden.is_none().then(|| (0..l.outputs).fold(0.0f32, |m, o| m.max(absmax(o))));
        let scale_of = |m: f32| if m > 0.0 { m / 127.0 } else { 1.0 };
        let (out_scale, out_zp) = hidden.unwrap_or((0.0, 0));
        let out_min = if hidden.is_some() && l.activation == Activation::None { 0 } else { out_zp };
        let logit_scale = per_tensor.map(|m| in_scale * scale_of(m));
        w.params(&QParams {
            in_scale,
            in_zp,
            out_scale: logit_scale.unwrap_or(out_scale),
            out_zp,
            out_min,
            out_max: 255,
        });
        for o in 0..l.outputs {
            let sw = scale_of(per_tensor.unwrap_or_else(|| absmax(o)));
            let mut sum = 0i64;
            for k in 0..l.inputs {
                let q = libm::roundf(wt(o, k) / sw).clamp(-127.0, 127.0) as i8;
                sum += q as i64;
                w.weight(o, k, q);
            }
            let acc_scale = in_scale as f64 * sw as f64;
            let bq = libm::round(bias(o) as f64 / acc_scale) as i64 - in_zp as i64 * sum;
            let (m0, sh) = match hidden {
                Some((s, _)) => quantize_multiplier(acc_scale / s as f64),
                None => (0, 0),
            };
            w.row(o, sw, bq.clamp(i32::MIN as i64, i32::MAX as i64) as i32, m0, sh);
        }
    })
}
