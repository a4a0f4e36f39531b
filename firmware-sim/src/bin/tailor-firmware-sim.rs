//! The device: serves tailor's protocol with the int8 model flashed into
//! the board's model region (see `memory.x`).
//!
//! The semihosting command line picks what to do (QEMU
//! `-semihosting-config enable=on,target=native,arg=fw,arg=MODE,...`):
//!
//! | MODE | what |
//! |---|---|
//! | `semihosting [IN OUT]` | protocol over host files/FIFOs (default `tailor.h2d`, `tailor.d2h`) |
//! | `uart` | protocol over CMSDK UART0 |
//! | `overflow` | overflows the stack on purpose (tests the guard) |
//! | (none) | runs the self tests and exits |
//!
//! QEMU exits 0 after `Shutdown` or end of input, 1 on panic/HardFault.
#![no_std]
#![no_main]

use defmt_semihosting as _;

use cortex_m_rt::entry;
use cortex_m_semihosting::debug;
use tailor_core::protocol::{serve, Buffers, MAX_OUT};
use tailor_firmware_sim::{board, counter, model, selftest, semi, uart, Device, MAX_BATCH, RX_BYTES};

tailor_firmware_sim::fault_handlers!();

static mut RX: [u8; RX_BYTES] = [0; RX_BYTES];
static mut CLASSES: [u8; MAX_BATCH] = [0; MAX_BATCH];
static mut CONFIDENCE: [u8; MAX_BATCH] = [0; MAX_BATCH];
static mut LOGITS: [u8; MAX_BATCH * 4 * MAX_OUT] = [0; MAX_BATCH * 4 * MAX_OUT];

#[inline(never)]
fn recurse(depth: u32) -> u32 {
    let buf = core::hint::black_box([depth as u8; 1024]);
    if depth == u32::MAX {
        return 0;
    }
    buf[7] as u32 + recurse(depth + 1)
}

#[entry]
fn main() -> ! {
    counter::start();
    let mut cmd = [0u8; 512];
    let cmdline = semi::cmdline(&mut cmd);
    let mut args = cmdline
        .split_ascii_whitespace()
        .skip_while(|a| !matches!(*a, "semihosting" | "uart" | "overflow" | "selftest"));
    let mode = args.next().unwrap_or("selftest");
    // SAFETY: taken once, here, before anything else uses it.
    let scratch: &mut [i16] = unsafe { &mut (*core::ptr::addr_of_mut!(model::SCRATCH)).0 };
    let mut dev = Device::new(true, scratch);
    let region = board::model_region();
    defmt::info!("{=str}, mode {=str}", tailor_firmware_sim::FW_VERSION, mode);
    match &dev.model {
        model::Loaded::Ready(m) => defmt::info!(
            "model {} ({=usize} bytes of the {=usize}-byte region at {=usize:#x}), crc {=u32:#x}, scratch {=usize} of {=usize} i16",
            m.spec(),
            m.encoded_len(),
            region.len(),
            region.as_ptr() as usize,
            m.payload_crc(),
            m.scratch_len(),
            model::SCRATCH_LEN
        ),
        model::Loaded::Failed(state, why) => defmt::error!("no usable model ({}): {=str}", state, why.as_str()),
    }

    // SAFETY: taken once, here, before anything else uses them.
    let bufs = unsafe {
        Buffers {
            rx: &mut *core::ptr::addr_of_mut!(RX),
            classes: &mut *core::ptr::addr_of_mut!(CLASSES),
            logits: &mut *core::ptr::addr_of_mut!(LOGITS),
            confidence: &mut *core::ptr::addr_of_mut!(CONFIDENCE),
        }
    };
    match mode {
        "semihosting" => {
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
        "uart" => tailor_firmware_sim::exit_after_serve(serve(&mut uart::Uart0::take(), &mut dev, bufs)),
        "overflow" => {
            let r = recurse(0);
            tailor_firmware_sim::fail_exit(format_args!("stack overflow not caught ({r})"))
        }
        _ => {
            let mut detail = heapless::String::<256>::new();
            let (_, failed) = selftest::run_all(&mut detail);
            cortex_m_semihosting::heprintln!("{}", detail.as_str());
            debug::exit(if failed == 0 { debug::EXIT_SUCCESS } else { debug::EXIT_FAILURE });
            #[allow(clippy::empty_loop)]
            loop {}
        }
    }
}
