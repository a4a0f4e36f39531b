//! Fixed optimizer steps and a fixed training run with their expected bit
//! patterns, for host tests and on-target tests alike: both assert the same
//! constants, so the device's arithmetic is pinned to the host's.
//!
//! The expected values were produced by this crate on the host (the unit
//! test below prints them when they do not match) and must only change
//! with a deliberate change of the arithmetic.

use crate::gemm::Kernels;
use crate::optim::{Adam, Optimizer, Sgd};
use crate::session::{InputMap, SessionBuffers, SessionError, SessionSetup, TrainSession};
use crate::spec::Spec;

/// The optimizers pinned: plain SGD, SGD with momentum (and weight decay),
/// Adam.
pub const OPTIMIZERS: [(&str, Optimizer); 3] = [
    ("sgd", Optimizer::Sgd(Sgd { lr: 0.1, momentum: 0.0, dampening: 0.0, weight_decay: 0.0, nesterov: false })),
    ("momentum", Optimizer::Sgd(Sgd { lr: 0.1, momentum: 0.9, dampening: 0.0, weight_decay: 0.01, nesterov: false })),
    (
        "adam",
        Optimizer::Adam(Adam { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: false }),
    ),
];

/// Steps of each run.
pub const STEPS: usize = 3;

// ------------------------------------------------------------ optimizer steps

/// Parameters before the first [`Optimizer::step`].
pub const PARAMS0: [f32; 8] = [0.5, -0.25, 1.0, -1.5, 0.0, 0.125, 3.0, -0.0625];

/// The gradient of each step (different signs and magnitudes, one zero).
pub const GRADS: [[f32; 8]; STEPS] = [
    [0.1, -0.2, 0.3, 0.0, 1e-3, -5.0, 0.25, 0.7],
    [-0.4, 0.1, 0.3, 0.05, -1e-3, 2.0, 0.25, -0.7],
    [0.2, 0.2, -0.6, 0.5, 1e-4, -0.5, 0.0, 0.3],
];

/// [`STEPS`] optimizer steps of `opt` (its own learning rate) from
/// [`PARAMS0`] with [`GRADS`]: the parameters after them.
pub fn optimizer_steps(opt: &Optimizer) -> [f32; 8] {
    let mut p = PARAMS0;
    let (mut a, mut b) = ([0f32; 8], [0f32; 8]);
    for (t, g) in GRADS.iter().enumerate() {
        let mut bufs: [&mut [f32]; 2] = [&mut a, &mut b];
        let n = opt.buffers();
        opt.step(opt.lr(), t as u64 + 1, &mut p, g, &mut bufs[..n]);
    }
    p
}

/// Bits of [`optimizer_steps`] for each of [`OPTIMIZERS`].
pub const EXPECTED_STEPS: [[u32; 8]; 3] = [
    [0x3f028f5d, 0xbe851eb9, 0x3f800000, 0xbfc70a3d, 0xb727c5ac, 0x3ef33334, 0x403ccccc, 0xbdbd70a3],
    [0x3f06ae2f, 0xbe6f115e, 0x3f6a8e9f, 0xbfc68a06, 0xb8be40fc, 0x3f92e48e, 0x40378e33, 0xbe1838af],
    [0x3efe4f0a, 0xbe75d33b, 0x3f7b12dc, 0xbfc1d6e0, 0xbc1bf43e, 0x3e111bb6, 0x403e39ac, 0xbd9666d4],
];

// ------------------------------------------------------------ a training run

/// A 4-3-2 model (23 parameters) learning from bytes normalized by
/// `(b/255 − 0.25)/0.5`.
pub const SPEC: Spec = Spec::mlp(&[4, 3, 2]);
pub const PARAMS: usize = SPEC.params();
pub const SEED: u64 = 7;
pub const INPUT: InputMap = InputMap::Pixels { mean: 0.25, std: 0.5 };
/// Three samples: labels and bytes.
pub const LABELS: [u8; 3] = [1, 0, 1];
pub const PIXELS: [u8; 12] = [0, 17, 255, 128, 64, 3, 200, 99, 250, 1, 30, 7];

/// Buffers of one run (Adam's two state buffers at most).
pub struct RunBuffers {
    pub params: [f32; PARAMS],
    pub state: [f32; 2 * PARAMS],
    pub scratch: [f32; SPEC.train_scratch(1)],
    pub workspace: [f32; SPEC.activations(LABELS.len())],
}

impl RunBuffers {
    pub const fn new() -> Self {
        RunBuffers {
            params: [0.0; PARAMS],
            state: [0.0; 2 * PARAMS],
            scratch: [0.0; SPEC.train_scratch(1)],
            workspace: [0.0; SPEC.activations(LABELS.len())],
        }
    }
}

impl Default for RunBuffers {
    fn default() -> Self {
        Self::new()
    }
}

/// [`STEPS`] training steps of a fresh [`SPEC`] model (seed [`SEED`]) on
/// the three samples with `opt` and kernels `k`, in a [`TrainSession`]:
/// every batch's loss, and the parameters (left in `bufs.params`).
pub fn training_run(k: &Kernels, opt: &Optimizer, bufs: &mut RunBuffers) -> Result<[f32; STEPS], SessionError> {
    let setup = SessionSetup { spec: SPEC, optimizer: *opt, seed: SEED, input: INPUT };
    let RunBuffers { params, state, scratch, workspace } = bufs;
    let mut s = TrainSession::new(&setup, SessionBuffers { params, state, scratch, workspace })?;
    let mut losses = [0f32; STEPS];
    for l in losses.iter_mut() {
        *l = s.train_batch(k, opt.lr(), &LABELS, &PIXELS)?;
    }
    Ok(losses)
}

/// Bits of [`training_run`]'s losses for each of [`OPTIMIZERS`].
pub const EXPECTED_LOSSES: [[u32; STEPS]; 3] =
    [[0x3f2ddc03, 0x3f2c53be, 0x3f2af76f], [0x3f2ddc03, 0x3f2c542b, 0x3f29c105], [0x3f2ddc03, 0x3f2bd7e0, 0x3f29f054]];

/// Bits of [`training_run`]'s final parameters for each of [`OPTIMIZERS`].
pub const EXPECTED_PARAMS: [[u32; PARAMS]; 3] = [
    [
        0xbec299e2, 0xbee71acf, 0xbe117306, 0xbe360e32, 0xbedfe8f1, 0x3e96d111, 0xbddd8d3d, 0x3e793178, 0xbcf2b9dd,
        0xbee87487, 0xbe9d05f1, 0x3e800f65, 0x3cc83f55, 0x3e4cfabe, 0x3e4792e0, 0x3efee5d7, 0xbec69e2d, 0xbe6a86c5,
        0xbf017b9a, 0xbef79925, 0x3e04cab1, 0xbdac84e9, 0x3df253ea,
    ],
    [
        0xbeb65745, 0xbee925e4, 0xbe1fce25, 0xbe3e1d2b, 0xbedd5fac, 0x3e959821, 0xbddfd7de, 0x3e76bf8c, 0xbc90d95c,
        0xbee95385, 0xbe9b559c, 0x3e7bc8db, 0x3ce53812, 0x3e4c3cbb, 0x3e52a8a4, 0x3efc4ae8, 0xbecb47a0, 0xbe706972,
        0xbf002b37, 0xbef06f68, 0x3e0b3f59, 0xbdf2443e, 0x3e1bd788,
    ],
    [
        0xbebffbb4, 0xbef28ab9, 0xbe1f3c98, 0xbe4a7695, 0xbed22f6b, 0x3e87f4e3, 0xbe0ac3cc, 0x3e5c35d9, 0xbc56960f,
        0xbef55a35, 0xbe8f1647, 0x3e64ba52, 0x3d49c941, 0x3e6b1424, 0x3e587f81, 0x3ef13ad9, 0xbecf5be4, 0xbe8083ee,
        0xbef54c35, 0xbeeedb6e, 0x3e1b4bc8, 0xbd9a86cb, 0x3de055cb,
    ],
];

/// Compares `got` with `want` bit for bit; the first differing index.
pub fn first_difference(got: &[f32], want: &[u32]) -> Option<usize> {
    if got.len() != want.len() {
        return Some(got.len().min(want.len()));
    }
    got.iter().zip(want).position(|(g, w)| g.to_bits() != *w)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::println;

    use super::*;

    fn show(name: &str, v: &[f32]) {
        let hex: std::vec::Vec<std::string::String> = v.iter().map(|x| std::format!("{:#010x}", x.to_bits())).collect();
        println!("{name}: [{}]", hex.join(", "));
    }

    /// The host's arithmetic gives the pinned bits (what the on-target test
    /// asserts on the Cortex-M4).
    #[test]
    fn the_golden_training_steps_are_pinned() {
        let mut ok = true;
        for (i, (name, opt)) in OPTIMIZERS.iter().enumerate() {
            let p = optimizer_steps(opt);
            if first_difference(&p, &EXPECTED_STEPS[i]).is_some() {
                show(&std::format!("steps {name}"), &p);
                ok = false;
            }
            let mut bufs = RunBuffers::new();
            let losses = training_run(&Kernels::PORTABLE, opt, &mut bufs).unwrap();
            if first_difference(&losses, &EXPECTED_LOSSES[i]).is_some() {
                show(&std::format!("losses {name}"), &losses);
                ok = false;
            }
            if first_difference(&bufs.params, &EXPECTED_PARAMS[i]).is_some() {
                show(&std::format!("params {name}"), &bufs.params);
                ok = false;
            }
        }
        assert!(ok, "the golden values changed (new ones printed above)");
    }
}
