//! tailor's int8 classifier firmware for QEMU `mps2-an386` (Cortex-M4F).
//!
//! One image for every model: the `.q8` is written into the board's model
//! region apart from the code, and checked at boot.
//!
//! * [`board`]: memory map, UART address, clock: what a second board changes.
//! * [`model`]: the model region, parsed with `QModel::parse`, and the
//!   inference scratch.
//! * [`uart`]: a CMSDK APB UART0 driver implementing `embedded_io`.
//! * [`semi`]: semihosting files (`SYS_OPEN`/`SYS_READ`/`SYS_WRITE`) as a
//!   second transport, and the semihosting command line.
//! * [`counter`]: instructions counted with SysTick under `-icount shift=0`.
//! * [`kernel_counts`]: instructions per MAC of the f32 training kernels.
//! * [`selftest`]: golden int8 values and kernel checks, run on the device.
//! * [`Device`]: the [`Backend`] that `tailor_core::protocol::serve` drives.
//!
//! Logs go through `defmt` to semihosting stdout (QEMU's stdout), never to
//! the protocol channel. Panics and HardFaults print to semihosting stderr and
//! end QEMU with exit status 1 ([`fault_handlers!`]).
#![no_std]

pub use tailor_core;
use tailor_core::protocol::{Backend, ModelState};
use tailor_core::quant::QKernels;

pub mod board;
pub mod kernel_counts;
pub mod model;

pub const FW_VERSION: &str = concat!("tailor-firmware-sim ", env!("CARGO_PKG_VERSION"));

/// Images per `Classify` the firmware accepts.
pub const MAX_BATCH: usize = 128;
/// Receive frame buffer: a full batch of 784-byte images (models with wider
/// inputs get smaller batches, see `Hello::max_batch`).
pub const RX_BYTES: usize = tailor_core::protocol::classify_frame_capacity(MAX_BATCH, 784) + 256;

/// CMSDK APB UART0 at [`board::UART0_BASE`] (polled, no interrupts).
pub mod uart {
    use core::ptr::{read_volatile, write_volatile};

    const BASE: usize = crate::board::UART0_BASE;
    const DATA: *mut u32 = BASE as *mut u32;
    const STATE: *mut u32 = (BASE + 0x04) as *mut u32;
    const CTRL: *mut u32 = (BASE + 0x08) as *mut u32;
    const BAUDDIV: *mut u32 = (BASE + 0x10) as *mut u32;
    const TX_FULL: u32 = 1 << 0;
    const RX_FULL: u32 = 1 << 1;

    /// The UART; its baud rate does not matter under QEMU.
    pub struct Uart0(());

    impl Uart0 {
        /// Enables TX and RX. Only one `Uart0` should exist.
        pub fn take() -> Self {
            // SAFETY: fixed MMIO registers of the board.
            unsafe {
                write_volatile(BAUDDIV, 16);
                write_volatile(CTRL, 0b11);
            }
            Uart0(())
        }

        fn state() -> u32 {
            // SAFETY: MMIO read.
            unsafe { read_volatile(STATE) }
        }
    }

    impl embedded_io::ErrorType for Uart0 {
        type Error = core::convert::Infallible;
    }

    impl embedded_io::Read for Uart0 {
        /// Blocks for the first byte, then takes what is already there.
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
            if buf.is_empty() {
                return Ok(0);
            }
            let mut n = 0;
            while n < buf.len() {
                if Self::state() & RX_FULL != 0 {
                    // SAFETY: MMIO read pops the byte.
                    buf[n] = unsafe { read_volatile(DATA) } as u8;
                    n += 1;
                } else if n > 0 {
                    break;
                }
            }
            Ok(n)
        }
    }

    impl embedded_io::Write for Uart0 {
        fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
            for &b in buf {
                while Self::state() & TX_FULL != 0 {}
                // SAFETY: MMIO write.
                unsafe { write_volatile(DATA, b as u32) };
            }
            Ok(buf.len())
        }

        fn flush(&mut self) -> Result<(), Self::Error> {
            while Self::state() & TX_FULL != 0 {}
            Ok(())
        }
    }
}

/// Semihosting: host files as a byte stream, and the command line.
pub mod semi {
    use cortex_m_semihosting::{nr, syscall};
    use embedded_io::ErrorKind;

    /// A host file opened through `SYS_OPEN` (a FIFO for the protocol).
    pub struct HostFile(usize);

    impl HostFile {
        /// `mode` is a `cortex_m_semihosting::nr::open` value.
        pub fn open(path: &str, mode: usize) -> Result<Self, ErrorKind> {
            let mut z = [0u8; 256];
            if path.len() >= z.len() {
                return Err(ErrorKind::InvalidInput);
            }
            z[..path.len()].copy_from_slice(path.as_bytes());
            // SAFETY: NUL-terminated path, its length without the NUL.
            let h = unsafe { syscall!(OPEN, z.as_ptr(), mode, path.len()) } as isize;
            if h < 0 {
                Err(ErrorKind::NotFound)
            } else {
                Ok(HostFile(h as usize))
            }
        }
    }

    impl Drop for HostFile {
        fn drop(&mut self) {
            // SAFETY: our handle.
            unsafe { syscall!(CLOSE, self.0) };
        }
    }

    impl embedded_io::ErrorType for HostFile {
        type Error = ErrorKind;
    }

    impl embedded_io::Read for HostFile {
        /// `SYS_READ` returns how many bytes it did *not* read; all of them
        /// means end of file.
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
            if buf.is_empty() {
                return Ok(0);
            }
            // SAFETY: writable buffer of that length.
            let left = unsafe { syscall!(READ, self.0, buf.as_mut_ptr(), buf.len()) } as isize;
            if left < 0 || left as usize > buf.len() {
                return Err(ErrorKind::Other);
            }
            Ok(buf.len() - left as usize)
        }
    }

    impl embedded_io::Write for HostFile {
        fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
            if buf.is_empty() {
                return Ok(0);
            }
            // SAFETY: readable buffer of that length.
            let left = unsafe { syscall!(WRITE, self.0, buf.as_ptr(), buf.len()) };
            if left >= buf.len() {
                return Err(ErrorKind::BrokenPipe);
            }
            Ok(buf.len() - left)
        }

        fn flush(&mut self) -> Result<(), ErrorKind> {
            Ok(())
        }
    }

    /// Host → device and device → host files as one duplex stream.
    pub struct Duplex {
        pub rx: HostFile,
        pub tx: HostFile,
    }

    impl Duplex {
        /// Opens `rx` for reading, then `tx` for writing (the host opens its
        /// ends in the same order, so FIFOs do not deadlock).
        pub fn open(rx: &str, tx: &str) -> Result<Self, ErrorKind> {
            let rx = HostFile::open(rx, nr::open::R_BINARY)?;
            let tx = HostFile::open(tx, nr::open::W_TRUNC_BINARY)?;
            Ok(Duplex { rx, tx })
        }
    }

    impl embedded_io::ErrorType for Duplex {
        type Error = ErrorKind;
    }
    impl embedded_io::Read for Duplex {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
            self.rx.read(buf)
        }
    }
    impl embedded_io::Write for Duplex {
        fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
            self.tx.write(buf)
        }
        fn flush(&mut self) -> Result<(), ErrorKind> {
            self.tx.flush()
        }
    }

    /// The semihosting command line (`-semihosting-config ...,arg=A,arg=B`
    /// gives `"A B"`), written into `buf`.
    pub fn cmdline(buf: &mut [u8]) -> &str {
        buf.fill(0);
        // SAFETY: the parameter block {ptr, len} points at our buffer; the
        // host NUL-terminates.
        let r = unsafe { syscall!(GET_CMDLINE, buf.as_mut_ptr(), buf.len() - 1) } as isize;
        if r != 0 {
            return "";
        }
        let n = buf.iter().position(|&b| b == 0).unwrap_or(0);
        core::str::from_utf8(&buf[..n]).unwrap_or("")
    }
}

/// Instruction counting with SysTick (CLKSOURCE = processor clock).
///
/// Under `qemu -icount shift=0` every instruction advances virtual time by
/// 1 ns and the 25 MHz SysTick ticks every 40 ns, so instructions =
/// 40 × ticks (±40). Wraps of the 24-bit counter are counted in the SysTick
/// interrupt ([`fault_handlers!`] installs it).
pub mod counter {
    use core::sync::atomic::{AtomicU32, Ordering};

    pub static WRAPS: AtomicU32 = AtomicU32::new(0);
    pub const INSTRUCTIONS_PER_TICK: u64 = crate::board::INSTRUCTIONS_PER_TICK;
    const RELOAD: u32 = 0x00FF_FFFF;

    /// Starts SysTick free-running with its wrap interrupt.
    pub fn start() {
        // SAFETY: we own SysTick; plain register writes.
        unsafe {
            let syst = &*cortex_m::peripheral::SYST::PTR;
            syst.rvr.write(RELOAD);
            syst.cvr.write(0);
            syst.csr.write(0b111); // ENABLE | TICKINT | CLKSOURCE
        }
    }

    /// Ticks since [`start`].
    pub fn ticks() -> u64 {
        // SAFETY: read-only register access.
        let syst = unsafe { &*cortex_m::peripheral::SYST::PTR };
        loop {
            let w1 = WRAPS.load(Ordering::Acquire);
            let v = syst.cvr.read() & RELOAD;
            let w2 = WRAPS.load(Ordering::Acquire);
            if w1 == w2 {
                return ((w1 as u64) << 24) + (RELOAD - v) as u64;
            }
        }
    }

    pub fn instructions() -> u64 {
        ticks() * INSTRUCTIONS_PER_TICK
    }
}

/// Checks run on the device (by the on-target tests and `SelfTest`).
pub mod selftest {
    use core::fmt::Write;
    use tailor_core::quant::kernels::{self, QKernels, Requant};
    use tailor_core::quant::{golden, widen, Aligned, QModel};
    use tailor_core::rng::Rng;

    pub type Check = fn(&mut dyn Write) -> bool;

    /// Scratch (i16) of the model check: enough for layers up to 2,047 wide.
    const SCRATCH: usize = 4096;

    fn kernels_all() -> [QKernels; 3] {
        [QKernels::NAIVE, QKernels::PORTABLE, QKernels::BEST]
    }

    /// Golden accumulators, activations, logits and class on every kernel.
    pub fn golden_values(out: &mut dyn Write) -> bool {
        let blob = golden::blob();
        let m = match QModel::parse(&blob.0) {
            Ok(m) => m,
            Err(e) => {
                let _ = write!(out, "golden model does not parse: {e}; ");
                return false;
            }
        };
        let (l1, l2) = (m.layer(0), m.layer(1));
        let mut ok = true;
        for k in kernels_all() {
            let mut x = Aligned([0i16; 10]);
            widen(&golden::INPUT, &mut x.0);
            let mut acc1 = [0i32; 5];
            l1.accumulate(&k, &x.0, &mut acc1);
            let mut h1 = Aligned([0i16; 5]);
            l1.forward_hidden(&k, &x.0, &mut h1.0);
            let mut acc2 = [0i32; 3];
            l2.accumulate(&k, &h1.0, &mut acc2);
            let mut h2 = Aligned([0i16; 3]);
            l2.forward_hidden(&k, &h1.0, &mut h2.0);
            let mut logits = [0i32; 2];
            let mut scratch = [0i16; 32];
            let class = m.classify(&k, &golden::INPUT, &mut scratch, &mut logits);
            let good = acc1 == golden::EXPECTED_ACC1
                && h1.0.map(|v| v as u8) == golden::EXPECTED_ACT1
                && acc2 == golden::EXPECTED_ACC2
                && h2.0.map(|v| v as u8) == golden::EXPECTED_ACT2
                && logits == golden::EXPECTED_LOGITS
                && class == golden::EXPECTED_CLASS;
            if !good {
                let _ = write!(out, "golden/{}: acc1 {acc1:?} logits {logits:?} class {class}; ", k.name);
                ok = false;
            }
        }
        ok
    }

    /// Largest `rows · k` and `k` of [`kernels_match_naive`]'s shapes.
    const MAX_W: usize = 10 * 512;
    const MAX_K: usize = 784;

    /// Row counts and depths that hit every path of the kernels: `k < 4`
    /// (no 4-input group), `k % 4 ≠ 0` (leftover inputs per row), each
    /// count of single groups before the unrolled loop and none, partial
    /// blocks of 1 to 3 rows alone and after full blocks, runs of more than
    /// 64 rows (`kernels::GEMV_RUN`), and the seed model's layer shapes.
    const SHAPES: &[(usize, usize)] = &[
        (4, 4),
        (4, 8),
        (5, 10),
        (7, 203),
        (8, 200),
        (3, 17),
        (1, 1),
        (6, 33),
        (4, 1),
        (4, 3),
        (8, 28),
        (12, 32),
        (16, 69),
        (4, 124),
        (4, 12),
        (8, 20),
        (4, 24),
        (68, 36),
        (70, 30),
        (1, 784),
        (4, 784),
        (10, 512),
    ];

    /// The best (SMLAD on this target) kernel equals the naive one on
    /// random data, for row counts and depths that hit every tail path
    /// ([`SHAPES`]), with aligned and misaligned activations.
    pub fn kernels_match_naive(out: &mut dyn Write) -> bool {
        let mut rng = Rng::new(11);
        // One spare element in front: `x[1..]` is misaligned.
        let mut x = Aligned([0i16; MAX_K + 2]);
        let mut w = [0i8; MAX_W];
        let mut packed = Aligned([0i8; MAX_W]);
        for &(rows, k) in SHAPES {
            for v in x.0[..k + 2].iter_mut() {
                *v = rng.below(256) as i16;
            }
            // Extreme values too: -127..=127 weights, 255 inputs.
            x.0[0] = 255;
            x.0[1] = 255;
            for v in w[..rows * k].iter_mut() {
                *v = rng.below(255) as i8 as i16 as i8;
                if *v == -128 {
                    *v = -127;
                }
            }
            w[0] = 127;
            kernels::pack(&w[..rows * k], rows, k, &mut packed.0[..rows * k]);
            for skip in [0, 1] {
                let xs = &x.0[skip..skip + k];
                let mut want = [0i32; 70];
                for (r, a) in want[..rows].iter_mut().enumerate() {
                    *a = (0..k).map(|i| xs[i] as i32 * w[r * k + i] as i32).sum();
                }
                for kern in kernels_all() {
                    let mut got = [0i32; 70];
                    kernels::gemv(&kern, xs, &packed.0[..rows * k], rows, k, |r, a| got[r] = a);
                    if got[..rows] != want[..rows] {
                        let bad = (0..rows).find(|&r| got[r] != want[r]).unwrap_or(0);
                        let _ = write!(
                            out,
                            "kernel {} rows {rows} k {k} skip {skip}: row {bad} {} != {}; ",
                            kern.name, got[bad], want[bad]
                        );
                        return false;
                    }
                }
            }
        }
        true
    }

    /// The device's requantization of hidden outputs
    /// ([`kernels::requant_widened`]: `SMLAL`/`QADD`/`USAT`) equals
    /// [`kernels::requant_one`] (gemmlowp's reference arithmetic) on random
    /// sums and parameters and on their extremes, for ReLU layers with zero
    /// point 0 and others, with and without a ReLU.
    pub fn requant_matches_reference(out: &mut dyn Write) -> bool {
        const N: usize = 64;
        let mut rng = Rng::new(13);
        let edges = [i32::MIN, i32::MIN + 1, -(1 << 30), -1, 0, 1, 1 << 30, i32::MAX - 1, i32::MAX];
        for round in 0..200 {
            let mut acc = [0i32; N];
            let mut bias = [0i32; N];
            let mut m0 = [0i32; N];
            let mut shift = [0i32; N];
            for i in 0..N {
                let r = rng.next_u32();
                acc[i] = match r % 8 {
                    0 => edges[(r >> 8) as usize % edges.len()],
                    // Small sums, where rounding ties are frequent.
                    1 | 2 => (rng.next_u32() as i32) >> 16,
                    _ => (rng.next_u32() as i32) >> ((r >> 8) % 32),
                };
                bias[i] = if r & 0x100 == 0 { 0 } else { (rng.next_u32() as i32) >> 12 };
                m0[i] = match (r >> 12) % 8 {
                    0 => edges[(r >> 16) as usize % edges.len()],
                    _ => (1 << 30) + (rng.next_u32() >> 2) as i32,
                };
                // -31..=30, mostly the usual right shifts.
                shift[i] =
                    if (r >> 20).is_multiple_of(4) { (rng.below(62) as i32) - 31 } else { -1 - rng.below(15) as i32 };
                // First every pair of extremes (i32::MIN² is SRDHM's one
                // saturation).
                let j = round * N + i;
                if j < edges.len() * edges.len() {
                    (acc[i], bias[i], m0[i]) = (edges[j % edges.len()], 0, edges[j / edges.len()]);
                }
            }
            // ReLU layers (min = zp, mostly zp = 0) and layers without one
            // (min < zp), where negative values survive the clamp.
            let zp = [0, 7, 128][round % 3];
            let min = if round % 4 == 1 { 0 } else { zp };
            let q = Requant { zp, min, max: if round % 5 == 0 { 200 } else { 255 } };
            let mut got = [0i16; N];
            kernels::requant_widened(&acc, &bias, &m0, &shift, q, &mut got);
            for i in 0..N {
                let want = kernels::requant_one(acc[i].wrapping_add(bias[i]), m0[i], shift[i], q) as i16;
                if got[i] != want {
                    let _ = write!(
                        out,
                        "requant acc {} bias {} m0 {} shift {} {q:?}: {} != {want}; ",
                        acc[i], bias[i], m0[i], shift[i], got[i]
                    );
                    return false;
                }
            }
        }
        true
    }

    /// The flashed model gives the same logits on every kernel (passes
    /// with a note when there is no model, or it needs more scratch than
    /// this check's stack buffer).
    pub fn model_kernels_agree(out: &mut dyn Write) -> bool {
        let loaded = crate::model::load(crate::board::model_region(), SCRATCH);
        let Some(m) = loaded.model() else {
            let _ = write!(out, "(no model flashed: skipped) ");
            return true;
        };
        let (n_in, n_out) = (m.spec().inputs(), m.spec().outputs());
        if n_in > 1024 {
            let _ = write!(out, "(inputs wider than 1024: skipped) ");
            return true;
        }
        let mut scratch = Aligned([0i16; SCRATCH]);
        let mut rng = Rng::new(5);
        let mut px = [0u8; 1024];
        for round in 0..3 {
            for p in px.iter_mut() {
                *p = if rng.below(3) == 0 { 0 } else { rng.below(256) as u8 };
            }
            let mut first = [0i32; 16];
            for (i, k) in kernels_all().iter().enumerate() {
                let mut l = [0i32; 16];
                let c = m.classify(k, &px[..n_in], &mut scratch.0, &mut l);
                if i == 0 {
                    first = l;
                } else if l != first || c != tailor_core::quant::argmax(&first[..n_out]) {
                    let _ = write!(out, "model round {round}: kernel {} differs; ", k.name);
                    return false;
                }
            }
        }
        true
    }

    pub const CHECKS: &[(&str, Check)] = &[
        ("golden_values", golden_values),
        ("kernels_match_naive", kernels_match_naive),
        ("requant_matches_reference", requant_matches_reference),
        ("model_kernels_agree", model_kernels_agree),
    ];

    /// Runs all checks; returns (passed, failed).
    pub fn run_all(out: &mut dyn Write) -> (u32, u32) {
        let (mut p, mut f) = (0, 0);
        for (name, check) in CHECKS {
            if check(out) {
                p += 1;
            } else {
                let _ = write!(out, "FAILED {name}; ");
                f += 1;
            }
        }
        let _ = write!(out, "{p} passed, {f} failed");
        (p, f)
    }
}

/// The protocol backend: the flashed model plus the instruction counter.
pub struct Device {
    /// Report instruction counts (SysTick started).
    pub counting: bool,
    pub model: model::Loaded,
    scratch: &'static mut [i16],
}

impl Device {
    /// Loads the model from the board's region; `scratch` is the inference
    /// scratch (its length is the limit checked).
    pub fn new(counting: bool, scratch: &'static mut [i16]) -> Self {
        let model = model::load(board::model_region(), scratch.len());
        Device { counting, model, scratch }
    }
}

impl Backend for Device {
    fn fw_version(&self) -> &str {
        FW_VERSION
    }
    fn model_state(&self) -> (ModelState, &str) {
        match &self.model {
            model::Loaded::Ready(_) => (ModelState::Ready, ""),
            model::Loaded::Failed(state, why) => (*state, why.as_str()),
        }
    }
    fn dims(&self) -> &[u32] {
        self.model.model().map_or(&[], |m| m.spec().dims())
    }
    fn model_crc(&self) -> u32 {
        self.model.model().map_or(0, |m| m.payload_crc())
    }
    fn classify(&mut self, pixels: &[u8], logits: &mut [i32]) -> usize {
        match &self.model {
            model::Loaded::Ready(m) => m.classify(&QKernels::BEST, pixels, self.scratch, logits),
            // serve() never classifies without a model.
            model::Loaded::Failed(..) => 0,
        }
    }
    fn logit_scale(&self) -> Option<f32> {
        let m = self.model.model()?;
        Some(m.layer(m.spec().depth() - 1).params.out_scale)
    }
    fn instructions(&mut self) -> Option<u64> {
        self.counting.then(counter::instructions)
    }
    fn self_test(&mut self, detail: &mut dyn core::fmt::Write) -> (u32, u32) {
        selftest::run_all(detail)
    }
}

/// Ends QEMU after [`tailor_core::protocol::serve`] returns: status 0
/// after `Shutdown` or the end of input (with the device's counters in the
/// log), 1 on a transport error.
pub fn exit_after_serve<E: core::fmt::Debug>(end: tailor_core::protocol::ServeEnd<E>) -> ! {
    use tailor_core::protocol::ServeEnd;
    match end {
        ServeEnd::Shutdown(s) | ServeEnd::Eof(s) => {
            defmt::info!("done: {} images, {} instructions, {} bad frames", s.images, s.instructions, s.frames_bad);
            cortex_m_semihosting::debug::exit(cortex_m_semihosting::debug::EXIT_SUCCESS);
        }
        ServeEnd::Io(e) => fail_exit(format_args!("transport error: {e:?}")),
    }
    #[allow(clippy::empty_loop)]
    loop {}
}

/// Exits QEMU with status 1 after printing `msg` on semihosting stderr.
pub fn fail_exit(args: core::fmt::Arguments<'_>) -> ! {
    cortex_m_semihosting::heprintln!("{}", args);
    cortex_m_semihosting::debug::exit(cortex_m_semihosting::debug::EXIT_FAILURE);
    #[allow(clippy::empty_loop)]
    loop {}
}

/// Installs a panic handler (message on semihosting stderr, exit 1), the
/// SysTick wrap counter and a HardFault handler that survives
/// a stack overflow: it first moves the stack pointer back to the top of the
/// stack region (flip-link puts the stack *below* `.data`/`.bss`, so an
/// overflow faults at the bottom of RAM instead of corrupting statics), then
/// prints the faulting PC and exits QEMU with status 1.
#[macro_export]
macro_rules! fault_handlers {
    () => {
        #[panic_handler]
        fn tailor_panic(info: &core::panic::PanicInfo<'_>) -> ! {
            $crate::fail_exit(format_args!("{info}"))
        }

        #[cortex_m_rt::exception]
        fn SysTick() {
            $crate::counter::WRAPS.fetch_add(1, core::sync::atomic::Ordering::AcqRel);
        }

        core::arch::global_asm!(
            ".section .HardFault.tailor, \"ax\"",
            ".global HardFault",
            ".type HardFault, %function",
            ".thumb_func",
            "HardFault:",
            "  mrs r0, msp",
            "  ldr r1, =_stack_start",
            "  msr msp, r1",
            "  b {handler}",
            ".ltorg",
            handler = sym tailor_hard_fault,
        );

        extern "C" fn tailor_hard_fault(old_sp: u32) -> ! {
            // SAFETY: reading the System Control Block fault registers.
            let (cfsr, hfsr, bfar) = unsafe { (core::ptr::read_volatile(0xE000_ED28 as *const u32), core::ptr::read_volatile(0xE000_ED2C as *const u32), core::ptr::read_volatile(0xE000_ED38 as *const u32)) };
            // The stacked PC, if the exception frame made it into RAM.
            let pc = if ($crate::board::RAM.start..$crate::board::RAM.end - 32).contains(&old_sp) {
                // SAFETY: inside RAM.
                unsafe { core::ptr::read_volatile((old_sp + 24) as *const u32) }
            } else {
                0
            };
            $crate::fail_exit(format_args!(
                "HardFault: sp {old_sp:#010x} pc {pc:#010x} CFSR {cfsr:#010x} HFSR {hfsr:#010x} BFAR {bfar:#010x}{}",
                if old_sp < $crate::board::RAM.start + 0x40 { " (stack overflow)" } else { "" }
            ))
        }
    };
}
