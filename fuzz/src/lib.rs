//! What the fuzz targets share: a scratch file per process (the host's
//! data readers take paths), CRC repair (so mutated files get past their
//! checksums to the parsers behind them), an in-memory pipe and a host-side
//! device for the firmware's serve loop.

use std::path::PathBuf;

use tailor_core::format::crc32;
use tailor_core::gemm::Kernels;
use tailor_core::protocol::{self, Backend, ModelState, TrainRefusal};
use tailor_core::quant::{QKernels, QModel};
use tailor_core::session::{Evaluation, SessionBuffers, SessionSetup};
use tailor_core::train_device::{Backbone, TrainDevice};

/// `name` in a directory of this process's own under the temp dir (libFuzzer
/// runs one input at a time per process, so one file per name suffices).
pub fn scratch_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tailor-fuzz.{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creating the fuzz scratch directory");
    dir.join(name)
}

/// Writes `bytes` to the scratch file `name` and returns its path.
pub fn scratch_file(name: &str, bytes: &[u8]) -> PathBuf {
    let p = scratch_path(name);
    std::fs::write(&p, bytes).expect("writing the fuzz scratch file");
    p
}

fn u16_at(b: &[u8], o: usize) -> usize {
    u16::from_le_bytes([b[o], b[o + 1]]) as usize
}

fn put_u32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}

/// A copy of a tailor file (`format::header`, version 1 or 2) whose payload
/// CRC and header CRC are recomputed, or `None` if it has no such header.
/// Mutations then reach the layer table and payload parsers instead of all
/// ending at "checksum mismatch".
pub fn fix_crcs(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.len() < 8 {
        return None;
    }
    let mut b = bytes.to_vec();
    match u16_at(&b, 4) {
        1 if b.len() >= 32 => {
            let len = u32::from_le_bytes([b[24], b[25], b[26], b[27]]) as usize;
            let end = (32 + len).min(b.len());
            let c = crc32(&b[32..end]);
            put_u32(&mut b, 28, c);
        }
        2 => {
            let l = u16_at(&b, 6);
            let n = 24 + 8 * l;
            if l == 0 || b.len() < n {
                return None;
            }
            let len = u32::from_le_bytes([b[n - 12], b[n - 11], b[n - 10], b[n - 9]]) as usize;
            let end = (n + len).min(b.len());
            let c = crc32(&b[n..end]);
            put_u32(&mut b, n - 8, c);
            let h = crc32(&b[..n - 4]);
            put_u32(&mut b, n - 4, h);
        }
        _ => return None,
    }
    Some(b)
}

/// The wire stream `wire` with every frame's CRC made right: each
/// 0-delimited chunk that is valid COBS is decoded, its last 4 bytes
/// dropped and the rest sent again as a body (new CRC, new COBS). Other
/// chunks pass unchanged.
pub fn reframe(wire: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(wire.len() + 16);
    for chunk in wire.split(|&b| b == protocol::DELIMITER) {
        match cobs_decode(chunk) {
            Some(d) if d.len() > protocol::CRC_LEN => {
                protocol::send_raw_body(&mut out, &d[..d.len() - protocol::CRC_LEN]).expect("a Vec takes any frame");
            }
            _ => {
                out.extend_from_slice(chunk);
                out.push(protocol::DELIMITER);
            }
        }
    }
    out
}

fn cobs_decode(chunk: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(chunk.len());
    let mut r = 0;
    while r < chunk.len() {
        let code = chunk[r] as usize;
        let end = r + code;
        if code == 0 || end > chunk.len() {
            return None;
        }
        out.extend_from_slice(&chunk[r + 1..end]);
        r = end;
        if code < 255 && r < chunk.len() {
            out.push(0);
        }
    }
    Some(out)
}

/// An in-memory duplex pipe: reads `input` in odd-sized pieces (as a UART
/// would deliver it), and keeps at most `cap` bytes of output.
pub struct Pipe<'a> {
    pub input: &'a [u8],
    pub pos: usize,
    pub output: Vec<u8>,
    pub cap: usize,
}

impl embedded_io::ErrorType for Pipe<'_> {
    type Error = embedded_io::ErrorKind;
}

impl embedded_io::Read for Pipe<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let n = buf.len().min(self.input.len() - self.pos).min(97);
        buf[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl embedded_io::Write for Pipe<'_> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        let n = buf.len().min(self.cap - self.output.len());
        if n == 0 {
            return Err(embedded_io::ErrorKind::OutOfMemory);
        }
        self.output.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Most samples per training batch the host device announces.
pub const TRAIN_BATCH: usize = 8;

/// The memory of a [`HostDevice`].
pub struct HostMemory {
    params: Vec<f32>,
    state: Vec<f32>,
    grad_scratch: Vec<f32>,
    workspace: Vec<f32>,
    classify_scratch: Vec<i16>,
    backbone_scratch: Vec<i16>,
    features: Vec<u8>,
}

impl HostMemory {
    /// Room for `model`'s inference, training runs of up to 4,096
    /// parameters and a few samples of its features.
    pub fn new(model: &QModel<'_>) -> Self {
        HostMemory {
            params: vec![0.0; 4096],
            state: vec![0.0; 4096],
            grad_scratch: vec![0.0; 1024],
            workspace: vec![0.0; 2048],
            classify_scratch: vec![0; model.scratch_len()],
            backbone_scratch: vec![0; model.scratch_len()],
            features: vec![0; 256],
        }
    }

    /// A device on this memory that classifies with `model` and trains on
    /// its features in head mode.
    pub fn device<'a>(&'a mut self, model: QModel<'a>) -> HostDevice<'a> {
        let bufs = SessionBuffers {
            params: &mut self.params,
            state: &mut self.state,
            scratch: &mut self.grad_scratch,
            workspace: &mut self.workspace,
        };
        let backbone = Backbone::new(model, &mut self.backbone_scratch, &mut self.features);
        HostDevice {
            model,
            scratch: &mut self.classify_scratch,
            train: TrainDevice::new(Kernels::PORTABLE, bufs, backbone, TRAIN_BATCH),
        }
    }
}

/// The firmware's devices on the host: classifies with an int8 model (as
/// `tailor-firmware-sim` does) and trains a model or a head on that model's
/// features with the training firmware's own [`TrainDevice`].
pub struct HostDevice<'a> {
    model: QModel<'a>,
    scratch: &'a mut [i16],
    train: TrainDevice<'a>,
}

impl Backend for HostDevice<'_> {
    fn fw_version(&self) -> &str {
        "fuzz"
    }
    fn logit_scale(&self) -> Option<f32> {
        Some(self.model.layer(self.model.spec().depth() - 1).params.out_scale)
    }
    fn model_state(&self) -> (ModelState, &str) {
        (ModelState::Ready, "")
    }
    fn dims(&self) -> &[u32] {
        self.model.spec().dims()
    }
    fn model_crc(&self) -> u32 {
        self.model.payload_crc()
    }
    fn classify(&mut self, pixels: &[u8], logits: &mut [i32]) -> usize {
        self.model.classify(&QKernels::BEST, pixels, self.scratch, logits)
    }
    fn train_setup(&mut self, setup: &SessionSetup, head: bool) -> Result<(u32, u32, u32), TrainRefusal> {
        self.train.train_setup(setup, head, |_, _| {})
    }
    fn train_batch(&mut self, lr: f32, labels: &[u8], pixels: &[u8]) -> Result<f32, TrainRefusal> {
        self.train.train_batch(lr, labels, pixels)
    }
    fn eval_batch(&mut self, labels: &[u8], pixels: &[u8]) -> Result<Evaluation, TrainRefusal> {
        self.train.eval_batch(labels, pixels)
    }
    fn params(&self, offset: usize, out: &mut [f32]) -> Result<usize, TrainRefusal> {
        self.train.params(offset, out)
    }
}
