//! On-target tests, run in QEMU by `cargo test` (runner: run-qemu.sh).
//!
//! A tiny harness (`harness = false`): each test returns pass/fail, the
//! summary line `N passed, M failed` goes to semihosting stderr, and QEMU
//! exits 1 if anything failed (a panic or HardFault also exits 1).
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, heprintln};
use defmt_semihosting as _;
use tailor_core::protocol::{self, Buffers, ErrorCode, Message, ServeEnd, Stats, MAX_OUT};
use tailor_core::quant::{QKernels, QModel};
use tailor_firmware_sim::{board, counter, model, selftest, Device};

tailor_firmware_sim::fault_handlers!();

/// In-memory duplex pipe over static buffers.
struct Pipe<'a> {
    input: &'a [u8],
    pos: usize,
    output: &'a mut [u8],
    written: usize,
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
        let n = buf.len().min(self.output.len() - self.written);
        if n == 0 {
            return Err(embedded_io::ErrorKind::OutOfMemory);
        }
        self.output[self.written..self.written + n].copy_from_slice(&buf[..n]);
        self.written += n;
        Ok(n)
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

static mut WIRE: [u8; 24 * 1024] = [0; 24 * 1024];
static mut OUT: [u8; 8 * 1024] = [0; 8 * 1024];
static mut RX: [u8; 4096] = [0; 4096];
static mut SCRATCH: [i16; 4096] = [0; 4096];

/// The model the runner flashed (`run-qemu.sh`: `models/default.q8`).
fn flashed() -> QModel<'static> {
    let region = board::model_region();
    let n = QModel::announced_len(region).expect("a .q8 in the model region");
    QModel::parse(&region[..n]).expect("a valid .q8")
}

fn images() -> [u8; 3 * 784] {
    let mut rng = tailor_core::rng::Rng::new(99);
    core::array::from_fn(|_| if rng.below(2) == 0 { 0 } else { rng.below(256) as u8 })
}

/// The device loop over an in-memory pipe: predictions equal direct
/// inference, every malformed frame gets an Error and the next request works.
fn protocol_serve(out: &mut dyn core::fmt::Write) -> bool {
    // SAFETY: single-threaded test, each static used once here.
    let (wire, outb, rx, scratch) = unsafe {
        (
            &mut *core::ptr::addr_of_mut!(WIRE),
            &mut *core::ptr::addr_of_mut!(OUT),
            &mut *core::ptr::addr_of_mut!(RX),
            &mut *core::ptr::addr_of_mut!(SCRATCH),
        )
    };
    let model = flashed();
    let imgs = images();
    let mut n = 0;
    let put = |m: &Message<'_>, wire: &mut [u8], n: &mut usize| {
        *n += protocol::encode_to_slice(m, &mut wire[*n..]).unwrap();
    };
    let classify = Message::Classify { seq: 7, want_logits: true, images: &imgs };
    put(&Message::Ping { nonce: 3 }, wire, &mut n);
    put(&classify, wire, &mut n);
    // Bad CRC.
    let start = n;
    put(&Message::Ping { nonce: 4 }, wire, &mut n);
    wire[start + 2] ^= 0x40;
    put(&classify, wire, &mut n);
    // Unknown tag.
    {
        let mut w: &mut [u8] = &mut wire[n..];
        let before = w.len();
        protocol::send_raw_body(&mut w, &[200, 1, 2]).unwrap();
        n += before - w.len();
    }
    put(&classify, wire, &mut n);
    // Truncated (cut inside its last block).
    let start = n;
    put(&Message::Classify { seq: 1, want_logits: false, images: &[9; 100] }, wire, &mut n);
    n -= 4;
    wire[n] = 0;
    n += 1;
    let _ = start;
    put(&classify, wire, &mut n);
    // Oversized: more than the 4 KiB frame buffer.
    wire[n..n + 5000].fill(0x55);
    n += 5000;
    wire[n] = 0;
    n += 1;
    put(&classify, wire, &mut n);
    put(&Message::Shutdown, wire, &mut n);

    let mut pipe = Pipe { input: &wire[..n], pos: 0, output: outb, written: 0 };
    let (mut classes, mut logits) = ([0u8; 4], [0u8; 4 * 4 * MAX_OUT]);
    let end = protocol::serve(
        &mut pipe,
        &mut Device::new(true, scratch),
        Buffers { rx, classes: &mut classes, logits: &mut logits },
    );
    let written = pipe.written;
    let ok_end = matches!(end, ServeEnd::Shutdown(Stats { frames_bad: 4, images: 15, .. }));
    if !ok_end {
        let _ = write!(out, "serve ended {end:?}; ");
        return false;
    }
    // Expected classes and logits, computed directly.
    let mut want = [[0i32; 16]; 3];
    let mut want_c = [0u8; 3];
    let mut s = [0i16; 4096];
    for i in 0..3 {
        want_c[i] = model.classify(&QKernels::BEST, &imgs[i * 784..][..784], &mut s, &mut want[i]) as u8;
    }
    let out_n = model.spec().outputs();
    let expect_errors = [ErrorCode::BadCrc, ErrorCode::UnknownTag, ErrorCode::Cobs, ErrorCode::Oversized];
    let mut k = 0;
    let mut preds = 0;
    for f in outb[..written].split_mut(|&b| b == 0).filter(|f| !f.is_empty()) {
        let m = match Message::decode_frame(f) {
            Ok(m) => m,
            Err(e) => {
                let _ = write!(out, "reply {k} undecodable: {e}; ");
                return false;
            }
        };
        let good = match (k, m.clone()) {
            (0, Message::Hello(h)) => {
                h.nonce == 0 && h.dims() == model.spec().dims() && h.model_crc == model.payload_crc()
            }
            (1, Message::Hello(h)) => h.nonce == 3,
            (k, Message::Predictions(p)) if k % 2 == 0 && k <= 10 => {
                preds += 1;
                p.seq == 7
                    && p.classes == &want_c[..]
                    && p.instructions > 0
                    && (0..3).all(|i| (0..out_n).all(|j| p.logit(i, j, out_n) == Some(want[i][j])))
            }
            (k, Message::Error { code, .. }) if k % 2 == 1 && (3..=9).contains(&k) => {
                code == expect_errors[(k - 3) / 2]
            }
            (11, Message::Bye(_)) => true,
            _ => false,
        };
        if !good {
            let _ = write!(out, "reply {k} unexpected: {m:?}; ");
            return false;
        }
        k += 1;
    }
    k == 12 && preds == 5
}

/// SysTick counts: an inference takes at least one MAC per weight.
fn instruction_counter(out: &mut dyn core::fmt::Write) -> bool {
    let imgs = images();
    let m = flashed();
    let mut l = [0i32; 16];
    let mut s = [0i16; 4096];
    let t0 = counter::instructions();
    m.classify(&QKernels::BEST, &imgs[..784], &mut s, &mut l);
    let spent = counter::instructions() - t0;
    let macs = m.spec().macs() as u64;
    let _ = write!(out, "[{spent} instructions per inference, {} per MAC x1000] ", spent * 1000 / macs);
    spent >= macs / 2 && spent < macs * 10
}

/// The model region holds what the runner flashed, found through the
/// linker's symbols, and the device loads it with its real scratch size.
fn model_region_loads(out: &mut dyn core::fmt::Write) -> bool {
    let region = board::model_region();
    let _ = write!(out, "[region {:#x}, {} bytes] ", region.as_ptr() as usize, region.len());
    let loaded = model::load(region, model::SCRATCH_LEN);
    region.as_ptr() as usize == 0x0010_0000 && region.len() == 3 << 20 && loaded.model().is_some()
}

/// A region without a model, or with a corrupt one, is reported, not run.
fn missing_or_corrupt_model_is_reported(out: &mut dyn core::fmt::Write) -> bool {
    static ZEROS: [u8; 64] = [0; 64];
    let missing =
        matches!(model::load(&ZEROS, 4096), model::Loaded::Failed(tailor_core::protocol::ModelState::Missing, _));
    let region = board::model_region();
    let n = QModel::announced_len(region).unwrap_or(0);
    // Too little scratch for the flashed model.
    let big = matches!(model::load(region, 8), model::Loaded::Failed(tailor_core::protocol::ModelState::TooLarge, _));
    let _ = write!(out, "[missing {missing}, too large {big}, {n} bytes] ");
    missing && big
}

const TESTS: &[(&str, selftest::Check)] = &[
    ("model_region_loads", model_region_loads),
    ("missing_or_corrupt_model_is_reported", missing_or_corrupt_model_is_reported),
    ("golden_values", selftest::golden_values),
    ("kernels_match_naive", selftest::kernels_match_naive),
    ("requant_matches_reference", selftest::requant_matches_reference),
    ("model_kernels_agree", selftest::model_kernels_agree),
    ("protocol_serve", protocol_serve),
    ("instruction_counter", instruction_counter),
];

#[entry]
fn main() -> ! {
    counter::start();
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in TESTS {
        let mut detail = heapless::String::<512>::new();
        if test(&mut detail) {
            passed += 1;
            heprintln!("test {} ... ok {}", name, detail.as_str());
        } else {
            failed += 1;
            heprintln!("test {} ... FAILED: {}", name, detail.as_str());
        }
    }
    heprintln!("{} passed, {} failed", passed, failed);
    debug::exit(if failed == 0 { debug::EXIT_SUCCESS } else { debug::EXIT_FAILURE });
    #[allow(clippy::empty_loop)]
    loop {}
}
