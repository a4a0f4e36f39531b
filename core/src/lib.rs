//! `tailor-core`: the math of tailor, for desktops and microcontrollers alike.
//!
//! `#![no_std]` and no `alloc`: a model's shape is data ([`Spec`]), and every
//! buffer is a flat slice owned by the caller whose length is a `const fn` of
//! the spec: `static`s on a microcontroller, one allocation on the host.
//!
//! | module | holds | memory it needs |
//! |---|---|---|
//! | [`spec`] | `Spec`: the layer table, and every buffer size | none |
//! | [`rng`] | portable seeded RNG, PyTorch-style init | 16 B |
//! | [`gemm`] | the three dense-layer products, naive twins, kernel table | none |
//! | [`dense`] | `Dense` / `DenseMut`: one layer's view, forward and backward | none |
//! | [`mlp`] | `Mlp` over flat parameters, `Workspace`, the training step | `spec.params()`, `spec.activations(batch)` floats |
//! | [`packed`] | `PackedMlp`: weights packed once for inference | `PackedMlp::len(spec)` floats |
//! | [`loss`] | cross-entropy, NLL, MSE with gradients | none |
//! | [`confidence`] | a prediction's softmax probability (libm `exp`) | none |
//! | [`optim`] | SGD, Adam(W), RMSProp on flat slices | 0–3 copies of the params |
//! | [`format`] | the file header with the layer table, varints, tensor streams | none |
//! | [`quant`] | int8 model read in place, quantization, integer-only inference | the `.q8` in flash, `quant::scratch_len(spec)` i16 |
//! | [`session`] | a training run batch by batch, as a device runs it | the model, its optimizer state, a few rows of scratch, one batch |
//! | [`train_device`] | a device's training requests: the session, their checks, head mode on an int8 backbone | the session's, and one batch of the backbone's features |
//! | [`train_golden`] | fixed training steps and their expected bits (host and device tests) | a few hundred bytes |
//! | [`protocol`] | COBS + CRC framed postcard messages over `embedded-io` | one frame buffer |
#![no_std]
#![forbid(unsafe_op_in_unsafe_fn)]

pub mod confidence;
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
pub mod session;
pub mod spec;
pub mod train_device;
pub mod train_golden;

pub use dense::{Dense, DenseMut};
pub use mlp::{Mlp, Workspace};
pub use spec::Spec;
