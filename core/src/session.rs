//! A training run on caller-owned buffers, one batch at a time: what a
//! microcontroller runs when the host streams it labelled samples, and what
//! the host replays to check the device's weights bit for bit (the same
//! code, buffers and order of operations; see the README for the floating
//! point environment both must share).
//!
//! Samples arrive as bytes and become the model's inputs through a table
//! of 256 values ([`InputMap`]): image pixels normalized with
//! `x = (b / 255 − mean) / std`, the host's arithmetic for byte data, or an
//! int8 backbone's features on their quantization grid.

use crate::confidence;
use crate::gemm::Kernels;
use crate::loss::{self, BadTarget};
use crate::mlp::{Mlp, Workspace};
use crate::optim::Optimizer;
use crate::par::Serial;
use crate::spec::Spec;

/// How an input byte becomes an f32 input of the model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum InputMap {
    /// `Normalize(mean, std)` after `/255`: `(b / 255 − mean) / std`.
    Pixels { mean: f32, std: f32 },
    /// A quantized activation: `scale · (b − zero_point)`.
    Affine { scale: f32, zero_point: i32 },
}

impl InputMap {
    /// The value of every byte.
    pub fn table(&self) -> [f32; 256] {
        match *self {
            InputMap::Pixels { mean, std } => core::array::from_fn(|b| (b as f32 / 255.0 - mean) / std),
            InputMap::Affine { scale, zero_point } => core::array::from_fn(|b| scale * (b as i32 - zero_point) as f32),
        }
    }

    fn usable(&self) -> bool {
        match *self {
            InputMap::Pixels { mean, std } => mean.is_finite() && std.is_finite() && std != 0.0,
            InputMap::Affine { scale, .. } => scale.is_finite(),
        }
    }
}

/// What a training run is: the model, its init, the optimizer and how input
/// bytes become inputs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SessionSetup {
    pub spec: Spec,
    pub optimizer: Optimizer,
    /// PyTorch-default init from this seed.
    pub seed: u64,
    pub input: InputMap,
}

/// Why a setup or a batch was refused. A refused batch changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SessionError {
    /// A buffer is smaller than the model needs (`what`: which one).
    Buffer { what: &'static str, needed: usize, found: usize },
    /// No samples, or more than the workspace holds.
    BatchSize { found: usize, max: usize },
    /// The pixel bytes are not `labels.len()` samples.
    InputLength { expected: usize, found: usize },
    /// A label is not one of the model's classes.
    Label { row: usize, label: u8, classes: usize },
    /// The optimizer's settings are not usable (e.g. a zero std or a
    /// non-finite rate).
    Setting,
}

impl core::fmt::Display for SessionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            SessionError::Buffer { what, needed, found } => {
                write!(f, "{what}: the model needs {needed} floats, the device has {found}")
            }
            SessionError::BatchSize { found, max } => write!(f, "batch of {found} samples, expected 1..={max}"),
            SessionError::InputLength { expected, found } => {
                write!(f, "{found} input bytes, expected {expected}")
            }
            SessionError::Label { row, label, classes } => {
                write!(f, "label {label} of sample {row} is not a class < {classes}")
            }
            SessionError::Setting => write!(f, "unusable setting (std, learning rate or optimizer)"),
        }
    }
}

impl From<BadTarget> for SessionError {
    fn from(e: BadTarget) -> Self {
        SessionError::Label { row: e.row, label: e.target, classes: e.classes }
    }
}

/// What [`TrainSession::evaluate`] found on a batch.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Evaluation {
    /// Samples whose first largest logit is their label.
    pub correct: u32,
    /// Sum of the samples' cross-entropies.
    pub loss_sum: f32,
    /// Sum of the confidences of the right predictions: each the softmax
    /// probability of the predicted class in whole percent
    /// ([`crate::confidence`]).
    pub confidence_right: u32,
    /// The same over the wrong predictions.
    pub confidence_wrong: u32,
}

/// The buffers of a session, all caller-owned (`static`s on a device).
pub struct SessionBuffers<'b> {
    /// At least `spec.params()`.
    pub params: &'b mut [f32],
    /// At least `optimizer.buffers() · spec.params()`.
    pub state: &'b mut [f32],
    /// At least `spec.train_scratch(1)`.
    pub scratch: &'b mut [f32],
    /// At least `spec.activations(1)`; its length sets the largest batch.
    pub workspace: &'b mut [f32],
}

/// A training run in progress.
pub struct TrainSession<'b> {
    model: Mlp<&'b mut [f32]>,
    state: &'b mut [f32],
    scratch: &'b mut [f32],
    ws: Workspace<&'b mut [f32]>,
    optimizer: Optimizer,
    lut: [f32; 256],
    /// Updates taken (the next one is `step + 1`).
    step: u64,
    floats: usize,
}

fn fits(what: &'static str, found: usize, needed: usize) -> Result<(), SessionError> {
    if found < needed {
        Err(SessionError::Buffer { what, needed, found })
    } else {
        Ok(())
    }
}

impl<'b> TrainSession<'b> {
    /// A fresh model of `setup.spec`, initialized from `setup.seed`, with
    /// zeroed optimizer state, in `bufs`.
    pub fn new(setup: &SessionSetup, bufs: SessionBuffers<'b>) -> Result<Self, SessionError> {
        let batch = Self::check(setup, &bufs)?;
        let spec = setup.spec;
        let p = spec.params();
        // (Lengths checked just above.)
        let params = &mut bufs.params[..p];
        let state = &mut bufs.state[..setup.optimizer.buffers() * p];
        let scratch = &mut bufs.scratch[..spec.train_scratch(1)];
        let per_row = spec.activations(1);
        let workspace = &mut bufs.workspace[..batch * per_row];
        let floats = params.len() + state.len() + scratch.len() + workspace.len();
        state.fill(0.0);
        let mut model = Mlp::new(spec, params).map_err(|_| SessionError::Setting)?;
        model.init(setup.seed);
        let ws = Workspace::new(spec, batch, workspace).map_err(|_| SessionError::Setting)?;
        let lut = setup.input.table();
        Ok(TrainSession { model, state, scratch, ws, optimizer: setup.optimizer, lut, step: 0, floats })
    }

    /// Whether [`TrainSession::new`] would accept `setup` in `bufs`, and
    /// the largest batch it would take; the buffers stay the caller's
    /// (a device keeps them for a setup that fits).
    pub fn check(setup: &SessionSetup, bufs: &SessionBuffers<'_>) -> Result<usize, SessionError> {
        let spec = setup.spec;
        let p = spec.params();
        if !setup.input.usable() {
            return Err(SessionError::Setting);
        }
        fits("parameters", bufs.params.len(), p)?;
        fits("optimizer state", bufs.state.len(), setup.optimizer.buffers() * p)?;
        fits("gradient scratch", bufs.scratch.len(), spec.train_scratch(1))?;
        let per_row = spec.activations(1);
        fits("workspace", bufs.workspace.len(), per_row)?;
        Ok(bufs.workspace.len() / per_row)
    }

    pub fn spec(&self) -> &Spec {
        self.model.spec()
    }

    /// Most samples per batch.
    pub fn max_batch(&self) -> usize {
        self.ws.batch()
    }

    /// Updates taken.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Bytes of the session's buffers as used.
    pub fn bytes(&self) -> usize {
        4 * self.floats
    }

    /// The parameters, layer after layer (`weight[out][in]`, `bias[out]`).
    pub fn params(&self) -> &[f32] {
        self.model.params()
    }

    /// Checks a batch, then normalizes its pixels into the workspace.
    fn load(&mut self, labels: &[u8], pixels: &[u8]) -> Result<usize, SessionError> {
        let (n, n_in, classes) = (labels.len(), self.spec().inputs(), self.spec().outputs());
        if n == 0 || n > self.max_batch() {
            return Err(SessionError::BatchSize { found: n, max: self.max_batch() });
        }
        if pixels.len() != n * n_in {
            return Err(SessionError::InputLength { expected: n * n_in, found: pixels.len() });
        }
        if let Some(row) = labels.iter().position(|&l| l as usize >= classes) {
            return Err(SessionError::Label { row, label: labels[row], classes });
        }
        let lut = &self.lut;
        for (x, &b) in self.ws.input_mut(n).iter_mut().zip(pixels) {
            *x = lut[b as usize];
        }
        Ok(n)
    }

    /// One update on `labels.len()` samples (`pixels`: their bytes, back to
    /// back) with learning rate `lr`. Returns the batch's mean loss. A batch
    /// that fails its checks is refused before anything changes.
    pub fn train_batch(&mut self, k: &Kernels, lr: f32, labels: &[u8], pixels: &[u8]) -> Result<f32, SessionError> {
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(SessionError::Setting);
        }
        self.load(labels, pixels)?;
        let step = self.step + 1;
        let loss = self.model.train_step(
            k,
            &Serial,
            &mut self.ws,
            labels,
            self.scratch,
            self.state,
            &self.optimizer,
            lr,
            step,
        )?;
        self.step = step;
        Ok(loss)
    }

    /// Classifies `labels.len()` samples (at most [`Self::max_batch`]):
    /// how many were right, the sum of their cross-entropies and of their
    /// confidences.
    pub fn evaluate(&mut self, k: &Kernels, labels: &[u8], pixels: &[u8]) -> Result<Evaluation, SessionError> {
        let n = self.load(labels, pixels)?;
        self.model.forward(k, &Serial, &mut self.ws, n);
        let classes = self.spec().outputs();
        let mut e = Evaluation::default();
        for (z, &l) in self.ws.logits(n).chunks_exact(classes).zip(labels) {
            let c = confidence::percent(confidence::top_probability(z, confidence::libm_exp)) as u32;
            if loss::argmax(z) == l as usize {
                e.correct += 1;
                e.confidence_right += c;
            } else {
                e.confidence_wrong += c;
            }
        }
        let spec = *self.spec();
        e.loss_sum = self.ws.loss(&spec, labels)? * n as f32;
        Ok(e)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    use super::*;
    use crate::optim::Sgd;

    fn setup() -> SessionSetup {
        SessionSetup {
            spec: Spec::mlp(&[6, 5, 3]),
            optimizer: Optimizer::Sgd(Sgd { lr: 0.1, momentum: 0.9, ..Sgd::default() }),
            seed: 3,
            input: InputMap::Pixels { mean: 0.25, std: 0.5 },
        }
    }

    /// Session buffers for `batch` samples of a setup, owned (for tests).
    pub(crate) struct Owned(Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>);

    impl Owned {
        pub(crate) fn new(s: &SessionSetup, batch: usize) -> Self {
            let p = s.spec.params();
            Owned(
                vec![0.0; p],
                vec![0.0; s.optimizer.buffers() * p],
                vec![0.0; s.spec.train_scratch(1)],
                vec![0.0; s.spec.activations(batch)],
            )
        }
        pub(crate) fn bufs(&mut self) -> SessionBuffers<'_> {
            SessionBuffers { params: &mut self.0, state: &mut self.1, scratch: &mut self.2, workspace: &mut self.3 }
        }
    }

    /// The session computes what the model's own step does on the same
    /// normalized inputs, and a refused batch changes nothing.
    #[test]
    fn a_session_trains_like_the_model_and_refuses_bad_batches() {
        let s = setup();
        let mut o = Owned::new(&s, 4);
        let mut sess = TrainSession::new(&s, o.bufs()).unwrap();
        assert_eq!(sess.max_batch(), 4);
        let pixels: Vec<u8> = (0..24).map(|i| (i * 37 % 256) as u8).collect();
        let labels = [0u8, 2, 1, 1];
        // The same by hand.
        let p = s.spec.params();
        let mut m = Mlp::new(s.spec, vec![0.0; p]).unwrap();
        m.init(s.seed);
        let mut ws = Workspace::new(s.spec, 4, vec![0.0; s.spec.activations(4)]).unwrap();
        let (mut g, mut st) = (vec![0.0; p], vec![0.0; p]);
        for step in 1..=3 {
            let loss = sess.train_batch(&Kernels::PORTABLE, 0.1, &labels, &pixels).unwrap();
            for (x, &b) in ws.input_mut(4).iter_mut().zip(&pixels) {
                *x = (b as f32 / 255.0 - 0.25) / 0.5;
            }
            let want = m
                .train_step(&Kernels::PORTABLE, &Serial, &mut ws, &labels, &mut g, &mut st, &s.optimizer, 0.1, step)
                .unwrap();
            assert_eq!(loss, want);
            assert!(sess.params() == m.params());
        }
        let before: Vec<f32> = sess.params().to_vec();
        let bad = [
            sess.train_batch(&Kernels::PORTABLE, 0.1, &[0, 3], &pixels[..12]),
            sess.train_batch(&Kernels::PORTABLE, 0.1, &[0, 1], &pixels[..11]),
            sess.train_batch(&Kernels::PORTABLE, 0.1, &[0; 5], &[0; 30]),
            sess.train_batch(&Kernels::PORTABLE, 0.1, &[], &[]),
            sess.train_batch(&Kernels::PORTABLE, f32::NAN, &[0], &pixels[..6]),
        ];
        assert_eq!(bad[0], Err(SessionError::Label { row: 1, label: 3, classes: 3 }));
        assert_eq!(bad[1], Err(SessionError::InputLength { expected: 12, found: 11 }));
        assert_eq!(bad[2], Err(SessionError::BatchSize { found: 5, max: 4 }));
        assert_eq!(bad[3], Err(SessionError::BatchSize { found: 0, max: 4 }));
        assert_eq!(bad[4], Err(SessionError::Setting));
        assert!(sess.params() == &before[..], "a refused batch changed the weights");
        assert_eq!(sess.steps(), 3);
        let e = sess.evaluate(&Kernels::PORTABLE, &labels, &pixels).unwrap();
        assert!(e.correct <= 4 && e.loss_sum.is_finite());
        // Each confidence is at least 1/3 (three classes) and at most 100 %.
        let total = e.confidence_right + e.confidence_wrong;
        assert!((4 * 33..=4 * 100).contains(&total), "{e:?}");
    }

    #[test]
    fn small_buffers_are_refused() {
        let s = setup();
        let mut o = Owned::new(&s, 1);
        o.1.truncate(3);
        assert!(matches!(TrainSession::new(&s, o.bufs()), Err(SessionError::Buffer { what: "optimizer state", .. })));
        let mut o = Owned::new(&s, 1);
        o.3.truncate(5);
        assert!(matches!(TrainSession::new(&s, o.bufs()), Err(SessionError::Buffer { what: "workspace", .. })));
    }
}
