//! Faults on the target end in the HardFault handler, with QEMU exit
//! status 1, never in silent corruption or a hang:
//!
//! - `overflow`: unbounded recursion. flip-link puts the stack below
//!   `.data`/`.bss`, so the stack runs off the bottom of RAM and faults
//!   there instead of overwriting statics; the handler moves the stack
//!   pointer back, reports "HardFault … (stack overflow)" and exits 1.
//! - `hardfault`: an undefined instruction (a UsageFault, escalated to
//!   HardFault): reported as "HardFault" without "(stack overflow)", exit 1.
//!
//! Each case ends QEMU, so each is a run of its own: `run-qemu.sh` hands
//! this binary (`faults-*`) to `expect-fault.sh`, which runs it once per
//! case (the case is the semihosting command line) and passes only if
//! every run exits 1 with its expected report. A case that returns
//! exits 0, which fails.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, heprintln};
use defmt_semihosting as _;
use tailor_firmware_sim::semi;

tailor_firmware_sim::fault_handlers!();

/// A static the overflow must not reach (flip-link keeps the stack below it).
static mut CANARY: u32 = 0x5AFE_C0DE;

/// Recursion that cannot become a loop: each frame keeps 256 bytes live
/// across the call.
#[inline(never)]
fn recurse(depth: u32) -> u32 {
    let mut local = [0u8; 256];
    local[depth as usize % 256] = depth as u8;
    let local = core::hint::black_box(local);
    if depth == u32::MAX {
        return 0;
    }
    recurse(depth + 1).wrapping_add(local[depth as usize % 256] as u32)
}

#[entry]
fn main() -> ! {
    let mut buf = [0u8; 128];
    let case = semi::cmdline(&mut buf).split_ascii_whitespace().last().unwrap_or("");
    // SAFETY: single-threaded; read before anything can fault.
    let canary = unsafe { core::ptr::read_volatile(core::ptr::addr_of!(CANARY)) };
    heprintln!("case {}: canary {:#010x}", case, canary);
    match case {
        "overflow" => {
            let r = recurse(0);
            heprintln!("recursion returned {} without a fault", r);
        }
        // SAFETY: deliberately undefined: the point of the test.
        "hardfault" => unsafe { core::arch::asm!("udf #0") },
        other => heprintln!("unknown case {:?} (expected overflow or hardfault)", other),
    }
    debug::exit(debug::EXIT_SUCCESS);
    #[allow(clippy::empty_loop)]
    loop {}
}
