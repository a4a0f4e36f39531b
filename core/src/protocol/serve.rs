//! The device loop: a `Hello`, then one answer per request.

use core::fmt::Write as _;

use embedded_io::{Read, Write};

use super::{
    classify_frame_capacity, send, ErrorCode, FrameReader, Hello, Message, ModelState, Predictions, RecvError,
    SendError, Stats, MAX_DIMS, PROTOCOL_VERSION,
};
use crate::session::{Evaluation, InputMap, SessionError, SessionSetup};
use crate::spec::Spec;

/// What the device loop needs from the firmware (or a host-side stand-in).
pub trait Backend {
    fn fw_version(&self) -> &str;
    /// Whether there is a model to run, and why not (reported in `Hello`;
    /// `Classify` is then answered with [`ErrorCode::NoModel`]).
    fn model_state(&self) -> (ModelState, &str) {
        (ModelState::Ready, "")
    }
    /// Layer widths, input first (at most [`MAX_DIMS`]; empty without a model).
    fn dims(&self) -> &[u32];
    fn model_crc(&self) -> u32;
    /// Classifies one image of `dims()[0]` pixels; fills `logits` (`OUT`
    /// long) and returns the predicted class.
    fn classify(&mut self, pixels: &[u8], logits: &mut [i32]) -> usize;
    /// The real value of one unit of the int32 logits (the int8 model's
    /// last `out_scale`), for the confidence sent with each prediction
    /// (none: no confidence).
    fn logit_scale(&self) -> Option<f32> {
        None
    }
    /// A free-running instruction counter, if the platform has one.
    fn instructions(&mut self) -> Option<u64> {
        None
    }
    /// Built-in checks; writes a summary to `detail`. Returns (passed, failed).
    fn self_test(&mut self, detail: &mut dyn core::fmt::Write) -> (u32, u32) {
        let _ = detail.write_str("no self tests");
        (0, 0)
    }
    /// Starts a training run ([`crate::session`]), of a head on the int8
    /// model when `head` (whose input map the device takes from that
    /// model); returns `(params, max batch, bytes)`. Devices that do not
    /// train refuse.
    fn train_setup(&mut self, _setup: &SessionSetup, _head: bool) -> Result<(u32, u32, u32), TrainRefusal> {
        Err(TrainRefusal::Unsupported)
    }
    /// One update of the run ([`TrainSession::train_batch`](crate::session::TrainSession::train_batch)).
    fn train_batch(&mut self, _lr: f32, _labels: &[u8], _pixels: &[u8]) -> Result<f32, TrainRefusal> {
        Err(TrainRefusal::Unsupported)
    }
    /// The run's model on a labelled batch.
    fn eval_batch(&mut self, _labels: &[u8], _pixels: &[u8]) -> Result<Evaluation, TrainRefusal> {
        Err(TrainRefusal::Unsupported)
    }
    /// The run's parameters from `offset`, at most `out.len()`.
    fn params(&self, _offset: usize, _out: &mut [f32]) -> Result<usize, TrainRefusal> {
        Err(TrainRefusal::Unsupported)
    }
}

/// Why a training request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrainRefusal {
    /// This device does not train.
    Unsupported,
    /// No run was set up.
    NoSession,
    /// Head mode, on a device without an int8 model to learn from.
    NoBackbone,
    Session(SessionError),
}

impl From<SessionError> for TrainRefusal {
    fn from(e: SessionError) -> Self {
        TrainRefusal::Session(e)
    }
}

impl core::fmt::Display for TrainRefusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TrainRefusal::Unsupported => f.write_str("this device does not train"),
            TrainRefusal::NoSession => f.write_str("no training run: send TrainSetup first"),
            TrainRefusal::NoBackbone => f.write_str("head mode needs an int8 model flashed to the device"),
            TrainRefusal::Session(e) => write!(f, "{e}"),
        }
    }
}

/// Most output classes the device loop supports.
pub const MAX_OUT: usize = 16;

/// Caller-owned memory of [`serve`].
pub struct Buffers<'b> {
    /// The receive frame buffer (at least [`classify_frame_capacity`] for
    /// the batches you want).
    pub rx: &'b mut [u8],
    /// One byte per image of a batch.
    pub classes: &'b mut [u8],
    /// `4 × OUT` bytes per image of a batch.
    pub logits: &'b mut [u8],
    /// One byte per image of a batch (its confidence).
    pub confidence: &'b mut [u8],
}

/// Why [`serve`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeEnd<E> {
    /// The host sent `Shutdown` (answered with `Bye`).
    Shutdown(Stats),
    /// The input ended.
    Eof(Stats),
    Io(E),
}

/// The device's `Hello`; `limits` = (max batch, frame capacity, counts instructions).
fn hello<B: Backend>(dev: &B, nonce: u32, limits: (u32, u32, bool)) -> Hello<'_> {
    let (model_state, model_detail) = dev.model_state();
    Hello {
        nonce,
        protocol: PROTOCOL_VERSION,
        fw_version: dev.fw_version(),
        model_state,
        model_detail,
        dims: heapless::Vec::from_slice(dev.dims()).unwrap_or_default(),
        model_crc: dev.model_crc(),
        max_batch: limits.0,
        frame_capacity: limits.1,
        counts_instructions: limits.2,
    }
}

/// The device side: sends a `Hello`, then answers requests until `Shutdown`,
/// end of input or an I/O error. Malformed frames and bad requests are
/// answered with `Error` and do not stop it.
pub fn serve<T: Read + Write, B: Backend>(io: &mut T, dev: &mut B, bufs: Buffers<'_>) -> ServeEnd<T::Error> {
    let Buffers { rx, classes, logits, confidence } = bufs;
    let ready = dev.model_state().0 == ModelState::Ready;
    let dims = dev.dims();
    let (n_in, n_out) = match dims {
        [i, .., o] if ready => (*i as usize, *o as usize),
        _ => (1, 1),
    };
    assert!(n_out <= MAX_OUT && dims.len() <= MAX_DIMS, "serve: at most {MAX_OUT} classes and {MAX_DIMS} widths");
    let frame_capacity = rx.len();
    // Largest batch whose frame surely fits.
    let mut max_batch = classes.len().min(confidence.len()).min(logits.len() / (4 * n_out));
    while max_batch > 0 && classify_frame_capacity(max_batch, n_in) > frame_capacity {
        max_batch -= 1;
    }
    let counts = dev.instructions().is_some();
    let mut reader = FrameReader::new(rx);
    let mut stats = Stats::default();
    let limits = (max_batch as u32, frame_capacity as u32, counts);
    macro_rules! reply {
        ($m:expr) => {
            if let Err(e) = send(io, &$m) {
                match e {
                    SendError::Io(e) => return ServeEnd::Io(e),
                    SendError::Encode => {}
                }
            }
        };
    }
    macro_rules! refuse {
        ($seq:expr, $e:expr) => {{
            let mut detail = heapless::String::<120>::new();
            let _ = write!(detail, "{}", $e);
            reply!(Message::Error { code: ErrorCode::Training, seq: $seq, detail: &detail })
        }};
    }
    reply!(Message::Hello(hello(dev, 0, limits)));
    loop {
        let msg = match reader.recv(io) {
            Ok(m) => m,
            Err(RecvError::Io(e)) => return ServeEnd::Io(e),
            Err(RecvError::Eof) => return ServeEnd::Eof(stats),
            Err(RecvError::Frame(e)) => {
                stats.frames_bad += 1;
                let mut detail = heapless::String::<80>::new();
                let _ = write!(detail, "{e}");
                reply!(Message::Error { code: e.into(), seq: 0, detail: &detail });
                continue;
            }
        };
        stats.frames_ok += 1;
        match msg {
            Message::Ping { nonce } => {
                reply!(Message::Hello(hello(dev, nonce, limits)))
            }
            Message::Classify { seq, .. } if !ready => {
                let detail = dev.model_state().1;
                reply!(Message::Error { code: ErrorCode::NoModel, seq, detail })
            }
            Message::Classify { seq, want_logits, images } => {
                let n = images.len() / n_in;
                if images.is_empty() || !images.len().is_multiple_of(n_in) {
                    let mut detail = heapless::String::<80>::new();
                    let _ = write!(detail, "{} bytes is not a multiple of {n_in}", images.len());
                    reply!(Message::Error { code: ErrorCode::BadImageSize, seq, detail: &detail });
                    continue;
                }
                if n > max_batch {
                    let mut detail = heapless::String::<80>::new();
                    let _ = write!(detail, "{n} images, at most {max_batch} per batch");
                    reply!(Message::Error { code: ErrorCode::BatchTooLarge, seq, detail: &detail });
                    continue;
                }
                let mut out = [0i32; MAX_OUT];
                let t0 = dev.instructions();
                for (i, img) in images.chunks_exact(n_in).enumerate() {
                    classes[i] = dev.classify(img, &mut out[..n_out]) as u8;
                    for (j, l) in out[..n_out].iter().enumerate() {
                        let o = 4 * (i * n_out + j);
                        logits[o..o + 4].copy_from_slice(&l.to_le_bytes());
                    }
                }
                let spent = spent(t0, dev.instructions());
                stats.images += n as u64;
                stats.instructions += spent;
                // Outside the counted instructions: they measure inference.
                let scale = dev.logit_scale();
                if let Some(scale) = scale {
                    let mut z = [0i32; MAX_OUT];
                    for (i, c) in confidence[..n].iter_mut().enumerate() {
                        for (j, v) in z[..n_out].iter_mut().enumerate() {
                            let o = 4 * (i * n_out + j);
                            *v = i32::from_le_bytes([logits[o], logits[o + 1], logits[o + 2], logits[o + 3]]);
                        }
                        *c = crate::confidence::of_int8_logits(&z[..n_out], scale);
                    }
                }
                let nc = if scale.is_some() { n } else { 0 };
                let nl = if want_logits { 4 * n * n_out } else { 0 };
                reply!(Message::Predictions(Predictions {
                    seq,
                    classes: &classes[..n],
                    logits: &logits[..nl],
                    instructions: spent,
                    confidence: &confidence[..nc],
                }));
            }
            Message::GetStats => reply!(Message::Stats(stats)),
            Message::SelfTest => {
                let mut detail = heapless::String::<200>::new();
                let (passed, failed) = dev.self_test(&mut detail);
                reply!(Message::SelfTestReport { passed, failed, detail: &detail });
            }
            Message::Shutdown => {
                reply!(Message::Bye(stats));
                return ServeEnd::Shutdown(stats);
            }
            Message::TrainSetup { head, n_dims, dims, optimizer, seed, mean, std } => {
                let dims = &dims[..(n_dims as usize).min(MAX_DIMS)];
                let mut widths = [0usize; MAX_DIMS];
                for (w, &d) in widths.iter_mut().zip(dims) {
                    *w = d as usize;
                }
                let r = match Spec::try_mlp(&widths[..dims.len()]) {
                    Ok(spec) => {
                        let input = InputMap::Pixels { mean, std };
                        dev.train_setup(&SessionSetup { spec, optimizer, seed, input }, head)
                    }
                    Err(_) => Err(TrainRefusal::Session(SessionError::Setting)),
                };
                match r {
                    Ok((params, max_batch, ram_bytes)) => reply!(Message::TrainReady { params, max_batch, ram_bytes }),
                    Err(e) => refuse!(0, e),
                }
            }
            Message::TrainBatch { seq, lr, labels, pixels } => {
                let t0 = dev.instructions();
                match dev.train_batch(lr, labels, pixels) {
                    Ok(loss) => {
                        let instructions = spent(t0, dev.instructions());
                        stats.instructions += instructions;
                        reply!(Message::Trained { seq, loss, instructions })
                    }
                    Err(e) => refuse!(seq, e),
                }
            }
            Message::EvalBatch { seq, labels, pixels } => {
                let t0 = dev.instructions();
                match dev.eval_batch(labels, pixels) {
                    Ok(e) => {
                        let instructions = spent(t0, dev.instructions());
                        reply!(Message::Evaluated {
                            seq,
                            correct: e.correct,
                            loss_sum: e.loss_sum,
                            instructions,
                            confidence_right: e.confidence_right,
                            confidence_wrong: e.confidence_wrong,
                        })
                    }
                    Err(e) => refuse!(seq, e),
                }
            }
            Message::ReadParams { offset, count } => {
                // The reply goes out of the logits buffer: as many floats
                // as it holds, at most.
                let mut chunk = [0f32; 64];
                let want = (count as usize).min(logits.len() / 4);
                let mut done = 0;
                let mut failed = None;
                while done < want {
                    let n = (want - done).min(chunk.len());
                    match dev.params(offset as usize + done, &mut chunk[..n]) {
                        Ok(0) => break,
                        Ok(got) => {
                            for (k, v) in chunk[..got].iter().enumerate() {
                                logits[4 * (done + k)..][..4].copy_from_slice(&v.to_le_bytes());
                            }
                            done += got;
                        }
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                match failed {
                    Some(e) => refuse!(0, e),
                    None => reply!(Message::Params { offset, data: &logits[..4 * done] }),
                }
            }
            Message::Hello(_)
            | Message::Predictions(_)
            | Message::Error { .. }
            | Message::Stats(_)
            | Message::SelfTestReport { .. }
            | Message::Bye(_)
            | Message::TrainReady { .. }
            | Message::Trained { .. }
            | Message::Evaluated { .. }
            | Message::Params { .. } => {
                reply!(Message::Error {
                    code: ErrorCode::Unexpected,
                    seq: 0,
                    detail: "device-to-host message sent to the device"
                });
            }
        }
    }
}

/// Instructions between two readings of the counter (0 without one).
fn spent(t0: Option<u64>, t1: Option<u64>) -> u64 {
    match (t0, t1) {
        (Some(a), Some(b)) => b.wrapping_sub(a),
        _ => 0,
    }
}
