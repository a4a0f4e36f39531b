//! The messages of the protocol (see the table in [`super`]).

use serde::{Deserialize, Serialize};

use super::{FrameError, MAX_DIMS};
use crate::optim::Optimizer;

/// Every message of the protocol, both directions (see the module docs).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Message<'a> {
    /// Asks the device for a [`Hello`] carrying `nonce`; also a resync point.
    Ping {
        nonce: u32,
    },
    #[serde(borrow)]
    Hello(Hello<'a>),
    /// `images` is `n × IN` raw pixels (`0..=255`), row-major.
    Classify {
        seq: u32,
        want_logits: bool,
        images: &'a [u8],
    },
    #[serde(borrow)]
    Predictions(Predictions<'a>),
    /// `seq` is the request's when known, else 0.
    Error {
        code: ErrorCode,
        seq: u32,
        detail: &'a str,
    },
    GetStats,
    Stats(Stats),
    /// Runs the device's built-in checks (golden int8 values, kernels).
    SelfTest,
    SelfTestReport {
        passed: u32,
        failed: u32,
        detail: &'a str,
    },
    Shutdown,
    Bye(Stats),
    /// Starts a training run (host → device): a fresh model of `dims`,
    /// initialized from `seed` as the host would, trained with `optimizer`.
    /// With `head: false` it learns from the samples' bytes normalized by
    /// `(b/255 − mean)/std`; with `head: true` it is a classifier head on
    /// the device's int8 model, learning from that model's last hidden
    /// layer (`dims[0]` must be its width). Answered by `TrainReady`.
    TrainSetup {
        head: bool,
        /// Layer widths, input first: the first `n_dims` of `dims`.
        n_dims: u8,
        dims: [u32; MAX_DIMS],
        optimizer: Optimizer,
        seed: u64,
        mean: f32,
        std: f32,
    },
    TrainReady {
        params: u32,
        max_batch: u32,
        /// Bytes of the run's buffers (model, optimizer state, scratch, one batch).
        ram_bytes: u32,
    },
    /// One update on `labels.len()` samples whose bytes are `pixels`.
    /// Answered by `Trained`, or by `Error` with nothing changed.
    TrainBatch {
        seq: u32,
        lr: f32,
        labels: &'a [u8],
        pixels: &'a [u8],
    },
    Trained {
        seq: u32,
        loss: f32,
        instructions: u64,
    },
    /// Classifies labelled samples with the model being trained.
    EvalBatch {
        seq: u32,
        labels: &'a [u8],
        pixels: &'a [u8],
    },
    Evaluated {
        seq: u32,
        correct: u32,
        /// Sum of the samples' cross-entropies.
        loss_sum: f32,
        instructions: u64,
        /// Sums of the right and of the wrong predictions' confidences
        /// (whole percent each, see [`crate::session::Evaluation`]).
        confidence_right: u32,
        confidence_wrong: u32,
    },
    /// Asks for `count` parameters from `offset` (f32, the flat layout).
    ReadParams {
        offset: u32,
        count: u32,
    },
    /// `data`: parameters `offset..` as little-endian f32 (at most as many
    /// as asked and as fit a frame).
    Params {
        offset: u32,
        data: &'a [u8],
    },
}

/// Whether the device has a model it can run.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ModelState {
    Ready,
    /// Nothing that looks like a model in its model region.
    Missing,
    /// A model that fails its checks (magic, version, CRC, layout).
    Invalid,
    /// A valid model that does not fit the device (scratch, classes).
    TooLarge,
}

/// The device's identity, its model and its limits.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Hello<'a> {
    pub nonce: u32,
    pub protocol: u16,
    pub fw_version: &'a str,
    pub model_state: ModelState,
    /// Why the model is not [`ModelState::Ready`] (empty when it is).
    pub model_detail: &'a str,
    /// Layer widths, input first (empty without a model).
    pub dims: heapless::Vec<u32, MAX_DIMS>,
    /// CRC of the model's `.q8` payload (as in its file header).
    pub model_crc: u32,
    /// Most images per `Classify`.
    pub max_batch: u32,
    /// Most encoded bytes per frame the device can receive.
    pub frame_capacity: u32,
    /// Whether `instructions` fields count anything (0 otherwise).
    pub counts_instructions: bool,
}

impl Hello<'_> {
    pub fn dims(&self) -> &[u32] {
        &self.dims
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Hello<'_> {
    fn format(&self, f: defmt::Formatter) {
        defmt::write!(
            f,
            "Hello {{ nonce: {}, protocol: {}, fw: {=str}, model: {} {=str} {=[?]} crc {=u32:#x}, max_batch: {} }}",
            self.nonce,
            self.protocol,
            self.fw_version,
            self.model_state,
            self.model_detail,
            &self.dims[..],
            self.model_crc,
            self.max_batch
        )
    }
}

/// The answer to one `Classify`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Predictions<'a> {
    pub seq: u32,
    /// One predicted class per image.
    pub classes: &'a [u8],
    /// `classes.len() × OUT` int32 logits, little endian; empty unless the
    /// request had `want_logits`.
    pub logits: &'a [u8],
    /// Instructions spent in the inferences of this batch (0 if not counted).
    pub instructions: u64,
    /// One confidence per image: the softmax probability of its class in
    /// whole percent (`0..=100`), from the real logits (`out_scale` × the
    /// int32 ones) with an approximate `exp` ([`crate::confidence`]).
    /// Empty if the device does not compute it.
    pub confidence: &'a [u8],
}

impl Predictions<'_> {
    /// Logit `j` of image `i` (needs `want_logits`), for `out` classes.
    pub fn logit(&self, i: usize, j: usize, out: usize) -> Option<i32> {
        let o = 4 * (i * out + j);
        let b = self.logits.get(o..o + 4)?;
        Some(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Counters the device keeps since boot.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stats {
    pub frames_ok: u32,
    pub frames_bad: u32,
    pub images: u64,
    /// Instructions spent in inference (not in I/O).
    pub instructions: u64,
}

/// Why a request failed; sent in [`Message::Error`].
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ErrorCode {
    /// The frame did not fit the device's frame buffer; skipped to the next `0x00`.
    Oversized,
    /// Bad COBS (typically a frame cut short).
    Cobs,
    /// Fewer bytes than a tag and a CRC.
    TooShort,
    BadCrc,
    UnknownTag,
    /// The CRC matched, but the body is not a valid message.
    Decode,
    /// `images.len()` is not a multiple of the input size, or is zero.
    BadImageSize,
    BatchTooLarge,
    /// A message the device does not accept (device → host ones).
    Unexpected,
    /// The device has no runnable model (see its `Hello`).
    NoModel,
    /// A training request was refused (the detail says why); the run is
    /// unchanged.
    Training,
}

impl From<FrameError> for ErrorCode {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Oversized { .. } => ErrorCode::Oversized,
            FrameError::Cobs => ErrorCode::Cobs,
            FrameError::TooShort { .. } => ErrorCode::TooShort,
            FrameError::BadCrc { .. } => ErrorCode::BadCrc,
            FrameError::UnknownTag { .. } => ErrorCode::UnknownTag,
            FrameError::Decode => ErrorCode::Decode,
        }
    }
}
