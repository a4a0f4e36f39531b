//! The training half of a device's [`Backend`](crate::protocol::Backend):
//! one [`TrainSession`] per boot on caller-owned buffers, started by the
//! host's `TrainSetup`, with the checks the device owes the wire (no batch
//! before the setup, none larger than the device announced) and head mode,
//! where a classifier head learns from a frozen int8 backbone's features,
//! computed here sample by sample.
//!
//! The training firmware and the fuzz harness's host device forward their
//! `Backend` training methods to a [`TrainDevice`], so the fuzzer drives
//! the firmware's own code; what stays theirs is the board (instruction
//! counter, self test, logging) and the transport.

use crate::gemm::Kernels;
use crate::protocol::TrainRefusal;
use crate::quant::{QKernels, QModel};
use crate::session::{Evaluation, InputMap, SessionBuffers, SessionError, SessionSetup, TrainSession};
use crate::spec::Spec;

/// Head mode's frozen int8 model and the buffers its features need.
pub struct Backbone<'a> {
    model: QModel<'a>,
    scratch: &'a mut [i16],
    features: &'a mut [u8],
}

impl<'a> Backbone<'a> {
    /// `model` with `scratch` for its inference and `features` for one
    /// batch of its last hidden layer's outputs (whose length caps head
    /// mode's batches). `None` if `scratch` is shorter than
    /// [`QModel::scratch_len`].
    pub fn new(model: QModel<'a>, scratch: &'a mut [i16], features: &'a mut [u8]) -> Option<Self> {
        (scratch.len() >= model.scratch_len()).then_some(Backbone { model, scratch, features })
    }
}

/// A device's training run: its buffers until `TrainSetup`, its session
/// after.
pub struct TrainDevice<'a> {
    kernels: Kernels,
    buffers: Option<SessionBuffers<'a>>,
    session: Option<TrainSession<'a>>,
    backbone: Option<Backbone<'a>>,
    /// Most samples per batch the transport takes, whatever the buffers
    /// hold.
    frame_batch: usize,
    head: bool,
    /// The most samples per batch the device announced (and holds to).
    max_batch: usize,
}

impl<'a> TrainDevice<'a> {
    /// A device that trains with `kernels` in `buffers`, on batches of at
    /// most `frame_batch` samples, and in head mode on `backbone`'s
    /// features (without one it refuses head mode).
    pub fn new(
        kernels: Kernels,
        buffers: SessionBuffers<'a>,
        backbone: Option<Backbone<'a>>,
        frame_batch: usize,
    ) -> Self {
        TrainDevice { kernels, buffers: Some(buffers), session: None, backbone, frame_batch, head: false, max_batch: 0 }
    }

    /// The run, once set up.
    pub fn session(&self) -> Option<&TrainSession<'a>> {
        self.session.as_ref()
    }

    /// Starts the run ([`Backend::train_setup`](crate::protocol::Backend::train_setup)):
    /// `setup`'s model, or with `head` a one-layer head on the backbone's
    /// features, whose input map comes from the backbone. `prepare` gets
    /// the buffers just before the session initializes them (their
    /// contents do not matter; the firmware counts its kernels there).
    /// Returns `(params, max batch, bytes)`. One run per device: once a
    /// setup is accepted, later ones are refused; a refused one changes
    /// nothing.
    pub fn train_setup(
        &mut self,
        setup: &SessionSetup,
        head: bool,
        prepare: impl FnOnce(&Spec, &mut SessionBuffers<'a>),
    ) -> Result<(u32, u32, u32), TrainRefusal> {
        let mut setup = *setup;
        if head {
            let m = &self.backbone.as_ref().ok_or(TrainRefusal::NoBackbone)?.model;
            let depth = m.spec().depth();
            if depth < 2 || setup.spec.depth() != 1 || setup.spec.inputs() != m.spec().layer(depth - 1).inputs {
                return Err(SessionError::Setting.into());
            }
            // The head learns from the last hidden layer's outputs in real
            // units, as the int8 model's last layer reads them.
            let p = m.layer(depth - 1).params;
            setup.input = InputMap::Affine { scale: p.in_scale, zero_point: p.in_zp };
        }
        // Checked before they are taken: a refused setup leaves the buffers
        // for the next one.
        TrainSession::check(&setup, self.buffers.as_ref().ok_or(TrainRefusal::Session(SessionError::Setting))?)?;
        let mut bufs = self.buffers.take().ok_or(TrainRefusal::Session(SessionError::Setting))?;
        prepare(&setup.spec, &mut bufs);
        let s = TrainSession::new(&setup, bufs)?;
        self.head = head;
        // A batch must also fit the receive frame and, in head mode, the
        // features buffer.
        let mut max = s.max_batch().min(self.frame_batch);
        if let Some(b) = self.backbone.as_ref().filter(|_| head) {
            max = max.min(b.features.len() / s.spec().inputs());
        }
        let r = (s.spec().params() as u32, max as u32, s.bytes() as u32);
        self.max_batch = max;
        self.session = Some(s);
        Ok(r)
    }

    /// One update ([`TrainSession::train_batch`]) on `labels.len()` samples.
    pub fn train_batch(&mut self, lr: f32, labels: &[u8], pixels: &[u8]) -> Result<f32, TrainRefusal> {
        let k = self.kernels;
        let (s, inputs) = self.batch(labels.len(), pixels)?;
        Ok(s.train_batch(&k, lr, labels, inputs)?)
    }

    /// The run's model on a labelled batch ([`TrainSession::evaluate`]).
    pub fn eval_batch(&mut self, labels: &[u8], pixels: &[u8]) -> Result<Evaluation, TrainRefusal> {
        let k = self.kernels;
        let (s, inputs) = self.batch(labels.len(), pixels)?;
        Ok(s.evaluate(&k, labels, inputs)?)
    }

    /// Copies the run's parameters from `offset` into `out`, as many as
    /// fit; returns how many (0 past the end).
    pub fn params(&self, offset: usize, out: &mut [f32]) -> Result<usize, TrainRefusal> {
        let s = self.session.as_ref().ok_or(TrainRefusal::NoSession)?;
        let p = s.params().get(offset..).unwrap_or(&[]);
        let n = p.len().min(out.len());
        out[..n].copy_from_slice(&p[..n]);
        Ok(n)
    }

    /// The session and what it learns from for a batch of `n` samples:
    /// `pixels` themselves, or in head mode the backbone's features of
    /// each.
    fn batch<'s>(
        &'s mut self,
        n: usize,
        pixels: &'s [u8],
    ) -> Result<(&'s mut TrainSession<'a>, &'s [u8]), TrainRefusal> {
        // Before a TrainSetup there is no run to refuse the batch's size for.
        let s = self.session.as_mut().ok_or(TrainRefusal::NoSession)?;
        if n == 0 || n > self.max_batch {
            return Err(SessionError::BatchSize { found: n, max: self.max_batch }.into());
        }
        if !self.head {
            return Ok((s, pixels));
        }
        let Backbone { model, scratch, features } = self.backbone.as_mut().ok_or(TrainRefusal::NoBackbone)?;
        let (n_in, h) = (model.spec().inputs(), model.spec().layer(model.spec().depth() - 1).inputs);
        if pixels.len() != n * n_in {
            return Err(SessionError::InputLength { expected: n * n_in, found: pixels.len() }.into());
        }
        if n * h > features.len() {
            return Err(SessionError::BatchSize { found: n, max: features.len() / h }.into());
        }
        for (px, f) in pixels.chunks_exact(n_in).zip(features.chunks_exact_mut(h)) {
            model.features(&QKernels::BEST, px, scratch, f);
        }
        Ok((s, &features[..n * h]))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    use super::*;
    use crate::optim::{Optimizer, Sgd};
    use crate::quant::golden;
    use crate::session::tests::Owned;

    const K: Kernels = Kernels::PORTABLE;

    fn setup(dims: &[usize]) -> SessionSetup {
        SessionSetup {
            spec: Spec::mlp(dims),
            optimizer: Optimizer::Sgd(Sgd { lr: 0.1, momentum: 0.9, ..Sgd::default() }),
            seed: 5,
            input: InputMap::Pixels { mean: 0.25, std: 0.5 },
        }
    }

    fn pixels(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 53 % 256) as u8).collect()
    }

    fn read_all(d: &TrainDevice<'_>, n: usize) -> Vec<f32> {
        let mut out = vec![0.0; n + 3];
        let got = d.params(0, &mut out).unwrap();
        assert_eq!(got, n);
        out.truncate(got);
        out
    }

    #[test]
    fn before_the_setup_every_request_is_refused() {
        let s = setup(&[6, 5, 3]);
        let mut o = Owned::new(&s, 4);
        let mut d = TrainDevice::new(K, o.bufs(), None, 8);
        assert_eq!(d.train_batch(0.1, &[0], &[0; 6]), Err(TrainRefusal::NoSession));
        assert_eq!(d.eval_batch(&[0], &[0; 6]), Err(TrainRefusal::NoSession));
        assert_eq!(d.params(0, &mut [0.0; 4]), Err(TrainRefusal::NoSession));
        let e = d.train_batch(0.1, &[0; 100], &[]).unwrap_err();
        assert_eq!(std::format!("{e}"), "no training run: send TrainSetup first");
        assert!(d.session().is_none());
    }

    /// Full mode is the session itself, on batches capped by the frame; a
    /// refused batch changes nothing and a second setup is refused.
    #[test]
    fn full_mode_trains_as_the_session_does_within_the_frame() {
        let s = setup(&[6, 5, 3]);
        let mut o = Owned::new(&s, 4);
        let mut d = TrainDevice::new(K, o.bufs(), None, 3);
        let mut prepared = None;
        let r = d
            .train_setup(&s, false, |spec, bufs| {
                prepared = Some(*spec);
                // Whatever it leaves there, the session starts afresh.
                bufs.params.fill(f32::NAN);
                bufs.state.fill(f32::NAN);
            })
            .unwrap();
        assert_eq!(prepared, Some(s.spec));
        let mut want_o = Owned::new(&s, 4);
        let mut want = TrainSession::new(&s, want_o.bufs()).unwrap();
        assert_eq!(want.max_batch(), 4);
        // The workspace takes 4 samples, the frame 3.
        assert_eq!(r, (s.spec.params() as u32, 3, want.bytes() as u32));
        let (px, labels) = (pixels(24), [0u8, 2, 1, 1]);
        for _ in 0..2 {
            let loss = d.train_batch(0.1, &labels[..3], &px[..18]).unwrap();
            assert_eq!(loss, want.train_batch(&K, 0.1, &labels[..3], &px[..18]).unwrap());
        }
        let before = read_all(&d, s.spec.params());
        assert!(before == want.params());
        assert_eq!(d.train_batch(0.1, &labels, &px), Err(SessionError::BatchSize { found: 4, max: 3 }.into()));
        assert_eq!(d.eval_batch(&labels, &px), Err(SessionError::BatchSize { found: 4, max: 3 }.into()));
        assert_eq!(d.train_batch(0.1, &[], &[]), Err(SessionError::BatchSize { found: 0, max: 3 }.into()));
        assert_eq!(
            d.train_batch(0.1, &labels[..2], &px[..11]),
            Err(SessionError::InputLength { expected: 12, found: 11 }.into())
        );
        assert_eq!(d.train_setup(&s, false, |_, _| {}), Err(SessionError::Setting.into()));
        assert!(read_all(&d, s.spec.params()) == before, "a refused request changed the weights");
        assert_eq!(d.session().unwrap().steps(), 2);
        assert_eq!(d.eval_batch(&labels[..3], &px[..18]), Ok(want.evaluate(&K, &labels[..3], &px[..18]).unwrap()));
        // Reads from an offset, and past the end.
        let mut tail = [0.0; 8];
        assert_eq!(d.params(s.spec.params() - 5, &mut tail), Ok(5));
        assert!(tail[..5] == before[before.len() - 5..]);
        assert_eq!(d.params(s.spec.params() + 1, &mut tail), Ok(0));
    }

    /// A head learns from the golden 10-5-3-2 model's features of the
    /// samples exactly as a session fed those features on their grid; a
    /// head that does not fit the backbone is refused before the buffers
    /// are touched.
    #[test]
    fn head_mode_trains_on_the_backbones_features() {
        let blob = golden::blob();
        let m = QModel::parse(&blob.0).unwrap();
        let mut qs = vec![0i16; m.scratch_len()];
        // Features of two samples: the backbone's last hidden layer is 3 wide.
        let mut feats = vec![0u8; 7];
        let s = setup(&[3, 2]);
        let mut o = Owned::new(&s, 4);
        let mut d = TrainDevice::new(K, o.bufs(), Backbone::new(m, &mut qs, &mut feats), 8);
        let mut touched = false;
        for bad in [&[4, 2][..], &[3, 4, 2], &[10, 2]] {
            let r = d.train_setup(&setup(bad), true, |_, _| touched = true);
            assert_eq!(r, Err(SessionError::Setting.into()), "head {bad:?}");
        }
        assert!(!touched && d.session().is_none());
        let r = d.train_setup(&s, true, |_, _| {}).unwrap();
        assert_eq!(r.1, 2, "the features buffer holds 2 samples");
        // The same by hand: the model's features, on the last layer's grid.
        let mut want_s = s;
        let p = m.layer(2).params;
        want_s.input = InputMap::Affine { scale: p.in_scale, zero_point: p.in_zp };
        let mut want_o = Owned::new(&s, 4);
        let mut want = TrainSession::new(&want_s, want_o.bufs()).unwrap();
        let (px, labels) = (pixels(30), [1u8, 0, 1]);
        let mut f = [0u8; 6];
        let mut sc = vec![0i16; m.scratch_len()];
        for (x, out) in px[..20].chunks_exact(10).zip(f.chunks_exact_mut(3)) {
            assert_eq!(m.features(&QKernels::BEST, x, &mut sc, out), 3);
        }
        for _ in 0..3 {
            let loss = d.train_batch(0.05, &labels[..2], &px[..20]).unwrap();
            assert_eq!(loss, want.train_batch(&K, 0.05, &labels[..2], &f).unwrap());
        }
        assert!(read_all(&d, s.spec.params()) == want.params());
        assert_eq!(d.eval_batch(&labels[..2], &px[..20]), Ok(want.evaluate(&K, &labels[..2], &f).unwrap()));
        // Head mode checks the samples' length, not the features'.
        assert_eq!(
            d.train_batch(0.05, &labels[..2], &px[..6]),
            Err(SessionError::InputLength { expected: 20, found: 6 }.into())
        );
        assert_eq!(d.train_batch(0.05, &labels, &px), Err(SessionError::BatchSize { found: 3, max: 2 }.into()));
        assert!(read_all(&d, s.spec.params()) == want.params());
    }

    /// A setup that does not fit is refused with what is short, and the
    /// buffers stay for one that fits.
    #[test]
    fn a_refused_setup_keeps_the_buffers() {
        let s = setup(&[6, 5, 3]);
        let mut o = Owned::new(&s, 4);
        let mut d = TrainDevice::new(K, o.bufs(), None, 8);
        let big = setup(&[6, 50, 3]);
        let mut prepared = false;
        let e = d.train_setup(&big, false, |_, _| prepared = true).unwrap_err();
        assert!(matches!(e, TrainRefusal::Session(SessionError::Buffer { what: "parameters", .. })), "{e:?}");
        assert!(!prepared && d.session().is_none());
        let bad_input = SessionSetup { input: InputMap::Pixels { mean: 0.0, std: 0.0 }, ..s };
        assert_eq!(d.train_setup(&bad_input, false, |_, _| {}), Err(SessionError::Setting.into()));
        assert_eq!(d.train_setup(&s, false, |_, _| {}).map(|r| r.0), Ok(s.spec.params() as u32));
        // Once accepted, the run is the device's only one.
        assert_eq!(d.train_setup(&s, false, |_, _| {}), Err(SessionError::Setting.into()));
    }

    #[test]
    fn head_mode_needs_a_backbone() {
        let s = setup(&[3, 2]);
        let mut o = Owned::new(&s, 4);
        let mut d = TrainDevice::new(K, o.bufs(), None, 8);
        assert_eq!(d.train_setup(&s, true, |_, _| {}), Err(TrainRefusal::NoBackbone));
        // The buffers are still there for a full-mode run.
        assert!(d.train_setup(&s, false, |_, _| {}).is_ok());
        let blob = golden::blob();
        let m = QModel::parse(&blob.0).unwrap();
        let mut short = vec![0i16; m.scratch_len() - 1];
        assert!(Backbone::new(m, &mut short, &mut []).is_none());
    }
}
