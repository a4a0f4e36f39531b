//! The `.q8` input section: how a host turns raw features into the bytes
//! the device takes. The firmware never reads it; it is in the file so that
//! a model carries its own preprocessing.

/// Code of the input section's `kind` word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum InputKind {
    /// The inputs already are `u8` values (image pixels): sent as they are.
    RawU8 = 0,
    /// `f32` features, each quantized as `clamp(round((r − lo) / step), 0, 255)`.
    AffineU8 = 1,
}

impl InputKind {
    pub const fn from_code(code: u32) -> Option<InputKind> {
        match code {
            0 => Some(InputKind::RawU8),
            1 => Some(InputKind::AffineU8),
            _ => None,
        }
    }
}

/// The input section, read in place or about to be written.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum QInput<'a> {
    RawU8,
    /// One `lo` and one `step` per feature.
    AffineU8 {
        lo: &'a [f32],
        step: &'a [f32],
    },
}

impl QInput<'_> {
    pub const fn kind(&self) -> InputKind {
        match self {
            QInput::RawU8 => InputKind::RawU8,
            QInput::AffineU8 { .. } => InputKind::AffineU8,
        }
    }

    /// The device's input bytes for `features` (kind 1). Kind 0 copies
    /// bytes and has no use for this: it takes `features` as values in
    /// `0..=255` so that callers need not care.
    pub fn quantize_features(&self, features: &[f32], out: &mut [u8]) {
        match self {
            QInput::RawU8 => {
                for (o, &r) in out.iter_mut().zip(features) {
                    *o = libm::roundf(r).clamp(0.0, 255.0) as u8;
                }
            }
            QInput::AffineU8 { lo, step } => {
                for (((o, &r), &lo), &step) in out.iter_mut().zip(features).zip(lo.iter()).zip(step.iter()) {
                    *o = libm::roundf((r - lo) / step).clamp(0.0, 255.0) as u8;
                }
            }
        }
    }
}
