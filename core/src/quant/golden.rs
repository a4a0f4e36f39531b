//! A tiny fixed int8 model with hand-chosen integers and its expected
//! intermediate values, for host tests and on-target tests alike.
//!
//! Shape 10-5-3-2 exercises every path of the packed layout: a full 4-row
//! block plus a 1-row tail (layer 1), tail-only blocks (layers 2, 3), inputs
//! with `k % 4 = 2, 1, 3` leftovers, positive and negative shifts, a
//! non-zero output zero point, and the ReLU clamp. The expected values were
//! computed independently (Python, arbitrary-precision integers, TFLite's
//! reference formulas), not by this crate.

use super::{QDense, QMlp};

pub type Golden = QMlp<10, 5, 3, 2>;

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

fn layer<const I: usize, const O: usize>(
    l: &mut QDense<I, O>,
    w: &[[i8; I]; O],
    b: [i32; O],
    m: [i32; O],
    s: [i32; O],
    in_zp: i32,
    out_zp: i32,
) {
    l.set_weights_row_major(w.as_flattened());
    l.bias = b;
    l.multiplier = m;
    l.shift = s;
    l.in_zp = in_zp;
    l.out_zp = out_zp;
    l.out_min = out_zp;
    l.out_max = 255;
    l.in_scale = 1.0;
    l.out_scale = 1.0;
    l.w_scale = [1.0; O];
}

/// The golden model (about 100 bytes: fine on any stack).
pub fn model() -> Golden {
    let mut m = Golden::ZERO;
    layer(&mut m.l1, &W1, B1, M1, S1, 0, Z1);
    layer(&mut m.l2, &W2, B2, M2, S2, Z1, 0);
    layer(&mut m.l3, &W3, B3, [0; 2], [0; 2], 0, 0);
    m
}
