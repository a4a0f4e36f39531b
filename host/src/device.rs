//! `tailor device`: verify an int8 model on an emulated Cortex-M4 (QEMU).
//!
//! 1. Checks that the model fits the board ([`crate::board::MPS2_AN386`]:
//!    its model region and the firmware's scratch), before anything runs.
//! 2. Builds the firmware in `firmware-sim/` once (`cargo build --release`;
//!    a no-op when nothing changed): the same ELF runs every model.
//! 3. Starts `qemu-system-arm -machine mps2-an386 -cpu cortex-m4
//!    -icount shift=0 ...` with the `.q8` written into the model region
//!    (`-device loader,file=M.q8,addr=0x00100000,force-raw=on`, as a probe
//!    flashes weights apart from code) and one of two transports for the
//!    protocol of [`tailor_core::protocol`]: semihosting files (two FIFOs in
//!    a temp directory, the fast path) or the CMSDK UART0 (a Unix socket).
//! 4. Checks the device's `Hello` (a ready model whose CRC and widths equal
//!    the `.q8`'s), streams the test images in batches, collects the
//!    predictions, every logit and the instruction counts, and compares
//!    them with the host's int8 inference of the same model.
//!
//! QEMU's stdout carries the firmware's defmt log (decoded with
//! `defmt-print` when installed, for error messages); its stderr carries
//! panics and HardFaults. Every wait has a deadline: a hang, a crash or a
//! missing QEMU gives an error that says which, with the stderr tail.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tailor_core::protocol::{self, FrameReader, Message, ModelState, RecvError, Stats};
use tailor_core::quant::QModel;

use crate::data::Split;

/// How the protocol reaches the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Transport {
    /// Semihosting `SYS_READ`/`SYS_WRITE` on two host FIFOs (fast).
    #[default]
    Semihosting,
    /// CMSDK UART0 (about 14 KB/s host → device under QEMU).
    Uart,
}

impl std::str::FromStr for Transport {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "semihosting" | "semi" => Ok(Transport::Semihosting),
            "uart" => Ok(Transport::Uart),
            _ => bail!("unknown transport `{s}` (semihosting or uart)"),
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Semihosting => "semihosting",
            Transport::Uart => "uart",
        })
    }
}

/// Arguments of `tailor device MODEL.q8 [--limit N] [--transport T] [--json] [--timeout S]`.
#[derive(Clone, Debug)]
pub struct DeviceArgs {
    /// The `.q8` int8 model.
    pub model: PathBuf,
    /// Only the first N test images (default: all 10,000).
    pub limit: Option<usize>,
    pub transport: Transport,
    /// Seconds for the whole run after the firmware is built (QEMU start,
    /// streaming, shutdown).
    pub timeout_secs: f64,
    /// Images per `Classify` (default: the device's `max_batch`).
    pub batch: Option<usize>,
    /// The data whose test split is streamed (default: Fashion-MNIST).
    pub data: crate::data::DataArgs,
    /// A prebuilt firmware ELF to run instead of building it.
    pub firmware: Option<PathBuf>,
    /// Print the report as JSON (for the CLI; [`run_device`] only returns it).
    pub json: bool,
    /// Keep the firmware's defmt log (decoded with `defmt-print`) in the report.
    pub log: bool,
    /// Keep each image's confidence in the report.
    pub per_image: bool,
    /// Emulated devices streaming at once, each a QEMU with its share of
    /// the images (default: [`default_jobs`]).
    pub jobs: Option<usize>,
}

/// Most devices `tailor device` runs at once.
pub const MAX_JOBS: usize = 64;

/// One QEMU per CPU the process may use: QEMU runs one guest CPU per host
/// thread, and its execution of the kernel is what streaming waits for.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_JOBS)
}

impl DeviceArgs {
    pub fn new(model: impl Into<PathBuf>) -> Self {
        DeviceArgs {
            model: model.into(),
            limit: None,
            transport: Transport::Semihosting,
            timeout_secs: 300.0,
            batch: None,
            data: crate::data::DataArgs::default(),
            firmware: None,
            json: false,
            log: false,
            per_image: false,
            jobs: None,
        }
    }
}

/// What [`run_device`] measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DeviceReport {
    pub model: PathBuf,
    pub dims: Vec<u32>,
    pub model_crc: u32,
    pub transport: String,
    /// The firmware ELF: the same for every model.
    pub firmware: PathBuf,
    /// Seconds `cargo build --release` of the firmware took (≈0 when it was
    /// up to date, and 0 with `--firmware`).
    pub firmware_build_secs: f64,
    pub fw_version: String,
    /// Accuracy of the device's predictions (0..1).
    pub device_accuracy: f64,
    /// Accuracy of the host's int8 predictions of the same images (0..1).
    pub host_accuracy: f64,
    /// Images where device and host predict the same class.
    pub agree: usize,
    pub total: usize,
    /// Indices of the first disagreeing images (at most 20).
    pub first_disagreements: Vec<usize>,
    /// Images whose every int32 logit equals the host's.
    pub logits_agree: usize,
    /// The device's confidences (softmax probability of its class, percent,
    /// one per image) and what they say.
    pub confidence: ConfidenceReport,
    /// Instructions per inference (SysTick under `-icount shift=0`).
    pub instructions_per_inference: f64,
    /// `instructions_per_inference` / multiply-accumulates per inference.
    pub instructions_per_mac: f64,
    /// Images per second of wall time while streaming.
    pub images_per_sec: f64,
    /// Wall time of the whole run (QEMU start to exit), seconds.
    pub wall_secs: f64,
    pub batch: usize,
    /// Emulated devices that streamed at once (each its share of the images).
    pub jobs: usize,
    pub device_stats: DeviceStats,
    /// The firmware's decoded defmt log, with `--log`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
}

/// What the device's confidences say, over the images streamed.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ConfidenceReport {
    /// Images whose confidence equals the host's, computed from its own
    /// int8 logits with the same code (`tailor_core::confidence`).
    pub agree: usize,
    /// Mean confidence (0..1) of the device's right predictions.
    pub mean_correct: f64,
    /// Mean confidence (0..1) of its wrong ones (0 if none).
    pub mean_wrong: f64,
    /// Expected calibration error: the mean over 10 equal-width confidence
    /// bins of |accuracy − mean confidence|, weighted by the bin's share of
    /// the images (0: confidences are accuracies).
    pub calibration_error: f64,
    /// Each image's confidence, percent (`tailor device --json --per-image`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub per_image: Vec<u8>,
}

impl ConfidenceReport {
    /// From each image's confidence (percent), whether it was right, and the
    /// host's confidences.
    pub fn new(conf: &[u8], right: &[bool], host: &[u8]) -> Self {
        let n = conf.len().min(right.len());
        let mean = |want: bool| {
            let v: Vec<f64> = (0..n).filter(|&i| right[i] == want).map(|i| conf[i] as f64 / 100.0).collect();
            if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        let mut bins = [(0usize, 0usize, 0.0f64); 10];
        for i in 0..n {
            let b = &mut bins[(conf[i] as usize / 10).min(9)];
            b.0 += 1;
            b.1 += right[i] as usize;
            b.2 += conf[i] as f64 / 100.0;
        }
        let ece = bins
            .iter()
            .filter(|b| b.0 > 0)
            .map(|&(c, r, s)| (r as f64 / c as f64 - s / c as f64).abs() * c as f64 / n as f64)
            .sum();
        ConfidenceReport {
            agree: (0..n).filter(|&i| host.get(i) == Some(&conf[i])).count(),
            mean_correct: mean(true),
            mean_wrong: mean(false),
            calibration_error: ece,
            per_image: Vec::new(),
        }
    }
}

/// The device's own counters (from its `Bye`).
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct DeviceStats {
    pub frames_ok: u32,
    pub frames_bad: u32,
    pub images: u64,
    pub instructions: u64,
}

impl From<Stats> for DeviceStats {
    fn from(s: Stats) -> Self {
        DeviceStats { frames_ok: s.frames_ok, frames_bad: s.frames_bad, images: s.images, instructions: s.instructions }
    }
}

impl DeviceReport {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("report serializes")
    }
}

impl fmt::Display for DeviceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "model            {} {:?} crc {:#010x}", self.model.display(), self.dims, self.model_crc)?;
        writeln!(
            f,
            "firmware         {} ({}, build {:.1} s)",
            self.firmware.display(),
            self.fw_version,
            self.firmware_build_secs
        )?;
        writeln!(f, "transport        {} (batch {}, {} device(s) at once)", self.transport, self.batch, self.jobs)?;
        writeln!(f, "device accuracy  {:.2} %", 100.0 * self.device_accuracy)?;
        writeln!(f, "host int8 acc.   {:.2} %", 100.0 * self.host_accuracy)?;
        writeln!(
            f,
            "agreement        {}/{}{}",
            self.agree,
            self.total,
            if self.agree == self.total { "" } else { "  MISMATCH" }
        )?;
        writeln!(
            f,
            "logits equal     {}/{}{}",
            self.logits_agree,
            self.total,
            if self.logits_agree == self.total { "" } else { "  MISMATCH" }
        )?;
        let c = &self.confidence;
        writeln!(
            f,
            "confidence       {:.1} % mean when right, {:.1} % when wrong; calibration error {:.3}; host's on {}/{}",
            100.0 * c.mean_correct,
            100.0 * c.mean_wrong,
            c.calibration_error,
            c.agree,
            self.total
        )?;
        writeln!(
            f,
            "instructions     {:.0} per inference, {:.3} per MAC",
            self.instructions_per_inference, self.instructions_per_mac
        )?;
        write!(f, "speed            {:.0} images/s ({:.1} s wall)", self.images_per_sec, self.wall_secs)?;
        if let Some(log) = &self.log {
            write!(f, "\nfirmware log (defmt):\n{log}")?;
        }
        Ok(())
    }
}

/// Multiply-accumulates per inference of a model with these layer widths.
pub fn macs(dims: &[u32]) -> u64 {
    dims.windows(2).map(|w| w[0] as u64 * w[1] as u64).sum()
}

// ---------------------------------------------------------------- models

/// Host int8 classes and every logit (bit-identical to the device) of any
/// `.q8` over the samples of `split` (as the device takes them).
pub fn host_predictions(model: &QModel<'_>, split: &Split) -> Result<(Vec<u8>, Vec<i32>)> {
    let inputs = crate::quantize::device_inputs(model, split)?;
    Ok(crate::quantize::int8_predict_logits(model, &inputs))
}

/// Refuses, before QEMU starts, a model the emulated board cannot hold.
pub fn check_fits(model: &QModel<'_>, board: &crate::board::Board) -> Result<()> {
    let spec = model.spec();
    match board.refuses(model.encoded_len() as u64, model.scratch_len() as u64, spec.outputs() as u64) {
        Some(why) => bail!("model {spec} does not fit {}: {why}", board.name),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------- firmware

/// The firmware crate: `$TAILOR_FIRMWARE_DIR`, else `firmware-sim/` beside `host/`.
pub fn firmware_dir() -> PathBuf {
    std::env::var_os("TAILOR_FIRMWARE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware-sim"))
}

static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// Builds the firmware (`cargo build --release` in `firmware-sim/`; cargo
/// makes it a no-op when nothing changed) and returns its ELF, the same
/// for every model, and the seconds the build took.
pub fn build_firmware() -> Result<(PathBuf, f64)> {
    build_firmware_bin("tailor-firmware-sim")
}

/// [`build_firmware`] for one of the firmware crate's images
/// (`tailor-firmware-sim`, or `tailor-firmware-train` for `device-train`).
pub fn build_firmware_bin(bin: &str) -> Result<(PathBuf, f64)> {
    let dir = firmware_dir();
    if !dir.join("Cargo.toml").exists() {
        bail!("firmware crate not found at {} (set TAILOR_FIRMWARE_DIR)", dir.display());
    }
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let t = Instant::now();
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(&dir).args(["build", "--release", "--bin", bin]);
    // Do not leak the parent cargo's build settings into the firmware build.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k == "RUSTFLAGS"
            || k == "CARGO_TARGET_DIR"
            || k == "CARGO_ENCODED_RUSTFLAGS"
            || k.starts_with("CARGO_BUILD_")
            || k.starts_with("CARGO_PROFILE_")
            || k == "CARGO_MAKEFLAGS"
        {
            cmd.env_remove(&k);
        }
    }
    let out = cmd.stdin(Stdio::null()).output().context("running cargo to build the firmware")?;
    if !out.status.success() {
        bail!("firmware build failed ({}):\n{}", out.status, tail(&String::from_utf8_lossy(&out.stderr), 40));
    }
    let elf = dir.join("target/thumbv7em-none-eabihf/release").join(bin);
    let elf = std::fs::canonicalize(&elf).with_context(|| format!("firmware ELF {}", elf.display()))?;
    Ok((elf, t.elapsed().as_secs_f64()))
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------- QEMU session

/// `std::io` → `embedded_io` adapter.
struct Eio<T>(T);
impl<T> embedded_io::ErrorType for Eio<T> {
    type Error = std::io::Error;
}
impl<T: Read> embedded_io::Read for Eio<T> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.0.read(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }
}
impl<T: Write> embedded_io::Write for Eio<T> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Owned copy of the device's `Hello`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelloInfo {
    /// The firmware's `PROTOCOL_VERSION`.
    pub protocol: u16,
    pub fw_version: String,
    pub model_state: ModelState,
    /// Why the model is not ready (empty when it is).
    pub model_detail: String,
    pub dims: Vec<u32>,
    pub model_crc: u32,
    pub max_batch: usize,
    pub frame_capacity: usize,
    pub counts_instructions: bool,
}

/// One batch's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchResult {
    pub classes: Vec<u8>,
    /// `classes.len() × OUT` logits if requested, else empty.
    pub logits: Vec<i32>,
    pub instructions: u64,
    /// The device's confidence in each prediction, percent (empty if it
    /// sends none).
    pub confidence: Vec<u8>,
}

/// A reply the device may give to any request.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    Hello(HelloInfo),
    Predictions { seq: u32, result: BatchResult },
    Error { code: protocol::ErrorCode, seq: u32, detail: String },
    Stats(Stats),
    SelfTest { passed: u32, failed: u32, detail: String },
    Bye(Stats),
    TrainReady { params: u32, max_batch: u32, ram_bytes: u32 },
    Trained { seq: u32, loss: f32, instructions: u64 },
    Evaluated { seq: u32, correct: u32, loss_sum: f32, instructions: u64, confidence: (u32, u32) },
    Params { offset: u32, data: Vec<f32> },
    Other(String),
}

/// An owned copy of a device's reply, as `recv` returns it (public for
/// the fuzz target of the host's side of the protocol).
pub fn owned(m: Message<'_>) -> Reply {
    match m {
        Message::Hello(h) => Reply::Hello(HelloInfo {
            protocol: h.protocol,
            fw_version: h.fw_version.to_string(),
            model_state: h.model_state,
            model_detail: h.model_detail.to_string(),
            dims: h.dims().to_vec(),
            model_crc: h.model_crc,
            max_batch: h.max_batch as usize,
            frame_capacity: h.frame_capacity as usize,
            counts_instructions: h.counts_instructions,
        }),
        Message::Predictions(p) => Reply::Predictions {
            seq: p.seq,
            result: BatchResult {
                classes: p.classes.to_vec(),
                logits: p.logits.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap())).collect(),
                instructions: p.instructions,
                confidence: p.confidence.to_vec(),
            },
        },
        Message::Error { code, seq, detail } => Reply::Error { code, seq, detail: detail.to_string() },
        Message::Stats(s) => Reply::Stats(s),
        Message::SelfTestReport { passed, failed, detail } => {
            Reply::SelfTest { passed, failed, detail: detail.to_string() }
        }
        Message::Bye(s) => Reply::Bye(s),
        Message::TrainReady { params, max_batch, ram_bytes } => Reply::TrainReady { params, max_batch, ram_bytes },
        Message::Trained { seq, loss, instructions } => Reply::Trained { seq, loss, instructions },
        Message::Evaluated { seq, correct, loss_sum, instructions, confidence_right, confidence_wrong } => {
            Reply::Evaluated { seq, correct, loss_sum, instructions, confidence: (confidence_right, confidence_wrong) }
        }
        Message::Params { offset, data } => Reply::Params {
            offset,
            data: data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        },
        other => Reply::Other(format!("{other:?}")),
    }
}

/// Collected output of a child stream.
type Sink = Arc<Mutex<Vec<u8>>>;

fn collect(mut r: impl Read + Send + 'static) -> (Sink, std::thread::JoinHandle<()>) {
    let sink: Sink = Arc::default();
    let s = sink.clone();
    let h = std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            s.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    (sink, h)
}

/// A running firmware in QEMU, with the protocol link open and the `Hello`
/// received.
pub struct Qemu {
    child: Arc<Mutex<Child>>,
    rx: Eio<Box<dyn Read + Send>>,
    tx: Eio<BufWriter<Box<dyn Write + Send>>>,
    /// Receive frame buffer (a `FrameReader` is rebuilt on it per reply;
    /// bytes read ahead are kept in `reader`).
    frame: Vec<u8>,
    pub hello: HelloInfo,
    stdout: Sink,
    stderr: Sink,
    elf: PathBuf,
    timed_out: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
    deadline_ms: Arc<AtomicU64>,
    started: Instant,
    dir: PathBuf,
    reader: ReaderState,
}

/// The frame reader's position in `Qemu::frame`.
#[derive(Default)]
struct ReaderState {
    pending: Vec<u8>,
}

static SESSION: AtomicU64 = AtomicU64::new(0);

impl Qemu {
    /// Starts QEMU with `elf` and the `.q8` bytes `model` in the board's
    /// model region (none: an empty region), opens the `transport`, waits
    /// for the `Hello`. `timeout` bounds everything until [`Qemu::finish`]
    /// (QEMU is killed then).
    pub fn start(elf: &Path, model: Option<&[u8]>, transport: Transport, timeout: Duration) -> Result<Qemu> {
        let started = Instant::now();
        let dir = std::env::temp_dir().join(format!(
            "tailor-qemu-{}-{}",
            std::process::id(),
            SESSION.fetch_add(1, Ordering::Relaxed)
        ));
        remove_stale_dirs();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        crate::signals::add_dir(&dir);
        let (h2d, d2h, sock) = (dir.join("tailor.h2d"), dir.join("tailor.d2h"), dir.join("uart.sock"));
        let q8 = dir.join("model.q8");
        let mut cmd = Command::new("qemu-system-arm");
        cmd.args([
            "-machine",
            "mps2-an386",
            "-cpu",
            "cortex-m4",
            "-nographic",
            "-monitor",
            "none",
            "-icount",
            "shift=0",
        ]);
        if let Some(bytes) = model {
            std::fs::write(&q8, bytes).with_context(|| format!("writing {}", q8.display()))?;
            let region = crate::board::MPS2_AN386.model_region.expect("the emulated board has a model region");
            cmd.arg("-device").arg(format!("loader,file={},addr={:#x},force-raw=on", q8.display(), region.base));
        }
        match transport {
            Transport::Semihosting => {
                for f in [&h2d, &d2h] {
                    let st = Command::new("mkfifo").arg(f).status().context("running mkfifo")?;
                    if !st.success() {
                        bail!("mkfifo {} failed", f.display());
                    }
                }
                cmd.args([
                    "-serial",
                    "null",
                    "-semihosting-config",
                    "enable=on,target=native,arg=tailor-fw,arg=semihosting,arg=tailor.h2d,arg=tailor.d2h",
                ]);
            }
            Transport::Uart => {
                cmd.args(["-serial", &format!("unix:{},server=on,wait=on", sock.display())]);
                cmd.args(["-semihosting-config", "enable=on,target=native,arg=tailor-fw,arg=uart"]);
            }
        }
        cmd.arg("-kernel")
            .arg(elf)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        die_with_parent(&mut cmd);
        let spawned = cmd.spawn();
        if spawned.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
            crate::signals::remove_dir(&dir);
        }
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!("qemu-system-arm not found: install it (apt-get install qemu-system-arm)");
            }
            Err(e) => return Err(e).context("starting qemu-system-arm"),
        };
        let pid = child.id();
        crate::signals::add_child(pid);
        let (stdout, _) = collect(child.stdout.take().unwrap());
        let (stderr, _) = collect(child.stderr.take().unwrap());
        let child = Arc::new(Mutex::new(child));
        let timed_out = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let deadline_ms = Arc::new(AtomicU64::new(timeout.as_millis() as u64));

        // Watchdog: kills QEMU at the deadline, and when QEMU is gone,
        // releases any FIFO open() the main thread is blocked in.
        {
            let (child, timed_out, done, deadline_ms, h2d, d2h) =
                (child.clone(), timed_out.clone(), done.clone(), deadline_ms.clone(), h2d.clone(), d2h.clone());
            std::thread::spawn(move || loop {
                std::thread::sleep(Duration::from_millis(10));
                if done.load(Ordering::Acquire) {
                    return;
                }
                let exited = {
                    let mut c = child.lock().unwrap();
                    // Unregistered before reaping, so a signal never kills a
                    // recycled pid.
                    crate::signals::remove_child(pid);
                    let running = matches!(c.try_wait(), Ok(None));
                    if running {
                        crate::signals::add_child(pid);
                    }
                    !running
                };
                if started.elapsed().as_millis() as u64 > deadline_ms.load(Ordering::Acquire) && !exited {
                    timed_out.store(true, Ordering::Release);
                    let mut c = child.lock().unwrap();
                    let _ = c.kill();
                    crate::signals::remove_child(pid);
                    let _ = c.wait();
                }
                if exited || timed_out.load(Ordering::Acquire) {
                    // O_NONBLOCK opens of the other ends wake blocked opens.
                    const O_NONBLOCK: i32 = 0o4000;
                    let _r = OpenOptions::new().read(true).custom_flags(O_NONBLOCK).open(&h2d);
                    let _w = OpenOptions::new().write(true).custom_flags(O_NONBLOCK).open(&d2h);
                    std::thread::sleep(Duration::from_millis(50));
                    if done.load(Ordering::Acquire) {
                        return;
                    }
                }
            });
        }

        let mut q = Qemu {
            child,
            rx: Eio(Box::new(std::io::empty())),
            tx: Eio(BufWriter::new(Box::new(std::io::sink()))),
            frame: vec![0u8; 1 << 16],
            hello: HelloInfo {
                protocol: 0,
                fw_version: String::new(),
                model_state: ModelState::Missing,
                model_detail: String::new(),
                dims: vec![],
                model_crc: 0,
                max_batch: 0,
                frame_capacity: 0,
                counts_instructions: false,
            },
            stdout,
            stderr,
            elf: elf.to_path_buf(),
            timed_out,
            done,
            deadline_ms,
            started,
            dir: dir.clone(),
            reader: ReaderState::default(),
        };
        let link: Result<(Box<dyn Read + Send>, Box<dyn Write + Send>)> = match transport {
            Transport::Semihosting => (|| {
                let w = File::options().write(true).open(&h2d)?;
                let r = File::open(&d2h)?;
                Ok((Box::new(r) as Box<dyn Read + Send>, Box::new(w) as Box<dyn Write + Send>))
            })(),
            Transport::Uart => (|| loop {
                match UnixStream::connect(&sock) {
                    Ok(s) => {
                        let w = s.try_clone()?;
                        return Ok((Box::new(s) as Box<dyn Read + Send>, Box::new(w) as Box<dyn Write + Send>));
                    }
                    Err(_) if !q.gone() && started.elapsed() < timeout => std::thread::sleep(Duration::from_millis(5)),
                    Err(e) => return Err(e.into()),
                }
            })(),
        };
        let (r, w) = link.map_err(|e| q.failure(&format!("opening the {transport} link: {e}")))?;
        q.rx = Eio(r);
        q.tx = Eio(BufWriter::with_capacity(1 << 16, w));
        match q.recv()? {
            // Messages change shape between versions: a stale firmware
            // would otherwise fail later with an undecodable reply.
            Reply::Hello(h) if h.protocol != protocol::PROTOCOL_VERSION => bail!(
                "{} speaks protocol {}, this tailor {}: rebuild the firmware (or drop --firmware)",
                elf.display(),
                h.protocol,
                protocol::PROTOCOL_VERSION
            ),
            Reply::Hello(h) => q.hello = h,
            other => return Err(q.failure(&format!("expected Hello, got {other:?}"))),
        }
        Ok(q)
    }

    fn gone(&self) -> bool {
        !matches!(self.child.lock().unwrap().try_wait(), Ok(None))
    }

    /// The firmware's defmt log so far (decoded if `defmt-print` is installed).
    pub fn log(&self) -> String {
        let raw = self.stdout.lock().unwrap().clone();
        decode_defmt(&self.elf, &raw)
    }

    /// An error that says why the device stopped answering.
    fn failure(&self, what: &str) -> anyhow::Error {
        // Give QEMU a moment to finish dying and flush its stderr.
        for _ in 0..50 {
            if self.gone() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(30));
        let stderr = String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned();
        let status = self.child.lock().unwrap().try_wait().ok().flatten();
        let why = if self.timed_out.load(Ordering::Acquire) {
            format!(
                "QEMU timed out after {:.1} s (device hung?)",
                self.deadline_ms.load(Ordering::Acquire) as f64 / 1000.0
            )
        } else if let Some(st) = status {
            format!("QEMU exited ({st})")
        } else {
            "device stopped answering".to_string()
        };
        let log = tail(&self.log(), 10);
        anyhow!("{what}: {why}\n--- qemu stderr (tail) ---\n{}\n--- firmware log (tail) ---\n{log}", tail(&stderr, 20))
    }

    /// Sends one message.
    pub fn send(&mut self, msg: &Message<'_>) -> Result<()> {
        if let Err(e) = protocol::send(&mut self.tx, msg) {
            return Err(self.failure(&format!("sending: {e}")));
        }
        Ok(())
    }

    /// Sends raw bytes (malformed frames in tests).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        let r = self.tx.0.write_all(bytes).and_then(|_| self.tx.0.flush());
        r.map_err(|e| self.failure(&format!("sending raw bytes: {e}")))
    }

    /// Receives one reply.
    pub fn recv(&mut self) -> Result<Reply> {
        // The FrameReader borrows our buffer per call; bytes it read past the
        // frame are kept in `reader.pending` and replayed first.
        struct Replay<'a, R> {
            pending: &'a mut Vec<u8>,
            inner: &'a mut R,
        }
        impl<R: embedded_io::Read<Error = std::io::Error>> embedded_io::ErrorType for Replay<'_, R> {
            type Error = std::io::Error;
        }
        impl<R: embedded_io::Read<Error = std::io::Error>> embedded_io::Read for Replay<'_, R> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if !self.pending.is_empty() {
                    let n = buf.len().min(self.pending.len());
                    buf[..n].copy_from_slice(&self.pending[..n]);
                    self.pending.drain(..n);
                    return Ok(n);
                }
                self.inner.read(buf)
            }
        }
        let mut replay = Replay { pending: &mut self.reader.pending, inner: &mut self.rx };
        let mut rd = FrameReader::new(&mut self.frame);
        let r = match rd.recv(&mut replay) {
            Ok(m) => Ok(owned(m)),
            Err(e) => Err(e),
        };
        let rest = rd.unread().to_vec();
        self.reader.pending.splice(0..0, rest);
        match r {
            Ok(m) => Ok(m),
            Err(RecvError::Frame(e)) => Err(anyhow!("malformed reply from the device: {e}")),
            Err(RecvError::Eof) => Err(self.failure("reading a reply: end of stream")),
            Err(RecvError::Io(e)) => Err(self.failure(&format!("reading a reply: {e}"))),
        }
    }

    /// Classifies `images` (n × the model's inputs) as one batch.
    pub fn classify(&mut self, seq: u32, images: &[u8], want_logits: bool) -> Result<BatchResult> {
        self.send(&Message::Classify { seq, want_logits, images })?;
        let n_in = self.hello.dims.first().copied().unwrap_or(1) as usize;
        match self.recv()? {
            Reply::Predictions { seq: s, result } if s == seq && result.classes.len() * n_in == images.len() => {
                Ok(result)
            }
            other => bail!("Classify #{seq}: unexpected reply {other:?}"),
        }
    }

    /// Runs the device's built-in checks (golden int8 values, kernels).
    pub fn self_test(&mut self) -> Result<(u32, u32, String)> {
        self.send(&Message::SelfTest)?;
        match self.recv()? {
            Reply::SelfTest { passed, failed, detail } => Ok((passed, failed, detail)),
            other => bail!("SelfTest: unexpected reply {other:?}"),
        }
    }

    /// Sends `Shutdown`, waits for `Bye` and for QEMU to exit with status 0.
    pub fn finish(self) -> Result<Stats> {
        self.finish_with_log().map(|(stats, _)| stats)
    }

    /// [`Self::finish`], also returning the firmware's whole defmt log.
    pub fn finish_with_log(mut self) -> Result<(Stats, String)> {
        self.send(&Message::Shutdown)?;
        let stats = match self.recv()? {
            Reply::Bye(s) => s,
            other => bail!("Shutdown: unexpected reply {other:?}"),
        };
        drop(std::mem::replace(&mut self.tx, Eio(BufWriter::new(Box::new(std::io::sink())))));
        loop {
            if let Some(st) = self.child.lock().unwrap().try_wait()? {
                if !st.success() {
                    return Err(self.failure("after Shutdown"));
                }
                break;
            }
            if self.timed_out.load(Ordering::Acquire) {
                return Err(self.failure("waiting for QEMU to exit"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // QEMU has exited: its stdout reader sees EOF shortly.
        std::thread::sleep(Duration::from_millis(20));
        Ok((stats, self.log()))
    }

    /// Seconds since QEMU was started.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Release);
        let mut c = self.child.lock().unwrap();
        crate::signals::remove_child(c.id());
        if matches!(c.try_wait(), Ok(None)) {
            let _ = c.kill();
        }
        let _ = c.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
        crate::signals::remove_dir(&self.dir);
    }
}

/// Makes the kernel SIGKILL QEMU when tailor dies, however it dies
/// (SIGKILL included, which no handler sees). Linux's parent-death signal
/// fires when the spawning *thread* exits, so QEMU is spawned from the
/// thread that runs the whole session.
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between
    // fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // tailor died between fork and prctl: the signal will never come.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Removes FIFO directories of earlier runs whose process is gone (killed
/// with SIGKILL, which leaves no chance to clean up).
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("tailor-qemu-")) else { continue };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Ignores SIGPIPE while it lives, then restores what was there (the
/// default in the CLI, ignored in a test harness).
struct IgnoreSigpipe(libc::sighandler_t);

impl IgnoreSigpipe {
    fn new() -> Self {
        // SAFETY: signal(2) only changes the disposition.
        IgnoreSigpipe(unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) })
    }
}

impl Drop for IgnoreSigpipe {
    fn drop(&mut self) {
        if self.0 != libc::SIG_ERR {
            // SAFETY: as above, restoring the disposition signal(2) returned.
            unsafe { libc::signal(libc::SIGPIPE, self.0) };
        }
    }
}

/// Decodes a defmt stream with `defmt-print -e ELF` (raw bytes are
/// summarized if it is not installed).
pub fn decode_defmt(elf: &Path, raw: &[u8]) -> String {
    if raw.is_empty() {
        return String::new();
    }
    let child = Command::new("defmt-print")
        .arg("-e")
        .arg(elf)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    match child {
        Ok(mut c) => {
            let mut stdin = c.stdin.take().unwrap();
            let raw = raw.to_vec();
            let t = std::thread::spawn(move || {
                let _ = stdin.write_all(&raw);
            });
            let out = c.wait_with_output();
            let _ = t.join();
            match out {
                Ok(o) => format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
                Err(e) => format!("(defmt-print failed: {e})"),
            }
        }
        Err(_) => format!("({} bytes of defmt log; `cargo install defmt-print` to read them)", raw.len()),
    }
}

// ---------------------------------------------------------------- the command

/// What one device returned for its share of the images.
struct Share {
    hello: HelloInfo,
    batch: usize,
    classes: Vec<u8>,
    logits: Vec<i32>,
    confidence: Vec<u8>,
    instructions: u64,
    /// When the share's last reply arrived.
    last_reply: Instant,
    stats: Stats,
    log: String,
}

/// Streams `inputs` (whole images of `n_in` bytes) through the started
/// device `q` in requests of `batch` images, then shuts it down.
fn stream_share(
    mut q: Qemu,
    inputs: &[u8],
    n_in: usize,
    batch: usize,
    bar: Option<&indicatif::ProgressBar>,
) -> Result<Share> {
    let n = inputs.len() / n_in;
    let (mut classes, mut logits, mut instructions) = (Vec::with_capacity(n), Vec::new(), 0u64);
    let mut confidence = Vec::with_capacity(n);
    for (seq, chunk) in inputs.chunks(batch * n_in).enumerate() {
        let r = q.classify(seq as u32, chunk, true)?;
        if r.confidence.len() != r.classes.len() {
            bail!("Classify #{seq}: {} confidences for {} predictions", r.confidence.len(), r.classes.len());
        }
        instructions += r.instructions;
        classes.extend_from_slice(&r.classes);
        logits.extend_from_slice(&r.logits);
        confidence.extend_from_slice(&r.confidence);
        if let Some(b) = bar {
            b.inc(r.classes.len() as u64);
        }
    }
    let last_reply = Instant::now();
    let hello = q.hello.clone();
    let (stats, log) = q.finish_with_log()?;
    Ok(Share { hello, batch, classes, logits, confidence, instructions, last_reply, stats, log })
}

/// `tailor device`: check the model against the board, build (or take)
/// the firmware, run the test set through it in QEMU with the model
/// flashed, and compare every class and logit with the host's int8 ones.
pub fn run_device(args: &DeviceArgs) -> Result<DeviceReport> {
    // Writes to QEMU's FIFOs and socket must fail with EPIPE when it dies
    // (a clear error), not kill tailor as main's SIGPIPE default would.
    let _sigpipe = IgnoreSigpipe::new();
    let data = crate::data::load(&args.data)?;
    let q8 = crate::quantize::load_or_quantize(&args.model, &data)?;
    let model = q8.model()?;
    let spec = *model.spec();
    check_fits(&model, &crate::board::MPS2_AN386).with_context(|| args.model.display().to_string())?;
    let mut test = data.test;
    if test.is_empty() {
        bail!("{}: no test samples to classify", data.source);
    }
    let n = match args.limit {
        None => test.len(),
        Some(n) if n == 0 || n > test.len() => {
            bail!("--limit {n}: expected 1..={} (the test samples in {})", test.len(), data.source)
        }
        Some(n) => n,
    };
    let n_in = spec.inputs();
    test.truncate(n);
    let inputs = crate::quantize::device_inputs(&model, &test)
        .with_context(|| format!("{} on {}", args.model.display(), data.source))?;
    let (host, host_logits) = crate::quantize::int8_predict_logits(&model, &inputs);
    let (elf, build_secs) = match &args.firmware {
        Some(f) => (f.clone(), 0.0),
        None => build_firmware()?,
    };

    let t0 = Instant::now();
    // Each device takes a contiguous share of the images (at least one
    // request's worth), so the shares' results concatenate in image order.
    let jobs = args.jobs.unwrap_or_else(default_jobs).clamp(1, MAX_JOBS).min(n.div_ceil(args.batch.unwrap_or(128)));
    let bounds: Vec<usize> = (0..=jobs).map(|j| j * n / jobs).collect();
    let ready = std::sync::Barrier::new(jobs + 1);
    let bytes = q8.bytes();
    let check = |hello: &HelloInfo| -> Result<usize> {
        if hello.model_state != ModelState::Ready {
            bail!("the device did not load {}: {:?}: {}", args.model.display(), hello.model_state, hello.model_detail);
        }
        if hello.model_crc != model.payload_crc() || hello.dims != spec.dims() {
            bail!(
                "the device runs model {:?} crc {:#010x}, but {} is {:?} crc {:#010x}",
                hello.dims,
                hello.model_crc,
                args.model.display(),
                spec.dims(),
                model.payload_crc()
            );
        }
        match args.batch {
            None => Ok(hello.max_batch.max(1)),
            Some(b) if b == 0 || b > hello.max_batch.max(1) => {
                bail!("--batch {b}: expected 1..={} (the device's largest request)", hello.max_batch.max(1))
            }
            Some(b) => Ok(b),
        }
    };
    let bar = crate::commands::progress(n as u64, "images", args.json);
    let (shares, t_stream) = std::thread::scope(|scope| {
        let workers: Vec<_> = bounds
            .windows(2)
            .map(|r| {
                let (share, ready, check, elf) = (&inputs[r[0] * n_in..r[1] * n_in], &ready, &check, &elf);
                let bar = bar.as_ref();
                // QEMU is spawned by the thread that runs its session (see
                // `die_with_parent`).
                scope.spawn(move || {
                    let timeout = Duration::from_secs_f64(args.timeout_secs);
                    let started = Qemu::start(elf, Some(bytes), args.transport, timeout)
                        .and_then(|q| check(&q.hello).map(|batch| (q, batch)));
                    ready.wait();
                    let (q, batch) = started?;
                    stream_share(q, share, n_in, batch, bar)
                })
            })
            .collect();
        ready.wait();
        let t_stream = Instant::now();
        let shares: Vec<Result<Share>> = workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| Err(anyhow!("a device thread panicked"))))
            .collect();
        (shares, t_stream)
    });
    let shares = shares.into_iter().collect::<Result<Vec<Share>>>()?;
    let stream_secs = shares.iter().map(|s| s.last_reply.saturating_duration_since(t_stream)).max().unwrap_or_default();
    let stream_secs = stream_secs.as_secs_f64().max(1e-9);
    let (batch, fw_version) = (shares[0].batch, shares[0].hello.fw_version.clone());
    let mut device = Vec::with_capacity(n);
    let mut device_logits = Vec::with_capacity(n * spec.outputs());
    let mut device_conf = Vec::with_capacity(n);
    let (mut instructions, mut stats, mut log) = (0u64, Stats::default(), String::new());
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    for s in &shares {
        device.extend_from_slice(&s.classes);
        device_logits.extend_from_slice(&s.logits);
        device_conf.extend_from_slice(&s.confidence);
        instructions += s.instructions;
        stats.frames_ok += s.stats.frames_ok;
        stats.frames_bad += s.stats.frames_bad;
        stats.images += s.stats.images;
        stats.instructions += s.stats.instructions;
        log.push_str(&s.log);
    }
    let wall_secs = t0.elapsed().as_secs_f64();

    let acc = |p: &[u8]| p.iter().zip(&test.labels).filter(|(a, b)| a == b).count() as f64 / n as f64;
    let disagree: Vec<usize> = (0..n).filter(|&i| device[i] != host[i]).collect();
    let o = spec.outputs();
    let logits_agree =
        (0..n).filter(|&i| device_logits.get(i * o..(i + 1) * o) == Some(&host_logits[i * o..][..o])).count();
    let ipi = instructions as f64 / n as f64;
    let scale = model.layer(spec.depth() - 1).params.out_scale;
    let host_conf: Vec<u8> =
        host_logits.chunks_exact(o).map(|z| tailor_core::confidence::of_int8_logits(z, scale)).collect();
    let right: Vec<bool> = (0..n).map(|i| device[i] == test.labels[i]).collect();
    let mut confidence = ConfidenceReport::new(&device_conf, &right, &host_conf);
    if args.per_image {
        confidence.per_image = device_conf;
    }
    Ok(DeviceReport {
        model: args.model.clone(),
        dims: spec.dims().to_vec(),
        model_crc: model.payload_crc(),
        transport: args.transport.to_string(),
        firmware: elf,
        firmware_build_secs: build_secs,
        fw_version,
        device_accuracy: acc(&device),
        host_accuracy: acc(&host),
        agree: n - disagree.len(),
        total: n,
        first_disagreements: disagree.into_iter().take(20).collect(),
        logits_agree,
        confidence,
        instructions_per_inference: ipi,
        instructions_per_mac: ipi / spec.macs() as f64,
        images_per_sec: n as f64 / stream_secs,
        wall_secs,
        batch,
        jobs,
        device_stats: stats.into(),
        log: args.log.then_some(log),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tailor_core::protocol::{Backend, Buffers, ServeEnd};

    /// The device loop of `tailor_core::protocol::serve`, run in-process
    /// over a socket pair with the golden int8 model: the same protocol the
    /// firmware speaks, without QEMU.
    struct Golden(QModel<'static>, Vec<i16>);
    impl Backend for Golden {
        fn fw_version(&self) -> &str {
            "in-process"
        }
        fn dims(&self) -> &[u32] {
            self.0.spec().dims()
        }
        fn model_crc(&self) -> u32 {
            7
        }
        fn classify(&mut self, pixels: &[u8], logits: &mut [i32]) -> usize {
            self.0.classify(&tailor_core::quant::QKernels::BEST, pixels, &mut self.1, logits)
        }
    }

    #[test]
    fn confidence_summary_and_calibration_error() {
        // 95 % sure and right twice; 55 % sure, right once and wrong once.
        let r = ConfidenceReport::new(&[95, 95, 55, 55], &[true, true, true, false], &[95, 95, 55, 54]);
        assert_eq!(r.agree, 3);
        assert!((r.mean_correct - (0.95 + 0.95 + 0.55) / 3.0).abs() < 1e-12, "{r:?}");
        assert!((r.mean_wrong - 0.55).abs() < 1e-12, "{r:?}");
        // Bin 90–99 %: accuracy 1 vs 0.95; bin 50–59 %: 0.5 vs 0.55; half the images each.
        assert!((r.calibration_error - 0.05).abs() < 1e-12, "{r:?}");
        let none = ConfidenceReport::new(&[], &[], &[]);
        assert_eq!((none.agree, none.calibration_error, none.mean_wrong), (0, 0.0, 0.0));
    }

    #[test]
    fn in_process_device_loop_over_a_socket_pair() {
        use tailor_core::quant::golden;
        let (a, b) = UnixStream::pair().unwrap();
        let dev = std::thread::spawn(move || {
            let mut io = Eio(a);
            let (mut rx, mut classes, mut logits) = (vec![0u8; 4096], vec![0u8; 64], vec![0u8; 64 * 4 * 2]);
            let mut confidence = vec![0u8; 64];
            let end = protocol::serve(
                &mut io,
                &mut Golden(QModel::parse(&Box::leak(Box::new(golden::blob())).0).unwrap(), vec![0; 64]),
                Buffers { rx: &mut rx, classes: &mut classes, logits: &mut logits, confidence: &mut confidence },
            );
            matches!(end, ServeEnd::Shutdown(_))
        });
        let mut io = Eio(b);
        let mut buf = vec![0u8; 4096];
        let mut rd = FrameReader::new(&mut buf);
        let hello = owned(rd.recv(&mut io).unwrap());
        assert!(matches!(&hello, Reply::Hello(h) if h.dims == [10, 5, 3, 2] && h.model_crc == 7), "{hello:?}");
        let mut imgs = golden::INPUT.to_vec();
        imgs.extend(golden::INPUT.iter().rev());
        protocol::send(&mut io, &Message::Classify { seq: 1, want_logits: true, images: &imgs }).unwrap();
        let Reply::Predictions { seq: 1, result } = owned(rd.recv(&mut io).unwrap()) else { panic!() };
        assert_eq!(result.classes[0] as usize, golden::EXPECTED_CLASS);
        assert_eq!(&result.logits[..2], &golden::EXPECTED_LOGITS);
        // Garbage, then the device still answers.
        embedded_io::Write::write_all(&mut io, &[1, 2, 3, 0]).unwrap();
        assert!(matches!(owned(rd.recv(&mut io).unwrap()), Reply::Error { .. }));
        protocol::send(&mut io, &Message::Shutdown).unwrap();
        assert!(matches!(owned(rd.recv(&mut io).unwrap()), Reply::Bye(s) if s.images == 2 && s.frames_bad == 1));
        assert!(dev.join().unwrap());
    }
}
