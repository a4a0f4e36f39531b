//! What differs between boards: the memory map, the UART, the clock. A
//! second board is one more module here and a `cfg` choosing it.

mod mps2_an386;

pub use mps2_an386::*;
