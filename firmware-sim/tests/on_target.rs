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
use tailor_core::confidence;
use tailor_core::gemm::Kernels;
use tailor_core::protocol::{
    self, Backend, Buffers, ErrorCode, Message, ModelState, ServeEnd, Stats, TrainRefusal, MAX_OUT,
};
use tailor_core::quant::{QKernels, QModel};
use tailor_core::session::{SessionBuffers, SessionSetup, TrainSession};
use tailor_core::train_device::TrainDevice;
use tailor_core::train_golden as golden;
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
    let (mut classes, mut logits, mut confidence) = ([0u8; 4], [0u8; 4 * 4 * MAX_OUT], [0u8; 4]);
    let end = protocol::serve(
        &mut pipe,
        &mut Device::new(true, scratch),
        Buffers { rx, classes: &mut classes, logits: &mut logits, confidence: &mut confidence },
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
    let scale = model.layer(model.spec().depth() - 1).params.out_scale;
    let want_conf: [u8; 3] = core::array::from_fn(|i| confidence::of_int8_logits(&want[i][..out_n], scale));
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
                    && p.confidence == &want_conf[..]
                    && want_conf.iter().all(|&c| c <= 100 && c as usize * out_n >= 100)
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

/// The optimizers' steps and a whole training run (forward, cross-entropy
/// with libm's `exp`/`log`, backward, the fused update) give the bits the
/// host computes (`tailor_core::train_golden`, pinned by a host test).
fn optimizer_golden(out: &mut dyn core::fmt::Write) -> bool {
    let mut ok = true;
    for (i, (name, opt)) in golden::OPTIMIZERS.iter().enumerate() {
        let steps = golden::optimizer_steps(opt);
        if let Some(j) = golden::first_difference(&steps, &golden::EXPECTED_STEPS[i]) {
            let _ = write!(out, "{name} step: param {j} is {:#010x}; ", steps[j].to_bits());
            ok = false;
        }
        let mut bufs = golden::RunBuffers::new();
        let losses = match golden::training_run(&Kernels::PORTABLE, opt, &mut bufs) {
            Ok(l) => l,
            Err(e) => {
                let _ = write!(out, "{name} run refused: {e}; ");
                ok = false;
                continue;
            }
        };
        if let Some(j) = golden::first_difference(&losses, &golden::EXPECTED_LOSSES[i]) {
            let _ = write!(out, "{name} run: loss {j} is {:#010x}; ", losses[j].to_bits());
            ok = false;
        }
        if let Some(j) = golden::first_difference(&bufs.params, &golden::EXPECTED_PARAMS[i]) {
            let _ = write!(out, "{name} run: param {j} is {:#010x}; ", bufs.params[j].to_bits());
            ok = false;
        }
    }
    if ok {
        let _ = write!(out, "[sgd, momentum, adam: steps, losses and weights bit-equal to the host's] ");
    }
    ok
}

/// A training device for the serve loop: the core's `TrainDevice` on
/// `static`s (as `tailor-firmware-train` holds it, without the int8
/// backbone).
struct Trainer(TrainDevice<'static>);

impl Backend for Trainer {
    fn fw_version(&self) -> &str {
        "on-target trainer"
    }
    fn model_state(&self) -> (ModelState, &str) {
        (ModelState::Missing, "trains only")
    }
    fn dims(&self) -> &[u32] {
        &[]
    }
    fn model_crc(&self) -> u32 {
        0
    }
    fn classify(&mut self, _: &[u8], _: &mut [i32]) -> usize {
        0
    }
    fn train_setup(&mut self, setup: &SessionSetup, head: bool) -> Result<(u32, u32, u32), TrainRefusal> {
        self.0.train_setup(setup, head, |_, _| {})
    }
    fn train_batch(&mut self, lr: f32, labels: &[u8], pixels: &[u8]) -> Result<f32, TrainRefusal> {
        self.0.train_batch(lr, labels, pixels)
    }
    fn params(&self, offset: usize, out: &mut [f32]) -> Result<usize, TrainRefusal> {
        self.0.params(offset, out)
    }
}

const T_BATCH: usize = 4;
static mut T_PARAMS: [f32; golden::PARAMS] = [0.0; golden::PARAMS];
static mut T_STATE: [f32; golden::PARAMS] = [0.0; golden::PARAMS];
static mut T_SCRATCH: [f32; golden::SPEC.train_scratch(1)] = [0.0; golden::SPEC.train_scratch(1)];
static mut T_WORKSPACE: [f32; golden::SPEC.activations(T_BATCH)] = [0.0; golden::SPEC.activations(T_BATCH)];
static mut T_WIRE: [u8; 4096] = [0; 4096];
static mut T_OUT: [u8; 4096] = [0; 4096];
static mut T_RX: [u8; 1024] = [0; 1024];

/// Bad training frames (a batch before the setup, a label out of range, a
/// truncated batch, more samples than the device's buffer, an empty one)
/// each get an `Error` with their `seq`, the weights read back after each
/// are bit-identical to those before it, and the next good batch trains
/// exactly as a session that never saw the bad ones.
fn bad_training_frames(out: &mut dyn core::fmt::Write) -> bool {
    // SAFETY: single-threaded test, each static used once here.
    let (params, state, scratch, workspace, wire, outb, rx) = unsafe {
        (
            &mut *core::ptr::addr_of_mut!(T_PARAMS),
            &mut *core::ptr::addr_of_mut!(T_STATE),
            &mut *core::ptr::addr_of_mut!(T_SCRATCH),
            &mut *core::ptr::addr_of_mut!(T_WORKSPACE),
            &mut *core::ptr::addr_of_mut!(T_WIRE),
            &mut *core::ptr::addr_of_mut!(T_OUT),
            &mut *core::ptr::addr_of_mut!(T_RX),
        )
    };
    let (opt, lr) = (golden::OPTIMIZERS[1].1, 0.1);
    let px = &golden::PIXELS;
    let mut n = 0;
    let mut put = |m: &Message<'_>| n += protocol::encode_to_slice(m, &mut wire[n..]).unwrap();
    let read = Message::ReadParams { offset: 0, count: golden::PARAMS as u32 };
    put(&Message::TrainBatch { seq: 1, lr, labels: &[0], pixels: &px[..4] });
    let dims = core::array::from_fn(|i| golden::SPEC.dims().get(i).copied().unwrap_or(0));
    let (mean, std) = (0.25, 0.5);
    put(&Message::TrainSetup { head: false, n_dims: 3, dims, optimizer: opt, seed: golden::SEED, mean, std });
    put(&Message::TrainBatch { seq: 2, lr, labels: &golden::LABELS[..2], pixels: &px[..8] });
    put(&read);
    let five = [0u8; 4 * (T_BATCH + 1)];
    let bad: [(&[u8], &[u8]); 4] = [
        (&[1, 2], &px[..8]),            // label 2 of 2 classes
        (&[0, 1], &px[..7]),            // truncated
        (&[0; T_BATCH + 1], &five[..]), // larger than the workspace
        (&[], &[]),                     // empty
    ];
    for (i, (labels, pixels)) in bad.iter().enumerate() {
        put(&Message::TrainBatch { seq: 10 + i as u32, lr, labels, pixels });
        put(&read);
    }
    put(&Message::TrainBatch { seq: 3, lr, labels: &golden::LABELS, pixels: px });
    put(&read);
    put(&Message::Shutdown);

    let bufs = SessionBuffers { params, state, scratch, workspace };
    let mut dev = Trainer(TrainDevice::new(Kernels::PORTABLE, bufs, None, T_BATCH));
    let mut pipe = Pipe { input: &wire[..n], pos: 0, output: outb, written: 0 };
    let (mut c, mut l, mut k) = ([0u8; 1], [0u8; 4 * 64], [0u8; 1]);
    let end = protocol::serve(&mut pipe, &mut dev, Buffers { rx, classes: &mut c, logits: &mut l, confidence: &mut k });
    if !matches!(end, ServeEnd::Shutdown(_)) {
        let _ = write!(out, "serve ended {end:?}; ");
        return false;
    }
    // The same two good batches in a session of its own.
    let mut want = golden::RunBuffers::new();
    let setup = SessionSetup { spec: golden::SPEC, optimizer: opt, seed: golden::SEED, input: golden::INPUT };
    let golden::RunBuffers { params: p, state: st, scratch: sc, workspace: ws } = &mut want;
    let mut s = TrainSession::new(&setup, SessionBuffers { params: p, state: st, scratch: sc, workspace: ws }).unwrap();
    s.train_batch(&Kernels::PORTABLE, lr, &golden::LABELS[..2], &px[..8]).unwrap();
    let mut after_one = [0u32; golden::PARAMS];
    for (b, v) in after_one.iter_mut().zip(s.params()) {
        *b = v.to_bits();
    }
    s.train_batch(&Kernels::PORTABLE, lr, &golden::LABELS, px).unwrap();
    let mut after_two = [0u32; golden::PARAMS];
    for (b, v) in after_two.iter_mut().zip(s.params()) {
        *b = v.to_bits();
    }
    // Replies, in order: Hello, Error (no run), TrainReady, Trained, Params,
    // 4 × (Error, Params), Trained, Params, Bye.
    let written = pipe.written;
    let mut k = 0;
    let mut errors = 0;
    for f in outb[..written].split_mut(|&b| b == 0).filter(|f| !f.is_empty()) {
        let m = match Message::decode_frame(f) {
            Ok(m) => m,
            Err(e) => {
                let _ = write!(out, "reply {k} undecodable: {e}; ");
                return false;
            }
        };
        let same = |data: &[u8], want: &[u32]| {
            data.len() == 4 * want.len()
                && data.chunks_exact(4).zip(want).all(|(b, w)| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) == *w)
        };
        let good = match (k, &m) {
            (0, Message::Hello(_)) => true,
            (1, Message::Error { code: ErrorCode::Training, seq: 1, .. }) => true,
            (2, Message::TrainReady { params, max_batch, .. }) => {
                *params as usize == golden::PARAMS && *max_batch as usize == T_BATCH
            }
            (3, Message::Trained { seq: 2, .. }) => true,
            (13, Message::Trained { seq: 3, .. }) => true,
            (k, Message::Error { code: ErrorCode::Training, seq, detail }) if (5..=11).contains(&k) && k % 2 == 1 => {
                errors += 1;
                let _ = write!(out, "[{detail}] ");
                *seq == 10 + (k as u32 - 5) / 2
            }
            (k, Message::Params { offset: 0, data }) if (4..=12).contains(&k) && k % 2 == 0 => same(data, &after_one),
            (14, Message::Params { offset: 0, data }) => same(data, &after_two),
            (15, Message::Bye(_)) => true,
            _ => false,
        };
        if !good {
            let _ = write!(out, "reply {k} unexpected: {m:?}; ");
            return false;
        }
        k += 1;
    }
    k == 16 && errors == 4 && after_one != after_two
}

/// `micromath`'s approximate `exp` (4 series terms on the fraction of
/// `x·log2 e`).
fn fast_exp(x: f32) -> f32 {
    use micromath::F32Ext;
    // Its exponent arithmetic is only meant for the range of f32 results.
    if x < -80.0 {
        return 0.0;
    }
    x.exp()
}

/// `micromath`'s `exp` against `libm`'s `expf` for the confidence's
/// softmax: instructions per call (SysTick under `-icount shift=0`) and the
/// largest error of a softmax probability over random 10-class logits. The
/// device uses libm's (cheaper here, see the README); this keeps the
/// measurement that decided it.
fn softmax_exp_cost_and_error(out: &mut dyn core::fmt::Write) -> bool {
    const CALLS: u32 = 1000;
    let per_call = |exp: fn(f32) -> f32| {
        let mut acc = 0.0f32;
        let t0 = counter::instructions();
        for i in 0..CALLS {
            // Softmax arguments: z − max, in [-20, 0].
            acc += exp(core::hint::black_box(-(i as f32) * 0.02));
        }
        let spent = counter::instructions() - t0;
        core::hint::black_box(acc);
        spent * 10 / CALLS as u64
    };
    let (fast, slow) = (per_call(fast_exp), per_call(confidence::libm_exp));
    let mut rng = tailor_core::rng::Rng::new(17);
    let mut worst = 0.0f32;
    let mut pct_differ = 0;
    let (mut t_fast, mut t_slow) = (0u64, 0u64);
    const SETS: u32 = 500;
    for _ in 0..SETS {
        let z: [f32; 10] = core::array::from_fn(|_| (rng.below(4001) as f32 - 2000.0) / 100.0);
        let (mut a, mut b) = ([0f32; 10], [0f32; 10]);
        confidence::softmax(&z, &mut a, fast_exp);
        confidence::softmax(&z, &mut b, confidence::libm_exp);
        for (x, y) in a.iter().zip(&b) {
            worst = worst.max((x - y).abs());
        }
        let t0 = counter::instructions();
        let pf = confidence::top_probability(core::hint::black_box(&z), fast_exp);
        let t1 = counter::instructions();
        let ps = confidence::top_probability(core::hint::black_box(&z), confidence::libm_exp);
        let t2 = counter::instructions();
        t_fast += t1 - t0;
        t_slow += t2 - t1;
        pct_differ += (confidence::percent(pf) != confidence::percent(ps)) as u32;
    }
    let _ = write!(
        out,
        "[exp per call x10: micromath {fast}, libm {slow}; 10-class confidence: micromath {}, libm {} instructions; \
         max |p - p_libm| {:.6}; percent differs on {pct_differ}/{SETS}] ",
        t_fast / SETS as u64,
        t_slow / SETS as u64,
        worst
    );
    fast > 0 && slow > 0 && worst < 5e-3
}

/// Operands of the f32 kernel tests: the 784-32-10 model's largest shapes
/// at batch 8 (and a `dy` for up to 1,024 outputs).
static mut F_X: [f32; 8 * 784] = [0.0; 8 * 784];
static mut F_W: [f32; 32 * 784] = [0.0; 32 * 784];
static mut F_DY: [f32; 1024] = [0.0; 1024];
static mut F_OUT: [[f32; 8 * 784]; 2] = [[0.0; 8 * 784]; 2];

/// `x`, `w`, `dy` and two output buffers.
type Operands = (&'static [f32], &'static [f32], &'static [f32], [&'static mut [f32]; 2]);

/// The f32 operands, filled from `seed`: `x` ReLU-like (zeros of both signs,
/// so that it also serves as the input gradient's mask).
fn f32_operands(seed: u64) -> Operands {
    // SAFETY: single-threaded test; each static is borrowed here only, and
    // the tests that call this do not overlap.
    let (x, w, dy, out) = unsafe {
        (
            &mut *core::ptr::addr_of_mut!(F_X),
            &mut *core::ptr::addr_of_mut!(F_W),
            &mut *core::ptr::addr_of_mut!(F_DY),
            &mut *core::ptr::addr_of_mut!(F_OUT),
        )
    };
    let mut rng = tailor_core::rng::Rng::new(seed);
    for (i, v) in x.iter_mut().enumerate() {
        *v = if i % 9 == 4 { -0.0 } else { rng.uniform(-1.0, 1.0).max(0.0) };
    }
    for v in w.iter_mut().chain(dy.iter_mut()) {
        *v = rng.uniform(-1.0, 1.0);
    }
    let [a, b] = out;
    (x, w, dy, [a, b])
}

/// The Cortex-M4 kernels against the naive loops, which sum in the same
/// order: equal bit for bit (so within any tolerance), on the model's
/// shapes and on shapes that take every tail path.
fn m4_kernels_match_naive(out: &mut dyn core::fmt::Write) -> bool {
    use tailor_core::gemm::{naive, Kernels};
    let k = Kernels::CORTEX_M4;
    let (x, w, dy, [o1, o2]) = f32_operands(21);
    let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(p, q)| p.to_bits() == q.to_bits());
    for &(m, n, kk) in &[
        (8, 32, 784),
        (8, 10, 32),
        (8, 10, 128),
        (7, 10, 32),
        (1, 1, 1),
        (3, 5, 45),
        (9, 7, 21),
        (2, 3, 9),
        (3, 300, 16),
        (3, 257, 24),
        (5, 12, 61),
        (4, 14, 48),
    ] {
        for relu in [false, true] {
            (k.forward)(x, w, dy, o1, m, n, kk, relu);
            naive::forward(x, w, dy, o2, m, n, kk, relu);
            if !same(&o1[..m * n], &o2[..m * n]) {
                let _ = write!(out, "forward m={m} n={n} k={kk} relu={relu} differs; ");
                return false;
            }
        }
        for mask in [None, Some(x)] {
            (k.input_grad)(&dy[..m * n], w, o1, mask, m, n, kk);
            naive::input_grad(&dy[..m * n], w, o2, mask, m, n, kk);
            if !same(&o1[..m * kk], &o2[..m * kk]) {
                let _ = write!(out, "input_grad m={m} n={n} k={kk} mask={} differs; ", mask.is_some());
                return false;
            }
        }
        let ldy = n + 1;
        if m * ldy <= dy.len() && n * kk <= o1.len() {
            (k.weight_grad)(dy, ldy, x, o1, m, n, kk);
            naive::weight_grad(dy, ldy, x, o2, m, n, kk);
            if !same(&o1[..n * kk], &o2[..n * kk]) {
                let _ = write!(out, "weight_grad m={m} n={n} k={kk} differs; ");
                return false;
            }
        }
    }
    true
}

/// The Cortex-M4 kernels give the golden checksums that a host test
/// asserts for their twin (`gemm::m4::tests::twin_golden_checksums`), and so
/// does the twin compiled for the device.
fn m4_kernels_match_host_twin(out: &mut dyn core::fmt::Write) -> bool {
    use tailor_core::gemm::{m4::golden, Kernels};
    let m4 = golden::checksums(&Kernels::CORTEX_M4);
    let twin = golden::checksums(&Kernels::M4_TWIN);
    let _ = write!(out, "[{m4:08x?}] ");
    m4 == golden::CHECKSUMS && twin == golden::CHECKSUMS
}

/// Instructions per MAC of the three products on 784-32-10 at batch 8,
/// with the firmware's gradient scratch (deterministic counts): at most
/// 1.6 for each, the input gradient (only 8×10×32, its ReLU mask under 3
/// instructions per output over 10 MACs) included; it is printed without
/// the mask too.
fn m4_instructions_per_mac(out: &mut dyn core::fmt::Write) -> bool {
    use tailor_core::gemm::Kernels;
    use tailor_firmware_sim::kernel_counts;
    let spec = tailor_core::spec::Spec::mlp(&[784, 32, 10]);
    let (x, w, dy, [o1, _]) = f32_operands(5);
    let mut ok = true;
    for k in [Kernels::CORTEX_M4, Kernels::PORTABLE] {
        let c = match kernel_counts::measure(&k, &spec, 8, 1024, x, w, dy, o1) {
            Ok(c) => c,
            Err(e) => {
                let _ = write!(out, "{e:?}; ");
                return false;
            }
        };
        let _ = write!(out, "[{}: ", k.name);
        let _ = c.write(out);
        let _ = write!(out, "per 1000 MACs] ");
        if k.name == Kernels::CORTEX_M4.name {
            let at_most = |c: kernel_counts::Count, max| c.per_kilo_mac().is_some_and(|v| v <= max);
            ok &= at_most(c.forward, 1600) && at_most(c.weight_grad, 1600) && at_most(c.input_grad, 1600);
        }
    }
    // Repeated: the counter ticks every few dozen instructions.
    let t0 = counter::instructions();
    for _ in 0..16 {
        (Kernels::CORTEX_M4.input_grad)(&dy[..80], w, o1, None, 8, 10, 32);
    }
    let per_kilo = (counter::instructions() - t0) * 1000 / 16 / 2560;
    let _ = write!(out, "[input_grad without the mask: {per_kilo} per 1000 MACs] ");
    ok
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
    ("optimizer_golden", optimizer_golden),
    ("bad_training_frames", bad_training_frames),
    ("softmax_exp_cost_and_error", softmax_exp_cost_and_error),
    ("m4_kernels_match_naive", m4_kernels_match_naive),
    ("m4_kernels_match_host_twin", m4_kernels_match_host_twin),
    ("m4_instructions_per_mac", m4_instructions_per_mac),
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
