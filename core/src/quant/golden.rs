//! A tiny fixed int8 model with hand-chosen integers and its expected
//! intermediate values, for host tests and on-target tests alike.
//!
//! Shape 10-5-3-2 exercises every path of the packed layout: a full 4-row
//! block plus a 1-row tail (layer 1), tail-only blocks (layers 2, 3), inputs
//! with `k % 4 = 2, 1, 3` leftovers, positive and negative shifts, a
//! non-zero output zero point, and the ReLU clamp. The expected values were
//! computed independently (Python, arbitrary-precision integers, TFLite's
//! reference formulas), not by this crate.

use super::encode::{encode_raw, RawLayer};
use super::input::{InputKind, QInput};
use super::layout::QParams;
use super::Aligned;
use crate::spec::{Activation, Layer, Spec};

pub const SPEC: Spec = Spec::mlp(&[10, 5, 3, 2]);
/// Bytes of the golden `.q8`.
pub const BYTES: usize = super::layout::encoded_len(&SPEC, InputKind::RawU8);

pub const INPUT: [u8; 10] = [0, 17, 255, 128, 64, 3, 200, 99, 250, 1];

/// Row-major (PyTorch) weights.
pub const W1: [[i8; 10]; 5] = [
    [1, -2, 3, -4, 5, -6, 7, -8, 9, -10],
    [127, 0, -127, 64, -64, 32, -32, 16, -16, 8],
    [-1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
    [10, 20, 30, 40, 50, -50, -40, -30, -20, -10],
    [0, 0, 100, 0, 0, 0, -100, 0, 0, 50],
];
pub const B1: [i32; 5] = [100, -2000, 500, 0, 1234];
pub const M1: [i32; 5] = [1 << 30, 1_518_500_250, 1 << 30, 1_789_569_707, 1_288_490_189];
pub const S1: [i32; 5] = [-6, -7, 1, -8, -5];
pub const Z1: i32 = 3;
pub const W2: [[i8; 5]; 3] = [[5, -3, 2, 7, -1], [-20, 15, 0, 9, 4], [100, 50, -25, -12, 6]];
pub const B2: [i32; 3] = [-40, 300, -1000];
pub const M2: [i32; 3] = [1 << 30, 1_431_655_765, i32::MAX];
pub const S2: [i32; 3] = [-2, -3, -9];
pub const W3: [[i8; 3]; 2] = [[3, -5, 7], [-9, 11, 2]];
pub const B3: [i32; 2] = [10, -20];

/// Layer 1 accumulators including bias.
pub const EXPECTED_ACC1: [i32; 5] = [3469, -39001, -517, 180, 6784];
/// Layer 1 outputs (u8 values, zero point 3 = ReLU floor).
pub const EXPECTED_ACT1: [u8; 5] = [30, 3, 3, 4, 130];
pub const EXPECTED_ACC2: [i32; 3] = [5, 301, 2807];
pub const EXPECTED_ACT2: [u8; 3] = [1, 25, 5];
pub const EXPECTED_LOGITS: [i32; 2] = [-77, 256];
pub const EXPECTED_CLASS: usize = 1;

fn params(in_zp: i32, out_zp: i32) -> QParams {
    QParams { in_scale: 1.0, in_zp, out_scale: 1.0, out_zp, out_min: out_zp, out_max: 255 }
}

/// The golden model's `.q8` bytes (about 200: fine on any stack), aligned
/// for [`super::QModel::parse`].
pub fn blob() -> Aligned<[u8; BYTES]> {
    let layer = |i, o, act| Layer { inputs: i, outputs: o, activation: act };
    let layers = [
        RawLayer {
            layer: layer(10, 5, Activation::Relu),
            params: params(0, Z1),
            w_scale: &[1.0; 5],
            bias: &B1,
            multiplier: &M1,
            shift: &S1,
            weight: W1.as_flattened(),
        },
        RawLayer {
            layer: layer(5, 3, Activation::Relu),
            params: params(Z1, 0),
            w_scale: &[1.0; 3],
            bias: &B2,
            multiplier: &M2,
            shift: &S2,
            weight: W2.as_flattened(),
        },
        RawLayer {
            layer: layer(3, 2, Activation::None),
            params: params(0, 0),
            w_scale: &[1.0; 2],
            bias: &B3,
            multiplier: &[0; 2],
            shift: &[0; 2],
            weight: W3.as_flattened(),
        },
    ];
    let mut out = Aligned([0u8; BYTES]);
    let n = encode_raw(&layers, &QInput::RawU8, &mut out.0).expect("golden model encodes");
    debug_assert_eq!(n, BYTES);
    out
}
