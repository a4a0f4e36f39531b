//! The host side of tailor: data, training loop, checkpoints, commands.
pub mod bench;
pub mod board;
pub mod checkpoint;
pub mod commands;
pub mod data;
pub mod device;
pub mod device_train;
pub mod interop;
pub mod metrics;
pub mod par;
pub mod plot;
pub mod q8;
pub mod quantize;
pub mod recipe;
pub mod simd;
pub mod train;
