//! Writing `.q8` version-2 bytes: the header, the layers (from integers
//! given directly, or from [`super::quantize`]) and the input section.

use core::fmt;

use super::input::QInput;
use super::layout::{self, LayerMut, QParams, LAYOUT_ID};
use super::MAGIC;
use crate::format::Header;
use crate::spec::{Layer, Spec, SpecError};

/// Why a model cannot be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    Spec(SpecError),
    /// `field` of layer `layer` has the wrong number of elements.
    Length {
        layer: usize,
        field: &'static str,
        expected: usize,
        found: usize,
    },
    /// `ranges` must have one entry per hidden layer.
    Ranges {
        expected: usize,
        found: usize,
    },
    /// An input-section or input-affine slice has neither 1 nor `features` entries.
    Input {
        field: &'static str,
        features: usize,
        found: usize,
    },
    /// `out` is shorter than [`layout::encoded_len`].
    Buffer {
        needed: usize,
        found: usize,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::Spec(e) => write!(f, "{e}"),
            EncodeError::Length { layer, field, expected, found } => {
                write!(f, "layer {layer}: {field} has {found} elements, expected {expected}")
            }
            EncodeError::Ranges { expected, found } => {
                write!(f, "{found} activation ranges for {expected} hidden layers")
            }
            EncodeError::Input { field, features, found } => {
                write!(f, "input {field} has {found} entries, expected {features} (or 1 for all)")
            }
            EncodeError::Buffer { needed, found } => write!(f, "output buffer of {found} bytes, need {needed}"),
        }
    }
}

pub(crate) fn check_len(layer: usize, field: &'static str, expected: usize, found: usize) -> Result<(), EncodeError> {
    if expected == found {
        Ok(())
    } else {
        Err(EncodeError::Length { layer, field, expected, found })
    }
}

/// Checks the input section against `features`.
fn check_input(input: &QInput<'_>, features: usize) -> Result<(), EncodeError> {
    if let QInput::AffineU8 { lo, step } = input {
        for (field, s) in [("lo", lo), ("step", step)] {
            if s.len() != features {
                return Err(EncodeError::Input { field, features, found: s.len() });
            }
        }
    }
    Ok(())
}

/// Lays out a file for `spec` in `out`: calls `layer(i, writer)` for every
/// layer, writes the input section and the header; returns the length.
pub(crate) fn write(
    spec: &Spec,
    input: &QInput<'_>,
    out: &mut [u8],
    mut layer: impl FnMut(usize, &mut LayerMut<'_>),
) -> Result<usize, EncodeError> {
    check_input(input, spec.inputs())?;
    let total = layout::encoded_len(spec, input.kind());
    if out.len() < total {
        return Err(EncodeError::Buffer { needed: total, found: out.len() });
    }
    let hl = Header::len_for(spec.depth());
    let payload = &mut out[hl..total];
    let first = layout::layer_offset(spec, 0);
    payload[..first].fill(0);
    payload[..4].copy_from_slice(&LAYOUT_ID.to_le_bytes());
    for (i, l) in spec.layers().enumerate() {
        let (a, b) = (layout::layer_offset(spec, i), layout::layer_offset(spec, i + 1));
        let mut w = LayerMut { buf: &mut payload[a..b], inputs: l.inputs, outputs: l.outputs };
        w.zero_padding();
        layer(i, &mut w);
    }
    let mut at = layout::layer_offset(spec, spec.depth());
    payload[at..at + 4].copy_from_slice(&(input.kind() as u32).to_le_bytes());
    at += 4;
    if let QInput::AffineU8 { lo, step } = input {
        for &v in lo.iter().chain(step.iter()) {
            payload[at..at + 4].copy_from_slice(&v.to_le_bytes());
            at += 4;
        }
    }
    let h = Header::new(MAGIC, *spec, payload);
    h.encode(out);
    Ok(total)
}

/// A layer given as integers (tests, golden models, hand-made models).
#[derive(Clone, Copy, Debug)]
pub struct RawLayer<'a> {
    pub layer: Layer,
    pub params: QParams,
    pub w_scale: &'a [f32],
    pub bias: &'a [i32],
    pub multiplier: &'a [i32],
    pub shift: &'a [i32],
    /// `[outputs][inputs]` row-major (PyTorch layout); packed on writing.
    pub weight: &'a [i8],
}

/// Writes a `.q8` of `layers` into `out`; returns its length
/// ([`layout::encoded_len`]).
pub fn encode_raw(layers: &[RawLayer<'_>], input: &QInput<'_>, out: &mut [u8]) -> Result<usize, EncodeError> {
    let mut table =
        [Layer { inputs: 0, outputs: 0, activation: crate::spec::Activation::None }; crate::spec::MAX_LAYERS];
    if layers.is_empty() || layers.len() > table.len() {
        return Err(EncodeError::Spec(SpecError::Depth { layers: layers.len() }));
    }
    for (t, l) in table.iter_mut().zip(layers) {
        *t = l.layer;
    }
    let spec = Spec::from_layers(&table[..layers.len()]).map_err(EncodeError::Spec)?;
    for (i, l) in layers.iter().enumerate() {
        let o = l.layer.outputs;
        check_len(i, "w_scale", o, l.w_scale.len())?;
        check_len(i, "bias", o, l.bias.len())?;
        check_len(i, "multiplier", o, l.multiplier.len())?;
        check_len(i, "shift", o, l.shift.len())?;
        check_len(i, "weight", o * l.layer.inputs, l.weight.len())?;
    }
    write(&spec, input, out, |i, w| {
        let l = &layers[i];
        w.params(&l.params);
        for o in 0..w.outputs {
            w.row(o, l.w_scale[o], l.bias[o], l.multiplier[o], l.shift[o]);
            for k in 0..w.inputs {
                w.weight(o, k, l.weight[o * w.inputs + k]);
            }
        }
    })
}
