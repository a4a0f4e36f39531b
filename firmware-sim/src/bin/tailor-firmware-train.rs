//! The training device: learns an f32 model from the samples the host
//! streams (`tailor device-train`), with the core's training device
//! (`tailor_core::train_device`, which the fuzz harness runs too), and
//! sends its weights back. The model is either fresh (`--mode full`) or a
//! classifier head on the int8 model flashed into the model region, which
//! stays frozen (`--mode head`). A separate image from the inference firmware so
//! that its RAM, all of it in the `static`s below, is what the linker's
//! figures show (`size -A`: `.bss`).
//!
//! The semihosting command line is `semihosting [IN OUT]` (protocol over
//! host FIFOs) or `uart`. QEMU exits 0 after `Shutdown` or end of input,
//! 1 on panic/HardFault.
#![no_std]
#![no_main]

use defmt_semihosting as _;

use cortex_m_rt::entry;
use tailor_core::gemm::Kernels;
use tailor_core::protocol::{serve, Backend, Buffers, ModelState, TrainRefusal};
use tailor_core::quant::Aligned;
use tailor_core::session::{Evaluation, SessionBuffers, SessionSetup};
use tailor_core::train_device::{Backbone, TrainDevice};
use tailor_firmware_sim::kernel_counts::{self, Counts};
use tailor_firmware_sim::{board, counter, model, semi, uart, FW_VERSION};

tailor_firmware_sim::fault_handlers!();

/// The f32 kernels the session trains with; the host's replica runs their
/// twin, `Kernels::M4_TWIN`.
const KERNELS: Kernels = Kernels::CORTEX_M4;

/// Parameters of the largest model: 784-32-10 has 25,450.
const PARAMS: usize = 25 * 1024;
/// One parameter-sized buffer of optimizer state: SGD's momentum (Adam,
/// with two, fits models of half the size).
const STATE: usize = PARAMS;
/// Gradient scratch: the bias gradients and one row of the widest input
/// (`Spec::train_scratch(1)`).
const SCRATCH: usize = 1024;
/// Activations and their gradients: 8 samples of 784-32-10.
const WORKSPACE: usize = 7 * 1024;
/// Most samples per `TrainBatch` the frame buffer takes (784 bytes each).
const FRAME_SAMPLES: usize = 8;
const RX_BYTES: usize = tailor_core::protocol::classify_frame_capacity(FRAME_SAMPLES, 785) + 128;
/// `ReadParams` replies go out of this buffer: 64 floats at a time.
const TX_BYTES: usize = 4 * 64;
/// Head mode: the int8 model's scratch (`QModel::scratch_len`: two buffers
/// of its widest layer, up to 1,023 wide) and one batch of its features.
const I8_SCRATCH: usize = 2048;
const FEATURES: usize = 4096;

static mut PARAMS_BUF: [f32; PARAMS] = [0.0; PARAMS];
static mut STATE_BUF: [f32; STATE] = [0.0; STATE];
static mut SCRATCH_BUF: [f32; SCRATCH] = [0.0; SCRATCH];
static mut WORKSPACE_BUF: [f32; WORKSPACE] = [0.0; WORKSPACE];
static mut RX: [u8; RX_BYTES] = [0; RX_BYTES];
static mut CLASSES: [u8; 1] = [0; 1];
static mut CONFIDENCE: [u8; 1] = [0; 1];
static mut TX: [u8; TX_BYTES] = [0; TX_BYTES];
static mut I8_SCRATCH_BUF: Aligned<[i16; I8_SCRATCH]> = Aligned([0; I8_SCRATCH]);
static mut FEATURES_BUF: [u8; FEATURES] = [0; FEATURES];

/// The core's training device, with this board's instruction counter,
/// kernel checks and logging.
struct Trainer {
    train: TrainDevice<'static>,
    /// [`KERNELS`]' instructions per MAC on the model's shapes, counted at
    /// setup (reported by `SelfTest`).
    kernel_counts: Option<Counts>,
}

/// Counts [`KERNELS`]' instructions on `spec`'s shapes with batches of
/// [`FRAME_SAMPLES`], in the buffers the session is about to take over
/// (their contents do not matter yet).
fn count_kernels(spec: &tailor_core::spec::Spec, bufs: &mut SessionBuffers<'_>) -> Option<Counts> {
    let widest_in = spec.layers().map(|l| l.inputs).max().unwrap_or(0);
    let ws = &bufs.workspace[..];
    let (x, dy) = ws.split_at((FRAME_SAMPLES * widest_in).min(ws.len()));
    match kernel_counts::measure(&KERNELS, spec, FRAME_SAMPLES, SCRATCH, x, bufs.params, dy, bufs.state) {
        Ok(c) => Some(c),
        Err(e) => {
            defmt::info!("kernel counts skipped: {=str} needs {=usize} floats", e.buffer, e.needed);
            None
        }
    }
}

impl Backend for Trainer {
    fn fw_version(&self) -> &str {
        FW_VERSION
    }
    fn model_state(&self) -> (ModelState, &str) {
        (ModelState::Missing, "training firmware: no int8 model")
    }
    fn dims(&self) -> &[u32] {
        &[]
    }
    fn model_crc(&self) -> u32 {
        0
    }
    fn classify(&mut self, _pixels: &[u8], _logits: &mut [i32]) -> usize {
        0
    }
    fn instructions(&mut self) -> Option<u64> {
        Some(counter::instructions())
    }
    /// [`KERNELS`] against the golden checksums of their host twin, and
    /// their instructions per 1,000 MACs on the model (once set up).
    fn self_test(&mut self, detail: &mut dyn core::fmt::Write) -> (u32, u32) {
        use tailor_core::gemm::m4::golden;
        let ok = golden::checksums(&KERNELS) == golden::CHECKSUMS;
        let _ =
            write!(detail, "{} kernels: golden {}; per 1000 MACs: ", KERNELS.name, if ok { "ok" } else { "FAILED" });
        let _ = match &self.kernel_counts {
            Some(c) => c.write(detail),
            None => detail.write_str("not counted"),
        };
        (ok as u32, !ok as u32)
    }
    fn train_setup(&mut self, setup: &SessionSetup, head: bool) -> Result<(u32, u32, u32), TrainRefusal> {
        let Trainer { train, kernel_counts: counts } = self;
        let r = train.train_setup(setup, head, |spec, bufs| *counts = count_kernels(spec, bufs))?;
        if let Some(s) = train.session() {
            defmt::info!("training {}: {=usize} bytes, batches of up to {=usize}", s.spec(), s.bytes(), s.max_batch());
        }
        Ok(r)
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

#[entry]
fn main() -> ! {
    counter::start();
    let mut cmd = [0u8; 512];
    let cmdline = semi::cmdline(&mut cmd);
    let mut args = cmdline.split_ascii_whitespace().skip_while(|a| !matches!(*a, "semihosting" | "uart"));
    let mode = args.next().unwrap_or("semihosting");
    defmt::info!("{=str} (training), mode {=str}", FW_VERSION, mode);
    // SAFETY: each static is taken once, here, before anything else uses it.
    let (buffers, bufs) = unsafe {
        (
            SessionBuffers {
                params: &mut *core::ptr::addr_of_mut!(PARAMS_BUF),
                state: &mut *core::ptr::addr_of_mut!(STATE_BUF),
                scratch: &mut *core::ptr::addr_of_mut!(SCRATCH_BUF),
                workspace: &mut *core::ptr::addr_of_mut!(WORKSPACE_BUF),
            },
            Buffers {
                rx: &mut *core::ptr::addr_of_mut!(RX),
                classes: &mut *core::ptr::addr_of_mut!(CLASSES),
                logits: &mut *core::ptr::addr_of_mut!(TX),
                confidence: &mut *core::ptr::addr_of_mut!(CONFIDENCE),
            },
        )
    };
    // SAFETY: as above.
    let (i8_scratch, features): (&'static mut [i16; I8_SCRATCH], &'static mut [u8; FEATURES]) =
        unsafe { (&mut (*core::ptr::addr_of_mut!(I8_SCRATCH_BUF)).0, &mut *core::ptr::addr_of_mut!(FEATURES_BUF)) };
    let backbone = model::load(board::model_region(), i8_scratch.len())
        .model()
        .and_then(|m| Backbone::new(*m, &mut i8_scratch[..], &mut features[..]));
    let mut dev = Trainer { train: TrainDevice::new(KERNELS, buffers, backbone, FRAME_SAMPLES), kernel_counts: None };
    match mode {
        "uart" => tailor_firmware_sim::exit_after_serve(serve(&mut uart::Uart0::take(), &mut dev, bufs)),
        _ => {
            let rx = args.next().unwrap_or("tailor.h2d");
            let tx = args.next().unwrap_or("tailor.d2h");
            let mut io = match semi::Duplex::open(rx, tx) {
                Ok(io) => io,
                Err(e) => {
                    tailor_firmware_sim::fail_exit(format_args!("cannot open semihosting files {rx} / {tx}: {e:?}"))
                }
            };
            tailor_firmware_sim::exit_after_serve(serve(&mut io, &mut dev, bufs))
        }
    }
}
