//! `tailor-core`: the math of tailor, for desktops and microcontrollers alike.
//!
//! `#![no_std]` and no `alloc`: every buffer is a fixed-size array owned by
//! the caller. The host `Box`es the big structs (see [`zeroed`] for why they
//! must never be built on the stack), the firmware puts them in `static`s.
//!
//! | module | holds | memory it needs (784-512-512-10, batch 64) |
//! |---|---|---|
//! | [`rng`] | portable seeded RNG, PyTorch-style init | 16 B |
//! | [`gemm`] | the three dense-layer products, naive twins, kernel table | none |
//! | [`dense`] | `Dense<IN, OUT>` in PyTorch layout | 4·OUT·(IN+1) B |
//! | [`mlp`] | `Mlp` parameters, `Workspace` activations, train step | 2.67 MB / 0.8 MB |
//! | [`packed`] | `PackedMlp`: weights packed once for inference | 2.68 MB |
//! | [`loss`] | cross-entropy, NLL, MSE with gradients | none |
//! | [`optim`] | SGD, Adam(W), RMSProp on flat slices | 0–3 copies of the params |
//! | [`format`] | file header, CRC-32, tensor streams in postcard | none |
//! | [`quant`] | int8 model, calibration, integer-only inference | 0.67 MB flash, < 4 KB RAM |
//! | [`protocol`] | COBS + CRC framed postcard messages over `embedded-io` | one frame buffer |
#![no_std]
#![forbid(unsafe_op_in_unsafe_fn)]

pub mod dense;
pub mod format;
pub mod gemm;
pub mod loss;
pub mod mlp;
pub mod optim;
pub mod packed;
pub mod par;
pub mod protocol;
pub mod quant;
pub mod rng;
pub mod spec;

pub use dense::{Dense, DenseMut};
pub use mlp::{Mlp, Workspace};
pub use spec::Spec;

/// Types that are plain arrays of `f32` (possibly nested in `repr(C)`
/// structs), so the whole value can be viewed as one flat slice. Optimizers
/// work on that view: one loop over all parameters, whatever the model.
///
/// # Safety
/// Implementors must be `repr(C)` (or arrays) containing only `f32`, with no
/// padding, so that every byte belongs to an `f32`.
pub unsafe trait Flat: Sized {
    fn flat(&self) -> &[f32] {
        let n = core::mem::size_of::<Self>() / 4;
        // SAFETY: guaranteed by the trait contract: Self is n contiguous f32.
        unsafe { core::slice::from_raw_parts(self as *const Self as *const f32, n) }
    }
    fn flat_mut(&mut self) -> &mut [f32] {
        let n = core::mem::size_of::<Self>() / 4;
        // SAFETY: as above, and we hold the unique borrow.
        unsafe { core::slice::from_raw_parts_mut(self as *mut Self as *mut f32, n) }
    }
}

/// Marker for types whose all-zero bit pattern is a valid value (here: nested
/// `f32`/integer arrays). The host uses it to allocate multi-megabyte structs
/// directly on the heap (`alloc_zeroed`) without a stack temporary; the
/// firmware gets the same effect from `.bss`.
///
/// # Safety
/// All-zero bytes must be a valid `Self`.
pub unsafe trait Zeroed: Sized {}

unsafe impl<const N: usize> Flat for [f32; N] {}
unsafe impl<const N: usize> Zeroed for [f32; N] {}
