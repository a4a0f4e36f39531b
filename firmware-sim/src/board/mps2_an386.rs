//! QEMU `mps2-an386` (Cortex-M4F at 25 MHz). Keep in step with `memory.x`
//! and the host's board table (`host/src/board.rs`).

/// CMSDK APB UART0.
pub const UART0_BASE: usize = 0x4000_4000;

/// RAM, for the HardFault handler's check that a stacked frame is readable.
pub const RAM: core::ops::Range<u32> = 0x2000_0000..0x2040_0000;

/// Under `qemu -icount shift=0` an instruction is 1 ns of virtual time and
/// the 25 MHz SysTick ticks every 40 ns.
pub const INSTRUCTIONS_PER_TICK: u64 = 40;

extern "C" {
    static __model_start: u8;
    static __model_end: u8;
}

/// The flash region the host writes the `.q8` into (`MODEL` in `memory.x`).
pub fn model_region() -> &'static [u8] {
    // SAFETY: linker-defined bounds of a region that no code or data of the
    // firmware occupies and nothing writes while it runs (the loader or a
    // probe writes it before reset); any bytes are valid u8.
    unsafe {
        let start = core::ptr::addr_of!(__model_start);
        let end = core::ptr::addr_of!(__model_end);
        core::slice::from_raw_parts(start, end as usize - start as usize)
    }
}
